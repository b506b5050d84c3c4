// Batch-1 decode kernels: the v4 GEMV (tensor-core MMA on 2-bit codes, RMSNorm fused into its prologue, several
// projections and their LoRA A factors in one launch) and the three epilogues that finish a layer's projections
// (LoRA B·t, RoPE + KV-cache write; residual add; SwiGLU). TypeScript twins: test/helpers/host-engine.ts (engine
// emulator) and test/cuda-decode-model.test.ts (a lane-by-lane CPU model of the v4 GEMV's fragment indexing).
//
// v4 GEMV, 'int' 2-bit codes (in % 256 == 0, group % 64 == 0, no gIdx):
// - Codes are read from a copy repacked once per weight (repack4_kernel): every 64-byte span of a row (4 slots of
//   64 codes × 4 words) is transposed so lane t of a quad gets word t of the 4 slots in one 16-byte load.
// - A word holds 16 codes (code i at bits 2i). One LOP3 with the fp16 magic 0x6400 turns codes (i, i + 8) into the
//   half2 (1024 + 4^e·q_i, 1024 + 4^e·q_{i+8}) where e is the code's position in the 10-bit mantissa (i = 0..4: e = i;
//   i = 5..7 after one shift by 10: e = i − 5). These are the A operand of mma.m16n8k16 (16 rows × 16 k) as they are.
// - B is x, staged once per block in shared memory in the same fragment order, scaled by 2^E·4^−e (E per slot of 64
//   inputs from its max, so fp16 neither overflows nor underflows); every column of B is the same x, so each MMA
//   gives Σ (1024 + 4^e q)·x' = 1024·Σx' + 2^E·Σ q·x for rows g and g + 8 of the warp's 16-row tile.
// - Per slot and row: y += s·2^−E·(D − 1024·Σx' − z·Σx̂'), the two sums precomputed per slot at staging.
//   ~1.2 instructions per weight (v3: 2.5), fp32 accumulation; the x rounding to fp16 costs ~5e-4 relative.
// - A block (16 warps, one per SM) owns 32-row tiles (two 16-row MMA tiles) in turn; its warps split the tile's spans
//   (256 inputs each) and reduce through shared memory (each warp then sums two rows); every warp loads its next span
//   item while it computes the current one, and all weight loads of a launch start before it waits for its input x
//   (programmatic dependent launch).
// - Dense bf16 segments (LoRA A factors, unquantized projections) go through the same launch on CUDA cores.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "check.h"
#include "decode_attn_body.cuh"
#include "lowbit_cuda.h"
#include "lora_dot.cuh"
#include "mbarrier.cuh"
#include "pdl.h"

namespace lowbit {
namespace {

constexpr int kDThreads = 512, kDWarps = 16, kTile = 32, kMmaTiles = kTile / 16;

__global__ void repack4_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t nspans) {
  for (size_t s = blockIdx.x * (size_t)blockDim.x + threadIdx.x; s < nspans; s += (size_t)gridDim.x * blockDim.x) {
    const uint4 a = src[s * 4], b = src[s * 4 + 1], c = src[s * 4 + 2], d = src[s * 4 + 3];  // slot j, words t = 0..3
    dst[s * 4 + 0] = make_uint4(a.x, b.x, c.x, d.x);  // lane t: word t of slots 0..3
    dst[s * 4 + 1] = make_uint4(a.y, b.y, c.y, d.y);
    dst[s * 4 + 2] = make_uint4(a.z, b.z, c.z, d.z);
    dst[s * 4 + 3] = make_uint4(a.w, b.w, c.w, d.w);
  }
}

struct DParams {
  DecodeSeg seg[kDecodeMaxSegs];
  int first[kDecodeMaxSegs + 1];  // first tile of each segment; first[nseg] = tiles
  int nseg, in;
  // benchmark probes (0 = normal; wrong results by design): 1 codes of rows 0..15 only (L2-resident), 2 loads without
  // compute, 3 compute without loads, 4 no fold (the MMA result summed raw), 5 no MMA (the LOP3 operands folded in
  // instead), 6 no staging of the x image, 7 no span loop at all (launch, staging, barriers and stores only)
  int probe;
  uint32_t magic;  // 0x64006400 (in a register: see lopm)
  const void* x;
  int x_bf16;
  const float* normw;
  float eps;
  const float* x2;                 // SwiGLU staging: x̃ = silu(x)·x2
  int toff[kDecodeMaxSegs];        // LoRA: offset of each consumer segment's t in the block's shared t (v5)
  int tlen, nprodTiles, prodmask;  // floats of shared t; tiles of the segments that produce a t; those segments (bits)
  DecodePf pf[kDecodeMaxPf];       // v5: L2 prefetches of the next launch's weights (see cuda_decode_gemv)
  int npf, evf;                    // their count; evf: own code copies with L2::evict_first
  // kernel-5 benchmark probes (cudaDecodeGemv's probe >> 4, bits; wrong results by design): 1 no wait for the t vectors,
  // 2 no SwiGLU in the staging (x2 ignored), 4 no dense (LoRA A) tiles and no t wait; 8 (results unchanged): no stage
  // issued before the wait for x, so x's loads are not queued behind the first stage's copies (run 69: no gain; nor did
  // a probe 32 — one bulk copy per stage for the codes and one for the scale words — since removed)
  int probe5;
  int poff[kDecodeMaxSegs];  // own staging: each t-producing segment's first row in g_tpart
  unsigned long long* ts;    // benchmarks (cuda_decode_gemv_trace): this launch's %globaltimer stamps [grid][kTraceStamps]
  int rB;                    // kernel 5: the largest LoRA rank of the launch; each stage has room for a tile's rows of B
                             // (kTile × rB bf16), copied with the tile's last chunk (0: no B, or the persistent kernel)
  DecodeAttn attn;           // kernel 5 (attn.Hq > 0): the attention whose output is this launch's x, run by blocks h < Hq
                             // first (cuda_decode_attn_fold_next; the o GEMV)
};

__device__ __forceinline__ uint32_t pick(const uint4& v, int k) { return k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w; }
__device__ __forceinline__ uint32_t lop(uint32_t w, uint32_t mask) { return (w & mask) | 0x64006400u; }

__device__ __forceinline__ void mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  // not volatile: it has no side effects, so the compiler may interleave the four slots' independent MMA chains (a
  // volatile asm would serialise them behind each other: measured ~1.5 µs per block round of pure dependent latency)
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// One span item of a warp: word t of the span's 4 slots for rows g, g + 8 of both 16-row MMA tiles of a 32-row block
// tile (a[m], b[m]: rows m·16 + g and m·16 + g + 8), and their f16 scale|zero words (s[m·8 + 0..3] rows m·16 + g,
// s[m·8 + 4..7] rows m·16 + g + 8, for the 4 slots).
struct SpanLoad {
  uint4 a[kMmaTiles], b[kMmaTiles];
  uint32_t s[8 * kMmaTiles];
};

__device__ __forceinline__ int seg_of(const DParams& p, int tile) {
  int s = 0;
  while (s + 1 < p.nseg && tile >= p.first[s + 1]) s++;
  return s;
}

// Loads as volatile asm: they stay where they are written relative to each other, so the prefetched spans are really in
// flight while the current one is computed (the compiler would otherwise sink them to their use).
__device__ __forceinline__ uint4 ldg4(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];\n" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}
__device__ __forceinline__ uint32_t ldg1(const void* p) {
  uint32_t r;
  asm volatile("ld.global.nc.u32 %0, [%1];\n" : "=r"(r) : "l"(p));
  return r;
}

__device__ __forceinline__ bool issue(const DParams& p, int tile, int sp, int g, int t, SpanLoad& L, int probe) {
  const int si = seg_of(p, tile);
  const DecodeSeg& S = p.seg[si];
  if (S.kind != 0) return false;
  const int r0 = (tile - p.first[si]) * kTile;
  const size_t rowv = (size_t)p.in / 64;  // uint4 per row (in / 4 bytes of codes)
  const uint4* c = reinterpret_cast<const uint4*>(S.codes);
#pragma unroll
  for (int m = 0; m < kMmaTiles; m++) {
    int rg = min(r0 + m * 16 + g, S.rows - 1), rh = min(r0 + m * 16 + g + 8, S.rows - 1);
    if (probe == 1) { rg &= 15; rh &= 15; }
    if (probe == 3) {
      L.a[m] = make_uint4(0x1b1b1b1bu ^ sp, 0xe4e4e4e4u, 0x39393939u, 0x93939393u);
      L.b[m] = make_uint4(0x4e4e4e4eu, 0xb1b1b1b1u ^ t, 0x27272727u, 0xd8d8d8d8u);
#pragma unroll
      for (int j = 0; j < 8; j++) L.s[m * 8 + j] = 0x3c002c00u;  // scale 2^-4, zero 1
      continue;
    }
    L.a[m] = ldg4(c + rg * rowv + sp * 4 + t);
    L.b[m] = ldg4(c + rh * rowv + sp * 4 + t);
    if (S.group == 64) {  // the span's 4 slots are 4 consecutive groups: one 16-byte load per row (ng % 4 == 0)
      const uint4 u = ldg4(S.sz + (size_t)rg * S.ng + sp * 4), v = ldg4(S.sz + (size_t)rh * S.ng + sp * 4);
      L.s[m * 8 + 0] = u.x; L.s[m * 8 + 1] = u.y; L.s[m * 8 + 2] = u.z; L.s[m * 8 + 3] = u.w;
      L.s[m * 8 + 4] = v.x; L.s[m * 8 + 5] = v.y; L.s[m * 8 + 6] = v.z; L.s[m * 8 + 7] = v.w;
    } else {
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int gi = ((sp * 4 + j) * 64) / S.group;
        L.s[m * 8 + j] = ldg1(S.sz + (size_t)rg * S.ng + gi);
        L.s[m * 8 + 4 + j] = ldg1(S.sz + (size_t)rh * S.ng + gi);
      }
    }
  }
  return true;
}

// The span items of one warp in order: spans warp, warp + 16, … of its block's tiles blockIdx.x, + gridDim.x, …
__device__ __forceinline__ void next_item(int& tile, int& sp, int nsp, int warp) {
  sp += kDWarps;
  if (sp >= nsp) { tile += gridDim.x; sp = warp; }
}

// Power of two 2^e as a float (|e| < 126).
__device__ __forceinline__ float pow2(int e) { return __int_as_float((127 + e) << 23); }

// (w & mask) | magic in ONE LOP3: with both constants immediate the compiler emits an AND and an OR (measured: 260
// LOP3 per warp and tile, half of them ORs); the magic 0x6400_6400 comes in a register (DParams::magic).
template <uint32_t MASK>
__device__ __forceinline__ uint32_t lopm(uint32_t w, uint32_t magic) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(w), "n"(MASK), "r"(magic));
  return d;
}

