// Causal GQA attention on the CPU, blocked like FlashAttention but with whole score rows: for a block of
// QB queries, S = scale·Q·Kᵀ over the visible keys, a masked stable softmax in place, O = P·V. The two
// products go through the packed sgemm (single-threaded inside a task), so attention runs at GEMM speed;
// q/k/v/out are addressed in place through leading dimensions (no gathering of heads).
// The forward saves lse = log-sum-exp of the scaled scores; the backward recomputes P = exp(S - lse).
// Query i sits at absolute position i + (Tk - Tq) and sees keys 0..that position.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels.h"
#include "simd.h"
#include "threadpool.h"

namespace lowbit {
namespace {

constexpr int QB = 64;  // query rows per block: S is QB x Tk floats

inline float dot(const float* a, const float* b, int n) {
  vf s = vf{};
  int i = 0;
  for (; i + VW <= n; i += VW) s += vload(a + i) * vload(b + i);
  float r = vsum(s);
  for (; i < n; i++) r += a[i] * b[i];
  return r;
}

inline float row_max(const float* x, int n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}

// x[j] = exp(x[j] - shift) for j < n, returns the sum.
inline float exp_shift(float* x, int n, float shift) {
  vf acc = vf{};
  int j = 0;
  for (; j + VW <= n; j += VW) {
    vf e = vexp(vload(x + j) - shift);
    vstore(x + j, e);
    acc += e;
  }
  float s = vsum(acc);
  for (; j < n; j++) s += (x[j] = std::exp(x[j] - shift));
  return s;
}

struct Dims {
  int B, Tq, Tk, Hq, Hkv, D;
  int64_t ldq() const { return (int64_t)Hq * D; }   // row stride of q, out, dq, dout
  int64_t ldk() const { return (int64_t)Hkv * D; }  // row stride of k, v, dk, dv
  int64_t qrow(int b, int i, int h) const { return ((int64_t)(b * Tq + i) * Hq + h) * D; }
  int64_t krow(int b, int j, int hk) const { return ((int64_t)(b * Tk + j) * Hkv + hk) * D; }
};

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int Tq,
                       int Tk, int Hq, int Hkv, int D) {
  const Dims d{B, Tq, Tk, Hq, Hkv, D};
  const int group = Hq / Hkv, off = Tk - Tq, nblk = (Tq + QB - 1) / QB;
  const float scale = 1.f / std::sqrt((float)D);
  // One (batch, head, query block) per task: outputs are disjoint; later blocks cost more, and the
  // pool's dynamic claiming evens that out.
  parallel_for(B * Hq * nblk, [&](int task) {
    const int blk = nblk - 1 - task % nblk, h = (task / nblk) % Hq, b = task / (nblk * Hq), hk = h / group;
    const int i0 = blk * QB, m = std::min(QB, Tq - i0), nk = i0 + m + off;  // keys seen by the block's last row
    std::vector<float> S((size_t)m * nk);
    sgemm_ex(false, true, m, nk, D, scale, q + d.qrow(b, i0, h), d.ldq(), k + d.krow(b, 0, hk), d.ldk(), 0.f,
             S.data(), nk, false);
    for (int r = 0; r < m; r++) {
      float* s = S.data() + (int64_t)r * nk;
      const int n = i0 + r + off + 1;  // visible keys of this row
      const float mx = row_max(s, n), l = exp_shift(s, n, mx), inv = 1.f / l;
      for (int j = 0; j < n; j++) s[j] *= inv;
      for (int j = n; j < nk; j++) s[j] = 0.f;  // masked
      if (lse) lse[((int64_t)b * Hq + h) * Tq + i0 + r] = mx + std::log(l);
    }
    sgemm_ex(false, false, m, D, nk, 1.f, S.data(), nk, v + d.krow(b, 0, hk), d.ldk(), 0.f, out + d.qrow(b, i0, h),
             d.ldq(), false);
  });
}

namespace {

// Backward for query heads [h0, h1) of batch b (all reading kv head hk): dq rows of those heads, and
// dk/dv of that kv head accumulated into dkb/dvb ([Tk, D] with row stride ldkv).
void backward_heads(const Dims& d, int b, int hk, int h0, int h1, float* dq, float* dkb, float* dvb, int64_t ldkv,
                    const float* dout, const float* q, const float* k, const float* v, const float* out,
                    const float* lse) {
  const int D = d.D, off = d.Tk - d.Tq;
  const float scale = 1.f / std::sqrt((float)D);
  const float *kb = k + d.krow(b, 0, hk), *vb = v + d.krow(b, 0, hk);
  std::vector<float> P((size_t)QB * d.Tk), dS((size_t)QB * d.Tk);
  for (int h = h0; h < h1; h++) {
    for (int i0 = 0; i0 < d.Tq; i0 += QB) {
      const int m = std::min(QB, d.Tq - i0), nk = i0 + m + off;
      const float *qb = q + d.qrow(b, i0, h), *dob = dout + d.qrow(b, i0, h);
      // P = exp(scale·Q·Kᵀ - lse), masked; dP = dO·Vᵀ
      sgemm_ex(false, true, m, nk, D, scale, qb, d.ldq(), kb, d.ldk(), 0.f, P.data(), nk, false);
      sgemm_ex(false, true, m, nk, D, 1.f, dob, d.ldq(), vb, d.ldk(), 0.f, dS.data(), nk, false);
      for (int r = 0; r < m; r++) {
        float *p = P.data() + (int64_t)r * nk, *ds = dS.data() + (int64_t)r * nk;
        const int n = i0 + r + off + 1;
        const float l = lse[((int64_t)b * d.Hq + h) * d.Tq + i0 + r];
        const float delta = dot(dob + r * d.ldq(), out + d.qrow(b, i0 + r, h), D);  // rowsum(dO∘O)
        exp_shift(p, n, l);
        for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - delta) * scale;
        for (int j = n; j < nk; j++) p[j] = ds[j] = 0.f;
      }
      // dV += Pᵀ·dO, dK += dSᵀ·Q, dQ += dS·K
      sgemm_ex(true, false, nk, D, m, 1.f, P.data(), nk, dob, d.ldq(), 1.f, dvb, ldkv, false);
      sgemm_ex(true, false, nk, D, m, 1.f, dS.data(), nk, qb, d.ldq(), 1.f, dkb, ldkv, false);
      sgemm_ex(false, false, m, D, nk, 1.f, dS.data(), nk, kb, d.ldk(), 1.f, dq + d.qrow(b, i0, h), d.ldq(), false);
    }
  }
}

}  // namespace

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, int B, int Tq, int Tk, int Hq,
                        int Hkv, int D) {
  const Dims d{B, Tq, Tk, Hq, Hkv, D};
  const int group = Hq / Hkv;
  if (B * Hkv >= pool_threads() || group == 1) {
    // One (batch, kv head) per task: it owns dk/dv of that head and dq of its query-head group, so no
    // two tasks write the same memory.
    parallel_for(B * Hkv, [&](int task) {
      const int b = task / Hkv, hk = task % Hkv;
      backward_heads(d, b, hk, hk * group, (hk + 1) * group, dq, dk + d.krow(b, 0, hk), dv + d.krow(b, 0, hk),
                     d.ldk(), dout, q, k, v, out, lse);
    });
    return;
  }
  // Fewer (batch, kv head) pairs than threads: one task per query head, each accumulating dk/dv of its
  // kv head into a private [Tk, D] buffer; the buffers are then added in head order (deterministic).
  const int64_t slab = (int64_t)Tk * D;
  std::vector<float> pk((size_t)(B * Hq * slab), 0.f), pv((size_t)(B * Hq * slab), 0.f);
  parallel_for(B * Hq, [&](int task) {
    const int b = task / Hq, h = task % Hq;
    backward_heads(d, b, h / group, h, h + 1, dq, pk.data() + task * slab, pv.data() + task * slab, D, dout, q, k,
                   v, out, lse);
  });
  parallel_for(B * Hkv, [&](int task) {
    const int b = task / Hkv, hk = task % Hkv;
    for (int h = hk * group; h < (hk + 1) * group; h++) {
      const float *sk = pk.data() + (b * Hq + h) * slab, *sv = pv.data() + (b * Hq + h) * slab;
      for (int j = 0; j < Tk; j++) {
        float *rk = dk + d.krow(b, j, hk), *rv = dv + d.krow(b, j, hk);
        for (int e = 0; e < D; e++) rk[e] += sk[(int64_t)j * D + e], rv[e] += sv[(int64_t)j * D + e];
      }
    }
  });
}

}  // namespace lowbit
