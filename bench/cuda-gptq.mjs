#!/usr/bin/env node
// GPTQ on the GPU (W2 g64): wall-clock seconds per stage for LLaMA-7B-shaped projections — the Hessian of 2048
// calibration rows (upload of the f32 rows + f32 GEMMs of 256 rows into f64), the preparation (W upload and
// transpose, dead columns, permutation), the factorization (Cholesky, inverse, upper Cholesky of the inverse), and
// the column loop (block kernels + lazy Dgemm updates + downloads) — and the CPU reference (src/quant/gptq.ts) on a
// smaller shape, with the GPU on that same shape and how many codes agree.
//   node bench/cuda-gptq.mjs [--md out.md] [--json out.json] [--quick] [--emulate]
// Needs dist/ and the addon with CUDA (LOWBIT_ADDON=… for another build). --emulate runs tiny shapes on the host
// emulator of the kernels (test/helpers/host-gptq.ts): a smoke check of this script, not a timing.
// Every stage is timed from a device synchronisation to the next (quantizeGPTQGpu's timings), one run per shape
// after a small warm-up run (cuBLAS handle, kernel loading).
import { writeFileSync } from 'node:fs';
import { Rng } from '../dist/src/tensor.js';
import { cudaGptq, cudaGptqUnavailable } from '../dist/src/backend/cuda-gptq.js';
import { GpuHessian, quantizeGPTQGpu } from '../dist/src/quant/gptq-gpu.js';
import { HessianAccumulator, quantizeGPTQ } from '../dist/src/quant/gptq.js';
import { unpackCodes } from '../dist/src/quant/pack.js';

const args = process.argv.slice(2);
const opt = (k) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : undefined; };
const quick = args.includes('--quick'), emulate = args.includes('--emulate');
const eng = emulate ? (await import('../dist/test/helpers/host-gptq.js')).hostGptq() : cudaGptq();
if (!eng) { console.error(`cuda-gptq bench: ${cudaGptqUnavailable()}`); process.exit(2); }
const info = eng.cudaInfo(), cb = eng.cublasInfo?.() ?? {};
const log = (m) => console.log(m);
const now = () => performance.now() / 1000;
const ROWS = emulate ? 96 : 2048;
const OPTS = { bits: 2, groupSize: 64 };
const res = { date: new Date().toISOString(), device: info.deviceName, cc: info.computeCapability, cublas: cb.version ?? null,
  emulated: emulate, rows: ROWS, opts: OPTS, gpu: [], cpu: null };

/** rows × n calibration-like rows: per-column scales and a rank-8 shared component (cheap to draw at n = 11008). */
function calibRows(rng, rows, n) {
  const X = rng.fillNormal(new Float32Array(rows * n));
  const V = rng.fillNormal(new Float32Array(8 * n)), u = new Float32Array(8);
  for (let r = 0; r < rows; r++) {
    rng.fillNormal(u);
    const o = r * n;
    for (let j = 0; j < n; j++) {
      let s = X[o + j];
      for (let k = 0; k < 8; k++) s += u[k] * V[k * n + j];
      X[o + j] = s * (0.5 + (j % 13) / 8);
    }
  }
  return X;
}

function deviceHessian(n, seed) {
  const X = calibRows(new Rng(seed), ROWS, n);
  eng.cudaSync();
  const t0 = now();
  const gh = new GpuHessian(eng, n);
  gh.add(X, ROWS);
  gh.finalize();
  eng.cudaSync();
  return { gh, X, seconds: now() - t0 };
}

const weight = (out, inF) => new Rng(out * 7 + inF).fillNormal(new Float32Array(out * inF), 0.02);

function gpuRun(name, out, inF, gh, hessianSeconds, extra = {}) {
  const W = weight(out, inF);
  const t = { prepare: 0, factor: 0, columns: 0, attempts: 0 };
  const t0 = now();
  const r = quantizeGPTQGpu(eng, W, out, inF, gh, { ...OPTS, ...extra }, t);
  const total = now() - t0;
  const row = { name, out, in: inF, ...extra, hessian: hessianSeconds, ...t, quantize: total, loss: r.loss };
  res.gpu.push(row);
  log(`${name.padEnd(28)} Hessian ${hessianSeconds.toFixed(3)} s | prepare ${t.prepare.toFixed(3)} s, factor ${t.factor.toFixed(3)} s (${t.attempts} attempt${t.attempts > 1 ? 's' : ''}), columns ${t.columns.toFixed(3)} s | quantize ${total.toFixed(3)} s`);
  return r;
}

