// The prototype int8-x decode GEMV (native/cuda/int8x_gemv.cu) and its TypeScript twins: x as symmetric int8 per group of
// 64 inputs, the 2-bit codes repacked so that one lop3 mask per register gives mma.m16n8k32.u8.s8 the operand of one
// slot (4^j·q), each slot's 32 k values inside one scale group (docs/cuda.md, "An int8 operand for x").
import { f16BitsToF32, f32ToF16Bits } from '../io/halfs.js';
import { kernelFamily } from './cuda-family.js';
import type { NativeCuda } from './native.js';
import type { QuantDesc } from './cuda.js';

export interface NativeCudaInt8x extends NativeCuda {
  /** dst (≥ ⌈out/16⌉·16·in/4 bytes) = repackInt8x of the desc's 'int' 2-bit codes (no gIdx, in % 128 == 0); its desc.sz
   * words are already the GEMV's scale|zero words (int8xScaleZero). Optional: older addons lack it. */
  cudaInt8xRepack?(desc: QuantDesc, dst: number): void;
  /** dst = tileInt8xSz of the scale|zero words sz [out, in/64] (out % 16 == 0, in % 128 == 0): the layout the streamed GEMV
   * (parts & 512) reads. Optional: older addons lack it. */
  cudaInt8xTileSz?(sz: number, dst: number, out: number, inF: number): void;
  /** y[out] (f32) = the GEMV of repacked words (repackInt8x) with scale|zero words (int8xScaleZero) and x (f32 [in]) rounded
   * to int8 per 64 inputs in scratch (≥ int8xScratchBytes(in)); ksplit warps per 16-row tile. parts (benchmarks, default 7): a
   * mask of 1 = quantize x into scratch, 2 = zero y, 4 = the GEMV (accumulating into y), 8 = launch it with PDL, 16 = two
   * blocks (words, scale|zero words, x̂) in flight per warp instead of one, 32 = x̂, a and Σx̂ staged in shared memory,
   * 64 = a block per 16-row tile, its K slices added in a fixed order and y stored (deterministic; y needs no zeroing;
   * ksplit ≤ 16), 512 (with 64) = the streamed kernel: a block per SM owns a run of tiles, their codes, scale|zero
   * rows and B rows copied by the bulk-copy engine through a ring issued before the PDL wait; ksplit = warps a block (4,
   * 8, 16), the same bits as 64 with that split K; out % 16 == 0, and sz tile-blocked (tileInt8xSz / cudaInt8xTileSz);
   * 1024 (with 64, ksplit a power of two) = 4 LoRA-A rows a block, each by ksplit / 4 warps, instead of a block a row;
   * 2048 (with 512, Bs and 256) = t published by value: the A rows store t with no count, and each tile's B·t spins on
   * the t values until none is 0xffffffff (the unset mark an earlier launch wrote: cudaInt8xPrep's unsetT);
   * x is read only with 1 (else null: x̂ is already in scratch, e.g. from cudaInt8xPrep). normEps: scratch came from cudaInt8xPrep with normW, and the row sums are scaled by RMSNorm's 1/rms (from the prep's Σx²
   * partials). A (bf16 [R, in], a handle or view 16-byte aligned) and t (f32 [R]): the same launch also writes
   * t = A·x̃ on x's int8 image, a block of 4 warps per row (the adapter's LoRA-A factor; twin int8xLoraA). Bs, ends, r,
   * sync (parts & 64 and A only): the same launch adds the adapters' B·t to y — rows below ends[i] (and from the previous
   * end) with Bs[i] (bf16 [its rows, r], scaled) and t[i·r … (i+1)·r) — the projections concatenated in the launch (1–3,
   * 16-row aligned); sync: 8 bytes zeroed once (the A-row blocks count there; each launch leaves it zero; with parts &
   * 256 an earlier launch zeroes it before each launch, e.g. the prep's y/nzero, so no tile block waits on a reset). 128: scratch's
   * Σx² partials are per group of 64 (a folded prep wrote them) instead of per prep block. fScratch … fCnt (64 only): the
   * same launch makes the NEXT GEMV's input in fScratch, replacing the prep launch between them (twin int8xPrepInput):
   * residual, fX += y and x̃ = fX·fNormW (fNormW null: fX) with per-group Σx² partials; or fHalf = I (out = 2I),
   * x̃ = silu(y[0, I))·y[I, 2I); fCnt: (inputs / 64) u32 counters zeroed once (each launch leaves them zero). */
  cudaInt8xGemv(words: number, sz: number, x: number | null, scratch: number, y: number, out: number, inF: number,
    ksplit: number, parts?: number, normEps?: number | null, A?: number | null, R?: number, t?: number | null,
    Bs?: number[] | null, ends?: number[] | null, r?: number, sync?: number | null,
    fScratch?: number | null, fX?: number | null, fNormW?: number | null, fHalf?: number, fCnt?: number | null): void;
  /** Streamed int8-x GEMVs in ONE launch with a grid barrier between them (native/cuda/int8x_stream.cu, the chain): one
   * ring of bulk copies across the phases, so a block waiting at a barrier already holds the next phase's first
   * weights; each block makes a phase's x̂ itself (mode 1: v = hin + yin, block 0 writes v to hout, x̃ = v·normW with
   * 1/rms from Σv² in the block; mode 2: x̃ = silu(yin[i])·yin[in + i]; mode 0, a GEMV phase first or after an attention:
   * the scratch xs of a prep or that attention, npart Σx² partials). sz tile-blocked; y stored. With an adapter (A, R, t,
   * r, b0..b2, e0..e2: Int8xGemv's B·t segments) t is published by value: every t must hold 0xffffffff at the launch's
   * start, and the chain leaves them so. An attention phase (mode 3: cudaDecodeAttn's fields, its int8-x output xs the
   * next phase's mode-0 input; a block per query head while the ring streams the next phase's weights) makes a layer,
   * or a whole token, one launch. The phases go to the device once: a plan of ksplit (8 or 16) warps a block whose
   * attention caches hold `positions` rows (an id); a prep phase (mode 4) makes the next phase's x̂ once for the grid;
   * cudaInt8xChainRun launches it (sync: INT8X_CHAIN_SYNC_WORDS u32
   * counters, zero, left zero; the attentions at position pos with the RoPE rows cos/sin f32 [hd/2]). */
  cudaInt8xChainPlan?(phases: Int8xChainPhase[], ksplit: number, positions: number): number;
  cudaInt8xChainRun?(plan: number, pdl: boolean, sync: number, pos?: number, cos?: number | null, sin?: number | null): void;
  cudaInt8xChainFree?(plan: number): void;
  /** The GEMV's input into scratch: the element v = x (bf16 with xBf16) + addY + B1·t1 (B1 bf16 [in, r], t1 f32 [r]; the
   * residual stream after the previous GEMV and its LoRA B·t, written to xOut when given), then x̃ = v, v·normW (RMSNorm; 1/rms
   * left to the GEMV) or silu(v)·(x2 + B2·t2) (SwiGLU with the up projection's B·t), quantized per 64 inputs (twins
   * int8xPrepInput + int8X), then nzero floats of y zeroed (the consumer's split-K output; unsetT: set to the bits
   * 0xffffffff instead, the "t not yet stored" mark of the GEMVs with parts & 2048); pdl: launched with PDL. */
  cudaInt8xPrep(x: number, x2: number | null, normW: number | null, scratch: number, inF: number, y: number | null, nzero: number,
    pdl?: boolean, addY?: number | null, B1?: number | null, t1?: number | null, B2?: number | null, t2?: number | null, r?: number,
    xOut?: number | null, xBf16?: boolean, unsetT?: boolean): void;
}

