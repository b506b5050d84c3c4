// Unit tests: ICQ (NF and INT paths) and GPTQ.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { unpackCodes } from '../src/quant/pack.js';
import { quantizeRTN, dequantizeInt } from '../src/quant/rtn.js';
import { quantizeNF, dequantizeNF, nfLevels, dynamicMap } from '../src/quant/normalfloat.js';
import { quantizeICQ_NF, quantizeICQ_Int, icqSearchBlock, icqFactors, ICQ_SIGMA, codeEntropy, lowerMedian, icqIntMultipliers, meanGroupEntropy, type IcqStats } from '../src/quant/icq.js';
import { quantizeGPTQ, HessianAccumulator, choleskyLower, choleskyInverse } from '../src/quant/gptq.js';
import { quantizeWeight, dequantize } from '../src/quant/quantizer.js';

test('ICQ constants and helpers', () => {
  assert.ok(Math.abs(ICQ_SIGMA - 0.54109) < 1e-5);
  const f = icqFactors();
  assert.equal(f.length, 201);
  assert.equal(f[100], 0);
  assert.ok(Math.abs(f[1] - f[0] - 0.000541) < 1e-6);
  assert.equal(lowerMedian([4, 1, 3, 2], 0, 4), 2);
  assert.equal(codeEntropy([0, 1, 2, 3], 0, 4, 2), 2);
  assert.equal(codeEntropy([1, 1, 1, 1], 0, 4, 2), 0);
  const ps = icqIntMultipliers();
  assert.equal(ps.length, 101); assert.equal(ps[0], 1); assert.ok(Math.abs(ps[50] - 1.1) < 1e-12); assert.ok(Math.abs(ps[100] - 0.9) < 1e-12);
});

test('ICQ-NF hand vector: flat entropy → strict argmax keeps the most negative f', () => {
  // 32 × −1 and 32 × +1: τ0 = −1 (lower median), a = 2; every candidate gives codes {1, 3} in halves (H = 1 bit)
  const W = new Float32Array(64); for (let i = 0; i < 64; i++) W[i] = i % 2 ? 1 : -1;
  const f = icqFactors();
  const r = icqSearchBlock(W, 0, 64, 2, f);
  assert.equal(r.tau0, -1); assert.equal(r.a, 2);
  assert.equal(r.entropy, 1);
  assert.equal(r.index, 0);
  assert.equal(r.tau, Math.fround(Math.fround(Math.fround(f[0]) * 2) - 1));
  // stored τ: τ2 = |τ|, τ1 = nearest dynamic value to −1 = index 0 (−0.99297); dequant adds map[0]·τ2
  const p = quantizeICQ_NF(W, 1, 64, { bits: 2 });
  assert.equal(p.tauQ![0], 0);
  assert.equal(p.tauScale![0], Math.abs(r.tau));
  const d = dequantizeNF(p);
  const tauStored = Math.fround(dynamicMap()[0] * Math.abs(r.tau));
  const am = 1 - r.tau; // absmax of w − τ
  const codes = unpackCodes(p.qcodes, 2, 64);
  assert.equal(codes[0], 1); assert.equal(codes[1], 3);
  assert.equal(d[1], Math.fround(Math.fround(nfLevels(2)[3] * Math.fround(am)) + tauStored));
});

