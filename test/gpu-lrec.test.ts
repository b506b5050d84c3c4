// LREC (KL(teacher‖student) summed over positions + w_ce·mean CE) on the GPU engine's code path — GpuLrecObjective
// over GpuLlama.lmHeadKlCe, with the teacher logits made on the device chunk by chunk — against the CPU objective
// (LrecObjective on LlamaModel): one window's loss parts and every LoRA gradient, with the teacher lm_head shared
// with the student (lowbit's case) or uploaded separately, and a CUDA-graph replay equal to the eager run. Runs on the
// CUDA engine where a device is present (skipped with the reason elsewhere) and, everywhere, on the host emulator
// (test/helpers/host-engine.ts). On the emulator (CI) also: the trainer with device Adam (coupled L2, as compensate
// sets for lrec) follows the CPU trainer, and compensate({ device: 'cuda', method: 'lrec' }) runs end to end; and the CLI's
// `compensate --device auto --method lrec` runs on the shipped model (the CPU path without a GPU).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/tensor.js';
import { gpuEngine, gpuUnavailable, useGpuEngine, type GpuEngine } from '../src/model/gpu/engine.js';
import { cudaKlCeUnavailable, klCeMissing } from '../src/backend/cuda-kl-ce.js';
import { uploadWeights } from '../src/model/gpu/device-weights.js';
import { GpuLora, loraSiteSpecs } from '../src/model/gpu/gpu-lora.js';
import { GpuLlama } from '../src/model/gpu/gpu-llama.js';
import { LlamaModel, LlamaWeights } from '../src/model/llama.js';
import { DenseLinear } from '../src/model/linear.js';
import type { LlamaConfig } from '../src/model/config.js';
import { PackedLinear } from '../src/quant/packed-linear.js';
import { quantizeRTN } from '../src/quant/rtn.js';
import { attachLora, loraParams } from '../src/adapters/lora.js';
import { TeacherCache } from '../src/train/teacher-cache.js';
import { LrecObjective } from '../src/train/objectives/lrec.js';
import { GpuLrecObjective } from '../src/train/objectives/lrec-gpu.js';
import { GpuAdam } from '../src/train/gpu-adam.js';
import { trainAdapters, type TrainOptions } from '../src/train/trainer.js';
import { writeHfModelDir } from '../src/io/hf-dir.js';
import { saveBpeTokenizer, trainByteLevelBpe } from '../src/io/bpe-train.js';
import { quantizeModel } from '../src/quant/model.js';
import { compensate } from '../src/compensate/index.js';
import { bf, relErr, smallConfig } from './helpers/gpu-model.js';
import { hostEngine } from './helpers/host-engine.js';

const cfg = smallConfig(128);

/** The FP teacher: bf16-exact weights (what the device holds), lm_head optionally perturbed away from the student's. */
function fpWeights(perturbHead = false): LlamaWeights {
  const w = LlamaWeights.initRandom(cfg, new Rng(17), 'f32', 0.08);
  w.embed.set(bf(w.embed));
  const head = (w.lmHead as DenseLinear).weight, rng = new Rng(99);
  if (perturbHead) for (let i = 0; i < head.length; i++) head[i] += 0.02 * rng.normal();
  head.set(bf(head));
  for (const [, , lin] of w.linears()) (lin as DenseLinear).weight.set(bf((lin as DenseLinear).weight));
  return w;
}

/** The 2-bit student (RTN g32 on every projection) with a rank-4 LoRA; random A and B so every gradient is non-zero. */
function student(randomB: boolean): LlamaWeights {
  const w = fpWeights();
  for (const [l, p, lin] of [...w.linears()]) {
    const d = lin as DenseLinear;
    w.setLinear(l, p, new PackedLinear(quantizeRTN(d.weight, d.outFeatures, d.inFeatures, { bits: 2, groupSize: 32 })));
  }
  const rng = new Rng(23);
  attachLora(w, 'comp', { r: 4, alpha: 16 });
  for (const p of loraParams(w, 'comp')) {
    const isB = p.name.includes('lora_B');
    for (let i = 0; i < p.data.length; i++) p.data[i] = isB && !randomB ? 0 : 0.08 * rng.normal();
    p.data.set(bf(p.data));
  }
  return w;
}

