// JS bindings of the element-wise / row-wise kernels of the GPU training path (train_ops.h). Every buffer
// argument is a handle resolved and size-checked through the shared table (napi_cuda.h) before a pointer
// reaches CUDA; dimensions are non-negative int32, element counts non-negative integers. Typed interface:
// src/backend/cuda-train-ops.ts (NativeCudaTrain).
#include <cmath>
#include <cstdint>
#include <string>

#include "napi_args.h"
#include "napi_cuda.h"
#include "train_ops.h"

namespace lowbit {
namespace {

using namespace binding;

// cudaRmsnormFwd(x, w, yBf16 | null, yF32 | null, rstd | null, N, C, eps)
napi_value js_rmsnorm_fwd(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaRmsnormFwd");
  int64_t N = 0, C = 0;
  float eps = 0;
  Buf x, w, yb, yf, r;
  if (!dim(a, 5, &N) || !dim(a, 6, &C) || !num(a, 7, &eps) || !buf(a, 0, nb(N, C, 4), &x) ||
      !buf(a, 1, nb(C, 4), &w) || !opt_buf(a, 2, nb(N, C, 2), &yb) || !opt_buf(a, 3, nb(N, C, 4), &yf) ||
      !opt_buf(a, 4, nb(N, 4), &r))
    return nullptr;
  check(env, cuda_rmsnorm_fwd(f<float>(x), f<float>(w), yb.ptr, f<float>(yf), f<float>(r), (int)N, (int)C, eps));
  return nullptr;
}

// cudaRmsnormBwd(dx, dout, x, w, rstd, N, C)   dx accumulates
napi_value js_rmsnorm_bwd(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaRmsnormBwd");
  int64_t N = 0, C = 0;
  Buf dx, dout, x, w, r;
  if (!dim(a, 5, &N) || !dim(a, 6, &C) || !buf(a, 0, nb(N, C, 4), &dx) || !buf(a, 1, nb(N, C, 4), &dout) ||
      !buf(a, 2, nb(N, C, 4), &x) || !buf(a, 3, nb(C, 4), &w) || !buf(a, 4, nb(N, 4), &r))
    return nullptr;
  check(env, cuda_rmsnorm_bwd(f<float>(dx), f<float>(dout), f<float>(x), f<float>(w), f<float>(r), (int)N, (int)C));
  return nullptr;
}

// cudaRopeFwd(x, outBf16, cos, sin, B, T, H, D) / cudaRopeBwd(dout, dxBf16, cos, sin, B, T, H, D)
napi_value rope(napi_env env, napi_callback_info info, bool backward) {
  Args a(env, info, backward ? "cudaRopeBwd" : "cudaRopeFwd");
  int64_t B = 0, T = 0, H = 0, D = 0;
  if (!dim(a, 4, &B) || !dim(a, 5, &T) || !dim(a, 6, &H) || !dim(a, 7, &D)) return nullptr;
  if (D % 2) return throw_error(env, std::string(a.fn) + ": head dim D = " + std::to_string(D) + " must be even");
  const size_t n = nb(nb(B, T), H, D);
  Buf x, o, c, s;
  if (!buf(a, 0, nb(n, 4), &x) || !buf(a, 1, nb(n, 2), &o) || !buf(a, 2, nb(T, D / 2, 4), &c) ||
      !buf(a, 3, nb(T, D / 2, 4), &s))
    return nullptr;
  check(env, cuda_rope(f<float>(x), o.ptr, f<float>(c), f<float>(s), (int)B, (int)T, (int)H, (int)D, backward));
  return nullptr;
}
napi_value js_rope_fwd(napi_env env, napi_callback_info info) { return rope(env, info, false); }
napi_value js_rope_bwd(napi_env env, napi_callback_info info) { return rope(env, info, true); }

// cudaSwigluFwd(gate, up, out, n)   all bf16
napi_value js_swiglu_fwd(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaSwigluFwd");
  int64_t n = 0;
  Buf g, u, o;
  if (!a.count(3, &n) || !buf(a, 0, nb(n, 2), &g) || !buf(a, 1, nb(n, 2), &u) || !buf(a, 2, nb(n, 2), &o))
    return nullptr;
  check(env, cuda_swiglu_fwd(g.ptr, u.ptr, o.ptr, (size_t)n));
  return nullptr;
}

// cudaSwigluBwd(dout, gate, up, dgate, dup, n)   all bf16; dgate/dup overwritten
napi_value js_swiglu_bwd(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaSwigluBwd");
  int64_t n = 0;
  Buf d, g, u, dg, du;
  if (!a.count(5, &n) || !buf(a, 0, nb(n, 2), &d) || !buf(a, 1, nb(n, 2), &g) || !buf(a, 2, nb(n, 2), &u) ||
      !buf(a, 3, nb(n, 2), &dg) || !buf(a, 4, nb(n, 2), &du))
    return nullptr;
  check(env, cuda_swiglu_bwd(d.ptr, g.ptr, u.ptr, dg.ptr, du.ptr, (size_t)n));
  return nullptr;
}

// cudaAddF32(out, a, b, n)
napi_value js_add(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaAddF32");
  int64_t n = 0;
  Buf o, x, y;
  if (!a.count(3, &n) || !buf(a, 0, nb(n, 4), &o) || !buf(a, 1, nb(n, 4), &x) || !buf(a, 2, nb(n, 4), &y))
    return nullptr;
  check(env, cuda_add_f32(f<float>(o), f<float>(x), f<float>(y), (size_t)n));
  return nullptr;
}

// cudaScaleF32(x, n, factor)
napi_value js_scale(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaScaleF32");
  int64_t n = 0;
  float k = 0;
  Buf x;
  if (!a.count(1, &n) || !num(a, 2, &k) || !buf(a, 0, nb(n, 4), &x)) return nullptr;
  check(env, cuda_scale_f32(f<float>(x), (size_t)n, k));
  return nullptr;
}

// cudaCastF32ToBf16Scaled(dst bf16, src f32, n, scale)
napi_value js_cast_scaled(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaCastF32ToBf16Scaled");
  int64_t n = 0;
  float k = 0;
  Buf d, s;
  if (!a.count(2, &n) || !num(a, 3, &k) || !buf(a, 0, nb(n, 2), &d) || !buf(a, 1, nb(n, 4), &s)) return nullptr;
  check(env, cuda_cast_f32_to_bf16_scaled(d.ptr, f<float>(s), (size_t)n, k));
  return nullptr;
}

// cudaAccumulateBf16ToF32(dst f32, src bf16, n, scale)   dst += scale·src
napi_value js_acc_bf16(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaAccumulateBf16ToF32");
  int64_t n = 0;
  float k = 0;
  Buf d, s;
  if (!a.count(2, &n) || !num(a, 3, &k) || !buf(a, 0, nb(n, 4), &d) || !buf(a, 1, nb(n, 2), &s)) return nullptr;
  check(env, cuda_accumulate_bf16_to_f32(f<float>(d), s.ptr, (size_t)n, k));
  return nullptr;
}

// cudaEmbedding(ids i32, table, out f32, N, D, V, tableIsBf16)
napi_value js_embedding(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaEmbedding");
  int64_t N = 0, D = 0, V = 0;
  bool bf = false;
  Buf ids, table, out;
  if (!dim(a, 3, &N) || !dim(a, 4, &D) || !dim(a, 5, &V) || !a.boolean(6, &bf) || !buf(a, 0, nb(N, 4), &ids) ||
      !buf(a, 1, nb(V, D, bf ? 2 : 4), &table) || !buf(a, 2, nb(N, D, 4), &out))
    return nullptr;
  check(env, cuda_embedding(f<int32_t>(ids), table.ptr, bf, f<float>(out), (int)N, (int)D, (int)V));
  return nullptr;
}

// cudaLmHeadCe(hidden bf16 [N,D], W bf16 [V,D], targets i32 [N], dHidden f32 [N,D] | null, lossSum f32 [1],
//              N, D, V, scale, chunkRows, logitsScratch f32 [rows·V], dlogitsScratch bf16 [rows·V])
// rows = min(chunkRows, N).
napi_value js_lm_head_ce(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaLmHeadCe");
  int64_t N = 0, D = 0, V = 0, chunk = 0;
  float scale = 0;
  if (!dim(a, 5, &N) || !dim(a, 6, &D) || !dim(a, 7, &V) || !num(a, 8, &scale) || !dim(a, 9, &chunk)) return nullptr;
  if (chunk < 1) return throw_error(env, "cudaLmHeadCe: chunkRows must be >= 1");
  if (N > 0 && (D < 1 || V < 1)) return throw_error(env, "cudaLmHeadCe: D and V must be >= 1");
  const int64_t rows = chunk < N ? chunk : N;
  Buf h, W, t, dh, loss, lg, dl;
  if (!buf(a, 0, nb(N, D, 2), &h) || !buf(a, 1, nb(V, D, 2), &W) || !buf(a, 2, nb(N, 4), &t) ||
      !opt_buf(a, 3, nb(N, D, 4), &dh) || !buf(a, 4, 4, &loss) || !buf(a, 10, nb(rows, V, 4), &lg) ||
      !buf(a, 11, nb(rows, V, 2), &dl))
    return nullptr;
  check(env, cuda_lm_head_ce(h.ptr, W.ptr, f<int32_t>(t), f<float>(dh), f<float>(loss), (int)N, (int)D, (int)V,
                             scale, (int)chunk, f<float>(lg), dl.ptr));
  return nullptr;
}

// cudaMseF32(a, target, da | null, lossSum, n, gradScale)
napi_value js_mse(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaMseF32");
  int64_t n = 0;
  float gs = 0;
  Buf x, t, da, loss;
  if (!a.count(4, &n) || !num(a, 5, &gs) || !buf(a, 0, nb(n, 4), &x) || !buf(a, 1, nb(n, 4), &t) ||
      !opt_buf(a, 2, nb(n, 4), &da) || !buf(a, 3, 4, &loss))
    return nullptr;
  check(env, cuda_mse_f32(f<float>(x), f<float>(t), f<float>(da), f<float>(loss), (size_t)n, gs));
  return nullptr;
}

// cudaSumSquaresF32(x, n, out)   out[0] += Σ x²
napi_value js_sumsq(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaSumSquaresF32");
  int64_t n = 0;
  Buf x, o;
  if (!a.count(1, &n) || !buf(a, 0, nb(n, 4), &x) || !buf(a, 2, 4, &o)) return nullptr;
  check(env, cuda_sum_squares_f32(f<float>(x), (size_t)n, f<float>(o)));
  return nullptr;
}

// cudaAdamW(p, g, m, v, n, lr, beta1, beta2, eps, weightDecay, step, gradScale, coupledL2)
napi_value js_adamw(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaAdamW");
  int64_t n = 0, step = 0;
  double lr = 0, b1 = 0, b2 = 0, eps = 0, wd = 0, gs = 0;
  bool coupled = false;
  if (!a.count(4, &n) || !a.number(5, &lr) || !a.number(6, &b1) || !a.number(7, &b2) || !a.number(8, &eps) ||
      !a.number(9, &wd) || !a.count(10, &step) || !a.number(11, &gs) || !a.boolean(12, &coupled))
    return nullptr;
  if (step < 1) return throw_error(env, "cudaAdamW: step must be >= 1 (the step being taken, counted from 1)");
  Buf p, g, m, v;
  if (!buf(a, 0, nb(n, 4), &p) || !buf(a, 1, nb(n, 4), &g) || !buf(a, 2, nb(n, 4), &m) || !buf(a, 3, nb(n, 4), &v))
    return nullptr;
  AdamParams hp;
  hp.lr = (float)lr;
  hp.beta1 = (float)b1;
  hp.beta2 = (float)b2;
  hp.one_minus_b1 = (float)(1.0 - b1);
  hp.one_minus_b2 = (float)(1.0 - b2);
  hp.eps = (float)eps;
  hp.weight_decay = (float)wd;
  hp.bc1 = (float)(1.0 - std::pow(b1, (double)step));  // bias corrections in double, like src/train/adamw.ts
  hp.bc2 = (float)(1.0 - std::pow(b2, (double)step));
  hp.grad_scale = (float)gs;
  hp.coupled_l2 = coupled;
  check(env, cuda_adamw(f<float>(p), f<float>(g), f<float>(m), f<float>(v), (size_t)n, hp));
  return nullptr;
}

}  // namespace

void register_cuda_train(napi_env env, napi_value exports) {
  export_fn(env, exports, "cudaRmsnormFwd", js_rmsnorm_fwd);
  export_fn(env, exports, "cudaRmsnormBwd", js_rmsnorm_bwd);
  export_fn(env, exports, "cudaRopeFwd", js_rope_fwd);
  export_fn(env, exports, "cudaRopeBwd", js_rope_bwd);
  export_fn(env, exports, "cudaSwigluFwd", js_swiglu_fwd);
  export_fn(env, exports, "cudaSwigluBwd", js_swiglu_bwd);
  export_fn(env, exports, "cudaAddF32", js_add);
  export_fn(env, exports, "cudaScaleF32", js_scale);
  export_fn(env, exports, "cudaCastF32ToBf16Scaled", js_cast_scaled);
  export_fn(env, exports, "cudaAccumulateBf16ToF32", js_acc_bf16);
  export_fn(env, exports, "cudaEmbedding", js_embedding);
  export_fn(env, exports, "cudaLmHeadCe", js_lm_head_ce);
  export_fn(env, exports, "cudaMseF32", js_mse);
  export_fn(env, exports, "cudaSumSquaresF32", js_sumsq);
  export_fn(env, exports, "cudaAdamW", js_adamw);
}

}  // namespace lowbit
