// JS bindings of GPTQ on the GPU (gptq.h). Buffer arguments are handles resolved and size-checked through the
// shared table (napi_cuda.h) before a pointer reaches CUDA; dimensions are non-negative int32. Typed interface:
// src/backend/cuda-gptq.ts (NativeCudaGptq); the orchestration is src/quant/gptq-gpu.ts.
#include <cstdint>
#include <string>

#include "gptq.h"
#include "napi_args.h"
#include "napi_cuda.h"

namespace lowbit {
namespace {

using namespace binding;

// cudaGptqHessianAdd(H f64 [n,n], X f32 [rows,n], rows, n, tmp f32 [n,n])   H ACC
napi_value js_hessian_add(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqHessianAdd");
  int64_t rows = 0, n = 0;
  Buf H, X, t;
  if (!dim(a, 2, &rows) || !dim(a, 3, &n) || !buf(a, 0, nb(n, n, 8), &H) || !buf(a, 1, nb(rows, n, 4), &X) ||
      !buf(a, 4, nb(n, n, 4), &t))
    return nullptr;
  check(env, cuda_gptq_hessian_add(f<double>(H), f<float>(X), (int)rows, (int)n, f<float>(t)));
  return nullptr;
}

// cudaGptqScaleF64(x, n, factor)
napi_value js_scale(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqScaleF64");
  int64_t n = 0;
  double k = 0;
  Buf x;
  if (!a.count(1, &n) || !a.number(2, &k) || !buf(a, 0, nb(n, 8), &x)) return nullptr;
  check(env, cuda_gptq_scale_f64(f<double>(x), (size_t)n, k));
  return nullptr;
}

// cudaGptqTransposeF64(dst [cols,rows], src [rows,cols], rows, cols)
napi_value js_transpose(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqTransposeF64");
  int64_t rows = 0, cols = 0;
  Buf d, s;
  if (!dim(a, 2, &rows) || !dim(a, 3, &cols) || !buf(a, 0, nb(rows, cols, 8), &d) || !buf(a, 1, nb(rows, cols, 8), &s))
    return nullptr;
  if (d.ptr == s.ptr && rows * cols > 0) return throw_error(env, "cudaGptqTransposeF64: dst and src must differ");
  check(env, cuda_gptq_transpose_f64(f<double>(d), f<double>(s), (int)rows, (int)cols));
  return nullptr;
}

// cudaGptqDeadColumns(H f64 [n,n], Wt f64 [n,out], n, out, diag f64 [n])
napi_value js_dead(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqDeadColumns");
  int64_t n = 0, out = 0;
  Buf H, W, d;
  if (!dim(a, 2, &n) || !dim(a, 3, &out) || !buf(a, 0, nb(n, n, 8), &H) || !buf(a, 1, nb(n, out, 8), &W) ||
      !buf(a, 4, nb(n, 8), &d))
    return nullptr;
  check(env, cuda_gptq_dead_columns(f<double>(H), f<double>(W), (int)n, (int)out, f<double>(d)));
  return nullptr;
}

// cudaGptqPermute(Hsrc, Wsrc, perm i32 [n], n, out, Hdst, Wdst)   (the caller's perm must be a permutation of 0..n-1)
napi_value js_permute(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqPermute");
  int64_t n = 0, out = 0;
  Buf Hs, Ws, p, Hd, Wd;
  if (!dim(a, 3, &n) || !dim(a, 4, &out) || !buf(a, 0, nb(n, n, 8), &Hs) || !buf(a, 1, nb(n, out, 8), &Ws) ||
      !buf(a, 2, nb(n, 4), &p) || !buf(a, 5, nb(n, n, 8), &Hd) || !buf(a, 6, nb(n, out, 8), &Wd))
    return nullptr;
  if ((Hs.ptr == Hd.ptr || Ws.ptr == Wd.ptr) && n > 0) return throw_error(env, "cudaGptqPermute: sources and destinations must differ");
  check(env, cuda_gptq_permute(f<double>(Hs), f<double>(Ws), f<int32_t>(p), (int)n, (int)out, f<double>(Hd), f<double>(Wd)));
  return nullptr;
}

// cudaGptqDampCopy(dst, src, n, damp)
napi_value js_damp(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqDampCopy");
  int64_t n = 0;
  double damp = 0;
  Buf d, s;
  if (!dim(a, 2, &n) || !a.number(3, &damp) || !buf(a, 0, nb(n, n, 8), &d) || !buf(a, 1, nb(n, n, 8), &s)) return nullptr;
  check(env, cuda_gptq_damp_copy(f<double>(d), f<double>(s), (int)n, damp));
  return nullptr;
}

// cudaGptqCholesky(A f64 [n,n], n) -> true when positive definite (A then holds L, column-major, upper zeroed)
napi_value js_cholesky(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqCholesky");
  int64_t n = 0;
  Buf A;
  if (!dim(a, 1, &n) || !buf(a, 0, nb(n, n, 8), &A)) return nullptr;
  int ok = 0;
  if (!check(env, cuda_gptq_cholesky(f<double>(A), (int)n, &ok))) return nullptr;
  return make_bool(env, ok != 0);
}

// cudaGptqCholeskyInverse(A f64 [n,n], n, work f64 [n,n])
napi_value js_chol_inverse(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqCholeskyInverse");
  int64_t n = 0;
  Buf A, w;
  if (!dim(a, 1, &n) || !buf(a, 0, nb(n, n, 8), &A) || !buf(a, 2, nb(n, n, 8), &w)) return nullptr;
  if (A.ptr == w.ptr && n > 0) return throw_error(env, "cudaGptqCholeskyInverse: work must be another buffer");
  check(env, cuda_gptq_cholesky_inverse(f<double>(A), (int)n, f<double>(w)));
  return nullptr;
}

// cudaGptqFitGroups(Wt f64 [C,out], out, C, g, bits, scales f32 [out,ng], zeros f32 [out,ng])
napi_value js_fit(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqFitGroups");
  int64_t out = 0, C = 0, g = 0, bits = 0;
  if (!dim(a, 1, &out) || !dim(a, 2, &C) || !dim(a, 3, &g) || !dim(a, 4, &bits)) return nullptr;
  if (g < 1) return throw_error(env, "cudaGptqFitGroups: group must be >= 1");
  const int64_t ng = (C + g - 1) / g;
  Buf W, s, z;
  if (!buf(a, 0, nb(C, out, 8), &W) || !buf(a, 5, nb(out, ng, 4), &s) || !buf(a, 6, nb(out, ng, 4), &z)) return nullptr;
  check(env, cuda_gptq_fit_groups(f<double>(W), (int)out, (int)C, (int)g, (int)bits, f<float>(s), f<float>(z)));
  return nullptr;
}

// cudaGptqQuantBlock(Wt, err f64 [i2-i1,out], hinv f64 [C,C], scales, zeros, colGroup i32 [C], codes u8 [C,out],
//                    lossRows f64 [out], out, C, i1, i2, g, bits, fitGroups)
napi_value js_quant_block(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqQuantBlock");
  int64_t out = 0, C = 0, i1 = 0, i2 = 0, g = 0, bits = 0;
  bool fit = false;
  if (!dim(a, 8, &out) || !dim(a, 9, &C) || !dim(a, 10, &i1) || !dim(a, 11, &i2) || !dim(a, 12, &g) ||
      !dim(a, 13, &bits) || !a.boolean(14, &fit))
    return nullptr;
  if (g < 1) return throw_error(env, "cudaGptqQuantBlock: group must be >= 1");
  if (i1 > i2 || i2 > C) return throw_error(env, "cudaGptqQuantBlock: needs 0 <= i1 <= i2 <= C");
  const int64_t ng = (C + g - 1) / g;
  Buf W, e, h, s, z, cg, codes, loss;
  if (!buf(a, 0, nb(C, out, 8), &W) || !buf(a, 1, nb(i2 - i1, out, 8), &e) || !buf(a, 2, nb(C, C, 8), &h) ||
      !buf(a, 3, nb(out, ng, 4), &s) || !buf(a, 4, nb(out, ng, 4), &z) || !buf(a, 5, nb(C, 4), &cg) ||
      !buf(a, 6, nb(C, out), &codes) || !buf(a, 7, nb(out, 8), &loss))
    return nullptr;
  check(env, cuda_gptq_quant_block(f<double>(W), f<double>(e), f<double>(h), f<float>(s), f<float>(z), f<int32_t>(cg),
                                   f<uint8_t>(codes), f<double>(loss), (int)out, (int)C, (int)i1, (int)i2, (int)g,
                                   (int)bits, fit));
  return nullptr;
}

// cudaGptqLazyUpdate(Wt f64 [C,out], err f64 [i2-i1,out], hinv f64 [C,C], out, C, i1, i2)
napi_value js_lazy(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaGptqLazyUpdate");
  int64_t out = 0, C = 0, i1 = 0, i2 = 0;
  if (!dim(a, 3, &out) || !dim(a, 4, &C) || !dim(a, 5, &i1) || !dim(a, 6, &i2)) return nullptr;
  if (i1 > i2 || i2 > C) return throw_error(env, "cudaGptqLazyUpdate: needs 0 <= i1 <= i2 <= C");
  Buf W, e, h;
  if (!buf(a, 0, nb(C, out, 8), &W) || !buf(a, 1, nb(i2 - i1, out, 8), &e) || !buf(a, 2, nb(C, C, 8), &h)) return nullptr;
  check(env, cuda_gptq_lazy_update(f<double>(W), f<double>(e), f<double>(h), (int)out, (int)C, (int)i1, (int)i2));
  return nullptr;
}

}  // namespace

void register_cuda_gptq(napi_env env, napi_value exports) {
  export_fn(env, exports, "cudaGptqHessianAdd", js_hessian_add);
  export_fn(env, exports, "cudaGptqScaleF64", js_scale);
  export_fn(env, exports, "cudaGptqTransposeF64", js_transpose);
  export_fn(env, exports, "cudaGptqDeadColumns", js_dead);
  export_fn(env, exports, "cudaGptqPermute", js_permute);
  export_fn(env, exports, "cudaGptqDampCopy", js_damp);
  export_fn(env, exports, "cudaGptqCholesky", js_cholesky);
  export_fn(env, exports, "cudaGptqCholeskyInverse", js_chol_inverse);
  export_fn(env, exports, "cudaGptqFitGroups", js_fit);
  export_fn(env, exports, "cudaGptqQuantBlock", js_quant_block);
  export_fn(env, exports, "cudaGptqLazyUpdate", js_lazy);
}

}  // namespace lowbit
