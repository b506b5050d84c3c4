// Prototype of an int8-x decode GEMV body (docs/cuda.md, "An int8 operand for x"): x as symmetric int8 per group of 64
// inputs, the 2-bit codes as u8 operands of mma.m16n8k32.u8.s8 — one lop3 per register and slot, 512 weights per MMA —
// against kernel 5's fp16 image with m16n8k16 (256 weights per MMA, one lop3 per 2 weights). Standalone, to price the body
// before it goes into kernel 5: plain loads (no bulk-copy ring), kernel 5's f16 scale|zero words (scale in the low half),
// split K with float atomics. The
// layout and the fold mirror the CPU lane model in test/cuda-int8x-gemv-model.test.ts (src/backend/cuda-int8x.ts: the
// repack and the x quantization twins).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "check.h"
#include "int8x_body.cuh"  // i8_block, i8_arow8, I8Bt, tile_bt
#include "lora_dot.cuh"
#include "mbarrier.cuh"  // ld_acquire_gpu
#include "lowbit_cuda.h"
#include "pdl.h"

namespace lowbit {
namespace {

// The GEMV's input, one warp per group of 64 inputs. First the element v = x (f32 or bf16) + addy + B1·t1 — the residual
// stream updated by the previous GEMV's output and its LoRA B·t (written back to xout when given) — then x̃ = v (plain),
// v·normW (RMSNorm: the GEMV applies 1/rms to its row sums, so no group waits for the whole vector) or silu(v)·(x2 +
// B2·t2) (SwiGLU with both adapters' B·t); x̂ = round(x̃ / a), a = absmax / 127 (1 if all zero), Σx̂ per group, and
// (normW) each block's Σv² in part[block]. Then the block zeroes its share of the consumer's split-K output y (nz
// floats). Launched with PDL, it waits for its producer before reading anything. B·t: group_bt (coalesced; eight k in
// order per lane, then a fixed shuffle tree) for r = 8·2^j ≤ 256, else lora_dot (k in order).
struct I8Prep {
  const void* x;
  const float *x2, *normw, *addy, *t1, *t2;
  const uint16_t *B1, *B2;
  int r;
  bool xbf16;
  float* xout;
  int8_t* xq;
  float *a, *part;
  int* sum;
  int ng;
  float* yz;
  int nz;
  unsigned fill;  // the bits yz is set to: 0, or kTUnset (the A rows' t of streamed GEMVs publishing t by value)
};
constexpr int kPrepWarps = 8;
// group_bt, group_bt_fits: lora_dot.cuh
// quant_group: int8x_body.cuh
__global__ void int8x_prep_kernel(I8Prep p) {
  __shared__ float ss_s[kPrepWarps];
  __shared__ float bts[2][kPrepWarps][64];  // the warp's group's B1·t1 | B2·t2 (group_bt)
  extern __shared__ float tsm[];            // t1 [r] | t2 [r] where B1 | B2 are given
  const int w = threadIdx.x / 32, gi = blockIdx.x * kPrepWarps + w, lane = threadIdx.x & 31;
  pdl_trigger();
  pdl_wait();
  const int r1 = p.B1 ? p.r : 0, r2 = p.B2 ? p.r : 0;
  if (r1 + r2) stage_t(tsm, p.t1, r1, p.t2, r2, nullptr, 0);
  const bool grp = group_bt_fits(p.r);  // else a row per lane through lora_dot (ranks that are not 8·2^k)
  if (gi < p.ng && grp) {
    if (p.B1) group_bt(p.B1 + (size_t)64 * gi * p.r, tsm, p.r, bts[0][w], lane);
    if (p.B2) group_bt(p.B2 + (size_t)64 * gi * p.r, tsm + r1, p.r, bts[1][w], lane);
  }
  float ss = 0.f;
  if (gi < p.ng) {
    float v[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int i = 64 * gi + 32 * h + lane;
      float e = p.xbf16 ? bf16f(static_cast<const uint16_t*>(p.x)[i]) : static_cast<const float*>(p.x)[i];
      if (p.addy) e += p.addy[i];
      if (p.B1) e += grp ? bts[0][w][32 * h + lane] : lora_dot(p.B1, tsm, p.r, i);
      if (p.xout) p.xout[i] = e;
      if (p.normw) {
        ss = fmaf(e, e, ss);
        e *= p.normw[i];
      } else if (p.x2) {
        float u = p.x2[i];
        if (p.B2) u += grp ? bts[1][w][32 * h + lane] : lora_dot(p.B2, tsm + r1, p.r, i);
        e = e / (1.f + expf(-e)) * u;
      }
      v[h] = e;
    }
    quant_group(v, lane, p.xq + 64 * gi, p.a + gi, p.sum + gi);
  }
  if (p.normw) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (lane == 0) ss_s[w] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
      float tot = 0.f;
      for (int i = 0; i < kPrepWarps; i++) tot += ss_s[i];  // fixed order: the partials are deterministic
      p.part[blockIdx.x] = tot;
    }
  }
  if (p.yz) {
    const int per = (p.nz + gridDim.x - 1) / gridDim.x;
    for (int i = blockIdx.x * per + threadIdx.x; i < min(p.nz, (blockIdx.x + 1) * per); i += blockDim.x)
      reinterpret_cast<unsigned*>(p.yz)[i] = p.fill;
  }
}


