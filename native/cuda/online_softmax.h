// Streaming log-sum-exp state (running max, Σexp) of a row of logits, shared by the cross-entropy (train_ops.cu) and
// KL + CE (kl_ce.cu) row kernels: one exp per element, and a symmetric merge so every lane of a butterfly ends with
// the same state.
#pragma once
#include <cmath>

namespace lowbit {
namespace {

// Adds one logit to the running (max, Σexp).
__device__ inline void online_add(float& m, float& s, float x) {
  if (x > m) { s = s * expf(m - x) + 1.f; m = x; }
  else s += expf(x - m);
}
// Merges two (max, Σexp) states. Symmetric bit for bit.
__device__ inline void ms_merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;  // both empty
  s = s * expf(m - mn) + s2 * expf(m2 - mn);
  m = mn;
}
// The state of the whole warp in every lane (butterfly of ms_merge).
__device__ inline void warp_ms(float& m, float& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ms_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}

}  // namespace
}  // namespace lowbit
