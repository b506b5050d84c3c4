// Blocked, packed SGEMM in the GotoBLAS/BLIS style:
//   for jc (NC columns of C) / for pc (KC of K): pack op(B) block into NR-wide panels
//     for ic (MC rows): pack op(A) block into MR-tall panels
//       for jr / ir: MR x NR register micro-kernel over KC.
// Packing makes every transpose combination look the same to the micro-kernel (unit-stride loads),
// keeps the B micro-panel in L1 and the A block in L2. C is split into one rectangle per thread; each
// thread packs privately, so there is no synchronisation inside the loops.
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "kernels.h"
#include "simd.h"
#include "threadpool.h"

namespace lowbit {
namespace {

#if defined(__AVX512F__)
constexpr int MR = 12, NV = 2;  // 24 zmm accumulators + 2 B vectors + 1 broadcast of the 32 registers
#elif defined(__AVX__)
constexpr int MR = 6, NV = 2;   // 12 ymm accumulators of 16 registers
#else
constexpr int MR = 4, NV = 2;
#endif
constexpr int NR = NV * VW;
// Measured on the dev machine (Xeon family 6 model 207, 48 KiB L1d, 2 MiB L2): KC 128..384, MC 16..85 MR and
// NC 16..128 NR were all within noise of each other; single-core ~120-145 GFLOP/s vs OpenBLAS ~150.
constexpr int KC = 256;             // B micro-panel KC*NR*4 bytes = 32 KiB with AVX-512: fits L1
constexpr int MC = MR * 24;         // A block MC*KC*4 = 288 KiB (AVX-512): well inside L2
constexpr int NC = NR * 128;        // B block KC*NC*4 = 4 MiB: L2/L3

// Owned, 64-byte-aligned scratch reused by each thread across calls.
struct Scratch {
  float* p = nullptr;
  size_t n = 0;
  float* get(size_t want) {
    if (want > n) {
      std::free(p);
      p = static_cast<float*>(std::aligned_alloc(64, ((want * 4 + 63) / 64) * 64));
      n = want;
    }
    return p;
  }
  ~Scratch() { std::free(p); }
};
thread_local Scratch tl_a, tl_b;

// Pack op(A)[i0:i0+mc, p0:p0+kc] as MR-row panels: dst[panel][k][r]; rows past mc are zero.
void pack_a(bool ta, const float* A, int64_t lda, int64_t i0, int mc, int64_t p0, int kc, float* dst) {
  for (int ip = 0; ip < mc; ip += MR) {
    const int mr = std::min(MR, mc - ip);
    float* d = dst + (int64_t)ip * kc;
    if (ta) {  // A[K,M]: the MR values of one k are contiguous
      for (int k = 0; k < kc; k++) {
        const float* s = A + (p0 + k) * lda + i0 + ip;
        int r = 0;
        for (; r < mr; r++) d[k * MR + r] = s[r];
        for (; r < MR; r++) d[k * MR + r] = 0.f;
      }
    } else {  // A[M,K]: walk each row along k
      for (int r = 0; r < mr; r++) {
        const float* s = A + (i0 + ip + r) * lda + p0;
        for (int k = 0; k < kc; k++) d[k * MR + r] = s[k];
      }
      for (int r = mr; r < MR; r++)
        for (int k = 0; k < kc; k++) d[k * MR + r] = 0.f;
    }
  }
}

// Pack op(B)[p0:p0+kc, j0:j0+nc] as NR-column panels: dst[panel][k][c]; columns past nc are zero.
void pack_b(bool tb, const float* B, int64_t ldb, int64_t p0, int kc, int64_t j0, int nc, float* dst) {
  for (int jp = 0; jp < nc; jp += NR) {
    const int nr = std::min(NR, nc - jp);
    float* d = dst + (int64_t)jp * kc;
    if (!tb) {  // B[K,N]: NR contiguous values per k
      for (int k = 0; k < kc; k++) {
        const float* s = B + (p0 + k) * ldb + j0 + jp;
        if (nr == NR) {
          for (int v = 0; v < NV; v++) vstore(d + k * NR + v * VW, vload(s + v * VW));
        } else {
          int c = 0;
          for (; c < nr; c++) d[k * NR + c] = s[c];
          for (; c < NR; c++) d[k * NR + c] = 0.f;
        }
      }
    } else {  // B[N,K]: each column of op(B) is a contiguous row of B
      for (int c = 0; c < nr; c++) {
        const float* s = B + (j0 + jp + c) * ldb + p0;
        for (int k = 0; k < kc; k++) d[k * NR + c] = s[k];
      }
      for (int c = nr; c < NR; c++)
        for (int k = 0; k < kc; k++) d[k * NR + c] = 0.f;
    }
  }
}

// acc = sum_k a[k][0:MR] (outer) b[k][0:NR]; then C = alpha*acc + beta*C on the valid mr x nr part.
// beta == 0 stores without reading C.
inline void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                         float alpha, float beta, int mr, int nr) {
  vf acc[MR][NV];
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++) acc[i][v] = vf{};
#pragma GCC unroll 4  // a few % over the plain loop (more loads in flight per iteration)
  for (int k = 0; k < kc; k++) {
    vf bv[NV];
    for (int v = 0; v < NV; v++) bv[v] = *reinterpret_cast<const vf*>(b + v * VW);  // packed: aligned
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      const float ai = a[i];
      for (int v = 0; v < NV; v++) acc[i][v] += bv[v] * ai;
    }
    a += MR;
    b += NR;
  }
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; i++) {
      float* ci = c + i * ldc;
      for (int v = 0; v < NV; v++) {
        vf r = acc[i][v] * alpha;
        if (beta != 0.f) r += vload(ci + v * VW) * beta;
        vstore(ci + v * VW, r);
      }
    }
  } else {
    alignas(64) float tile[MR][NR];
    for (int i = 0; i < MR; i++)
      for (int v = 0; v < NV; v++) vstore(&tile[i][v * VW], acc[i][v]);
    for (int i = 0; i < mr; i++)
      for (int j = 0; j < nr; j++)
        c[i * ldc + j] = alpha * tile[i][j] + (beta != 0.f ? beta * c[i * ldc + j] : 0.f);
  }
}

