// Decode-time GEMVs (M = 1): the fused low-bit GEMV that reads packed codes directly, and a dense bf16
// GEMV for the skinny LoRA factors.
//
// Fused GEMV: a block of 128 threads owns R = 4 output rows; thread c takes 32-element chunks c, c+128, …
// of the input dimension. A chunk's codes are 4·bits bytes (one 8/16-byte load for 2/4 bits), its 32 x
// values are loaded once (float4, L1-resident) and reused for the 4 rows; all 4 rows' code words are loaded
// before any is used. Per chunk and row: dot = Σ q_j·x_j (codes to float by the 2^23 magic-number trick,
// 'nf': level table in shared memory), then 'int': s·(dot − z·Σx), 'nf': absmax·dot (+ τ·Σx). fp32 throughout,
// warp-shuffle then shared-memory reduction over the block.
#include <algorithm>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "check.h"
#include "lowbit_cuda.h"

namespace lowbit {
namespace {

constexpr int kGemvThreads = 128;
constexpr int kRows = 4;

template <int B>
__device__ __forceinline__ void load_chunk(const uint8_t* codes, size_t chunk, uint32_t (&w)[B]) {
  const uint8_t* p = codes + chunk * (4 * B);
  if constexpr (B == 2) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    w[0] = v.x; w[1] = v.y;
  } else if constexpr (B == 4) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
  } else if constexpr (B == 8) {
    const uint4 a = __ldg(reinterpret_cast<const uint4*>(p)), b = __ldg(reinterpret_cast<const uint4*>(p) + 1);
    w[0] = a.x; w[1] = a.y; w[2] = a.z; w[3] = a.w; w[4] = b.x; w[5] = b.y; w[6] = b.z; w[7] = b.w;
  } else {
#pragma unroll
    for (int k = 0; k < B; k++) w[k] = __ldg(reinterpret_cast<const uint32_t*>(p) + k);
  }
}

template <int B>
__device__ __forceinline__ uint32_t extract(const uint32_t (&w)[B], int j) {  // j compile-time after unrolling
  const int pos = j * B, k = pos >> 5, o = pos & 31;
  uint32_t v = w[k] >> o;
  if (o + B > 32) v |= w[k + 1] << (32 - o);
  return v & ((1u << B) - 1);
}

__device__ __forceinline__ float code_f(uint32_t q) { return __uint_as_float(0x4B000000u | q) - 8388608.0f; }

