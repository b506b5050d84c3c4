// CUDA kernels of the training path (native/cuda/train_ops.cu) vs their TypeScript twins: RMSNorm, RoPE,
// SwiGLU, the small element-wise helpers, embedding, the fused chunked LM head + cross-entropy, MSE, sum of
// squares and AdamW. Random (never all-zero) inputs, rounded to bf16 on the host wherever a kernel takes bf16;
// overwritten outputs poisoned with NaN before each run, accumulated outputs pre-filled with random values.
// Odd sizes exercise the scalar tails, and buffers at odd byte offsets (cudaView) the unaligned fallbacks.
// Device tests skip with the reason where no CUDA device is present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { sgemmRef } from '../src/backend/kernels.js';
import { nativeAddon } from '../src/backend/native.js';
import { cudaTrainOps, cudaTrainOpsUnavailable, ceChunkRows, ceScratchBytes, CUDA_TRAIN_FUNCTIONS,
  type NativeCudaTrain } from '../src/backend/cuda-train-ops.js';
import { rmsnormForwardRef, rmsnormBackwardRef } from '../src/model/ops/rmsnorm.js';
import { ropeInvFreq, ropeTables, ropeForward, ropeBackward } from '../src/model/ops/rope.js';
import { swigluForwardRef, swigluBackwardRef } from '../src/model/ops/swiglu.js';
import { embeddingForward } from '../src/model/ops/embedding.js';
import { crossEntropyFused } from '../src/model/ops/cross-entropy.js';
import { mseForward, mseBackward } from '../src/model/ops/mse.js';
import { AdamW, type Param } from '../src/train/adamw.js';
import { withDev } from './helpers/dev-buffers.js';
import { randf, relNorm } from './helpers/arrays.js';
import { bf as bf16Round } from './helpers/gpu-model.js';

type TestContext = { skip(message?: string): void; diagnostic(message: string): void };

function opsOrSkip(t: TestContext): NativeCudaTrain | null {
  const c = cudaTrainOps();
  if (!c) t.skip(cudaTrainOpsUnavailable());
  return c;
}

const NAN_BF16 = 0x7fc0;


function assertAllFinite(a: ArrayLike<number>, what: string): void {
  for (let i = 0; i < a.length; i++) assert.ok(Number.isFinite(a[i]), `${what}: element ${i} = ${a[i]} (NaN poison left or overflow)`);
}
function assertRel(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string, t: TestContext): void {
  assertAllFinite(got, what);
  const e = relNorm(got, want);
  t.diagnostic(`${what}: rel err ${e.toExponential(2)}`);
  assert.ok(e <= tol, `${what}: relative error ${e.toExponential(3)} > ${tol}`);
}
/** Per element: |got − want| ≤ rel·|want| + abs. */
function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, abs: number, what: string): void {
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i] - want[i]) <= rel * Math.abs(want[i]) + abs, `${what}: element ${i}: got ${got[i]}, want ${want[i]}`);
  }
}
function diff(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const o = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) o[i] = a[i] - b[i];
  return o;
}


// ---------------------------------------------------------------- host-side (run everywhere)

test('cuda-train-ops: ceChunkRows / ceScratchBytes size the LM-head scratch', () => {
  assert.deepEqual(ceScratchBytes(16, 1000), { logits: 64000, dlogits: 32000 });
  // budget for 100 rows of V=1000 (6 bytes per logit) → 96 (multiple of 8), never above N
  assert.equal(ceChunkRows(8192, 1000, 100 * 6000), 96);
  assert.equal(ceChunkRows(37, 1000, 100 * 6000), 37);
  assert.equal(ceChunkRows(37, 1000, 37 * 6000), 37);
  assert.equal(ceChunkRows(37, 1000, 7 * 6000 + 5999), 7);   // below 8: no rounding
  assert.equal(ceChunkRows(37, 256000, 10), 1);              // at least one row
  const r = ceChunkRows(8192, 128256, 2 ** 30);
  assert.ok(r % 8 === 0 && r >= 8 && r * 128256 * 6 <= 2 ** 30 && (r + 8) * 128256 * 6 > 2 ** 30, `chunk rows ${r}`);
  const s = ceScratchBytes(r, 128256);
  assert.ok(s.logits + s.dlogits <= 2 ** 30);
  assert.throws(() => ceChunkRows(0, 10, 1000), RangeError);
  assert.throws(() => ceChunkRows(4, 0, 1000), RangeError);
});