/** A GEMV phase of a chain (cudaInt8xChainPlan; handles; b0..b2 / e0..e2: the B·t segments' B and row ends). */
export interface Int8xChainGemvPhase {
  words: number; sz: number; y: number; out: number; in: number; mode: 0 | 1 | 2;
  xs?: number | null; npart?: number; eps?: number; hin?: number | null; hout?: number | null; yin?: number | null; normW?: number | null;
  A?: number | null; R?: number; t?: number | null; r?: number;
  b0?: number | null; b1?: number | null; b2?: number | null; e0?: number; e1?: number; e2?: number;
}
/** A chain's attention phase: cudaDecodeAttn's q, k, v (f32), caches kc, vc, heads and head dim (the position and the
 * RoPE rows come with each run), its output quantized into xs (int8xScratchBytes(Hq·hd)), which the next phase reads
 * (mode 0). */
export interface Int8xChainAttnPhase {
  mode: 3; q: number; k: number; v: number; kc: number; vc: number; Hq: number; Hkv: number; hd: number; xs: number;
}
/** A chain's prep phase: the next phase's x̂ made once for the grid into xs (int8xScratchBytes(in)), a warp a group, as
 * cudaInt8xPrep makes it: with normW the residual v = hin + yin (written to hout) and x̃ = v·normW with a Σv² partial
 * per group (the next phase: mode 0, npart = in / 64, eps), else SwiGLU x̃ = silu(yin[i])·yin[in + i] (npart 0). The
 * next phase then copies x̂ (≤ 12.4 KB at 7B) instead of making it from 48–88 KB of y in every block. */
