// Matmul on a packed weight for many tokens (the fused Hopper kernel of qgemm_wgmma.cu where it applies, else
// dequantize into a bf16 scratch, then the cuBLAS bf16 GEMM, fp32 accumulate), and the event-timed benchmarks of
// the packed-weight kernels.
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "check.h"
#include "cublas_dl.h"
#include "lowbit_cuda.h"

namespace lowbit {

namespace {
// LOWBIT_QGEMM_FUSED=0 forces dequantize + cuBLAS; read on every call so one process can time both paths.
bool fused_allowed() {
  const char* e = std::getenv("LOWBIT_QGEMM_FUSED");
  return !(e && e[0] == '0' && e[1] == 0);
}
// Largest M the fused kernel takes (above it the dequantization is amortized and cuBLAS's larger tiles win):
// LOWBIT_QGEMM_FUSED_MAX_M (a decimal integer) or kQGemmFusedMaxM.
int fused_max_m() {
  const char* e = std::getenv("LOWBIT_QGEMM_FUSED_MAX_M");
  if (e && *e) {
    char* end = nullptr;
    const long v = std::strtol(e, &end, 10);
    if (end && !*end && v >= 0 && v <= 0x7fffffff) return (int)v;
  }
  return kQGemmFusedMaxM;
}
}  // namespace

const char* cuda_qgemm(const QDesc& d, int M, const void* X, void* Y, bool y_f32, void* scratch) {
  // Below 64 tokens a 128-token tile is mostly padding; the dequantized weight + cuBLAS wins there. The fused path
  // needs the repacked stream (the kernel on the original codes measured slower than dequantize + cuBLAS).
  if (d.fused && M >= 64 && M <= fused_max_m() && fused_allowed() && !qgemm_fused_unsupported(d, M, X, Y))
    return cuda_qgemm_fused(d, M, X, Y, y_f32, nullptr);
  if (const char* e = cuda_dequant_bf16(d, scratch, nullptr)) return e;
  // Row-major Y[M, out] = X[M, in] · Ŵ[out, in]ᵀ
  return cublas_gemm_bf16(false, true, M, d.out, d.in, 1.f, X, scratch, 0.f, Y, y_f32);
}

namespace {

// Owns the stream, events and graph of one measurement; puts cuBLAS back on the default stream.
struct Bench {
  cudaStream_t s = nullptr;
  std::vector<cudaEvent_t> ev;
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  const CublasApi* api = nullptr;
  ~Bench() {
    if (api) api->set_stream(api->handle, cudaStreamPerThread);
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    for (auto e : ev) cudaEventDestroy(e);
    if (s) cudaStreamDestroy(s);
  }
};

// Times `pass` (enqueues one pass on the stream; returns an error or nullptr): 2 warmup passes, then `reps`
// passes separated by events (as one captured graph each when `graph`, which removes launch gaps);
// *ms = median pass time.
template <class F>
const char* time_passes(Bench& b, F&& pass, bool graph, int reps, double* ms) {
  if (reps < 1) reps = 1;
  LB_CUDA(cudaDeviceSynchronize());  // fills/uploads on the legacy stream do not order with a non-blocking one
  LB_CUDA(cudaStreamCreateWithFlags(&b.s, cudaStreamNonBlocking));
  if (b.api) {
    if (cublasStatus_t st = b.api->set_stream(b.api->handle, b.s)) return cublas_err("cublasSetStream_v2", st);
  }
  const char* err;
  for (int i = 0; i < 2; i++)
    if ((err = pass(b.s))) return err;
  LB_CUDA(cudaStreamSynchronize(b.s));
  if (graph) {
    LB_CUDA(cudaStreamBeginCapture(b.s, cudaStreamCaptureModeThreadLocal));
    err = pass(b.s);
    const cudaError_t ce = cudaStreamEndCapture(b.s, &b.g);
    if (err) return err;
    LB_CUDA(ce);
    LB_CUDA(cudaGraphInstantiate(&b.ge, b.g, 0));
    LB_CUDA(cudaGraphLaunch(b.ge, b.s));
    LB_CUDA(cudaStreamSynchronize(b.s));
  }
  b.ev.resize(reps + 1);
  for (auto& e : b.ev) LB_CUDA(cudaEventCreate(&e));
  LB_CUDA(cudaEventRecord(b.ev[0], b.s));
  for (int i = 0; i < reps; i++) {
    if (graph) LB_CUDA(cudaGraphLaunch(b.ge, b.s));
    else if ((err = pass(b.s))) return err;
    LB_CUDA(cudaEventRecord(b.ev[i + 1], b.s));
  }
  LB_CUDA(cudaEventSynchronize(b.ev[reps]));
  LB_CUDA(cudaGetLastError());
  std::vector<float> t(reps);
  for (int i = 0; i < reps; i++) LB_CUDA(cudaEventElapsedTime(&t[i], b.ev[i], b.ev[i + 1]));
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  *ms = t[reps / 2];
  return nullptr;
}

const char* with_cublas(Bench& b) {
  const char* err = nullptr;
  b.api = cublas_api(&err);
  return b.api ? nullptr : err;
}

}  // namespace

const char* cuda_bench_dequant(const QDesc* d, int nd, void* dst, size_t dst_stride, int reps, double* ms) {
  Bench b;
  auto pass = [&](cudaStream_t s) -> const char* {
    for (int i = 0; i < nd; i++)
      if (const char* e = cuda_dequant_bf16(d[i], static_cast<char*>(dst) + i * dst_stride, s)) return e;
    return nullptr;
  };
  const char* err = time_passes(b, pass, false, reps, ms);
  *ms /= nd;
  return err;
}

const char* cuda_bench_copy(void* dst, const void* src, size_t bytes, int reps, double* ms) {
  Bench b;
  auto pass = [&](cudaStream_t s) -> const char* {
    LB_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
    return nullptr;
  };
  return time_passes(b, pass, false, reps, ms);
}

const char* cuda_bench_qgemm(const QDesc* d, int nd, int M, const void* X, void* Y, void* scratch, int reps,
                             double* ms) {
  Bench b;
  if (const char* e = with_cublas(b)) return e;
  auto pass = [&](cudaStream_t s) -> const char* {
    for (int i = 0; i < nd; i++) {
      if (const char* e = cuda_dequant_bf16(d[i], scratch, s)) return e;
      if (const char* e = cublas_gemm_bf16(false, true, M, d[i].out, d[i].in, 1.f, X, scratch, 0.f, Y, false)) return e;
    }
    return nullptr;
  };
  const char* err = time_passes(b, pass, false, reps, ms);
  *ms /= nd;
  return err;
}

// Layer-stack prefill: the dequantization of weight i+1 (second stream, double-buffered scratch) overlaps the
// GEMM of weight i. scratch holds two bf16 weights.
const char* cuda_bench_qgemm_pipelined(const QDesc* d, int nd, int M, const void* X, void* Y, void* scratch,
                                       size_t scratch_half_bytes, int reps, double* ms) {
  Bench b;
  if (const char* e = with_cublas(b)) return e;
  struct Aux {
    cudaStream_t s2 = nullptr;
    std::vector<cudaEvent_t> ev;
    ~Aux() {
      for (auto e : ev) cudaEventDestroy(e);
      if (s2) cudaStreamDestroy(s2);
    }
  } x;
  LB_CUDA(cudaStreamCreateWithFlags(&x.s2, cudaStreamNonBlocking));
  x.ev.resize(2 * nd + 1);  // [0, nd): dequant i done, [nd, 2nd): GEMM i done, [2nd]: pass start
  for (auto& e : x.ev) LB_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  char* sc[2] = {static_cast<char*>(scratch), static_cast<char*>(scratch) + scratch_half_bytes};
  auto pass = [&](cudaStream_t s) -> const char* {
    LB_CUDA(cudaEventRecord(x.ev[2 * nd], s));  // everything before this pass is done on s
    LB_CUDA(cudaStreamWaitEvent(x.s2, x.ev[2 * nd], 0));
    for (int i = 0; i < nd; i++) {
      if (i >= 2) LB_CUDA(cudaStreamWaitEvent(x.s2, x.ev[nd + i - 2], 0));  // scratch[i%2] consumed
      if (const char* e = cuda_dequant_bf16(d[i], sc[i & 1], x.s2)) return e;
      LB_CUDA(cudaEventRecord(x.ev[i], x.s2));
      LB_CUDA(cudaStreamWaitEvent(s, x.ev[i], 0));
      if (const char* e = cublas_gemm_bf16(false, true, M, d[i].out, d[i].in, 1.f, X, sc[i & 1], 0.f, Y, false)) return e;
      LB_CUDA(cudaEventRecord(x.ev[nd + i], s));
    }
    return nullptr;
  };
  const char* err = time_passes(b, pass, false, reps, ms);
  *ms /= nd;
  return err;
}

const char* cuda_bench_qgemm_fused(const QDesc* d, int nd, int M, const void* X, void* Y, int reps, double* ms,
                                   int variant) {
  for (int i = 0; i < nd; i++)
    if (const char* why = qgemm_fused_unsupported(d[i], M, X, Y)) return why;
  Bench b;
  auto pass = [&](cudaStream_t s) -> const char* {
    for (int i = 0; i < nd; i++)
      if (const char* e = cuda_qgemm_fused(d[i], M, X, Y, false, s, 0, variant)) return e;
    return nullptr;
  };
  const char* err = time_passes(b, pass, false, reps, ms);
  *ms /= nd;
  return err;
}

const char* cuda_bench_dense_gemm(const void* const* W, int nd, int M, int N, int K, const void* X, void* Y, int reps,
                                  double* ms) {
  Bench b;
  if (const char* e = with_cublas(b)) return e;
  auto pass = [&](cudaStream_t) -> const char* {
    for (int i = 0; i < nd; i++)
      if (const char* e = cublas_gemm_bf16(false, true, M, N, K, 1.f, X, W[i], 0.f, Y, false)) return e;
    return nullptr;
  };
  const char* err = time_passes(b, pass, false, reps, ms);
  *ms /= nd;
  return err;
}

const char* cuda_bench_qgemv(const QDesc* d, int nd, const float* x, float* y, int reps, double* ms, int variant) {
  Bench b;
  auto pass = [&](cudaStream_t s) -> const char* {
    size_t off = 0;
    for (int i = 0; i < nd; i++) {
      if (const char* e = cuda_qgemv(d[i], x, y + off, false, s, variant)) return e;
      off += d[i].out;
    }
    return nullptr;
  };
  const char* err = time_passes(b, pass, true, reps, ms);
  *ms /= nd;
  return err;
}

const char* cuda_bench_decode(const QDesc* d, int nd, const void* const* A, const void* const* B, int rank,
                              const float* x, float* y, float* t, int reps, double* ms) {
  Bench b;
  auto pass = [&](cudaStream_t s) -> const char* {
    size_t off = 0;
    for (int i = 0; i < nd; i++) {
      if (const char* e = cuda_qgemv(d[i], x, y + off, false, s)) return e;
      if (A && A[i]) {
        if (const char* e = cuda_gemv_bf16(A[i], rank, d[i].in, x, t, false, s)) return e;
        if (const char* e = cuda_gemv_bf16(B[i], d[i].out, rank, t, y + off, true, s)) return e;
      }
      off += d[i].out;
    }
    return nullptr;
  };
  return time_passes(b, pass, true, reps, ms);
}

}  // namespace lowbit
