// Fused packed GEMM on Hopper (sm_90a wgmma): Y[M, out] = X[M, in]·Ŵᵀ straight from the packed 2-bit codes
// ('int' layout, group 64, no gIdx), with no bf16 copy of the weight. Computed as Yᵀ = Ŵ·Xᵀ so that the
// weight is wgmma's A operand, which may come from registers:
//
//   CTA tile 128 out rows × 128 tokens, 256 threads = 2 warpgroups, warpgroup wg owns rows 64wg..64wg+63.
//   k is walked in blocks of 64 (= one quantization group, so one scale|zero word per row and block).
//   A (weight), registers: thread (warp w of its warpgroup, lane = 4g + t) holds, per k16 step s, rows
//     r = 16w + g and r + 8 at k = 16s + {2t, 2t+1, 2t+8, 2t+9} (PTX ISA "wgmma .m64nNk16 register fragment
//     layout for matrix A", the mma.m16n8k16 A order per warp). In the pack.ts stream, code k of a row's
//     64-code block is at bit 2(k mod 16) of 32-bit word k/16, so step s reads word s: codes 2t, 2t+1 at
//     bits 4t, 4t+2 and codes 2t+8, 2t+9 at bits 16+4t, 18+4t. One shift puts a pair at bits 16 and 18.
//   Code → bf16 (exact, the same bf16 as dequant.cu): with f = asfloat(0x4B000000 | (q << p)) = 2^23 + q·2^p,
//     fma(f, s·2^−p, −s·(2^(23−p) + z)) = s·(q − z) with ONE rounding of an exact value, so the f32 result is
//     dequant.cu's s·(q − z) bit for bit (p = 16, 18 keep s·(2^(23−p) + z) within 20 bits for integer z ≤ 255).
//     One LOP3 + one FFMA per weight, one cvt per pair.
//   B (X tile, K-major), shared memory: stage = 128 tokens × 64 k bf16, token n at byte 128n, its 16-byte
//     chunk j at chunk j ^ (n mod 8) (the 128-byte swizzle; stage 1024-byte aligned, descriptor SBO = 1024 B
//     between 8-token groups; k16 step s = descriptor start + 32 s bytes).
//   Pipeline: kStages stages (X tile + the 128 rows' code block + scale|zero words), all loaded with cp.async,
//     kLook = kStages − 2 k-blocks ahead. Per k-block: wait + proxy fence + barrier, refill the stage read two
//     blocks ago, 4 wgmma (A from the registers converted in the previous iteration), commit, wait until the
//     previous block's wgmma are done, convert the next block's codes into the other register buffer.
//   Epilogue: fp32 accumulators → shared memory (token-major) → coalesced 16-byte stores of Y (f32 or bf16).
//
// Variants 3/4 (qgemm_w2_wgmma_rp_kernel): the same tile, B path and pipeline, A from a repacked stream built once
// per weight (qgemm_w2_repack_kernel; layout at that kernel): codes already in A-fragment order, so one LOP3 (magic
// 0x43004300 in a register) + two fma.rn.bf16x2 per A register instead of shift + 2 LOP3 + 2 FFMA + cvt per pair
// plus per-block scale math; the weight is bf16(bf16(s)·(q − zi) + c2), about one bf16 ulp from dequant.cu's.
// Variants 5/6 (qgemm_w2_wgmma_rp_sk_kernel, the default with the repacked stream): variant 3/4's per-warpgroup code
// in a 512-thread CTA whose two warpgroup pairs split the k-blocks of one tile, summed through shared memory.
//
// Debug modes (one CTA: out == 128, M <= 128, f32 Y; Y is used as a raw uint32 dump):
//   1: Y32[tid·16 + 4s + r] = A register r of k16 step s of k-block 0   (check the fragment order)
//   2: Y32[0 .. 4096) = the raw bytes of stage 0's X tile                (check the swizzled layout)
//   3: Y32[tid·64 + i] = accumulator i after the whole K loop (M = 128)  (check the D fragment order)
// Their CPU models: src/backend/qgemm-fused-model.ts.
#include <cuda.h>  // CUtensorMap and cuTensorMapEncodeTiled's types only: the function comes from the runtime's driver entry point
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "check.h"
#include "fastdiv.cuh"
#include "lowbit_cuda.h"
#include "mbarrier.cuh"

// wgmma exists only in the arch-specific sm_90a target; other targets get an empty kernel (never launched:
// the launcher checks the device first).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LB_HAVE_WGMMA 1
#endif

namespace lowbit {
namespace {

constexpr int kBM = 128, kBN = 128, kBK = 64;
constexpr int kThreads = 256;
constexpr int kXBytes = kBN * kBK * 2;      // 16 KB
constexpr int kCodeBytes = kBM * kBK / 4;   // 2 KB: 64 codes of 2 bits per row
constexpr int kSzBytes = kBM * 4;           // one scale|zero word per row
constexpr int kStageBytes = 19 * 1024;      // keeps every stage's X tile 1024-byte aligned
constexpr int kEpiPitch = kBM + 4;          // floats per token row of the epilogue tile (conflict-free writes)
// Variants (the stage count and CTAs per SM trade latency hiding against co-resident CTAs): 1 = 6 stages, one CTA
// per SM (134 registers); 2 = 5 stages, two CTAs per SM (128 registers, no spills).
constexpr int smem_bytes(int stages) { return stages * kStageBytes + 1024; }  // + slack to align the base to 1024
static_assert(kXBytes + kCodeBytes + kSzBytes <= kStageBytes, "stage overflow");
static_assert(kBN * kEpiPitch * 4 <= 5 * kStageBytes, "epilogue tile overflow");

struct FusedArgs {
  const uint8_t* codes;
  const uint32_t* sz;
  const __nv_bfloat16* X;
  void* Y;
  int M, out, in, y_f32, debug;
};

// Variants 3/4 (the repacked stream, see the header): per (128-row block, k-block) 4 KB = 2 KB codes in thread
// fragment order + 2 KB row constants; the stage is the X tile + that block (20 KB, a multiple of 1024).
constexpr int kRpBytes = 4096, kRpCodeBytes = 2048;
constexpr int kStageBytes3 = kXBytes + kRpBytes;
constexpr int smem_bytes3(int stages) { return stages * kStageBytes3 + 1024; }
static_assert(kStageBytes3 % 1024 == 0, "stage alignment");
static_assert(kBN * kEpiPitch * 4 <= 4 * kStageBytes3, "epilogue tile overflow (v3)");

// Variant 8's schedule: W workers over I = tiles × KB iterations; tile t → (row block, token block) by `order`
// (0: a row block's token blocks first, so a worker's consecutive tiles share the weight; 1: the row blocks first).
struct SkArgs {
  unsigned workers, iters;
  FastDiv kb, nblk, mblk;
  int order;
#ifdef __CUDACC__
  __device__ __forceinline__ void tile_xy(int t, int& bx, int& by) const {
    if (order) { by = mblk.div(t); bx = t - by * mblk.d; }
    else { bx = nblk.div(t); by = t - bx * nblk.d; }
  }
#endif
};

struct FusedArgs3 {
  const __nv_bfloat16* X;
  const uint8_t* rp;
  void* Y;
  int M, out, in, y_f32, debug;
  uint32_t magic;  // 0x43004300
  SkArgs sk;       // variant 8 only
};

#ifdef LB_HAVE_WGMMA
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16-byte copy, zero-filled when !full (tokens past M).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool full) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(full ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }
// cp.async writes are generic-proxy writes; wgmma reads shared memory through the async proxy.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// Pins registers at this point (no compiler motion across it): keeps an A buffer allocated until the wgmma
// that read it is known complete.
__device__ __forceinline__ void pin(uint32_t (&a)[4][4]) {
#pragma unroll
  for (int s = 0; s < 4; s++)
#pragma unroll
    for (int r = 0; r < 4; r++) asm volatile("" : "+r"(a[s][r])::"memory");
}
template <int NA>
__device__ __forceinline__ void pin(float (&d)[NA]) {
#pragma unroll
  for (int i = 0; i < NA; i++) asm volatile("" : "+f"(d[i])::"memory");
}

// Descriptor of a K-major, 128-byte-swizzled bf16 tile at shared address `a` (1024-aligned for k step 0):
// start address >> 4 (bits 0–13), LBO unused for swizzled K-major (1), SBO = 1024 B >> 4 (bits 32–45),
// base offset 0, swizzle mode 1 = 128 B (bits 62–63).
__device__ __forceinline__ uint64_t desc_sw128(uint32_t a) {
  return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

// D[64×128] (+)= A[64×16] (registers) · B[16×128] (descriptor), fp32 accumulate.
__device__ __forceinline__ void wgmma_128(float (&d)[64], const uint32_t (&a)[4], uint64_t desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "
      "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, "
      "%45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
        "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
        "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
        "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)
      : "memory");
}

// D[64×176] (+)= A[64×16] (registers) · B[16×176] (descriptor), fp32 accumulate (variant 9's token tile).
__device__ __forceinline__ void wgmma_176(float (&d)[88], const uint32_t (&a)[4], uint64_t desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %93, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n176k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "
      "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "
      "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, "
      "%66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87"
      "}, {%88, %89, %90, %91}, %92, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)
      : "memory");
}