template <int B, bool NF>
__global__ void __launch_bounds__(kGemvThreads) qgemv_kernel(QDesc d, const float* __restrict__ x,
                                                             float* __restrict__ y, bool accumulate) {
  __shared__ float lev[NF ? (1 << B) : 1];
  __shared__ float map[256];
  __shared__ float red[kGemvThreads / 32][kRows];
  if constexpr (NF) {
    if (threadIdx.x < (1 << B)) lev[threadIdx.x] = d.levels[threadIdx.x];
    if (d.dynmap) for (int i = threadIdx.x; i < 256; i += kGemvThreads) map[i] = d.dynmap[i];
    __syncthreads();
  }
  const int r0 = blockIdx.x * kRows;
  const int nch = d.in >> 5;                 // chunks per row
  const int ng = (d.in + d.group - 1) / d.group;
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; r++) acc[r] = 0.f;

  for (int c = threadIdx.x; c < nch; c += kGemvThreads) {
    uint32_t w[kRows][B];
#pragma unroll
    for (int r = 0; r < kRows; r++) {
      const int row = min(r0 + r, d.out - 1);  // clamped: rows past the end are computed and dropped
      load_chunk<B>(d.codes, (size_t)row * nch + c, w[r]);
    }
    float xv[32];
    const float4* xp = reinterpret_cast<const float4*>(x) + c * 8;
#pragma unroll
    for (int k = 0; k < 8; k++) {
      const float4 v = __ldg(xp + k);
      xv[4 * k] = v.x; xv[4 * k + 1] = v.y; xv[4 * k + 2] = v.z; xv[4 * k + 3] = v.w;
    }
    float xs = 0.f;
#pragma unroll
    for (int j = 0; j < 32; j++) xs += xv[j];
#pragma unroll
    for (int r = 0; r < kRows; r++) {
      const int row = min(r0 + r, d.out - 1);
      float dot = 0.f;
#pragma unroll
      for (int j = 0; j < 32; j++) {
        const uint32_t q = extract<B>(w[r], j);
        dot = fmaf(NF ? lev[q] : code_f(q), xv[j], dot);
      }
      if constexpr (!NF) {
        const uint32_t m = __ldg(d.sz + (size_t)row * ng + (c * 32) / d.group);
        const float s = __half2float(__ushort_as_half((unsigned short)(m & 0xffff)));
        const float z = __half2float(__ushort_as_half((unsigned short)(m >> 16)));
        acc[r] = fmaf(s, fmaf(-z, xs, dot), acc[r]);
      } else {
        const size_t b = ((size_t)row * d.in + (size_t)c * 32) / (unsigned)d.group;
        const float a = d.absmax ? __ldg(d.absmax + b)
                                 : __fadd_rn(__fmul_rn(map[__ldg(d.absq + b)], __ldg(d.absscale + b / 256)), d.absoffset);
        acc[r] = fmaf(a, dot, acc[r]);
        if (d.tauq) acc[r] = fmaf(__fmul_rn(map[__ldg(d.tauq + b)], __ldg(d.tauscale + b / 256)), xs, acc[r]);
      }
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int r = 0; r < kRows; r++) {
    float v = acc[r];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) red[warp][r] = v;
  }
  __syncthreads();
  if (threadIdx.x < kRows && r0 + (int)threadIdx.x < d.out) {
    float v = 0.f;
#pragma unroll
    for (int k = 0; k < kGemvThreads / 32; k++) v += red[k][threadIdx.x];
    float* yp = y + r0 + threadIdx.x;
    *yp = accumulate ? *yp + v : v;
  }
}

// ---- v2: warp per row pair, 16-byte chunks, prefetch, ~3 instructions per weight ----
// A warp owns R2 = 2 rows; lane l takes chunks l, l+32, … of CW words (16 bytes for 2/4/8 bits, 12 for 3),
// i.e. CPC = 32·CW/B codes; the next chunk's words (both rows) are loaded before the current one is used.
// The per-chunk sums Σx are computed once per block into shared memory. Code → float without a
// subtraction: the code is moved to the top mantissa bits of 1.0f (one shift + one LOP3), f = 1 + q·2^−B,
// so Σ f·x = Σx + 2^−B·Σ q·x and dot = 2^B·(Σ f·x − Σx) per chunk (the bias is of the order of the signal,
// not 2^23 times it as with the usual magic number, so fp32 keeps ~1e-7 relative accuracy).
constexpr int kRows2 = 2;
constexpr int kWarps2 = 4;
constexpr int kMaxXsum = 12288;  // chunks per row held in shared memory (48 KB)

template <int B> struct Chunk { static constexpr int CW = B == 3 ? 3 : 4; static constexpr int CPC = 32 * CW / B; };

template <int B>
__device__ __forceinline__ void load_chunk2(const uint8_t* codes, size_t chunk, uint32_t (&w)[Chunk<B>::CW]) {
  if constexpr (Chunk<B>::CW == 4) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(codes) + chunk);
    w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
  } else {
    const uint32_t* p = reinterpret_cast<const uint32_t*>(codes) + chunk * 3;
    w[0] = __ldg(p); w[1] = __ldg(p + 1); w[2] = __ldg(p + 2);
  }
}

// 1 + q_j·2^−B as a float: code j moved to mantissa bits [23−B, 23) of 1.0f.
template <int B, int CW>
__device__ __forceinline__ float code_biased(const uint32_t (&w)[CW], int j) {
  const int pos = j * B, k = pos >> 5, o = pos & 31;
  uint32_t v;
  if (o + B <= 32) {
    const int sh = (23 - B) - o;
    v = sh >= 0 ? (w[k] << sh) : (w[k] >> -sh);
  } else {  // straddles two words (3 bits)
    const uint32_t q = ((w[k] >> o) | (w[k + 1] << (32 - o)));
    v = q << (23 - B);
  }
  return __uint_as_float((v & (((1u << B) - 1) << (23 - B))) | 0x3F800000u);
}

