// The fused KL + cross-entropy kernels of LREC distillation (native/cuda/kl_ce.cu) against float64 references:
// the TypeScript twin klCeRowsRef is first held (in CI) to the CPU objective's own ops (klForward/klBackward +
// crossEntropyForward/crossEntropyBackward) and to finite differences; then, on a GPU, the rows kernel and the
// chunked student + teacher lm_head are held to the twin on random logits (several chunks with a short last one,
// ignored targets −100 and −1, odd vocabulary sizes, unaligned buffers, bf16 and f32 gradients), and the kernel's
// gradient to finite differences of the kernel's own loss on a tiny vocabulary. Device tests skip with the reason; they
// also run on the host emulator of the engine (test/helpers/host-engine.ts), which checks the chunk loop of its twin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { sgemmRef } from '../src/backend/kernels.js';
import { nativeAddon } from '../src/backend/native.js';
import { cudaKlCe, cudaKlCeUnavailable, klCeMissing, klCeScratchBytes, type NativeCudaKlCe } from '../src/backend/cuda-kl-ce.js';
import { klCeRowsRef } from '../src/model/ops/kl-ce.js';
import { klBackward, klForward } from '../src/model/ops/kl.js';
import { crossEntropyBackward, crossEntropyForward } from '../src/model/ops/cross-entropy.js';
import { hostEngine } from './helpers/host-engine.js';
import { withDev } from './helpers/dev-buffers.js';
import { randf, relNorm } from './helpers/arrays.js';
import { bf as bf16Round } from './helpers/gpu-model.js';

type TestContext = { skip(message?: string): void; diagnostic(message: string): void };

const ENGINES: { name: string; get(): NativeCudaKlCe | null }[] = [{ name: 'CUDA', get: cudaKlCe }, { name: 'host emulator', get: hostEngine }];
function opsOrSkip(E: (typeof ENGINES)[number], t: TestContext): NativeCudaKlCe | null {
  const c = E.get();
  if (!c) t.skip(cudaKlCeUnavailable());
  return c;
}


function assertRel(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string, t: TestContext): void {
  for (let i = 0; i < got.length; i++) assert.ok(Number.isFinite(got[i]), `${what}: element ${i} = ${got[i]}`);
  const e = relNorm(got, want);
  t.diagnostic(`${what}: rel err ${e.toExponential(2)}`);
  assert.ok(e <= tol, `${what}: relative error ${e.toExponential(3)} > ${tol}`);
}
function assertNear(got: number, want: number, tol: number, what: string, t: TestContext): void {
  const e = Math.abs(got - want) / Math.abs(want);
  t.diagnostic(`${what}: ${got} vs ${want} (rel ${e.toExponential(2)})`);
  assert.ok(e <= tol, `${what}: ${got}, want ${want}`);
}

/** Random student/teacher logits (teacher correlated with the student, as in distillation) and targets. */
function problem(rng: Rng, rows: number, V: number, ignore: number) {
  const s = randf(rng, rows * V, 2), t = Float32Array.from(s, (x) => x + 0.7 * rng.normal());
  const targets = Int32Array.from({ length: rows }, () => (rng.next() < 0.25 ? ignore : rng.int(V)));
  targets[0] = 0; if (rows > 1) targets[1] = V - 1; if (rows > 2) targets[2] = ignore;
  let count = 0;
  for (const x of targets) if (x >= 0) count++;
  return { s, t, targets, count };
}

// ---------------------------------------------------------------- host-side (CI)

test('kl-ce twin: klCeRowsRef = klForward/klBackward + crossEntropyForward/crossEntropyBackward (the CPU LREC ops)', () => {
  const rng = new Rng(301);
  for (const [rows, V] of [[9, 37], [5, 300], [1, 2]]) {
    const { s, t, targets, count } = problem(rng, rows, V, -100);
    const klScale = 0.7, ceScale = 1.9 / Math.max(1, count);
    const d = new Float64Array(rows * V).fill(NaN);
    const r = klCeRowsRef(s, t, targets, d, rows, V, klScale, ceScale);
    const want = new Float64Array(rows * V);
    klBackward(want, t, s, rows, V, klScale);
    crossEntropyBackward(want, s, targets, rows, V, ceScale);
    const kl = klForward(t, s, rows, V), ce = crossEntropyForward(null, s, targets, rows, V);
    assert.ok(Math.abs(r.kl - kl) <= 1e-12 * Math.max(1, kl), `kl ${r.kl} vs ${kl}`);
    assert.ok(kl > 0, 'the problem has a KL to learn');
    assert.ok(Math.abs(r.ce - ce) <= 1e-12 * Math.max(1, ce), `ce ${r.ce} vs ${ce}`);
    for (let i = 0; i < d.length; i++) assert.ok(Math.abs(d[i] - want[i]) <= 1e-14, `dlogits ${i}: ${d[i]} vs ${want[i]}`);
  }
});