// One k-block (4 k16 steps) of a warpgroup: D += A(cur)·B(desc), committed as a group, then wait until the PREVIOUS
// k-block's group is done — its A registers (nxt) may then be overwritten and its stage reused. NA = the token tile / 2
// accumulators per thread (64: 128 tokens, 88: 176).
template <int NA>
__device__ __forceinline__ void kblock_mma(float (&acc)[NA], uint32_t (&cur)[4][4], uint32_t (&nxt)[4][4], uint64_t desc) {
  static_assert(NA == 64 || NA == 88, "token tile 128 or 176");
  pin(acc);
  wg_fence();
#pragma unroll
  for (int s = 0; s < 4; s++) {  // +32 bytes per k16 step
    if constexpr (NA == 64) wgmma_128(acc, cur[s], desc + 2 * s);
    else wgmma_176(acc, cur[s], desc + 2 * s);
  }
  wg_commit();
  wg_wait<1>();
  pin(nxt);
}

// Runs iter(j, cur, nxt) for j = 0 .. n − 1 with the two A buffers alternating (unrolled by two so both stay in
// registers).
template <class F>
__device__ __forceinline__ void for_kblocks(int n, uint32_t (&A0)[4][4], uint32_t (&A1)[4][4], F&& iter) {
  int j = 0;
#pragma unroll 1
  for (; j + 1 < n; j += 2) {
    iter(j, A0, A1);
    iter(j + 1, A1, A0);
  }
  if (j < n) iter(j, A0, A1);
}

// Per row and k-block: s·2^−16, s·2^−18 and −s·(2^7 + z), −s·(2^5 + z) (all exact in f32 for f16 s, integer z ≤ 255).
struct RowK {
  float s16, s18, c16, c18;
};
__device__ __forceinline__ RowK row_consts(uint32_t w) {
  const float s = __half2float(__ushort_as_half((unsigned short)(w & 0xffff)));
  const float z = __half2float(__ushort_as_half((unsigned short)(w >> 16)));
  return {__fmul_rn(s, 0x1p-16f), __fmul_rn(s, 0x1p-18f), -__fmul_rn(s, __fadd_rn(128.f, z)),
          -__fmul_rn(s, __fadd_rn(32.f, z))};
}
// Two weights whose codes sit at bits 16–17 (low bf16) and 18–19 (high bf16) of x.
__device__ __forceinline__ uint32_t deq_pair(uint32_t x, const RowK& k) {
  const float lo = fmaf(__uint_as_float((x & 0x00030000u) | 0x4B000000u), k.s16, k.c16);
  const float hi = fmaf(__uint_as_float((x & 0x000C0000u) | 0x4B000000u), k.s18, k.c18);
  const __nv_bfloat162 b = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&b);
}
// Eight floats (a, then b) as eight bf16 (round to nearest even) in one 16-byte word.
__device__ __forceinline__ uint4 bf16x8(const float4& a, const float4& b) {
  const __nv_bfloat162 h0 = __floats2bfloat162_rn(a.x, a.y), h1 = __floats2bfloat162_rn(a.z, a.w);
  const __nv_bfloat162 h2 = __floats2bfloat162_rn(b.x, b.y), h3 = __floats2bfloat162_rn(b.z, b.w);
  return make_uint4(*reinterpret_cast<const uint32_t*>(&h0), *reinterpret_cast<const uint32_t*>(&h1),
                    *reinterpret_cast<const uint32_t*>(&h2), *reinterpret_cast<const uint32_t*>(&h3));
}
// Epilogue (all variants): fp32 accumulators → shared memory (token-major; the stages are free) → coalesced
// 16-byte stores of Y (f32 or bf16), tokens past M skipped.
// The token-major f32 tile (pitch kEpiPitch) → Y rows n0.. (tokens past M skipped), 16-byte stores of f32 or bf16,
// by nthreads threads.
template <int nthreads, int BN = kBN>
__device__ __forceinline__ void store_y(const float* tile, void* Y, int M, int out, int m0, int n0, int y_f32, int tid) {
  if (y_f32) {
    for (int i = tid; i < BN * (kBM / 4); i += nthreads) {
      const int n = i / (kBM / 4), c = i % (kBM / 4);
      if (n0 + n >= M) break;  // rows are in order: the rest are past M too
      const float4 v = *reinterpret_cast<const float4*>(tile + n * kEpiPitch + 4 * c);
      *reinterpret_cast<float4*>(static_cast<float*>(Y) + (size_t)(n0 + n) * out + m0 + 4 * c) = v;
    }
  } else {
    for (int i = tid; i < BN * (kBM / 8); i += nthreads) {
      const int n = i / (kBM / 8), c = i % (kBM / 8);
      if (n0 + n >= M) break;
      const float4 a = *reinterpret_cast<const float4*>(tile + n * kEpiPitch + 8 * c);
      const float4 b = *reinterpret_cast<const float4*>(tile + n * kEpiPitch + 8 * c + 4);
      *reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(Y) + (size_t)(n0 + n) * out + m0 + 8 * c) = bf16x8(a, b);
    }
  }
}

__device__ __forceinline__ void store_tile(const float (&acc)[64], uint8_t* sg, void* Y, int M, int out, int m0, int n0,
                                           int y_f32, int tid) {
  // acc[4j + 2v + u] = D[row 16w + g + 8v][token 8j + 2t + u] (PTX "wgmma .m64nNk16 register fragment layout for
  // accumulator matrix D"); staged token-major.
  float* tile = reinterpret_cast<float*>(sg);
  const int wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int mr = 64 * wg + 16 * warp + g;
#pragma unroll
  for (int j = 0; j < 16; j++)
#pragma unroll
    for (int v = 0; v < 2; v++)
#pragma unroll
      for (int u = 0; u < 2; u++) tile[(8 * j + 2 * t + u) * kEpiPitch + mr + 8 * v] = acc[4 * j + 2 * v + u];
  __syncthreads();
  store_y<kThreads>(tile, Y, M, out, m0, n0, y_f32, tid);
}
#endif  // LB_HAVE_WGMMA

template <int kStages, int kMinBlocks>
__global__ void __launch_bounds__(kThreads, kMinBlocks) qgemm_w2_wgmma_kernel(const FusedArgs p) {
#ifdef LB_HAVE_WGMMA
  constexpr int kLook = kStages - 2;  // k-blocks loaded ahead
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t sb = (raw + 1023u) & ~1023u;  // shared address of stage 0
  uint8_t* const sg = smem_raw + (sb - raw);    // the same as a generic pointer
  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int m0 = blockIdx.x * kBM, n0 = blockIdx.y * kBN;
  const int KB = p.in / kBK, ng = p.in / kBK, rowBytes = p.in / 4;
  const int ra = 64 * wg + 16 * warp + g;  // this thread's A rows in the tile: ra and ra + 8

  // k-block kb → stage kb % kStages: X tile (swizzled), the 128 rows' 16 code bytes, their scale|zero words.
  auto load_stage = [&](int kb) {
    const int so = (kb % kStages) * kStageBytes;
#pragma unroll
    for (int r = 0; r < 4; r++) {
      const int c = tid + kThreads * r, n = c >> 3, j = c & 7;
      const bool ok = n0 + n < p.M;
      const __nv_bfloat16* src = p.X + (size_t)(ok ? n0 + n : 0) * p.in + kb * kBK + j * 8;
      cp_async16(sb + so + n * 128 + ((j ^ (n & 7)) << 4), src, ok);
    }
    if (tid < kBM) cp_async16(sb + so + kXBytes + tid * 16, p.codes + (size_t)(m0 + tid) * rowBytes + kb * 16, true);
    else cp_async4(sb + so + kXBytes + kCodeBytes + (tid - kBM) * 4, p.sz + (size_t)(m0 + tid - kBM) * ng + kb);
  };
  // The A fragments of k-block kb (its stage has landed) from the packed codes.
  auto convert = [&](int kb, uint32_t (&a)[4][4]) {
    const uint8_t* st = sg + (kb % kStages) * kStageBytes;
    const uint4 ca = *reinterpret_cast<const uint4*>(st + kXBytes + ra * 16);
    const uint4 cb = *reinterpret_cast<const uint4*>(st + kXBytes + (ra + 8) * 16);
    const RowK ka = row_consts(*reinterpret_cast<const uint32_t*>(st + kXBytes + kCodeBytes + ra * 4));
    const RowK kb8 = row_consts(*reinterpret_cast<const uint32_t*>(st + kXBytes + kCodeBytes + (ra + 8) * 4));
    const uint32_t wa[4] = {ca.x, ca.y, ca.z, ca.w}, wb[4] = {cb.x, cb.y, cb.z, cb.w};
    const int sl = 16 - 4 * t, sr = 4 * t;
#pragma unroll
    for (int s = 0; s < 4; s++) {
      a[s][0] = deq_pair(wa[s] << sl, ka);   // row g,     k 2t, 2t+1
      a[s][1] = deq_pair(wb[s] << sl, kb8);  // row g + 8, k 2t, 2t+1
      a[s][2] = deq_pair(wa[s] >> sr, ka);   // row g,     k 2t+8, 2t+9
      a[s][3] = deq_pair(wb[s] >> sr, kb8);  // row g + 8, k 2t+8, 2t+9
    }
  };

  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; i++) acc[i] = 0.f;
  uint32_t A0[4][4], A1[4][4] = {};

  for (int i = 0; i < kLook; i++) {
    if (i < KB) load_stage(i);
    cp_async_commit();
  }
  cp_async_wait<kLook - 1>();
  __syncthreads();
  convert(0, A0);

  const bool dbg = p.debug && blockIdx.x == 0 && blockIdx.y == 0;
  if (p.debug == 1 || p.debug == 2) {
    if (dbg) {
      uint32_t* o = static_cast<uint32_t*>(p.Y);
      if (p.debug == 1) {
#pragma unroll
        for (int s = 0; s < 4; s++)
#pragma unroll
          for (int r = 0; r < 4; r++) o[tid * 16 + 4 * s + r] = A0[s][r];
      } else {
        for (int i = tid; i < kXBytes / 4; i += kThreads) o[i] = reinterpret_cast<const uint32_t*>(sg)[i];
      }
    }
    cp_async_wait<0>();
    return;
  }

  auto iter = [&](int kb, uint32_t (&cur)[4][4], uint32_t (&nxt)[4][4]) {
    cp_async_wait<kLook - 2>();  // k-blocks kb and kb + 1 have landed (this thread's copies)
    fence_proxy_async();
    __syncthreads();  // everyone's copies; both warpgroups are past wgmma(kb − 2), so its stage is free
    if (kb + kLook < KB) load_stage(kb + kLook);
    cp_async_commit();
    const uint64_t desc = desc_sw128(sb + (kb % kStages) * kStageBytes);
    kblock_mma(acc, cur, nxt, desc);  // wgmma(this k-block) issued; wgmma(the previous one) done: nxt is free
    if (kb + 1 < KB) convert(kb + 1, nxt);
  };
  for_kblocks(KB, A0, A1, iter);
  wg_wait<0>();
  pin(acc);
  cp_async_wait<0>();
  __syncthreads();  // every stage read; the shared memory becomes the epilogue tile

  if (p.debug == 3) {
    if (dbg) {
      float* o = static_cast<float*>(p.Y);
#pragma unroll
      for (int i = 0; i < 64; i++) o[tid * 64 + i] = acc[i];
    }
    return;
  }

  store_tile(acc, sg, p.Y, p.M, p.out, m0, n0, p.y_f32, tid);
