// Causal grouped-query flash attention (FlashAttention-2 scheme) on bf16 tensor cores:
// mma.sync.m16n8k16 (bf16 in, fp32 accumulate) via inline PTX, ldmatrix for transposed operands, cp.async
// staging of K/V (forward) and Q/dO (backward) tiles in shared memory. Layouts and semantics: attention.h.
//
// Fragment layouts of m16n8k16 (g = lane/4, t = lane%4; each 32-bit register holds two bf16, the lower
// index in the low half):
//   A (16×16, row-major m×k): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B (16×8, k×n):            b0 = B[2t..2t+1][g],  b1 = B[2t+8..2t+9][g]
//   C (16×8, f32):            c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
// Two C tiles side by side (n = 16) are exactly the A fragment of the next product (P·V, Pᵀ·dO), so scores
// never leave registers.
//
// Forward: one block (4 warps) per (64-query tile, query head, batch); warp w owns query rows 16w..16w+15 and
// keeps its Q fragments in registers; K/V tiles of 64 keys stream through shared memory (K(j+1) loads while
// softmax + P·V of tile j run). Online softmax in fp32 with exp2; P is rounded to bf16 for P·V (as FA2).
//
// Backward: a pre-kernel writes delta_i = Σ_d dout·out (fp32) into a cached scratch; then one block per
// (64-key tile, kv head, batch), warp w owning keys 16w..16w+15, loops over the query heads of the group and
// the query tiles (32 rows for D = 128, else 64) at or after the key tile (Q/dO double-buffered, cp.async). Per tile it recomputes
// Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ (exact bf16 inputs, fp32 accumulate), Pᵀ = exp(S·scale − lse),
// dSᵀ = Pᵀ∘(dPᵀ − delta)·scale, and accumulates dV += Pᵀ·dO and dK += dSᵀ·Q in registers (no atomics), and
// dQ += dS·K through shared memory with fp32 float2 atomics. When (key tiles × kv heads × batch) would leave
// the GPU under-filled (GQA, short sequences), a key tile's (head, query tile) iterations are split over 2, 4, …
// blocks that write partial dK/dV to a cached scratch, summed by a small kernel (no atomics on dK/dV).
// P and dS enter the tensor cores as a bf16 pair hi + lo (lo = bf16(x − hi)), i.e. ~16 mantissa bits: the
// gradients keep fp32-level accuracy (the reference tests hold them to 1e-3 relative) at two MMAs instead of
// one for those products.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "attention.h"
#include "check.h"
#include "lowbit_cuda.h"

namespace lowbit {
namespace {

using bf16 = __nv_bfloat16;
constexpr int kThreads = 128;  // 4 warps
constexpr int kBc = 64;        // keys per tile (forward and backward)
constexpr int kBrFwd = 64;     // queries per forward tile
constexpr float kLog2e = 1.4426950408889634f;

// ---- PTX helpers ----

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// 16 bytes global → shared, bypassing L1; zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// c += a·b (m16n8k16, bf16 × bf16 → f32)
__device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t ld32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

// A fragment (16×16) of a row-major shared matrix M[m][k] (row stride ld elements), rows m0.., cols k0..
__device__ __forceinline__ void frag_a(const bf16* M, int ld, int m0, int k0, uint32_t a[4]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const bf16* p = M + (m0 + g) * ld + k0 + 2 * t;
  a[0] = ld32(p);
  a[1] = ld32(p + 8 * ld);
  a[2] = ld32(p + 8);
  a[3] = ld32(p + 8 * ld + 8);
}

// B fragment (k16×n8) where B[k][n] = M[n][k] for a row-major shared M (rows = n): e.g. Kᵀ from K[key][d].
__device__ __forceinline__ void frag_b(const bf16* M, int ld, int n0, int k0, uint32_t b[2]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const bf16* p = M + (n0 + g) * ld + k0 + 2 * t;
  b[0] = ld32(p);
  b[1] = ld32(p + 8);
}

// Two B fragments (k16 × n16 as two n8 tiles) where B[k][n] = M[k][n] for a row-major shared M (rows = k):
// e.g. V[key][d] in P·V. ldmatrix.trans: thread i gives the row address of 8×8 matrix i/8, row i%8;
// matrices: 0 = rows k0..7 cols n0..7, 1 = rows k0+8..15 cols n0.., 2 = rows k0..7 cols n0+8.., 3 = rows
// k0+8.. cols n0+8..; transposed delivery gives each thread [row 2t, 2t+1][col g] = b0/b1.
__device__ __forceinline__ void frag_b_trans_x4(const bf16* M, int ld, int k0, int n0, uint32_t b[2][2]) {
  const int lane = threadIdx.x & 31;
  const bf16* p = M + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0][0]), "=r"(b[0][1]), "=r"(b[1][0]), "=r"(b[1][1])
               : "r"(smem_addr(p)));
}

