// A lane-by-lane CPU model of a decode GEMV body that does not exist yet: x as symmetric int8 per group of 64 inputs and
// the 2-bit codes as u8 operands of mma.m16n8k32.u8.s8 (docs/cuda.md, "An int8 operand for x"). It pins down, before any
// CUDA is written, the two things such a kernel can get wrong: the repack (each code word's four 2-bit slots, read by ONE
// lop3 mask each with no shift, slot j giving 4^j·q, must put every slot-MMA's 32 k values inside one scale group) and the
// fold (acc₀ + acc₁/4 for the block's first group, acc₂/16 + acc₃/64 for its second, then scale, zero and x's group sum).
// The PTX ISA's m16n8k32 integer fragments: A 16×32 row-major, lane (g = lane/4, t = lane%4) holds a0 = A[g][4t..4t+3],
// a1 = A[g+8][4t..], a2 = A[g][16+4t..], a3 = A[g+8][16+4t..]; B 32×8, b0 = B[4t..4t+3][g], b1 = B[16+4t..][g];
// C/D 16×8 s32, c0,c1 = C[g][2t, 2t+1], c2,c3 = C[g+8][2t, 2t+1]. The model's y must equal the f64 product of the
// dequantized weight and the int8-rounded x, and the int8 rounding must stay small against the exact x. The CUDA
// prototype (native/cuda/int8x_gemv.cu) is checked against the same twins where a GPU is present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { quantizeRTN } from '../src/quant/rtn.js';
import { dequantize } from '../src/quant/dequant.js';
import { unpackCodes } from '../src/quant/pack.js';
import { relErr } from './helpers/gpu-model.js';
import { f16BitsToF32 } from '../src/io/halfs.js';
import { bf16ToF32, cudaEngine, f32ToBf16, uploadPacked } from '../src/backend/cuda.js';
import { cudaDecodeOps, type NativeCudaDecode } from '../src/backend/cuda-decode.js';
import { hostEngine } from './helpers/host-engine.js';

const bf16Values = (x: Float32Array): Float32Array => bf16ToF32(f32ToBf16(x));
import { cudaInt8xOps, cudaInt8xUnavailable, type Int8xChainAttnPhase, type Int8xChainGemvPhase, type Int8xChainPhase, type NativeCudaInt8x, int8X, int8xInputOf, int8xLoraA, int8xPrepInput, int8xScaleZero, type Int8xPrepBt, int8xScratchBytes, repackInt8x, tileInt8xSz, unrepackInt8x, untileInt8xSz } from '../src/backend/cuda-int8x.js';

const MASK = [0x03030303, 0x0c0c0c0c, 0x30303030, 0xc0c0c0c0];

const u8 = (w: number, b: number) => (w >>> (8 * b)) & 0xff;

/** The kernel's y, lane by lane: the warp's four slot MMAs per (tile, block), then the fold per group. */
function int8xModel(words: Uint32Array, scales: Float32Array, zeros: Float32Array, out: number, inF: number, x: Float32Array): Float64Array {
  const { xq, a, sum } = int8X(x), nblk = inF / 128, ng = inF / 64, y = new Float64Array(out);
  for (let tile = 0; tile < Math.ceil(out / 16); tile++) for (let blk = 0; blk < nblk; blk++) {
    const acc: number[][][] = [];  // [slot][lane][c0..c3]
    for (let j = 0; j < 4; j++) {
      // every lane's registers, assembled into the 16×32 A and 32×8 B the instruction sees
      const A = Array.from({ length: 16 }, () => new Array<number>(32).fill(0)), B = Array.from({ length: 32 }, () => new Array<number>(8).fill(0));
      for (let lane = 0; lane < 32; lane++) {
        const g = lane >> 2, t = lane & 3, w = words.subarray(((tile * nblk + blk) * 32 + lane) * 4, ((tile * nblk + blk) * 32 + lane) * 4 + 4);
        const a0 = w[0] & MASK[j], a1 = w[1] & MASK[j], a2 = w[2] & MASK[j], a3 = w[3] & MASK[j];  // one lop3 each
        for (let b = 0; b < 4; b++) {
          A[g][4 * t + b] = u8(a0, b); A[g + 8][4 * t + b] = u8(a1, b);
          A[g][16 + 4 * t + b] = u8(a2, b); A[g + 8][16 + 4 * t + b] = u8(a3, b);
          // B: x̂ of the slot's 32 inputs (the same in every column n = g), k = 4t + b and 16 + 4t + b
          B[4 * t + b][g] = xq[int8xInputOf(blk, j, 0, t, b)]; B[16 + 4 * t + b][g] = xq[int8xInputOf(blk, j, 1, t, b)];
        }
      }
      acc.push(Array.from({ length: 32 }, (_, lane) => {
        const g = lane >> 2, t = lane & 3, dot = (r: number, n: number) => A[r].reduce((s, v, k) => s + v * B[k][n], 0);
        return [dot(g, 2 * t), dot(g, 2 * t + 1), dot(g + 8, 2 * t), dot(g + 8, 2 * t + 1)];
      }));
    }
    // fold on lanes t = 0 (c0: row g, c2: row g + 8): group 2·blk from slots 0, 1; group 2·blk + 1 from slots 2, 3
    for (let g = 0; g < 8; g++) for (const [ci, dr] of [[0, 0], [2, 8]] as const) {
      const row = tile * 16 + g + dr;
      if (row >= out) continue;
      for (let h = 0; h < 2; h++) {
        const gi = 2 * blk + h, qx = acc[2 * h][4 * g][ci] / 4 ** (2 * h) + acc[2 * h + 1][4 * g][ci] / 4 ** (2 * h + 1);
        assert.ok(Number.isInteger(qx), 'slot sums divide exactly by 4^j');
        y[row] += scales[row * ng + gi] * a[gi] * (qx - zeros[row * ng + gi] * sum[gi]);
      }
    }
  }
  return y;
}

test('int8-x GEMV model (mma.m16n8k32 u8×s8, one lop3 per slot): repack and fold = f64 on the int8 x; int8 rounding small', (t) => {
  const rng = new Rng(37);
  for (const [out, inF] of [[40, 256], [16, 384], [7, 128]]) {
    const w = new Float32Array(out * inF).map(() => rng.normal());
    const p = quantizeRTN(w, out, inF, { bits: 2, groupSize: 64 });
    const q = unpackCodes(p.qcodes, 2, out * inF), W = dequantize(p);
    const x = new Float32Array(inF).map(() => rng.normal() * (rng.int(8) === 0 ? 6 : 1));  // a few large inputs
    const y = int8xModel(repackInt8x(q, out, inF), p.scales!, p.zeros!, out, inF, x);
    const { xq, a } = int8X(x);
    const refQ = new Float64Array(out), refX = new Float64Array(out);
    for (let r = 0; r < out; r++) for (let i = 0; i < inF; i++) {
      refQ[r] += W[r * inF + i] * a[Math.floor(i / 64)] * xq[i];
      refX[r] += W[r * inF + i] * x[i];
    }
    const eQ = relErr(y, refQ), eX = relErr(y, refX);
    t.diagnostic(`${out}×${inF}: model vs f64 on the int8 x ${eQ.toExponential(2)}, vs the exact x ${eX.toExponential(2)}`);
    assert.ok(eQ < 1e-6, `${out}×${inF}: model vs f64 on the int8 x ${eQ}`);
    assert.ok(eX > 1e-6 && eX < 2e-2, `${out}×${inF}: int8 rounding of x vs the exact x ${eX}`);
    // a layout slip (the k-halves of B swapped) must show: the test can fail
    const bad = repackInt8x(q, out, inF);
    for (let i = 0; i < bad.length; i += 4) { const t0 = bad[i]; bad[i] = bad[i + 2]; bad[i + 2] = t0; }
    assert.ok(relErr(int8xModel(bad, p.scales!, p.zeros!, out, inF, x), refQ) > 1e-2, 'a wrong repack is caught');
  }
});

test('int8-x scale|zero words: f16 scale low, zero high, exact for the RTN scales; a non-f16 value throws', () => {
  const p = quantizeRTN(new Float32Array(8 * 128).map((_, i) => Math.sin(i * 0.7)), 8, 128, { bits: 2, groupSize: 64 });
  const w = int8xScaleZero(p.scales!, p.zeros!);
  for (let i = 0; i < w.length; i++) {
    assert.equal(f16BitsToF32(w[i] & 0xffff), p.scales![i]);
    assert.equal(f16BitsToF32(w[i] >>> 16), p.zeros![i]);
  }
  assert.throws(() => int8xScaleZero(new Float32Array([0.1]), new Float32Array([1])), /not an f16 value/);
});

