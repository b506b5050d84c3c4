// The whole GPU model against the CPU model (src/model/llama.ts) on the same weights: a small random LLaMA
// (GQA, two layers) whose projections are partly packed 2-bit (dequantized per use on both sides) and partly
// dense, with a rank-8 LoRA on every projection. Checked: the final hidden, the logits, the RILQ loss parts
// (MSE to a teacher hidden + CE) and every adapter gradient after the backward. The GPU keeps activations in
// bf16 where they feed a GEMM, so tolerances are bf16-level; the CPU side uses the bf16-rounded weights.
// Runs on the CUDA engine where a device is present (skipped with the reason elsewhere) and, everywhere, on the
// host emulator of the engine (test/helpers/host-engine.ts: the kernels' TypeScript twins behind the same handles),
// which checks the GPU model's orchestration in CI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { gpuEngine, gpuUnavailable, type GpuEngine } from '../src/model/gpu/engine.js';
import { hostEngine } from './helpers/host-engine.js';
import { uploadWeights } from '../src/model/gpu/device-weights.js';
import { GpuLora, loraSiteSpecs } from '../src/model/gpu/gpu-lora.js';
import { GpuLlama } from '../src/model/gpu/gpu-llama.js';
import { LlamaModel, LlamaWeights } from '../src/model/llama.js';
import { DenseLinear } from '../src/model/linear.js';
import { PackedLinear } from '../src/quant/packed-linear.js';
import { quantizeRTN } from '../src/quant/rtn.js';
import { attachLora, loraParams } from '../src/adapters/lora.js';
import { shiftTargets } from '../src/model/loss.js';
import { bf, relErr, smallConfig } from './helpers/gpu-model.js';

const ENGINES: { name: string; get(): GpuEngine | null }[] = [{ name: 'CUDA', get: gpuEngine }, { name: 'host emulator', get: hostEngine }];
const cfg = smallConfig(200);

function build(): LlamaWeights {
  const rng = new Rng(11);
  const w = LlamaWeights.initRandom(cfg, rng, 'f32', 0.05);
  w.embed.set(bf(w.embed));
  (w.lmHead as DenseLinear).weight.set(bf((w.lmHead as DenseLinear).weight));
  for (const L of w.layers) { for (let i = 0; i < L.inputNorm.length; i++) { L.inputNorm[i] = 1 + 0.2 * rng.normal(); L.postNorm[i] = 1 + 0.2 * rng.normal(); } }
  for (let i = 0; i < w.finalNorm.length; i++) w.finalNorm[i] = 1 + 0.2 * rng.normal();
  // layer 0 packed 2-bit g32 (GPU: dequantize + cuBLAS), layer 1 dense bf16
  for (const [l, p, lin] of [...w.linears()]) {
    const d = lin as DenseLinear;
    if (l === 0) w.setLinear(l, p, new PackedLinear(quantizeRTN(d.weight, d.outFeatures, d.inFeatures, { bits: 2, groupSize: 32 })));
    else d.weight.set(bf(d.weight));
  }
  attachLora(w, 'comp', { r: 8, alpha: 16 });
  for (const p of loraParams(w, 'comp')) { for (let i = 0; i < p.data.length; i++) p.data[i] = 0.08 * rng.normal(); p.data.set(bf(p.data)); }
  return w;
}