// words: [tile][block of 128 inputs][lane][4] (cudaInt8xRepack's twin: repackInt8x); a warp takes one 16-row tile and
// blocks blk = kslice, kslice + nks, … ; lane (g, t) ends with rows g and g + 8 of the tile (every column of C holds the
// same sums: x̂ is in every column of B), lanes t = 0 add them into y. Everything a block needs — its words, the two
// rows' scale|zero words, the lane's 8 words of x̂, the groups' a and Σx̂ — travels in a register ring AHEAD blocks deep
// (1 or 2; parts & 16 picks 2): run 80's profile had the warps stalled on the x̂ and scale|zero loads issued in the
// block that used them (long-scoreboard 74 % of samples) once only the words were loaded ahead. SX (parts & 32): the
// block first copies x̂, a and Σx̂ (in + in/8 bytes, 12.4 KB for down: low enough for PDL co-residency) into shared
// memory, so the ring's x̂ loads are shared-memory loads.
struct I8Blk {
  uint4 w;
  uint2 m0, m1;
  uint32_t x[8];
  float2 a;
  int2 s;
};
// The next GEMV's input made in this GEMV's epilogue (FIXED only; replaces the prep launch after it): every tile block,
// once its 16 rows of y are stored, counts in cnt[group] (a group of 64 of the consumer's inputs: 4 tiles, or with
// SwiGLU its 4 gate and 4 up tiles); the block that completes a group runs, with one warp, what int8x_prep_kernel
// does for it — e = x + y written back to x, x̃ = e·normw with Σe² into part[group] (residual mode, half = 0), or
// x̃ = silu(gate)·up (half = I: gate rows [0, I), up rows [I, 2I)) — quantizes it into the consumer's scratch and sets
// the counter back to 0. The consumer then reads ng partials (parts & 128) instead of the prep blocks' ⌈ng/8⌉.
struct I8Fold {
  unsigned* cnt;  // null: no fold
  float* x;
  const float* normw;
  int8_t* xq;
  int ng, half;
};
__device__ __forceinline__ void fold_group(const I8Fold& f, const float* y, int gi, int lane) {
  scratch_group<true>(f.x, y, f.half ? nullptr : f.x, f.normw, f.half, gi, lane, f.xq, f.ng, f.cnt);
}


