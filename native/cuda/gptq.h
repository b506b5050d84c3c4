// Plain C++ interface of GPTQ on the GPU (gptq.cu), free of CUDA types so the N-API glue (napi_gptq.cc) builds
// with g++ alone. The TypeScript twin of every step is in src/quant/gptq.ts (quantizeGPTQ, choleskyLower,
// choleskyInverse, HessianAccumulator); src/quant/gptq-gpu.ts drives these functions in that order.
//
// Layouts. Square f64 matrices are column-major n×n (symmetric inputs read the same either way). The weight lives
// TRANSPOSED, Wt[c·out + r] = W[r, c] ("[in, out]"): a column of W is contiguous, so the threads that own rows read
// it coalesced, and Wt is W column-major for cuBLAS. Codes are written in the same [in, out] order (the host
// un-permutes and packs them). The upper Cholesky factor U of H⁻¹ that GPTQ uses, row-major U[i·n + j], is the
// same memory as the column-major LOWER factor of H⁻¹: that is what the second cuda_gptq_cholesky leaves.
//
// Every function is stream-ordered on the calling thread's default stream and returns nullptr or a one-line error.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

// H f64 [n,n] += Σ over chunks of at most 256 rows of f32(Xcᵀ·Xc) (cuBLAS Sgemm into tmp, then added in f64).
// X f32 [rows, n] row-major; tmp f32 [n, n] scratch.
const char* cuda_gptq_hessian_add(double* H, const float* X, int rows, int n, float* tmp);
// x *= factor (f64, n values).
const char* cuda_gptq_scale_f64(double* x, size_t n, double factor);
// dst [cols, rows] = transpose of src [rows, cols] (f64, row-major both).
const char* cuda_gptq_transpose_f64(double* dst, const double* src, int rows, int cols);
// Dead inputs: where H[i,i] == 0 set H[i,i] = 1 and zero column i of W (row i of Wt [n, out]); diag[i] = H[i,i] after.
const char* cuda_gptq_dead_columns(double* H, double* Wt, int n, int out, double* diag);
// Act-order: Hdst[i,j] = Hsrc[perm[i], perm[j]], Wdst row j = Wsrc row perm[j] (Wt layout [n, out]).
const char* cuda_gptq_permute(const double* Hsrc, const double* Wsrc, const int32_t* perm, int n, int out,
                              double* Hdst, double* Wdst);
// dst = src + damp·I (n×n).
const char* cuda_gptq_damp_copy(double* dst, const double* src, int n, double damp);
// In-place lower Cholesky of A (column-major; lower triangle read), blocked by 64: one-CTA kernel on each diagonal
// block, cuBLAS Dtrsm for the panel below it, Dsyrk for the trailing matrix. The strict upper triangle is zeroed.
// *ok = 0 when A is not positive definite (a pivot ≤ 0 or NaN), 1 otherwise.
const char* cuda_gptq_cholesky(double* A, int n, int* ok);
// A ← (L·Lᵀ)⁻¹, full symmetric, from the lower factor L held in A (torch.cholesky_inverse): work ← L⁻¹ (Dtrsm on
// the identity), A ← L⁻ᵀ·L⁻¹ (Dsyrk), then mirrored. work: n×n f64 scratch.
const char* cuda_gptq_cholesky_inverse(double* A, int n, double* work);
// GPTQ's min/max rule (xmin ≤ 0 ≤ xmax, f16-rounded scale) for every group of g consecutive inputs of every row of
// Wt [C, out] (the last group may be shorter): scales/zeros f32 [out, ceil(C/g)].
const char* cuda_gptq_fit_groups(const double* Wt, int out, int C, int g, int bits, float* scales, float* zeros);
// One block of columns [i1, i2) of GPTQ's column loop. Each thread owns an output row: it copies the row's block of
// Wt into shared memory and walks the columns in order — group parameters fitted on Wt at each group start when
// fit_groups (else read from scales/zeros at col_group[col]), code, error e = (w − ŵ)/U[c,c] into err [i2−i1, out],
// the in-block update of the later columns, and the row's loss added to loss_rows [out]. codes u8 [C, out].
// hinv: U as described above (C×C). i2 − i1 ≤ 800.
const char* cuda_gptq_quant_block(const double* Wt, double* err, const double* hinv, float* scales, float* zeros,
                                  const int32_t* col_group, uint8_t* codes, double* loss_rows, int out, int C, int i1,
                                  int i2, int g, int bits, bool fit_groups);
// The lazy batch update W[:, i2:] −= Err·U[i1:i2, i2:] (cuBLAS Dgemm) on Wt.
const char* cuda_gptq_lazy_update(double* Wt, const double* err, const double* hinv, int out, int C, int i1, int i2);

}  // namespace lowbit
