// Element-wise / row-wise kernels of the GPU training path (declared in train_ops.h): RMSNorm, RoPE, SwiGLU,
// casts/axpy-style helpers, embedding gather, the fused chunked LM head + cross-entropy, MSE, sum of squares
// and AdamW. TypeScript twins: src/model/ops/{rmsnorm,rope,swiglu,embedding,cross-entropy,mse}.ts and
// src/train/adamw.ts; test/cuda-train-ops.test.ts compares them.
//
// Conventions: legacy default stream; bf16 stored as uint16 (round-to-nearest-even via __float2bfloat16_rn,
// NaN stays NaN); fp32 math and accumulation; size_t indexing (n up to 2^31−1 and beyond). Element-wise kernels
// are grid-stride loops over 16-byte vectors when every pointer is aligned (scalar loop otherwise, and for the
// tail); row kernels use one block per row with warp-shuffle + shared-memory reductions.
#include <cuda_bf16.h>

#include <cstdint>

#include "check.h"
#include "lowbit_cuda.h"
#include "online_softmax.h"
#include "train_ops.h"

namespace lowbit {
namespace {

constexpr int kThreads = 256;      // element-wise kernels
constexpr int kRedBlocks = 1024;   // cap of the grid of the reductions (MSE, sum of squares): one atomic per block
constexpr int kCeThreads = 512;    // cross-entropy row kernel (rows of up to 256K logits)

inline unsigned grid_for(size_t work) {
  size_t g = (work + kThreads - 1) / kThreads;
  if (g < 1) g = 1;
  return (unsigned)(g > 65535u * 16u ? 65535u * 16u : g);  // grid-stride loops cover the rest
}
inline unsigned red_grid(size_t work) {
  const unsigned g = grid_for(work);
  return g > (unsigned)kRedBlocks ? (unsigned)kRedBlocks : g;
}
inline bool al(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; }
// Threads of a row block: one per `per_row` item, rounded up to a warp, within [32, cap].
inline int row_threads(int per_row, int cap) {
  int t = (per_row + 31) / 32 * 32;
  return t < 32 ? 32 : (t > cap ? cap : t);
}

__device__ inline size_t gtid() { return blockIdx.x * (size_t)blockDim.x + threadIdx.x; }
__device__ inline size_t gstride() { return (size_t)gridDim.x * blockDim.x; }

__device__ inline float nanf_() { return __int_as_float(0x7fc00000); }
__device__ inline float bf2f(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }
__device__ inline uint32_t f2bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

// 16-byte f32 vectors, 8-byte (4 × bf16) and 16-byte (8 × bf16) bf16 vectors. Little-endian: element 0 is the low half.
__device__ inline void ld4(const float* p, float (&o)[4]) {
  const float4 t = *reinterpret_cast<const float4*>(p);
  o[0] = t.x; o[1] = t.y; o[2] = t.z; o[3] = t.w;
}
__device__ inline void st4(float* p, const float (&o)[4]) { *reinterpret_cast<float4*>(p) = make_float4(o[0], o[1], o[2], o[3]); }
__device__ inline void ld4bf(const uint16_t* p, float (&o)[4]) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  o[0] = __uint_as_float(u.x << 16); o[1] = __uint_as_float(u.x & 0xffff0000u);
  o[2] = __uint_as_float(u.y << 16); o[3] = __uint_as_float(u.y & 0xffff0000u);
}
__device__ inline void st4bf(uint16_t* p, const float (&o)[4]) {
  *reinterpret_cast<uint2*>(p) = make_uint2(f2bf(o[0]) | (f2bf(o[1]) << 16), f2bf(o[2]) | (f2bf(o[3]) << 16));
}
__device__ inline void ld8bf(const uint16_t* p, float (&o)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int k = 0; k < 4; k++) { o[2 * k] = __uint_as_float(w[k] << 16); o[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u); }
}
__device__ inline void st8bf(uint16_t* p, const float (&o)[8]) {
  *reinterpret_cast<uint4*>(p) = make_uint4(f2bf(o[0]) | (f2bf(o[1]) << 16), f2bf(o[2]) | (f2bf(o[3]) << 16),
                                            f2bf(o[4]) | (f2bf(o[5]) << 16), f2bf(o[6]) | (f2bf(o[7]) << 16));
}

__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the same total. sh: 32
// floats of shared memory; safe to call again (the leading barrier protects sh from the previous call's readers).
__device__ inline float block_sum(float v, float* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  return warp_sum(lane < nw ? sh[lane] : 0.f);
}

