// The fused sm_90a packed GEMM (native/cuda/qgemm_wgmma.cu) on a device: its debug dumps against the CPU model
// (A fragments, swizzled X tile, raw accumulators: src/backend/qgemm-fused-model.ts), then parity against a float64
// reference (bf16 X; the f32 dequantized weight at bf16-input tolerance, the bf16 weight tightly) and against the
// dequantize + cuBLAS path, for M not a multiple of the 128-token tile. Variants 3/4 (the repacked stream): the
// device repack equals the CPU model byte for byte, the A registers equal the model's bf16 FMAs bit for bit, and
// the product is compared with the f64 product of exactly those weights (tight) and, at bf16 tolerance, with the
// dequantized weight and the dequantize + cuBLAS path (their weights differ from bf16(Ŵ) by up to about one bf16
// ulp: bf16(s)·(q − z) rounded once instead of s·(q − z) rounded once, so the GEMM differs by ~1e-3 in norm). Random codes, scales, zeros and X (never all
// zero); outputs poisoned with NaN and checked all written. Skips with the reason where there is no CUDA device or
// the kernel does not apply (not an sm_90 device).
// Variants 5/6 (split-K inside a 512-thread CTA): the same per-warpgroup code as 3/4, dumps read from pair 0 (k-block 0,
// the summed accumulators), the product at variant 3's tolerances and within 2e-5 of variant 3 (f32 summation order).
// Variant 8 (stream-K): at its default grid and with the grid capped to 1, 3, 7 and 29 CTAs (tiles split two, three and
// more ways, workers that are both a contributor and a finisher), within 2e-5 of variant 5 and of the f64 product.
// Variant 9 (176-token tiles, one 256-thread pair over the whole K): the same tolerances, within 2e-5 of variant 3; M of
// 81, 512 (last token tile 160), 640, 1024 and 1100 cover partial tiles, and cudaQGemm's default takes it where its tiles
// need fewer rounds (4096 rows at M = 1100, 4608 at M = 1024).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { cudaEngine, cudaUnavailable, uploadPacked, bf16ToF32, f32ToBf16, type NativeCudaQuant, type QGemmFusedVariant,
  type DeviceQuant } from '../src/backend/cuda.js';
import { dequantize } from '../src/quant/dequant.js';
import type { PackedTensor } from '../src/quant/types.js';
import { aFragment, aRegisters, aRegistersRp, accFragment, xTile, fusedGemmTwin, loaderOffset, repackStream,
  repackedWeights } from '../src/backend/qgemm-fused-model.js';
import { randomInt2 } from './helpers/packed-int2.js';
import { relNorm } from './helpers/arrays.js';

type TestContext = { skip(message?: string): void; diagnostic(message: string): void };

/** The engine, when a device is present and the fused kernel applies to a probe weight there; else skip with why. */
function fusedOrSkip(t: TestContext): NativeCudaQuant | null {
  const c = cudaEngine();
  if (!c) { t.skip(cudaUnavailable()); return null; }
  if (typeof c.cudaQGemmFused !== 'function') { t.skip('addon older than the fused qgemm kernel (rebuild)'); return null; }
  const q = uploadPacked(c, randomInt2(new Rng(1), 128, 64));
  const X = c.cudaAlloc(128 * 64 * 2), Y = c.cudaAlloc(128 * 128 * 4);
  const why = c.cudaQGemmFusedWhyNot(q.desc, 128, X, Y);
  q.free(); c.cudaFree(X); c.cudaFree(Y);
  if (why) { t.skip(why); return null; }
  return c;
}

/** The variant cudaQGemm / cudaQGemmFused(…, 0) take with the repacked stream (kRpDefault in qgemm_wgmma.cu). */
const DEFAULT_RP_VARIANT = 5;
/** cudaQGemm's fused variant when the tiles need more than one wave (pick_variant): 4 (two CTAs per SM). */
const MANY_WAVE_VARIANT = 4;
/** pick_variant's choice with the repacked stream: 7 when the 128 × 128 tiles fit one wave, else 9 when its 176-token
 *  tiles need fewer token rows of rounds, else MANY_WAVE_VARIANT. */
