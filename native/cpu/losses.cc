// Row-wise softmax losses over logits [N, V] (cross-entropy, KL) and the AdamW update: after the GEMMs
// these were the largest part of a CPU training step in TypeScript (exp over the vocabulary for every
// token; a scalar loop over every parameter). Twins: src/model/ops/cross-entropy.ts, kl.ts,
// src/train/adamw.ts. Rows/chunks run on the pool; sums are per task and added in task order, so the
// results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "simd.h"
#include "threadpool.h"

namespace lowbit {
namespace {

constexpr int64_t kChunk = 1 << 15;  // elements per task

inline float row_max(const float* x, int64_t n) {
  vf m = vsplat(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + VW <= n; i += VW) {
    const vf v = vload(x + i);
    m = v > m ? v : m;
  }
  float r = -std::numeric_limits<float>::infinity();
  for (int l = 0; l < VW; l++) r = std::max(r, m[l]);
  for (; i < n; i++) r = std::max(r, x[i]);
  return r;
}

// Σ exp(x[i] - shift); when out is given, out[i] = exp(x[i] - shift) (out may alias x).
inline double sum_exp(const float* x, int64_t n, float shift, float* out) {
  vf acc = vf{};
  int64_t i = 0;
  for (; i + VW <= n; i += VW) {
    const vf e = vexp(vload(x + i) - shift);
    if (out) vstore(out + i, e);
    acc += e;
  }
  double s = 0;
  for (int l = 0; l < VW; l++) s += acc[l];
  for (; i < n; i++) {
    const float e = std::exp(x[i] - shift);
    if (out) out[i] = e;
    s += e;
  }
  return s;
}

inline double log_sum_exp(const float* x, int64_t n) {
  const float m = row_max(x, n);
  return m + std::log(sum_exp(x, n, m, nullptr));
}

// Runs rows [0, N) in tasks of `rows` rows; fn(r0, r1) returns the tasks's partial sum.
template <class F>
double rows_sum(int64_t N, int64_t V, F fn) {
  const int64_t rows = std::max<int64_t>(1, kChunk / std::max<int64_t>(V, 1));
  const int64_t tasks = (N + rows - 1) / rows;
  std::vector<double> part((size_t)tasks, 0.0);
  parallel_for((int)tasks, [&](int t) { part[t] = fn(t * rows, std::min(N, (t + 1) * rows)); });
  double s = 0;
  for (double p : part) s += p;
  return s;
}

}  // namespace

double cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int64_t N, int64_t V) {
  return rows_sum(N, V, [&](int64_t r0, int64_t r1) {
    double s = 0;
    for (int64_t n = r0; n < r1; n++) {
      const int32_t t = targets[n];
      if (t < 0) {
        if (losses) losses[n] = 0.f;
        continue;
      }
      const double l = log_sum_exp(logits + n * V, V) - logits[n * V + t];
      if (losses) losses[n] = (float)l;
      s += l;
    }
    return s;
  });
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets, int64_t N, int64_t V,
                            float scale) {
  rows_sum(N, V, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; n++) {
      const int32_t t = targets[n];
      if (t < 0) continue;
      const float *x = logits + n * V, m = row_max(x, V);
      float* d = dlogits + n * V;
      const float k = (float)(scale / sum_exp(x, V, m, nullptr));
      int64_t i = 0;
      for (; i + VW <= V; i += VW) vstore(d + i, vload(d + i) + vexp(vload(x + i) - m) * k);
      for (; i < V; i++) d[i] += k * std::exp(x[i] - m);
      d[t] -= scale;
    }
    return 0.0;
  });
}

