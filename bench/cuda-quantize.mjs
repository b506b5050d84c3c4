#!/usr/bin/env node
// Quantizing one LLaMA-7B-shaped weight on the GPU (quantizeWeightGpu) vs the TypeScript quantizer on the CPU:
// RTN2 g64, NF2 + double quantization, ICQ-NF2 + double quantization on 4096×4096 and 11008×4096 (random
// N(0, 0.02²) weights with 1 % outliers).
//   node bench/cuda-quantize.mjs [--md out.md] [--json out.json] [--reps 3] [--cpu-rows 64] [--quick] [--emulate]
// --emulate runs on the host emulator of the kernels (test/helpers/host-quantize.ts) on one small shape: a smoke
// check of this script, not a timing.
// Needs dist/ and the addon with CUDA (LOWBIT_ADDON=… for another build).
// GPU numbers: `kernels` = CUDA events from the first quantizer kernel to the end of the packing kernel (the
// weight already on the device); `call` = wall time of the whole quantizeWeightGpu call (upload of W, kernels,
// downloads of the packed codes and metadata; allocations included); median of --reps after one warmup.
// CPU numbers: wall time of quantizeWeight on one thread. ICQ on the CPU takes minutes at these sizes, so it is
// timed on the first --cpu-rows rows and scaled by rows (its cost is linear in blocks); marked "extrapolated".
// Every GPU result on the timed CPU rows is checked bit-identical to the CPU's.
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Rng } from '../dist/src/tensor.js';
import { cudaQuantizer, cudaQuantizerUnavailable } from '../dist/src/backend/cuda-quantize.js';
import { quantizeWeightGpu } from '../dist/src/quant/quantize-gpu.js';
import { quantizeWeight } from '../dist/src/quant/quantizer.js';

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const quick = args.includes('--quick');
const reps = Number(opt('--reps', quick ? 1 : 3));
const cpuRows = Number(opt('--cpu-rows', 64));
const mdPath = opt('--md', 'bench/results/cuda-quantize.md'), jsonPath = opt('--json', 'bench/results/cuda-quantize.json');
const emulate = args.includes('--emulate');
const c = emulate ? (await import('../dist/test/helpers/host-quantize.js')).hostQuantizer() : cudaQuantizer();
if (!c) { console.error(`cuda-quantize bench: ${cudaQuantizerUnavailable()}`); process.exit(2); }
const info = c.cudaInfo();
const log = (m) => console.log(m);

const SHAPES = emulate ? [['small', 40, 256]] : quick ? [['q/k/v/o', 4096, 4096]] : [['q/k/v/o', 4096, 4096], ['gate/up', 11008, 4096]];
const METHODS = [
  ['rtn2 g64', { method: 'rtn', bits: 2, groupSize: 64 }, false],
  ['nf2 b64 DQ', { method: 'nf', bits: 2, groupSize: 64, doubleQuant: true }, false],
  ['icq-nf2 b64 DQ', { method: 'icq', icqMode: 'nf', bits: 2, groupSize: 64, doubleQuant: true }, true],
];
const KERNELS = new Set(['cudaQuantInt', 'cudaQuantBlockwise', 'cudaIcqNf', 'cudaAbsmaxMean', 'cudaTauDq', 'cudaPackCodes']);

/** The engine with CUDA events around its quantizer kernels: from the first kernel to the end of packing. */
function timedEngine() {
  const ev = { a: c.cudaEventNew(), b: c.cudaEventNew(), begun: false };
  const e = new Proxy(c, {
    get(target, k) {
      const v = target[k];
      if (typeof v !== 'function') return v;
      if (!KERNELS.has(k)) return v.bind(target);
      return (...a) => {
        if (!ev.begun) { target.cudaEventRecord(ev.a); ev.begun = true; }
        const r = v.apply(target, a);
        if (k === 'cudaPackCodes') target.cudaEventRecord(ev.b);
        return r;
      };
    },
  });
  return { e, ms: () => { c.cudaSync(); const m = c.cudaEventMs(ev.a, ev.b); ev.begun = false; return m; },
    free: () => { c.cudaEventFree(ev.a); c.cudaEventFree(ev.b); } };
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
function weight(rng, n) {
  const W = new Float32Array(n);
  for (let i = 0; i < n; i++) { let w = 0.02 * rng.normal(); if (rng.next() < 0.01) w *= 5 + 15 * rng.next(); W[i] = w; }
  return W;
}
function sameTensor(a, b) {
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[k], y = b[k];
    if (ArrayBuffer.isView(x) && ArrayBuffer.isView(y)) {
      if (x.length !== y.length) return `${k}: length`;
      for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return `${k}[${i}]`;
    } else if (!Object.is(x, y)) return k;
  }
  return null;
}