// One span (slots sl0 … sl0 + 3 of 64 inputs) of rows g and g + 8 of both 16-row MMA tiles: a[m] / b[m] hold word t of
// the 4 slots of rows m·16 + g / m·16 + g + 8, sz[m·8 + j] / sz[m·8 + 4 + j] their f16 scale|zero words. NOFOLD: the
// raw MMA sums (a benchmark probe).
template <bool NOFOLD>
__device__ __forceinline__ void span_mma(float (&acc)[kMmaTiles][2], const uint4 (&a)[kMmaTiles], const uint4 (&b)[kMmaTiles],
                                         const uint32_t (&sz)[8 * kMmaTiles], const uint4* img4, const float4* slot, int sl0,
                                         int t, uint32_t magic) {
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const int sl = sl0 + j;
    const uint4 b01 = img4[sl * 8 + t * 2], b23 = img4[sl * 8 + t * 2 + 1];
    const float4 sv = slot[sl];
#pragma unroll
    for (int m = 0; m < kMmaTiles; m++) {
      const uint32_t wg = pick(a[m], j), wh = pick(b[m], j);
      const uint32_t wgs = wg >> 10, whs = wh >> 10;
      float d[4] = {0.f, 0.f, 0.f, 0.f};
      mma16816(d, lopm<0x00030003u>(wg, magic), lopm<0x00030003u>(wh, magic), lopm<0x000C000Cu>(wg, magic),
               lopm<0x000C000Cu>(wh, magic), b01.x, b01.y);
      mma16816(d, lopm<0x00300030u>(wg, magic), lopm<0x00300030u>(wh, magic), lopm<0x00C000C0u>(wg, magic),
               lopm<0x00C000C0u>(wh, magic), b01.z, b01.w);
      mma16816(d, lopm<0x03000300u>(wg, magic), lopm<0x03000300u>(wh, magic), lopm<0x00030003u>(wgs, magic),
               lopm<0x00030003u>(whs, magic), b23.x, b23.y);
      mma16816(d, lopm<0x000C000Cu>(wgs, magic), lopm<0x000C000Cu>(whs, magic), lopm<0x00300030u>(wgs, magic),
               lopm<0x00300030u>(whs, magic), b23.z, b23.w);
      const uint32_t mg = sz[m * 8 + j], mh = sz[m * 8 + 4 + j];
      const float sg = __half2float(__ushort_as_half((unsigned short)(mg & 0xffff))) * sv.z;
      const float zg = __half2float(__ushort_as_half((unsigned short)(mg >> 16)));
      const float sh = __half2float(__ushort_as_half((unsigned short)(mh & 0xffff))) * sv.z;
      const float zh = __half2float(__ushort_as_half((unsigned short)(mh >> 16)));
      if (NOFOLD) {
        acc[m][0] += d[0];
        acc[m][1] += d[2];
      } else {
        acc[m][0] = fmaf(sg, fmaf(-zg, sv.y, d[0] - sv.x), acc[m][0]);
        acc[m][1] = fmaf(sh, fmaf(-zh, sv.y, d[2] - sv.x), acc[m][1]);
      }
    }
  }
}

// The fp16 image of slot j (64 inputs) from its 8 lanes sub = 0..7, each holding inputs 8·sub … 8·sub + 7 in v: E from
// the slot's max (so fp16 neither overflows nor underflows), x'·2^E·4^−e in fragment order, and the slot's sums
// (1024·Σx', Σx̂', 2^−E) written by lane sub 0. on: the slot exists (all 8 lanes agree).
__device__ __forceinline__ void slot_image(const float (&v)[8], int j, int sub, bool on, __half* imgh, float4* slot) {
  float m = 0.f;
#pragma unroll
  for (int k = 0; k < 8; k++) m = fmaxf(m, fabsf(v[k]));
#pragma unroll
  for (int o = 4; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  const int E = m > 0.f ? 14 - (int)(((__float_as_uint(m) >> 23) & 0xff) - 126) : 0;  // m < 2^ex, ex = exponent + 1
  float bias = 0.f, xsum = 0.f;
#pragma unroll
  for (int k = 0; k < 8; k++) {
    const int c = 8 * sub + k, tt = c >> 4, i = c & 15, pp = i & 7, hi = i >> 3, e = pp <= 4 ? pp : pp - 5;
    const __half hv = __float2half_rn(v[k] * pow2(E - 2 * e));
    const float f = __half2float(hv);
    bias = fmaf(1024.f, f, bias);
    xsum = fmaf(pow2(2 * e), f, xsum);
    if (on) imgh[(j * 32 + tt * 8 + pp) * 2 + hi] = hv;
  }
#pragma unroll
  for (int o = 4; o > 0; o >>= 1) {
    bias += __shfl_xor_sync(0xffffffffu, bias, o);
    xsum += __shfl_xor_sync(0xffffffffu, xsum, o);
  }
  if (on && sub == 0) slot[j] = make_float4(bias, xsum, pow2(-E), 0.f);
}

// Stages x once per block: (1) coalesced loads, x·w into xs and Σx²; (2) per slot of 64 inputs: normalize, the fp16
// image in fragment order, and the slot's sums (1024·Σx', Σx̂', 2^−E). Ends with a barrier.
// v4 only (kernel 5 and the persistent kernel stage with stage_own).
template <class AfterLoads>
__device__ __forceinline__ void stage_x(const DParams& p, int probe, float* xs, float4* slot, __half* imgh, float* rs_s,
                                        AfterLoads&& after_loads) {
  const int in = p.in, nslot = in / 64;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const float* xf = static_cast<const float*>(p.x);
  const uint16_t* xb = static_cast<const uint16_t*>(p.x);
  float ss = 0.f;
  {
    constexpr int kPass = 4;
    const int nq = in / 4;  // float4 / 4-bf16 quads
    for (int q0 = 0; q0 < nq; q0 += kPass * kDThreads) {
      uint4 xr[kPass];
      float4 wv[kPass];
#pragma unroll
      for (int k = 0; k < kPass; k++) {
        const int q = q0 + k * kDThreads + tid;
        if (q < nq) {
          if (p.x_bf16) {
            const uint2 u = __ldg(reinterpret_cast<const uint2*>(xb) + q);
            xr[k] = make_uint4(u.x, u.y, 0u, 0u);
          } else {
            xr[k] = __ldg(reinterpret_cast<const uint4*>(xf) + q);
          }
          const float* wsrc = p.normw ? p.normw : p.x2;
          wv[k] = wsrc ? __ldg(reinterpret_cast<const float4*>(wsrc) + q) : make_float4(1.f, 1.f, 1.f, 1.f);
        }
      }
      if (q0 == 0) after_loads();  // with x's loads in flight (see dgemv5_kernel)
#pragma unroll
      for (int k = 0; k < kPass; k++) {
        const int q = q0 + k * kDThreads + tid;
        if (q < nq) {
          const uint4 u = xr[k];
          const float4 v = p.x_bf16 ? make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
                                                  __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u))
                                    : make_float4(__uint_as_float(u.x), __uint_as_float(u.y), __uint_as_float(u.z), __uint_as_float(u.w));
          const float4 w = wv[k];
          ss = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss))));
          if (p.x2)  // silu(g)·u, as swiglu_epi_kernel computes it
            reinterpret_cast<float4*>(xs)[q] = make_float4(v.x / (1.f + expf(-v.x)) * w.x, v.y / (1.f + expf(-v.y)) * w.y,
                                                           v.z / (1.f + expf(-v.z)) * w.z, v.w / (1.f + expf(-v.w)) * w.w);
          else
            reinterpret_cast<float4*>(xs)[q] = p.normw ? make_float4(v.x * w.x, v.y * w.y, v.z * w.z, v.w * w.w) : v;
        }
      }
    }
  }
  float rstd = 1.f;
  if (p.normw) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (lane == 0) rs_s[warp] = ss;
    __syncthreads();
    if (warp == 0) {
      float v = lane < kDWarps ? rs_s[lane] : 0.f;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) rs_s[0] = rsqrtf(v / (float)in + p.eps);
    }
  }
  __syncthreads();
  if (p.normw) rstd = rs_s[0];
  // 8 lanes per slot (4 slots per warp at once), 8 consecutive inputs per lane: c = 8·(lane & 7) + k
  for (int j0 = probe == 6 ? nslot : warp * 4; j0 < nslot; j0 += kDWarps * 4) {
    const int j = j0 + (lane >> 3), sub = lane & 7;
    const bool on = j < nslot;
    float v[8];
#pragma unroll
    for (int k = 0; k < 8; k++) {
      const int i = j * 64 + 8 * sub + k;
      v[k] = on ? (p.normw ? xs[i] * rstd : xs[i]) : 0.f;
      if (on) xs[i] = v[k];
    }
    slot_image(v, j, sub, on, imgh, slot);
  }
  __syncthreads();
}

// D: span items in flight per warp (a ring of D buffers, each used at a fixed place in the code). PROBES: the benchmark
// probes of DParams::probe are compiled in (a separate instantiation, so the production kernels carry none of them).
template <int D, bool PROBES>
__global__ void __launch_bounds__(kDThreads, 1) dgemv_kernel(DParams p) {
  const int probe = PROBES ? p.probe : 0;
  extern __shared__ float4 dsm[];
  const int in = p.in, nslot = in / 64, nsp = in / 256, ntiles = p.first[p.nseg];
  float* xs = reinterpret_cast<float*>(dsm);                  // [in] the (normalized) x, f32: dense segments
  float4* slot = reinterpret_cast<float4*>(xs + in);          // [nslot] (1024·Σx', Σx̂', 2^−E, 0)
  __half* imgh = reinterpret_cast<__half*>(slot + nslot);     // [in] fp16 x' in fragment order
  const uint4* img4 = reinterpret_cast<const uint4*>(imgh);
  __shared__ float red[2][kDWarps][kTile];
  __shared__ float rs_s[kDWarps];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  pdl_trigger();

  // prefetch ring: the warp's next D span items (tags say which item a buffer holds; -1: none)
  SpanLoad L0, L1;
  int t0 = -1, s0 = 0, t1 = -1, s1 = 0;
  int it = blockIdx.x, is = warp;  // the last item issued
  if (warp < nsp) {
    if (it < ntiles && issue(p, it, is, g, t, L0, probe)) { t0 = it; s0 = is; }
    if constexpr (D == 2) {
      next_item(it, is, nsp, warp);
      if (it < ntiles && issue(p, it, is, g, t, L1, probe)) { t1 = it; s1 = is; }
    }
  }
  pdl_wait();  // x is the previous kernel's output; the weight loads above do not depend on it

  stage_x(p, probe, xs, slot, imgh, rs_s, [] {});

  int phase = 0, par = 0;
  for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
    const int si = seg_of(p, tile);
    const DecodeSeg& S = p.seg[si];
    const int r0 = (tile - p.first[si]) * kTile;
    if (S.kind == 0) {
      float acc[kMmaTiles][2];
#pragma unroll
      for (int m = 0; m < kMmaTiles; m++) acc[m][0] = acc[m][1] = 0.f;
      auto step = [&](SpanLoad& L, int& tb, int& sb, int sp) {
        if (tb != tile || sb != sp) issue(p, tile, sp, g, t, L, probe);  // not prefetched (after a dense tile)
        if (probe == 2) {
          acc[0][0] += (float)((L.a[0].x ^ L.a[1].w ^ L.b[0].y ^ L.b[1].z ^ L.s[0] ^ L.s[15]) & 1u);
        } else if (probe == 5) {  // the LOP3 conversions and the fold, no MMA
#pragma unroll
          for (int j = 0; j < 4; j++) {
            const float4 sv = slot[sp * 4 + j];
#pragma unroll
            for (int m = 0; m < kMmaTiles; m++) {
              const uint32_t wg = pick(L.a[m], j), wh = pick(L.b[m], j), wgs = wg >> 10, whs = wh >> 10;
              const uint32_t x = lop(wg, 0x00030003u) ^ lop(wh, 0x000C000Cu) ^ lop(wg, 0x00300030u) ^ lop(wh, 0x00C000C0u) ^
                                 lop(wg, 0x03000300u) ^ lop(wh, 0x03000300u) ^ lop(wgs, 0x00030003u) ^ lop(whs, 0x000C000Cu) ^
                                 lop(wgs, 0x00300030u) ^ lop(whs, 0x00300030u) ^ lop(wh, 0x00030003u) ^ lop(wg, 0x000C000Cu) ^
                                 lop(wh, 0x00300030u) ^ lop(wg, 0x00C000C0u) ^ lop(whs, 0x00030003u) ^ lop(wgs, 0x000C000Cu);
              const uint32_t mg = L.s[m * 8 + j], mh = L.s[m * 8 + 4 + j];
              const float sg = __half2float(__ushort_as_half((unsigned short)(mg & 0xffff))) * sv.z;
              const float zg = __half2float(__ushort_as_half((unsigned short)(mg >> 16)));
              const float sh = __half2float(__ushort_as_half((unsigned short)(mh & 0xffff))) * sv.z;
              const float zh = __half2float(__ushort_as_half((unsigned short)(mh >> 16)));
              acc[m][0] = fmaf(sg, fmaf(-zg, sv.y, __uint_as_float(x & 0x3fffffffu) - sv.x), acc[m][0]);
              acc[m][1] = fmaf(sh, fmaf(-zh, sv.y, __uint_as_float(x & 0x3ffffff0u) - sv.x), acc[m][1]);
            }
          }
        } else if (probe == 4) {
          span_mma<true>(acc, L.a, L.b, L.s, img4, slot, sp * 4, t, p.magic);
        } else {
          span_mma<false>(acc, L.a, L.b, L.s, img4, slot, sp * 4, t, p.magic);
        }
        tb = -1;
        next_item(it, is, nsp, warp);
        if (it < ntiles && issue(p, it, is, g, t, L, probe)) { tb = it; sb = is; }
      };
      for (int sp = probe == 7 ? nsp : warp; sp < nsp; sp += kDWarps) {
        if (D == 1 || phase == 0) step(L0, t0, s0, sp);
        else step(L1, t1, s1, sp);
        phase = phase >= D - 1 ? 0 : phase + 1;
      }
      if (t == 0) {
#pragma unroll
        for (int m = 0; m < kMmaTiles; m++) { red[par][warp][m * 16 + g] = acc[m][0]; red[par][warp][m * 16 + g + 8] = acc[m][1]; }
      }
    } else {
      // dense bf16 rows on CUDA cores: thread tid takes 8-input chunks tid, tid + 512, … of the tile's rows, 8 at a time
      const int nc = in / 8;
      const uint4* W = reinterpret_cast<const uint4*>(S.W);
#pragma unroll 1
      for (int rb = 0; rb < kTile; rb += 8) {
        float accd[8];
#pragma unroll
        for (int r = 0; r < 8; r++) accd[r] = 0.f;
        for (int c = tid; c < nc; c += kDThreads) {
          const float4 x0 = reinterpret_cast<const float4*>(xs)[2 * c], x1 = reinterpret_cast<const float4*>(xs)[2 * c + 1];
#pragma unroll
          for (int r = 0; r < 8; r++) {
            const int row = min(r0 + rb + r, S.rows - 1);
            const uint4 w = __ldg(W + (size_t)row * nc + c);
            float a = accd[r];
            a = fmaf(__uint_as_float(w.x << 16), x0.x, a); a = fmaf(__uint_as_float(w.x & 0xffff0000u), x0.y, a);
            a = fmaf(__uint_as_float(w.y << 16), x0.z, a); a = fmaf(__uint_as_float(w.y & 0xffff0000u), x0.w, a);
            a = fmaf(__uint_as_float(w.z << 16), x1.x, a); a = fmaf(__uint_as_float(w.z & 0xffff0000u), x1.y, a);
            a = fmaf(__uint_as_float(w.w << 16), x1.z, a); a = fmaf(__uint_as_float(w.w & 0xffff0000u), x1.w, a);
            accd[r] = a;
          }
        }
#pragma unroll
        for (int r = 0; r < 8; r++) {
          float v = accd[r];
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
          if (lane == 0) red[par][warp][rb + r] = v;
        }
      }
    }
    __syncthreads();
    // rows w and w + 16 of the tile by warp w: lanes 0..15 read the 16 warps' partials, a 4-step shuffle sums them
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = warp + 16 * h;
      float v = lane < kDWarps ? red[par][lane][r] : 0.f;
#pragma unroll
      for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0 && r0 + r < S.rows) {
        float* y = S.y + r0 + r;
        *y = S.acc ? *y + v : v;
      }
    }
    par ^= 1;
  }
}

