// Perplexity with the GPTQ protocol: the whole text tokenized without BOS, cut into non-overlapping
// windows of `seq` tokens (remainder dropped), exp(mean NLL over every predicted token).
import type { LlamaModel } from '../model/llama.js';
import type { GpuLlama } from '../model/gpu/gpu-llama.js';
import { contiguousWindows } from '../train/data.js';
import { Progress } from '../cli/progress.js';
import { IGNORE_INDEX } from '../model/ops/cross-entropy.js';

export interface PplResult { ppl: number; nll: number; tokens: number; windows: number; seq: number }

export interface PplOptions { seq: number; batch?: number; maxWindows?: number; progress?: boolean; label?: string }

/** Targets for next-token prediction: position t predicts ids[t+1]; the last position of each row is ignored. */
export function nextTokenTargets(ids: Int32Array, B: number, T: number): Int32Array {
  const t = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < T - 1; i++) t[b * T + i] = ids[b * T + i + 1];
    t[b * T + T - 1] = IGNORE_INDEX;
  }
  return t;
}

export function evalPerplexity(model: LlamaModel, ids: ArrayLike<number>, o: PplOptions): PplResult {
  return scoreWindows(ids, o, 'ppl', (batch, nb) => {
    const { hidden } = model.forward(batch, nb, o.seq, { train: false, captureLayerOutputs: false });
    const r = model.lmHeadCrossEntropy(hidden, nextTokenTargets(batch, nb, o.seq), nb * o.seq, { grad: false });
    return { sum: r.sum, count: r.count };
  });
}

/** The same protocol on the GPU engine (bf16 activations, fp32 loss accumulation on the device). */
export function evalPerplexityGpu(model: GpuLlama, ids: ArrayLike<number>, o: PplOptions): PplResult {
  return scoreWindows(ids, o, 'ppl (cuda)', (batch, nb) => {
    model.forward(batch, nb, o.seq);
    model.beginLoss(false);
    const count = model.lmHeadCe(nextTokenTargets(batch, nb, o.seq), false, 0, 1);
    return { sum: model.readLoss()[1], count };
  });
}

/** Cut ids into windows, score them in batches (summed NLL and count per batch), return exp(mean NLL). */
function scoreWindows(ids: ArrayLike<number>, o: PplOptions, label: string,
  score: (batch: Int32Array, nb: number) => { sum: number; count: number }): PplResult {
  let windows = contiguousWindows(ids, o.seq);
  if (o.maxWindows !== undefined) windows = windows.slice(0, o.maxWindows);
  if (windows.length === 0) throw new Error(`evalPerplexity: ${ids.length} tokens is less than one window of ${o.seq}`);
  const B = Math.max(1, Math.min(o.batch ?? 4, windows.length));
  const bar = o.progress ? new Progress(o.label ?? label, windows.length, 'win') : null;
  let sum = 0, count = 0;
  for (let w0 = 0; w0 < windows.length; w0 += B) {
    const nb = Math.min(B, windows.length - w0);
    const batch = new Int32Array(nb * o.seq);
    for (let b = 0; b < nb; b++) batch.set(windows[w0 + b], b * o.seq);
    const r = score(batch, nb);
    sum += r.sum; count += r.count;
    bar?.update(w0 + nb, `ppl ${Math.exp(sum / count).toFixed(3)}`);
  }
  bar?.finish();
  const nll = sum / count;
  return { ppl: Math.exp(nll), nll, tokens: count, windows: windows.length, seq: o.seq };
}
