#!/usr/bin/env node
// CUDA causal GQA flash attention (native/cuda/flash_attention.cu): forward and backward time and achieved TFLOP/s
// on the LLaMA-2-7B (MHA) and LLaMA-3-8B (GQA) attention shapes and the tiny test model.
//   node bench/cuda-attention.mjs [--reps N] [--md path]
// Needs the compiled TypeScript (dist/) and the addon with CUDA (LOWBIT_ADDON=… for another build).
// Timing (cuda_bench_attention): random bf16 inputs, 2 warmup calls, then `reps` calls each between CUDA events
// on stream 0, median. The backward time includes its dq zeroing and the delta pre-kernel.
// FLOPs counted: causal forward 4·B·Hq·D·T²/2, backward 2.5× that.
// Writes bench/results/cuda-attention.md (or --md), and $OUT/cuda-attention.json (+ .md) when OUT is set.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { attentionFwdFlops, cudaAttention, cudaAttentionUnavailable } from '../dist/src/backend/cuda-attention.js';

const args = process.argv.slice(2);
const opt = (k) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : undefined; };
const reps = Number(opt('--reps') ?? 50);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const mdPath = opt('--md') ?? path.join(root, 'bench/results/cuda-attention.md');

const c = cudaAttention();
if (!c) { console.error(`cuda-attention bench: ${cudaAttentionUnavailable()}`); process.exit(2); }
const info = c.cudaInfo();

const SHAPES = [
  { name: 'LLaMA-2-7B (MHA)', B: 1, T: 512, Hq: 32, Hkv: 32, D: 128 },
  { name: 'LLaMA-2-7B (MHA)', B: 1, T: 2048, Hq: 32, Hkv: 32, D: 128 },
  { name: 'LLaMA-3-8B (GQA 4)', B: 1, T: 512, Hq: 32, Hkv: 8, D: 128 },
  { name: 'LLaMA-3-8B (GQA 4)', B: 1, T: 2048, Hq: 32, Hkv: 8, D: 128 },
  { name: 'tiny model', B: 1, T: 256, Hq: 8, Hkv: 4, D: 32 },
  { name: 'tiny model', B: 16, T: 256, Hq: 8, Hkv: 4, D: 32 },
];

const rows = [];
for (const s of SHAPES) {
  const { fwdMs, bwdMs } = c.cudaBenchAttention(s.B, s.T, s.Hq, s.Hkv, s.D, reps);
  const f = attentionFwdFlops(s.B, s.T, s.Hq, s.D);
  const row = { ...s, fwdMs, bwdMs, fwdTflops: f / (fwdMs * 1e-3) / 1e12, bwdTflops: (2.5 * f) / (bwdMs * 1e-3) / 1e12 };
  rows.push(row);
  console.log(`${s.name.padEnd(20)} B=${s.B} T=${s.T} Hq=${s.Hq} Hkv=${s.Hkv} D=${s.D}: fwd ${fwdMs.toFixed(3)} ms ` +
    `(${row.fwdTflops.toFixed(1)} TFLOP/s), bwd ${bwdMs.toFixed(3)} ms (${row.bwdTflops.toFixed(1)} TFLOP/s)`);
}

const date = new Date().toISOString();
const md = [
  '# CUDA causal GQA flash attention',
  '',
  `${date.slice(0, 10)}, ${info.deviceName ?? 'unknown device'} (sm ${info.computeCapability ?? '?'}), \`node bench/cuda-attention.mjs\`, median of ${reps} calls.`,
  '',
  'Kernels: native/cuda/flash_attention.cu (bf16 mma.sync m16n8k16, fp32 accumulate; forward 64×64 tiles; backward',
  '64-key blocks over the query heads of the group, P and dS as hi+lo bf16 pairs, dQ by fp32 atomics, under-filled',
  'grids (GQA) split over up to group-size blocks with partial dK/dV summed after). Random bf16 inputs, Tq = Tk = T.',
  'FLOPs counted: causal forward 4·B·Hq·D·T²/2, backward 2.5× that. Backward time includes zeroing dq and the',
  'delta = rowsum(dout∘out) pre-kernel.',
  '',
  '| shape | B | T | Hq | Hkv | D | fwd ms | fwd TFLOP/s | bwd ms | bwd TFLOP/s |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.name} | ${r.B} | ${r.T} | ${r.Hq} | ${r.Hkv} | ${r.D} | ${r.fwdMs.toFixed(3)} | ` +
    `${r.fwdTflops.toFixed(1)} | ${r.bwdMs.toFixed(3)} | ${r.bwdTflops.toFixed(1)} |`),
  '',
].join('\n');
mkdirSync(path.dirname(mdPath), { recursive: true });
writeFileSync(mdPath, md);
console.log(`wrote ${path.relative(process.cwd(), mdPath) || mdPath}`);
if (process.env.OUT) {
  mkdirSync(process.env.OUT, { recursive: true });
  const json = { date, device: info.deviceName, cc: info.computeCapability, reps, rows };
  writeFileSync(path.join(process.env.OUT, 'cuda-attention.json'), JSON.stringify(json, null, 2));
  writeFileSync(path.join(process.env.OUT, 'cuda-attention.md'), md);
}