template <int B, bool NF>
__global__ void __launch_bounds__(kWarps2 * 32) qgemv2_kernel(QDesc d, const float* __restrict__ x,
                                                               float* __restrict__ y, bool accumulate) {
  constexpr int CW = Chunk<B>::CW, CPC = Chunk<B>::CPC;
  extern __shared__ float xsum[];  // [nch]
  __shared__ float lev[NF ? (1 << B) : 1];
  __shared__ float map[256];
  const int nch = d.in / CPC;
  if constexpr (NF) {
    if (threadIdx.x < (1 << B)) lev[threadIdx.x] = d.levels[threadIdx.x];
    if (d.dynmap) for (int i = threadIdx.x; i < 256; i += kWarps2 * 32) map[i] = d.dynmap[i];
  }
  for (int k = threadIdx.x; k < nch; k += kWarps2 * 32) {
    const float4* xp = reinterpret_cast<const float4*>(x) + (size_t)k * (CPC / 4);
    float s0 = 0.f, s1 = 0.f;
#pragma unroll
    for (int j = 0; j < CPC / 4; j++) {
      const float4 v = __ldg(xp + j);
      s0 += v.x + v.y;
      s1 += v.z + v.w;
    }
    xsum[k] = s0 + s1;
  }
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int ng = (d.in + d.group - 1) / d.group;
  // grid-stride over row pairs: the grid is sized to the resident blocks, so there is no tail wave
  for (int r0 = (blockIdx.x * kWarps2 + (threadIdx.x >> 5)) * kRows2; r0 < d.out; r0 += gridDim.x * kWarps2 * kRows2) {
  int rows[kRows2];
#pragma unroll
  for (int r = 0; r < kRows2; r++) rows[r] = min(r0 + r, d.out - 1);
  float acc[kRows2];
#pragma unroll
  for (int r = 0; r < kRows2; r++) acc[r] = 0.f;
  uint32_t cur[kRows2][CW], nxt[kRows2][CW];
  if (lane < nch) {
#pragma unroll
    for (int r = 0; r < kRows2; r++) load_chunk2<B>(d.codes, (size_t)rows[r] * nch + lane, cur[r]);
  }
  for (int c = lane; c < nch; c += 32) {
    const int cn = c + 32;
    if (cn < nch) {
#pragma unroll
      for (int r = 0; r < kRows2; r++) load_chunk2<B>(d.codes, (size_t)rows[r] * nch + cn, nxt[r]);
    }
    float xv[CPC];
    const float4* xp = reinterpret_cast<const float4*>(x) + (size_t)c * (CPC / 4);
#pragma unroll
    for (int k = 0; k < CPC / 4; k++) {
      const float4 v = __ldg(xp + k);
      xv[4 * k] = v.x; xv[4 * k + 1] = v.y; xv[4 * k + 2] = v.z; xv[4 * k + 3] = v.w;
    }
    const float xs = xsum[c];
#pragma unroll
    for (int r = 0; r < kRows2; r++) {
      float dot;
      if constexpr (NF) {
        float d0 = 0.f, d1 = 0.f;
#pragma unroll
        for (int j = 0; j < CPC; j++) {
          const int pos = j * B, k = pos >> 5, o = pos & 31;
          uint32_t q = cur[r][k] >> o;
          if (o + B > 32) q |= cur[r][k + 1] << (32 - o);
          if (j & 1) d1 = fmaf(lev[q & ((1u << B) - 1)], xv[j], d1);
          else d0 = fmaf(lev[q & ((1u << B) - 1)], xv[j], d0);
        }
        dot = d0 + d1;
      } else {
        float s0 = 0.f, s1 = 0.f;
#pragma unroll
        for (int j = 0; j < CPC; j++) {
          if (j & 1) s1 = fmaf(code_biased<B, CW>(cur[r], j), xv[j], s1);
          else s0 = fmaf(code_biased<B, CW>(cur[r], j), xv[j], s0);
        }
        dot = ((s0 + s1) - xs) * (float)(1 << B);
      }
      if constexpr (!NF) {
        const uint32_t m = __ldg(d.sz + (size_t)rows[r] * ng + (c * CPC) / d.group);
        const float s = __half2float(__ushort_as_half((unsigned short)(m & 0xffff)));
        const float z = __half2float(__ushort_as_half((unsigned short)(m >> 16)));
        acc[r] = fmaf(s, fmaf(-z, xs, dot), acc[r]);
      } else {
        const size_t b = ((size_t)rows[r] * d.in + (size_t)c * CPC) / (unsigned)d.group;
        const float a = d.absmax ? __ldg(d.absmax + b)
                                 : __fadd_rn(__fmul_rn(map[__ldg(d.absq + b)], __ldg(d.absscale + b / 256)), d.absoffset);
        acc[r] = fmaf(a, dot, acc[r]);
        if (d.tauq) acc[r] = fmaf(__fmul_rn(map[__ldg(d.tauq + b)], __ldg(d.tauscale + b / 256)), xs, acc[r]);
      }
    }
    if (cn < nch) {
#pragma unroll
      for (int r = 0; r < kRows2; r++)
#pragma unroll
        for (int k = 0; k < CW; k++) cur[r][k] = nxt[r][k];
    }
  }
#pragma unroll
  for (int r = 0; r < kRows2; r++) {
    float v = acc[r];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == r && r0 + r < d.out) {
      float* yp = y + r0 + r;
      *yp = accumulate ? *yp + v : v;
    }
  }
  }  // row pairs
}

