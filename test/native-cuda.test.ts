// CUDA part of the addon: buffers, fp32 <-> bf16 conversion, cuBLAS bf16 GEMM (all transposes, fp32
// and bf16 C, beta accumulation) against the TS sgemm reference on the same bf16-rounded inputs, and
// the GEMM timer. Runs only where a CUDA device is present; skips with the reason elsewhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { sgemmRef } from '../src/backend/kernels.js';
import { nativeAddon, nativeReason, type NativeCuda } from '../src/backend/native.js';
import { maxRelErr, randf } from './helpers/arrays.js';

type TestContext = { skip(message?: string): void };

/** The CUDA API when a device is usable, else null after t.skip(reason). */
function cudaOrSkip(t: TestContext): NativeCuda | null {
  const a = nativeAddon();
  if (!a) { t.skip(`native addon not built: ${nativeReason()}`); return null; }
  if (!a.cuda) { t.skip('native addon built without CUDA (no nvcc at build time, or LOWBIT_NO_CUDA=1)'); return null; }
  const info = a.cuda.cudaInfo();
  if (info.deviceCount === 0) { t.skip(`no CUDA device: ${info.error ?? 'deviceCount is 0'}`); return null; }
  return a.cuda;
}

/** fp32 -> bf16 bits, round to nearest even (what __float2bfloat16_rn does for finite values). */
function bf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
function bf16Round(x: number): number {
  return new Float32Array(new Uint32Array([bf16Bits(x) << 16]).buffer)[0];
}

/** Uploads f32 data and converts it on the device; returns the bf16 buffer handle. */
function toDeviceBf16(c: NativeCuda, x: Float32Array): number {
  const f = c.cudaAlloc(x.length * 4), h = c.cudaAlloc(x.length * 2);
  c.cudaUpload(f, x);
  c.cudaConvertF32ToBf16(h, f, x.length);
  c.cudaFree(f);
  return h;
}

test('cuda: device info, cuBLAS loads via dlopen', (t) => {
  const c = cudaOrSkip(t);
  if (!c) return;
  const info = c.cudaInfo();
  assert.ok(info.deviceCount >= 1 && typeof info.deviceName === 'string' && /^\d+\.\d+$/.test(info.computeCapability ?? ''));
  const cb = c.cublasInfo();
  assert.equal(cb.loaded, true, cb.error);
  assert.ok((cb.version ?? 0) > 10000, `cuBLAS version ${cb.version}`);
});

test('cuda: upload/download round trip, offsets, bounds checks', (t) => {
  const c = cudaOrSkip(t);
  if (!c) return;
  const x = randf(new Rng(1), 1000), h = c.cudaAlloc(4000);
  c.cudaUpload(h, x);
  const y = new Float32Array(1000);
  c.cudaDownload(h, y);
  assert.deepEqual(y, x);
  const part = new Float32Array(10);
  c.cudaDownload(h, part, 400);
  assert.deepEqual(part, x.subarray(100, 110));
  assert.throws(() => c.cudaUpload(h, new Float32Array(1001)), /needs 4004/);
  c.cudaFree(h);
  assert.throws(() => c.cudaDownload(h, y), /not a live CUDA buffer/);
});

test('cuda: fp32 -> bf16 -> fp32 rounds to nearest even', (t) => {
  const c = cudaOrSkip(t);
  if (!c) return;
  // Random values plus exact ties (1 + 2^-8 and 1 + 3·2^-8 sit halfway between bf16 neighbours).
  const x = Float32Array.from([...randf(new Rng(2), 997), 1 + 2 ** -8, 1 + 3 * 2 ** -8, -0, 65504, 1e-30]);
  const h = toDeviceBf16(c, x), f = c.cudaAlloc(x.length * 4);
  const bits = new Uint16Array(x.length);
  c.cudaDownload(h, bits);
  for (let i = 0; i < x.length; i++) assert.equal(bits[i], bf16Bits(x[i]), `x[${i}] = ${x[i]}`);
  c.cudaConvertBf16ToF32(f, h, x.length);
  const back = new Float32Array(x.length);
  c.cudaDownload(f, back);
  for (let i = 0; i < x.length; i++) assert.equal(back[i], bf16Round(x[i]));
  assert.equal(back[997], 1);            // tie, rounds to even (down)
  assert.equal(back[998], 1 + 4 * 2 ** -8);  // tie, rounds to even (up)
  c.cudaFree(h); c.cudaFree(f);
});