#endif  // LB_HAVE_WGMMA
}

#ifdef LB_HAVE_WGMMA
// 16-byte copy of `bytes` (16, or 0 = zero fill) bytes.
__device__ __forceinline__ void cp_async16n(uint32_t dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
// d = a·b + c on two bf16 lanes, one rounding each (round to nearest even).
__device__ __forceinline__ uint32_t hfma2(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
// (w & MASK) | magic as ONE lop3 (with both constants as immediates ptxas emits an AND and an OR; the magic comes
// in a register).
template <uint32_t MASK>
__device__ __forceinline__ uint32_t lopm(uint32_t w, uint32_t magic) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(w), "n"(MASK), "r"(magic));
  return d;
}

// The A fragments of one k-block from its repacked block `blk` (shared memory; code words, then row constants) for
// thread t of the warpgroup pair (variants 3–7). Code word h holds k16 steps 2h, 2h+1; its pair i (s = 2h + i/4,
// register r = i mod 4; low code at bits 2i, high at 16 + 2i) is taken from w >> 6⌊i/3⌋ at position p = i mod 3:
// (· & 3·4^p·0x10001) | 0x43004300 = the bf16 pair 128 + 4^p·q (exact); ·4^−p + c1_p = q − zi (exact;
// c1_p = −(128·4^−p + zi) = c1 + 0, 96, 120); ·s + c2 (one rounding) = the weight. Row constants of rows ra (r even)
// and ra + 8.
__device__ __forceinline__ void convert_rp(const uint8_t* blk, int t, uint32_t magic, uint32_t (&a)[4][4]) {
  const uint2 cw = *reinterpret_cast<const uint2*>(blk + 8 * t);
  const uint4 k0 = *reinterpret_cast<const uint4*>(blk + kRpCodeBytes + 32 * (t >> 2));
  const uint2 k1 = *reinterpret_cast<const uint2*>(blk + kRpCodeBytes + 32 * (t >> 2) + 16);
  const uint32_t S2[2] = {k0.x, k0.w}, C2[2] = {k0.z, k1.y};
  uint32_t C1[2][3];
#pragma unroll
  for (int v = 0; v < 2; v++) {
    C1[v][0] = v ? k1.x : k0.y;
    C1[v][1] = hfma2(C1[v][0], 0x3F803F80u, 0x42C042C0u);  // + 96
    C1[v][2] = hfma2(C1[v][0], 0x3F803F80u, 0x42F042F0u);  // + 120
  }
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const uint32_t w = h ? cw.y : cw.x;
    const uint32_t src[3] = {w, w >> 6, w >> 12};
#pragma unroll
    for (int i = 0; i < 8; i++) {
      const int pos = i % 3, s = 2 * h + (i >> 2), r = i & 3, v = r & 1;
      const uint32_t x = src[i / 3];
      const uint32_t q = pos == 0 ? lopm<0x00030003u>(x, magic) : pos == 1 ? lopm<0x000C000Cu>(x, magic)
                                                                         : lopm<0x00300030u>(x, magic);
      const uint32_t sc = pos == 0 ? 0x3F803F80u : pos == 1 ? 0x3E803E80u : 0x3D803D80u;  // 1, 1/4, 1/16
      a[s][r] = hfma2(hfma2(q, sc, C1[v][pos]), S2[v], C2[v]);
    }
  }
}
#endif  // LB_HAVE_WGMMA

// Variants 3 and 4: the same tile, B path and pipeline as above, A from the repacked stream (2 bf16 FMAs + 1 LOP3
// per register, no per-block scale math), all copies addressed from per-thread pointers set up once.
template <int kStages, int kMinBlocks>
__global__ void __launch_bounds__(kThreads, kMinBlocks) qgemm_w2_wgmma_rp_kernel(const FusedArgs3 p) {
#ifdef LB_HAVE_WGMMA
  constexpr int kLook = kStages - 2;  // k-blocks loaded ahead
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t sb = (raw + 1023u) & ~1023u;  // shared address of stage 0
  uint8_t* const sg = smem_raw + (sb - raw);    // the same as a generic pointer
  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * kBM, n0 = blockIdx.y * kBN;
  const int KB = p.in / kBK;
  const uint32_t magic = p.magic;  // 0x43004300 (a kernel argument, so it lives in a register)

  // Loader: X chunks tid + 256r (r = 0..3) = token ln + 32r, 16-byte chunk lj (swizzled to lj ^ (ln mod 8)); the
  // repacked block's chunk tid. Tokens past M: zero fill, address clamped to token M − 1.
  const int ln = tid >> 3, lj = tid & 7;
  const uint32_t xdst = ln * 128 + ((lj ^ (ln & 7)) << 4);
  const __nv_bfloat16* xsrc[4];
  int xbytes[4];
#pragma unroll
  for (int r = 0; r < 4; r++) {
    const int n = n0 + ln + 32 * r;
    xsrc[r] = p.X + (size_t)(n < p.M ? n : p.M - 1) * p.in + 8 * lj;
    xbytes[r] = n < p.M ? 16 : 0;
  }
  const uint8_t* rsrc = p.rp + (size_t)blockIdx.x * KB * kRpBytes + 16 * tid;
  auto load_stage = [&](int kb, uint32_t so) {
#pragma unroll
    for (int r = 0; r < 4; r++) cp_async16n(sb + so + xdst + 4096 * r, xsrc[r] + kb * kBK, xbytes[r]);
    cp_async16(sb + so + kXBytes + 16 * tid, rsrc + (size_t)kb * kRpBytes, true);
  };
  auto convert = [&](uint32_t so, uint32_t (&a)[4][4]) { convert_rp(sg + so + kXBytes, tid, magic, a); };

  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; i++) acc[i] = 0.f;
  uint32_t A0[4][4], A1[4][4] = {};

#pragma unroll
  for (int i = 0; i < kLook; i++) {
    if (i < KB) load_stage(i, i * kStageBytes3);
    cp_async_commit();
  }
  cp_async_wait<kLook - 1>();
  __syncthreads();
  convert(0, A0);

  const bool dbg = p.debug && blockIdx.x == 0 && blockIdx.y == 0;
  if (p.debug == 1 || p.debug == 2) {
    if (dbg) {
      uint32_t* o = static_cast<uint32_t*>(p.Y);
      if (p.debug == 1) {
#pragma unroll
        for (int s = 0; s < 4; s++)
#pragma unroll
          for (int r = 0; r < 4; r++) o[tid * 16 + 4 * s + r] = A0[s][r];
      } else {
        for (int i = tid; i < kXBytes / 4; i += kThreads) o[i] = reinterpret_cast<const uint32_t*>(sg)[i];
      }
    }
    cp_async_wait<0>();
    return;
  }

  // Stage of k-block kb: st; of kb + 1 (converted this iteration): st + 1; of kb + kLook (loaded): st − 2 (mod S).
  int st = 0;
  auto iter = [&](int kb, uint32_t (&cur)[4][4], uint32_t (&nxt)[4][4]) {
    const int st1 = st + 1 == kStages ? 0 : st + 1, stl = st >= 2 ? st - 2 : st + kStages - 2;
    cp_async_wait<kLook - 2>();  // k-blocks kb and kb + 1 have landed (this thread's copies)
    fence_proxy_async();
    __syncthreads();  // everyone's copies; both warpgroups are past wgmma(kb − 2), so its stage is free
    if (kb + kLook < KB) load_stage(kb + kLook, stl * kStageBytes3);
    cp_async_commit();
    const uint64_t desc = desc_sw128(sb + st * kStageBytes3);
    kblock_mma(acc, cur, nxt, desc);  // wgmma(this k-block) issued; wgmma(the previous one) done: nxt is free
    if (kb + 1 < KB) convert(st1 * kStageBytes3, nxt);
    st = st1;
  };
  for_kblocks(KB, A0, A1, iter);
  wg_wait<0>();
  pin(acc);
  cp_async_wait<0>();
  __syncthreads();  // every stage read; the shared memory becomes the epilogue tile

  if (p.debug == 3) {
    if (dbg) {
      float* o = static_cast<float*>(p.Y);
#pragma unroll
      for (int i = 0; i < 64; i++) o[tid * 64 + i] = acc[i];
    }
    return;
  }
  store_tile(acc, sg, p.Y, p.M, p.out, m0, n0, p.y_f32, tid);
