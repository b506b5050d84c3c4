// Quantizer kernels: the TypeScript quantizers (src/quant/rtn.ts, normalfloat.ts, icq.ts) on the device,
// bit-identical. Every f32 operation of the TS code (Math.fround after each op) is an explicit __f*_rn
// intrinsic (no FMA contraction), every f64 one a __d*_rn; divisions are IEEE-rounded; a double product
// rounded to f32 (JS `fr(p * x)` with a double p) is __dmul_rn then __double2float_rn. Entropies add the
// host-computed terms p·log2(p) (exactly what JS Math.log2 gives) in the TS bin order, so they are identical too.
//
// Parallel shape: one warp per group ('int') or block ('nf'); min/max/absmax reductions are order-free.
// ICQ-NF keeps the block's values in registers and counts codes with warp ballots (2^bits <= 16 bins); the
// 'int' kernel counts into a per-warp shared histogram (up to 256 bins).
#include <cuda_fp16.h>

#include <climits>

#include "check.h"
#include "quantize.h"

namespace lowbit {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxIcqBlock = 256;  // ICQ-NF block values held in registers: 8 per lane
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFull, x, o));
  return x;
}
// min/max by the TS comparisons (`x < mn`): NaN never wins; the sign of a zero is fixed up by the callers.
__device__ __forceinline__ float warp_min_cmp(float x) {
#pragma unroll
  for (int o = 16; o; o >>= 1) { const float y = __shfl_xor_sync(kFull, x, o); x = y < x ? y : x; }
  return x;
}
__device__ __forceinline__ float warp_max_cmp(float x) {
#pragma unroll
  for (int o = 16; o; o >>= 1) { const float y = __shfl_xor_sync(kFull, x, o); x = y > x ? y : x; }
  return x;
}

// rtn.ts storeScale: f16 rounding (round to nearest even), never 0.
__device__ __forceinline__ float store_scale(float s) {
  const float r = __half2float(__float2half_rn(s));
  return r > 0.f ? r : 5.9604644775390625e-8f;  // 2^-24
}
// clamp(q, 0, M) of an integer-valued float, with -0 turned into +0 (Math.max(0, -0) is +0).
__device__ __forceinline__ float clamp_code(float q, float M) { return __fadd_rn(q < 0.f ? 0.f : q > M ? M : q, 0.f); }
// rtn.ts quantizeValue: clamp(roundHalfEven(fr(w/s)) + z, 0, M).
__device__ __forceinline__ uint32_t quant_value(float w, float s, float z, float M) {
  return (uint32_t)clamp_code(__fadd_rn(rintf(__fdiv_rn(w, s)), z), M);
}
// normalfloat.ts: fr(1 / Math.max(absmax, 1e-38)).
__device__ __forceinline__ float inv_absmax(float am) {
  return (double)am > 1e-38 ? __fdiv_rn(1.f, am) : __double2float_rn(1.0 / 1e-38);
}
// normalfloat.ts: y = fr(x·inv) clamped to [−1, 1].
__device__ __forceinline__ float scaled_clamped(float x, float inv) {
  float y = __fmul_rn(x, inv);
  if (y > 1.f) y = 1.f; else if (y < -1.f) y = -1.f;
  return y;
}
// torch.bucketize(y, mids, right=False) by the TS binary search (first mid >= y).
__device__ __forceinline__ int bucketize(float y, const float* mids, int nm) {
  int lo = 0, hi = nm;
  while (lo < hi) { const int m = (lo + hi) >> 1; if (mids[m] < y) lo = m + 1; else hi = m; }
  return lo;
}
// Entropy from bin counts: h -= term[c] for each non-empty bin, bins in order (icq.ts codeEntropy).
__device__ __forceinline__ double entropy_add(double h, int c, const double* term) {
  return c > 0 ? __dsub_rn(h, term[c]) : h;
}

// ---------------------------------------------------------------------------------------------------------
// 'int' layout: RTN (rule 0) or ICQ-int (rule 1), one warp per (row, group).
struct IntArgs {
  const float* W; int out, in, group, ng, rule;
  const double* mults; int n_mults;
  const double* ent;
  uint8_t* codes; float* scales; float* zeros; double* stats;
};

