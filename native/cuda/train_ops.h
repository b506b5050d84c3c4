// Plain C++ interface of the element-wise / row-wise kernels of the GPU training path (train_ops.cu), free
// of CUDA types so the N-API glue (napi_train.cc) builds with g++ alone. Every function runs on the legacy
// default stream and returns nullptr on success or a one-line error message (valid until the next call on
// the same thread). bf16 = uint16 storage, round-to-nearest-even; fp32 accumulation everywhere.
// Pointers are device pointers; any alignment works (16-byte vector paths are taken when the pointers and
// sizes allow, scalar code otherwise). Counts of 0 launch nothing.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

// HF LlamaRMSNorm per row of C: r = 1/sqrt(mean(x²)+eps), y = x·r·w. y_bf16 [N,C], y_f32 [N,C], rstd [N]
// are each optional (null = not written).
const char* cuda_rmsnorm_fwd(const float* x, const float* w, void* y_bf16, float* y_f32, float* rstd, int N, int C,
                             float eps);
// dx [N,C] += r·(dout·w − x·k), k = r²/C · Σ dout·w·x (no dw).
const char* cuda_rmsnorm_bwd(float* dx, const float* dout, const float* x, const float* w, const float* rstd, int N,
                             int C);

// RoPE, HF rotate_half: x f32 [B·T, H, D] → out bf16 (overwrite); cos/sin f32 [T, D/2], row t for position t of
// every batch row. D must be even. The backward (inverse rotation) is the same kernel with sin negated:
// dx[i] = g1·c + g2·s, dx[i+D/2] = g2·c − g1·s.
const char* cuda_rope(const float* x, void* out_bf16, const float* cos, const float* sin, int B, int T, int H, int D,
                      bool backward);

// SwiGLU on bf16: out = silu(gate)·up; backward overwrites dgate = dout·up·σ(g)·(1+g·(1−σ(g))), dup = dout·g·σ(g).
const char* cuda_swiglu_fwd(const void* gate, const void* up, void* out, size_t n);
const char* cuda_swiglu_bwd(const void* dout, const void* gate, const void* up, void* dgate, void* dup, size_t n);

// out = a + b (out may alias a or b); x *= factor.
const char* cuda_add_f32(float* out, const float* a, const float* b, size_t n);
const char* cuda_scale_f32(float* x, size_t n, float factor);
// dst bf16 = bf16(scale·src); dst f32 += scale·src (bf16).
const char* cuda_cast_f32_to_bf16_scaled(void* dst, const float* src, size_t n, float scale);
const char* cuda_accumulate_bf16_to_f32(float* dst, const void* src, size_t n, float scale);

// out f32 [N,D] row n = table [V,D] row ids[n] (bf16 or f32 table); an id outside [0, V) gives a NaN row.
const char* cuda_embedding(const int32_t* ids, const void* table, bool table_bf16, float* out, int N, int D, int V);

// Fused, chunked LM head + cross-entropy. For each chunk of at most chunk_rows rows:
//   logits (f32 scratch) = hidden_chunk (bf16 [rows,D]) · Wᵀ (W bf16 [V,D]),
//   loss_sum[0] += Σ_rows (lse − logit[target]) over rows with 0 <= target < V,
//   dlogits (bf16 scratch) = bf16(scale·(softmax − onehot(target))), zero rows for target < 0,
//   dhidden_chunk (f32, optional) += dlogits · W.
// A target >= V adds NaN to the loss and writes a NaN dlogits row (misuse stays visible).
// Scratch: logits f32 [min(chunk_rows,N)·V], dlogits bf16 [min(chunk_rows,N)·V].
const char* cuda_lm_head_ce(const void* hidden, const void* W, const int32_t* targets, float* dhidden, float* loss_sum,
                            int N, int D, int V, float scale, int chunk_rows, float* logits, void* dlogits);

// loss_sum[0] += Σ (a−t)²; da (optional) += grad_scale·2·(a−t)/n.
const char* cuda_mse_f32(const float* a, const float* t, float* da, float* loss_sum, size_t n, float grad_scale);
// out[0] += Σ x².
const char* cuda_sum_squares_f32(const float* x, size_t n, float* out);

// AdamW step of src/train/adamw.ts on one tensor, gradient g·grad_scale (g untouched). bc1 = 1−β1^step,
// bc2 = 1−β2^step, one_minus_b1 = 1−β1, one_minus_b2 = 1−β2 (computed by the caller in double). Decoupled weight
// decay unless coupled_l2 (then g += wd·p before the moments).
struct AdamParams {
  float lr, beta1, beta2, one_minus_b1, one_minus_b2, eps, weight_decay, bc1, bc2, grad_scale;
  bool coupled_l2;
};
const char* cuda_adamw(float* p, const float* g, float* m, float* v, size_t n, const AdamParams& hp);

}  // namespace lowbit
