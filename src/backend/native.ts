// Loads the native addon (build/lowbit.node, built by scripts/build-native.mjs during `npm ci`) and
// plugs its kernels into backend/kernels.ts. Importing this module is enough; it never throws: when the
// addon is missing or disabled the TypeScript kernels stay in place and nativeInfo() says why.
//
// Environment: LOWBIT_NATIVE=0 disables the addon; LOWBIT_ADDON=<path> loads another build (e.g.
// build/device/lowbit.node); LOWBIT_THREADS=<n> sets the CPU kernel threads (default: all cores).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type NativeOps, setNativeAttention, setNativeOps, setNativeSgemm } from './kernels.js';

/** What the addon exports (CUDA functions only when it was compiled with nvcc). */
export interface NativeAddon extends NativeOps {
  sgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: Float32Array, B: Float32Array, beta: number, C: Float32Array): void;
  attentionForward(out: Float32Array, lse: Float32Array | null, q: Float32Array, k: Float32Array, v: Float32Array,
    B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): void;
  attentionBackward(dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array, q: Float32Array,
    k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array,
    B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): void;
  setThreads(n: number): number;
  getThreads(): number;
  info(): { simd: string; cudaCompiled: boolean };
  cuda?: NativeCuda;
}

/** Device buffers are numeric handles; sizes are checked natively. bf16 buffers hold 2 bytes/element. */
export interface NativeCuda {
  cudaInfo(): { deviceCount: number; deviceName?: string; computeCapability?: string; smCount?: number; error?: string };
  cublasInfo(): { loaded: boolean; version?: number; error?: string };
  cudaAlloc(bytes: number): number;
  cudaFree(handle: number): void;
  cudaUpload(handle: number, src: ArrayBufferView, byteOffset?: number): void;
  cudaDownload(handle: number, dst: ArrayBufferView, byteOffset?: number): void;
  cudaSync(): void;
  /** A window [byteOffset, byteOffset+bytes) of a buffer as its own handle (no allocation; free views first). */
  cudaView(handle: number, byteOffset: number, bytes: number): number;
  /** Zero the first `bytes` (default: all) of a buffer, stream-ordered. */
  cudaMemset0(handle: number, bytes?: number): void;
  /** Device-to-device copy, stream-ordered. */
  cudaCopy(dst: number, src: number, bytes: number, dstOffset?: number, srcOffset?: number): void;
  cudaMemInfo(): { free: number; total: number };
  cudaConvertF32ToBf16(dst: number, src: number, n: number): void;
  cudaConvertBf16ToF32(dst: number, src: number, n: number): void;
  /** Row-major C[M,N] = alpha·op(A)·op(B) + beta·C; A, B bf16; fp32 accumulate; C fp32 when cF32. */
  cublasGemmBf16(transA: boolean, transB: boolean, M: number, N: number, K: number,
    A: number, B: number, C: number, alpha: number, beta: number, cF32: boolean): void;
  /**
   * The same with element offsets and leading dimensions (row-major, elements between rows as stored) for each
   * operand: operands that are column blocks of wider matrices. Extents are checked against the buffers.
   */
  cublasGemmBf16Ex(transA: boolean, transB: boolean, M: number, N: number, K: number,
    A: number, aOff: number, lda: number, B: number, bOff: number, ldb: number, C: number, cOff: number, ldc: number,
    alpha: number, beta: number, cF32: boolean): void;
  /**
   * C = alpha·A·op(B) + beta·C (C bf16 or f32, own ldc) with K cut into `splits` slices: one strided-batched GEMM
   * into work (f32, splits·M·N) and a reduction. A [M,K] is never transposed; B is [K,N], or [N,K] with transB.
   */
  cublasGemmBf16SplitK(transB: boolean, M: number, N: number, K: number, A: number, aOff: number, lda: number,
    B: number, bOff: number, ldb: number, C: number, cOff: number, ldc: number, alpha: number, beta: number,
    cF32: boolean, splits: number, work: number): void;
  /**
   * CUDA graphs of the stream every kernel goes to: begin capturing, end (→ graph id), replay, free. Nothing between
   * begin and end may synchronise or allocate (no uploads/downloads, no first-use allocations: warm up first).
   */
  cudaGraphBegin(): void;
  cudaGraphEnd(): number;
  cudaGraphLaunch(id: number): void;
  cudaGraphFree(id: number): void;
  /** CUDA events on stream 0, for profiling: ids, not buffer handles. */
  cudaEventNew(): number;
  cudaEventRecord(id: number): void;
  cudaEventMs(a: number, b: number): number;
  cudaEventFree(id: number): void;
  /**
   * `batch` GEMMs of one shape; operand i starts at element i·stride of its buffer (stride 0 reuses one
   * operand for every batch, e.g. a shared weight).
   */
  cublasGemmBf16Batched(transA: boolean, transB: boolean, M: number, N: number, K: number,
    A: number, B: number, C: number, alpha: number, beta: number, cF32: boolean,
    batch: number, strideA: number, strideB: number, strideC: number): void;
  /** Median ms of one bf16 GEMM on random data, timed with CUDA events after warmup. */
  cudaBenchGemm(M: number, N: number, K: number, iters: number, transA?: boolean, transB?: boolean): number;
}

