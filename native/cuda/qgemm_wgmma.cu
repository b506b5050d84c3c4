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
// Debug modes (one CTA: out == 128, M <= 128, f32 Y; Y is used as a raw uint32 dump):
//   1: Y32[tid·16 + 4s + r] = A register r of k16 step s of k-block 0   (check the fragment order)
//   2: Y32[0 .. 4096) = the raw bytes of stage 0's X tile                (check the swizzled layout)
//   3: Y32[tid·64 + i] = accumulator i after the whole K loop (M = 128)  (check the D fragment order)
// Their CPU models: src/backend/qgemm-fused-model.ts.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "check.h"
#include "lowbit_cuda.h"

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
__device__ __forceinline__ void pin(float (&d)[64]) {
#pragma unroll
  for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i])::"memory");
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
    pin(acc);
    wg_fence();
#pragma unroll
    for (int s = 0; s < 4; s++) wgmma_128(acc, cur[s], desc + 2 * s);  // +32 bytes per k16 step
    wg_commit();
    wg_wait<1>();  // wgmma(kb − 1) done: its A buffer (nxt) may be overwritten
    pin(nxt);
    if (kb + 1 < KB) convert(kb + 1, nxt);
  };
  int kb = 0;
#pragma unroll 1
  for (; kb + 1 < KB; kb += 2) {
    iter(kb, A0, A1);
    iter(kb + 1, A1, A0);
  }
  if (kb < KB) iter(kb, A0, A1);
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

  // acc[4j + 2v + u] = D[row 16w + g + 8v][token 8j + 2t + u] (PTX "wgmma .m64nNk16 register fragment layout for
  // accumulator matrix D"); staged token-major.
  float* tile = reinterpret_cast<float*>(sg);
  const int mr = 64 * wg + 16 * warp + g;
#pragma unroll
  for (int j = 0; j < 16; j++)
#pragma unroll
    for (int v = 0; v < 2; v++)
#pragma unroll
      for (int u = 0; u < 2; u++) tile[(8 * j + 2 * t + u) * kEpiPitch + mr + 8 * v] = acc[4 * j + 2 * v + u];
  __syncthreads();
  if (p.y_f32) {
    for (int i = tid; i < kBN * (kBM / 4); i += kThreads) {
      const int n = i / (kBM / 4), c = i % (kBM / 4);
      if (n0 + n >= p.M) break;  // rows are in order: the rest are past M too
      const float4 v = *reinterpret_cast<const float4*>(tile + n * kEpiPitch + 4 * c);
      *reinterpret_cast<float4*>(static_cast<float*>(p.Y) + (size_t)(n0 + n) * p.out + m0 + 4 * c) = v;
    }
  } else {
    for (int i = tid; i < kBN * (kBM / 8); i += kThreads) {
      const int n = i / (kBM / 8), c = i % (kBM / 8);
      if (n0 + n >= p.M) break;
      const float4 a = *reinterpret_cast<const float4*>(tile + n * kEpiPitch + 8 * c);
      const float4 b = *reinterpret_cast<const float4*>(tile + n * kEpiPitch + 8 * c + 4);
      const __nv_bfloat162 h0 = __floats2bfloat162_rn(a.x, a.y), h1 = __floats2bfloat162_rn(a.z, a.w);
      const __nv_bfloat162 h2 = __floats2bfloat162_rn(b.x, b.y), h3 = __floats2bfloat162_rn(b.z, b.w);
      uint4 o;
      o.x = *reinterpret_cast<const uint32_t*>(&h0);
      o.y = *reinterpret_cast<const uint32_t*>(&h1);
      o.z = *reinterpret_cast<const uint32_t*>(&h2);
      o.w = *reinterpret_cast<const uint32_t*>(&h3);
      *reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(p.Y) + (size_t)(n0 + n) * p.out + m0 + 8 * c) = o;
    }
  }
#endif  // LB_HAVE_WGMMA
}

// Per variant and device (bit d): the kernel image is usable and its shared-memory limit is raised.
std::atomic<uint64_t> g_ready[2];

template <int S, int B>
const char* prepare(int dev) {
  if (dev < 64 && (g_ready[B - 1].load() >> dev & 1)) return nullptr;
  cudaFuncAttributes fa;
  if (cudaFuncGetAttributes(&fa, qgemm_w2_wgmma_kernel<S, B>) != cudaSuccess) {
    cudaGetLastError();
    return "fused qgemm: no sm_90a kernel image in this build";
  }
  if (cudaFuncSetAttribute(qgemm_w2_wgmma_kernel<S, B>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes(S)) !=
      cudaSuccess) {
    cudaGetLastError();
    return "fused qgemm: cannot raise the dynamic shared memory limit";
  }
  if (dev < 64) g_ready[B - 1].fetch_or(uint64_t(1) << dev);
  return nullptr;
}

// 0 = default (1); LOWBIT_QGEMM_FUSED_VARIANT overrides the default.
int pick_variant(int v) {
  if (v) return v;
  const char* e = std::getenv("LOWBIT_QGEMM_FUSED_VARIANT");
  return e && e[0] == '2' && !e[1] ? 2 : 1;
}

}  // namespace

const char* qgemm_fused_unsupported(const QDesc& d, int M, const void* X, const void* Y) {
  if (d.layout != 0 || d.bits != 2 || d.group != 64 || d.gidx || !d.sz)
    return "fused qgemm: needs an 'int' 2-bit weight with group 64 and no gIdx";
  if (d.in % kBK || d.out % kBM) return "fused qgemm: needs in % 64 == 0 and out % 128 == 0";
  if (M < 1) return "fused qgemm: needs M >= 1";
  if ((reinterpret_cast<uintptr_t>(d.codes) | reinterpret_cast<uintptr_t>(X) | reinterpret_cast<uintptr_t>(Y)) & 15)
    return "fused qgemm: codes, X and Y must be 16-byte aligned";
  if (reinterpret_cast<uintptr_t>(d.sz) & 3) return "fused qgemm: scale|zero words must be 4-byte aligned";
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
  if (const char* e = prepare<6, 1>(dev)) return e;
  return prepare<5, 2>(dev);
}

const char* cuda_qgemm_fused(const QDesc& d, int M, const void* X, void* Y, bool y_f32, void* stream, int debug,
                             int variant) {
  if (const char* why = qgemm_fused_unsupported(d, M, X, Y)) return why;
  if (debug < 0 || debug > 3) return "fused qgemm: debug mode must be 0..3";
  if (variant < 0 || variant > 2) return "fused qgemm: variant must be 0 (default), 1 or 2";
  if (debug && (d.out != kBM || M > kBN || !y_f32 || (debug == 3 && M != kBN)))
    return "fused qgemm debug: needs out == 128, M <= 128 (M == 128 for mode 3) and an f32 Y";
  FusedArgs a{d.codes, d.sz, static_cast<const __nv_bfloat16*>(X), Y, M, d.out, d.in, y_f32 ? 1 : 0, debug};
  const dim3 grid(d.out / kBM, (M + kBN - 1) / kBN);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (pick_variant(variant) == 2) qgemm_w2_wgmma_kernel<5, 2><<<grid, kThreads, smem_bytes(5), s>>>(a);
  else qgemm_w2_wgmma_kernel<6, 1><<<grid, kThreads, smem_bytes(6), s>>>(a);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

}  // namespace lowbit
