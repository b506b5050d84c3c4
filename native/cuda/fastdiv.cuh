// Division by a run-time divisor that a kernel repeats many times, as a multiply and a shift (the constants made once
// on the host): x / d for 0 ≤ x < 2^31 and d ≥ 1, with l = ⌈log2 d⌉ and m = ⌊2^32·(2^l − d)/d⌋ + 1,
// x / d = (umulhi(x, m) + x) >> l. A software 32-bit division is ~20 dependent instructions, a 64-bit one ~70.
#pragma once
#include <cstdint>

namespace lowbit {

struct FastDiv {
  int d;
  uint32_t m, l;
  static FastDiv make(int d) {
    uint32_t l = 0;
    while ((1ull << l) < (unsigned long long)d) l++;
    return {d, (uint32_t)(((1ull << 32) * ((1ull << l) - (unsigned long long)d)) / (unsigned long long)d + 1), l};
  }
#ifdef __CUDACC__
  __device__ __forceinline__ int div(int x) const { return (int)((__umulhi((uint32_t)x, m) + (uint32_t)x) >> l); }
#endif
};

}  // namespace lowbit
