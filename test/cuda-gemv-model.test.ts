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

// ---- CPU model of v3 (native/cuda/gemv.cu, qgemv3_kernel + qgemv3_launch's shape choices) ----
// Emulates the kernel thread by thread: the staging loop (float4 index f of x, lane f % 32 of warp, the
// pre-scaled x' = x·2^(23−p) written to the padded shared-memory layout, the per-chunk Σx and Σx' by the xor
// butterfly over F4 lanes), each thread's (row set, kl) → rows and chunks c = kl, kl + TPR, … with clamped rows,
// the 16-byte chunk words, the shift + mask + OR conversion, the per-(row, chunk) sz word, and the block
// reduction (xor butterfly over the warp, then the set's warps in order). float32 rounding emulated.

/** shift_s: right by s when s ≥ 0, else left by −s (32-bit). */
function shiftS(w: number, s: number): number { return (s >= 0 ? w >>> s : w << -s) >>> 0; }

/** Values f (1 + q·2^(p−23)) that qgemv3_kernel's conversion produces for the codes e0..e0+7 of a chunk word. */
function v3Convert(wd: number, B: number, j0: number): number[] {
  const f: number[] = [];
  if (B === 2) {
    for (let mm = 0; mm < 4; mm++) {
      const v = shiftS(wd, 2 * (j0 + 2 * mm) - 19);
      f.push(asFloat((v & (3 << 19)) | 0x3F800000), asFloat((v & (3 << 21)) | 0x3F800000));
    }
  } else {
    for (let jj = 0; jj < 8; jj++) f.push(asFloat((shiftS(wd, 4 * (j0 + jj) - 19) & (15 << 19)) | 0x3F800000));
  }
  return f;
}
/** x' = x·scale(e): 16 (code at bits 19..) or 4 (2 bits, odd e: code at bits 21..) */
const v3Scale = (B: number, e: number): number => (B === 2 && (e & 1) ? 4 : 16);

/** The host's choices: TPR (log2) and rows per thread (auto: 4 when a resident wave holds every block). */
function v3Shape(p: PackedTensor, R: number): { tl: number; rb: number; grid: number } {
  const nch = p.in / (128 / p.bits);
  let tl = 5;
  while ((1 << tl) < nch && tl < 7) tl++;
  const rb = (256 >> tl) * R;
  return { tl, rb, grid: Math.ceil(p.out / rb) };
}

function modelGemv3(p: PackedTensor, x: Float32Array, R: number): Float32Array {
  const B = p.bits, CPC = 128 / B, PAD = CPC + 4, F4 = CPC / 4, WPC = 32 / B, T = 256;
  const nch = p.in / CPC, ng = Math.ceil(p.in / p.groupSize), cpg = p.groupSize / CPC;
  const words = new Uint32Array(Math.ceil((p.qcodes.length + 16) / 4));
  new Uint8Array(words.buffer).set(p.qcodes);
  const { tl, rb, grid } = v3Shape(p, R);
  const tpr = 1 << tl;
  // staging (the same in every block): smem floats [nch·PAD] then Σx [nch], Σx' [nch]
  const smem = new Float32Array(nch * PAD + 2 * nch).fill(NaN);
  const xsumOff = nch * PAD, xbOff = xsumOff + nch;
  const nf = p.in >> 2;
  for (let warp = 0; warp < T / 32; warp++) {
    for (let f0 = warp * 32; f0 < nf; f0 += T) {
      const ls = new Float32Array(32), lb = new Float32Array(32), sv: number[][] = [];
      for (let lane = 0; lane < 32; lane++) {
        const f = f0 + lane;
        const v = f < nf ? [x[4 * f], x[4 * f + 1], x[4 * f + 2], x[4 * f + 3]] : [0, 0, 0, 0];
        const s = v.map((a, i) => fr(a * v3Scale(B, i)));  // e = 4p + i: parity of e = parity of i
        sv.push(s);
        ls[lane] = fr(fr(v[0] + v[1]) + fr(v[2] + v[3]));
        lb[lane] = fr(fr(s[0] + s[1]) + fr(s[2] + s[3]));
      }
      for (let o = F4 / 2; o > 0; o >>= 1) {
        const a = ls.slice(), b = lb.slice();
        for (let lane = 0; lane < 32; lane++) { ls[lane] = fr(a[lane] + a[lane ^ o]); lb[lane] = fr(b[lane] + b[lane ^ o]); }
      }
      for (let lane = 0; lane < 32; lane++) {
        const f = f0 + lane;
        if (f >= nf) continue;
        const cc = Math.floor(f / F4), q = f % F4;
        for (let i = 0; i < 4; i++) smem[(cc * (PAD / 4) + q) * 4 + i] = sv[lane][i];
        if (q === 0) { smem[xsumOff + cc] = ls[lane]; smem[xbOff + cc] = lb[lane]; }
      }
    }
  }
  const y = new Float32Array(p.out).fill(NaN);
  for (let bx = 0; bx < grid; bx++) {
    const acc: Float32Array[] = [];
    for (let tid = 0; tid < T; tid++) {
      const kl = tid & (tpr - 1), set = tid >> tl, rbase = bx * rb + set * R;
      const rows = Array.from({ length: R }, (_, r) => Math.min(rbase + r, p.out - 1));
      const a = new Float32Array(R);
      for (let c = kl; c < nch; c += tpr) {
        const g = Math.floor(c / cpg);
        const w = rows.map((row) => words.subarray((row * nch + c) * 4, (row * nch + c) * 4 + 4));  // uint4 at row·nch + c
        const mIdx = rows.map((row) => row * ng + g);
        const S = new Float32Array(R);
        const xc = c * PAD;
        for (let e0 = 0; e0 < CPC; e0 += 8) {
          const xv = smem.subarray(xc + e0, xc + e0 + 8);
          const k = Math.floor(e0 / WPC), j0 = e0 % WPC;
          for (let r = 0; r < R; r++) {
            const f = v3Convert(w[r][k], B, j0);
            for (let i = 0; i < 8; i++) S[r] = fr(S[r] + f[i] * xv[i]);  // fmaf: f·x' exact in f64, one rounding (of two)
          }
        }
        const xs = smem[xsumOff + c], xb = smem[xbOff + c];
        for (let r = 0; r < R; r++) {
          const s = p.scales![mIdx[r]], z = p.zeros![mIdx[r]];
          a[r] = fr(s * fr(-z * xs + fr(S[r] - xb)) + a[r]);
        }
      }
      acc.push(a);
    }
    const red: Float32Array[] = [];
    for (let warp = 0; warp < T / 32; warp++) {
      const rr = new Float32Array(R);
      for (let r = 0; r < R; r++) {
        let v = Array.from({ length: 32 }, (_, lane) => acc[warp * 32 + lane][r]);
        for (let o = 16; o > 0; o >>= 1) v = v.map((u, lane) => fr(u + v[lane ^ o]));
        rr[r] = v[0];
      }
      red.push(rr);
    }
    for (let tid = 0; tid < rb; tid++) {
      const row = bx * rb + tid, s2 = Math.floor(tid / R), r = tid % R, wps = tpr >> 5;
      if (row >= p.out) continue;
      let v = 0;
      for (let k = 0; k < wps; k++) v = fr(v + red[s2 * wps + k][r]);
      assert.ok(Number.isNaN(y[row]), `v3 model: row ${row} written twice`);
      y[row] = v;
    }
  }
  assert.ok(!smem.subarray(0, nch * PAD).some((v, i) => i % PAD < CPC && Number.isNaN(v)), 'v3 model: x not fully staged');
  return y;
}

