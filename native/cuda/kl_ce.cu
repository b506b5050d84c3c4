// Fused KL(teacher ‖ student) + cross-entropy of LREC distillation (declared in kl_ce.h): per row of a chunk of
// student and teacher logits, the row's KL and CE, accumulated on the device, and the gradient w.r.t. the student
// logits written once for the dHidden GEMM; plus the chunked driver that makes both logit chunks with cuBLAS.
// TypeScript twin: src/model/ops/kl-ce.ts; test/cuda-kl-ce.test.ts compares them.
//
// Conventions as train_ops.cu: default stream (per-thread, capturable), bf16 stored as uint16 (round to nearest
// even), fp32 math; one block per row, warp-shuffle + shared-memory reductions, 16-byte loads when aligned.
#include <cuda_bf16.h>

#include <cstdint>

#include "check.h"
#include "kl_ce.h"
#include "online_softmax.h"
#include "lowbit_cuda.h"

namespace lowbit {
namespace {

constexpr int kMaxThreads = 512;  // per row block (rows of up to 256K logits)

inline bool al(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; }

__device__ inline float nan_f() { return __int_as_float(0x7fc00000); }
__device__ inline uint32_t f2bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Store 4 consecutive gradient values (bf16 or f32).
template <bool F32OUT>
__device__ inline void st4(void* d, size_t i, const float (&v)[4]) {
  if (F32OUT) {
    *reinterpret_cast<float4*>(static_cast<float*>(d) + i) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    *reinterpret_cast<uint2*>(static_cast<uint16_t*>(d) + i) =
        make_uint2(f2bf(v[0]) | (f2bf(v[1]) << 16), f2bf(v[2]) | (f2bf(v[3]) << 16));
  }
}
template <bool F32OUT>
__device__ inline void st1(void* d, size_t i, float v) {
  if (F32OUT) static_cast<float*>(d)[i] = v;
  else static_cast<uint16_t*>(d)[i] = (uint16_t)f2bf(v);
}

// One block per row. VEC: V % 4 == 0, s and t 16-byte aligned, d (when given) 8-byte (bf16) / 16-byte (f32) aligned.
// The gradient of kl_scale·KL + ce_scale·CE w.r.t. the student logits is
//   p_S·(kl_scale + c) − kl_scale·p_T − c·[v == target],  c = ce_scale on counted rows, else 0,
// one exp of each logit per element in the second pass (log-probabilities from the first pass's lse).
template <bool VEC, bool F32OUT>
__global__ void kl_ce_rows_k(const float* s_all, const float* t_all, const int32_t* __restrict__ targets, void* d,
                             float* kl_sum, float* ce_sum, int V, float kl_scale, float ce_scale) {
  __shared__ float shm[2][32], shz[2][32], shk[32];
  const size_t o = (size_t)blockIdx.x * V;
  const float* s = s_all + o;
  const float* t = t_all + o;
  const int tg = targets[blockIdx.x];
  // pass 1: (max, Σexp) of both rows
  float ms = -INFINITY, zs = 0.f, mt = -INFINITY, zt = 0.f;
  if (VEC) {
    for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
      const float4 a = *reinterpret_cast<const float4*>(s + 4 * j), b = *reinterpret_cast<const float4*>(t + 4 * j);
      online_add(ms, zs, a.x); online_add(ms, zs, a.y); online_add(ms, zs, a.z); online_add(ms, zs, a.w);
      online_add(mt, zt, b.x); online_add(mt, zt, b.y); online_add(mt, zt, b.z); online_add(mt, zt, b.w);
    }
  } else {
    for (int i = threadIdx.x; i < V; i += blockDim.x) { online_add(ms, zs, s[i]); online_add(mt, zt, t[i]); }
  }
  warp_ms(ms, zs);
  warp_ms(mt, zt);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) { shm[0][warp] = ms; shz[0][warp] = zs; shm[1][warp] = mt; shz[1][warp] = zt; }
  __syncthreads();
  ms = lane < nw ? shm[0][lane] : -INFINITY; zs = lane < nw ? shz[0][lane] : 0.f;
  mt = lane < nw ? shm[1][lane] : -INFINITY; zt = lane < nw ? shz[1][lane] : 0.f;
  warp_ms(ms, zs);
  warp_ms(mt, zt);
  const float lse_s = ms + logf(zs), lse_t = mt + logf(zt);
  const bool bad = tg >= V, counted = tg >= 0 && !bad;  // tg >= V is misuse: NaN CE and NaN gradient row
  const float c = counted ? ce_scale : 0.f, kp = kl_scale + c;
  // pass 2: Σ p_T (log p_T − log p_S) and the gradient
  float kl = 0.f;
  if (VEC) {
    for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
      const float4 a4 = *reinterpret_cast<const float4*>(s + 4 * j), b4 = *reinterpret_cast<const float4*>(t + 4 * j);
      const float a[4] = {a4.x, a4.y, a4.z, a4.w}, b[4] = {b4.x, b4.y, b4.z, b4.w};
      float g[4];
#pragma unroll
      for (int q = 0; q < 4; q++) {
        const float ls = a[q] - lse_s, lt = b[q] - lse_t, pt = expf(lt);
        kl += pt * (lt - ls);
        g[q] = bad ? nan_f() : expf(ls) * kp - kl_scale * pt - (4 * j + q == tg ? c : 0.f);
      }
      if (d) st4<F32OUT>(d, o + 4 * j, g);
    }
  } else {
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const float ls = s[i] - lse_s, lt = t[i] - lse_t, pt = expf(lt);
      kl += pt * (lt - ls);
      if (d) st1<F32OUT>(d, o + i, bad ? nan_f() : expf(ls) * kp - kl_scale * pt - (i == tg ? c : 0.f));
    }
  }
  kl = warp_sum(kl);
  if (lane == 0) shk[warp] = kl;
  __syncthreads();
  kl = warp_sum(lane < nw ? shk[lane] : 0.f);
  if (threadIdx.x == 0) {
    atomicAdd(kl_sum, kl);
    if (counted) atomicAdd(ce_sum, lse_s - s[tg]);
    else if (bad) atomicAdd(ce_sum, nan_f());
  }
}