// ---------------------------------------------------------------- RMSNorm
// One block per row (grid-stride over rows). VEC: C % 4 == 0 and x, w, y_f32 16-byte, y_bf16 8-byte aligned.
template <bool VEC>
__global__ void rmsnorm_fwd_k(const float* x, const float* __restrict__ w, uint16_t* yb, float* yf, float* rstd,
                              int N, int C, float eps) {
  __shared__ float sh[32];
  for (int row = blockIdx.x; row < N; row += gridDim.x) {
    const size_t o = (size_t)row * C;
    const float* xr = x + o;
    float ss = 0.f;
    if (VEC) {
      for (int j = threadIdx.x; j < C / 4; j += blockDim.x) {
        float a[4];
        ld4(xr + 4 * j, a);
        ss += a[0] * a[0] + a[1] * a[1] + a[2] * a[2] + a[3] * a[3];
      }
    } else {
      for (int i = threadIdx.x; i < C; i += blockDim.x) ss += xr[i] * xr[i];
    }
    ss = block_sum(ss, sh);
    const float r = 1.f / sqrtf(ss / (float)C + eps);
    if (rstd && threadIdx.x == 0) rstd[row] = r;
    if (VEC) {
      for (int j = threadIdx.x; j < C / 4; j += blockDim.x) {
        float a[4], ww[4];
        ld4(xr + 4 * j, a);
        ld4(w + 4 * j, ww);
#pragma unroll
        for (int k = 0; k < 4; k++) a[k] = a[k] * r * ww[k];
        if (yf) st4(yf + o + 4 * j, a);
        if (yb) st4bf(yb + o + 4 * j, a);
      }
    } else {
      for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const float y = xr[i] * r * w[i];
        if (yf) yf[o + i] = y;
        if (yb) yb[o + i] = (uint16_t)f2bf(y);
      }
    }
  }
}

// dx += r·(dout·w − x·k), k = r²/C · Σ dout·w·x. VEC: C % 4 == 0 and every pointer 16-byte aligned.
template <bool VEC>
__global__ void rmsnorm_bwd_k(float* dx, const float* dout, const float* x, const float* __restrict__ w,
                              const float* __restrict__ rstd, int N, int C) {
  __shared__ float sh[32];
  for (int row = blockIdx.x; row < N; row += gridDim.x) {
    const size_t o = (size_t)row * C;
    const float r = rstd[row];
    float dot = 0.f;
    if (VEC) {
      for (int j = threadIdx.x; j < C / 4; j += blockDim.x) {
        float g[4], a[4], ww[4];
        ld4(dout + o + 4 * j, g); ld4(x + o + 4 * j, a); ld4(w + 4 * j, ww);
#pragma unroll
        for (int k = 0; k < 4; k++) dot += g[k] * ww[k] * a[k];
      }
    } else {
      for (int i = threadIdx.x; i < C; i += blockDim.x) dot += dout[o + i] * w[i] * x[o + i];
    }
    dot = block_sum(dot, sh);
    const float k = dot * r * r / (float)C;
    if (VEC) {
      for (int j = threadIdx.x; j < C / 4; j += blockDim.x) {
        float g[4], a[4], ww[4], d[4];
        ld4(dout + o + 4 * j, g); ld4(x + o + 4 * j, a); ld4(w + 4 * j, ww); ld4(dx + o + 4 * j, d);
#pragma unroll
        for (int q = 0; q < 4; q++) d[q] += r * (g[q] * ww[q] - a[q] * k);
        st4(dx + o + 4 * j, d);
      }
    } else {
      for (int i = threadIdx.x; i < C; i += blockDim.x) dx[o + i] += r * (dout[o + i] * w[i] - x[o + i] * k);
    }
  }
}

