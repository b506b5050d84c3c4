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

// ---------------------------------------------------------------------------------------------
// Causal grouped-query attention.
//   q [B,Tq,Hq,D], k,v [B,Tk,Hkv,D], out [B,Tq,Hq,D], lse [B,Hq,Tq] (log-sum-exp of the scaled scores
//   per query row, saved for the backward; may be null at inference). Scale 1/sqrt(D). Query i sits at
//   absolute position i + (Tk − Tq) and attends to keys 0..that position. Query head h reads kv head
//   floor(h / (Hq/Hkv)).

export type AttentionForward = (out: Arr, lse: Arr | null, q: Arr, k: Arr, v: Arr,
  B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number) => void;
export type AttentionBackward = (dq: Arr, dk: Arr, dv: Arr, dout: Arr, q: Arr, k: Arr, v: Arr, out: Arr,
  lse: Arr, B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number) => void;

function checkAttentionDims(Tq: number, Tk: number, Hq: number, Hkv: number): void {
  if (Hkv <= 0 || Hq % Hkv !== 0) {
    throw new Error(`src/backend/kernels.ts: attention: ${Hq} query heads are not a multiple of ${Hkv} kv heads`);
  }
  if (Tk < Tq) throw new Error(`src/backend/kernels.ts: attention: Tk=${Tk} < Tq=${Tq}`);
}

/** TS reference (float64 internally; the only path for Float64Array). */
export function attentionForwardRef(out: Arr, lse: Arr | null, q: Arr, k: Arr, v: Arr,
  B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): void {
  checkAttentionDims(Tq, Tk, Hq, Hkv);
  const group = Hq / Hkv, scale = 1 / Math.sqrt(D), off = Tk - Tq;
  const s = new Float64Array(Tk), acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Tq; i++) {
        const qo = ((b * Tq + i) * Hq + h) * D, last = i + off;
        let max = -Infinity;
        for (let j = 0; j <= last; j++) {
          const ko = ((b * Tk + j) * Hkv + hk) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
          s[j] = dot * scale;
          if (s[j] > max) max = s[j];
        }
        let sum = 0;
        acc.fill(0);
        for (let j = 0; j <= last; j++) {
          const p = Math.exp(s[j] - max), vo = ((b * Tk + j) * Hkv + hk) * D;
          sum += p;
          for (let d = 0; d < D; d++) acc[d] += p * v[vo + d];
        }
        for (let d = 0; d < D; d++) out[qo + d] = acc[d] / sum;
        if (lse) lse[(b * Hq + h) * Tq + i] = max + Math.log(sum);
      }
    }
  }
}

/**
 * TS reference backward; ACCUMULATES into dq, dk, dv. P = exp(s − lse) is recomputed from the saved
 * lse, and dS = P ∘ (dP − rowsum(dout ∘ out)) with dP = dout · vᵀ.
 */
export function attentionBackwardRef(dq: Arr, dk: Arr, dv: Arr, dout: Arr, q: Arr, k: Arr, v: Arr, out: Arr,
  lse: Arr, B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): void {
  checkAttentionDims(Tq, Tk, Hq, Hkv);
  const group = Hq / Hkv, scale = 1 / Math.sqrt(D), off = Tk - Tq;
  const dqi = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Tq; i++) {
        const qo = ((b * Tq + i) * Hq + h) * D, last = i + off;
        const l = lse[(b * Hq + h) * Tq + i];
        let delta = 0;
        for (let d = 0; d < D; d++) delta += dout[qo + d] * out[qo + d];
        dqi.fill(0);
        for (let j = 0; j <= last; j++) {
          const ko = ((b * Tk + j) * Hkv + hk) * D;
          let s = 0, dp = 0;
          for (let d = 0; d < D; d++) { s += q[qo + d] * k[ko + d]; dp += dout[qo + d] * v[ko + d]; }
          const p = Math.exp(s * scale - l), ds = p * (dp - delta) * scale;
          for (let d = 0; d < D; d++) {
            dqi[d] += ds * k[ko + d];
            dk[ko + d] += ds * q[qo + d];
            dv[ko + d] += p * dout[qo + d];
          }
        }
        for (let d = 0; d < D; d++) dq[qo + d] += dqi[d];
      }
    }
  }
}

let nativeAttnFwd: AttentionForward | null = null;
let nativeAttnBwd: AttentionBackward | null = null;
/** Installed by backend/native.ts when the addon loads. */
export function setNativeAttention(fwd: AttentionForward | null, bwd: AttentionBackward | null): void {
  nativeAttnFwd = fwd;
  nativeAttnBwd = bwd;
}

