// Typed access to the batch-1 decode kernels (native/cuda/decode.cu, bindings in cuda_napi.cc): the v4 GEMV that
// runs several projections (packed 2-bit codes on tensor cores, dense bf16 rows on CUDA cores) and the RMSNorm in
// front of them in ONE launch, and the epilogues that finish a layer's projections (LoRA B·t, RoPE, KV-cache rows,
// residual add, SwiGLU). TypeScript twins: test/helpers/host-engine.ts (emulator), test/cuda-decode-model.test.ts.
import type { NativeCuda } from './native.js';
import { kernelFamily } from './cuda-family.js';
import type { QuantDesc } from './cuda.js';

/** One run of output rows of cudaDecodeGemv: packed (desc + its repacked codes) or dense bf16 [rows, in]. */
export type DecodeSeg =
  | ({ desc: QuantDesc; codes4: number; y: number; acc?: number } & DecodeLora)
  | ({ w: number; rows: number; y: number; acc?: number } & DecodeLora);

/**
 * A LoRA folded into the launch (kernel 5 only): y += B·t with B bf16 [rows, r] (already scaled by the adapter's s)
 * and t = the y of segment `tseg` of the same launch (a dense segment of r rows: the adapter's A, computed first).
 */
export interface DecodeLora { B?: number; r?: number; tseg?: number }

/** A device range to prefetch into L2 (a buffer handle and the leading bytes of it). */
export interface DecodePrefetch { buf: number; bytes: number }

/** The x-independent bytes a launch reads (its weights): packed codes + scale|zero words, dense rows, LoRA B. */
export function decodeSegRanges(segs: DecodeSeg[], inF: number): DecodePrefetch[] {
  const out: DecodePrefetch[] = [];
  const add = (buf: number | undefined, bytes: number) => { const b = Math.floor(bytes / 16) * 16; if (buf && b > 0) out.push({ buf, bytes: b }); };
  for (const s of segs) {
    if ('w' in s) add(s.w, s.rows * inF * 2);
    else { add(s.codes4, s.desc.out * s.desc.in / 4); add(s.desc.sz, s.desc.out * Math.ceil(s.desc.in / s.desc.group) * 4); }
    if (s.B && s.r) add(s.B, ('w' in s ? s.rows : s.desc.out) * s.r * 2);
  }
  return out;
}