// ---------------------------------------------------------------- RoPE
// Pairs (i, i+half) of rows [B·T·H] of D = 2·half; row = (b·T + t)·H + h. sgn = +1 forward, −1 backward
// (inverse rotation = rotation by −angle). VEC: two adjacent pairs per thread (half even, x/cos/sin 8-byte and
// out 4-byte aligned).
template <bool VEC>
__global__ void rope_k(const float* x, uint16_t* out, const float* __restrict__ cs, const float* __restrict__ sn,
                       size_t rows, int T, int H, int half, float sgn) {
  const int per = VEC ? half / 2 : half;
  const size_t total = rows * (size_t)per;
  for (size_t p = gtid(); p < total; p += gstride()) {
    const size_t row = p / (unsigned)per;
    const int i = (int)(p - row * (unsigned)per) * (VEC ? 2 : 1);
    const int t = (int)((row / (unsigned)H) % (unsigned)T);
    const float* xr = x + row * (size_t)(2 * half);
    uint16_t* orow = out + row * (size_t)(2 * half);
    const size_t ti = (size_t)t * half + i;
    if (VEC) {
      const float2 a = *reinterpret_cast<const float2*>(xr + i), b = *reinterpret_cast<const float2*>(xr + i + half);
      const float2 c = *reinterpret_cast<const float2*>(cs + ti), s0 = *reinterpret_cast<const float2*>(sn + ti);
      const float sx = sgn * s0.x, sy = sgn * s0.y;
      *reinterpret_cast<uint32_t*>(orow + i) = f2bf(a.x * c.x - b.x * sx) | (f2bf(a.y * c.y - b.y * sy) << 16);
      *reinterpret_cast<uint32_t*>(orow + i + half) = f2bf(b.x * c.x + a.x * sx) | (f2bf(b.y * c.y + a.y * sy) << 16);
    } else {
      const float a = xr[i], b = xr[i + half], c = cs[ti], s = sgn * sn[ti];
      orow[i] = (uint16_t)f2bf(a * c - b * s);
      orow[i + half] = (uint16_t)f2bf(b * c + a * s);
    }
  }
}

// ---------------------------------------------------------------- SwiGLU (bf16)
__device__ inline float sigm(float g) { return 1.f / (1.f + expf(-g)); }

__global__ void swiglu_fwd_k(const uint16_t* gate, const uint16_t* up, uint16_t* out, size_t n, bool vec) {
  const size_t nv = vec ? n / 8 : 0;
  for (size_t j = gtid(); j < nv; j += gstride()) {
    float g[8], u[8], o[8];
    ld8bf(gate + 8 * j, g); ld8bf(up + 8 * j, u);
#pragma unroll
    for (int k = 0; k < 8; k++) o[k] = g[k] / (1.f + expf(-g[k])) * u[k];
    st8bf(out + 8 * j, o);
  }
  for (size_t i = nv * 8 + gtid(); i < n; i += gstride()) {
    const float g = bf2f(gate[i]);
    out[i] = (uint16_t)f2bf(g / (1.f + expf(-g)) * bf2f(up[i]));
  }
}

__device__ inline void swiglu_grad(float d, float g, float u, float& dg, float& du) {
  const float s = sigm(g);
  dg = d * u * s * (1.f + g * (1.f - s));
  du = d * g * s;
}

__global__ void swiglu_bwd_k(const uint16_t* dout, const uint16_t* gate, const uint16_t* up, uint16_t* dgate,
                             uint16_t* dup, size_t n, bool vec) {
  const size_t nv = vec ? n / 8 : 0;
  for (size_t j = gtid(); j < nv; j += gstride()) {
    float d[8], g[8], u[8], dg[8], du[8];
    ld8bf(dout + 8 * j, d); ld8bf(gate + 8 * j, g); ld8bf(up + 8 * j, u);
#pragma unroll
    for (int k = 0; k < 8; k++) swiglu_grad(d[k], g[k], u[k], dg[k], du[k]);
    st8bf(dgate + 8 * j, dg); st8bf(dup + 8 * j, du);
  }
  for (size_t i = nv * 8 + gtid(); i < n; i += gstride()) {
    float dg, du;
    swiglu_grad(bf2f(dout[i]), bf2f(gate[i]), bf2f(up[i]), dg, du);
    dgate[i] = (uint16_t)f2bf(dg);
    dup[i] = (uint16_t)f2bf(du);
  }
}

// ---------------------------------------------------------------- small element-wise helpers
__global__ void add_k(float* out, const float* a, const float* b, size_t n, bool vec) {
  const size_t nv = vec ? n / 4 : 0;
  for (size_t j = gtid(); j < nv; j += gstride()) {
    float x[4], y[4];
    ld4(a + 4 * j, x); ld4(b + 4 * j, y);
#pragma unroll
    for (int k = 0; k < 4; k++) x[k] += y[k];
    st4(out + 4 * j, x);
  }
  for (size_t i = nv * 4 + gtid(); i < n; i += gstride()) out[i] = a[i] + b[i];
}

