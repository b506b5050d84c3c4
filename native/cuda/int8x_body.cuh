// The int8-x GEMV body shared by the per-tile kernel (int8x_gemv.cu) and the streamed kernel (int8x_stream.cu): the
// u8×s8 MMA, the fold of one 128-input block into a tile's two rows, and the epilogue's B·t. One copy of the math, so
// the two kernels give the same bits for the same K slicing (the GPU test compares them exactly).
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "lora_dot.cuh"  // group_bt_fits

namespace lowbit {

__device__ __forceinline__ float bf16f(uint16_t b) { return __uint_as_float((uint32_t)b << 16); }
constexpr int kBtMaxR = 128;  // the GEMV epilogue's B·t: rank ≤ 128 (t staged in shared memory)

__device__ __forceinline__ float f16lo(uint32_t w) { return __half2float(__ushort_as_half((unsigned short)(w & 0xffff))); }
__device__ __forceinline__ float f16hi(uint32_t w) { return __half2float(__ushort_as_half((unsigned short)(w >> 16))); }

__device__ __forceinline__ void mma_u8s8(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0), "r"(0), "r"(0), "r"(0));
}

// One 128-input block of a 16-row tile into lane (g, t)'s rows g and g + 8: the four slots' u8×s8 MMAs (slot j reads
// 4^j·q through one mask per register), then per group of 64 the scale, x̂'s scale a and the zero against Σx̂.
__device__ __forceinline__ void i8_block(const uint4& w, const uint2& m0, const uint2& m1, const uint32_t (&x)[8], const float2& a,
                                         const int2& s, float& y0, float& y1) {
  int acc[4][4];
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const uint32_t m = 0x03030303u << (2 * j);  // slot j: 4^j·q in each byte, one lop3 per register
    mma_u8s8(acc[j], w.x & m, w.y & m, w.z & m, w.w & m, x[2 * j], x[2 * j + 1]);
  }
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const uint32_t w0 = h ? m0.y : m0.x, w1 = h ? m1.y : m1.x;
    const float sc = h ? 1.f / 16.f : 1.f, ag = h ? a.y : a.x, sg = (float)(h ? s.y : s.x);
    const float q0 = sc * ((float)acc[2 * h][0] + 0.25f * (float)acc[2 * h + 1][0]);  // row g
    const float q1 = sc * ((float)acc[2 * h][2] + 0.25f * (float)acc[2 * h + 1][2]);  // row g + 8
    y0 = fmaf(f16lo(w0) * ag, q0 - f16hi(w0) * sg, y0);
    y1 = fmaf(f16lo(w1) * ag, q1 - f16hi(w1) * sg, y1);
  }
}

// One group of 64 by one warp (lane holds values lane and 32 + lane): x̂ = round(v / a), a = absmax / 127 (1 if all
// zero), Σx̂; lane 0 writes a and Σx̂. The prep kernel, the folded prep (fold_group) and the chain (int8x_stream.cu) share it, so both make the same bytes.
__device__ __forceinline__ void quant_group(const float (&v)[2], int lane, int8_t* xq, float* a, int* sum) {
  float m = fmaxf(fabsf(v[0]), fabsf(v[1]));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  const float s = m > 0.f ? m / 127.f : 1.f;
  const int q0 = __float2int_rn(v[0] / s), q1 = __float2int_rn(v[1] / s);
  xq[lane] = (int8_t)q0;
  xq[32 + lane] = (int8_t)q1;
  int t = q0 + q1;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
  if (lane == 0) { *a = s; *sum = t; }
}
// 8 inputs of a LoRA-A row (bf16, one 16-byte word) times their x̂ (8 int8 in two words): the A rows' dot product step.
__device__ __forceinline__ float i8_arow8(const uint4& w, const uint2& xv) {
  const uint32_t ws[4] = {w.x, w.y, w.z, w.w}, xs[2] = {xv.x, xv.y};
  float p = 0.f;
#pragma unroll
  for (int k = 0; k < 8; k++) {
    const float wf = bf16f((uint16_t)(ws[k >> 1] >> (16 * (k & 1))));
    const float xf = (float)(int8_t)((xs[k >> 2] >> (8 * (k & 3))) & 0xffu);
    p = fmaf(wf, xf, p);
  }
  return p;
}

// A warp's share of a LoRA-A row's dot product on x's int8 image, summed over the warp (every lane gets it): words
// i = i0, i0 + step, … < n of the row (8 inputs each, bf16) times x̂ (a [i / 8]: the group scales), added in that order,
// then a shuffle tree. The streamed GEMV's and the chain's A rows.
__device__ __forceinline__ float i8_arow_warp(const uint4* Ar, const uint2* xv2, const float* a, int i0, int n, int step) {
  float acc = 0.f;
#pragma unroll 4
  for (int i = i0; i < n; i += step) acc = fmaf(a[i >> 3], i8_arow8(Ar[i], xv2[i]), acc);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  return acc;
}