// One B fragment (k16 × n8), B[k][n] = M[k][n] (rows = k). Threads 0..15 give the addresses (16..31 repeat them).
__device__ __forceinline__ void frag_b_trans_x2(const bf16* M, int ld, int k0, int n0, uint32_t b[2]) {
  const int lane = threadIdx.x & 31;
  const bf16* p = M + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0;
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(b[0]), "=r"(b[1])
               : "r"(smem_addr(p)));
}

// A fragment (16×16) where A[m][k] = M[k][m] for a row-major shared M (rows = k): e.g. dS from dSᵀ[key][query].
// Matrices: 0 = rows k0..7 cols m0..7 (a0), 1 = rows k0..7 cols m0+8.. (a1), 2 = rows k0+8.. cols m0.. (a2),
// 3 = rows k0+8.. cols m0+8.. (a3).
__device__ __forceinline__ void frag_a_trans(const bf16* M, int ld, int m0, int k0, uint32_t a[4]) {
  const int lane = threadIdx.x & 31;
  const bf16* p = M + (k0 + (lane & 7) + ((lane >> 4) & 1) * 8) * ld + m0 + ((lane >> 3) & 1) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo_elem, float hi_elem) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo_elem, hi_elem);  // .x (low half) = first argument
  return *reinterpret_cast<uint32_t*>(&h);
}

// (x, y) ≈ hi + lo with hi = bf16(x, y), lo = bf16(residual): ~16 significant bits in two bf16 MMAs.
__device__ __forceinline__ void split_bf16(float x, float y, uint32_t& hi, uint32_t& lo) {
  __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
  const float2 hf = __bfloat1622float2(h);
  __nv_bfloat162 l = __floats2bfloat162_rn(x - hf.x, y - hf.y);
  hi = *reinterpret_cast<uint32_t*>(&h);
  lo = *reinterpret_cast<uint32_t*>(&l);
}

// Rows [r0, r0 + ROWS) of head h, batch b of a [B, T, H, D] bf16 tensor → shared tile [ROWS][D + 8]; rows ≥ T
// are zero-filled (so padding never carries NaN garbage into an MMA). Asynchronous: commit + wait by the caller.
template <int ROWS, int D>
__device__ __forceinline__ void load_tile(bf16* s, const bf16* __restrict__ gsrc, int b, int T, int H, int h, int r0) {
  constexpr int CH = D / 8;  // 16-byte chunks per row
  constexpr int LD = D + 8;
  for (int c = threadIdx.x; c < ROWS * CH; c += kThreads) {
    const int r = c / CH, cc = c % CH, t = r0 + r;
    const bool ok = t < T;
    const bf16* src = ok ? gsrc + (((int64_t)b * T + t) * H + h) * D + cc * 8 : gsrc;
    cp_async16(s + r * LD + cc * 8, src, ok);
  }
}

// ---- forward ----

template <int D>
constexpr size_t fwd_smem_bytes() { return (size_t)3 * 64 * (D + 8) * sizeof(bf16); }

template <int D>
__global__ void __launch_bounds__(kThreads) attn_fwd_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                                                             const bf16* __restrict__ v, bf16* __restrict__ out,
                                                             float* __restrict__ lse, int Tq, int Tk, int Hq, int Hkv,
                                                             float scale_log2, float scale) {
  constexpr int BR = kBrFwd, BC = kBc, LD = D + 8, KS = D / 16, NTD = D / 8, NTK = BC / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);
  bf16* sK = sQ + BR * LD;
  bf16* sV = sK + BC * LD;

  const int qt = gridDim.x - 1 - blockIdx.x;  // heaviest (last) query tiles first
  const int h = blockIdx.y, b = blockIdx.z;
  const int hk = h / (Hq / Hkv), off = Tk - Tq;
  const int q0 = qt * BR;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int q_last = min(q0 + BR, Tq) - 1;
  const int n_kt = min((Tk + BC - 1) / BC, (q_last + off) / BC + 1);
  const int row0 = q0 + warp * 16 + g;  // this thread's rows: row0 and row0 + 8

  load_tile<BR, D>(sQ, q, b, Tq, Hq, h, q0);
  load_tile<BC, D>(sK, k, b, Tk, Hkv, hk, 0);
  cp_async_commit();
  load_tile<BC, D>(sV, v, b, Tk, Hkv, hk, 0);
  cp_async_commit();

  float o[NTD][4];
#pragma unroll
  for (int i = 0; i < NTD; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  uint32_t qa[KS][4];

  for (int j = 0; j < n_kt; j++) {
    cp_async_wait<1>();  // Q and K(j) landed (V(j) may be in flight)
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < KS; kk++) frag_a(sQ, LD, warp * 16, kk * 16, qa[kk]);
    }
    float s[NTK][4];
