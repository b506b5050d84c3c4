// Typed access to the fused KL + cross-entropy kernels of LREC distillation on the GPU engine
// (native/cuda/kl_ce.cu, bindings native/cuda/napi_kl_ce.cc). Arguments are device-buffer handles; sizes are
// checked natively; fp32 math. "ACC" marks an output accumulated into (+=); the others are overwritten.
// TypeScript twin: src/model/ops/kl-ce.ts (klCeRowsRef).
import type { NativeCuda } from './native.js';
import { kernelFamily } from './cuda-family.js';

export interface NativeCudaKlCe extends NativeCuda {
  /**
   * Per row of student sLogits and teacher tLogits (f32 [rows, V]), targets i32 [rows]:
   * klSum[0] ACC += Σ_v p_T (log p_T − log p_S) (every row); ceSum[0] ACC += lse(s) − s[target] (rows with
   * target ≥ 0); dlogits (bf16, or f32 when dlogitsF32; null: losses only) = klScale·(p_S − p_T) +
   * ceScale·(p_S − onehot(target)), the CE term only on rows with target ≥ 0. A target ≥ V is misuse: NaN CE, NaN row.
   */
  cudaKlCeRows(sLogits: number, tLogits: number, targets: number, dlogits: number | null, dlogitsF32: boolean,
    klSum: number, ceSum: number, rows: number, V: number, klScale: number, ceScale: number): void;
  /**
   * Chunked student + teacher lm_head and cudaKlCeRows: per chunk of ≤ chunkRows rows, sLogits = hidden·Wᵀ and
   * tLogits = tHidden·tWᵀ (f32, cuBLAS), the rows kernel with bf16 dlogits, then dHidden ACC += dlogits·W.
   * hidden, tHidden bf16 [N, D]; W, tW bf16 [V, D] (may be the same buffer); targets i32 [N]; dHidden f32 [N, D] or
   * null (no gradient; dlogits may then be null); klSum, ceSum f32 [1] (may be views of one loss buffer);
   * sLogits, tLogits f32 and dlogits bf16 of min(chunkRows, N)·V elements (see klCeScratchBytes), holding the
   * last chunk afterwards.
   */
  cudaLmHeadKlCe(hidden: number, W: number, tHidden: number, tW: number, targets: number, dHidden: number | null,
    klSum: number, ceSum: number, N: number, D: number, V: number, klScale: number, ceScale: number, chunkRows: number,
    sLogits: number, tLogits: number, dlogits: number | null): void;
}

/** The function names of NativeCudaKlCe the addon must export. */
export const CUDA_KL_CE_FUNCTIONS = ['cudaKlCeRows', 'cudaLmHeadKlCe'] as const satisfies readonly (keyof NativeCudaKlCe)[];

/** Why an engine object lacks the KL + CE kernels, or null when it has them. */
export function klCeMissing(cuda: object): string | null {
  const o = cuda as Record<string, unknown>;
  const missing = CUDA_KL_CE_FUNCTIONS.filter((f) => typeof o[f] !== 'function');
  return missing.length ? `addon predates the KL + CE kernels (missing ${missing.join(', ')}; rebuild it)` : null;
}

const family = kernelFamily<NativeCudaKlCe>('KL + CE kernels', CUDA_KL_CE_FUNCTIONS);

/** The addon's CUDA object with the KL + CE kernels when a device is usable; otherwise null (see cudaKlCeUnavailable). */
export function cudaKlCe(): NativeCudaKlCe | null { return family.get(); }

/** Why cudaKlCe() is null ('available' when it is not). */
export function cudaKlCeUnavailable(): string { return family.unavailable(); }

/** Bytes of the three scratch buffers of cudaLmHeadKlCe for chunks of `chunkRows` rows over a vocabulary of V. */
export function klCeScratchBytes(chunkRows: number, V: number): { sLogits: number; tLogits: number; dlogits: number } {
  return { sLogits: chunkRows * V * 4, tLogits: chunkRows * V * 4, dlogits: chunkRows * V * 2 };
}
