// Dequantization of a packed low-bit weight (QDesc, see lowbit_cuda.h) to bf16.
//
// Each thread owns 8 consecutive elements of the flat row-major tensor: their codes are `bits` whole bytes
// of the stream (8·bits bits, byte-aligned for every bit width), read with one 2/4/8-byte load for 2/4/8
// bits, and the result is one 16-byte store. When the 8 share one row-group ('int', no gIdx, in and group
// multiples of 8) or one block ('nf', group multiple of 8) the metadata is read once per thread. 'int' group 64 without
// gIdx takes dequant_int_g64_kernel (no 64-bit index division; LOWBIT_DEQUANT_GENERAL=1 forces the general kernel).
// Arithmetic mirrors the TS reference exactly (no FMA contraction): 'int' s·(q − z) is exact in f32; 'nf'
// fl(fl(level·absmax) + τ) with fl(fl(map·scale) + offset) for double-quantized absmax. The bf16 output is
// therefore the round-to-nearest-even of the TS float32 value, bit for bit.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdlib>

#include "check.h"
#include "fastdiv.cuh"
#include "lowbit_cuda.h"

namespace lowbit {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float half_lo(uint32_t w) { return __half2float(__ushort_as_half((unsigned short)(w & 0xffff))); }
__device__ __forceinline__ float half_hi(uint32_t w) { return __half2float(__ushort_as_half((unsigned short)(w >> 16))); }

// Codes of elements [8t, 8t+8): stream bytes [t·B, t·B + B).
template <int B>
__device__ __forceinline__ uint64_t load8(const uint8_t* p, size_t t) {
  if constexpr (B == 2) return __ldg(reinterpret_cast<const unsigned short*>(p) + t);
  else if constexpr (B == 4) return __ldg(reinterpret_cast<const unsigned int*>(p) + t);
  else if constexpr (B == 8) return __ldg(reinterpret_cast<const unsigned long long*>(p) + t);
  else {
    uint64_t v = 0;
#pragma unroll
    for (int k = 0; k < B; k++) v |= (uint64_t)__ldg(p + t * B + k) << (8 * k);
    return v;
  }
}

// Code of element e (any bit width): the two bytes holding stream bit e·B (the stream is padded).
__device__ __forceinline__ uint32_t code_at(const uint8_t* p, size_t e, int B) {
  const size_t bit = e * (size_t)B;
  const uint32_t w = (uint32_t)__ldg(p + (bit >> 3)) | ((uint32_t)__ldg(p + (bit >> 3) + 1) << 8);
  return (w >> (bit & 7)) & ((1u << B) - 1);
}

struct SMem {
  float lev[256];
  float map[256];
};

__device__ __forceinline__ float nf_absmax(const QDesc& d, const SMem& sm, size_t b) {
  if (d.absmax) return __ldg(d.absmax + b);
  return __fadd_rn(__fmul_rn(sm.map[__ldg(d.absq + b)], __ldg(d.absscale + b / 256)), d.absoffset);
}
__device__ __forceinline__ float nf_tau(const QDesc& d, const SMem& sm, size_t b) {
  return __fmul_rn(sm.map[__ldg(d.tauq + b)], __ldg(d.tauscale + b / 256));
}

// One element, all metadata looked up (general path: gIdx, unaligned groups, the tail).
__device__ __forceinline__ float deq_one(const QDesc& d, const SMem& sm, size_t e, uint32_t q) {
  if (d.layout == 0) {
    const int r = (int)(e / (unsigned)d.in), i = (int)(e - (size_t)r * d.in);
    const int ng = (d.in + d.group - 1) / d.group;
    const int g = d.gidx ? __ldg(d.gidx + i) : i / d.group;
    const uint32_t w = __ldg(d.sz + (size_t)r * ng + g);
    return __fmul_rn(half_lo(w), (float)q - half_hi(w));
  }
  const size_t b = e / (unsigned)d.group;
  float v = __fmul_rn(sm.lev[q], nf_absmax(d, sm, b));
  if (d.tauq) v = __fadd_rn(v, nf_tau(d, sm, b));
  return v;
}

// 8 'int' codes of one row-group (code j at bits B·j of c; w = its f16 scale | f16 zero word): v[j] = s·(q_j − z).
template <int B>
__device__ __forceinline__ void deq8_int(uint64_t c, uint32_t w, float (&v)[8]) {
  constexpr uint32_t mask = (1u << B) - 1;
  const float s = half_lo(w), z = half_hi(w);
#pragma unroll
  for (int j = 0; j < 8; j++) v[j] = __fmul_rn(s, (float)((uint32_t)(c >> (B * j)) & mask) - z);
}

__device__ __forceinline__ uint32_t pack2(float a, float b) {
  return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(a)) |
         ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(b)) << 16);
}

