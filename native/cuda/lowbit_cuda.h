// Plain C++ interface of the CUDA part, free of CUDA types so the N-API glue (cuda_napi.cc) builds
// with g++ alone. Every function returns nullptr on success or a one-line error message naming the
// CUDA/cuBLAS call that failed (valid until the next call on the same thread).
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

// device.cu
const char* cuda_device_info(int* count, char* name, size_t name_len, int* major, int* minor, int* sms = nullptr);
const char* cuda_alloc(size_t bytes, void** ptr);
const char* cuda_free(void* ptr);
const char* cuda_upload(void* dst, const void* src, size_t bytes);
const char* cuda_download(void* dst, const void* src, size_t bytes);
const char* cuda_sync();
const char* cuda_memset0(void* ptr, size_t bytes);
const char* cuda_copy_d2d(void* dst, const void* src, size_t bytes);
const char* cuda_mem_info(size_t* free_bytes, size_t* total_bytes);
// Stream capture of the thread's default stream into a CUDA graph: begin, end (-> instantiated exec), launch, free.
// Between begin and end nothing may synchronise or allocate (uploads, downloads, first-use allocations).
const char* cuda_graph_begin();
const char* cuda_graph_end(void** exec);
const char* cuda_graph_launch(void* exec);
const char* cuda_graph_free(void* exec);

// convert.cu (bf16 is stored as uint16; round-to-nearest-even, NaN stays NaN)
const char* cuda_f32_to_bf16(void* dst, const void* src, size_t n);
const char* cuda_bf16_to_f32(void* dst, const void* src, size_t n);
// dst[i] = uniform in [lo, hi) from a hash of (seed, i), stored as bf16.
const char* cuda_fill_uniform_bf16(void* dst, size_t n, uint32_t seed, float lo, float hi);

// cublas_dl.cu: lazily dlopen()s libcublas.so.13 and creates one handle.
const char* cublas_load(int* version);

// gemm.cu. Row-major C[M,N] = alpha*op(A)*op(B) + beta*C, A/B bf16, fp32 accumulate, C bf16 or fp32.
const char* cublas_gemm_bf16(bool transA, bool transB, int M, int N, int K, float alpha, const void* A,
                             const void* B, float beta, void* C, bool c_f32);
// The same with explicit leading dimensions (row-major: elements between consecutive rows of A, B, C as stored),
// for operands that are column blocks of wider matrices.
const char* cublas_gemm_bf16_ld(bool transA, bool transB, int M, int N, int K, float alpha, const void* A, int lda,
                                const void* B, int ldb, float beta, void* C, int ldc, bool c_f32);
// splitk.cu: C[M,N] (ldc; bf16 or f32) = alpha·A·op(B) + beta·C with K cut into `splits` slices (one
// strided-batched GEMM into work [splits·M·N] f32, then a reduction). A row-major [M,K] (lda), B [K,N] or, tb,
// [N,K] (ldb). For skinny outputs with long K. K must be a multiple of splits.
const char* cublas_gemm_bf16_splitk(bool tb, int M, int N, int K, float alpha, const void* A, int lda, const void* B,
                                    int ldb, float beta, void* C, int ldc, bool c_f32, int splits, float* work);
// CUDA events on stream 0 (profiling from JS): create, record, elapsed ms between two recorded events, destroy.
const char* cuda_event_new(void** ev);
const char* cuda_event_record(void* ev);
const char* cuda_event_pair_ms(void* a, void* b, float* ms);
const char* cuda_event_free(void* ev);
// `batch` independent GEMMs of the same shape; operand i starts at X + i*strideX (elements; 0 reuses one
// operand for every batch, e.g. a shared weight).
const char* cublas_gemm_bf16_batched(bool transA, bool transB, int M, int N, int K, float alpha, const void* A,
                                     long long strideA, const void* B, long long strideB, float beta, void* C,
                                     long long strideC, int batch, bool c_f32);
// Times cublas_gemm_bf16 (bf16 C) on random data: warmup, then `iters` calls separated by cudaEvents;
// *ms = median per call.
const char* cuda_bench_gemm(int M, int N, int K, int iters, bool transA, bool transB, double* ms);

