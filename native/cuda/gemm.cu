// bf16 GEMM through cuBLAS (fp32 accumulate) and its event-timed benchmark.
#include <algorithm>
#include <vector>

#include "check.h"
#include "cublas_dl.h"
#include "lowbit_cuda.h"

namespace lowbit {

// cuBLAS is column-major. A row-major X[r,c] is the column-major Xᵀ, so row-major C = op(A)·op(B) is
// column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands, keep each one's transpose flag.
const char* cublas_gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const void* A, const void* B,
                             float beta, void* C, bool c_f32) {
  const char* err = nullptr;
  const CublasApi* api = cublas_api(&err);
  if (!api) return err;
  const int lda = ta ? M : K, ldb = tb ? K : N;
  cublasStatus_t st = api->gemm_ex(api->handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   N, M, K, &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C,
                                   c_f32 ? CUDA_R_32F : CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != 0) return cublas_err("cublasGemmEx", st);
  return nullptr;
}

const char* cublas_gemm_bf16_ld(bool ta, bool tb, int M, int N, int K, float alpha, const void* A, int lda,
                                const void* B, int ldb, float beta, void* C, int ldc, bool c_f32) {
  const char* err = nullptr;
  const CublasApi* api = cublas_api(&err);
  if (!api) return err;
  cublasStatus_t st = api->gemm_ex(api->handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   N, M, K, &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C,
                                   c_f32 ? CUDA_R_32F : CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != 0) return cublas_err("cublasGemmEx", st);
  return nullptr;
}

const char* cuda_event_pair_ms(void* a, void* b, float* ms) {
  LB_CUDA(cudaEventElapsedTime(ms, static_cast<cudaEvent_t>(a), static_cast<cudaEvent_t>(b)));
  return nullptr;
}
const char* cuda_event_new(void** ev) {
  cudaEvent_t e;
  LB_CUDA(cudaEventCreate(&e));
  *ev = e;
  return nullptr;
}
const char* cuda_event_record(void* ev) {
  LB_CUDA(cudaEventRecord(static_cast<cudaEvent_t>(ev), 0));
  return nullptr;
}
const char* cuda_event_free(void* ev) {
  LB_CUDA(cudaEventDestroy(static_cast<cudaEvent_t>(ev)));
  return nullptr;
}

const char* cublas_gemm_bf16_batched(bool ta, bool tb, int M, int N, int K, float alpha, const void* A,
                                     long long strideA, const void* B, long long strideB, float beta, void* C,
                                     long long strideC, int batch, bool c_f32) {
  const char* err = nullptr;
  const CublasApi* api = cublas_api(&err);
  if (!api) return err;
  const int lda = ta ? M : K, ldb = tb ? K : N;  // same operand swap as cublas_gemm_bf16
  cublasStatus_t st = api->gemm_strided_batched_ex(
      api->handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_16BF,
      ldb, strideB, A, CUDA_R_16BF, lda, strideA, &beta, C, c_f32 ? CUDA_R_32F : CUDA_R_16BF, N, strideC, batch,
      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != 0) return cublas_err("cublasGemmStridedBatchedEx", st);
  return nullptr;
}

namespace {

// Frees the benchmark's buffers and events on every exit path.
struct BenchState {
  void *a = nullptr, *b = nullptr, *c = nullptr;
  std::vector<cudaEvent_t> ev;
  ~BenchState() {
    for (auto e : ev) cudaEventDestroy(e);
    cudaFree(a), cudaFree(b), cudaFree(c);
  }
};

}  // namespace

const char* cuda_bench_gemm(int M, int N, int K, int iters, bool ta, bool tb, double* ms) {
  if (iters < 1) iters = 1;
  BenchState s;
  LB_CUDA(cudaMalloc(&s.a, (size_t)M * K * 2));
  LB_CUDA(cudaMalloc(&s.b, (size_t)K * N * 2));
  LB_CUDA(cudaMalloc(&s.c, (size_t)M * N * 2));
  const char* err;
  if ((err = cuda_fill_uniform_bf16(s.a, (size_t)M * K, 1, -1.f, 1.f))) return err;
  if ((err = cuda_fill_uniform_bf16(s.b, (size_t)K * N, 2, -1.f, 1.f))) return err;
  for (int i = 0; i < std::max(3, iters / 4); i++)  // warmup: heuristics, clocks, caches
    if ((err = cublas_gemm_bf16(ta, tb, M, N, K, 1.f, s.a, s.b, 0.f, s.c, false))) return err;
  s.ev.resize(iters + 1);
  for (auto& e : s.ev) LB_CUDA(cudaEventCreate(&e));
  // Events between back-to-back launches: one per call boundary, no host sync inside the loop.
  LB_CUDA(cudaEventRecord(s.ev[0], 0));
  for (int i = 0; i < iters; i++) {
    if ((err = cublas_gemm_bf16(ta, tb, M, N, K, 1.f, s.a, s.b, 0.f, s.c, false))) return err;
    LB_CUDA(cudaEventRecord(s.ev[i + 1], 0));
  }
  LB_CUDA(cudaEventSynchronize(s.ev[iters]));
  std::vector<float> t(iters);
  for (int i = 0; i < iters; i++) LB_CUDA(cudaEventElapsedTime(&t[i], s.ev[i], s.ev[i + 1]));
  std::nth_element(t.begin(), t.begin() + iters / 2, t.end());
  *ms = t[iters / 2];
  return nullptr;
}

}  // namespace lowbit