// Code entropy of the group under (s, z) — z unclamped, as icqIntRule — via the warp's shared histogram.
template <int BITS>
__device__ double int_entropy(const IntArgs& a, const float* w, int len, float s, float z, int* hist, const double* term,
                              int lane) {
  constexpr int K = 1 << BITS;
  constexpr float M = (float)(K - 1);
  for (int i = lane; i < len; i += 32) atomicAdd(&hist[quant_value(w[i], s, z, M)], 1);
  __syncwarp();
  double h = 0;
  for (int v = 0; v < K; v++) h = entropy_add(h, hist[v], term);
  __syncwarp();
  for (int v = lane; v < K; v += 32) hist[v] = 0;
  __syncwarp();
  return h;
}

template <int BITS>
__global__ void __launch_bounds__(kThreads) quant_int_kernel(IntArgs a) {
  constexpr int K = 1 << BITS;
  constexpr float M = (float)(K - 1);
  __shared__ int s_hist[kWarps][K];
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int v = lane; v < K; v += 32) s_hist[wib][v] = 0;
  __syncwarp();
  const size_t gw = (size_t)blockIdx.x * kWarps + wib;
  if (gw >= (size_t)a.out * a.ng) return;
  const int o = (int)(gw / a.ng), j = (int)(gw % a.ng);
  const int c0 = j * a.group, len = min(a.in, c0 + a.group) - c0;
  const float* w = a.W + (size_t)o * a.in + c0;
  float mn = INFINITY, mx = -INFINITY;
  for (int i = lane; i < len; i += 32) { const float x = w[i]; mn = x < mn ? x : mn; mx = x > mx ? x : mx; }
  mn = warp_min_cmp(mn);
  mx = warp_max_cmp(mx);
  float s, z;
  if (a.rule == 0) {
    // rtnParams: s = storeScale(fr(fr(max(fr(mx − mn), 1e-5)) / M)), z = clamp(rhe(fr(−mn/s)), 0, M)
    const float d = __fsub_rn(mx, mn);
    s = store_scale(__fdiv_rn((double)d > 1e-5 ? d : 1e-5f, M));
    z = clamp_code(rintf(__fdiv_rn(-mn, s)), M);
  } else {
    // GPTQ min/max with 0 included, then the entropy-maximizing range multiplier (strict '>')
    float lo = mn < 0.f ? mn : 0.f, hi = mx > 0.f ? mx : 0.f;
    if (lo == 0.f && hi == 0.f) { lo = -1.f; hi = 1.f; }
    const double* term = a.ent + (len == a.group ? 0 : a.group + 1);
    int* hist = s_hist[wib];
    double best = -INFINITY;
    float bs = 1.f, bz = 0.f;
    for (int k = 0; k < a.n_mults; k++) {
      const double p = a.mults[k];
      const float pmx = __double2float_rn(__dmul_rn(p, (double)hi)), pmn = __double2float_rn(__dmul_rn(p, (double)lo));
      const float sc = store_scale(__fdiv_rn(__fsub_rn(pmx, pmn), M));
      const float zc = rintf(__fdiv_rn(-pmn, sc));
      const double h = int_entropy<BITS>(a, w, len, sc, zc, hist, term, lane);
      if (h > best) { best = h; bs = sc; bz = clamp_code(zc, M); }
    }
    s = bs; z = bz;
    if (a.stats) {
      // entropy of the GPTQ min-max codes (gptqMinMaxRule), then of the chosen codes
      const float s0 = store_scale(__fdiv_rn(__fsub_rn(hi, lo), M));
      const float z0 = clamp_code(rintf(__fdiv_rn(-lo, s0)), M);
      const double h0 = int_entropy<BITS>(a, w, len, s0, z0, hist, term, lane);
      const double h1 = int_entropy<BITS>(a, w, len, s, z, hist, term, lane);
      if (lane == 0) { a.stats[2 * gw] = h0; a.stats[2 * gw + 1] = h1; }
    }
  }
  if (lane == 0) { a.scales[gw] = s; a.zeros[gw] = z; }
  uint8_t* c = a.codes + (size_t)o * a.in + c0;
  for (int i = lane; i < len; i += 32) c[i] = (uint8_t)quant_value(w[i], s, z, M);
}

