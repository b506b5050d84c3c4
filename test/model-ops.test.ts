// Every model op: forward against a direct f64 formula, backward against central finite differences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { DenseLinear } from '../src/model/linear.js';
import { rmsnormBackward, rmsnormForward } from '../src/model/ops/rmsnorm.js';
import { ropeBackward, ropeForward, ropeInvFreq, ropeTables } from '../src/model/ops/rope.js';
import { attentionBackward, attentionForward } from '../src/backend/kernels.js';
import { swigluBackward, swigluForward } from '../src/model/ops/swiglu.js';
import { embeddingBackward, embeddingForward } from '../src/model/ops/embedding.js';
import { crossEntropyBackward, crossEntropyForward, crossEntropyFused } from '../src/model/ops/cross-entropy.js';
import { mseBackward, mseForward } from '../src/model/ops/mse.js';
import { klBackward, klForward } from '../src/model/ops/kl.js';
import { shiftTargets } from '../src/model/loss.js';
import { checkGrad, dot, maxAbsDiff, randn } from './model-fd.js';

test('rmsnorm: forward formula and finite-difference backward (dx, dw)', () => {
  const rng = new Rng(1), N = 3, C = 5, eps = 1e-5;
  const x = randn(rng, N * C), w = randn(rng, C, 0.5).map((v) => v + 1), r = randn(rng, N * C);
  const out = new Float64Array(N * C), rstd = new Float64Array(N);
  rmsnormForward(out, rstd, x, w, N, C, eps);
  for (let n = 0; n < N; n++) {
    let ms = 0;
    for (let i = 0; i < C; i++) ms += x[n * C + i] ** 2;
    ms /= C;
    for (let i = 0; i < C; i++) assert.ok(Math.abs(out[n * C + i] - x[n * C + i] / Math.sqrt(ms + eps) * w[i]) < 1e-12);
  }
  const f = () => { rmsnormForward(out, rstd, x, w, N, C, eps); return dot(r, out); };
  f();
  const dx = randn(rng, N * C), dx0 = dx.slice(), dw = new Float64Array(C);
  rmsnormBackward(dx, dw, r, x, w, rstd, N, C);
  const gx = dx.map((v, i) => v - dx0[i]); // backward accumulates onto what was there
  checkGrad('rmsnorm dx', f, x, gx);
  checkGrad('rmsnorm dw', f, w, dw);
});

test('rope: inv_freq (default and llama3 scaling) matches the transformers formulas', () => {
  const D = 8, theta = 500000;
  const base = Array.from({ length: D / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / D));
  const def = ropeInvFreq(D, theta, { type: 'default' });
  for (let i = 0; i < D / 2; i++) assert.ok(Math.abs(def[i] - base[i]) <= 1e-6 * base[i]);
  const factor = 8, lo = 1, hi = 4, old = 8192;
  const sc = ropeInvFreq(D, theta, { type: 'llama3', factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositionEmbeddings: old });
  // wavelens: 6.3, 167 (high freq: kept), 4443 (medium: smoothed), 118000 (low: / factor)
  const wl = base.map((f) => 2 * Math.PI / f);
  assert.ok(wl[1] < old / hi && wl[2] > old / hi && wl[2] < old / lo && wl[3] > old / lo);
  const s = (old / wl[2] - lo) / (hi - lo);
  const expect = [base[0], base[1], (1 - s) * base[2] / factor + s * base[2], base[3] / factor];
  for (let i = 0; i < D / 2; i++) assert.ok(Math.abs(sc[i] - expect[i]) <= 1e-6 * expect[i], `inv_freq[${i}] ${sc[i]} vs ${expect[i]}`);
  assert.ok(Math.abs(sc[2] - base[2]) > 0.1 * base[2]);
});

test('rope: rotate_half convention at absolute positions, and finite-difference backward', () => {
  const rng = new Rng(2), B = 2, T = 3, H = 2, D = 8, pos0 = 5, half = D / 2;
  for (const scaling of [{ type: 'default' as const }, { type: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 }]) {
    const inv = ropeInvFreq(D, 100, scaling);
    const cos = new Float64Array(T * half), sin = new Float64Array(T * half);
    ropeTables(cos, sin, inv, pos0, T);
    const x = randn(rng, B * T * H * D), r = randn(rng, x.length), out = new Float64Array(x.length);
    ropeForward(out, x, cos, sin, B, T, H, D);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) {
      const o = ((b * T + t) * H + h) * D;
      for (let i = 0; i < half; i++) {
        const a = Math.fround((pos0 + t) * inv[i]);
        // HF: x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x2, x1)
        assert.ok(Math.abs(out[o + i] - (x[o + i] * Math.cos(a) - x[o + i + half] * Math.sin(a))) < 1e-12);
        assert.ok(Math.abs(out[o + i + half] - (x[o + i + half] * Math.cos(a) + x[o + i] * Math.sin(a))) < 1e-12);
      }
    }
    // in place gives the same
    const y = x.slice(); ropeForward(y, y, cos, sin, B, T, H, D);
    assert.ok(maxAbsDiff(y, out) === 0);
    const dx = new Float64Array(x.length);
    ropeBackward(dx, r, cos, sin, B, T, H, D);
    checkGrad(`rope(${scaling.type}) dx`, () => { ropeForward(out, x, cos, sin, B, T, H, D); return dot(r, out); }, x, dx);
  }
});

