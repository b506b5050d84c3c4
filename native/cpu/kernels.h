// CPU kernels of the addon. Row-major float32; contracts match the TypeScript references in
// src/backend/kernels.ts (sgemmRef, attentionForwardRef, attentionBackwardRef).
#pragma once
#include <cstdint>

namespace lowbit {

// C[M,N] = alpha * op(A) * op(B) + beta * C. op(A) = A[M,K] or A[K,M]^T; op(B) = B[K,N] or B[N,K]^T.
// beta == 0 never reads C (NaN garbage there is ignored).
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           const float* B, float beta, float* C);

// The same with explicit leading dimensions (row strides) of A, B, C as stored; threaded = false keeps
// it on the calling thread (for use inside other parallel kernels).
void sgemm_ex(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc, bool threaded);

// Causal GQA attention. q,out [B,Tq,Hq,D]; k,v [B,Tk,Hkv,D]; lse [B,Hq,Tq] (may be null).
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int Tq,
                       int Tk, int Hq, int Hkv, int D);
// Accumulates into dq, dk, dv.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int B, int Tq, int Tk, int Hq,
                        int Hkv, int D);

// Element-wise helpers (twins: src/model/ops/swiglu.ts, rmsnorm.ts). Backwards accumulate.
void swiglu_forward(float* out, const float* gate, const float* up, int64_t N);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t N);
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps);
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                      int64_t N, int64_t C);

// Row-wise losses over logits [N, V] (twins: src/model/ops/cross-entropy.ts, kl.ts). Targets < 0 are
// ignored rows; callers check targets < V. Sums are returned in double.
double cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int64_t V);
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets, int64_t N, int64_t V,
                            float scale);
double cross_entropy_fused(float* dlogits, const float* logits, const int32_t* targets, int64_t N, int64_t V,
                           float scale);  // dlogits may alias logits
double kl_forward(const float* teacher, const float* student, int64_t N, int64_t V);
void kl_backward(float* dstudent, const float* teacher, const float* student, int64_t N, int64_t V, float scale);

// One Adam/AdamW step over n values (twin: AdamW.update in src/train/adamw.ts); bc1/bc2 = 1 - beta^step.
struct AdamParams {
  float lr, beta1, beta2, eps, weight_decay, bc1, bc2;
  bool coupled;  // L2 added to the gradient (Adam) instead of decoupled decay (AdamW)
};
void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p);
// Σ x² in double (gradient-norm clipping).
double sum_squares(const float* x, int64_t n);

// Which SIMD path this build compiled ("avx512", "avx2+fma", ...).
const char* simd_name();

}  // namespace lowbit
