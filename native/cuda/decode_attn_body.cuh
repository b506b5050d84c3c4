// The decode attention of one query head (RoPE, the KV cache row, an online softmax over the positions), shared by
// decode kernel 5 (decode.cu: its own launch, folded into the o GEMV, the persistent plan) and the int8-x chain
// (int8x_stream.cu: the chain's attention phase), so every path runs the same code.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "lowbit_cuda.h"

namespace lowbit {
namespace {

__device__ __forceinline__ float bf_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ uint16_t to_bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

// attn_body's shared memory with KW warps (kernel 5: its scratch lies over xs, which stage_own fills only after it)
template <int KW>
__host__ __device__ constexpr int attn_smem_floats(int hd) { return 3 * hd + 2 * KW + KW * hd; }

// One block per query head, KW warps. RoPE of q and of the new k as qkv_epi_kernel does it (then bf16, as the cache and
// the attention kernel see them); the first q head of each KV group writes the cache rows; the warps take positions
// t = warp, warp + KW, … with an online softmax each (lane l: dims l·DPL … l·DPL + DPL − 1), merged at the end.
// sm: (3·HD + 2·KW + KW·HD) floats of shared memory. q, k and v are read through L2 (in the persistent kernel other
// blocks wrote them in an earlier phase of the same launch).
// bt (null: none): the adapters' B·t of the head's q rows, its KV head's k rows and v rows ([3][HD], decode_attn_kernel).
// e.i8: the output as the int8-x GEMV's input (x̂ per group of 64, a = absmax / 127, Σx̂) from the bf16-rounded values,
// as cuda_int8x_prep makes it from bf16 out; needs HD ≤ blockDim.
template <int DPL, int KW, bool I8 = false>
__device__ __forceinline__ void attn_body(const DecodeAttn& e, int h, float* sm, const float* bt = nullptr) {
  constexpr int HD = 32 * DPL;
  float *qs = sm, *kn = qs + HD, *vn = kn + HD, *wm = vn + HD, *wl = wm + KW, *wacc = wl + KW;  // wacc [KW][HD]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int grp = e.Hq / e.Hkv, kvh = h / grp, half = HD / 2, KV = e.Hkv * HD, pos = e.pos;
  auto bfr = [](float f) { return __uint_as_float((uint32_t)to_bf(f) << 16); };
  for (int i = tid; i < half; i += blockDim.x) {
    const float c = __ldg(e.cos + i), s = __ldg(e.sin + i);
    float a = __ldcg(e.q + h * HD + i), b = __ldcg(e.q + h * HD + i + half);
    if (bt) a += bt[i], b += bt[i + half];
    qs[i] = bfr(a * c - b * s);
    qs[i + half] = bfr(b * c + a * s);
    a = __ldcg(e.k + kvh * HD + i), b = __ldcg(e.k + kvh * HD + i + half);
    if (bt) a += bt[HD + i], b += bt[HD + i + half];
    kn[i] = bfr(a * c - b * s);
    kn[i + half] = bfr(b * c + a * s);
  }
  for (int i = tid; i < HD; i += blockDim.x) vn[i] = bfr(__ldcg(e.v + kvh * HD + i) + (bt ? bt[2 * HD + i] : 0.f));
  __syncthreads();
  if (h % grp == 0)
    for (int i = tid; i < HD; i += blockDim.x) {
      e.kc[(size_t)pos * KV + kvh * HD + i] = to_bf(kn[i]);
      e.vc[(size_t)pos * KV + kvh * HD + i] = to_bf(vn[i]);
    }
  const float scale = rsqrtf((float)HD);
  float qv[DPL], acc[DPL];
#pragma unroll
  for (int j = 0; j < DPL; j++) { qv[j] = qs[lane * DPL + j] * scale; acc[j] = 0.f; }
  float m = -INFINITY, l = 0.f;
#pragma unroll 4
  for (int t = warp; t <= pos; t += KW) {
    float kv[DPL], vv[DPL];
    if (t == pos) {
#pragma unroll
      for (int j = 0; j < DPL; j++) { kv[j] = kn[lane * DPL + j]; vv[j] = vn[lane * DPL + j]; }
    } else {
      const uint16_t* kr = e.kc + (size_t)t * KV + kvh * HD + lane * DPL;
      const uint16_t* vr = e.vc + (size_t)t * KV + kvh * HD + lane * DPL;
#pragma unroll
      for (int j = 0; j < DPL; j += 2) {
        const uint32_t kw = __ldg(reinterpret_cast<const uint32_t*>(kr + j)), vw = __ldg(reinterpret_cast<const uint32_t*>(vr + j));
        kv[j] = bf_lo(kw); kv[j + 1] = bf_hi(kw); vv[j] = bf_lo(vw); vv[j + 1] = bf_hi(vw);
      }
    }
    float d = 0.f;
#pragma unroll
    for (int j = 0; j < DPL; j++) d = fmaf(qv[j], kv[j], d);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
    const float mn = fmaxf(m, d), corr = expf(m - mn), pr = expf(d - mn);
    l = fmaf(l, corr, pr);
#pragma unroll
    for (int j = 0; j < DPL; j++) acc[j] = fmaf(acc[j], corr, pr * vv[j]);
    m = mn;
  }
  if (lane == 0) { wm[warp] = m; wl[warp] = l; }
#pragma unroll
  for (int j = 0; j < DPL; j++) wacc[warp * HD + lane * DPL + j] = acc[j];
  __syncthreads();
  auto merged = [&](int d) {
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < KW; w++) M = fmaxf(M, wm[w]);
    float L = 0.f, O = 0.f;
#pragma unroll
    for (int w = 0; w < KW; w++) {
      const float f = wm[w] == -INFINITY ? 0.f : expf(wm[w] - M);
      L = fmaf(wl[w], f, L);
      O = fmaf(wacc[w * HD + d], f, O);
    }
    return O / L;
  };
  if (!I8) {  // a template flag, so kernel 5's folded copy carries none of the int8 tail
    for (int d = tid; d < HD; d += blockDim.x) e.out[h * HD + d] = to_bf(merged(d));
    return;
  }
  // int8-x output: thread d < HD holds value d; a group of 64 is a pair of warps (kn and vn, no longer read, take the
  // pairs' partial max and Σx̂)
  const float v = tid < HD ? bfr(merged(tid)) : 0.f;
  float mx = fabsf(v);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (lane == 0) kn[warp] = mx;
  __syncthreads();
  const float gm = fmaxf(kn[warp & ~1], kn[warp | 1]), sc = gm > 0.f ? gm / 127.f : 1.f;
  const int qv8 = __float2int_rn(v / sc);
  int qs8 = qv8;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) qs8 += __shfl_xor_sync(0xffffffffu, qs8, o);
  if (lane == 0) vn[warp] = __int_as_float(qs8);
  __syncthreads();
  const int Q = e.Hq * HD, ng = Q / 64;
  int8_t* xq = static_cast<int8_t*>(e.i8);
  if (tid < HD) {
    xq[h * HD + tid] = (int8_t)qv8;
    if ((tid & 63) == 0) {
      const int gi = (h * HD + tid) / 64;
      reinterpret_cast<float*>(xq + Q)[gi] = sc;
      reinterpret_cast<int*>(xq + Q + 4 * ng)[gi] = __float_as_int(vn[warp]) + __float_as_int(vn[warp + 1]);
    }
  }
}

}  // namespace
}  // namespace lowbit
