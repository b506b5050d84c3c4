// JS bindings of the CUDA part. Device buffers are numeric handles into a table that remembers each
// buffer's size, so uploads/downloads/GEMMs are bounds-checked before any pointer reaches CUDA.
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>
#include <algorithm>

#include "../cpu/napi_util.h"
#include "lowbit_cuda.h"
#include "napi_cuda.h"

namespace lowbit {

// ---- the buffer table (napi_cuda.h): shared by every N-API file of the CUDA part ----
std::unordered_map<uint32_t, Buf> g_bufs;
uint32_t g_next = 1;
std::mutex g_mu;

bool cuda_check(napi_env env, const char* err) {
  if (err) throw_error(env, err);
  return err == nullptr;
}

bool cuda_buf_arg(Args& a, size_t i, size_t need, Buf* out) {
  int64_t h = 0;
  if (!a.count(i, &h)) return false;
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_bufs.find((uint32_t)h);
  if (it == g_bufs.end()) {
    throw_error(a.env, std::string(a.fn) + ": argument " + std::to_string(i) + " is not a live CUDA buffer");
    return false;
  }
  if (it->second.bytes < need) {
    throw_error(a.env, std::string(a.fn) + ": buffer " + std::to_string(h) + " has " +
                           std::to_string(it->second.bytes) + " bytes, needs " + std::to_string(need));
    return false;
  }
  *out = it->second;
  return true;
}

bool cuda_opt_buf_arg(Args& a, size_t i, size_t need, Buf* out) {
  if (a.is_nullish(i)) { *out = Buf{nullptr, 0, false}; return true; }
  return cuda_buf_arg(a, i, need, out);
}

bool cuda_int_dim(Args& a, size_t i, int64_t* out) {
  if (!a.count(i, out)) return false;
  if (*out > 0x7fffffff) return a.fail(i, "below 2^31");
  return true;
}

namespace {

bool check(napi_env env, const char* err) { return cuda_check(env, err); }
bool buf_arg(Args& a, size_t i, size_t need, Buf* out) { return cuda_buf_arg(a, i, need, out); }

// cudaInfo() -> { deviceCount, deviceName?, computeCapability?, smCount?, error? }
napi_value js_info(napi_env env, napi_callback_info) {
  int count = 0, major = 0, minor = 0, sms = 0;
  char name[256] = {0};
  const char* err = cuda_device_info(&count, name, sizeof name, &major, &minor, &sms);
  napi_value o;
  napi_create_object(env, &o);
  set_prop(env, o, "deviceCount", make_number(env, count));
  if (count > 0) {
    set_prop(env, o, "deviceName", make_string(env, name));
    set_prop(env, o, "computeCapability", make_string(env, std::to_string(major) + "." + std::to_string(minor)));
    set_prop(env, o, "smCount", make_number(env, sms));
  }
  if (err) set_prop(env, o, "error", make_string(env, err));
  return o;
}

// cublasInfo() -> { loaded, version?, error? }  (loads cuBLAS on first call)
napi_value js_cublas_info(napi_env env, napi_callback_info) {
  int version = 0;
  const char* err = cublas_load(&version);
  napi_value o;
  napi_create_object(env, &o);
  set_prop(env, o, "loaded", make_bool(env, err == nullptr));
  if (!err) set_prop(env, o, "version", make_number(env, version));
  else set_prop(env, o, "error", make_string(env, err));
  return o;
}

// cudaAlloc(bytes) -> handle
napi_value js_alloc(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaAlloc");
  int64_t bytes = 0;
  if (!a.count(0, &bytes)) return nullptr;
  void* p = nullptr;
  if (!check(env, cuda_alloc((size_t)bytes, &p))) return nullptr;
  std::lock_guard<std::mutex> lk(g_mu);
  const uint32_t h = g_next++;
  g_bufs[h] = Buf{p, (size_t)bytes, false};
  return make_number(env, h);
}

// cudaView(handle, byteOffset, bytes) -> handle of a window into the buffer (no allocation). The TS side
// carves one allocation into named views (llm.c style) and frees views before their parent.
napi_value js_view(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaView");
  int64_t off = 0, bytes = 0;
  Buf b;
  if (!a.count(1, &off) || !a.count(2, &bytes) || !buf_arg(a, 0, (size_t)(off + bytes), &b)) return nullptr;
  std::lock_guard<std::mutex> lk(g_mu);
  const uint32_t h = g_next++;
  g_bufs[h] = Buf{static_cast<char*>(b.ptr) + off, (size_t)bytes, true};
  return make_number(env, h);
}

// cudaMemset0(handle, bytes?) zeroes the first `bytes` (default: all) of a buffer.
napi_value js_memset0(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaMemset0");
  int64_t bytes = -1;
  Buf b;
  if (!a.is_nullish(1) && !a.count(1, &bytes)) return nullptr;
  if (!buf_arg(a, 0, bytes < 0 ? 0 : (size_t)bytes, &b)) return nullptr;
  check(env, cuda_memset0(b.ptr, bytes < 0 ? b.bytes : (size_t)bytes));
  return nullptr;
}

// cudaCopy(dst, src, bytes, dstOffset = 0, srcOffset = 0): device-to-device, stream-ordered.
napi_value js_copy(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaCopy");
  int64_t bytes = 0, doff = 0, soff = 0;
  Buf d, s;
  if (!a.count(2, &bytes) || (!a.is_nullish(3) && !a.count(3, &doff)) || (!a.is_nullish(4) && !a.count(4, &soff)) ||
      !buf_arg(a, 0, (size_t)(doff + bytes), &d) || !buf_arg(a, 1, (size_t)(soff + bytes), &s))
    return nullptr;
  check(env, cuda_copy_d2d(static_cast<char*>(d.ptr) + doff, static_cast<char*>(s.ptr) + soff, (size_t)bytes));
  return nullptr;
}

// cudaMemInfo() -> { free, total } bytes; cudaPeakReset()/cudaPeak(): high-water mark of live cudaAlloc bytes.
napi_value js_meminfo(napi_env env, napi_callback_info) {
  size_t fr = 0, tot = 0;
  if (!check(env, cuda_mem_info(&fr, &tot))) return nullptr;
  napi_value o;
  napi_create_object(env, &o);
  set_prop(env, o, "free", make_number(env, (double)fr));
  set_prop(env, o, "total", make_number(env, (double)tot));
  return o;
}

// cudaFree(handle)
napi_value js_free(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaFree");
  Buf b;
  int64_t h = 0;
  if (!buf_arg(a, 0, 0, &b) || !a.count(0, &h)) return nullptr;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    g_bufs.erase((uint32_t)h);
  }
  if (!b.view) check(env, cuda_free(b.ptr));
  return nullptr;
}

// cudaUpload(handle, typedArray, byteOffset = 0) / cudaDownload(handle, typedArray, byteOffset = 0)
napi_value transfer(napi_env env, napi_callback_info info, bool up) {
  Args a(env, info, up ? "cudaUpload" : "cudaDownload");
  void* host;
  size_t bytes = 0;
  int64_t off = 0;
  if (!a.bytes(1, &host, &bytes) || (!a.is_nullish(2) && !a.count(2, &off))) return nullptr;
  Buf b;
  if (!buf_arg(a, 0, (size_t)off + bytes, &b)) return nullptr;
  char* dev = static_cast<char*>(b.ptr) + off;
  check(env, up ? cuda_upload(dev, host, bytes) : cuda_download(host, dev, bytes));
  return nullptr;
}
napi_value js_upload(napi_env env, napi_callback_info info) { return transfer(env, info, true); }
napi_value js_download(napi_env env, napi_callback_info info) { return transfer(env, info, false); }

napi_value js_sync(napi_env env, napi_callback_info) {
  check(env, cuda_sync());
  return nullptr;
}

// cudaConvertF32ToBf16(dstHandle, srcHandle, n) / cudaConvertBf16ToF32(dstHandle, srcHandle, n)
napi_value convert(napi_env env, napi_callback_info info, bool to_bf16) {
  Args a(env, info, to_bf16 ? "cudaConvertF32ToBf16" : "cudaConvertBf16ToF32");
  int64_t n = 0;
  Buf dst, src;
  if (!a.count(2, &n) || !buf_arg(a, 0, n * (to_bf16 ? 2 : 4), &dst) || !buf_arg(a, 1, n * (to_bf16 ? 4 : 2), &src))
    return nullptr;
  check(env, to_bf16 ? cuda_f32_to_bf16(dst.ptr, src.ptr, n) : cuda_bf16_to_f32(dst.ptr, src.ptr, n));
  return nullptr;
}
napi_value js_to_bf16(napi_env env, napi_callback_info info) { return convert(env, info, true); }
napi_value js_to_f32(napi_env env, napi_callback_info info) { return convert(env, info, false); }

bool int_dim(Args& a, size_t i, int64_t* out) { return cuda_int_dim(a, i, out); }

// cublasGemmBf16(transA, transB, M, N, K, A, B, C, alpha, beta, cF32)
napi_value js_gemm(napi_env env, napi_callback_info info) {
  Args a(env, info, "cublasGemmBf16");
  bool ta, tb, cf32;
  int64_t M = 0, N = 0, K = 0;
  double alpha = 0, beta = 0;
  Buf A, B, C;
  if (!a.boolean(0, &ta) || !a.boolean(1, &tb) || !int_dim(a, 2, &M) || !int_dim(a, 3, &N) ||
      !int_dim(a, 4, &K) || !a.number(8, &alpha) || !a.number(9, &beta) || !a.boolean(10, &cf32) ||
      !buf_arg(a, 5, M * K * 2, &A) || !buf_arg(a, 6, K * N * 2, &B) || !buf_arg(a, 7, M * N * (cf32 ? 4 : 2), &C))
    return nullptr;
  check(env, cublas_gemm_bf16(ta, tb, M, N, K, (float)alpha, A.ptr, B.ptr, (float)beta, C.ptr, cf32));
  return nullptr;
}

// cublasGemmBf16Batched(transA, transB, M, N, K, A, B, C, alpha, beta, cF32, batch, strideA, strideB, strideC)
// Strides in elements; each buffer must hold (batch-1)*stride + its matrix.
napi_value js_gemm_batched(napi_env env, napi_callback_info info) {
  Args a(env, info, "cublasGemmBf16Batched");
  bool ta = false, tb = false, cf32 = false;
  int64_t M = 0, N = 0, K = 0, batch = 0, sA = 0, sB = 0, sC = 0;
  double alpha = 0, beta = 0;
  Buf A, B, C;
  if (!a.boolean(0, &ta) || !a.boolean(1, &tb) || !int_dim(a, 2, &M) || !int_dim(a, 3, &N) ||
      !int_dim(a, 4, &K) || !a.number(8, &alpha) || !a.number(9, &beta) || !a.boolean(10, &cf32) ||
      !int_dim(a, 11, &batch) || !a.count(12, &sA) || !a.count(13, &sB) || !a.count(14, &sC))
    return nullptr;
  if (batch == 0) return nullptr;
  const int64_t cEl = cf32 ? 4 : 2;
  if (!buf_arg(a, 5, ((batch - 1) * sA + M * K) * 2, &A) || !buf_arg(a, 6, ((batch - 1) * sB + K * N) * 2, &B) ||
      !buf_arg(a, 7, ((batch - 1) * sC + M * N) * cEl, &C))
    return nullptr;
  check(env, cublas_gemm_bf16_batched(ta, tb, M, N, K, (float)alpha, A.ptr, sA, B.ptr, sB, (float)beta, C.ptr, sC,
                                      batch, cf32));
  return nullptr;
}

// cublasGemmBf16Ex(transA, transB, M, N, K, A, aOff, lda, B, bOff, ldb, C, cOff, ldc, alpha, beta, cF32)
// Row-major with explicit leading dimensions and element offsets into each buffer (column blocks of wider
// matrices). Each operand's extent (off + (rows−1)·ld + cols elements) is checked against its buffer.
napi_value js_gemm_ex(napi_env env, napi_callback_info info) {
  Args a(env, info, "cublasGemmBf16Ex");
  bool ta = false, tb = false, cf32 = false;
  int64_t M = 0, N = 0, K = 0, ao = 0, lda = 0, bo = 0, ldb = 0, co = 0, ldc = 0;
  double alpha = 0, beta = 0;
  Buf A, B, C;
  if (!a.boolean(0, &ta) || !a.boolean(1, &tb) || !int_dim(a, 2, &M) || !int_dim(a, 3, &N) || !int_dim(a, 4, &K) ||
      !a.count(6, &ao) || !int_dim(a, 7, &lda) || !a.count(9, &bo) || !int_dim(a, 10, &ldb) || !a.count(12, &co) ||
      !int_dim(a, 13, &ldc) || !a.number(14, &alpha) || !a.number(15, &beta) || !a.boolean(16, &cf32))
    return nullptr;
  // stored shapes (row-major): A is [M,K] or, transposed, [K,M]; B is [K,N] or [N,K]; C is [M,N]
  const int64_t aRows = ta ? K : M, aCols = ta ? M : K, bRows = tb ? N : K, bCols = tb ? K : N;
  if (lda < aCols || ldb < bCols || ldc < N) return throw_error(env, "cublasGemmBf16Ex: a leading dimension is smaller than its row");
  auto extent = [](int64_t off, int64_t rows, int64_t ld, int64_t cols) { return rows == 0 ? off : off + (rows - 1) * ld + cols; };
  if (!buf_arg(a, 5, extent(ao, aRows, lda, aCols) * 2, &A) || !buf_arg(a, 8, extent(bo, bRows, ldb, bCols) * 2, &B) ||
      !buf_arg(a, 11, extent(co, M, ldc, N) * (cf32 ? 4 : 2), &C))
    return nullptr;
  check(env, cublas_gemm_bf16_ld(ta, tb, M, N, K, (float)alpha, static_cast<const char*>(A.ptr) + ao * 2, (int)lda,
                                 static_cast<const char*>(B.ptr) + bo * 2, (int)ldb, (float)beta,
                                 static_cast<char*>(C.ptr) + co * (cf32 ? 4 : 2), (int)ldc, cf32));
  return nullptr;
}

// cublasGemmBf16SplitK(transB, M, N, K, A, aOff, lda, B, bOff, ldb, C, cOff, ldc, alpha, beta, cF32, splits, work)
// C = alpha·A·op(B) + beta·C with K in `splits` slices (work: f32 [splits·M·N]); A is never transposed.
napi_value js_gemm_splitk(napi_env env, napi_callback_info info) {
  Args a(env, info, "cublasGemmBf16SplitK");
  bool tb = false, cf32 = false;
  int64_t M = 0, N = 0, K = 0, ao = 0, lda = 0, bo = 0, ldb = 0, co = 0, ldc = 0, splits = 0;
  double alpha = 0, beta = 0;
  Buf A, B, C, W;
  if (!a.boolean(0, &tb) || !int_dim(a, 1, &M) || !int_dim(a, 2, &N) || !int_dim(a, 3, &K) || !a.count(5, &ao) ||
      !int_dim(a, 6, &lda) || !a.count(8, &bo) || !int_dim(a, 9, &ldb) || !a.count(11, &co) || !int_dim(a, 12, &ldc) ||
      !a.number(13, &alpha) || !a.number(14, &beta) || !a.boolean(15, &cf32) || !int_dim(a, 16, &splits))
    return nullptr;
  const int64_t bRows = tb ? N : K, bCols = tb ? K : N;
  if (lda < K || ldb < bCols || ldc < N) return throw_error(env, "cublasGemmBf16SplitK: a leading dimension is smaller than its row");
  auto extent = [](int64_t off, int64_t rows, int64_t ld, int64_t cols) { return rows == 0 ? off : off + (rows - 1) * ld + cols; };
  if (!buf_arg(a, 4, extent(ao, M, lda, K) * 2, &A) || !buf_arg(a, 7, extent(bo, bRows, ldb, bCols) * 2, &B) ||
      !buf_arg(a, 10, extent(co, M, ldc, N) * (cf32 ? 4 : 2), &C) || !buf_arg(a, 17, (size_t)splits * M * N * 4, &W))
    return nullptr;
  check(env, cublas_gemm_bf16_splitk(tb, M, N, K, (float)alpha, static_cast<const char*>(A.ptr) + ao * 2, (int)lda,
                                     static_cast<const char*>(B.ptr) + bo * 2, (int)ldb, (float)beta,
                                     static_cast<char*>(C.ptr) + co * (cf32 ? 4 : 2), (int)ldc, cf32, (int)splits,
                                     static_cast<float*>(W.ptr)));
  return nullptr;
}

// Opaque CUDA objects (graphs, events) behind numeric ids, like the buffer table.
struct IdTable {
  const char* what;
  std::unordered_map<uint32_t, void*> m;
  uint32_t next = 1;
  uint32_t add(void* p) { m[next] = p; return next++; }
  // Argument i as a live id: its object in *p (and the id in *id); throws otherwise.
  bool get(Args& a, size_t i, void** p, uint32_t* id = nullptr) {
    int64_t v = 0;
    if (!a.count(i, &v)) return false;
    auto it = m.find((uint32_t)v);
    if (it == m.end()) { throw_error(a.env, std::string(a.fn) + ": not a live " + what); return false; }
    *p = it->second;
    if (id) *id = (uint32_t)v;
    return true;
  }
};
IdTable g_graphs{"graph"}, g_events{"event"};

// A handle made by `end` (the end of a graph capture or decode plan recording, a new event), kept in `table` under a new id.
napi_value recorded_id(napi_env env, const char* (*end)(void**), IdTable& table) {
  void* x = nullptr;
  if (!check(env, end(&x))) return nullptr;
  return make_number(env, table.add(x));
}
// Frees the handle under the id in argument 0 (graph, decode plan, event) and drops the id.
napi_value free_id(napi_env env, napi_callback_info info, const char* name, IdTable& table, const char* (*release)(void*)) {
  Args a(env, info, name);
  void* x;
  uint32_t id = 0;
  if (!table.get(a, 0, &x, &id)) return nullptr;
  table.m.erase(id);
  check(env, release(x));
  return nullptr;
}

// CUDA graphs: cudaGraphBegin() starts capturing the stream every kernel goes to; cudaGraphEnd() -> id of the
// instantiated graph; cudaGraphLaunch(id) replays it; cudaGraphFree(id).
napi_value js_graph_begin(napi_env env, napi_callback_info) {
  check(env, cuda_graph_begin());
  return nullptr;
}
napi_value js_graph_end(napi_env env, napi_callback_info) { return recorded_id(env, cuda_graph_end, g_graphs); }
napi_value js_graph_launch(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGraphLaunch");
  void* x;
  if (g_graphs.get(a, 0, &x)) check(env, cuda_graph_launch(x));
  return nullptr;
}
napi_value js_graph_free(napi_env env, napi_callback_info info) { return free_id(env, info, "cudaGraphFree", g_graphs, cuda_graph_free); }

// Events for profiling: cudaEventNew() -> id, cudaEventRecord(id), cudaEventMs(a, b) -> ms, cudaEventFree(id).
napi_value js_event_new(napi_env env, napi_callback_info) { return recorded_id(env, cuda_event_new, g_events); }
napi_value js_event_record(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaEventRecord");
  void* e;
  if (g_events.get(a, 0, &e)) check(env, cuda_event_record(e));
  return nullptr;
}
napi_value js_event_ms(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaEventMs");
  void *e0, *e1;
  float ms = 0;
  if (!g_events.get(a, 0, &e0) || !g_events.get(a, 1, &e1) || !check(env, cuda_event_pair_ms(e0, e1, &ms))) return nullptr;
  return make_number(env, ms);
}
napi_value js_event_free(napi_env env, napi_callback_info info) { return free_id(env, info, "cudaEventFree", g_events, cuda_event_free); }

// cudaBenchGemm(M, N, K, iters, transA = false, transB = false) -> median ms per GEMM
napi_value js_bench(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaBenchGemm");
  int64_t M = 0, N = 0, K = 0, iters = 0;
  bool ta = false, tb = false;
  if (!int_dim(a, 0, &M) || !int_dim(a, 1, &N) || !int_dim(a, 2, &K) || !int_dim(a, 3, &iters) ||
      (!a.is_nullish(4) && !a.boolean(4, &ta)) || (!a.is_nullish(5) && !a.boolean(5, &tb)))
    return nullptr;
  double ms = 0;
  if (!check(env, cuda_bench_gemm(M, N, K, iters, ta, tb, &ms))) return nullptr;
  return make_number(env, ms);
}

}  // namespace