// ---- packed low-bit weights (dequant.cu, gemv.cu, qgemm.cu, ops.cu) ----
// One PackedTensor (src/quant/types.ts) on the device. All pointers are device pointers; optional ones are
// null. The code stream (pack.ts layout) must be followed by >= 16 readable bytes (the uploader pads).
struct QDesc {
  int layout = 0;  // 0 = 'int', 1 = 'nf'
  int bits = 0, out = 0, in = 0, group = 0;
  const uint8_t* codes = nullptr;
  // 'int': [out * ceil(in/group)] words, low half = f16 scale bits, high half = f16 zero bits (exact)
  const uint32_t* sz = nullptr;
  const int32_t* gidx = nullptr;  // 'int': [in] group of each input column, or null
  // 'nf' (blocks of `group` over the flat row-major tensor)
  const float* absmax = nullptr;                                 // [nb] or null (then double-quantized)
  const uint8_t* absq = nullptr; const float* absscale = nullptr;  // DQ: [nb] codes, [ceil(nb/256)] scales
  float absoffset = 0;
  const uint8_t* tauq = nullptr; const float* tauscale = nullptr;  // ICQ τ: [nb], [ceil(nb/256)], or null
  const float* levels = nullptr;  // 'nf': [2^bits] NormalFloat levels
  const float* dynmap = nullptr;  // [256] bnb dynamic map (needed when absq or tauq)
  // 'int' 2-bit group 64: the fused GEMM's repacked codes + row constants (cuda_qgemm_fused_repack), or null
  const uint8_t* fused = nullptr;
};

// nullptr when d is a consistent descriptor, else why not.
const char* qdesc_check(const QDesc& d);
// dst (bf16, out*in) = dequantized weight, bit-exact bf16 rounding of the TS float32 dequantizer.
const char* cuda_dequant_bf16(const QDesc& d, void* dst, void* stream);
// Fused decode GEMV on packed codes: y[out] (f32) = Ŵ·x (+ y when accumulate), x f32 [in], fp32 accumulate.
// Needs in % 32 == 0, group % 32 == 0, no gIdx; bits 2/3/4/8 ('int') or 2/3/4 ('nf'). variant: 0 = default
// (v1, the kernel measured on the GPU), 1 = v1, 2 = v2 (in and group multiples of its chunk: 64 codes for 2 bits,
// 32 for 3/4, 16 for 8; error otherwise; measured slower than v1), 3 = v3 ('int' only, bits 2 or 4, in % 64 == 0,
// group % 64 == 0; error otherwise): x staged once per block in shared memory, 4 or 8 rows per thread picked from
// the occupancy (34 / 38 force 4 / 8), ~2.5 instructions per 2-bit weight — parity tests and a CPU model
// (test/cuda-gemv-model.test.ts), not yet run on a device.
const char* cuda_qgemv(const QDesc& d, const float* x, float* y, bool accumulate, void* stream, int variant = 0);
// Dense bf16 GEMV: y[rows] (f32) = W[rows, K]·x (+ y), W bf16 row-major, x f32.
const char* cuda_gemv_bf16(const void* W, int rows, int K, const float* x, float* y, bool accumulate, void* stream);
// Y[M, out] = X[M, in]·Ŵᵀ: dequantize into `scratch` (bf16 out*in), then cuBLAS bf16 GEMM, fp32 accumulate; where
// the descriptor carries the fused GEMM's repacked stream (d.fused), 64 <= M <= LOWBIT_QGEMM_FUSED_MAX_M (default
// kQGemmFusedMaxM) and cuda_qgemm_fused takes the weight, that kernel instead (scratch unused), unless the
// environment says LOWBIT_QGEMM_FUSED=0 (both read on every call).
constexpr int kQGemmFusedMaxM = 1024;
const char* cuda_qgemm(const QDesc& d, int M, const void* X, void* Y, bool y_f32, void* scratch);
// qgemm_wgmma.cu: the fused Hopper GEMM on packed codes (no dequantized copy): Y[M, out] = X[M, in]·Ŵᵀ for 'int'
// 2-bit group-64 weights without gIdx, in % 64 == 0, out % 128 == 0, 16-byte aligned codes/X/Y, on an sm_90 device.
// qgemm_fused_unsupported: nullptr when it applies, else why not (cuda_qgemm then takes dequantize + cuBLAS).
// debug 1..3 dumps A fragments / the swizzled X tile / raw accumulators into Y (see the .cu header); 0 = normal.
// variant: 0 = default (LOWBIT_QGEMM_FUSED_VARIANT=1..7 if set, else with d.fused 7 (5 without a tensor-map encoder) when the tiles fit one wave of one CTA per SM and 4 otherwise, else 1); 1 / 2 = from the
// original codes (6 stages one CTA per SM / 5 stages two CTAs per SM; A = dequant.cu's bf16 bit for bit);
// 3 / 4 = from the repacked stream d.fused (the same two configurations; A within one bf16 rounding step of it);
// 5 / 6 = the repacked stream, split-K inside a 512-thread CTA (two warpgroup pairs, 5 / 4 stages each); 7 = 5 with its stages filled by the copy engine.
const char* qgemm_fused_unsupported(const QDesc& d, int M, const void* X, const void* Y);
const char* cuda_qgemm_fused(const QDesc& d, int M, const void* X, void* Y, bool y_f32, void* stream, int debug = 0,
                             int variant = 0);