test('ICQ-NF raises mean block entropy on Gaussian blocks (≈3.69 → ≈3.76 at NF4)', () => {
  const rng = new Rng(21);
  const W = rng.fillNormal(new Float32Array(64 * 256), 0.02);
  const st: IcqStats = { entropyBefore: 0, entropyAfter: 0, blocks: 0 };
  const p = quantizeICQ_NF(W, 64, 256, { bits: 4, doubleQuant: true }, st);
  const before = st.entropyBefore / st.blocks, after = st.entropyAfter / st.blocks;
  assert.equal(st.blocks, 256);
  assert.ok(before > 3.6 && before < 3.75, `before ${before}`);
  assert.ok(after > before + 0.04, `after ${after} before ${before}`);
  assert.ok(Math.abs(meanGroupEntropy(p) - after) < 1e-9);
  // plain NF entropy equals "before"
  assert.ok(Math.abs(meanGroupEntropy(quantizeNF(W, 64, 256, { bits: 4 })) - before) < 1e-9);
  // reconstruction stays close to NF4's (ICQ does not minimise error, but the shift is small)
  const dn = dequantizeNF(quantizeNF(W, 64, 256, { bits: 4, doubleQuant: true })), di = dequantizeNF(p);
  let en = 0, ei = 0;
  for (let i = 0; i < W.length; i++) { en += (dn[i] - W[i]) ** 2; ei += (di[i] - W[i]) ** 2; }
  assert.ok(ei < en * 1.3, `icq mse ${ei} nf mse ${en}`);
  // 2 and 3 bits too
  for (const bits of [2, 3]) {
    const s: IcqStats = { entropyBefore: 0, entropyAfter: 0, blocks: 0 };
    quantizeICQ_NF(W.subarray(0, 64 * 64), 16, 256, { bits }, s);
    assert.ok(s.entropyAfter > s.entropyBefore, `bits ${bits}`);
  }
});

test('ICQ-INT: scale multiplier search keeps p = 1 on ties and raises group entropy', () => {
  // group [−1.5, 0, 1.5] at 1 bit... use 2 bits: xmin=−1.5, xmax=1.5 → s = 1, z = round(1.5) = 2
  // codes for p=1: [0, 2, 4→3]: entropy log2(3); any p in [0.9,1.1] gives the same codes → p = 1 kept
  const p = quantizeICQ_Int([-1.5, 0, 1.5], 1, 3, { bits: 2, groupSize: 3 });
  assert.equal(p.scales![0], 1); assert.equal(p.zeros![0], 2);
  assert.deepEqual(Array.from(unpackCodes(p.qcodes, 2, 3)), [0, 2, 3]);
  const rng = new Rng(4);
  const W = rng.fillNormal(new Float32Array(32 * 128));
  const st: IcqStats = { entropyBefore: 0, entropyAfter: 0, blocks: 0 };
  const q = quantizeICQ_Int(W, 32, 128, { bits: 2, groupSize: 32 }, st);
  assert.ok(st.entropyAfter > st.entropyBefore, `${st.entropyAfter} ${st.entropyBefore}`);
  assert.equal(q.layout, 'int');
  assert.equal(dequantize(q).length, W.length);
});

function outErr(X: Float32Array, rows: number, W: ArrayLike<number>, Wq: ArrayLike<number>, out: number, inF: number): number {
  let e = 0;
  for (let r = 0; r < rows; r++) for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < inF; i++) s += X[r * inF + i] * (W[o * inF + i] - Wq[o * inF + i]);
    e += s * s;
  }
  return Math.sqrt(e);
}

test('GPTQ hand vector: 1×2, H = [[1, .5], [.5, 1]], no damp', () => {
  const H = Float64Array.from([1, 0.5, 0.5, 1]);
  const { packed } = quantizeGPTQ([-0.7, 0.8], 1, 2, H, { bits: 2, groupSize: -1, percdamp: 0 });
  // s = 0.5, z = round(1.4) = 1; q0 = 0 → −0.5; w1 += 0.5·(w0 − ŵ0) = 0.7 → q1 = round(1.4) + 1 = 2 → 0.5
  assert.deepEqual(Array.from(packed.scales!), [0.5]);
  assert.deepEqual(Array.from(packed.zeros!), [1]);
  assert.deepEqual(Array.from(unpackCodes(packed.qcodes, 2, 2)), [0, 2]);
  // RTN-style rounding would give code 3 for w1 = 0.8
  assert.deepEqual(Array.from(dequantizeInt(packed)), [-0.5, 0.5]);
});

