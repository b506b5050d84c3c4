// GPTQ's CUDA kernels (native/cuda/gptq.cu) vs their f64 TypeScript twins (src/quant/gptq.ts), and
// quantizeGPTQGpu vs quantizeGPTQ end to end. Random (never all-zero) correlated calibration rows with dead columns;
// outputs poisoned with NaN before each kernel. Skips with the reason where no CUDA device is present (the same
// orchestration runs in CI on the emulator: test/gptq-gpu-emulated.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { cudaGptq, cudaGptqUnavailable, type GptqEngine } from '../src/backend/cuda-gptq.js';
import { HessianAccumulator, choleskyInverse, choleskyLower, quantizeGPTQ, type GptqOpts } from '../src/quant/gptq.js';
import { GpuHessian, quantizeGPTQGpu, type GptqGpuTimings } from '../src/quant/gptq-gpu.js';
import { dequantize } from '../src/quant/dequant.js';
import { maxRelErr } from './helpers/arrays.js';
import { hostGptq } from './helpers/host-gptq.js';
import {
  DEAD_COLUMNS, GPTQ_CASES, codesOf, correlatedRows, hessianOf, indefiniteHessian, outputError,
} from './helpers/gptq-cases.js';

type TestContext = { skip(message?: string): void; diagnostic(message: string): void };

function engOrSkip(t: TestContext): GptqEngine | null {
  const e = cudaGptq();
  if (!e) t.skip(cudaGptqUnavailable());
  return e;
}

/** Device buffers of one test, freed together. */
function session(e: GptqEngine) {
  const live: number[] = [];
  return {
    put(a: ArrayBufferView): number { const h = e.cudaAlloc(Math.max(a.byteLength, 1)); live.push(h); e.cudaUpload(h, a); return h; },
    /** A buffer of `bytes` filled with NaN (f64) so unwritten outputs show. */
    nan(bytes: number): number { return this.put(new Float64Array(Math.ceil(bytes / 8)).fill(NaN)); },
    get<T extends ArrayBufferView>(h: number, a: T): T { e.cudaDownload(h, a); return a; },
    free(): void { for (const h of live) e.cudaFree(h); live.length = 0; },
  };
}

/** Damped Hessian of correlated rows (n inputs, dead columns where they fit), as quantizeGPTQ builds it. */
function dampedHessian(rng: Rng, n: number): Float64Array {
  const rows = Math.floor(1.5 * n);
  const H = hessianOf(correlatedRows(rng, rows, n, DEAD_COLUMNS.filter((d) => d < n)), rows, n);
  let mean = 0;
  for (let i = 0; i < n; i++) { if (H[i * n + i] === 0) H[i * n + i] = 1; mean += H[i * n + i]; }
  for (let i = 0; i < n; i++) H[i * n + i] += 0.01 * mean / n;
  return H;
}

const transpose = (A: Float64Array, n: number) => { const T = new Float64Array(n * n); for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) T[j * n + i] = A[i * n + j]; return T; };

test('cudaGptqHessianAdd + scale = HessianAccumulator (f32 GEMMs of ≤ 256 rows into f64), GpuHessian over uneven chunks', (t) => {
  const e = engOrSkip(t);
  if (!e) return;
  const rng = new Rng(1);
  for (const [n, rows] of [[96, 700], [300, 513], [1024, 300]]) {
    const X = correlatedRows(rng, rows, n, [3]);
    const ref = hessianOf(X, rows, n);
    const gh: GpuHessian = new GpuHessian(e, n);
    const cut = Math.floor(rows / 3);
    gh.add(X.subarray(0, cut * n), cut);
    gh.add(X.subarray(cut * n), rows - cut);
    gh.finalize();
    const got: Float64Array = gh.download();
    gh.free();
    const err = maxRelErr(got, ref);
    t.diagnostic(`n=${n} rows=${rows}: max rel err ${err.toExponential(2)}`);
    assert.ok(err < 1e-5, `n=${n}: ${err}`); // f32 GEMMs in different orders (CPU sgemm vs cuBLAS)
    assert.equal(got[3 * n + 3], 0, 'dead column stays exactly 0');
  }
});

