// RILQ adapter training on the GPU engine's code path — GpuRilqObjective (each window replayed as a CUDA graph)
// and the device-resident GpuAdam, driven by the same trainer — against the CPU path (RilqObjective + AdamW), on
// the host emulator of the engine (test/helpers/host-engine.ts), so it runs in CI. Same model, windows, teacher,
// init and schedule; the GPU path keeps activations in bf16, so the loss curves agree to bf16 level, not bitwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { LlamaModel, LlamaWeights } from '../src/model/llama.js';
import { DenseLinear } from '../src/model/linear.js';
import { PackedLinear } from '../src/quant/packed-linear.js';
import { quantizeRTN } from '../src/quant/rtn.js';
import { attachLora, loraParams } from '../src/adapters/lora.js';
import { initGaussian } from '../src/adapters/init.js';
import { TeacherCache } from '../src/train/teacher-cache.js';
import { RilqObjective } from '../src/train/objectives/rilq.js';
import { GpuRilqObjective } from '../src/train/objectives/rilq-gpu.js';
import { LayerScopeObjective, LinearScopeObjective } from '../src/train/objectives/scopes.js';
import { GpuLayerScopeObjective, GpuLinearScopeObjective } from '../src/train/objectives/scopes-gpu.js';
import { GpuAdam } from '../src/train/gpu-adam.js';
import { trainAdapters, type TrainOptions } from '../src/train/trainer.js';
import { uploadWeights } from '../src/model/gpu/device-weights.js';
import { GpuLora, loraSiteSpecs } from '../src/model/gpu/gpu-lora.js';
import { GpuLlama } from '../src/model/gpu/gpu-llama.js';
import { bf, relErr, smallConfig } from './helpers/gpu-model.js';
import { hostEngine } from './helpers/host-engine.js';
import { gpuEngine, gpuUnavailable, type GpuEngine } from '../src/model/gpu/engine.js';

const cfg = smallConfig(128);

function fpWeights(): LlamaWeights {
  const w = LlamaWeights.initRandom(cfg, new Rng(17), 'f32', 0.08);
  w.embed.set(bf(w.embed));
  (w.lmHead as DenseLinear).weight.set(bf((w.lmHead as DenseLinear).weight));
  for (const [, , lin] of w.linears()) (lin as DenseLinear).weight.set(bf((lin as DenseLinear).weight));
  return w;
}

/** The 2-bit student: every projection packed (RTN g32), a rank-4 LoRA with RILQ's gaussian init. */
function student(): LlamaWeights {
  const w = fpWeights();
  for (const [l, p, lin] of [...w.linears()]) {
    const d = lin as DenseLinear;
    w.setLinear(l, p, new PackedLinear(quantizeRTN(d.weight, d.outFeatures, d.inFeatures, { bits: 2, groupSize: 32 })));
  }
  const rng = new Rng(23);
  for (const s of attachLora(w, 'comp', { r: 4, alpha: 16 })) { const a = s.lin.get('comp'); initGaussian(a, rng); a.A.set(bf(a.A)); }
  return w;
}

