// GPTQ's GPU orchestration (src/quant/gptq-gpu.ts) in CI: quantizeGPTQGpu, GpuHessian and quantizeModel's
// --device cuda path run on the host emulator of the kernels (test/helpers/host-gptq.ts, built from the f64
// TypeScript reference) and must reproduce the CPU path exactly — permutation, damping retries, group maps,
// code un-permutation and packing are the host logic under test. The kernels themselves: test/cuda-gptq.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/tensor.js';
import { quantizeGPTQ } from '../src/quant/gptq.js';
import {
  GpuHessian, actOrderPerm, columnGroups, quantizeGPTQGpu, unpermuteCodes, type GptqGpuTimings,
} from '../src/quant/gptq-gpu.js';
import { quantizeModel } from '../src/quant/model.js';
import { QUANT_FILE } from '../src/quant/format.js';
import type { LlamaConfig } from '../src/model/config.js';
import { LlamaWeights } from '../src/model/weights.js';
import { writeHfConfig } from '../src/io/config.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { hostGptq } from './helpers/host-gptq.js';
import { DEAD_COLUMNS, GPTQ_CASES, correlatedRows, hessianOf, indefiniteHessian } from './helpers/gptq-cases.js';

test('quantizeGPTQGpu on the emulated kernels = quantizeGPTQ exactly (codes, scales, zeros, gIdx; loss to 1e-12), H untouched, no leaked buffers', () => {
  const eng = hostGptq();
  for (const [k, c] of GPTQ_CASES.entries()) {
    const rng = new Rng(100 + k);
    const W = rng.fillNormal(new Float32Array(c.out * c.inF), 0.05) as Float32Array;
    const rows = Math.floor(1.5 * c.inF);
    const H = hessianOf(correlatedRows(rng, rows, c.inF, DEAD_COLUMNS), rows, c.inF);
    const H0 = H.slice();
    const ref = quantizeGPTQ(W, c.out, c.inF, H, c.opts);
    const live = eng.live();
    const gpu = quantizeGPTQGpu(eng, W, c.out, c.inF, H, c.opts);
    assert.equal(eng.live(), live, `${c.name}: every device buffer freed`);
    assert.deepEqual(gpu.packed, ref.packed, c.name);
    assert.ok(Math.abs(gpu.loss - ref.loss) <= 1e-12 * ref.loss && ref.loss > 0, `${c.name}: loss ${gpu.loss} vs ${ref.loss}`);
    assert.deepEqual(H, H0, `${c.name}: the caller's Hessian is not modified`);
    assert.equal(!!gpu.packed.gIdx, !!c.opts.actOrder && !c.opts.staticGroups && (c.opts.groupSize ?? 64) > 0, c.name);
  }
});

test('GpuHessian (emulated) = HessianAccumulator over uneven row chunks; quantizeGPTQGpu takes it in place of a host H', () => {
  const eng = hostGptq(), n = 96, rng = new Rng(7);
  const X = correlatedRows(rng, 700, n, [5]);
  const ref = hessianOf(X, 700, n);
  const live = eng.live();
  const gh = new GpuHessian(eng, n);
  const cut = Math.floor(700 / 3); // the same two parts as hessianOf: 233 rows, then 467 (chunks of 256 inside)
  gh.add(X.subarray(0, cut * n), cut);
  gh.add(X.subarray(cut * n), 700 - cut);
  gh.finalize();
  assert.deepEqual(gh.download(), ref);
  assert.throws(() => gh.add(X, 1), /after finalize/);
  const W = rng.fillNormal(new Float32Array(40 * n), 0.05) as Float32Array;
  const opts = { bits: 3, groupSize: 32, actOrder: true };
  assert.deepEqual(quantizeGPTQGpu(eng, W, 40, n, gh, opts).packed, quantizeGPTQ(W, 40, n, ref, opts).packed);
  gh.free();
  assert.equal(eng.live(), live);
  assert.throws(() => new GpuHessian(eng, 4).add(new Float64Array(8), 2), /Float32Array/);
});

