#!/usr/bin/env node
// lowbit's GPU engine on the reference workload: one RILQ micro-step (batch 1 × 512 tokens,
// 0.5·MSE(final hidden) + 0.5·CE, backward into rank-64 LoRA on all 7 projections, Adam update) on a
// LLaMA-2-7B-shaped model with a packed RTN W2 g64 base (random codes and metadata made on the device).
// Compare with bench/torch_reference.py (HF transformers + PEFT on a fake-quant bf16 base) run in the same
// device session.
//   node bench/cuda-rilq.mjs [--json out.json] [--tiny] [--steps 10] [--warmup 3] [--seq 512] [--rank 64]
// Timing: wall clock around each step with a device sync at its end (the step ends by reading the loss
// anyway), median over --steps after --warmup. Memory: bytes lowbit allocated (weights + adapters + Adam
// + activations + scratch), and the device memory in use (incl. CUDA context, cuBLAS workspace) from cudaMemGetInfo.
import { writeFileSync } from 'node:fs';
import { gpuEngine, gpuUnavailable } from '../dist/src/model/gpu/engine.js';
import { randomGpuWeights } from '../dist/src/model/gpu/device-weights.js';
import { GpuLora } from '../dist/src/model/gpu/gpu-lora.js';
import { GpuLlama } from '../dist/src/model/gpu/gpu-llama.js';
import { allSiteSpecs, benchConfig, randomLoraParams } from './gpu-shapes.mjs';
import { GpuProfiler } from '../dist/src/model/gpu/profiler.js';

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const tiny = args.includes('--tiny');
const c = gpuEngine();
if (!c) { console.error(`cuda-rilq bench: ${gpuUnavailable()}`); process.exit(2); }
const mem0 = c.cudaMemInfo();
const cfg = benchConfig(tiny);
const T = Number(opt('--seq', tiny ? 256 : 512)), rank = Number(opt('--rank', 64)), alpha = 16;
const steps = Number(opt('--steps', 10)), warmup = Number(opt('--warmup', 3));
const log = (m) => console.log(m);

const t0 = performance.now();
const gw = randomGpuWeights(c, cfg, { layout: 'int', bits: 2, group: 64 }, 7);
const specs = allSiteSpecs(cfg, rank, alpha);
const lora = new GpuLora(c, specs);
lora.setParams(randomLoraParams(specs, 12345, 2, 0.02));  // A ~ U(±1/√in) (kaiming-uniform-like), B ~ U(±0.01)
let m = new GpuLlama(c, gw, lora);
m.prepare(1, T);
const ids = new Int32Array(T).map((_, i) => (i * 7919 + 17) % cfg.vocabSize);
const targets = new Int32Array(T).map((_, i) => (i + 1 < T ? ids[i + 1] : -100));
const teacher = new Float32Array(T * cfg.hiddenSize).map((_, i) => Math.sin(i * 0.37));
log(`setup ${((performance.now() - t0) / 1000).toFixed(1)} s: base ${(gw.baseBytes / 2 ** 30).toFixed(3)} GiB packed, ` +
  `adapters ${lora.n} params (${(lora.bytes / 2 ** 30).toFixed(3)} GiB with grads, Adam moments, bf16 copy), activations ${(m.activationBytes / 2 ** 30).toFixed(3)} GiB`);

