// GPTQ's calibration forward on the GPU engine (src/quant/gptq-calib-gpu.ts) in CI, on the host emulator of the
// engine and of GPTQ's kernels (one object: test/helpers/host-engine.ts + host-gptq.ts). The GPU path keeps bf16
// activations where the CPU model has f32, so its Hessians differ slightly: the layer's outputs and Hessians are
// compared with the CPU model's at bf16 tolerances, and whole quantizeModel runs with the GPU forward against the
// CPU forward by codes, GPTQ loss, weight error and the quantized models' held-out hidden states. Every run must
// free all device buffers. The same comparison on the H100: test/cuda-gptq-calib.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/tensor.js';
import { quantizeModel, calibrationWindows, type ModelQuantOpts } from '../src/quant/model.js';
import type { LlamaConfig } from '../src/model/config.js';
import { LlamaWeights } from '../src/model/weights.js';
import { writeHfConfig } from '../src/io/config.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { loadHfWeights } from '../src/serve/load.js';
import { hostEngine } from './helpers/host-engine.js';
import { hostGptq } from './helpers/host-gptq.js';
import { gpuVsCpu, oneLayerVsCpu } from './helpers/gptq-calib-compare.js';

/** A fresh emulated engine per run (forward and GPTQ kernels on one object), checked for leaks. */
const emulated = () => { const e = hostGptq(hostEngine()); return { eng: e, live: () => e.live() }; };

const CFG: LlamaConfig = {
  architecture: 'llama', vocabSize: 61, hiddenSize: 64, intermediateSize: 112, numLayers: 2, numHeads: 2, numKvHeads: 1,
  headDim: 32, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' }, maxPositionEmbeddings: 64,
  tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 2, torchDtype: 'float32',
};

function randomModelDir(): { dir: string; weights: LlamaWeights } {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-gptq-calib-'));
  const weights = LlamaWeights.initRandom(CFG, new Rng(321), 'f32', 0.05);
  // norms away from 1 so the norm weights are exercised
  const rng = new Rng(9);
  for (const L of weights.layers) for (const n of [L.inputNorm, L.postNorm]) for (let i = 0; i < n.length; i++) n[i] = 0.8 + 0.4 * rng.next();
  writeHfConfig(join(dir, 'config.json'), CFG);
  writeSafetensors(join(dir, 'model.safetensors'), [...weights.toTensors()].map(([name, data, shape]) => ({ name, dtype: 'F32' as const, shape, data })));
  writeFileSync(join(dir, 'tokenizer_config.json'), '{}\n');
  return { dir, weights };
}


test('GpuCalibration (emulated): one FP layer — hidden states and the four groups\' Hessians vs the CPU model in f32 (bf16-level), no leaks', () => {
  const eng = hostGptq(hostEngine());
  oneLayerVsCpu(eng, LlamaWeights.initRandom(CFG, new Rng(5), 'f32', 0.05), 2, 24);
  assert.equal(eng.live(), 0, 'every device buffer freed');
});

test('quantizeModel GPTQ --device cuda with the GPU calibration forward (emulated) vs the CPU forward: codes, loss, weight and held-out error', async () => {
  const { dir, weights } = randomModelDir();
  const rng = new Rng(5);
  const calibWindows = Array.from({ length: 16 }, () => Int32Array.from({ length: 32 }, () => rng.int(CFG.vocabSize)));
  const heldOut = Array.from({ length: 4 }, () => Int32Array.from({ length: 32 }, () => rng.int(CFG.vocabSize)));
  for (const extra of [{}, { actOrder: true }, { trueSequential: true, groupSize: -1 }, { bits: 3, trueSequential: true, actOrder: true, calibBatch: 8 }] as Partial<ModelQuantOpts>[]) {
    await gpuVsCpu(emulated, dir, weights, { method: 'gptq', bits: 2, groupSize: 32, calibWindows, ...extra }, heldOut, JSON.stringify(extra));
  }
  rmSync(dir, { recursive: true });
});

test('quantizeModel GPTQ on models/tiny-jargon: GPU calibration forward (emulated) vs the CPU', async () => {
  const src = 'models/tiny-jargon';
  const { weights } = loadHfWeights(src);
  const calibWindows = calibrationWindows(src, 'data/jargon.heldout.txt', 4, 32, 0);
  const heldOut = calibrationWindows(src, 'data/jargon.heldout.txt', 2, 32, 99);
  await gpuVsCpu(emulated, src, weights, { method: 'gptq', bits: 2, groupSize: 64, calibWindows, actOrder: true }, heldOut, 'tiny-jargon');
});

test('quantizeModel --device cuda: the forward and GPTQ engines must be one object; calibForward cpu keeps the CPU forward', async () => {
  const { dir } = randomModelDir();
  const rng = new Rng(8);
  const calibWindows = Array.from({ length: 4 }, () => Int32Array.from({ length: 16 }, () => rng.int(CFG.vocabSize)));
  const o: ModelQuantOpts = { method: 'gptq', bits: 2, groupSize: 32, calibWindows, device: 'cuda' };
  const a = hostGptq(hostEngine()), b = hostEngine();
  await assert.rejects(quantizeModel(dir, join(dir, 'x'), { ...o, gptqEngine: a, gpuEngine: b }), /must run on one engine/);
  assert.equal(a.live(), 0);
  const r = await quantizeModel(dir, join(dir, 'y'), { ...o, gptqEngine: a, calibForward: 'cpu' });
  assert.equal(r.gptq!.forward, 'cpu');
  assert.equal(a.live(), 0);
  rmSync(dir, { recursive: true });
});