#endif  // LB_HAVE_WGMMA
}

constexpr int kSkThreads = 512;

#ifdef LB_HAVE_WGMMA
// Split-K epilogue (variants 5–7): pair 1 stages its accumulators token-major, pair 0 adds its own (acc0 + acc1, in
// that order: deterministic), all 512 threads store Y. Needs every stage read (a barrier before the call).
// PAIRS = 1 (variant 9: one pair, the whole K): pair 0 stores its accumulators alone.
template <int NA, int PAIRS = 2>
__device__ __forceinline__ void sk_epilogue(float (&acc)[NA], uint8_t* sg0, const FusedArgs3& p, int m0, int n0, bool dbg) {
  const int tid = threadIdx.x, pair = tid >> 8, ptid = tid & 255;
  // acc[4j + 2v + u] = D[row 16w + g + 8v][token 8j + 2t + u] (w = warp in the warpgroup), token-major tile.
  float* tile = reinterpret_cast<float*>(sg0);
  const int wgp = ptid >> 7, warp = (ptid >> 5) & 3, lane = ptid & 31, g = lane >> 2, t = lane & 3;
  const int mr = 64 * wgp + 16 * warp + g;
  if (PAIRS == 2 && pair == 1) {
#pragma unroll
    for (int jj = 0; jj < NA / 4; jj++)
#pragma unroll
      for (int v = 0; v < 2; v++)
#pragma unroll
        for (int u = 0; u < 2; u++) tile[(8 * jj + 2 * t + u) * kEpiPitch + mr + 8 * v] = acc[4 * jj + 2 * v + u];
  }
  if (PAIRS == 2) __syncthreads();
  if (pair == 0) {
#pragma unroll
    for (int jj = 0; jj < NA / 4; jj++)
#pragma unroll
      for (int v = 0; v < 2; v++)
#pragma unroll
        for (int u = 0; u < 2; u++) {
          float& e = tile[(8 * jj + 2 * t + u) * kEpiPitch + mr + 8 * v];
          e = PAIRS == 2 ? acc[4 * jj + 2 * v + u] + e : acc[4 * jj + 2 * v + u];
          if (p.debug == 3) acc[4 * jj + 2 * v + u] = e;
        }
    if (p.debug == 3) {
      if (dbg) {
        float* o = static_cast<float*>(p.Y);
#pragma unroll
        for (int i = 0; i < NA; i++) o[ptid * NA + i] = acc[i];
      }
    }
  }
  if (p.debug == 3) return;
  __syncthreads();
  store_y<256 * PAIRS, 2 * NA>(tile, p.Y, p.M, p.out, m0, n0, p.y_f32, tid);
}

#endif  // LB_HAVE_WGMMA

// Variants 5/6 (qgemm_w2_wgmma_rp_sk_kernel): split-K inside the CTA. 512 threads = two "pairs" of warpgroups, each
// pair running variant 3/4's pipeline unchanged (its own kStages stages, its own named barrier 1 + pair, thread index
// ptid = tid mod 256 for every per-thread map) on one half of the k-blocks of the same 128 × 128 tile: pair 0 takes
// k-blocks [0, KB0), pair 1 [KB0, KB) with KB0 = ⌈KB/2⌉. At M = 512 the grid of variants 3/4 is ~one CTA per SM (128 CTAs
// of 8 warps for 4096 rows), so two-CTAs-per-SM never happens; here every SM holds 16 warps (4 warpgroups feeding the
// tensor pipe, twice the conversion work in flight) with no extra global traffic. Epilogue: pair 1 stages its
// accumulators token-major, pair 0 adds its own at the same addresses (acc0 + acc1, deterministic), all 512 threads
// store Y. 5 stages per pair (v5, 200 KB + 1 KB) or 4 (v6, 160 KB); 128 registers at most (512 threads, one CTA per SM).
constexpr int smem_bytes_sk(int stages) { return 2 * stages * kStageBytes3 + 1024; }
static_assert(kBN * kEpiPitch * 4 <= 2 * 4 * kStageBytes3, "epilogue tile overflow (v5/v6)");

#ifdef LB_HAVE_WGMMA
__device__ __forceinline__ void pair_sync(int pair) { asm volatile("bar.sync %0, 256;\n" ::"r"(1 + pair) : "memory"); }
#endif

template <int kStages>
__global__ void __launch_bounds__(kSkThreads, 1) qgemm_w2_wgmma_rp_sk_kernel(const FusedArgs3 p) {
#ifdef LB_HAVE_WGMMA
  constexpr int kLook = kStages - 2;  // k-blocks loaded ahead
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t sb0 = (raw + 1023u) & ~1023u;  // shared address of pair 0's stage 0
  uint8_t* const sg0 = smem_raw + (sb0 - raw);    // the same as a generic pointer
  const int tid = threadIdx.x, pair = tid >> 8, ptid = tid & 255;
  const uint32_t sb = sb0 + pair * kStages * kStageBytes3;  // this pair's stage 0
  uint8_t* const sg = sg0 + pair * kStages * kStageBytes3;
  const int m0 = blockIdx.x * kBM, n0 = blockIdx.y * kBN;
  const int KB = p.in / kBK, KB0 = (KB + 1) >> 1;
  const int kb0 = pair ? KB0 : 0, nkb = pair ? KB - KB0 : KB0;  // this pair's k-blocks: kb0 .. kb0 + nkb − 1
  const uint32_t magic = p.magic;

  // Loader (as variants 3/4, per pair): X chunks ptid + 256r = token ln + 32r, chunk lj; the repacked chunk ptid.
  const int ln = ptid >> 3, lj = ptid & 7;
  const uint32_t xdst = ln * 128 + ((lj ^ (ln & 7)) << 4);
  const __nv_bfloat16* xsrc[4];
  int xbytes[4];
#pragma unroll
  for (int r = 0; r < 4; r++) {
    const int n = n0 + ln + 32 * r;
    xsrc[r] = p.X + (size_t)(n < p.M ? n : p.M - 1) * p.in + 8 * lj + (size_t)kb0 * kBK;
    xbytes[r] = n < p.M ? 16 : 0;
  }
  const uint8_t* rsrc = p.rp + ((size_t)blockIdx.x * KB + kb0) * kRpBytes + 16 * ptid;
  // j = this pair's k-block index (global kb0 + j)
  auto load_stage = [&](int j, uint32_t so) {
#pragma unroll
    for (int r = 0; r < 4; r++) cp_async16n(sb + so + xdst + 4096 * r, xsrc[r] + j * kBK, xbytes[r]);
    cp_async16(sb + so + kXBytes + 16 * ptid, rsrc + (size_t)j * kRpBytes, true);
  };
  auto convert = [&](uint32_t so, uint32_t (&a)[4][4]) { convert_rp(sg + so + kXBytes, ptid, magic, a); };

  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; i++) acc[i] = 0.f;
  uint32_t A0[4][4], A1[4][4] = {};

#pragma unroll
  for (int i = 0; i < kLook; i++) {
    if (i < nkb) load_stage(i, i * kStageBytes3);
    cp_async_commit();
  }
  cp_async_wait<kLook - 1>();
  pair_sync(pair);
  convert(0, A0);  // (pair 1 with no k-blocks, KB == 1: garbage, never used)

  const bool dbg = p.debug && blockIdx.x == 0 && blockIdx.y == 0;
  if (p.debug == 1 || p.debug == 2) {  // pair 0 holds k-block 0 in its stage 0
    if (dbg && pair == 0) {
      uint32_t* o = static_cast<uint32_t*>(p.Y);
      if (p.debug == 1) {
#pragma unroll
        for (int s = 0; s < 4; s++)
#pragma unroll
          for (int r = 0; r < 4; r++) o[ptid * 16 + 4 * s + r] = A0[s][r];
      } else {
        for (int i = ptid; i < kXBytes / 4; i += kThreads) o[i] = reinterpret_cast<const uint32_t*>(sg)[i];
      }
    }
    cp_async_wait<0>();
    return;
  }

  int st = 0;
  auto iter = [&](int j, uint32_t (&cur)[4][4], uint32_t (&nxt)[4][4]) {
    const int st1 = st + 1 == kStages ? 0 : st + 1, stl = st >= 2 ? st - 2 : st + kStages - 2;
    cp_async_wait<kLook - 2>();  // k-blocks j and j + 1 have landed (this thread's copies)
    fence_proxy_async();
    pair_sync(pair);  // the pair's copies; both its warpgroups are past wgmma(j − 2), so its stage is free
    if (j + kLook < nkb) load_stage(j + kLook, stl * kStageBytes3);
    cp_async_commit();
    const uint64_t desc = desc_sw128(sb + st * kStageBytes3);
    kblock_mma(acc, cur, nxt, desc);  // wgmma(this k-block) issued; wgmma(the previous one) done: nxt is free
    if (j + 1 < nkb) convert(st1 * kStageBytes3, nxt);
    st = st1;
  };
  for_kblocks(nkb, A0, A1, iter);
  wg_wait<0>();
  pin(acc);
  cp_async_wait<0>();
  __syncthreads();  // both pairs done with every stage: the shared memory becomes the epilogue tile

  sk_epilogue(acc, sg0, p, m0, n0, dbg);