// ---------------------------------------------------------------------------------------------------------
// bnb blockwise quantization with a sorted codebook, one warp per block.
__global__ void __launch_bounds__(kThreads) blockwise_kernel(const float* x, size_t n, int block, const float* levels,
                                                             int n_levels, const float* offset, uint8_t* codes,
                                                             float* absmax) {
  __shared__ float s_mids[255];
  for (int k = threadIdx.x; k + 1 < n_levels; k += kThreads) s_mids[k] = __fmul_rn(__fadd_rn(levels[k], levels[k + 1]), 0.5f);
  __syncthreads();
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const size_t b = (size_t)blockIdx.x * kWarps + wib, lo = b * (size_t)block;
  if (lo >= n) return;
  const int len = (int)min((size_t)block, n - lo);
  const float off = offset ? *offset : 0.f;
  auto val = [&](int i) { const float v = x[lo + i]; return offset ? __fsub_rn(v, off) : v; };
  float am = 0.f;
  for (int i = lane; i < len; i += 32) am = fmaxf(am, fabsf(val(i)));
  am = warp_max(am);
  const float inv = inv_absmax(am);
  if (lane == 0) absmax[b] = am;
  for (int i = lane; i < len; i += 32) codes[lo + i] = (uint8_t)bucketize(scaled_clamped(val(i), inv), s_mids, n_levels - 1);
}

// ---------------------------------------------------------------------------------------------------------
// ICQ-NF: per block τ0 = lower median, a = max|w − τ0|, candidates τ = fr(fr(f·a) + τ0), NF codes of (w − τ)
// with their own absmax, strict argmax of the code entropy; then the final codes with the winning τ.
template <int BITS>
struct IcqBlock {
  static constexpr int K = 1 << BITS;
  float mids[K - 1];
  float v[kMaxIcqBlock / 32];
  int nch, len, lane;

  // Codes of (v − t) (their absmax into *am) and the entropy of their bin counts.
  __device__ __forceinline__ double codes_entropy(float t, const double* term, int* code, float* am_out) const {
    float sv[kMaxIcqBlock / 32];
    float am = 0.f;
#pragma unroll
    for (int j = 0; j < kMaxIcqBlock / 32; j++) {
      if (j < nch) {
        sv[j] = __fsub_rn(v[j], t);
        if (lane + 32 * j < len) am = fmaxf(am, fabsf(sv[j]));
      }
    }
    am = warp_max(am);
    const float inv = inv_absmax(am);
    int cnt[K];
#pragma unroll
    for (int q = 0; q < K; q++) cnt[q] = 0;
#pragma unroll
    for (int j = 0; j < kMaxIcqBlock / 32; j++) {
      if (j < nch) {
        const bool ok = lane + 32 * j < len;
        const float y = scaled_clamped(sv[j], inv);
        int c = 0;
#pragma unroll
        for (int m = 0; m < K - 1; m++) c += mids[m] < y;  // = bucketize: mids are sorted
        code[j] = c;
#pragma unroll
        for (int q = 0; q < K; q++) cnt[q] += __popc(__ballot_sync(kFull, ok && c == q));
      }
    }
    double h = 0;
#pragma unroll
    for (int q = 0; q < K; q++) h = entropy_add(h, cnt[q], term);
    *am_out = am;
    return h;
  }
};

// lower median's total order (Float64Array sort): numeric, with −0 before +0.
__device__ __forceinline__ bool sort_less(float a, float b) {
  return a < b || (a == b && signbit(a) && !signbit(b));
}