// ---- v5: the same arithmetic, the codes streamed into shared memory by the bulk-copy engine ----
// v4 keeps one 40 KB tile of loads in flight per SM, issued by the warps after they compute the previous one, and
// waits a full memory latency per tile (probes, device run 26: loads-only and compute-only each ≈ the whole time).
// v5 gives each block a ring of kStages stage buffers; the warps issue a stage's 64 bulk copies (cp.async.bulk, one row's
// codes or one row's scale|zero words each) as soon as the stage is free, the first ones before the kernel waits
// for its input x, so up to 3 tiles (~130 KB) per SM are in flight while the warps stage x and compute.
// A work item is a 32-row tile × a chunk of ≤ 4096 inputs (in = 11008: 3 chunks). Dense segments (LoRA A factors)
// take 2-row tiles (a 32-row bf16 tile is 256 KB, an 8-row one 64 KB: the blocks holding them finished last) and plain loads, first.
// kRedPitch: a row of the reduction buffer red[par][warp] is padded so the 16 lanes reading one row's partials (and the
// other half-warp the row 16 below) hit 32 distinct banks.
constexpr int kRedPitch = kTile + 1;
constexpr int kStages = 3, kChunk = 4096, kDenseTile = 2, kDensePre = 1;  // kDensePre: chunks of 8 inputs per thread (3 spilled: 32–48 B in the kernel-5 loop, ~9 % slower decode, run 66)

__host__ __device__ constexpr int v5_row_bytes(int kc) { return kc / 4 + ((kc / 4) % 128 == 0 ? 64 : 0); }  // ≡ 64 mod 128: 8 rows g → 4 wavefronts
__host__ __device__ constexpr int v5_sz_bytes(int kc) { return kc / 16 + ((kc / 256) % 2 == 0 ? 16 : 0); }  // odd multiple of 16 B
// a stage: 32 rows of codes | 32 rows of scale|zero words | (kernel 5, DParams::rB) the tile's 32 rows of LoRA B
__host__ __device__ constexpr int v5_stage_bytes(int kc, int rB = 0) { return kTile * (v5_row_bytes(kc) + v5_sz_bytes(kc) + 2 * rB); }

// %laneid read through a volatile asm: values derived from it are recomputed where used instead of hoisted out of the
// packed loop into registers held across it (the loop is at the 128-register cap; a hoisted address spilled)
__device__ __forceinline__ int lane_v() {
  int l;
  asm volatile("mov.u32 %0, %%laneid;\n" : "=r"(l));
  return l;
}
__device__ __forceinline__ int warp_v() {
  int w;
  asm volatile("mov.u32 %0, %%tid.x;\n" : "=r"(w));
  return w >> 5;
}
__device__ __forceinline__ uint32_t smem_u32(const void* ptr) { return (uint32_t)__cvta_generic_to_shared(ptr); }
__device__ __forceinline__ void bulk_g2s_hint(void* dst, const void* src, uint32_t bytes, uint64_t* bar, uint64_t pol) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n"
               ::"r"(smem_u32(dst)), "l"(src), "r"(bytes), "r"(smem_u32(bar)), "l"(pol) : "memory");
}
__device__ __forceinline__ uint64_t policy_evict_first() {
  uint64_t pol;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
  return pol;
}
// HBM → L2 by the bulk-copy engine, no registers or shared memory held (a hint: the data may be gone by its use).
__device__ __forceinline__ void bulk_prefetch_l2(const void* src, uint32_t bytes) {
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(bytes) : "memory");
}
// This block's 1/grid share of every prefetch range, by lanes of the last warp (one range each), ≤ 64 KB per instruction.
__device__ __forceinline__ void prefetch_next(const DParams& p) {
  const int lane = threadIdx.x & 31;
  if ((threadIdx.x >> 5) != kDWarps - 1 || lane >= p.npf) return;
  const uint32_t bytes = p.pf[lane].bytes, per = (uint32_t)(((uint64_t)bytes + 16u * gridDim.x - 1) / (16u * gridDim.x)) * 16u;
  const uint32_t off = blockIdx.x * per;
  if (off >= bytes) return;
  const uint32_t n = min(per, bytes - off);
  const uint8_t* src = static_cast<const uint8_t*>(p.pf[lane].ptr) + off;
  for (uint32_t o = 0; o < n; o += 65536u) bulk_prefetch_l2(src + o, min(65536u, n - o));
}
__device__ __forceinline__ uint4 lds4(const uint8_t* ptr) { return *reinterpret_cast<const uint4*>(ptr); }

constexpr int kDecodeMaxT = 512;

// The packed work items of a block in order: its tiles blockIdx.x, + gridDim.x, … that are packed, each × nch chunks;
// k indexes the warp's table of those tiles (V5Smem::ptab).
struct V5Iter {
  int k, ch;
  __device__ void next(int nch) {
    if (++ch < nch) return;
    ch = 0;
    k++;
  }
};
// The table: entry k = the block's k-th packed tile as (tile − first[si]) << 3 | si (segment si < 8, its row tile); each
// warp builds and reads its own copy (no block barrier, and the persistent kernel's next phase never overwrites a table
// another warp still reads). It replaces the per-item seg_of scans and dynamically indexed p.first loads (ncu, tenth
// session: ~60 of the ~960 instructions per warp and item went to segment lookups).
constexpr int kPTabMax = 64;  // packed tiles per block (the host checks ⌈tiles / grid⌉)
static_assert(kDecodeMaxSegs <= 8, "segment index in 3 bits");
__device__ __forceinline__ int ptab_si(uint32_t e) { return (int)(e & 7u); }
__device__ __forceinline__ int ptab_r0(uint32_t e) { return (int)(e >> 3) * kTile; }

// The shared memory of a v5 block: x (f32), the slots' sums, the fp16 image of x, then the ring of stages, laid out for
// inputs up to maxIn (the persistent kernel sizes it once for its widest phase); the mbarriers and reduction buffers.
struct V5Smem {
  float* xs;        // [maxIn] the (normalized) x, f32: dense segments
  float4* slot;     // [maxIn / 64] (1024·Σx', Σx̂', 2^−E, 0)
  __half* imgh;     // [maxIn] fp16 x' in fragment order
  uint8_t* stages;  // kStages × [32 rows codes | 32 rows scale|zero]
  uint64_t* full;   // [kStages]
  float (*red)[kDWarps][kRedPitch];
  float* rs_s;      // [kDWarps]
  float* t_s;       // [kDecodeMaxT] the t vectors of the LoRA consumer segments (p.toff)
  unsigned* tpub;   // kernel 5: warps that have written their t partials (0 at the start of the launch)
  uint16_t* ptab;   // [kDWarps][kPTabMax] each warp's table of the block's packed tiles (V5Iter)
};
__host__ __device__ constexpr size_t v5_dyn_bytes(int maxIn) {
  return (size_t)maxIn * 4 + (size_t)(maxIn / 64) * 16 + (size_t)maxIn * 2 + (size_t)kStages * v5_stage_bytes(maxIn < kChunk ? maxIn : kChunk);
}
__device__ __forceinline__ V5Smem v5_carve(float4* dsm, int maxIn, uint64_t* full, float (*red)[kDWarps][kRedPitch], float* rs_s,
                                           float* t_s, uint16_t* ptab) {
  V5Smem m;
  m.xs = reinterpret_cast<float*>(dsm);
  m.slot = reinterpret_cast<float4*>(m.xs + maxIn);
  m.imgh = reinterpret_cast<__half*>(m.slot + maxIn / 64);
  m.stages = reinterpret_cast<uint8_t*>(m.imgh + maxIn);
  m.full = full;
  m.red = red;
  m.rs_s = rs_s;
  m.t_s = t_s;
  m.tpub = nullptr;
  m.ptab = ptab;
  return m;
}

// A block's state within one v5 GEMV: the producer and consumer iterators over its packed items, the stages issued,
// its first dense tile and that tile's first chunks (loaded before the wait for x). `ring` (kept by the caller across
// GEMVs) counts the stages the block issued before this GEMV, so the stage slots and mbarrier parities continue.
struct V5State {
  V5Iter prod, cons;
  int npt;  // packed tiles of the block (entries of the warp's table)
  int nprod, pre_tile;
  uint32_t ring;
  uint4 wpre[kDensePre][kDenseTile];
};