#endif  // LB_HAVE_WGMMA
}

// Variant 7 (qgemm_w2_wgmma_tma_kernel): variant 5's CTA (two warpgroup pairs splitting the k-blocks of a 128 × 128
// tile), its stages filled by the copy engine instead of 256 threads' cp.async: per k-block ONE thread of the pair issues a
// tensor copy of the X tile (a CUtensorMap with the 128-byte swizzle writes exactly the layout the B descriptor reads;
// tokens past M are zero-filled by the copy engine) and a 4 KB bulk copy of the repacked block, both completing on the
// stage's mbarrier. The consumers wait on that barrier instead of cp.async groups + proxy fence — device run 41's ncu
// of variant 5 found ~90 of 161 instructions per k-block and warp in stage and copy-address arithmetic around the 48 of
// the code conversion, issue-latency bound (9.6 cycles per instruction).
#ifdef LB_HAVE_WGMMA
// X tile [128 tokens × 64 k] at coordinates (k0, n0) of the tensor map, 128-byte swizzled, completing on bar.
__device__ __forceinline__ void tma_x(uint32_t dst, const CUtensorMap* tm, int k0, int n0, uint64_t* bar) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
               ::"r"(dst), "l"(reinterpret_cast<uint64_t>(tm)), "r"(k0), "r"(n0), "r"(smem_u32(bar)) : "memory");
}
#endif  // LB_HAVE_WGMMA

// Variant 9 (BN = 176, PAIRS = 1): the same kernel with 176-token tiles, for shapes whose 128 × 128 tiles overflow a
// wave: 11008×4096 at M = 512 is 86 × 3 = 258 tiles ≤ 2 waves of 132 instead of 344 = 2.6 (3 rounds), and each weight
// block converted into A fragments feeds 176 tokens instead of 128. Its 88 accumulators + two A buffers do not fit
// 512 threads' 128 registers (132 B spilled), so the CTA is ONE pair (256 threads, the whole K, up to 255 registers)
// with 8 stages of 26 KB: per k-block the tensor pipe has 2 × 4 m64n176k16 (~700 cycles) against ~200 warp-
// instructions of conversion, so 8 warps should keep it fed (to be measured against variants 4 and 7).
template <int BN>
__host__ __device__ constexpr int tma_stage_bytes() { return BN * kBK * 2 + kRpBytes; }  // X tile (1024-aligned multiple) + repacked block
template <int kStages, int BN, int PAIRS = 2>
constexpr int smem_bytes_tma() { return PAIRS * kStages * tma_stage_bytes<BN>() + 1024; }
constexpr int kStagesW = 8, kBNw = 176;
static_assert(tma_stage_bytes<kBNw>() % 1024 == 0 && smem_bytes_tma<kStagesW, kBNw, 1>() <= 227 * 1024 - 1024, "variant 9 stages");
static_assert(kBNw * kEpiPitch * 4 <= kStagesW * tma_stage_bytes<kBNw>(), "epilogue tile overflow (v9)");

template <int kStages, int BN = kBN, int PAIRS = 2>
__global__ void __launch_bounds__(256 * PAIRS, 1) qgemm_w2_wgmma_tma_kernel(const FusedArgs3 p, const __grid_constant__ CUtensorMap tmX) {
#ifdef LB_HAVE_WGMMA
  constexpr int kStageB = tma_stage_bytes<BN>(), kXB = BN * kBK * 2;
  extern __shared__ uint8_t smem_raw[];
  __shared__ __align__(8) uint64_t fullb[PAIRS][kStages];
  __shared__ unsigned freed[PAIRS][kStages];  // per stage: warpgroups done with it (two per use)
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t sb0 = (raw + 1023u) & ~1023u;
  uint8_t* const sg0 = smem_raw + (sb0 - raw);
  const int tid = threadIdx.x, pair = PAIRS == 2 ? tid >> 8 : 0, ptid = tid & 255;
  const uint32_t sb = sb0 + pair * kStages * kStageB;
  uint8_t* const sg = sg0 + pair * kStages * kStageB;
  const int m0 = blockIdx.x * kBM, n0 = blockIdx.y * BN;
  const int KB = p.in / kBK, KB0 = PAIRS == 2 ? (KB + 1) >> 1 : KB;
  const int kb0 = pair ? KB0 : 0, nkb = pair ? KB - KB0 : KB0;
  const uint32_t magic = p.magic;
  uint64_t* const fb = fullb[pair];
  if (ptid == 0) {
    for (int i = 0; i < kStages; i++) { mbar_init(&fb[i], 1); freed[pair][i] = 0; }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  const uint8_t* const rsrc = p.rp + ((size_t)blockIdx.x * KB + kb0) * kRpBytes;
  auto load_stage = [&](int j, int st) {  // one thread
    const uint32_t so = sb + st * kStageB;
    mbar_expect_tx(&fb[st], kXB + kRpBytes);
    tma_x(so, &tmX, (kb0 + j) * kBK, n0, &fb[st]);
    bulk_g2s(so + kXB, rsrc + (size_t)j * kRpBytes, kRpBytes, &fb[st]);
  };

  float acc[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; i++) acc[i] = 0.f;
  uint32_t A0[4][4], A1[4][4] = {};
  if (ptid == 0)
    for (int i = 0; i < kStages && i < nkb; i++) load_stage(i, i);
  if (nkb > 0) {
    mbar_wait(&fb[0], 0);
    convert_rp(sg + kXB, ptid, magic, A0);
  }

  // No barrier between the pair's warpgroups: each one, once its wgmma of k-block j − 1 has completed, counts itself
  // out of that stage; the second to do so refills it with k-block j − 1 + kStages (so kStages − 1 blocks stay in flight).
  const bool elect = (ptid & 127) == 0;
  int st = 0;
  auto iter = [&](int j, uint32_t (&cur)[4][4], uint32_t (&nxt)[4][4]) {
    const int st1 = st + 1 == kStages ? 0 : st + 1, stp = st == 0 ? kStages - 1 : st - 1;
    const uint64_t desc = desc_sw128(sb + st * kStageB);
    kblock_mma(acc, cur, nxt, desc);  // wgmma(this k-block) issued; wgmma(the previous one) done: nxt is free
    if (elect && j >= 1 && (atomicAdd(&freed[pair][stp], 1u) & 1u) && j - 1 + kStages < nkb) load_stage(j - 1 + kStages, stp);
    if (j + 1 < nkb) {
      mbar_wait(&fb[st1], (uint32_t)((j + 1) / kStages) & 1u);  // k-block j + 1 landed (X and codes)
      convert_rp(sg + st1 * kStageB + kXB, ptid, magic, nxt);
    }
    st = st1;
  };
  for_kblocks(nkb, A0, A1, iter);
  wg_wait<0>();
  pin(acc);
  __syncthreads();  // both pairs done with every stage: the shared memory becomes the epilogue tile
  sk_epilogue<BN / 2, PAIRS>(acc, sg0, p, m0, n0, false);
#endif  // LB_HAVE_WGMMA
}

// Variant 8 (qgemm_w2_wgmma_streamk_kernel): stream-K, for shapes whose 128 × 128 tiles do not fit one wave (11008×4096 at
// M = 512: 344 tiles = 2.6 waves of 132 SMs, so a third of the last wave idles). A 512-thread CTA per SM holds TWO
// independent workers (its warpgroup pairs, each variant 3's 256-thread tile engine with variant 7's copy-engine stages):
// the tiles × k-blocks iterations are cut into W = 2·CTAs equal contiguous ranges, and worker w walks range w as segments
// (one tile's k-blocks inside the range) with ONE continuous stage stream across them. The two workers of an SM are out
// of phase, so one's epilogue (its own 16-token buffer, its own named barrier) overlaps the other's wgmma — what two CTAs
// per SM give variant 4, and what one tile-wide CTA (variant 7) cannot do.
// A tile split between workers: only a range's FIRST segment can start inside a tile, and it is what a worker computes
// first; so the worker holding the tile's k-block 0 (its LAST segment, reached at the end of its range) is the finisher.
// The others store their f32 partial tile to their slot of a static workspace and raise their flag; the finisher waits
// for the flags (raised long before), adds the partials in worker order (deterministic) and stores Y, then lowers the
// flags for the next launch. All workers are co-resident (one CTA per SM) and each produces its partial before it waits
// for anyone, so the waits cannot deadlock. One launch at a time per device (static workspace): lowbit's GEMMs share a
// stream.
// Measured (device run 54, M = 512, % of dense cuBLAS): 4096² 53 %, 11008×4096 68 %, 4096×11008 68 % — behind variant 4
// (75 / 72 / 75 %) and variant 7 (80 / 70 / 84 %), so NOT a default. ncu (run 53, 4096²: 50.5 µs vs variant 7's 32.0 on
// the same k-blocks per SM) puts the loss in stage waits (long-scoreboard samples at the mbarrier 2.4× variant 7's: the
// workers start at scattered (tile, k) points, so the first stages of all of them are distinct HBM reads instead of the
// few shared ones of a lockstep wave), the partial-tile fixup (membar, finisher waits) and the per-segment epilogues.
// Kept as the tested base for a data-parallel + stream-K hybrid (whole tiles in lockstep first, only the remainder
// split); the estimate from these numbers (~84–91 µs on 11008×4096) did not promise the 79 µs that 80 % needs.
constexpr int kSkMaxCtas = 132, kEpiTok = 16, kSkStages = 5;
constexpr int kEpiBytes8 = kEpiTok * kEpiPitch * 4;  // per worker
constexpr int smem_bytes_streamk(int stages) { return 2 * stages * kStageBytes3 + 2 * kEpiBytes8 + 1024; }
static_assert(smem_bytes_streamk(kSkStages) <= 227 * 1024 - 4096, "variant 8 shared memory");
__device__ float g_sk_ws[2 * kSkMaxCtas * kBN * kBM];  // worker w's partial tile, token-major
__device__ unsigned g_sk_flag[2 * kSkMaxCtas];         // 1 while worker w's partial waits for its finisher

#ifdef LB_HAVE_WGMMA
// Y[n, m .. m + 7] = a, b (f32 or bf16), skipped for tokens n past M.
__device__ __forceinline__ void sk_store8(const FusedArgs3& p, int n, int m, const float4& a, const float4& b) {
  if (n >= p.M) return;
  if (p.y_f32) {
    float4* y = reinterpret_cast<float4*>(static_cast<float*>(p.Y) + (size_t)n * p.out + m);
    y[0] = a;
    y[1] = b;
  } else {
    *reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(p.Y) + (size_t)n * p.out + m) = bf16x8(a, b);
  }
}
#endif  // LB_HAVE_WGMMA