test('cuda-train-ops: the CUDA addon exports every training kernel, and they reject dead handles and bad sizes before any launch', (t) => {
  const a = nativeAddon();
  if (!a?.cuda) { t.skip('native addon not built with CUDA'); return; }
  const o = a.cuda as unknown as Record<string, unknown>;
  const missing = CUDA_TRAIN_FUNCTIONS.filter((f) => typeof o[f] !== 'function');
  assert.deepEqual(missing, [], 'functions missing from the addon');
  const c = a.cuda as NativeCudaTrain;
  const X = 0x7ffffff0;  // never a live handle (handles count up from 1)
  const dead = (fn: string): RegExp => new RegExp(`${fn}: argument \\d+ is not a live CUDA buffer`);
  assert.throws(() => c.cudaRmsnormFwd(X, X, null, null, null, 2, 8, 1e-5), dead('cudaRmsnormFwd'));
  assert.throws(() => c.cudaRmsnormBwd(X, X, X, X, X, 2, 8), dead('cudaRmsnormBwd'));
  assert.throws(() => c.cudaRopeFwd(X, X, X, X, 1, 2, 3, 8), dead('cudaRopeFwd'));
  assert.throws(() => c.cudaRopeBwd(X, X, X, X, 1, 2, 3, 8), dead('cudaRopeBwd'));
  assert.throws(() => c.cudaRopeFwd(X, X, X, X, 1, 2, 3, 7), /cudaRopeFwd: head dim D = 7 must be even/);
  assert.throws(() => c.cudaSwigluFwd(X, X, X, 5), dead('cudaSwigluFwd'));
  assert.throws(() => c.cudaSwigluBwd(X, X, X, X, X, 5), dead('cudaSwigluBwd'));
  assert.throws(() => c.cudaAddF32(X, X, X, 5), dead('cudaAddF32'));
  assert.throws(() => c.cudaScaleF32(X, 5, 2), dead('cudaScaleF32'));
  assert.throws(() => c.cudaCastF32ToBf16Scaled(X, X, 5, 1), dead('cudaCastF32ToBf16Scaled'));
  assert.throws(() => c.cudaAccumulateBf16ToF32(X, X, 5, 1), dead('cudaAccumulateBf16ToF32'));
  assert.throws(() => c.cudaEmbedding(X, X, X, 2, 4, 10, true), dead('cudaEmbedding'));
  assert.throws(() => c.cudaLmHeadCe(X, X, X, null, X, 4, 8, 10, 1, 2, X, X), dead('cudaLmHeadCe'));
  assert.throws(() => c.cudaLmHeadCe(X, X, X, null, X, 4, 8, 10, 1, 0, X, X), /cudaLmHeadCe: chunkRows must be >= 1/);
  assert.throws(() => c.cudaMseF32(X, X, null, X, 5, 1), dead('cudaMseF32'));
  assert.throws(() => c.cudaSumSquaresF32(X, 5, X), dead('cudaSumSquaresF32'));
  assert.throws(() => c.cudaAdamW(X, X, X, X, 5, 1e-3, 0.9, 0.999, 1e-8, 0, 1, 1, false), dead('cudaAdamW'));
  assert.throws(() => c.cudaAdamW(X, X, X, X, 5, 1e-3, 0.9, 0.999, 1e-8, 0, 0, 1, false), /cudaAdamW: step must be >= 1/);
  assert.throws(() => c.cudaScaleF32(X, -1, 2), /cudaScaleF32: argument 1 must be a non-negative integer/);
  assert.throws(() => c.cudaEmbedding(X, X, X, 2, 4, 10, 1 as unknown as boolean), /cudaEmbedding: argument 6 must be a boolean/);
});

// ---------------------------------------------------------------- device tests