// Warps 0..3 issue a stage's 64 copies, 8 rows each (rows past the segment's end repeat its last row). A bulk copy
// is issued one lane at a time (~10 instructions), so warp 0 alone held the block at its first barrier for
// microseconds (device run 27: 32 % of the stall samples), and all 16 warps spent ~22 % of the instructions on it
// (run 29). Thread 0 announces the stage's bytes; a copy that lands before that only takes the transaction count below
// zero while the phase still waits for the arrival.
__device__ __forceinline__ void v5_produce(const DParams& p, const V5Smem& m, const V5Iter& it, int s, uint64_t pol) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (warp >= 4) return;
  const int in = p.in, kcMax = in < kChunk ? in : kChunk, rowB = v5_row_bytes(kcMax), szB = v5_sz_bytes(kcMax);
  const uint32_t e = m.ptab[warp * kPTabMax + it.k];
  const int si = ptab_si(e);
  const DecodeSeg& S = p.seg[si];
  const int r0 = ptab_r0(e), c0 = it.ch * kChunk, kc = min(in - c0, kChunk);
  const uint32_t cb = kc / 4, sb = kc / 16;
  uint8_t* st = m.stages + s * v5_stage_bytes(kcMax, p.rB);
  // the tile's rows of B ride with its last chunk (kernel 5; the host checks r % 8 == 0 and a 16-byte aligned B)
  const uint32_t bB = (p.rB && S.B && c0 + kc == in) ? (uint32_t)(min(kTile, S.rows - r0) * S.r * 2) : 0u;
  if (tid == 0) mbar_expect_tx(&m.full[s], kTile * (cb + sb) + bB);
  if (bB && tid == 16)
    bulk_g2s(smem_u32(st + v5_stage_bytes(kcMax)), static_cast<const uint16_t*>(S.B) + (size_t)r0 * S.r, bB, &m.full[s]);
  if (lane < 16) {
    const int r = 8 * warp + (lane & 7), row = min(r0 + r, S.rows - 1);
    const uint8_t* src = lane < 8 ? static_cast<const uint8_t*>(S.codes) + (size_t)row * (in / 4) + c0 / 4
                                  : reinterpret_cast<const uint8_t*>(S.sz + (size_t)row * S.ng + c0 / 64);
    uint8_t* dst = lane < 8 ? st + r * rowB : st + kTile * rowB + r * szB;
    if (p.evf) bulk_g2s_hint(dst, src, lane < 8 ? cb : sb, &m.full[s], pol);
    else bulk_g2s(smem_u32(dst), src, lane < 8 ? cb : sb, &m.full[s]);
  }
}
__device__ __forceinline__ void v5_produce_next(const DParams& p, const V5Smem& m, V5State& st, uint64_t pol) {
  const int nch = (p.in + kChunk - 1) / kChunk;
  v5_produce(p, m, st.prod, (int)((st.ring + st.nprod) % kStages), pol);
  st.prod.next(nch);
  st.nprod++;
}

// Everything of a v5 GEMV that does not depend on its input x: the first `npre` stages of codes in flight, and the
// block's first dense tile (a t producer when there is one) with its first kDensePre chunks per thread in registers
// (LoRA A rows are weights), so the t vectors are ready soon after x is staged.
__device__ __forceinline__ void v5_prologue(const DParams& p, const V5Smem& m, V5State& st, int npre, uint64_t pol) {
  const int in = p.in, ntiles = p.first[p.nseg], tid = threadIdx.x;
  {  // this warp's table of the block's packed tiles (lane l: the tiles l and l + 32 of the block's stride)
    const int lane = tid & 31, warp = tid >> 5;
    int n = 0;
#pragma unroll
    for (int h = 0; h < kPTabMax / 32; h++) {
      const int tile = blockIdx.x + (lane + 32 * h) * gridDim.x;
      int si = 0;
      bool packed = false;
      if (tile < ntiles) {
        si = seg_of(p, tile);
        packed = p.seg[si].kind == 0;
      }
      const unsigned mask = __ballot_sync(0xffffffffu, packed);
      if (packed) m.ptab[warp * kPTabMax + n + __popc(mask & ((1u << lane) - 1u))] = (uint16_t)((tile - p.first[si]) << 3 | si);
      n += __popc(mask);
    }
    st.npt = n;
    __syncwarp();
  }
  st.prod = V5Iter{0, 0};
  st.cons = st.prod;
  st.nprod = 0;
  while (st.nprod < npre && st.prod.k < st.npt) v5_produce_next(p, m, st, pol);
  st.pre_tile = -1;
  for (int pass = 0; pass < 2 && st.pre_tile < 0; pass++)
    for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
      const int si = seg_of(p, tile);
      if (p.seg[si].kind == 0 || (((p.prodmask >> si) & 1) != 0) != (pass == 0)) continue;
      st.pre_tile = tile;
      break;
    }
  if (st.pre_tile >= 0) {
    const int si = seg_of(p, st.pre_tile), nc = in / 8, r0 = (st.pre_tile - p.first[si]) * kDenseTile;
    const DecodeSeg& S = p.seg[si];
    const uint4* W = reinterpret_cast<const uint4*>(S.W);
#pragma unroll
    for (int u = 0; u < kDensePre; u++) {
      const int c = tid + u * kDThreads;
#pragma unroll
      for (int r = 0; r < kDenseTile; r++)
        st.wpre[u][r] = c < nc ? __ldg(W + (size_t)min(r0 + r, S.rows - 1) * nc + c) : make_uint4(0, 0, 0, 0);
    }
  }
}

// The x-dependent part of a v5 GEMV (after the prologue and the wait for x): stage x, the dense tiles (LoRA A first,
// counted in *tready), the packed items through the ring with B·t folded into their reductions. PERSIST: x, the
// accumulated y and the t vectors may come from other blocks of the same launch (loads through L2).
// trace stamps per phase (launch) and block: start, x staged, dense tiles done, first stage landed, end of work, then
// (persistent kernel) arrived + next prologue or (kernel 5) exit
constexpr int kTraceStamps = 6;
// %globaltimer (benchmarks: the decode traces)
__device__ __forceinline__ void gstamp(unsigned long long* at) {
  if (at && threadIdx.x == 0) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    *at = t;
  }
}

// Own staging's LoRA t: the partial A·x̃ of every t row over each warp index's spans ([row][warp], rows of all t-producing
// segments of a launch, p.poff), written by lane 0 of the warp that computed it and summed by the consumers in wait_t.
constexpr int kTPartRows = 512;
__device__ float g_tpart[kTPartRows * 16];

