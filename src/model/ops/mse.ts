// Mean squared error between a prediction and a target of n values.
import type { Arr } from '../../tensor.js';

/** Σ (a − target)² / n. */
export function mseForward(a: Arr, target: Arr, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) { const d = a[i] - target[i]; s += d * d; }
  return s / n;
}

/** da += scale · 2 (a − target) / n. */
export function mseBackward(da: Arr, a: Arr, target: Arr, n: number, scale = 1): void {
  const k = 2 * scale / n;
  for (let i = 0; i < n; i++) da[i] += k * (a[i] - target[i]);
}