test('cuda-train-ops: RMSNorm forward (bf16 + f32 outputs, rstd) matches rmsnormForwardRef', (t) => {
  const c = opsOrSkip(t);
  if (!c) return;
  const rng = new Rng(101);
  // [N, C, byte offset of every buffer]: vector path, realistic row, C % 4 ≠ 0, unaligned buffers
  for (const [N, C, off] of [[37, 200, 0], [9, 4096, 0], [11, 203, 0], [13, 200, 4], [3, 8192, 0]]) {
    const name = `rmsnorm fwd N=${N} C=${C}${off ? ` offset ${off}` : ''}`;
    const x = randf(rng, N * C, 1.5, 0.2), w = randf(rng, C, 0.1, 1), eps = 1e-5;
    const yRef = new Float32Array(N * C), rRef = new Float32Array(N);
    rmsnormForwardRef(yRef, rRef, x, w, N, C, eps);
    withDev(c, (d) => {
      const hx = d.f32(x, off), hw = d.f32(w, off), hyb = d.nanBf16(N * C, off), hyf = d.nanF32(N * C, off), hr = d.nanF32(N, off);
      c.cudaRmsnormFwd(hx, hw, hyb, hyf, hr, N, C, eps);
      const yf = d.getF32(hyf, N * C), yb = d.getBf16(hyb, N * C), r = d.getF32(hr, N);
      assertRel(yf, yRef, 1e-5, `${name} yF32`, t);
      assertClose(yf, yRef, 1e-5, 1e-6, `${name} yF32`);
      assertRel(r, rRef, 1e-6, `${name} rstd`, t);
      assertRel(yb, yRef, 8e-3, `${name} yBf16`, t);
      assertClose(yb, yRef, 2 ** -8, 1e-6, `${name} yBf16`);
      // outputs are optional: bf16 only, then f32 only in place over x
      const hyb2 = d.nanBf16(N * C, off);
      c.cudaRmsnormFwd(hx, hw, hyb2, null, null, N, C, eps);
      assert.deepEqual(d.getBf16(hyb2, N * C), yb, `${name}: bf16-only call differs`);
      c.cudaRmsnormFwd(hx, hw, null, hx, null, N, C, eps);
      assert.deepEqual(d.getF32(hx, N * C), yf, `${name}: in-place f32 call differs`);
    });
  }
});

test('cuda-train-ops: RMSNorm backward accumulates rmsnormBackwardRef into dx', (t) => {
  const c = opsOrSkip(t);
  if (!c) return;
  const rng = new Rng(102);
  for (const [N, C, off] of [[37, 200, 0], [9, 4096, 0], [11, 203, 0], [13, 200, 4]]) {
    const name = `rmsnorm bwd N=${N} C=${C}${off ? ` offset ${off}` : ''}`;
    const x = randf(rng, N * C, 1.5, 0.2), w = randf(rng, C, 0.1, 1), dout = randf(rng, N * C), dx0 = randf(rng, N * C);
    const y = new Float32Array(N * C), r = new Float32Array(N);
    rmsnormForwardRef(y, r, x, w, N, C, 1e-5);
    const dxRef = Float32Array.from(dx0);
    rmsnormBackwardRef(dxRef, null, dout, x, w, r, N, C);
    withDev(c, (d) => {
      const hdx = d.f32(dx0, off);
      c.cudaRmsnormBwd(hdx, d.f32(dout, off), d.f32(x, off), d.f32(w, off), d.f32(r, off), N, C);
      const dx = d.getF32(hdx, N * C);
      assertRel(dx, dxRef, 1e-5, `${name} dx`, t);
      assertRel(diff(dx, dx0), diff(dxRef, dx0), 1e-5, `${name} dx increment`, t);
    });
  }
});

test('cuda-train-ops: RoPE forward / backward (bf16 out) match ropeForward / ropeBackward', (t) => {
  const c = opsOrSkip(t);
  if (!c) return;
  const rng = new Rng(103);
  // [B, T, H, D, pos0, offset]: half even (paired path), half odd (scalar), unaligned, realistic head dim
  for (const [B, T, H, D, pos0, off] of [[2, 7, 3, 64, 0, 0], [3, 5, 2, 6, 11, 0], [2, 7, 3, 64, 100, 4], [1, 33, 4, 128, 4000, 0]]) {
    const name = `rope B=${B} T=${T} H=${H} D=${D} pos0=${pos0}${off ? ` offset ${off}` : ''}`;
    const half = D / 2, n = B * T * H * D;
    const cos = new Float32Array(T * half), sin = new Float32Array(T * half);
    ropeTables(cos, sin, ropeInvFreq(D, 10000, { type: 'default' }), pos0, T);
    const x = randf(rng, n), g = randf(rng, n);
    const fRef = new Float64Array(n), bRef = new Float64Array(n);
    ropeForward(fRef, x, cos, sin, B, T, H, D);
    ropeBackward(bRef, g, cos, sin, B, T, H, D);
    withDev(c, (d) => {
      const hc = d.f32(cos, off), hs = d.f32(sin, off), ho = d.nanBf16(n, off), hd = d.nanBf16(n, off);
      c.cudaRopeFwd(d.f32(x, off), ho, hc, hs, B, T, H, D);
      c.cudaRopeBwd(d.f32(g, off), hd, hc, hs, B, T, H, D);
      const o = d.getBf16(ho, n), dx = d.getBf16(hd, n);
      assertRel(o, fRef, 8e-3, `${name} forward`, t);
      assertClose(o, fRef, 2 ** -8, 1e-6, `${name} forward`);
      assertRel(dx, bRef, 8e-3, `${name} backward`, t);
      assertClose(dx, bRef, 2 ** -8, 1e-6, `${name} backward`);
    });
  }
});