// Kernel 5's staging: each warp stages only the spans it consumes — v5_main gives warp w span w of every 4096-input
// chunk, i.e. inputs 256·(w + 16k) … (lane l: 8 consecutive inputs at 256·(w + 16k) + 8l, the same 8-input chunk
// c = tid + 512k the dense tiles give thread tid). x̃ = x·normw (RMSNorm's rstd is NOT applied here: the GEMV is linear
// in x̃, so reduce_store scales the finished row sums), silu(x)·x2 or x → xs (f32, the dense tiles), the fp16 image and
// the slot sums; Σx² of the warp's inputs → rs_s[warp]. No block barrier: a warp starts on its first item as soon as its
// own x is in (device run 65: staging cost ~15 µs per layer with the block-wide version, ~3.7 µs per GEMV).
template <bool CG, class AfterLoads>
__device__ __forceinline__ void stage_own(const DParams& p, float* xs, float4* slot, __half* imgh, float* rs_s, AfterLoads&& after_loads) {
  // x written by other blocks of this launch (the folded attention): read through L2, not the non-coherent path
  const bool cg = CG || p.attn.Hq > 0;
  constexpr int kMaxOwn = 3;  // spans per warp in one round of loads (in ≤ 12288 takes one round)
  const int nsp = p.in / 256, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float* xf = static_cast<const float*>(p.x);
  const uint16_t* xb = static_cast<const uint16_t*>(p.x);
  const float* wsrc = p.normw ? p.normw : p.x2;
  float ss = 0.f;
  bool first = true;
  for (int sp0 = warp; sp0 < nsp || first; sp0 += kMaxOwn * kDWarps) {
    uint4 xr[kMaxOwn][2];
    float4 wv[kMaxOwn][2];
#pragma unroll
    for (int k = 0; k < kMaxOwn; k++) {
      const int sp = sp0 + k * kDWarps, i0 = sp * 256 + 8 * lane;  // first of the lane's 8 inputs
      if (sp < nsp) {
        if (p.x_bf16) {
          xr[k][0] = cg ? __ldcg(reinterpret_cast<const uint4*>(xb + i0)) : __ldg(reinterpret_cast<const uint4*>(xb + i0));
        } else {
          xr[k][0] = CG ? __ldcg(reinterpret_cast<const uint4*>(xf + i0)) : __ldg(reinterpret_cast<const uint4*>(xf + i0));
          xr[k][1] = CG ? __ldcg(reinterpret_cast<const uint4*>(xf + i0 + 4)) : __ldg(reinterpret_cast<const uint4*>(xf + i0 + 4));
        }
        if (wsrc) {
#pragma unroll
          for (int h = 0; h < 2; h++)
            wv[k][h] = CG && !p.normw ? __ldcg(reinterpret_cast<const float4*>(wsrc + i0) + h) : __ldg(reinterpret_cast<const float4*>(wsrc + i0) + h);
        }
      }
    }
    if (first) after_loads();  // with x's loads in flight (see v5_main)
    first = false;
#pragma unroll
    for (int k = 0; k < kMaxOwn; k++) {
      const int sp = sp0 + k * kDWarps;
      if (sp >= nsp) continue;  // warp-uniform
      float v[8];
      if (p.x_bf16) {
        const uint4 u = xr[k][0];
        v[0] = bf_lo(u.x); v[1] = bf_hi(u.x); v[2] = bf_lo(u.y); v[3] = bf_hi(u.y);
        v[4] = bf_lo(u.z); v[5] = bf_hi(u.z); v[6] = bf_lo(u.w); v[7] = bf_hi(u.w);
      } else {
#pragma unroll
        for (int h = 0; h < 2; h++) {
          const uint4 u = xr[k][h];
          v[4 * h] = __uint_as_float(u.x); v[4 * h + 1] = __uint_as_float(u.y); v[4 * h + 2] = __uint_as_float(u.z); v[4 * h + 3] = __uint_as_float(u.w);
        }
      }
#pragma unroll
      for (int q = 0; q < 8; q++) {
        ss = fmaf(v[q], v[q], ss);
        if (wsrc) {
          const float4 w4 = wv[k][q >> 2];
          const float w = (q & 3) == 0 ? w4.x : (q & 3) == 1 ? w4.y : (q & 3) == 2 ? w4.z : w4.w;
          v[q] = p.x2 ? v[q] / (1.f + expf(-v[q])) * w : v[q] * w;  // silu(g)·u as swiglu_epi_kernel computes it
        }
      }
      slot_image(v, sp * 4 + (lane >> 3), lane & 7, true, imgh, slot);  // the lane's slot and its 8-input part of it
      reinterpret_cast<float4*>(xs)[(sp * 256 + 8 * lane) / 4] = make_float4(v[0], v[1], v[2], v[3]);
      reinterpret_cast<float4*>(xs)[(sp * 256 + 8 * lane) / 4 + 1] = make_float4(v[4], v[5], v[6], v[7]);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (lane == 0) rs_s[warp] = ss;
  __syncwarp();
}
// RMSNorm's 1/rms from the warps' Σx² (rs_s, complete once every warp has passed a block barrier after stage_own).
__device__ __forceinline__ float own_rstd(const DParams& p, const float* rs_s) {
  if (!p.normw) return 1.f;
  float v = 0.f;
#pragma unroll
  for (int w = 0; w < kDWarps; w++) v += rs_s[w];
  return rsqrtf(v / (float)p.in + p.eps);
}

template <bool PERSIST>
__device__ __forceinline__ void v5_main(const DParams& p, const V5Smem& m, V5State& st, unsigned* tready_ctr, uint64_t pol,
                                        unsigned long long* ts = nullptr) {
  const int in = p.in, ntiles = p.first[p.nseg], nch = (in + kChunk - 1) / kChunk;
  const int kcMax = in < kChunk ? in : kChunk, rowB = v5_row_bytes(kcMax), szB = v5_sz_bytes(kcMax);
  const int stageB = v5_stage_bytes(kcMax, p.rB);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  // trace stamps: the persistent kernel passes ts; kernel 5's launch has p.ts (benchmarks)
  auto stamp = [&](int k) {
    if (ts) gstamp(ts + k);
    else if (!PERSIST && p.ts) gstamp(p.ts + (size_t)blockIdx.x * kTraceStamps + k);
  };
  float* xs = m.xs;
  const uint4* img4 = reinterpret_cast<const uint4*>(m.imgh);
  // the rest of the stages once x's loads are issued: behind ~130 KB of copies per SM, x's loads took ~3 µs to return
  // (device run 28: 18 % of the stall samples on the first use of x)
  stage_own<PERSIST>(p, xs, m.slot, m.imgh, m.rs_s, [&] {
    while (st.nprod < kStages && st.prod.k < st.npt) v5_produce_next(p, m, st, pol);
  });
  stamp(1);
  // the next launch's weights, queued behind this block's own first stages (the copy engine takes them in order)
  if (!PERSIST) prefetch_next(p);

  int par = 0;
  // Warp w reduces rows w (lanes 0..15) and w + 16 (lanes 16..31) of a tile: lane q = l mod 16 of a half takes warp q's
  // partial and B[row][64u + 4q … 64u + 4q + 3] (u = 0, 1: ranks up to 128) — one 4-step shuffle tree for both rows
  // instead of two 5-step ones over a whole warp each (ncu, tenth session: the reduction was ~110 of the ~960
  // instructions per warp and item, mostly waiting on its shuffles).
  // lane q16's four terms of a B row b (bf16 pairs as u32; global through the read-only path, or shared)
  auto gather_b = [&](const uint32_t* b, int r, int q16, uint32_t (&bq)[2][2], bool global) {
#pragma unroll
    for (int u = 0; u < 2; u++) {
      const int kk = 64 * u + 4 * q16;  // (r even: 4-byte aligned pairs)
      if (kk < r) bq[u][0] = global ? __ldg(b + kk / 2) : b[kk / 2];
      if (kk + 2 < r) bq[u][1] = global ? __ldg(b + kk / 2 + 1) : b[kk / 2 + 1];
    }
  };
  auto load_b = [&](const DecodeSeg& S, int r0, uint32_t (&bq)[2][2]) {
    const int lv = lane_v(), hq = lv >> 4, q16 = lv & 15;
    const int row = min(r0 + warp + 16 * hq, S.rows - 1);
    gather_b(reinterpret_cast<const uint32_t*>(static_cast<const uint16_t*>(S.B) + (size_t)row * S.r), S.r, q16, bq, true);
  };
  // reduction of a tile's partials (red[par]) + B·t where the segment has a B
  auto reduce_store = [&](const DecodeSeg& S, int si, int r0, int rowsInTile, const uint32_t (&bq)[2][2]) {
    const float rs = own_rstd(p, m.rs_s);  // stage_own leaves RMSNorm's 1/rms to the row sums
    const int lv = lane_v(), hq = lv >> 4, q16 = lv & 15, r = warp_v() + 16 * hq;
    float v = m.red[par][q16][r] * rs;
    if (S.B) {
      const float* ts = m.t_s + p.toff[si];
#pragma unroll
      for (int u = 0; u < 2; u++) {
        const int kk = 64 * u + 4 * q16;
        if (kk < S.r) v = fmaf(bf_lo(bq[u][0]), ts[kk], fmaf(bf_hi(bq[u][0]), ts[kk + 1], v));
        if (kk + 2 < S.r) v = fmaf(bf_lo(bq[u][1]), ts[kk + 2], fmaf(bf_hi(bq[u][1]), ts[kk + 3], v));
      }
    }
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (q16 == 0 && r < rowsInTile && r0 + r < S.rows) {
      float* y = S.y + r0 + r;
      *y = S.acc ? (PERSIST ? __ldcg(y) : *y) + v : v;
      if ((p.prodmask >> si) & 1) __threadfence();  // a t read by other blocks (see g_tready)
    }
    par ^= 1;
  };
  // block-uniform: wait until every t-producing tile is done, then stage the t vectors (read through L2: written by
  // other blocks of this launch)
  bool tready = p.tlen == 0 || (p.probe5 & 4);
  // own staging (not PERSIST): the t rows are per-warp partials in g_tpart, each producing warp counted once per tile
  const bool tpart = !PERSIST;
  auto wait_t = [&] {
    if (tid == 0 && !(p.probe5 & 1))
      while (ld_acquire_gpu(tready_ctr) < (unsigned)p.nprodTiles * (tpart ? kDWarps : 1u)) {}
    __syncthreads();
    const float rs = tpart ? own_rstd(p, m.rs_s) : 1.f;
    for (int s = 0; s < p.nseg; s++) {
      const DecodeSeg& S = p.seg[s];
      if (!S.B) continue;
      const float* tsrc = p.seg[S.tseg].y;
      for (int i = tid; i < S.r; i += kDThreads) {
        if (tpart) {
          const float4* pp = reinterpret_cast<const float4*>(g_tpart + (size_t)(p.poff[S.tseg] + i) * kDWarps);
          float v = 0.f;
#pragma unroll
          for (int q = 0; q < kDWarps / 4; q++) { const float4 u = __ldcg(pp + q); v += (u.x + u.y) + (u.z + u.w); }
          v *= rs;
          m.t_s[p.toff[s] + i] = v;
          if (blockIdx.x == 0) p.seg[S.tseg].y[i] = v;  // the t rows as the launch's output too (tests, non-folded readers)
        } else {
          m.t_s[p.toff[s] + i] = __ldcg(tsrc + i);
        }
      }
    }
    __syncthreads();
    tready = true;
  };

  // dense tiles first (plain loads; their latency overlaps the copies in flight): the t producers (pass 0), then the
  // others (pass 1)
  for (int pass = (p.probe5 & 4) ? 2 : 0; pass < 2; pass++) {
    int mine = 0;
    for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
      const int si = seg_of(p, tile);
      const DecodeSeg& S = p.seg[si];
      if (S.kind == 0 || (((p.prodmask >> si) & 1) != 0) != (pass == 0)) continue;
      mine++;
      const int r0 = (tile - p.first[si]) * kDenseTile, nc = in / 8;
      const uint4* W = reinterpret_cast<const uint4*>(S.W);
      float accd[kDenseTile];
#pragma unroll
      for (int r = 0; r < kDenseTile; r++) accd[r] = 0.f;
      auto fold = [&](int c, const uint4 (&w)[kDenseTile]) {
        const float4 x0 = reinterpret_cast<const float4*>(xs)[2 * c], x1 = reinterpret_cast<const float4*>(xs)[2 * c + 1];
#pragma unroll
        for (int r = 0; r < kDenseTile; r++) {
          float a = accd[r];
          a = fmaf(bf_lo(w[r].x), x0.x, a); a = fmaf(bf_hi(w[r].x), x0.y, a);
          a = fmaf(bf_lo(w[r].y), x0.z, a); a = fmaf(bf_hi(w[r].y), x0.w, a);
          a = fmaf(bf_lo(w[r].z), x1.x, a); a = fmaf(bf_hi(w[r].z), x1.y, a);
          a = fmaf(bf_lo(w[r].w), x1.z, a); a = fmaf(bf_hi(w[r].w), x1.w, a);
          accd[r] = a;
        }
      };
      int c = tid;
      if (tile == st.pre_tile) {  // its first chunks were loaded before the wait for x
#pragma unroll
        for (int u = 0; u < kDensePre; u++, c += kDThreads)
          if (c < nc) fold(c, st.wpre[u]);
      }
      for (; c < nc; c += 2 * kDThreads) {  // two chunks' loads in flight (in = 11008: both the preload leaves)
        const bool two = c + kDThreads < nc;
        uint4 w[kDenseTile], w2[kDenseTile];
#pragma unroll
        for (int r = 0; r < kDenseTile; r++) {
          const uint4* wr = W + (size_t)min(r0 + r, S.rows - 1) * nc;
          w[r] = __ldg(wr + c);
          w2[r] = two ? __ldg(wr + c + kDThreads) : make_uint4(0, 0, 0, 0);
        }
        fold(c, w);
        if (two) fold(c + kDThreads, w2);
      }
#pragma unroll
      for (int r = 0; r < kDenseTile; r++) {
        float v = accd[r];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (tpart && pass == 0) {  // a t row: this warp's partial, no block barrier (summed by wait_t)
          if (lane == 0 && r0 + r < S.rows) g_tpart[(size_t)(p.poff[si] + r0 + r) * kDWarps + warp] = v;
        } else if (lane == 0) {
          m.red[par][warp][r] = v;
        }
      }
      if (tpart && pass == 0) continue;
      uint32_t bq[2][2] = {{0u, 0u}, {0u, 0u}};
      if (S.B) load_b(S, r0, bq);
      __syncthreads();
      if (S.B && !tready) wait_t();
      reduce_store(S, si, r0, kDenseTile, bq);
    }
    if (pass == 0 && mine > 0) {
      if (tpart) {  // lane 0 wrote this warp's partials; the block's last warp to get here publishes all 16 warps' with one
                    // gpu-scope release (each warp's own release add stalled it for the store's round trip)
        if (lane == 0 && atom_add_acq_rel_cta(m.tpub, 1u) == kDWarps - 1) red_release_add_gpu(tready_ctr, (unsigned)(mine * kDWarps));
      } else {
        __syncthreads();  // every warp's t rows written and fenced
        if (tid == 0) atomicAdd(tready_ctr, (unsigned)mine);
      }
    }
  }

  stamp(2);
  // packed items through the ring
  float acc[kMmaTiles][2];
  for (int k = 0; st.cons.k < st.npt; k++) {
    const uint32_t kk = st.ring + (uint32_t)k;
    const int s = (int)(kk % kStages);
    const uint32_t pe = m.ptab[warp * kPTabMax + st.cons.k];
    const int si = ptab_si(pe);
    const DecodeSeg& S = p.seg[si];
    const int r0 = ptab_r0(pe), c0 = st.cons.ch * kChunk, nspc = min(in - c0, kChunk) / 256;
    if (st.cons.ch == 0) {
#pragma unroll
      for (int mm = 0; mm < kMmaTiles; mm++) acc[mm][0] = acc[mm][1] = 0.f;
    }
    const bool last = st.cons.ch == nch - 1;
    uint32_t bq[2][2] = {{0u, 0u}, {0u, 0u}};
    if (PERSIST && last && S.B) load_b(S, r0, bq);  // in flight while the item is computed
    mbar_wait(&m.full[s], (kk / kStages) & 1u);
    if (PERSIST && ts && k == 0) gstamp(ts + 3);  // (kernel 5 leaves this stamp out: inside the loop it costs spills)
    const uint8_t* stg = m.stages + s * stageB;
    const uint8_t* sz0 = stg + kTile * rowB;
    for (int sp = warp; sp < nspc; sp += kDWarps) {
      uint4 a[kMmaTiles], b[kMmaTiles];
      uint32_t sz[8 * kMmaTiles];
#pragma unroll
      for (int mm = 0; mm < kMmaTiles; mm++) {
        const int rg = mm * 16 + g, rh = rg + 8;
        a[mm] = lds4(stg + rg * rowB + sp * 64 + t * 16);
        b[mm] = lds4(stg + rh * rowB + sp * 64 + t * 16);
        const uint4 u = lds4(sz0 + rg * szB + sp * 16), v = lds4(sz0 + rh * szB + sp * 16);
        sz[mm * 8 + 0] = u.x; sz[mm * 8 + 1] = u.y; sz[mm * 8 + 2] = u.z; sz[mm * 8 + 3] = u.w;
        sz[mm * 8 + 4] = v.x; sz[mm * 8 + 5] = v.y; sz[mm * 8 + 6] = v.z; sz[mm * 8 + 7] = v.w;
      }
      span_mma<false>(acc, a, b, sz, img4, m.slot, c0 / 64 + sp * 4, t, p.magic);
    }
    if (last && t == 0) {
#pragma unroll
      for (int mm = 0; mm < kMmaTiles; mm++) { m.red[par][warp][mm * 16 + g] = acc[mm][0]; m.red[par][warp][mm * 16 + g + 8] = acc[mm][1]; }
    }
    // kernel 5: B's rows came with the stage; read before the barrier after which stage s is refilled (so they are not
    // held in registers across the item's MMA loop: that cost spills)
    if (!PERSIST && last && S.B) {
      const int lv = lane_v(), hq = lv >> 4, q16 = lv & 15, row = warp_v() + 16 * hq;
      if (r0 + row < S.rows) gather_b(reinterpret_cast<const uint32_t*>(stg + v5_stage_bytes(kcMax) + row * S.r * 2), S.r, q16, bq, false);
    }
    __syncthreads();  // stage s is consumed (and the partials are in red)
    if (st.prod.k < st.npt) v5_produce_next(p, m, st, pol);  // into stage s: item k + kStages
    if (last && S.B && !tready) wait_t();
    if (last) reduce_store(S, si, r0, kTile, bq);
    st.cons.next(nch);
  }
  st.ring += (uint32_t)st.nprod;
}

// LoRA folded into v5: the dense tiles of the t-producing segments (A·x) are done first and counted here (kernel 5: once
// per warp and tile, see g_tpart; the persistent kernel: once per tile); a block waits for the count before its first
// y += B·t. Only touched after griddepcontrol.wait, when every earlier kernel of
// the stream has completed, and reset by the launch's last block: one pair serves every launch.
__device__ unsigned g_tready = 0, g_exit = 0;
// The folded attention (DParams::attn): heads finished in this launch; reset with g_tready by the last block out.
__device__ unsigned g_attn_done = 0;

__global__ void __launch_bounds__(kDThreads, 1) dgemv5_kernel(DParams p) {
  extern __shared__ float4 dsm[];
  __shared__ __align__(8) uint64_t full[kStages];
  __shared__ float red[2][kDWarps][kRedPitch];
  __shared__ float rs_s[kDWarps];
  __shared__ float t_s[kDecodeMaxT];
  __shared__ unsigned tpub;
  __shared__ uint16_t ptab[kDWarps * kPTabMax];
  V5Smem m = v5_carve(dsm, p.in, full, red, rs_s, t_s, ptab);
  m.tpub = &tpub;
  if (threadIdx.x == 0) {
    tpub = 0;
    for (int s = 0; s < kStages; s++) mbar_init(&full[s], 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  pdl_trigger();
  // trace (benchmarks): start, x staged, dense tiles done, first stage landed, packed items done, exit (the address is
  // recomputed from the parameter at each stamp: a pointer held across the loop costs the registers it spills)
  if (p.ts) gstamp(p.ts + (size_t)blockIdx.x * kTraceStamps);
  const uint64_t pol = p.evf ? policy_evict_first() : 0;
  V5State st;
  st.ring = 0;
  // one stage before the wait for x (the weights do not depend on the previous kernel)
  v5_prologue(p, m, st, (p.probe5 & 8) ? 0 : 1, pol);
  pdl_wait();
  if (p.attn.Hq > 0) {  // the folded attention: heads h = block, block + grid, …; every block waits for all of them
    for (int h = blockIdx.x; h < p.attn.Hq; h += gridDim.x) {
      if (p.attn.hd == 64) attn_body<2, kDWarps>(p.attn, h, m.xs);
      else if (p.attn.hd == 128) attn_body<4, kDWarps>(p.attn, h, m.xs);
      else attn_body<8, kDWarps>(p.attn, h, m.xs);
      __threadfence();  // this thread's output rows (and cache rows) visible device-wide before the count
      __syncthreads();  // the head's output written (and its scratch free for the next head)
      if (threadIdx.x == 0) atomicAdd(&g_attn_done, 1u);
    }
    if (threadIdx.x == 0)
      while (ld_acquire_gpu(&g_attn_done) < (unsigned)p.attn.Hq) {}
    __syncthreads();
  }
  v5_main<false>(p, m, st, &g_tready, pol);
  if (p.ts) gstamp(p.ts + (size_t)blockIdx.x * kTraceStamps + 4);
  if (p.nprodTiles > 0 || p.attn.Hq > 0) {  // the last block out resets the counts for the next launch
    __syncthreads();
    if (threadIdx.x == 0 && atomicAdd(&g_exit, 1u) == gridDim.x - 1) {
      g_tready = 0;
      g_attn_done = 0;
      g_exit = 0;
      __threadfence();
    }
  }
  if (p.ts) gstamp(p.ts + (size_t)blockIdx.x * kTraceStamps + 5);
}

// ---- epilogues ----
// lora_dot and stage_t: lora_dot.cuh (the int8-x prep uses them too)
// q/k: one thread per rotation pair (head h, i < hd/2); v: one thread per element.
__global__ void qkv_epi_kernel(DecodeQkv e) {
  extern __shared__ float tsm[];
  pdl_trigger();
  pdl_wait();
  stage_t(tsm, e.tq, e.rq, e.tk, e.rk, e.tv, e.rv);
  const int half = e.hd / 2, nq = e.Hq * half, nk = e.Hkv * half, nv = e.Hkv * e.hd;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nq + nk + nv; i += gridDim.x * blockDim.x) {
    if (i < nq + nk) {
      const bool isq = i < nq;
      const int j = isq ? i : i - nq, h = j / half, k = j % half, r0 = h * e.hd + k, r1 = r0 + half;
      const float* y = isq ? e.q : e.k;
      const uint16_t* B = isq ? e.Bq : e.Bk;
      const float* ts = isq ? tsm : tsm + e.rq;
      const int r = isq ? e.rq : e.rk;
      const float a = y[r0] + lora_dot(B, ts, r, r0), b = y[r1] + lora_dot(B, ts, r, r1);
      const float c = e.cos[k], s = e.sin[k];
      uint16_t* o = isq ? e.qOut : e.kOut;
      o[r0] = to_bf(a * c - b * s);
      o[r1] = to_bf(b * c + a * s);
    } else {
      const int j = i - nq - nk;
      e.vOut[j] = to_bf(e.v[j] + lora_dot(e.Bv, tsm + e.rq + e.rk, e.rv, j));
    }
  }
}

__global__ void residual_epi_kernel(float* x, const float* y, const float* tv, const uint16_t* B, int r, int n) {
  extern __shared__ float tsm[];
  pdl_trigger();
  pdl_wait();
  stage_t(tsm, tv, B ? r : 0, nullptr, 0, nullptr, 0);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] += y[i] + lora_dot(B, tsm, r, i);
}

__global__ void swiglu_epi_kernel(const float* gt, const float* up, const float* tg, const float* tu, const uint16_t* Bg,
                                  const uint16_t* Bu, int rg, int ru, int n, float* act) {
  extern __shared__ float tsm[];
  pdl_trigger();
  pdl_wait();
  stage_t(tsm, tg, Bg ? rg : 0, tu, Bu ? ru : 0, nullptr, 0);
  const float* tus = tsm + (Bg ? rg : 0);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const float g = gt[i] + lora_dot(Bg, tsm, rg, i), u = up[i] + lora_dot(Bu, tus, ru, i);
    act[i] = g / (1.f + expf(-g)) * u;
  }
}

