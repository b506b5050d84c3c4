// Short argument helpers shared by the CUDA binding files (napi_train.cc, napi_gptq.cc, napi_kl_ce.cc, napi_quantize.cc):
// byte counts that saturate instead of wrapping, and the buffer / dimension / number readers of napi_cuda.h under
// short names. Each file pulls them in with `using namespace lowbit::binding;` inside its anonymous namespace.
#pragma once
#include <cstddef>
#include <cstdint>

#include "napi_cuda.h"

namespace lowbit {
namespace binding {

// a·b·c bytes, saturating (an impossible size then fails the buffer check instead of wrapping around).
inline size_t nb(int64_t a, int64_t b, int64_t c = 1) {
  unsigned long long r = 0;
  if (__builtin_mul_overflow((unsigned long long)a, (unsigned long long)b, &r) ||
      __builtin_mul_overflow(r, (unsigned long long)c, &r))
    return SIZE_MAX;
  return (size_t)r;
}
inline bool check(napi_env env, const char* err) { return cuda_check(env, err); }
inline bool buf(Args& a, size_t i, size_t need, Buf* out) { return cuda_buf_arg(a, i, need, out); }
inline bool opt_buf(Args& a, size_t i, size_t need, Buf* out) { return cuda_opt_buf_arg(a, i, need, out); }
inline bool dim(Args& a, size_t i, int64_t* out) { return cuda_int_dim(a, i, out); }
inline bool num(Args& a, size_t i, float* out) {
  double d = 0;
  if (!a.number(i, &d)) return false;
  *out = (float)d;
  return true;
}
template <class T> T* f(const Buf& b) { return static_cast<T*>(b.ptr); }

}  // namespace binding
}  // namespace lowbit