// ---- v3: x staged once per block in shared memory, R rows per thread, 2.5 instructions per 2-bit weight ----
// A block of 256 threads is cut into row sets of TPR threads (TPR = 32, 64 or 128: the smallest power of two
// >= the chunks per row, at most 128); a row set owns R consecutive rows (R = 4 or 8, picked on the host from the
// occupancy, see qgemv3_launch; one block per RB rows, no persistent loop), so a
// block owns RB = (256 / TPR)·R rows. Thread kl of a set takes chunks kl, kl + TPR, … of 16 bytes (CPC = 64
// codes at 2 bits, 32 at 4): for each chunk it loads the R rows' 16-byte code words and R sz words (all issued
// before any is used; the first chunk's are issued before x is staged), then reads the chunk's x from shared
// memory 8 values at a time (two conflict-free LDS.128: chunks are padded to CPC + 4 floats, an odd number of
// 16-byte slots) and reuses them for the R rows.
// x is staged pre-scaled: x'_e = x_e·2^(23−p_e), where p_e is the mantissa bit where code e is placed: 2 bits:
// one shift brings codes (2m, 2m+1) of a word to bits [19, 21) and [21, 23), one LOP3 each makes 1 + q·2^−4 and
// 1 + q·2^−2 (x' = 16x and 4x); 4 bits: code to bits [19, 23), 1 + q·2^−4 (x' = 16x). So f·x' = x' + q·x and
// per chunk Σ q·x = Σ f·x' − Σ x' (the bias Σ x' and Σ x precomputed per chunk in shared memory). Per weight:
// 2 bits 0.5 SHF + 1 LOP3 + 1 FFMA, 4 bits 1 + 1 + 1. Per chunk and row: s·((S − Σx') − z·Σx), fp32 throughout.
constexpr int kThreads3 = 256;

__device__ __forceinline__ uint32_t word_of(const uint4& v, int k) { return k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w; }
__device__ __forceinline__ uint32_t shift_s(uint32_t w, int s) { return s >= 0 ? w >> s : w << -s; }  // s compile-time