template <int kStages>
__global__ void __launch_bounds__(kSkThreads, 1) qgemm_w2_wgmma_streamk_kernel(const FusedArgs3 p, const __grid_constant__ CUtensorMap tmX) {
#ifdef LB_HAVE_WGMMA
  extern __shared__ uint8_t smem_raw[];
  __shared__ __align__(8) uint64_t fullb[2][kStages];
  __shared__ unsigned freed[2][kStages];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t sb0 = (raw + 1023u) & ~1023u;
  uint8_t* const sg0 = smem_raw + (sb0 - raw);
  const int tid = threadIdx.x, pair = tid >> 8, ptid = tid & 255;
  float* const epi = reinterpret_cast<float*>(sg0 + 2 * kStages * kStageBytes3) + pair * (kEpiTok * kEpiPitch);
  const uint32_t sb = sb0 + pair * kStages * kStageBytes3;
  uint8_t* const sg = sg0 + pair * kStages * kStageBytes3;
  uint64_t* const fb = fullb[pair];
  // This worker's iterations [s, e) (the launcher keeps W·I < 2^32); its load q is iteration s + q. Divisions by the
  // run-time KB and token-block count go through multiply-shift constants (FastDiv): the loads are issued on the
  // consumers' critical path, and a software division there costs more than the copy it issues.
  // (s and e live in shared memory: registers are at the 128 cap in the k-loop, and only the loader reads them there)
  __shared__ int range[2][2];
  const unsigned w = 2 * blockIdx.x + pair;
  if (ptid == 0) {
    const unsigned W = p.sk.workers, I = p.sk.iters;
    range[pair][0] = w < W ? (int)(w * I / W) : 0;
    range[pair][1] = w < W ? (int)((w + 1) * I / W) : 0;
  }
  auto load_q = [&](int q, int st) {  // one thread: the worker's q-th k-block into stage st
    const int it = range[pair][0] + q, tile = p.sk.kb.div(it), kb = it - tile * p.sk.kb.d;
    int bx, by;
    p.sk.tile_xy(tile, bx, by);
    const uint32_t so = sb + st * kStageBytes3;
    mbar_expect_tx(&fb[st], kXBytes + kRpBytes);
    tma_x(so, &tmX, kb * kBK, by * kBN, &fb[st]);
    bulk_g2s(so + kXBytes, p.rp + ((size_t)bx * p.sk.kb.d + kb) * kRpBytes, kRpBytes, &fb[st]);
  };
  if (ptid == 0) {
    for (int i = 0; i < kStages; i++) { mbar_init(&fb[i], 1); freed[pair][i] = 0; }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    for (int i = 0; i < kStages && i < range[pair][1] - range[pair][0]; i++) load_q(i, i);
  }
  __syncthreads();  // (the last CTA-wide barrier: from here on each worker syncs on its own named barrier)
  // as variant 7: the second warpgroup of the worker done with a stage refills it
  const bool elect = (ptid & 127) == 0;
  auto release = [&](int q, int st) {
    if (elect && (atomicAdd(&freed[pair][st], 1u) & 1u) && range[pair][0] + q + kStages < range[pair][1]) load_q(q + kStages, st);
  };
  const int wgp = ptid >> 7, warp = (ptid >> 5) & 3, lane = ptid & 31, t4 = lane & 3;
  const int mr = 64 * wgp + 16 * warp + (lane >> 2);  // acc[4j + 2v + u] = D[row mr + 8v][token 8j + 2t4 + u]

  float acc[64];
  uint32_t A0[4][4], A1[4][4] = {};
  int st = 0;  // the stage of the segment's first k-block
  auto segment = [&](int it, bool last) {
    const int q0 = it - range[pair][0], tile = p.sk.kb.div(it), k0 = it - tile * p.sk.kb.d;
    const int pn = min(p.sk.kb.d - k0, range[pair][1] - it);
#pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = 0.f;
    mbar_wait(&fb[st], (uint32_t)(q0 / kStages) & 1u);  // (pn ≥ 1: every segment has a k-block)
    convert_rp(sg + st * kStageBytes3 + kXBytes, ptid, p.magic, A0);
    auto iter = [&](int j, uint32_t (&cur)[4][4], uint32_t (&nxt)[4][4]) {
      const int q = q0 + j, st1 = st + 1 == kStages ? 0 : st + 1, stp = st == 0 ? kStages - 1 : st - 1;
      kblock_mma(acc, cur, nxt, desc_sw128(sb + st * kStageBytes3));
      if (j >= 1) release(q - 1, stp);
      if (j + 1 < pn) {
        mbar_wait(&fb[st1], (uint32_t)((q + 1) / kStages) & 1u);
        convert_rp(sg + st1 * kStageBytes3 + kXBytes, ptid, p.magic, nxt);
      }
      st = st1;
    };
    for_kblocks(pn, A0, A1, iter);
    wg_wait<0>();
    pin(acc);
    release(q0 + pn - 1, st == 0 ? kStages - 1 : st - 1);

    const bool partial = k0 > 0, finish = last && k0 == 0 && pn < p.sk.kb.d;
    int bx, by;
    p.sk.tile_xy(tile, bx, by);
    const int m0 = bx * kBM, n0 = by * kBN;
    unsigned wl = w;  // the finisher: contributors w + 1 .. wl (their ranges start before the tile's end)
    if (finish) {
      const unsigned W = p.sk.workers, I = p.sk.iters, te = (unsigned)(tile + 1) * p.sk.kb.d;
      while (wl + 1 < W && (wl + 1) * I / W < te) wl++;
      if (ptid == 0) {
        for (unsigned k = w + 1; k <= wl; k++) {
          while (ld_acquire_gpu(&g_sk_flag[k]) == 0) {
          }
          g_sk_flag[k] = 0;
        }
        __threadfence();
      }
    }
    float* const slot = g_sk_ws + (size_t)w * kBN * kBM;
#pragma unroll
    for (int r = 0; r < kBN / kEpiTok; r++) {
      pair_sync(pair);  // the buffer's previous readers are done (r == 0, finisher: the flags are seen)
#pragma unroll
      for (int jj = 0; jj < kEpiTok / 8; jj++)
#pragma unroll
        for (int v = 0; v < 2; v++)
#pragma unroll
          for (int u = 0; u < 2; u++)
            epi[(8 * jj + 2 * t4 + u) * kEpiPitch + mr + 8 * v] = acc[4 * (r * (kEpiTok / 8) + jj) + 2 * v + u];
      pair_sync(pair);
      // one 8-row chunk of one token per thread: 16 tokens × 16 chunks = 256
      const int nn = ptid >> 4, cc = ptid & 15, tok = r * kEpiTok + nn;
      float4 a = *reinterpret_cast<const float4*>(epi + nn * kEpiPitch + 8 * cc);
      float4 b = *reinterpret_cast<const float4*>(epi + nn * kEpiPitch + 8 * cc + 4);
      const size_t o = (size_t)tok * kBM + 8 * cc;
      if (partial) {
        __stcg(reinterpret_cast<float4*>(slot + o), a);
        __stcg(reinterpret_cast<float4*>(slot + o) + 1, b);
      } else {
        if (finish) {
          for (unsigned k = w + 1; k <= wl; k++) {
            const float4* q = reinterpret_cast<const float4*>(g_sk_ws + (size_t)k * kBN * kBM + o);
            const float4 x = __ldcg(q), y = __ldcg(q + 1);
            a.x += x.x; a.y += x.y; a.z += x.z; a.w += x.w;
            b.x += y.x; b.y += y.y; b.z += y.z; b.w += y.w;
          }
        }
        sk_store8(p, n0 + tok, m0 + 8 * cc, a, b);
      }
    }
    if (partial) {
      __threadfence();
      pair_sync(pair);
      if (ptid == 0) st_release_gpu(&g_sk_flag[w], 1u);
    }
  };
  const int s = range[pair][0], e = range[pair][1];
  if (s < e) {
    const int last = max(s, p.sk.kb.div(e - 1) * p.sk.kb.d);  // the last segment's start
    for (int it = s; it < last; it = (p.sk.kb.div(it) + 1) * p.sk.kb.d) segment(it, false);
    segment(last, true);
  }
#endif  // LB_HAVE_WGMMA
}