// With the adapters (e.r > 0): t staged, then the B·t of the head's 3·HD rows (q, then its KV head's k and v) into bt,
// 64 rows per warp through group_bt (ranks 8·2^j ≤ 256; else a row per thread through lora_dot).
template <int DPL>
__global__ void __launch_bounds__(256) decode_attn_kernel(DecodeAttn e) {
  constexpr int HD = 32 * DPL;
  __shared__ float sm[attn_smem_floats<8>(HD)];
  __shared__ float bt[3 * HD];
  extern __shared__ float tsm[];  // tq | tk | tv [r each] when e.r > 0
  pdl_trigger();
  pdl_wait();
  const int h = blockIdx.x;
  if (e.r > 0) {
    stage_t(tsm, e.tq, e.Bq ? e.r : 0, e.tk, e.Bk ? e.r : 0, e.tv, e.Bv ? e.r : 0);
    const int kvh = h / (e.Hq / e.Hkv), r = e.r;
    const int oq = 0, ok = e.Bq ? r : 0, ov = ok + (e.Bk ? r : 0);
    const uint16_t* Bs[3] = {e.Bq, e.Bk, e.Bv};
    const int rows0[3] = {h * HD, kvh * HD, kvh * HD}, toff[3] = {oq, ok, ov};
    if (group_bt_fits(r)) {
      for (int c = threadIdx.x / 32; c < 3 * HD / 64; c += blockDim.x / 32) {
        const int m = c / (HD / 64), j = c % (HD / 64);
        if (Bs[m]) group_bt(Bs[m] + (size_t)(rows0[m] + 64 * j) * r, tsm + toff[m], r, bt + m * HD + 64 * j, threadIdx.x & 31);
        else {
          bt[m * HD + 64 * j + (threadIdx.x & 31)] = 0.f;
          bt[m * HD + 64 * j + 32 + (threadIdx.x & 31)] = 0.f;
        }
      }
    } else {
      for (int i = threadIdx.x; i < 3 * HD; i += blockDim.x) {
        const int m = i / HD;
        bt[i] = lora_dot(Bs[m], tsm + toff[m], r, rows0[m] + i % HD);
      }
    }
    __syncthreads();
  }
  if (e.i8) attn_body<DPL, 8, true>(e, h, sm, e.r > 0 ? bt : nullptr);
  else attn_body<DPL, 8, false>(e, h, sm, e.r > 0 ? bt : nullptr);
}

// ---- persistent decode: every GEMV and attention of a token in ONE launch ----
// A launch per GEMV pays its skeleton each time (device run 26: launch, staging and barriers ≈ 7 µs of a 13 µs q/k/v
// GEMV): the next launch cannot become resident beside the running one (~200 KB of shared memory per block), so its
// weight stream starts only after the previous launch's last block is gone. Here one block per SM runs the recorded
// phases in order with a grid-wide barrier between them, and issues the NEXT GEMV's first stages of codes (and its
// first LoRA A rows) before waiting at the barrier: HBM keeps streaming across phase boundaries.
struct DPhase {
  DParams g;     // kind 0: a v5 GEMV
  DecodeAttn a;  // kind 1: attention (pos, cos and sin come from the launch)
  int kind;
};

// Grid-wide barrier, split: arrive (this block's writes so far made visible, then counted) and wait for barrier n (1, 2, …)
// to be complete. Between the two the block issues the next GEMV's weight copies — after the arrival's fence, which
// would otherwise wait for them (device run 59: prologue before a fused arrive+wait, 0.78× the per-launch plan).
__device__ __forceinline__ void grid_arrive(unsigned* ctr) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(ctr, 1u);
  }
}
__device__ __forceinline__ void grid_wait(const unsigned* ctr, unsigned n) {
  if (threadIdx.x == 0) {
    const unsigned target = n * gridDim.x;
    while (ld_acquire_gpu(ctr) < target) {}
  }
  __syncthreads();
}

