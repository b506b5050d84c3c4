// Unit tests: packing, f16, RTN, NormalFloat tables/bucketize/double quant, dynamic map.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { packCodes, unpackCodes, packCodes32, unpackCodes32, packedBytes } from '../src/quant/pack.js';
import { f32ToF16Bits, f16BitsToF32, roundF16, f32ToBf16Bits } from '../src/quant/f16.js';
import { quantizeRTN, dequantizeInt, rtnParams } from '../src/quant/rtn.js';
import { nfLevels, dynamicMap, midpoints, quantizeNF, dequantizeNF, doubleQuantize, doubleDequantize, normPpf, linspaceF32 } from '../src/quant/normalfloat.js';
import { unpackCodes as unpack } from '../src/quant/pack.js';

test('pack/unpack round trip for b = 1..8 on odd counts', () => {
  const rng = new Rng(1);
  for (let b = 1; b <= 8; b++) {
    for (const n of [0, 1, 2, 3, 5, 7, 11, 31, 33, 63, 65, 97, 1001]) {
      const codes = Uint8Array.from({ length: n }, () => rng.int(1 << b));
      const p = packCodes(codes, b);
      assert.equal(p.length, packedBytes(n, b));
      assert.deepEqual(unpackCodes(p, b, n), codes, `b=${b} n=${n}`);
      assert.deepEqual(unpackCodes32(packCodes32(codes, b), b, n), codes);
    }
  }
});

test('pack layout: LSB-first bit stream, 3-bit straddles bytes', () => {
  // codes 1..8 (mod 8) at 3 bits: stream = 001 010 011 100 101 110 111 000 (LSB first per code)
  const p = packCodes([1, 2, 3, 4, 5, 6, 7, 0], 3);
  // byte0 bits: c0=1 (bits0-2), c1=2 (bits3-5), c2=3 low 2 bits (bits 6-7) → 0b11_010_001 = 0xd1
  assert.equal(p[0], 0xd1);
  assert.equal(p.length, 3);
  assert.deepEqual(Array.from(packCodes([1, 2], 4)), [0x21]);
  assert.deepEqual(Array.from(packCodes([1, 2, 3], 2)), [0b111001]);
  assert.throws(() => packCodes([4], 2));
});

test('f16 conversions round to nearest even', () => {
  assert.equal(f16BitsToF32(f32ToF16Bits(1)), 1);
  assert.equal(roundF16(0.1), 0.0999755859375);
  assert.equal(roundF16(65504), 65504);
  assert.equal(roundF16(1e6), Infinity);
  assert.equal(roundF16(2 ** -24), 2 ** -24);
  assert.equal(roundF16(2 ** -26), 0);
  assert.equal(roundF16(1 + 2 ** -11), 1); // tie → even
  assert.equal(roundF16(1 + 3 * 2 ** -11), 1 + 2 ** -9);
  assert.equal(f32ToBf16Bits(1), 0x3f80);
  const rng = new Rng(3);
  for (let i = 0; i < 1000; i++) { const x = rng.normal() * 10; assert.ok(Math.abs(roundF16(x) - x) <= Math.abs(x) * 2 ** -11 + 1e-12); }
});

test('RTN hand-computed vector (b=2)', () => {
  const p = quantizeRTN([-0.8, -0.2, 0.3, 0.7], 1, 4, { bits: 2, groupSize: 4 });
  assert.deepEqual(Array.from(p.scales!), [0.5]);
  assert.deepEqual(Array.from(p.zeros!), [2]);
  assert.deepEqual(Array.from(unpack(p.qcodes, 2, 4)), [0, 2, 3, 3]);
  assert.deepEqual(Array.from(dequantizeInt(p)), [-1, 0, 0.5, 0.5]);
});