function windowsOf(n: number, T: number, seed: number): Int32Array[] {
  const rng = new Rng(seed);
  // a learnable pattern (each token determined by the previous one)
  return Array.from({ length: n }, () => { const a = rng.int(cfg.vocabSize); return Int32Array.from({ length: T }, (_, i) => (a + 7 * i) % cfg.vocabSize); });
}

const flat = (xs: ArrayLike<number>[]): Float32Array => { const o = new Float32Array(xs.reduce((s, x) => s + x.length, 0)); let k = 0; for (const x of xs) { o.set(x as ArrayLike<number>, k); k += x.length; } return o; };

const ENGINES: { name: string; get(): GpuEngine | null; why(): string }[] = [
  { name: 'CUDA', get: () => { const e = gpuEngine(); return e && !klCeMissing(e) ? e : null; }, why: () => (gpuEngine() ? cudaKlCeUnavailable() : gpuUnavailable()) },
  { name: 'host emulator', get: hostEngine, why: () => 'unreachable' },
];

for (const E of ENGINES) for (const sharedHead of [true, false]) test(`${E.name}: GpuLrecObjective = LrecObjective: KL, CE and every LoRA gradient (teacher lm_head ${sharedHead ? 'shared with the student' : 'uploaded separately'}); graph replay = eager`, (t) => {
  const c = E.get();
  if (!c) { t.skip(E.why()); return; }
  const T = 40, scale = 0.5, windows = windowsOf(2, T, 5);
  windows[1][7] = 3;  // break the pattern somewhere: the CE is not trivially learnable everywhere
  const cache = new TeacherCache(new LlamaModel(fpWeights(!sharedHead)), windows);
  cache.fill();
  // CPU reference
  const sw = student(true), params = loraParams(sw, 'comp');
  for (const p of params) p.grad.fill(0);
  const rc = new LrecObjective(new LlamaModel(sw), cache).run(windows[1], 1, true, scale);
  const gradsRef = flat(params.map((p) => p.grad));
  // GPU code path
  const gw = uploadWeights(c, sw), lora = new GpuLora(c, loraSiteSpecs(sw, 'comp')), gm = new GpuLlama(c, gw, lora, { distill: true });
  const obj = new GpuLrecObjective(gm, cache);
  try {
    assert.equal(obj.sharesLmHead, sharedHead, 'the teacher lm_head is reused exactly when it equals the student\'s');
    lora.setParams(params.map((p) => p.data));
    lora.zeroGrad();
    const rg = obj.run(windows[1], 1, true, scale);
    const grads = params.map((p) => new Float32Array(p.grad.length));
    lora.getGrads(grads);
    const eg = relErr(flat(grads), gradsRef);
    let worst = 0, worstName = '';
    grads.forEach((g, i) => { const e = relErr(g, params[i].grad); if (e > worst) { worst = e; worstName = params[i].name; } });
    t.diagnostic(`kl ${rg.kl.toFixed(5)} vs ${rc.kl.toFixed(5)}, ce ${rg.ce.toFixed(5)} vs ${rc.ce.toFixed(5)}, loss ${rg.loss.toFixed(5)} vs ${rc.loss.toFixed(5)}; ` +
      `LoRA grads rel err ${eg.toExponential(2)}, worst tensor ${worst.toExponential(2)} (${worstName})`);
    assert.ok(rc.kl > 1e-3, `the student differs from the teacher: KL ${rc.kl}`);
    assert.ok(Math.abs(rg.kl / rc.kl - 1) < 2e-2, `kl ${rg.kl} vs ${rc.kl}`);
    assert.ok(Math.abs(rg.ce / rc.ce - 1) < 5e-3, `ce ${rg.ce} vs ${rc.ce}`);
    assert.ok(Math.abs(rg.loss / rc.loss - 1) < 1e-2, `loss ${rg.loss} vs ${rc.loss}`);
    assert.ok(eg < 5e-2, `LoRA grads rel err ${eg}`);
    assert.ok(worst < 1e-1, `worst LoRA grad tensor ${worstName}: ${worst}`);
    // the second window of the same shape is a graph replay: same loss, same gradients
    lora.zeroGrad();
    const rg2 = obj.run(windows[1], 1, true, scale);
    const grads2 = params.map((p) => new Float32Array(p.grad.length));
    lora.getGrads(grads2);
    assert.ok(Math.abs(rg2.loss / rg.loss - 1) < 1e-5, `replayed loss ${rg2.loss} vs ${rg.loss}`);
    assert.ok(relErr(flat(grads2), flat(grads)) < 1e-4, 'replayed gradients');
    // without grad: the same loss, no gradient written
    lora.zeroGrad();
    const rn = obj.run(windows[1], 1, false, 1);
    lora.getGrads(grads2);
    assert.ok(Math.abs(rn.loss / rg.loss - 1) < 1e-5, `no-grad loss ${rn.loss} vs ${rg.loss}`);
    assert.ok(flat(grads2).every((x) => x === 0), 'no gradient without grad');
  } finally { obj.free(); gm.free(); lora.free(); gw.free(); }
  if ('live' in c) assert.equal((c as ReturnType<typeof hostEngine>).live(), 0, 'every device buffer freed (the separate teacher head included)');
});