// sync: [0] barrier arrivals, [1] blocks done, [2 + i] the t-ready count of phase i; all zero between launches (the
// last block out resets them). attnOff: byte offset of the attention scratch in dynamic shared memory.
__global__ void __launch_bounds__(kDThreads, 1) decode_persist_kernel(const DPhase* __restrict__ ph, int nph, int maxIn, int pos,
                                                                      const float* cs, const float* sn, unsigned* sync, int npre,
                                                                      int attnOff, unsigned long long* trace) {
  extern __shared__ float4 dsm[];
  __shared__ __align__(8) uint64_t full[kStages];
  __shared__ float red[2][kDWarps][kRedPitch];
  __shared__ float rs_s[kDWarps];
  __shared__ float t_s[kDecodeMaxT];
  __shared__ __align__(16) uint8_t pbraw[2 * sizeof(DParams)];  // raw: DParams has default member initializers
  __shared__ uint16_t ptab[kDWarps * kPTabMax];
  DParams* pb = reinterpret_cast<DParams*>(pbraw);
  const V5Smem m = v5_carve(dsm, maxIn, full, red, rs_s, t_s, ptab);
  float* attn_sm = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(dsm) + attnOff);
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; s++) mbar_init(&full[s], 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  auto next_gemv = [&](int i) {
    while (i < nph && __ldg(&ph[i].kind) != 0) i++;
    return i;
  };
  auto load_params = [&](int i, DParams& d) {  // the phase's parameters into shared memory (read in every inner loop)
    const uint32_t* src = reinterpret_cast<const uint32_t*>(&ph[i].g);
    uint32_t* dst = reinterpret_cast<uint32_t*>(&d);
    for (int k = threadIdx.x; k < (int)(sizeof(DParams) / 4); k += kDThreads) dst[k] = __ldg(src + k);
    __syncthreads();
  };
  V5State st;
  st.ring = 0;
  int buf = 0, ng = next_gemv(0);  // ng: the GEMV phase whose prologue was issued last
  if (ng < nph) {
    load_params(ng, pb[0]);
    v5_prologue(pb[0], m, st, npre, 0);
  }
  unsigned nbar = 0;
  // trace (benchmarks): per phase and block, %globaltimer at the phase's start, at the end of its work, and once the
  // block has arrived and issued the next GEMV's prologue; in between (GEMVs) x staged, dense tiles done, first stage
  // landed — [nph][grid][kTraceStamps] ns
  auto stamp = [&](int i, int k) {
    if (trace && threadIdx.x == 0) {
      unsigned long long t;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      trace[((size_t)i * gridDim.x + blockIdx.x) * kTraceStamps + k] = t;
    }
  };
  for (int i = 0; i < nph; i++) {
    stamp(i, 0);
    if (__ldg(&ph[i].kind) == 1) {
      DecodeAttn e = ph[i].a;
      e.pos = pos;
      e.cos = cs;
      e.sin = sn;
      if ((int)blockIdx.x < e.Hq) {
        if (e.hd == 64) attn_body<2, kDWarps>(e, blockIdx.x, attn_sm);
        else if (e.hd == 128) attn_body<4, kDWarps>(e, blockIdx.x, attn_sm);
        else attn_body<8, kDWarps>(e, blockIdx.x, attn_sm);
      }
    } else {
      v5_main<true>(pb[buf], m, st, sync + 2 + i, 0, trace ? trace + ((size_t)i * gridDim.x + blockIdx.x) * kTraceStamps : nullptr);
    }
    stamp(i, 4);
    if (i + 1 == nph) break;
    grid_arrive(sync);
    if (ng <= i) {  // the next GEMV's weights in flight while the other blocks finish phase i
      ng = next_gemv(i + 1);
      if (ng < nph) {
        buf ^= 1;
        load_params(ng, pb[buf]);
        v5_prologue(pb[buf], m, st, npre, 0);
      }
    }
    stamp(i, 5);
    grid_wait(sync, ++nbar);
  }
  __syncthreads();
  if (threadIdx.x == 0 && atomicAdd(&sync[1], 1u) == gridDim.x - 1) {  // every other block is past its last wait
    sync[0] = 0;
    for (int i = 0; i < nph; i++) sync[2 + i] = 0;
    sync[1] = 0;
    __threadfence();
  }
}

// One block: each thread scans a stride, then a shuffle and a shared-memory round keep (max, lowest index).
__global__ void __launch_bounds__(1024) argmax_kernel(const float* __restrict__ x, int n, int* id, int* ids, int slot) {
  __shared__ float bv[32];
  __shared__ int bi[32];
  pdl_trigger();
  pdl_wait();
  float v = -INFINITY;
  int i0 = 0x7fffffff;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float a = x[i];
    if (a > v || (i0 == 0x7fffffff && a == a)) { v = a; i0 = i; }
  }
  auto better = [](float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); };
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i0, o);
    if (better(ov, oi, v, i0)) { v = ov; i0 = oi; }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) { bv[warp] = v; bi[warp] = i0; }
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    v = lane < nw ? bv[lane] : -INFINITY;
    i0 = lane < nw ? bi[lane] : 0x7fffffff;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, v, o);
      const int oi = __shfl_xor_sync(0xffffffffu, i0, o);
      if (better(ov, oi, v, i0)) { v = ov; i0 = oi; }
    }
    if (lane == 0) {
      const int r = i0 == 0x7fffffff ? 0 : i0;
      *id = r;
      if (ids) ids[slot] = r;
    }
  }
}

unsigned epi_grid(int n) { return (unsigned)((n + 255) / 256); }

// The phases recorded between cuda_decode_plan_begin and _end (null: not recording).
std::vector<DPhase>* g_rec = nullptr;
int g_rec_maxIn = 0, g_rec_maxHd = 0, g_rec_maxHq = 0, g_rec_maxPos = 0;

struct DecodePlanImpl {
  DPhase* dev = nullptr;
  unsigned* sync = nullptr;
  int nph = 0, maxIn = 0, maxPos = 0, attnOff = 0, grid = 0;
  size_t smem = 0;
  unsigned long long* trace = nullptr;  // benchmarks: see decode_persist_kernel
};

int persist_npre() {
  static const int n = [] { const char* e = std::getenv("LOWBIT_DECODE_PERSIST_PRE"); const int v = e ? std::atoi(e) : kStages; return v < 1 ? 1 : v > kStages ? kStages : v; }();
  return n;
}
bool coop_on() {
  static const int on = [] { const char* e = std::getenv("LOWBIT_DECODE_COOP"); return e && e[0] == '0' ? 0 : 1; }();
  return on != 0;
}

}  // namespace

const char* cuda_decode_plan_begin() {
  if (g_rec) return "cudaDecodePlanBegin: already recording";
  g_rec = new std::vector<DPhase>();
  g_rec_maxIn = g_rec_maxHd = g_rec_maxHq = 0;
  g_rec_maxPos = 1 << 30;
  return nullptr;
}

void cuda_decode_plan_limit_pos(int positions) {
  if (g_rec && positions < g_rec_maxPos) g_rec_maxPos = positions;
}
bool cuda_decode_recording() { return g_rec != nullptr; }

const char* cuda_decode_plan_end(void** out) {
  *out = nullptr;
  if (!g_rec) return "cudaDecodePlanEnd: not recording";
  std::vector<DPhase> phases = std::move(*g_rec);
  delete g_rec;
  g_rec = nullptr;
  if (phases.empty()) return "cudaDecodePlanEnd: no phases recorded";
  auto* P = new DecodePlanImpl();
  P->nph = (int)phases.size();
  P->maxIn = g_rec_maxIn > 0 ? g_rec_maxIn : 256;
  P->maxPos = g_rec_maxPos;
  int sms = 0, optin = 0;
  LB_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  LB_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  const size_t v5b = v5_dyn_bytes(P->maxIn), attnB = g_rec_maxHd ? (size_t)attn_smem_floats<kDWarps>(g_rec_maxHd) * 4 : 0;
  // the attention scratch shares x's f32 region (free between GEMVs) where it fits, else it goes after the ring
  P->attnOff = attnB <= (size_t)P->maxIn * 4 ? 0 : (int)v5b;
  P->smem = P->attnOff ? v5b + attnB : v5b;
  const size_t statics = sizeof(float) * (2 * kDWarps * kTile + kDWarps + kDecodeMaxT) + 2 * sizeof(DParams) + 64;
  if (P->smem + statics > (size_t)optin) {
    delete P;
    return "cudaDecodePlanEnd: the widest phase needs more shared memory than a block may have";
  }
  LB_CUDA(cudaFuncSetAttribute((const void*)decode_persist_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)P->smem));
  int perSm = 0;
  LB_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, decode_persist_kernel, kDThreads, P->smem));
  if (perSm < 1) {
    delete P;
    return "cudaDecodePlanEnd: the persistent kernel cannot be resident (occupancy 0)";
  }
  if (g_rec_maxHq > sms) {  // the attention phases run a head per block
    delete P;
    return "cudaDecodePlanEnd: more attention heads than SMs (a head per block)";
  }
  P->grid = sms;  // one block per SM, all resident (the grid barriers need every block running)
  LB_CUDA(cudaMalloc(&P->dev, sizeof(DPhase) * phases.size()));
  LB_CUDA(cudaMemcpy(P->dev, phases.data(), sizeof(DPhase) * phases.size(), cudaMemcpyHostToDevice));
  LB_CUDA(cudaMalloc(&P->sync, sizeof(unsigned) * (2 + phases.size())));
  LB_CUDA(cudaMemset(P->sync, 0, sizeof(unsigned) * (2 + phases.size())));
  *out = P;
  return nullptr;
}

const char* cuda_decode_plan_run(void* plan, int pos, const float* cs, const float* sn) {
  auto* P = static_cast<DecodePlanImpl*>(plan);
  if (pos < 0 || pos >= P->maxPos) return "cudaDecodePlanRun: position outside the KV cache";
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)P->grid);
  cfg.blockDim = dim3((unsigned)kDThreads);
  cfg.dynamicSmemBytes = P->smem;
  cfg.stream = 0;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;  // the launch fails instead of deadlocking when not every block fits
  attr[0].val.cooperative = 1;
  cfg.attrs = attr;
  cfg.numAttrs = coop_on() ? 1 : 0;
  LB_CUDA(cudaLaunchKernelEx(&cfg, decode_persist_kernel, (const DPhase*)P->dev, P->nph, P->maxIn, pos, cs, sn, P->sync,
                             persist_npre(), P->attnOff, P->trace));
  return nullptr;
}

const char* cuda_decode_plan_trace(void* plan, void* trace, size_t bytes, int* grid) {
  auto* P = static_cast<DecodePlanImpl*>(plan);
  *grid = P->grid;
  if (trace && bytes < (size_t)P->nph * P->grid * kTraceStamps * 8) return "cudaDecodePlanTrace: the buffer needs nph × grid × 6 u64";
  P->trace = static_cast<unsigned long long*>(trace);
  return nullptr;
}

int cuda_decode_plan_phases(void* plan) { return static_cast<DecodePlanImpl*>(plan)->nph; }

const char* cuda_decode_plan_free(void* plan) {
  auto* P = static_cast<DecodePlanImpl*>(plan);
  if (!P) return nullptr;
  if (P->dev) LB_CUDA(cudaFree(P->dev));
  if (P->sync) LB_CUDA(cudaFree(P->sync));
  delete P;
  return nullptr;
}

