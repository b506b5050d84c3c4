// The streamed int8-x GEMV (decode kernel 8's GEMV with parts & 512): the per-tile kernel's math (int8x_body.cuh) fed by
// a bulk-copy ring instead of per-warp loads. Why: the per-tile kernel launches a block per 16-row tile, 3–4 waves of
// short blocks, each paying a memory round trip or two of its own before its first MMA, and a launch can only load its
// first block of 128 inputs per warp before its griddepcontrol.wait. Here a launch is one block per SM that owns a run
// of whole tiles: it issues its ring's stages (S tiles' codes, scale|zero words and B rows; up to ~160 KB) and its LoRA-A
// rows BEFORE the wait for x, so with PDL the weights stream while the previous launches (the GEMV before, the prep,
// the attention) still run, and the ring stays full across its tiles. Measured slower than the per-tile kernel
// (docs/cuda.md, runs 92–94): opt-in.
// Each warp takes the same K slices as the per-tile kernel with nks warps (blocks blk ≡ warp mod nks, ascending), the
// slices are added in warp order and B·t last: the same bits as int8x_gemv_kernel<FIXED> with that split K.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"
#include "decode_attn_body.cuh"
#include "int8x_body.cuh"
#include "lowbit_cuda.h"
#include "mbarrier.cuh"
#include "pdl.h"

