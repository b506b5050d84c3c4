// Softmax cross-entropy over logits [N,V] with integer targets [N] (target < 0, e.g. −100, is ignored).
// Log-softmax is computed stably (max-subtracted, f64 accumulation).
import type { Arr } from '../../tensor.js';
import { LowbitError } from '../../io/errors.js';

export const IGNORE_INDEX = -100;

/**
 * Returns Σ_n −log softmax(logits[n])[targets[n]] over non-ignored rows (the SUM; divide by the
 * count for the mean). If losses is given, losses[n] receives the per-row loss (0 when ignored).
 */
export function crossEntropyForward(losses: Arr | null, logits: Arr, targets: Int32Array, N: number, V: number): number {
  let total = 0;
  for (let n = 0; n < N; n++) {
    const t = targets[n];
    if (t < 0) { if (losses) losses[n] = 0; continue; }
    if (t >= V) throw new LowbitError(`src/model/ops/cross-entropy.ts: target ${t} at row ${n} is outside the vocabulary [0, ${V})`);
    const o = n * V;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[o + i] > max) max = logits[o + i];
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[o + i] - max);
    const l = max + Math.log(sum) - logits[o + t];
    if (losses) losses[n] = l;
    total += l;
  }
  return total;
}

/** dlogits[n] += scale · (softmax(logits[n]) − onehot(targets[n])) for non-ignored rows. */
export function crossEntropyBackward(dlogits: Arr, logits: Arr, targets: Int32Array, N: number, V: number, scale: number): void {
  for (let n = 0; n < N; n++) {
    const t = targets[n];
    if (t < 0) continue;
    const o = n * V;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[o + i] > max) max = logits[o + i];
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[o + i] - max);
    const k = scale / sum;
    for (let i = 0; i < V; i++) dlogits[o + i] += k * Math.exp(logits[o + i] - max);
    dlogits[o + t] -= scale;
  }
}

/**
 * Fused forward + backward in one pass, for chunked lm-head losses: returns the loss SUM of the rows
 * and OVERWRITES dlogits (may alias logits) with scale · (softmax − onehot); ignored rows get 0.
 */
export function crossEntropyFused(dlogits: Arr, logits: Arr, targets: Int32Array, N: number, V: number, scale: number): number {
  let total = 0;
  for (let n = 0; n < N; n++) {
    const t = targets[n], o = n * V;
    if (t < 0) { dlogits.fill(0, o, o + V); continue; }
    if (t >= V) throw new LowbitError(`src/model/ops/cross-entropy.ts: target ${t} at row ${n} is outside the vocabulary [0, ${V})`);
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[o + i] > max) max = logits[o + i];
    const lt = logits[o + t];
    let sum = 0;
    for (let i = 0; i < V; i++) { const e = Math.exp(logits[o + i] - max); dlogits[o + i] = e; sum += e; }
    total += max + Math.log(sum) - lt;
    const k = scale / sum;
    for (let i = 0; i < V; i++) dlogits[o + i] *= k;
    dlogits[o + t] -= scale;
  }
  return total;
}