template <int B, int R>
__global__ void __launch_bounds__(kThreads3, R == 4 ? 4 : 2) qgemv3_kernel(QDesc d, const float* __restrict__ x,
                                                                            float* __restrict__ y, bool accumulate,
                                                                            int tpr_log2) {
  constexpr int CPC = 128 / B, PAD = CPC + 4, F4 = CPC / 4, WPC = 32 / B;  // codes per chunk, padded, float4s, codes per word
  extern __shared__ float4 smem3[];
  __shared__ float red[kThreads3 / 32][R];
  const int nch = d.in / CPC;
  float* xsum_s = reinterpret_cast<float*>(smem3) + (size_t)nch * PAD;  // [nch] Σ x
  float* xb_s = xsum_s + nch;                                            // [nch] Σ x'
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int tpr = 1 << tpr_log2, kl = tid & (tpr - 1), set = tid >> tpr_log2;
  const int rb = (kThreads3 >> tpr_log2) * R;
  const int rbase = blockIdx.x * rb + set * R;
  const int ng = (d.in + d.group - 1) / d.group, cpg = d.group / CPC;
  const uint4* codes = reinterpret_cast<const uint4*>(d.codes);
  int rows[R];
#pragma unroll
  for (int r = 0; r < R; r++) rows[r] = min(rbase + r, d.out - 1);  // clamped: rows past the end are computed and dropped
  uint4 w[R];
  uint32_t m[R];
  int c = kl;
  if (c < nch) {
    const int g = c / cpg;
#pragma unroll
    for (int r = 0; r < R; r++) w[r] = __ldg(codes + (size_t)rows[r] * nch + c);
#pragma unroll
    for (int r = 0; r < R; r++) m[r] = __ldg(d.sz + (size_t)rows[r] * ng + g);
  }
  // stage x' and the per-chunk sums; a chunk is F4 consecutive float4s = F4 aligned lanes of a warp
  const int nf = d.in >> 2;
  for (int f0 = warp * 32; f0 < nf; f0 += kThreads3) {  // warp-uniform bounds: every lane shuffles
    const int f = f0 + lane;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (f < nf) v = __ldg(reinterpret_cast<const float4*>(x) + f);
    const float4 sv = B == 2 ? make_float4(16.f * v.x, 4.f * v.y, 16.f * v.z, 4.f * v.w)
                             : make_float4(16.f * v.x, 16.f * v.y, 16.f * v.z, 16.f * v.w);
    float ls = (v.x + v.y) + (v.z + v.w), lb = (sv.x + sv.y) + (sv.z + sv.w);
#pragma unroll
    for (int o = F4 / 2; o > 0; o >>= 1) {
      ls += __shfl_xor_sync(0xffffffffu, ls, o);
      lb += __shfl_xor_sync(0xffffffffu, lb, o);
    }
    if (f < nf) {
      const int cc = f / F4, p = f % F4;
      smem3[cc * (PAD / 4) + p] = sv;
      if (p == 0) { xsum_s[cc] = ls; xb_s[cc] = lb; }
    }
  }
  __syncthreads();
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; r++) acc[r] = 0.f;
  for (; c < nch; c += tpr) {
    float S[R];
#pragma unroll
    for (int r = 0; r < R; r++) S[r] = 0.f;
    const float4* xc = smem3 + c * (PAD / 4);
#pragma unroll
    for (int e0 = 0; e0 < CPC; e0 += 8) {  // 8 codes of each row per step: e0..e0+7 of the chunk
      const float4 a = xc[e0 / 4], b = xc[e0 / 4 + 1];
      const float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
      const int k = e0 / WPC, j0 = e0 % WPC;  // word of the chunk, first code in it
#pragma unroll
      for (int r = 0; r < R; r++) {
        const uint32_t wd = word_of(w[r], k);
        if constexpr (B == 2) {
#pragma unroll
          for (int mm = 0; mm < 4; mm++) {  // codes j, j + 1 (j even) at bits [2j, 2j + 4) → [19, 23)
            const uint32_t v = shift_s(wd, 2 * (j0 + 2 * mm) - 19);
            S[r] = fmaf(__uint_as_float((v & (3u << 19)) | 0x3F800000u), xv[2 * mm], S[r]);
            S[r] = fmaf(__uint_as_float((v & (3u << 21)) | 0x3F800000u), xv[2 * mm + 1], S[r]);
          }
        } else {
#pragma unroll
          for (int jj = 0; jj < 8; jj++) {  // code j0 + jj at bits [4(j0 + jj), +4) → [19, 23)
            const uint32_t v = shift_s(wd, 4 * (j0 + jj) - 19);
            S[r] = fmaf(__uint_as_float((v & (15u << 19)) | 0x3F800000u), xv[jj], S[r]);
          }
        }
      }
    }
    const float xs = xsum_s[c], xb = xb_s[c];
#pragma unroll
    for (int r = 0; r < R; r++) {
      const float s = __half2float(__ushort_as_half((unsigned short)(m[r] & 0xffff)));
      const float z = __half2float(__ushort_as_half((unsigned short)(m[r] >> 16)));
      acc[r] = fmaf(s, fmaf(-z, xs, S[r] - xb), acc[r]);
    }
    const int cn = c + tpr;
    if (cn < nch) {
      const int g = cn / cpg;
#pragma unroll
      for (int r = 0; r < R; r++) w[r] = __ldg(codes + (size_t)rows[r] * nch + cn);
#pragma unroll
      for (int r = 0; r < R; r++) m[r] = __ldg(d.sz + (size_t)rows[r] * ng + g);
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++) {
    float v = acc[r];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) red[warp][r] = v;
  }
  __syncthreads();
  if (tid < rb) {  // row rbase' + r of set tid / R: the sum over the set's TPR / 32 warps
    const int row = blockIdx.x * rb + tid, s2 = tid / R, r = tid % R, wps = tpr >> 5;
    if (row < d.out) {
      float v = 0.f;
      for (int k = 0; k < wps; k++) v += red[s2 * wps + k][r];
      y[row] = accumulate ? y[row] + v : v;
    }
  }
}

