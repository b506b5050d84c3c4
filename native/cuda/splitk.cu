// Split-K bf16 GEMM for skinny outputs with a long reduction (the LoRA products x·Aᵀ [N, r] over in = 4096 and
// dy·B [N, r] over out = 11008): cuBLAS alone gives such a GEMM a handful of output tiles, i.e. a few SMs
// walking all of K. Here K is cut into `splits` slices computed as one strided-batched GEMM into an fp32 work
// buffer [splits, M, N], then summed (alpha·Σ + beta·C) into C, bf16 or fp32, with its own leading dimension.
#include "check.h"
#include "cublas_dl.h"
#include "lowbit_cuda.h"

#include <cuda_bf16.h>

#include <algorithm>

namespace lowbit {
namespace {

template <bool F32>
__global__ void splitk_reduce(const float* __restrict__ work, int splits, int M, int N, float alpha, float beta,
                              void* __restrict__ C, int ldc) {
  const size_t mn = (size_t)M * N;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < mn; i += (size_t)gridDim.x * blockDim.x) {
    float s = 0.f;
    for (int k = 0; k < splits; k++) s += work[k * mn + i];
    const size_t m = i / N, n = i % N, o = m * (size_t)ldc + n;
    if (F32) {
      float* c = static_cast<float*>(C);
      c[o] = alpha * s + (beta != 0.f ? beta * c[o] : 0.f);
    } else {
      __nv_bfloat16* c = static_cast<__nv_bfloat16*>(C);
      c[o] = __float2bfloat16_rn(alpha * s + (beta != 0.f ? beta * __bfloat162float(c[o]) : 0.f));
    }
  }
}

}  // namespace

const char* cublas_gemm_bf16_splitk(bool tb, int M, int N, int K, float alpha, const void* A, int lda, const void* B,
                                    int ldb, float beta, void* C, int ldc, bool c_f32, int splits, float* work) {
  if (splits < 1 || K % splits != 0) return "cublas_gemm_bf16_splitk: K is not a multiple of splits";
  const char* err = nullptr;
  const CublasApi* api = cublas_api(&err);
  if (!api) return err;
  const int Kc = K / splits;
  const float one = 1.f, zero = 0.f;
  // row-major A [M, K] (lda), B [K, N] (ldb) or, tb, [N, K]; slice i starts at column i·Kc of A and at row
  // (or, tb, column) i·Kc of B. Column-major view as in cublas_gemm_bf16: Cᵀ = op(B)ᵀ·Aᵀ.
  const long long strideA = Kc, strideB = tb ? (long long)Kc : (long long)Kc * ldb, strideC = (long long)M * N;
  cublasStatus_t st = api->gemm_strided_batched_ex(api->handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, N, M, Kc,
                                                   &one, B, CUDA_R_16BF, ldb, strideB, A, CUDA_R_16BF, lda, strideA,
                                                   &zero, work, CUDA_R_32F, N, strideC, splits, CUBLAS_COMPUTE_32F,
                                                   CUBLAS_GEMM_DEFAULT);
  if (st != 0) return cublas_err("cublasGemmStridedBatchedEx (split-K)", st);
  const size_t mn = (size_t)M * N;
  const int threads = 256, blocks = (int)std::min<size_t>((mn + threads - 1) / threads, 4096);
  if (c_f32) splitk_reduce<true><<<blocks, threads>>>(work, splits, M, N, alpha, beta, C, ldc);
  else splitk_reduce<false><<<blocks, threads>>>(work, splits, M, N, alpha, beta, C, ldc);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

}  // namespace lowbit