// The repacked stream of an 'int' 2-bit group-64 weight (no gIdx, in % 64 == 0, out % 128 == 0): block (row block
// b = blockIdx.x, k-block kb = blockIdx.y) of 4096 bytes at (b·KB + kb)·4096:
//   bytes [0, 2048): thread T's two code words at 8T: word h, pair i (i = 0..7) = the codes of A register
//     r = i mod 4 of k16 step s = 2h + i/4 (rows and k of aFragment), low bf16's code at bits 2i, high's at 16 + 2i;
//   bytes [2048, 4096): per group G = T/4 (rows ra = 64(G/32) + 16((G/8) mod 4) + G mod 8 and ra + 8) 32 bytes:
//     s2(ra), c1(ra), c2(ra), s2(ra+8), c1(ra+8), c2(ra+8), 0, 0 — each a bf16 pair of one value:
//     s2 = bf16(s), c1 = −(128 + zi) with zi = z rounded to an integer, clamped to [−128, 127] (exact),
//     c2 = bf16(−s·(z − zi)) (0 for integer zeros in range).
__global__ void __launch_bounds__(256) qgemm_w2_repack_kernel(const uint8_t* __restrict__ codes,
                                                              const uint32_t* __restrict__ sz, uint8_t* __restrict__ rp,
                                                              int in) {
  const int T = threadIdx.x, b = blockIdx.x, kb = blockIdx.y, KB = in / kBK, rowBytes = in / 4;
  const int wg = T >> 7, warp = (T >> 5) & 3, lane = T & 31, g = lane >> 2, t = lane & 3;
  uint8_t* const blk = rp + ((size_t)b * KB + kb) * kRpBytes;
  const int ra = 64 * wg + 16 * warp + g;
  // code words of rows ra, ra + 8 (k-block kb, pack.ts layout: code k at bit 2(k mod 16) of word k/16)
  const uint4 wa = *reinterpret_cast<const uint4*>(codes + (size_t)(b * kBM + ra) * rowBytes + kb * 16);
  const uint4 wb = *reinterpret_cast<const uint4*>(codes + (size_t)(b * kBM + ra + 8) * rowBytes + kb * 16);
  const uint32_t A[4] = {wa.x, wa.y, wa.z, wa.w}, B[4] = {wb.x, wb.y, wb.z, wb.w};
  uint32_t out[2] = {0, 0};
#pragma unroll
  for (int h = 0; h < 2; h++)
#pragma unroll
    for (int i = 0; i < 8; i++) {
      const int s = 2 * h + (i >> 2), r = i & 3, k = 2 * t + 8 * (r >> 1);  // k within step s
      const uint32_t w = (r & 1) ? B[s] : A[s];
      out[h] |= ((w >> (2 * k)) & 3u) << (2 * i) | ((w >> (2 * k + 2)) & 3u) << (16 + 2 * i);
    }
  *reinterpret_cast<uint2*>(blk + 8 * T) = make_uint2(out[0], out[1]);
  if (T < 64) {
    const int G = T, gw = G >> 5, gwarp = (G >> 3) & 3, gg = G & 7, r0 = 64 * gw + 16 * gwarp + gg;
    uint32_t o[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
    for (int v = 0; v < 2; v++) {
      const uint32_t word = sz[(size_t)(b * kBM + r0 + 8 * v) * KB + kb];
      const float s = __half2float(__ushort_as_half((unsigned short)(word & 0xffff)));
      const float z = __half2float(__ushort_as_half((unsigned short)(word >> 16)));
      const float zi = fminf(fmaxf(rintf(z), -128.f), 127.f);
      const uint32_t sb16 = __bfloat16_as_ushort(__float2bfloat16_rn(s));
      const uint32_t c1 = __bfloat16_as_ushort(__float2bfloat16_rn(-(128.f + zi)));
      const uint32_t c2 = __bfloat16_as_ushort(__float2bfloat16_rn(-__fmul_rn(s, __fsub_rn(z, zi)) + 0.f));
      o[3 * v] = sb16 * 0x10001u;
      o[3 * v + 1] = c1 * 0x10001u;
      o[3 * v + 2] = c2 * 0x10001u;
    }
    uint4* dst = reinterpret_cast<uint4*>(blk + kRpCodeBytes + 32 * G);
    dst[0] = make_uint4(o[0], o[1], o[2], o[3]);
    dst[1] = make_uint4(o[4], o[5], o[6], o[7]);
  }
}

// Per variant (1..9) and device (bit d): the kernel image is usable and its shared-memory limit is raised.
std::atomic<uint64_t> g_ready[9];

template <class K>
const char* prepare_kernel(K* k, int bytes, int v, int dev) {
  if (dev < 64 && (g_ready[v - 1].load() >> dev & 1)) return nullptr;
  cudaFuncAttributes fa;
  if (cudaFuncGetAttributes(&fa, k) != cudaSuccess) {
    cudaGetLastError();
    return "fused qgemm: no sm_90a kernel image in this build";
  }
  if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) != cudaSuccess) {
    cudaGetLastError();
    return "fused qgemm: cannot raise the dynamic shared memory limit";
  }
  if (dev < 64) g_ready[v - 1].fetch_or(uint64_t(1) << dev);
  return nullptr;
}

// Variants: 1 = original codes, 6 stages, one CTA per SM; 2 = original codes, 5 stages, two CTAs per SM;
// 3 = repacked stream, 6 stages, one CTA per SM; 4 = repacked stream, 5 stages, two CTAs per SM; 5 / 6 = repacked
// stream, split-K inside a 512-thread CTA (two pairs of warpgroups, 5 / 4 stages each); 7 = variant 5 with its stages
// filled by the copy engine (a tensor map for X, bulk copies of the repacked blocks); 8 = variant 7 as stream-K;
// 9 = variant 7 with 176-token tiles, one pair of warpgroups over the whole K (8 stages).
constexpr int kRpDefault = 5;

// cuTensorMapEncodeTiled through the runtime's driver entry point (no libcuda link); null where unavailable.
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*, const cuuint64_t*,
                                   const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                   CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