void register_cuda_quant(napi_env env, napi_value exports);  // packed low-bit weights, below

void register_cuda(napi_env env, napi_value exports) {
  export_fn(env, exports, "cudaInfo", js_info);
  export_fn(env, exports, "cublasInfo", js_cublas_info);
  export_fn(env, exports, "cudaAlloc", js_alloc);
  export_fn(env, exports, "cudaFree", js_free);
  export_fn(env, exports, "cudaView", js_view);
  export_fn(env, exports, "cudaMemset0", js_memset0);
  export_fn(env, exports, "cudaCopy", js_copy);
  export_fn(env, exports, "cudaMemInfo", js_meminfo);
  export_fn(env, exports, "cudaUpload", js_upload);
  export_fn(env, exports, "cudaDownload", js_download);
  export_fn(env, exports, "cudaSync", js_sync);
  export_fn(env, exports, "cudaConvertF32ToBf16", js_to_bf16);
  export_fn(env, exports, "cudaConvertBf16ToF32", js_to_f32);
  export_fn(env, exports, "cublasGemmBf16", js_gemm);
  export_fn(env, exports, "cublasGemmBf16Batched", js_gemm_batched);
  export_fn(env, exports, "cublasGemmBf16Ex", js_gemm_ex);
  export_fn(env, exports, "cublasGemmBf16SplitK", js_gemm_splitk);
  export_fn(env, exports, "cudaEventNew", js_event_new);
  export_fn(env, exports, "cudaGraphBegin", js_graph_begin);
  export_fn(env, exports, "cudaGraphEnd", js_graph_end);
  export_fn(env, exports, "cudaGraphLaunch", js_graph_launch);
  export_fn(env, exports, "cudaGraphFree", js_graph_free);
  export_fn(env, exports, "cudaEventRecord", js_event_record);
  export_fn(env, exports, "cudaEventMs", js_event_ms);
  export_fn(env, exports, "cudaEventFree", js_event_free);
  export_fn(env, exports, "cudaBenchGemm", js_bench);
  register_cuda_quant(env, exports);
  register_cuda_train(env, exports);
  register_cuda_attention(env, exports);
  register_cuda_gptq(env, exports);
  register_cuda_quantize(env, exports);
  register_cuda_kl_ce(env, exports);
}