// The tile's span of B (16 rows × r bf16, ≤ 4 KB) copied into shared memory with cp.async at the block's start, before
// the wait for the previous launch (B is a weight): the epilogue then reads it without an HBM round trip after its wait
// for t. No registers are held across the GEMV loop.
__device__ __forceinline__ void bt_prefetch(uint4* dst, const uint16_t* B, int r, int nrow) {
  const int n = nrow * (r >> 3);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const unsigned sa = (unsigned)__cvta_generic_to_shared(dst + i);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(reinterpret_cast<const uint4*>(B) + i) : "memory");
  }
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// FIXED (parts & 64): a block per 16-row tile with one warp per K slice (blockDim = 32·nks), the slices' sums added in
// slice order in shared memory and y stored — deterministic, so a CUDA graph replays the eager result bit for bit and y
// needs no zeroing (with float atomics, run 84 saw graph and eager differ by 7e-3 once: the order of the atomic adds
// moved an x̃ across an int8 rounding boundary downstream). The A-row blocks come first, nks warps per row.
// Otherwise: 4-warp blocks, warp = tile·nks + slice, float atomics into y (zeroed beforehand).
template <int AHEAD, bool SX, bool FIXED>
__global__ void __launch_bounds__(512) int8x_gemv_kernel(const uint4* __restrict__ words, const uint32_t* __restrict__ sz,
                                                         const int8_t* __restrict__ xq,
                                                         const float* __restrict__ a, const int* __restrict__ sum,
                                                         const float* __restrict__ part, int npart, float eps, float* y,
                                                         int out, int in, int nks, const uint16_t* __restrict__ A, int R,
                                                         float* __restrict__ tout, I8Bt bt, I8Fold fd, int nab, int rlg) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int nblk = in / 128, ng = in / 64, tiles = (out + 15) / 16;
  // the A-row blocks (past the packed tiles; FIXED: before them) each take one row of A (the adapter's LoRA-A factor, bf16
  // [R, in]): t = A·x̃, the block's dn warps a share of the inputs each (a warp alone would walk 11008 inputs in 43
  // dependent steps: longer than down's tiles)
  int tile, ks, drow, dq, dn;
  if (FIXED) {  // 2^rlg A rows a block, nks >> rlg warps a row (rlg > 0 only where nks is a power of two): no divisions,
               // which lifted the kernel from 60 to 78 registers
    const int wpr = nks >> rlg, lgw = __ffs(wpr) - 1;
    tile = (int)blockIdx.x - nab;
    ks = threadIdx.x / 32;
    drow = tile < 0 ? ((int)blockIdx.x << rlg) + (rlg ? ks >> lgw : 0) : -1;
    dq = rlg ? ks & (wpr - 1) : ks;
    dn = wpr;
  } else {
    const int warp = blockIdx.x * 4 + threadIdx.x / 32, dfirst = (tiles * nks + 3) & ~3, dw = warp - dfirst;
    tile = warp / nks;
    ks = warp % nks;
    drow = dw >= 0 ? dw >> 2 : -1;
    dq = dw & 3;
    dn = 4;
  }
  const bool active = tile >= 0 && tile < tiles, dense = drow >= 0 && drow < R;
  if (!SX && !FIXED && !active && !dense) return;
  const int r0 = min(tile * 16 + g, out - 1), r1 = min(tile * 16 + g + 8, out - 1);
  float y0 = 0.f, y1 = 0.f;
  // SX: x̂ | a | Σx̂ (contiguous in the scratch) copied into shared memory by the block once, after the wait
  extern __shared__ __align__(16) unsigned char i8x_smem[];
  const uint32_t* xw = SX ? reinterpret_cast<const uint32_t*>(i8x_smem) : reinterpret_cast<const uint32_t*>(xq);
  const float2* a2 = SX ? reinterpret_cast<const float2*>(i8x_smem + in) : reinterpret_cast<const float2*>(a);
  const int2* s2 = SX ? reinterpret_cast<const int2*>(i8x_smem + in + 4 * ng) : reinterpret_cast<const int2*>(sum);
  const uint4* wp = words + (size_t)tile * nblk * 32 + lane;
  const uint2* sz0 = reinterpret_cast<const uint2*>(sz + (size_t)r0 * ng);  // [blk]: the block's two groups (ng is even)
  const uint2* sz1 = reinterpret_cast<const uint2*>(sz + (size_t)r1 * ng);
  auto load_w = [&](I8Blk& b, int blk) {  // weights: independent of the previous launch
    b.w = __ldg(wp + (size_t)blk * 32);
    b.m0 = __ldg(sz0 + blk);
    b.m1 = __ldg(sz1 + blk);
  };
  auto load_x = [&](I8Blk& b, int blk) {  // the prep launch's output: only after griddepcontrol.wait
#pragma unroll
    for (int j = 0; j < 4; j++) {
      b.x[2 * j] = SX ? xw[32 * blk + 8 * j + t] : __ldg(xw + 32 * blk + 8 * j + t);
      b.x[2 * j + 1] = SX ? xw[32 * blk + 8 * j + 4 + t] : __ldg(xw + 32 * blk + 8 * j + 4 + t);
    }
    b.a = SX ? a2[blk] : __ldg(a2 + blk);
    b.s = SX ? s2[blk] : __ldg(s2 + blk);
  };
  // the first blocks' weights are loaded before the wait, so a launch made with PDL (parts & 8) streams them while the
  // launch before it finishes
  I8Blk ring[AHEAD];