test('layout kernels: transpose, dead columns, act-order permutation, damped copy (exact)', (t) => {
  const e = engOrSkip(t);
  if (!e) return;
  const rng = new Rng(2), s = session(e);
  const n = 70, out = 45;
  const W = rng.fillNormal(new Float64Array(out * n)) as Float64Array;
  const Wt = s.nan(n * out * 8);
  e.cudaGptqTransposeF64(Wt, s.put(W), out, n);
  const wt = s.get(Wt, new Float64Array(n * out));
  for (let r = 0; r < out; r++) for (let c = 0; c < n; c++) assert.equal(wt[c * out + r], W[r * n + c]);
  const H = dampedHessian(rng, n);
  H[5 * n + 5] = 0; H[69 * n + 69] = 0;
  const Hb = s.put(H), diag = s.nan(n * 8);
  e.cudaGptqDeadColumns(Hb, Wt, n, out, diag);
  const h2 = s.get(Hb, new Float64Array(n * n)), w2 = s.get(Wt, new Float64Array(n * out)), d2 = s.get(diag, new Float64Array(n));
  for (let i = 0; i < n; i++) {
    const dead = i === 5 || i === 69;
    assert.equal(d2[i], dead ? 1 : H[i * n + i]);
    assert.equal(h2[i * n + i], d2[i]);
    for (let r = 0; r < out; r++) assert.equal(w2[i * out + r], dead ? 0 : W[r * n + i]);
  }
  const perm = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => d2[b] - d2[a] || a - b);
  const Hp = s.nan(n * n * 8), Wp = s.nan(n * out * 8);
  e.cudaGptqPermute(Hb, Wt, s.put(perm), n, out, Hp, Wp);
  const hp = s.get(Hp, new Float64Array(n * n)), wp = s.get(Wp, new Float64Array(n * out));
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.equal(hp[i * n + j], h2[perm[i] * n + perm[j]]);
  for (let j = 0; j < n; j++) for (let r = 0; r < out; r++) assert.equal(wp[j * out + r], w2[perm[j] * out + r]);
  const D = s.nan(n * n * 8);
  e.cudaGptqDampCopy(D, Hp, n, 0.125);
  const dd = s.get(D, new Float64Array(n * n));
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.equal(dd[i * n + j], hp[i * n + j] + (i === j ? 0.125 : 0));
  s.free();
});

test('blocked Cholesky, inverse and the upper factor of the inverse vs choleskyLower/choleskyInverse (≤ 1e-10; n ≤ 64 bit-exact)', (t) => {
  const e = engOrSkip(t);
  if (!e) return;
  const rng = new Rng(3);
  for (const n of [1, 64, 65, 200, 320, 700]) {
    const s = session(e);
    const H = n === 1 ? Float64Array.of(2.5) : dampedHessian(rng, n);
    const A = s.put(H), work = s.nan(n * n * 8);
    assert.equal(e.cudaGptqCholesky(A, n), true, `n=${n} is positive definite`);
    const Lref = new Float64Array(H);
    assert.ok(choleskyLower(Lref, n));
    const L = transpose(s.get(A, new Float64Array(n * n)), n); // column-major lower → row-major lower
    const eL = maxRelErr(L, Lref);
    if (n <= 64) assert.deepEqual(L, Lref, `n=${n}: one diagonal block is the reference's arithmetic`);
    const invRef = choleskyInverse(Lref, n);
    e.cudaGptqCholeskyInverse(A, n, work);
    const inv = s.get(A, new Float64Array(n * n));
    const eI = maxRelErr(inv, invRef);
    assert.equal(e.cudaGptqCholesky(A, n), true);
    const Uref = new Float64Array(invRef);
    assert.ok(choleskyLower(Uref, n));
    const U = s.get(A, new Float64Array(n * n)); // = row-major upper factor = transpose of the row-major lower one
    const eU = maxRelErr(U, transpose(Uref, n));
    t.diagnostic(`n=${n}: L ${eL.toExponential(2)}, inverse ${eI.toExponential(2)}, upper factor of the inverse ${eU.toExponential(2)}`);
    assert.ok(eL <= 1e-10 && eI <= 1e-10 && eU <= 1e-10, `n=${n}: ${eL} ${eI} ${eU}`);
    s.free();
  }
  const s = session(e), n = 150, H = indefiniteHessian(rng, n);
  const A = s.put(H);
  assert.equal(e.cudaGptqCholesky(A, n), false, 'an indefinite matrix is refused');
  assert.equal(choleskyLower(new Float64Array(H), n), false);
  s.free();
});

