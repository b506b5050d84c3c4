// CUDA packed-weight kernels vs their TypeScript twins: dequantization (every format) against
// src/quant/dequant.ts, the fused GEMV and the dequantize+GEMM path against f64 / sgemmRef on the
// TS-dequantized weight. Random inputs (never all-zero), outputs poisoned with NaN before every run and
// checked all written. Runs only where a CUDA device is present; skips with the reason elsewhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { sgemmRef } from '../src/backend/kernels.js';
import { cudaEngine, cudaUnavailable, uploadPacked, bf16ToF32, f32ToBf16, randomDeviceQuant,
  type NativeCudaQuant } from '../src/backend/cuda.js';
import { dequantize } from '../src/quant/dequant.js';
import { quantizeRTN } from '../src/quant/rtn.js';
import { quantizeNF } from '../src/quant/normalfloat.js';
import { quantizeICQ_NF } from '../src/quant/icq.js';
import type { PackedTensor } from '../src/quant/types.js';
import { randf } from './helpers/arrays.js';

type TestContext = { skip(message?: string): void; diagnostic(message: string): void };

function engineOrSkip(t: TestContext): NativeCudaQuant | null {
  const c = cudaEngine();
  if (!c) t.skip(cudaUnavailable());
  return c;
}

const NAN_BF16 = 0x7fc0;

/** Every packed format the kernels must handle, quantized by the TS quantizers from random weights. */
function formats(rng: Rng): { name: string; p: PackedTensor }[] {
  const list: { name: string; p: PackedTensor }[] = [];
  const W = (o: number, i: number): Float32Array => randf(rng, o * i, 0.02);
  for (const bits of [2, 3, 4, 8]) {
    list.push({ name: `rtn int${bits} g64 96x256`, p: quantizeRTN(W(96, 256), 96, 256, { bits, groupSize: 64 }) });
  }
  // odd shapes: last group of a row shorter, n not a multiple of 8 (scalar tail), groups not multiples of 8
  list.push({ name: 'rtn int2 g64 37x203', p: quantizeRTN(W(37, 203), 37, 203, { bits: 2, groupSize: 64 }) });
  list.push({ name: 'rtn int3 g20 13x100', p: quantizeRTN(W(13, 100), 13, 100, { bits: 3, groupSize: 20 }) });
  list.push({ name: 'rtn int4 per-channel 24x72', p: quantizeRTN(W(24, 72), 24, 72, { bits: 4, groupSize: 0 }) });
  list.push({ name: 'rtn int1 g32 16x64', p: quantizeRTN(W(16, 64), 16, 64, { bits: 1, groupSize: 32 }) });
  // gIdx (GPTQ act-order with dynamic groups): a random column → group map
  for (const [o, i, g] of [[40, 256, 64], [19, 130, 32]]) {
    const p = quantizeRTN(W(o, i), o, i, { bits: 2, groupSize: g });
    const ng = Math.ceil(i / g);
    p.gIdx = Int32Array.from({ length: i }, () => rng.int(ng));
    list.push({ name: `int2 g${g} gIdx ${o}x${i}`, p });
  }
  for (const bits of [2, 3, 4]) {
    for (const dq of [false, true]) {
      list.push({ name: `nf${bits} b64${dq ? ' dq' : ''} 64x320`, p: quantizeNF(W(64, 320), 64, 320, { bits, groupSize: 64, doubleQuant: dq }) });
    }
  }
  list.push({ name: 'nf4 b50 dq 33x97 (blocks across rows)', p: quantizeNF(W(33, 97), 33, 97, { bits: 4, groupSize: 50, doubleQuant: true }) });
  // > 256 blocks so the double-quantization / τ scales have several groups
  list.push({ name: 'nf2 b64 dq 160x512', p: quantizeNF(W(160, 512), 160, 512, { bits: 2, groupSize: 64, doubleQuant: true }) });
  for (const dq of [false, true]) {
    list.push({ name: `icq-nf2 b64${dq ? ' dq' : ''} 144x512 (τ)`, p: quantizeICQ_NF(W(144, 512), 144, 512, { bits: 2, groupSize: 64, doubleQuant: dq, tauN: 10 }) });
  }
  list.push({ name: 'icq-nf4 b64 48x128 (τ)', p: quantizeICQ_NF(W(48, 128), 48, 128, { bits: 4, groupSize: 64, tauN: 10 }) });
  return list;
}