test('kl-ce twin: the gradient is the derivative of klScale·KL + ceScale·CE (central differences, f64)', () => {
  const rng = new Rng(302);
  const rows = 4, V = 11, klScale = 1.3, ceScale = 0.4;
  const { s, t, targets } = problem(rng, rows, V, -1);
  const s64 = Float64Array.from(s);
  const d = new Float64Array(rows * V);
  klCeRowsRef(s64, t, targets, d, rows, V, klScale, ceScale);
  const L = (x: Float64Array) => { const r = klCeRowsRef(x, t, targets, null, rows, V, klScale, ceScale); return klScale * r.kl + ceScale * r.ce; };
  const h = 1e-5;
  for (let i = 0; i < rows * V; i++) {
    const p = Float64Array.from(s64); p[i] += h;
    const m = Float64Array.from(s64); m[i] -= h;
    const fd = (L(p) - L(m)) / (2 * h);
    assert.ok(Math.abs(fd - d[i]) <= 1e-8, `element ${i}: finite difference ${fd}, analytic ${d[i]}`);
  }
});

test('kl-ce twin: target ≥ V is misuse (NaN CE, NaN gradient row); an ignored row keeps its KL term', () => {
  const rng = new Rng(303);
  const V = 6, { s, t } = problem(rng, 3, V, -100);
  const d = new Float64Array(3 * V);
  const r = klCeRowsRef(s, t, [1, V, -100], d, 3, V, 1, 1);
  assert.ok(Number.isNaN(r.ce));
  for (let i = 0; i < V; i++) { assert.ok(Number.isFinite(d[i]) && Number.isNaN(d[V + i]) && Number.isFinite(d[2 * V + i])); }
  // row 2 (ignored): pure KL gradient p_S − p_T
  const kd = new Float64Array(V);
  klBackward(kd, t.subarray(2 * V), s.subarray(2 * V), 1, V, 1);
  for (let i = 0; i < V; i++) assert.ok(Math.abs(d[2 * V + i] - kd[i]) < 1e-15);
  assert.deepEqual(klCeScratchBytes(16, 1000), { sLogits: 64000, tLogits: 64000, dlogits: 32000 });
});

test('kl-ce: the CUDA addon exports the KL + CE kernels, and they reject dead handles and bad sizes before any launch', (t) => {
  const a = nativeAddon();
  if (!a?.cuda) { t.skip('native addon not built with CUDA'); return; }
  const missing = klCeMissing(a.cuda);
  if (missing) { t.skip(missing); return; }
  const c = a.cuda as NativeCudaKlCe;
  const X = 0x7ffffff0;  // never a live handle
  const dead = (fn: string): RegExp => new RegExp(`${fn}: argument \\d+ is not a live CUDA buffer`);
  assert.throws(() => c.cudaKlCeRows(X, X, X, null, false, X, X, 4, 10, 1, 1), dead('cudaKlCeRows'));
  assert.throws(() => c.cudaLmHeadKlCe(X, X, X, X, X, null, X, X, 4, 8, 10, 1, 1, 2, X, X, null), dead('cudaLmHeadKlCe'));
  assert.throws(() => c.cudaLmHeadKlCe(X, X, X, X, X, null, X, X, 4, 8, 10, 1, 1, 0, X, X, null), /cudaLmHeadKlCe: chunkRows must be >= 1/);
  assert.throws(() => c.cudaKlCeRows(X, X, X, null, 1 as unknown as boolean, X, X, 4, 10, 1, 1), /cudaKlCeRows: argument 4 must be a boolean/);
  assert.throws(() => c.cudaKlCeRows(X, X, X, null, false, X, X, -1, 10, 1, 1), /cudaKlCeRows: argument 7 must be a non-negative integer/);
});

// ---------------------------------------------------------------- device tests