// Bytes of the repacked stream (out/128 · in/64 · 4096), 0 where the fused kernel does not take the weight's shape.
size_t qgemm_fused_repack_bytes(const QDesc& d);
// dst (qgemm_fused_repack_bytes(d), 16-byte aligned) = the repacked stream of d (a one-time pass per weight).
const char* cuda_qgemm_fused_repack(const QDesc& d, void* dst, void* stream);
// ops.cu: random bytes (hash of seed, index) for benchmark codes.
const char* cuda_fill_random_bytes(void* dst, size_t n, uint32_t seed);

// Benchmarks (qgemm.cu). Each times one pass over `nd` operands (rotating so L2 holds none), CUDA events
// after warmup, median over `reps` passes; *ms = median pass time / nd (one operation).
// dequant: dst_i = dst + i*dst_stride bytes.
const char* cuda_bench_dequant(const QDesc* d, int nd, void* dst, size_t dst_stride, int reps, double* ms);
const char* cuda_bench_copy(void* dst, const void* src, size_t bytes, int reps, double* ms);
// packed GEMM (dequant into one scratch + cuBLAS) and the dense reference on nd bf16 weights [N, K].
const char* cuda_bench_qgemm(const QDesc* d, int nd, int M, const void* X, void* Y, void* scratch, int reps, double* ms);
// the same with the dequantization of weight i+1 (second stream) overlapping the GEMM of weight i; scratch
// holds two weights, the second at scratch + scratch_half_bytes.
const char* cuda_bench_qgemm_pipelined(const QDesc* d, int nd, int M, const void* X, void* Y, void* scratch,
                                       size_t scratch_half_bytes, int reps, double* ms);
// the fused kernel (qgemm_wgmma.cu) on the same rotation; an error when it does not apply.
const char* cuda_bench_qgemm_fused(const QDesc* d, int nd, int M, const void* X, void* Y, int reps, double* ms,
                                   int variant = 0);
const char* cuda_bench_dense_gemm(const void* const* W, int nd, int M, int N, int K, const void* X, void* Y, int reps,
                                  double* ms);
// fused GEMV (graph-captured pass): y_i = y + i*out floats.
const char* cuda_bench_qgemv(const QDesc* d, int nd, const float* x, float* y, int reps, double* ms, int variant = 0);
// One decode token through nd projections: y = Ŵ_i·x + B_i·(A_i·x) (A_i [rank, in], B_i [out, rank] bf16;
// null A disables LoRA). Graph-captured; *ms = median time of the whole token (not divided by nd).
const char* cuda_bench_decode(const QDesc* d, int nd, const void* const* A, const void* const* B, int rank,
                              const float* x, float* y, float* t, int reps, double* ms);


