// Small device utilities for the packed-weight engine: random bytes for benchmark codes.
#include "check.h"
#include "lowbit_cuda.h"

namespace lowbit {
namespace {

__device__ inline uint32_t mix32(uint32_t x) {  // lowbias32 (Wellons)
  x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
  return x;
}

__global__ void fill_bytes(uint32_t* dst, size_t nwords, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nwords; i += (size_t)gridDim.x * blockDim.x)
    dst[i] = mix32((uint32_t)i ^ mix32(seed + 0x9e3779b9u * (uint32_t)(i >> 32)));
}

}  // namespace

const char* cuda_fill_random_bytes(void* dst, size_t n, uint32_t seed) {
  if (n % 4) return "fill_random_bytes: byte count must be a multiple of 4";
  const size_t w = n / 4;
  if (w == 0) return nullptr;
  size_t g = (w + 255) / 256;
  if (g > 65535u * 16u) g = 65535u * 16u;
  fill_bytes<<<(unsigned)g, 256>>>(static_cast<uint32_t*>(dst), w, seed);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

}  // namespace lowbit