EncodeTiledFn encode_tiled() {
  static EncodeTiledFn fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return (EncodeTiledFn) nullptr;
    }
    return reinterpret_cast<EncodeTiledFn>(f);
  }();
  return fn;
}
// The tensor map of X [M, in] bf16 (row-major) in boxes of 64 k × bn tokens with the 128-byte swizzle.
const char* x_tensor_map(const void* X, int M, int in, int bn, CUtensorMap* tm) {
  const EncodeTiledFn enc = encode_tiled();
  if (!enc) return "fused qgemm variant 7: cuTensorMapEncodeTiled is not available from the driver";
  const cuuint64_t dims[2] = {(cuuint64_t)in, (cuuint64_t)M}, strides[1] = {(cuuint64_t)in * 2};
  const cuuint32_t box[2] = {(cuuint32_t)kBK, (cuuint32_t)bn}, estr[2] = {1, 1};
  const CUresult r = enc(tm, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(X), dims, strides, box, estr,
                         CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                         CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? nullptr : "fused qgemm variant 7: cuTensorMapEncodeTiled rejected the X tensor map";
}
// The device's SM count (device 0, read once; 132 if it cannot be read): one wave of one CTA per SM.
int sm_count() {
  static int sms = 0;
  if (!sms && cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) { cudaGetLastError(); sms = 132; }
  return sms;
}
// 0 = default: LOWBIT_QGEMM_FUSED_VARIANT (1..9) if set, else, with the repacked stream, 7 (5 where the driver gives no
// tensor-map encoder) when the tiles fit one wave of one CTA per SM; when they do not, 9 where its 176-token tiles need
// fewer token rows of rounds (11008×4096 at M = 512: 2 × 176 < 3 × 128), else 4 (two CTAs per SM). Device run 44 at M = 512
// (4096², 11008×4096, 4096×11008): v7 80 / 72 / 81 %, v5 78 / 70 / 78 %, v4 75 / 73 / 73 % of dense; runs 72–74: v9 81–84 %
// on 11008×4096 (v4 67–72 %), 68 % on 4096²; at M = 2048 v4 was ahead on two shapes of three (cudaQGemm takes dequantize +
// cuBLAS there). Else 1.
int pick_variant(int v, bool has_rp, int rowBlocks, int M) {
  if (v) return v;
  const char* e = std::getenv("LOWBIT_QGEMM_FUSED_VARIANT");
  if (e && e[0] >= '1' && e[0] <= '9' && !e[1]) return e[0] - '0';
  if (!has_rp) return 1;
  const int sms = sm_count(), tiles = rowBlocks * ((M + kBN - 1) / kBN);
  if (tiles <= sms) return encode_tiled() ? 7 : kRpDefault;
  const int rounds = (tiles + sms - 1) / sms, roundsW = (rowBlocks * ((M + kBNw - 1) / kBNw) + sms - 1) / sms;
  return encode_tiled() && roundsW * kBNw < rounds * kBN ? 9 : 4;
}

// Variant 8's grid: one CTA per SM (at most kSkMaxCtas, the workspace's slots), never more than the iterations;
// LOWBIT_QGEMM_SK_GRID (a decimal integer) caps it lower (tests: many CTAs per tile, tiles split three ways).
int streamk_grid(long long iters) {
  long long g = std::min(sm_count(), kSkMaxCtas);
  if (const char* e = std::getenv("LOWBIT_QGEMM_SK_GRID")) {
    const long long cap = std::atoll(e);
    if (cap >= 1 && cap < g) g = cap;
  }
  return (int)(g < iters ? g : iters);
}

const char* shape_unsupported(const QDesc& d) {
  if (d.layout != 0 || d.bits != 2 || d.group != 64 || d.gidx || !d.sz)
    return "fused qgemm: needs an 'int' 2-bit weight with group 64 and no gIdx";
  if (d.in % kBK || d.out % kBM) return "fused qgemm: needs in % 64 == 0 and out % 128 == 0";
  return nullptr;
}

const char* device_unsupported() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev)) {
    cudaGetLastError();
    return "fused qgemm: cannot query the device";
  }
  if (major != 9 || minor != 0) {
    static thread_local char buf[96];
    std::snprintf(buf, sizeof buf, "fused qgemm: needs an sm_90 device (wgmma, sm_90a code), this one is sm_%d%d", major, minor);
    return buf;
  }
  if (const char* e = prepare_kernel(qgemm_w2_wgmma_kernel<6, 1>, smem_bytes(6), 1, dev)) return e;
  if (const char* e = prepare_kernel(qgemm_w2_wgmma_kernel<5, 2>, smem_bytes(5), 2, dev)) return e;
  if (const char* e = prepare_kernel(qgemm_w2_wgmma_rp_kernel<6, 1>, smem_bytes3(6), 3, dev)) return e;
  if (const char* e = prepare_kernel(qgemm_w2_wgmma_rp_kernel<5, 2>, smem_bytes3(5), 4, dev)) return e;
  if (const char* e = prepare_kernel(qgemm_w2_wgmma_rp_sk_kernel<5>, smem_bytes_sk(5), 5, dev)) return e;
  if (const char* e = prepare_kernel(qgemm_w2_wgmma_rp_sk_kernel<4>, smem_bytes_sk(4), 6, dev)) return e;
  if (const char* e = prepare_kernel(qgemm_w2_wgmma_tma_kernel<5>, smem_bytes_tma<5, kBN>(), 7, dev)) return e;
  if (const char* e = prepare_kernel(qgemm_w2_wgmma_streamk_kernel<kSkStages>, smem_bytes_streamk(kSkStages), 8, dev)) return e;
  return prepare_kernel(qgemm_w2_wgmma_tma_kernel<kStagesW, kBNw, 1>, smem_bytes_tma<kStagesW, kBNw, 1>(), 9, dev);
}

}  // namespace

const char* qgemm_fused_unsupported(const QDesc& d, int M, const void* X, const void* Y) {
  if (const char* e = shape_unsupported(d)) return e;
  if (M < 1) return "fused qgemm: needs M >= 1";
  if ((reinterpret_cast<uintptr_t>(d.codes) | reinterpret_cast<uintptr_t>(X) | reinterpret_cast<uintptr_t>(Y) |
       reinterpret_cast<uintptr_t>(d.fused)) & 15)
    return "fused qgemm: codes, the repacked stream, X and Y must be 16-byte aligned";
  if (reinterpret_cast<uintptr_t>(d.sz) & 3) return "fused qgemm: scale|zero words must be 4-byte aligned";
  return device_unsupported();
}

size_t qgemm_fused_repack_bytes(const QDesc& d) {
  if (shape_unsupported(d)) return 0;
  return (size_t)(d.out / kBM) * (d.in / kBK) * kRpBytes;
}

const char* cuda_qgemm_fused_repack(const QDesc& d, void* dst, void* stream) {
  if (const char* e = shape_unsupported(d)) return e;
  if ((reinterpret_cast<uintptr_t>(d.codes) | reinterpret_cast<uintptr_t>(dst)) & 15)
    return "fused qgemm repack: codes and the destination must be 16-byte aligned";
  if (const char* e = device_unsupported()) return e;
  const dim3 grid(d.out / kBM, d.in / kBK);
  qgemm_w2_repack_kernel<<<grid, 256, 0, static_cast<cudaStream_t>(stream)>>>(d.codes, d.sz,
                                                                               static_cast<uint8_t*>(dst), d.in);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_qgemm_fused(const QDesc& d, int M, const void* X, void* Y, bool y_f32, void* stream, int debug,
                             int variant) {
  if (const char* why = qgemm_fused_unsupported(d, M, X, Y)) return why;
  if (debug < 0 || debug > 3) return "fused qgemm: debug mode must be 0..3";
  if (variant < 0 || variant > 9) return "fused qgemm: variant must be 0 (default) or 1..9";
  if (debug && (d.out != kBM || M > kBN || !y_f32 || (debug == 3 && M != kBN)))
    return "fused qgemm debug: needs out == 128, M <= 128 (M == 128 for mode 3) and an f32 Y";
  dim3 grid(d.out / kBM, (M + kBN - 1) / kBN);
  int v = pick_variant(variant, d.fused != nullptr, (int)grid.x, M);
  if (v == 9) grid.y = (M + kBNw - 1) / kBNw;
  SkArgs sk{};  // variant 8's schedule (the other kernels do not read it)
  int sk_grid = 0;
  if (v == 8) {
    const long long iters = (long long)grid.x * grid.y * (d.in / kBK);
    sk_grid = streamk_grid(iters);
    const long long workers = std::min<long long>(2LL * sk_grid, iters);  // (no empty ranges)
    static const int order = [] { const char* e = std::getenv("LOWBIT_QGEMM_SK_ORDER"); return e && e[0] == '1' ? 1 : 0; }();
    if (workers * iters >= (1LL << 32)) v = 4;  // (the kernel's range arithmetic is 32-bit)
    else sk = SkArgs{(unsigned)workers, (unsigned)iters, FastDiv::make(d.in / kBK), FastDiv::make((int)grid.y),
                     FastDiv::make((int)grid.x), order};
  }
  if (v >= 7 && debug) return "fused qgemm: the debug modes take variants 1 to 6";
  if (v >= 3 && !d.fused) return "fused qgemm: variants 3 to 9 need the repacked stream (desc.fused, cuda_qgemm_fused_repack)";
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (v >= 3) {
    FusedArgs3 a{static_cast<const __nv_bfloat16*>(X), d.fused, Y, M, d.out, d.in, y_f32 ? 1 : 0, debug, 0x43004300u, sk};
    if (v >= 7) {
      CUtensorMap tm;
      if (const char* e = x_tensor_map(X, M, d.in, v == 9 ? kBNw : kBN, &tm)) return e;
      if (v == 7) qgemm_w2_wgmma_tma_kernel<5><<<grid, kSkThreads, smem_bytes_tma<5, kBN>(), s>>>(a, tm);
      else if (v == 9) qgemm_w2_wgmma_tma_kernel<kStagesW, kBNw, 1><<<grid, 256, smem_bytes_tma<kStagesW, kBNw, 1>(), s>>>(a, tm);
      else qgemm_w2_wgmma_streamk_kernel<kSkStages><<<sk_grid, kSkThreads, smem_bytes_streamk(kSkStages), s>>>(a, tm);
    } else if (v == 5) qgemm_w2_wgmma_rp_sk_kernel<5><<<grid, kSkThreads, smem_bytes_sk(5), s>>>(a);
    else if (v == 6) qgemm_w2_wgmma_rp_sk_kernel<4><<<grid, kSkThreads, smem_bytes_sk(4), s>>>(a);
    else if (v == 4) qgemm_w2_wgmma_rp_kernel<5, 2><<<grid, kThreads, smem_bytes3(5), s>>>(a);
    else qgemm_w2_wgmma_rp_kernel<6, 1><<<grid, kThreads, smem_bytes3(6), s>>>(a);
  } else {
    FusedArgs a{d.codes, d.sz, static_cast<const __nv_bfloat16*>(X), Y, M, d.out, d.in, y_f32 ? 1 : 0, debug};
    if (v == 2) qgemm_w2_wgmma_kernel<5, 2><<<grid, kThreads, smem_bytes(5), s>>>(a);
    else qgemm_w2_wgmma_kernel<6, 1><<<grid, kThreads, smem_bytes(6), s>>>(a);
  }
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

}  // namespace lowbit