template <int BITS>
__global__ void __launch_bounds__(kThreads) icq_nf_kernel(const float* W, size_t n, int block, const float* levels,
                                                          const float* factors, int n_factors, const double* ent,
                                                          uint8_t* codes, float* absmax, float* tau, double* stats) {
  __shared__ float s_vals[kWarps][kMaxIcqBlock];
  __shared__ double s_ent[2 * (kMaxIcqBlock + 1)];
  __shared__ float s_t0[kWarps];
  for (int k = threadIdx.x; k < 2 * (block + 1); k += kThreads) s_ent[k] = ent[k];
  __syncthreads();
  const int wib = threadIdx.x >> 5;
  IcqBlock<BITS> B;
  B.lane = threadIdx.x & 31;
#pragma unroll
  for (int m = 0; m < IcqBlock<BITS>::K - 1; m++) B.mids[m] = __fmul_rn(__fadd_rn(levels[m], levels[m + 1]), 0.5f);
  const size_t b = (size_t)blockIdx.x * kWarps + wib, lo = b * (size_t)block;
  if (lo >= n) return;
  B.len = (int)min((size_t)block, n - lo);
  B.nch = (B.len + 31) / 32;
  const double* term = s_ent + (B.len == block ? 0 : block + 1);
  float* vals = s_vals[wib];
#pragma unroll
  for (int j = 0; j < kMaxIcqBlock / 32; j++) {
    const int i = B.lane + 32 * j;
    B.v[j] = 0.f;
    if (j < B.nch && i < B.len) { B.v[j] = W[lo + i]; vals[i] = B.v[j]; }
  }
  __syncwarp();
  // τ0: the element of rank ⌊(len−1)/2⌋
  const int rank = (B.len - 1) / 2;
#pragma unroll
  for (int j = 0; j < kMaxIcqBlock / 32; j++) {
    if (j < B.nch && B.lane + 32 * j < B.len) {
      const float x = B.v[j];
      int lt = 0, le = 0;
      for (int m = 0; m < B.len; m++) { const float y = vals[m]; lt += sort_less(y, x); le += !sort_less(x, y); }
      if (lt <= rank && rank < le) s_t0[wib] = x;
    }
  }
  __syncwarp();
  const float t0 = s_t0[wib];
  float a = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxIcqBlock / 32; j++)
    if (j < B.nch && B.lane + 32 * j < B.len) a = fmaxf(a, fabsf(__fsub_rn(B.v[j], t0)));
  a = warp_max(a);
  int code[kMaxIcqBlock / 32];
  float am;
  double best = -INFINITY;
  float best_tau = t0;
  for (int k = 0; k < n_factors; k++) {
    const float t = __fadd_rn(__fmul_rn(factors[k], a), t0);
    const double h = B.codes_entropy(t, term, code, &am);
    if (h > best) { best = h; best_tau = t; }
  }
  const double h_after = B.codes_entropy(best_tau, term, code, &am);
#pragma unroll
  for (int j = 0; j < kMaxIcqBlock / 32; j++)
    if (j < B.nch && B.lane + 32 * j < B.len) codes[lo + B.lane + 32 * j] = (uint8_t)code[j];
  if (B.lane == 0) { absmax[b] = am; tau[b] = best_tau; }
  if (stats) {
    float am0;
    const double h_before = B.codes_entropy(0.f, term, code, &am0);
    if (B.lane == 0) { stats[2 * b] = h_before; stats[2 * b + 1] = h_after; }
  }
}

