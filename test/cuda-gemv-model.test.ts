// CPU model of the v2 fused GEMV (native/cuda/gemv.cu, qgemv2_kernel): the same chunk/word indexing over the
// pack.ts stream and the same code → float conversion (code moved into the top mantissa bits of 1.0f, so
// f = 1 + q·2^−b and dot = 2^b·(Σ f·x − Σx)), with float32 rounding emulated. It checks the algorithm on the
// CPU (CI has no GPU); test/cuda-quant.test.ts checks the kernel itself where a device is present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { dequantize } from '../src/quant/dequant.js';
import { quantizeRTN } from '../src/quant/rtn.js';
import { quantizeNF, nfLevels, dynamicMap } from '../src/quant/normalfloat.js';
import { quantizeICQ_NF } from '../src/quant/icq.js';
import type { PackedTensor } from '../src/quant/types.js';

const fr = Math.fround;
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function asFloat(bits: number): number { u32[0] = bits >>> 0; return f32[0]; }

/** 1 + q_j·2^−B from the chunk words, as code_biased<B, CW> computes it. */
function codeBiased(w: Uint32Array, j: number, B: number): number {
  const pos = j * B, k = pos >> 5, o = pos & 31;
  let v: number;
  if (o + B <= 32) {
    const sh = (23 - B) - o;
    v = sh >= 0 ? (w[k] << sh) : (w[k] >>> -sh);
  } else {
    v = ((w[k] >>> o) | (w[k + 1] << (32 - o))) << (23 - B);
  }
  return asFloat((v & (((1 << B) - 1) << (23 - B))) | 0x3F800000);
}

function modelGemv(p: PackedTensor, x: Float32Array): Float64Array {
  const B = p.bits, CW = B === 3 ? 3 : 4, CPC = (32 * CW) / B, nch = p.in / CPC, ng = Math.ceil(p.in / p.groupSize);
  const words = new Uint32Array(Math.ceil((p.qcodes.length + 16) / 4));
  new Uint8Array(words.buffer).set(p.qcodes);
  const NF = p.layout === 'nf', lev = nfLevels(Math.max(2, B)), map = dynamicMap();
  const xsum = new Float32Array(nch);
  for (let k = 0; k < nch; k++) {
    let s = 0;
    for (let j = 0; j < CPC; j++) s = fr(s + x[k * CPC + j]);
    xsum[k] = s;
  }
  const y = new Float64Array(p.out);
  for (let row = 0; row < p.out; row++) {
    let acc = 0;
    for (let c = 0; c < nch; c++) {
      const w = words.subarray((row * nch + c) * CW, (row * nch + c + 1) * CW), xs = xsum[c];
      let dot = 0;
      if (NF) {
        for (let j = 0; j < CPC; j++) {
          const pos = j * B, k = pos >> 5, o = pos & 31;
          let q = w[k] >>> o;
          if (o + B > 32) q |= w[k + 1] << (32 - o);
          dot = fr(dot + fr(lev[q & ((1 << B) - 1)] * x[c * CPC + j]));
        }
        const b = Math.floor((row * p.in + c * CPC) / p.groupSize);
        const a = p.absmax ? p.absmax[b] : fr(fr(map[p.absmaxQ![b]] * p.absmaxScale![b >> 8]) + p.absmaxOffset!);
        acc += a * dot;
        if (p.tauQ) acc += fr(map[p.tauQ[b]] * p.tauScale![b >> 8]) * xs;
      } else {
        let s = 0;
        for (let j = 0; j < CPC; j++) s = fr(s + fr(codeBiased(w, j, B) * x[c * CPC + j]));
        dot = fr(fr(s - xs) * (1 << B));
        const k = row * ng + Math.floor((c * CPC) / p.groupSize);
        acc += p.scales![k] * (dot - p.zeros![k] * xs);
      }
    }
    y[row] = acc;
  }
  return y;
}

test('cuda-gemv-model: biased-float code conversion is exact for every code, bit width and position', () => {
  for (const B of [2, 3, 4, 8]) {
    const CW = B === 3 ? 3 : 4, CPC = (32 * CW) / B;
    const rng = new Rng(B);
    for (let trial = 0; trial < 50; trial++) {
      const codes = Array.from({ length: CPC }, () => rng.int(1 << B));
      const w = new Uint32Array(CW);
      codes.forEach((q, j) => {  // pack.ts stream layout: code j at stream bits [jB, jB + B)
        for (let b = 0; b < B; b++) if ((q >> b) & 1) { const bit = j * B + b; w[bit >> 5] |= 1 << (bit & 31); }
      });
      for (let j = 0; j < CPC; j++) assert.equal(codeBiased(w, j, B), 1 + codes[j] / 2 ** B, `B=${B} j=${j}`);
    }
  }
});

test('cuda-gemv-model: v2 GEMV algorithm matches f64 on the TS-dequantized weight (f32 emulated)', () => {
  const rng = new Rng(21);
  const W = (o: number, i: number): Float32Array => Float32Array.from({ length: o * i }, () => 0.02 * rng.normal());
  const cases: [string, PackedTensor][] = [
    ['int2 g64', quantizeRTN(W(9, 512), 9, 512, { bits: 2, groupSize: 64 })],
    ['int3 g64', quantizeRTN(W(9, 512), 9, 512, { bits: 3, groupSize: 64 })],
    ['int4 g128', quantizeRTN(W(9, 1024), 9, 1024, { bits: 4, groupSize: 128 })],
    ['int8 g64', quantizeRTN(W(9, 512), 9, 512, { bits: 8, groupSize: 64 })],
    ['nf2 dq', quantizeNF(W(9, 2816), 9, 2816, { bits: 2, groupSize: 64, doubleQuant: true })],
    ['nf3', quantizeNF(W(9, 320), 9, 320, { bits: 3, groupSize: 64 })],
    ['icq-nf2 dq τ', quantizeICQ_NF(W(9, 512), 9, 512, { bits: 2, groupSize: 64, doubleQuant: true, tauN: 10 })],
  ];
  for (const [name, p] of cases) {
    const x = Float32Array.from({ length: p.in }, () => rng.normal());
    const ref = dequantize(p);
    const got = modelGemv(p, x);
    let d = 0, m = 0;
    for (let o = 0; o < p.out; o++) {
      let s = 0;
      for (let i = 0; i < p.in; i++) s += ref[o * p.in + i] * x[i];
      d += (got[o] - s) ** 2; m += s * s;
    }
    const e = Math.sqrt(d / m);
    assert.ok(e < 1e-5, `${name}: rel err ${e}`);
  }
});