// Group gi of 64 of a GEMV's input made from the GEMV before's y, by one warp (lane: elements lane, 32 + lane), then
// quantized into xq | a | sum (quant_group): half = 0, the residual v = x + y (written to xout when given) and x̃ =
// v·normw with Σv² added to the lane's ss (normw null: x̃ = v); half > 0, SwiGLU x̃ = silu(y[i])·y[half + i]. The folded
// prep (fold_group) makes its input so; the chain makes the same bytes in two steps (input_load, input_make, below).
__device__ __forceinline__ void input_group(const float* x, const float* y, float* xout, const float* normw, int half, int gi,
                                            int lane, int8_t* xq, float* a, int* sum, float& ss) {
  float v[2];
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int i = 64 * gi + 32 * h + lane;
    float e;
    if (half) {
      const float g = __ldcg(y + i), u = __ldcg(y + half + i);
      e = g / (1.f + expf(-g)) * u;
    } else {
      e = __ldcg(x + i) + __ldcg(y + i);
      if (xout) xout[i] = e;
      if (normw) {
        ss = fmaf(e, e, ss);
        e *= __ldg(normw + i);
      }
    }
    v[h] = e;
  }
  quant_group(v, lane, xq + 64 * gi, a + gi, sum + gi);
}
// input_group for group gi of a whole int8-x scratch xq of 64·ng inputs (x̂ | a | Σx̂ | a Σv² partial per group), the
// warp's Σv² stored as the group's partial (with normw); CNT: the group's counter cnt[gi] set back to 0 with it. The
// folded prep's groups (CNT) and the chain's prep phases.
template <bool CNT>
__device__ __forceinline__ void scratch_group(const float* x, const float* y, float* xout, const float* normw, int half, int gi,
                                              int lane, int8_t* xq, int ng, unsigned* cnt) {
  float ss = 0.f, *a = reinterpret_cast<float*>(xq + 64 * ng);
  input_group(x, y, xout, normw, half, gi, lane, xq, a, reinterpret_cast<int*>(a + ng), ss);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (lane == 0) {
    if (normw) a[2 * ng + gi] = ss;
    if (CNT) cnt[gi] = 0;
  }
}
// input_group in two steps, so that a warp can have the loads of several groups in flight before it makes any (the
// chain's blocks each make a whole input, many groups a warp): the same operations in the same order, so the same bytes
// (kept apart from input_group, whose compiled per-tile kernels are measured as they are).
struct GroupIn {
  float a[2], b[2], w[2];  // the lane's two elements: x, y and normw; or gate and up
};
__device__ __forceinline__ GroupIn input_load(const float* x, const float* y, const float* normw, int half, int gi, int lane) {
  GroupIn g;
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int i = 64 * gi + 32 * h + lane;
    g.a[h] = half ? __ldcg(y + i) : __ldcg(x + i);
    g.b[h] = half ? __ldcg(y + half + i) : __ldcg(y + i);
    g.w[h] = !half && normw ? __ldg(normw + i) : 1.f;
  }
  return g;
}
__device__ __forceinline__ void input_make(const GroupIn& g, float* xout, bool norm, int half, int gi, int lane, int8_t* xq,
                                           float* a, int* sum, float& ss) {
  float v[2];
#pragma unroll
  for (int h = 0; h < 2; h++) {
    float e;
    if (half) {
      e = g.a[h] / (1.f + expf(-g.a[h])) * g.b[h];
    } else {
      e = g.a[h] + g.b[h];
      if (xout) xout[64 * gi + 32 * h + lane] = e;
      if (norm) {
        ss = fmaf(e, e, ss);
        e *= g.w[h];
      }
    }
    v[h] = e;
  }
  quant_group(v, lane, xq + 64 * gi, a + gi, sum + gi);
}

