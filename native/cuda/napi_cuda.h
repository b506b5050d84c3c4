// Shared N-API plumbing of the CUDA part: the table of device buffers behind the numeric handles JS holds.
// Every binding file (cuda_napi.cc, napi_train.cc, napi_attention.cc) resolves handles through it, so
// each pointer reaching CUDA has been checked to be live and large enough.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "../cpu/napi_util.h"

namespace lowbit {

struct Buf {
  void* ptr;
  size_t bytes = 0;
  bool view = false;  // a window into another buffer (cudaView): freeing it releases no memory
};
extern std::unordered_map<uint32_t, Buf> g_bufs;
extern uint32_t g_next;
extern std::mutex g_mu;

// Throws `err` as a JS error when non-null; returns err == nullptr.
bool cuda_check(napi_env env, const char* err);
// Argument i as a live buffer handle holding at least `need` bytes (throws otherwise).
bool cuda_buf_arg(Args& a, size_t i, size_t need, Buf* out);
// The same, but null/undefined gives Buf{nullptr, 0}.
bool cuda_opt_buf_arg(Args& a, size_t i, size_t need, Buf* out);
// Non-negative integer below 2^31.
bool cuda_int_dim(Args& a, size_t i, int64_t* out);

// Registration of the other binding files (called from register_cuda).
void register_cuda_train(napi_env env, napi_value exports);      // napi_train.cc
void register_cuda_attention(napi_env env, napi_value exports);  // napi_attention.cc
void register_cuda_gptq(napi_env env, napi_value exports);       // napi_gptq.cc
void register_cuda_quantize(napi_env env, napi_value exports);   // napi_quantize.cc
void register_cuda_kl_ce(napi_env env, napi_value exports);      // napi_kl_ce.cc

}  // namespace lowbit