#pragma unroll
    for (int nt = 0; nt < NTK; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
#pragma unroll
      for (int nt = 0; nt < NTK; nt++) {
        uint32_t kb[2];
        frag_b(sK, LD, nt * 8, kk * 16, kb);
        mma(s[nt], qa[kk], kb);
      }
    }
    __syncthreads();  // every warp is done with sK: stream in the next K tile
    if (j + 1 < n_kt) load_tile<BC, D>(sK, k, b, Tk, Hkv, hk, (j + 1) * BC);
    cp_async_commit();

    const int k0 = j * BC;
    if (k0 + BC > Tk || k0 + BC - 1 > q0 + off) {  // tile crosses the diagonal or the end of the keys
#pragma unroll
      for (int nt = 0; nt < NTK; nt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int key = k0 + nt * 8 + 2 * tq + (e & 1), row = row0 + (e >> 1) * 8;
          if (key >= Tk || key > row + off) s[nt][e] = -INFINITY;
        }
      }
    }
    // online softmax (fp32, base 2); rows row0 (r = 0: c0, c1) and row0 + 8 (r = 1: c2, c3)
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < NTK; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mnew = fmaxf(m[r], mx);
      const float base = mnew == -INFINITY ? 0.f : mnew * scale_log2;  // all masked so far: p = 0, no NaN
      const float alpha = exp2f(m[r] * scale_log2 - base);             // 0 when m was -inf
      m[r] = mnew;
      l[r] *= alpha;
#pragma unroll
      for (int nt = 0; nt < NTD; nt++) {
        o[nt][2 * r] *= alpha;
        o[nt][2 * r + 1] *= alpha;
      }
#pragma unroll
      for (int nt = 0; nt < NTK; nt++) {
#pragma unroll
        for (int e = 2 * r; e < 2 * r + 2; e++) {
          const float p = exp2f(fmaf(s[nt][e], scale_log2, -base));
          s[nt][e] = p;
          l[r] += p;
        }
      }
    }

    cp_async_wait<1>();  // V(j) landed (K(j+1) may be in flight)
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < BC / 16; ks++) {
      uint32_t pa[4];
      pa[0] = pack_bf16(s[2 * ks][0], s[2 * ks][1]);
      pa[1] = pack_bf16(s[2 * ks][2], s[2 * ks][3]);
      pa[2] = pack_bf16(s[2 * ks + 1][0], s[2 * ks + 1][1]);
      pa[3] = pack_bf16(s[2 * ks + 1][2], s[2 * ks + 1][3]);
#pragma unroll
      for (int nt = 0; nt < NTD; nt += 2) {
        uint32_t vb[2][2];
        frag_b_trans_x4(sV, LD, ks * 16, nt * 8, vb);
        mma(o[nt], pa, vb[0]);
        mma(o[nt + 1], pa, vb[1]);
      }
    }
    __syncthreads();  // every warp is done with sV: stream in the next V tile
    if (j + 1 < n_kt) load_tile<BC, D>(sV, v, b, Tk, Hkv, hk, (j + 1) * BC);
    cp_async_commit();
  }
  cp_async_wait<0>();

#pragma unroll
  for (int r = 0; r < 2; r++) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int row = row0 + r * 8;
    if (row >= Tq) continue;
    const float inv = 1.f / l[r];
    bf16* po = out + (((int64_t)b * Tq + row) * Hq + h) * D + 2 * tq;
#pragma unroll
    for (int nt = 0; nt < NTD; nt++)
      *reinterpret_cast<uint32_t*>(po + nt * 8) = pack_bf16(o[nt][2 * r] * inv, o[nt][2 * r + 1] * inv);
    if (lse && tq == 0) lse[((int64_t)b * Hq + h) * Tq + row] = m[r] * scale + logf(l[r]);
  }
}

// ---- backward ----

// delta[b, h, i] = Σ_d dout·out, one warp per (b, i, h) row.
__global__ void attn_delta_kernel(const bf16* __restrict__ dout, const bf16* __restrict__ out,
                                  float* __restrict__ delta, int64_t rows, int Tq, int Hq, int D) {
  const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const bf16* po = out + row * D;
  const bf16* pd = dout + row * D;
  float s = 0.f;
  for (int d = lane; d < D; d += 32) s += __bfloat162float(po[d]) * __bfloat162float(pd[d]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) {
    const int h = (int)(row % Hq);
    const int64_t bi = row / Hq;
    const int i = (int)(bi % Tq);
    const int64_t b = bi / Tq;
    delta[(b * Hq + h) * Tq + i] = s;
  }
}

// Query rows per backward tile. D = 128 keeps 2·64 dK/dV accumulators per thread, so 32 rows keep the Sᵀ/dPᵀ
// tiles small enough to avoid spills (ptxas, sm_90: 244 registers, none spilled).
template <int D>
__host__ __device__ constexpr int bwd_br() { return D == 128 ? 32 : 64; }

template <int D>
constexpr size_t bwd_smem_bytes() {
  constexpr int BR = bwd_br<D>();
  return (size_t)(2 * kBc * (D + 8) + 4 * BR * (D + 8) + 2 * kBc * (BR + 8)) * sizeof(bf16) +
         (size_t)4 * BR * sizeof(float);
}