function defaultVariant(rowBlocks: number, M: number, sms: number): number {
  const tiles = rowBlocks * Math.ceil(M / 128);
  if (tiles <= sms) return 7;
  const rounds = Math.ceil(tiles / sms), roundsW = Math.ceil((rowBlocks * Math.ceil(M / 176)) / sms);
  return roundsW * 176 < rounds * 128 ? 9 : MANY_WAVE_VARIANT;
}

const hex = (x: number): string => `0x${(x >>> 0).toString(16).padStart(8, '0')}`;

function randomX(rng: Rng, n: number): Uint16Array {
  return f32ToBf16(Float32Array.from({ length: n }, () => rng.normal()));
}

/** Y = cudaQGemmFused (debug mode) into a NaN-poisoned f32 buffer of M·out floats, downloaded as raw words. */
function runDebug(c: NativeCudaQuant, q: DeviceQuant, p: PackedTensor, M: number, Xb: Uint16Array, mode: 1 | 2 | 3,
  variant: 1 | 2 | 3 | 4 | 5 | 6): Uint32Array {
  const hX = c.cudaAlloc(M * p.in * 2), hY = c.cudaAlloc(M * p.out * 4);
  c.cudaUpload(hX, Xb);
  c.cudaUpload(hY, new Float32Array(M * p.out).fill(NaN));
  c.cudaQGemmFused(q.desc, M, hX, hY, true, mode, variant);
  c.cudaSync();
  const o = new Uint32Array(M * p.out);
  c.cudaDownload(hY, o);
  c.cudaFree(hX); c.cudaFree(hY);
  return o;
}

