// GPTQ on the GPU (gptq.h): Hessian accumulation, dead columns, act-order permutation, damping, a blocked f64
// Cholesky / inverse, and the column loop with lazy batch updates. W and H stay f64 like the TypeScript reference
// (src/quant/gptq.ts), and the per-element arithmetic of the column loop is written with explicit _rn intrinsics
// (no FMA contraction) in the reference's order, so codes match it except where cuBLAS's different summation order
// in the lazy update moves a value across a rounding boundary.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "check.h"
#include "cublas_dl.h"
#include "gptq.h"

namespace lowbit {
namespace {

constexpr int kThreads = 256;
constexpr int kCholBlock = 64;       // diagonal block of the blocked Cholesky (one CTA, in shared memory)
constexpr int kHessianChunk = 256;   // rows per f32 GEMM, as HessianAccumulator does
constexpr int kRowsPerCta = 32;      // column loop: one warp per CTA, one output row per thread
constexpr int kMaxBlockCols = 800;   // column-loop block: kRowsPerCta·8 bytes of shared memory per column

inline unsigned grid_for(size_t work) {
  size_t g = (work + kThreads - 1) / kThreads;
  if (g < 1) g = 1;
  return (unsigned)std::min<size_t>(g, 65535u * 16u);  // grid-stride loops cover the rest
}
__device__ inline size_t gtid() { return blockIdx.x * (size_t)blockDim.x + threadIdx.x; }
__device__ inline size_t gstride() { return (size_t)gridDim.x * blockDim.x; }

__global__ void add_f32_to_f64_kernel(double* H, const float* t, size_t n) {
  for (size_t i = gtid(); i < n; i += gstride()) H[i] += (double)t[i];
}

__global__ void scale_f64_kernel(double* x, size_t n, double k) {
  for (size_t i = gtid(); i < n; i += gstride()) x[i] = __dmul_rn(x[i], k);
}

// 32×32 tiles through shared memory (padded against bank conflicts).
__global__ void transpose_f64_kernel(double* dst, const double* src, int rows, int cols) {
  __shared__ double tile[32][33];
  const int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
  for (int k = threadIdx.y; k < 32; k += blockDim.y) {
    const int r = r0 + k, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[k][threadIdx.x] = src[(size_t)r * cols + c];
  }
  __syncthreads();
  for (int k = threadIdx.y; k < 32; k += blockDim.y) {
    const int c = c0 + k, r = r0 + threadIdx.x;
    if (r < rows && c < cols) dst[(size_t)c * rows + r] = tile[threadIdx.x][k];
  }
}

__global__ void dead_columns_kernel(double* H, double* Wt, int n, int out, double* diag) {
  for (size_t i = gtid(); i < (size_t)n; i += gstride()) {
    double d = H[i * n + i];
    if (d == 0) {
      d = 1;
      H[i * n + i] = 1;
      for (int r = 0; r < out; r++) Wt[i * out + r] = 0;
    }
    diag[i] = d;
  }
}

__global__ void permute_h_kernel(const double* Hs, const int32_t* perm, int n, double* Hd) {
  const size_t total = (size_t)n * n;
  for (size_t idx = gtid(); idx < total; idx += gstride()) {
    const size_t i = idx / n, j = idx % n;
    Hd[idx] = Hs[(size_t)perm[i] * n + perm[j]];
  }
}

__global__ void permute_w_kernel(const double* Ws, const int32_t* perm, int n, int out, double* Wd) {
  const size_t total = (size_t)n * out;
  for (size_t idx = gtid(); idx < total; idx += gstride()) {
    const size_t j = idx / out, r = idx % out;
    Wd[idx] = Ws[(size_t)perm[j] * out + r];
  }
}

__global__ void damp_copy_kernel(double* dst, const double* src, int n, double damp) {
  const size_t total = (size_t)n * n;
  for (size_t idx = gtid(); idx < total; idx += gstride()) {
    const size_t i = idx / n, j = idx % n;
    dst[idx] = i == j ? __dadd_rn(src[idx], damp) : src[idx];
  }
}

// Column-major (i, j) at i + j·n. mode 0: zero the strict upper triangle; 1: identity; 2: mirror lower → upper.
__global__ void triangle_kernel(double* A, int n, int mode) {
  const size_t total = (size_t)n * n;
  for (size_t idx = gtid(); idx < total; idx += gstride()) {
    const size_t i = idx % n, j = idx / n;
    if (mode == 1) A[idx] = i == j ? 1.0 : 0.0;
    else if (i < j) A[idx] = mode == 0 ? 0.0 : A[j + i * (size_t)n];
  }
}

// Unblocked right-looking Cholesky of one kb×kb diagonal block (kb ≤ 64) in shared memory. Within the block the
// updates subtract the products in the reference's order (k = 0, 1, …) without FMA, so a matrix of n ≤ 64 factors
// bit-exactly like choleskyLower. A pivot that is not > 0 (or NaN) sets *bad.
__global__ void chol_diag_kernel(double* A, int lda, int kb, int* bad) {
  __shared__ double a[kCholBlock][kCholBlock + 1];
  const int t = threadIdx.x, nt = blockDim.x;
  for (int idx = t; idx < kb * kb; idx += nt) {
    const int i = idx % kb, j = idx / kb;
    a[i][j] = i >= j ? A[i + (size_t)j * lda] : 0.0;
  }
  __syncthreads();
  for (int j = 0; j < kb; j++) {
    const double d = a[j][j];
    if (t == 0 && !(d > 0)) *bad = 1;
    const double ljj = sqrt(d);
    __syncthreads();  // every thread has read a[j][j]
    if (t == 0) a[j][j] = ljj;
    for (int i = j + 1 + t; i < kb; i += nt) a[i][j] = __ddiv_rn(a[i][j], ljj);
    __syncthreads();
    const int m = kb - j - 1;
    for (int idx = t; idx < m * m; idx += nt) {
      const int i = j + 1 + idx % m, k = j + 1 + idx / m;
      if (k <= i) a[i][k] = __dsub_rn(a[i][k], __dmul_rn(a[i][j], a[k][j]));
    }
    __syncthreads();
  }
  for (int idx = t; idx < kb * kb; idx += nt) {
    const int i = idx % kb, j = idx / kb;
    A[i + (size_t)j * lda] = i >= j ? a[i][j] : 0.0;
  }
}

// ---- GPTQ's quantizer, value for value as src/quant/{icq,rtn}.ts compute it (f32 roundings via __double2float_rn) ----

// gptqMinMaxRule over the already-found min/max (mn ≤ 0 ≤ mx): s = f16(f32(f32(mx − mn)/M)) (never 0),
// z = clamp(rint(f32(−mn/s)), 0, M).
__device__ inline void gptq_params(double mn, double mx, int bits, float* s, float* z) {
  const double M = (double)((1 << bits) - 1);
  if (mn == 0 && mx == 0) { mn = -1; mx = 1; }
  const float range = __double2float_rn(__dsub_rn(mx, mn));
  float sc = __half2float(__float2half_rn(__double2float_rn(__ddiv_rn((double)range, M))));
  if (!(sc > 0)) sc = 5.9604644775390625e-08f;  // 2^-24, storeScale's floor
  double zz = rint((double)__double2float_rn(__ddiv_rn(-mn, (double)sc)));
  zz = zz < 0 ? 0 : (zz > M ? M : zz);
  *s = sc;
  *z = (float)zz + 0.0f;  // -0 (rint of a tiny positive −mn/s) → +0, as the TypeScript reference stores
}

// Parameters of row r over columns [c0, c1) of Wt [C, out].
__device__ inline void fit_range(const double* Wt, int out, int r, int c0, int c1, int bits, float* s, float* z) {
  double mn = 0, mx = 0;
  for (int c = c0; c < c1; c++) {
    const double x = Wt[(size_t)c * out + r];
    if (x < mn) mn = x;
    if (x > mx) mx = x;
  }
  gptq_params(mn, mx, bits, s, z);
}

// quantizeValue: clamp(rint(f32(w/s)) + z, 0, M).
__device__ inline int quantize_value(double w, float s, float z, double M) {
  double q = rint((double)__double2float_rn(__ddiv_rn(w, (double)s))) + (double)z;
  q = q > M ? M : q;
  return q >= 0 ? (int)q : 0;  // (NaN → 0, as a Uint8Array stores it)
}

__global__ void fit_groups_kernel(const double* Wt, int out, int C, int g, int bits, float* scales, float* zeros) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x, gi = blockIdx.y, ng = gridDim.y;
  if (r >= out) return;
  float s, z;
  fit_range(Wt, out, r, gi * g, min(C, (gi + 1) * g), bits, &s, &z);
  scales[(size_t)r * ng + gi] = s;
  zeros[(size_t)r * ng + gi] = z;
}

// One block of GPTQ columns; thread = output row. w1 (shared) [cnt][kRowsPerCta]: each thread only touches its own
// column of it, so no barrier is needed. The group-start fit reads Wt, which the block leaves untouched (the
// reference fits on W, not on the block copy W1).
__global__ void quant_block_kernel(const double* Wt, double* err, const double* hinv, float* scales, float* zeros,
                                   const int32_t* col_group, uint8_t* codes, double* loss_rows, int out, int C, int i1,
                                   int cnt, int g, int ng, int bits, bool fit) {
  extern __shared__ double w1[];
  const int t = threadIdx.x, r = blockIdx.x * kRowsPerCta + t;
  if (r >= out) return;
  for (int i = 0; i < cnt; i++) w1[i * kRowsPerCta + t] = Wt[(size_t)(i1 + i) * out + r];
  const double M = (double)((1 << bits) - 1);
  int cur = -1;
  float s = 0, z = 0;
  double loss = 0;
  for (int i = 0; i < cnt; i++) {
    const int col = i1 + i, gi = col_group[col];
    if (fit && col % g == 0) {
      fit_range(Wt, out, r, col, min(C, col + g), bits, &s, &z);
      scales[(size_t)r * ng + gi] = s;
      zeros[(size_t)r * ng + gi] = z;
      cur = gi;
    } else if (gi != cur) {
      s = scales[(size_t)r * ng + gi];
      z = zeros[(size_t)r * ng + gi];
      cur = gi;
    }
    const double* hrow = hinv + (size_t)col * C;  // U[col, :]
    const double d = __ldg(hrow + col);
    const double w = w1[i * kRowsPerCta + t];
    const int q = quantize_value(w, s, z, M);
    codes[(size_t)col * out + r] = (uint8_t)q;
    const double wq = (double)__double2float_rn(__dmul_rn((double)s, __dsub_rn((double)q, (double)z)));
    const double diff = __dsub_rn(w, wq);
    const double e = __ddiv_rn(diff, d);
    loss = __dadd_rn(loss, __ddiv_rn(__ddiv_rn(__dmul_rn(diff, diff), __dmul_rn(d, d)), 2.0));
    err[(size_t)i * out + r] = e;
#pragma unroll 4
    for (int j = i + 1; j < cnt; j++) {
      double& x = w1[j * kRowsPerCta + t];
      x = __dsub_rn(x, __dmul_rn(e, __ldg(hrow + i1 + j)));
    }
  }
  loss_rows[r] += loss;
}

// The Cholesky's "not positive definite" flag: one device int, allocated on first use.
std::mutex g_flag_mu;
int* g_flag = nullptr;
const char* status_flag(int** out) {
  std::lock_guard<std::mutex> lk(g_flag_mu);
  if (!g_flag) LB_CUDA(cudaMalloc(&g_flag, sizeof(int)));
  *out = g_flag;
  return nullptr;
}

}  // namespace

