// CUDA causal GQA flash attention (native/cuda/flash_attention.cu) vs the float64 TypeScript references
// attentionForwardRef / attentionBackwardRef on the same bf16-rounded inputs. Shapes cover training (Tq = Tk),
// GQA groups of 2 and 4, every supported head dim, partial tiles, KV-cached decode (Tq = 1) and chunked
// prefill (Tq < Tk). Outputs are poisoned with NaN before every call and checked all written. Runs only where a
// CUDA device is present; skips with the reason elsewhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { attentionBackwardRef, attentionForwardRef } from '../src/backend/kernels.js';
import { bf16ToF32, f32ToBf16 } from '../src/backend/cuda.js';
import { cudaAttention, cudaAttentionUnavailable, type NativeCudaAttention } from '../src/backend/cuda-attention.js';

type TestContext = { skip(message?: string): void; diagnostic(message: string): void };

function attnOrSkip(t: TestContext): NativeCudaAttention | null {
  const c = cudaAttention();
  if (!c) t.skip(cudaAttentionUnavailable());
  return c;
}

const NAN_BF16 = 0x7fc0;

/** Random normal values rounded to bf16: the bits (for the device) and their exact values (for the reference). */
function randBf16(rng: Rng, n: number, std = 1): { bits: Uint16Array; vals: Float32Array } {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = std * rng.normal();
  const bits = f32ToBf16(a);
  return { bits, vals: bf16ToF32(bits) };
}

function relNorm(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < want.length; i++) { d += (got[i] - want[i]) ** 2; m += want[i] ** 2; }
  return Math.sqrt(d / m);
}

function assertAllFinite(name: string, a: ArrayLike<number>): void {
  for (let i = 0; i < a.length; i++) assert.ok(Number.isFinite(a[i]), `${name}[${i}] = ${a[i]}: not written (NaN poison left)`);
}

interface Shape { B: number; Tq: number; Tk: number; Hq: number; Hkv: number; D: number; qStd?: number }

const SHAPES: { name: string; s: Shape }[] = [
  { name: 'training GQA×2 D=32 (partial tiles)', s: { B: 2, Tq: 37, Tk: 37, Hq: 4, Hkv: 2, D: 32 } },
  { name: 'training MHA D=64 (3 tiles)', s: { B: 1, Tq: 130, Tk: 130, Hq: 8, Hkv: 8, D: 64 } },
  { name: 'training MHA D=64, peaked scores (q·3)', s: { B: 1, Tq: 130, Tk: 130, Hq: 2, Hkv: 2, D: 64, qStd: 3 } },
  { name: 'training GQA×4 D=128', s: { B: 1, Tq: 200, Tk: 200, Hq: 8, Hkv: 2, D: 128 } },
  { name: 'decode Tq=1 Tk=77 GQA×2 D=64', s: { B: 1, Tq: 1, Tk: 77, Hq: 8, Hkv: 4, D: 64 } },
  { name: 'chunked prefill Tq=16 Tk=80 GQA×2 D=64', s: { B: 1, Tq: 16, Tk: 80, Hq: 8, Hkv: 4, D: 64 } },
];

