// Plain C++ interface of the CUDA part, free of CUDA types so the N-API glue (cuda_napi.cc) builds
// with g++ alone. Every function returns nullptr on success or a one-line error message naming the
// CUDA/cuBLAS call that failed (valid until the next call on the same thread).
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

// device.cu
const char* cuda_device_info(int* count, char* name, size_t name_len, int* major, int* minor);
const char* cuda_alloc(size_t bytes, void** ptr);
const char* cuda_free(void* ptr);
const char* cuda_upload(void* dst, const void* src, size_t bytes);
const char* cuda_download(void* dst, const void* src, size_t bytes);
const char* cuda_sync();

// convert.cu (bf16 is stored as uint16; round-to-nearest-even, NaN stays NaN)
const char* cuda_f32_to_bf16(void* dst, const void* src, size_t n);
const char* cuda_bf16_to_f32(void* dst, const void* src, size_t n);
// dst[i] = uniform in [lo, hi) from a hash of (seed, i), stored as bf16.
const char* cuda_fill_uniform_bf16(void* dst, size_t n, uint32_t seed, float lo, float hi);

// cublas_dl.cu: lazily dlopen()s libcublas.so.13 and creates one handle.
const char* cublas_load(int* version);

// gemm.cu. Row-major C[M,N] = alpha*op(A)*op(B) + beta*C, A/B bf16, fp32 accumulate, C bf16 or fp32.
const char* cublas_gemm_bf16(bool transA, bool transB, int M, int N, int K, float alpha, const void* A,
                             const void* B, float beta, void* C, bool c_f32);
// `batch` independent GEMMs of the same shape; operand i starts at X + i*strideX (elements; 0 reuses one
// operand for every batch, e.g. a shared weight).
const char* cublas_gemm_bf16_batched(bool transA, bool transB, int M, int N, int K, float alpha, const void* A,
                                     long long strideA, const void* B, long long strideB, float beta, void* C,
                                     long long strideC, int batch, bool c_f32);
// Times cublas_gemm_bf16 (bf16 C) on random data: warmup, then `iters` calls separated by cudaEvents;
// *ms = median per call.
const char* cuda_bench_gemm(int M, int N, int K, int iters, bool transA, bool transB, double* ms);

}  // namespace lowbit