// ---- batch-1 decode (decode.cu) ----
constexpr int kDecodeMaxSegs = 8;
// One run of output rows of the v4 decode GEMV: kind 0 = packed 'int' 2-bit codes REPACKED by cuda_repack4 (codes)
// with their f16 scale|zero words (sz, ng groups per row of `group` inputs), kind 1 = dense bf16 rows W [rows, in]
// (16-byte aligned). y[rows] f32 (= or += when acc).
struct DecodeSeg {
  int kind = 0, rows = 0, group = 0, ng = 0;
  const void* codes = nullptr;
  const uint32_t* sz = nullptr;
  const void* W = nullptr;
  float* y = nullptr;
  int acc = 0;
  // LoRA folded into the launch (v5 only): y += B·t, B bf16 [rows, r] (already scaled), t = the y of segment tseg of the
  // same launch (a dense segment of r rows, computed first); r even, ≤ 128. B null: none.
  const void* B = nullptr;
  int r = 0, tseg = -1;
};
// The packed code stream (out rows of in/4 bytes, in % 256 == 0) with each 64-byte span's 4×4 words transposed.
const char* cuda_repack4(const void* codes, void* dst, int out, int in);
// Prototype int8-x GEMV (int8x_gemv.cu): y[out] = Σ_g s·a_g·(Σ q·x̂ − z·Σx̂) with x̂ = int8(x) per 64 inputs; words in the
// repackInt8x layout (out padded to 16-row tiles, in % 128 == 0), sz f16 scale|zero words [out, in/64], scratch ≥ in + in/8 + 4⌈in/512⌉
// bytes, nks warps per tile splitting the 128-input blocks (y zeroed, then float atomics); parts: bit 0 quantize x, bit 1
// zero y, bit 2 the GEMV, bit 3 the GEMV launched with PDL (benchmarks time the GEMV alone), bit 4 two blocks ahead, bit 5
// x̂ staged in shared memory, bit 6 a block per tile with its K slices added in a fixed order and y stored, bit 7 the Σx²
// partials are per group (from a folded prep; scratch ≥ in + in/8 + in/16 bytes). eps ≥ 0: x̂
// came from cuda_int8x_prep with normw, and the row sums are scaled by RMSNorm's 1/rms from its partials. A (bf16 [R,
// in], rows 16-byte aligned): the same launch also writes t[R] = A·x̃ on x's int8 image (the adapter's LoRA-A factor).
// bt (bit 6 and A only): the same launch also adds B·t to y — segment i (rows up to end[i]) with B[i] (bf16 [its rows,
// r], scaled) and t[i·r …]; sync: two u32 counters, zero before the first launch (each launch leaves them zero; with bit
// 8 an earlier launch must zero them before each launch instead; with bit 11, 2048, streamed only, no counters: t is
// published by value, an earlier launch sets it to 0xffffffff, cuda_int8x_prep's unsetT).
struct Int8xGemvBt {
  const void* B[3];
  int end[3];
  int nseg, r;
  unsigned* sync;
};
// fold (bit 6 only): the same launch also makes the NEXT GEMV's input in scratch (its ng groups of 64), replacing the
// prep launch between them: x += y, x̃ = x·normw with per-group Σx² partials (the consumer then takes bit 7), or with
// half = I, x̃ = silu(y[0, I))·y[I, 2I); cnt: ng u32 counters, zero before the first launch (each launch leaves them zero).
struct Int8xGemvFold {
  unsigned* cnt;
  float* x;
  const float* normw;
  void* scratch;
  int ng, half;
};
const char* cuda_int8x_gemv(const void* words, const uint32_t* sz, const float* x, void* scratch, float* y,
                            int out, int in, int nks, int parts = 7, float eps = -1.f, const void* A = nullptr, int R = 0,
                            float* t = nullptr, const Int8xGemvBt* bt = nullptr, const Int8xGemvFold* fold = nullptr);
