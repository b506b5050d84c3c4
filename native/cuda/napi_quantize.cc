// JS bindings of the quantizer kernels (quantize.h). Buffer arguments are handles resolved and size-checked
// through the shared table (napi_cuda.h); dimensions are non-negative int32, counts non-negative integers.
// Typed interface: src/backend/cuda-quantize.ts (NativeCudaQuantize).
#include <cstdint>
#include <string>

#include "napi_args.h"
#include "napi_cuda.h"
#include "quantize.h"

namespace lowbit {
namespace {

using namespace binding;
size_t ceil_div(int64_t a, int64_t b) { return (size_t)((a + b - 1) / b); }

// cudaQuantInt(W, out, in, bits, group, rule, codes, scales, zeros, mults | null, nMults, ent | null, stats | null)
napi_value js_quant_int(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaQuantInt");
  int64_t out = 0, in = 0, bits = 0, group = 0, rule = 0, nm = 0;
  if (!dim(a, 1, &out) || !dim(a, 2, &in) || !dim(a, 3, &bits) || !dim(a, 4, &group) || !dim(a, 5, &rule) ||
      !dim(a, 10, &nm))
    return nullptr;
  if (group < 1 || group > in) return throw_error(env, "cudaQuantInt: group must be 1..in");
  const size_t ng = nb(out, ceil_div(in, group));
  Buf W, codes, sc, zr, mults, ent, stats;
  if (!buf(a, 0, nb(out, in, 4), &W) || !buf(a, 6, nb(out, in), &codes) || !buf(a, 7, nb(ng, 4), &sc) ||
      !buf(a, 8, nb(ng, 4), &zr) || !opt_buf(a, 9, nb(nm, 8), &mults) || !opt_buf(a, 11, nb(2, group + 1, 8), &ent) ||
      !opt_buf(a, 12, nb(2, ng, 8), &stats))
    return nullptr;
  check(env, cuda_quant_int(f<float>(W), (int)out, (int)in, (int)bits, (int)group, (int)rule, f<double>(mults), (int)nm,
                            f<double>(ent), f<uint8_t>(codes), f<float>(sc), f<float>(zr), f<double>(stats)));
  return nullptr;
}

// cudaQuantBlockwise(x, n, block, levels, nLevels, offset | null, codes, absmax)
napi_value js_quant_blockwise(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaQuantBlockwise");
  int64_t n = 0, block = 0, nl = 0;
  if (!a.count(1, &n) || !dim(a, 2, &block) || !dim(a, 4, &nl)) return nullptr;
  if (block < 1) return throw_error(env, "cudaQuantBlockwise: block must be >= 1");
  Buf x, lev, off, codes, am;
  if (!buf(a, 0, nb(n, 4), &x) || !buf(a, 3, nb(nl, 4), &lev) || !opt_buf(a, 5, 4, &off) || !buf(a, 6, nb(n, 1), &codes) ||
      !buf(a, 7, nb(ceil_div(n, block), 4), &am))
    return nullptr;
  check(env, cuda_quant_blockwise(f<float>(x), (size_t)n, (int)block, f<float>(lev), (int)nl, f<float>(off),
                                  f<uint8_t>(codes), f<float>(am)));
  return nullptr;
}

// cudaIcqNf(W, n, bits, block, levels, factors, nFactors, ent, codes, absmax, tau, stats | null)
napi_value js_icq_nf(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaIcqNf");
  int64_t n = 0, bits = 0, block = 0, nf = 0;
  if (!a.count(1, &n) || !dim(a, 2, &bits) || !dim(a, 3, &block) || !dim(a, 6, &nf)) return nullptr;
  if (block < 1 || bits < 2 || bits > 8) return throw_error(env, "cudaIcqNf: block >= 1 and bits 2..8 required");
  const size_t nblk = ceil_div(n, block);
  Buf W, lev, fac, ent, codes, am, tau, stats;
  if (!buf(a, 0, nb(n, 4), &W) || !buf(a, 4, nb((int64_t)1 << bits, 4), &lev) || !buf(a, 5, nb(nf, 4), &fac) ||
      !buf(a, 7, nb(2, block + 1, 8), &ent) || !buf(a, 8, nb(n, 1), &codes) || !buf(a, 9, nb(nblk, 4), &am) ||
      !buf(a, 10, nb(nblk, 4), &tau) || !opt_buf(a, 11, nb(2, nblk, 8), &stats))
    return nullptr;
  check(env, cuda_icq_nf(f<float>(W), (size_t)n, (int)bits, (int)block, f<float>(lev), f<float>(fac), (int)nf,
                         f<double>(ent), f<uint8_t>(codes), f<float>(am), f<float>(tau), f<double>(stats)));
  return nullptr;
}

// cudaAbsmaxMean(absmax, nb, work)   work (>= 16 bytes) f32 [0] = fr(Σ absmax / max(1, nb)), Σ in f64
napi_value js_absmax_mean(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaAbsmaxMean");
  int64_t n = 0;
  Buf x, w;
  if (!a.count(1, &n) || !buf(a, 0, nb(n, 4), &x) || !buf(a, 2, 16, &w)) return nullptr;
  check(env, cuda_absmax_mean(f<float>(x), (size_t)n, w.ptr));
  return nullptr;
}

// cudaTauDq(tau, nb, dynmap, q, scale)
napi_value js_tau_dq(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaTauDq");
  int64_t n = 0;
  Buf t, map, q, s;
  if (!a.count(1, &n) || !buf(a, 0, nb(n, 4), &t) || !buf(a, 2, 256 * 4, &map) || !buf(a, 3, nb(n, 1), &q) ||
      !buf(a, 4, nb(ceil_div(n, 256), 4), &s))
    return nullptr;
  check(env, cuda_tau_dq(f<float>(t), (size_t)n, f<float>(map), f<uint8_t>(q), f<float>(s)));
  return nullptr;
}

// cudaPackCodes(codes, n, bits, packed)
napi_value js_pack_codes(napi_env env, napi_callback_info info) {
  Args a(env, info, "cudaPackCodes");
  int64_t n = 0, bits = 0;
  if (!a.count(1, &n) || !dim(a, 2, &bits)) return nullptr;
  if (bits < 1 || bits > 8) return throw_error(env, "cudaPackCodes: bits must be 1..8");
  Buf c, p;
  if (!buf(a, 0, nb(n, 1), &c) || !buf(a, 3, ceil_div(nb(n, bits), 8), &p)) return nullptr;
  check(env, cuda_pack_codes(f<uint8_t>(c), (size_t)n, (int)bits, f<uint8_t>(p)));
  return nullptr;
}

}  // namespace

void register_cuda_quantize(napi_env env, napi_value exports) {
  export_fn(env, exports, "cudaQuantInt", js_quant_int);
  export_fn(env, exports, "cudaQuantBlockwise", js_quant_blockwise);
  export_fn(env, exports, "cudaIcqNf", js_icq_nf);
  export_fn(env, exports, "cudaAbsmaxMean", js_absmax_mean);
  export_fn(env, exports, "cudaTauDq", js_tau_dq);
  export_fn(env, exports, "cudaPackCodes", js_pack_codes);
}

}  // namespace lowbit
