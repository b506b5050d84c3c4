// Losses on logits / hidden states, each with its backward (ops live in ./ops/; this module adds the
// target shift and re-exports them as one place to import from).
export { IGNORE_INDEX, crossEntropyForward, crossEntropyBackward, crossEntropyFused } from './ops/cross-entropy.js';
export { mseForward, mseBackward } from './ops/mse.js';
export { klForward, klBackward } from './ops/kl.js';
import { IGNORE_INDEX } from './ops/cross-entropy.js';

/**
 * Causal-LM targets for ids [B, T]: position t predicts ids[t+1]; the last position of each row is
 * ignored (−100). Ids equal to ignoreId in the input (e.g. padding), if given, are ignored as targets too.
 */
export function shiftTargets(ids: Int32Array, B: number, T: number, ignoreId: number | null = null): Int32Array {
  const t = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < T; i++) {
      const n = b * T + i;
      const next = i + 1 < T ? ids[n + 1] : IGNORE_INDEX;
      t[n] = ignoreId !== null && next === ignoreId ? IGNORE_INDEX : next;
    }
  }
  return t;
}