// One token's attention with its RoPE and cache rows (replaces the q/k/v epilogue + attention): q (f32 [Hq·hd]) and the
// new k, v (f32 [Hkv·hd]) → RoPE (cos/sin of position pos) → bf16; rows pos of kc/vc (bf16 [pos + 1][Hkv·hd]) written;
// out (bf16 [Hq·hd]) = softmax(q·Kᵀ/√hd)·V over positions 0..pos (GQA). hd ∈ {64, 128, 256}.
struct DecodeAttn {
  const float *q, *k, *v, *cos, *sin;
  uint16_t *kc, *vc, *out;
  int pos, Hq, Hkv, hd;
  // cuda_decode_attn launched alone (not recorded, not folded) may also add the adapters' B·t to q, k and v before RoPE
  // (B bf16 [Hq·hd | Hkv·hd, r], t f32 [r]; null: none) and write its output as the int8-x GEMV's input instead of
  // bf16 out: x̂ | a | Σx̂ into the scratch i8 (int8x_gemv.cu's layout), as cuda_int8x_prep makes them from bf16 out.
  const float *tq = nullptr, *tk = nullptr, *tv = nullptr;
  const uint16_t *Bq = nullptr, *Bk = nullptr, *Bv = nullptr;
  int r = 0;
  void* i8 = nullptr;
};
// A chain of streamed int8-x GEMVs in one launch (int8x_stream.cu): phase p's x̂ comes from the scratch xs (mode 0,
// with npart Σx² partials and eps as cuda_int8x_gemv), from the residual v = hin + yin (mode 1: block 0 writes v to
// hout, x̃ = v·normw, 1/rms in the block) or SwiGLU of yin (mode 2: silu(yin[i])·yin[in + i]); sz tile-blocked
// (cuda_int8x_tile_sz); y stored. With an adapter (A, R, t, bt; bt.sync unused): t is published by value — every t
// must hold 0xffffffff at the launch's start, and the chain leaves them so. Mode 3: the attention at (no GEMV; at.i8 =
// the next phase's xs, its B·t left to the q/k/v GEMV; at.pos, cos and sin come with each run), a block per query head.
// The phases go to the device once (a plan of nks warps a block; the attention's caches hold `positions` rows);
// cuda_int8x_chain_run launches all of them, sync: 2 u32, zero (the chain leaves them zero).
struct Int8xChainPhase {
  const void* words = nullptr;
  const uint32_t* sz = nullptr;
  float* y = nullptr;
  int out = 0, in = 0;
  const void* A = nullptr;
  int R = 0;
  float* t = nullptr;
  Int8xGemvBt bt{};
  int mode = 0;
  const void* xs = nullptr;
  int npart = 0;
  float eps = 0.f;
  const float* hin = nullptr;
  float* hout = nullptr;
  const float* yin = nullptr;
  const float* normw = nullptr;
  DecodeAttn at{};  // mode 3
};
const char* cuda_int8x_chain_plan(const Int8xChainPhase* ph, int nph, int nks, int positions, void** plan);
const char* cuda_int8x_chain_run(const void* plan, bool pdl, unsigned* sync, int pos, const float* cos, const float* sin);
const char* cuda_int8x_chain_free(void* plan);
int cuda_int8x_chain_hd(const void* plan);  // its attention phases' head dim (0: none)
// Benchmarks: chain launches from now on write %globaltimer stamps [launch][grid][stamps] u64 into buf (null: off);
// launches = those traced since the previous call.
const char* cuda_int8x_chain_trace(void* buf, size_t bytes, int* launches, int* grid, int* stamps);
// int8-x words (the GEMV's repacked layout; twin repackInt8x) from an 'int' 2-bit code stream [out, in], in % 128 == 0.
const char* cuda_int8x_repack(const void* codes, void* words, int out, int in);
// The scale|zero words [out, in/64] tile-blocked for the streamed GEMV (parts & 512; twin tileInt8xSz): [tile][block of
// 128 inputs][row 0..15][2 groups]; out % 16 == 0, in % 128 == 0.
const char* cuda_int8x_tile_sz(const uint32_t* sz, uint32_t* dst, int out, int in);
// The prep's optional extras (decode layer hand-offs): the element is x (bf16 when xbf16) + addy + B1·t1 (B1 bf16
// [in, r]), written to xout when given; with x2 (SwiGLU) the up value is x2 + B2·t2.
struct Int8xPrepExtra {
  bool xbf16 = false;
  const float* addy = nullptr;
  const void* B1 = nullptr;
  const float* t1 = nullptr;
  const void* B2 = nullptr;
  const float* t2 = nullptr;
  int r = 0;
  float* xout = nullptr;
  bool unsetT = false;  // yz is set to the "t not yet stored" mark (kTUnset) instead of 0: t of GEMVs with parts & 2048
};
// The int8-x GEMV's input in scratch (x̂ | a | Σx̂ | Σx² partials): x̃ = x (or the element of ex), x·normw (RMSNorm, normw non-null) or
// silu(x)·x2 (x2 non-null) quantized per 64 inputs; then nz floats of yz zeroed (the consumer's split-K output).
const char* cuda_int8x_prep(const void* x, const float* x2, const float* normw, void* scratch, int in, float* yz, int nz, bool pdl,
                            const Int8xPrepExtra* ex = nullptr);