test('cuda-quant: dequantization matches the TS dequantizer bit for bit in bf16 (every format)', (t) => {
  const c = engineOrSkip(t);
  if (!c) return;
  const rng = new Rng(11);
  for (const { name, p } of formats(rng)) {
    const ref = dequantize(p);
    let nonzero = 0;
    for (const v of ref) if (v !== 0) nonzero++;
    // (1-bit RTN legitimately maps most of a normal weight to 0; every other format is mostly non-zero)
    assert.ok(nonzero > (p.bits === 1 ? 0 : ref.length / 4), `${name}: reference mostly zero (${nonzero} non-zero)`);
    const want = f32ToBf16(ref);
    const q = uploadPacked(c, p);
    const n = p.out * p.in, h = c.cudaAlloc(n * 2);
    c.cudaUpload(h, new Uint16Array(n).fill(NAN_BF16));  // poison
    c.cudaDequantBf16(q.desc, h);
    c.cudaSync();
    const got = new Uint16Array(n);
    c.cudaDownload(h, got);
    let exact = 0, worst = 0;
    const gf = bf16ToF32(got), wf = bf16ToF32(want);
    for (let i = 0; i < n; i++) {
      assert.ok(!Number.isNaN(gf[i]), `${name}: element ${i} not written (NaN poison left)`);
      if (got[i] === want[i]) { exact++; continue; }
      // bf16 tolerance: at most one bf16 ulp (2^-8 relative) from the rounded reference
      const err = Math.abs(gf[i] - wf[i]) / Math.max(Math.abs(wf[i]), 1e-30);
      worst = Math.max(worst, err);
      assert.ok(err <= 2 ** -7, `${name}: element ${i}: got ${gf[i]}, want ${wf[i]} (TS f32 ${ref[i]})`);
    }
    t.diagnostic(`${name}: ${exact}/${n} bit-exact bf16, worst other rel err ${worst.toExponential(2)}, ${q.bytes} device bytes`);
    assert.equal(exact, n, `${name}: ${n - exact} elements differ from the bf16 rounding of the TS value`);
    q.free(); c.cudaFree(h);
  }
});

/** y = W·x in f64 (W from the TS dequantizer). */
function gemvRef(W: Float32Array, out: number, inF: number, x: Float32Array, y0?: Float32Array): Float64Array {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = y0 ? y0[o] : 0;
    for (let i = 0; i < inF; i++) s += W[o * inF + i] * x[i];
    y[o] = s;
  }
  return y;
}
function relNorm(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < want.length; i++) { d += (got[i] - want[i]) ** 2; m += want[i] ** 2; }
  return Math.sqrt(d / m);
}