export interface Int8xChainPrepPhase {
  mode: 4; in: number; xs: number; yin: number; hin?: number | null; hout?: number | null; normW?: number | null;
}
export type Int8xChainPhase = Int8xChainGemvPhase | Int8xChainAttnPhase | Int8xChainPrepPhase;

/** u32 counters a chain launch needs (zero; it leaves them zero): the blocks' arrivals at the barriers and the blocks out. */
export const INT8X_CHAIN_SYNC_WORDS = 2;

/** The bits of a t value not yet stored (parts & 2048; a NaN no A row stores: native kTUnset). */
export const INT8X_T_UNSET = 0xffffffff;

/** Bytes of an int8-x scratch for in inputs: x̂ (int8) | a (f32 per 64) | Σx̂ (i32 per 64) | Σx² partials (f32 per 64: a
 * folded prep writes one per group, the prep launch one per block of 8 groups). */
export function int8xScratchBytes(inF: number): number {
  const ng = inF / 64;
  return inF + ng * 12;
}

const family = kernelFamily<NativeCudaInt8x>('int8-x GEMV prototype', ['cudaInt8xGemv', 'cudaInt8xPrep']);
export function cudaInt8xOps(): NativeCudaInt8x | null { return family.get(); }
export function cudaInt8xUnavailable(): string { return family.unavailable(); }

/** The input a word's slot j, byte b holds for lane t and k-half kh of 128-input block blk (slot j: 32 consecutive
 * inputs, so slots 0–1 are group 2·blk and slots 2–3 group 2·blk + 1). */
export function int8xInputOf(blk: number, j: number, kh: number, t: number, b: number): number {
  return 128 * blk + 32 * j + 16 * kh + 4 * t + b;
}

/** Repack 2-bit codes q[out, in] (one per byte, 0..3): per 16-row tile, 128-input block and lane (g = lane/4, t = lane%4)
 * four words [row g kh 0, row g+8 kh 0, row g kh 1, row g+8 kh 1] = the lane's a0..a3; rows past the end repeat the last. */
