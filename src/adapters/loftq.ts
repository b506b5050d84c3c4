// LoftQ (Li et al., ICLR 2024; PEFT loftq_utils v0.7–v0.18): alternate re-quantizing W minus the current
// low-rank part and taking the top-r SVD of W − Q. Each iterate's error ‖W − Q − c·B·A‖_F is logged and the
// best (Q, A, B) kept (the error is not monotone). The scale c = α/r is folded into the factors so PEFT's
// forward reproduces W − Q (PEFT issue #1982 writes the raw L, R and is off by c).
import { svdFactors, truncatedSvd, residualNorm, type TruncatedSvdOptions } from './svd.js';

/** W' [out, in] → its dequantized quantization, plus whatever the caller needs to store it (e.g. a PackedTensor). */
export type QuantizeFn<P> = (W: Float32Array) => { deq: Float32Array; packed: P };

export interface LoftqResult<P> {
  /** best iterate: the new base (dequantized and packed) and factors A [r, in], B [out, r] (scale folded in) */
  deq: Float32Array;
  packed: P;
  A: Float64Array;
  B: Float64Array;
  /** ‖W − Q_t − c·B_t·A_t‖_F per iteration t = 1..T */
  errors: number[];
  /** ‖W − Q‖_F of the plain quantization (iteration 1's Q, before any low-rank part) */
  quantError: number;
  bestIter: number;
}

export function loftq<P>(W: ArrayLike<number>, out: number, inF: number, r: number, scale: number, iters: number,
  quantize: QuantizeFn<P>, svdOpts: TruncatedSvdOptions = {}): LoftqResult<P> {
  const n = out * inF;
  const res = new Float32Array(n);
  for (let i = 0; i < n; i++) res[i] = W[i];
  const E = new Float64Array(n);
  const errors: number[] = [];
  let best: LoftqResult<P> | null = null, quantError = NaN;
  for (let t = 1; t <= Math.max(1, iters); t++) {
    const q = quantize(res);
    for (let i = 0; i < n; i++) E[i] = W[i] - q.deq[i];
    if (t === 1) { let s = 0; for (let i = 0; i < n; i++) s += E[i] * E[i]; quantError = Math.sqrt(s); }
    const s = truncatedSvd(E, out, inF, r, svdOpts);
    const { L, R } = svdFactors(s, r, scale);
    const err = residualNorm(E, out, inF, L, R, r, scale);
    errors.push(err);
    if (!best || err < best.errors[best.bestIter - 1]) {
      best = { deq: q.deq, packed: q.packed, A: R, B: L, errors, quantError, bestIter: t };
    }
    if (t < iters) {
      // res = W − c·L·R
      for (let i = 0; i < out; i++) {
        for (let j = 0; j < inF; j++) {
          let acc = 0;
          for (let k = 0; k < r; k++) acc += L[i * r + k] * R[k * inF + j];
          res[i * inF + j] = W[i * inF + j] - scale * acc;
        }
      }
    }
  }
  best!.errors = errors;
  best!.quantError = quantError;
  return best!;
}
