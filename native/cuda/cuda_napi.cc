// JS bindings of the CUDA part. Device buffers are numeric handles into a table that remembers each
// buffer's size, so uploads/downloads/GEMMs are bounds-checked before any pointer reaches CUDA.
#include <mutex>
#include <string>
#include <unordered_map>

#include "../cpu/napi_util.h"
#include "lowbit_cuda.h"

namespace lowbit {
namespace {

struct Buf {
  void* ptr;
  size_t bytes = 0;
};
std::unordered_map<uint32_t, Buf> g_bufs;
uint32_t g_next = 1;
std::mutex g_mu;

bool check(napi_env env, const char* err) {
  if (err) throw_error(env, err);
  return err == nullptr;
}

// Reads argument i as a live buffer handle holding at least `need` bytes.
bool buf_arg(Args& a, size_t i, size_t need, Buf* out) {
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

// cudaInfo() -> { deviceCount, deviceName?, computeCapability?, error? }
napi_value js_info(napi_env env, napi_callback_info) {
  int count = 0, major = 0, minor = 0;
  char name[256] = {0};
  const char* err = cuda_device_info(&count, name, sizeof name, &major, &minor);
  napi_value o;
  napi_create_object(env, &o);
  set_prop(env, o, "deviceCount", make_number(env, count));
  if (count > 0) {
    set_prop(env, o, "deviceName", make_string(env, name));
    set_prop(env, o, "computeCapability", make_string(env, std::to_string(major) + "." + std::to_string(minor)));
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
  g_bufs[h] = Buf{p, (size_t)bytes};
  return make_number(env, h);
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
  check(env, cuda_free(b.ptr));
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

bool int_dim(Args& a, size_t i, int64_t* out) {
  if (!a.count(i, out)) return false;
  if (*out > 0x7fffffff) return a.fail(i, "below 2^31");
  return true;
}

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

void register_cuda(napi_env env, napi_value exports) {
  export_fn(env, exports, "cudaInfo", js_info);
  export_fn(env, exports, "cublasInfo", js_cublas_info);
  export_fn(env, exports, "cudaAlloc", js_alloc);
  export_fn(env, exports, "cudaFree", js_free);
  export_fn(env, exports, "cudaUpload", js_upload);
  export_fn(env, exports, "cudaDownload", js_download);
  export_fn(env, exports, "cudaSync", js_sync);
  export_fn(env, exports, "cudaConvertF32ToBf16", js_to_bf16);
  export_fn(env, exports, "cudaConvertBf16ToF32", js_to_f32);
  export_fn(env, exports, "cublasGemmBf16", js_gemm);
  export_fn(env, exports, "cublasGemmBf16Batched", js_gemm_batched);
  export_fn(env, exports, "cudaBenchGemm", js_bench);
}

}  // namespace lowbit