test('a Hessian that is not positive definite: damp ×10 retry as on the CPU; hopeless ones fail with the same message', () => {
  const eng = hostGptq(), n = 80, rng = new Rng(11);
  const H = indefiniteHessian(rng, n);
  const W = rng.fillNormal(new Float32Array(24 * n), 0.05) as Float32Array;
  const opts = { bits: 2, groupSize: 16 };
  const t: GptqGpuTimings = { prepare: 0, factor: 0, columns: 0, attempts: 0 };
  const gpu = quantizeGPTQGpu(eng, W, 24, n, H, opts, t);
  assert.equal(t.attempts, 2, 'the 1 % damping fails, 10 % succeeds');
  assert.deepEqual(gpu.packed, quantizeGPTQ(W, 24, n, H, opts).packed);
  const neg = new Float64Array(n * n);
  for (let i = 0; i < n; i++) neg[i * n + i] = -1 - i;
  const live = eng.live();
  assert.throws(() => quantizeGPTQGpu(eng, W, 24, n, neg, opts), /not positive definite even after dampening/);
  assert.throws(() => quantizeGPTQ(W, 24, n, neg, opts), /not positive definite even after dampening/);
  assert.equal(eng.live(), live, 'buffers freed on the error path');
  assert.throws(() => quantizeGPTQGpu(eng, W, 24, n, H, { bits: 2, blockSize: 1000 }), /block sizes 1\.\.800/);
});

test('host pieces: act-order permutation (stable), column → group map, code un-permutation', () => {
  assert.deepEqual([...actOrderPerm([1, 3, 3, 0.5, 3])], [1, 2, 4, 0, 3]);
  const perm = Int32Array.from([2, 0, 3, 1]);
  assert.deepEqual([...columnGroups(4, 2, false, false, perm)], [0, 0, 1, 1]);
  assert.deepEqual([...columnGroups(4, 2, false, true, perm)], [1, 0, 1, 0]);
  assert.deepEqual([...columnGroups(4, 2, true, true, perm)], [0, 0, 0, 0]);
  // device codes [C=4, out=2]: column col of the loop is original column perm[col]
  const dev = Uint8Array.from([10, 20, 11, 21, 12, 22, 13, 23]);
  assert.deepEqual([...unpermuteCodes(dev, perm, 2, 4)], [11, 13, 10, 12, 21, 23, 20, 22]);
  assert.deepEqual([...unpermuteCodes(dev, null, 2, 4)], [10, 11, 12, 13, 20, 21, 22, 23]);
});

const CFG: LlamaConfig = {
  architecture: 'llama', vocabSize: 61, hiddenSize: 48, intermediateSize: 100, numLayers: 2, numHeads: 3, numKvHeads: 1,
  headDim: 16, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' }, maxPositionEmbeddings: 64,
  tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 2, torchDtype: 'float32',
};

test('quantizeModel GPTQ with device cuda and the CPU calibration forward (emulated engine) writes the same packed directory as the CPU', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-gptq-gpu-'));
  const weights = LlamaWeights.initRandom(CFG, new Rng(123), 'f32', 0.05);
  writeHfConfig(join(dir, 'config.json'), CFG);
  writeSafetensors(join(dir, 'model.safetensors'), [...weights.toTensors()].map(([name, data, shape]) => ({ name, dtype: 'F32' as const, shape, data })));
  writeFileSync(join(dir, 'tokenizer_config.json'), '{}\n');
  const rng = new Rng(5);
  const calibWindows = Array.from({ length: 8 }, () => Int32Array.from({ length: 32 }, () => rng.int(CFG.vocabSize)));
  for (const extra of [{ actOrder: true }, { trueSequential: true, groupSize: -1 }]) {
    const o = { method: 'gptq' as const, bits: 2, groupSize: 32, calibWindows, ...extra };
    const cpu = await quantizeModel(dir, join(dir, 'cpu'), o);
    const eng = hostGptq();
    // the CPU model's forward feeding the GPU Hessians (the GPU forward's bf16 activations: gptq-calib-gpu-emulated.test.ts)
    const gpu = await quantizeModel(dir, join(dir, 'gpu'), { ...o, device: 'cuda', gptqEngine: eng, calibForward: 'cpu' });
    assert.equal(cpu.device, 'cpu');
    assert.equal(gpu.device, 'cuda');
    assert.equal(eng.live(), 0, 'every Hessian and scratch buffer freed');
    assert.ok(Math.abs(gpu.gptq!.loss - cpu.gptq!.loss) <= 1e-12 * cpu.gptq!.loss, `${gpu.gptq!.loss} vs ${cpu.gptq!.loss}`);
    const digest = (d: string) => createHash('sha256').update(new Uint8Array(readFileSync(join(dir, d, 'model.safetensors')))).digest('hex');
    assert.equal(digest('gpu'), digest('cpu'), `identical packed tensors ${JSON.stringify(extra)}`);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'gpu', QUANT_FILE), 'utf8')).tensors, JSON.parse(readFileSync(join(dir, 'cpu', QUANT_FILE), 'utf8')).tensors);
  }
  rmSync(dir, { recursive: true });
});
