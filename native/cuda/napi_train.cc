// JS bindings of the train kernels (placeholder until they land).
#include "napi_cuda.h"

namespace lowbit {
void register_cuda_train(napi_env, napi_value) {}
}  // namespace lowbit