test('cuda-quant: fused GEMV on packed codes matches f64 on the TS-dequantized weight', (t) => {
  const c = engineOrSkip(t);
  if (!c) return;
  const rng = new Rng(12);
  const W = (o: number, i: number): Float32Array => randf(rng, o * i, 0.02);
  const cases: { name: string; p: PackedTensor }[] = [];
  for (const bits of [2, 3, 4, 8]) cases.push({ name: `int${bits} g64`, p: quantizeRTN(W(67, 512), 67, 512, { bits, groupSize: 64 }) });
  cases.push({ name: 'int2 g32 (rows % 4 != 0)', p: quantizeRTN(W(130, 96), 130, 96, { bits: 2, groupSize: 32 }) });
  cases.push({ name: 'int2 g128 (in > 128 chunks)', p: quantizeRTN(W(8, 4608), 8, 4608, { bits: 2, groupSize: 128 }) });
  for (const bits of [2, 3, 4]) {
    cases.push({ name: `nf${bits} b64`, p: quantizeNF(W(64, 320), 64, 320, { bits, groupSize: 64 }) });
    cases.push({ name: `nf${bits} b64 dq`, p: quantizeNF(W(96, 2816), 96, 2816, { bits, groupSize: 64, doubleQuant: true }) });
  }
  cases.push({ name: 'icq-nf2 b64 dq (τ)', p: quantizeICQ_NF(W(144, 512), 144, 512, { bits: 2, groupSize: 64, doubleQuant: true, tauN: 10 }) });
  cases.push({ name: 'int2 g64 (v2: 72 chunks per row, 3 per lane)', p: quantizeRTN(W(37, 4608), 37, 4608, { bits: 2, groupSize: 64 }) });
  cases.push({ name: 'int4 g128 (v2)', p: quantizeRTN(W(50, 1024), 50, 1024, { bits: 4, groupSize: 128 }) });
  cases.push({ name: 'int2 g64 (v3: 132 chunks per row, 2 for some lanes)', p: quantizeRTN(W(19, 8448), 19, 8448, { bits: 2, groupSize: 64 }) });
  cases.push({ name: 'int4 g64 (v3: 144 chunks per row)', p: quantizeRTN(W(21, 4608), 21, 4608, { bits: 4, groupSize: 64 }) });
  cases.push({ name: 'int2 g64 (v3: 2 row sets per block, tail)', p: quantizeRTN(W(300, 4096), 300, 4096, { bits: 2, groupSize: 64 }) });
  /** codes per v2 chunk (0: no v2 kernel for this format) */
  const cpc = (p: PackedTensor): number => p.bits === 2 ? 64 : p.bits === 3 || p.bits === 4 ? 32 : p.bits === 8 && p.layout === 'int' ? 16 : 0;
  for (const { name, p } of cases) {
    const ref = dequantize(p);
    const x = randf(rng, p.in), y0 = randf(rng, p.out);
    const q = uploadPacked(c, p);
    const hx = c.cudaAlloc(p.in * 4), hy = c.cudaAlloc(p.out * 4);
    c.cudaUpload(hx, x);
    const v2 = cpc(p) > 0 && p.in % cpc(p) === 0 && p.groupSize % cpc(p) === 0;
    // v3: 'int', 2 or 4 bits, in and group multiples of 64 (3: rows per thread auto, 34 / 38: forced to 4 / 8)
    const v3 = p.layout === 'int' && (p.bits === 2 || p.bits === 4) && p.in % 64 === 0 && p.groupSize % 64 === 0;
    for (const variant of [1, 2, 3, 34, 38] as const) {
      if (variant === 2 && !v2) {
        assert.throws(() => c.cudaQGemv(q.desc, hx, hy, false, 2), /variant 2 needs/);
        continue;
      }
      if (variant >= 3 && !v3) {
        assert.throws(() => c.cudaQGemv(q.desc, hx, hy, false, variant), /variant 3/);
        continue;
      }
      for (const acc of [false, true]) {
        c.cudaUpload(hy, acc ? y0 : new Float32Array(p.out).fill(NaN));
        c.cudaQGemv(q.desc, hx, hy, acc, variant);
        c.cudaSync();
        const got = new Float32Array(p.out);
        c.cudaDownload(hy, got);
        for (let o = 0; o < p.out; o++) assert.ok(Number.isFinite(got[o]), `${name} v${variant}: y[${o}] not written`);
        const want = gemvRef(ref, p.out, p.in, x, acc ? y0 : undefined);
        const e = relNorm(got, want);
        t.diagnostic(`qgemv v${variant} ${name} ${p.out}x${p.in}${acc ? ' accumulate' : ''}: rel err ${e.toExponential(2)}`);
        // v3 keeps a bias of up to 16·x per product (x pre-scaled by 2^(23−p)): the CPU model gives 2.5–3.9e-6
        // (2 bits) and ≤ 1.1e-6 (4 bits); 2e-5 leaves a margin and still catches any indexing error (O(1))
        assert.ok(e < (variant >= 3 ? 2e-5 : 1e-5), `${name} v${variant}${acc ? ' accumulate' : ''}: rel err ${e}`);
      }
    }
    q.free(); c.cudaFree(hx); c.cudaFree(hy);
  }
  // unsupported shapes are refused with the reason, not computed wrongly
  const odd = uploadPacked(c, quantizeRTN(W(8, 100), 8, 100, { bits: 2, groupSize: 20 }));
  const hx = c.cudaAlloc(400), hy = c.cudaAlloc(32);
  assert.throws(() => c.cudaQGemv(odd.desc, hx, hy, false), /in % 32 == 0/);
  odd.free(); c.cudaFree(hx); c.cudaFree(hy);
});

test('cuda-quant: dense bf16 GEMV (LoRA factors) matches f64', (t) => {
  const c = engineOrSkip(t);
  if (!c) return;
  const rng = new Rng(13);
  for (const [rows, K] of [[64, 4096], [300, 64], [37, 100], [5, 11008], [1000, 8]]) {
    const Wb = f32ToBf16(randf(rng, rows * K)), Wf = bf16ToF32(Wb);
    const x = randf(rng, K), y0 = randf(rng, rows);
    const hW = c.cudaAlloc(rows * K * 2), hx = c.cudaAlloc(K * 4), hy = c.cudaAlloc(rows * 4);
    c.cudaUpload(hW, Wb); c.cudaUpload(hx, x);
    for (const acc of [false, true]) {
      c.cudaUpload(hy, acc ? y0 : new Float32Array(rows).fill(NaN));
      c.cudaGemvBf16(hW, rows, K, hx, hy, acc);
      c.cudaSync();
      const got = new Float32Array(rows);
      c.cudaDownload(hy, got);
      for (let o = 0; o < rows; o++) assert.ok(Number.isFinite(got[o]), `${rows}x${K}: y[${o}] not written`);
      const e = relNorm(got, gemvRef(Wf, rows, K, x, acc ? y0 : undefined));
      assert.ok(e < 1e-5, `${rows}x${K}${acc ? ' accumulate' : ''}: rel err ${e}`);
    }
    c.cudaFree(hW); c.cudaFree(hx); c.cudaFree(hy);
  }
});

