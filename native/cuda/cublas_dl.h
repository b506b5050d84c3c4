// cuBLAS reached through dlopen("libcublas.so.13") with hand-written prototypes: the build machine has
// no cuBLAS headers, and an addon that links cuBLAS would not load where it is missing.
// Enum values are those of cublas_api.h / library_types.h (CUDA 12/13).
#pragma once
#include <cuda_runtime.h>

namespace lowbit {

typedef struct cublasContext* cublasHandle_t;
typedef int cublasStatus_t;  // CUBLAS_STATUS_SUCCESS = 0

enum : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum : int { CUDA_R_32F = 0, CUDA_R_16BF = 14 };          // cudaDataType_t
enum : int { CUBLAS_COMPUTE_32F = 68 };                   // cublasComputeType_t
enum : int { CUBLAS_GEMM_DEFAULT = -1 };                  // cublasGemmAlgo_t
enum : int { CUBLAS_DEFAULT_MATH = 0 };                   // cublasMath_t

struct CublasApi {
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*destroy)(cublasHandle_t);
  cublasStatus_t (*get_version)(cublasHandle_t, int*);
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
  cublasStatus_t (*set_math_mode)(cublasHandle_t, int);
  cublasStatus_t (*gemm_ex)(cublasHandle_t, int transa, int transb, int m, int n, int k, const void* alpha,
                            const void* A, int Atype, int lda, const void* B, int Btype, int ldb,
                            const void* beta, void* C, int Ctype, int ldc, int computeType, int algo);
  cublasStatus_t (*gemm_strided_batched_ex)(cublasHandle_t, int transa, int transb, int m, int n, int k,
                                            const void* alpha, const void* A, int Atype, int lda, long long strideA,
                                            const void* B, int Btype, int ldb, long long strideB, const void* beta,
                                            void* C, int Ctype, int ldc, long long strideC, int batchCount,
                                            int computeType, int algo);
  cublasStatus_t (*set_workspace)(cublasHandle_t, void*, size_t);
  cublasHandle_t handle;
  int version;
};

// Loads the library and creates the handle on first use; nullptr + *err on failure (error sticks).
const CublasApi* cublas_api(const char** err);
// "cublasGemmEx failed: CUBLAS_STATUS_..." style message.
const char* cublas_err(const char* what, cublasStatus_t s);

}  // namespace lowbit