test('CUDA int8-x GEMV prototype = its twins: x quantization exact, y = f64 on the int8 x (split K 1, 3, 4, 8, 16; 1 and 2 blocks ahead; x̂ from global or shared memory; float atomics or a block per tile in a fixed order, which stores y and repeats bit for bit)', (t) => {
  const c = cudaInt8xOps();
  if (!c) { t.skip(cudaInt8xUnavailable()); return; }
  const rng = new Rng(41);
  for (const [out, inF] of [[40, 256], [1000, 4096], [300, 11008]]) {
    const p = quantizeRTN(new Float32Array(out * inF).map(() => 0.03 * rng.normal()), out, inF, { bits: 2, groupSize: 64 });
    const q = unpackCodes(p.qcodes, 2, out * inF), W = dequantize(p), ng = inF / 64;
    const x = new Float32Array(inF).map(() => rng.normal() * (rng.int(16) === 0 ? 8 : 1));
    const { xq, a, sum } = int8X(x);
    const ref = new Float64Array(out);
    for (let r = 0; r < out; r++) for (let i = 0; i < inF; i++) ref[r] += W[r * inF + i] * a[Math.floor(i / 64)] * xq[i];
    const up = (d: ArrayBufferView) => { const h = c.cudaAlloc(Math.max(16, d.byteLength)); c.cudaUpload(h, d); return h; };
    const hw = up(repackInt8x(q, out, inF)), hsz = up(int8xScaleZero(p.scales!, p.zeros!)), hx = up(x);
    const scrBytes = int8xScratchBytes(inF), hscr = c.cudaAlloc(scrBytes), hy = c.cudaAlloc(out * 4);
    try {
      // 23: two blocks in flight per warp, 39/55: x̂ in shared memory; 69…117: a block per tile (fixed order, y stored, so y
      // starts as garbage and is not zeroed)
      for (const [ks, parts] of [[1, 7], [4, 7], [1, 23], [3, 23], [4, 39], [3, 55], [3, 69], [4, 85], [8, 101], [16, 117]]) {
        const fixed = (parts & 64) !== 0;
        if (fixed) c.cudaUpload(hy, new Float32Array(out).fill(-77));
        c.cudaInt8xGemv(hw, hsz, hx, hscr, hy, out, inF, ks, parts);
        const y = new Float32Array(out), scr = new Uint8Array(scrBytes);
        c.cudaDownload(hy, y);
        if (fixed) {  // deterministic: a second launch gives the same bits
          c.cudaInt8xGemv(hw, hsz, hx, hscr, hy, out, inF, ks, parts);
          const y2 = new Float32Array(out);
          c.cudaDownload(hy, y2);
          assert.deepEqual(new Uint32Array(y2.buffer), new Uint32Array(y.buffer), `${out}×${inF} split ${ks}: fixed order repeats`);
        }
        c.cudaDownload(hscr, scr);
        const gq = new Int8Array(scr.buffer, 0, inF), ga = new Float32Array(scr.buffer, inF, ng), gs = new Int32Array(scr.buffer, inF + ng * 4, ng);
        assert.deepEqual([...gq], [...xq], `${out}×${inF}: x̂ = twin`);
        assert.deepEqual([...ga], [...a], `${out}×${inF}: group scales = twin`);
        assert.deepEqual([...gs], [...sum], `${out}×${inF}: Σx̂ = twin`);
        const e = relErr(y, ref);
        t.diagnostic(`${out}×${inF}, split K ${ks}, parts ${parts}: y vs f64 on the int8 x ${e.toExponential(2)}`);
        assert.ok(e < 1e-5, `${out}×${inF} split ${ks}: y vs f64 ${e}`);
      }
    } finally { for (const h of [hw, hsz, hx, hscr, hy]) c.cudaFree(h); }
  }
});

