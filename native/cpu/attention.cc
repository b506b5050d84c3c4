// Causal GQA attention on the CPU, row by row (no T x T matrix is stored): a query row computes its
// scores, a stable softmax, and the weighted sum of V. The forward saves lse = log-sum-exp of the scaled
// scores so the backward recomputes P = exp(s - lse) instead of storing it.
// Query i sits at absolute position i + (Tk - Tq) and sees keys 0..that position.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "simd.h"
#include "threadpool.h"

namespace lowbit {
namespace {

inline float dot(const float* a, const float* b, int n) {
  vf s = vf{};
  int i = 0;
  for (; i + VW <= n; i += VW) s += vload(a + i) * vload(b + i);
  float r = vsum(s);
  for (; i < n; i++) r += a[i] * b[i];
  return r;
}

inline void axpy(float* y, float a, const float* x, int n) {  // y += a * x
  int i = 0;
  for (; i + VW <= n; i += VW) vstore(y + i, vload(y + i) + vload(x + i) * a);
  for (; i < n; i++) y[i] += a * x[i];
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int Tq,
                       int Tk, int Hq, int Hkv, int D) {
  const int group = Hq / Hkv;
  const float scale = 1.f / std::sqrt((float)D);
  parallel_for(B * Hq, [&](int task) {  // one (batch, query head) per task: outputs are disjoint
    const int b = task / Hq, h = task % Hq, hk = h / group;
    std::vector<float> s((size_t)Tk);
    for (int i = 0; i < Tq; i++) {
      const int last = i + Tk - Tq;  // last visible key
      const float* qi = q + ((int64_t)(b * Tq + i) * Hq + h) * D;
      float* oi = out + ((int64_t)(b * Tq + i) * Hq + h) * D;
      for (int d = 0; d < D; d++) oi[d] = 0.f;
      float* lse_i = lse ? lse + ((int64_t)b * Hq + h) * Tq + i : nullptr;
      if (last < 0) {  // no visible key: empty softmax
        if (lse_i) *lse_i = -std::numeric_limits<float>::infinity();
        continue;
      }
      float m = -std::numeric_limits<float>::infinity();
      for (int j = 0; j <= last; j++) {
        s[j] = dot(qi, k + ((int64_t)(b * Tk + j) * Hkv + hk) * D, D) * scale;
        m = s[j] > m ? s[j] : m;
      }
      float l = 0.f;
      for (int j = 0; j <= last; j++) {
        const float p = std::exp(s[j] - m);
        l += p;
        axpy(oi, p, v + ((int64_t)(b * Tk + j) * Hkv + hk) * D, D);
      }
      const float inv = 1.f / l;
      for (int d = 0; d < D; d++) oi[d] *= inv;
      if (lse_i) *lse_i = m + std::log(l);
    }
  });
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int B, int Tq, int Tk, int Hq,
                        int Hkv, int D) {
  const int group = Hq / Hkv;
  const float scale = 1.f / std::sqrt((float)D);
  // One (batch, kv head) per task: it owns dk/dv of that head and dq of its query-head group, so no
  // two tasks write the same memory.
  parallel_for(B * Hkv, [&](int task) {
    const int b = task / Hkv, hk = task % Hkv;
    std::vector<float> dqi((size_t)D);
    for (int h = hk * group; h < (hk + 1) * group; h++) {
      for (int i = 0; i < Tq; i++) {
        const int last = i + Tk - Tq;
        if (last < 0) continue;
        const int64_t row = ((int64_t)(b * Tq + i) * Hq + h) * D;
        const float *qi = q + row, *doi = dout + row;
        const float lse_i = lse[((int64_t)b * Hq + h) * Tq + i];
        const float delta = dot(doi, out + row, D);  // rowsum(dout * out) = sum_j P_ij dP_ij
        for (int d = 0; d < D; d++) dqi[d] = 0.f;
        for (int j = 0; j <= last; j++) {
          const int64_t kv = ((int64_t)(b * Tk + j) * Hkv + hk) * D;
          const float p = std::exp(dot(qi, k + kv, D) * scale - lse_i);
          const float ds = p * (dot(doi, v + kv, D) - delta) * scale;
          axpy(dv + kv, p, doi, D);
          axpy(dk + kv, ds, qi, D);
          axpy(dqi.data(), ds, k + kv, D);
        }
        axpy(dq + row, 1.f, dqi.data(), D);
      }
    }
  });
}

}  // namespace lowbit
