// Random inputs and error measures shared by the kernel tests.
import assert from 'node:assert/strict';
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

/** ‖got − want‖ / ‖want‖, asserting equal lengths and a reference that is not all zero. */
export function relNorm(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let d = 0, m = 0;
  for (let i = 0; i < want.length; i++) { d += (got[i] - want[i]) ** 2; m += want[i] ** 2; }
  assert.ok(m > 0, 'reference is all zero');
  return Math.sqrt(d / m);
}