double cross_entropy_fused(float* dlogits, const float* logits, const int32_t* targets, int64_t N, int64_t V,
                           float scale) {
  return rows_sum(N, V, [&](int64_t r0, int64_t r1) {
    double s = 0;
    for (int64_t n = r0; n < r1; n++) {
      const int32_t t = targets[n];
      const float* x = logits + n * V;
      float* d = dlogits + n * V;  // may alias x: x[t] and the max are read before d is written
      if (t < 0) {
        std::fill(d, d + V, 0.f);
        continue;
      }
      const float m = row_max(x, V), xt = x[t];
      const double sum = sum_exp(x, V, m, d);
      s += m + std::log(sum) - xt;
      const float k = (float)(scale / sum);
      int64_t i = 0;
      for (; i + VW <= V; i += VW) vstore(d + i, vload(d + i) * k);
      for (; i < V; i++) d[i] *= k;
      d[t] -= scale;
    }
    return s;
  });
}

double kl_forward(const float* teacher, const float* student, int64_t N, int64_t V) {
  return rows_sum(N, V, [&](int64_t r0, int64_t r1) {
    double s = 0;
    for (int64_t n = r0; n < r1; n++) {
      const float *tr = teacher + n * V, *sr = student + n * V;
      const float lt = (float)log_sum_exp(tr, V), ls = (float)log_sum_exp(sr, V);
      vf acc = vf{};
      int64_t i = 0;
      for (; i + VW <= V; i += VW) {
        const vf lp = vload(tr + i) - lt;
        acc += vexp(lp) * (lp - (vload(sr + i) - ls));
      }
      for (int l = 0; l < VW; l++) s += acc[l];
      for (; i < V; i++) {
        const float lp = tr[i] - lt;
        s += std::exp(lp) * (lp - (sr[i] - ls));
      }
    }
    return s;
  });
}

void kl_backward(float* dstudent, const float* teacher, const float* student, int64_t N, int64_t V, float scale) {
  rows_sum(N, V, [&](int64_t r0, int64_t r1) {
    for (int64_t n = r0; n < r1; n++) {
      const float *tr = teacher + n * V, *sr = student + n * V;
      float* d = dstudent + n * V;
      // p = exp(x - max) / sum: shifting by the exact max (not a float-rounded lse) keeps each
      // probability at float precision, which matters since p_student - p_teacher cancels.
      const float mt = row_max(tr, V), ms = row_max(sr, V);
      const float kt = (float)(scale / sum_exp(tr, V, mt, nullptr)), ks = (float)(scale / sum_exp(sr, V, ms, nullptr));
      int64_t i = 0;
      for (; i + VW <= V; i += VW)
        vstore(d + i, vload(d + i) + vexp(vload(sr + i) - ms) * ks - vexp(vload(tr + i) - mt) * kt);
      for (; i < V; i++) d[i] += std::exp(sr[i] - ms) * ks - std::exp(tr[i] - mt) * kt;
    }
    return 0.0;
  });
}

void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const AdamParams& p) {
  const int64_t tasks = (n + kChunk - 1) / kChunk;
  const float b1 = p.beta1, b2 = p.beta2, c1 = 1.f - p.beta1, c2 = 1.f - p.beta2;
  const float ibc1 = 1.f / p.bc1, ibc2 = 1.f / p.bc2, wd = p.weight_decay, lr = p.lr, eps = p.eps;
  parallel_for((int)tasks, [&](int t) {
    const int64_t i1 = std::min(n, (t + 1) * kChunk);
    // Plain loop: with -fno-math-errno GCC vectorises it, sqrt and division included.
    for (int64_t i = t * kChunk; i < i1; i++) {
      float gi = g[i];
      if (p.coupled) gi += wd * w[i];
      const float mi = b1 * m[i] + c1 * gi, vi = b2 * v[i] + c2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      const float upd = (mi * ibc1) / (std::sqrt(vi * ibc2) + eps);
      w[i] -= lr * (upd + (p.coupled ? 0.f : wd * w[i]));
    }
  });
}

double sum_squares(const float* x, int64_t n) {
  return rows_sum(n, 1, [&](int64_t i0, int64_t i1) {
    vf acc = vf{};
    int64_t i = i0;
    for (; i + VW <= i1; i += VW) acc += vload(x + i) * vload(x + i);
    double s = 0;
    for (int l = 0; l < VW; l++) s += acc[l];
    for (; i < i1; i++) s += (double)x[i] * x[i];
    return s;
  });
}

}  // namespace lowbit
