// The hot kernels behind one interface. Each has a TypeScript reference (always available, and the
// only path for Float64Array); the native addon, when loaded, replaces the Float32Array path.
import type { Arr } from '../tensor.js';

/**
 * C[M,N] = alpha · op(A) · op(B) + beta · C, row-major.
 * op(A) is A[M,K] (transA=false) or A[K,M]ᵀ; op(B) is B[K,N] (transB=false) or B[N,K]ᵀ.
 * Linear layers use transB=true: y[rows,out] = x[rows,in] · W[out,in]ᵀ.
 */
export type Sgemm = (transA: boolean, transB: boolean, M: number, N: number, K: number,
  alpha: number, A: Arr, B: Arr, beta: number, C: Arr) => void;

export function sgemmRef(transA: boolean, transB: boolean, M: number, N: number, K: number,
  alpha: number, A: Arr, B: Arr, beta: number, C: Arr): void {
  const row = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const a = transA ? A[k * M + i] : A[i * K + k];
      if (a === 0) continue;
      if (transB) { for (let j = 0; j < N; j++) row[j] += a * B[j * K + k]; }
      else { const o = k * N; for (let j = 0; j < N; j++) row[j] += a * B[o + j]; }
    }
    const o = i * N;
    for (let j = 0; j < N; j++) C[o + j] = alpha * row[j] + (beta === 0 ? 0 : beta * C[o + j]);
  }
}

let nativeSgemm: Sgemm | null = null;
/** Installed by backend/native.ts when the addon loads. */
export function setNativeSgemm(f: Sgemm | null): void { nativeSgemm = f; }

export function sgemm(transA: boolean, transB: boolean, M: number, N: number, K: number,
  alpha: number, A: Arr, B: Arr, beta: number, C: Arr): void {
  if (nativeSgemm && A instanceof Float32Array && B instanceof Float32Array && C instanceof Float32Array) {
    nativeSgemm(transA, transB, M, N, K, alpha, A, B, beta, C);
  } else {
    sgemmRef(transA, transB, M, N, K, alpha, A, B, beta, C);
  }
}
