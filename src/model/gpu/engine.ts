// The CUDA engine the GPU model runs on: the addon's packed-weight kernels (backend/cuda.ts), the training
// element-wise ops (backend/cuda-train-ops.ts) and flash attention (backend/cuda-attention.ts), all on
// device-buffer handles.
import { cudaEngine, cudaUnavailable, type NativeCudaQuant } from '../../backend/cuda.js';
import { cudaTrainOps, type NativeCudaTrain } from '../../backend/cuda-train-ops.js';
import { cudaAttention, type NativeCudaAttention } from '../../backend/cuda-attention.js';
import { cudaDecodeOps, type NativeCudaDecode } from '../../backend/cuda-decode.js';
import type { NativeCudaKlCe } from '../../backend/cuda-kl-ce.js';
import { LowbitError } from '../../io/errors.js';

// (the KL + CE kernels of LREC are checked where they are used, so an older addon still runs RILQ)
export type GpuEngine = NativeCudaQuant & NativeCudaTrain & NativeCudaAttention & NativeCudaKlCe & NativeCudaDecode;

let override: GpuEngine | null = null;
/** Route gpuEngine()/requireGpu() to another implementation of the engine (tests: the host emulator); null resets. */
export function useGpuEngine(e: GpuEngine | null): void { override = e; }

/** The engine when a CUDA device and every kernel family are present, else null. */
export function gpuEngine(): GpuEngine | null {
  if (override) return override;
  const q = cudaEngine();
  if (!q || !cudaTrainOps() || !cudaAttention() || !cudaDecodeOps()) return null;
  return q as GpuEngine;
}

export function gpuUnavailable(): string {
  if (override) return 'available';
  const why = cudaUnavailable();
  if (why !== 'available') return why;
  if (!cudaTrainOps()) return 'addon predates the CUDA training ops (rebuild it)';
  if (!cudaAttention()) return 'addon predates the CUDA attention kernels (rebuild it)';
  if (!cudaDecodeOps()) return 'addon predates the CUDA decode kernels (rebuild it)';
  return 'available';
}

/** The engine, or a one-line error saying why there is none (for --device cuda). */
export function requireGpu(): GpuEngine {
  const e = gpuEngine();
  if (!e) throw new LowbitError(`--device cuda: ${gpuUnavailable()}`);
  return e;
}
