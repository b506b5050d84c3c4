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

typedef int vi __attribute__((vector_size(VW * 4)));

// exp(x) for x <= 88.3, lanewise, ~1-2 ulp (Cephes expf): x = n*ln2 + r with |r| <= ln2/2,
// exp(r) by a degree-7 polynomial, 2^n put straight into the exponent bits. Inputs below -87.3 give 0.
// The 1.5*2^23 trick rounds to nearest without -ffast-math.
static inline vf vexp(vf x) {
  const vf lo = vsplat(-87.3f), hi = vsplat(88.3f);
  vi under = x < lo;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const vf magic = vsplat(12582912.f);
  vf n = (x * 1.44269504088896341f + magic) - magic;
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = vsplat(1.9875691500E-4f);
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * (r * r) + r + 1.f;
  vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  vf res = p * scale;
  return under ? vf{} : res;
}

}  // namespace lowbit
