// Plain C++ interface of the fused KL + cross-entropy kernels of LREC distillation (kl_ce.cu), free of CUDA types
// so the N-API glue (napi_kl_ce.cc) builds with g++ alone. Default stream, nullptr on success or a one-line error.
// TypeScript twin: src/model/ops/kl-ce.ts (klCeRowsRef); test/cuda-kl-ce.test.ts compares them.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

// One block per row r of student logits s [rows, V] and teacher logits t [rows, V] (f32):
//   kl_sum[0] += Σ_v p_T (log p_T − log p_S)                 (every row, whatever its target)
//   ce_sum[0] += lse(s) − s[target]                           (rows with target >= 0; target >= V adds NaN)
//   dlogits    = kl_scale·(p_S − p_T) + ce_scale·(p_S − onehot(target))   (the CE term only when target >= 0)
// dlogits (bf16, or f32 when d_f32) is optional (null: losses only); it is overwritten, a target >= V gives a NaN row.
const char* cuda_kl_ce_rows(const float* s, const float* t, const int32_t* targets, void* dlogits, bool d_f32,
                            float* kl_sum, float* ce_sum, int rows, int V, float kl_scale, float ce_scale);

// Chunked student + teacher lm_head and the rows above, never more than chunk_rows × V logits of each live:
// per chunk, s_logits = hidden·Wᵀ and t_logits = t_hidden·tWᵀ (bf16 in, f32 out, cuBLAS), cuda_kl_ce_rows with bf16
// dlogits, then dhidden += dlogits·W. dhidden null: no gradient (dlogits may then be null too). hidden, t_hidden
// bf16 [N, D]; W, tW bf16 [V, D] (may be the same buffer); s_logits, t_logits f32 and dlogits bf16 hold
// min(chunk_rows, N)·V elements and keep the last chunk's values after the call.
const char* cuda_lm_head_kl_ce(const void* hidden, const void* W, const void* t_hidden, const void* tW,
                               const int32_t* targets, float* dhidden, float* kl_sum, float* ce_sum, int N, int D,
                               int V, float kl_scale, float ce_scale, int chunk_rows, float* s_logits,
                               float* t_logits, void* dlogits);

}  // namespace lowbit