test('host emulator: LREC training through the GPU objective (graphs) and device Adam (coupled L2) follows the CPU trainer', (t) => {
  const T = 24, windows = windowsOf(12, T, 5), trainIdx = [...Array(10).keys()], valIdx = [10, 11];
  const cache = new TeacherCache(new LlamaModel(fpWeights()), windows);
  cache.fill();
  // compensate's LREC optimizer: Adam with a coupled L2 of 1e-5, as the authors
  const opts: TrainOptions = { lr: 5e-3, gradAccum: 2, maxSteps: 12, evalEvery: 2, patience: 0, quiet: true, seed: 3, weightDecay: 1e-5, coupledL2: true };
  const sc = student(false);
  const cpu = trainAdapters(loraParams(sc, 'comp'), new LrecObjective(new LlamaModel(sc), cache), windows, trainIdx, valIdx, opts);
  const sg = student(false), c = hostEngine();
  const gw = uploadWeights(c, sg), lora = new GpuLora(c, loraSiteSpecs(sg, 'comp')), gm = new GpuLlama(c, gw, lora, { distill: true });
  const obj = new GpuLrecObjective(gm, cache);
  const gpu = trainAdapters(loraParams(sg, 'comp'), obj, windows, trainIdx, valIdx, { ...opts, optimizer: (ps, o) => new GpuAdam(lora, ps, o) });
  obj.free(); gm.free(); lora.free(); gw.free();
  assert.equal(c.live(), 0, 'every device buffer freed');
  assert.equal(gpu.updates, cpu.updates);
  const pick = (r: typeof cpu, k: 'train' | 'val') => r.log.filter((e) => e[k] !== undefined).map((e) => e[k]!);
  const tc = pick(cpu, 'train'), tg = pick(gpu, 'train'), vc = pick(cpu, 'val'), vg = pick(gpu, 'val');
  const worst = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x / b[i] - 1)));
  const init = flat(loraParams(student(false), 'comp').map((p) => p.data));
  const delta = (w: LlamaWeights) => flat(loraParams(w, 'comp').map((p) => p.data)).map((x, i) => x - init[i]);
  const eDelta = relErr(delta(sg), delta(sc));
  t.diagnostic(`train losses ${tg.map((x) => x.toFixed(3)).join(' ')} vs ${tc.map((x) => x.toFixed(3)).join(' ')}; val ${vg.map((x) => x.toFixed(3)).join(' ')} vs ${vc.map((x) => x.toFixed(3)).join(' ')}; adapter updates differ by ${eDelta.toExponential(2)}`);
  assert.ok(Math.min(...vc.slice(1)) < vc[0], `the CPU run learns: ${vc.join(' ')}`);
  assert.ok(worst(tg, tc) < 2e-2, `train losses ${tg} vs ${tc}`);
  assert.ok(worst(vg, vc) < 2e-2, `val losses ${vg} vs ${vc}`);
  assert.ok(eDelta < 0.3, `the adapter updates differ by ${eDelta} (relative)`);
});

const TEXT = Array.from({ length: 60 }, (_, i) => `the quick brown fox ${i % 7} jumps over the lazy dog number ${i % 5}. `).join('');

