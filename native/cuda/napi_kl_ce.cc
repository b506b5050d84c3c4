// JS bindings of the fused KL + cross-entropy kernels of LREC distillation (kl_ce.h). Every buffer argument is a
// handle resolved and size-checked through the shared table (napi_cuda.h) before a pointer reaches CUDA. Typed
// interface: src/backend/cuda-kl-ce.ts (NativeCudaKlCe).
#include <cstdint>
#include <string>

#include "kl_ce.h"
#include "napi_args.h"
#include "napi_cuda.h"

namespace lowbit {
namespace {

using namespace binding;

// cudaKlCeRows(sLogits f32 [rows,V], tLogits f32 [rows,V], targets i32 [rows], dlogits | null, dlogitsF32,
//              klSum f32 [1], ceSum f32 [1], rows, V, klScale, ceScale)
napi_value js_kl_ce_rows(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaKlCeRows");
  int64_t rows = 0, V = 0;
  bool df32 = false;
  float ks = 0, cs = 0;
  if (!a.boolean(4, &df32) || !cuda_int_dim(a, 7, &rows) || !cuda_int_dim(a, 8, &V) || !num(a, 9, &ks) ||
      !num(a, 10, &cs))
    return nullptr;
  if (rows > 0 && V < 1) return throw_error(env, "cudaKlCeRows: V must be >= 1");
  Buf s, t, tg, d, kl, ce;
  if (!cuda_buf_arg(a, 0, nb(rows, V, 4), &s) || !cuda_buf_arg(a, 1, nb(rows, V, 4), &t) ||
      !cuda_buf_arg(a, 2, nb(rows, 4), &tg) || !cuda_opt_buf_arg(a, 3, nb(rows, V, df32 ? 4 : 2), &d) ||
      !cuda_buf_arg(a, 5, 4, &kl) || !cuda_buf_arg(a, 6, 4, &ce))
    return nullptr;
  cuda_check(env, cuda_kl_ce_rows(f<float>(s), f<float>(t), f<int32_t>(tg), d.ptr, df32, f<float>(kl), f<float>(ce),
                                  (int)rows, (int)V, ks, cs));
  return nullptr;
}

// cudaLmHeadKlCe(hidden bf16 [N,D], W bf16 [V,D], tHidden bf16 [N,D], tW bf16 [V,D], targets i32 [N],
//                dHidden f32 [N,D] | null, klSum f32 [1], ceSum f32 [1], N, D, V, klScale, ceScale, chunkRows,
//                sLogits f32 [rows·V], tLogits f32 [rows·V], dlogits bf16 [rows·V] | null)   rows = min(chunkRows, N)
napi_value js_lm_head_kl_ce(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaLmHeadKlCe");
  int64_t N = 0, D = 0, V = 0, chunk = 0;
  float ks = 0, cs = 0;
  if (!cuda_int_dim(a, 8, &N) || !cuda_int_dim(a, 9, &D) || !cuda_int_dim(a, 10, &V) || !num(a, 11, &ks) ||
      !num(a, 12, &cs) || !cuda_int_dim(a, 13, &chunk))
    return nullptr;
  if (chunk < 1) return throw_error(env, "cudaLmHeadKlCe: chunkRows must be >= 1");
  if (N > 0 && (D < 1 || V < 1)) return throw_error(env, "cudaLmHeadKlCe: D and V must be >= 1");
  const int64_t rows = chunk < N ? chunk : N;
  Buf h, W, th, tW, tg, dh, kl, ce, sl, tl, dl;
  if (!cuda_buf_arg(a, 0, nb(N, D, 2), &h) || !cuda_buf_arg(a, 1, nb(V, D, 2), &W) ||
      !cuda_buf_arg(a, 2, nb(N, D, 2), &th) || !cuda_buf_arg(a, 3, nb(V, D, 2), &tW) ||
      !cuda_buf_arg(a, 4, nb(N, 4), &tg) || !cuda_opt_buf_arg(a, 5, nb(N, D, 4), &dh) ||
      !cuda_buf_arg(a, 6, 4, &kl) || !cuda_buf_arg(a, 7, 4, &ce) || !cuda_buf_arg(a, 14, nb(rows, V, 4), &sl) ||
      !cuda_buf_arg(a, 15, nb(rows, V, 4), &tl) || !cuda_opt_buf_arg(a, 16, nb(rows, V, 2), &dl))
    return nullptr;
  if (dh.ptr && !dl.ptr) return throw_error(env, "cudaLmHeadKlCe: a gradient (dHidden) needs the dlogits scratch");
  cuda_check(env, cuda_lm_head_kl_ce(h.ptr, W.ptr, th.ptr, tW.ptr, f<int32_t>(tg), f<float>(dh), f<float>(kl),
                                     f<float>(ce), (int)N, (int)D, (int)V, ks, cs, (int)chunk, f<float>(sl),
                                     f<float>(tl), dl.ptr));
  return nullptr;
}

}  // namespace

void register_cuda_kl_ce(napi_env env, napi_value exports) {
  export_fn(env, exports, "cudaKlCeRows", js_kl_ce_rows);
  export_fn(env, exports, "cudaLmHeadKlCe", js_lm_head_kl_ce);
}

}  // namespace lowbit