test('CUDA int8-x prep (RMSNorm, SwiGLU) + GEMV = f64 of the normed / gated x on its int8 image; y zeroed by the prep; LoRA-A rows in the same launch', (t) => {
  const c = cudaInt8xOps();
  if (!c) { t.skip(cudaInt8xUnavailable()); return; }
  const rng = new Rng(43), eps = 1e-5;
  for (const [out, inF, mode] of [[48, 4096, 'norm'], [40, 640, 'norm'], [64, 11008, 'swiglu'], [33, 1024, 'plain']] as const) {
    const p = quantizeRTN(new Float32Array(out * inF).map(() => 0.03 * rng.normal()), out, inF, { bits: 2, groupSize: 64 });
    const q = unpackCodes(p.qcodes, 2, out * inF), W = dequantize(p);
    const x = new Float32Array(inF).map(() => rng.normal() * (rng.int(16) === 0 ? 8 : 1));
    const x2 = new Float32Array(inF).map(() => rng.normal());
    const normW = new Float32Array(inF).map(() => 0.5 + rng.next());
    const opts = mode === 'norm' ? { normW } : mode === 'swiglu' ? { x2 } : {};
    const { xt, ss } = int8xPrepInput(x, opts);
    const { xq, a } = int8X(xt);
    const rstd = mode === 'norm' ? 1 / Math.sqrt(ss / inF + eps) : 1;
    const ref = new Float64Array(out), refExact = new Float64Array(out);
    for (let r = 0; r < out; r++) for (let i = 0; i < inF; i++) {
      ref[r] += W[r * inF + i] * a[Math.floor(i / 64)] * xq[i] * rstd;
      refExact[r] += W[r * inF + i] * xt[i] * rstd;
    }
    const up = (d: ArrayBufferView) => { const h = c.cudaAlloc(Math.max(16, d.byteLength)); c.cudaUpload(h, d); return h; };
    const hw = up(repackInt8x(q, out, inF)), hsz = up(int8xScaleZero(p.scales!, p.zeros!)), hx = up(x), hx2 = up(x2), hn = up(normW);
    const hscr = c.cudaAlloc(int8xScratchBytes(inF)), hy = up(new Float32Array(out).fill(123));  // the prep must zero it
    const handles: number[] = [];
    try {
      c.cudaInt8xPrep(hx, mode === 'swiglu' ? hx2 : null, mode === 'norm' ? hn : null, hscr, inF, hy, out, true);
      c.cudaInt8xGemv(hw, hsz, hx, hscr, hy, out, inF, 2, 12, mode === 'norm' ? eps : null);
      const y = new Float32Array(out), scr = new Uint8Array(int8xScratchBytes(inF));
      c.cudaDownload(hy, y);
      c.cudaDownload(hscr, scr);
      const gq = new Int8Array(scr.buffer, 0, inF);
      let diff = 0;
      for (let i = 0; i < inF; i++) diff += Math.abs(gq[i] - xq[i]);
      const e = relErr(y, ref), eX = relErr(y, refExact);
      t.diagnostic(`${out}×${inF} ${mode}: x̂ off by ${diff} in total, y vs f64 on the int8 x̃ ${e.toExponential(2)}, vs the exact x̃ ${eX.toExponential(2)}`);
      if (mode !== 'swiglu') assert.equal(diff, 0, `${mode}: x̂ = twin`);
      else assert.ok(diff <= inF / 256, `swiglu: x̂ within expf's last bits of the twin (${diff})`);
      assert.ok(e < (mode === 'swiglu' ? 1e-3 : 1e-5), `${out}×${inF} ${mode}: y vs f64 ${e}`);
      assert.ok(eX < 2e-2, `${out}×${inF} ${mode}: int8 rounding of x̃ ${eX}`);
      // the same launch with the adapter's LoRA-A rows (a block of 4 warps per row past the packed tiles), x̂ in shared memory
      const R = 24, A = bf16Values(new Float32Array(R * inF).map(() => 0.05 * rng.normal()));
      const tRef = int8xLoraA(A, R, inF, xq, a, rstd), hA = up(f32ToBf16(A)), ht = up(new Float32Array(R).fill(7));
      handles.push(hA, ht);
      c.cudaInt8xPrep(hx, mode === 'swiglu' ? hx2 : null, mode === 'norm' ? hn : null, hscr, inF, hy, out, true);
      c.cudaInt8xGemv(hw, hsz, hx, hscr, hy, out, inF, 2, 12 | 16 | 32, mode === 'norm' ? eps : null, hA, R, ht);
      const y2 = new Float32Array(out), tv = new Float32Array(R);
      c.cudaDownload(hy, y2);
      c.cudaDownload(ht, tv);
      const e2 = relErr(y2, ref), eT = relErr(tv, tRef);
      t.diagnostic(`${out}×${inF} ${mode} + ${R} LoRA-A rows: y vs f64 ${e2.toExponential(2)}, t vs f64 on the int8 x̃ ${eT.toExponential(2)}`);
      assert.ok(e2 < (mode === 'swiglu' ? 1e-3 : 1e-5), `${mode} with A rows: y vs f64 ${e2}`);
      assert.ok(eT < (mode === 'swiglu' ? 1e-3 : 1e-5), `${mode}: t vs f64 ${eT}`);
      // and with a block per tile (fixed order, 3 slices, so the A-row blocks have 3 warps): the prep zeroes nothing
      c.cudaUpload(hy, new Float32Array(out).fill(-5));
      c.cudaUpload(ht, new Float32Array(R).fill(9));
      c.cudaInt8xPrep(hx, mode === 'swiglu' ? hx2 : null, mode === 'norm' ? hn : null, hscr, inF, null, 0, true);
      c.cudaInt8xGemv(hw, hsz, null, hscr, hy, out, inF, 3, 12 | 32 | 64, mode === 'norm' ? eps : null, hA, R, ht);
      c.cudaDownload(hy, y2);
      c.cudaDownload(ht, tv);
      const e3 = relErr(y2, ref), eT3 = relErr(tv, tRef);
      t.diagnostic(`${out}×${inF} ${mode} + ${R} LoRA-A rows, a block per tile: y vs f64 ${e3.toExponential(2)}, t vs f64 ${eT3.toExponential(2)}`);
      assert.ok(e3 < (mode === 'swiglu' ? 1e-3 : 1e-5), `${mode} with A rows, fixed order: y vs f64 ${e3}`);
      assert.ok(eT3 < (mode === 'swiglu' ? 1e-3 : 1e-5), `${mode}, fixed order: t vs f64 ${eT3}`);
      // and B·t in the same launch's epilogue: two segments (rows [0, 16) with t[0 … 12), the rest with t[12 … 24)), three
      // launches in a row (the A-row counters must come back to zero each time)
      const rB = 12, ends = [16, out], Bsegs = ends.map((e, i) => bf16Values(new Float32Array((e - (i ? ends[i - 1] : 0)) * rB).map(() => 0.1 * rng.normal())));
      const hB = Bsegs.map((b) => up(f32ToBf16(b))), hsync = up(new Uint32Array(2));
      handles.push(...hB, hsync);
      const refBt = Float64Array.from(ref, (v, o) => {
        const i = o < ends[0] ? 0 : 1, row = o - (i ? ends[0] : 0);
        let bt = 0;
        for (let j = 0; j < rB; j++) bt += Bsegs[i][row * rB + j] * tRef[i * rB + j];
        return v + bt;
      });
      for (let rep = 0; rep < 3; rep++) {
        c.cudaUpload(hy, new Float32Array(out).fill(-5));
        c.cudaInt8xPrep(hx, mode === 'swiglu' ? hx2 : null, mode === 'norm' ? hn : null, hscr, inF, null, 0, true);
        c.cudaInt8xGemv(hw, hsz, null, hscr, hy, out, inF, 4, 12 | 64, mode === 'norm' ? eps : null, hA, R, ht, hB, ends, rB, hsync);
        c.cudaDownload(hy, y2);
        const e4 = relErr(y2, refBt), sync = new Uint32Array(2);
        c.cudaDownload(hsync, sync);
        if (rep === 0) t.diagnostic(`${out}×${inF} ${mode} + B·t in the epilogue (2 segments, rank ${rB}): y vs f64 ${e4.toExponential(2)}`);
        assert.ok(e4 < (mode === 'swiglu' ? 1e-3 : 1e-5), `${mode}, B·t in the epilogue, launch ${rep}: y vs f64 ${e4}`);
        assert.deepEqual([...sync], [0, 0], 'the A-row counters are back to zero');
      }
      // parts & 256: the counters zeroed before each launch by someone else (here the prep's y/nzero, as in the decoder)
      for (let rep = 0; rep < 2; rep++) {
        c.cudaUpload(hy, new Float32Array(out).fill(-5));
        c.cudaUpload(hsync, new Uint32Array([R, 3]));  // stale counts: the prep must zero them
        c.cudaInt8xPrep(hx, mode === 'swiglu' ? hx2 : null, mode === 'norm' ? hn : null, hscr, inF, hsync, 2, true);
        c.cudaInt8xGemv(hw, hsz, null, hscr, hy, out, inF, 4, 12 | 64 | 256, mode === 'norm' ? eps : null, hA, R, ht, hB, ends, rB, hsync);
        c.cudaDownload(hy, y2);
        const e5 = relErr(y2, refBt), sync = new Uint32Array(2);
        c.cudaDownload(hsync, sync);
        if (rep === 0) t.diagnostic(`${out}×${inF} ${mode} + B·t, counters zeroed by the prep: y vs f64 ${e5.toExponential(2)}, counters after ${[...sync].join(',')}`);
        assert.ok(e5 < (mode === 'swiglu' ? 1e-3 : 1e-5), `${mode}, B·t with the counters zeroed by the prep, launch ${rep}: y vs f64 ${e5}`);
        assert.deepEqual([...sync], [R, 0], 'the A rows counted to R; no tile block reset them');
      }
      assert.throws(() => c.cudaInt8xGemv(hw, hsz, null, hscr, hy, out, inF, 4, 12, null, hA, R, ht, hB, ends, rB, hsync), /parts & 64/);
    } finally { for (const h of [hw, hsz, hx, hx2, hn, hscr, hy, ...handles.splice(0)]) c.cudaFree(h); }
  }
});

