// Error plumbing shared by the .cu files: turn a failing status into the thread-local message that
// the lowbit_cuda.h functions return.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>

namespace lowbit {

inline const char* cuda_err(const char* what, cudaError_t e) {
  static thread_local char buf[256];
  std::snprintf(buf, sizeof buf, "%s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
  return buf;
}

}  // namespace lowbit

// Returns the error message from the enclosing function when a CUDA call fails.
#define LB_CUDA(call)                                       \
  do {                                                      \
    cudaError_t lb_e_ = (call);                             \
    if (lb_e_ != cudaSuccess) return ::lowbit::cuda_err(#call, lb_e_); \
  } while (0)