const SHAPES = emulate ? [[64, 96], [128, 96], [96, 128]] : [[4096, 4096], [11008, 4096], [4096, 11008]];
// warm-up: cuBLAS handle, module loading, first allocations
{
  const w = deviceHessian(128, 1);
  quantizeGPTQGpu(eng, new Rng(2).fillNormal(new Float32Array(64 * 128)), 64, 128, w.gh, OPTS);
  w.gh.free();
}
const hess = new Map();
for (const [out, inF] of quick ? SHAPES.slice(0, 1) : SHAPES) {
  if (!hess.has(inF)) hess.set(inF, deviceHessian(inF, inF));
  const h = hess.get(inF);
  gpuRun(`${out}×${inF}`, out, inF, h.gh, h.seconds);
  if (out === inF) gpuRun(`${out}×${inF} act-order`, out, inF, h.gh, h.seconds, { actOrder: true });
}
for (const h of hess.values()) h.gh.free();

// ---- the CPU reference on a smaller shape, and the GPU on the same one ----
{
  const n = emulate ? 64 : Number(opt('--cpu-n') ?? 1024);
  const X = calibRows(new Rng(n), ROWS, n);
  let t0 = now();
  const acc = new HessianAccumulator(n);
  acc.add(X, ROWS);
  const H = acc.finalize();
  const cpuHessian = now() - t0;
  const W = weight(n, n);
  t0 = now();
  const ref = quantizeGPTQ(W, n, n, H, OPTS);
  const cpuQuant = now() - t0;
  const g = deviceHessian(n, n);
  const gpu = gpuRun(`${n}×${n} (CPU comparison)`, n, n, g.gh, g.seconds);
  g.gh.free();
  const a = unpackCodes(gpu.packed.qcodes, 2, n * n), b = unpackCodes(ref.packed.qcodes, 2, n * n);
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  const scale = (4096 / n) ** 3;
  res.cpu = { n, hessian: cpuHessian, quantize: cpuQuant, codesIdentical: same / a.length, lossRel: Math.abs(gpu.loss / ref.loss - 1),
    estimate4096: { quantize: cpuQuant * scale, hessian: cpuHessian * (4096 / n) ** 2, note: 'ESTIMATE: n³ (quantize) and n² (Hessian) scaling from the measured n, not a measurement' } };
  log(`CPU reference ${n}×${n}: Hessian ${cpuHessian.toFixed(3)} s, quantize ${cpuQuant.toFixed(3)} s; GPU codes identical ${(100 * same / a.length).toFixed(3)} %, loss rel ${res.cpu.lossRel.toExponential(2)}`);
  log(`CPU 4096×4096 ESTIMATE (×${scale.toFixed(0)} n³ scaling, not measured): quantize ≈ ${res.cpu.estimate4096.quantize.toFixed(0)} s`);
}

const f = (x) => x.toFixed(3);
const lines = [
  `# GPTQ on the GPU (W2 g64)`, '',
  `${res.date}, ${res.device ?? '?'} (cc ${res.cc ?? '?'}), cuBLAS ${res.cublas ?? '?'}${emulate ? ' — HOST EMULATOR SMOKE RUN, NOT A TIMING' : ''}. `
  + `Wall-clock seconds, one run per shape after a warm-up; stages end at a device synchronisation. Hessian: ${ROWS} calibration rows `
  + '(upload of the f32 rows + f32 GEMMs of 256 rows into f64; shared by the shapes with the same input size). '
  + 'prepare: W upload (f64) + transpose, dead columns, act-order permutation. factor: damped Cholesky, inverse, upper Cholesky '
  + 'of the inverse (f64, blocked: one-CTA diagonal blocks + cuBLAS Dtrsm/Dsyrk). columns: block kernels + lazy Dgemm updates + downloads. '
  + 'quantize: the whole quantizeGPTQGpu call (incl. host packing).', '',
  '| shape (out×in) | Hessian s | prepare s | factor s | columns s | quantize s |',
  '|---|---:|---:|---:|---:|---:|',
  ...res.gpu.map((r) => `| ${r.name} | ${f(r.hessian)} | ${f(r.prepare)} | ${f(r.factor)}${r.attempts > 1 ? ` (${r.attempts} attempts)` : ''} | ${f(r.columns)} | ${f(r.quantize)} |`),
  '',
  `CPU reference (src/quant/gptq.ts, f64 JavaScript, one thread) on ${res.cpu.n}×${res.cpu.n}: Hessian ${f(res.cpu.hessian)} s, `
  + `quantize ${f(res.cpu.quantize)} s. GPU on the same shape and data: ${(100 * res.cpu.codesIdentical).toFixed(3)} % identical codes, `
  + `loss relative difference ${res.cpu.lossRel.toExponential(2)}.`, '',
  `**Estimate, not a measurement:** the CPU reference on 4096×4096 would take ≈ ${res.cpu.estimate4096.quantize.toFixed(0)} s `
  + `(the ${res.cpu.n}×${res.cpu.n} time × ${((4096 / res.cpu.n) ** 3).toFixed(0)}, n³ scaling of the factorization and the column loop).`, '',
];
const text = lines.join('\n');
log('\n' + text);
if (opt('--md')) writeFileSync(opt('--md'), text);
if (opt('--json')) writeFileSync(opt('--json'), JSON.stringify(res, null, 1));
