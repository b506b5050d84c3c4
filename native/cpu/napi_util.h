// Small helpers for the N-API glue: argument reading with one-line TypeErrors/RangeErrors.
// Each getter returns false after throwing, so callers `return nullptr` at once.
#pragma once
#define NAPI_VERSION 8
#include <node_api.h>

#include <cstdint>
#include <string>

namespace lowbit {

inline napi_value throw_error(napi_env env, const std::string& msg) {
  napi_throw_error(env, nullptr, ("lowbit native: " + msg).c_str());
  return nullptr;
}

struct Args {
  napi_env env;
  static constexpr size_t kMaxArgs = 24;
  size_t argc = kMaxArgs;
  napi_value argv[kMaxArgs];
  const char* fn;
  Args(napi_env e, napi_callback_info info, const char* name) : env(e), fn(name) {
    napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
    if (argc > kMaxArgs) argc = kMaxArgs;  // napi reports the count passed; only kMaxArgs slots were filled
  }
  bool fail(size_t i, const char* what) {
    napi_throw_type_error(env, nullptr,
                          (std::string("lowbit native: ") + fn + ": argument " + std::to_string(i) + " must be " + what)
                              .c_str());
    return false;
  }
  bool is_nullish(size_t i) {
    if (i >= argc) return true;
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    return t == napi_null || t == napi_undefined;
  }
  bool boolean(size_t i, bool* out) {
    if (i >= argc || napi_get_value_bool(env, argv[i], out) != napi_ok) return fail(i, "a boolean");
    return true;
  }
  bool number(size_t i, double* out) {
    if (i >= argc || napi_get_value_double(env, argv[i], out) != napi_ok) return fail(i, "a number");
    return true;
  }
  // Non-negative integer (dimensions, counts, handles).
  bool count(size_t i, int64_t* out) {
    double d;
    if (!number(i, &d)) return false;
    if (!(d >= 0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) return fail(i, "a non-negative integer");
    *out = (int64_t)d;
    return true;
  }
  // Float32Array holding at least `need` elements.
  bool f32(size_t i, int64_t need, float** out) { return typed(i, need, napi_float32_array, "a Float32Array", out); }
  // Int32Array holding at least `need` elements.
  bool i32(size_t i, int64_t need, int32_t** out) { return typed(i, need, napi_int32_array, "an Int32Array", out); }
  // Typed array of `want` type holding at least `need` elements.
  template <typename T>
  bool typed(size_t i, int64_t need, napi_typedarray_type want, const char* what, T** out) {
    bool is = false;
    if (i < argc) napi_is_typedarray(env, argv[i], &is);
    napi_typedarray_type type;
    size_t len;
    void* data;
    if (!is || napi_get_typedarray_info(env, argv[i], &type, &len, &data, nullptr, nullptr) != napi_ok || type != want)
      return fail(i, what);
    if ((int64_t)len < need) {
      napi_throw_range_error(env, nullptr,
                             (std::string("lowbit native: ") + fn + ": argument " + std::to_string(i) + " has " +
                              std::to_string(len) + " elements, needs " + std::to_string(need))
                                 .c_str());
      return false;
    }
    *out = static_cast<T*>(data);
    return true;
  }
  // Length of the Float32Array argument i (0 after throwing).
  bool f32_len(size_t i, int64_t* len) {
    float* p;
    if (!f32(i, 0, &p)) return false;
    size_t n;
    napi_typedarray_type type;
    napi_get_typedarray_info(env, argv[i], &type, &n, nullptr, nullptr, nullptr);
    *len = (int64_t)n;
    return true;
  }
  // Any TypedArray/Buffer: raw bytes.
  bool bytes(size_t i, void** data, size_t* nbytes) {
    bool is = false;
    if (i < argc) napi_is_typedarray(env, argv[i], &is);
    if (!is) return fail(i, "a TypedArray");
    napi_typedarray_type type;
    size_t len;
    napi_get_typedarray_info(env, argv[i], &type, &len, data, nullptr, nullptr);
    size_t el = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: el = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: el = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: el = 8; break;
      default: el = 1;
    }
    *nbytes = len * el;
    return true;
  }
};

inline napi_value make_number(napi_env env, double x) {
  napi_value v;
  napi_create_double(env, x, &v);
  return v;
}
inline napi_value make_bool(napi_env env, bool x) {
  napi_value v;
  napi_get_boolean(env, x, &v);
  return v;
}
inline napi_value make_string(napi_env env, const std::string& s) {
  napi_value v;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}
inline void set_prop(napi_env env, napi_value obj, const char* key, napi_value val) {
  napi_set_named_property(env, obj, key, val);
}
inline void export_fn(napi_env env, napi_value exports, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  napi_set_named_property(env, exports, name, fn);
}

#ifdef LOWBIT_CUDA
// Defined in native/cuda/cuda_napi.cc (only built when nvcc compiled the CUDA sources).
void register_cuda(napi_env env, napi_value exports);
#endif

}  // namespace lowbit