test('cuda: cublasGemmBf16 matches sgemmRef on bf16 inputs (all transposes, C fp32/bf16, beta)', (t) => {
  const c = cudaOrSkip(t);
  if (!c) return;
  const rng = new Rng(3);
  for (const [M, N, K] of [[37, 53, 29], [128, 256, 64], [5, 300, 130]]) {
    for (const [ta, tb] of [[false, false], [false, true], [true, false], [true, true]] as const) {
      const A = randf(rng, M * K).map(bf16Round), B = randf(rng, K * N).map(bf16Round);
      const C0 = randf(rng, M * N);
      const hA = toDeviceBf16(c, A), hB = toDeviceBf16(c, B), hC = c.cudaAlloc(M * N * 4);
      const what = `M=${M} N=${N} K=${K} ta=${ta} tb=${tb}`;
      // fp32 C, beta = 0.5: accumulates onto the uploaded C
      c.cudaUpload(hC, C0);
      c.cublasGemmBf16(ta, tb, M, N, K, hA, hB, hC, 1.5, 0.5, true);
      const got = new Float32Array(M * N), want = C0.slice();
      c.cudaDownload(hC, got);
      sgemmRef(ta, tb, M, N, K, 1.5, A, B, 0.5, want);
      assert.ok(maxRelErr(got, want) < 1e-4, `${what} fp32 C: ${maxRelErr(got, want)}`);
      // bf16 C, beta = 0: one bf16 rounding of the result
      c.cublasGemmBf16(ta, tb, M, N, K, hA, hB, hC, 1, 0, false);
      const hF = c.cudaAlloc(M * N * 4);
      c.cudaConvertBf16ToF32(hF, hC, M * N);
      c.cudaDownload(hF, got);
      sgemmRef(ta, tb, M, N, K, 1, A, B, 0, want);
      assert.ok(maxRelErr(got, want) < 8e-3, `${what} bf16 C: ${maxRelErr(got, want)}`);
      for (const h of [hA, hB, hC, hF]) c.cudaFree(h);
    }
  }
  const small = c.cudaAlloc(16);
  assert.throws(() => c.cublasGemmBf16(false, false, 4, 4, 4, small, small, small, 1, 0, false), /needs 32/);
  c.cudaFree(small);
});

test('cuda: cublasGemmBf16Batched matches per-batch sgemmRef (strided A/C, shared B)', (t) => {
  const c = cudaOrSkip(t);
  if (!c) return;
  const rng = new Rng(4), batch = 3, [M, N, K] = [19, 24, 33];
  for (const [ta, tb] of [[false, true], [true, false]] as const) {
    const A = randf(rng, batch * M * K).map(bf16Round), B = randf(rng, K * N).map(bf16Round);
    const hA = toDeviceBf16(c, A), hB = toDeviceBf16(c, B), hC = c.cudaAlloc(batch * M * N * 4);
    c.cublasGemmBf16Batched(ta, tb, M, N, K, hA, hB, hC, 1, 0, true, batch, M * K, 0, M * N);
    const got = new Float32Array(batch * M * N);
    c.cudaDownload(hC, got);
    for (let i = 0; i < batch; i++) {
      const want = new Float32Array(M * N);
      sgemmRef(ta, tb, M, N, K, 1, A.subarray(i * M * K, (i + 1) * M * K), B, 0, want);
      const e = maxRelErr(got.subarray(i * M * N, (i + 1) * M * N), want);
      assert.ok(e < 1e-4, `batch ${i} ta=${ta} tb=${tb}: ${e}`);
    }
    assert.throws(() => c.cublasGemmBf16Batched(ta, tb, M, N, K, hA, hB, hC, 1, 0, true, batch + 1, M * K, 0, M * N), /needs/);
    for (const h of [hA, hB, hC]) c.cudaFree(h);
  }
});

test('cuda: cudaBenchGemm returns a plausible time', (t) => {
  const c = cudaOrSkip(t);
  if (!c) return;
  const ms = c.cudaBenchGemm(1024, 1024, 1024, 20);
  const tflops = 2 * 1024 ** 3 / (ms * 1e-3) / 1e12;
  assert.ok(ms > 0 && Number.isFinite(ms), `ms = ${ms}`);
  assert.ok(tflops > 1 && tflops < 5000, `implausible ${tflops} TFLOP/s`);
  c.cudaSync();
});