const MODES = [{ grouped: true, recompute: false }, { grouped: false, recompute: false }, { grouped: true, recompute: true }];
for (const E of ENGINES) for (const { grouped, recompute } of MODES) test(`${E.name}: GPU model = CPU model: hidden, logits, RILQ loss and every LoRA gradient (packed + dense layers, GQA; ${grouped ? 'q/k/v and gate/up adapters as one GEMM' : 'one GEMM per adapter'}${recompute ? '; activations recomputed in the backward' : ''})`, (t) => {
  const c = E.get();
  if (!c) { t.skip(gpuUnavailable()); return; }
  const w = build(), B = 2, T = 40, N = B * T, D = cfg.hiddenSize, V = cfg.vocabSize;
  const rng = new Rng(5);
  const ids = Int32Array.from({ length: N }, () => rng.int(V));
  const teacher = new Float32Array(N * D).map(() => rng.normal());
  const targets = shiftTargets(ids, B, T);
  let count = 0; for (const x of targets) if (x >= 0) count++;
  // CPU reference
  const cm = new LlamaModel(w);
  const { hidden } = cm.forward(ids, B, T, { train: true });
  const logitsRef = new Float32Array(N * V);
  cm.lmHeadForward(logitsRef, hidden, N);
  let mseSum = 0;
  const dH = new Float32Array(N * D), k = (2 * 0.5) / (N * D);
  for (let i = 0; i < N * D; i++) { const d = hidden[i] - teacher[i]; mseSum += d * d; dH[i] = k * d; }
  const ce = cm.lmHeadCrossEntropy(hidden, targets, N, { grad: true, dHidden: dH, scale: 0.5 });
  cm.backward(dH);
  const params = loraParams(w, 'comp');
  // GPU
  const specs = loraSiteSpecs(w, 'comp');
  process.env.LOWBIT_GPU_LORA_GROUP = grouped ? '1' : '0';
  const gw = uploadWeights(c, w), lora = new GpuLora(c, specs), gm = new GpuLlama(c, gw, lora, { recompute });
  delete process.env.LOWBIT_GPU_LORA_GROUP;
  assert.equal(gm.grouped, grouped);
  assert.equal(gm.recompute, recompute);
  try {
    lora.setParams(params.map((p) => p.data));
    gm.forward(ids, B, T);
    const eh = relErr(gm.read('lnfF', N * D), hidden);
    const el = relErr(gm.logits(), logitsRef);
    gm.beginLoss(true);
    gm.mseToTeacher(teacher, true, 0.5, 0);
    gm.lmHeadCe(targets, true, 0.5 / count, 1);
    gm.backward();
    const l = gm.readLoss();
    const grads = params.map((p) => new Float32Array(p.grad.length));
    lora.getGrads(grads);
    let worst = 0, worstName = '';
    for (let i = 0; i < params.length; i++) { const e = relErr(grads[i], params[i].grad); if (e > worst) { worst = e; worstName = params[i].name; } }
    const all = (xs: Float32Array[]) => { const n = xs.reduce((s, x) => s + x.length, 0), o = new Float32Array(n); let k2 = 0; for (const x of xs) { o.set(x, k2); k2 += x.length; } return o; };
    const eg = relErr(all(grads), all(params.map((p) => p.grad as Float32Array)));
    t.diagnostic(`rel err: hidden ${eh.toExponential(2)}, logits ${el.toExponential(2)}, mse ${(l[0] / (N * D)).toFixed(6)} vs ${(mseSum / (N * D)).toFixed(6)}, ` +
      `ce ${(l[1] / count).toFixed(6)} vs ${ce.loss.toFixed(6)}, all LoRA grads ${eg.toExponential(2)}, worst tensor ${worst.toExponential(2)} (${worstName})`);
    assert.ok(eh < 2e-2, `hidden rel err ${eh}`);
    assert.ok(el < 2e-2, `logits rel err ${el}`);
    assert.ok(Math.abs(l[0] / mseSum - 1) < 1e-2, `mse ${l[0]} vs ${mseSum}`);
    assert.ok(Math.abs(l[1] / count / ce.loss - 1) < 5e-3, `ce ${l[1] / count} vs ${ce.loss}`);
    assert.ok(eg < 5e-2, `LoRA grads rel err ${eg}`);
    assert.ok(worst < 1e-1, `worst LoRA grad tensor ${worstName}: ${worst}`);
    // a grad error this small must not be reachable by chance: a zero gradient has rel err 1
    assert.ok(all(grads).some((x) => x !== 0));
    // the same step captured as a CUDA graph and replayed gives the same loss and gradients
    gm.setIds(ids, B, T); gm.setTargets(targets); gm.setTeacher(teacher);
    const g = gm.captureGraph(() => { gm.forwardDevice(); gm.beginLoss(true); gm.mseToTeacher(null, true, 0.5, 0); gm.lmHeadCeDevice(true, 0.5 / count, 1); gm.backward(); });
    try {
      lora.zeroGrad();
      c.cudaGraphLaunch(g);
      const l2 = gm.readLoss();
      const grads2 = params.map((p) => new Float32Array(p.grad.length));
      lora.getGrads(grads2);
      const eGraph = relErr(all(grads2), all(grads));
      t.diagnostic(`graph replay vs eager: loss ${l2[0]} / ${l2[1]} vs ${l[0]} / ${l[1]}, grads rel ${eGraph.toExponential(2)}`);
      assert.ok(Math.abs(l2[1] / l[1] - 1) < 1e-5 && Math.abs(l2[0] / l[0] - 1) < 1e-4, 'graph loss');
      assert.ok(eGraph < 1e-4, `graph grads rel err ${eGraph}`);
    } finally { c.cudaGraphFree(g); }
  } finally { gm.free(); lora.free(); gw.free(); }
});
