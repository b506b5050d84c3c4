// Portable SIMD through GCC/Clang vector extensions: the same source becomes zmm code with AVX-512,
// ymm with AVX2/FMA, xmm with SSE2/NEON. `vf * float` broadcasts; with -ffp-contract=fast (GNU default)
// `acc += a * b` becomes an FMA where the target has one.
#pragma once
#include <cstring>

namespace lowbit {

#if defined(__AVX512F__)
constexpr int VW = 16;
#define LOWBIT_SIMD "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int VW = 8;
#define LOWBIT_SIMD "avx2+fma"
#elif defined(__AVX__)
constexpr int VW = 8;
#define LOWBIT_SIMD "avx"
#elif defined(__SSE2__)
constexpr int VW = 4;
#define LOWBIT_SIMD "sse2"
#elif defined(__ARM_NEON)
constexpr int VW = 4;
#define LOWBIT_SIMD "neon"
#else
constexpr int VW = 4;  // generic vectors; the compiler lowers them to scalar code
#define LOWBIT_SIMD "scalar"
#endif

typedef float vf __attribute__((vector_size(VW * 4)));

// Unaligned load/store (memcpy compiles to a single vmovups).
static inline vf vload(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
static inline vf vsplat(float x) { return vf{} + x; }
static inline float vsum(vf v) {
  float s = 0;
  for (int i = 0; i < VW; i++) s += v[i];
  return s;
}

}  // namespace lowbit
