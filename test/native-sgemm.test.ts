// Native sgemm against the TypeScript reference: every transpose combination, odd sizes, the small-M
// path, K/M/N larger than one cache block, beta 0 over NaN garbage, beta 1 accumulation, several
// thread counts. Skips visibly when the addon is not built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { sgemm, sgemmRef } from '../src/backend/kernels.js';
import { nativeAddon, nativeReason, setNativeThreads } from '../src/backend/native.js';
import { maxRelErr, randf } from './helpers/arrays.js';

const TRANS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];
// [M, N, K]: odd; tiny; M < 4 (direct path); more than one K/M/N block (KC=256, MC=288, NC=4096 on AVX-512).
const SHAPES: [number, number, number][] = [[37, 53, 29], [1, 7, 5], [3, 100, 17], [2, 33, 300], [5, 1, 9],
  [64, 64, 64], [130, 70, 300], [301, 77, 513], [17, 4100, 40]];

test('native sgemm matches sgemmRef (all transposes, odd sizes, beta 0 over NaN, beta 1)', (t) => {
  const a = nativeAddon();
  if (!a) { t.skip(`native addon not built: ${nativeReason()}`); return; }
  const rng = new Rng(7);
  // Reference results once; then every thread count must reproduce them.
  const cases: { M: number; N: number; K: number; ta: boolean; tb: boolean; alpha: number; beta: number;
    A: Float32Array; B: Float32Array; C0: Float32Array; want: Float32Array }[] = [];
  for (const [M, N, K] of SHAPES) {
    for (const [ta, tb] of TRANS) {
      const A = randf(rng, M * K), B = randf(rng, K * N);
      for (const [alpha, beta] of [[1, 0], [0.7, 1], [-1.3, 0.5]]) {
        const C0 = beta === 0 ? new Float32Array(M * N).fill(NaN) : randf(rng, M * N);
        const want = C0.slice();
        sgemmRef(ta, tb, M, N, K, alpha, A, B, beta, want);
        cases.push({ M, N, K, ta, tb, alpha, beta, A, B, C0, want });
      }
    }
  }
  let checked = 0;
  const before = a.getThreads();
  for (const threads of [before, 1, 3]) {
    setNativeThreads(threads);
    try {
      for (const { M, N, K, ta, tb, alpha, beta, A, B, C0, want } of cases) {
        const got = C0.slice();
        a.sgemm(ta, tb, M, N, K, alpha, A, B, beta, got);
        const e = maxRelErr(got, want);
        assert.ok(e < 1e-5, `M=${M} N=${N} K=${K} ta=${ta} tb=${tb} alpha=${alpha} beta=${beta} threads=${threads}: rel err ${e}`);
        assert.ok(got.every(Number.isFinite), 'NaN leaked from C into the result');
        checked++;
      }
    } finally { setNativeThreads(before); }
  }
  assert.equal(checked, 3 * SHAPES.length * 4 * 3);
});

test('native sgemm: K = 0 and alpha = 0 scale C by beta; bad sizes throw', (t) => {
  const a = nativeAddon();
  if (!a) { t.skip(`native addon not built: ${nativeReason()}`); return; }
  const C = new Float32Array([1, NaN, 3, 4]);
  a.sgemm(false, false, 2, 2, 0, 1, new Float32Array(0), new Float32Array(0), 0, C);
  assert.deepEqual([...C], [0, 0, 0, 0]);
  const D = new Float32Array([1, 2, 3, 4]);
  a.sgemm(false, true, 2, 2, 2, 0, new Float32Array(4).fill(NaN), new Float32Array(4), 2, D);
  assert.deepEqual([...D], [2, 4, 6, 8]);
  assert.throws(() => a.sgemm(false, false, 3, 2, 2, 1, new Float32Array(4), new Float32Array(4), 0, new Float32Array(6)),
    /argument 6 has 4 elements, needs 6/);
  assert.throws(() => a.sgemm(false, false, 2, 2, 2, 1, new Float64Array(4) as unknown as Float32Array,
    new Float32Array(4), 0, new Float32Array(4)), /must be a Float32Array/);
});

test('kernels.sgemm dispatches Float32Array to native and keeps Float64Array on the TS path', (t) => {
  const a = nativeAddon();
  if (!a) { t.skip(`native addon not built: ${nativeReason()}`); return; }
  const rng = new Rng(3), M = 40, N = 50, K = 60;
  const A = randf(rng, M * K), B = randf(rng, N * K);
  const viaNative = new Float32Array(M * N), direct = new Float32Array(M * N);
  sgemm(false, true, M, N, K, 1, A, B, 0, viaNative);
  a.sgemm(false, true, M, N, K, 1, A, B, 0, direct);
  assert.deepEqual(viaNative, direct);  // bit-identical: the dispatcher called the addon
  const A64 = Float64Array.from(A), B64 = Float64Array.from(B);
  const r64 = new Float64Array(M * N), ref64 = new Float64Array(M * N);
  sgemm(false, true, M, N, K, 1, A64, B64, 0, r64);
  sgemmRef(false, true, M, N, K, 1, A64, B64, 0, ref64);
  assert.deepEqual(r64, ref64);
});