const rows = [];
const rng = new Rng(7);
const t = timedEngine();
for (const [sname, out, inF] of SHAPES) {
  const W = weight(rng, out * inF);
  for (const [mname, opts, slowCpu] of METHODS) {
    quantizeWeightGpu(t.e, W, out, inF, opts); t.ms();  // warmup
    const kern = [], call = [];
    let packedBytes = 0;
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      const p = quantizeWeightGpu(t.e, W, out, inF, opts);
      call.push(performance.now() - t0);
      kern.push(t.ms());
      packedBytes = p.qcodes.length;
    }
    // CPU: the whole weight, or (ICQ) its first cpuRows rows scaled by rows
    const r = slowCpu ? Math.min(cpuRows, out) : out;
    const Ws = W.subarray(0, r * inF);
    const t1 = performance.now();
    const want = quantizeWeight(Ws, r, inF, opts);
    const cpuMs = (performance.now() - t1) * (out / r);
    const got = quantizeWeightGpu(c, Ws, r, inF, opts);
    const diff = sameTensor(got, want);
    const row = { shape: sname, out, in: inF, method: mname, gpuKernelMs: median(kern), gpuCallMs: median(call),
      cpuMs, cpuExtrapolatedFromRows: r < out ? r : null, identical: diff === null, firstDifference: diff, packedBytes };
    rows.push(row);
    log(`${sname} ${out}x${inF} ${mname}: GPU kernels ${row.gpuKernelMs.toFixed(2)} ms, call ${row.gpuCallMs.toFixed(1)} ms; ` +
      `CPU ${(cpuMs / 1000).toFixed(2)} s${r < out ? ` (extrapolated from ${r} rows)` : ''}; ` +
      `speed-up ${(cpuMs / row.gpuCallMs).toFixed(0)}x (call), ${(cpuMs / row.gpuKernelMs).toFixed(0)}x (kernels); ${diff === null ? 'bit-identical' : `DIFFERS at ${diff}`}`);
  }
}
t.free();

const res = { date: new Date().toISOString(), device: info.deviceName, cc: info.computeCapability, reps, cpuRows, rows };
const md = [
  '# Quantizing on the GPU: quantizeWeightGpu vs the TypeScript quantizers',
  '',
  `${res.date}, ${res.device} (cc ${res.cc}); \`node bench/cuda-quantize.mjs\`. Random N(0, 0.02²) weights with 1 % outliers.`,
  'GPU kernels: CUDA events from the first quantizer kernel to the end of code packing (weight on the device).',
  'GPU call: wall time of quantizeWeightGpu (upload of W, kernels, download of the packed tensor). CPU: quantizeWeight,',
  'one thread; ICQ timed on the first rows and scaled (marked *). "identical": GPU = CPU bit for bit on the rows timed on the CPU.',
  '',
  '| shape | method | GPU kernels ms | GPU call ms | CPU s | speed-up (call) | identical |',
  '|---|---|---:|---:|---:|---:|---|',
  ...rows.map((r) => `| ${r.out}×${r.in} | ${r.method} | ${r.gpuKernelMs.toFixed(2)} | ${r.gpuCallMs.toFixed(1)} | ` +
    `${(r.cpuMs / 1000).toFixed(2)}${r.cpuExtrapolatedFromRows ? '*' : ''} | ${(r.cpuMs / r.gpuCallMs).toFixed(0)}× | ${r.identical ? 'yes' : `no (${r.firstDifference})`} |`),
  '',
];
for (const [p, text] of [[mdPath, md.join('\n')], [jsonPath, JSON.stringify(res, null, 1) + '\n']]) {
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
}
log(`wrote ${mdPath}, ${jsonPath}`);
if (rows.some((r) => !r.identical)) process.exit(1);
