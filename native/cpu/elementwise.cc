// Memory-bound helpers that profiling of a CPU training step put at ~25% of the time in TypeScript
// (SwiGLU's exp, RMSNorm's row loops). Vectorised with vexp, split over rows/chunks with the pool.
// The TypeScript twins are src/model/ops/swiglu.ts and src/model/ops/rmsnorm.ts.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "simd.h"
#include "threadpool.h"

namespace lowbit {
namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per task for element-wise loops

// Runs fn(i0, i1) over [0, n) in chunks on the pool.
template <class F>
void chunked(int64_t n, int64_t chunk, F fn) {
  const int64_t tasks = (n + chunk - 1) / chunk;
  parallel_for((int)tasks, [&](int t) { fn(t * chunk, std::min(n, (t + 1) * chunk)); });
}

inline float sigmoid(float g) { return 1.f / (1.f + std::exp(-g)); }

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t N) {
  chunked(N, kChunk, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + VW <= i1; i += VW) {
      const vf g = vload(gate + i);
      vstore(out + i, g / (1.f + vexp(-g)) * vload(up + i));
    }
    for (; i < i1; i++) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
  });
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t N) {
  chunked(N, kChunk, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + VW <= i1; i += VW) {
      const vf g = vload(gate + i), d = vload(dout + i), s = 1.f / (1.f + vexp(-g));
      vstore(dgate + i, vload(dgate + i) + d * vload(up + i) * s * (1.f + g * (1.f - s)));
      vstore(dup + i, vload(dup + i) + d * g * s);
    }
    for (; i < i1; i++) {
      const float g = gate[i], s = sigmoid(g), d = dout[i];
      dgate[i] += d * up[i] * s * (1.f + g * (1.f - s));
      dup[i] += d * g * s;
    }
  });
}

namespace {
// sum_i a[i]*b[i] with float lanes and a double total (rows up to ~16k stay at ~1e-7 relative).
inline double dotd(const float* a, const float* b, int64_t n) {
  vf s = vf{};
  int64_t i = 0;
  for (; i + VW <= n; i += VW) s += vload(a + i) * vload(b + i);
  double r = 0;
  for (int l = 0; l < VW; l++) r += s[l];
  for (; i < n; i++) r += (double)a[i] * b[i];
  return r;
}
}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps) {
  chunked(N, std::max<int64_t>(1, kChunk / std::max<int64_t>(C, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; n++) {
      const float* xr = x + n * C;
      float* o = out + n * C;
      const float r = (float)(1.0 / std::sqrt(dotd(xr, xr, C) / C + eps));
      if (rstd) rstd[n] = r;
      int64_t i = 0;
      for (; i + VW <= C; i += VW) vstore(o + i, vload(xr + i) * r * vload(w + i));
      for (; i < C; i++) o[i] = xr[i] * r * w[i];
    }
  });
}

void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                      int64_t N, int64_t C) {
  // dw sums over rows: each task accumulates its own partial, added in task order at the end (deterministic).
  const int64_t rows = std::max<int64_t>(1, kChunk / std::max<int64_t>(C, 1));
  const int64_t tasks = (N + rows - 1) / rows;
  std::vector<float> part(dw ? (size_t)(tasks * C) : 0, 0.f);
  parallel_for((int)tasks, [&](int t) {
    std::vector<float> g((size_t)C);
    float* pw = dw ? part.data() + t * C : nullptr;
    for (int64_t n = t * rows; n < std::min(N, (t + 1) * rows); n++) {
      const float *d = dout + n * C, *xr = x + n * C;
      const float r = rstd[n];
      for (int64_t i = 0; i < C; i++) g[i] = d[i] * w[i];
      const float k = (float)(dotd(g.data(), xr, C) * r * r / C);
      if (dx) {
        float* o = dx + n * C;
        int64_t i = 0;
        for (; i + VW <= C; i += VW) vstore(o + i, vload(o + i) + (vload(g.data() + i) - vload(xr + i) * k) * r);
        for (; i < C; i++) o[i] += r * (g[i] - xr[i] * k);
      }
      if (pw) {
        int64_t i = 0;
        for (; i + VW <= C; i += VW) vstore(pw + i, vload(pw + i) + vload(d + i) * vload(xr + i) * r);
        for (; i < C; i++) pw[i] += d[i] * xr[i] * r;
      }
    }
  });
  if (dw)
    for (int64_t t = 0; t < tasks; t++)
      for (int64_t i = 0; i < C; i++) dw[i] += part[t * C + i];
}

}  // namespace lowbit