__global__ void scale_k(float* x, size_t n, float f, bool vec) {
  const size_t nv = vec ? n / 4 : 0;
  for (size_t j = gtid(); j < nv; j += gstride()) {
    float a[4];
    ld4(x + 4 * j, a);
#pragma unroll
    for (int k = 0; k < 4; k++) a[k] *= f;
    st4(x + 4 * j, a);
  }
  for (size_t i = nv * 4 + gtid(); i < n; i += gstride()) x[i] *= f;
}

__global__ void cast_scaled_k(uint16_t* dst, const float* src, size_t n, float scale, bool vec) {
  const size_t nv = vec ? n / 4 : 0;
  for (size_t j = gtid(); j < nv; j += gstride()) {
    float a[4];
    ld4(src + 4 * j, a);
#pragma unroll
    for (int k = 0; k < 4; k++) a[k] *= scale;
    st4bf(dst + 4 * j, a);
  }
  for (size_t i = nv * 4 + gtid(); i < n; i += gstride()) dst[i] = (uint16_t)f2bf(scale * src[i]);
}

__global__ void acc_bf16_k(float* dst, const uint16_t* src, size_t n, float scale, bool vec) {
  const size_t nv = vec ? n / 4 : 0;
  for (size_t j = gtid(); j < nv; j += gstride()) {
    float a[4], d[4];
    ld4bf(src + 4 * j, a); ld4(dst + 4 * j, d);
#pragma unroll
    for (int k = 0; k < 4; k++) d[k] += scale * a[k];
    st4(dst + 4 * j, d);
  }
  for (size_t i = nv * 4 + gtid(); i < n; i += gstride()) dst[i] += scale * bf2f(src[i]);
}

// ---------------------------------------------------------------- embedding
// One block per output row (grid-stride). VEC: D % 4 == 0, out and an f32 table 16-byte / a bf16 table 8-byte aligned.
template <bool BF16, bool VEC>
__global__ void embedding_k(const int32_t* __restrict__ ids, const void* table, float* out, int N, int D, int V) {
  for (int n = blockIdx.x; n < N; n += gridDim.x) {
    const int id = ids[n];
    float* o = out + (size_t)n * D;
    if (id < 0 || id >= V) {  // the caller validates ids; a bad one shows as a NaN row
      for (int i = threadIdx.x; i < D; i += blockDim.x) o[i] = nanf_();
      continue;
    }
    const size_t ro = (size_t)id * D;
    if (VEC) {
      for (int j = threadIdx.x; j < D / 4; j += blockDim.x) {
        float a[4];
        if (BF16) ld4bf(static_cast<const uint16_t*>(table) + ro + 4 * j, a);
        else ld4(static_cast<const float*>(table) + ro + 4 * j, a);
        st4(o + 4 * j, a);
      }
    } else {
      for (int i = threadIdx.x; i < D; i += blockDim.x)
        o[i] = BF16 ? bf2f(static_cast<const uint16_t*>(table)[ro + i]) : static_cast<const float*>(table)[ro + i];
    }
  }
}

// ---------------------------------------------------------------- cross-entropy rows of one LM-head chunk
// One block per row of logits [rows, V]. VEC: V % 4 == 0, logits 16-byte and dlogits 8-byte aligned.
template <bool VEC>
__global__ void ce_rows_k(const float* logits, uint16_t* dlogits, const int32_t* __restrict__ targets, float* loss_sum,
                          int V, float scale) {
  __shared__ float shm[32], shs[32];
  const int row = blockIdx.x;
  const float* l = logits + (size_t)row * V;
  uint16_t* d = dlogits + (size_t)row * V;
  const int t = targets[row];
  if (t < 0 || t >= V) {  // ignored row: zeros; target >= V: misuse, NaN row and NaN loss (block-uniform branch)
    const uint16_t fill = t < 0 ? 0 : 0x7fc0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) d[i] = fill;
    if (t >= V && threadIdx.x == 0) atomicAdd(loss_sum, nanf_());
    return;
  }
  float m = -INFINITY, s = 0.f;
  if (VEC) {
    for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
      float a[4];
      ld4(l + 4 * j, a);
#pragma unroll
      for (int k = 0; k < 4; k++) online_add(m, s, a[k]);
    }
  } else {
    for (int i = threadIdx.x; i < V; i += blockDim.x) online_add(m, s, l[i]);
  }
  warp_ms(m, s);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) { shm[warp] = m; shs[warp] = s; }
  __syncthreads();
  m = lane < nw ? shm[lane] : -INFINITY;
  s = lane < nw ? shs[lane] : 0.f;
  warp_ms(m, s);
  if (threadIdx.x == 0) atomicAdd(loss_sum, m + logf(s) - l[t]);  // the row loss lse − logit[target], in f32
  const float k = scale / s;
  if (VEC) {
    for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
      float a[4];
      ld4(l + 4 * j, a);
#pragma unroll
      for (int q = 0; q < 4; q++) a[q] = k * expf(a[q] - m) - (4 * j + q == t ? scale : 0.f);
      st4bf(d + 4 * j, a);
    }
  } else {
    for (int i = threadIdx.x; i < V; i += blockDim.x) d[i] = (uint16_t)f2bf(k * expf(l[i] - m) - (i == t ? scale : 0.f));
  }
}