template <int D>
__global__ void __launch_bounds__(kThreads) attn_bwd_kernel(
    const bf16* __restrict__ dout, const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
    const float* __restrict__ lse, const float* __restrict__ delta, float* __restrict__ dq, float* __restrict__ dk,
    float* __restrict__ dv, int Tq, int Tk, int Hq, int Hkv, float scale_log2, float scale, int hsplit,
    float* __restrict__ part_dk, float* __restrict__ part_dv, int64_t nk) {
  constexpr int BR = bwd_br<D>(), BC = kBc, LD = D + 8, LDS = BR + 8;
  constexpr int KS = D / 16, NTQ = BR / 8, NTD = D / 8, MT = BR / 16, NTW = NTD / 4;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sK = reinterpret_cast<bf16*>(smem_raw);
  bf16* sV = sK + BC * LD;
  bf16* sQ = sV + BC * LD;        // [2][BR][LD]
  bf16* sdO = sQ + 2 * BR * LD;   // [2][BR][LD]
  bf16* sdSh = sdO + 2 * BR * LD; // [BC][LDS]  dSᵀ (key-major), high bf16 part
  bf16* sdSl = sdSh + BC * LDS;   // [BC][LDS]  low part
  float* sL = reinterpret_cast<float*>(sdSl + BC * LDS);  // [2][BR] lse·log2(e)
  float* sDelta = sL + 2 * BR;                            // [2][BR]

  // blockIdx.y = kv head · hsplit + part. The (query head, query tile) iterations of this key tile are split into
  // `hsplit` contiguous ranges, one per block; with hsplit > 1 each writes its partial dK/dV to part_dk/part_dv
  // [hsplit][B, Tk, Hkv, D], summed by attn_sum_parts_kernel.
  const int kt = blockIdx.x, hk = blockIdx.y / hsplit, part = blockIdx.y % hsplit, b = blockIdx.z;
  const int group = Hq / Hkv, off = Tk - Tq, k0 = kt * BC;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  const int kw = warp * 16;  // this warp's key rows in the tile
  // query i sees key j iff j <= i + off: the first query tile touching this key tile holds query k0 - off.
  const int nqt = (Tq + BR - 1) / BR;
  const int qt_begin = max(0, k0 - off) / BR;
  const int nq = nqt - qt_begin;
  const int n_all = group * nq;  // iteration gi: query head hk·group + gi / nq, query tile qt_begin + gi % nq
  const int it0 = (int)((int64_t)n_all * part / hsplit);
  const int n_it = (int)((int64_t)n_all * (part + 1) / hsplit) - it0;

  auto issue = [&](int it) {
    const int gi = it0 + it, h = hk * group + gi / nq, q0 = (qt_begin + gi % nq) * BR, buf = it & 1;
    load_tile<BR, D>(sQ + buf * BR * LD, q, b, Tq, Hq, h, q0);
    load_tile<BR, D>(sdO + buf * BR * LD, dout, b, Tq, Hq, h, q0);
    for (int r = threadIdx.x; r < BR; r += kThreads) {
      const int i = q0 + r;
      const bool ok = i < Tq;
      const int64_t idx = ((int64_t)b * Hq + h) * Tq + i;
      sL[buf * BR + r] = ok ? lse[idx] * kLog2e : 0.f;
      sDelta[buf * BR + r] = ok ? delta[idx] : 0.f;
    }
  };

  load_tile<BC, D>(sK, k, b, Tk, Hkv, hk, k0);
  load_tile<BC, D>(sV, v, b, Tk, Hkv, hk, k0);
  if (n_it > 0) issue(0);
  cp_async_commit();

  float dk_acc[NTD][4], dv_acc[NTD][4];
#pragma unroll
  for (int i = 0; i < NTD; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) dk_acc[i][e] = dv_acc[i][e] = 0.f;

  for (int it = 0; it < n_it; it++) {
    if (it + 1 < n_it) issue(it + 1);  // into the other buffer, last read in iteration it-1
    cp_async_commit();
    cp_async_wait<1>();  // K, V and tile it landed
    __syncthreads();

    const int gi = it0 + it, h = hk * group + gi / nq, q0 = (qt_begin + gi % nq) * BR, buf = it & 1;
    const bf16* Qs = sQ + buf * BR * LD;
    const bf16* dOs = sdO + buf * BR * LD;
    const float* Ls = sL + buf * BR;
    const float* Dls = sDelta + buf * BR;

    // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ: this warp's 16 keys × BR queries
    float st[NTQ][4], dpt[NTQ][4];
#pragma unroll
    for (int i = 0; i < NTQ; i++)
#pragma unroll
      for (int e = 0; e < 4; e++) st[i][e] = dpt[i][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
      uint32_t ka[4], va[4];
      frag_a(sK, LD, kw, kk * 16, ka);
      frag_a(sV, LD, kw, kk * 16, va);
#pragma unroll
      for (int nt = 0; nt < NTQ; nt++) {
        uint32_t qb[2], ob[2];
        frag_b(Qs, LD, nt * 8, kk * 16, qb);
        frag_b(dOs, LD, nt * 8, kk * 16, ob);
        mma(st[nt], ka, qb);
        mma(dpt[nt], va, ob);
      }
    }
    // Pᵀ = exp(S·scale − lse) (0 where masked), dSᵀ = Pᵀ∘(dPᵀ − delta)·scale
#pragma unroll
    for (int nt = 0; nt < NTQ; nt++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int key = k0 + kw + g + (e >> 1) * 8;
        const int qi_loc = nt * 8 + 2 * tq + (e & 1), qi = q0 + qi_loc;
        const bool ok = key < Tk && qi < Tq && key <= qi + off;
        const float p = ok ? exp2f(fmaf(st[nt][e], scale_log2, -Ls[qi_loc])) : 0.f;
        st[nt][e] = p;
        dpt[nt][e] = p * (dpt[nt][e] - Dls[qi_loc]) * scale;
      }
    }
    // dV += Pᵀ·dO, dK += dSᵀ·Q (k = queries); hi + lo bf16 parts of P and dS
#pragma unroll
    for (int ks = 0; ks < MT; ks++) {
      uint32_t ph[4], pl[4], sh[4], sl[4];
      split_bf16(st[2 * ks][0], st[2 * ks][1], ph[0], pl[0]);
      split_bf16(st[2 * ks][2], st[2 * ks][3], ph[1], pl[1]);
      split_bf16(st[2 * ks + 1][0], st[2 * ks + 1][1], ph[2], pl[2]);
      split_bf16(st[2 * ks + 1][2], st[2 * ks + 1][3], ph[3], pl[3]);
      split_bf16(dpt[2 * ks][0], dpt[2 * ks][1], sh[0], sl[0]);
      split_bf16(dpt[2 * ks][2], dpt[2 * ks][3], sh[1], sl[1]);
      split_bf16(dpt[2 * ks + 1][0], dpt[2 * ks + 1][1], sh[2], sl[2]);
      split_bf16(dpt[2 * ks + 1][2], dpt[2 * ks + 1][3], sh[3], sl[3]);
#pragma unroll
      for (int nt = 0; nt < NTD; nt += 2) {
        uint32_t ob[2][2], qb[2][2];
        frag_b_trans_x4(dOs, LD, ks * 16, nt * 8, ob);
        frag_b_trans_x4(Qs, LD, ks * 16, nt * 8, qb);
        mma(dv_acc[nt], ph, ob[0]);
        mma(dv_acc[nt], pl, ob[0]);
        mma(dv_acc[nt + 1], ph, ob[1]);
        mma(dv_acc[nt + 1], pl, ob[1]);
        mma(dk_acc[nt], sh, qb[0]);
        mma(dk_acc[nt], sl, qb[0]);
        mma(dk_acc[nt + 1], sh, qb[1]);
        mma(dk_acc[nt + 1], sl, qb[1]);
      }
    }
    // dSᵀ → shared (key-major), for dQ = dS·K across the whole key tile
#pragma unroll
    for (int nt = 0; nt < NTQ; nt++) {
#pragma unroll
      for (int r = 0; r < 2; r++) {
        uint32_t hi, lo;
        split_bf16(dpt[nt][2 * r], dpt[nt][2 * r + 1], hi, lo);
        const int idx = (kw + g + r * 8) * LDS + nt * 8 + 2 * tq;
        *reinterpret_cast<uint32_t*>(sdSh + idx) = hi;
        *reinterpret_cast<uint32_t*>(sdSl + idx) = lo;
      }
    }
    __syncthreads();
    // dQ[BR × D] += dS[BR × BC]·K[BC × D]: warp w takes the d columns [w·D/4, (w+1)·D/4)
    float dq_acc[MT][NTW][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int j = 0; j < NTW; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) dq_acc[mt][j][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < BC / 16; ks++) {
      uint32_t kb[NTW][2];
#pragma unroll
      for (int j = 0; j < NTW; j++) frag_b_trans_x2(sK, LD, ks * 16, (warp * NTW + j) * 8, kb[j]);
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        uint32_t ah[4], al[4];
        frag_a_trans(sdSh, LDS, mt * 16, ks * 16, ah);
        frag_a_trans(sdSl, LDS, mt * 16, ks * 16, al);
#pragma unroll
        for (int j = 0; j < NTW; j++) {
          mma(dq_acc[mt][j], ah, kb[j]);
          mma(dq_acc[mt][j], al, kb[j]);
        }
      }
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
      for (int r = 0; r < 2; r++) {
        const int qi = q0 + mt * 16 + g + r * 8;
        if (qi >= Tq) continue;
        float* pq = dq + (((int64_t)b * Tq + qi) * Hq + h) * D + warp * NTW * 8 + 2 * tq;
#pragma unroll
        for (int j = 0; j < NTW; j++)
          atomicAdd(reinterpret_cast<float2*>(pq + j * 8), make_float2(dq_acc[mt][j][2 * r], dq_acc[mt][j][2 * r + 1]));
      }
    }
    __syncthreads();  // tile buffers and sdS are rewritten next iteration
  }
  cp_async_wait<0>();

  float* odk = hsplit == 1 ? dk : part_dk + part * nk;
  float* odv = hsplit == 1 ? dv : part_dv + part * nk;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int key = k0 + kw + g + r * 8;
    if (key >= Tk) continue;
    const int64_t base = (((int64_t)b * Tk + key) * Hkv + hk) * D + 2 * tq;
