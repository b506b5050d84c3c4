// A CPU model (LlamaWeights with packed/dense projections and at most one LoRA adapter per projection) as a
// GPU model: the base uploaded once (GpuWeights), the adapters as one flat GpuLora, the forward on GpuLlama.
import type { LlamaWeights } from '../weights.js';
import { LoraLinear } from '../../adapters/lora.js';
import { LowbitError } from '../../io/errors.js';
import type { Arr } from '../../tensor.js';
import type { GpuEngine } from './engine.js';
import { uploadWeights, type GpuWeights } from './device-weights.js';
import { GpuLora, type LoraSiteSpec } from './gpu-lora.js';
import { GpuLlama } from './gpu-llama.js';

export interface GpuModel { model: GpuLlama; weights: GpuWeights; lora: GpuLora | null; free(): void }

export function gpuModelFromHost(c: GpuEngine, w: LlamaWeights): GpuModel {
  const specs: LoraSiteSpec[] = [], tensors: Arr[] = [];
  for (const [layer, proj, lin] of w.linears()) {
    if (!(lin instanceof LoraLinear) || lin.adapters.size === 0) continue;
    if (lin.adapters.size > 1) throw new LowbitError(`GPU engine: layer ${layer} ${proj} carries ${lin.adapters.size} adapters; the GPU path takes one (merge the others first)`);
    const a = [...lin.adapters.values()][0];
    specs.push({ layer, proj, r: a.r, scale: a.scale, in: lin.inFeatures, out: lin.outFeatures });
    tensors.push(a.A, a.B);
  }
  const weights = uploadWeights(c, w);
  const lora = specs.length ? new GpuLora(c, specs) : null;
  lora?.setParams(tensors);
  const model = new GpuLlama(c, weights, lora);
  return { model, weights, lora, free: () => { model.free(); lora?.free(); weights.free(); } };
}
