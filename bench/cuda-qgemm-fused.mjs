#!/usr/bin/env node
// Packed 2-bit GEMM on the GPU, in one run: dense cuBLAS bf16 (the bound), dequantize + cuBLAS (cudaBenchQGemm) and
// the fused sm_90a wgmma kernel (native/cuda/qgemm_wgmma.cu), Y[M, out] = X[M, in]·Ŵᵀ with bf16 Y, for M = 512 and
// 2048 on the LLaMA-7B projection shapes. efficiency = dense µs ÷ packed µs. Fused variants (--variants, default
// all six): 1 / 2 = from the original codes (6 stages one CTA per SM / 5 stages two CTAs per SM); 3 / 4 = from
// the repacked stream (DeviceQuant.attachFusedRepack, built once per weight, not timed) in the same two
// configurations; 5 / 6 = repacked stream, split-K inside a 512-thread CTA (two warpgroup pairs, 5 / 4 stages each;
// 7 = 5 with copy-engine stages, cudaQGemm's choice when the tiles fit one wave (4 otherwise); 8 = stream-K, two
// workers per SM, measured slower and never chosen by default; 9 = 7 with 176-token tiles on one 256-thread warpgroup
// pair, the default where 128 × 128 tiles overflow a wave and its rounds are fewer; 0 = the dispatcher's choice). The last line per M says which path cudaQGemm should take there (kQGemmFusedMaxM).
//   node bench/cuda-qgemm-fused.mjs [--json out.json] [--reps N] [--M 512,2048] [--variants 3,4,5,6]
// Needs the compiled TypeScript (dist/) and the addon with CUDA (LOWBIT_ADDON=… for another build).
// Timing (native/cuda/qgemm.cu): CUDA events after 2 warmup passes, median over `reps` passes; each pass runs
// 4 distinct weights (random codes, random f16 scales, zeros 0..3) so consecutive GEMMs do not reuse L2.
import { writeFileSync } from 'node:fs';
import { cudaEngine, cudaUnavailable, randomDeviceQuant } from '../dist/src/backend/cuda.js';

const args = process.argv.slice(2);
const opt = (k) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : undefined; };
const reps = Number(opt('--reps') ?? 30);
const Ms = (opt('--M') ?? '512,2048').split(',').map(Number);
const variants = (opt('--variants') ?? process.env.LOWBIT_QGEMM_BENCH_VARIANTS ?? '1,2,3,4,5,6').split(',').map(Number);
// cudaQGemm's fused variant with the repacked stream: 0 = the dispatcher's per-shape choice (pick_variant in
// native/cuda/qgemm_wgmma.cu: 7 when the tiles fit one wave, else 9 or 4), listed as "v0" when --variants includes 0
const DEFAULT_VARIANT = variants.includes(0) ? 0 : Number(process.env.LOWBIT_QGEMM_FUSED_VARIANT ?? 5);
const c = cudaEngine();
if (!c) { console.error(`cuda-qgemm-fused bench: ${cudaUnavailable()}`); process.exit(2); }
if (typeof c.cudaBenchQGemmFused !== 'function') { console.error('cuda-qgemm-fused bench: addon older than the fused kernel'); process.exit(2); }
const info = c.cudaInfo(), cb = c.cublasInfo();
const res = { date: new Date().toISOString(), device: info.deviceName, cc: info.computeCapability, cublas: cb.version, reps, rows: [] };
console.log(`${info.deviceName} (sm ${info.computeCapability}), cuBLAS ${cb.version}, median of ${reps} passes × 4 weights`);

const SHAPES = [['q/k/v/o', 4096, 4096], ['gate/up', 11008, 4096], ['down', 4096, 11008]];
const us = (ms) => (ms * 1e3).toFixed(1);
let seed = 300;
for (const M of Ms) {
  for (const [name, out, inF] of SHAPES) {
    const nd = 4, flop = 2 * M * out * inF;
    const X = c.cudaAlloc(M * inF * 2), Y = c.cudaAlloc(M * out * 2), S = c.cudaAlloc(out * inF * 2);
    c.cudaFillUniformBf16(X, M * inF, 7, -1, 1);
    const W = Array.from({ length: nd }, (_, i) => { const h = c.cudaAlloc(out * inF * 2); c.cudaFillUniformBf16(h, out * inF, 50 + i, -0.05, 0.05); return h; });
    const dense = c.cudaBenchDenseGemm(W, M, out, inF, X, Y, reps);
    for (const h of W) c.cudaFree(h);
    const qs = Array.from({ length: nd }, () => randomDeviceQuant(c, { layout: 'int', bits: 2, group: 64, out, in: inF }, seed++));
    const deq = c.cudaBenchQGemm(qs.map((q) => q.desc), M, X, Y, S, reps);
    const why = c.cudaQGemmFusedWhyNot(qs[0].desc, M, X, Y);
    if (!why) for (const q of qs) q.attachFusedRepack();
    const fusedMs = {};
    for (const v of variants) fusedMs[v] = why ? null : c.cudaBenchQGemmFused(qs.map((q) => q.desc), M, X, Y, reps, v);
    for (const q of qs) q.free();
    c.cudaFree(X); c.cudaFree(Y); c.cudaFree(S);
    const best = why ? null : variants.reduce((b, v) => (b === null || fusedMs[v] < fusedMs[b] ? v : b), null);
    const row = { shape: name, M, out, in: inF, denseMs: dense, dequantMs: deq, fusedMs, bestVariant: best,
      fusedWhyNot: why, effDequant: dense / deq, effFused: Object.fromEntries(variants.map((v) => [v, fusedMs[v] ? dense / fusedMs[v] : null])),
      denseTflops: flop / (dense * 1e-3) / 1e12, bestTflops: best !== null ? flop / (fusedMs[best] * 1e-3) / 1e12 : null };
    res.rows.push(row);
    console.log(`M=${M} ${name} ${out}x${inF}: dense ${us(dense)} us (${row.denseTflops.toFixed(0)} TFLOP/s) | ` +
      `dequant+cuBLAS ${us(deq)} us = ${(100 * row.effDequant).toFixed(0)}% | ` +
      (why ? `fused: ${why}` : variants.map((v) => `v${v} ${us(fusedMs[v])} us = ${(100 * row.effFused[v]).toFixed(0)}%`).join(', ') +
        ` | best v${best} ${row.bestTflops.toFixed(0)} TFLOP/s`));
  }
  const rowsM = res.rows.filter((r) => r.M === M && r.bestVariant !== null);
  if (rowsM.length) {
    const dv = DEFAULT_VARIANT;
    const fusedSum = rowsM.reduce((s, r) => s + (r.fusedMs[dv] ?? Infinity), 0), deqSum = rowsM.reduce((s, r) => s + r.dequantMs, 0);
    if (variants.includes(dv)) {
      console.log(`M=${M}: variant ${dv} (cudaQGemm's fused kernel) ${us(fusedSum)} us vs dequant+cuBLAS ${us(deqSum)} us over the three shapes ` +
        `-> cudaQGemm should take ${fusedSum < deqSum ? 'the fused kernel' : 'dequantize + cuBLAS'} at this M`);
    }
  }
}
const json = opt('--json');
if (json) { writeFileSync(json, JSON.stringify(res, null, 2)); console.log(`wrote ${json}`); }