test('cuda-train-ops: SwiGLU forward / backward (bf16) match swigluForwardRef / swigluBackwardRef', (t) => {
  const c = opsOrSkip(t);
  if (!c) return;
  const rng = new Rng(104);
  for (const [n, off] of [[1003, 0], [3 * 4096 + 5, 0], [1003, 2], [7, 0]]) {
    const name = `swiglu n=${n}${off ? ` offset ${off}` : ''}`;
    const gate = bf16Round(randf(rng, n, 2)), up = bf16Round(randf(rng, n)), dout = bf16Round(randf(rng, n));
    const oRef = new Float64Array(n), dgRef = new Float64Array(n), duRef = new Float64Array(n);
    swigluForwardRef(oRef, gate, up, n);
    swigluBackwardRef(dgRef, duRef, dout, gate, up, n);
    withDev(c, (d) => {
      const hg = d.bf16(gate, off), hu = d.bf16(up, off), ho = d.nanBf16(n, off), hdg = d.nanBf16(n, off), hdu = d.nanBf16(n, off);
      c.cudaSwigluFwd(hg, hu, ho, n);
      c.cudaSwigluBwd(d.bf16(dout, off), hg, hu, hdg, hdu, n);
      const o = d.getBf16(ho, n), dg = d.getBf16(hdg, n), du = d.getBf16(hdu, n);
      assertRel(o, oRef, 8e-3, `${name} out`, t);
      assertClose(o, oRef, 2 ** -8, 1e-6, `${name} out`);
      assertRel(dg, dgRef, 8e-3, `${name} dgate`, t);
      assertClose(dg, dgRef, 2 ** -8, 1e-6, `${name} dgate`);
      assertRel(du, duRef, 8e-3, `${name} dup`, t);
      assertClose(du, duRef, 2 ** -8, 1e-6, `${name} dup`);
    });
  }
});

test('cuda-train-ops: add, scale, scaled bf16 cast and bf16 accumulation', (t) => {
  const c = opsOrSkip(t);
  if (!c) return;
  const rng = new Rng(105);
  for (const [n, off] of [[1003, 0], [65536 + 3, 0], [1003, 4], [2, 0]]) {
    const name = `n=${n}${off ? ` offset ${off}` : ''}`;
    const a = randf(rng, n), b = randf(rng, n), k = Math.fround(0.37);
    withDev(c, (d) => {
      // add into a fresh output, then in place (out aliases a)
      const ha = d.f32(a, off), hb = d.f32(b, off), ho = d.nanF32(n, off);
      c.cudaAddF32(ho, ha, hb, n);
      const sum = Float32Array.from(a, (v, i) => v + b[i]);
      assert.deepEqual(d.getF32(ho, n), sum, `${name}: add`);
      c.cudaAddF32(ha, ha, hb, n);
      assert.deepEqual(d.getF32(ha, n), sum, `${name}: add in place`);
      // scale in place
      const hs = d.f32(b, off);
      c.cudaScaleF32(hs, n, k);
      assert.deepEqual(d.getF32(hs, n), Float32Array.from(b, (v) => v * k), `${name}: scale`);
      // bf16(scale·src): f32 product, then round to nearest even — bit-exact
      const hc = d.nanBf16(n, off);
      c.cudaCastF32ToBf16Scaled(hc, hb, n, k);
      assert.deepEqual(d.getBf16(hc, n), bf16Round(Float32Array.from(b, (v) => v * k)), `${name}: cast`);
      // dst += scale·src (src bf16)
      const src = bf16Round(randf(rng, n)), dst0 = randf(rng, n), hd = d.f32(dst0, off);
      c.cudaAccumulateBf16ToF32(hd, d.bf16(src, off), n, -1.5);
      const got = d.getF32(hd, n), want = Float64Array.from(dst0, (v, i) => v - 1.5 * src[i]);
      assertRel(got, want, 1e-6, `${name}: accumulate`, t);
      assertClose(got, want, 1e-6, 1e-6, `${name}: accumulate`);
    });
  }
});

