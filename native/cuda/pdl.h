// Programmatic dependent launch (sm_90), shared by the .cu files that use it: a kernel lets the next one in the stream
// start launching right away (launch_dependents) and waits for the previous one's results only where it first reads them
// (wait). Without the launch attribute both are no-ops.
#pragma once
#include <cuda_runtime.h>

#include <cstdlib>
#include <utility>

#include "check.h"

namespace lowbit {

__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;\n" :::); }

// PDL launches are on unless LOWBIT_PDL=0.
inline bool pdl_on() {
  static const int on = [] { const char* e = std::getenv("LOWBIT_PDL"); return e && e[0] == '0' ? 0 : 1; }();
  return on != 0;
}

// A launch on the calling thread's default stream, with the programmatic-stream-serialization attribute when pdl.
template <typename... Exp, typename... Act>
const char* launch_ex(bool pdl, void (*kern)(Exp...), unsigned grid, unsigned block, size_t smem, Act&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(block);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = 0;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  LB_CUDA(cudaLaunchKernelEx(&cfg, kern, std::forward<Act>(args)...));
  return nullptr;
}

// Launches with PDL unless LOWBIT_PDL=0.
template <typename... Exp, typename... Act>
const char* launch_pdl(void (*kern)(Exp...), unsigned grid, unsigned block, size_t smem, Act&&... args) {
  return launch_ex(pdl_on(), kern, grid, block, smem, std::forward<Act>(args)...);
}

}  // namespace lowbit
