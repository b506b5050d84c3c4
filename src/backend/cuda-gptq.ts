// Typed access to GPTQ's CUDA kernels (native/cuda/gptq.cu, bindings native/cuda/napi_gptq.cc). All buffer
// arguments are device-buffer handles (see NativeCuda); sizes are checked natively. Everything runs stream-ordered
// on the default stream; cudaGptqCholesky synchronises (it returns whether the matrix was positive definite).
// Layouts (see native/cuda/gptq.h): square f64 matrices column-major; the weight transposed, Wt [in, out]
// (Wt[c·out + r] = W[r, c]); codes u8 [in, out]. After the second cudaGptqCholesky the buffer holds GPTQ's upper
// factor U of H⁻¹ in row-major order (U[i·n + j], j ≥ i), i.e. the column-major lower factor.
// TypeScript twins: src/quant/gptq.ts (HessianAccumulator, choleskyLower, choleskyInverse, quantizeGPTQ); the
// host emulator of these functions is test/helpers/host-gptq.ts. Orchestration: src/quant/gptq-gpu.ts.
import type { NativeCuda } from './native.js';
import { kernelFamily } from './cuda-family.js';

/** GPTQ's kernels of the addon (register_cuda_gptq). "ACC" marks an output accumulated into (+=). */
export interface NativeCudaGptq {
  /** H f64 [n,n] ACC += Σ over chunks of ≤ 256 rows of f32(XcᵀXc); X f32 [rows,n] row-major; tmp f32 [n,n] scratch. */
  cudaGptqHessianAdd(H: number, X: number, rows: number, n: number, tmp: number): void;
  /** x *= factor (f64 [n]). */
  cudaGptqScaleF64(x: number, n: number, factor: number): void;
  /** dst f64 [cols,rows] = transpose of src f64 [rows,cols] (row-major both; dst ≠ src). */
  cudaGptqTransposeF64(dst: number, src: number, rows: number, cols: number): void;
  /** Where H[i,i] == 0: H[i,i] = 1 and row i of Wt f64 [n,out] = 0. diag f64 [n] = H's diagonal after. */
  cudaGptqDeadColumns(H: number, Wt: number, n: number, out: number, diag: number): void;
  /** Hdst[i,j] = Hsrc[perm[i],perm[j]], Wdst row j = Wsrc row perm[j] (Wt layout); perm i32 [n]; dst ≠ src. */
  cudaGptqPermute(Hsrc: number, Wsrc: number, perm: number, n: number, out: number, Hdst: number, Wdst: number): void;
  /** dst = src + damp·I (f64 [n,n]). */
  cudaGptqDampCopy(dst: number, src: number, n: number, damp: number): void;
  /** In-place lower Cholesky (column-major; strict upper zeroed). false when not positive definite. Synchronises. */
  cudaGptqCholesky(A: number, n: number): boolean;
  /** A ← (L·Lᵀ)⁻¹ (full symmetric) from the lower factor L in A; work f64 [n,n] scratch (≠ A). */
  cudaGptqCholeskyInverse(A: number, n: number, work: number): void;
  /** GPTQ's min/max rule for every group of g inputs of every row of Wt f64 [C,out]: scales/zeros f32 [out, ⌈C/g⌉]. */
  cudaGptqFitGroups(Wt: number, out: number, C: number, g: number, bits: number, scales: number, zeros: number): void;
  /**
   * Columns [i1, i2) of GPTQ's column loop on Wt f64 [C,out] (left untouched): per row, group parameters fitted on
   * Wt at each group start when fitGroups (else read at colGroup[col] i32 [C]), codes u8 [C,out], the scaled errors
   * err f64 [i2−i1, out], lossRows f64 [out] ACC. hinv = U (f64 [C,C], layout above). i2 − i1 ≤ 800.
   */
  cudaGptqQuantBlock(Wt: number, err: number, hinv: number, scales: number, zeros: number, colGroup: number,
    codes: number, lossRows: number, out: number, C: number, i1: number, i2: number, g: number, bits: number,
    fitGroups: boolean): void;
  /** The lazy batch update W[:, i2:] −= Err·U[i1:i2, i2:] on Wt (cuBLAS Dgemm). */
  cudaGptqLazyUpdate(Wt: number, err: number, hinv: number, out: number, C: number, i1: number, i2: number): void;
}

/** An engine that can run GPTQ: device buffers (NativeCuda) plus GPTQ's kernels. */
export type GptqEngine = Pick<NativeCuda, 'cudaAlloc' | 'cudaFree' | 'cudaUpload' | 'cudaDownload' | 'cudaSync' |
  'cudaMemset0' | 'cudaCopy' | 'cudaInfo'> & NativeCudaGptq;

/** The function names of NativeCudaGptq the addon must export. */
export const CUDA_GPTQ_FUNCTIONS = [
  'cudaGptqHessianAdd', 'cudaGptqScaleF64', 'cudaGptqTransposeF64', 'cudaGptqDeadColumns', 'cudaGptqPermute',
  'cudaGptqDampCopy', 'cudaGptqCholesky', 'cudaGptqCholeskyInverse', 'cudaGptqFitGroups', 'cudaGptqQuantBlock',
  'cudaGptqLazyUpdate',
] as const satisfies readonly (keyof NativeCudaGptq)[];

const family = kernelFamily<GptqEngine>('GPTQ kernels', CUDA_GPTQ_FUNCTIONS);

/** The addon's CUDA object with the GPTQ kernels when a device is usable; otherwise null (see cudaGptqUnavailable). */
export function cudaGptq(): GptqEngine | null { return family.get(); }

/** Why cudaGptq() is null ('available' when it is not). */
export function cudaGptqUnavailable(): string { return family.unavailable(); }