#pragma unroll
  for (int i = 0; i < AHEAD; i++)
    if (active && ks + i * nks < nblk) load_w(ring[i], ks + i * nks);
  // FIXED with B·t: the tile's rows of B into shared memory now (bt_prefetch), read by the epilogue
  __shared__ __align__(16) uint4 bsm[16 * kBtMaxR / 8];
  const bool hasBt = FIXED && bt.sync;
  const int row0 = tile * 16, seg = hasBt ? bt_seg(bt, row0) : 0;
  const uint16_t* Btile = hasBt ? bt_rows(bt, seg, row0) : nullptr;
  const bool bpre = FIXED && active && hasBt && bt.pre && group_bt_fits(bt.r);
  if (bpre) bt_prefetch(bsm, Btile, bt.r, min(16, out - row0));
  pdl_trigger();
  pdl_wait();
  if (SX) {
    const uint4* src = reinterpret_cast<const uint4*>(xq);
    for (int i = threadIdx.x; i < (in + 8 * ng) / 16; i += blockDim.x) reinterpret_cast<uint4*>(i8x_smem)[i] = src[i];
    __syncthreads();
  }
  auto rstd_of = [&]() {  // RMSNorm: 1/rms from the prep blocks' Σx² (fixed order, so every warp gets the same value)
    float ss = 0.f;
    for (int i = 0; i < npart; i++) ss += __ldg(part + i);
    return rsqrtf(ss / (float)in + eps);
  };
  if (!active) {
    const bool ablock = FIXED && tile < 0;  // FIXED: every warp of an A-row block reaches its barrier, rows or not
    if (!dense && !ablock) return;  // a block past the tiles and the A rows (FIXED: none is launched)
    // t[drow] = Σ_g a_g Σ_{i in g} A[drow][i]·x̂_i (· 1/rms): 8 inputs per lane and step, all in one group of 64; the
    // row's warps' partial sums added in a fixed order
    const uint4* Ar = reinterpret_cast<const uint4*>(A + (size_t)(dense ? drow : 0) * in);
    const uint2* xv2 = reinterpret_cast<const uint2*>(SX ? static_cast<const void*>(i8x_smem) : static_cast<const void*>(xq));
    const float* av = SX ? reinterpret_cast<const float*>(i8x_smem + in) : a;
    float acc = 0.f;
#pragma unroll 4
    for (int i = lane + 32 * dq + (dense ? 0 : in); i < in / 8; i += 32 * dn) {
      const uint4 w = __ldg(Ar + i);
      const uint2 xv = SX ? xv2[i] : __ldg(xv2 + i);
      const float ag = SX ? av[i >> 3] : __ldg(av + (i >> 3));
      const float p = i8_arow8(w, xv);
      acc = fmaf(ag, p, acc);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    __shared__ float dred[32];
    if (lane == 0) dred[FIXED ? ks : dq] = acc;
    __syncthreads();  // a dense block's warps are all dense (dfirst is a multiple of 4); FIXED: ablock
    if (threadIdx.x == 0) {
      const float rs = npart ? rstd_of() : 1.f;
      const int nrow = FIXED ? min(1 << rlg, R - ((int)blockIdx.x << rlg)) : 1;
      for (int r = 0; r < nrow; r++) {
        float tt = 0.f;
        for (int i = 0; i < dn; i++) tt += dred[r * dn + i];  // the row's warps in order
        tout[FIXED ? ((int)blockIdx.x << rlg) + r : drow] = tt * rs;
      }
      if (FIXED && bt.sync) {
        __threadfence();
        atomicAdd(bt.sync, (unsigned)nrow);
      }
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < AHEAD; i++)
    if (ks + i * nks < nblk) load_x(ring[i], ks + i * nks);
#pragma unroll 2
  for (int blk = ks; blk < nblk; blk += nks) {
    const I8Blk b = ring[0];
#pragma unroll
    for (int i = 0; i + 1 < AHEAD; i++) ring[i] = ring[i + 1];
    if (blk + AHEAD * nks < nblk) {
      load_w(ring[AHEAD - 1], blk + AHEAD * nks);
      load_x(ring[AHEAD - 1], blk + AHEAD * nks);
    }
    i8_block(b.w, b.m0, b.m1, b.x, b.a, b.s, y0, y1);
  }
  if (npart) {
    const float rstd = rstd_of();
    y0 *= rstd;
    y1 *= rstd;
  }
  if (FIXED) {
    __shared__ float red[16][16];
    __shared__ float tsm[kBtMaxR];  // the tile's segment's t
    if (t == 0) {
      red[ks][g] = y0;
      red[ks][g + 8] = y1;
    }
    if (hasBt && threadIdx.x == 0)
      while (ld_acquire_gpu(bt.sync) < (unsigned)R) {}
    __syncthreads();
    __shared__ float btsm[16];  // the tile's 16 B·t values
    if (hasBt) {
      for (int i = threadIdx.x; i < bt.r; i += blockDim.x) tsm[i] = __ldcg(tout + seg * bt.r + i);
      if (bpre) asm volatile("cp.async.wait_all;\n" ::: "memory");
      __syncthreads();
      tile_bt(Btile, bpre ? bsm : reinterpret_cast<const uint4*>(Btile), tsm, bt.r, min(16, out - row0), btsm);
    }
    if (threadIdx.x < 16 && row0 + (int)threadIdx.x < out) {
      float s = 0.f;
      for (int k = 0; k < nks; k++) s += red[k][threadIdx.x];  // slice order
      if (hasBt) s += btsm[threadIdx.x];
      y[row0 + threadIdx.x] = s;
    }
    if (bt.sync && bt.reset && threadIdx.x == 0 && atomicAdd(bt.sync + 1, 1u) == (unsigned)tiles - 1) {  // the last tile block out
      bt.sync[0] = 0;
      bt.sync[1] = 0;
    }
    if (fd.cnt) {  // the next GEMV's input, a group at a time (I8Fold)
      // no __threadfence per writer (run 89: the fence version made decode 10–12 % slower than the prep launches):
      // the block barrier orders the y stores before thread 0's count, an acq_rel add at gpu scope (cumulative) that
      // publishes them and, in the block that completes the group, acquires the other blocks' rows
      __shared__ unsigned fprev;
      __syncthreads();
      const int ht = fd.half / 16, gi = (fd.half && tile >= ht ? tile - ht : tile) >> 2;
      if (threadIdx.x == 0)
        asm volatile("atom.add.acq_rel.gpu.u32 %0, [%1], 1;\n" : "=r"(fprev) : "l"(fd.cnt + gi) : "memory");
      __syncthreads();
      if (fprev == (fd.half ? 7u : 3u) && threadIdx.x < 32) fold_group(fd, y, gi, lane);
    }
  } else if (t == 0) {
    if (tile * 16 + g < out) atomicAdd(y + tile * 16 + g, y0);
    if (tile * 16 + g + 8 < out) atomicAdd(y + tile * 16 + g + 8, y1);
  }
}

// The int8-x words from a packed 'int' 2-bit code stream (row-major, 16 codes per word, code i at bits 2i; in % 128
// == 0): a thread per output word (tile, block of 128, lane, r). The lane's four inputs 16·kh + 4t .. + 3 of slot j lie in
// byte t of ONE source word, so each slot is a byte spread over the four bytes of the output word at bits 2j.
__global__ void int8x_repack_kernel(const uint32_t* __restrict__ codes, uint32_t* __restrict__ words, int out, int in) {
  const int nblk = in / 128, wpr = in / 16;
  const size_t n = (size_t)((out + 15) / 16) * nblk * 128;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const int r = (int)(i & 3), lane = (int)((i >> 2) & 31), blk = (int)((i >> 7) % nblk), tile = (int)((i >> 7) / nblk);
    const int g = lane >> 2, t = lane & 3, kh = r >> 1;
    const int row = min(tile * 16 + g + 8 * (r & 1), out - 1);
    uint32_t w = 0;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const uint32_t byte = (codes[(size_t)row * wpr + 8 * blk + 2 * j + kh] >> (8 * t)) & 0xffu;
#pragma unroll
      for (int b = 0; b < 4; b++) w |= ((byte >> (2 * b)) & 3u) << (8 * b + 2 * j);
    }
    words[i] = w;
  }
}

}  // namespace