test('cuda-train-ops: embedding gather (bf16 and f32 tables) matches embeddingForward; bad ids give NaN rows', (t) => {
  const c = opsOrSkip(t);
  if (!c) return;
  const rng = new Rng(106);
  for (const [N, D, V, off] of [[37, 200, 1000, 0], [37, 203, 1000, 0], [5, 4096, 300, 0], [11, 64, 50, 4]]) {
    for (const bf of [true, false]) {
      const name = `embedding N=${N} D=${D} V=${V} ${bf ? 'bf16' : 'f32'}${off ? ` offset ${off}` : ''}`;
      const table = bf ? bf16Round(randf(rng, V * D)) : randf(rng, V * D);
      const ids = Int32Array.from({ length: N }, () => rng.int(V));
      ids[0] = 0; ids[N - 1] = V - 1;
      const ref = new Float32Array(N * D);
      embeddingForward(ref, ids, table, N, D, V);
      withDev(c, (d) => {
        const ht = bf ? d.bf16(table, off) : d.f32(table, off), ho = d.nanF32(N * D, off);
        c.cudaEmbedding(d.up(ids, off), ht, ho, N, D, V, bf);
        assert.deepEqual(d.getF32(ho, N * D), ref, `${name}: rows differ`);
        // ids outside [0, V) → NaN rows, the others still gathered
        const bad = Int32Array.from(ids);
        bad[1] = -1; bad[2] = V;
        const ho2 = d.f32(new Float32Array(N * D), off);
        c.cudaEmbedding(d.up(bad, off), ht, ho2, N, D, V, bf);
        const got = d.getF32(ho2, N * D);
        for (let n = 0; n < N; n++) {
          for (let i = 0; i < D; i++) {
            const v = got[n * D + i];
            if (n === 1 || n === 2) assert.ok(Number.isNaN(v), `${name}: row ${n} (bad id) element ${i} = ${v}, want NaN`);
            else assert.equal(v, ref[n * D + i], `${name}: row ${n} element ${i}`);
          }
        }
      });
    }
  }
});