// ---------------------------------------------------------------- reductions
// loss += Σ (a−t)² (one atomic per block); da (optional) += k·(a−t). VEC: a, t, da 16-byte aligned.
__global__ void mse_k(const float* a, const float* t, float* da, float* loss, size_t n, float k, bool vec) {
  __shared__ float sh[32];
  float acc = 0.f;
  const size_t nv = vec ? n / 4 : 0;
  for (size_t j = gtid(); j < nv; j += gstride()) {
    float x[4], y[4];
    ld4(a + 4 * j, x); ld4(t + 4 * j, y);
#pragma unroll
    for (int q = 0; q < 4; q++) { y[q] = x[q] - y[q]; acc += y[q] * y[q]; }
    if (da) {
      float g[4];
      ld4(da + 4 * j, g);
#pragma unroll
      for (int q = 0; q < 4; q++) g[q] += k * y[q];
      st4(da + 4 * j, g);
    }
  }
  for (size_t i = nv * 4 + gtid(); i < n; i += gstride()) {
    const float dd = a[i] - t[i];
    acc += dd * dd;
    if (da) da[i] += k * dd;
  }
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) atomicAdd(loss, acc);
}

__global__ void sumsq_k(const float* x, size_t n, float* out, bool vec) {
  __shared__ float sh[32];
  float acc = 0.f;
  const size_t nv = vec ? n / 4 : 0;
  for (size_t j = gtid(); j < nv; j += gstride()) {
    float a[4];
    ld4(x + 4 * j, a);
    acc += a[0] * a[0] + a[1] * a[1] + a[2] * a[2] + a[3] * a[3];
  }
  for (size_t i = nv * 4 + gtid(); i < n; i += gstride()) acc += x[i] * x[i];
  acc = block_sum(acc, sh);
  if (threadIdx.x == 0) atomicAdd(out, acc);
}

// ---------------------------------------------------------------- AdamW
__device__ inline void adam_one(float& p, float g, float& m, float& v, const AdamParams& h) {
  float gi = g * h.grad_scale;
  const bool wd = h.weight_decay != 0.f;
  if (h.coupled_l2 && wd) gi += h.weight_decay * p;
  m = h.beta1 * m + h.one_minus_b1 * gi;
  v = h.beta2 * v + h.one_minus_b2 * gi * gi;
  const float upd = (m / h.bc1) / (sqrtf(v / h.bc2) + h.eps);
  p -= h.lr * (upd + (!h.coupled_l2 && wd ? h.weight_decay * p : 0.f));
}

__global__ void adamw_k(float* p, const float* g, float* m, float* v, size_t n, AdamParams h, bool vec) {
  const size_t nv = vec ? n / 4 : 0;
  for (size_t j = gtid(); j < nv; j += gstride()) {
    float pp[4], gg[4], mm[4], vv[4];
    ld4(p + 4 * j, pp); ld4(g + 4 * j, gg); ld4(m + 4 * j, mm); ld4(v + 4 * j, vv);
#pragma unroll
    for (int k = 0; k < 4; k++) adam_one(pp[k], gg[k], mm[k], vv[k], h);
    st4(p + 4 * j, pp); st4(m + 4 * j, mm); st4(v + 4 * j, vv);
  }
  for (size_t i = nv * 4 + gtid(); i < n; i += gstride()) {
    float pp = p[i], mm = m[i], vv = v[i];
    adam_one(pp, g[i], mm, vv, h);
    p[i] = pp; m[i] = mm; v[i] = vv;
  }
}

}  // namespace