// ---- packed low-bit weights: dequantization, fused GEMV, packed GEMM and their benchmarks ----
namespace {

// Optional numeric property of an object; false after throwing when present but not a number.
bool prop_num(Args& a, napi_value obj, const char* key, double* out, bool* present) {
  napi_value v;
  napi_valuetype t;
  *present = false;
  if (napi_get_named_property(a.env, obj, key, &v) != napi_ok || napi_typeof(a.env, v, &t) != napi_ok) return true;
  if (t == napi_undefined || t == napi_null) return true;
  if (t != napi_number || napi_get_value_double(a.env, v, out) != napi_ok) {
    throw_error(a.env, std::string(a.fn) + ": descriptor field '" + key + "' must be a number");
    return false;
  }
  *present = true;
  return true;
}

// Optional buffer-handle property (0/absent = none) holding at least `need` bytes.
bool prop_buf(Args& a, napi_value obj, const char* key, size_t need, const void** out, bool required = false) {
  double h = 0;
  bool present = false;
  *out = nullptr;
  if (!prop_num(a, obj, key, &h, &present)) return false;
  if (!present || h == 0) {
    if (required) throw_error(a.env, std::string(a.fn) + ": descriptor field '" + key + "' is required");
    return !required;
  }
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_bufs.find((uint32_t)h);
  if (h != (double)(uint32_t)h || it == g_bufs.end()) {
    throw_error(a.env, std::string(a.fn) + ": descriptor field '" + key + "' is not a live CUDA buffer");
    return false;
  }
  if (it->second.bytes < need) {
    throw_error(a.env, std::string(a.fn) + ": descriptor field '" + key + "' buffer has " +
                           std::to_string(it->second.bytes) + " bytes, needs " + std::to_string(need));
    return false;
  }
  *out = it->second.ptr;
  return true;
}

// Reads a packed-tensor descriptor object (src/backend/cuda.ts DeviceQuant.desc), size-checking every buffer.
bool desc_from(Args& a, napi_value obj, QDesc* d) {
  napi_valuetype t;
  if (napi_typeof(a.env, obj, &t) != napi_ok || t != napi_object) {
    throw_error(a.env, std::string(a.fn) + ": a packed-tensor descriptor object is required");
    return false;
  }
  double v[5] = {0};
  const char* keys[5] = {"layout", "bits", "out", "in", "group"};
  for (int k = 0; k < 5; k++) {
    bool present = false;
    if (!prop_num(a, obj, keys[k], &v[k], &present)) return false;
    if (!present || v[k] != (double)(int)v[k] || v[k] < 0 || v[k] > 0x7fffffff) {
      throw_error(a.env, std::string(a.fn) + ": descriptor field '" + keys[k] + "' must be a non-negative int32");
      return false;
    }
  }
  d->layout = (int)v[0]; d->bits = (int)v[1]; d->out = (int)v[2]; d->in = (int)v[3]; d->group = (int)v[4];
  if (d->bits < 1 || d->bits > 8 || d->out < 1 || d->in < 1 || d->group < 1) {
    throw_error(a.env, std::string(a.fn) + ": descriptor has bits outside 1..8 or an empty shape/group");
    return false;
  }
  const size_t n = (size_t)d->out * d->in;
  const size_t ng = (size_t)(d->in + d->group - 1) / d->group, nb = (n + d->group - 1) / d->group;
  const void* p;
  if (!prop_buf(a, obj, "codes", (n * d->bits + 7) / 8 + 16, &p, true)) return false;
  d->codes = static_cast<const uint8_t*>(p);
  if (d->layout == 0) {
    if (!prop_buf(a, obj, "sz", (size_t)d->out * ng * 4, &p, true)) return false;
    d->sz = static_cast<const uint32_t*>(p);
    if (!prop_buf(a, obj, "gidx", (size_t)d->in * 4, &p)) return false;
    d->gidx = static_cast<const int32_t*>(p);
    // the fused GEMM's repacked stream (optional; only for shapes the fused kernel takes)
    const size_t rpb = qgemm_fused_repack_bytes(*d);
    if (!prop_buf(a, obj, "fused", rpb ? rpb : 1, &p)) return false;
    if (p && !rpb) {
      throw_error(a.env, std::string(a.fn) + ": descriptor field 'fused' on a weight the fused GEMM does not take");
      return false;
    }
    d->fused = static_cast<const uint8_t*>(p);
  } else if (d->layout == 1) {
    if (!prop_buf(a, obj, "levels", ((size_t)1 << d->bits) * 4, &p, true)) return false;
    d->levels = static_cast<const float*>(p);
    if (!prop_buf(a, obj, "dynmap", 256 * 4, &p)) return false;
    d->dynmap = static_cast<const float*>(p);
    if (!prop_buf(a, obj, "absmax", nb * 4, &p)) return false;
    d->absmax = static_cast<const float*>(p);
    if (!prop_buf(a, obj, "absq", nb, &p)) return false;
    d->absq = static_cast<const uint8_t*>(p);
    if (!prop_buf(a, obj, "absscale", (nb + 255) / 256 * 4, &p)) return false;
    d->absscale = static_cast<const float*>(p);
    if (!prop_buf(a, obj, "tauq", nb, &p)) return false;
    d->tauq = static_cast<const uint8_t*>(p);
    if (!prop_buf(a, obj, "tauscale", (nb + 255) / 256 * 4, &p)) return false;
    d->tauscale = static_cast<const float*>(p);
    double off = 0;
    bool present = false;
    if (!prop_num(a, obj, "absoffset", &off, &present)) return false;
    d->absoffset = (float)off;
  }
  return check(a.env, qdesc_check(*d));
}

bool desc_arg(Args& a, size_t i, QDesc* d) {
  if (i >= a.argc) return a.fail(i, "a packed-tensor descriptor");
  return desc_from(a, a.argv[i], d);
}

// Array of descriptors (or of buffer handles when `d` is null and `h` is given).
bool array_arg(Args& a, size_t i, std::vector<QDesc>* d, std::vector<const void*>* h, size_t need_each = 0,
               std::vector<size_t>* sizes = nullptr) {
  bool is = false;
  if (i < a.argc) napi_is_array(a.env, a.argv[i], &is);
  if (!is) return a.fail(i, "an array");
  uint32_t len = 0;
  napi_get_array_length(a.env, a.argv[i], &len);
  if (len == 0) return a.fail(i, "a non-empty array");
  for (uint32_t k = 0; k < len; k++) {
    napi_value el;
    napi_get_element(a.env, a.argv[i], k, &el);
    if (d) {
      QDesc q;
      if (!desc_from(a, el, &q)) return false;
      d->push_back(q);
    } else {
      double hv = 0;
      if (napi_get_value_double(a.env, el, &hv) != napi_ok) return a.fail(i, "an array of buffer handles");
      std::lock_guard<std::mutex> lk(g_mu);
      auto it = g_bufs.find((uint32_t)hv);
      if (it == g_bufs.end() || it->second.bytes < need_each) {
        throw_error(a.env, std::string(a.fn) + ": element " + std::to_string(k) + " of argument " + std::to_string(i) +
                               " is not a live CUDA buffer of " + std::to_string(need_each) + " bytes");
        return false;
      }
      h->push_back(it->second.ptr);
      if (sizes) sizes->push_back(it->second.bytes);
    }
  }
  return true;
}

// cudaDequantBf16(desc, dst)
napi_value js_dequant(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaDequantBf16");
  QDesc d;
  Buf dst;
  if (!desc_arg(a, 0, &d) || !buf_arg(a, 1, (size_t)d.out * d.in * 2, &dst)) return nullptr;
  check(env, cuda_dequant_bf16(d, dst.ptr, nullptr));
  return nullptr;
}

// cudaQGemv(desc, x, y, accumulate, variant = 0)   x f32 [in], y f32 [out]; variant 0 auto, 1 v1, 2 v2
napi_value js_qgemv(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaQGemv");
  QDesc d;
  Buf x, y;
  bool acc = false;
  int64_t variant = 0;
  if (!desc_arg(a, 0, &d) || !buf_arg(a, 1, (size_t)d.in * 4, &x) || !buf_arg(a, 2, (size_t)d.out * 4, &y) ||
      !a.boolean(3, &acc) || (!a.is_nullish(4) && !a.count(4, &variant)))
    return nullptr;
  check(env, cuda_qgemv(d, static_cast<const float*>(x.ptr), static_cast<float*>(y.ptr), acc, nullptr, (int)variant));
  return nullptr;
}

// cudaGemvBf16(W, rows, K, x, y, accumulate)   W bf16 [rows, K], x f32 [K], y f32 [rows]
napi_value js_gemv_bf16(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGemvBf16");
  int64_t rows = 0, K = 0;
  bool acc = false;
  Buf W, x, y;
  if (!int_dim(a, 1, &rows) || !int_dim(a, 2, &K) || !buf_arg(a, 0, rows * K * 2, &W) ||
      !buf_arg(a, 3, K * 4, &x) || !buf_arg(a, 4, rows * 4, &y) || !a.boolean(5, &acc))
    return nullptr;
  check(env, cuda_gemv_bf16(W.ptr, (int)rows, (int)K, static_cast<const float*>(x.ptr), static_cast<float*>(y.ptr),
                            acc, nullptr));
  return nullptr;
}

// cudaQGemm(desc, M, X, Y, yF32, scratch)   X bf16 [M, in], Y [M, out], scratch bf16 [out*in]
napi_value js_qgemm(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaQGemm");
  QDesc d;
  int64_t M = 0;
  bool yf32 = false;
  Buf X, Y, S;
  if (!desc_arg(a, 0, &d) || !int_dim(a, 1, &M) || !a.boolean(4, &yf32) || !buf_arg(a, 2, M * d.in * 2, &X) ||
      !buf_arg(a, 3, M * d.out * (yf32 ? 4 : 2), &Y) || !buf_arg(a, 5, (size_t)d.out * d.in * 2, &S))
    return nullptr;
  check(env, cuda_qgemm(d, (int)M, X.ptr, Y.ptr, yf32, S.ptr));
  return nullptr;
}

// cudaQGemmFused(desc, M, X, Y, yF32, debug = 0, variant = 0 (1..9))   the fused sm_90a kernel only (throws where it does
// not apply)
napi_value js_qgemm_fused(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaQGemmFused");
  QDesc d;
  int64_t M = 0, debug = 0, variant = 0;
  bool yf32 = false;
  Buf X, Y;
  if ((!a.is_nullish(5) && !a.count(5, &debug)) || (!a.is_nullish(6) && !a.count(6, &variant))) return nullptr;
  if (!desc_arg(a, 0, &d) || !int_dim(a, 1, &M) || !a.boolean(4, &yf32) || !buf_arg(a, 2, M * d.in * 2, &X) ||
      !buf_arg(a, 3, M * d.out * (yf32 ? 4 : 2), &Y))
    return nullptr;
  check(env, cuda_qgemm_fused(d, (int)M, X.ptr, Y.ptr, yf32, nullptr, (int)debug, (int)variant));
  return nullptr;
}

// cudaQGemmFusedRepackBytes(desc) -> bytes of the fused GEMM's repacked stream (0: the fused kernel does not take it)
napi_value js_qgemm_fused_repack_bytes(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaQGemmFusedRepackBytes");
  QDesc d;
  if (!desc_arg(a, 0, &d)) return nullptr;
  return make_number(env, (double)qgemm_fused_repack_bytes(d));
}

// cudaQGemmFusedRepack(desc, dst)   dst = the repacked stream (cudaQGemmFusedRepackBytes bytes); then desc.fused = dst
napi_value js_qgemm_fused_repack(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaQGemmFusedRepack");
  QDesc d;
  Buf D;
  if (!desc_arg(a, 0, &d)) return nullptr;
  const size_t need = qgemm_fused_repack_bytes(d);
  if (!need) {
    check(env, "fused qgemm: needs an 'int' 2-bit weight with group 64, no gIdx, in % 64 == 0 and out % 128 == 0");
    return nullptr;
  }
  if (!buf_arg(a, 1, need, &D)) return nullptr;
  check(env, cuda_qgemm_fused_repack(d, D.ptr, nullptr));
  return nullptr;
}

// cudaQGemmFusedWhyNot(desc, M, X, Y) -> null when cudaQGemm can take the fused kernel for these operands, else why not
napi_value js_qgemm_fused_why(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaQGemmFusedWhyNot");
  QDesc d;
  int64_t M = 0;
  Buf X, Y;
  if (!desc_arg(a, 0, &d) || !int_dim(a, 1, &M) || !buf_arg(a, 2, 0, &X) || !buf_arg(a, 3, 0, &Y)) return nullptr;
  const char* why = qgemm_fused_unsupported(d, (int)M, X.ptr, Y.ptr);
  if (!why) {
    napi_value n;
    napi_get_null(env, &n);
    return n;
  }
  return make_string(env, why);
}

// cudaFillRandomBytes(h, bytes, seed) / cudaFillUniformBf16(h, n, seed, lo, hi)
napi_value js_fill_bytes(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaFillRandomBytes");
  int64_t n = 0, seed = 0;
  Buf b;
  if (!a.count(1, &n) || !a.count(2, &seed) || !buf_arg(a, 0, n, &b)) return nullptr;
  check(env, cuda_fill_random_bytes(b.ptr, n, (uint32_t)seed));
  return nullptr;
}
napi_value js_fill_bf16(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaFillUniformBf16");
  int64_t n = 0, seed = 0;
  double lo = 0, hi = 0;
  Buf b;
  if (!a.count(1, &n) || !a.count(2, &seed) || !a.number(3, &lo) || !a.number(4, &hi) || !buf_arg(a, 0, n * 2, &b))
    return nullptr;
  check(env, cuda_fill_uniform_bf16(b.ptr, n, (uint32_t)seed, (float)lo, (float)hi));
  return nullptr;
}

size_t max_out(const std::vector<QDesc>& d, size_t* sum) {
  size_t m = 0;
  *sum = 0;
  for (auto& q : d) m = std::max(m, (size_t)q.out * q.in), *sum += q.out;
  return m;
}

// cudaBenchDequant(descs, dst, dstStrideBytes, reps) -> ms per dequantization
napi_value js_bench_dequant(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaBenchDequant");
  std::vector<QDesc> d;
  int64_t stride = 0, reps = 0;
  Buf dst;
  size_t outs = 0;
  if (!array_arg(a, 0, &d, nullptr) || !a.count(2, &stride) || !int_dim(a, 3, &reps)) return nullptr;
  const size_t m = max_out(d, &outs);
  if ((size_t)stride < m * 2 || stride % 16) return throw_error(env, "cudaBenchDequant: stride must hold one output, multiple of 16");
  if (!buf_arg(a, 1, (d.size() - 1) * stride + m * 2, &dst)) return nullptr;
  double ms = 0;
  if (!check(env, cuda_bench_dequant(d.data(), (int)d.size(), dst.ptr, stride, (int)reps, &ms))) return nullptr;
  return make_number(env, ms);
}

// cudaBenchCopy(dst, src, bytes, reps) -> ms per copy
napi_value js_bench_copy(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaBenchCopy");
  int64_t bytes = 0, reps = 0;
  Buf dst, src;
  if (!a.count(2, &bytes) || !int_dim(a, 3, &reps) || !buf_arg(a, 0, bytes, &dst) || !buf_arg(a, 1, bytes, &src))
    return nullptr;
  double ms = 0;
  if (!check(env, cuda_bench_copy(dst.ptr, src.ptr, bytes, (int)reps, &ms))) return nullptr;
  return make_number(env, ms);
}

// cudaBenchQGemm(descs, M, X, Y, scratch, reps) -> ms per packed GEMM (bf16 Y)
napi_value js_bench_qgemm(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaBenchQGemm");
  std::vector<QDesc> d;
  int64_t M = 0, reps = 0;
  Buf X, Y, S;
  size_t outs = 0;
  if (!array_arg(a, 0, &d, nullptr) || !int_dim(a, 1, &M) || !int_dim(a, 5, &reps)) return nullptr;
  size_t maxIn = 0, maxOut = 0;
  for (auto& q : d) maxIn = std::max(maxIn, (size_t)q.in), maxOut = std::max(maxOut, (size_t)q.out);
  if (!buf_arg(a, 2, M * maxIn * 2, &X) || !buf_arg(a, 3, M * maxOut * 2, &Y) || !buf_arg(a, 4, max_out(d, &outs) * 2, &S))
    return nullptr;
  double ms = 0;
  if (!check(env, cuda_bench_qgemm(d.data(), (int)d.size(), (int)M, X.ptr, Y.ptr, S.ptr, (int)reps, &ms))) return nullptr;
  return make_number(env, ms);
}

// cudaBenchQGemmPipelined(descs, M, X, Y, scratch2, reps) -> ms per packed GEMM; scratch2 holds two weights
napi_value js_bench_qgemm_pipe(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaBenchQGemmPipelined");
  std::vector<QDesc> d;
  int64_t M = 0, reps = 0;
  Buf X, Y, S;
  size_t outs = 0;
  if (!array_arg(a, 0, &d, nullptr) || !int_dim(a, 1, &M) || !int_dim(a, 5, &reps)) return nullptr;
  size_t maxIn = 0, maxOut = 0;
  for (auto& q : d) maxIn = std::max(maxIn, (size_t)q.in), maxOut = std::max(maxOut, (size_t)q.out);
  const size_t half = (max_out(d, &outs) * 2 + 255) / 256 * 256;
  if (!buf_arg(a, 2, M * maxIn * 2, &X) || !buf_arg(a, 3, M * maxOut * 2, &Y) || !buf_arg(a, 4, 2 * half, &S))
    return nullptr;
  double ms = 0;
  if (!check(env, cuda_bench_qgemm_pipelined(d.data(), (int)d.size(), (int)M, X.ptr, Y.ptr, S.ptr, half, (int)reps, &ms)))
    return nullptr;
  return make_number(env, ms);
}

// cudaBenchQGemmFused(descs, M, X, Y, reps, variant = 0) -> ms per fused packed GEMM (bf16 Y)
napi_value js_bench_qgemm_fused(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaBenchQGemmFused");
  std::vector<QDesc> d;
  int64_t M = 0, reps = 0, variant = 0;
  Buf X, Y;
  if (!array_arg(a, 0, &d, nullptr) || !int_dim(a, 1, &M) || !int_dim(a, 4, &reps)) return nullptr;
  if (!a.is_nullish(5) && !a.count(5, &variant)) return nullptr;
  size_t maxIn = 0, maxOut = 0;
  for (auto& q : d) maxIn = std::max(maxIn, (size_t)q.in), maxOut = std::max(maxOut, (size_t)q.out);
  if (!buf_arg(a, 2, M * maxIn * 2, &X) || !buf_arg(a, 3, M * maxOut * 2, &Y)) return nullptr;
  double ms = 0;
  if (!check(env, cuda_bench_qgemm_fused(d.data(), (int)d.size(), (int)M, X.ptr, Y.ptr, (int)reps, &ms, (int)variant)))
    return nullptr;
  return make_number(env, ms);
}

// cudaBenchDenseGemm(weights[], M, N, K, X, Y, reps) -> ms per GEMM, Y[M,N] = X[M,K]·W[N,K]ᵀ (bf16)
napi_value js_bench_dense(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaBenchDenseGemm");
  int64_t M = 0, N = 0, K = 0, reps = 0;
  std::vector<const void*> w;
  Buf X, Y;
  if (!int_dim(a, 1, &M) || !int_dim(a, 2, &N) || !int_dim(a, 3, &K) || !int_dim(a, 6, &reps) ||
      !array_arg(a, 0, nullptr, &w, N * K * 2) || !buf_arg(a, 4, M * K * 2, &X) || !buf_arg(a, 5, M * N * 2, &Y))
    return nullptr;
  double ms = 0;
  if (!check(env, cuda_bench_dense_gemm(w.data(), (int)w.size(), M, N, K, X.ptr, Y.ptr, (int)reps, &ms))) return nullptr;
  return make_number(env, ms);
}

// cudaBenchQGemv(descs, x, y, reps, variant = 0) -> ms per GEMV; y holds the outputs of all descs back to back
napi_value js_bench_qgemv(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaBenchQGemv");
  std::vector<QDesc> d;
  int64_t reps = 0, variant = 0;
  if (!a.is_nullish(4) && !a.count(4, &variant)) return nullptr;
  Buf x, y;
  size_t outs = 0, maxIn = 0;
  if (!array_arg(a, 0, &d, nullptr) || !int_dim(a, 3, &reps)) return nullptr;
  max_out(d, &outs);
  for (auto& q : d) maxIn = std::max(maxIn, (size_t)q.in);
  if (!buf_arg(a, 1, maxIn * 4, &x) || !buf_arg(a, 2, outs * 4, &y)) return nullptr;
  double ms = 0;
  if (!check(env, cuda_bench_qgemv(d.data(), (int)d.size(), static_cast<const float*>(x.ptr), static_cast<float*>(y.ptr),
                                   (int)reps, &ms, (int)variant)))
    return nullptr;
  return make_number(env, ms);
}

// cudaBenchDecode(descs, A[] | null, B[] | null, rank, x, y, t, reps) -> ms per token (all descs)
napi_value js_bench_decode(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaBenchDecode");
  std::vector<QDesc> d;
  std::vector<const void*> A, B;
  int64_t rank = 0, reps = 0;
  Buf x, y, t;
  size_t outs = 0, maxIn = 0, maxOut = 0;
  if (!array_arg(a, 0, &d, nullptr) || !int_dim(a, 3, &rank) || !int_dim(a, 7, &reps)) return nullptr;
  max_out(d, &outs);
  for (auto& q : d) maxIn = std::max(maxIn, (size_t)q.in), maxOut = std::max(maxOut, (size_t)q.out);
  const bool lora = !a.is_nullish(1);
  if (lora) {
    std::vector<size_t> sa, sb;
    if (!array_arg(a, 1, nullptr, &A, 0, &sa) || !array_arg(a, 2, nullptr, &B, 0, &sb)) return nullptr;
    if (A.size() != d.size() || B.size() != d.size()) return throw_error(env, "cudaBenchDecode: one A and one B per descriptor");
    for (size_t k = 0; k < d.size(); k++)
      if (sa[k] < (size_t)rank * d[k].in * 2 || sb[k] < (size_t)rank * d[k].out * 2)
        return throw_error(env, "cudaBenchDecode: LoRA buffer " + std::to_string(k) + " is smaller than rank x dim bf16");
  }
  (void)maxOut;
  if (!buf_arg(a, 4, maxIn * 4, &x) || !buf_arg(a, 5, outs * 4, &y) || !buf_arg(a, 6, std::max<int64_t>(rank, 1) * 4, &t))
    return nullptr;
  double ms = 0;
  if (!check(env, cuda_bench_decode(d.data(), (int)d.size(), lora ? A.data() : nullptr, lora ? B.data() : nullptr,
                                    (int)rank, static_cast<const float*>(x.ptr), static_cast<float*>(y.ptr),
                                    static_cast<float*>(t.ptr), (int)reps, &ms)))
    return nullptr;
  return make_number(env, ms);
}

// ---- batch-1 decode (decode.cu) ----
bool aligned16(Args& a, const void* p, const char* what) {
  if ((reinterpret_cast<uintptr_t>(p) & 15) == 0) return true;
  throw_error(a.env, std::string(a.fn) + ": " + what + " must start 16-byte aligned");
  return false;
}

// cudaRepackSpan4(desc, dst)   dst: the desc's code stream with every 64-byte span transposed (decode v4 layout)
napi_value js_repack4(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaRepackSpan4");
  QDesc d;
  Buf dst;
  if (!desc_arg(a, 0, &d) || !buf_arg(a, 1, (size_t)d.out * d.in / 4, &dst)) return nullptr;
  if (d.layout != 0 || d.bits != 2 || d.in % 256 != 0 || d.gidx) {
    throw_error(env, "cudaRepackSpan4: needs an 'int' 2-bit tensor without gIdx and in % 256 == 0");
    return nullptr;
  }
  check(env, cuda_repack4(d.codes, dst.ptr, d.out, d.in));
  return nullptr;
}

// cudaInt8xRepack(desc, dst)   dst: the int8-x GEMV's words of an 'int' 2-bit tensor (16-row tiles, in % 128 == 0)
napi_value js_int8x_repack(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaInt8xRepack");
  QDesc d;
  Buf dst;
  if (!desc_arg(a, 0, &d)) return nullptr;
  if (d.layout != 0 || d.bits != 2 || d.in % 128 != 0 || d.gidx) {
    throw_error(env, "cudaInt8xRepack: needs an 'int' 2-bit tensor without gIdx and in % 128 == 0");
    return nullptr;
  }
  if (!buf_arg(a, 1, (size_t)(d.out + 15) / 16 * 16 * d.in / 4, &dst) || !aligned16(a, dst.ptr, "dst")) return nullptr;
  check(env, cuda_int8x_repack(d.codes, dst.ptr, d.out, d.in));
  return nullptr;
}

// cudaInt8xTileSz(sz, dst, out, in)   dst: the scale|zero words [out, in/64] tile-blocked for the streamed GEMV
napi_value js_int8x_tile_sz(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaInt8xTileSz");
  int64_t out = 0, in = 0;
  Buf sz, dst;
  if (!int_dim(a, 2, &out) || !int_dim(a, 3, &in)) return nullptr;
  if (in % 128 != 0 || out % 16 != 0) { throw_error(env, "cudaInt8xTileSz: in % 128 == 0 and out % 16 == 0"); return nullptr; }
  const size_t bytes = (size_t)out * (size_t)(in / 64) * 4;
  if (!buf_arg(a, 0, bytes, &sz) || !buf_arg(a, 1, bytes, &dst)) return nullptr;
  check(env, cuda_int8x_tile_sz(static_cast<const uint32_t*>(sz.ptr), static_cast<uint32_t*>(dst.ptr), (int)out, (int)in));
  return nullptr;
}

// cudaInt8xGemv(words, sz, x, scratch, y, out, in, ksplit, parts = 7, normEps = null, A = null, R = 0, t = null, Bs = null,
//   ends = null, r = 0, sync = null)   the
//   prototype int8-x GEMV (int8x_gemv.cu), sz: f16 scale|zero words [out, in/64]; x (f32 [in]) is read only with bit 0
//   (otherwise null or any buffer: x̂ is already in scratch); parts (benchmarks): bit 0 quantizes x
//   into scratch, bit 1 zeroes y, bit 2 runs the GEMV, bit 3 launches it with PDL, bit 4 keeps two blocks in flight per
//   warp, bit 5 stages x̂ in shared memory, bit 6 gives each 16-row tile a block (one warp per K slice, added in a fixed
//   order, y stored: deterministic, no zeroing); normEps: scratch came from cudaInt8xPrep with normW, the row sums get
//   RMSNorm's 1/rms; A (bf16 [R, in]) and t (f32 [R]): the same launch writes t = A·x̃ (the LoRA-A rows);
//   Bs = [B…] (1–3 handles), ends = [row end…], r, sync (2 u32, zeroed once): with bit 6 and A, the same launch also adds
//   B·t to y, rows up to ends[i] with Bs[i] (bf16 [its rows, r], scaled) and t[i·r …]; bit 7: scratch's Σx² partials are per
//   group (a folded prep wrote them); bit 8: sync is zeroed by an earlier launch (no reset by the last tile block); bit 11
//   (streamed, with bt): no counters, t published by value (an earlier launch set it to 0xffffffff: cudaInt8xPrep's unsetT). fScratch, fX, fNormW, fHalf = 0, fCnt (bit 6): the same launch makes the NEXT GEMV's
//   input in fScratch — x̃ = (fX += y)·fNormW (residual; fNormW may be null) or, fHalf = I with out = 2I, silu(y[0, I))·y[I, 2I) —
//   fCnt: (its inputs / 64) u32 counters, zeroed once (each launch leaves them zero)
napi_value js_int8x_gemv(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaInt8xGemv");
  int64_t out = 0, in = 0, nks = 0, R = 0;
  Buf w, sz, x{}, scr, y, A{}, t{};  // x, A, t: null unless given
  int64_t parts = 7;
  double eps = -1;
  if (!int_dim(a, 5, &out) || !int_dim(a, 6, &in) || !int_dim(a, 7, &nks) || (!a.is_nullish(8) && !a.count(8, &parts)) ||
      (!a.is_nullish(9) && !a.number(9, &eps)))
    return nullptr;
  if (in % 128 != 0) { throw_error(env, "cudaInt8xGemv: in must be a multiple of 128"); return nullptr; }
  if (parts < 1 || parts > 4095) { throw_error(env, "cudaInt8xGemv: parts is a mask of 1 (quantize x), 2 (zero y), 4 (GEMV), 8 (PDL), 16 (2 ahead), 32 (x̂ in shared memory), 64 (a block per tile, fixed-order reduction, y stored), 128 (Σx² partials per group), 256 (sync zeroed by an earlier launch), 512 (streamed: a block per SM, weights through a bulk-copy ring; with 64), 1024 (4 LoRA-A rows a block; with 64), 2048 (streamed: t published by value, set unset by an earlier launch)"); return nullptr; }
  if (!a.is_nullish(9) && !(eps >= 0)) { throw_error(env, "cudaInt8xGemv: normEps must be ≥ 0"); return nullptr; }
  const size_t tiles = (size_t)(out + 15) / 16, ng = (size_t)in / 64;
  if (!buf_arg(a, 0, tiles * 16 * (size_t)in / 4, &w) || !buf_arg(a, 1, (size_t)out * ng * 4, &sz) ||
      (((parts & 1) || !a.is_nullish(2)) && !buf_arg(a, 2, (parts & 1) ? (size_t)in * 4 : 0, &x)) || !buf_arg(a, 3, (size_t)in + ng * 8 + ((parts & 128) ? ng : (ng + 7) / 8) * 4, &scr) ||
      !buf_arg(a, 4, (size_t)out * 4, &y) || !aligned16(a, w.ptr, "words") || ((parts & 512) && !aligned16(a, sz.ptr, "sz")))
    return nullptr;
  if (!a.is_nullish(10)) {  // A, R, t: the adapter's LoRA-A rows in the same launch
    if (!int_dim(a, 11, &R) || !buf_arg(a, 10, (size_t)R * in * 2, &A) || !aligned16(a, A.ptr, "A") || !buf_arg(a, 12, (size_t)R * 4, &t))
      return nullptr;
  }
  Int8xGemvBt bt{};
  const bool withBt = !a.is_nullish(13);
  if (withBt) {  // Bs (handles, 1–3), ends (row ends), r, sync: B·t in the epilogue
    std::vector<const void*> hs;
    std::vector<size_t> sizes;
    int64_t rb = 0;
    Buf sync;
    if (!array_arg(a, 13, nullptr, &hs, 0, &sizes) || !int_dim(a, 15, &rb) || !buf_arg(a, 16, 8, &sync)) return nullptr;
    bool is = false;
    napi_is_array(env, a.argv[14], &is);
    uint32_t len = 0;
    if (is) napi_get_array_length(env, a.argv[14], &len);
    if (!is || len != hs.size() || len > 3) { throw_error(env, "cudaInt8xGemv: ends must be an array, one row end per B (1–3)"); return nullptr; }
    int prev = 0;
    for (uint32_t k = 0; k < len; k++) {
      napi_value el;
      napi_get_element(env, a.argv[14], k, &el);
      double e = 0;
      napi_get_value_double(env, el, &e);
      if (!(e > prev) || e > (double)out || sizes[k] < (size_t)(e - prev) * (size_t)rb * 2) {
        throw_error(env, "cudaInt8xGemv: B·t segment " + std::to_string(k) + ": its end must rise within out and its B hold rows × r bf16");
        return nullptr;
      }
      bt.B[k] = hs[k];
      bt.end[k] = (int)e;
      prev = (int)e;
    }
    bt.nseg = (int)len;
    bt.r = (int)rb;
    bt.sync = static_cast<unsigned*>(sync.ptr);
  }
  Int8xGemvFold fold{};
  const bool withFold = !a.is_nullish(17);
  if (withFold) {  // the next GEMV's input made in this launch's epilogue
    int64_t half = 0;
    Buf fs, fx{}, fn{}, fc;
    if (!a.is_nullish(20) && !a.count(20, &half)) return nullptr;
    const size_t cin = half ? (size_t)half : (size_t)out, cng = cin / 64;
    if (cin % 64 != 0 || (half && (size_t)out != 2 * cin)) { throw_error(env, "cudaInt8xGemv: the folded prep takes out (SwiGLU: fHalf = out / 2) inputs, a multiple of 64"); return nullptr; }
    if (!buf_arg(a, 17, cin + cng * 12, &fs) || (!half && !buf_arg(a, 18, cin * 4, &fx)) ||
        (!half && !a.is_nullish(19) && !buf_arg(a, 19, cin * 4, &fn)) || !buf_arg(a, 21, cng * 4, &fc))
      return nullptr;
    fold = {static_cast<unsigned*>(fc.ptr), static_cast<float*>(fx.ptr), static_cast<const float*>(fn.ptr), fs.ptr, (int)cng, (int)half};
  }
  check(env, cuda_int8x_gemv(w.ptr, static_cast<const uint32_t*>(sz.ptr), static_cast<const float*>(x.ptr), scr.ptr,
                             static_cast<float*>(y.ptr), (int)out, (int)in, (int)nks, (int)parts, (float)eps, A.ptr, (int)R,
                             static_cast<float*>(t.ptr), withBt ? &bt : nullptr, withFold ? &fold : nullptr));
  return nullptr;
}

// cudaInt8xChainPlan(phases, ksplit, positions) -> id   streamed int8-x GEMVs (and attentions) for one launch with grid
//   barriers between them (cuda_int8x_chain_plan), the table made once on the device. phases: 1–4096 objects { words,
//   sz (tile-blocked), y, out, in, mode (0 scratch, 1 residual + RMSNorm, 2 SwiGLU), xs, npart, eps (mode 0; eps ≥ 0
//   with npart > 0: RMSNorm's 1/rms from the partials), hin, hout, yin, normW, eps (mode 1), yin (mode 2: gate | up,
//   2·in floats), and with an adapter A, R, t, r, b0..b2 (B per segment, bf16 [rows, r], scaled), e0..e2 (segment row
//   ends) }, or an attention { mode: 3, q, k, v, kc, vc, Hq, Hkv, hd, xs (its int8-x output: the next phase's xs) } as
//   cudaDecodeAttn's, its caches holding `positions` rows, or a prep { mode: 4, in, xs, yin, and with normW hin, hout }
//   (the next phase's x̂ made once into xs, int8xScratchBytes(in)); ksplit: 8 or 16 warps a block.
// cudaInt8xChainRun(id, pdl, sync, pos = 0, cos = null, sin = null)   one launch of the plan (sync: 2 u32, zero; the
//   attention phases at position pos < positions with the RoPE rows cos/sin f32 [hd/2]). cudaInt8xChainFree(id).
IdTable g_chains{"int8-x chain plan"};
napi_value js_int8x_chain_plan(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaInt8xChainPlan");
  int64_t nks = 0, positions = 0;
  bool is = false;
  if (a.argc > 0) napi_is_array(env, a.argv[0], &is);
  if (!is) return a.fail(0, "an array of phases"), nullptr;
  if (!int_dim(a, 1, &nks) || !int_dim(a, 2, &positions)) return nullptr;
  uint32_t len = 0;
  napi_get_array_length(env, a.argv[0], &len);
  if (len < 1 || len > 4096) { throw_error(env, "cudaInt8xChainPlan: 1 to 4096 phases"); return nullptr; }
  std::vector<Int8xChainPhase> ph(len);
  for (uint32_t k = 0; k < len; k++) {
    napi_value el;
    napi_get_element(env, a.argv[0], k, &el);
    Int8xChainPhase& P = ph[k];
    double out = 0, in = 0, mode = 0, R = 0, r = 0, npart = 0, eps = 0;
    bool has = false, hasEps = false;
    if (!prop_num(a, el, "mode", &mode, &has)) return nullptr;
    if (mode == 3) {  // an attention phase
      double dims[3] = {0, 0, 0};
      const char* dk[3] = {"Hq", "Hkv", "hd"};
      for (int i = 0; i < 3; i++)
        if (!prop_num(a, el, dk[i], &dims[i], &has) || !has || !(dims[i] >= 1) || dims[i] != (double)(int)dims[i] || dims[i] > 1e6) {
          throw_error(env, std::string("cudaInt8xChainPlan: the attention phase needs integer ") + dk[i]);
          return nullptr;
        }
      const size_t Hq = (size_t)dims[0], Hkv = (size_t)dims[1], hd = (size_t)dims[2], Q = Hq * hd, KV = Hkv * hd;
      if (Q % 64 != 0) { throw_error(env, "cudaInt8xChainPlan: the attention's int8-x output needs Hq·hd % 64 == 0"); return nullptr; }
      const void *q, *kk, *v, *kc, *vc, *xs;
      if (!prop_buf(a, el, "q", Q * 4, &q, true) || !prop_buf(a, el, "k", KV * 4, &kk, true) || !prop_buf(a, el, "v", KV * 4, &v, true) ||
          !prop_buf(a, el, "kc", (size_t)positions * KV * 2, &kc, true) || !prop_buf(a, el, "vc", (size_t)positions * KV * 2, &vc, true) ||
          !prop_buf(a, el, "xs", Q + Q / 64 * 8, &xs, true))
        return nullptr;
      P.mode = 3;
      P.at = DecodeAttn{static_cast<const float*>(q), static_cast<const float*>(kk), static_cast<const float*>(v), nullptr, nullptr,
                        static_cast<uint16_t*>(const_cast<void*>(kc)), static_cast<uint16_t*>(const_cast<void*>(vc)), nullptr, 0,
                        (int)Hq, (int)Hkv, (int)hd};
      P.at.i8 = const_cast<void*>(xs);
      P.xs = xs;
      continue;
    }
    if (mode == 4) {  // a prep phase: the next phase's x̂ into xs (residual + RMSNorm with normW, else SwiGLU)
      if (!prop_num(a, el, "in", &in, &has) || !has || !(in >= 128) || in != (double)(int)in || in > 1e8) {
        throw_error(env, "cudaInt8xChainPlan: prep phase " + std::to_string(k) + " needs an integer in ≥ 128");
        return nullptr;
      }
      const size_t n = (size_t)in, ng = n / 64;
      const void *xs, *hin, *hout, *yin, *nw;
      if (!prop_buf(a, el, "xs", n + ng * 12, &xs, true) || !prop_buf(a, el, "normW", n * 4, &nw) || !prop_buf(a, el, "hin", n * 4, &hin) ||
          !prop_buf(a, el, "hout", n * 4, &hout) || !prop_buf(a, el, "yin", n * 4 * (nw ? 1 : 2), &yin, true) || !aligned16(a, xs, "xs"))
        return nullptr;
      P.mode = 4;
      P.in = (int)in;
      P.xs = xs;
      P.hin = static_cast<const float*>(hin);
      P.hout = static_cast<float*>(const_cast<void*>(hout));
      P.yin = static_cast<const float*>(yin);
      P.normw = static_cast<const float*>(nw);
      continue;
    }
    if (!prop_num(a, el, "out", &out, &has) || !has || !prop_num(a, el, "in", &in, &has) || !has || !(out >= 16) || !(in >= 128) ||
        out != (double)(int)out || in != (double)(int)in) {
      throw_error(env, "cudaInt8xChainPlan: phase " + std::to_string(k) + " needs integer out ≥ 16 and in ≥ 128");
      return nullptr;
    }
    if (!prop_num(a, el, "R", &R, &has) || !prop_num(a, el, "r", &r, &has) || !prop_num(a, el, "npart", &npart, &has) ||
        !prop_num(a, el, "eps", &eps, &hasEps))
      return nullptr;
    P.out = (int)out;
    P.in = (int)in;
    P.mode = (int)mode;
    P.R = (int)R;
    P.npart = (int)npart;
    P.eps = hasEps ? (float)eps : 0.f;
    const size_t ng = (size_t)P.in / 64;
    const void *w, *sz, *y, *A, *t, *xs, *hin, *hout, *yin, *nw;
    if (!prop_buf(a, el, "words", (size_t)P.out * P.in / 4, &w, true) || !prop_buf(a, el, "sz", (size_t)P.out * ng * 4, &sz, true) ||
        !prop_buf(a, el, "y", (size_t)P.out * 4, &y, true) || !prop_buf(a, el, "A", (size_t)P.R * P.in * 2, &A) ||
        !prop_buf(a, el, "t", (size_t)P.R * 4, &t) || !prop_buf(a, el, "xs", (size_t)P.in + ng * 8 + (size_t)P.npart * 4, &xs) ||
        !prop_buf(a, el, "hin", (size_t)P.in * 4, &hin) || !prop_buf(a, el, "hout", (size_t)P.in * 4, &hout) ||
        !prop_buf(a, el, "yin", (size_t)P.in * 4 * (P.mode == 2 ? 2 : 1), &yin) || !prop_buf(a, el, "normW", (size_t)P.in * 4, &nw))
      return nullptr;
    if (!aligned16(a, w, "words") || !aligned16(a, sz, "sz") || (A && !aligned16(a, A, "A")) || (xs && !aligned16(a, xs, "xs"))) return nullptr;
    P.words = w;
    P.sz = static_cast<const uint32_t*>(sz);
    P.y = static_cast<float*>(const_cast<void*>(y));
    P.A = A;
    P.t = static_cast<float*>(const_cast<void*>(t));
    P.xs = xs;
    P.hin = static_cast<const float*>(hin);
    P.hout = static_cast<float*>(const_cast<void*>(hout));
    P.yin = static_cast<const float*>(yin);
    P.normw = static_cast<const float*>(nw);
    if (A) {
      if (!t || !(r >= 1) || r != (double)(int)r) { throw_error(env, "cudaInt8xChainPlan: phase " + std::to_string(k) + ": A needs t and an integer r ≥ 1"); return nullptr; }
      P.bt.r = (int)r;
      int prev = 0;
      for (int i = 0; i < 3; i++) {
        const char* bk[3] = {"b0", "b1", "b2"};
        const char* ek[3] = {"e0", "e1", "e2"};
        double e = 0;
        bool he = false;
        if (!prop_num(a, el, ek[i], &e, &he)) return nullptr;
        if (!he) break;
        if (!(e > prev) || e > out || e != (double)(int)e) { throw_error(env, "cudaInt8xChainPlan: segment ends must rise within out"); return nullptr; }
        const void* B;
        if (!prop_buf(a, el, bk[i], (size_t)(e - prev) * (size_t)r * 2, &B, true)) return nullptr;
        if (((int)r & 7) == 0 && !aligned16(a, B, bk[i])) return nullptr;  // a tile's B rows go by bulk copy (r % 8 == 0)
        P.bt.B[i] = B;
        P.bt.end[i] = (int)e;
        P.bt.nseg = i + 1;
        prev = (int)e;
      }
    }
  }
  void* plan = nullptr;
  if (!check(env, cuda_int8x_chain_plan(ph.data(), (int)len, (int)nks, (int)positions, &plan))) return nullptr;
  return make_number(env, g_chains.add(plan));
}
napi_value js_int8x_chain_run(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaInt8xChainRun");
  void* plan;
  bool pdl = false;
  int64_t pos = 0;
  Buf sync, cs{}, sn{};
  if (!g_chains.get(a, 0, &plan) || (!a.is_nullish(1) && !a.boolean(1, &pdl)) || !buf_arg(a, 2, 8, &sync) ||
      (!a.is_nullish(3) && !a.count(3, &pos)))
    return nullptr;
  const size_t rope = (size_t)cuda_int8x_chain_hd(plan) / 2 * 4;
  if (!cuda_opt_buf_arg(a, 4, rope, &cs) || !cuda_opt_buf_arg(a, 5, rope, &sn)) return nullptr;
  check(env, cuda_int8x_chain_run(plan, pdl, static_cast<unsigned*>(sync.ptr), (int)pos, static_cast<const float*>(cs.ptr),
                                  static_cast<const float*>(sn.ptr)));
  return nullptr;
}
napi_value js_int8x_chain_free(napi_env env, napi_callback_info info) {
  return free_id(env, info, "cudaInt8xChainFree", g_chains, cuda_int8x_chain_free);
}

// cudaInt8xChainTrace(buf | null) -> { launches, grid, stamps }: chain launches from now on write u64 %globaltimer stamps
//   [launch][grid][stamps] into buf (entry, past the PDL wait, then per phase: past its barrier, x̂ staged, A rows done,
//   items done); launches = those traced since the previous call
napi_value js_int8x_chain_trace(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaInt8xChainTrace");
  Buf t{nullptr};
  if (!cuda_opt_buf_arg(a, 0, 8, &t)) return nullptr;
  int launches = 0, grid = 0, stamps = 0;
  if (!check(env, cuda_int8x_chain_trace(t.ptr, t.bytes, &launches, &grid, &stamps))) return nullptr;
  napi_value o;
  napi_create_object(env, &o);
  set_prop(env, o, "launches", make_number(env, launches));
  set_prop(env, o, "grid", make_number(env, grid));
  set_prop(env, o, "stamps", make_number(env, stamps));
  return o;
}

// cudaInt8xPrep(x, x2 | null, normW | null, scratch, in, y | null, nzero, pdl = false, addY = null, B1 = null, t1 = null,
//   B2 = null, t2 = null, r = 0, xOut = null, xBf16 = false, unsetT = false)   the int8-x GEMV's input: the element x (bf16 with xBf16)
//   + addY + B1·t1 (B1 bf16 [in, r]; written to xOut), then as is, ·normW (RMSNorm) or silu(·)·(x2 + B2·t2) (SwiGLU),
//   quantized per 64 inputs into scratch; then nzero floats of y zeroed (unsetT: set to 0xffffffff, the "t not yet
//   stored" mark of GEMVs with parts & 2048)
bool lora_args(Args& a, size_t ib, size_t it, int64_t r, int64_t rows, Buf* B, Buf* t);  // (below, with the decode epilogues)
napi_value js_int8x_prep(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaInt8xPrep");
  int64_t in = 0, nz = 0, r = 0;
  bool pdl = false, xbf = false, unset = false;
  Buf x, x2, nw, scr, y, ay{}, b1{}, t1{}, b2{}, t2{}, xo{};
  if (!int_dim(a, 4, &in) || !a.count(6, &nz) || (!a.is_nullish(7) && !a.boolean(7, &pdl)) ||
      (!a.is_nullish(13) && !a.count(13, &r)) || (!a.is_nullish(15) && !a.boolean(15, &xbf)) ||
      (!a.is_nullish(16) && !a.boolean(16, &unset)))
    return nullptr;
  if (in % 64 != 0) { throw_error(env, "cudaInt8xPrep: in must be a multiple of 64"); return nullptr; }
  const size_t ng = (size_t)in / 64;
  if (!buf_arg(a, 0, (size_t)in * (xbf ? 2 : 4), &x) || !cuda_opt_buf_arg(a, 1, (size_t)in * 4, &x2) ||
      !cuda_opt_buf_arg(a, 2, (size_t)in * 4, &nw) || !buf_arg(a, 3, (size_t)in + ng * 8 + (ng + 7) / 8 * 4, &scr) ||
      !cuda_opt_buf_arg(a, 5, (size_t)nz * 4, &y) || !cuda_opt_buf_arg(a, 8, (size_t)in * 4, &ay) ||
      !lora_args(a, 9, 10, r, in, &b1, &t1) || !lora_args(a, 11, 12, r, in, &b2, &t2) ||
      !cuda_opt_buf_arg(a, 14, (size_t)in * 4, &xo))
    return nullptr;
  if (x2.ptr && nw.ptr) { throw_error(env, "cudaInt8xPrep: x2 (SwiGLU) and normW (RMSNorm) are exclusive"); return nullptr; }
  if (((b1.ptr || b2.ptr) && r < 1) || (b2.ptr && !x2.ptr)) {
    throw_error(env, "cudaInt8xPrep: B1/t1 and B2/t2 come in pairs with r ≥ 1, and B2 needs x2");
    return nullptr;
  }
  Int8xPrepExtra ex;
  ex.xbf16 = xbf;
  ex.addy = static_cast<const float*>(ay.ptr);
  ex.B1 = b1.ptr;
  ex.t1 = static_cast<const float*>(t1.ptr);
  ex.B2 = b2.ptr;
  ex.t2 = static_cast<const float*>(t2.ptr);
  ex.r = (int)r;
  ex.xout = static_cast<float*>(xo.ptr);
  ex.unsetT = unset;
  check(env, cuda_int8x_prep(x.ptr, static_cast<const float*>(x2.ptr), static_cast<const float*>(nw.ptr),
                             scr.ptr, (int)in, static_cast<float*>(y.ptr), y.ptr ? (int)nz : 0, pdl, &ex));
  return nullptr;
}

// cudaDecodeGemv(x, xBf16, normW | null, eps, in, segs, probe = 0, variant = 0, x2 = null, prefetch = null, evictFirst = false)
//   segs: [{ desc, codes4, y, acc?, B?, r?, tseg? } | { w, rows, y, acc?, B?, r?, tseg? }]
napi_value js_decode_gemv(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaDecodeGemv");
  int64_t in = 0;
  bool xbf = false;
  double eps = 0;
  Buf x, nw;
  if (!a.boolean(1, &xbf) || !a.number(3, &eps) || !int_dim(a, 4, &in) || !buf_arg(a, 0, (size_t)in * (xbf ? 2 : 4), &x) ||
      !cuda_opt_buf_arg(a, 2, (size_t)in * 4, &nw))
    return nullptr;
  bool is = false;
  if (a.argc > 5) napi_is_array(env, a.argv[5], &is);
  if (!is) return a.fail(5, "an array of segments"), nullptr;
  uint32_t len = 0;
  napi_get_array_length(env, a.argv[5], &len);
  if (len < 1 || len > (uint32_t)kDecodeMaxSegs) {
    throw_error(env, "cudaDecodeGemv: 1 to 8 segments");
    return nullptr;
  }
  DecodeSeg segs[kDecodeMaxSegs];
  for (uint32_t k = 0; k < len; k++) {
    napi_value el;
    napi_get_element(env, a.argv[5], k, &el);
    DecodeSeg& S = segs[k];
    napi_value dv;
    napi_valuetype dt = napi_undefined;
    if (napi_get_named_property(env, el, "desc", &dv) == napi_ok) napi_typeof(env, dv, &dt);
    double accv = 0;
    bool present = false;
    if (!prop_num(a, el, "acc", &accv, &present)) return nullptr;
    S.acc = accv != 0 ? 1 : 0;
    if (dt == napi_object) {
      QDesc d;
      if (!desc_from(a, dv, &d)) return nullptr;
      if (d.layout != 0 || d.bits != 2 || d.in != (int)in || d.group % 64 != 0 || d.gidx) {
        throw_error(env, "cudaDecodeGemv: packed segments must be 'int' 2-bit, group % 64 == 0, no gIdx, with the call's in");
        return nullptr;
      }
      const void* c4;
      if (!prop_buf(a, el, "codes4", (size_t)d.out * d.in / 4, &c4, true)) return nullptr;
      S.kind = 0; S.rows = d.out; S.group = d.group; S.ng = (d.in + d.group - 1) / d.group; S.codes = c4; S.sz = d.sz;
    } else {
      double rows = 0;
      if (!prop_num(a, el, "rows", &rows, &present)) return nullptr;
      if (!present || rows < 1 || rows != (double)(int)rows) {
        throw_error(env, "cudaDecodeGemv: a dense segment needs integer rows >= 1");
        return nullptr;
      }
      const void* w;
      if (!prop_buf(a, el, "w", (size_t)rows * in * 2, &w, true) || !aligned16(a, w, "a dense segment's w")) return nullptr;
      S.kind = 1; S.rows = (int)rows; S.W = w;
    }
    const void* y;
    if (!prop_buf(a, el, "y", (size_t)S.rows * 4, &y, true)) return nullptr;
    S.y = static_cast<float*>(const_cast<void*>(y));
    double r = 0, tseg = -1;
    bool hasR = false, hasT = false;
    if (!prop_num(a, el, "r", &r, &hasR) || !prop_num(a, el, "tseg", &tseg, &hasT)) return nullptr;
    if (hasR) {  // LoRA folded into the launch: y += B·t, t = the y of segment tseg
      if (!hasT || r < 2 || r != (double)(int)r || tseg != (double)(int)tseg) {
        throw_error(env, "cudaDecodeGemv: a segment's LoRA needs integer r and tseg");
        return nullptr;
      }
      const void* B;
      if (!prop_buf(a, el, "B", (size_t)S.rows * (size_t)r * 2, &B, true)) return nullptr;
      S.B = B; S.r = (int)r; S.tseg = (int)tseg;
    }
  }
  int64_t probe = 0, variant = 0;
  Buf x2;
  if ((!a.is_nullish(6) && !a.count(6, &probe)) || (!a.is_nullish(7) && !a.count(7, &variant)) ||
      !cuda_opt_buf_arg(a, 8, (size_t)in * 4, &x2))
    return nullptr;
  // prefetch ranges (arg 9): [{ buf, bytes }] — L2 prefetches of the next launch's weights; evictFirst (arg 10)
  DecodePf pf[kDecodeMaxPf];
  uint32_t npf = 0;
  if (!a.is_nullish(9)) {
    bool arr = false;
    napi_is_array(env, a.argv[9], &arr);
    if (!arr) return a.fail(9, "an array of { buf, bytes } prefetch ranges"), nullptr;
    napi_get_array_length(env, a.argv[9], &npf);
    if (npf > (uint32_t)kDecodeMaxPf) {
      throw_error(env, "cudaDecodeGemv: at most 16 prefetch ranges");
      return nullptr;
    }
    for (uint32_t k = 0; k < npf; k++) {
      napi_value el;
      napi_get_element(env, a.argv[9], k, &el);
      double bytes = 0;
      bool present = false;
      if (!prop_num(a, el, "bytes", &bytes, &present)) return nullptr;
      if (!present || bytes < 0 || bytes > 4294967280.0 || bytes != (double)(uint64_t)bytes) {
        throw_error(env, "cudaDecodeGemv: a prefetch range needs integer bytes < 2^32");
        return nullptr;
      }
      if (!prop_buf(a, el, "buf", (size_t)bytes, &pf[k].ptr, true)) return nullptr;
      pf[k].bytes = (uint32_t)bytes;
    }
  }
  bool evf = false;
  if (!a.is_nullish(10) && !a.boolean(10, &evf)) return nullptr;
  check(env, cuda_decode_gemv(segs, (int)len, (int)in, x.ptr, xbf, static_cast<const float*>(nw.ptr), (float)eps, (int)probe,
                              (int)variant, static_cast<const float*>(x2.ptr), pf, (int)npf, evf));
  return nullptr;
}

// LoRA B (bf16 [rows, r], rows 16-byte aligned when r % 8 == 0) and its t [r] (f32), both null or both set.
bool lora_args(Args& a, size_t ib, size_t it, int64_t r, int64_t rows, Buf* B, Buf* t) {
  if (!cuda_opt_buf_arg(a, ib, (size_t)(rows * r * 2), B) || !cuda_opt_buf_arg(a, it, (size_t)r * 4, t)) return false;
  if (!B->ptr != !t->ptr) {
    throw_error(a.env, std::string(a.fn) + ": a LoRA B needs its t (and t its B)");
    return false;
  }
  return !B->ptr || r % 8 != 0 || aligned16(a, B->ptr, "a LoRA B");
}

// cudaDecodeAttn(q, k, v, cos, sin, kc, vc, pos, Hq, Hkv, hd, out, tq = null, tk = null, tv = null, Bq = null, Bk = null,
//   Bv = null, r = 0, i8 = null)   kc/vc: the caches (bf16 [≥ pos + 1][Hkv·hd]). Launched alone (cudaDecodeAttn, no
//   persistent plan recording) it may also add the adapters' B·t (B bf16 [Hq·hd | Hkv·hd, r], t f32 [r]) to q, k and v
//   before RoPE, and write its output as the int8-x GEMV's input into the scratch i8 (x̂ | a | Σx̂ of Hq·hd inputs) —
//   then out may be null.
napi_value decode_attn_call(napi_env env, napi_callback_info info, const char* name, const char* (*fn)(const DecodeAttn&)) {
  Args a(env, info, name);
  int64_t pos = 0, Hq = 0, Hkv = 0, hd = 0, r = 0;
  if (!a.count(7, &pos) || !int_dim(a, 8, &Hq) || !int_dim(a, 9, &Hkv) || !int_dim(a, 10, &hd) ||
      (!a.is_nullish(18) && !a.count(18, &r)))
    return nullptr;
  const int64_t Q = Hq * hd, KV = Hkv * hd;
  Buf q, k, v, cs, sn, kc, vc, out{}, Bq{}, Bk{}, Bv{}, tq{}, tk{}, tv{}, i8{};
  if (!buf_arg(a, 0, Q * 4, &q) || !buf_arg(a, 1, KV * 4, &k) || !buf_arg(a, 2, KV * 4, &v) || !buf_arg(a, 3, hd / 2 * 4, &cs) ||
      !buf_arg(a, 4, hd / 2 * 4, &sn) || !buf_arg(a, 5, (pos + 1) * KV * 2, &kc) || !buf_arg(a, 6, (pos + 1) * KV * 2, &vc) ||
      !cuda_opt_buf_arg(a, 19, (size_t)Q + (size_t)Q / 64 * 8, &i8) || (!i8.ptr && !buf_arg(a, 11, Q * 2, &out)) ||
      (i8.ptr && !cuda_opt_buf_arg(a, 11, Q * 2, &out)) || !lora_args(a, 15, 12, r, Q, &Bq, &tq) ||
      !lora_args(a, 16, 13, r, KV, &Bk, &tk) || !lora_args(a, 17, 14, r, KV, &Bv, &tv))
    return nullptr;
  if (i8.ptr && Q % 64 != 0) { throw_error(env, std::string(name) + ": the int8-x output needs Hq·hd % 64 == 0"); return nullptr; }
  if ((Bq.ptr || Bk.ptr || Bv.ptr) && r < 1) { throw_error(env, std::string(name) + ": a LoRA B needs r ≥ 1"); return nullptr; }
  auto F = [](const Buf& b) { return static_cast<const float*>(b.ptr); };
  auto H = [](const Buf& b) { return static_cast<uint16_t*>(b.ptr); };
  DecodeAttn e{F(q), F(k), F(v), F(cs), F(sn), H(kc), H(vc), H(out), (int)pos, (int)Hq, (int)Hkv, (int)hd};
  e.tq = F(tq), e.tk = F(tk), e.tv = F(tv);
  e.Bq = H(Bq), e.Bk = H(Bk), e.Bv = H(Bv);
  e.r = (Bq.ptr || Bk.ptr || Bv.ptr) ? (int)r : 0;
  e.i8 = i8.ptr;
  if (cuda_decode_recording()) cuda_decode_plan_limit_pos((int)(std::min(kc.bytes, vc.bytes) / (size_t)(KV * 2)));
  check(env, fn(e));
  return nullptr;
}
napi_value js_decode_attn(napi_env env, napi_callback_info info) { return decode_attn_call(env, info, "cudaDecodeAttn", cuda_decode_attn); }
// cudaDecodeAttnFoldNext(same arguments as cudaDecodeAttn): handed to the next cudaDecodeGemv (kernel 5 runs it first
// when that GEMV's x is this attention's output), else launched by it before the GEMV
napi_value js_decode_attn_fold_next(napi_env env, napi_callback_info info) {
  return decode_attn_call(env, info, "cudaDecodeAttnFoldNext", cuda_decode_attn_fold_next);
}

// Persistent decode plans: cudaDecodePlanBegin(); then cudaDecodeGemv (kernel 5) / cudaDecodeAttn calls are recorded
// as phases, not launched; cudaDecodePlanEnd() -> id; cudaDecodePlanRun(id, pos, cos, sin) runs them all in one launch
// (attention at position pos with the RoPE tables cos/sin f32 [hd/2]); cudaDecodePlanFree(id).
IdTable g_plans{"decode plan"};
napi_value js_decode_plan_begin(napi_env env, napi_callback_info) {
  check(env, cuda_decode_plan_begin());
  return nullptr;
}
napi_value js_decode_plan_end(napi_env env, napi_callback_info) { return recorded_id(env, cuda_decode_plan_end, g_plans); }
napi_value js_decode_plan_run(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaDecodePlanRun");
  void* p;
  int64_t pos = 0;
  if (!g_plans.get(a, 0, &p) || !a.count(1, &pos)) return nullptr;
  Buf cs, sn;
  if (!buf_arg(a, 2, 4, &cs) || !buf_arg(a, 3, 4, &sn)) return nullptr;
  check(env, cuda_decode_plan_run(p, (int)pos, static_cast<const float*>(cs.ptr), static_cast<const float*>(sn.ptr)));
  return nullptr;
}
// cudaDecodePlanTrace(id, buf | null) -> { phases, grid }: runs of the plan write u64 stamps [phases][grid][6] into buf (decode.cu kTraceStamps)
napi_value js_decode_plan_trace(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaDecodePlanTrace");
  void* p;
  if (!g_plans.get(a, 0, &p)) return nullptr;
  Buf t{nullptr};
  if (!cuda_opt_buf_arg(a, 1, 8, &t)) return nullptr;
  int grid = 0;
  if (!check(env, cuda_decode_plan_trace(p, t.ptr, t.bytes, &grid))) return nullptr;
  napi_value o;
  napi_create_object(env, &o);
  set_prop(env, o, "phases", make_number(env, cuda_decode_plan_phases(p)));
  set_prop(env, o, "grid", make_number(env, grid));
  return o;
}
// cudaDecodeGemvTrace(buf | null) -> { launches, stride }: kernel-5 launches from now on write u64 stamps [launch][stride][6]
// into buf; launches = those counted since the previous call
napi_value js_decode_gemv_trace(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaDecodeGemvTrace");
  Buf t{nullptr};
  if (!cuda_opt_buf_arg(a, 0, 8, &t)) return nullptr;
  int launches = 0, stride = 0;
  if (!check(env, cuda_decode_gemv_trace(t.ptr, t.bytes, &launches, &stride))) return nullptr;
  napi_value o;
  napi_create_object(env, &o);
  set_prop(env, o, "launches", make_number(env, launches));
  set_prop(env, o, "stride", make_number(env, stride));
  return o;
}
napi_value js_decode_plan_free(napi_env env, napi_callback_info info) {
  return free_id(env, info, "cudaDecodePlanFree", g_plans, cuda_decode_plan_free);
}

// cudaArgmaxF32(x, n, id, ids | null, slot)   id: int32 [1] = argmax x (first index of the max); ids[slot] = it too
napi_value js_argmax_f32(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaArgmaxF32");
  int64_t n = 0, slot = 0;
  Buf x, id, ids;
  if (!int_dim(a, 1, &n) || !a.count(4, &slot) || !buf_arg(a, 0, n * 4, &x) || !buf_arg(a, 2, 4, &id) ||
      !cuda_opt_buf_arg(a, 3, (slot + 1) * 4, &ids))
    return nullptr;
  check(env, cuda_argmax_f32(static_cast<const float*>(x.ptr), (int)n, static_cast<int*>(id.ptr), static_cast<int*>(ids.ptr), (int)slot));
  return nullptr;
}

// cudaDecodeQkvEpi(q, k, v, tq, tk, tv, Bq, Bk, Bv, rq, rk, rv, cos, sin, Hq, Hkv, hd, qOut, kOut, vOut)
napi_value js_decode_qkv_epi(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaDecodeQkvEpi");
  int64_t rq = 0, rk = 0, rv = 0, Hq = 0, Hkv = 0, hd = 0;
  if (!int_dim(a, 9, &rq) || !int_dim(a, 10, &rk) || !int_dim(a, 11, &rv) || !int_dim(a, 14, &Hq) || !int_dim(a, 15, &Hkv) ||
      !int_dim(a, 16, &hd))
    return nullptr;
  const int64_t Q = Hq * hd, KV = Hkv * hd;
  Buf q, k, v, tq, tk, tv, Bq, Bk, Bv, cs, sn, qo, ko, vo;
  if (!buf_arg(a, 0, Q * 4, &q) || !buf_arg(a, 1, KV * 4, &k) || !buf_arg(a, 2, KV * 4, &v) ||
      !lora_args(a, 6, 3, rq, Q, &Bq, &tq) || !lora_args(a, 7, 4, rk, KV, &Bk, &tk) || !lora_args(a, 8, 5, rv, KV, &Bv, &tv) ||
      !buf_arg(a, 12, hd / 2 * 4, &cs) || !buf_arg(a, 13, hd / 2 * 4, &sn) || !buf_arg(a, 17, Q * 2, &qo) ||
      !buf_arg(a, 18, KV * 2, &ko) || !buf_arg(a, 19, KV * 2, &vo))
    return nullptr;
  if (hd % 2 != 0) return throw_error(env, "cudaDecodeQkvEpi: odd head dim"), nullptr;
  auto F = [](const Buf& b) { return static_cast<const float*>(b.ptr); };
  auto H = [](const Buf& b) { return static_cast<const uint16_t*>(b.ptr); };
  DecodeQkv e{F(q), F(k), F(v), F(tq), F(tk), F(tv), H(Bq), H(Bk), H(Bv), (int)rq, (int)rk, (int)rv, F(cs), F(sn),
              (int)Hq, (int)Hkv, (int)hd, static_cast<uint16_t*>(qo.ptr), static_cast<uint16_t*>(ko.ptr),
              static_cast<uint16_t*>(vo.ptr)};
  check(env, cuda_decode_qkv_epi(e));
  return nullptr;
}

// cudaDecodeResidualEpi(x, y, t | null, B | null, r, n)   x += y + B·t
napi_value js_decode_residual_epi(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaDecodeResidualEpi");
  int64_t r = 0, n = 0;
  Buf x, y, t, B;
  if (!int_dim(a, 4, &r) || !int_dim(a, 5, &n) || !buf_arg(a, 0, n * 4, &x) || !buf_arg(a, 1, n * 4, &y) ||
      !lora_args(a, 3, 2, r, n, &B, &t))
    return nullptr;
  check(env, cuda_decode_residual_epi(static_cast<float*>(x.ptr), static_cast<const float*>(y.ptr),
                                      static_cast<const float*>(t.ptr), B.ptr, (int)r, (int)n));
  return nullptr;
}

// cudaDecodeSwigluEpi(g, u, tg | null, tu | null, Bg | null, Bu | null, rg, ru, n, act)
napi_value js_decode_swiglu_epi(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaDecodeSwigluEpi");
  int64_t rg = 0, ru = 0, n = 0;
  Buf g, u, tg, tu, Bg, Bu, act;
  if (!int_dim(a, 6, &rg) || !int_dim(a, 7, &ru) || !int_dim(a, 8, &n) || !buf_arg(a, 0, n * 4, &g) ||
      !buf_arg(a, 1, n * 4, &u) || !lora_args(a, 4, 2, rg, n, &Bg, &tg) || !lora_args(a, 5, 3, ru, n, &Bu, &tu) ||
      !buf_arg(a, 9, n * 4, &act))
    return nullptr;
  check(env, cuda_decode_swiglu_epi(static_cast<const float*>(g.ptr), static_cast<const float*>(u.ptr),
                                    static_cast<const float*>(tg.ptr), static_cast<const float*>(tu.ptr), Bg.ptr, Bu.ptr,
                                    (int)rg, (int)ru, (int)n, static_cast<float*>(act.ptr)));
  return nullptr;
}

}  // namespace

