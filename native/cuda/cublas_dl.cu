// Lazy cuBLAS loader (see cublas_dl.h for why dlopen).
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "check.h"
#include "cublas_dl.h"
#include "lowbit_cuda.h"

namespace lowbit {
namespace {

constexpr size_t kWorkspaceBytes = 64u << 20;  // cuBLAS recommends >= 32 MiB on Hopper


CublasApi g_api;
std::string g_error;  // set once if loading failed
std::string g_missing_optional;  // the first optional symbol not found ("" = all there)
std::once_flag g_once;

const char* status_name(cublasStatus_t s) {
  switch (s) {
    case 0: return "CUBLAS_STATUS_SUCCESS";
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case 16: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

void load() {
  // LOWBIT_CUBLAS may name the library file; otherwise the loader path, then the CUDA default location.
  const char* env = std::getenv("LOWBIT_CUBLAS");
  const char* candidates[] = {env, "libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.13", "libcublas.so"};
  void* lib = nullptr;
  std::string tried;
  for (const char* c : candidates) {
    if (!c || !*c) continue;
    lib = dlopen(c, RTLD_NOW | RTLD_LOCAL);
    if (lib) break;
    const char* e = dlerror();
    tried += std::string(tried.empty() ? "" : "; ") + (e ? e : c);
  }
  if (!lib) {
    g_error = "cannot dlopen cuBLAS: " + tried;
    return;
  }
  struct Sym { void** slot; const char* name; } syms[] = {
      {(void**)&g_api.create, "cublasCreate_v2"},
      {(void**)&g_api.destroy, "cublasDestroy_v2"},
      {(void**)&g_api.get_version, "cublasGetVersion_v2"},
      {(void**)&g_api.set_stream, "cublasSetStream_v2"},
      {(void**)&g_api.set_math_mode, "cublasSetMathMode"},
      {(void**)&g_api.gemm_ex, "cublasGemmEx"},
      {(void**)&g_api.gemm_strided_batched_ex, "cublasGemmStridedBatchedEx"},
      {(void**)&g_api.set_workspace, "cublasSetWorkspace_v2"},
  };
  for (auto& s : syms) {
    *s.slot = dlsym(lib, s.name);
    if (!*s.slot) {
      g_error = std::string("cuBLAS has no symbol ") + s.name;
      return;
    }
  }
  // Optional symbols: their absence only disables the functions that need them (cublas_api_gptq).
  struct Sym optional[] = {
      {(void**)&g_api.sgemm, "cublasSgemm_v2"},
      {(void**)&g_api.dgemm, "cublasDgemm_v2"},
      {(void**)&g_api.dtrsm, "cublasDtrsm_v2"},
      {(void**)&g_api.dsyrk, "cublasDsyrk_v2"},
  };
  for (auto& s : optional) {
    *s.slot = dlsym(lib, s.name);
    if (!*s.slot && g_missing_optional.empty()) g_missing_optional = s.name;
  }
  cublasStatus_t st = g_api.create(&g_api.handle);
  if (st != 0) {
    g_error = cublas_err("cublasCreate_v2", st);
    return;
  }
  // Default math: bf16 GEMMs use tensor cores with fp32 accumulation (CUBLAS_COMPUTE_32F).
  if ((st = g_api.set_math_mode(g_api.handle, CUBLAS_DEFAULT_MATH)) != 0 ||
      (st = g_api.set_stream(g_api.handle, cudaStreamPerThread)) != 0 ||
      (st = g_api.get_version(g_api.handle, &g_api.version)) != 0) {
    g_error = cublas_err("cublas handle setup", st);
    return;
  }
  // A workspace of our own: without one cuBLAS may allocate during a CUDA-graph capture, which is illegal there.
  void* ws = nullptr;
  if (cudaMalloc(&ws, kWorkspaceBytes) != cudaSuccess || (st = g_api.set_workspace(g_api.handle, ws, kWorkspaceBytes)) != 0) {
    g_error = "cuBLAS workspace setup failed";
    return;
  }
}

}  // namespace

const char* cublas_err(const char* what, cublasStatus_t s) {
  static thread_local char buf[256];
  std::snprintf(buf, sizeof buf, "%s failed: %s (%d)", what, status_name(s), s);
  return buf;
}

const CublasApi* cublas_api(const char** err) {
  std::call_once(g_once, load);
  if (!g_error.empty()) {
    *err = g_error.c_str();
    return nullptr;
  }
  return &g_api;
}

const CublasApi* cublas_api_gptq(const char** err) {
  const CublasApi* api = cublas_api(err);
  if (api && !g_missing_optional.empty()) {
    static const std::string msg = "cuBLAS has no symbol " + g_missing_optional + " (needed by GPTQ)";
    *err = msg.c_str();
    return nullptr;
  }
  return api;
}

const char* cublas_load(int* version) {
  const char* err = nullptr;
  const CublasApi* api = cublas_api(&err);
  if (!api) return err;
  *version = api->version;
  return nullptr;
}

}  // namespace lowbit