test('RTN: round half to even, zero clamp, 1e-5 floor, groups per row with a short last group', () => {
  // w/s = 2.5 exactly → 2 (even), not 3
  const p = quantizeRTN([0, 0.25, 0.75], 1, 3, { bits: 2, groupSize: 3 }); // s = 0.25, z = 0
  assert.deepEqual(Array.from(unpack(p.qcodes, 2, 3)), [0, 1, 3]);
  const p2 = quantizeRTN([0, 0.625, 0.75], 1, 3, { bits: 2, groupSize: 3 }); // s = 0.25, 0.625/0.25 = 2.5 → 2
  assert.deepEqual(Array.from(unpack(p2.qcodes, 2, 3)), [0, 2, 3]);
  // all-positive group: z = round(-mn/s) < 0 → clamped to 0
  const { s, z } = rtnParams(1, 4, 2);
  assert.equal(s, 1); assert.equal(z, 0);
  // constant group: s = 1e-5/M (f16-rounded)
  assert.equal(rtnParams(0.5, 0.5, 2).s, roundF16(Math.fround(1e-5 / 3)));
  // 2 rows × 5 inputs, group 2 → 3 groups per row (last has 1 element)
  const W = [-1, 2, -3, 4, 5, 1, -2, 3, -4, -5];
  const q = quantizeRTN(W, 2, 5, { bits: 8, groupSize: 2 });
  assert.equal(q.scales!.length, 6);
  const d = dequantizeInt(q);
  for (let i = 0; i < 10; i++) if (i % 5 !== 4) assert.ok(Math.abs(d[i] - W[i]) < 0.01, `${i}: ${d[i]}`);
  // the rule's degenerate cases (as in the reference code): a group without 0 in [mn, mx] has z clamped to 0,
  // so a one-element group w > 0 collapses to M·s with s = 1e-5/M, and w < 0 to −M·s
  assert.ok(Math.abs(d[4] - 255 * roundF16(Math.fround(1e-5 / 255))) < 1e-9);
  assert.ok(Math.abs(d[9] + 255 * roundF16(Math.fround(1e-5 / 255))) < 1e-9);
  // per channel
  const pc = quantizeRTN(W, 2, 5, { bits: 4, groupSize: -1 });
  assert.equal(pc.scales!.length, 2); assert.equal(pc.groupSize, 5);
});

test('RTN error bound: |w − ŵ| ≤ s/2 inside the range', () => {
  const rng = new Rng(5);
  const W = rng.fillNormal(new Float32Array(8 * 96));
  for (const bits of [2, 3, 4, 8]) for (const g of [32, 64, 128, -1]) {
    const p = quantizeRTN(W, 8, 96, { bits, groupSize: g });
    const d = dequantizeInt(p);
    const gs = p.groupSize, ng = Math.ceil(96 / gs);
    for (let r = 0; r < 8; r++) for (let i = 0; i < 96; i++) {
      const s = p.scales![r * ng + Math.floor(i / gs)];
      assert.ok(Math.abs(d[r * 96 + i] - W[r * 96 + i]) <= s * 0.5 + s * 1e-3 + 1e-7 || Math.abs(d[r * 96 + i] - W[r * 96 + i]) <= s, `b${bits} g${g}`);
    }
  }
});

const NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
  0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0];
const NF3 = [-1.0, -0.4786292016506195, -0.217141792178154, 0.0, 0.16093020141124725, 0.33791524171829224, 0.5626170039176941, 1.0];
const NF2 = [-1.0, 0.0, 0.33791524171829224, 1.0];

test('NormalFloat tables built by formula match the literal tables within 1e-7', () => {
  for (const [b, t] of [[4, NF4], [3, NF3], [2, NF2]] as const) {
    const l = nfLevels(b);
    assert.equal(l.length, t.length);
    for (let i = 0; i < t.length; i++) assert.ok(Math.abs(l[i] - t[i]) <= 1e-7, `NF${b}[${i}] ${l[i]} vs ${t[i]}`);
  }
  assert.ok(Math.abs(normPpf(0.9677083) - 1.84813) < 1e-5);
  assert.ok(Math.abs(normPpf(0.975) - 1.959963984540054) < 1e-12);
  assert.ok(Math.abs(normPpf(1e-10) + 6.361340902404056) < 1e-9);
  assert.deepEqual(linspaceF32(0, 1, 5), [0, 0.25, 0.5, 0.75, 1]);
});

test('bnb dynamic map: 256 sorted values, min −0.99296874, max 1, ±5.5e-7 and ±3.25e-6 near 0', () => {
  const d = dynamicMap();
  assert.equal(d.length, 256);
  for (let i = 1; i < 256; i++) assert.ok(d[i] > d[i - 1]);
  assert.ok(Math.abs(d[0] + 0.99296874) < 1e-7);
  assert.equal(d[255], 1);
  const z = d.indexOf(0);
  assert.ok(Math.abs(d[z + 1] - 5.5e-7) < 1e-12 && Math.abs(d[z - 1] + 5.5e-7) < 1e-12);
  assert.ok(Math.abs(d[z + 2] - 3.25e-6) < 1e-11 && Math.abs(d[z - 2] + 3.25e-6) < 1e-11);
});

/** bitsandbytes' NF4 assignment written independently: nearest level by comparing against each midpoint
 *  (the dQuantizeNF4 decision tree uses the same thresholds); ties go to the lower level. */
function bnbAssign(y: number): number {
  let code = 0;
  for (let k = 0; k < 15; k++) if (y > Math.fround((NF4[k] + NF4[k + 1]) / 2)) code = k + 1;
  return code;
}