test('cuda-train-ops: fused chunked LM head + cross-entropy matches crossEntropyFused on sgemmRef logits', (t) => {
  const c = opsOrSkip(t);
  if (!c) return;
  const rng = new Rng(107);
  // [N, D, V, chunkRows, with dHidden]: several chunks with a short last one; V % 4 ≠ 0 (scalar row path);
  // one chunk holding every row; a realistic vocabulary row length.
  for (const [N, D, V, chunk, withDh] of [[37, 96, 1000, 16, 1], [20, 64, 1001, 7, 1], [37, 96, 1000, 64, 1],
    [6, 64, 32000, 4, 1], [9, 32, 5000, 3, 0]]) {
    const name = `lm-head CE N=${N} D=${D} V=${V} chunk=${chunk}${withDh ? '' : ' (no dHidden)'}`;
    const h = bf16Round(randf(rng, N * D)), W = bf16Round(randf(rng, V * D, 0.05));
    const targets = Int32Array.from({ length: N }, () => (rng.next() < 0.2 ? -100 : rng.int(V)));
    targets[0] = 0; targets[1] = V - 1; targets[2] = -100;
    let count = 0;
    for (const v of targets) if (v >= 0) count++;
    const scale = 1 / count;
    // reference: f64 logits, fused CE, dHidden += bf16(dlogits)·W
    const logits = new Float64Array(N * V), dl = new Float64Array(N * V);
    sgemmRef(false, true, N, V, D, 1, h, W, 0, logits);
    const lossRef = crossEntropyFused(dl, logits, targets, N, V, scale);
    const dh0 = randf(rng, N * D), dhRef = Float64Array.from(dh0);
    sgemmRef(false, false, N, D, V, 1, bf16Round(Float32Array.from(dl)), W, 1, dhRef);
    const rows = Math.min(chunk, N), last0 = Math.floor((N - 1) / chunk) * chunk, lastRows = N - last0;
    withDev(c, (d) => {
      const s = ceScratchBytes(rows, V);
      const hl = d.f32(new Float32Array(s.logits / 4).fill(NaN)), hdl = d.nanBf16(s.dlogits / 2);
      const hloss = d.f32(Float32Array.of(1.5)), hdh = withDh ? d.f32(dh0) : null;
      c.cudaLmHeadCe(d.bf16(h), d.bf16(W), d.up(targets), hdh, hloss, N, D, V, scale, chunk, hl, hdl);
      const loss = d.getF32(hloss, 1)[0] - 1.5;
      const le = Math.abs(loss - lossRef) / lossRef;
      t.diagnostic(`${name}: loss ${loss} vs ${lossRef} (rel ${le.toExponential(2)})`);
      assert.ok(le <= 1e-5, `${name}: loss sum ${loss}, want ${lossRef}`);
      // the scratch holds the last chunk
      const gl = d.getF32(hl, lastRows * V), gdl = d.getBf16(hdl, lastRows * V);
      assertRel(gl, logits.subarray(last0 * V, N * V), 1e-5, `${name} last-chunk logits`, t);
      assertRel(gdl, dl.subarray(last0 * V, N * V), 8e-3, `${name} last-chunk dlogits`, t);
      assertClose(gdl, dl.subarray(last0 * V, N * V), 2 ** -8, 1e-7, `${name} last-chunk dlogits`);
      if (hdh !== null) {
        const dh = d.getF32(hdh, N * D);
        assertAllFinite(dh, `${name} dHidden`);
        assertRel(diff(dh, dh0), diff(dhRef, dh0), 8e-3, `${name} dHidden increment`, t);
        for (let n = 0; n < N; n++) {  // ignored rows: dlogits row is zero, dHidden row untouched
          if (targets[n] < 0) for (let i = 0; i < D; i++) assert.equal(dh[n * D + i], dh0[n * D + i], `${name}: ignored row ${n} of dHidden changed`);
        }
      }
    });
  }
  // a target ≥ V is misuse: NaN loss, NaN dlogits row
  withDev(c, (d) => {
    const N = 3, D = 32, V = 40;
    const hl = d.nanF32(N * V), hdl = d.nanBf16(N * V), hloss = d.f32(Float32Array.of(0));
    c.cudaLmHeadCe(d.bf16(bf16Round(randf(rng, N * D))), d.bf16(bf16Round(randf(rng, V * D, 0.05))),
      d.up(Int32Array.of(1, V, -100)), null, hloss, N, D, V, 1, N, hl, hdl);
    assert.ok(Number.isNaN(d.getF32(hloss, 1)[0]), 'target ≥ V: loss should be NaN');
    const g = d.getBf16(hdl, N * V);
    for (let i = 0; i < V; i++) {
      assert.ok(Number.isFinite(g[i]), `row 0 element ${i}`);
      assert.ok(Number.isNaN(g[V + i]), `row 1 (target ≥ V) element ${i} should be NaN`);
      assert.equal(g[2 * V + i], 0, `row 2 (ignored) element ${i}`);
    }
  });
});