#pragma unroll
    for (int nt = 0; nt < NTD; nt++) {
      *reinterpret_cast<float2*>(odk + base + nt * 8) = make_float2(dk_acc[nt][2 * r], dk_acc[nt][2 * r + 1]);
      *reinterpret_cast<float2*>(odv + base + nt * 8) = make_float2(dv_acc[nt][2 * r], dv_acc[nt][2 * r + 1]);
    }
  }
}

// dk[i] = Σ_p part_dk[p·nk + i] (and dv), float2-wise; nk is even (D is).
__global__ void attn_sum_parts_kernel(const float* __restrict__ part_dk, const float* __restrict__ part_dv,
                                      float* __restrict__ dk, float* __restrict__ dv, int hsplit, int64_t nk) {
  const int64_t n2 = nk / 2;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n2; i += (int64_t)gridDim.x * blockDim.x) {
    float2 a = reinterpret_cast<const float2*>(part_dk)[i], c = reinterpret_cast<const float2*>(part_dv)[i];
    for (int p = 1; p < hsplit; p++) {
      const float2 x = reinterpret_cast<const float2*>(part_dk + p * nk)[i];
      const float2 y = reinterpret_cast<const float2*>(part_dv + p * nk)[i];
      a.x += x.x; a.y += x.y;
      c.x += y.x; c.y += y.y;
    }
    reinterpret_cast<float2*>(dk)[i] = a;
    reinterpret_cast<float2*>(dv)[i] = c;
  }
}

