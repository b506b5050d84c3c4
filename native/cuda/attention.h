// Causal grouped-query flash attention on the GPU (flash_attention.cu), free of CUDA types so the N-API glue
// (napi_attention.cc) builds with g++ alone. Layouts as the TypeScript reference (src/backend/kernels.ts,
// attentionForwardRef / attentionBackwardRef): q, out, dout [B, Tq, Hq, D]; k, v [B, Tk, Hkv, D];
// lse [B, Hq, Tq] (natural log of Σ exp(scaled scores)); scale 1/sqrt(D); query i attends keys
// 0..i+(Tk−Tq); query head h reads kv head h / (Hq/Hkv). All pointers are device pointers; everything
// runs on the legacy default stream. Each function returns nullptr or a one-line error message.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

// nullptr when the shape is supported: D ∈ {32, 64, 128}, Hq a positive multiple of Hkv > 0, Tk ≥ Tq,
// B ≤ 65535, Hq ≤ 65535. Otherwise the reason (mentions D for an unsupported head dim).
const char* cuda_attn_check(int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t D);

// out (bf16) = softmax(q·kᵀ·scale, causal) · v; lse (f32, may be null) saved for the backward.
// q, k, v, out must be 16-byte aligned.
const char* cuda_attn_fwd(const void* q, const void* k, const void* v, void* out, float* lse, int B, int Tq, int Tk,
                          int Hq, int Hkv, int D);

// dq, dk, dv (f32, OVERWRITTEN) = gradients of the forward above given dout (bf16), the forward's out (bf16)
// and lse. Uses cached device scratch (grown when needed, never shrunk) for delta = rowsum(dout ∘ out) and, when
// the query heads of a GQA group are split over several blocks, their partial dk/dv.
// bf16 tensors 16-byte aligned, dq/dk/dv 8-byte aligned.
const char* cuda_attn_bwd(const void* dout, const void* q, const void* k, const void* v, const void* out,
                          const float* lse, float* dq, float* dk, float* dv, int B, int Tq, int Tk, int Hq, int Hkv,
                          int D);

// Times forward and backward (causal, Tq = Tk = T) on random bf16 inputs it allocates and frees itself:
// 2 warmup calls, then `reps` calls each between two CUDA events on stream 0; *fwd_ms, *bwd_ms = medians.
const char* cuda_bench_attention(int B, int T, int Hq, int Hkv, int D, int reps, double* fwd_ms, double* bwd_ms);

}  // namespace lowbit