export function repackInt8x(q: Uint8Array, out: number, inF: number): Uint32Array {
  if (inF % 128 !== 0) throw new Error(`repackInt8x: in ${inF} is not a multiple of 128`);
  const tiles = Math.ceil(out / 16), nblk = inF / 128, words = new Uint32Array(tiles * nblk * 32 * 4);
  for (let tile = 0; tile < tiles; tile++) for (let blk = 0; blk < nblk; blk++) for (let lane = 0; lane < 32; lane++) {
    const g = lane >> 2, t = lane & 3;
    for (let r = 0; r < 4; r++) {
      const row = Math.min(tile * 16 + g + 8 * (r & 1), out - 1), kh = r >> 1;
      let w = 0;
      for (let j = 0; j < 4; j++) for (let b = 0; b < 4; b++) w |= q[row * inF + int8xInputOf(blk, j, kh, t, b)] << (8 * b + 2 * j);
      words[((tile * nblk + blk) * 32 + lane) * 4 + r] = w >>> 0;
    }
  }
  return words;
}

/** The inverse of repackInt8x: the codes q[out, in] (one per byte) that the words hold (the host emulator reads the GEMV's
 * operand back this way). */
export function unrepackInt8x(words: Uint32Array, out: number, inF: number): Uint8Array {
  const nblk = inF / 128, q = new Uint8Array(out * inF);
  for (let tile = 0; tile < Math.ceil(out / 16); tile++) for (let blk = 0; blk < nblk; blk++) for (let lane = 0; lane < 32; lane++) {
    const g = lane >> 2, t = lane & 3;
    for (let r = 0; r < 4; r++) {
      const row = tile * 16 + g + 8 * (r & 1), kh = r >> 1, w = words[((tile * nblk + blk) * 32 + lane) * 4 + r];
      if (row >= out) continue;
      for (let j = 0; j < 4; j++) for (let b = 0; b < 4; b++) q[row * inF + int8xInputOf(blk, j, kh, t, b)] = (w >>> (8 * b + 2 * j)) & 3;
    }
  }
  return q;
}

/** The scale|zero words [out, in/64] tile-blocked for the streamed GEMV: [tile][block of 128 inputs][row 0..15][2 groups],
 * so a tile's words for a run of blocks are one contiguous copy, and lanes g = 0..7 read rows g and g + 8 on distinct
 * banks (out % 16 == 0). */
export function tileInt8xSz(sz: Uint32Array, out: number, inF: number): Uint32Array {
  return moveInt8xSz(sz, out, inF, true);
}

/** The inverse of tileInt8xSz: [out, in/64] again (the host emulator reads the streamed GEMV's words back this way). */
export function untileInt8xSz(tiled: Uint32Array, out: number, inF: number): Uint32Array {
  return moveInt8xSz(tiled, out, inF, false);
}

function moveInt8xSz(src: Uint32Array, out: number, inF: number, toTiles: boolean): Uint32Array {
  if (out % 16 !== 0 || inF % 128 !== 0) throw new Error(`tileInt8xSz: out ${out} % 16 and in ${inF} % 128 must be 0`);
  const ng = inF / 64, nblk = inF / 128, dst = new Uint32Array(out * ng);
  for (let tile = 0; tile < out / 16; tile++) for (let blk = 0; blk < nblk; blk++) for (let row = 0; row < 16; row++) for (let h = 0; h < 2; h++) {
    const tiled = ((tile * nblk + blk) * 16 + row) * 2 + h, rowMajor = (tile * 16 + row) * ng + 2 * blk + h;
    if (toTiles) dst[tiled] = src[rowMajor];
    else dst[rowMajor] = src[tiled];
  }
  return dst;
}

/** Kernel 5's scale|zero words [out, in/64]: f16 scale in the low half, f16 zero in the high half. The integer formats'
 * scales and zeros are f16 values already, so the words hold them exactly (a value that is not throws). */
