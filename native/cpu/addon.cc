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

// Targets must be < V (negative = ignored row), as crossEntropy* in src/model/ops/cross-entropy.ts checks.
bool check_targets(Args& a, const int32_t* t, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (t[n] >= V) {
      throw_error(a.env, std::string(a.fn) + ": target " + std::to_string(t[n]) + " at row " + std::to_string(n) +
                             " is outside the vocabulary [0, " + std::to_string(V) + ")");
      return false;
    }
  return true;
}

// crossEntropyForward(losses|null, logits, targets, N, V) -> loss sum
napi_value js_ce_forward(napi_env env, napi_callback_info info) {
  Args a(env, info, "crossEntropyForward");
  int64_t N = 0, V = 0;
  float *losses = nullptr, *logits;
  int32_t* t;
  if (!a.count(3, &N) || !a.count(4, &V) || (!a.is_nullish(0) && !a.f32(0, N, &losses)) ||
      !a.f32(1, N * V, &logits) || !a.i32(2, N, &t) || !check_targets(a, t, N, V))
    return nullptr;
  return make_number(env, cross_entropy_forward(losses, logits, t, N, V));
}

// crossEntropyBackward(dlogits, logits, targets, N, V, scale)
napi_value js_ce_backward(napi_env env, napi_callback_info info) {
  Args a(env, info, "crossEntropyBackward");
  int64_t N = 0, V = 0;
  double scale = 0;
  float *d, *logits;
  int32_t* t;
  if (!a.count(3, &N) || !a.count(4, &V) || !a.number(5, &scale) || !a.f32(0, N * V, &d) ||
      !a.f32(1, N * V, &logits) || !a.i32(2, N, &t) || !check_targets(a, t, N, V))
    return nullptr;
  cross_entropy_backward(d, logits, t, N, V, (float)scale);
  return nullptr;
}

// crossEntropyFused(dlogits, logits, targets, N, V, scale) -> loss sum; dlogits may alias logits
napi_value js_ce_fused(napi_env env, napi_callback_info info) {
  Args a(env, info, "crossEntropyFused");
  int64_t N = 0, V = 0;
  double scale = 0;
  float *d, *logits;
  int32_t* t;
  if (!a.count(3, &N) || !a.count(4, &V) || !a.number(5, &scale) || !a.f32(0, N * V, &d) ||
      !a.f32(1, N * V, &logits) || !a.i32(2, N, &t) || !check_targets(a, t, N, V))
    return nullptr;
  return make_number(env, cross_entropy_fused(d, logits, t, N, V, (float)scale));
}

// klForward(teacher, student, N, V) -> sum
napi_value js_kl_forward(napi_env env, napi_callback_info info) {
  Args a(env, info, "klForward");
  int64_t N = 0, V = 0;
  float *te, *st;
  if (!a.count(2, &N) || !a.count(3, &V) || !a.f32(0, N * V, &te) || !a.f32(1, N * V, &st)) return nullptr;
  return make_number(env, kl_forward(te, st, N, V));
}

// klBackward(dstudent, teacher, student, N, V, scale)
napi_value js_kl_backward(napi_env env, napi_callback_info info) {
  Args a(env, info, "klBackward");
  int64_t N = 0, V = 0;
  double scale = 0;
  float *d, *te, *st;
  if (!a.count(3, &N) || !a.count(4, &V) || !a.number(5, &scale) || !a.f32(0, N * V, &d) ||
      !a.f32(1, N * V, &te) || !a.f32(2, N * V, &st))
    return nullptr;
  kl_backward(d, te, st, N, V, (float)scale);
  return nullptr;
}

// adamwUpdate(w, g, m, v, lr, beta1, beta2, eps, weightDecay, coupled, bc1, bc2); n = w.length
napi_value js_adamw(napi_env env, napi_callback_info info) {
  Args a(env, info, "adamwUpdate");
  int64_t n = 0;
  float *w, *g, *m, *v;
  double lr = 0, b1 = 0, b2 = 0, eps = 0, wd = 0, bc1 = 0, bc2 = 0;
  bool coupled = false;
  if (!a.f32_len(0, &n) || !a.f32(0, n, &w) || !a.f32(1, n, &g) || !a.f32(2, n, &m) || !a.f32(3, n, &v) ||
      !a.number(4, &lr) || !a.number(5, &b1) || !a.number(6, &b2) || !a.number(7, &eps) || !a.number(8, &wd) ||
      !a.boolean(9, &coupled) || !a.number(10, &bc1) || !a.number(11, &bc2))
    return nullptr;
  const AdamParams p{(float)lr, (float)b1, (float)b2, (float)eps, (float)wd, (float)bc1, (float)bc2, coupled};
  adamw_update(w, g, m, v, n, p);
  return nullptr;
}

// sumSquares(x) -> Σ x² (double)
napi_value js_sum_squares(napi_env env, napi_callback_info info) {
  Args a(env, info, "sumSquares");
  int64_t n = 0;
  float* x;
  if (!a.f32_len(0, &n) || !a.f32(0, n, &x)) return nullptr;
  return make_number(env, sum_squares(x, n));
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
  export_fn(env, exports, "crossEntropyForward", js_ce_forward);
  export_fn(env, exports, "crossEntropyBackward", js_ce_backward);
  export_fn(env, exports, "crossEntropyFused", js_ce_fused);
  export_fn(env, exports, "klForward", js_kl_forward);
  export_fn(env, exports, "klBackward", js_kl_backward);
  export_fn(env, exports, "adamwUpdate", js_adamw);
  export_fn(env, exports, "sumSquares", js_sum_squares);
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