const char* cuda_repack4(const void* codes, void* dst, int out, int in) {
  if (in % 256 != 0) return "cudaRepackSpan4: in must be a multiple of 256";
  const size_t nspans = (size_t)out * in / 256;
  const unsigned grid = (unsigned)((nspans + 255) / 256 > 65535 * 8 ? 65535 * 8 : (nspans + 255) / 256);
  repack4_kernel<<<grid, 256>>>(static_cast<const uint4*>(codes), static_cast<uint4*>(dst), nspans);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

// Kernel-5 trace (benchmarks): launches while it is on write their stamps to consecutive [sms][kTraceStamps] u64 slices.
static unsigned long long* g_v5trace = nullptr;
static size_t g_v5trace_bytes = 0;
static int g_v5trace_n = 0;
const char* cuda_decode_gemv_trace(void* buf, size_t bytes, int* launches, int* stride) {
  int sms = 0;
  LB_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  *launches = g_v5trace_n;
  *stride = sms;
  g_v5trace = static_cast<unsigned long long*>(buf);
  g_v5trace_bytes = buf ? bytes : 0;
  g_v5trace_n = 0;
  return nullptr;
}

// The attention handed to the next kernel-5 launch (cuda_decode_attn_fold_next); launched on its own where that launch
// cannot take it.
static DecodeAttn g_fold_attn{};
static bool g_fold_pending = false;

static const char* decode_gemv(const DecodeSeg* segs, int nseg, int in, const void* x, bool x_bf16, const float* normw,
                               float eps, int probe, int variant, const float* x2, const DecodePf* pf, int npf,
                               bool evictFirst, bool foldReq, bool& foldTaken) {
  if (nseg < 1 || nseg > kDecodeMaxSegs) return "cudaDecodeGemv: 1 to 8 segments";
  if (npf < 0 || npf > kDecodeMaxPf) return "cudaDecodeGemv: 0 to 16 prefetch ranges";
  if (in % 256 != 0) return "cudaDecodeGemv: in must be a multiple of 256";
  DParams p{};
  p.nseg = nseg; p.in = in; p.x = x; p.x_bf16 = x_bf16 ? 1 : 0; p.normw = normw; p.eps = eps; p.probe = probe; p.x2 = x2;
  if (x2 && (normw || x_bf16)) return "cudaDecodeGemv: SwiGLU staging (x2) takes an f32 x and no RMSNorm";
  p.magic = 0x64006400u;
  p.probe5 = probe >> 4;  // benchmarks only (DParams::probe5); the low 4 bits are v4's probes
  probe &= 15;
  p.probe = probe;
  if (p.probe5 & 2) p.x2 = nullptr;
  for (int i = 0; i < npf; i++) {
    if ((reinterpret_cast<uintptr_t>(pf[i].ptr) & 15) || (pf[i].bytes & 15)) return "cudaDecodeGemv: prefetch ranges must be 16-byte aligned";
    p.pf[i] = pf[i];
  }
  p.npf = npf;
  p.evf = evictFirst ? 1 : 0;
  // v5 (variant 5) where every packed segment has group 64 (its scale|zero rows 16-byte aligned: ng % 4 == 0), else v4
  bool v5 = variant == 5 && probe == 0;
  for (int s = 0; s < nseg; s++)
    if (segs[s].kind == 0 && (segs[s].group != 64 || segs[s].ng % 4 != 0)) v5 = false;
  int tiles = 0;
  for (int s = 0; s < nseg; s++) {
    const DecodeSeg& S = segs[s];
    if (S.rows < 1) return "cudaDecodeGemv: a segment has no rows";
    if (S.kind == 0 && (S.group % 64 != 0 || !S.codes || !S.sz)) return "cudaDecodeGemv: packed segments need group % 64 == 0";
    if (S.kind == 1 && !S.W) return "cudaDecodeGemv: dense segment without weights";
    p.seg[s] = S;
    p.first[s] = tiles;
    const int rows = v5 && S.kind == 1 ? kDenseTile : kTile;
    tiles += (S.rows + rows - 1) / rows;
  }
  p.first[nseg] = tiles;
  // LoRA folded in (v5): consumers' t offsets, the producer segments and their tile count
  bool lora = false;
  int prows = 0;  // rows of the t producers (g_tpart)
  for (int s = 0; s < nseg; s++) {
    const DecodeSeg& S = segs[s];
    if (!S.B) continue;
    lora = true;
    if (S.tseg < 0 || S.tseg >= nseg || segs[S.tseg].kind != 1 || segs[S.tseg].B || segs[S.tseg].rows != S.r || S.r < 2 ||
        S.r > 128 || S.r % 2 != 0)
      return "cudaDecodeGemv: a LoRA B needs an even rank <= 128 and tseg = a dense segment of r rows without its own B";
    if (!g_rec) {  // kernel 5 launches: B's rows ride in the stages (one bulk copy of a multiple of 16 bytes)
      if (S.r % 8 != 0 || (reinterpret_cast<uintptr_t>(S.B) & 15))
        return "cudaDecodeGemv: a LoRA B folded into kernel 5 needs a rank that is a multiple of 8 and a 16-byte aligned B";
      if (S.r > p.rB) p.rB = S.r;
    }
    p.toff[s] = p.tlen;
    p.tlen += S.r;
    if (!((p.prodmask >> S.tseg) & 1)) {
      p.prodmask |= 1 << S.tseg;
      p.nprodTiles += (segs[S.tseg].rows + kDenseTile - 1) / kDenseTile;
      p.poff[S.tseg] = prows;
      prows += segs[S.tseg].rows;
    }
  }
  if (lora && !v5) return "cudaDecodeGemv: LoRA B·t in the launch needs kernel 5 and group 64";
  if (p.tlen > kDecodeMaxT || prows > kTPartRows) return "cudaDecodeGemv: the LoRA ranks of one launch add up to more than 512";
  if (x2 && !v5) return "cudaDecodeGemv: SwiGLU staging (x2) needs kernel 5 and group 64";
  static int sms = 0, optin = 0;
  if (!sms) {
    LB_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    LB_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  }
  const size_t statics = sizeof(float) * (2 * kDWarps * kRedPitch + kDWarps) + sizeof(unsigned) + 2 * kDWarps * kPTabMax + 64;
  size_t smem = (size_t)in * 4 + (size_t)(in / 64) * 16 + (size_t)in * 2;
  const size_t stages = (size_t)kStages * v5_stage_bytes(in < kChunk ? in : kChunk, p.rB);
  // kernel 5's per-warp table of a block's packed tiles (V5Iter): at most kPTabMax per block, row tiles < 2^13
  bool fits = (tiles + sms - 1) / sms <= kPTabMax;
  for (int s = 0; s < nseg; s++) if ((segs[s].rows + kTile - 1) / kTile > 8192) fits = false;
  if (!fits) v5 = false;
  if (v5 && smem + stages + statics <= (size_t)optin)
    smem += stages;
  else
    v5 = false;
  if (!v5 && (lora || x2)) return "cudaDecodeGemv: LoRA B·t or SwiGLU staging in the launch: in too large for kernel 5";
  if (!v5 && variant == 5) {  // v4's tile numbering
    tiles = 0;
    for (int s = 0; s < nseg; s++) { p.first[s] = tiles; tiles += (segs[s].rows + kTile - 1) / kTile; }
    p.first[nseg] = tiles;
  }
  if (smem + statics > (size_t)optin) return "cudaDecodeGemv: in too large for shared memory";
  if (foldReq) {  // kernel 5 takes the attention when its x is the attention's output and the scratch fits over xs
    const DecodeAttn& a = g_fold_attn;
    const bool ok = v5 && !g_rec && x_bf16 && x == a.out && in == a.Hq * a.hd && attn_smem_floats<kDWarps>(a.hd) <= in;
    foldTaken = true;
    if (ok) p.attn = a;
    else if (const char* e = cuda_decode_attn(a)) return e;  // (recording: the attention's phase before this GEMV's)
  }
  if (v5 && g_v5trace && !g_rec) {  // benchmarks: this launch's slice of the trace buffer (grid ≤ SM count)
    if ((size_t)(g_v5trace_n + 1) * sms * kTraceStamps * 8 <= g_v5trace_bytes) p.ts = g_v5trace + (size_t)g_v5trace_n * sms * kTraceStamps;
    g_v5trace_n++;
  }
  if (g_rec) {  // recording a persistent plan: the GEMV becomes a phase
    if (!v5 || probe || p.probe5) return "cudaDecodePlan: a recorded GEMV must run as kernel 5 (group 64, variant 5, no probe)";
    DPhase ph{};
    ph.kind = 0;
    ph.g = p;
    ph.g.npf = 0;  // the persistent kernel streams the next phase's weights itself
    g_rec->push_back(ph);
    if (in > g_rec_maxIn) g_rec_maxIn = in;
    return nullptr;
  }
  auto launch = [&](auto kern, int slot_i) -> const char* {
    // the limit is set on each kernel's first launch: the 48 KB default counts static shared memory too (kernel 5 has
    // ~8 KB of it, so 40–48 KB of dynamic memory without the attribute failed to launch: device run 76)
    static size_t attr[4] = {0, 0, 0, 0};
    if (smem > attr[slot_i]) {
      LB_CUDA(cudaFuncSetAttribute((const void*)kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
      attr[slot_i] = smem;
    }
    const int grid = tiles < sms ? tiles : sms;
    return launch_pdl(kern, (unsigned)grid, (unsigned)kDThreads, smem, p);
  };
  // variant: 0 (default) = v4 with one span item in flight per warp ahead of the one computed, 2 = v4 with two (spills),
  // 5 = v5 (bulk copies into a shared-memory ring; v4 where a segment does not qualify)
  if (probe) return launch(dgemv_kernel<1, true>, 2);
  if (v5) return launch(dgemv5_kernel, 3);
  if (variant == 2) return launch(dgemv_kernel<2, false>, 0);
  return launch(dgemv_kernel<1, false>, 1);
}

const char* cuda_decode_gemv(const DecodeSeg* segs, int nseg, int in, const void* x, bool x_bf16, const float* normw,
                             float eps, int probe, int variant, const float* x2, const DecodePf* pf, int npf,
                             bool evictFirst) {
  // a pending attention is consumed by this call either way: folded into the launch, launched first when this launch
  // cannot fold it, or (the call failing its own checks before that) launched on its own so its output is still written
  const bool foldReq = g_fold_pending;
  g_fold_pending = false;
  bool foldTaken = false;
  const char* err = decode_gemv(segs, nseg, in, x, x_bf16, normw, eps, probe, variant, x2, pf, npf, evictFirst, foldReq, foldTaken);
  if (err && foldReq && !foldTaken) cuda_decode_attn(g_fold_attn);  // the GEMV's own error is the one reported
  return err;
}

const char* cuda_decode_qkv_epi(const DecodeQkv& e) {
  const int n = e.Hq * e.hd / 2 + e.Hkv * e.hd / 2 + e.Hkv * e.hd;
  return launch_pdl(qkv_epi_kernel, epi_grid(n), 256, (size_t)(e.rq + e.rk + e.rv + 1) * 4, e);
}

// The shapes the decode attention takes, launched or folded into kernel 5 (fn: the caller, for the message).
static const char* attn_unsupported(const DecodeAttn& e, const char* fn) {
  const char* why = e.Hkv < 1 || e.Hq % e.Hkv != 0                ? "Hq must be a multiple of Hkv"
                    : e.hd != 64 && e.hd != 128 && e.hd != 256 ? "head dim must be 64, 128 or 256"
                                                                : nullptr;
  if (!why) return nullptr;
  static thread_local char buf[96];
  std::snprintf(buf, sizeof buf, "%s: %s", fn, why);
  return buf;
}

const char* cuda_decode_attn(const DecodeAttn& e) {
  if (const char* why = attn_unsupported(e, "cudaDecodeAttn")) return why;
  const bool extra = e.r > 0 || e.i8;
  if (extra && g_rec) return "cudaDecodeAttn: B·t and the int8-x output only in a launch of its own (not in a persistent plan)";
  if (extra && g_fold_pending) return "cudaDecodeAttn: B·t and the int8-x output only in a launch of its own (an attention is pending)";
  if (g_rec) {
    DPhase ph{};
    ph.kind = 1;
    ph.a = e;
    g_rec->push_back(ph);
    if (e.hd > g_rec_maxHd) g_rec_maxHd = e.hd;
    if (e.Hq > g_rec_maxHq) g_rec_maxHq = e.Hq;
    return nullptr;
  }
  const size_t tb = (size_t)3 * e.r * sizeof(float);
  if (e.hd == 64) return launch_pdl(decode_attn_kernel<2>, (unsigned)e.Hq, 256, tb, e);
  if (e.hd == 128) return launch_pdl(decode_attn_kernel<4>, (unsigned)e.Hq, 256, tb, e);
  return launch_pdl(decode_attn_kernel<8>, (unsigned)e.Hq, 256, tb, e);
}

const char* cuda_decode_attn_fold_next(const DecodeAttn& e) {
  if (const char* why = attn_unsupported(e, "cudaDecodeAttnFoldNext")) return why;
  if (e.r > 0 || e.i8) return "cudaDecodeAttnFoldNext: B·t and the int8-x output only in cudaDecodeAttn launched alone";
  if (g_fold_pending)  // two in a row: the first runs on its own
    if (const char* err = cuda_decode_attn(g_fold_attn)) return err;
  g_fold_attn = e;
  g_fold_pending = true;
  return nullptr;
}

const char* cuda_argmax_f32(const float* x, int n, int* id, int* ids, int slot) {
  if (n < 1) return "cudaArgmaxF32: empty input";
  return launch_pdl(argmax_kernel, 1u, 1024u, 0, x, n, id, ids, slot);
}

const char* cuda_decode_residual_epi(float* x, const float* y, const float* t, const void* B, int r, int n) {
  return launch_pdl(residual_epi_kernel, epi_grid(n), 256, (size_t)(r + 1) * 4, x, y, t, static_cast<const uint16_t*>(B), r, n);
}

const char* cuda_decode_swiglu_epi(const float* g, const float* u, const float* tg, const float* tu, const void* Bg,
                                   const void* Bu, int rg, int ru, int n, float* act) {
  return launch_pdl(swiglu_epi_kernel, epi_grid(n), 256, (size_t)(rg + ru + 1) * 4, g, u, tg, tu,
                    static_cast<const uint16_t*>(Bg), static_cast<const uint16_t*>(Bu), rg, ru, n, act);
}

}  // namespace lowbit