for (const E of ENGINES) test(`${E.name}: kl-ce: the rows kernel matches klCeRowsRef (losses, bf16 and f32 gradients, ignored rows, odd V, unaligned buffers)`, (t) => {
  const c = opsOrSkip(E, t);
  if (!c) return;
  const rng = new Rng(311);
  // [rows, V, byte offset, ignore index]: vector path, V % 4 ≠ 0 (scalar path), unaligned buffers, realistic row
  for (const [rows, V, off, ign] of [[37, 1000, 0, -100], [20, 1001, 0, -1], [13, 300, 4, -100], [6, 32000, 0, -1], [3, 5, 0, -100]]) {
    const name = `rows=${rows} V=${V}${off ? ` offset ${off}` : ''} ignore ${ign}`;
    const { s, t: tl, targets, count } = problem(rng, rows, V, ign);
    const klScale = 0.9, ceScale = 3.1 / count;
    const dRef = new Float64Array(rows * V);
    const ref = klCeRowsRef(s, tl, targets, dRef, rows, V, klScale, ceScale);
    for (const f32out of [false, true]) {
      withDev(c, (d) => {
        const hs = d.up(s, off), ht = d.up(tl, off), htg = d.up(targets, off);
        const hd = d.up(f32out ? new Float32Array(rows * V).fill(NaN) : new Uint16Array(rows * V).fill(0x7fc0), off);
        const hkl = d.up(Float32Array.of(0.25), off), hce = d.up(Float32Array.of(-1.5), off);
        c.cudaKlCeRows(hs, ht, htg, hd, f32out, hkl, hce, rows, V, klScale, ceScale);
        assertNear(d.getF32(hkl, 1)[0] - 0.25, ref.kl, 3e-5, `${name} KL sum`, t);
        assertNear(d.getF32(hce, 1)[0] + 1.5, ref.ce, 1e-5, `${name} CE sum`, t);
        const g = f32out ? d.getF32(hd, rows * V) : d.getBf16(hd, rows * V);
        assertRel(g, dRef, f32out ? 2e-5 : 8e-3, `${name} dlogits ${f32out ? 'f32' : 'bf16'}`, t);
        // losses only (no gradient buffer): the same sums
        const hkl2 = d.up(Float32Array.of(0)), hce2 = d.up(Float32Array.of(0));
        c.cudaKlCeRows(hs, ht, htg, null, f32out, hkl2, hce2, rows, V, klScale, ceScale);
        assertNear(d.getF32(hkl2, 1)[0], ref.kl, 3e-5, `${name} KL sum (no gradient)`, t);
      });
    }
  }
  // a target ≥ V: NaN CE and a NaN row; an ignored row is the pure KL gradient
  withDev(c, (d) => {
    const V = 40, { s, t: tl } = problem(rng, 3, V, -100), targets = Int32Array.of(1, V, -100);
    const hd = d.up(new Float32Array(3 * V)), hkl = d.up(Float32Array.of(0)), hce = d.up(Float32Array.of(0));
    c.cudaKlCeRows(d.up(s), d.up(tl), d.up(targets), hd, true, hkl, hce, 3, V, 1, 1);
    assert.ok(Number.isNaN(d.getF32(hce, 1)[0]), 'target ≥ V: CE should be NaN');
    const g = d.getF32(hd, 3 * V), want = new Float64Array(3 * V);
    klCeRowsRef(s, tl, [1, -100, -100], want, 3, V, 1, 1);
    for (let i = 0; i < V; i++) {
      assert.ok(Number.isNaN(g[V + i]), `row 1 (target ≥ V) element ${i} should be NaN`);
      assert.ok(Math.abs(g[2 * V + i] - want[2 * V + i]) < 1e-6, `row 2 (ignored) element ${i}: ${g[2 * V + i]} vs ${want[2 * V + i]}`);
    }
  });
});

for (const E of ENGINES) test(`${E.name}: kl-ce: the kernel gradient is the derivative of the kernel loss (central differences on a tiny vocabulary)`, (t) => {
  const c = opsOrSkip(E, t);
  if (!c) return;
  const rng = new Rng(312);
  const rows = 3, V = 7, klScale = 1.1, ceScale = 0.6;
  const { s, t: tl, targets } = problem(rng, rows, V, -100);
  withDev(c, (d) => {
    const hs = d.up(s), ht = d.up(tl), htg = d.up(targets), hd = d.up(new Float32Array(rows * V).fill(NaN));
    const hkl = d.up(Float32Array.of(0)), hce = d.up(Float32Array.of(0));
    c.cudaKlCeRows(hs, ht, htg, hd, true, hkl, hce, rows, V, klScale, ceScale);
    const g = d.getF32(hd, rows * V);
    const loss = (x: Float32Array): number => {
      c.cudaUpload(hs, x);
      c.cudaMemset0(hkl); c.cudaMemset0(hce);
      c.cudaKlCeRows(hs, ht, htg, null, true, hkl, hce, rows, V, klScale, ceScale);
      return klScale * d.getF32(hkl, 1)[0] + ceScale * d.getF32(hce, 1)[0];
    };
    const h = 1e-2;  // f32 losses: a step large enough for ~1e-5 rounding, small enough for O(h²) ≈ 1e-4 truncation
    let worst = 0;
    for (let i = 0; i < rows * V; i++) {
      const p = Float32Array.from(s); p[i] += h;
      const m = Float32Array.from(s); m[i] -= h;
      const fd = (loss(p) - loss(m)) / (2 * h);
      worst = Math.max(worst, Math.abs(fd - g[i]));
      assert.ok(Math.abs(fd - g[i]) <= 1e-3, `element ${i}: finite difference ${fd}, kernel ${g[i]}`);
    }
    t.diagnostic(`max |finite difference − kernel gradient| = ${worst.toExponential(2)}`);
  });
});