template <bool F32OUT>
void launch_rows(bool vec, int rows, int threads, const float* s, const float* t, const int32_t* targets, void* d,
                 float* kl_sum, float* ce_sum, int V, float kl_scale, float ce_scale) {
  if (vec) kl_ce_rows_k<true, F32OUT><<<rows, threads>>>(s, t, targets, d, kl_sum, ce_sum, V, kl_scale, ce_scale);
  else kl_ce_rows_k<false, F32OUT><<<rows, threads>>>(s, t, targets, d, kl_sum, ce_sum, V, kl_scale, ce_scale);
}

}  // namespace

const char* cuda_kl_ce_rows(const float* s, const float* t, const int32_t* targets, void* dlogits, bool d_f32,
                            float* kl_sum, float* ce_sum, int rows, int V, float kl_scale, float ce_scale) {
  if (rows <= 0) return nullptr;
  if (V < 1) return "cuda_kl_ce_rows: V must be >= 1";
  const bool vec = V % 4 == 0 && al(s, 16) && al(t, 16) && (!dlogits || al(dlogits, d_f32 ? 16 : 8));
  // threads: one per (4-)element of the row, rounded up to a warp, within [32, 512]
  const int per = vec ? V / 4 : V;
  int threads = (per + 31) / 32 * 32;
  threads = threads < 32 ? 32 : (threads > kMaxThreads ? kMaxThreads : threads);
  if (d_f32) launch_rows<true>(vec, rows, threads, s, t, targets, dlogits, kl_sum, ce_sum, V, kl_scale, ce_scale);
  else launch_rows<false>(vec, rows, threads, s, t, targets, dlogits, kl_sum, ce_sum, V, kl_scale, ce_scale);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_lm_head_kl_ce(const void* hidden, const void* W, const void* t_hidden, const void* tW,
                               const int32_t* targets, float* dhidden, float* kl_sum, float* ce_sum, int N, int D,
                               int V, float kl_scale, float ce_scale, int chunk_rows, float* s_logits,
                               float* t_logits, void* dlogits) {
  if (N <= 0) return nullptr;
  if (D < 1 || V < 1) return "cuda_lm_head_kl_ce: D and V must be >= 1";
  if (chunk_rows < 1) return "cuda_lm_head_kl_ce: chunkRows must be >= 1";
  if (dhidden && !dlogits) return "cuda_lm_head_kl_ce: a gradient needs the dlogits scratch";
  const uint16_t* h = static_cast<const uint16_t*>(hidden);
  const uint16_t* th = static_cast<const uint16_t*>(t_hidden);
  uint16_t* dl = dhidden ? static_cast<uint16_t*>(dlogits) : nullptr;  // no gradient: losses only
  for (int r0 = 0; r0 < N; r0 += chunk_rows) {
    const int rows = N - r0 < chunk_rows ? N - r0 : chunk_rows;
    // the chunk's student and teacher logits [rows, V] (f32)
    const char* err = cublas_gemm_bf16(false, true, rows, V, D, 1.f, h + (size_t)r0 * D, W, 0.f, s_logits, true);
    if (err) return err;
    if ((err = cublas_gemm_bf16(false, true, rows, V, D, 1.f, th + (size_t)r0 * D, tW, 0.f, t_logits, true))) return err;
    if ((err = cuda_kl_ce_rows(s_logits, t_logits, targets + r0, dl, false, kl_sum, ce_sum, rows, V, kl_scale,
                               ce_scale)))
      return err;
    // dhidden [rows, D] += dlogits [rows, V] · W [V, D]
    if (dhidden && (err = cublas_gemm_bf16(false, false, rows, D, V, 1.f, dl, W, 1.f, dhidden + (size_t)r0 * D, true)))
      return err;
  }
  return nullptr;
}

}  // namespace lowbit