test('cuda-train-ops: MSE loss sum and gradient match mseForward / mseBackward', (t) => {
  const c = opsOrSkip(t);
  if (!c) return;
  const rng = new Rng(108);
  for (const [n, off] of [[100003, 0], [1001, 4], [3, 0], [2 ** 20 + 1, 0]]) {
    const name = `mse n=${n}${off ? ` offset ${off}` : ''}`;
    const a = randf(rng, n), tg = randf(rng, n, 1, 0.3), gs = 0.7;
    const da0 = randf(rng, n, 2 / n);  // same order as the increment, so the accumulation is visible
    const lossRef = mseForward(a, tg, n) * n;
    const daRef = Float64Array.from(da0);
    mseBackward(daRef, a, tg, n, gs);
    withDev(c, (d) => {
      const ha = d.f32(a, off), ht = d.f32(tg, off), hda = d.f32(da0, off), hloss = d.f32(Float32Array.of(2), off);
      c.cudaMseF32(ha, ht, hda, hloss, n, gs);
      const loss = d.getF32(hloss, 1)[0] - 2;
      t.diagnostic(`${name}: loss sum ${loss} vs ${lossRef}`);
      assert.ok(Math.abs(loss - lossRef) <= 1e-5 * lossRef, `${name}: loss sum ${loss}, want ${lossRef}`);
      const da = d.getF32(hda, n);
      assertRel(da, daRef, 1e-5, `${name} da`, t);
      assertRel(diff(da, da0), diff(daRef, da0), 1e-5, `${name} da increment`, t);
      // without da: loss only, accumulated again
      c.cudaMseF32(ha, ht, null, hloss, n, gs);
      const loss2 = d.getF32(hloss, 1)[0] - 2;
      assert.ok(Math.abs(loss2 - 2 * lossRef) <= 2e-5 * lossRef, `${name}: second loss sum ${loss2}, want ${2 * lossRef}`);
    });
  }
});

test('cuda-train-ops: sum of squares accumulates Σx²', (t) => {
  const c = opsOrSkip(t);
  if (!c) return;
  const rng = new Rng(109);
  for (const [n, off] of [[100003, 0], [1001, 4], [5, 0], [2 ** 22 + 3, 0]]) {
    const x = randf(rng, n, 0.01);
    let ref = 0;
    for (const v of x) ref += v * v;
    withDev(c, (d) => {
      const ho = d.f32(Float32Array.of(1), off);
      c.cudaSumSquaresF32(d.f32(x, off), n, ho);
      const got = d.getF32(ho, 1)[0] - 1;
      t.diagnostic(`sumsq n=${n}: ${got} vs ${ref}`);
      // the pre-filled 1 costs f32 resolution near 1 + ref: allow one ulp of it on top of 1e-5 relative
      assert.ok(Math.abs(got - ref) <= 1e-5 * ref + 2 ** -23 * (1 + ref), `sumsq n=${n}${off ? ` offset ${off}` : ''}: ${got}, want ${ref}`);
    });
  }
});

test('cuda-train-ops: AdamW matches AdamW.update over 3 steps (decoupled, coupled L2, no decay; scaled gradient)', (t) => {
  const c = opsOrSkip(t);
  if (!c) return;
  const rng = new Rng(110);
  const modes: { name: string; wd: number; coupled: boolean }[] = [
    { name: 'decoupled wd', wd: 0.1, coupled: false }, { name: 'coupled L2', wd: 0.1, coupled: true },
    { name: 'no decay', wd: 0, coupled: false }];
  for (const mode of modes) {
    for (const [n, off] of [[1003, 0], [37, 4], [65536 + 1, 0]]) {
      const name = `adamw ${mode.name} n=${n}${off ? ` offset ${off}` : ''}`;
      const lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, gs = 0.5;
      const p0 = randf(rng, n, 0.5);
      const param: Param = { name: 'p', data: Float32Array.from(p0), grad: new Float32Array(n) };
      const opt = new AdamW([param], { lr, beta1: b1, beta2: b2, eps, weightDecay: mode.wd, coupledL2: mode.coupled });
      withDev(c, (d) => {
        const hp = d.f32(p0, off), hm = d.f32(new Float32Array(n), off), hv = d.f32(new Float32Array(n), off);
        for (let step = 1; step <= 3; step++) {
          const g = randf(rng, n, 0.1);
          const hg = d.f32(g, off);
          c.cudaAdamW(hp, hg, hm, hv, n, lr, b1, b2, eps, mode.wd, step, gs, mode.coupled);
          for (let i = 0; i < n; i++) param.grad[i] = g[i] * gs;
          opt.update();
          const p = d.getF32(hp, n), m = d.getF32(hm, n), v = d.getF32(hv, n);
          assertRel(p, param.data, 1e-5, `${name} step ${step} p`, t);
          assertRel(diff(p, p0), diff(param.data, p0), 1e-4, `${name} step ${step} p − p0`, t);
          assertRel(m, opt.m[0], 1e-5, `${name} step ${step} m`, t);
          assertRel(v, opt.v[0], 1e-5, `${name} step ${step} v`, t);
          assert.deepEqual(d.getF32(hg, n), g, `${name} step ${step}: gradient modified`);
        }
      });
    }
  }
});