/** Naive causal GQA attention with an explicit mask, straight from the definition. */
function naiveAttention(q: Float64Array, k: Float64Array, v: Float64Array, B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number) {
  const out = new Float64Array(B * Tq * Hq * D), lse = new Float64Array(B * Hq * Tq);
  for (let b = 0; b < B; b++) for (let h = 0; h < Hq; h++) for (let i = 0; i < Tq; i++) {
    const hk = Math.floor(h / (Hq / Hkv));
    const s: number[] = [];
    for (let j = 0; j < Tk; j++) {
      if (j > i + Tk - Tq) { s.push(-Infinity); continue; }
      let d = 0;
      for (let e = 0; e < D; e++) d += q[((b * Tq + i) * Hq + h) * D + e] * k[((b * Tk + j) * Hkv + hk) * D + e];
      s.push(d / Math.sqrt(D));
    }
    const m = Math.max(...s), z = s.reduce((a, x) => a + Math.exp(x - m), 0);
    lse[(b * Hq + h) * Tq + i] = m + Math.log(z);
    for (let j = 0; j < Tk; j++) {
      const p = Math.exp(s[j] - m) / z;
      for (let e = 0; e < D; e++) out[((b * Tq + i) * Hq + h) * D + e] += p * v[((b * Tk + j) * Hkv + hk) * D + e];
    }
  }
  return { out, lse };
}

test('attention: causal GQA forward (Tq<Tk and Tq=Tk) vs naive masked softmax, backward by finite differences', () => {
  const rng = new Rng(3);
  for (const [B, Tq, Tk, Hq, Hkv, D] of [[2, 3, 5, 4, 2, 4], [1, 4, 4, 2, 2, 6], [1, 2, 3, 3, 1, 2]]) {
    const q = randn(rng, B * Tq * Hq * D), k = randn(rng, B * Tk * Hkv * D), v = randn(rng, B * Tk * Hkv * D);
    const out = new Float64Array(q.length), lse = new Float64Array(B * Hq * Tq);
    attentionForward(out, lse, q, k, v, B, Tq, Tk, Hq, Hkv, D);
    const ref = naiveAttention(q, k, v, B, Tq, Tk, Hq, Hkv, D);
    assert.ok(maxAbsDiff(out, ref.out) < 1e-12, 'attention output');
    assert.ok(maxAbsDiff(lse, ref.lse) < 1e-12, 'attention lse');
    const r = randn(rng, out.length);
    const f = () => { attentionForward(out, null, q, k, v, B, Tq, Tk, Hq, Hkv, D); return dot(r, out); };
    f();
    for (const useLse of [true, false]) {
      const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
      attentionBackward(dq, dk, dv, r, q, k, v, out, useLse ? lse : null, B, Tq, Tk, Hq, Hkv, D);
      checkGrad(`attention dq [${B},${Tq},${Tk},${Hq},${Hkv},${D}]`, f, q, dq);
      checkGrad('attention dk', f, k, dk);
      checkGrad('attention dv', f, v, dv);
    }
  }
});

test('swiglu: silu(gate)·up and finite-difference backward', () => {
  const rng = new Rng(4), N = 12;
  const g = randn(rng, N, 2), u = randn(rng, N), r = randn(rng, N), out = new Float64Array(N);
  swigluForward(out, g, u, N);
  for (let i = 0; i < N; i++) assert.ok(Math.abs(out[i] - g[i] / (1 + Math.exp(-g[i])) * u[i]) < 1e-14);
  const dg = new Float64Array(N), du = new Float64Array(N);
  swigluBackward(dg, du, r, g, u, N);
  const f = () => { swigluForward(out, g, u, N); return dot(r, out); };
  checkGrad('swiglu dgate', f, g, dg);
  checkGrad('swiglu dup', f, u, du);
});

test('embedding: lookup, scatter-add backward with repeated ids, bad id rejected', () => {
  const rng = new Rng(5), V = 6, C = 3, ids = Int32Array.from([2, 0, 2, 5]), N = ids.length;
  const table = randn(rng, V * C), out = new Float64Array(N * C), r = randn(rng, N * C);
  embeddingForward(out, ids, table, N, C, V);
  for (let n = 0; n < N; n++) for (let i = 0; i < C; i++) assert.equal(out[n * C + i], table[ids[n] * C + i]);
  const dt = new Float64Array(V * C);
  embeddingBackward(dt, r, ids, N, C);
  checkGrad('embedding dtable', () => { embeddingForward(out, ids, table, N, C, V); return dot(r, out); }, table, dt);
  assert.equal(dt[1 * C], 0);
  assert.throws(() => embeddingForward(out, Int32Array.from([0, 6, 0, 0]), table, N, C, V), /outside the vocabulary/);
});