const char* cuda_int8x_repack(const void* codes, void* words, int out, int in) {
  if (in % 128 != 0 || out < 1) return "cudaInt8xRepack: in must be a multiple of 128";
  const size_t n = (size_t)((out + 15) / 16) * (in / 128) * 128;
  int8x_repack_kernel<<<(unsigned)std::min<size_t>((n + 255) / 256, 65535), 256>>>(static_cast<const uint32_t*>(codes),
                                                                               static_cast<uint32_t*>(words), out, in);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

// Scratch layout: x̂ [in] int8 | a [ng] f32 | Σx̂ [ng] i32 | part [ng] f32 (the prep fills ⌈ng / 8⌉, a folded prep ng).
const char* cuda_int8x_prep(const void* x, const float* x2, const float* normw, void* scratch, int in, float* yz, int nz, bool pdl,
                            const Int8xPrepExtra* ex) {
  if (in % 64 != 0) return "cudaInt8xPrep: in must be a multiple of 64";
  const int ng = in / 64;
  I8Prep p{};
  p.x = x;
  p.x2 = x2;
  p.normw = normw;
  if (ex) {
    p.xbf16 = ex->xbf16;
    p.addy = ex->addy;
    p.B1 = static_cast<const uint16_t*>(ex->B1);
    p.t1 = ex->t1;
    p.B2 = static_cast<const uint16_t*>(ex->B2);
    p.t2 = ex->t2;
    p.r = ex->r;
    p.xout = ex->xout;
    p.fill = ex->unsetT ? kTUnset : 0u;
  }
  p.xq = static_cast<int8_t*>(scratch);
  p.a = reinterpret_cast<float*>(p.xq + in);
  p.sum = reinterpret_cast<int*>(p.a + ng);
  p.part = reinterpret_cast<float*>(p.sum + ng);
  p.ng = ng;
  p.yz = yz;
  p.nz = nz;
  const size_t smem = ((p.B1 ? p.r : 0) + (p.B2 ? p.r : 0)) * sizeof(float);
  return launch_ex(pdl, int8x_prep_kernel, (unsigned)((ng + kPrepWarps - 1) / kPrepWarps), 32u * kPrepWarps, smem, p);
}

const char* int8x_bt(const Int8xGemvBt& in, int out, int R, I8Bt* bt) {
  if (in.r < 1 || in.r > kBtMaxR || in.nseg < 1 || in.nseg > 3 || R < in.nseg * in.r)
    return "cudaInt8x: B·t in the epilogue takes 1–3 segments of rank 1–128, their t within the A rows";
  int prev = 0;
  for (int i = 0; i < 3; i++) {
    const int e = i < in.nseg ? in.end[i] : out;
    if (e < prev || e > out || (e % 16 != 0 && e != out)) return "cudaInt8x: B·t segment ends must rise, 16-row aligned, up to out";
    bt->B[i] = i < in.nseg ? static_cast<const uint16_t*>(in.B[i]) : nullptr;
    bt->end[i] = e;
    prev = e;
  }
  if (bt->end[in.nseg - 1] != out) return "cudaInt8x: the last B·t segment must end at out";
  bt->r = in.r;
  bt->sync = in.sync;
  static const bool pre = [] { const char* e = std::getenv("LOWBIT_INT8X_BPRE"); return !(e && e[0] == '0'); }();
  bt->pre = pre;
  return nullptr;
}

const char* cuda_int8x_gemv(const void* words, const uint32_t* sz, const float* x, void* scratch, float* y,
                            int out, int in, int nks, int parts, float eps, const void* A, int R, float* t,
                            const Int8xGemvBt* btIn, const Int8xGemvFold* foldIn) {
  if (in % 128 != 0 || out < 1 || nks < 1) return "cudaInt8xGemv: in must be a multiple of 128, out and ksplit ≥ 1";
  const int ng = in / 64, tiles = (out + 15) / 16;
  int8_t* xq = static_cast<int8_t*>(scratch);
  float* a = reinterpret_cast<float*>(xq + in);
  int* sum = reinterpret_cast<int*>(a + ng);
  float* part = reinterpret_cast<float*>(sum + ng);
  if (parts & 1) {
    const char* err = cuda_int8x_prep(x, nullptr, nullptr, scratch, in, nullptr, 0, false, nullptr);
    if (err) return err;
  }
  if (parts & 2) LB_CUDA(cudaMemsetAsync(y, 0, (size_t)out * 4, 0));
  if (parts & 4) {
    if (!A) R = 0;
    const bool fixed = (parts & 64) != 0, sx = (parts & 32) != 0;
    if (fixed && nks > 16) return "cudaInt8xGemv: the fixed-order reduction (parts & 64) takes ksplit ≤ 16 (a block per tile)";
    I8Bt bt{};
    if (btIn) {
      if (!fixed || R < 1) return "cudaInt8xGemv: B·t in the epilogue needs parts & 64 and the A rows";
      if (const char* err = int8x_bt(*btIn, out, R, &bt)) return err;
      bt.reset = (parts & 256) == 0;
      bt.tval = (parts & 2048) != 0;
      if (bt.tval && !(parts & 512)) return "cudaInt8xGemv: t published by value (parts & 2048) is the streamed GEMV's (parts & 512)";
    }
    I8Fold fd{};
    if (foldIn) {
      const int half = foldIn->half, cin = 64 * foldIn->ng;
      if (!fixed) return "cudaInt8xGemv: the folded prep needs parts & 64";
      if (foldIn->ng < 1 || (half ? (half != cin || out != 2 * half) : out != cin))
        return "cudaInt8xGemv: the folded prep's consumer takes out inputs (SwiGLU: out / 2), a multiple of 64";
      if (!half && !foldIn->x) return "cudaInt8xGemv: the folded prep needs the residual x (or SwiGLU)";
      fd.cnt = foldIn->cnt;
      fd.x = foldIn->x;
      fd.normw = half ? nullptr : foldIn->normw;
      fd.xq = static_cast<int8_t*>(foldIn->scratch);
      fd.ng = foldIn->ng;
      fd.half = half;
    }
    // parts & 128: the Σx² partials are per group (a folded prep wrote them), else per prep block of 8 groups
    const int npart = eps >= 0.f ? ((parts & 128) ? ng : (ng + kPrepWarps - 1) / kPrepWarps) : 0;
    // parts & 1024 (fixed order, nks a power of two): 4 LoRA-A rows a block, each by nks / 4 warps (fewer when nks < 4);
    // else a block a row, the measured default. 4 cuts q/k/v's 192 A-row blocks of 512 threads to 48 (not yet GPU-run)
    int rpb = fixed && (parts & 1024) && (nks & (nks - 1)) == 0 ? 4 : 1;
    while (nks % rpb) rpb >>= 1;
    const int rlg = rpb == 4 ? 2 : rpb == 2 ? 1 : 0, nab = (R + rpb - 1) / rpb;
    if (parts & 512) {  // the streamed kernel (int8x_stream.cu): one block per SM, weights through a bulk-copy ring
      if (!fixed || foldIn) return "cudaInt8xGemv: the streamed GEMV (parts & 512) needs parts & 64 and no folded prep";
      return cuda_int8x_stream(words, sz, scratch, y, out, in, nks, (parts & 8) != 0, npart, eps, A, R, t, bt, rpb);
    }
    const unsigned blocks = fixed ? (unsigned)(tiles + nab) : (unsigned)((((tiles * nks + 3) & ~3) + 4 * R + 3) / 4);
    const unsigned threads = fixed ? 32u * nks : 128u;
    decltype(&int8x_gemv_kernel<1, false, false>) kern[8] = {
        int8x_gemv_kernel<1, false, false>, int8x_gemv_kernel<2, false, false>, int8x_gemv_kernel<1, true, false>,
        int8x_gemv_kernel<2, true, false>,  int8x_gemv_kernel<1, false, true>,  int8x_gemv_kernel<2, false, true>,
        int8x_gemv_kernel<1, true, true>,   int8x_gemv_kernel<2, true, true>};
    return launch_ex((parts & 8) != 0, kern[((parts & 16) ? 1 : 0) + (sx ? 2 : 0) + (fixed ? 4 : 0)], blocks, threads,
                     sx ? (size_t)(in + 8 * ng) : 0, static_cast<const uint4*>(words), sz, static_cast<const int8_t*>(xq),
                     static_cast<const float*>(a), static_cast<const int*>(sum), static_cast<const float*>(part), npart, eps, y,
                     out, in, nks, static_cast<const uint16_t*>(A), R, t, bt, fd, nab, rlg);
  }
  return nullptr;
}

}  // namespace lowbit