test('host emulator: RILQ training through the GPU objective (graphs) and device Adam follows the CPU trainer', (t) => {
  const T = 24, rng = new Rng(5);
  // windows with a learnable pattern (each token determined by the previous one)
  const windows = Array.from({ length: 12 }, () => { const a = rng.int(cfg.vocabSize); return Int32Array.from({ length: T }, (_, i) => (a + 7 * i) % cfg.vocabSize); });
  const trainIdx = [...Array(10).keys()], valIdx = [10, 11];
  const cache = new TeacherCache(new LlamaModel(fpWeights()), windows);
  cache.fill();
  const opts: TrainOptions = { lr: 5e-3, gradAccum: 2, maxSteps: 12, evalEvery: 2, patience: 0, quiet: true, seed: 3 };
  // CPU
  const sc = student();
  const cpu = trainAdapters(loraParams(sc, 'comp'), new RilqObjective(new LlamaModel(sc), cache), windows, trainIdx, valIdx, opts);
  // GPU code path on the emulator
  const sg = student(), c = hostEngine();
  const specs = loraSiteSpecs(sg, 'comp');
  const gw = uploadWeights(c, sg), lora = new GpuLora(c, specs), gm = new GpuLlama(c, gw, lora);
  const obj = new GpuRilqObjective(gm, cache);
  const callsBefore = c.calls;
  const gpu = trainAdapters(loraParams(sg, 'comp'), obj, windows, trainIdx, valIdx, { ...opts, optimizer: (ps, o) => new GpuAdam(lora, ps, o) });
  const calls = c.calls - callsBefore;
  obj.free(); gm.free(); lora.free(); gw.free();
  assert.equal(c.live(), 0, 'every device buffer freed');
  assert.equal(gpu.updates, cpu.updates);
  const tc = cpu.log.filter((e) => e.train !== undefined).map((e) => e.train!), tg = gpu.log.filter((e) => e.train !== undefined).map((e) => e.train!);
  const vc = cpu.log.filter((e) => e.val !== undefined).map((e) => e.val!), vg = gpu.log.filter((e) => e.val !== undefined).map((e) => e.val!);
  const worst = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x / b[i] - 1)));
  const pc = loraParams(sc, 'comp'), pg = loraParams(sg, 'comp');
  const flat = (ps: typeof pc) => Float32Array.from(ps.flatMap((p) => Array.from(p.data)));
  // what training changed: the update of the adapters on each path
  const init = flat(loraParams(student(), 'comp')), dc = flat(pc).map((x, i) => x - init[i]), dg = flat(pg).map((x, i) => x - init[i]);
  const eDelta = relErr(dg, dc);
  t.diagnostic(`train losses ${tg.map((x) => x.toFixed(4)).join(' ')} vs ${tc.map((x) => x.toFixed(4)).join(' ')}; val ${vg.map((x) => x.toFixed(4)).join(' ')} vs ${vc.map((x) => x.toFixed(4)).join(' ')}; adapter updates differ by ${eDelta.toExponential(2)}; ${calls} recorded op calls`);
  assert.ok(Math.min(...vc.slice(1)) < vc[0], `the CPU run learns: ${vc.join(' ')}`);
  assert.ok(worst(tg, tc) < 2e-2, `train losses ${tg} vs ${tc}`);
  assert.ok(worst(vg, vc) < 2e-2, `val losses ${vg} vs ${vc}`);
  assert.ok(eDelta < 0.3, `the adapter updates differ by ${eDelta} (relative)`);
  // graphs: 12 train windows + 7 validations × 2 windows ran, but the work was recorded only twice (one graph each
  // for grad/no-grad); every later window is a replay, which issues no per-op calls
  assert.ok(calls < 6 * 200, `${calls} recorded op calls: windows are replayed, not re-issued`);
});

for (const onDevice of [false, true]) test(`${onDevice ? 'CUDA' : 'host emulator'}: the layer scope (RILQ §5) through the GPU objective follows the CPU LayerScopeObjective`, (t) => {
  const c: (GpuEngine & { live?: () => number }) | null = onDevice ? gpuEngine() : hostEngine();
  if (!c) { t.skip(gpuUnavailable()); return; }
  const T = 16, rng = new Rng(9);
  const windows = Array.from({ length: 6 }, () => { const a = rng.int(cfg.vocabSize); return Int32Array.from({ length: T }, (_, i) => (a + 5 * i) % cfg.vocabSize); });
  const trainIdx = [...Array(6).keys()], valIdx = [0, 1];  // seen windows: the loss must go down on them
  const opts: TrainOptions = { lr: 1e-3, gradAccum: 2, maxSteps: 8, evalEvery: 2, patience: 0, quiet: true, seed: 4 };
  const teacher = new LlamaModel(fpWeights());
  const sc = student();
  const cpu = trainAdapters(loraParams(sc, 'comp'), new LayerScopeObjective(new LlamaModel(sc), teacher), windows, trainIdx, valIdx, opts);
  const sg = student(), live0 = c.live?.() ?? 0;
  const specs = loraSiteSpecs(sg, 'comp');
  const gw = uploadWeights(c, sg), tw = uploadWeights(c, teacher.weights), lora = new GpuLora(c, specs);
  const gm = new GpuLlama(c, gw, lora), tm = new GpuLlama(c, tw);
  const obj = new GpuLayerScopeObjective(gm, tm);
  const gpu = trainAdapters(loraParams(sg, 'comp'), obj, windows, trainIdx, valIdx, { ...opts, optimizer: (ps, o) => new GpuAdam(lora, ps, o) });
  obj.free(); gm.free(); tm.free(); lora.free(); gw.free(); tw.free();
  if (c.live) assert.equal(c.live(), live0, 'every device buffer freed');
  assertFollowsCpu(t, 'layer scope', cpu, gpu, sc, sg);
});

