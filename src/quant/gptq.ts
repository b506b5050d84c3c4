// GPTQ (Frantar et al.), following IST-DASLab/gptq `fasterquant`: H = 2/N·XᵀX over the calibration rows,
// dead columns (H_ii = 0) zeroed, damp = percdamp·mean(diag H), Cholesky of H⁻¹ (upper), blocks of 128 columns
// with lazy batch updates, group parameters fitted on the lazily-updated W when a group starts (or once up front
// with static groups), optional act-order (columns by descending diag H; g_idx records each column's group).
// Group parameters are GPTQ's min/max rule (xmin ≤ 0 ≤ xmax); scales are rounded to f16 before use.
// All arithmetic on W and H is float64.
import type { PackedTensor } from './types.js';
import { packCodes } from './pack.js';
import { gptqMinMaxRule } from './icq.js';
import { quantizeValue, resolveGroup } from './rtn.js';
import { sgemm } from '../backend/kernels.js';

const fr = Math.fround;

/** Accumulates H = 2/N · Σ xᵀx over calibration rows x ∈ R^n (N = rows seen). */
export class HessianAccumulator {
  readonly H: Float64Array;
  private tmp: Float32Array;
  rows = 0;
  constructor(readonly n: number) { this.H = new Float64Array(n * n); this.tmp = new Float32Array(n * n); }
  /** x[rows, n] (row-major) */
  add(x: Float32Array | Float64Array, rows: number): void {
    const n = this.n;
    if (x instanceof Float32Array) {
      // f32 partial sums over ≤ 256 rows at a time, accumulated in f64
      for (let r0 = 0; r0 < rows; r0 += 256) {
        const r1 = Math.min(rows, r0 + 256);
        sgemm(true, false, n, n, r1 - r0, 1, x.subarray(r0 * n, r1 * n), x.subarray(r0 * n, r1 * n), 0, this.tmp);
        for (let i = 0; i < n * n; i++) this.H[i] += this.tmp[i];
      }
    } else {
      for (let r = 0; r < rows; r++) {
        const o = r * n;
        for (let i = 0; i < n; i++) { const a = x[o + i]; if (a === 0) continue; const hi = i * n; for (let j = 0; j < n; j++) this.H[hi + j] += a * x[o + j]; }
      }
    }
    this.rows += rows;
  }
  /** 2/N·XᵀX */
  finalize(): Float64Array {
    const H = new Float64Array(this.H);
    const c = this.rows > 0 ? 2 / this.rows : 0;
    for (let i = 0; i < H.length; i++) H[i] *= c;
    return H;
  }
}

/** In-place lower Cholesky of A[n,n] (returns false when not positive definite). */
export function choleskyLower(A: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    let d = A[j * n + j];
    for (let k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
    if (!(d > 0)) return false;
    const ljj = Math.sqrt(d);
    A[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = A[i * n + j];
      const ri = i * n, rj = j * n;
      for (let k = 0; k < j; k++) s -= A[ri + k] * A[rj + k];
      A[i * n + j] = s / ljj;
    }
    for (let k = j + 1; k < n; k++) A[j * n + k] = 0;
  }
  return true;
}

/** Inverse of an SPD matrix from its lower Cholesky factor L (torch.cholesky_inverse). */
export function choleskyInverse(L: Float64Array, n: number): Float64Array {
  // Linv (lower) then A⁻¹ = Linvᵀ·Linv
  const Li = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    Li[j * n + j] = 1 / L[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s += L[i * n + k] * Li[k * n + j];
      Li[i * n + j] = -s / L[i * n + i];
    }
  }
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += Li[k * n + i] * Li[k * n + j];
      A[i * n + j] = s; A[j * n + i] = s;
    }
  }
  return A;
}

export interface GptqOpts {
  bits: number;
  groupSize?: number;
  percdamp?: number;
  actOrder?: boolean;
  staticGroups?: boolean;
  blockSize?: number;
}

export interface GptqResult { packed: PackedTensor; loss: number }

/**
 * GPTQ-quantize W[out, in] (HF layout) with Hessian H[in, in] (e.g. HessianAccumulator.finalize()).
 * H is not modified.
 */
