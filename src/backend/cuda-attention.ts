// Typed access to the causal grouped-query flash attention of the CUDA engine (native/cuda/flash_attention.cu,
// bindings in native/cuda/napi_attention.cc). Same layouts and semantics as the TypeScript references
// attentionForwardRef / attentionBackwardRef (src/backend/kernels.ts):
//   q, out, dout [B, Tq, Hq, D] bf16; k, v [B, Tk, Hkv, D] bf16; lse [B, Hq, Tq] f32;
//   dq [B, Tq, Hq, D], dk, dv [B, Tk, Hkv, D] f32; scale 1/sqrt(D); query i attends keys 0..i+(Tk−Tq);
//   query head h reads kv head floor(h / (Hq/Hkv)). D ∈ {32, 64, 128}.
// Arguments are device-buffer handles (cudaAlloc); bf16 buffers must be 16-byte aligned, f32 gradients 8-byte
// aligned (cudaAlloc is; views at such offsets are). test/cuda-attention.test.ts holds them to the references.
import { nativeAddon, type NativeCuda } from './native.js';
import { cudaUnavailable } from './cuda.js';

export interface NativeCudaAttention extends NativeCuda {
  /**
   * out = softmax(q·kᵀ/sqrt(D), causal)·v (bf16 out, fp32 softmax/accumulation, flash-style: no Tq×Tk score
   * matrix in memory); lse (f32 [B, Hq, Tq], natural log, of the scaled scores) is written when not null.
   */
  cudaAttnFwd(q: number, k: number, v: number, out: number, lse: number | null,
    B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): void;
  /**
   * dq, dk, dv (f32) = gradients of the forward given dout (bf16), the forward's out (bf16) and lse.
   * OVERWRITES dq, dk, dv (unlike attentionBackwardRef, which accumulates).
   */
  cudaAttnBwd(dout: number, q: number, k: number, v: number, out: number, lse: number,
    dq: number, dk: number, dv: number,
    B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): void;
  /**
   * Median ms of one forward and one backward (causal, Tq = Tk = T) on random bf16 inputs the call allocates
   * and frees; CUDA events after 2 warmup calls.
   */
  cudaBenchAttention(B: number, T: number, Hq: number, Hkv: number, D: number, reps: number):
    { fwdMs: number; bwdMs: number };
}

/** The attention kernels when the addon has them and a device is usable; otherwise null (see cudaAttentionUnavailable). */
export function cudaAttention(): NativeCudaAttention | null {
  const a = nativeAddon();
  const c = a?.cuda as Partial<NativeCudaAttention> | undefined;
  if (!c || typeof c.cudaAttnFwd !== 'function' || typeof c.cudaAttnBwd !== 'function') return null;
  return (c as NativeCudaAttention).cudaInfo().deviceCount > 0 ? (c as NativeCudaAttention) : null;
}

/** Why cudaAttention() is null ('available' when it is not). */
export function cudaAttentionUnavailable(): string {
  const c = nativeAddon()?.cuda as Partial<NativeCudaAttention> | undefined;
  if (c && typeof c.cudaAttnFwd !== 'function') return 'addon predates the CUDA attention kernels (rebuild it)';
  return cudaUnavailable();
}

/** FLOPs of the causal forward as benchmarks count them: 4·B·Hq·D·T²/2 (the backward counts 2.5× this). */
export function attentionFwdFlops(B: number, T: number, Hq: number, D: number): number {
  return (4 * B * Hq * D * T * T) / 2;
}