// Sets the kernel's dynamic shared memory limit when above the default 48 KB; *per_sm = resident blocks per SM.
template <int B, int R>
const char* qgemv3_prepare(size_t smem, int* per_sm) {
  static size_t attr = 48 * 1024;
  if (smem > attr) {
    LB_CUDA(cudaFuncSetAttribute((const void*)qgemv3_kernel<B, R>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attr = smem;
  }
  if (per_sm) LB_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(per_sm, (const void*)qgemv3_kernel<B, R>, kThreads3, smem));
  return nullptr;
}

template <int B>
const char* qgemv3_launch(const QDesc& d, const float* x, float* y, bool accumulate, cudaStream_t s, int force_r) {
  constexpr int CPC = 128 / B;
  const int nch = d.in / CPC;
  int tl = 5;
  while ((1 << tl) < nch && tl < 7) tl++;
  const int sets = kThreads3 >> tl;
  const size_t smem = ((size_t)nch * (CPC + 4) + 2 * (size_t)nch) * sizeof(float);
  static int sms = 0, optin = 0;
  if (!sms) {
    LB_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
    LB_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  }
  if (smem + kThreads3 / 32 * 8 * sizeof(float) > (size_t)optin)
    return "qgemv: variant 3 stages x in shared memory (4.4 bytes per input at 2 bits): in is too large";
  int R = force_r;
  if (R != 4 && R != 8) {
    // 8 rows per thread (half the x staging per row) when its grid covers every SM in one resident wave; else 4
    // (twice the warps) when that fits in one wave; else 8.
    int per4 = 0, per8 = 0;
    if (const char* e = qgemv3_prepare<B, 4>(smem, &per4)) return e;
    if (const char* e = qgemv3_prepare<B, 8>(smem, &per8)) return e;
    const long long b4 = (d.out + sets * 4 - 1) / (sets * 4), b8 = (d.out + sets * 8 - 1) / (sets * 8);
    R = b8 >= sms && b8 <= (long long)per8 * sms ? 8 : b4 <= (long long)per4 * sms ? 4 : 8;
  }
  const unsigned grid = (unsigned)((d.out + sets * R - 1) / (sets * R));
  if (R == 4) {
    if (const char* e = qgemv3_prepare<B, 4>(smem, nullptr)) return e;
    qgemv3_kernel<B, 4><<<grid, kThreads3, smem, s>>>(d, x, y, accumulate, tl);
  } else {
    if (const char* e = qgemv3_prepare<B, 8>(smem, nullptr)) return e;
    qgemv3_kernel<B, 8><<<grid, kThreads3, smem, s>>>(d, x, y, accumulate, tl);
  }
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

// Dense bf16 GEMV. TPR threads per row (a power of two, up to the 256 of the block), 8 bf16 per 16-byte load.
constexpr int kDenseThreads = 256;

__global__ void __launch_bounds__(kDenseThreads) gemv_bf16_kernel(const __nv_bfloat16* __restrict__ W, int rows,
                                                                  int K, const float* __restrict__ x,
                                                                  float* __restrict__ y, bool accumulate, int tpr) {
  __shared__ float red[kDenseThreads / 32];
  const int rpb = kDenseThreads / tpr;
  const int sub = threadIdx.x % tpr, rib = threadIdx.x / tpr;
  const int row = blockIdx.x * rpb + rib;
  float acc = 0.f;
  if (row < rows) {
    const __nv_bfloat16* wr = W + (size_t)row * K;
    if ((K & 7) == 0) {
      for (int k = sub * 8; k < K; k += tpr * 8) {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>(wr + k));
        const float4 a = __ldg(reinterpret_cast<const float4*>(x + k)), b = __ldg(reinterpret_cast<const float4*>(x + k) + 1);
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
        float2 f0 = __bfloat1622float2(h[0]), f1 = __bfloat1622float2(h[1]), f2 = __bfloat1622float2(h[2]),
               f3 = __bfloat1622float2(h[3]);
        acc = fmaf(f0.x, a.x, acc); acc = fmaf(f0.y, a.y, acc); acc = fmaf(f1.x, a.z, acc); acc = fmaf(f1.y, a.w, acc);
        acc = fmaf(f2.x, b.x, acc); acc = fmaf(f2.y, b.y, acc); acc = fmaf(f3.x, b.z, acc); acc = fmaf(f3.y, b.w, acc);
      }
    } else {
      for (int k = sub; k < K; k += tpr) acc = fmaf(__bfloat162float(wr[k]), x[k], acc);
    }
  }
  const int width = tpr < 32 ? tpr : 32;
  for (int o = width / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (tpr > 32) {
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (sub == 0) {
      acc = 0.f;
      for (int k = 0; k < tpr / 32; k++) acc += red[rib * (tpr / 32) + k];
    }
  }
  if (sub == 0 && row < rows) y[row] = accumulate ? y[row] + acc : acc;
}

}  // namespace

int qgemv_v2_chunk(const QDesc& d) {
  if (d.layout == 0) return d.bits == 2 ? 64 : d.bits == 3 || d.bits == 4 ? 32 : d.bits == 8 ? 16 : 0;
  return d.bits == 2 ? 64 : d.bits == 3 || d.bits == 4 ? 32 : 0;
}

const char* cuda_qgemv(const QDesc& d, const float* x, float* y, bool accumulate, void* stream, int variant) {
  if (const char* e = qdesc_check(d)) return e;
  if (d.in % 32 || d.group % 32 || d.gidx)
    return "qgemv: needs in % 32 == 0, group % 32 == 0 and no gIdx (use the dequantize + GEMM path)";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (variant == 3 || variant == 34 || variant == 38) {  // v3 (34 / 38: rows per thread forced to 4 / 8)
    if (d.layout != 0) return "qgemv: variant 3 supports the 'int' layout only (use variant 1 or 2 for 'nf')";
    if (d.bits != 2 && d.bits != 4) return "qgemv: variant 3 needs bits 2 or 4";
    if (d.in % 64 || d.group % 64) return "qgemv: variant 3 needs in % 64 == 0 and group % 64 == 0";
    const int force_r = variant == 34 ? 4 : variant == 38 ? 8 : 0;
    return d.bits == 2 ? qgemv3_launch<2>(d, x, y, accumulate, s, force_r) : qgemv3_launch<4>(d, x, y, accumulate, s, force_r);
  }
  const int cpc = qgemv_v2_chunk(d);
  const bool v2ok = cpc > 0 && d.in % cpc == 0 && d.group % cpc == 0 && d.in / cpc <= kMaxXsum;
  if (variant == 2 && !v2ok) return "qgemv: variant 2 needs in and group multiples of its chunk (64 codes for 2 bits)";
  // v2 is opt-in until its first device run (it is implemented and has parity tests, not yet run on a GPU).
  if (variant == 2 && v2ok) {
    const size_t smem = (size_t)(d.in / cpc) * sizeof(float);
    const unsigned need = (unsigned)((d.out + kRows2 * kWarps2 - 1) / (kRows2 * kWarps2));
    static int sms = 0;
    if (!sms) LB_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    unsigned grid = need;
    auto size_grid = [&](const void* kernel) -> const char* {  // resident blocks, at most what the rows need
      int per_sm = 0;
      LB_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps2 * 32, smem));
      grid = std::min(need, (unsigned)std::max(1, per_sm * sms));
      return nullptr;
    };
#define LB_QGEMV2(B, NF)                                                              \
  do {                                                                                \
    if (const char* e = size_grid((const void*)qgemv2_kernel<B, NF>)) return e;      \
    qgemv2_kernel<B, NF><<<grid, kWarps2 * 32, smem, s>>>(d, x, y, accumulate);       \
  } while (0)
    if (d.layout == 0) {
      switch (d.bits) {
        case 2: LB_QGEMV2(2, false); break;
        case 3: LB_QGEMV2(3, false); break;
        case 4: LB_QGEMV2(4, false); break;
        case 8: LB_QGEMV2(8, false); break;
      }
    } else {
      switch (d.bits) {
        case 2: LB_QGEMV2(2, true); break;
        case 3: LB_QGEMV2(3, true); break;
        case 4: LB_QGEMV2(4, true); break;
      }
    }
#undef LB_QGEMV2
    LB_CUDA(cudaGetLastError());
    return nullptr;
  }
  const unsigned grid = (unsigned)((d.out + kRows - 1) / kRows);