test('cudaGptqFitGroups = gptqMinMaxRule per (row, group); one quant block + lazy update = the emulated twins', (t) => {
  const e = engOrSkip(t);
  if (!e) return;
  const rng = new Rng(4), host = hostGptq();
  const out = 77, C = 200, g = 48, bits = 3, ng = Math.ceil(C / g), i1 = 64, i2 = 160;
  const H = dampedHessian(rng, C);
  // U from the reference, in the device layout (row-major U = the same memory)
  const inv = new Float64Array(H);
  assert.ok(choleskyLower(inv, C));
  const U = choleskyInverse(inv, C);
  assert.ok(choleskyLower(U, C));
  const Uhost = transpose(U, C);
  const Wt = rng.fillNormal(new Float64Array(C * out), 0.05) as Float64Array;
  for (let r = 0; r < out; r++) Wt[7 * out + r] = 0; // an all-zero group column
  const colGroup = Int32Array.from({ length: C }, (_, c) => Math.floor(c / g));
  const run = (eng: GptqEngine) => {
    const s = session(eng);
    const w = s.put(Wt), hinv = s.put(Uhost), sc = s.put(new Float32Array(out * ng).fill(NaN)), ze = s.put(new Float32Array(out * ng).fill(NaN));
    eng.cudaGptqFitGroups(w, out, C, g, bits, sc, ze);
    const fitS = s.get(sc, new Float32Array(out * ng)), fitZ = s.get(ze, new Float32Array(out * ng));
    const err = s.nan((i2 - i1) * out * 8), codes = s.put(new Uint8Array(C * out)), loss = s.put(new Float64Array(out).fill(0.5));
    eng.cudaGptqQuantBlock(w, err, hinv, sc, ze, s.put(colGroup), codes, loss, out, C, i1, i2, g, bits, true);
    eng.cudaGptqLazyUpdate(w, err, hinv, out, C, i1, i2);
    const r = {
      fitS, fitZ, S: s.get(sc, new Float32Array(out * ng)), Z: s.get(ze, new Float32Array(out * ng)),
      codes: s.get(codes, new Uint8Array(C * out)), err: s.get(err, new Float64Array((i2 - i1) * out)),
      loss: s.get(loss, new Float64Array(out)), W: s.get(w, new Float64Array(C * out)),
    };
    s.free();
    return r;
  };
  const gpu = run(e), ref = run(host);
  assert.deepEqual(gpu.fitS, ref.fitS); assert.deepEqual(gpu.fitZ, ref.fitZ);
  assert.deepEqual(gpu.codes, ref.codes, 'codes of the block (mid-block group starts at 96, 144)');
  assert.deepEqual(gpu.S, ref.S); assert.deepEqual(gpu.Z, ref.Z);
  assert.deepEqual(gpu.err, ref.err, 'in-block arithmetic without FMA contraction: bit-exact');
  assert.ok(maxRelErr(gpu.loss, ref.loss) < 1e-14);
  const eW = maxRelErr(gpu.W, ref.W);
  t.diagnostic(`lazy update (cuBLAS Dgemm vs the reference's order): ${eW.toExponential(2)}`);
  assert.ok(eW < 1e-13, `${eW}`);
});

/** Agreement of a GPU result with the CPU reference, as the parity tests measure it. */
function agreement(gpu: ReturnType<typeof quantizeGPTQ>, ref: ReturnType<typeof quantizeGPTQ>) {
  const a = codesOf(gpu.packed), b = codesOf(ref.packed), { out, in: C, groupSize: g } = ref.packed;
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  const ng = Math.ceil(C / g), gIdx = ref.packed.gIdx;
  let groupsSame = 0, paramsBad = 0;
  for (let r = 0; r < out; r++) {
    const ok = new Array(ng).fill(true);
    for (let c = 0; c < C; c++) if (a[r * C + c] !== b[r * C + c]) ok[gIdx ? gIdx[c] : Math.floor(c / g)] = false;
    for (let j = 0; j < ng; j++) {
      if (!ok[j]) continue;
      groupsSame++;
      const k = r * ng + j;
      if (gpu.packed.scales![k] !== ref.packed.scales![k] || gpu.packed.zeros![k] !== ref.packed.zeros![k]) paramsBad++;
    }
  }
  return { codes: same / a.length, groupsSame, paramsBad, loss: Math.abs(gpu.loss - ref.loss) / ref.loss };
}

