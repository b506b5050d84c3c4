// The model's f32 path on the native kernels (sgemm, attention — fed subarray views of the activation
// buffers) against the f64 TypeScript reference: forward logits and backward gradients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nativeInfo } from '../src/backend/native.js';
import { Rng } from '../src/tensor.js';
import type { LlamaConfig } from '../src/model/config.js';
import { DenseLinear } from '../src/model/linear.js';
import { LlamaWeights } from '../src/model/weights.js';
import { LlamaModel } from '../src/model/llama.js';
import { shiftTargets } from '../src/model/loss.js';
import { maxAbs, maxAbsDiff } from './model-fd.js';

const info = nativeInfo();

test('native f32 model == f64 TS reference (logits, hidden grads, weight grads)', { skip: info.loaded ? false : `native addon not loaded: ${info.reason}` }, () => {
  const c: LlamaConfig = {
    architecture: 'llama', vocabSize: 53, hiddenSize: 48, intermediateSize: 80, numLayers: 2,
    numHeads: 6, numKvHeads: 2, headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' },
    maxPositionEmbeddings: 64, tieWordEmbeddings: true, bosTokenId: null, eosTokenId: null, torchDtype: 'float32',
  };
  const w64 = LlamaWeights.initRandom(c, new Rng(81), 'f64', 0.1);
  const t = new Map(Array.from(w64.toTensors(), ([n, a]) => [n, a] as const));
  const models = (['f32', 'f64'] as const).map((p) => {
    const w = LlamaWeights.fromTensors(c, (n) => t.get(n)!, p);
    w.enableWeightGrads();
    return new LlamaModel(w);
  });
  const rng = new Rng(82), B = 3, T = 11, N = B * T;
  const ids = Int32Array.from({ length: N }, () => rng.int(c.vocabSize));
  const targets = shiftTargets(ids, B, T);
  const res = models.map((m) => {
    const { hidden, logits } = m.forward(ids, B, T, { logits: true });
    const ce = m.lmHeadCrossEntropy(hidden, targets, N, { chunkRows: 7 });
    const dEmb = m.backward(ce.dHidden!);
    return { logits: logits!, loss: ce.loss, dEmb: Float64Array.from(dEmb), m };
  });
  const [a, b] = res;
  assert.ok(a.logits instanceof Float32Array);
  assert.ok(maxAbsDiff(a.logits, b.logits) / maxAbs(b.logits) < 1e-5, 'logits');
  assert.ok(Math.abs(a.loss - b.loss) < 1e-5 * b.loss, 'loss');
  assert.ok(maxAbsDiff(a.dEmb, b.dEmb) / maxAbs(b.dEmb) < 1e-4, 'd embeddings');
  for (const [l, p] of [[0, 'q_proj'], [1, 'k_proj'], [1, 'down_proj']] as const) {
    const ga = (a.m.weights.linearAt(l, p) as DenseLinear).grad!, gb = (b.m.weights.linearAt(l, p) as DenseLinear).grad!;
    assert.ok(maxAbs(gb) > 0 && maxAbsDiff(ga, gb) / maxAbs(gb) < 1e-4, `${l}.${p} grad`);
  }
  const ea = a.m.weights.grads!.embed, eb = b.m.weights.grads!.embed;
  assert.ok(maxAbsDiff(ea, eb) / maxAbs(eb) < 1e-4, 'embed grad (tied)');
});