export function quantizeGPTQ(W: ArrayLike<number>, out: number, inF: number, Hin: Float64Array, opts: GptqOpts): GptqResult {
  if (W.length !== out * inF) throw new Error(`gptq: weight has ${W.length} values, expected ${out}x${inF}`);
  if (Hin.length !== inF * inF) throw new Error(`gptq: Hessian has ${Hin.length} values, expected ${inF}x${inF}`);
  const bits = opts.bits, M = 2 ** bits - 1;
  const g = resolveGroup(opts.groupSize, inF);
  const perChannel = g >= inF;
  const ng = Math.ceil(inF / g);
  const percdamp = opts.percdamp ?? 0.01, bs = opts.blockSize ?? 128;
  const actOrder = !!opts.actOrder, staticGroups = !!opts.staticGroups;
  const C = inF;
  const Wm = Float64Array.from(W as ArrayLike<number>);
  const H = new Float64Array(Hin);
  const scales = new Float32Array(out * ng), zeros = new Float32Array(out * ng);
  const colS = new Float64Array(out), colZ = new Float64Array(out);
  const setParams = (src: Float64Array, stride: number, c0: number, c1: number, gi: number) => {
    const row = new Float64Array(c1 - c0);
    for (let r = 0; r < out; r++) {
      for (let c = c0; c < c1; c++) row[c - c0] = src[r * stride + c];
      const { s, z } = gptqMinMaxRule(row, 0, c1 - c0, bits);
      scales[r * ng + gi] = s; zeros[r * ng + gi] = z;
    }
  };
  const loadParams = (gi: number) => { for (let r = 0; r < out; r++) { colS[r] = scales[r * ng + gi]; colZ[r] = zeros[r * ng + gi]; } };
  if (perChannel) setParams(Wm, C, 0, C, 0); // fitted on W before dead columns are zeroed (as in the code)
  for (let i = 0; i < C; i++) {
    if (H[i * C + i] === 0) { H[i * C + i] = 1; for (let r = 0; r < out; r++) Wm[r * C + i] = 0; }
  }
  if (staticGroups && !perChannel) for (let j = 0; j < ng; j++) setParams(Wm, C, j * g, Math.min(C, (j + 1) * g), j);
  // act-order permutation (stable sort by descending diag)
  let perm: Int32Array | null = null;
  let Wp = Wm, Hp = H;
  if (actOrder) {
    perm = Int32Array.from({ length: C }, (_, i) => i).sort((a, b) => H[b * C + b] - H[a * C + a] || a - b);
    Wp = new Float64Array(out * C); Hp = new Float64Array(C * C);
    for (let r = 0; r < out; r++) for (let j = 0; j < C; j++) Wp[r * C + j] = Wm[r * C + perm[j]];
    for (let i = 0; i < C; i++) for (let j = 0; j < C; j++) Hp[i * C + j] = H[perm[i] * C + perm[j]];
  }
  let mean = 0;
  for (let i = 0; i < C; i++) mean += Hp[i * C + i];
  let damp = percdamp * (mean / C);
  let Hinv: Float64Array | null = null;
  for (let attempt = 0; attempt < 6 && !Hinv; attempt++, damp *= 10) {
    const A = new Float64Array(Hp);
    for (let i = 0; i < C; i++) A[i * C + i] += damp;
    if (!choleskyLower(A, C)) continue;
    const inv = choleskyInverse(A, C);
    if (!choleskyLower(inv, C)) continue;
    // upper factor U = Lᵀ
    const U = new Float64Array(C * C);
    for (let i = 0; i < C; i++) for (let j = i; j < C; j++) U[i * C + j] = inv[j * C + i];
    Hinv = U;
  }
  if (!Hinv) throw new Error('gptq: Hessian is not positive definite even after dampening');
  const codes = new Uint8Array(out * C);
  const gIdx = new Int32Array(C);
  let loss = 0;
  const W1 = new Float64Array(out * bs), Err1 = new Float64Array(out * bs);
  for (let i1 = 0; i1 < C; i1 += bs) {
    const i2 = Math.min(C, i1 + bs), cnt = i2 - i1;
    for (let r = 0; r < out; r++) for (let i = 0; i < cnt; i++) W1[r * bs + i] = Wp[r * C + i1 + i];
    for (let i = 0; i < cnt; i++) {
      const col = i1 + i;
      let gi: number;
      if (perChannel) gi = 0;
      else if (!staticGroups) {
        gi = Math.floor(col / g);
        if (col % g === 0) setParams(Wp, C, col, Math.min(C, col + g), gi); // on W, as the code does
      } else gi = Math.floor((perm ? perm[col] : col) / g);
      loadParams(gi);
      gIdx[perm ? perm[col] : col] = gi;
      const d = Hinv[col * C + col];
      for (let r = 0; r < out; r++) {
        const w = W1[r * bs + i];
        const q = quantizeValue(w, colS[r], colZ[r], M);
        codes[r * C + (perm ? perm[col] : col)] = q;
        const wq = fr(colS[r] * (q - colZ[r]));
        const e = (w - wq) / d;
        loss += ((w - wq) * (w - wq)) / (d * d) / 2;
        Err1[r * bs + i] = e;
        const hrow = col * C;
        for (let j = i + 1; j < cnt; j++) W1[r * bs + j] -= e * Hinv[hrow + i1 + j];
      }
    }
    // lazy batch update of the remaining columns: W[:, i2:] -= Err1 · Hinv[i1:i2, i2:]
    if (i2 < C) {
      for (let r = 0; r < out; r++) {
        const wr = r * C;
        for (let i = 0; i < cnt; i++) {
          const e = Err1[r * bs + i];
          if (e === 0) continue;
          const hrow = (i1 + i) * C;
          for (let j = i2; j < C; j++) Wp[wr + j] -= e * Hinv[hrow + j];
        }
      }
    }
  }
  const packed: PackedTensor = { method: 'gptq', layout: 'int', bits, out, in: inF, groupSize: g, qcodes: packCodes(codes, bits), scales, zeros };
  if (actOrder && !staticGroups && !perChannel) packed.gIdx = gIdx;
  return { packed, loss };
}
