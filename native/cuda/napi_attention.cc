// JS bindings of the causal GQA flash attention kernels (flash_attention.cu). Buffers are handles into the shared
// table (napi_cuda.h); the shape is read and checked first, then each buffer is resolved against the bytes
// that shape needs, so no kernel ever sees an undersized buffer.
#include <string>

#include "../cpu/napi_util.h"
#include "attention.h"
#include "napi_cuda.h"

namespace lowbit {
namespace {

struct Shape {
  int64_t B = 0, Tq = 0, Tk = 0, Hq = 0, Hkv = 0, D = 0;
};

// Dimensions at arguments first..first+5 (B, Tq, Tk, Hq, Hkv, D), validated (throws and returns false otherwise).
bool shape_args(Args& a, size_t first, Shape* s) {
  if (!cuda_int_dim(a, first, &s->B) || !cuda_int_dim(a, first + 1, &s->Tq) || !cuda_int_dim(a, first + 2, &s->Tk) ||
      !cuda_int_dim(a, first + 3, &s->Hq) || !cuda_int_dim(a, first + 4, &s->Hkv) || !cuda_int_dim(a, first + 5, &s->D))
    return false;
  if (const char* e = cuda_attn_check(s->B, s->Tq, s->Tk, s->Hq, s->Hkv, s->D)) {
    throw_error(a.env, std::string(a.fn) + ": " + e);
    return false;
  }
  return true;
}

// cudaAttnFwd(q, k, v, out, lse | null, B, Tq, Tk, Hq, Hkv, D)
napi_value js_attn_fwd(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaAttnFwd");
  Shape s;
  if (!shape_args(a, 5, &s)) return nullptr;
  const size_t nq = (size_t)(s.B * s.Tq * s.Hq * s.D), nk = (size_t)(s.B * s.Tk * s.Hkv * s.D);
  Buf q, k, v, out, lse;
  if (!cuda_buf_arg(a, 0, nq * 2, &q) || !cuda_buf_arg(a, 1, nk * 2, &k) || !cuda_buf_arg(a, 2, nk * 2, &v) ||
      !cuda_buf_arg(a, 3, nq * 2, &out) || !cuda_opt_buf_arg(a, 4, (size_t)(s.B * s.Hq * s.Tq) * 4, &lse))
    return nullptr;
  cuda_check(env, cuda_attn_fwd(q.ptr, k.ptr, v.ptr, out.ptr, static_cast<float*>(lse.ptr), (int)s.B, (int)s.Tq,
                                (int)s.Tk, (int)s.Hq, (int)s.Hkv, (int)s.D));
  return nullptr;
}

// cudaAttnBwd(dout, q, k, v, out, lse, dq, dk, dv, B, Tq, Tk, Hq, Hkv, D): overwrites dq, dk, dv.
napi_value js_attn_bwd(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaAttnBwd");
  Shape s;
  if (!shape_args(a, 9, &s)) return nullptr;
  const size_t nq = (size_t)(s.B * s.Tq * s.Hq * s.D), nk = (size_t)(s.B * s.Tk * s.Hkv * s.D);
  Buf dout, q, k, v, out, lse, dq, dk, dv;
  if (!cuda_buf_arg(a, 0, nq * 2, &dout) || !cuda_buf_arg(a, 1, nq * 2, &q) || !cuda_buf_arg(a, 2, nk * 2, &k) ||
      !cuda_buf_arg(a, 3, nk * 2, &v) || !cuda_buf_arg(a, 4, nq * 2, &out) ||
      !cuda_buf_arg(a, 5, (size_t)(s.B * s.Hq * s.Tq) * 4, &lse) || !cuda_buf_arg(a, 6, nq * 4, &dq) ||
      !cuda_buf_arg(a, 7, nk * 4, &dk) || !cuda_buf_arg(a, 8, nk * 4, &dv))
    return nullptr;
  cuda_check(env, cuda_attn_bwd(dout.ptr, q.ptr, k.ptr, v.ptr, out.ptr, static_cast<const float*>(lse.ptr),
                                static_cast<float*>(dq.ptr), static_cast<float*>(dk.ptr), static_cast<float*>(dv.ptr),
                                (int)s.B, (int)s.Tq, (int)s.Tk, (int)s.Hq, (int)s.Hkv, (int)s.D));
  return nullptr;
}

// cudaBenchAttention(B, T, Hq, Hkv, D, reps) -> { fwdMs, bwdMs } (medians; random bf16 inputs it allocates)
napi_value js_bench_attention(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaBenchAttention");
  int64_t B = 0, T = 0, Hq = 0, Hkv = 0, D = 0, reps = 0;
  if (!cuda_int_dim(a, 0, &B) || !cuda_int_dim(a, 1, &T) || !cuda_int_dim(a, 2, &Hq) || !cuda_int_dim(a, 3, &Hkv) ||
      !cuda_int_dim(a, 4, &D) || !cuda_int_dim(a, 5, &reps))
    return nullptr;
  double fwd = 0, bwd = 0;
  if (!cuda_check(env, cuda_bench_attention((int)B, (int)T, (int)Hq, (int)Hkv, (int)D, (int)reps, &fwd, &bwd)))
    return nullptr;
  napi_value o;
  napi_create_object(env, &o);
  set_prop(env, o, "fwdMs", make_number(env, fwd));
  set_prop(env, o, "bwdMs", make_number(env, bwd));
  return o;
}

}  // namespace

void register_cuda_attention(napi_env env, napi_value exports) {
  export_fn(env, exports, "cudaAttnFwd", js_attn_fwd);
  export_fn(env, exports, "cudaAttnBwd", js_attn_bwd);
  export_fn(env, exports, "cudaBenchAttention", js_bench_attention);
}

}  // namespace lowbit
