// Causal GQA attention: the TS reference against an independent f64 formula (full masked score
// matrix), its backward against central finite differences in f64, then the native kernels against
// the TS reference in f32.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { attentionBackward, attentionBackwardRef, attentionForward, attentionForwardRef } from '../src/backend/kernels.js';
import { nativeAddon, nativeReason } from '../src/backend/native.js';
import { maxRelErr, randf } from './helpers/arrays.js';
import { randn } from './model-fd.js';

/** Straightforward attention: S = q kᵀ/√D with −∞ above the (offset) diagonal, softmax, P v. */
function naive(q: Float64Array, k: Float64Array, v: Float64Array, B: number, Tq: number, Tk: number, Hq: number,
  Hkv: number, D: number): { out: Float64Array; lse: Float64Array } {
  const out = new Float64Array(B * Tq * Hq * D), lse = new Float64Array(B * Hq * Tq);
  for (let b = 0; b < B; b++) for (let h = 0; h < Hq; h++) {
    const hk = Math.floor(h * Hkv / Hq);
    for (let i = 0; i < Tq; i++) {
      const S: number[] = [];
      for (let j = 0; j < Tk; j++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += q[((b * Tq + i) * Hq + h) * D + d] * k[((b * Tk + j) * Hkv + hk) * D + d];
        S.push(j <= i + Tk - Tq ? s / Math.sqrt(D) : -Infinity);
      }
      const Z = S.reduce((acc, s) => acc + Math.exp(s), 0);
      lse[(b * Hq + h) * Tq + i] = Math.log(Z);
      for (let j = 0; j < Tk; j++) {
        const p = Math.exp(S[j]) / Z;
        for (let d = 0; d < D; d++) out[((b * Tq + i) * Hq + h) * D + d] += p * v[((b * Tk + j) * Hkv + hk) * D + d];
      }
    }
  }
  return { out, lse };
}

