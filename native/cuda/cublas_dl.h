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
enum : int { CUBLAS_SIDE_LEFT = 0, CUBLAS_SIDE_RIGHT = 1 };              // cublasSideMode_t
enum : int { CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1 };   // cublasFillMode_t
enum : int { CUBLAS_DIAG_NON_UNIT = 0, CUBLAS_DIAG_UNIT = 1 };           // cublasDiagType_t

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
  // Optional (GPTQ: f32 Hessian GEMMs, f64 Cholesky/inverse/updates): null when the library lacks the symbol;
  // callers go through cublas_api_gptq(). Scalars by host pointer (the default pointer mode), column-major.
  cublasStatus_t (*sgemm)(cublasHandle_t, int transa, int transb, int m, int n, int k, const float* alpha,
                          const float* A, int lda, const float* B, int ldb, const float* beta, float* C, int ldc);
  cublasStatus_t (*dgemm)(cublasHandle_t, int transa, int transb, int m, int n, int k, const double* alpha,
                          const double* A, int lda, const double* B, int ldb, const double* beta, double* C, int ldc);
  cublasStatus_t (*dtrsm)(cublasHandle_t, int side, int uplo, int trans, int diag, int m, int n, const double* alpha,
                          const double* A, int lda, double* B, int ldb);
  cublasStatus_t (*dsyrk)(cublasHandle_t, int uplo, int trans, int n, int k, const double* alpha, const double* A,
                          int lda, const double* beta, double* C, int ldc);
  cublasHandle_t handle;
  int version;
};

// Loads the library and creates the handle on first use; nullptr + *err on failure (error sticks).
const CublasApi* cublas_api(const char** err);
// cublas_api() when every optional (GPTQ) function was found, else nullptr + *err naming the missing symbol.
const CublasApi* cublas_api_gptq(const char** err);
// "cublasGemmEx failed: CUBLAS_STATUS_..." style message.
const char* cublas_err(const char* what, cublasStatus_t s);

}  // namespace lowbit