export function int8xScaleZero(scales: Float32Array, zeros: Float32Array): Uint32Array {
  const w = new Uint32Array(scales.length);
  for (let i = 0; i < w.length; i++) {
    const s = f32ToF16Bits(scales[i]), z = f32ToF16Bits(zeros[i]);
    if (f16BitsToF32(s) !== scales[i] || f16BitsToF32(z) !== zeros[i]) throw new Error(`int8xScaleZero: scale/zero ${i} is not an f16 value`);
    w[i] = (s | (z << 16)) >>> 0;
  }
  return w;
}

/** x → x̂ = round-half-even(x / a) with a = absmax / 127 per 64 inputs (1 for an all-zero group), and Σx̂ per group
 * (the twin of int8x_quant_kernel: f32 division, __float2int_rn). */
export function int8X(x: Float32Array): { xq: Int8Array; a: Float32Array; sum: Int32Array } {
  const ng = x.length / 64, xq = new Int8Array(x.length), a = new Float32Array(ng), sum = new Int32Array(ng);
  const rne = (v: number) => { const f = Math.floor(v), d = v - f; return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f; };
  for (let gi = 0; gi < ng; gi++) {
    let m = 0;
    for (let i = 0; i < 64; i++) m = Math.max(m, Math.abs(x[64 * gi + i]));
    a[gi] = m > 0 ? Math.fround(m / 127) : 1;
    for (let i = 0; i < 64; i++) { xq[64 * gi + i] = rne(Math.fround(x[64 * gi + i] / a[gi])); sum[gi] += xq[64 * gi + i]; }
  }
  return { xq, a, sum };
}

/** The LoRA hand-offs cudaInt8xPrep adds: B bf16 values [in, r] (as f32) times t [r], per element. */
export interface Int8xPrepBt { B: Float32Array; t: Float32Array; r: number }

/**
 * x̃ of cudaInt8xPrep (f64 sums, f32 results; the twin up to fmaf's and expf's last bits): v = x + addY + B1·t1 (also
 * returned as xOut), then v·normW, silu(v)·(x2 + B2·t2) or v; ss = Σv² when normW.
 */
export function int8xPrepInput(x: Float32Array, opts: { x2?: Float32Array; normW?: Float32Array; addY?: Float32Array; bt1?: Int8xPrepBt; bt2?: Int8xPrepBt } = {}):
  { xt: Float32Array; ss: number; xOut: Float32Array } {
  const n = x.length, xt = new Float32Array(n), xOut = new Float32Array(n);
  const bt = (b: Int8xPrepBt, i: number) => { let acc = 0; for (let k = 0; k < b.r; k++) acc += b.B[i * b.r + k] * b.t[k]; return acc; };
  let ss = 0;
  for (let i = 0; i < n; i++) {
    const v = Math.fround(x[i] + (opts.addY ? opts.addY[i] : 0) + (opts.bt1 ? bt(opts.bt1, i) : 0));
    xOut[i] = v;
    if (opts.normW) { ss += v * v; xt[i] = Math.fround(v * opts.normW[i]); }
    else if (opts.x2) {
      const u = Math.fround(opts.x2[i] + (opts.bt2 ? bt(opts.bt2, i) : 0));
      xt[i] = Math.fround(Math.fround(v / Math.fround(1 + Math.fround(Math.exp(-v)))) * u);
    } else xt[i] = v;
  }
  return { xt, ss, xOut };
}

/** t[R] of cudaInt8xGemv's LoRA-A rows in f64: Σ_g a_g Σ_{i∈g} A[r, i]·x̂_i, times rstd (RMSNorm's 1/rms, else 1). A holds
 * bf16 values (f32 [R, in]); xq, a as int8X returns them. */
export function int8xLoraA(A: Float32Array, R: number, inF: number, xq: Int8Array, a: Float32Array, rstd = 1): Float64Array {
  const t = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let acc = 0;
    for (let g = 0; g < inF / 64; g++) {
      let p = 0;
      for (let i = 64 * g; i < 64 * g + 64; i++) p += A[r * inF + i] * xq[i];
      acc += a[g] * p;
    }
    t[r] = acc * rstd;
  }
  return t;
}
