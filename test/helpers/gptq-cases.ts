// Shared inputs of the GPTQ GPU tests (CUDA parity and the host emulator): random weights, correlated calibration
// rows with uneven column scales and dead columns, their Hessian, and the option grid.
import { Rng } from '../../src/tensor.js';
import { HessianAccumulator, type GptqOpts } from '../../src/quant/gptq.js';
import { unpackCodes } from '../../src/quant/pack.js';
import type { PackedTensor } from '../../src/quant/types.js';

/** rows × n calibration rows x = z·A (A = I + noise: correlated), column j scaled by 1 + j mod 7; `dead` columns 0. */
export function correlatedRows(rng: Rng, rows: number, n: number, dead: number[] = []): Float32Array {
  const A = rng.fillNormal(new Float64Array(n * n), 0.5 / Math.sqrt(n));
  for (let i = 0; i < n; i++) A[i * n + i] += 1;
  const z = rng.fillNormal(new Float64Array(n));
  const X = new Float32Array(rows * n);
  for (let r = 0; r < rows; r++) {
    rng.fillNormal(z);
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += z[k] * A[k * n + j];
      X[r * n + j] = s * (1 + (j % 7));
    }
    for (const d of dead) X[r * n + d] = 0;
  }
  return X;
}

/** 2/N·XᵀX by the reference accumulator, fed in two uneven parts (chunking across add() calls). */
export function hessianOf(X: Float32Array, rows: number, n: number): Float64Array {
  const acc = new HessianAccumulator(n), cut = Math.floor(rows / 3);
  acc.add(X.subarray(0, cut * n), cut);
  acc.add(X.subarray(cut * n, rows * n), rows - cut);
  return acc.finalize();
}

/** A symmetric matrix that is not positive definite but becomes so with damp ×10 (2/N·XᵀX of rank < n, minus 5 % of mean diag). */
export function indefiniteHessian(rng: Rng, n: number): Float64Array {
  const rows = Math.floor(n / 2);
  const H = hessianOf(correlatedRows(rng, rows, n), rows, n);
  let mean = 0;
  for (let i = 0; i < n; i++) mean += H[i * n + i];
  mean /= n;
  for (let i = 0; i < n; i++) H[i * n + i] -= 0.05 * mean;
  return H;
}

export interface GptqCase { name: string; out: number; inF: number; opts: GptqOpts }

/** The option grid: two shapes (320 = 2.5 blocks of 128), groups 64/128/per-channel, bits 2/3/4, act-order, static groups. */
export const GPTQ_CASES: GptqCase[] = [
  { name: '96x256 w2 g64', out: 96, inF: 256, opts: { bits: 2, groupSize: 64 } },
  { name: '96x256 w2 g64 act-order', out: 96, inF: 256, opts: { bits: 2, groupSize: 64, actOrder: true } },
  { name: '96x256 w3 g128 act-order', out: 96, inF: 256, opts: { bits: 3, groupSize: 128, actOrder: true } },
  { name: '96x256 w4 per-channel', out: 96, inF: 256, opts: { bits: 4, groupSize: -1 } },
  { name: '96x256 w3 g64 act-order static', out: 96, inF: 256, opts: { bits: 3, groupSize: 64, actOrder: true, staticGroups: true } },
  { name: '64x320 w2 g64', out: 64, inF: 320, opts: { bits: 2, groupSize: 64 } },
  { name: '64x320 w4 g128 act-order', out: 64, inF: 320, opts: { bits: 4, groupSize: 128, actOrder: true } },
  { name: '64x320 w2 per-channel act-order', out: 64, inF: 320, opts: { bits: 2, groupSize: -1, actOrder: true } },
  { name: '64x320 w4 g64 static', out: 64, inF: 320, opts: { bits: 4, groupSize: 64, staticGroups: true } },
  { name: '64x320 w3 g64 block 48 (groups across blocks)', out: 64, inF: 320, opts: { bits: 3, groupSize: 64, blockSize: 48, actOrder: true } },
  { name: '37x100 w2 g32 (short last group)', out: 37, inF: 100, opts: { bits: 2, groupSize: 32, actOrder: true } },
];

/** Dead input columns used with each shape (never all-zero data: the rest is random). */
export const DEAD_COLUMNS = [3, 70];

export function codesOf(p: PackedTensor): Uint8Array { return unpackCodes(p.qcodes, p.bits, p.out * p.in); }

/** ‖(W − Ŵ)·Xᵀ‖² over calibration rows: the output error GPTQ minimises. */
export function outputError(W: ArrayLike<number>, What: ArrayLike<number>, X: Float32Array, rows: number, out: number, n: number): number {
  let e = 0;
  const d = new Float64Array(n);
  for (let o = 0; o < out; o++) {
    for (let j = 0; j < n; j++) d[j] = W[o * n + j] - What[o * n + j];
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += d[j] * X[r * n + j];
      e += s * s;
    }
  }
  return e;
}
