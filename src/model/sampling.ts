// Next-token choice from a row of logits: greedy (temperature 0), temperature, nucleus (top-p).
import type { Arr, Rng } from '../tensor.js';

export interface SamplingOptions {
  /** 0 → greedy argmax (default 0) */
  temperature?: number;
  /** nucleus mass in (0, 1] (default 1 = no truncation) */
  topP?: number;
}

/** Index of the largest logit in logits[offset .. offset+V) (first on ties). */
export function argmax(logits: Arr, V: number, offset = 0): number {
  let best = 0, bv = -Infinity;
  for (let i = 0; i < V; i++) { const x = logits[offset + i]; if (x > bv) { bv = x; best = i; } }
  return best;
}

/**
 * Sample a token from logits[offset .. offset+V). softmax(logits / temperature), then keep the smallest
 * set of most-likely tokens whose mass reaches topP (always ≥ 1 token, like HF TopPLogitsWarper), renormalize.
 */
export function sampleToken(logits: Arr, V: number, opts: SamplingOptions, rng: Rng, offset = 0): number {
  const temperature = opts.temperature ?? 0, topP = opts.topP ?? 1;
  if (!(temperature > 0)) return argmax(logits, V, offset);
  if (!(topP > 0 && topP <= 1)) throw new Error(`src/model/sampling.ts: topP must be in (0, 1], got ${topP}`);
  const p = new Float64Array(V);
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[offset + i] > max) max = logits[offset + i];
  let sum = 0;
  for (let i = 0; i < V; i++) { const e = Math.exp((logits[offset + i] - max) / temperature); p[i] = e; sum += e; }
  for (let i = 0; i < V; i++) p[i] /= sum;
  if (topP < 1) {
    const order = Array.from({ length: V }, (_, i) => i).sort((x, y) => p[y] - p[x] || x - y);
    let cum = 0, kept = 0;
    for (; kept < V; kept++) {
      if (kept > 0 && cum >= topP) break;
      cum += p[order[kept]];
    }
    let u = rng.next() * cum;
    for (let r = 0; r < kept; r++) {
      u -= p[order[r]];
      if (u < 0) return order[r];
    }
    return order[kept - 1];
  }
  let u = rng.next();
  for (let i = 0; i < V; i++) { u -= p[i]; if (u < 0) return i; }
  return argmax(logits, V, offset);
}