export interface NativeCudaDecode extends NativeCuda {
  /** dst = the desc's code stream with every 64-byte span's 4×4 words transposed ('int' 2-bit, in % 256 == 0). */
  cudaRepackSpan4(desc: QuantDesc, dst: number): void;
  /**
   * y_s f32 [rows_s] (= or += with acc) = W_s·x̃ for every segment (≤ 8) in one launch; x̃ = RMSNorm(x)·normW when
   * normW is given (eps), else x. x f32 or (xBf16) bf16 [in]; in % 256 == 0. x̃ is rounded to fp16 (scaled per 64
   * inputs by a power of two) for the packed segments (~5e-4 relative), kept f32 for the dense ones. probe (benchmarks
   * only, wrong results by design): 1 codes of rows 0..15 only (L2-resident), 2 loads without compute, 3 compute without loads;
   * 16·b (kernel 5): the probe bits b of decode.cu DParams::probe5 (1 no wait for the t vectors, 2 no SwiGLU in the staging,
   * 4 no LoRA-A tiles and no t wait).
   * kernel: 0 (default) = v4, each warp prefetching its next span item; 2 = v4 with the next two (spills); 5 = v5, the
   * codes streamed into shared memory by bulk copies (group 64 only; v4 otherwise). x2 (kernel 5, f32 [in], no normW):
   * x̃ = silu(x)·x2, the SwiGLU of gate x and up x2. prefetch (kernel 5, ≤ 16 ranges, 16-byte aligned, bytes % 16 == 0):
   * L2 prefetches the launch's blocks issue once their own first copies are out — meant for the NEXT launch's weights, so
   * HBM streams them while this launch computes (no effect on the results). evictFirst: the launch's own code copies
   * carry an L2 evict-first hint (they are read once).
   */
  cudaDecodeGemv(x: number, xBf16: boolean, normW: number | null, eps: number, inF: number, segs: DecodeSeg[], probe?: number,
    kernel?: number, x2?: number | null, prefetch?: DecodePrefetch[] | null, evictFirst?: boolean): void;
  /**
   * q/k/v (f32) + LoRA (B bf16 [out, r] already scaled, t f32 [r]; null: none) → RoPE (cos/sin f32 [hd/2] of this
   * position) → qOut bf16 [Hq·hd], kOut/vOut bf16 [Hkv·hd] (the cache rows of this position).
   */
  cudaDecodeQkvEpi(q: number, k: number, v: number, tq: number | null, tk: number | null, tv: number | null,
    Bq: number | null, Bk: number | null, Bv: number | null, rq: number, rk: number, rv: number, cos: number, sin: number,
    Hq: number, Hkv: number, hd: number, qOut: number, kOut: number, vOut: number): void;
  /**
   * One token's attention with its RoPE and cache rows: q f32 [Hq·hd], k/v f32 [Hkv·hd] → RoPE (cos/sin f32 [hd/2] of
   * position pos) → bf16; rows pos of kc/vc (bf16 caches, row = Hkv·hd) written; out bf16 [Hq·hd] = softmax(q·Kᵀ/√hd)·V
   * over positions 0..pos (GQA). hd 64, 128 or 256. Launched alone (not recorded into a persistent plan) it may also add
   * the adapters' B·t to q, k and v before RoPE (B bf16 [Hq·hd | Hkv·hd, r] already scaled, t f32 [r]; null: none) and
   * write its output as the int8-x GEMV's input into i8 (a cudaInt8xGemv scratch of Hq·hd inputs: x̂ | a | Σx̂, what
   * cudaInt8xPrep makes of the bf16 out) — out may then be null. The extras are optional: older addons lack them.
   */
  cudaDecodeAttn(q: number, k: number, v: number, cos: number, sin: number, kc: number, vc: number, pos: number, Hq: number,
    Hkv: number, hd: number, out: number | null, tq?: number | null, tk?: number | null, tv?: number | null, Bq?: number | null,
    Bk?: number | null, Bv?: number | null, r?: number, i8?: number | null): void;
  /**
   * The same attention handed to the NEXT cudaDecodeGemv call instead of launched: kernel 5 runs it first (blocks
   * h < Hq; the others wait for every head) when that call's x is `out` (bf16, in = Hq·hd) — the o GEMV — saving a launch
   * boundary per layer; any other next call launches it on its own first. Must be followed by a cudaDecodeGemv.
   * Optional (older addons lack it).
   */
  cudaDecodeAttnFoldNext?(q: number, k: number, v: number, cos: number, sin: number, kc: number, vc: number, pos: number,
    Hq: number, Hkv: number, hd: number, out: number): void;
  /**
   * Persistent decode plans: after cudaDecodePlanBegin, cudaDecodeGemv (kernel 5) and cudaDecodeAttn calls are RECORDED
   * as phases instead of launched; cudaDecodePlanEnd returns the plan; cudaDecodePlanRun runs every phase in one launch
   * (a block per SM, grid-wide barriers between phases), the attention phases at position pos with the RoPE tables
   * cos/sin (f32 [hd/2] of that position). Optional: addons built before them lack these.
   */
  cudaDecodePlanBegin(): void;
  cudaDecodePlanEnd(): number;
  cudaDecodePlanRun(plan: number, pos: number, cos: number, sin: number): void;
  cudaDecodePlanFree(plan: number): void;
  /** Benchmarks: runs of the plan write %globaltimer stamps (u64 [phases][grid][6]: start, x staged, dense tiles done, first stage landed, work done, arrived + next prologue) into trace (null: off). */
  cudaDecodePlanTrace(plan: number, trace: number | null): { phases: number; grid: number };
  /** Benchmarks: kernel-5 GEMV launches from now on write %globaltimer stamps (u64 [launch][stride][6]: start, x staged, dense tiles done, first stage landed, packed items done, exit) into trace (null: off); launches = those counted since the previous call. Optional (older addons lack it). */
  cudaDecodeGemvTrace?(trace: number | null): { launches: number; stride: number };
  /** Greedy sampling on the device: id int32 [1] = argmax x f32 [n] (first index of the maximum); ids[slot] = it too. */
  cudaArgmaxF32(x: number, n: number, id: number, ids: number | null, slot: number): void;
  /** x f32 [n] += y + B·t */
  cudaDecodeResidualEpi(x: number, y: number, t: number | null, B: number | null, r: number, n: number): void;
  /** act f32 [n] = silu(g + Bg·tg)·(u + Bu·tu) */
  cudaDecodeSwigluEpi(g: number, u: number, tg: number | null, tu: number | null, Bg: number | null, Bu: number | null,
    rg: number, ru: number, n: number, act: number): void;
}