namespace lowbit {
namespace {

constexpr int kChunkBlks = 32;                // a stage: ≤ 32 blocks of 128 inputs (4096 inputs) of one tile
constexpr int kWordBytes = kChunkBlks * 512;  // the stage's codes: [blk][lane][4] u32
constexpr int kSzBytes = kChunkBlks * 128;    // its scale|zero words, tile-blocked: [blk][row 0..15][2 groups] u32
constexpr int kMaxStages = 8;

struct I8Stream {
  const uint4* words;
  const uint32_t* sz;  // tile-blocked (cuda_int8x_tile_sz): [tile][blk][16 rows][2 groups], so a stage's are one copy
  const unsigned char* xs;  // the prep's scratch: x̂ [in] | a [ng] | Σx̂ [ng] | Σx² partials
  int npart;
  float eps;
  float* y;
  int out, in;
  const uint16_t* A;  // LoRA-A rows (bf16 [R, in]); row j by block j mod grid
  int R;
  float* tout;
  int tpb;         // tiles per block (block b: tiles [b·tpb, (b+1)·tpb))
  int S;           // ring stages
  int nA;          // A rows per block at most
  int stageBytes;  // kWordBytes + kSzBytes (+ 32·r for the tile's B rows)
  int rpb;         // A rows summed together, each by NKS / rpb warps (the per-tile kernel's grouping: the same bits)
};

// Chunk c of a tile (≤ 32 blocks of 128 inputs; nch chunks a row of in = 128·nblk inputs) into stage st completing on
// b, issued by one warp: lane 0 announces the bytes, then three bulk copies from three lanes: the codes, the scale|zero
// words and (the tile's last chunk, bpre) its rows of B. Few and large: the copy engine takes a warp's copies one at a
// time (the first build copied the 16 scale|zero rows one by one, 17 copies a stage, and ran 2× slower than the per-tile
// kernel, run 92). The streamed GEMV's and the chain's rings both fill through it.
__device__ __forceinline__ void copy_chunk(const uint4* words, const uint32_t* sz, const I8Bt& bt, bool bpre, unsigned char* st,
                                           uint64_t* b, int tile, int c, int nblk, int nch, int lane) {
  const int cb = min(kChunkBlks, nblk - kChunkBlks * c);
  const uint16_t* Bt = bpre && c == nch - 1 ? bt_rows(bt, bt_seg(bt, tile * 16), tile * 16) : nullptr;
  if (lane == 0) mbar_expect_tx(b, cb * 512 + cb * 128 + (Bt ? 32 * bt.r : 0));
  __syncwarp();
  const size_t b0 = (size_t)tile * nblk + kChunkBlks * c;  // the stage's first block of 128 inputs
  if (lane == 0)
    bulk_g2s(mbar_smem(st), words + b0 * 32, cb * 512, b);
  else if (lane == 1)
    bulk_g2s(mbar_smem(st + kWordBytes), sz + b0 * 32, cb * 128, b);
  else if (lane == 2 && Bt)
    bulk_g2s(mbar_smem(st + kWordBytes + kSzBytes), Bt, 32 * bt.r, b);
}
// Stage i of the streamed GEMV's item sequence: tile tile0 + i / nch, chunk i % nch.
__device__ __forceinline__ void issue_stage(const I8Stream& p, const I8Bt& bt, bool bpre, unsigned char* stg, uint64_t* bar,
                                            int tile0, int i, int nch, int lane) {
  const int s = i % p.S;
  copy_chunk(p.words, p.sz, bt, bpre, stg + (size_t)s * p.stageBytes, &bar[s], tile0 + i / nch, i % nch, p.in / 128, nch, lane);
}
// The block's LoRA-A rows blockIdx.x + k·gridDim.x (k < nA, below R), and their copy (in inputs, bf16) into dst
// completing on b, by one warp.
__device__ __forceinline__ int block_arows(int nA, int R) {
  int m = 0;
  while (m < nA && (int)blockIdx.x + m * (int)gridDim.x < R) m++;
  return m;
}
__device__ __forceinline__ void copy_arows(const uint16_t* A, int in, unsigned char* dst, uint64_t* b, int myA, int lane) {
  if (lane == 0) mbar_expect_tx(b, myA * in * 2);
  __syncwarp();
  for (int k = lane; k < myA; k += 32) bulk_g2s(mbar_smem(dst + (size_t)k * in * 2), A + (size_t)(blockIdx.x + k * gridDim.x) * in, in * 2, b);
}

// One ring stage of a tile (cb ≤ 32 blocks of 128 inputs from block blk0 of the row; codes at st, scale|zero words
// after them) folded into lane (g, t)'s rows g and g + 8: warp w takes blocks w, w + NKS, … — the per-tile kernel's K
// slices, in its order, so the same bits. Shared by the streamed GEMV and the chain.
template <int NKS>
__device__ __forceinline__ void fold_stage(const unsigned char* st, const uint32_t* xw, const float2* a2, const int2* s2, int blk0,
                                           int cb, int warp, int lane, float& y0, float& y1) {
  const int g = lane >> 2, t = lane & 3;
  const uint4* ws = reinterpret_cast<const uint4*>(st);
  const uint32_t* szs = reinterpret_cast<const uint32_t*>(st + kWordBytes);
  struct Blk {
    uint4 w;
    uint2 m0, m1;
    uint32_t x[8];
    float2 a;
    int2 s;
  };
  auto load = [&](Blk& q, int jb) {  // block jb of the stage (blk of the tile): the lane's operands from shared memory
    const int blk = blk0 + jb;
    q.w = ws[jb * 32 + lane];
    q.m0 = *reinterpret_cast<const uint2*>(szs + 32 * jb + 2 * g);  // rows g, g + 8: banks 2g, 2g + 1
    q.m1 = *reinterpret_cast<const uint2*>(szs + 32 * jb + 16 + 2 * g);
#pragma unroll
    for (int j = 0; j < 4; j++) {
      q.x[2 * j] = xw[32 * blk + 8 * j + t];
      q.x[2 * j + 1] = xw[32 * blk + 8 * j + 4 + t];
    }
    q.a = a2[blk];
    q.s = s2[blk];
  };
  if (cb == kChunkBlks) {
    // a full stage: the warp's 32 / NKS blocks, up to 4 loaded before any is folded, so their shared-memory loads
    // overlap (run 93's profile: 8 warps an SM at 8.4 cycles per issued instruction, one block's chain at a time); the
    // adds in the same order, so the same bits
    constexpr int PER = kChunkBlks / NKS, G = PER < 4 ? PER : 4;
#pragma unroll
    for (int u0 = 0; u0 < PER; u0 += G) {
      Blk q[G];
#pragma unroll
      for (int k = 0; k < G; k++) load(q[k], warp + (u0 + k) * NKS);
#pragma unroll
      for (int k = 0; k < G; k++) i8_block(q[k].w, q[k].m0, q[k].m1, q[k].x, q[k].a, q[k].s, y0, y1);
    }
  } else {
    for (int jb = warp; jb < cb; jb += NKS) {
      Blk q;
      load(q, jb);
      i8_block(q.w, q.m0, q.m1, q.x, q.a, q.s, y0, y1);
    }
  }
}

// A tile's epilogue (the tile's last stage, at st): the warps' slices (× rstd when scale) into red, then B·t — t waited
// for once a launch (phase): by value (bt.tval: every thread spins on its own t values) or through the A rows' count —
// and the 16 rows stored: the slices added in warp order, then B·t. Ends with the slices read (the caller's barrier
// frees the stage).
template <int NKS>
__device__ __forceinline__ void tile_epilogue(float& y0, float& y1, bool scale, float rstd, const I8Bt& bt, bool hasBt, bool bpre,
                                              const float* tout, int R, bool& tready, const unsigned char* st, int row0, float* y,
                                              float (*red)[16], float* tall, float* btsm, int warp, int lane) {
  const int g = lane >> 2, t = lane & 3;
  if (scale) {
    y0 *= rstd;
    y1 *= rstd;
  }
  if (t == 0) {
    red[warp][g] = y0;
    red[warp][g + 8] = y1;
  }
  y0 = y1 = 0.f;
  if (hasBt) {
    if (!tready) {
      if (bt.tval) {  // every thread spins on its own t values (kTUnset until their A row stores them)
        const unsigned* tu = reinterpret_cast<const unsigned*>(tout);
        for (int k = threadIdx.x; k < R && k < 3 * kBtMaxR; k += blockDim.x) {
          unsigned v, n = 0;
          while ((v = ld_relaxed_gpu(tu + k)) == kTUnset) spin_guard(n);
          tall[k] = __uint_as_float(v);
        }
      } else {
        if (threadIdx.x == 0)
          while (ld_acquire_gpu(bt.sync) < (unsigned)R) {}
        __syncthreads();
        for (int k = threadIdx.x; k < R && k < 3 * kBtMaxR; k += blockDim.x) tall[k] = __ldcg(tout + k);
      }
      tready = true;
    }
    __syncthreads();
    const int seg = bt_seg(bt, row0);
    const uint16_t* Btile = bt_rows(bt, seg, row0);
    tile_bt(Btile, bpre ? reinterpret_cast<const uint4*>(st + kWordBytes + kSzBytes) : reinterpret_cast<const uint4*>(Btile),
            tall + seg * bt.r, bt.r, 16, btsm);  // ends with a block barrier
  } else {
    __syncthreads();
  }
  if (threadIdx.x < 16) {
    float v = 0.f;
    for (int k = 0; k < NKS; k++) v += red[k][threadIdx.x];  // slice order
    if (hasBt) v += btsm[threadIdx.x];
    y[row0 + threadIdx.x] = v;
  }
}

template <int NKS>
__global__ void __launch_bounds__(32 * NKS) int8x_stream_kernel(I8Stream p, I8Bt bt) {
  extern __shared__ __align__(128) unsigned char sm[];
  __shared__ __align__(8) uint64_t bar[kMaxStages + 1];  // the ring's stages, then the A rows
  __shared__ float red[16][16], tall[3 * kBtMaxR], btsm[16], dred[16], rstd_s;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int in = p.in, nblk = in / 128, ng = in / 64, nch = (nblk + kChunkBlks - 1) / kChunkBlks, tiles = p.out / 16;
  const int tile0 = blockIdx.x * p.tpb, nitems = max(0, min(p.tpb, tiles - tile0)) * nch;
  const int xbytes = (in + 8 * ng + 15) & ~15;
  unsigned char* const xsm = sm;
  unsigned char* const asm_ = sm + xbytes;
  unsigned char* const stg = asm_ + (size_t)p.nA * in * 2;
  const bool hasBt = bt.sync != nullptr, bpre = hasBt && bt.pre && group_bt_fits(bt.r);
  const int myA = block_arows(p.nA, p.R);  // this block's A rows: blockIdx.x + k·gridDim.x
  if (threadIdx.x == 0) {
    for (int s = 0; s <= p.S; s++) mbar_init(&bar[s], 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  // the weights (ring and A rows) before the wait: they do not depend on the previous launch
  if (warp == 0) {
    if (myA) copy_arows(p.A, in, asm_, &bar[p.S], myA, lane);
    for (int i = 0; i < min(p.S, nitems); i++) issue_stage(p, bt, bpre, stg, bar, tile0, i, nch, lane);
  }
  pdl_trigger();
  pdl_wait();
  for (int i = threadIdx.x; i < (in + 8 * ng) / 16; i += blockDim.x)
    reinterpret_cast<uint4*>(xsm)[i] = reinterpret_cast<const uint4*>(p.xs)[i];
  if (threadIdx.x == 0) {  // RMSNorm's 1/rms from the prep's Σx² partials, in their order (as the per-tile kernel)
    float ss = 0.f;
    const float* part = reinterpret_cast<const float*>(p.xs + in + 8 * ng);
    for (int i = 0; i < p.npart; i++) ss += __ldg(part + i);
    rstd_s = p.npart ? rsqrtf(ss / (float)in + p.eps) : 1.f;
  }
  __syncthreads();
  const uint32_t* xw = reinterpret_cast<const uint32_t*>(xsm);
  const float2* a2 = reinterpret_cast<const float2*>(xsm + in);
  const int2* s2 = reinterpret_cast<const int2*>(xsm + in + 4 * ng);
  // the block's LoRA-A rows: t = Σ_g a_g Σ A·x̂ (· 1/rms), rpb rows at a time, each by NKS / rpb warps whose lanes take 8
  // inputs a step, as the per-tile kernel's A-row blocks group them (the same bits); published with one count
  if (myA) {
    mbar_wait(&bar[p.S], 0);
    const int wpr = NKS / p.rpb, lr = warp / wpr, dq = warp % wpr;
    const uint2* xv2 = reinterpret_cast<const uint2*>(xsm);
    const float* av = reinterpret_cast<const float*>(xsm + in);
    for (int k0 = 0; k0 < myA; k0 += p.rpb) {
      const int k = k0 + lr;
      const uint4* Ar = reinterpret_cast<const uint4*>(asm_ + (size_t)min(k, myA - 1) * in * 2);
      const float acc = i8_arow_warp(Ar, xv2, av, lane + 32 * dq, k < myA ? in / 8 : 0, 32 * wpr);
      if (lane == 0) dred[warp] = acc;
      __syncthreads();
      if (threadIdx.x == 0)
        for (int r = 0; r < p.rpb && k0 + r < myA; r++) {
          float tt = 0.f;
          for (int i = 0; i < wpr; i++) tt += dred[r * wpr + i];  // the row's warps in order
          unsigned v = __float_as_uint(tt * rstd_s);
          if (v == kTUnset) v = 0x7fffffffu;  // still a NaN, never the unset mark
          reinterpret_cast<unsigned*>(p.tout)[blockIdx.x + (k0 + r) * gridDim.x] = v;
        }
      __syncthreads();
    }
    if (hasBt && !bt.tval && threadIdx.x == 0) {  // tval: the t values are their own flags
      __threadfence();
      atomicAdd(bt.sync, (unsigned)myA);
    }
  }
  const float rstd = rstd_s;
  bool tready = false;
  float y0 = 0.f, y1 = 0.f;
  for (int i = 0; i < nitems; i++) {
    const int s = i % p.S, c = i % nch, tile = tile0 + i / nch, cb = min(kChunkBlks, nblk - kChunkBlks * c);
    const unsigned char* st = stg + (size_t)s * p.stageBytes;
    mbar_wait(&bar[s], (uint32_t)(i / p.S) & 1u);
    fold_stage<NKS>(st, xw, a2, s2, kChunkBlks * c, cb, warp, lane, y0, y1);
    if (c == nch - 1)  // the tile's epilogue
      tile_epilogue<NKS>(y0, y1, p.npart != 0, rstd, bt, hasBt, bpre, p.tout, p.R, tready, st, tile * 16, p.y, red, tall, btsm, warp, lane);
    __syncthreads();  // the stage and red are read: refill the stage
    if (warp == 0 && i + p.S < nitems) issue_stage(p, bt, bpre, stg, bar, tile0, i + p.S, nch, lane);
  }
  if (hasBt && bt.reset && !bt.tval && threadIdx.x == 0) {  // the last block out zeroes the counters (every block has passed its wait)
    if (atomicAdd(bt.sync + 1, 1u) == gridDim.x - 1) {
      bt.sync[0] = 0;
      bt.sync[1] = 0;
    }
  }
}

// ---- the chain: several streamed GEMVs in ONE launch (decode kernel 8 with LOWBIT_INT8X_CHAIN) ----
// Why: a launch per GEMV holds its SM's shared memory until its last block is gone, so the next GEMV's ring fills only
// in the gap a prep or the attention leaves, and HBM idles through every launch's tail and dependency chain (run 99:
// ~69 µs a layer against ~28 µs of bytes). Here o → gate/up → down → the next layer's q/k/v run in one launch with a
// grid barrier between them; the ring is ONE sequence of items across the phases, refilled S items ahead as items are
// consumed, so while a block waits at a barrier its ring already holds the next phase's first stages. Each block makes
// the next phase's x̂ itself from the previous phase's y (the residual add with RMSNorm, or SwiGLU): no prep launches.
// With the attention as a phase (mode 3; blocks h < Hq run head h, writing the next GEMV's x̂) a layer is one launch:
// attention → o → gate/up → down → the next layer's q/k/v, the ring streaming o's weights during the attention; and a
// plan may hold every layer's phases, a token in one launch. The phases are a table in device memory made once (a
// plan, cuda_int8x_chain_plan), so a launch takes any number of them and a graph replays the same table; the attention
// phases' position and RoPE rows come with each run.
// Every block of the grid must be resident at once (the barriers and the t waits): the plan checks occupancy.
// A phase's record; 16-byte multiples, so that a small plan's table goes to shared memory in one bulk copy.
struct alignas(16) I8Phase {
  const uint4* words;
  const uint32_t* sz;  // tile-blocked
  float* y;
  int out, in;
  const uint16_t* A;  // LoRA-A rows [R, in] (row j by block j mod grid), t published by value (kTUnset)
  int R;
  float* tout;
  I8Bt bt;       // B·t in the epilogue where bt.B[0] (t by value)
  int tpb, nA;   // tiles and A rows a block
  int mode;      // x̂: 0 from the scratch xs (npart Σx² partials, eps), 1 residual v = hin + yin (block 0 writes hout),
                 // x̃ = v·normw with 1/rms from Σv² in the block, 2 SwiGLU x̃ = silu(yin[i])·yin[in + i]; 3 the
                 // attention (at; no GEMV: out = 0), its output as x̂ into at.i8 for the next phase (mode 0); 4 the
                 // next phase's x̂ made once into xs (no GEMV: out = 0), a warp a group over the grid: normw set, as
                 // mode 1 (hout, a Σv² partial per group), else as mode 2 — the next phase reads it (mode 0)
  const unsigned char* xs;
  int npart;
  float eps;
  const float* hin;
  float* hout;
  const float* yin;
  const float* normw;
  DecodeAttn at;  // mode 3 (pos, cos and sin from the run)
};
struct I8Chain {
  const I8Phase* tab;  // the plan's phases (device memory)
  int nph, S, stageBytes, xbytes, abytes;
  unsigned* bar;  // [0] blocks arrived (once a block a phase boundary: phase p waits for p·grid), [1] blocks out; zero
                  // between launches (the last block out)
  unsigned long long* ts;  // benchmarks (cuda_int8x_chain_trace): this launch's %globaltimer stamps [grid][kChainStamps]
  int pos;                 // the attention phases' position and RoPE rows (f32 [hd/2])
  const float *cos, *sin;
  int probe;  // benchmarks (LOWBIT_INT8X_CHAIN_PROBE=1): the stages arrive but are not folded — the ring, barriers, x̂,
              // A rows and epilogues alone, the skeleton's time; wrong results by design
  int tabSmem;  // bytes of the table staged in shared memory at the start (a layer's few phases; 0: read from global
                // memory, each phase's record brought in by a bulk copy during the phase before)
};
static_assert(sizeof(I8Phase) % 16 == 0, "a phase record is a whole number of 16-byte units (bulk copies)");
// trace stamps a block: entry, past the PDL wait, then per phase (the first kChainTraceMax): past its barrier, x̂ staged,
// A rows done, items done
constexpr int kChainTraceMax = 256;
constexpr int kChainStamps = 2 + 4 * kChainTraceMax;
__device__ __forceinline__ void chain_stamp(const I8Chain& c, int k) {
  if (c.ts && threadIdx.x == 0 && k < kChainStamps) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    c.ts[(size_t)blockIdx.x * kChainStamps + k] = t;
  }
}

__device__ __forceinline__ int chain_items(const I8Phase& P) {
  const int tiles = P.out / 16, t0 = (int)blockIdx.x * P.tpb, nch = (P.in / 128 + kChunkBlks - 1) / kChunkBlks;
  return max(0, min(P.tpb, tiles - t0)) * nch;
}
// Warp 0's view of the records while the block is in phase p (-1: before the first): a table in shared memory; or a
// global table, whose records p and p + 1 (once its copy, issued at phase p's start, has landed) are in shared memory
// and the others in global memory (an L2 hit each).
struct ChainRecs {
  const I8Phase* tab;
  const unsigned char (*recs)[sizeof(I8Phase)];
  uint64_t* rbar;
  bool smem;
  __device__ __forceinline__ const I8Phase& at(int q, int p) const {
    if (smem || q < p || q > p + 1) return tab[q];
    if (q == p + 1) mbar_wait(rbar, (uint32_t)q & 1u);
    return *reinterpret_cast<const I8Phase*>(recs[q & 1]);
  }
};
// Warp 0's issue cursor: the items [ib, ie) of the block's sequence are phase ip's.
struct ChainCursor {
  int ip = -1, ib = 0, ie = 0;
};
// Item gi of the block's sequence (gi rising from call to call) into ring stage gi % S, by warp 0 in phase p; false past
// the last.
__device__ __forceinline__ bool chain_issue(const I8Chain& c, const ChainRecs& r, int p, ChainCursor& k, unsigned char* stg, uint64_t* bar,
                                            int gi, int lane) {
  while (gi >= k.ie) {
    if (k.ip + 1 >= c.nph) return false;
    k.ip++;
    k.ib = k.ie;
    k.ie += chain_items(r.at(k.ip, p));
  }
  const I8Phase& P = r.at(k.ip, p);
  const int nblk = P.in / 128, nch = (nblk + kChunkBlks - 1) / kChunkBlks, li = gi - k.ib, s = gi % c.S;
  copy_chunk(P.words, P.sz, P.bt, P.bt.B[0] && P.bt.pre && group_bt_fits(P.bt.r), stg + (size_t)s * c.stageBytes, &bar[s],
             (int)blockIdx.x * P.tpb + li / nch, li % nch, nblk, nch, lane);
  return true;
}
// The first phase of [from, from + 3) in which this block has LoRA-A rows (-1: none): the A region takes them as soon as
// it is free, so they stream across phases without any (an attention's, or a GEMV's with fewer rows than blocks: at 7B
// with rank 64, o's and down's 64 rows). Every phase's end scans again from the next phase, so no phase's rows are
// missed; the window only bounds how early they are asked for.
// The three phases' counts are loaded before any is tested (one L2 round trip, not three, for a global table's).
__device__ __forceinline__ int chain_next_arows(const I8Chain& c, const ChainRecs& r, int from, int p) {
  int nA[3] = {0, 0, 0}, R[3] = {0, 0, 0};
#pragma unroll
  for (int k = 0; k < 3; k++)
    if (from + k < c.nph) {
      const I8Phase& Q = r.at(from + k, p);
      nA[k] = Q.nA;
      R[k] = Q.R;
    }
#pragma unroll
  for (int k = 0; k < 3; k++)
    if (block_arows(nA[k], R[k])) return from + k;
  return -1;
}

// A prep phase (mode 4): the next phase's x̂ once for the grid (run 102: each block making all of it read 48–88 KB of y
// a block through L2, 4–16 µs a phase): group g by warp g / grid of block g mod grid, as the prep and the folded prep
// make it (input_group: the same bytes), its Σv² partial per group; the next phase copies the ≤ 12.4 KB (mode 0).
// Not inlined: its own copy of the quantization would add 24 registers to the chain kernel (151 at 8 warps with the
// attention, over the 128 that two blocks an SM allow).
__device__ __noinline__ void chain_prep(const I8Phase& P, int nks, int warp, int lane) {
  int8_t* const xq = reinterpret_cast<int8_t*>(const_cast<unsigned char*>(P.xs));
  for (int g = (int)blockIdx.x + (int)gridDim.x * warp; g < P.in / 64; g += (int)gridDim.x * nks)
    scratch_group<false>(P.hin, P.yin, P.normw ? P.hout : nullptr, P.normw, P.normw ? 0 : P.in, g, lane, xq, P.in / 64, nullptr);
}

// ATTN: compiled with the attention phase, so a chain without one carries none of its code (ptxas, 16 / 8 warps: 119 /
// 127 registers with it, 112 / 117 without, no spills; one block an SM at 16 warps, two fit at 8 — at 127, exactly)
template <int NKS, bool ATTN>
__global__ void __launch_bounds__(32 * NKS, 1) int8x_chain_kernel(const __grid_constant__ I8Chain c) {
  extern __shared__ __align__(128) unsigned char sm[];
  __shared__ __align__(8) uint64_t bar[kMaxStages + 2];  // the ring's stages, the A rows, the table
  __shared__ float red[16][16], tall[3 * kBtMaxR], btsm[16], dred[NKS], wss[NKS], rstd_s;
  // a global table's records, double-buffered: phase p's in recs[p & 1], the next one's copy in flight meanwhile
  __shared__ __align__(16) unsigned char recsb[2][sizeof(I8Phase)];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // shared memory: [the table (tabSmem)] | x̂ | A rows | ring
  const I8Phase* const tab = c.tabSmem ? reinterpret_cast<const I8Phase*>(sm) : c.tab;
  unsigned char* const xsm = sm + c.tabSmem;
  unsigned char* const asm_ = xsm + c.xbytes;
  unsigned char* const stg = asm_ + c.abytes;
  chain_stamp(c, 0);
  if (threadIdx.x == 0) {
    for (int s = 0; s <= c.S + 1; s++) mbar_init(&bar[s], 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  const ChainRecs recs{tab, recsb, &bar[c.S + 1], c.tabSmem != 0};  // warp 0's view of the records
  ChainCursor cursor;  // warp 0's
  int aPh = -1;        // warp 0's: the phase whose A rows the A region holds or is filling (-1: none)
  if (warp == 0) {     // the table, then weights before the wait: the first A rows and the ring's first S items
    if (c.tabSmem) {
      if (lane == 0) {
        mbar_expect_tx(&bar[c.S + 1], c.tabSmem);
        bulk_g2s(mbar_smem(sm), c.tab, c.tabSmem, &bar[c.S + 1]);
      }
      mbar_wait(&bar[c.S + 1], 0);
    } else if (lane == 0) {  // a global table: phase 0's record (bar[S + 1] completes once a phase)
      mbar_expect_tx(&bar[c.S + 1], sizeof(I8Phase));
      bulk_g2s(mbar_smem(recsb[0]), c.tab, sizeof(I8Phase), &bar[c.S + 1]);
    }
    aPh = chain_next_arows(c, recs, 0, -1);
    if (aPh >= 0) {
      const I8Phase& Q = recs.at(aPh, -1);
      copy_arows(Q.A, Q.in, asm_, &bar[c.S], block_arows(Q.nA, Q.R), lane);
    }
    for (int i = 0; i < c.S && chain_issue(c, recs, -1, cursor, stg, bar, i, lane); i++) {}
  }
  pdl_trigger();
  pdl_wait();
  if (c.tabSmem) mbar_wait(&bar[c.S + 1], 0);  // (a global table's records are waited for at their phases)
  chain_stamp(c, 1);
  int aUse = 0, pfirst = 0;  // pfirst: the block's first item of phase p
  for (int p = 0; p < c.nph; p++) {
    if (p > 0) {  // every block done with the phase before (its y stored)
      if (threadIdx.x == 0)
        for (unsigned n = 0; ld_acquire_gpu(c.bar) < (unsigned)p * gridDim.x;) spin_guard(n);
      __syncthreads();
      const I8Phase& Q = tab[p - 1];
      if (blockIdx.x == 0 && Q.R > 0 && Q.bt.B[0])  // its t read by every block: unset again for the next launch
        for (int k = threadIdx.x; k < Q.R; k += blockDim.x) reinterpret_cast<unsigned*>(Q.tout)[k] = kTUnset;
    }
    I8Phase* Pp = const_cast<I8Phase*>(tab + p);  // the table in shared memory is the block's own copy
    if (!c.tabSmem) {  // a global table: phase p's record has landed in recs[p & 1] (issued a phase ago)
      mbar_wait(&bar[c.S + 1], (uint32_t)p & 1u);
      __syncthreads();  // every thread has seen it land before the next copy moves the mbarrier on
      // the next record into the other buffer (phase p - 1's: no thread reads it past the barrier)
      if (threadIdx.x == 0 && p + 1 < c.nph) {
        // thread 0's own writes to that buffer (an attention's position) before the copy engine's
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        mbar_expect_tx(&bar[c.S + 1], sizeof(I8Phase));
        bulk_g2s(mbar_smem(recsb[(p + 1) & 1]), c.tab + p + 1, sizeof(I8Phase), &bar[c.S + 1]);
      }
      Pp = reinterpret_cast<I8Phase*>(recsb[p & 1]);
    }
    const I8Phase& P = *Pp;
    chain_stamp(c, 2 + 4 * p);
    const int in = P.in, ng = in / 64, nblk = in / 128, nch = (nblk + kChunkBlks - 1) / kChunkBlks;
    const int myA = block_arows(P.nA, P.R), nitems = chain_items(P), tile0 = (int)blockIdx.x * P.tpb;
    const bool hasBt = P.bt.B[0] != nullptr && P.R > 0;
    if (P.mode == 3) {  // the attention: head blockIdx.x, its scratch over x̂'s (no GEMV in this phase)
      if (ATTN && (int)blockIdx.x < P.at.Hq) {
        if (threadIdx.x == 0) {
          Pp->at.pos = c.pos;
          Pp->at.cos = c.cos;
          Pp->at.sin = c.sin;
        }
        __syncthreads();
        if (P.at.hd == 64) attn_body<2, NKS, true>(P.at, blockIdx.x, reinterpret_cast<float*>(xsm));
        else attn_body<4, NKS, true>(P.at, blockIdx.x, reinterpret_cast<float*>(xsm));
      }
    } else if (P.mode == 4) {
      chain_prep(P, NKS, warp, lane);
    } else if (nitems > 0 || myA > 0 || (P.mode == 1 && blockIdx.x == 0)) {
      // the phase's x̂ in shared memory (x̂ [in] | a [ng] | Σx̂ [ng], the prep's layout) and 1/rms
      if (P.mode == 0) {  // through L2: an attention phase of this launch may have written it
        for (int i = threadIdx.x; i < (in + 8 * ng) / 16; i += blockDim.x)
          reinterpret_cast<uint4*>(xsm)[i] = __ldcg(reinterpret_cast<const uint4*>(P.xs) + i);
        if (warp == 0) {  // the partials by warp 0's lanes (a prep phase's are one a group: up to 172 L2 loads),
                          // lane l adding l, l + 32, … then a shuffle tree: one order, so every block the same 1/rms
          float ss = 0.f;
          const float* part = reinterpret_cast<const float*>(P.xs + in + 8 * ng);
          for (int i = lane; i < P.npart; i += 32) ss += __ldcg(part + i);
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
          if (lane == 0) rstd_s = P.npart ? rsqrtf(ss / (float)in + P.eps) : 1.f;
        }
      } else {
        // a warp per group of 64, as the prep kernel, in ascending order (Σv² in the prep's order); a warp's groups
        // kBatch at a time, their loads all in flight before it makes any (down's 172 groups are 11 a warp: one L2
        // round trip each would sit on the critical path after the barrier)
        constexpr int kBatch = 4;
        const float* hin = P.mode == 1 ? P.hin : nullptr;
        float* hout = P.mode == 1 && blockIdx.x == 0 ? P.hout : nullptr;
        const int half = P.mode == 2 ? in : 0;
        float ss = 0.f;
        for (int g0 = warp; g0 < ng; g0 += kBatch * NKS) {
          GroupIn gin[kBatch];
#pragma unroll
          for (int k = 0; k < kBatch; k++)
            if (g0 + k * NKS < ng) gin[k] = input_load(hin, P.yin, P.normw, half, g0 + k * NKS, lane);
#pragma unroll
          for (int k = 0; k < kBatch; k++)
            if (g0 + k * NKS < ng)
              input_make(gin[k], hout, P.normw != nullptr, half, g0 + k * NKS, lane, reinterpret_cast<int8_t*>(xsm),
                         reinterpret_cast<float*>(xsm + in), reinterpret_cast<int*>(xsm + in + 4 * ng), ss);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (lane == 0) wss[warp] = ss;
        __syncthreads();
        if (threadIdx.x == 0) {
          float tot = 0.f;
          for (int w = 0; w < NKS; w++) tot += wss[w];  // fixed order: every block the same 1/rms
          rstd_s = P.mode == 1 ? rsqrtf(tot / (float)in + P.eps) : 1.f;
        }
      }
    }
    __syncthreads();
    chain_stamp(c, 3 + 4 * p);
    const float rstd = rstd_s;
    const uint32_t* xw = reinterpret_cast<const uint32_t*>(xsm);
    const float2* a2 = reinterpret_cast<const float2*>(xsm + in);
    const int2* s2 = reinterpret_cast<const int2*>(xsm + in + 4 * ng);
    if (myA) {  // the block's LoRA-A rows: t = Σ_g a_g Σ A·x̂ (· 1/rms), a row at a time by all warps, stored by value
      mbar_wait(&bar[c.S], (uint32_t)(aUse++) & 1u);
      const uint2* xv2 = reinterpret_cast<const uint2*>(xsm);
      const float* av = reinterpret_cast<const float*>(xsm + in);
      for (int k = 0; k < myA; k++) {
        const uint4* Ar = reinterpret_cast<const uint4*>(asm_ + (size_t)k * in * 2);
        const float acc = i8_arow_warp(Ar, xv2, av, lane + 32 * warp, in / 8, 32 * NKS);
        if (lane == 0) dred[warp] = acc;
        __syncthreads();
        if (threadIdx.x == 0) {
          float tt = 0.f;
          for (int i = 0; i < NKS; i++) tt += dred[i];
          unsigned v = __float_as_uint(tt * rstd);
          if (v == kTUnset) v = 0x7fffffffu;
          reinterpret_cast<unsigned*>(P.tout)[blockIdx.x + k * gridDim.x] = v;
        }
        __syncthreads();
      }
    }
    chain_stamp(c, 4 + 4 * p);
    if (warp == 0 && aPh <= p) {  // the A region is free (phase p's rows read, or none in it): the next A rows
      aPh = chain_next_arows(c, recs, p + 1, p);
      if (aPh >= 0) {
        const I8Phase& Q = recs.at(aPh, p);
        copy_arows(Q.A, Q.in, asm_, &bar[c.S], block_arows(Q.nA, Q.R), lane);
      }
    }
    bool tready = false;
    float y0 = 0.f, y1 = 0.f;
    for (int i = 0; i < nitems; i++) {
      const int gi = pfirst + i, s = gi % c.S, ch = i % nch, tile = tile0 + i / nch, cb = min(kChunkBlks, nblk - kChunkBlks * ch);
      const unsigned char* st = stg + (size_t)s * c.stageBytes;
      mbar_wait(&bar[s], (uint32_t)(gi / c.S) & 1u);
      if (!c.probe) fold_stage<NKS>(st, xw, a2, s2, kChunkBlks * ch, cb, warp, lane, y0, y1);
      if (ch == nch - 1)  // the tile's epilogue
        tile_epilogue<NKS>(y0, y1, P.mode == 1 || P.npart, rstd, P.bt, hasBt, hasBt && P.bt.pre && group_bt_fits(P.bt.r), P.tout, P.R,
                           tready, st, tile * 16, P.y, red, tall, btsm, warp, lane);
      __syncthreads();  // the stage and red are read: refill the stage (with the next phases' items near the end)
      if (warp == 0) chain_issue(c, recs, p, cursor, stg, bar, gi + c.S, lane);
    }
    pfirst += nitems;
    chain_stamp(c, 5 + 4 * p);
    if (p + 1 < c.nph && threadIdx.x == 0) {  // this block's y of the phase is stored
      __threadfence();
      atomicAdd(c.bar, 1u);
    }
  }
  if (threadIdx.x == 0) __threadfence();  // this block's t stores (its last A rows) before its count out
  if (threadIdx.x == 0 && atomicAdd(c.bar + 1, 1u) == gridDim.x - 1) {
    // the last block out: every block is past every wait and every t read — counters to 0, the last phase's t unset
    // (after every block's fenced count: their t stores are older)
    __threadfence();
    c.bar[0] = 0;
    c.bar[1] = 0;
    const I8Phase& L = c.tab[c.nph - 1];
    if (L.R > 0 && L.bt.B[0])
      for (int k = 0; k < L.R; k++) reinterpret_cast<unsigned*>(L.tout)[k] = kTUnset;
  }
}

// sz [out, in/64] (row-major) → tile-blocked [tile][blk][row 0..15][2 groups] (out % 16 == 0): a thread per word.
__global__ void int8x_tile_sz_kernel(const uint32_t* __restrict__ sz, uint32_t* __restrict__ dst, int out, int in) {
  const int ng = in / 64, nblk = in / 128;
  const size_t n = (size_t)out * ng;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const int h = (int)(i & 1), row = (int)((i >> 1) & 15), blk = (int)((i >> 5) % nblk), tile = (int)((i >> 5) / nblk);
    dst[i] = sz[(size_t)(tile * 16 + row) * ng + 2 * blk + h];
  }
}

int sm_count() {
  static const int n = [] {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || v < 1) v = 132;
    return v;
  }();
  return n;
}

}  // namespace

const char* cuda_int8x_tile_sz(const uint32_t* sz, uint32_t* dst, int out, int in) {
  if (in % 128 != 0 || out % 16 != 0 || out < 16) return "cudaInt8xTileSz: in % 128 == 0 and out % 16 == 0";
  const size_t n = (size_t)out * (in / 64);
  int8x_tile_sz_kernel<<<(unsigned)std::min<size_t>((n + 255) / 256, 65535), 256>>>(sz, dst, out, in);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_int8x_stream(const void* words, const uint32_t* sz, void* scratch, float* y, int out, int in, int nks,
                              bool pdl, int npart, float eps, const void* A, int R, float* t, const I8Bt& bt, int rpb) {
  if (in % 128 != 0 || out % 16 != 0 || out < 16) return "cudaInt8xGemv (streamed, parts & 512): out % 16 == 0";
  if (nks != 4 && nks != 8 && nks != 16) return "cudaInt8xGemv (streamed, parts & 512): ksplit (warps per block) 4, 8 or 16";
  if (bt.sync && (bt.r > kBtMaxR || R > 3 * kBtMaxR)) return "cudaInt8xGemv (streamed): B·t takes rank ≤ 128";
  static const int envS = [] { const char* e = std::getenv("LOWBIT_INT8X_STAGES"); return e ? std::atoi(e) : 0; }();
  // LOWBIT_INT8X_STREAM_BPS: blocks an SM (1 to 4), each with its own ring (more warps an SM, the lack that run 94's
  // profile points at; ring budget 100 KB a block at 2, what fits at 3 and 4, unless LOWBIT_INT8X_SMEM says otherwise).
  // Run 96 (H100): 2 blocks gave 433.3 / 521.9 tok/s with / without the rank-64 adapter against 410.1 / 547.4 per tile.
  // Runs 98–99: 3 blocks 451.2 / 453.0 tok/s with the adapter against 430.7 / 432.8 at 2; the default. Stages of 16
  // blocks of 128 inputs (so that 4 blocks an SM fit a ring with down's A rows) measured slower: 411.3 at 3 blocks, 378.4
  // at 4 (run 99).
  static const int bps = [] { const char* e = std::getenv("LOWBIT_INT8X_STREAM_BPS"); const int b = e ? std::atoi(e) : 3; return b >= 1 && b <= 4 ? b : 3; }();
  // every block of an SM must fit at once (the tiles' epilogues wait for all A rows): 228 KB an SM less each block's
  // reserved 1 KB and its static shared memory
  const size_t cap = bps == 1 ? 200 * 1024 : (size_t)(228 / bps - 5) * 1024;
  const int tiles = out / 16, nch = (in / 128 + kChunkBlks - 1) / kChunkBlks, slots = bps * sm_count();
  const int tpb = (tiles + slots - 1) / slots;
  int grid = (tiles + tpb - 1) / tpb;
  if (!A) R = 0;
  const bool bpre = bt.sync && bt.pre && group_bt_fits(bt.r);
  const int stageBytes = kWordBytes + kSzBytes + (bpre ? 32 * bt.r : 0), xbytes = (in + in / 8 + 15) & ~15;
  // at most 2 A rows per block in shared memory (48 KB for down's 11008 inputs), and no more than leave one stage under
  // the cap: more blocks where the rank asks for it (run 99: a GEMV of 3 tiles with 48 A rows of 4096 inputs went over
  // the 71 KB of three blocks an SM)
  const int fitA = cap > (size_t)(xbytes + stageBytes) ? (int)((cap - xbytes - stageBytes) / ((size_t)in * 2)) : 0;
  const int maxA = std::max(1, std::min(24576 / in, fitA));
  if (R > 0) grid = std::max(grid, (R + maxA - 1) / maxA);
  const int nA = R > 0 ? (R + grid - 1) / grid : 0;
  const int items = tpb * nch;
  // as many stages as fit 160 KB a block (LOWBIT_INT8X_SMEM, KB). A deeper ring measured faster than leaving room for
  // the next launch's block on the SM: decode 366.3 / 464.3 tok/s at 160 KB vs 355.1 / 447.6 at 110 KB (run 94, with
  // and without the rank-64 adapter); 80 KB was slower still (run 93). LOWBIT_INT8X_STAGES: that many instead
  static const int budgetKB = [] { const char* e = std::getenv("LOWBIT_INT8X_SMEM"); return e ? std::atoi(e) : bps == 1 ? 160 : bps == 2 ? 100 : 228 / bps - 8; }();
  const size_t fixedB = (size_t)xbytes + (size_t)nA * in * 2;
  int S = envS > 0 ? envS : (int)(((size_t)budgetKB * 1024 > fixedB ? (size_t)budgetKB * 1024 - fixedB : 0) / stageBytes);
  S = std::max(1, std::min({S, kMaxStages, items}));
  while (S > 1 && fixedB + (size_t)S * stageBytes > cap) S--;
  if (fixedB + (size_t)S * stageBytes > cap) return "cudaInt8xGemv (streamed): the block's shared memory is over its cap (A rows and x̂ too large)";
  const size_t smem = fixedB + (size_t)S * stageBytes;
  if (smem > 220 * 1024) return "cudaInt8xGemv (streamed): shared memory over 220 KB";
  decltype(&int8x_stream_kernel<8>) kern = nks == 4 ? int8x_stream_kernel<4> : nks == 8 ? int8x_stream_kernel<8> : int8x_stream_kernel<16>;
  static size_t smemSet[3] = {0, 0, 0};
  size_t& set = smemSet[nks == 4 ? 0 : nks == 8 ? 1 : 2];
  if (smem > set) {
    // and the largest shared-memory carveout, so that two launches' blocks fit on one SM (PDL)
    LB_CUDA(cudaFuncSetAttribute((const void*)kern, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
    LB_CUDA(cudaFuncSetAttribute((const void*)kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    set = smem;
  }
  if (R > 0 && bt.sync) {
    // the tiles' epilogues wait for every A row: the whole grid has to be resident at once (registers as well as shared
    // memory: 16-warp blocks at three an SM do not fit), or a launch could wait on blocks that never start
    static size_t occSmem[3] = {0, 0, 0};
    static int occN[3] = {0, 0, 0};
    const int k = nks == 4 ? 0 : nks == 8 ? 1 : 2;
    if (occSmem[k] != smem) {
      LB_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occN[k], kern, 32 * nks, smem));
      occSmem[k] = smem;
    }
    if ((long)occN[k] * sm_count() < grid)
      return "cudaInt8xGemv (streamed): its blocks do not all fit on the GPU at once (the tiles wait for every A row): fewer blocks an SM (LOWBIT_INT8X_STREAM_BPS) or fewer warps";
  }
  const I8Stream p{static_cast<const uint4*>(words), sz, static_cast<const unsigned char*>(scratch), npart, eps, y, out, in,
                   static_cast<const uint16_t*>(A), R, t, tpb, S, nA, stageBytes, rpb};
  return launch_ex(pdl, kern, (unsigned)grid, 32u * nks, smem, p, bt);
}


// Chain trace (benchmarks): launches while it is on write their stamps to consecutive [grid][kChainStamps] u64 slices.
static unsigned long long* g_chtrace = nullptr;
static size_t g_chtrace_bytes = 0;
static int g_chtrace_n = 0;
static int chain_grid() {
  static const int bps = [] { const char* e = std::getenv("LOWBIT_INT8X_CHAIN_BPS"); const int b = e ? std::atoi(e) : 1; return b == 2 ? 2 : 1; }();
  return bps * sm_count();
}
const char* cuda_int8x_chain_trace(void* buf, size_t bytes, int* launches, int* grid, int* stamps) {
  *launches = g_chtrace_n;
  *grid = chain_grid();
  *stamps = kChainStamps;
  g_chtrace = static_cast<unsigned long long*>(buf);
  g_chtrace_bytes = buf ? bytes : 0;
  g_chtrace_n = 0;
  return nullptr;
}

// A chain plan: the phase table on the device and what a launch of it needs.
struct ChainPlan {
  I8Phase* tab;
  int nph, nks, S, stageBytes, xbytes, abytes, tabSmem, grid, hd, positions;
  bool attn;
  size_t smem;
};

// A phase's input fields (a GEMV's, or a prep phase's: the same x̂ sources and scratch).
static void input_fields(I8Phase& P, const Int8xChainPhase& q) {
  P.mode = q.mode;
  P.in = q.in;
  P.xs = static_cast<const unsigned char*>(q.xs);
  P.hin = q.hin;
  P.hout = q.hout;
  P.yin = q.yin;
  P.normw = q.normw;
}
// The phases as the kernel reads them, checked (err: why not), and the plan's sizes.
static const char* chain_phases(const Int8xChainPhase* ph, int nph, int nks, int grid, std::vector<I8Phase>& tab, ChainPlan& plan) {
  int r = -1, xb = 0, ab = 0, hd = 0;
  for (int p = 0; p < nph; p++) {
    const Int8xChainPhase& q = ph[p];
    I8Phase& P = tab[p];
    if (q.mode == 3) {  // the attention: a block per query head, its scratch over x̂'s
      const DecodeAttn& e = q.at;
      if (p + 1 >= nph || ph[p + 1].mode != 0 || ph[p + 1].xs != e.i8 || ph[p + 1].in != e.Hq * e.hd)
        return "cudaInt8xChainPlan: an attention's output (xs) is the x̂ of the next phase (mode 0, in = Hq·hd)";
      if (e.hd != 64 && e.hd != 128) return "cudaInt8xChainPlan: the attention phase takes head dims 64 and 128";
      if (hd && e.hd != hd) return "cudaInt8xChainPlan: one head dim for every attention phase (one RoPE row a run)";
      if (e.Hkv < 1 || e.Hq % e.Hkv != 0 || e.Hq > grid) return "cudaInt8xChainPlan: the attention needs Hkv | Hq and a block per query head";
      if (!e.i8 || e.r != 0 || e.out) return "cudaInt8xChainPlan: the attention phase writes the int8-x x̂ only (its B·t in the q/k/v GEMV)";
      hd = e.hd;
      P.mode = 3;
      P.at = e;
      xb = std::max(xb, (4 * (nks == 8 ? attn_smem_floats<8>(e.hd) : attn_smem_floats<16>(e.hd)) + 15) & ~15);
      continue;
    }
    if (q.mode == 4) {  // the next phase's x̂ made once (its input: residual + RMSNorm with normw, else SwiGLU)
      const Int8xChainPhase* n = p + 1 < nph ? &ph[p + 1] : nullptr;
      if (q.in % 128 != 0 || !q.xs || !q.yin) return "cudaInt8xChainPlan: a prep phase needs in % 128 == 0, xs and yin";
      if (q.normw && (!q.hin || !q.hout || q.hin == q.hout)) return "cudaInt8xChainPlan: a residual prep phase needs hin and a hout apart from hin";
      if (!n || n->mode != 0 || n->xs != q.xs || n->in != q.in || n->npart != (q.normw ? q.in / 64 : 0))
        return "cudaInt8xChainPlan: a prep phase's xs is the x̂ of the next phase (mode 0, the same in, npart = in / 64 with normw, else 0)";
      input_fields(P, q);
      continue;
    }
    if (q.in % 128 != 0 || q.out % 16 != 0 || q.out < 16) return "cudaInt8xChainPlan: every phase needs in % 128 == 0 and out % 16 == 0";
    if (q.mode < 0 || q.mode > 2) return "cudaInt8xChainPlan: mode 0 (scratch), 1 (residual + RMSNorm), 2 (SwiGLU), 3 (attention) or 4 (prep)";
    if (q.mode == 0 && !q.xs) return "cudaInt8xChainPlan: mode 0 reads its x̂ from a scratch";
    if (q.mode == 1 && (!q.hin || !q.hout || !q.yin || !q.normw || q.hin == q.hout)) return "cudaInt8xChainPlan: mode 1 needs hin, yin, normw and a hout apart from hin";
    if (q.mode == 2 && !q.yin) return "cudaInt8xChainPlan: mode 2 reads gate | up from yin";
    if ((q.mode == 0) != (p == 0 || ph[p - 1].mode == 3 || ph[p - 1].mode == 4))
      return "cudaInt8xChainPlan: a GEMV phase first or after an attention or a prep reads its x̂ from a scratch (mode 0), the others make it";
    const bool ad = q.A && q.R > 0;
    if (ad != (q.bt.nseg > 0)) return "cudaInt8xChainPlan: a phase has both its A rows and its B·t, or neither";
    // block 0 unsets a phase's t at the next phase's start while the other blocks already store that phase's: the two
    // may not share t (a phase two or more later may: the barrier between orders them)
    if (ad && p > 0 && ph[p - 1].mode != 3 && ph[p - 1].A && ph[p - 1].R > 0 && q.t < ph[p - 1].t + ph[p - 1].R && ph[p - 1].t < q.t + q.R)
      return "cudaInt8xChainPlan: adjacent phases share t values";
    P.words = static_cast<const uint4*>(q.words);
    P.sz = q.sz;
    P.y = q.y;
    P.out = q.out;
    input_fields(P, q);
    P.npart = q.npart;
    P.eps = q.eps;
    P.tpb = (q.out / 16 + grid - 1) / grid;
    if (ad) {
      if (r >= 0 && q.bt.r != r) return "cudaInt8xChainPlan: one rank for every phase";
      r = q.bt.r;
      if (q.R > 3 * kBtMaxR) return "cudaInt8xChainPlan: at most 384 A rows a phase (B·t's t staged in shared memory)";
      if (const char* err = int8x_bt(q.bt, q.out, q.R, &P.bt)) return err;
      P.bt.sync = nullptr;  // t by value: no counters
      P.bt.tval = true;
      P.A = static_cast<const uint16_t*>(q.A);
      P.R = q.R;
      P.tout = q.t;
      P.nA = (q.R + grid - 1) / grid;
      ab = std::max(ab, P.nA * q.in * 2);
    }
    xb = std::max(xb, (q.in + q.in / 8 + 15) & ~15);
  }
  plan.xbytes = xb;
  plan.abytes = (ab + 127) & ~127;
  plan.stageBytes = kWordBytes + kSzBytes + (r > 0 && group_bt_fits(r) ? 32 * r : 0);
  plan.hd = hd;
  plan.attn = hd > 0;
  return nullptr;
}

template <int NKS, bool ATTN>
static void* chain_kernel() { return reinterpret_cast<void*>(int8x_chain_kernel<NKS, ATTN>); }

const char* cuda_int8x_chain_plan(const Int8xChainPhase* ph, int nph, int nks, int positions, void** out) {
  *out = nullptr;
  if (nph < 1 || nph > 4096) return "cudaInt8xChainPlan: 1 to 4096 phases";
  if (nks != 8 && nks != 16) return "cudaInt8xChainPlan: 8 or 16 warps a block";
  // LOWBIT_INT8X_CHAIN_BPS: blocks an SM (1 or 2); LOWBIT_INT8X_CHAIN_SMEM: KB a block (default 180 at 1, 100 at 2)
  static const int budgetKB = [] { const char* e = std::getenv("LOWBIT_INT8X_CHAIN_SMEM"); return e ? std::atoi(e) : 0; }();
  const int grid = chain_grid(), bps = grid / sm_count();
  const size_t budget = (size_t)(budgetKB > 0 ? budgetKB : bps == 1 ? 180 : 100) * 1024;
  std::vector<I8Phase> tab((size_t)nph, I8Phase{});
  ChainPlan plan{};
  if (const char* err = chain_phases(ph, nph, nks, grid, tab, plan)) return err;
  // a layer's table (a few phases) in shared memory: its records then cost no global load at each phase's start; a
  // token's (~160 phases at 7B) stays in global memory, its records double-buffered in shared memory by bulk copies.
  // LOWBIT_INT8X_CHAIN_TAB=global (tests): every table in global memory, so a short chain runs that path too
  constexpr size_t kTabSmemMax = 8192;
  const char* tabEnv = std::getenv("LOWBIT_INT8X_CHAIN_TAB");
  const bool tabGlobal = tabEnv && std::string(tabEnv) == "global";
  plan.tabSmem = !tabGlobal && sizeof(I8Phase) * (size_t)nph <= kTabSmemMax ? (int)(sizeof(I8Phase) * (size_t)nph) : 0;
  const size_t fixed = (size_t)plan.tabSmem + plan.xbytes + plan.abytes;
  int S = (int)(budget > fixed ? (budget - fixed) / plan.stageBytes : 0);
  S = std::min(S, kMaxStages);
  if (S < 2) return "cudaInt8xChainPlan: fewer than two ring stages fit the block's shared memory (LOWBIT_INT8X_CHAIN_SMEM)";
  plan.S = S;
  plan.nph = nph;
  plan.nks = nks;
  plan.grid = grid;
  plan.positions = positions;
  plan.smem = fixed + (size_t)S * plan.stageBytes;
  const void* kern = nks == 8 ? (plan.attn ? chain_kernel<8, true>() : chain_kernel<8, false>())
                              : (plan.attn ? chain_kernel<16, true>() : chain_kernel<16, false>());
  static size_t smemSet[4] = {0, 0, 0, 0};  // the largest a plan of each kernel asked for (the attribute is a cap)
  size_t& set = smemSet[(nks == 8 ? 0 : 1) + (plan.attn ? 2 : 0)];
  if (plan.smem > set) {
    LB_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
    LB_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)plan.smem));
    set = plan.smem;
  }
  // the grid barriers and the t waits need every block resident at once
  int occ = 0;
  LB_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kern, 32 * nks, plan.smem));
  if ((long)occ * sm_count() < grid) return "cudaInt8xChainPlan: its blocks do not all fit on the GPU at once (LOWBIT_INT8X_CHAIN_BPS / _SMEM)";
  LB_CUDA(cudaMalloc(reinterpret_cast<void**>(&plan.tab), sizeof(I8Phase) * (size_t)nph));
  if (cudaMemcpy(plan.tab, tab.data(), sizeof(I8Phase) * (size_t)nph, cudaMemcpyHostToDevice) != cudaSuccess) {
    cudaFree(plan.tab);
    return "cudaInt8xChainPlan: the phase table's upload failed";
  }
  *out = new ChainPlan(plan);
  return nullptr;
}

int cuda_int8x_chain_hd(const void* plan) { return static_cast<const ChainPlan*>(plan)->hd; }

const char* cuda_int8x_chain_run(const void* plan, bool pdl, unsigned* sync, int pos, const float* cos, const float* sin) {
  const ChainPlan& P = *static_cast<const ChainPlan*>(plan);
  if (!sync) return "cudaInt8xChainRun: needs its counters (2 u32, zero)";
  if (P.attn && (pos < 0 || pos >= P.positions || !cos || !sin))
    return "cudaInt8xChainRun: the attention phases need a position below the plan's and its RoPE rows";
  static const int probe = [] { const char* e = std::getenv("LOWBIT_INT8X_CHAIN_PROBE"); return e ? std::atoi(e) : 0; }();
  I8Chain c{P.tab, P.nph, P.S, P.stageBytes, P.xbytes, P.abytes, sync, nullptr, pos, cos, sin, probe, P.tabSmem};
  const size_t slice = (size_t)P.grid * kChainStamps;
  if (g_chtrace && (size_t)(g_chtrace_n + 1) * slice * 8 <= g_chtrace_bytes) c.ts = g_chtrace + (size_t)(g_chtrace_n++) * slice;
  const unsigned g = (unsigned)P.grid, b = 32u * P.nks;
  if (P.nks == 8) return P.attn ? launch_ex(pdl, int8x_chain_kernel<8, true>, g, b, P.smem, c) : launch_ex(pdl, int8x_chain_kernel<8, false>, g, b, P.smem, c);
  return P.attn ? launch_ex(pdl, int8x_chain_kernel<16, true>, g, b, P.smem, c) : launch_ex(pdl, int8x_chain_kernel<16, false>, g, b, P.smem, c);
}

const char* cuda_int8x_chain_free(void* plan) {
  ChainPlan* P = static_cast<ChainPlan*>(plan);
  const cudaError_t e = cudaFree(P->tab);
  delete P;
  return e == cudaSuccess ? nullptr : "cudaInt8xChainFree: cudaFree failed";
}

}  // namespace lowbit