const allF32 = (...xs: (Arr | null)[]): boolean => xs.every((x) => x === null || x instanceof Float32Array);

/** Native for Float32Array (when the addon is loaded), TS reference otherwise. */
export function attentionForward(out: Arr, lse: Arr | null, q: Arr, k: Arr, v: Arr,
  B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): void {
  if (nativeAttnFwd && allF32(out, lse, q, k, v)) {
    checkAttentionDims(Tq, Tk, Hq, Hkv);
    nativeAttnFwd(out, lse, q, k, v, B, Tq, Tk, Hq, Hkv, D);
  } else {
    attentionForwardRef(out, lse, q, k, v, B, Tq, Tk, Hq, Hkv, D);
  }
}

/** Accumulates dq, dk, dv. lse may be null: it is then recomputed by a forward pass. */
export function attentionBackward(dq: Arr, dk: Arr, dv: Arr, dout: Arr, q: Arr, k: Arr, v: Arr, out: Arr,
  lse: Arr | null, B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): void {
  if (!lse) {
    lse = out instanceof Float64Array ? new Float64Array(B * Hq * Tq) : new Float32Array(B * Hq * Tq);
    attentionForward(out instanceof Float64Array ? new Float64Array(out.length) : new Float32Array(out.length),
      lse, q, k, v, B, Tq, Tk, Hq, Hkv, D);
  }
  if (nativeAttnBwd && allF32(dq, dk, dv, dout, q, k, v, out, lse)) {
    checkAttentionDims(Tq, Tk, Hq, Hkv);
    nativeAttnBwd(dq, dk, dv, dout, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, D);
  } else {
    attentionBackwardRef(dq, dk, dv, dout, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, D);
  }
}

// ---------------------------------------------------------------------------------------------
// Optional native element-wise / row-wise kernels. Their TypeScript twins are the ops themselves
// (src/model/ops/swiglu.ts, rmsnorm.ts, cross-entropy.ts, kl.ts; AdamW.update in src/train/adamw.ts),
// which can hand Float32Array calls over:
//   const nat = nativeOps();
//   if (nat && allFloat32(out, gate, up)) return nat.swigluForward(out, gate, up, N);
// Same contracts as the twins; backwards accumulate.

export interface NativeOps {
  swigluForward(out: Float32Array, gate: Float32Array, up: Float32Array, N: number): void;
  swigluBackward(dgate: Float32Array, dup: Float32Array, dout: Float32Array, gate: Float32Array, up: Float32Array,
    N: number): void;
  rmsnormForward(out: Float32Array, rstd: Float32Array | null, x: Float32Array, w: Float32Array, N: number, C: number,
    eps: number): void;
  rmsnormBackward(dx: Float32Array | null, dw: Float32Array | null, dout: Float32Array, x: Float32Array,
    w: Float32Array, rstd: Float32Array, N: number, C: number): void;
  /** Loss sum over rows with target ≥ 0; throws on a target ≥ V. */
  crossEntropyForward(losses: Float32Array | null, logits: Float32Array, targets: Int32Array, N: number, V: number): number;
  crossEntropyBackward(dlogits: Float32Array, logits: Float32Array, targets: Int32Array, N: number, V: number,
    scale: number): void;
  /** dlogits may alias logits (overwritten with scale·(softmax − onehot)); returns the loss sum. */
  crossEntropyFused(dlogits: Float32Array, logits: Float32Array, targets: Int32Array, N: number, V: number,
    scale: number): number;
  klForward(teacher: Float32Array, student: Float32Array, N: number, V: number): number;
  klBackward(dstudent: Float32Array, teacher: Float32Array, student: Float32Array, N: number, V: number,
    scale: number): void;
  /** One Adam(W) step over w.length values; bc1/bc2 = 1 − beta^step; coupled = L2 in the gradient (Adam). */
  adamwUpdate(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, lr: number, beta1: number,
    beta2: number, eps: number, weightDecay: number, coupled: boolean, bc1: number, bc2: number): void;
  /** Σ x² accumulated in double (for gradient-norm clipping). */
  sumSquares(x: Float32Array): number;
}

let nativeOpsImpl: NativeOps | null = null;
/** Installed by backend/native.ts when the addon loads. */
export function setNativeOps(o: NativeOps | null): void { nativeOpsImpl = o; }
/** The native element-wise kernels, or null (addon not loaded / LOWBIT_NATIVE=0). */
export function nativeOps(): NativeOps | null { return nativeOpsImpl; }
/** True when every non-null array is a Float32Array (the native path's precondition). */
export function allFloat32(...xs: (Arr | null)[]): boolean { return xs.every((x) => x === null || x instanceof Float32Array); }