struct Gemm {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;

  // The Goto loop nest over the C rectangle [m0,m1) x [n0,n1).
  void tile(int64_t m0, int64_t m1, int64_t n0, int64_t n1) const {
    float* bp = tl_b.get((size_t)KC * std::min<int64_t>(NC, ((n1 - n0 + NR - 1) / NR) * NR));
    float* ap = tl_a.get((size_t)KC * MC);
    for (int64_t jc = n0; jc < n1; jc += NC) {
      const int nc = (int)std::min<int64_t>(NC, n1 - jc);
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int kc = (int)std::min<int64_t>(KC, K - pc);
        const float beta_eff = pc == 0 ? beta : 1.f;  // later K blocks accumulate onto the first
        pack_b(tb, B, ldb, pc, kc, jc, nc, bp);
        for (int64_t ic = m0; ic < m1; ic += MC) {
          const int mc = (int)std::min<int64_t>(MC, m1 - ic);
          pack_a(ta, A, lda, ic, mc, pc, kc, ap);
          for (int jr = 0; jr < nc; jr += NR)
            for (int ir = 0; ir < mc; ir += MR)
              micro_kernel(kc, ap + (int64_t)ir * kc, bp + (int64_t)jr * kc, C + (ic + ir) * ldc + jc + jr, ldc,
                           alpha, beta_eff, std::min(MR, mc - ir), std::min(NR, nc - jr));
        }
      }
    }
  }
};

// C = beta*C (the K == 0 or alpha == 0 case), without reading C when beta == 0.
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
}

