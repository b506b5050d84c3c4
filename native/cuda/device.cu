// Device discovery and raw buffers. cudart is linked statically, so the addon loads on machines with
// no GPU/driver: cudaGetDeviceCount then just reports an error and the count is 0.
#include "check.h"
#include "lowbit_cuda.h"

#include <cstring>

namespace lowbit {

const char* cuda_device_info(int* count, char* name, size_t name_len, int* major, int* minor, int* sms) {
  *count = 0;
  LB_CUDA(cudaGetDeviceCount(count));
  if (*count > 0) {
    cudaDeviceProp p;
    LB_CUDA(cudaGetDeviceProperties(&p, 0));
    std::strncpy(name, p.name, name_len - 1);
    name[name_len - 1] = 0;
    *major = p.major;
    *minor = p.minor;
    if (sms) *sms = p.multiProcessorCount;
  }
  return nullptr;
}

const char* cuda_alloc(size_t bytes, void** ptr) {
  LB_CUDA(cudaMalloc(ptr, bytes ? bytes : 1));
  return nullptr;
}

const char* cuda_free(void* ptr) {
  LB_CUDA(cudaFree(ptr));
  return nullptr;
}

const char* cuda_upload(void* dst, const void* src, size_t bytes) {
  LB_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  return nullptr;
}

const char* cuda_download(void* dst, const void* src, size_t bytes) {
  LB_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  return nullptr;
}

const char* cuda_sync() {
  LB_CUDA(cudaDeviceSynchronize());
  return nullptr;
}

const char* cuda_memset0(void* ptr, size_t bytes) {
  LB_CUDA(cudaMemsetAsync(ptr, 0, bytes, 0));
  return nullptr;
}

const char* cuda_copy_d2d(void* dst, const void* src, size_t bytes) {
  LB_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
  return nullptr;
}

const char* cuda_mem_info(size_t* free_bytes, size_t* total_bytes) {
  LB_CUDA(cudaMemGetInfo(free_bytes, total_bytes));
  return nullptr;
}

// CUDA graphs of the calling thread's default stream (where every kernel and cuBLAS call of the addon goes).
const char* cuda_graph_begin() {
  LB_CUDA(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeThreadLocal));
  return nullptr;
}
const char* cuda_graph_end(void** exec) {
  cudaGraph_t g = nullptr;
  LB_CUDA(cudaStreamEndCapture(cudaStreamPerThread, &g));
  cudaGraphExec_t x = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&x, g, 0);
  cudaGraphDestroy(g);
  if (e != cudaSuccess) return cuda_err("cudaGraphInstantiate", e);
  *exec = x;
  return nullptr;
}
const char* cuda_graph_launch(void* exec) {
  LB_CUDA(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), cudaStreamPerThread));
  return nullptr;
}
const char* cuda_graph_free(void* exec) {
  LB_CUDA(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec)));
  return nullptr;
}

}  // namespace lowbit