test('CUDA int8-x streamed GEMV (parts & 512: a block per SM, a bulk-copy ring) = the per-tile kernel with the same split K bit for bit (y and t), = f64; LoRA-A rows (a block a row, or 4 a block: parts & 1024), B·t in 3 segments, counters back to zero or zeroed by the prep; rings that wrap', (t) => {
  const c = cudaInt8xOps();
  if (!c) { t.skip(cudaInt8xUnavailable()); return; }
  const rng = new Rng(59), eps = 1e-5;
  // 6400×4096: 400 tiles, 4 per block, so a 3-stage ring wraps; 2144×11008: 3 chunks of 4096 inputs a tile, 2 tiles a
  // block (6 items); 304×11008 with 48 A rows: more blocks than tiles (≤ 2 A rows of 11008 inputs a block); 48×4096: 3 tiles
  for (const [out, inF, norm] of [[48, 4096, true], [6400, 4096, true], [304, 11008, false], [2144, 11008, false]] as const) {
    const p = quantizeRTN(new Float32Array(out * inF).map(() => 0.03 * rng.normal()), out, inF, { bits: 2, groupSize: 64 });
    const q = unpackCodes(p.qcodes, 2, out * inF), W = dequantize(p);
    const x = new Float32Array(inF).map(() => rng.normal() * (rng.int(16) === 0 ? 8 : 1));
    const normW = new Float32Array(inF).map(() => 0.5 + rng.next());
    const { xt, ss } = int8xPrepInput(x, norm ? { normW } : {});
    const { xq, a } = int8X(xt);
    const rstd = norm ? 1 / Math.sqrt(ss / inF + eps) : 1;
    const ref = new Float64Array(out);
    for (let r = 0; r < out; r++) { let acc = 0; for (let i = 0; i < inF; i++) acc += W[r * inF + i] * a[i >> 6] * xq[i]; ref[r] = acc * rstd; }
    const rB = 16, R = 3 * rB, A = bf16Values(new Float32Array(R * inF).map(() => 0.05 * rng.normal()));
    const tRef = int8xLoraA(A, R, inF, xq, a, rstd);
    const third = Math.floor(out / 48) * 16, ends = [third, 2 * third, out];
    const Bsegs = ends.map((e, i) => bf16Values(new Float32Array((e - (i ? ends[i - 1] : 0)) * rB).map(() => 0.1 * rng.normal())));
    const refBt = Float64Array.from(ref, (v, o) => {
      const i = o < ends[0] ? 0 : o < ends[1] ? 1 : 2, row = o - (i ? ends[i - 1] : 0);
      let bt = 0;
      for (let j = 0; j < rB; j++) bt += Bsegs[i][row * rB + j] * tRef[i * rB + j];
      return v + bt;
    });
    const hs: number[] = [];
    const up = (d: ArrayBufferView) => { const h = c.cudaAlloc(Math.max(16, d.byteLength)); c.cudaUpload(h, d); hs.push(h); return h; };
    const szw = int8xScaleZero(p.scales!, p.zeros!);
    const hw = up(repackInt8x(q, out, inF)), hsz = up(szw), hszT = up(new Uint32Array(szw.length)), hx = up(x), hn = up(normW);
    // the tile-blocked scale|zero words the streamed kernel reads: made on the device = the twin
    c.cudaInt8xTileSz!(hsz, hszT, out, inF);
    const gotT = new Uint32Array(szw.length);
    c.cudaDownload(hszT, gotT);
    assert.deepEqual(gotT, tileInt8xSz(szw, out, inF), `${out}×${inF}: cudaInt8xTileSz = tileInt8xSz`);
    const hscr = c.cudaAlloc(int8xScratchBytes(inF)); hs.push(hscr);
    const hy = up(new Float32Array(out)), hA = up(f32ToBf16(A)), ht = up(new Float32Array(R)), hsync = up(new Uint32Array(2));
    const hB = Bsegs.map((b) => up(f32ToBf16(b)));
    // zeroByPrep: the prep zeroes the counters (parts & 256); tval: the prep sets t to the unset mark and the GEMV
    // publishes t by value (parts & 2048), its counters left as they were
    const run = (ks: number, parts: number, adapter: boolean, zeroByPrep = false, tval = false) => {
      c.cudaUpload(hy, new Float32Array(out).fill(-5));
      c.cudaUpload(ht, new Float32Array(R).fill(9));
      // stale counts where the prep must zero them or t by value ignores them; else zero, as a launch that counts expects
      // them (run 100: the per-tile reference after a t-by-value run found [R, 3], skipped its wait for t and raced)
      c.cudaUpload(hsync, zeroByPrep || tval ? new Uint32Array([R, 3]) : new Uint32Array(2));
      c.cudaInt8xPrep(hx, null, norm ? hn : null, hscr, inF, tval ? ht : zeroByPrep ? hsync : null, tval ? R : zeroByPrep ? 2 : 0, true,
        null, null, null, null, null, 0, null, false, tval);
      c.cudaInt8xGemv(hw, parts & 512 ? hszT : hsz, null, hscr, hy, out, inF, ks, parts | (zeroByPrep || tval ? 256 : 0) | (tval ? 2048 : 0), norm ? eps : null,
        adapter ? hA : null, adapter ? R : 0, adapter ? ht : null, adapter ? hB : null, adapter ? ends : null, adapter ? rB : 0, adapter ? hsync : null);
      const y = new Float32Array(out), tv = new Float32Array(R), sync = new Uint32Array(2);
      c.cudaDownload(hy, y); c.cudaDownload(ht, tv); c.cudaDownload(hsync, sync);
      return { y, tv, sync };
    };
    try {
      // rows 1024: 4 LoRA-A rows a block (each by ks / 4 warps) in both kernels, so again the same bits
      for (const ks of [4, 8, 16]) for (const adapter of [false, true]) for (const rows of adapter ? [0, 1024] : [0]) {
        const tiled = run(ks, 12 | 32 | 64 | rows, adapter), streamed = run(ks, 12 | 64 | 512 | rows, adapter);
        const e = relErr(streamed.y, adapter ? refBt : ref);
        t.diagnostic(`${out}×${inF}${norm ? ' (RMSNorm)' : ''}, ${ks} warps${adapter ? `, ${R} A rows${rows ? ' (4 a block)' : ''} + B·t (3 segments, rank ${rB})` : ''}: streamed y vs f64 ${e.toExponential(2)}${adapter ? `, t vs f64 ${relErr(streamed.tv, tRef).toExponential(2)}, per-tile t ${relErr(tiled.tv, tRef).toExponential(2)}` : ''}`);
        if (adapter) assert.ok(relErr(tiled.tv, tRef) < 1e-5, `${out}×${inF} ${ks} warps rows ${rows}: per-tile t vs f64`);
        assert.deepEqual(new Uint32Array(streamed.y.buffer), new Uint32Array(tiled.y.buffer), `${out}×${inF} ${ks} warps${adapter ? ' + adapter' : ''}: streamed y = per-tile y bit for bit`);
        assert.ok(e < 1e-5, `${out}×${inF} ${ks} warps: streamed y vs f64 ${e}`);
        if (adapter) {
          assert.deepEqual(new Uint32Array(streamed.tv.buffer), new Uint32Array(tiled.tv.buffer), 'streamed t = per-tile t bit for bit');
          assert.deepEqual([...streamed.sync], [0, 0], 'the streamed launch leaves its counters at zero');
          const again = run(ks, 12 | 64 | 512 | rows, true);  // and the next launch finds them so
          assert.deepEqual(new Uint32Array(again.y.buffer), new Uint32Array(streamed.y.buffer), 'a second streamed launch repeats bit for bit');
        }
      }
      const z = run(8, 12 | 64 | 512, true, true);  // parts & 256: zeroed by the prep, none reset by the GEMV
      assert.ok(relErr(z.y, refBt) < 1e-5, `counters zeroed by the prep: y vs f64 ${relErr(z.y, refBt)}`);
      assert.deepEqual([...z.sync], [R, 0], 'the A rows counted to R; no block reset them');
      // t published by value (parts & 2048): the same bits as the per-tile kernel, the counters untouched
      for (const ks of [4, 8, 16]) {
        const tiled = run(ks, 12 | 32 | 64, true), v = run(ks, 12 | 64 | 512, true, false, true);
        assert.deepEqual(new Uint32Array(v.y.buffer), new Uint32Array(tiled.y.buffer), `${out}×${inF} ${ks} warps, t by value: y = per-tile y bit for bit`);
        assert.deepEqual(new Uint32Array(v.tv.buffer), new Uint32Array(tiled.tv.buffer), `${out}×${inF} ${ks} warps, t by value: t = per-tile t bit for bit`);
        assert.deepEqual([...v.sync], [R, 3], 't by value: the counters untouched');
        if (ks === 8) t.diagnostic(`${out}×${inF}, t by value: y vs f64 ${relErr(v.y, refBt).toExponential(2)}, y and t = per-tile bit for bit`);
      }
    } finally { for (const h of hs) c.cudaFree(h); }
  }
  const h = c.cudaAlloc(1 << 16);
  try {
    assert.throws(() => c.cudaInt8xGemv(h, h, null, h, h, 40, 128, 8, 12 | 64 | 512), /out % 16/);
    assert.throws(() => c.cudaInt8xGemv(h, h, null, h, h, 32, 256, 3, 12 | 64 | 512), /4, 8 or 16/);
    assert.throws(() => c.cudaInt8xGemv(h, h, null, h, h, 32, 256, 8, 12 | 512), /parts & 64/);
    assert.throws(() => c.cudaInt8xGemv(h, h, null, h, h, 32, 256, 8, 12 | 64 | 2048, null, h, 16, h, [h], [32], 16, h), /parts & 512/);
  } finally { c.cudaFree(h); }
});