test('cuda-qgemm-fused: debug dumps match the CPU model (A fragments, swizzled X tile, accumulators)', (t) => {
  const c = fusedOrSkip(t);
  if (!c) return;
  const rng = new Rng(21);
  const p = randomInt2(rng, 128, 256), M = 128, Xb = randomX(rng, M * p.in);
  const q = uploadPacked(c, p);
  try {
    assert.ok(q.attachFusedRepack(), 'repack');
    // the device repack = the CPU model, byte for byte
    const rpDev = new Uint8Array(c.cudaQGemmFusedRepackBytes(q.desc)), rpWant = repackStream(p);
    assert.equal(rpDev.length, rpWant.length);
    c.cudaDownload(q.desc.fused!, rpDev);
    let badRp = 0;
    for (let i = 0; i < rpWant.length; i++) if (rpDev[i] !== rpWant[i]) badRp++;
    if (badRp) {
      const i = rpDev.findIndex((v, k) => v !== rpWant[k]);
      t.diagnostic(`repacked stream: ${badRp} bytes differ; first at ${i} (block ${i >> 12}, byte ${i & 4095}): ${rpDev[i]} want ${rpWant[i]}`);
    }
    assert.equal(badRp, 0, 'repacked stream differs from the model');
    for (const variant of [1, 2, 3, 4, 5, 6] as const) {
      t.diagnostic(`variant ${variant}`);
      // 1: A registers of k-block 0, Y32[tid·16 + 4s + r]
      const a = runDebug(c, q, p, M, Xb, 1, variant);
      const bad: string[] = [];
      for (let tid = 0; tid < 256; tid++) {
        const want = variant >= 3 ? aRegistersRp(p, 0, 0, tid) : aRegisters(p, 0, 0, tid);
        for (let s = 0; s < 4; s++) {
          for (let r = 0; r < 4; r++) {
            const got = a[tid * 16 + 4 * s + r];
            if (got !== want[s][r]) {
              const { row, k } = aFragment(tid, s, r);
              bad.push(`tid ${tid} s ${s} r ${r} (row ${row}, k ${k}): got ${hex(got)} want ${hex(want[s][r])}`);
            }
          }
        }
      }
      if (bad.length) t.diagnostic(`A fragments: ${bad.length} of 4096 differ; first: ${bad.slice(0, 8).join('; ')}`);
      assert.equal(bad.length, 0, 'A fragments differ from the model (see the diagnostic)');

      // 2: stage 0's X tile, raw bytes
      const x = new Uint8Array(runDebug(c, q, p, M, Xb, 2, variant).buffer, 0, 128 * 128);
      const wantX = xTile(Xb, M, p.in, 0, 0);
      const badX: string[] = [];
      for (let o = 0; o < wantX.length; o += 2) {
        if (x[o] !== wantX[o] || x[o + 1] !== wantX[o + 1]) badX.push(`byte ${o}`);
      }
      if (badX.length) {
        // where did X[n][k] land instead? (find the model offset of the bf16 the tile holds at the first bad byte)
        const o = Number(badX[0].split(' ')[1]), v = x[o] | (x[o + 1] << 8);
        let found = 'nowhere in k-block 0';
        for (let n = 0; n < 128 && found.startsWith('nowhere'); n++) {
          for (let k = 0; k < 64; k++) if (Xb[n * p.in + k] === v) { found = `X[${n}][${k}] (model offset ${loaderOffset(n, k)})`; break; }
        }
        t.diagnostic(`X tile: ${badX.length} of 8192 bf16 differ; first ${badX.slice(0, 8).join(', ')}; byte ${o} holds ${found}`);
      }
      assert.equal(badX.length, 0, 'swizzled X tile differs from the model');

      // 3: raw accumulators after the K loop vs the twin at accFragment's (row, token)
      const d = new Float32Array(runDebug(c, q, p, M, Xb, 3, variant).buffer);
      const Y = fusedGemmTwin(p, M, Xb, variant >= 3);
      const got = new Float64Array(256 * 64), want = new Float64Array(256 * 64);
      for (let tid = 0; tid < 256; tid++) {
        for (let i = 0; i < 64; i++) {
          const { row, col } = accFragment(tid, i);
          got[tid * 64 + i] = d[tid * 64 + i];
          want[tid * 64 + i] = Y[col * p.out + row];
        }
      }
      const e = relNorm(got, want);
      if (!(e < 1e-5)) {
        // transposed reading (row ↔ token) as a hint
        const wantT = want.map((_, k) => { const { row, col } = accFragment(k >> 6, k & 63); return Y[row * p.out + col]; });
        t.diagnostic(`accumulators: rel err ${e} vs the D map, ${relNorm(got, wantT)} vs its transpose; first: ` +
          Array.from({ length: 4 }, (_, i) => `acc[${i}] of tid 0 = ${got[i]} want ${want[i]}`).join('; '));
      }
      assert.ok(e < 1e-5, `accumulators: rel err ${e}`);
    }
  } finally {
    q.free();
  }
});