template <int B>
__global__ void __launch_bounds__(kThreads) dequant_kernel(QDesc d, __nv_bfloat16* __restrict__ dst, size_t n,
                                                           bool uniform8) {
  __shared__ SMem sm;
  if (d.layout == 1) {
    if (threadIdx.x < (1u << B)) sm.lev[threadIdx.x] = d.levels[threadIdx.x];
    if (d.dynmap) sm.map[threadIdx.x] = d.dynmap[threadIdx.x];  // kThreads == 256
  }
  __syncthreads();
  const size_t t = blockIdx.x * (size_t)kThreads + threadIdx.x;
  const size_t e0 = t * 8;
  if (e0 >= n) return;
  constexpr uint32_t mask = (1u << B) - 1;
  if (e0 + 8 <= n) {
    const uint64_t c = load8<B>(d.codes, t);
    float v[8];
    if (uniform8) {
      if (d.layout == 0) {
        const int r = (int)(e0 / (unsigned)d.in), i = (int)(e0 - (size_t)r * d.in);
        const int ng = (d.in + d.group - 1) / d.group;
        const uint32_t w = __ldg(d.sz + (size_t)r * ng + i / d.group);
        deq8_int<B>(c, w, v);
      } else {
        const size_t b = e0 / (unsigned)d.group;
        const float a = nf_absmax(d, sm, b);
        if (d.tauq) {
          const float tau = nf_tau(d, sm, b);
#pragma unroll
          for (int j = 0; j < 8; j++) v[j] = __fadd_rn(__fmul_rn(sm.lev[(uint32_t)(c >> (B * j)) & mask], a), tau);
        } else {
#pragma unroll
          for (int j = 0; j < 8; j++) v[j] = __fmul_rn(sm.lev[(uint32_t)(c >> (B * j)) & mask], a);
        }
      }
    } else if (d.gidx && d.layout == 0 && d.in % 8 == 0) {
      // gIdx, 8 elements of one row: row/column once, 8 group lookups (two 16-byte gIdx loads)
      const int r = (int)(e0 / (unsigned)d.in), i = (int)(e0 - (size_t)r * d.in);
      const int ng = (d.in + d.group - 1) / d.group;
      const int4 g0 = __ldg(reinterpret_cast<const int4*>(d.gidx + i)), g1 = __ldg(reinterpret_cast<const int4*>(d.gidx + i) + 1);
      const int gs[8] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
      const uint32_t* szr = d.sz + (size_t)r * ng;
#pragma unroll
      for (int j = 0; j < 8; j++) {
        const uint32_t w = __ldg(szr + gs[j]);
        v[j] = __fmul_rn(half_lo(w), (float)((uint32_t)(c >> (B * j)) & mask) - half_hi(w));
      }
    } else {
#pragma unroll
      for (int j = 0; j < 8; j++) v[j] = deq_one(d, sm, e0 + j, (uint32_t)(c >> (B * j)) & mask);
    }
    uint4 o;
    o.x = pack2(v[0], v[1]); o.y = pack2(v[2], v[3]); o.z = pack2(v[4], v[5]); o.w = pack2(v[6], v[7]);
    reinterpret_cast<uint4*>(dst)[t] = o;
  } else {
    for (size_t e = e0; e < n; e++) dst[e] = __float2bfloat16_rn(deq_one(d, sm, e, code_at(d.codes, e, B)));
  }
}