void register_cuda_quant(napi_env env, napi_value exports) {
  export_fn(env, exports, "cudaRepackSpan4", js_repack4);
  export_fn(env, exports, "cudaInt8xRepack", js_int8x_repack);
  export_fn(env, exports, "cudaInt8xGemv", js_int8x_gemv);
  export_fn(env, exports, "cudaInt8xChainPlan", js_int8x_chain_plan);
  export_fn(env, exports, "cudaInt8xChainRun", js_int8x_chain_run);
  export_fn(env, exports, "cudaInt8xChainFree", js_int8x_chain_free);
  export_fn(env, exports, "cudaInt8xChainTrace", js_int8x_chain_trace);
  export_fn(env, exports, "cudaInt8xTileSz", js_int8x_tile_sz);
  export_fn(env, exports, "cudaInt8xPrep", js_int8x_prep);
  export_fn(env, exports, "cudaDecodeGemv", js_decode_gemv);
  export_fn(env, exports, "cudaDecodeQkvEpi", js_decode_qkv_epi);
  export_fn(env, exports, "cudaDecodeAttn", js_decode_attn);
  export_fn(env, exports, "cudaDecodeAttnFoldNext", js_decode_attn_fold_next);
  export_fn(env, exports, "cudaDecodePlanBegin", js_decode_plan_begin);
  export_fn(env, exports, "cudaDecodePlanEnd", js_decode_plan_end);
  export_fn(env, exports, "cudaDecodePlanRun", js_decode_plan_run);
  export_fn(env, exports, "cudaDecodePlanFree", js_decode_plan_free);
  export_fn(env, exports, "cudaDecodePlanTrace", js_decode_plan_trace);
  export_fn(env, exports, "cudaDecodeGemvTrace", js_decode_gemv_trace);
  export_fn(env, exports, "cudaArgmaxF32", js_argmax_f32);
  export_fn(env, exports, "cudaDecodeResidualEpi", js_decode_residual_epi);
  export_fn(env, exports, "cudaDecodeSwigluEpi", js_decode_swiglu_epi);
  export_fn(env, exports, "cudaDequantBf16", js_dequant);
  export_fn(env, exports, "cudaQGemv", js_qgemv);
  export_fn(env, exports, "cudaGemvBf16", js_gemv_bf16);
  export_fn(env, exports, "cudaQGemm", js_qgemm);
  export_fn(env, exports, "cudaQGemmFused", js_qgemm_fused);
  export_fn(env, exports, "cudaQGemmFusedWhyNot", js_qgemm_fused_why);
  export_fn(env, exports, "cudaQGemmFusedRepackBytes", js_qgemm_fused_repack_bytes);
  export_fn(env, exports, "cudaQGemmFusedRepack", js_qgemm_fused_repack);
  export_fn(env, exports, "cudaFillRandomBytes", js_fill_bytes);
  export_fn(env, exports, "cudaFillUniformBf16", js_fill_bf16);
  export_fn(env, exports, "cudaBenchDequant", js_bench_dequant);
  export_fn(env, exports, "cudaBenchCopy", js_bench_copy);
  export_fn(env, exports, "cudaBenchQGemm", js_bench_qgemm);
  export_fn(env, exports, "cudaBenchQGemmPipelined", js_bench_qgemm_pipe);
  export_fn(env, exports, "cudaBenchDenseGemm", js_bench_dense);
  export_fn(env, exports, "cudaBenchQGemmFused", js_bench_qgemm_fused);
  export_fn(env, exports, "cudaBenchQGemv", js_bench_qgemv);
  export_fn(env, exports, "cudaBenchDecode", js_bench_decode);
}

}  // namespace lowbit