test('quantizeGPTQGpu vs quantizeGPTQ over the option grid: ≥ 99.5 % identical codes, equal scales/zeros where the group codes agree, loss ≤ 1e-6', (t) => {
  const e = engOrSkip(t);
  if (!e) return;
  const cases = [...GPTQ_CASES, { name: '256x1024 w2 g128 act-order', out: 256, inF: 1024, opts: { bits: 2, groupSize: 128, actOrder: true } as GptqOpts }];
  for (const [k, c] of cases.entries()) {
    const rng = new Rng(100 + k);
    const W = rng.fillNormal(new Float32Array(c.out * c.inF), 0.05) as Float32Array;
    const rows = Math.floor(1.5 * c.inF);
    const H = hessianOf(correlatedRows(rng, rows, c.inF, DEAD_COLUMNS), rows, c.inF);
    const ref = quantizeGPTQ(W, c.out, c.inF, H, c.opts);
    const gpu = quantizeGPTQGpu(e, W, c.out, c.inF, H, c.opts);
    const m = agreement(gpu, ref);
    t.diagnostic(`${c.name}: codes ${(100 * m.codes).toFixed(3)} % identical, loss rel ${m.loss.toExponential(2)}`);
    assert.ok(m.codes >= 0.995, `${c.name}: ${m.codes}`);
    assert.equal(m.paramsBad, 0, `${c.name}: scales/zeros of groups with identical codes`);
    assert.ok(m.loss <= 1e-6, `${c.name}: loss ${gpu.loss} vs ${ref.loss}`);
    assert.deepEqual(gpu.packed.gIdx, ref.packed.gIdx, c.name);
    assert.deepEqual({ ...gpu.packed, qcodes: 0, scales: 0, zeros: 0, gIdx: 0 }, { ...ref.packed, qcodes: 0, scales: 0, zeros: 0, gIdx: 0 });
  }
});

test('damping retry on the GPU: an indefinite Hessian takes the second damping, as on the CPU', (t) => {
  const e = engOrSkip(t);
  if (!e) return;
  const rng = new Rng(11), n = 192, out = 64;
  const H = indefiniteHessian(rng, n);
  const W = rng.fillNormal(new Float32Array(out * n), 0.05) as Float32Array;
  const opts = { bits: 2, groupSize: 64 };
  const tm: GptqGpuTimings = { prepare: 0, factor: 0, columns: 0, attempts: 0 };
  const gpu = quantizeGPTQGpu(e, W, out, n, H, opts, tm);
  assert.equal(tm.attempts, 2);
  const m = agreement(gpu, quantizeGPTQ(W, out, n, H, opts));
  assert.ok(m.codes >= 0.995 && m.loss <= 1e-6, JSON.stringify(m));
  const neg = new Float64Array(n * n);
  for (let i = 0; i < n; i++) neg[i * n + i] = -1;
  assert.throws(() => quantizeGPTQGpu(e, W, out, n, neg, opts), /not positive definite even after dampening/);
});

test('Hessian and solve both on the device (GpuHessian) vs the CPU path: same output error within 2 %', (t) => {
  const e = engOrSkip(t);
  if (!e) return;
  const rng = new Rng(12), n = 512, out = 128, rows = 1024;
  const X = correlatedRows(rng, rows, n, [9]);
  const W = rng.fillNormal(new Float32Array(out * n), 0.05) as Float32Array;
  const opts = { bits: 2, groupSize: 64, actOrder: true };
  const acc = new HessianAccumulator(n);
  acc.add(X, rows);
  const ref = quantizeGPTQ(W, out, n, acc.finalize(), opts);
  const gh = new GpuHessian(e, n);
  for (let r0 = 0; r0 < rows; r0 += 300) gh.add(X.subarray(r0 * n, Math.min(rows, r0 + 300) * n), Math.min(300, rows - r0));
  const gpu = quantizeGPTQGpu(e, W, out, n, gh, opts);
  gh.free();
  const eg = outputError(W, dequantize(gpu.packed), X, rows, out, n), er = outputError(W, dequantize(ref.packed), X, rows, out, n);
  const m = agreement(gpu, ref);
  t.diagnostic(`output error GPU ${eg.toExponential(4)} CPU ${er.toExponential(4)}; codes ${(100 * m.codes).toFixed(2)} % identical`);
  assert.ok(Math.abs(eg / er - 1) < 0.02, `${eg} vs ${er}`);
});