test('CUDA int8-x prep hand-offs (residual + B·t + RMSNorm, SwiGLU with both B·t, bf16 x; ranks 64 and 16 coalesced per group, 24 and 12 a row per lane) = int8xPrepInput; the GEMV on them = f64', (t) => {
  const c = cudaInt8xOps();
  if (!c) { t.skip(cudaInt8xUnavailable()); return; }
  const rng = new Rng(53), eps = 1e-5;
  for (const [out, inF, mode, r] of [[48, 4096, 'residual+norm', 64], [40, 1024, 'swiglu+bt', 16], [33, 640, 'bf16', 8],
    [40, 1024, 'swiglu+bt', 24], [48, 640, 'residual+norm', 12]] as const) {
    const p = quantizeRTN(new Float32Array(out * inF).map(() => 0.03 * rng.normal()), out, inF, { bits: 2, groupSize: 64 });
    const q = unpackCodes(p.qcodes, 2, out * inF), W = dequantize(p);
    let x = new Float32Array(inF).map(() => rng.normal() * (rng.int(16) === 0 ? 8 : 1));
    if (mode === 'bf16') x = Float32Array.from(bf16Values(x));
    const addY = new Float32Array(inF).map(() => 0.5 * rng.normal()), x2 = new Float32Array(inF).map(() => rng.normal());
    const normW = new Float32Array(inF).map(() => 0.5 + rng.next());
    const mk = (): Int8xPrepBt => ({ B: bf16Values(new Float32Array(inF * r).map(() => 0.1 * rng.normal())), t: new Float32Array(r).map(() => rng.normal()), r });
    const bt1 = mk(), bt2 = mk();
    const opts = mode === 'residual+norm' ? { addY, bt1, normW } : mode === 'swiglu+bt' ? { x2, bt1, bt2 } : {};
    const twin = int8xPrepInput(x, opts), tq = int8X(twin.xt);
    const up = (d: ArrayBufferView) => { const h = c.cudaAlloc(Math.max(16, d.byteLength)); c.cudaUpload(h, d); return h; };
    const hs: number[] = [];
    const u = (d: ArrayBufferView) => { const h = up(d); hs.push(h); return h; };
    const hw = u(repackInt8x(q, out, inF)), hsz = u(int8xScaleZero(p.scales!, p.zeros!)), hx = u(mode === 'bf16' ? f32ToBf16(x) : x);
    const hscr = c.cudaAlloc(int8xScratchBytes(inF)); hs.push(hscr);
    const hy = u(new Float32Array(out).fill(123)), hxo = u(new Float32Array(inF));
    try {
      const res = mode === 'residual+norm', sw = mode === 'swiglu+bt';
      c.cudaInt8xPrep(hx, sw ? u(x2) : null, res ? u(normW) : null, hscr, inF, hy, out, true, res ? u(addY) : null,
        res || sw ? u(f32ToBf16(bt1.B)) : null, res || sw ? u(bt1.t) : null, sw ? u(f32ToBf16(bt2.B)) : null, sw ? u(bt2.t) : null,
        res || sw ? r : 0, hxo, mode === 'bf16');
      c.cudaInt8xGemv(hw, hsz, null, hscr, hy, out, inF, 2, 12 | 16, res ? eps : null);  // x̂ is in scratch: no x
      const y = new Float32Array(out), scr = new Uint8Array(int8xScratchBytes(inF)), xo = new Float32Array(inF);
      c.cudaDownload(hy, y); c.cudaDownload(hscr, scr); c.cudaDownload(hxo, xo);
      const gq = new Int8Array(scr.buffer, 0, inF), ga = new Float32Array(scr.buffer, inF, inF / 64);
      let diff = 0, ss = 0;
      for (let i = 0; i < inF; i++) { diff += Math.abs(gq[i] - tq.xq[i]); ss += xo[i] * xo[i]; }
      // y against f64 on the device's own x̂ (the GEMV's exactness), x̂ and xOut against the twin (the prep's)
      const rstd = res ? 1 / Math.sqrt(ss / inF + eps) : 1, ref = new Float64Array(out);
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) ref[o] += W[o * inF + i] * ga[Math.floor(i / 64)] * gq[i] * rstd;
      const e = relErr(y, ref), eX = relErr(xo, twin.xOut);
      t.diagnostic(`${out}×${inF} ${mode} r ${r}: xOut vs twin ${eX.toExponential(2)}, x̂ off by ${diff} in total, y vs f64 on the device's x̂ ${e.toExponential(2)}`);
      assert.ok(eX < 1e-6, `${mode}: xOut = x + addY + B·t (${eX})`);
      assert.ok(diff <= inF / 256, `${mode}: x̂ within f32 rounding of the twin (${diff})`);
      assert.ok(e < 1e-5, `${mode}: y vs f64 ${e}`);
    } finally { for (const h of hs) c.cudaFree(h); }
  }
});

test('CUDA int8-x GEMV with the next prep folded into its epilogue (residual + RMSNorm; SwiGLU) = the GEMV, then cudaInt8xPrep on its y; the group counters end at zero', (t) => {
  const c = cudaInt8xOps();
  if (!c) { t.skip(cudaInt8xUnavailable()); return; }
  const rng = new Rng(61), inF = 512;
  for (const [out, half] of [[256, 0], [384, 192]] as const) {
    const p = quantizeRTN(new Float32Array(out * inF).map(() => 0.03 * rng.normal()), out, inF, { bits: 2, groupSize: 64 });
    const q = unpackCodes(p.qcodes, 2, out * inF), cin = half || out, cng = cin / 64;
    const hs: number[] = [];
    const u = (d: ArrayBufferView) => { const h = c.cudaAlloc(Math.max(16, d.byteLength)); c.cudaUpload(h, d); hs.push(h); return h; };
    const x = new Float32Array(inF).map(() => rng.normal() * (rng.int(16) === 0 ? 8 : 1));
    const res0 = new Float32Array(cin).map(() => rng.normal()), normW = new Float32Array(cin).map(() => 0.5 + rng.next());
    const hw = u(repackInt8x(q, out, inF)), hsz = u(int8xScaleZero(p.scales!, p.zeros!)), hx = u(x), hn = u(normW);
    const scr = () => { const h = c.cudaAlloc(int8xScratchBytes(cin)); c.cudaMemset0(h); hs.push(h); return h; };
    const hP = c.cudaAlloc(int8xScratchBytes(inF)); hs.push(hP);
    const hcnt = u(new Uint32Array(cng)), hy1 = u(new Float32Array(out)), hy2 = u(new Float32Array(out));
    const hF1 = scr(), hF2 = scr(), hr1 = u(res0), hr2 = u(res0);
    const gate = half ? c.cudaView(hy2, 0, 4 * half) : null, up = half ? c.cudaView(hy2, 4 * half, 4 * half) : null;
    if (gate && up) hs.unshift(gate, up);  // views freed before their buffer
    try {
      c.cudaInt8xPrep(hx, null, null, hP, inF, null, 0);
      const down = (h: number, n: number, T: typeof Float32Array | typeof Uint8Array | typeof Uint32Array = Float32Array) => { const a = new T(n); c.cudaDownload(h, a); return a; };
      for (let rep = 0; rep < 2; rep++) {  // twice: the counters must be back at zero for the second launch
        c.cudaInt8xGemv(hw, hsz, null, hP, hy1, out, inF, 4, 12 | 16 | 64, null, null, 0, null, null, null, 0, null,
          hF1, half ? null : hr1, half ? null : hn, half, hcnt);
        c.cudaInt8xGemv(hw, hsz, null, hP, hy2, out, inF, 4, 12 | 16 | 64);
        if (half) c.cudaInt8xPrep(gate!, up!, null, hF2, cin, null, 0);
        else c.cudaInt8xPrep(hr2, null, hn, hF2, cin, null, 0, false, hy2, null, null, null, null, 0, hr2);
        const bytes = cin + 8 * cng, f1 = down(hF1, int8xScratchBytes(cin), Uint8Array) as Uint8Array, f2 = down(hF2, int8xScratchBytes(cin), Uint8Array) as Uint8Array;
        let bad = 0;
        for (let i = 0; i < bytes; i++) if (f1[i] !== f2[i]) bad++;
        const y1 = down(hy1, out), y2 = down(hy2, out), cnt = down(hcnt, cng, Uint32Array);
        const p1 = new Float32Array(f1.buffer, bytes, cng), p2 = new Float32Array(f2.buffer, bytes, Math.ceil(cng / 8));
        const s1 = p1.reduce((a, v) => a + v, 0), s2 = p2.reduce((a, v) => a + v, 0);
        const r1 = down(hr1, cin), r2 = down(hr2, cin);
        t.diagnostic(`${out}×${inF} ${half ? 'SwiGLU' : 'residual + RMSNorm'} (launch ${rep + 1}): x̂ | a | Σx̂ bytes differing ${bad} of ${bytes}, Σx² ${s1} vs ${s2}, counters ${[...cnt].join(',')}`);
        assert.deepEqual([...y1], [...y2], 'the fold leaves y as it is');
        assert.equal(bad, 0, 'x̂, a and Σx̂ = the prep launch\'s');
        assert.ok(cnt.every((v) => v === 0), 'group counters back at zero');
        if (!half) {
          assert.deepEqual([...r1], [...r2], 'residual x += y as the prep makes it');
          assert.ok(Math.abs(s1 - s2) <= 1e-5 * s2 && s1 > 0, `Σx² partials per group ${s1} vs per block ${s2}`);
        }
      }
      assert.throws(() => c.cudaInt8xGemv(hw, hsz, null, hP, hy1, out, inF, 4, 12 | 16, null, null, 0, null, null, null, 0, null,
        hF1, half ? null : hr1, half ? null : hn, half, hcnt), /parts & 64/);
    } finally { for (const h of hs) c.cudaFree(h); }
  }
});