#define LB_QGEMV(B, NF) qgemv_kernel<B, NF><<<grid, kGemvThreads, 0, s>>>(d, x, y, accumulate)
  if (d.layout == 0) {
    switch (d.bits) {
      case 2: LB_QGEMV(2, false); break;
      case 3: LB_QGEMV(3, false); break;
      case 4: LB_QGEMV(4, false); break;
      case 8: LB_QGEMV(8, false); break;
      default: return "qgemv: 'int' bits must be 2, 3, 4 or 8";
    }
  } else {
    switch (d.bits) {
      case 2: LB_QGEMV(2, true); break;
      case 3: LB_QGEMV(3, true); break;
      case 4: LB_QGEMV(4, true); break;
      default: return "qgemv: 'nf' bits must be 2, 3 or 4";
    }
  }
#undef LB_QGEMV
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_gemv_bf16(const void* W, int rows, int K, const float* x, float* y, bool accumulate, void* stream) {
  if (rows <= 0 || K <= 0) return "gemv_bf16: empty shape";
  int tpr = 1;
  while (tpr < kDenseThreads && tpr * 8 < K) tpr <<= 1;  // enough threads to cover K in 8-wide loads
  const int rpb = kDenseThreads / tpr;
  const unsigned grid = (unsigned)((rows + rpb - 1) / rpb);
  gemv_bf16_kernel<<<grid, kDenseThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const __nv_bfloat16*>(W), rows, K, x, y, accumulate, tpr);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

}  // namespace lowbit
