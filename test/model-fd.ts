// Finite-difference helpers shared by the model tests (no tests here).
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';

export function randn(rng: Rng, n: number, std = 1): Float64Array {
  return rng.fillNormal(new Float64Array(n), std) as Float64Array;
}

/**
 * Central finite differences of a scalar f() w.r.t. every entry of x (or the listed indices), compared with
 * the analytic gradient g: |fd − g| ≤ atol + rtol·|fd| for each checked entry.
 */
export function checkGrad(name: string, f: () => number, x: Float64Array, g: ArrayLike<number>,
  opts: { h?: number; atol?: number; rtol?: number; indices?: number[] } = {}): void {
  const h = opts.h ?? 1e-5, atol = opts.atol ?? 1e-7, rtol = opts.rtol ?? 1e-5;
  const idx = opts.indices ?? Array.from({ length: x.length }, (_, i) => i);
  let nonzero = 0;
  for (const i of idx) {
    const x0 = x[i];
    x[i] = x0 + h; const fp = f();
    x[i] = x0 - h; const fm = f();
    x[i] = x0;
    const fd = (fp - fm) / (2 * h);
    if (Math.abs(fd) > 1e-9) nonzero++;
    const err = Math.abs(fd - g[i]);
    assert.ok(err <= atol + rtol * Math.abs(fd), `${name}[${i}]: finite difference ${fd} vs analytic ${g[i]} (err ${err})`);
  }
  assert.ok(nonzero > 0, `${name}: every finite difference is zero — the check cannot fail`);
}

/** Σ r·y: a random linear functional, so dL/dy = r. */
export function dot(r: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < r.length; i++) s += r[i] * y[i];
  return s;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