// y_s = W_s·x̃ for every segment s in one launch, x̃ = RMSNorm(x)·normw when normw (else x); x f32 or bf16 [in].
// probe (benchmarks only): 0 normal; 1 every tile reads rows 0..15's codes (L2-resident); 2 loads, no compute; 3 compute,
// no loads (constant codes) — wrong results by design.
// x2 (f32 [in], with normw null): x̃ = silu(x)·x2 (the SwiGLU of gate x and up x2, f32).
// pf (kernel 5, up to kDecodeMaxPf ranges, 16-byte aligned, bytes % 16 == 0): L2 prefetches issued by the launch's blocks
// at their start, each block its 1/grid share of every range — the NEXT launch's weights, so HBM streams them while
// this launch works and the next one reads from L2. evictFirst: the launch's own bulk copies of codes with L2::evict_first.
struct DecodePf {
  const void* ptr = nullptr;
  uint32_t bytes = 0;
};
constexpr int kDecodeMaxPf = 16;
const char* cuda_decode_gemv(const DecodeSeg* segs, int nseg, int in, const void* x, bool x_bf16, const float* normw,
                             float eps, int probe = 0, int variant = 0, const float* x2 = nullptr, const DecodePf* pf = nullptr,
                             int npf = 0, bool evictFirst = false);
// q/k/v of one token: + LoRA (s·B bf16 [out, r]) · t (null B: none), RoPE on q and k (tables of this position),
// q → qOut (bf16), k → kOut, v → vOut (the KV-cache rows of this position, bf16).
struct DecodeQkv {
  const float *q, *k, *v, *tq, *tk, *tv;
  const uint16_t *Bq, *Bk, *Bv;
  int rq, rk, rv;
  const float *cos, *sin;
  int Hq, Hkv, hd;
  uint16_t *qOut, *kOut, *vOut;
};
const char* cuda_decode_qkv_epi(const DecodeQkv& e);
const char* cuda_decode_attn(const DecodeAttn& e);
// The same attention handed to the NEXT cuda_decode_gemv call instead of launched: kernel 5 runs it first (blocks h < Hq,
// the other blocks wait for all heads) when that call's x is e.out (bf16) with in = Hq·hd — one launch boundary less
// per layer; otherwise that call launches it on its own before the GEMV. Must be followed by a cuda_decode_gemv.
const char* cuda_decode_attn_fold_next(const DecodeAttn& e);
// Persistent decode plan: between cuda_decode_plan_begin and cuda_decode_plan_end, cuda_decode_gemv (kernel 5) and
// cuda_decode_attn record phases instead of launching; cuda_decode_plan_run then runs every recorded phase in ONE launch
// (a block per SM, grid-wide barriers between phases, the next GEMV's weights streamed before each barrier). The
// attention phases take pos and the RoPE tables cos/sin (f32 [hd/2] of that position) from the run.
const char* cuda_decode_plan_begin();
const char* cuda_decode_plan_end(void** plan);
void cuda_decode_plan_limit_pos(int positions);  // while recording: the KV caches hold this many positions
bool cuda_decode_recording();
const char* cuda_decode_plan_run(void* plan, int pos, const float* cos, const float* sin);
int cuda_decode_plan_phases(void* plan);
// Benchmarks: the plan's runs write %globaltimer stamps [nph][grid][3] (phase start, work done, arrived) into trace (null: off).
const char* cuda_decode_plan_trace(void* plan, void* trace, size_t bytes, int* grid);
// Benchmarks: kernel-5 launches from now on stamp %globaltimer into buf (u64 [launch][stride = SM count][6]; null: off);
// *launches = the launches counted since the previous call.
const char* cuda_decode_gemv_trace(void* buf, size_t bytes, int* launches, int* stride);
const char* cuda_decode_plan_free(void* plan);
// Greedy sampling on the device: *id = argmax x[0..n) (the first index of the maximum), and ids[slot] = it when ids is set.
const char* cuda_argmax_f32(const float* x, int n, int* id, int* ids, int slot);
// x[n] += y + B·t (B null: x += y)
const char* cuda_decode_residual_epi(float* x, const float* y, const float* t, const void* B, int r, int n);
// act[n] = silu(g + Bg·tg) · (u + Bu·tu), f32
const char* cuda_decode_swiglu_epi(const float* g, const float* u, const float* tg, const float* tu, const void* Bg,
                                   const void* Bu, int rg, int ru, int n, float* act);

}  // namespace lowbit