// ---- host side ----

const char* fmt_err(const char* fmt, long long a, long long b = 0) {
  static thread_local char buf[256];
  std::snprintf(buf, sizeof buf, fmt, a, b);
  return buf;
}

bool misaligned(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) != 0; }

template <int D>
const char* fwd_impl(const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse, int B, int Tq, int Tk,
                     int Hq, int Hkv) {
  constexpr size_t smem = fwd_smem_bytes<D>();
  static bool attr_set = false;
  if (!attr_set) {
    LB_CUDA(cudaFuncSetAttribute(attn_fwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attr_set = true;
  }
  const float scale = 1.f / std::sqrt((float)D);
  const dim3 grid((Tq + kBrFwd - 1) / kBrFwd, Hq, B);
  attn_fwd_kernel<D><<<grid, kThreads, smem, 0>>>(q, k, v, out, lse, Tq, Tk, Hq, Hkv, scale * kLog2e, scale);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

template <int D>
const char* bwd_impl(const bf16* dout, const bf16* q, const bf16* k, const bf16* v, const float* lse,
                     const float* delta, float* dq, float* dk, float* dv, int B, int Tq, int Tk, int Hq, int Hkv,
                     int hsplit, float* part_dk, float* part_dv, int64_t nk) {
  constexpr size_t smem = bwd_smem_bytes<D>();
  static bool attr_set = false;
  if (!attr_set) {
    LB_CUDA(cudaFuncSetAttribute(attn_bwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attr_set = true;
  }
  const float scale = 1.f / std::sqrt((float)D);
  const dim3 grid((Tk + kBc - 1) / kBc, Hkv * hsplit, B);
  attn_bwd_kernel<D><<<grid, kThreads, smem, 0>>>(dout, q, k, v, lse, delta, dq, dk, dv, Tq, Tk, Hq, Hkv,
                                                  scale * kLog2e, scale, hsplit, part_dk, part_dv, nk);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

// Device scratch cached across calls: allocated at first need, grown when a call needs more (after a device
// sync, since a queued backward may still read the old one), never shrunk. One stream, one caller at a time.
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;  // floats
};
std::mutex g_scratch_mu;
Scratch g_delta, g_parts;

const char* scratch(Scratch& s, size_t n, float** out) {
  std::lock_guard<std::mutex> lk(g_scratch_mu);
  if (n > s.cap) {
    if (s.p) {
      LB_CUDA(cudaDeviceSynchronize());
      LB_CUDA(cudaFree(s.p));
      s.p = nullptr;
      s.cap = 0;
    }
    LB_CUDA(cudaMalloc(reinterpret_cast<void**>(&s.p), n * sizeof(float)));
    s.cap = n;
  }
  *out = s.p;
  return nullptr;
}

int sm_count() {
  static int n = 0;
  if (n <= 0) {
    int dev = 0, c = 0;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess)
      n = c;
    if (n <= 0) n = 132;
  }
  return n;
}

// How many blocks share the (query head, query tile) iterations of one key tile in the backward. Their partial
// dK/dV are summed by a small kernel afterwards (no atomics: deterministic), which costs 2·hsplit·|dK| of scratch
// traffic, so only under-filled grids are split: the split doubles, up to the GQA group size, while the grid has
// fewer than 4 blocks per SM. LOWBIT_ATTN_BWD_SPLIT=n (1..16) forces n (tuning).
int choose_hsplit(int64_t blocks, int group, int Hkv) {
  static int forced = -1;
  if (forced < 0) {
    const char* e = std::getenv("LOWBIT_ATTN_BWD_SPLIT");
    const int v = e ? std::atoi(e) : 0;
    forced = v >= 1 && v <= 16 ? v : 0;
  }
  int s = 1;
  if (forced) s = forced;
  else
    while (2 * s <= group && blocks * s < 4 * (int64_t)sm_count()) s *= 2;
  while (s > 1 && (int64_t)Hkv * s > 65535) s /= 2;  // gridDim.y
  return s;
}

}  // namespace

const char* cuda_attn_check(int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t D) {
  if (D != 32 && D != 64 && D != 128)
    return fmt_err("cuda attention: head dim D=%lld is not supported (D must be 32, 64 or 128)", (long long)D);
  if (Hkv <= 0 || Hq <= 0 || Hq % Hkv != 0)
    return fmt_err("cuda attention: Hq=%lld query heads are not a positive multiple of Hkv=%lld kv heads",
                   (long long)Hq, (long long)Hkv);
  if (Tk < Tq) return fmt_err("cuda attention: Tk=%lld < Tq=%lld", (long long)Tk, (long long)Tq);
  if (B > 65535 || Hq > 65535) return fmt_err("cuda attention: B=%lld or Hq=%lld above 65535", (long long)B, (long long)Hq);
  if (B * Tk * Hq * D >= ((int64_t)1 << 40)) return "cuda attention: tensors too large";
  return nullptr;
}

const char* cuda_attn_fwd(const void* q, const void* k, const void* v, void* out, float* lse, int B, int Tq, int Tk,
                          int Hq, int Hkv, int D) {
  if (const char* e = cuda_attn_check(B, Tq, Tk, Hq, Hkv, D)) return e;
  if (B == 0 || Tq == 0) return nullptr;
  if (misaligned(q, 16) || misaligned(k, 16) || misaligned(v, 16) || misaligned(out, 16))
    return "cuda attention: q, k, v and out must be 16-byte aligned";
  const bf16 *Q = static_cast<const bf16*>(q), *K = static_cast<const bf16*>(k), *V = static_cast<const bf16*>(v);
  bf16* O = static_cast<bf16*>(out);
  switch (D) {
    case 32: return fwd_impl<32>(Q, K, V, O, lse, B, Tq, Tk, Hq, Hkv);
    case 64: return fwd_impl<64>(Q, K, V, O, lse, B, Tq, Tk, Hq, Hkv);
    default: return fwd_impl<128>(Q, K, V, O, lse, B, Tq, Tk, Hq, Hkv);
  }
}

const char* cuda_attn_bwd(const void* dout, const void* q, const void* k, const void* v, const void* out,
                          const float* lse, float* dq, float* dk, float* dv, int B, int Tq, int Tk, int Hq, int Hkv,
                          int D) {
  if (const char* e = cuda_attn_check(B, Tq, Tk, Hq, Hkv, D)) return e;
  if (B == 0 || Tk == 0) return nullptr;
  if (misaligned(dout, 16) || misaligned(q, 16) || misaligned(k, 16) || misaligned(v, 16) || misaligned(out, 16))
    return "cuda attention backward: dout, q, k, v and out must be 16-byte aligned";
  if (misaligned(dq, 8) || misaligned(dk, 8) || misaligned(dv, 8) || misaligned(lse, 4))
    return "cuda attention backward: dq, dk, dv must be 8-byte aligned (lse 4-byte)";
  const size_t nq = (size_t)B * Tq * Hq * D;
  if (Tq == 0) {  // no queries: every key gradient is zero
    const size_t nk = (size_t)B * Tk * Hkv * D * sizeof(float);
    LB_CUDA(cudaMemsetAsync(dk, 0, nk, 0));
    LB_CUDA(cudaMemsetAsync(dv, 0, nk, 0));
    return nullptr;
  }
  float* delta = nullptr;
  const size_t rows = (size_t)B * Tq * Hq;
  if (const char* e = scratch(g_delta, rows, &delta)) return e;
  const int64_t nk = (int64_t)B * Tk * Hkv * D;
  const int hsplit = choose_hsplit((int64_t)((Tk + kBc - 1) / kBc) * Hkv * B, Hq / Hkv, Hkv);
  float *part_dk = nullptr, *part_dv = nullptr;
  if (hsplit > 1) {
    float* parts = nullptr;
    if (const char* e = scratch(g_parts, (size_t)2 * hsplit * nk, &parts)) return e;
    part_dk = parts;
    part_dv = parts + (size_t)hsplit * nk;
  }
  LB_CUDA(cudaMemsetAsync(dq, 0, nq * sizeof(float), 0));
  const bf16 *dO = static_cast<const bf16*>(dout), *Q = static_cast<const bf16*>(q), *K = static_cast<const bf16*>(k),
             *V = static_cast<const bf16*>(v), *O = static_cast<const bf16*>(out);
  {
    const int warps = 8;
    const unsigned blocks = (unsigned)((rows + warps - 1) / warps);
    attn_delta_kernel<<<blocks, warps * 32, 0, 0>>>(dO, O, delta, (int64_t)rows, Tq, Hq, D);
    LB_CUDA(cudaGetLastError());
  }
  const char* e;
  switch (D) {
    case 32: e = bwd_impl<32>(dO, Q, K, V, lse, delta, dq, dk, dv, B, Tq, Tk, Hq, Hkv, hsplit, part_dk, part_dv, nk); break;
    case 64: e = bwd_impl<64>(dO, Q, K, V, lse, delta, dq, dk, dv, B, Tq, Tk, Hq, Hkv, hsplit, part_dk, part_dv, nk); break;
    default: e = bwd_impl<128>(dO, Q, K, V, lse, delta, dq, dk, dv, B, Tq, Tk, Hq, Hkv, hsplit, part_dk, part_dv, nk);
  }
  if (e || hsplit == 1) return e;
  const int64_t blocks = std::min<int64_t>((nk / 2 + 255) / 256, (int64_t)sm_count() * 8);
  attn_sum_parts_kernel<<<(unsigned)blocks, 256, 0, 0>>>(part_dk, part_dv, dk, dv, hsplit, nk);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

namespace {

// Device buffers and events of one benchmark, released on every return path.
struct BenchBufs {
  std::vector<void*> ptrs;
  std::vector<cudaEvent_t> ev;
  ~BenchBufs() {
    cudaDeviceSynchronize();
    for (auto e : ev) cudaEventDestroy(e);
    for (void* p : ptrs) cudaFree(p);
  }
  const char* alloc(size_t bytes, void** p) {
    LB_CUDA(cudaMalloc(p, bytes));
    ptrs.push_back(*p);
    return nullptr;
  }
};

template <class F>
const char* time_median(BenchBufs& bb, int reps, F&& call, double* ms) {
  for (int i = 0; i < 2; i++)
    if (const char* e = call()) return e;
  const size_t first = bb.ev.size();
  for (int i = 0; i < reps + 1; i++) {
    cudaEvent_t e;
    LB_CUDA(cudaEventCreate(&e));
    bb.ev.push_back(e);
  }
  LB_CUDA(cudaEventRecord(bb.ev[first], 0));
  for (int i = 0; i < reps; i++) {
    if (const char* e = call()) return e;
    LB_CUDA(cudaEventRecord(bb.ev[first + i + 1], 0));
  }
  LB_CUDA(cudaEventSynchronize(bb.ev[first + reps]));
  LB_CUDA(cudaGetLastError());
  std::vector<float> t(reps);
  for (int i = 0; i < reps; i++) LB_CUDA(cudaEventElapsedTime(&t[i], bb.ev[first + i], bb.ev[first + i + 1]));
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  *ms = t[reps / 2];
  return nullptr;
}

}  // namespace

const char* cuda_bench_attention(int B, int T, int Hq, int Hkv, int D, int reps, double* fwd_ms, double* bwd_ms) {
  if (const char* e = cuda_attn_check(B, T, T, Hq, Hkv, D)) return e;
  if (B <= 0 || T <= 0) return "cuda attention bench: B and T must be positive";
  if (reps < 1) reps = 1;
  const size_t nq = (size_t)B * T * Hq * D, nk = (size_t)B * T * Hkv * D, nl = (size_t)B * Hq * T;
  BenchBufs bb;
  void *q, *k, *v, *out, *dout, *lse, *dq, *dk, *dv;
  if (const char* e = bb.alloc(nq * 2, &q)) return e;
  if (const char* e = bb.alloc(nk * 2, &k)) return e;
  if (const char* e = bb.alloc(nk * 2, &v)) return e;
  if (const char* e = bb.alloc(nq * 2, &out)) return e;
  if (const char* e = bb.alloc(nq * 2, &dout)) return e;
  if (const char* e = bb.alloc(nl * 4, &lse)) return e;
  if (const char* e = bb.alloc(nq * 4, &dq)) return e;
  if (const char* e = bb.alloc(nk * 4, &dk)) return e;
  if (const char* e = bb.alloc(nk * 4, &dv)) return e;
  if (const char* e = cuda_fill_uniform_bf16(q, nq, 1, -1.f, 1.f)) return e;
  if (const char* e = cuda_fill_uniform_bf16(k, nk, 2, -1.f, 1.f)) return e;
  if (const char* e = cuda_fill_uniform_bf16(v, nk, 3, -1.f, 1.f)) return e;
  if (const char* e = cuda_fill_uniform_bf16(dout, nq, 4, -1.f, 1.f)) return e;
  float* L = static_cast<float*>(lse);
  auto fwd = [&]() { return cuda_attn_fwd(q, k, v, out, L, B, T, T, Hq, Hkv, D); };
  auto bwd = [&]() {
    return cuda_attn_bwd(dout, q, k, v, out, L, static_cast<float*>(dq), static_cast<float*>(dk),
                         static_cast<float*>(dv), B, T, T, Hq, Hkv, D);
  };
  if (const char* e = time_median(bb, reps, fwd, fwd_ms)) return e;
  if (const char* e = time_median(bb, reps, bwd, bwd_ms)) return e;
  LB_CUDA(cudaDeviceSynchronize());
  return nullptr;
}

}  // namespace lowbit