// ---------------------------------------------------------------------------------------------------------
// QLoRA absmax mean. The f64 sum of non-negative f32 values is exact in any order when the total stays below
// 2^52 units of the smallest value's f32 ulp (every partial sum is then a representable multiple of that unit),
// so one block sums in parallel and checks that; otherwise thread 0 sums in index order, as the TS loop does.
__global__ void __launch_bounds__(1024) absmax_mean_kernel(const float* x, size_t n, float* work) {
  __shared__ double s_sum[32];
  __shared__ int s_exp[32], s_bad[32];
  double s = 0;
  int min_e = INT_MAX, bad = 0;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = x[i];
    s = __dadd_rn(s, (double)v);
    if (!(v >= 0.f) || isinf(v)) bad = 1;
    if (v != 0.f) min_e = min(min_e, max(1, (int)((__float_as_uint(v) >> 23) & 0xff)));
  }
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
#pragma unroll
  for (int o = 16; o; o >>= 1) {
    s = __dadd_rn(s, __shfl_xor_sync(kFull, s, o));
    min_e = min(min_e, __shfl_xor_sync(kFull, min_e, o));
    bad |= __shfl_xor_sync(kFull, bad, o);
  }
  if (lane == 0) { s_sum[w] = s; s_exp[w] = min_e; s_bad[w] = bad; }
  __syncthreads();
  if (threadIdx.x != 0) return;
  s = 0; min_e = INT_MAX; bad = 0;
  for (int k = 0; k < (int)(blockDim.x >> 5); k++) { s = __dadd_rn(s, s_sum[k]); min_e = min(min_e, s_exp[k]); bad |= s_bad[k]; }
  const bool exact = !bad && (min_e == INT_MAX || s < ldexp(1.0, 52 + (min_e - 150)));  // ulp = 2^(e − 127 − 23)
  if (!exact) {
    s = 0;
    for (size_t i = 0; i < n; i++) s = __dadd_rn(s, (double)x[i]);
  }
  work[0] = __double2float_rn(__ddiv_rn(s, (double)(n > 0 ? n : 1)));
}

// ---------------------------------------------------------------------------------------------------------
// ICQ τ double quantization: one warp per 256 blocks.
__device__ __forceinline__ int nearest_dynamic(float y, const float* map) {
  int lo = 0, hi = 255;
  while (lo < hi) { const int m = (lo + hi) >> 1; if (map[m] < y) lo = m + 1; else hi = m; }
  int best = 0;
  float bd = INFINITY;
  for (int k = max(0, lo - 1); k <= min(255, lo + 1); k++) {
    const float d = fabsf(__fsub_rn(y, map[k]));
    if (d < bd) { bd = d; best = k; }
  }
  return best;
}

__global__ void __launch_bounds__(kThreads) tau_dq_kernel(const float* tau, size_t nb, const float* dynmap, uint8_t* q,
                                                          float* scale) {
  __shared__ float s_map[256];
  s_map[threadIdx.x] = dynmap[threadIdx.x];  // kThreads == 256
  __syncthreads();
  const int wib = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const size_t g = (size_t)blockIdx.x * kWarps + wib, lo = g * 256;
  if (lo >= nb) return;
  const int len = (int)min((size_t)256, nb - lo);
  float m = 0.f;
  for (int i = lane; i < len; i += 32) m = fmaxf(m, fabsf(tau[lo + i]));
  m = warp_max(m);
  if (lane == 0) scale[g] = m;
  const int zero_idx = nearest_dynamic(0.f, s_map);
  for (int i = lane; i < len; i += 32) q[lo + i] = (uint8_t)(m > 0.f ? nearest_dynamic(__fdiv_rn(tau[lo + i], m), s_map) : zero_idx);
}

// ---------------------------------------------------------------------------------------------------------
// pack.ts bit stream: thread t packs codes [8t, 8t+8) into stream bytes [t·bits, t·bits + bits).
__global__ void pack_kernel(const uint8_t* codes, size_t n, int bits, uint8_t* packed, size_t nbytes) {
  const size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x, e0 = t * 8;
  if (e0 >= n) return;
  const uint32_t mask = (1u << bits) - 1;
  uint64_t acc = 0;
#pragma unroll
  for (int j = 0; j < 8; j++) if (e0 + j < n) acc |= (uint64_t)(codes[e0 + j] & mask) << (bits * j);
  for (int k = 0; k < bits; k++) {
    const size_t byte = t * bits + k;
    if (byte < nbytes) packed[byte] = (uint8_t)(acc >> (8 * k));
  }
}

unsigned warp_grid(size_t warps) { return (unsigned)((warps + kWarps - 1) / kWarps); }

}  // namespace

