// Shared by the GPU-model tests: a small GQA LLaMA config, bf16 rounding on the host, relative error.
import { bf16ToF32, f32ToBf16 } from '../../src/backend/cuda.js';
import type { LlamaConfig } from '../../src/model/config.js';

/** Two layers, GQA 4/2, head dim 32 (a size the flash kernels take); intermediate as given. */
export function smallConfig(intermediateSize: number): LlamaConfig {
  return {
    architecture: 'llama', vocabSize: 300, hiddenSize: 128, intermediateSize, numLayers: 2, numHeads: 4, numKvHeads: 2,
    headDim: 32, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' }, maxPositionEmbeddings: 256,
    tieWordEmbeddings: false, bosTokenId: null, eosTokenId: null, torchDtype: 'float32',
  };
}

/** Values rounded to bf16 (what the GPU stores), as f32. */
export const bf = (a: ArrayLike<number>): Float32Array => bf16ToF32(f32ToBf16(a));

/** ‖a − b‖ / ‖b‖. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) { const d = a[i] - b[i]; num += d * d; den += b[i] * b[i]; }
  return Math.sqrt(num / Math.max(den, 1e-30));
}