// ================================================================ host entry points

const char* cuda_rmsnorm_fwd(const float* x, const float* w, void* y_bf16, float* y_f32, float* rstd, int N, int C,
                             float eps) {
  if (N <= 0) return nullptr;
  if (C <= 0) return "cuda_rmsnorm_fwd: C must be >= 1";
  const bool vec = C % 4 == 0 && al(x, 16) && al(w, 16) && al(y_f32, 16) && al(y_bf16, 8);
  const int threads = row_threads(vec ? C / 4 : C, 512);
  const unsigned grid = (unsigned)(N < 65535 * 16 ? N : 65535 * 16);
  uint16_t* yb = static_cast<uint16_t*>(y_bf16);
  if (vec) rmsnorm_fwd_k<true><<<grid, threads>>>(x, w, yb, y_f32, rstd, N, C, eps);
  else rmsnorm_fwd_k<false><<<grid, threads>>>(x, w, yb, y_f32, rstd, N, C, eps);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_rmsnorm_bwd(float* dx, const float* dout, const float* x, const float* w, const float* rstd, int N,
                             int C) {
  if (N <= 0 || C <= 0) return nullptr;
  const bool vec = C % 4 == 0 && al(dx, 16) && al(dout, 16) && al(x, 16) && al(w, 16);
  const int threads = row_threads(vec ? C / 4 : C, 512);
  const unsigned grid = (unsigned)(N < 65535 * 16 ? N : 65535 * 16);
  if (vec) rmsnorm_bwd_k<true><<<grid, threads>>>(dx, dout, x, w, rstd, N, C);
  else rmsnorm_bwd_k<false><<<grid, threads>>>(dx, dout, x, w, rstd, N, C);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_rope(const float* x, void* out_bf16, const float* cos, const float* sin, int B, int T, int H, int D,
                      bool backward) {
  if (D % 2) return "cuda_rope: head dim D must be even";
  const size_t rows = (size_t)B * T * H;
  if (rows == 0 || D == 0) return nullptr;
  const int half = D / 2;
  const bool vec = half % 2 == 0 && al(x, 8) && al(cos, 8) && al(sin, 8) && al(out_bf16, 4);
  const size_t work = rows * (size_t)(vec ? half / 2 : half);
  const float sgn = backward ? -1.f : 1.f;
  uint16_t* o = static_cast<uint16_t*>(out_bf16);
  if (vec) rope_k<true><<<grid_for(work), kThreads>>>(x, o, cos, sin, rows, T, H, half, sgn);
  else rope_k<false><<<grid_for(work), kThreads>>>(x, o, cos, sin, rows, T, H, half, sgn);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_swiglu_fwd(const void* gate, const void* up, void* out, size_t n) {
  if (n == 0) return nullptr;
  const bool vec = al(gate, 16) && al(up, 16) && al(out, 16);
  swiglu_fwd_k<<<grid_for(vec ? (n + 7) / 8 : n), kThreads>>>(static_cast<const uint16_t*>(gate),
                                                               static_cast<const uint16_t*>(up),
                                                               static_cast<uint16_t*>(out), n, vec);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_swiglu_bwd(const void* dout, const void* gate, const void* up, void* dgate, void* dup, size_t n) {
  if (n == 0) return nullptr;
  const bool vec = al(dout, 16) && al(gate, 16) && al(up, 16) && al(dgate, 16) && al(dup, 16);
  swiglu_bwd_k<<<grid_for(vec ? (n + 7) / 8 : n), kThreads>>>(
      static_cast<const uint16_t*>(dout), static_cast<const uint16_t*>(gate), static_cast<const uint16_t*>(up),
      static_cast<uint16_t*>(dgate), static_cast<uint16_t*>(dup), n, vec);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_add_f32(float* out, const float* a, const float* b, size_t n) {
  if (n == 0) return nullptr;
  const bool vec = al(out, 16) && al(a, 16) && al(b, 16);
  add_k<<<grid_for(vec ? (n + 3) / 4 : n), kThreads>>>(out, a, b, n, vec);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_scale_f32(float* x, size_t n, float factor) {
  if (n == 0) return nullptr;
  const bool vec = al(x, 16);
  scale_k<<<grid_for(vec ? (n + 3) / 4 : n), kThreads>>>(x, n, factor, vec);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_cast_f32_to_bf16_scaled(void* dst, const float* src, size_t n, float scale) {
  if (n == 0) return nullptr;
  const bool vec = al(dst, 8) && al(src, 16);
  cast_scaled_k<<<grid_for(vec ? (n + 3) / 4 : n), kThreads>>>(static_cast<uint16_t*>(dst), src, n, scale, vec);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_accumulate_bf16_to_f32(float* dst, const void* src, size_t n, float scale) {
  if (n == 0) return nullptr;
  const bool vec = al(dst, 16) && al(src, 8);
  acc_bf16_k<<<grid_for(vec ? (n + 3) / 4 : n), kThreads>>>(dst, static_cast<const uint16_t*>(src), n, scale, vec);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_embedding(const int32_t* ids, const void* table, bool table_bf16, float* out, int N, int D, int V) {
  if (N <= 0 || D <= 0) return nullptr;
  const bool vec = D % 4 == 0 && al(out, 16) && al(table, table_bf16 ? 8 : 16);
  const int threads = row_threads(vec ? D / 4 : D, 256);
  const unsigned grid = (unsigned)(N < 65535 * 16 ? N : 65535 * 16);
  if (table_bf16) {
    if (vec) embedding_k<true, true><<<grid, threads>>>(ids, table, out, N, D, V);
    else embedding_k<true, false><<<grid, threads>>>(ids, table, out, N, D, V);
  } else {
    if (vec) embedding_k<false, true><<<grid, threads>>>(ids, table, out, N, D, V);
    else embedding_k<false, false><<<grid, threads>>>(ids, table, out, N, D, V);
  }
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_lm_head_ce(const void* hidden, const void* W, const int32_t* targets, float* dhidden, float* loss_sum,
                            int N, int D, int V, float scale, int chunk_rows, float* logits, void* dlogits) {
  if (N <= 0) return nullptr;
  if (D < 1 || V < 1) return "cuda_lm_head_ce: D and V must be >= 1";
  if (chunk_rows < 1) return "cuda_lm_head_ce: chunkRows must be >= 1";
  const bool vec = V % 4 == 0 && al(logits, 16) && al(dlogits, 8);
  const uint16_t* h = static_cast<const uint16_t*>(hidden);
  uint16_t* dl = static_cast<uint16_t*>(dlogits);
  for (int r0 = 0; r0 < N; r0 += chunk_rows) {
    const int rows = N - r0 < chunk_rows ? N - r0 : chunk_rows;
    // logits [rows, V] = h [rows, D] · W[V, D]ᵀ (f32)
    const char* err = cublas_gemm_bf16(false, true, rows, V, D, 1.f, h + (size_t)r0 * D, W, 0.f, logits, true);
    if (err) return err;
    if (vec) ce_rows_k<true><<<rows, kCeThreads>>>(logits, dl, targets + r0, loss_sum, V, scale);
    else ce_rows_k<false><<<rows, kCeThreads>>>(logits, dl, targets + r0, loss_sum, V, scale);
    LB_CUDA(cudaGetLastError());
    // dhidden [rows, D] += dlogits [rows, V] · W [V, D]
    if (dhidden && (err = cublas_gemm_bf16(false, false, rows, D, V, 1.f, dl, W, 1.f, dhidden + (size_t)r0 * D, true)))
      return err;
  }
  return nullptr;
}

const char* cuda_mse_f32(const float* a, const float* t, float* da, float* loss_sum, size_t n, float grad_scale) {
  if (n == 0) return nullptr;
  const bool vec = al(a, 16) && al(t, 16) && al(da, 16);
  const float k = (float)(2.0 * (double)grad_scale / (double)n);
  mse_k<<<red_grid(vec ? (n + 3) / 4 : n), kThreads>>>(a, t, da, loss_sum, n, k, vec);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_sum_squares_f32(const float* x, size_t n, float* out) {
  if (n == 0) return nullptr;
  const bool vec = al(x, 16);
  sumsq_k<<<red_grid(vec ? (n + 3) / 4 : n), kThreads>>>(x, n, out, vec);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_adamw(float* p, const float* g, float* m, float* v, size_t n, const AdamParams& hp) {
  if (n == 0) return nullptr;
  const bool vec = al(p, 16) && al(g, 16) && al(m, 16) && al(v, 16);
  adamw_k<<<grid_for(vec ? (n + 3) / 4 : n), kThreads>>>(p, g, m, v, n, hp, vec);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

}  // namespace lowbit