test('CUDA int8-x repack of an uploaded packed tensor = repackInt8x, and its desc.sz = int8xScaleZero (the GEMV reads both as they are)', (t) => {
  const c = cudaInt8xOps();
  if (!c) { t.skip(cudaInt8xUnavailable()); return; }
  if (typeof c.cudaInt8xRepack !== 'function') { t.skip('this addon has no cudaInt8xRepack'); return; }
  const rng = new Rng(43);
  for (const [out, inF] of [[40, 256], [37, 384], [300, 11008]]) {
    const p = quantizeRTN(new Float32Array(out * inF).map(() => 0.03 * rng.normal()), out, inF, { bits: 2, groupSize: 64 });
    const q = unpackCodes(p.qcodes, 2, out * inF);
    const dq = uploadPacked(cudaEngine()!, p), want = repackInt8x(q, out, inF), hw = c.cudaAlloc(want.byteLength);
    try {
      c.cudaMemset0(hw);
      c.cudaInt8xRepack(dq.desc, hw);
      const got = new Uint32Array(want.length), sz = new Uint32Array(out * (inF / 64));
      c.cudaDownload(hw, got);
      c.cudaDownload(dq.desc.sz!, sz);
      let bad = 0;
      for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) bad++;
      t.diagnostic(`${out}×${inF}: ${want.length} words, ${bad} differ`);
      assert.equal(bad, 0, `${out}×${inF}: device repack = repackInt8x`);
      assert.deepEqual([...sz], [...int8xScaleZero(p.scales!, p.zeros!)], `${out}×${inF}: desc.sz = int8xScaleZero`);
    } finally { c.cudaFree(hw); dq.free(); }
  }
});

test('int8xLoraA (the twin of the LoRA-A rows on the int8 x): = A·(a·x̂) exactly, and within the int8 rounding of A·x', () => {
  const rng = new Rng(47), R = 6, inF = 512;
  const A = bf16Values(new Float32Array(R * inF).map(() => 0.05 * rng.normal()));
  const x = new Float32Array(inF).map(() => rng.normal() * (rng.int(16) === 0 ? 8 : 1));
  const { xq, a } = int8X(x), t = int8xLoraA(A, R, inF, xq, a, 0.5);
  const deq = new Float64Array(R), exact = new Float64Array(R);
  for (let r = 0; r < R; r++) for (let i = 0; i < inF; i++) {
    deq[r] += 0.5 * A[r * inF + i] * a[Math.floor(i / 64)] * xq[i];
    exact[r] += 0.5 * A[r * inF + i] * x[i];
  }
  for (let r = 0; r < R; r++) assert.ok(Math.abs(t[r] - deq[r]) <= 1e-12 * (1 + Math.abs(deq[r])), `row ${r}: ${t[r]} vs ${deq[r]}`);
  const e = relErr(Float32Array.from(t), exact);
  assert.ok(e > 0 && e < 4e-2, `int8 rounding of x for the A rows: ${e}`);  // x has 8× outliers in 1 of 16 inputs
});

test('unrepackInt8x inverts repackInt8x (rows past the end dropped)', () => {
  const rng = new Rng(59);
  for (const [out, inF] of [[16, 128], [37, 384]]) {
    const q = Uint8Array.from({ length: out * inF }, () => rng.int(4));
    assert.deepEqual(unrepackInt8x(repackInt8x(q, out, inF), out, inF), q, `${out}×${inF}`);
  }
});

test('tileInt8xSz: a stage of the streamed GEMV (tile, blocks b0 … b0 + n) is one contiguous run of words holding exactly its 16 rows × 2n groups, and lanes g = 0..7 read rows g and g + 8 of a block on distinct banks', () => {
  const out = 48, inF = 384, ng = inF / 64, nblk = inF / 128;
  const sz = Uint32Array.from({ length: out * ng }, (_, i) => i * 7 + 1), tl = tileInt8xSz(sz, out, inF);
  assert.deepEqual([...tl].sort((a, b) => a - b), [...sz].sort((a, b) => a - b), 'a permutation');
  assert.deepEqual(untileInt8xSz(tl, out, inF), sz, 'untileInt8xSz inverts it');
  for (let tile = 0; tile < out / 16; tile++) {
    const run = tl.subarray(tile * nblk * 32 + 32, tile * nblk * 32 + 96);  // blocks 1 and 2 of the tile
    const want = new Set<number>();
    for (let row = 0; row < 16; row++) for (let g = 2; g < 6; g++) want.add(sz[(tile * 16 + row) * ng + g]);
    assert.deepEqual(new Set(run), want, `tile ${tile}: blocks 1–2 as one run`);
    for (let blk = 0; blk < nblk; blk++) for (let g = 0; g < 8; g++) {
      const at = (tile * nblk + blk) * 32 + 2 * g;  // the lane's uint2 for row g (+ 16 words: row g + 8)
      assert.equal(tl[at], sz[(tile * 16 + g) * ng + 2 * blk]);
      assert.equal(tl[at + 17], sz[(tile * 16 + g + 8) * ng + 2 * blk + 1]);
    }
  }
  const banks = Array.from({ length: 8 }, (_, g) => [(2 * g) % 32, (2 * g + 1) % 32]).flat();
  assert.equal(new Set(banks).size, 16, 'rows g = 0..7: 16 distinct banks');
  assert.throws(() => tileInt8xSz(sz, 40, inF), /% 16/);
});