for (const E of ENGINES) test(`${E.name}: kl-ce: chunked student + teacher lm_head + KL/CE matches f64 logits through klCeRowsRef (dHidden, shared or separate heads)`, (t) => {
  const c = opsOrSkip(E, t);
  if (!c) return;
  const rng = new Rng(313);
  // [N, D, V, chunkRows, with dHidden, teacher head = student head]: several chunks with a short last one, V % 4 ≠ 0,
  // one chunk holding every row, a realistic vocabulary row, losses only
  for (const [N, D, V, chunk, withDh, shared] of [[37, 96, 1000, 16, 1, 0], [20, 64, 1001, 7, 1, 1], [37, 96, 1000, 64, 1, 0],
    [6, 64, 32000, 4, 1, 1], [9, 32, 5000, 3, 0, 0]]) {
    const name = `lm-head KL+CE N=${N} D=${D} V=${V} chunk=${chunk}${withDh ? '' : ' (no dHidden)'}${shared ? ' (one head)' : ''}`;
    // logits of std ~1 whose teacher differs by ~1 (a KL of order 0.5 per row, well above f32 rounding)
    const h = bf16Round(randf(rng, N * D)), th = bf16Round(Float32Array.from(h, (x) => 0.6 * x + 0.8 * rng.normal()));
    const W = bf16Round(randf(rng, V * D, 1 / Math.sqrt(D))), tW = shared ? W : bf16Round(Float32Array.from(W, (x) => x + 0.02 * rng.normal()));
    const targets = Int32Array.from({ length: N }, () => (rng.next() < 0.2 ? -100 : rng.int(V)));
    targets[0] = 0; targets[1] = V - 1; targets[2] = -1;
    let count = 0;
    for (const x of targets) if (x >= 0) count++;
    const klScale = 0.8, ceScale = 2.5 / count;
    // reference: f64 logits, f32-rounded (the GEMM's output), the twin, dHidden += bf16(dlogits)·W
    const sl = new Float64Array(N * V), tl = new Float64Array(N * V);
    sgemmRef(false, true, N, V, D, 1, h, W, 0, sl);
    sgemmRef(false, true, N, V, D, 1, th, tW, 0, tl);
    const dl = new Float64Array(N * V);
    const ref = klCeRowsRef(Float32Array.from(sl), Float32Array.from(tl), targets, dl, N, V, klScale, ceScale);
    const dh0 = randf(rng, N * D), dhRef = Float64Array.from(dh0);
    sgemmRef(false, false, N, D, V, 1, bf16Round(dl), W, 1, dhRef);
    const rows = Math.min(chunk, N), last0 = Math.floor((N - 1) / chunk) * chunk;
    withDev(c, (d) => {
      const sc = klCeScratchBytes(rows, V);
      const hsl = d.up(new Float32Array(sc.sLogits / 4).fill(NaN)), htl = d.up(new Float32Array(sc.tLogits / 4).fill(NaN));
      const hdl = withDh ? d.up(new Uint16Array(sc.dlogits / 2).fill(0x7fc0)) : null;
      const hW = d.bf16(W), htW = shared ? hW : d.bf16(tW);
      const loss = d.up(Float32Array.of(0.5, -0.5)), vkl = c.cudaView(loss, 0, 4), vce = c.cudaView(loss, 4, 4);
      const hdh = withDh ? d.up(dh0) : null;
      try {
        c.cudaLmHeadKlCe(d.bf16(h), hW, d.bf16(th), htW, d.up(targets), hdh, vkl, vce, N, D, V, klScale, ceScale, chunk, hsl, htl, hdl);
        const l = d.getF32(loss, 2);
        assertNear(l[0] - 0.5, ref.kl, 1e-4, `${name} KL sum`, t);
        assertNear(l[1] + 0.5, ref.ce, 1e-5, `${name} CE sum`, t);
        // the scratch holds the last chunk's logits
        assertRel(d.getF32(hsl, (N - last0) * V), sl.subarray(last0 * V), 1e-5, `${name} last-chunk student logits`, t);
        assertRel(d.getF32(htl, (N - last0) * V), tl.subarray(last0 * V), 1e-5, `${name} last-chunk teacher logits`, t);
        if (hdh !== null) {
          const dh = d.getF32(hdh, N * D);
          assertRel(Float64Array.from(dh, (x, i) => x - dh0[i]), Float64Array.from(dhRef, (x, i) => x - dh0[i]), 8e-3, `${name} dHidden increment`, t);
        }
      } finally { c.cudaFree(vkl); c.cudaFree(vce); }
    });
  }
});