test('host emulator: compensate({ device: \'cuda\', method: \'lrec\' }) trains on the GPU code path and follows the CPU run', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'lowbit-lrec-gpu-'));
  try {
    const tokDir = join(root, 'tok'), fpDir = join(root, 'fp'), qDir = join(root, 'q'), calib = join(root, 'calib.txt');
    const bpe = trainByteLevelBpe(TEXT, { vocabSize: 300 });
    saveBpeTokenizer(tokDir, bpe);
    writeFileSync(calib, TEXT);
    // head dim 32: a size the GPU attention takes
    const c: LlamaConfig = { ...cfg, vocabSize: bpe.tokens.length, hiddenSize: 64, intermediateSize: 96, numHeads: 2, numKvHeads: 1,
      maxPositionEmbeddings: 64, bosTokenId: 0, eosTokenId: 1 };
    writeHfModelDir(fpDir, c, LlamaWeights.initRandom(c, new Rng(3), 'f32', 0.2).toTensors(), { tokenizerDir: tokDir });
    await quantizeModel(fpDir, qDir, { method: 'rtn', bits: 2, groupSize: 32 });
    const base = { model: fpDir, quant: qDir, calib, samples: 10, seq: 16, valRatio: 0.2, maxSteps: 8, gradAccum: 2, evalEvery: 2,
      patience: 3, lr: 1e-3, quiet: true, method: 'lrec' as const, rank: 4 };
    const cpu = compensate({ ...base, out: join(root, 'cpu') });
    useGpuEngine(hostEngine());
    let gpu;
    try { gpu = compensate({ ...base, device: 'cuda', out: join(root, 'gpu') }); } finally { useGpuEngine(null); }
    const log = JSON.parse(readFileSync(join(root, 'gpu', 'train-log.json'), 'utf8')) as { device?: string };
    t.diagnostic(`val ${gpu.valBefore} → ${gpu.valAfter} (GPU path) vs ${cpu.valBefore} → ${cpu.valAfter} (CPU)`);
    assert.equal(log.device, 'cuda');
    assert.ok(existsSync(join(root, 'gpu', 'adapter_config.json')));
    assert.equal(gpu.updates, 4);
    assert.ok(gpu.valAfter! < gpu.valBefore!, `the GPU path learns: ${gpu.valBefore} → ${gpu.valAfter}`);
    assert.ok(Math.abs(gpu.valBefore! / cpu.valBefore! - 1) < 2e-2, `initial val ${gpu.valBefore} vs ${cpu.valBefore}`);
    assert.ok(Math.abs(gpu.valAfter! / cpu.valAfter! - 1) < 3e-2, `final val ${gpu.valAfter} vs ${cpu.valAfter}`);
  } finally { rmSync(root, { recursive: true, force: true }); }
});

test('lowbit compensate --device auto --method lrec runs on the shipped model (GPU engine when usable, else the CPU)', () => {
  const root = mkdtempSync(join(tmpdir(), 'lowbit-lrec-cli-'));
  try {
    const cli = join(process.cwd(), 'dist', 'src', 'cli', 'main.js'), calib = join(root, 'calib.txt'), q = join(root, 'q'), out = join(root, 'a');
    writeFileSync(calib, readFileSync('data/jargon.train.txt', 'utf8').slice(0, 20000));
    execFileSync(process.execPath, [cli, 'quantize', '--model', 'models/tiny-jargon', '--method', 'rtn', '--bits', '2', '--group', '64', '--out', q], { stdio: 'ignore' });
    const stdout = execFileSync(process.execPath, [cli, 'compensate', '--device', 'auto', '--method', 'lrec', '--model', 'models/tiny-jargon',
      '--quant', q, '--rank', '4', '--calib', calib, '--samples', '6', '--seq', '32', '--max-steps', '4', '--grad-accum', '2',
      '--eval-every', '1', '--lr', '1e-3', '--out', out, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = stdout.trim().split('\n'), r = JSON.parse(lines[lines.length - 1]) as { method: string; updates: number; valBefore: number; valAfter: number };
    assert.equal(r.method, 'lrec');
    assert.equal(r.updates, 2);
    assert.ok(Number.isFinite(r.valBefore) && r.valAfter <= r.valBefore, `val ${r.valBefore} → ${r.valAfter}`);
    const log = JSON.parse(readFileSync(join(out, 'train-log.json'), 'utf8')) as { device?: string };
    assert.equal(log.device, gpuEngine() && !klCeMissing(gpuEngine()!) ? 'cuda' : 'cpu');
    assert.ok(existsSync(join(out, 'adapter_config.json')));
  } finally { rmSync(root, { recursive: true, force: true }); }
});
