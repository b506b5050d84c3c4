// N-API entry point: argument checking + dispatch to the CPU kernels (and CUDA, when compiled in).
// Sizes are validated here so a wrong call from JS throws instead of corrupting memory.
#include "kernels.h"
#include "napi_util.h"
#include "threadpool.h"

namespace lowbit {
namespace {

// sgemm(transA, transB, M, N, K, alpha, A, B, beta, C)
napi_value js_sgemm(napi_env env, napi_callback_info info) {
  Args a(env, info, "sgemm");
  bool ta, tb;
  int64_t M = 0, N = 0, K = 0;
  double alpha = 0, beta = 0;
  float *A, *B, *C;
  if (!a.boolean(0, &ta) || !a.boolean(1, &tb) || !a.count(2, &M) || !a.count(3, &N) || !a.count(4, &K) ||
      !a.number(5, &alpha) || !a.f32(6, M * K, &A) || !a.f32(7, K * N, &B) || !a.number(8, &beta) ||
      !a.f32(9, M * N, &C))
    return nullptr;
  sgemm(ta, tb, M, N, K, (float)alpha, A, B, (float)beta, C);
  return nullptr;
}

bool attn_dims(Args& a, size_t first, int64_t d[6]) {
  for (int i = 0; i < 6; i++)
    if (!a.count(first + i, &d[i])) return false;
  const int64_t B = d[0], Tq = d[1], Tk = d[2], Hq = d[3], Hkv = d[4], D = d[5];
  if (Hkv == 0 || Hq % Hkv != 0) {
    throw_error(a.env, std::string(a.fn) + ": Hq must be a multiple of Hkv");
    return false;
  }
  if (Tq > Tk) {
    throw_error(a.env, std::string(a.fn) + ": Tq must be <= Tk");
    return false;
  }
  if (B * Tk * Hq * D > (int64_t)1 << 31 || D == 0) {
    throw_error(a.env, std::string(a.fn) + ": bad sizes");
    return false;
  }
  return true;
}

// attentionForward(out, lse|null, q, k, v, B, Tq, Tk, Hq, Hkv, D)
napi_value js_attention_forward(napi_env env, napi_callback_info info) {
  Args a(env, info, "attentionForward");
  int64_t d[6];
  if (!attn_dims(a, 5, d)) return nullptr;
  const int64_t B = d[0], Tq = d[1], Tk = d[2], Hq = d[3], Hkv = d[4], D = d[5];
  float *out, *lse = nullptr, *q, *k, *v;
  if (!a.f32(0, B * Tq * Hq * D, &out) || (!a.is_nullish(1) && !a.f32(1, B * Hq * Tq, &lse)) ||
      !a.f32(2, B * Tq * Hq * D, &q) || !a.f32(3, B * Tk * Hkv * D, &k) || !a.f32(4, B * Tk * Hkv * D, &v))
    return nullptr;
  attention_forward(out, lse, q, k, v, B, Tq, Tk, Hq, Hkv, D);
  return nullptr;
}

// attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, D)
napi_value js_attention_backward(napi_env env, napi_callback_info info) {
  Args a(env, info, "attentionBackward");
  int64_t d[6];
  if (!attn_dims(a, 9, d)) return nullptr;
  const int64_t B = d[0], Tq = d[1], Tk = d[2], Hq = d[3], Hkv = d[4], D = d[5];
  const int64_t nq = B * Tq * Hq * D, nkv = B * Tk * Hkv * D;
  float *dq, *dk, *dv, *dout, *q, *k, *v, *out, *lse;
  if (!a.f32(0, nq, &dq) || !a.f32(1, nkv, &dk) || !a.f32(2, nkv, &dv) || !a.f32(3, nq, &dout) ||
      !a.f32(4, nq, &q) || !a.f32(5, nkv, &k) || !a.f32(6, nkv, &v) || !a.f32(7, nq, &out) ||
      !a.f32(8, B * Hq * Tq, &lse))
    return nullptr;
  attention_backward(dq, dk, dv, dout, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, D);
  return nullptr;
}

// swigluForward(out, gate, up, N) / swigluBackward(dgate, dup, dout, gate, up, N)
napi_value js_swiglu_forward(napi_env env, napi_callback_info info) {
  Args a(env, info, "swigluForward");
  int64_t N = 0;
  float *out, *gate, *up;
  if (!a.count(3, &N) || !a.f32(0, N, &out) || !a.f32(1, N, &gate) || !a.f32(2, N, &up)) return nullptr;
  swiglu_forward(out, gate, up, N);
  return nullptr;
}

napi_value js_swiglu_backward(napi_env env, napi_callback_info info) {
  Args a(env, info, "swigluBackward");
  int64_t N = 0;
  float *dgate, *dup, *dout, *gate, *up;
  if (!a.count(5, &N) || !a.f32(0, N, &dgate) || !a.f32(1, N, &dup) || !a.f32(2, N, &dout) || !a.f32(3, N, &gate) ||
      !a.f32(4, N, &up))
    return nullptr;
  swiglu_backward(dgate, dup, dout, gate, up, N);
  return nullptr;
}

// rmsnormForward(out, rstd|null, x, w, N, C, eps)
napi_value js_rmsnorm_forward(napi_env env, napi_callback_info info) {
  Args a(env, info, "rmsnormForward");
  int64_t N = 0, C = 0;
  double eps = 0;
  float *out, *rstd = nullptr, *x, *w;
  if (!a.count(4, &N) || !a.count(5, &C) || !a.number(6, &eps) || !a.f32(0, N * C, &out) ||
      (!a.is_nullish(1) && !a.f32(1, N, &rstd)) || !a.f32(2, N * C, &x) || !a.f32(3, C, &w))
    return nullptr;
  rmsnorm_forward(out, rstd, x, w, N, C, (float)eps);
  return nullptr;
}

// rmsnormBackward(dx|null, dw|null, dout, x, w, rstd, N, C)
napi_value js_rmsnorm_backward(napi_env env, napi_callback_info info) {
  Args a(env, info, "rmsnormBackward");
  int64_t N = 0, C = 0;
  float *dx = nullptr, *dw = nullptr, *dout, *x, *w, *rstd;
  if (!a.count(6, &N) || !a.count(7, &C) || (!a.is_nullish(0) && !a.f32(0, N * C, &dx)) ||
      (!a.is_nullish(1) && !a.f32(1, C, &dw)) || !a.f32(2, N * C, &dout) || !a.f32(3, N * C, &x) ||
      !a.f32(4, C, &w) || !a.f32(5, N, &rstd))
    return nullptr;
  rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C);
  return nullptr;
}

napi_value js_set_threads(napi_env env, napi_callback_info info) {
  Args a(env, info, "setThreads");
  int64_t n = 0;
  if (!a.count(0, &n)) return nullptr;
  pool_set_threads((int)n);
  return make_number(env, pool_threads());
}

napi_value js_get_threads(napi_env env, napi_callback_info) { return make_number(env, pool_threads()); }

// info() -> { simd, cudaCompiled }
napi_value js_info(napi_env env, napi_callback_info) {
  napi_value o;
  napi_create_object(env, &o);
  set_prop(env, o, "simd", make_string(env, simd_name()));
#ifdef LOWBIT_CUDA
  set_prop(env, o, "cudaCompiled", make_bool(env, true));
#else
  set_prop(env, o, "cudaCompiled", make_bool(env, false));
#endif
  return o;
}

napi_value init(napi_env env, napi_value exports) {
  export_fn(env, exports, "sgemm", js_sgemm);
  export_fn(env, exports, "attentionForward", js_attention_forward);
  export_fn(env, exports, "attentionBackward", js_attention_backward);
  export_fn(env, exports, "swigluForward", js_swiglu_forward);
  export_fn(env, exports, "swigluBackward", js_swiglu_backward);
  export_fn(env, exports, "rmsnormForward", js_rmsnorm_forward);
  export_fn(env, exports, "rmsnormBackward", js_rmsnorm_backward);
  export_fn(env, exports, "setThreads", js_set_threads);
  export_fn(env, exports, "getThreads", js_get_threads);
  export_fn(env, exports, "info", js_info);
#ifdef LOWBIT_CUDA
  register_cuda(env, exports);
#endif
  return exports;
}

}  // namespace
}  // namespace lowbit

NAPI_MODULE(NODE_GYP_MODULE_NAME, lowbit::init)