test('Cholesky inverse', () => {
  const A = Float64Array.from([4, 2, 0.6, 2, 5, 1, 0.6, 1, 3]);
  const L = new Float64Array(A);
  assert.ok(choleskyLower(L, 3));
  const inv = choleskyInverse(L, 3);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) {
    let s = 0; for (let k = 0; k < 3; k++) s += A[i * 3 + k] * inv[k * 3 + j];
    assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-12);
  }
});

test('GPTQ = RTN when H = I (no act-order)', () => {
  const rng = new Rng(8);
  const out = 12, inF = 96;
  const W = rng.fillNormal(new Float32Array(out * inF));
  const H = new Float64Array(inF * inF); for (let i = 0; i < inF; i++) H[i * inF + i] = 1;
  for (const bits of [2, 3, 4]) {
    const g = quantizeGPTQ(W, out, inF, H, { bits, groupSize: 32 }).packed;
    const r = quantizeRTN(W, out, inF, { bits, groupSize: 32 });
    assert.deepEqual(g.qcodes, r.qcodes); assert.deepEqual(g.scales, r.scales); assert.deepEqual(g.zeros, r.zeros);
  }
});

test('GPTQ beats RTN in output error on a correlated random problem (groups, act-order, static groups)', () => {
  const rng = new Rng(9);
  const out = 24, inF = 160, rows = 400; // 160 = 128 + 32: two GPTQ blocks, a partial one
  const W = rng.fillNormal(new Float32Array(out * inF));
  // correlated inputs with uneven scales: x = z·A
  const A = rng.fillNormal(new Float32Array(inF * inF), 1 / Math.sqrt(inF));
  for (let i = 0; i < inF; i++) A[i * inF + i] += 1;
  const Z = rng.fillNormal(new Float32Array(rows * inF));
  const X = new Float32Array(rows * inF);
  for (let r = 0; r < rows; r++) for (let j = 0; j < inF; j++) {
    let s = 0; for (let k = 0; k < inF; k++) s += Z[r * inF + k] * A[k * inF + j];
    X[r * inF + j] = s * (1 + (j % 7));
  }
  const acc = new HessianAccumulator(inF);
  acc.add(X.subarray(0, 200 * inF), 200); acc.add(X.subarray(200 * inF), 200);
  const H = acc.finalize();
  for (const bits of [2, 3]) {
    for (const o of [{}, { actOrder: true }, { actOrder: true, staticGroups: true }, { groupSize: -1 }]) {
      const rtn = outErr(X, rows, W, dequantize(quantizeRTN(W, out, inF, { bits, groupSize: 32, ...o })), out, inF);
      const p = quantizeWeight(W, out, inF, { method: 'gptq', bits, groupSize: 32, ...o }, { hessian: H });
      const e = outErr(X, rows, W, dequantize(p), out, inF);
      assert.ok(e < rtn * 0.85, `bits ${bits} ${JSON.stringify(o)}: gptq ${e} rtn ${rtn}`);
      if ((o as { actOrder?: boolean }).actOrder && !(o as { staticGroups?: boolean }).staticGroups) {
        assert.equal(p.gIdx!.length, inF);
        const counts = new Array(5).fill(0); for (const gi of p.gIdx!) counts[gi]++;
        assert.deepEqual(counts, [32, 32, 32, 32, 32]);
      } else assert.equal(p.gIdx, undefined);
    }
  }
});

test('GPTQ: dead columns are zeroed', () => {
  const rng = new Rng(10);
  const W = rng.fillNormal(new Float32Array(4 * 32));
  const H = new Float64Array(32 * 32); for (let i = 1; i < 32; i++) H[i * 32 + i] = 1;
  const d = dequantize(quantizeGPTQ(W, 4, 32, H, { bits: 4, groupSize: -1 }).packed);
  for (let r = 0; r < 4; r++) assert.ok(Math.abs(d[r * 32]) <= 0.5 * Math.abs(W[r * 32]) + 0.2);
});