for (const { name, s } of SHAPES) {
  test(`cuda-attention: ${name}: forward (out, lse) and backward (dq, dk, dv) match the f64 references`, (t) => {
    const c = attnOrSkip(t);
    if (!c) return;
    const { B, Tq, Tk, Hq, Hkv, D } = s;
    const rng = new Rng(1000 + Tq * 7 + Tk + D);
    const nq = B * Tq * Hq * D, nk = B * Tk * Hkv * D, nl = B * Hq * Tq;
    const q = randBf16(rng, nq, s.qStd ?? 1), k = randBf16(rng, nk), v = randBf16(rng, nk), dout = randBf16(rng, nq);
    const hq = c.cudaAlloc(nq * 2), hk = c.cudaAlloc(nk * 2), hv = c.cudaAlloc(nk * 2), hout = c.cudaAlloc(nq * 2);
    const hdout = c.cudaAlloc(nq * 2), hlse = c.cudaAlloc(nl * 4);
    const hdq = c.cudaAlloc(nq * 4), hdk = c.cudaAlloc(nk * 4), hdv = c.cudaAlloc(nk * 4);
    try {
      c.cudaUpload(hq, q.bits); c.cudaUpload(hk, k.bits); c.cudaUpload(hv, v.bits); c.cudaUpload(hdout, dout.bits);

      // ---- forward ----
      const refOut = new Float64Array(nq), refLse = new Float64Array(nl);
      attentionForwardRef(refOut, refLse, q.vals, k.vals, v.vals, B, Tq, Tk, Hq, Hkv, D);
      // without lse first (inference path), then with it
      c.cudaUpload(hout, new Uint16Array(nq).fill(NAN_BF16));
      c.cudaAttnFwd(hq, hk, hv, hout, null, B, Tq, Tk, Hq, Hkv, D);
      c.cudaSync();
      const outBitsNoLse = new Uint16Array(nq);
      c.cudaDownload(hout, outBitsNoLse);
      c.cudaUpload(hout, new Uint16Array(nq).fill(NAN_BF16));
      c.cudaUpload(hlse, new Float32Array(nl).fill(NaN));
      c.cudaAttnFwd(hq, hk, hv, hout, hlse, B, Tq, Tk, Hq, Hkv, D);
      c.cudaSync();
      const outBits = new Uint16Array(nq), lse = new Float32Array(nl);
      c.cudaDownload(hout, outBits);
      c.cudaDownload(hlse, lse);
      const out = bf16ToF32(outBits);
      assertAllFinite('out', out);
      assertAllFinite('lse', lse);
      assert.deepEqual(outBitsNoLse, outBits, 'out differs between the lse = null and lse calls');
      const eOut = relNorm(out, refOut), eLse = relNorm(lse, refLse);
      t.diagnostic(`forward: out rel err ${eOut.toExponential(2)} (bf16 out), lse rel err ${eLse.toExponential(2)}`);
      assert.ok(eOut < 1e-2, `out rel err ${eOut}`);
      assert.ok(eLse < 1e-3, `lse rel err ${eLse}`);

      // ---- backward: the GPU's bf16 out and its lse feed both sides, so only the backward math differs ----
      const refDq = new Float64Array(nq), refDk = new Float64Array(nk), refDv = new Float64Array(nk);
      attentionBackwardRef(refDq, refDk, refDv, dout.vals, q.vals, k.vals, v.vals, out, lse, B, Tq, Tk, Hq, Hkv, D);
      for (let rep = 0; rep < 2; rep++) {  // twice: the call overwrites (a second call must not accumulate)
        c.cudaUpload(hdq, new Float32Array(nq).fill(NaN));
        c.cudaUpload(hdk, new Float32Array(nk).fill(NaN));
        c.cudaUpload(hdv, new Float32Array(nk).fill(NaN));
        c.cudaAttnBwd(hdout, hq, hk, hv, hout, hlse, hdq, hdk, hdv, B, Tq, Tk, Hq, Hkv, D);
        c.cudaSync();
        const dq = new Float32Array(nq), dk = new Float32Array(nk), dv = new Float32Array(nk);
        c.cudaDownload(hdq, dq); c.cudaDownload(hdk, dk); c.cudaDownload(hdv, dv);
        assertAllFinite('dq', dq); assertAllFinite('dk', dk); assertAllFinite('dv', dv);
        const eq = relNorm(dq, refDq), ek = relNorm(dk, refDk), ev = relNorm(dv, refDv);
        if (rep === 0) t.diagnostic(`backward: rel err dq ${eq.toExponential(2)}, dk ${ek.toExponential(2)}, dv ${ev.toExponential(2)}`);
        assert.ok(eq < 1e-3, `dq rel err ${eq}`);
        assert.ok(ek < 1e-3, `dk rel err ${ek}`);
        assert.ok(ev < 1e-3, `dv rel err ${ev}`);
      }
    } finally {
      for (const h of [hq, hk, hv, hout, hdout, hlse, hdq, hdk, hdv]) c.cudaFree(h);
    }
  });
}

test('cuda-attention: unsupported shapes are refused with the reason', (t) => {
  const c = attnOrSkip(t);
  if (!c) return;
  const h = c.cudaAlloc(1 << 20), hl = c.cudaAlloc(1 << 16);
  try {
    assert.throws(() => c.cudaAttnFwd(h, h, h, h, hl, 1, 8, 8, 2, 2, 48), /D=48/);
    assert.throws(() => c.cudaAttnBwd(h, h, h, h, h, hl, h, h, h, 1, 8, 8, 2, 2, 96), /D=96/);
    assert.throws(() => c.cudaAttnFwd(h, h, h, h, hl, 1, 8, 8, 6, 4, 64), /multiple of Hkv=4/);
    assert.throws(() => c.cudaAttnFwd(h, h, h, h, hl, 1, 9, 8, 2, 2, 64), /Tk=8 < Tq=9/);
    assert.throws(() => c.cudaBenchAttention(1, 64, 2, 2, 80, 1), /D=80/);
    // an undersized buffer is refused before any kernel runs
    const small = c.cudaAlloc(64);
    try {
      assert.throws(() => c.cudaAttnFwd(small, h, h, h, null, 1, 8, 8, 2, 2, 64), /bytes, needs/);
    } finally { c.cudaFree(small); }
  } finally { c.cudaFree(h); c.cudaFree(hl); }
});