test('NF4 codes equal the bitsandbytes table assignment on random data; exact midpoint ties go down', () => {
  const rng = new Rng(7);
  const out = 16, inF = 200; // 3200 values = 50 blocks of 64
  const W = rng.fillNormal(new Float32Array(out * inF));
  const p = quantizeNF(W, out, inF, { bits: 4 });
  const codes = unpack(p.qcodes, 4, out * inF);
  for (let b = 0; b < 50; b++) {
    let am = 0;
    for (let i = b * 64; i < b * 64 + 64; i++) am = Math.max(am, Math.abs(W[i]));
    assert.equal(p.absmax![b], am);
    const inv = Math.fround(1 / am);
    for (let i = b * 64; i < b * 64 + 64; i++) assert.equal(codes[i], bnbAssign(Math.fround(W[i] * inv)), `elt ${i}`);
  }
  // the max-|x| element maps to ±1 → codes 0 / 15
  // exact ties: a value on a midpoint takes the lower level
  const mids = midpoints(nfLevels(4));
  const x = new Float32Array(64); x[0] = 1; x[1] = mids[7]; x[2] = mids[3]; x[3] = -1;
  const q = unpack(quantizeNF(x, 1, 64, { bits: 4 }).qcodes, 4, 64);
  assert.equal(q[0], 15); assert.equal(q[1], 7); assert.equal(q[2], 3); assert.equal(q[3], 0);
  // dequantize = level · absmax; re-quantizing is idempotent
  const d = dequantizeNF(p);
  const p2 = quantizeNF(d, out, inF, { bits: 4 });
  assert.deepEqual(p2.qcodes, p.qcodes);
});

test('NF2/NF3 hand vector and partial last block', () => {
  // block of 5 (groupSize 4 → blocks [0..3], [4]): absmax 2 → y = [-1, -0.1, 0.2, 1]
  const p = quantizeNF([-2, -0.2, 0.4, 2, -3], 1, 5, { bits: 2, groupSize: 4 });
  // NF2 mids: -0.5, 0.1689…, 0.6689… → codes [0, 1, 2, 3], last block y = -1 → 0
  assert.deepEqual(Array.from(unpack(p.qcodes, 2, 5)), [0, 1, 2, 3, 0]);
  assert.deepEqual(Array.from(p.absmax!), [2, 3]);
  const d = dequantizeNF(p);
  assert.deepEqual(Array.from(d), [-2, 0, Math.fround(NF2[2] * 2), 2, -3]);
  const p3 = quantizeNF([-1, -0.3, 0.3, 1], 1, 4, { bits: 3 });
  // NF3 mids: -0.739, -0.348, -0.1086, 0.0805, 0.2494, 0.4503, 0.7813 → -0.3 → 2, 0.3 → 5
  assert.deepEqual(Array.from(unpack(p3.qcodes, 3, 4)), [0, 2, 5, 7]);
});

test('double quantization: offset = mean, 8-bit dynamic map per 256, reconstruction error bounds', () => {
  const rng = new Rng(11);
  const absmax = new Float32Array(1000);
  for (let i = 0; i < absmax.length; i++) absmax[i] = 0.5 + Math.abs(rng.normal());
  const dq = doubleQuantize(absmax);
  let mean = 0; for (const a of absmax) mean += a; mean /= absmax.length;
  assert.ok(Math.abs(dq.offset - mean) < 1e-6);
  assert.equal(dq.scale.length, 4);
  const r = doubleDequantize(dq, absmax.length);
  const map = dynamicMap();
  for (let i = 0; i < absmax.length; i++) {
    const s = dq.scale[Math.floor(i / 256)];
    // half the largest gap of the dynamic map (≈ 0.0141 near ±1) × the block scale
    let gap = 0; for (let k = 1; k < 256; k++) gap = Math.max(gap, map[k] - map[k - 1]);
    assert.ok(Math.abs(r[i] - absmax[i]) <= (gap / 2) * s + 1e-6, `i=${i}`);
  }
  // the weight-level effect on NF4 with DQ stays small relative to no-DQ
  const W = rng.fillNormal(new Float32Array(64 * 512));
  const a = dequantizeNF(quantizeNF(W, 64, 512, { bits: 4 }));
  const b = dequantizeNF(quantizeNF(W, 64, 512, { bits: 4, doubleQuant: true }));
  let ea = 0, eb = 0;
  for (let i = 0; i < W.length; i++) { ea += (a[i] - W[i]) ** 2; eb += (b[i] - W[i]) ** 2; }
  assert.ok(eb < ea * 1.05, `DQ mse ${eb} vs ${ea}`);
});