// The chain on the GPU, and on the host emulator (test/helpers/host-engine.ts: the decoder tests' orchestration model),
// which checks this test's own references and arguments in CI.
type ChainEngine = NativeCudaInt8x & Pick<NativeCudaDecode, 'cudaDecodeAttn'>;
const CHAIN_ENGINES: { name: string; get(): ChainEngine | string }[] = [
  { name: 'CUDA', get: () => {
    const c = cudaInt8xOps(), d = cudaDecodeOps();
    return !c ? cudaInt8xUnavailable() : typeof c.cudaInt8xChainPlan !== 'function' || !d ? 'the addon has no cudaInt8xChainPlan' : c as ChainEngine;
  } },
  { name: 'host emulator', get: () => hostEngine() as unknown as ChainEngine },
];
for (const E of CHAIN_ENGINES) test(`${E.name}: int8-x chain (o → gate/up → down → q/k/v in one launch, and after the attention as its first phase): each phase = f64 on the previous phase\'s y (residual + RMSNorm, SwiGLU, scratch), with and without the adapters (t by value, 1–3 B·t segments); hout = hin + y bit for bit; the attention phase = cudaDecodeAttn (bit for bit at 8 warps, head dims 128 and 64, GQA); t left unset, counters zero; repeatable bit for bit; two layers in one launch = two launches bit for bit; 8 and 16 warps`, (t) => {
  const c = E.get();
  if (typeof c === 'string') { t.skip(c); return; }
  const rng = new Rng(67), eps = 1e-5, rB = 16, I = 4224;
  const hs: number[] = [];
  const up = (d: ArrayBufferView) => { const h = c.cudaAlloc(Math.max(16, d.byteLength)); c.cudaUpload(h, d); hs.push(h); return h; };
  const down = (h: number, n: number) => { const o = new Float32Array(n); c.cudaDownload(h, o); return o; };
  // phases: [in, out, segments] — o (scratch), gate/up (residual + RMSNorm), down (SwiGLU, 33 blocks of 128: 2 chunks),
  // the next q/k/v (residual + RMSNorm, 400 tiles: the ring wraps)
  const shapes = [[1024, 1024, 1], [1024, 2 * I, 2], [I, 1024, 1], [1024, 6400, 3]] as const;
  try {
    const ph = shapes.map(([inF, out, nseg]) => {
      const p = quantizeRTN(new Float32Array(out * inF).map(() => 0.03 * rng.normal()), out, inF, { bits: 2, groupSize: 64 });
      const q = unpackCodes(p.qcodes, 2, out * inF), W = dequantize(p), szw = int8xScaleZero(p.scales!, p.zeros!);
      const R = nseg * rB, A = bf16Values(new Float32Array(R * inF).map(() => 0.05 * rng.normal()));
      const step = Math.floor(out / (16 * nseg)) * 16, ends = Array.from({ length: nseg }, (_, i) => (i === nseg - 1 ? out : (i + 1) * step));
      const Bs = ends.map((e, i) => bf16Values(new Float32Array((e - (i ? ends[i - 1] : 0)) * rB).map(() => 0.1 * rng.normal())));
      const szT = up(tileInt8xSz(szw, out, inF));
      return { inF, out, W, A, R, ends, Bs, words: up(repackInt8x(q, out, inF)), szT, y: up(new Float32Array(out)),
        hA: up(f32ToBf16(A)), t: up(new Uint32Array(R).fill(0xffffffff)), hB: Bs.map((b) => up(f32ToBf16(b))) };
    });
    const x0 = new Float32Array(1024).map(() => rng.normal()), n0 = new Float32Array(1024).map(() => 0.5 + rng.next());
    const hx = up(x0), hn0 = up(n0), scr = up(new Uint8Array(int8xScratchBytes(1024)));
    const hin = new Float32Array(1024).map(() => rng.normal()), hA_ = up(hin), hB_ = up(new Float32Array(1024));
    const n1 = new Float32Array(1024).map(() => 0.5 + rng.next()), n3 = new Float32Array(1024).map(() => 0.5 + rng.next());
    const hn1 = up(n1), hn3 = up(n3), sync = up(new Uint32Array(8));
    // one launch of the phases (a plan made and freed; the attentions at position pos with the RoPE rows of rope)
    const launch = (phases: Int8xChainPhase[], ks: number, rope: { cos: number; sin: number } | null) => {
      const id = c.cudaInt8xChainPlan!(phases, ks, pos + 1);
      try { c.cudaInt8xChainRun!(id, true, sync, pos, rope?.cos ?? null, rope?.sin ?? null); } finally { c.cudaInt8xChainFree!(id); }
    };
    // the attention phase: o's x̂ (1024 inputs) from Hq heads of hd at position pos over a cache of random rows; the
    // caches are re-uploaded before each run, since the attention writes row pos
    const pos = 37, attnShapes = [{ Hq: 8, Hkv: 2, hd: 128 }, { Hq: 16, Hkv: 4, hd: 64 }];
    const attnBufs = attnShapes.map(({ Hq, Hkv, hd }) => {
      const KV = Hkv * hd, ang = Float32Array.from({ length: hd / 2 }, (_, i) => pos * 10000 ** (-2 * i / hd));
      const kc0 = f32ToBf16(new Float32Array((pos + 1) * KV).map(() => rng.normal())), vc0 = f32ToBf16(new Float32Array((pos + 1) * KV).map(() => rng.normal()));
      return { Hq, Hkv, hd, kc0, vc0, q: up(new Float32Array(Hq * hd).map(() => rng.normal())), k: up(new Float32Array(KV).map(() => rng.normal())),
        v: up(new Float32Array(KV).map(() => rng.normal())), cos: up(ang.map(Math.cos)), sin: up(ang.map(Math.sin)),
        kc: up(kc0), vc: up(vc0), kcR: up(kc0), vcR: up(vc0), xs: up(new Uint8Array(int8xScratchBytes(1024))), xsR: up(new Uint8Array(int8xScratchBytes(1024))) };
    });
    // the chain's phase objects: GEMV phase k (with its adapter), and an attention
    const gemvPhase = (k: number, mode: 0 | 1 | 2, more: object): Int8xChainGemvPhase => {
      const P = ph[k];
      return { words: P.words, sz: P.szT, y: P.y, out: P.out, in: P.inF, mode, ...more };
    };
    const withAdapter = (k: number, mode: 0 | 1 | 2, more: object): Int8xChainGemvPhase => {
      const P = ph[k];
      return { ...gemvPhase(k, mode, more), A: P.hA, R: P.R, t: P.t, r: rB, ...Object.fromEntries(P.hB.flatMap((b, i) => [[`b${i}`, b], [`e${i}`, P.ends[i]]])) };
    };
    const attnOf = (a: typeof attnBufs[number]): Int8xChainAttnPhase => ({ mode: 3, q: a.q, k: a.k, v: a.v, kc: a.kc, vc: a.vc, Hq: a.Hq, Hkv: a.Hkv, hd: a.hd, xs: a.xs });
    // x = a·x̂ of an int8-x scratch of n inputs
    const xhat = (h: number, n: number) => {
      const b = new Uint8Array(int8xScratchBytes(n)); c.cudaDownload(h, b);
      const q = new Int8Array(b.buffer, 0, n), a = new Float32Array(b.buffer, n, n / 64);
      return Float32Array.from(q, (v, i) => v * a[i >> 6]);
    };
    // the f64 reference of y = Ŵ·x̃ (x̃ rounded to int8 per 64, · 1/rms) + B·t, t = A·x̃
    const gemvRef = (P: typeof ph[number], xt: Float32Array, rstd: number, adapter: boolean) => {
      const { xq, a } = int8X(xt), ref = new Float64Array(P.out), tRef = int8xLoraA(P.A, P.R, P.inF, xq, a, rstd);
      for (let o = 0; o < P.out; o++) {
        let acc = 0;
        for (let i = 0; i < P.inF; i++) acc += P.W[o * P.inF + i] * a[i >> 6] * xq[i];
        ref[o] = acc * rstd;
        if (!adapter) continue;
        const s = P.ends.findIndex((e) => o < e), row = o - (s ? P.ends[s - 1] : 0);
        for (let j = 0; j < rB; j++) ref[o] += P.Bs[s][row * rB + j] * tRef[s * rB + j];
      }
      return ref;
    };
    // the checks of one launch's phases: each y = f64 on the previous phase's y (phase 0: the prep's x̃ and 1/rms, or the
    // attention's x̂), the residuals bit for bit, the counters zero and every t unset again; returns the ys
    const check = (label: string, ks: number, adapter: boolean, at: typeof attnBufs[number] | null): Float32Array[] => {
      const ys = ph.map((P) => down(P.y, P.out)), hB1 = down(hB_, 1024), hA1 = down(hA_, 1024);
      // phase 0: the prep's x̃ and 1/rms, or the attention's x̂; phases 1 and 3: the residual of the phase before; phase 2:
      // SwiGLU of gate/up
      const p0 = int8xPrepInput(x0, { normW: n0 });
      const refs = [at ? gemvRef(ph[0], xhat(at.xs, 1024), 1, adapter) : gemvRef(ph[0], p0.xt, 1 / Math.sqrt(p0.ss / 1024 + eps), adapter)];
      if (at) {  // the attention phase = the attention's own launch: bit for bit with its 8 warps a head, else to the merge order
        const mine = new Uint8Array(int8xScratchBytes(1024)), ref = new Uint8Array(int8xScratchBytes(1024));
        c.cudaDownload(at.xs, mine); c.cudaDownload(at.xsR, ref);
        const e = relErr(xhat(at.xs, 1024), xhat(at.xsR, 1024));
        t.diagnostic(`${label}: attention x̂ vs cudaDecodeAttn ${e.toExponential(2)}`);
        if (ks === 8) assert.deepEqual(mine, ref, 'the attention phase at 8 warps = cudaDecodeAttn bit for bit');
        // 16 partials merged instead of 8: a bf16 rounding may flip, and with a group's absmax its scale (~1e-3 of the
        // vector); 5e-3 leaves room for a few such groups
        else assert.ok(e < 5e-3, `the attention phase at 16 warps vs cudaDecodeAttn ${e}`);
        const KV = at.Hkv * at.hd, rows = (h: number) => { const b = new Uint16Array((pos + 1) * KV); c.cudaDownload(h, b); return b; };
        assert.deepEqual(rows(at.kc), rows(at.kcR), 'the cache rows (k) as cudaDecodeAttn writes them');
        assert.deepEqual(rows(at.vc), rows(at.vcR), 'the cache rows (v) as cudaDecodeAttn writes them');
        assert.ok(rows(at.kc).subarray(pos * KV).some((v, i) => v !== at.kc0[pos * KV + i]), 'row pos written');
      }
      const v1 = Float32Array.from(hin, (h, i) => h + ys[0][i]);
      assert.deepEqual(new Uint32Array(hB1.buffer), new Uint32Array(v1.buffer), 'phase 1: hout = hin + y of phase 0, bit for bit');
      const r1 = int8xPrepInput(hin, { addY: ys[0], normW: n1 });
      refs.push(gemvRef(ph[1], r1.xt, 1 / Math.sqrt(r1.ss / 1024 + eps), adapter));
      refs.push(gemvRef(ph[2], int8xPrepInput(ys[1].slice(0, I), { x2: ys[1].slice(I) }).xt, 1, adapter));
      const r3 = int8xPrepInput(v1, { addY: ys[2], normW: n3 });
      assert.deepEqual(new Uint32Array(hA1.buffer), new Uint32Array(r3.xOut.buffer), 'phase 3: hout = its hin + y of phase 2, bit for bit');
      refs.push(gemvRef(ph[3], r3.xt, 1 / Math.sqrt(r3.ss / 1024 + eps), adapter));
      const errs = ys.map((y, k) => relErr(y, refs[k]));
      t.diagnostic(`${label}: y vs f64 per phase ${errs.map((e) => e.toExponential(2)).join(' / ')}`);
      errs.forEach((e, k) => assert.ok(e < (k === 2 ? 1e-4 : 1e-5), `phase ${k}: y vs f64 ${e}`));
      assert.deepEqual([...new Uint32Array(down(sync, 2).buffer)], [0, 0], 'the chain leaves its counters at zero');
      if (adapter) for (const P of ph) assert.ok(new Uint32Array(down(P.t, P.R).buffer).every((v) => v === 0xffffffff), 'every t unset again');
      return ys;
    };
    for (const at of [null, ...attnBufs]) for (const adapter of [true, false]) for (const ks of [16, 8]) {
      if (at) {  // the caches as before; cudaDecodeAttn (8 warps a head) on its own copies: the attention phase's reference
        for (const [h, d] of [[at.kc, at.kc0], [at.vc, at.vc0], [at.kcR, at.kc0], [at.vcR, at.vc0]] as const) c.cudaUpload(h, d);
        c.cudaDecodeAttn(at.q, at.k, at.v, at.cos, at.sin, at.kcR, at.vcR, pos, at.Hq, at.Hkv, at.hd, null, null, null, null, null, null, null, 0, at.xsR);
      } else c.cudaInt8xPrep(hx, null, hn0, scr, 1024, null, 0, false);
      const phase = (k: number, mode: 0 | 1 | 2, more: object) => (adapter ? withAdapter(k, mode, more) : gemvPhase(k, mode, more));
      const attnPhase = at ? [attnOf(at)] : [];
      const phases = [...attnPhase, phase(0, 0, at ? { xs: at.xs, npart: 0 } : { xs: scr, npart: 2, eps }), phase(1, 1, { hin: hA_, yin: ph[0].y, hout: hB_, normW: hn1, eps }),
        phase(2, 2, { yin: ph[1].y }), phase(3, 1, { hin: hB_, yin: ph[2].y, hout: hA_, normW: hn3, eps })];
      const label = `chain${at ? ` after the attention (${at.Hq} heads of ${at.hd}, ${at.Hkv} KV heads)` : ''}, ${ks} warps${adapter ? `, adapters (rank ${rB})` : ''}`;
      c.cudaUpload(hA_, hin);
      launch(phases, ks, at);
      const ys = check(label, ks, adapter, at);
      // again from the same inputs: the same bits
      c.cudaUpload(hA_, hin);
      if (at) for (const [h, d] of [[at.kc, at.kc0], [at.vc, at.vc0]] as const) c.cudaUpload(h, d);
      launch(phases, ks, at);
      ph.forEach((P, k) => assert.deepEqual(new Uint32Array(down(P.y, P.out).buffer), new Uint32Array(ys[k].buffer), `phase ${k}: a second chain repeats bit for bit`));
    }
    // x̂ by prep phases (mode 4: the next phase's x̂ made once for the grid, a warp a group, its Σv² a partial per group):
    // the same checks, so each prep = cudaInt8xPrep's x̃ and the residuals bit for bit
    const scrD = up(new Uint8Array(int8xScratchBytes(1024))), scrI = up(new Uint8Array(int8xScratchBytes(I)));
    for (const ks of [16, 8]) {
      c.cudaInt8xPrep(hx, null, hn0, scr, 1024, null, 0, false);
      const phases: Int8xChainPhase[] = [withAdapter(0, 0, { xs: scr, npart: 2, eps }),
        { mode: 4, in: 1024, xs: scrD, hin: hA_, yin: ph[0].y, hout: hB_, normW: hn1 }, withAdapter(1, 0, { xs: scrD, npart: 16, eps }),
        { mode: 4, in: I, xs: scrI, yin: ph[1].y }, withAdapter(2, 0, { xs: scrI, npart: 0 }),
        { mode: 4, in: 1024, xs: scrD, hin: hB_, yin: ph[2].y, hout: hA_, normW: hn3 }, withAdapter(3, 0, { xs: scrD, npart: 16, eps })];
      c.cudaUpload(hA_, hin);
      launch(phases, ks, null);
      check(`chain with prep phases, ${ks} warps, adapters (rank ${rB})`, ks, true, null);
    }
    const prepOf = { mode: 4 as const, in: 1024, xs: scrD, hin: hA_, yin: ph[0].y, hout: hB_, normW: hn1 };
    assert.throws(() => c.cudaInt8xChainFree!(c.cudaInt8xChainPlan!([gemvPhase(0, 0, { xs: scr, npart: 2, eps }), prepOf, gemvPhase(1, 0, { xs: scrD, npart: 2, eps })], 16, pos + 1)), /prep phase/);
    assert.throws(() => c.cudaInt8xChainFree!(c.cudaInt8xChainPlan!([gemvPhase(0, 0, { xs: scr, npart: 2, eps }), prepOf, gemvPhase(1, 1, { hin: hA_, yin: ph[0].y, hout: hB_, normW: hn1, eps })], 16, pos + 1)), /prep phase/);
    // a token in one launch: two layers' phases (attention → o → gate/up → down → q/k/v → attention → o → gate/up → down,
    // the residual alternating as the decoder's does) = the same two layers as two launches, bit for bit; with the
    // table in shared memory (a short plan's) and in global memory (a long plan's, each record copied at its phase)
    for (const ks of [16, 8]) for (const tab of ['shared', 'global']) {
      const at = attnBufs[0], layer = (last: boolean): Int8xChainPhase[] => [attnOf(at), withAdapter(0, 0, { xs: at.xs, npart: 0 }),
        withAdapter(1, 1, { hin: hA_, yin: ph[0].y, hout: hB_, normW: hn1, eps }), withAdapter(2, 2, { yin: ph[1].y }),
        ...(last ? [] : [withAdapter(3, 1, { hin: hB_, yin: ph[2].y, hout: hA_, normW: hn3, eps })])];
      const cache = (pos + 1) * at.Hkv * at.hd * 2;
      const state = () => ([...ph.map((P) => [P.y, 4 * P.out]), [hA_, 4096], [hB_, 4096], [at.xs, int8xScratchBytes(1024)], [at.kc, cache], [at.vc, cache]] as const)
        .map(([h, n]) => { const b = new Uint8Array(n); c.cudaDownload(h, b); return b; });
      const fresh = () => { c.cudaUpload(hA_, hin); c.cudaUpload(at.kc, at.kc0); c.cudaUpload(at.vc, at.vc0); };
      fresh();
      if (tab === 'global') process.env.LOWBIT_INT8X_CHAIN_TAB = 'global';
      try { launch([...layer(false), ...layer(true)], ks, at); } finally { delete process.env.LOWBIT_INT8X_CHAIN_TAB; }
      const one = state();
      assert.deepEqual([...new Uint32Array(down(sync, 2).buffer)], [0, 0], 'the token chain leaves its counters at zero');
      for (const P of ph) assert.ok(new Uint32Array(down(P.t, P.R).buffer).every((v) => v === 0xffffffff), 'the token chain leaves every t unset');
      fresh();
      launch(layer(false), ks, at);
      launch(layer(true), ks, at);
      const two = state();
      one.forEach((b, i) => assert.deepEqual(b, two[i], `buffer ${i}: one launch of two layers = two launches, bit for bit (${ks} warps, table in ${tab} memory)`));
      t.diagnostic(`two layers in one launch (9 phases, ${ks} warps, table in ${tab} memory) = two launches bit for bit`);
    }
    const h = hs[0], plan = (phases: Int8xChainPhase[]) => c.cudaInt8xChainFree!(c.cudaInt8xChainPlan!(phases, 16, pos + 1));
    assert.throws(() => plan([{ words: h, sz: h, y: h, out: 32, in: 128, mode: 1 }]), /scratch|mode 1/);
    assert.throws(() => plan([]), /1 to 4096 phases/);
    const a0 = attnBufs[0], aPh = attnOf(a0), o0 = { words: ph[0].words, sz: ph[0].szT, y: ph[0].y, out: ph[0].out, in: 1024 };
    assert.throws(() => plan([aPh, { ...o0, mode: 0, xs: scr }]), /output \(xs\)/);
    assert.throws(() => plan([aPh]), /output \(xs\)/);
    assert.throws(() => plan([{ ...aPh, hd: 32, Hq: 32 }, { ...o0, mode: 0, xs: a0.xs }]), /head dims/);
    // block 0 unsets a phase's t as the next phase's blocks store theirs: adjacent phases may not share t
    assert.throws(() => plan([withAdapter(0, 0, { xs: scr, npart: 2, eps }), { ...withAdapter(2, 2, { yin: ph[1].y }), t: ph[0].t }]), /share t/);
    const id = c.cudaInt8xChainPlan!([aPh, { ...o0, mode: 0, xs: a0.xs }], 16, pos + 1);
    try {
      assert.throws(() => c.cudaInt8xChainRun!(id, true, sync, pos + 1, a0.cos, a0.sin), /position/);
      assert.throws(() => c.cudaInt8xChainRun!(id, true, sync, pos, null, null), /position|RoPE/);
    } finally { c.cudaInt8xChainFree!(id); }
    assert.throws(() => c.cudaInt8xChainRun!(id, true, sync, pos, a0.cos, a0.sin), /not a live/);
  } finally { for (const h of hs) c.cudaFree(h); }
});