test('cuda-quant: packed GEMM (dequantize + cuBLAS) matches sgemmRef on the TS-dequantized weight', (t) => {
  const c = engineOrSkip(t);
  if (!c) return;
  const rng = new Rng(14);
  const W = (o: number, i: number): Float32Array => randf(rng, o * i, 0.02);
  const cases: { name: string; p: PackedTensor }[] = [
    { name: 'int2 g64', p: quantizeRTN(W(96, 256), 96, 256, { bits: 2, groupSize: 64 }) },
    { name: 'int3 g64 odd', p: quantizeRTN(W(45, 200), 45, 200, { bits: 3, groupSize: 64 }) },
    { name: 'nf4 dq', p: quantizeNF(W(128, 192), 128, 192, { bits: 4, groupSize: 64, doubleQuant: true }) },
    { name: 'icq-nf2 (τ)', p: quantizeICQ_NF(W(64, 256), 64, 256, { bits: 2, groupSize: 64, tauN: 10 }) },
  ];
  for (const { name, p } of cases) {
    for (const M of [1, 33]) {
      const Wq = bf16ToF32(f32ToBf16(dequantize(p)));  // cuBLAS multiplies the bf16 weight
      const Xb = f32ToBf16(randf(rng, M * p.in)), Xf = bf16ToF32(Xb);
      const q = uploadPacked(c, p);
      const hX = c.cudaAlloc(M * p.in * 2), hY = c.cudaAlloc(M * p.out * 4), hS = c.cudaAlloc(p.out * p.in * 2);
      c.cudaUpload(hX, Xb);
      c.cudaUpload(hY, new Float32Array(M * p.out).fill(NaN));
      c.cudaQGemm(q.desc, M, hX, hY, true, hS);
      c.cudaSync();
      const got = new Float32Array(M * p.out), want = new Float32Array(M * p.out);
      c.cudaDownload(hY, got);
      for (let i = 0; i < got.length; i++) assert.ok(Number.isFinite(got[i]), `${name} M=${M}: Y[${i}] not written`);
      sgemmRef(false, true, M, p.out, p.in, 1, Xf, Wq, 0, want);
      const e = relNorm(got, want);
      t.diagnostic(`${name} M=${M} ${p.out}x${p.in}: rel err ${e.toExponential(2)}`);
      assert.ok(e < 1e-4, `${name} M=${M}: rel err ${e}`);
      // bf16 output: one more rounding
      c.cudaQGemm(q.desc, M, hX, hY, false, hS);
      const gb = new Uint16Array(M * p.out);
      c.cudaDownload(hY, gb);
      const e2 = relNorm(bf16ToF32(gb), want);
      assert.ok(e2 < 8e-3, `${name} M=${M} bf16 Y: rel err ${e2}`);
      q.free(); c.cudaFree(hX); c.cudaFree(hY); c.cudaFree(hS);
    }
  }
});

test('cuda-quant: random device weights for the benches are random; descriptors are bounds-checked', (t) => {
  const c = engineOrSkip(t);
  if (!c) return;
  const q = randomDeviceQuant(c, { layout: 'int', bits: 2, out: 64, in: 256, group: 64 }, 5);
  const codes = new Uint8Array(64 * 256 / 4);
  c.cudaDownload(q.desc.codes, codes);
  const seen = new Set(codes);
  assert.ok(seen.size > 200, `only ${seen.size} distinct code bytes`);
  const deq = new Float32Array(64 * 256);
  const h = c.cudaAlloc(64 * 256 * 2);
  c.cudaDequantBf16(q.desc, h);
  const bits = new Uint16Array(64 * 256);
  c.cudaDownload(h, bits);
  deq.set(bf16ToF32(bits));
  assert.ok(deq.some((v) => v !== 0) && deq.every(Number.isFinite));
  // a descriptor whose code buffer is too small is refused before any kernel runs
  const small = c.cudaAlloc(16);
  assert.throws(() => c.cudaDequantBf16({ ...q.desc, codes: small }, h), /codes.*needs/);
  assert.throws(() => c.cudaDequantBf16({ ...q.desc, sz: 0 }, h), /'sz' is required/);
  assert.throws(() => c.cudaDequantBf16(q.desc, small), /needs/);
  c.cudaFree(small); c.cudaFree(h); q.free();
});