// The 'int' group-64 fast path (no gIdx, in % 64 == 0, fewer than 2^31 elements, 2/4/8 bits — every RTN/GPTQ base
// the training and eval paths dequantize): the same arithmetic, bits and 16-byte stores as dequant_kernel, with the
// row found by a multiply-shift and the group by a shift — the general kernel's 64-bit index division per 8 elements
// is most of its instructions.
// (Measured with 2 and 4 chunks per thread, a grid's width apart, all loads first: no faster — device run 57.)
template <int B>
__global__ void __launch_bounds__(kThreads) dequant_int_g64_kernel(const uint8_t* __restrict__ codes, const uint32_t* __restrict__ sz,
                                                                   FastDiv in, __nv_bfloat16* __restrict__ dst, int chunks) {
  const int t = blockIdx.x * kThreads + threadIdx.x;
  if (t >= chunks) return;
  const int e0 = t * 8, r = in.div(e0), i = e0 - r * in.d;
  const uint32_t w = __ldg(sz + r * (in.d >> 6) + (i >> 6));
  float v[8];
  deq8_int<B>(load8<B>(codes, t), w, v);
  uint4 o;
  o.x = pack2(v[0], v[1]); o.y = pack2(v[2], v[3]); o.z = pack2(v[4], v[5]); o.w = pack2(v[6], v[7]);
  reinterpret_cast<uint4*>(dst)[t] = o;
}

}  // namespace

const char* qdesc_check(const QDesc& d) {
  if (d.out <= 0 || d.in <= 0 || d.group <= 0 || !d.codes) return "packed tensor: bad shape or no codes";
  if (d.layout == 0) {
    if (d.bits < 1 || d.bits > 8 || !d.sz) return "packed tensor ('int'): bits must be 1..8 with scales/zeros";
  } else if (d.layout == 1) {
    if (d.bits < 2 || d.bits > 8 || !d.levels) return "packed tensor ('nf'): bits must be 2..8 with levels";
    if (!d.absmax && !(d.absq && d.absscale && d.dynmap)) return "packed tensor ('nf'): no absmax";
    if (d.tauq && !(d.tauscale && d.dynmap)) return "packed tensor ('nf'): τ codes without scales/map";
  } else {
    return "packed tensor: unknown layout";
  }
  return nullptr;
}

const char* cuda_dequant_bf16(const QDesc& d, void* dst, void* stream) {
  if (const char* e = qdesc_check(d)) return e;
  const size_t n = (size_t)d.out * d.in;
  const size_t threads = (n + 7) / 8;
  static const bool general = [] { const char* e = std::getenv("LOWBIT_DEQUANT_GENERAL"); return e && e[0] == '1'; }();
  if (d.layout == 0 && !d.gidx && d.group == 64 && d.in % 64 == 0 && n < (1ull << 31) && !general &&
      (d.bits == 2 || d.bits == 4 || d.bits == 8)) {
    const int chunks = (int)(n / 8);
    const unsigned g = (unsigned)((chunks + kThreads - 1) / kThreads);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    auto* o = static_cast<__nv_bfloat16*>(dst);
    const FastDiv in = FastDiv::make(d.in);
    if (d.bits == 2) dequant_int_g64_kernel<2><<<g, kThreads, 0, s>>>(d.codes, d.sz, in, o, chunks);
    else if (d.bits == 4) dequant_int_g64_kernel<4><<<g, kThreads, 0, s>>>(d.codes, d.sz, in, o, chunks);
    else dequant_int_g64_kernel<8><<<g, kThreads, 0, s>>>(d.codes, d.sz, in, o, chunks);
    LB_CUDA(cudaGetLastError());
    return nullptr;
  }
  const unsigned grid = (unsigned)((threads + kThreads - 1) / kThreads);
  const bool uniform8 = d.layout == 0 ? (!d.gidx && d.in % 8 == 0 && d.group % 8 == 0) : d.group % 8 == 0;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  auto* o = static_cast<__nv_bfloat16*>(dst);
  switch (d.bits) {
    case 1: dequant_kernel<1><<<grid, kThreads, 0, s>>>(d, o, n, uniform8); break;
    case 2: dequant_kernel<2><<<grid, kThreads, 0, s>>>(d, o, n, uniform8); break;
    case 3: dequant_kernel<3><<<grid, kThreads, 0, s>>>(d, o, n, uniform8); break;
    case 4: dequant_kernel<4><<<grid, kThreads, 0, s>>>(d, o, n, uniform8); break;
    case 5: dequant_kernel<5><<<grid, kThreads, 0, s>>>(d, o, n, uniform8); break;
    case 6: dequant_kernel<6><<<grid, kThreads, 0, s>>>(d, o, n, uniform8); break;
    case 7: dequant_kernel<7><<<grid, kThreads, 0, s>>>(d, o, n, uniform8); break;
    case 8: dequant_kernel<8><<<grid, kThreads, 0, s>>>(d, o, n, uniform8); break;
    default: return "dequant: bits must be 1..8";
  }
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

}  // namespace lowbit
