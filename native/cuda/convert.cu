// Element-wise fp32 <-> bf16 conversions and a random bf16 fill (benchmarks must not multiply zeros:
// tensor cores are measurably faster on zero data).
#include <cuda_bf16.h>

#include "check.h"
#include "lowbit_cuda.h"

namespace lowbit {
namespace {

constexpr int kThreads = 256;

inline unsigned grid_for(size_t n) {
  size_t g = (n + kThreads - 1) / kThreads;
  return (unsigned)(g > 65535u * 16u ? 65535u * 16u : g);  // grid-stride loops cover the rest
}

__global__ void f32_to_bf16(__nv_bfloat16* dst, const float* src, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void bf16_to_f32(float* dst, const __nv_bfloat16* src, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = __bfloat162float(src[i]);
}

__device__ inline uint32_t hash32(uint32_t x) {  // lowbias32 (Wellons)
  x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
  return x;
}

__global__ void fill_uniform(__nv_bfloat16* dst, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const uint32_t h = hash32((uint32_t)i ^ hash32(seed + (uint32_t)(i >> 32)));
    dst[i] = __float2bfloat16_rn(lo + (hi - lo) * (h >> 8) * (1.0f / 16777216.0f));
  }
}

}  // namespace

const char* cuda_f32_to_bf16(void* dst, const void* src, size_t n) {
  if (n == 0) return nullptr;
  f32_to_bf16<<<grid_for(n), kThreads>>>(static_cast<__nv_bfloat16*>(dst), static_cast<const float*>(src), n);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_bf16_to_f32(void* dst, const void* src, size_t n) {
  if (n == 0) return nullptr;
  bf16_to_f32<<<grid_for(n), kThreads>>>(static_cast<float*>(dst), static_cast<const __nv_bfloat16*>(src), n);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_fill_uniform_bf16(void* dst, size_t n, uint32_t seed, float lo, float hi) {
  if (n == 0) return nullptr;
  fill_uniform<<<grid_for(n), kThreads>>>(static_cast<__nv_bfloat16*>(dst), n, seed, lo, hi);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

}  // namespace lowbit
