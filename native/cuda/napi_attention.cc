// JS bindings of the attention kernels (placeholder until they land).
#include "napi_cuda.h"

namespace lowbit {
void register_cuda_attention(napi_env, napi_value) {}
}  // namespace lowbit