const adam = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, coupledL2: false };
const phases = { fwd: [], fwdbwd: [], step: [] };
let loss = null;
function microStep(kind) {
  const s = performance.now();
  m.forward(ids, 1, T);
  if (kind === 'fwd') { c.cudaSync(); return performance.now() - s; }
  m.beginLoss(true);
  m.mseToTeacher(null, true, 0.5, 0);  // the teacher hidden stays on the device, as in the PyTorch reference
  m.lmHeadCe(targets, true, 0.5 / (T - 1), 1);
  m.backward();
  if (kind === 'step') { lora.adam(adam); lora.zeroGrad(); m.prof?.tick('adam'); }
  const l = m.readLoss();  // syncs
  loss = { mse: l[0] / (T * cfg.hiddenSize), ce: l[1] / (T - 1) };
  return performance.now() - s;
}
m.setTeacher(teacher);
const med = (a) => { const b = [...a].sort((x, y) => x - y); return b[b.length >> 1]; };
for (const kind of ['fwd', 'fwdbwd', 'step']) {
  for (let i = 0; i < warmup; i++) microStep(kind);
  for (let i = 0; i < steps; i++) phases[kind].push(microStep(kind));
}
const mem1 = c.cudaMemInfo();
const allocated = gw.baseBytes + lora.bytes + m.activationBytes + gw.maxWeight * 2 + cfg.vocabSize * cfg.hiddenSize * 4 + cfg.hiddenSize * 4 * (2 * cfg.numLayers + 1);
const res = {
  date: new Date().toISOString(), device: c.cudaInfo().deviceName, shape: tiny ? 'tiny' : 'llama-2-7b', T, rank, alpha,
  quant: 'RTN int2 g64 (random codes)', steps, warmup,
  ms: { forward: med(phases.fwd), forwardBackward: med(phases.fwdbwd), microStep: med(phases.step), microStepMin: Math.min(...phases.step) },
  all: phases, loss,
  memory: {
    allocatedGiB: allocated / 2 ** 30, baseGiB: gw.baseBytes / 2 ** 30, adaptersGiB: lora.bytes / 2 ** 30, activationsGiB: m.activationBytes / 2 ** 30,
    deviceInUseGiB: (mem0.free - mem1.free) / 2 ** 30,
  },
};
// where the time goes: one profiled micro-step (CUDA events between consecutive ops)
{
  const prof = new GpuProfiler(c);
  m.prof = prof;
  let totals;
  for (let i = 0; i < 3; i++) { prof.begin(); microStep('step'); totals = prof.end(); }
  m.prof = null;
  const tot = [...totals].map(([k, v]) => [k, v.ms / 3, v.calls / 3]).sort((a, b) => b[1] - a[1]);
  const sum = tot.reduce((a, x) => a + x[1], 0);
  res.profile = Object.fromEntries(tot.map(([k, ms, n]) => [k, { ms, calls: n }]));
  log(`profile (GPU ms per micro-step, events between ops; total ${sum.toFixed(2)}):`);
  for (const [k, ms, n] of tot) log(`  ${k.padEnd(14)} ${ms.toFixed(2).padStart(7)} ms  ${(100 * ms / sum).toFixed(1).padStart(5)} %  ${n} ops`);
  prof.free();
}
// The same micro-step replayed as one CUDA graph (forward + losses + backward; the Adam update, whose bias
// corrections change every step, stays a separate launch): no host launch overhead left.
try {
  m.setIds(ids, 1, T);
  m.setTargets(targets);
  const g = m.captureGraph(() => {
    m.forwardDevice(); m.beginLoss(true); m.mseToTeacher(null, true, 0.5, 0); m.lmHeadCeDevice(true, 0.5 / (T - 1), 1); m.backward();
  });
  const graphStep = () => {
    const s = performance.now();
    c.cudaGraphLaunch(g); lora.adam(adam); lora.zeroGrad();
    const l = m.readLoss();
    loss = { mse: l[0] / (T * cfg.hiddenSize), ce: l[1] / (T - 1) };
    return performance.now() - s;
  };
  for (let i = 0; i < warmup; i++) graphStep();
  const t = [];
  for (let i = 0; i < steps; i++) t.push(graphStep());
  res.ms.microStepGraph = med(t);
  res.ms.microStepGraphMin = Math.min(...t);
  c.cudaGraphFree(g);
  log(`micro-step as a CUDA graph (+ Adam): ${med(t).toFixed(2)} ms (min ${Math.min(...t).toFixed(2)}); loss mse ${loss.mse.toFixed(4)} ce ${loss.ce.toFixed(4)}`);
} catch (e) {
  res.graphError = String(e);
  log(`CUDA graph capture failed: ${e}`);
}
// A/B: the same step without one of the optimisations (each on a fresh GpuLlama sharing weights and adapters)
if (!args.includes('--no-ab')) {
  res.ablation = {};
  for (const [name, env, val] of [['one GEMM per adapter (LOWBIT_GPU_LORA_GROUP=0)', 'LOWBIT_GPU_LORA_GROUP', '0'], ['split-K LoRA GEMMs (LOWBIT_GPU_SPLITK=1)', 'LOWBIT_GPU_SPLITK', '1'],
    ['activation recomputation (LOWBIT_GPU_RECOMPUTE=1)', 'LOWBIT_GPU_RECOMPUTE', '1']]) {
    m.free();
    process.env[env] = val;
    m = new GpuLlama(c, gw, lora);
    delete process.env[env];
    m.prepare(1, T);
    m.setTeacher(teacher);
    const t = [];
    for (let i = 0; i < warmup; i++) microStep('step');
    for (let i = 0; i < steps; i++) t.push(microStep('step'));
    res.ablation[name] = { ms: med(t), activationsGiB: m.activationBytes / 2 ** 30 };
    log(`micro-step with ${name}: ${med(t).toFixed(2)} ms, activations ${(m.activationBytes / 2 ** 30).toFixed(3)} GiB`);
  }
}
log(`forward ${res.ms.forward.toFixed(2)} ms, forward+backward ${res.ms.forwardBackward.toFixed(2)} ms, micro-step (with Adam) ${res.ms.microStep.toFixed(2)} ms (min ${res.ms.microStepMin.toFixed(2)})`);
log(`memory: allocated ${res.memory.allocatedGiB.toFixed(2)} GiB, device in use (incl. context, cuBLAS) ${res.memory.deviceInUseGiB.toFixed(2)} GiB; loss mse ${loss.mse.toFixed(4)} ce ${loss.ce.toFixed(4)}`);
const out = opt('--json');
if (out) writeFileSync(out, JSON.stringify(res, null, 1) + '\n');
m.free(); lora.free(); gw.free();
