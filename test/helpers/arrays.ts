// Random inputs and error measures shared by the kernel tests.
import type { Rng } from '../../src/tensor.js';

/** n float32 values mean + std·N(0, 1) from rng (never all zero). */
export function randf(rng: Rng, n: number, std = 1, mean = 0): Float32Array {
  return rng.fillNormal(new Float32Array(n), std, mean) as Float32Array;
}

/** max |x − y| / max |y|: the error relative to the result's scale. */
export function maxRelErr(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < y.length; i++) { d = Math.max(d, Math.abs(x[i] - y[i])); m = Math.max(m, Math.abs(y[i])); }
  return d / m;
}
