#!/usr/bin/env node
// bf16 GEMM on the GPU through the addon's cuBLAS (dlopen) path. Two modes:
//   node bench/cuda-gemm.mjs --json ours.json                  time our GEMMs, write JSON
//   node bench/cuda-gemm.mjs --report ours.json torch.json --md out.md   merge with PyTorch's, write markdown
// The addon is LOWBIT_ADDON (default build/device/lowbit.node, then build/lowbit.node). Plain .mjs so
// it runs on the GPU machine without the TypeScript build.
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name) => { const i = process.argv.indexOf(name); return i >= 0 ? process.argv[i + 1] : undefined; };

// Shared with bench/cuda_gemm_torch.py: same names, shapes and transposes.
export const SHAPES = [
  { name: 'square 4096', M: 4096, N: 4096, K: 4096, ta: false, tb: false },
  { name: 'square 8192', M: 8192, N: 8192, K: 8192, ta: false, tb: false },
  { name: 'LLaMA-7B q/k/v/o: 512 x (4096x4096)ᵀ', M: 512, N: 4096, K: 4096, ta: false, tb: true },
  { name: 'LLaMA-7B gate/up: 512 x (11008x4096)ᵀ', M: 512, N: 11008, K: 4096, ta: false, tb: true },
  { name: 'LLaMA-7B down: 512 x (4096x11008)ᵀ', M: 512, N: 4096, K: 11008, ta: false, tb: true },
];
const ITERS = 100;
const tflops = (s, ms) => (2 * s.M * s.N * s.K) / (ms * 1e-3) / 1e12;

function bench(jsonPath) {
  const file = process.env.LOWBIT_ADDON ? path.resolve(process.env.LOWBIT_ADDON)
    : [path.join(root, 'build/device/lowbit.node'), path.join(root, 'build/lowbit.node')].find(existsSync);
  if (!file || !existsSync(file)) throw new Error(`addon not found (${file ?? 'build/device/lowbit.node'}); set LOWBIT_ADDON`);
  const addon = createRequire(import.meta.url)(file);
  if (typeof addon.cudaInfo !== 'function') throw new Error(`${file} was built without CUDA`);
  const dev = addon.cudaInfo();
  if (!dev.deviceCount) throw new Error(`no CUDA device: ${dev.error}`);
  const cublas = addon.cublasInfo();
  if (!cublas.loaded) throw new Error(`cuBLAS: ${cublas.error}`);
  console.log(`addon ${file}: ${dev.deviceName} (sm ${dev.computeCapability}), cuBLAS ${cublas.version}`);
  const results = [];
  for (const s of SHAPES) {
    // Three timed runs of ITERS calls each; keep the median of their medians.
    const runs = [0, 1, 2].map(() => addon.cudaBenchGemm(s.M, s.N, s.K, ITERS, s.ta, s.tb)).sort((a, b) => a - b);
    const ms = runs[1];
    results.push({ ...s, ms, tflops: tflops(s, ms) });
    console.log(`${s.name.padEnd(40)} ${ms.toFixed(4)} ms  ${tflops(s, ms).toFixed(1)} TFLOP/s`);
  }
  writeFileSync(jsonPath, JSON.stringify({ device: dev, cublasVersion: cublas.version, addon: file, iters: ITERS, results }, null, 2));
}

function report(oursPath, torchPath, mdPath) {
  const ours = JSON.parse(readFileSync(oursPath, 'utf8'));
  const torch = existsSync(torchPath) ? JSON.parse(readFileSync(torchPath, 'utf8')) : null;
  const L = [];
  L.push('# CUDA bf16 GEMM: lowbit (cuBLAS via dlopen) vs PyTorch', '');
  L.push(`- date: ${new Date().toISOString()}`);
  L.push(`- device: ${ours.device.deviceName} (compute capability ${ours.device.computeCapability}), cuBLAS ${ours.cublasVersion} (dlopen libcublas.so.13)`);
  if (torch) L.push(`- PyTorch ${torch.torch} (CUDA ${torch.cuda}), torch.matmul on bf16 tensors`);
  L.push(`- method: bf16 A/B with random values, bf16 C, fp32 accumulate (CUBLAS_COMPUTE_32F); warmup, then ${ours.iters} back-to-back calls with a CUDA event between each; median per call (ours: median of 3 such runs). Same on both sides.`);
  L.push('- command on the GPU machine: `source .device/on-device.sh && bash bench/run-cuda-gemm.sh`', '');
  L.push('| shape | op | M | N | K | lowbit ms | lowbit TFLOP/s | PyTorch ms | PyTorch TFLOP/s | lowbit / PyTorch |');
  L.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of ours.results) {
    const t = torch?.results.find((x) => x.name === r.name);
    const op = `${r.ta ? 'T' : 'N'}${r.tb ? 'T' : 'N'}`;
    L.push(`| ${r.name} | ${op} | ${r.M} | ${r.N} | ${r.K} | ${r.ms.toFixed(4)} | ${r.tflops.toFixed(1)} | ${t ? t.ms.toFixed(4) : '—'} | ${t ? t.tflops.toFixed(1) : '—'} | ${t ? (r.tflops / t.tflops).toFixed(2) : '—'} |`);
  }
  if (!torch) L.push('', `PyTorch: not measured (${torchPath} missing)`);
  L.push('');
  mkdirSync(path.dirname(path.resolve(mdPath)), { recursive: true });
  writeFileSync(mdPath, L.join('\n'));
  console.log(L.join('\n'));
}

if (process.argv.includes('--report')) {
  const i = process.argv.indexOf('--report');
  report(process.argv[i + 1], process.argv[i + 2], arg('--md') ?? path.join(root, 'bench/results/cuda-gemm.md'));
} else {
  bench(arg('--json') ?? 'cuda-gemm-ours.json');
}