function maxAbs(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

// Shapes: [B, Tq, Tk, Hq, Hkv, D]; Tq < Tk is the KV-cache case.
const TINY: [number, number, number, number, number, number][] = [[2, 3, 3, 4, 2, 3], [1, 2, 5, 2, 1, 4], [1, 4, 4, 3, 3, 2]];

test('attentionForwardRef (f64) matches the naive masked-softmax formula, lse included', () => {
  const rng = new Rng(11);
  for (const [B, Tq, Tk, Hq, Hkv, D] of [...TINY, [2, 7, 9, 6, 2, 5] as const]) {
    const q = randn(rng, B * Tq * Hq * D), k = randn(rng, B * Tk * Hkv * D), v = randn(rng, B * Tk * Hkv * D);
    const out = new Float64Array(q.length), lse = new Float64Array(B * Hq * Tq);
    attentionForwardRef(out, lse, q, k, v, B, Tq, Tk, Hq, Hkv, D);
    const want = naive(q, k, v, B, Tq, Tk, Hq, Hkv, D);
    assert.ok(maxAbs(out, want.out) < 1e-12, `out ${maxAbs(out, want.out)}`);
    assert.ok(maxAbs(lse, want.lse) < 1e-12, `lse ${maxAbs(lse, want.lse)}`);
  }
});

test('attentionBackwardRef (f64) matches central finite differences and accumulates', () => {
  const rng = new Rng(12), h = 1e-6;
  for (const [B, Tq, Tk, Hq, Hkv, D] of TINY) {
    const q = randn(rng, B * Tq * Hq * D), k = randn(rng, B * Tk * Hkv * D), v = randn(rng, B * Tk * Hkv * D);
    const w = randn(rng, q.length);  // loss = Σ w ∘ out, so dout = w
    const out = new Float64Array(q.length), lse = new Float64Array(B * Hq * Tq);
    const loss = (): number => {
      attentionForwardRef(out, lse, q, k, v, B, Tq, Tk, Hq, Hkv, D);
      let s = 0;
      for (let i = 0; i < out.length; i++) s += w[i] * out[i];
      return s;
    };
    loss();
    const dq0 = randn(rng, q.length), dk0 = randn(rng, k.length), dv0 = randn(rng, v.length);
    const dq = dq0.slice(), dk = dk0.slice(), dv = dv0.slice();
    attentionBackwardRef(dq, dk, dv, w, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, D);
    for (const [x, g, g0, name] of [[q, dq, dq0, 'dq'], [k, dk, dk0, 'dk'], [v, dv, dv0, 'dv']] as const) {
      let nonzero = 0;
      for (let i = 0; i < x.length; i++) {
        const x0 = x[i];
        x[i] = x0 + h; const lp = loss();
        x[i] = x0 - h; const lm = loss();
        x[i] = x0;
        const fd = (lp - lm) / (2 * h), an = g[i] - g0[i];
        assert.ok(Math.abs(fd - an) < 1e-6 * (1 + Math.abs(fd)), `${name}[${i}] fd ${fd} vs analytic ${an} (shape ${[B, Tq, Tk, Hq, Hkv, D]})`);
        if (Math.abs(fd) > 1e-3) nonzero++;
      }
      assert.ok(nonzero > x.length / 2, `${name}: gradient mostly zero, the check would be vacuous`);
    }
  }
});

// f32 shapes for native vs TS: D with a SIMD tail (20), D = 64, GQA groups of 4, Tq < Tk.
const F32: [number, number, number, number, number, number][] = [[2, 9, 9, 4, 2, 20], [1, 33, 33, 8, 2, 64],
  [2, 5, 12, 6, 3, 7], [1, 1, 17, 4, 1, 16], [3, 16, 16, 2, 2, 33]];

test('native attention forward/backward match the TS reference (f32)', (t) => {
  const a = nativeAddon();
  if (!a) { t.skip(`native addon not built: ${nativeReason()}`); return; }
  const rng = new Rng(13);
  for (const [B, Tq, Tk, Hq, Hkv, D] of F32) {
    const nq = B * Tq * Hq * D, nkv = B * Tk * Hkv * D, shape = `${[B, Tq, Tk, Hq, Hkv, D]}`;
    const q = randf(rng, nq), k = randf(rng, nkv), v = randf(rng, nkv), dout = randf(rng, nq);
    const outR = new Float32Array(nq), lseR = new Float32Array(B * Hq * Tq);
    const outN = new Float32Array(nq).fill(NaN), lseN = new Float32Array(B * Hq * Tq).fill(NaN);
    attentionForwardRef(outR, lseR, q, k, v, B, Tq, Tk, Hq, Hkv, D);
    a.attentionForward(outN, lseN, q, k, v, B, Tq, Tk, Hq, Hkv, D);
    assert.ok(maxRelErr(outN, outR) < 1e-5, `out ${shape}: ${maxRelErr(outN, outR)}`);
    assert.ok(maxRelErr(lseN, lseR) < 1e-5, `lse ${shape}: ${maxRelErr(lseN, lseR)}`);
    const init = (n: number) => randf(rng, n);
    const dq0 = init(nq), dk0 = init(nkv), dv0 = init(nkv);
    const [dqR, dkR, dvR] = [dq0.slice(), dk0.slice(), dv0.slice()];
    const [dqN, dkN, dvN] = [dq0.slice(), dk0.slice(), dv0.slice()];
    attentionBackwardRef(dqR, dkR, dvR, dout, q, k, v, outR, lseR, B, Tq, Tk, Hq, Hkv, D);
    a.attentionBackward(dqN, dkN, dvN, dout, q, k, v, outR, lseR, B, Tq, Tk, Hq, Hkv, D);
    // Compare the increments (the += part), not the random initial values they were added to.
    const inc = (x: Float32Array, x0: Float32Array) => x.map((y, i) => y - x0[i]);
    for (const [n, r, x0, name] of [[dqN, dqR, dq0, 'dq'], [dkN, dkR, dk0, 'dk'], [dvN, dvR, dv0, 'dv']] as const) {
      const e = maxRelErr(inc(n, x0), inc(r, x0));
      assert.ok(e < 1e-4, `${name} ${shape}: ${e}`);
    }
  }
});

test('attentionForward/Backward dispatch: f32 goes native, f64 stays TS, null lse is recomputed', (t) => {
  const a = nativeAddon();
  if (!a) { t.skip(`native addon not built: ${nativeReason()}`); return; }
  const rng = new Rng(14), [B, Tq, Tk, Hq, Hkv, D] = [1, 6, 8, 4, 2, 8];
  const nq = B * Tq * Hq * D, nkv = B * Tk * Hkv * D;
  const q = randf(rng, nq), k = randf(rng, nkv), v = randf(rng, nkv), dout = randf(rng, nq);
  const o1 = new Float32Array(nq), o2 = new Float32Array(nq), l1 = new Float32Array(B * Hq * Tq);
  attentionForward(o1, l1, q, k, v, B, Tq, Tk, Hq, Hkv, D);
  a.attentionForward(o2, null, q, k, v, B, Tq, Tk, Hq, Hkv, D);
  assert.deepEqual(o1, o2);
  const g1 = [new Float32Array(nq), new Float32Array(nkv), new Float32Array(nkv)];
  const g2 = [new Float32Array(nq), new Float32Array(nkv), new Float32Array(nkv)];
  attentionBackward(g1[0], g1[1], g1[2], dout, q, k, v, o1, null, B, Tq, Tk, Hq, Hkv, D);
  a.attentionBackward(g2[0], g2[1], g2[2], dout, q, k, v, o1, l1, B, Tq, Tk, Hq, Hkv, D);
  for (let i = 0; i < 3; i++) assert.deepEqual(g1[i], g2[i]);
  assert.ok(g1[1].some((x) => x !== 0));
  const q64 = Float64Array.from(q), k64 = Float64Array.from(k), v64 = Float64Array.from(v);
  const o64 = new Float64Array(nq), r64 = new Float64Array(nq);
  attentionForward(o64, null, q64, k64, v64, B, Tq, Tk, Hq, Hkv, D);
  attentionForwardRef(r64, null, q64, k64, v64, B, Tq, Tk, Hq, Hkv, D);
  assert.deepEqual(o64, r64);
  assert.throws(() => attentionForward(o1, null, q, k, v, B, Tq, Tk, 3, 2, D), /not a multiple/);
});