// Few rows (decode-time GEMV): packing B would triple its memory traffic, so compute directly,
// split over columns of C.
void small_m(const Gemm& g, bool threaded) {
  const int64_t M = g.M, N = g.N, K = g.K;
  std::vector<float> arow((size_t)K);
  const int T = threaded ? pool_threads() : 1;
  const int64_t chunk = T == 1 ? N : std::max<int64_t>(64, (N + T * 4 - 1) / (T * 4));
  const int ntasks = (int)((N + chunk - 1) / chunk);
  for (int64_t i = 0; i < M; i++) {
    for (int64_t k = 0; k < K; k++) arow[k] = g.ta ? g.A[k * g.lda + i] : g.A[i * g.lda + k];
    const float* a = arow.data();
    float* c = g.C + i * g.ldc;
    auto body = [&](int t) {
      const int64_t j0 = t * chunk, j1 = std::min(N, j0 + chunk);
      if (g.tb) {  // c[j] = a . B[j,:], four rows of B at a time: one load of a feeds 4 independent FMAs
        auto put = [&](int64_t j, float r) { c[j] = g.alpha * r + (g.beta != 0.f ? g.beta * c[j] : 0.f); };
        int64_t j = j0;
        for (; j + 4 <= j1; j += 4) {
          const float *b0 = g.B + j * g.ldb, *b1 = b0 + g.ldb, *b2 = b1 + g.ldb, *b3 = b2 + g.ldb;
          vf s0 = vf{}, s1 = vf{}, s2 = vf{}, s3 = vf{};
          int64_t k = 0;
          for (; k + VW <= K; k += VW) {
            const vf av = vload(a + k);
            s0 += av * vload(b0 + k), s1 += av * vload(b1 + k), s2 += av * vload(b2 + k), s3 += av * vload(b3 + k);
          }
          float r0 = vsum(s0), r1 = vsum(s1), r2 = vsum(s2), r3 = vsum(s3);
          for (; k < K; k++) r0 += a[k] * b0[k], r1 += a[k] * b1[k], r2 += a[k] * b2[k], r3 += a[k] * b3[k];
          put(j, r0), put(j + 1, r1), put(j + 2, r2), put(j + 3, r3);
        }
        for (; j < j1; j++) {
          const float* b = g.B + j * g.ldb;
          vf s = vf{};
          int64_t k = 0;
          for (; k + VW <= K; k += VW) s += vload(a + k) * vload(b + k);
          float r = vsum(s);
          for (; k < K; k++) r += a[k] * b[k];
          put(j, r);
        }
      } else {  // c[j0:j1] = sum_k a[k] * B[k, j0:j1]
        std::vector<float> acc((size_t)(j1 - j0), 0.f);
        for (int64_t k = 0; k < K; k++) {
          const float ak = a[k];
          const float* b = g.B + k * g.ldb + j0;
          for (int64_t j = 0; j < j1 - j0; j++) acc[j] += ak * b[j];
        }
        for (int64_t j = j0; j < j1; j++) c[j] = g.alpha * acc[j - j0] + (g.beta != 0.f ? g.beta * c[j] : 0.f);
      }
    };
    if (ntasks > 1) parallel_for(ntasks, body);
    else body(0);
  }
}

}  // namespace

void sgemm_ex(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc, bool threaded) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) return scale_c(M, N, beta, C, ldc);
  const Gemm g{ta, tb, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc};
  if (M < 4) return small_m(g, threaded);

  // Split C into one rectangle per thread (sm x sn grid, in whole micro-tiles) minimising the largest
  // tile plus its packing traffic; tiny problems stay on the calling thread. (Two tiles per thread, for
  // dynamic balance on a shared machine, measured slower here: every extra tile re-packs its operands.)
  const int T = threaded ? pool_threads() : 1;
  const double flops = 2.0 * M * N * K;
  int tasks = flops < 2.0 * 64 * 64 * 64 ? 1 : T;
  const int64_t mt = (M + MR - 1) / MR, nt = (N + NR - 1) / NR;
  int best_sm = 0;
  double best = 1e300;
  while (tasks > 1 && best_sm == 0) {
    for (int sm = 1; sm <= tasks; sm++) {
      const int sn = tasks / sm;
      if (tasks % sm || sm > mt || sn > nt) continue;
      const double tm = (double)((mt + sm - 1) / sm) * MR, tn = (double)((nt + sn - 1) / sn) * NR;
      const double cost = tm * tn * K + 4.0 * (tm + tn) * K;  // FMAs + a rough packing charge
      if (cost < best) best = cost, best_sm = sm;
    }
    if (best_sm == 0) tasks--;  // no sm x sn grid of whole micro-tiles: try fewer tasks
  }
  if (tasks <= 1) return g.tile(0, M, 0, N);
  const int sm = best_sm, sn = tasks / sm;
  const int64_t tm = (mt + sm - 1) / sm, tn = (nt + sn - 1) / sn;
  parallel_for(tasks, [&](int t) {
    const int64_t m0 = std::min(M, (t / sn) * tm * MR), m1 = std::min(M, m0 + tm * MR);
    const int64_t n0 = std::min(N, (t % sn) * tn * NR), n1 = std::min(N, n0 + tn * NR);
    if (m0 < m1 && n0 < n1) g.tile(m0, m1, n0, n1);
  });
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B,
           float beta, float* C) {
  sgemm_ex(ta, tb, M, N, K, alpha, A, ta ? M : K, B, tb ? K : N, beta, C, N, true);
}

const char* simd_name() { return LOWBIT_SIMD; }

}  // namespace lowbit