const char* cuda_gptq_hessian_add(double* H, const float* X, int rows, int n, float* tmp) {
  if (rows <= 0 || n <= 0) return nullptr;
  const char* err = nullptr;
  const CublasApi* api = cublas_api_gptq(&err);
  if (!api) return err;
  const float one = 1, zero = 0;
  const size_t nn = (size_t)n * n;
  for (int r0 = 0; r0 < rows; r0 += kHessianChunk) {
    const int k = std::min(kHessianChunk, rows - r0);
    const float* Xc = X + (size_t)r0 * n;  // row-major [k, n] = column-major [n, k]: XᵀX = Xc·Xcᵀ
    cublasStatus_t st = api->sgemm(api->handle, CUBLAS_OP_N, CUBLAS_OP_T, n, n, k, &one, Xc, n, Xc, n, &zero, tmp, n);
    if (st != 0) return cublas_err("cublasSgemm_v2", st);
    add_f32_to_f64_kernel<<<grid_for(nn), kThreads>>>(H, tmp, nn);
    LB_CUDA(cudaGetLastError());
  }
  return nullptr;
}

const char* cuda_gptq_scale_f64(double* x, size_t n, double factor) {
  if (!n) return nullptr;
  scale_f64_kernel<<<grid_for(n), kThreads>>>(x, n, factor);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_gptq_transpose_f64(double* dst, const double* src, int rows, int cols) {
  if (rows <= 0 || cols <= 0) return nullptr;
  const dim3 grid((cols + 31) / 32, (rows + 31) / 32), block(32, 8);
  if (grid.y > 65535u) return "cuda_gptq_transpose_f64: more than 2097120 rows";
  transpose_f64_kernel<<<grid, block>>>(dst, src, rows, cols);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_gptq_dead_columns(double* H, double* Wt, int n, int out, double* diag) {
  if (n <= 0) return nullptr;
  dead_columns_kernel<<<grid_for(n), kThreads>>>(H, Wt, n, out, diag);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_gptq_permute(const double* Hs, const double* Ws, const int32_t* perm, int n, int out, double* Hd,
                              double* Wd) {
  if (n <= 0) return nullptr;
  permute_h_kernel<<<grid_for((size_t)n * n), kThreads>>>(Hs, perm, n, Hd);
  LB_CUDA(cudaGetLastError());
  if (out > 0) {
    permute_w_kernel<<<grid_for((size_t)n * out), kThreads>>>(Ws, perm, n, out, Wd);
    LB_CUDA(cudaGetLastError());
  }
  return nullptr;
}

const char* cuda_gptq_damp_copy(double* dst, const double* src, int n, double damp) {
  if (n <= 0) return nullptr;
  damp_copy_kernel<<<grid_for((size_t)n * n), kThreads>>>(dst, src, n, damp);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_gptq_cholesky(double* A, int n, int* ok) {
  *ok = 1;
  if (n <= 0) return nullptr;
  const char* err = nullptr;
  const CublasApi* api = cublas_api_gptq(&err);
  if (!api) return err;
  int* bad = nullptr;
  if ((err = status_flag(&bad))) return err;
  LB_CUDA(cudaMemsetAsync(bad, 0, sizeof(int), cudaStreamPerThread));
  const double one = 1, minus_one = -1;
  const size_t ld = (size_t)n;
  for (int k = 0; k < n; k += kCholBlock) {
    const int kb = std::min(kCholBlock, n - k), m = n - k - kb;
    chol_diag_kernel<<<1, kThreads>>>(A + k + k * ld, n, kb, bad);
    LB_CUDA(cudaGetLastError());
    if (m == 0) break;
    double* L11 = A + k + k * ld;
    double* L21 = A + (k + kb) + k * ld;
    // L21 = A21·L11⁻ᵀ
    cublasStatus_t st = api->dtrsm(api->handle, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T,
                                   CUBLAS_DIAG_NON_UNIT, m, kb, &one, L11, n, L21, n);
    if (st != 0) return cublas_err("cublasDtrsm_v2", st);
    // A22 −= L21·L21ᵀ (lower triangle)
    st = api->dsyrk(api->handle, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, m, kb, &minus_one, L21, n, &one,
                    A + (k + kb) + (k + kb) * ld, n);
    if (st != 0) return cublas_err("cublasDsyrk_v2", st);
  }
  triangle_kernel<<<grid_for((size_t)n * n), kThreads>>>(A, n, 0);
  LB_CUDA(cudaGetLastError());
  int h_bad = 0;
  LB_CUDA(cudaMemcpyAsync(&h_bad, bad, sizeof(int), cudaMemcpyDeviceToHost, cudaStreamPerThread));
  LB_CUDA(cudaStreamSynchronize(cudaStreamPerThread));
  *ok = h_bad ? 0 : 1;
  return nullptr;
}

const char* cuda_gptq_cholesky_inverse(double* A, int n, double* work) {
  if (n <= 0) return nullptr;
  const char* err = nullptr;
  const CublasApi* api = cublas_api_gptq(&err);
  if (!api) return err;
  const double one = 1, zero = 0;
  triangle_kernel<<<grid_for((size_t)n * n), kThreads>>>(work, n, 1);
  LB_CUDA(cudaGetLastError());
  // work = L⁻¹ (L·X = I)
  cublasStatus_t st = api->dtrsm(api->handle, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                                 CUBLAS_DIAG_NON_UNIT, n, n, &one, A, n, work, n);
  if (st != 0) return cublas_err("cublasDtrsm_v2", st);
  // A = L⁻ᵀ·L⁻¹ (lower triangle), then mirrored
  st = api->dsyrk(api->handle, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, n, n, &one, work, n, &zero, A, n);
  if (st != 0) return cublas_err("cublasDsyrk_v2", st);
  triangle_kernel<<<grid_for((size_t)n * n), kThreads>>>(A, n, 2);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_gptq_fit_groups(const double* Wt, int out, int C, int g, int bits, float* scales, float* zeros) {
  if (out <= 0 || C <= 0) return nullptr;
  if (g <= 0 || bits < 1 || bits > 8) return "cuda_gptq_fit_groups: group must be >= 1 and bits 1..8";
  const int ng = (C + g - 1) / g;
  if (ng > 65535) return "cuda_gptq_fit_groups: more than 65535 groups per row";
  fit_groups_kernel<<<dim3((out + 127) / 128, ng), 128>>>(Wt, out, C, g, bits, scales, zeros);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_gptq_quant_block(const double* Wt, double* err, const double* hinv, float* scales, float* zeros,
                                  const int32_t* col_group, uint8_t* codes, double* loss_rows, int out, int C, int i1,
                                  int i2, int g, int bits, bool fit_groups) {
  const int cnt = i2 - i1;
  if (out <= 0 || cnt <= 0) return nullptr;
  if (i1 < 0 || i2 > C) return "cuda_gptq_quant_block: columns outside [0, C)";
  if (cnt > kMaxBlockCols) return "cuda_gptq_quant_block: a block of more than 800 columns";
  if (g <= 0 || bits < 1 || bits > 8) return "cuda_gptq_quant_block: group must be >= 1 and bits 1..8";
  const size_t smem = (size_t)cnt * kRowsPerCta * sizeof(double);
  if (smem > 48 * 1024)
    LB_CUDA(cudaFuncSetAttribute(quant_block_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  const int ng = (C + g - 1) / g;
  quant_block_kernel<<<(out + kRowsPerCta - 1) / kRowsPerCta, kRowsPerCta, smem>>>(
      Wt, err, hinv, scales, zeros, col_group, codes, loss_rows, out, C, i1, cnt, g, ng, bits, fit_groups);
  LB_CUDA(cudaGetLastError());
  return nullptr;
}

const char* cuda_gptq_lazy_update(double* Wt, const double* err, const double* hinv, int out, int C, int i1, int i2) {
  const int cnt = i2 - i1, rest = C - i2;
  if (out <= 0 || cnt <= 0 || rest <= 0) return nullptr;
  const char* e = nullptr;
  const CublasApi* api = cublas_api_gptq(&e);
  if (!api) return e;
  const double minus_one = -1, one = 1;
  // Wt[:, i2:] (column-major out×rest) −= Err (out×cnt) · op(B), B = the (rest×cnt, ld C) block at U's memory
  // offset i1·C + i2, whose (a, b) element is U[i1+b, i2+a]: op = T gives U[i1:i2, i2:].
  cublasStatus_t st = api->dgemm(api->handle, CUBLAS_OP_N, CUBLAS_OP_T, out, rest, cnt, &minus_one, err, out,
                                 hinv + (size_t)i1 * C + i2, C, &one, Wt + (size_t)i2 * out, out);
  if (st != 0) return cublas_err("cublasDgemm_v2", st);
  return nullptr;
}

}  // namespace lowbit