const char* cuda_quant_int(const float* W, int out, int in, int bits, int group, int rule, const double* mults,
                           int n_mults, const double* ent, uint8_t* codes, float* scales, float* zeros, double* stats) {
  if (out < 1 || in < 1 || group < 1 || group > in) return "quantize (int): bad shape or group";
  if (rule != 0 && rule != 1) return "quantize (int): rule must be 0 (rtn) or 1 (icq-int)";
  if (rule == 1 && (!mults || n_mults < 1 || !ent)) return "quantize (icq-int): multipliers and entropy terms are required";
  IntArgs a{W, out, in, group, (in + group - 1) / group, rule, mults, n_mults, ent, codes, scales, zeros, rule == 1 ? stats : nullptr};
  const unsigned grid = warp_grid((size_t)out * a.ng);
  switch (bits) {
    case 1: quant_int_kernel<1><<<grid, kThreads>>>(a); break;
    case 2: quant_int_kernel<2><<<grid, kThreads>>>(a); break;
    case 3: quant_int_kernel<3><<<grid, kThreads>>>(a); break;
    case 4: quant_int_kernel<4><<<grid, kThreads>>>(a); break;
    case 5: quant_int_kernel<5><<<grid, kThreads>>>(a); break;
    case 6: quant_int_kernel<6><<<grid, kThreads>>>(a); break;
    case 7: quant_int_kernel<7><<<grid, kThreads>>>(a); break;
    case 8: quant_int_kernel<8><<<grid, kThreads>>>(a); break;
    default: return "quantize (int): bits must be 1..8";
  }
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_quant_blockwise(const float* x, size_t n, int block, const float* levels, int n_levels,
                                 const float* offset, uint8_t* codes, float* absmax) {
  if (block < 1 || n_levels < 2 || n_levels > 256) return "quantize (blockwise): block >= 1 and 2..256 levels required";
  if (n == 0) return nullptr;
  blockwise_kernel<<<warp_grid((n + block - 1) / block), kThreads>>>(x, n, block, levels, n_levels, offset, codes, absmax);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_icq_nf(const float* W, size_t n, int bits, int block, const float* levels, const float* factors,
                        int n_factors, const double* ent, uint8_t* codes, float* absmax, float* tau, double* stats) {
  if (block < 1 || block > kMaxIcqBlock) return "quantize (icq-nf): block must be 1..256 on the GPU";
  if (n_factors < 1) return "quantize (icq-nf): no candidates";
  if (n == 0) return nullptr;
  const unsigned grid = warp_grid((n + block - 1) / block);
  switch (bits) {
    case 2: icq_nf_kernel<2><<<grid, kThreads>>>(W, n, block, levels, factors, n_factors, ent, codes, absmax, tau, stats); break;
    case 3: icq_nf_kernel<3><<<grid, kThreads>>>(W, n, block, levels, factors, n_factors, ent, codes, absmax, tau, stats); break;
    case 4: icq_nf_kernel<4><<<grid, kThreads>>>(W, n, block, levels, factors, n_factors, ent, codes, absmax, tau, stats); break;
    default: return "quantize (icq-nf): bits must be 2..4 on the GPU";
  }
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_absmax_mean(const float* absmax, size_t nb, void* work) {
  absmax_mean_kernel<<<1, 1024>>>(absmax, nb, static_cast<float*>(work));
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_tau_dq(const float* tau, size_t nb, const float* dynmap, uint8_t* q, float* scale) {
  if (nb == 0) return nullptr;
  tau_dq_kernel<<<warp_grid((nb + 255) / 256), kThreads>>>(tau, nb, dynmap, q, scale);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_pack_codes(const uint8_t* codes, size_t n, int bits, uint8_t* packed) {
  if (bits < 1 || bits > 8) return "pack: bits must be 1..8";
  if (n == 0) return nullptr;
  const size_t threads = (n + 7) / 8;
  pack_kernel<<<(unsigned)((threads + 255) / 256), 256>>>(codes, n, bits, packed, (n * bits + 7) / 8);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

}  // namespace lowbit