export interface NativeInfo {
  loaded: boolean;
  reason?: string;
  path?: string;
  threads: number;
  simd: string;
  cuda: {
    compiled: boolean;
    deviceCount: number;
    deviceName?: string;
    computeCapability?: string;
    error?: string;
    cublas?: { loaded: boolean; version?: number; error?: string };
  };
}

/** The package root: the nearest folder above this file whose package.json is lowbit's. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (existsSync(pj)) {
      try { if (JSON.parse(readFileSync(pj, 'utf8')).name === 'lowbit') return dir; } catch { /* keep looking */ }
    }
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

let addon: NativeAddon | null = null;
let reason: string | undefined;
let addonPath: string | undefined;

function load(): void {
  if (process.env.LOWBIT_NATIVE === '0') { reason = 'disabled by LOWBIT_NATIVE=0'; return; }
  addonPath = process.env.LOWBIT_ADDON ? path.resolve(process.env.LOWBIT_ADDON)
    : path.join(packageRoot(), 'build', 'lowbit.node');
  if (!existsSync(addonPath)) { reason = `${addonPath} not found (run: node scripts/build-native.mjs)`; return; }
  let m: Record<string, unknown>;
  try {
    m = createRequire(import.meta.url)(addonPath) as Record<string, unknown>;
  } catch (e) {
    reason = `cannot load ${addonPath}: ${(e as Error).message.split('\n')[0]}`;
    return;
  }
  const a = m as unknown as NativeAddon;
  if (typeof m.cudaInfo === 'function') a.cuda = m as unknown as NativeCuda;
  const envThreads = Number(process.env.LOWBIT_THREADS);
  const threads = Number.isInteger(envThreads) && envThreads > 0 ? envThreads
    : (os.availableParallelism ? os.availableParallelism() : os.cpus().length);
  a.setThreads(threads);
  addon = a;
  setNativeSgemm((transA, transB, M, N, K, alpha, A, B, beta, C) =>
    a.sgemm(transA, transB, M, N, K, alpha, A as Float32Array, B as Float32Array, beta, C as Float32Array));
  setNativeAttention(
    (out, lse, q, k, v, B, Tq, Tk, Hq, Hkv, D) => a.attentionForward(out as Float32Array,
      lse as Float32Array | null, q as Float32Array, k as Float32Array, v as Float32Array, B, Tq, Tk, Hq, Hkv, D),
    (dq, dk, dv, dout, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, D) => a.attentionBackward(dq as Float32Array,
      dk as Float32Array, dv as Float32Array, dout as Float32Array, q as Float32Array, k as Float32Array,
      v as Float32Array, out as Float32Array, lse as Float32Array, B, Tq, Tk, Hq, Hkv, D));
  setNativeOps(a);
}
load();

/** The loaded addon, or null (see nativeInfo().reason). */
export function nativeAddon(): NativeAddon | null { return addon; }

/** Why the addon is not loaded (undefined when it is). */
export function nativeReason(): string | undefined { return reason; }

/** Sets the CPU kernel threads (also LOWBIT_THREADS); returns the count in effect. */
export function setNativeThreads(n: number): number { return addon ? addon.setThreads(n) : 1; }

/**
 * A report for `lowbit env`. Probes the GPU (and, when one is present, dlopens cuBLAS), so call it
 * when you want the report, not on a hot path.
 */
export function nativeInfo(): NativeInfo {
  if (!addon) {
    return { loaded: false, reason, path: addonPath, threads: 1, simd: 'none (TypeScript kernels)',
      cuda: { compiled: false, deviceCount: 0 } };
  }
  const info = addon.info();
  const cuda: NativeInfo['cuda'] = { compiled: info.cudaCompiled, deviceCount: 0 };
  if (addon.cuda) {
    const ci = addon.cuda.cudaInfo();
    Object.assign(cuda, ci);
    if (ci.deviceCount > 0) cuda.cublas = addon.cuda.cublasInfo();
  }
  return { loaded: true, path: addonPath, threads: addon.getThreads(), simd: info.simd, cuda };
}