test('linear (DenseLinear): forward = x·Wᵀ and finite-difference backward for dx and dW', () => {
  const rng = new Rng(6), rows = 3, inF = 4, outF = 5;
  const W = randn(rng, outF * inF), x = randn(rng, rows * inF), r = randn(rng, rows * outF), y = new Float64Array(rows * outF);
  const lin = new DenseLinear(W, outF, inF);
  lin.forward(y, x, rows);
  for (let i = 0; i < rows; i++) for (let o = 0; o < outF; o++) {
    let s = 0;
    for (let k = 0; k < inF; k++) s += x[i * inF + k] * W[o * inF + k];
    assert.ok(Math.abs(y[i * outF + o] - s) < 1e-13);
  }
  lin.grad = new Float64Array(W.length);
  const dx = new Float64Array(x.length);
  lin.backward(dx, r, x, rows);
  const f = () => { lin.forward(y, x, rows); return dot(r, y); };
  checkGrad('linear dx', f, x, dx);
  checkGrad('linear dW', f, W, lin.grad);
});

test('cross-entropy: value, ignore index, shifted targets, finite-difference backward, fused = separate', () => {
  const rng = new Rng(7), N = 4, V = 7;
  const logits = randn(rng, N * V, 3);
  const targets = Int32Array.from([3, -100, 6, 0]);
  const losses = new Float64Array(N);
  const sum = crossEntropyForward(losses, logits, targets, N, V);
  let ref = 0;
  for (const n of [0, 2, 3]) {
    const row = Array.from(logits.subarray(n * V, n * V + V));
    const lse = Math.log(row.reduce((a, x) => a + Math.exp(x), 0));
    assert.ok(Math.abs(losses[n] - (lse - row[targets[n]])) < 1e-12);
    ref += lse - row[targets[n]];
  }
  assert.equal(losses[1], 0);
  assert.ok(Math.abs(sum - ref) < 1e-12);
  const scale = 1 / 3;
  const d = new Float64Array(N * V);
  crossEntropyBackward(d, logits, targets, N, V, scale);
  checkGrad('cross-entropy dlogits', () => scale * crossEntropyForward(null, logits, targets, N, V), logits, d);
  for (let i = V; i < 2 * V; i++) assert.equal(d[i], 0);
  const fused = new Float64Array(N * V);
  const fs = crossEntropyFused(fused, logits, targets, N, V, scale);
  assert.ok(Math.abs(fs - sum) < 1e-12);
  assert.ok(maxAbsDiff(fused, d) < 1e-15);
  // stable with huge logits
  const big = Float64Array.from([1000, 0, -1000]);
  assert.ok(Math.abs(crossEntropyForward(null, big, Int32Array.from([1]), 1, 3) - 1000) < 1e-9);
  assert.deepEqual(Array.from(shiftTargets(Int32Array.from([1, 2, 3, 4, 5, 6]), 2, 3)), [2, 3, -100, 5, 6, -100]);
  assert.deepEqual(Array.from(shiftTargets(Int32Array.from([1, 0, 0]), 1, 3, 0)), [-100, -100, -100]);
});

test('mse and KL(teacher‖student): values and finite-difference backward', () => {
  const rng = new Rng(8), n = 10, N = 3, V = 5;
  const a = randn(rng, n), t = randn(rng, n);
  let ref = 0;
  for (let i = 0; i < n; i++) ref += (a[i] - t[i]) ** 2;
  assert.ok(Math.abs(mseForward(a, t, n) - ref / n) < 1e-14);
  const da = new Float64Array(n);
  mseBackward(da, a, t, n);
  checkGrad('mse da', () => mseForward(a, t, n), a, da);

  const tl = randn(rng, N * V, 2), sl = randn(rng, N * V, 2);
  let kref = 0;
  for (let r = 0; r < N; r++) {
    const p = Array.from(tl.subarray(r * V, r * V + V)).map(Math.exp), q = Array.from(sl.subarray(r * V, r * V + V)).map(Math.exp);
    const zp = p.reduce((x, y) => x + y), zq = q.reduce((x, y) => x + y);
    for (let i = 0; i < V; i++) kref += (p[i] / zp) * Math.log((p[i] / zp) / (q[i] / zq));
  }
  const kl = klForward(tl, sl, N, V);
  assert.ok(kl > 0 && Math.abs(kl - kref) < 1e-12);
  assert.ok(Math.abs(klForward(tl, tl, N, V)) < 1e-14);
  const ds = new Float64Array(N * V);
  klBackward(ds, tl, sl, N, V);
  checkGrad('kl dstudent', () => klForward(tl, sl, N, V), sl, ds);
});