test('cuda-gemv-model: v3 code conversion (shift + mask + OR) gives 1 + q·2^(p−23) for every code and position', () => {
  for (const B of [2, 4]) {
    const rng = new Rng(30 + B), WPC = 32 / B;
    for (let trial = 0; trial < 200; trial++) {
      const codes = Array.from({ length: WPC }, () => rng.int(1 << B));
      let wd = 0;
      codes.forEach((q, j) => { wd = (wd | (q << (j * B))) >>> 0; });  // pack.ts stream order within a word
      for (let j0 = 0; j0 < WPC; j0 += 8) {
        const f = v3Convert(wd, B, j0);
        for (let i = 0; i < 8; i++) {
          // f·x' = x' + q·x with x' = x·scale: f = 1 + q / scale
          assert.equal(f[i], 1 + codes[j0 + i] / v3Scale(B, j0 + i), `B=${B} code ${j0 + i}`);
        }
      }
    }
  }
});

test('cuda-gemv-model: v3 GEMV (thread-level indexing, f32 emulated) matches f64 on the TS-dequantized weight', (t) => {
  const rng = new Rng(22);
  const W = (o: number, i: number): Float32Array => Float32Array.from({ length: o * i }, () => 0.02 * rng.normal());
  const cases: [string, PackedTensor, number][] = [
    ['int2 g64 9x512 (TPR 32, 1 block, tail rows)', quantizeRTN(W(9, 512), 9, 512, { bits: 2, groupSize: 64 }), 4],
    ['int2 g64 67x512 R8 (tail rows)', quantizeRTN(W(67, 512), 67, 512, { bits: 2, groupSize: 64 }), 8],
    ['int2 g128 13x4608 (TPR 128)', quantizeRTN(W(13, 4608), 13, 4608, { bits: 2, groupSize: 128 }), 4],
    ['int2 g64 11x8448 (2 chunks for some lanes)', quantizeRTN(W(11, 8448), 11, 8448, { bits: 2, groupSize: 64 }), 8],
    ['int2 g64 40x4096 (TPR 64, 2 sets per block)', quantizeRTN(W(40, 4096), 40, 4096, { bits: 2, groupSize: 64 }), 4],
    ['int4 g64 9x512', quantizeRTN(W(9, 512), 9, 512, { bits: 4, groupSize: 64 }), 4],
    ['int4 g64 70x2048 R8 (TPR 64)', quantizeRTN(W(70, 2048), 70, 2048, { bits: 4, groupSize: 64 }), 8],
    ['int4 g128 21x4608 (2 chunks per lane)', quantizeRTN(W(21, 4608), 21, 4608, { bits: 4, groupSize: 128 }), 4],
    ['int4 g192 5x768 (group of 6 chunks)', quantizeRTN(W(5, 768), 5, 768, { bits: 4, groupSize: 192 }), 4],
  ];
  for (const [name, p, R] of cases) {
    const x = Float32Array.from({ length: p.in }, () => rng.normal());
    const ref = dequantize(p);
    const got = modelGemv3(p, x, R);
    let d = 0, m = 0;
    for (let o = 0; o < p.out; o++) {
      let s = 0;
      for (let i = 0; i < p.in; i++) s += ref[o * p.in + i] * x[i];
      assert.ok(Number.isFinite(got[o]), `${name}: row ${o} not written`);
      d += (got[o] - s) ** 2; m += s * s;
    }
    const e = Math.sqrt(d / m);
    t.diagnostic(`v3 model ${name} R${R}: rel err ${e.toExponential(2)}`);
    assert.ok(e < 1e-5, `${name}: rel err ${e}`);
  }
});