test('cuda-qgemm-fused: parity vs f64, vs dequantize + cuBLAS, and cudaQGemm picks it by M', (t) => {
  const c = fusedOrSkip(t);
  if (!c) return;
  const rng = new Rng(22);
  const cases: [number, number, number[]][] = [[256, 512, [64, 81, 512, 640]], [4096, 4096, [81, 512, 1100]], [4608, 512, [1024]]];
  const envKeys = ['LOWBIT_QGEMM_FUSED', 'LOWBIT_QGEMM_FUSED_VARIANT', 'LOWBIT_QGEMM_FUSED_MAX_M'] as const;
  const saved = envKeys.map((k) => process.env[k]);
  for (const k of envKeys) delete process.env[k];
  try {
    for (const [out, inF, Ms] of cases) {
      const p = randomInt2(rng, out, inF);
      const W = dequantize(p), Wb = bf16ToF32(f32ToBf16(W)), Wr = repackedWeights(p);
      const q = uploadPacked(c, p);
      assert.ok(q.attachFusedRepack(), 'repack');
      for (const M of Ms) {
        const Xb = randomX(rng, M * inF), Xf = bf16ToF32(Xb);
        const hX = c.cudaAlloc(M * inF * 2), hY = c.cudaAlloc(M * out * 4), hS = c.cudaAlloc(out * inF * 2);
        c.cudaUpload(hX, Xb);
        const run = (fn: () => void, f32: boolean): Float32Array => {
          c.cudaUpload(hY, f32 ? new Float32Array(M * out).fill(NaN) : new Uint16Array(M * out).fill(0x7fc0));
          fn();
          c.cudaSync();
          if (f32) { const o = new Float32Array(M * out); c.cudaDownload(hY, o); return o; }
          const o = new Uint16Array(M * out); c.cudaDownload(hY, o); return bf16ToF32(o);
        };
        // f64 references on a sample of tokens (all of them for the small shape)
        const rows = out * inF <= 1 << 20 ? Array.from({ length: M }, (_, i) => i)
          : Array.from(new Set([0, 1, M - 1, ...Array.from({ length: 29 }, () => rng.int(M))]));
        const refW: number[] = [], refB: number[] = [], refR: number[] = [];
        for (const m of rows) {
          for (let o = 0; o < out; o++) {
            let s = 0, sb = 0, sr = 0;
            for (let i = 0; i < inF; i++) {
              const x = Xf[m * inF + i];
              s += x * W[o * inF + i]; sb += x * Wb[o * inF + i]; sr += x * Wr[o * inF + i];
            }
            refW.push(s); refB.push(sb); refR.push(sr);
          }
        }
        const sample = (Y: Float32Array): number[] => rows.flatMap((m) => Array.from(Y.subarray(m * out, (m + 1) * out)));
        const byVariant = new Map<number | string, Float32Array>();
        // variant 8 (stream-K) also with its grid capped (LOWBIT_QGEMM_SK_GRID): tiles split among 2 and more CTAs;
        // its results are keyed `8@grid` (0 = the default grid)
        const skGrids = [0, 1, 3, 7, 29];
        const runs: { v: QGemmFusedVariant; skGrid: number }[] = [
          ...([1, 3, 2, 4, 5, 6, 7, 9] as const).map((v) => ({ v, skGrid: 0 })), ...skGrids.map((skGrid) => ({ v: 8 as const, skGrid }))];
        for (const { v: vn, skGrid } of runs) {
          const v = vn === 8 ? `8@${skGrid}` : vn;
          if (skGrid) process.env.LOWBIT_QGEMM_SK_GRID = String(skGrid);
          const Y = run(() => c.cudaQGemmFused(q.desc, M, hX, hY, true, 0, vn), true);
          delete process.env.LOWBIT_QGEMM_SK_GRID;
          for (let i = 0; i < Y.length; i++) assert.ok(Number.isFinite(Y[i]), `${out}x${inF} M=${M} v${v}: Y[${i}] not written`);
          const got = sample(Y), eW = relNorm(got, refW), eB = relNorm(got, refB), eR = relNorm(got, refR);
          t.diagnostic(`${out}x${inF} M=${M} variant ${v}: rel err ${eW.toExponential(2)} vs f64(f32 Ŵ), ` +
            `${eB.toExponential(2)} vs f64(bf16 Ŵ), ${eR.toExponential(2)} vs f64(repacked weights) on ${rows.length} tokens`);
          // bf16 weights (one rounding of ~2^-9 relative) against the f32 weight: ~1e-3 in norm
          assert.ok(eW < 5e-3, `${out}x${inF} M=${M} v${v}: rel err vs f64 ${eW}`);
          if (vn <= 2) {
            assert.ok(eB < 2e-5, `${out}x${inF} M=${M} v${v}: rel err vs f64 of the bf16 weight ${eB}`);
          } else {
            // exactly the repacked weights, f32 accumulation only
            assert.ok(eR < 2e-5, `${out}x${inF} M=${M} v${v}: rel err vs f64 of the repacked weights ${eR}`);
            // vs bf16(Ŵ): the two weights differ by up to ~1 bf16 ulp each (scale rounded to bf16 first)
            assert.ok(eB < 5e-3, `${out}x${inF} M=${M} v${v}: rel err vs f64 of the bf16 weight ${eB}`);
          }
          byVariant.set(v, Y);
        }
        // variants 2 and 4: the same wgmma sequence as 1 and 3, so the same bits; 6 and 7 (copy-engine stages) the same
        // split-K sums as 5
        for (const [a, b] of [[1, 2], [3, 4], [5, 6], [5, 7]]) {
          const ya = byVariant.get(a)!, yb = byVariant.get(b)!;
          assert.ok(yb.every((v, i) => Object.is(v, ya[i])), `${out}x${inF} M=${M}: variant ${b} differs from variant ${a}`);
        }
        // variant 5 (split-K, two half sums added in f32) vs variant 3 (one sum), variant 8 (stream-K, any grid) vs 5:
        // f32 accumulation order only
        const e53 = relNorm(byVariant.get(5)!, byVariant.get(3)!);
        assert.ok(e53 < 2e-5, `${out}x${inF} M=${M}: variant 5 vs variant 3 ${e53}`);
        // variant 9 (176-token tiles, one sum over the whole K like variant 3)
        const e93 = relNorm(byVariant.get(9)!, byVariant.get(3)!);
        assert.ok(e93 < 2e-5, `${out}x${inF} M=${M}: variant 9 vs variant 3 ${e93}`);
        for (const g of skGrids) {
          const e85 = relNorm(byVariant.get(`8@${g}`)!, byVariant.get(5)!);
          assert.ok(e85 < 2e-5, `${out}x${inF} M=${M}: variant 8 (grid ${g || 'default'}) vs variant 5 ${e85}`);
        }
        const fused = byVariant.get(DEFAULT_RP_VARIANT)!;
        // bf16 Y: one more rounding of the same sums
        const fusedB = run(() => c.cudaQGemmFused(q.desc, M, hX, hY, false, 0, DEFAULT_RP_VARIANT), false);
        assert.ok(relNorm(fusedB, fused) < 4e-3, `${out}x${inF} M=${M}: bf16 Y`);
        for (let i = 0; i < fusedB.length; i++) assert.ok(Number.isFinite(fusedB[i]), `${out}x${inF} M=${M}: bf16 Y[${i}] not written`);
        // the dequantize + cuBLAS path (forced)
        process.env.LOWBIT_QGEMM_FUSED = '0';
        const old = run(() => c.cudaQGemm(q.desc, M, hX, hY, true, hS), true);
        delete process.env.LOWBIT_QGEMM_FUSED;
        const eOld = relNorm(fused, old), eOld1 = relNorm(byVariant.get(1)!, old);
        t.diagnostic(`${out}x${inF} M=${M}: vs dequantize + cuBLAS rel err ${eOld1.toExponential(2)} (variant 1), ${eOld.toExponential(2)} (variant ${DEFAULT_RP_VARIANT})`);
        assert.ok(eOld1 < 2e-5, `${out}x${inF} M=${M}: variant 1 vs dequantize + cuBLAS ${eOld1}`);
        assert.ok(eOld < 5e-3, `${out}x${inF} M=${M}: variant ${DEFAULT_RP_VARIANT} vs dequantize + cuBLAS ${eOld}`);
        // the default cudaQGemm: fused for 64 <= M <= 1024 (variant 7 — the same bits as 5 — when the tiles fit one wave of
        // one CTA per SM, else 9 or MANY_WAVE_VARIANT: defaultVariant), else dequantize + cuBLAS
        const dflt = run(() => c.cudaQGemm(q.desc, M, hX, hY, true, hS), true);
        const sms = c.cudaInfo().smCount ?? 132, tiles = (out / 128) * Math.ceil(M / 128);
        const dv = defaultVariant(out / 128, M, sms);
        const want = M <= 1024 ? byVariant.get(dv === 7 ? 5 : dv)! : old;
        t.diagnostic(`${out}x${inF} M=${M}: ${tiles} tiles on ${sms} SMs → cudaQGemm ${M <= 1024 ? `fused variant ${dv}` : 'dequantize + cuBLAS'}`);
        let same = 0;
        for (let i = 0; i < dflt.length; i++) if (Object.is(dflt[i], want[i])) same++;
        assert.equal(same, dflt.length, `${out}x${inF} M=${M}: cudaQGemm did not take the ${M <= 1024 ? 'fused kernel' : 'dequantize + cuBLAS path'} (${same} of ${dflt.length} equal)`);
        // LOWBIT_QGEMM_FUSED_MAX_M moves the switch
        process.env.LOWBIT_QGEMM_FUSED_MAX_M = String(M - 1);
        const lowMax = run(() => c.cudaQGemm(q.desc, M, hX, hY, true, hS), true);
        delete process.env.LOWBIT_QGEMM_FUSED_MAX_M;
        assert.ok(lowMax.every((v, i) => Object.is(v, old[i])), `${out}x${inF} M=${M}: LOWBIT_QGEMM_FUSED_MAX_M=${M - 1} still fused`);
        c.cudaFree(hX); c.cudaFree(hY); c.cudaFree(hS);
      }
      // without the repacked stream cudaQGemm keeps dequantize + cuBLAS (variant 1 measured slower than it)
      const q2 = uploadPacked(c, p), M = 81;
      const hX = c.cudaAlloc(M * inF * 2), hY = c.cudaAlloc(M * out * 4), hS = c.cudaAlloc(out * inF * 2);
      try {
        c.cudaUpload(hX, randomX(rng, M * inF));
        c.cudaQGemm(q2.desc, M, hX, hY, true, hS);
        c.cudaSync();
        const a = new Float32Array(M * out), b = new Float32Array(M * out);
        c.cudaDownload(hY, a);
        process.env.LOWBIT_QGEMM_FUSED = '0';
        c.cudaQGemm(q2.desc, M, hX, hY, true, hS);
        delete process.env.LOWBIT_QGEMM_FUSED;
        c.cudaSync();
        c.cudaDownload(hY, b);
        assert.ok(a.every((v, i) => Object.is(v, b[i])), 'without desc.fused cudaQGemm should take dequantize + cuBLAS');
        assert.throws(() => c.cudaQGemmFused(q2.desc, M, hX, hY, true, 0, 3), /repacked stream/);
      } finally {
        q2.free(); c.cudaFree(hX); c.cudaFree(hY); c.cudaFree(hS);
      }
      q.free();
    }
  } finally {
    envKeys.forEach((k, i) => { if (saved[i] === undefined) delete process.env[k]; else process.env[k] = saved[i]; });
  }
});

