// Merge LoRA adapters into dense weights: W' = base + Σ s·B·A, the wrapper replaced by a DenseLinear.
import { DenseLinear } from '../model/linear.js';
import type { LlamaWeights } from '../model/weights.js';
import { LoraLinear } from './lora.js';

/** Replace every LoraLinear of the model by the dense merge of its base and all its adapters. */
export function mergeAllLora(w: LlamaWeights): number {
  let n = 0;
  for (const [l, p, lin] of [...w.linears()]) {
    if (!(lin instanceof LoraLinear)) continue;
    w.setLinear(l, p, new DenseLinear(lin.dense(), lin.outFeatures, lin.inFeatures));
    n++;
  }
  return n;
}