export const CUDA_DECODE_FUNCTIONS = ['cudaRepackSpan4', 'cudaDecodeGemv', 'cudaDecodeQkvEpi', 'cudaDecodeResidualEpi',
  'cudaDecodeSwigluEpi', 'cudaDecodeAttn', 'cudaArgmaxF32'] as const;

const family = kernelFamily<NativeCudaDecode>('decode kernels', CUDA_DECODE_FUNCTIONS);

/** The decode kernels when a CUDA device is present and the addon has them, else null. */
export function cudaDecodeOps(): NativeCudaDecode | null { return family.get(); }

/** Why cudaDecodeOps() is null ('available' when it is not). */
export function cudaDecodeUnavailable(): string { return family.unavailable(); }

/** The v4 GEMV's fp16 rounding of x for one slot of 64 inputs (the twin of the kernel's staging; f64 out). */
export function decodeSlotRound(x: ArrayLike<number>, off: number, out: Float64Array): void {
  let m = 0;
  for (let c = 0; c < 64; c++) m = Math.max(m, Math.abs(x[off + c]));
  let E = 0;
  if (m > 0) { const ex = Math.floor(Math.log2(m)) + 1; E = 14 - ex; }  // frexp: m < 2^ex
  for (let c = 0; c < 64; c++) {
    const pp = (c & 15) & 7, e = pp <= 4 ? pp : pp - 5;
    const s = 2 ** (E - 2 * e);
    out[off + c] = roundF16(Math.fround(x[off + c] * s)) / s;
  }
}

/**
 * x as kernel 5 stages it for the packed segments (decode.cu stage_own): x̃ = x·normW in f32, rounded per slot of 64 by
 * decodeSlotRound, times RMSNorm's 1/rms (which the kernel applies to the finished row sums) — v4 rounds the normalized
 * x instead. normW null: plain decodeSlotRound of x.
 */
export function decodeOwnStagedX(x: ArrayLike<number>, normW: ArrayLike<number> | null, eps: number): Float64Array {
  const n = x.length, xw = new Float32Array(n), out = new Float64Array(n);
  let ss = 0;
  for (let i = 0; i < n; i++) { ss += x[i] * x[i]; xw[i] = normW ? Math.fround(x[i] * normW[i]) : x[i]; }
  for (let j = 0; j < n; j += 64) decodeSlotRound(xw, j, out);
  if (normW) { const rstd = 1 / Math.sqrt(ss / n + eps); for (let i = 0; i < n; i++) out[i] *= rstd; }
  return out;
}

/** Round to the nearest fp16 value (ties to even), subnormals included; |x| beyond the fp16 range → ±Infinity. */
export function roundF16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  const e = Math.max(Math.floor(Math.log2(a)), -14);
  const ulp = 2 ** (e - 10);
  let q = a / ulp;
  const f = Math.floor(q), d = q - f;
  q = d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
  return Math.sign(x) * q * ulp;
}