// The adapters' B·t added in the GEMV's own epilogue (FIXED only): rows [0, end[0]) take B[0] with t[0 … r), rows
// [end[0], end[1]) B[1] with t[r … 2r), … (the projections concatenated in the launch, each 16-row aligned); B bf16
// [rows of its projection, r], scaled. t is the A rows' output of the SAME launch: the A-row blocks come first in the
// grid (so they are resident before any tile block waits), each adds 1 to sync[0] after its t; a tile block, once its
// sums are in shared memory, waits for sync[0] = R, stages t and adds B·t to its 16 rows; the last tile block out
// (sync[1]) sets both counters back to 0 for the next launch. The prep and attention launches then carry no B·t.
struct I8Bt {
  const uint16_t* B[3];
  int end[3];
  int r;
  unsigned* sync;
  bool pre;    // bt_prefetch (LOWBIT_INT8X_BPRE=0: off, to price it)
  bool reset;  // the last tile block out zeroes sync (a returning atomic at every tile block's exit); parts & 256: an
               // earlier launch zeroes it instead (the decoder's preps), and tile blocks leave without waiting on one
  bool tval;   // parts & 2048 (streamed only): t is published by value, no counter (kTUnset below)
};
// parts & 2048: an earlier launch (the decoder's prep) sets every t to this bit pattern (a NaN no A row stores: a NaN t is
// stored as 0x7fffffff), the A rows store their t with no fence or count, and a tile's epilogue spins on the t values
// themselves: one L2 round trip instead of the counter's fence + atomic in the A-row block and the spin + t load in the
// tile block.
constexpr unsigned kTUnset = 0xffffffffu;
// The segment of B·t that a tile starting at row0 falls in, and its first row of B. Selects, not bt.B[seg]: a dynamic
// index into the parameter struct put it on the stack (48 B frame, run 86).
__device__ __forceinline__ int bt_seg(const I8Bt& bt, int row0) { return row0 < bt.end[0] ? 0 : row0 < bt.end[1] ? 1 : 2; }
__device__ __forceinline__ const uint16_t* bt_rows(const I8Bt& bt, int seg, int row0) {
  const uint16_t* B = seg == 0 ? bt.B[0] : seg == 1 ? bt.B[1] : bt.B[2];
  return B + (size_t)(row0 - (seg == 0 ? 0 : seg == 1 ? bt.end[0] : bt.end[1])) * bt.r;
}

// B·t for a tile's nrow ≤ 16 consecutive rows of B (bf16 [rows, r], B at the first of them) into bt[16], by the whole
// block: with r = 8·cpr (cpr a power of two ≤ 32) thread i takes the 16-byte word i of the tile's contiguous span of B
// (row i / cpr, k = 8·(i % cpr) … + 7; a load instruction covers 512 contiguous bytes), the cpr partials of a row added
// by a shuffle tree; other ranks take a thread per row. One word per thread keeps the epilogue's registers low: lora_dot's
// 16-word row buffer lifted the FIXED kernels from 61–64 to 82 registers, halving 512-thread occupancy (run 86).
// Bw: the span as 16-byte words, in shared memory when the block prefetched it (bt_prefetch), else B itself.
__device__ __forceinline__ void tile_bt(const uint16_t* __restrict__ B, const uint4* Bw, const float* ts, int r, int nrow, float* bt) {
  if (group_bt_fits(r) && r <= kBtMaxR) {
    const int cpr = r >> 3, lg = __ffs(cpr) - 1, n = nrow * cpr;
    for (int base = 0; base < 16 * cpr; base += blockDim.x) {  // the same trip count in every thread (shuffles below)
      const int i = base + threadIdx.x, c = i & (cpr - 1);
      float s = 0.f;
      if (i < n) {
        const uint4 w = Bw[i];
        const float* tk = ts + 8 * c;
        s = fmaf(__uint_as_float(w.x << 16), tk[0], s); s = fmaf(__uint_as_float(w.x & 0xffff0000u), tk[1], s);
        s = fmaf(__uint_as_float(w.y << 16), tk[2], s); s = fmaf(__uint_as_float(w.y & 0xffff0000u), tk[3], s);
        s = fmaf(__uint_as_float(w.z << 16), tk[4], s); s = fmaf(__uint_as_float(w.z & 0xffff0000u), tk[5], s);
        s = fmaf(__uint_as_float(w.w << 16), tk[6], s); s = fmaf(__uint_as_float(w.w & 0xffff0000u), tk[7], s);
      }
      for (int o = 1; o < cpr; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (i < n && c == 0) bt[i >> lg] = s;
    }
  } else if ((int)threadIdx.x < nrow) {
    const uint16_t* b = B + (size_t)threadIdx.x * r;
    float a = 0.f;
    for (int k = 0; k < r; k++) a = fmaf(__uint_as_float((uint32_t)b[k] << 16), ts[k], a);
    bt[threadIdx.x] = a;
  }
  __syncthreads();
}

// bt from the launch's B·t segments (the caller checked r's presence): 1–3 segments of rank 1–128 whose t lie within R A
// rows, their row ends rising, 16-row aligned, the last at out; and LOWBIT_INT8X_BPRE's bt.pre. cuda_int8x_gemv and the
// chain (int8x_gemv.cu).
struct Int8xGemvBt;
const char* int8x_bt(const Int8xGemvBt& in, int out, int R, I8Bt* bt);

// The streamed GEMV (int8x_stream.cu), called by cuda_int8x_gemv for parts & 512 (npart, eps, and rpb — the LoRA-A rows
// summed together, each by nks / rpb warps — as the per-tile kernel's).
const char* cuda_int8x_stream(const void* words, const uint32_t* sz, void* scratch, float* y, int out, int in, int nks,
                              bool pdl, int npart, float eps, const void* A, int R, float* t, const I8Bt& bt, int rpb);

}  // namespace lowbit