for (const onDevice of [false, true]) test(`${onDevice ? 'CUDA' : 'host emulator'}: the linear scope (RILQ §5) through the GPU objective follows the CPU LinearScopeObjective`, (t) => {
  const c: (GpuEngine & { live?: () => number }) | null = onDevice ? gpuEngine() : hostEngine();
  if (!c) { t.skip(gpuUnavailable()); return; }
  const T = 16, rng = new Rng(11);
  const windows = Array.from({ length: 6 }, () => { const a = rng.int(cfg.vocabSize); return Int32Array.from({ length: T }, (_, i) => (a + 3 * i) % cfg.vocabSize); });
  const trainIdx = [...Array(6).keys()], valIdx = [0, 1];  // seen windows: the loss must go down on them
  const opts: TrainOptions = { lr: 2e-3, gradAccum: 2, maxSteps: 8, evalEvery: 2, patience: 0, quiet: true, seed: 4 };
  const teacher = new LlamaModel(fpWeights());
  const sc = student();
  const cpu = trainAdapters(loraParams(sc, 'comp'), new LinearScopeObjective(new LlamaModel(sc), teacher), windows, trainIdx, valIdx, opts);
  const sg = student(), live0 = c.live?.() ?? 0;
  const gw = uploadWeights(c, sg), tw = uploadWeights(c, teacher.weights), lora = new GpuLora(c, loraSiteSpecs(sg, 'comp'));
  const gm = new GpuLlama(c, gw, lora);
  const obj = new GpuLinearScopeObjective(gm, tw);
  const gpu = trainAdapters(loraParams(sg, 'comp'), obj, windows, trainIdx, valIdx, { ...opts, optimizer: (ps, o) => new GpuAdam(lora, ps, o) });
  obj.free(); gm.free(); lora.free(); gw.free(); tw.free();
  if (c.live) assert.equal(c.live(), live0, 'every device buffer freed');
  assertFollowsCpu(t, 'linear scope', cpu, gpu, sc, sg);
});

/** The GPU-path training run follows the CPU one: same updates, losses within 2 %, the CPU run learns, similar updates. */
function assertFollowsCpu(t: { diagnostic(m: string): void }, label: string, cpu: ReturnType<typeof trainAdapters>,
  gpu: ReturnType<typeof trainAdapters>, sc: LlamaWeights, sg: LlamaWeights): void {
  assert.equal(gpu.updates, cpu.updates);
  const tc = cpu.log.filter((e) => e.train !== undefined).map((e) => e.train!), tg = gpu.log.filter((e) => e.train !== undefined).map((e) => e.train!);
  const vc = cpu.log.filter((e) => e.val !== undefined).map((e) => e.val!), vg = gpu.log.filter((e) => e.val !== undefined).map((e) => e.val!);
  const worst = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x / b[i] - 1)));
  const init = Float32Array.from(loraParams(student(), 'comp').flatMap((p) => Array.from(p.data)));
  const delta = (ps: ReturnType<typeof loraParams>) => Float32Array.from(ps.flatMap((p) => Array.from(p.data))).map((x, i) => x - init[i]);
  const eDelta = relErr(delta(loraParams(sg, 'comp')), delta(loraParams(sc, 'comp')));
  t.diagnostic(`${label}: train ${tg.map((x) => x.toExponential(3)).join(' ')} vs ${tc.map((x) => x.toExponential(3)).join(' ')}; val ${vg.map((x) => x.toExponential(3)).join(' ')} vs ${vc.map((x) => x.toExponential(3)).join(' ')}; adapter updates differ by ${eDelta.toExponential(2)}`);
  assert.ok(Math.min(...vc.slice(1)) < vc[0], `the CPU run learns: ${vc.join(' ')}`);
  assert.ok(worst(tg, tc) < 2e-2, `train losses ${tg} vs ${tc}`);
  assert.ok(worst(vg, vc) < 2e-2, `val losses ${vg} vs ${vc}`);
  assert.ok(eDelta < 0.3, `the adapter updates differ by ${eDelta} (relative)`);
}
