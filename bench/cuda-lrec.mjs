#!/usr/bin/env node
// LREC on the GPU engine against RILQ on the same micro-step (batch 1 × T tokens, backward into rank-64 LoRA on all 7
// projections, Adam) of a LLaMA-2-7B-shaped model with a packed RTN W2 g64 base (random codes made on the device):
// what the teacher logits and the fused KL + CE cost over RILQ's MSE + CE. Each step is one CUDA graph (forward +
// loss + backward) + the Adam launch + the loss read; the loss parts alone (lm_head GEMMs + row kernels + dHidden
// GEMM) are timed the same way.
//   node bench/cuda-lrec.mjs [--json out.json] [--tiny] [--seq 512] [--rank 64] [--steps 10] [--warmup 3] [--emulate]
// --emulate runs on the host emulator of the engine (test/helpers/host-engine.ts): a smoke check, not a timing.
import { writeFileSync } from 'node:fs';
import { gpuEngine, gpuUnavailable, useGpuEngine } from '../dist/src/model/gpu/engine.js';
import { cudaKlCeUnavailable, klCeMissing } from '../dist/src/backend/cuda-kl-ce.js';
import { randomGpuWeights } from '../dist/src/model/gpu/device-weights.js';
import { GpuLora } from '../dist/src/model/gpu/gpu-lora.js';
import { GpuLlama } from '../dist/src/model/gpu/gpu-llama.js';
import { lrecDefaultCeWeight } from '../dist/src/train/objectives/lrec.js';
import { allSiteSpecs, benchConfig, randomLoraParams } from './gpu-shapes.mjs';

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const tiny = args.includes('--tiny');
if (args.includes('--emulate')) useGpuEngine((await import('../dist/test/helpers/host-engine.js')).hostEngine());
const c = gpuEngine();
if (!c) { console.error(`cuda-lrec bench: ${gpuUnavailable()}`); process.exit(2); }
if (klCeMissing(c)) { console.error(`cuda-lrec bench: ${cudaKlCeUnavailable()}`); process.exit(2); }
const cfg = benchConfig(tiny);
const T = Number(opt('--seq', tiny ? 256 : 512)), rank = Number(opt('--rank', 64));
const steps = Number(opt('--steps', 10)), warmup = Number(opt('--warmup', 3));
const log = (m) => console.log(m);

const gw = randomGpuWeights(c, cfg, { layout: 'int', bits: 2, group: 64 }, 7);
const specs = allSiteSpecs(cfg, rank, 16);
const lora = new GpuLora(c, specs);
lora.setParams(randomLoraParams(specs, 12345, 2, 0.02));
const m = new GpuLlama(c, gw, lora, { distill: true });
const ids = new Int32Array(T).map((_, i) => (i * 7919 + 17) % cfg.vocabSize);
const targets = new Int32Array(T).map((_, i) => (i + 1 < T ? ids[i + 1] : -100));
const teacher = new Float32Array(T * cfg.hiddenSize).map((_, i) => Math.sin(i * 0.37));
m.setIds(ids, 1, T);
const count = m.setTargets(targets);
m.setTeacher(teacher);
const N = T, D = cfg.hiddenSize, V = cfg.vocabSize, rows = Math.min(m.chunkRows, N);
const wc = lrecDefaultCeWeight(T);
const adam = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 1e-5, coupledL2: true };
const med = (a) => { const b = [...a].sort((x, y) => x - y); return b[b.length >> 1]; };

// the teacher lm_head is the student's buffer (lowbit never quantizes it; see GpuLrecObjective)
const works = {
  'rilq step (MSE + CE)': () => { m.forwardDevice(); m.beginLoss(true); m.mseToTeacher(null, true, 0.5, 0); m.lmHeadCeDevice(true, 0.5 / count, 1); m.backward(); },
  'lrec step (KL + CE)': () => { m.forwardDevice(); m.beginLoss(true); m.lmHeadKlCeDevice(gw.lmHead, true, 1, wc / count, 0, 1); m.backward(); },
  'rilq loss only (lm_head + CE, grad)': () => { m.beginLoss(true); m.mseToTeacher(null, true, 0.5, 0); m.lmHeadCeDevice(true, 0.5 / count, 1); },
  'lrec loss only (2 lm_heads + KL/CE, grad)': () => { m.beginLoss(true); m.lmHeadKlCeDevice(gw.lmHead, true, 1, wc / count, 0, 1); },
};
const res = {
  date: new Date().toISOString(), device: c.cudaInfo().deviceName, shape: tiny ? 'tiny' : 'llama-2-7b', T, rank, steps, warmup,
  chunkRows: rows, extraDistillBytes: N * D * 2 + rows * V * 4, ms: {}, loss: {},
};
m.forwardDevice();  // the loss-only graphs read the final hidden of a forward
for (const [name, work] of Object.entries(works)) {
  const g = m.captureGraph(work);
  const withAdam = name.includes('step');
  const one = () => {
    const s = performance.now();
    m.launchGraph(g);
    if (withAdam) { lora.adam(adam); lora.zeroGrad(); }
    const l = m.readLoss();  // syncs
    res.loss[name] = Array.from(l.subarray(0, 2));
    return performance.now() - s;
  };
  for (let i = 0; i < warmup; i++) one();
  const t = [];
  for (let i = 0; i < steps; i++) t.push(one());
  res.ms[name] = { median: med(t), min: Math.min(...t) };
  c.cudaGraphFree(g);
  log(`${name.padEnd(44)} ${med(t).toFixed(2).padStart(8)} ms (min ${Math.min(...t).toFixed(2)})${withAdam ? ' + Adam' : ''}`);
}
const [r, l] = [res.ms['rilq step (MSE + CE)'].median, res.ms['lrec step (KL + CE)'].median];
log(`LREC micro-step ${l.toFixed(2)} ms vs RILQ ${r.toFixed(2)} ms (+${(100 * (l / r - 1)).toFixed(1)} %); distillation buffers ` +
  `${(res.extraDistillBytes / 2 ** 20).toFixed(1)} MiB (teacher hidden bf16 + one chunk of ${rows} teacher logit rows); ` +
  `lrec loss: KL sum ${res.loss['lrec step (KL + CE)'][0].toFixed(2)}, CE mean ${(res.loss['lrec step (KL + CE)'][1] / count).toFixed(4)}`);
const out = opt('--json');
if (out) writeFileSync(out, JSON.stringify(res, null, 1) + '\n');
m.free(); lora.free(); gw.free();