test('cuda-qgemm-fused: shapes it does not take fall back (cudaQGemm still right), and say why', (t) => {
  const c = fusedOrSkip(t);
  if (!c) return;
  const rng = new Rng(23);
  const p = randomInt2(rng, 192, 256), M = 70;  // out % 128 != 0
  const q = uploadPacked(c, p);
  const hX = c.cudaAlloc(M * p.in * 2), hY = c.cudaAlloc(M * p.out * 4), hS = c.cudaAlloc(p.out * p.in * 2);
  try {
    const why = c.cudaQGemmFusedWhyNot(q.desc, M, hX, hY);
    assert.ok(why && /out % 128/.test(why), `why not: ${why}`);
    assert.throws(() => c.cudaQGemmFused(q.desc, M, hX, hY, true), /out % 128/);
    const Xb = randomX(rng, M * p.in), Xf = bf16ToF32(Xb), Wb = bf16ToF32(f32ToBf16(dequantize(p)));
    c.cudaUpload(hX, Xb);
    c.cudaQGemm(q.desc, M, hX, hY, true, hS);
    c.cudaSync();
    const got = new Float32Array(M * p.out), want = new Float64Array(M * p.out);
    c.cudaDownload(hY, got);
    for (let m = 0; m < M; m++) {
      for (let o = 0; o < p.out; o++) {
        let s = 0;
        for (let i = 0; i < p.in; i++) s += Xf[m * p.in + i] * Wb[o * p.in + i];
        want[m * p.out + o] = s;
      }
    }
    assert.ok(relNorm(got, want) < 2e-5);
  } finally {
    q.free(); c.cudaFree(hX); c.cudaFree(hY); c.cudaFree(hS);
  }
});
