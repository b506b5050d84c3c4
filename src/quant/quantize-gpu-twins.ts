// TypeScript twins of the quantizer kernels (native/cuda/quantize.cu), one per kernel, on the kernels' own
// inputs and outputs (codes one byte per weight, metadata arrays), built from the quantizers' own steps so that
// a twin is by construction what rtn.ts / normalfloat.ts / icq.ts compute. The host emulator
// (test/helpers/host-quantize.ts) runs them behind the engine's buffer handles; the GPU tests compare the
// kernels with the quantizers directly.
import { rtnRule } from './rtn.js';
import { quantizeValue } from './rtn.js';
import { icqIntRule, gptqMinMaxRule, codeEntropy, icqSearchBlock, nearestDynamic } from './icq.js';
import { quantizeBlockwise, midpoints, nfLevels } from './normalfloat.js';

const fr = Math.fround;

/**
 * The entropy terms p·log2(p), p = c/len, for c = 0..len of the two segment lengths a tensor has (full groups
 * of `len`, and a shorter `tail`): [2·(len+1)], entry c of the full length at c, of the tail at len+1+c. The kernels
 * subtract them in bin order, which is icq.ts codeEntropy's sum term for term (Math.log2 evaluated here).
 */
export function quantEntropyTerms(len: number, tail: number): Float64Array {
  const t = new Float64Array(2 * (len + 1));
  for (const [base, n] of [[0, len], [len + 1, tail]] as const) {
    for (let c = 1; c <= n; c++) { const p = c / n; t[base + c] = p * Math.log2(p); }
  }
  return t;
}

/** cudaQuantInt: rule 0 = rtnRule, 1 = icqIntRule (its own multipliers); codes unpacked; stats as the kernel. */
export function quantIntRef(W: Float32Array, out: number, inF: number, bits: number, group: number, rule: 0 | 1,
  codes: Uint8Array, scales: Float32Array, zeros: Float32Array, stats?: Float64Array): void {
  const ng = Math.ceil(inF / group), M = 2 ** bits - 1;
  const paramRule = rule === 0 ? rtnRule : icqIntRule();
  const tmp = new Uint8Array(group), counts = new Int32Array(M + 1);
  for (let o = 0; o < out; o++) {
    for (let j = 0; j < ng; j++) {
      const lo = o * inF + j * group, hi = o * inF + Math.min(inF, (j + 1) * group), k = o * ng + j;
      const { s, z } = paramRule(W, lo, hi, bits);
      scales[k] = s; zeros[k] = z;
      for (let i = lo; i < hi; i++) codes[i] = quantizeValue(W[i], s, z, M);
      if (rule === 1 && stats) {
        const r = gptqMinMaxRule(W, lo, hi, bits);
        for (let i = lo; i < hi; i++) tmp[i - lo] = quantizeValue(W[i], r.s, r.z, M);
        stats[2 * k] = codeEntropy(tmp, 0, hi - lo, bits, counts);
        stats[2 * k + 1] = codeEntropy(codes, lo, hi, bits, counts);
      }
    }
  }
}

/** cudaQuantBlockwise: quantizeBlockwise of fr(x − offset) (offset undefined: of x). */
export function quantBlockwiseRef(x: Float32Array, block: number, levels: Float32Array, offset: number | undefined,
  codes: Uint8Array, absmax: Float32Array): void {
  const v = offset === undefined ? x : x.map((a) => fr(a - offset));
  quantizeBlockwise(v, block, levels, codes, absmax);
}

/** cudaIcqNf: icqSearchBlock per block (factors already f32), then the NF codes of (w − τ*) and their absmax. */
export function icqNfRef(W: Float32Array, bits: number, block: number, factors: Float32Array, codes: Uint8Array,
  absmax: Float32Array, tau: Float32Array, stats?: Float64Array): void {
  const n = W.length, nb = Math.ceil(n / block);
  const levels = nfLevels(bits), mids = midpoints(levels), f = Array.from(factors);
  const tmp = new Uint8Array(n), shifted = new Float32Array(block), counts = new Int32Array(1 << bits), one = new Float32Array(1);
  for (let b = 0; b < nb; b++) {
    const lo = b * block, hi = Math.min(n, lo + block);
    const t = icqSearchBlock(W, lo, hi, bits, f, mids, tmp, shifted, counts).tau;
    tau[b] = t;
    const sv = W.subarray(lo, hi).map((w) => fr(w - t));
    quantizeBlockwise(sv, block, levels, codes.subarray(lo, hi), one);
    absmax[b] = one[0];
    if (stats) {
      quantizeBlockwise(W.subarray(lo, hi).map((w) => fr(w - 0)), block, levels, tmp.subarray(lo, hi), one);
      stats[2 * b] = codeEntropy(tmp, lo, hi, bits, counts);
      stats[2 * b + 1] = codeEntropy(codes, lo, hi, bits, counts);
    }
  }
}

/** cudaAbsmaxMean: doubleQuantize's offset, fr(Σ absmax / max(1, n)) with the f64 sum in index order. */
export function absmaxMeanRef(absmax: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < absmax.length; i++) sum += absmax[i];
  return fr(sum / Math.max(1, absmax.length));
}

/** cudaTauDq: quantizeICQ_NF's τ double quantization (groups of 256 blocks, no offset). */
export function tauDqRef(tau: Float32Array, q: Uint8Array, scale: Float32Array): void {
  const zeroIdx = nearestDynamic(0);
  for (let g = 0; g < scale.length; g++) {
    const lo = g * 256, hi = Math.min(tau.length, lo + 256);
    let m = 0;
    for (let i = lo; i < hi; i++) m = Math.max(m, Math.abs(tau[i]));
    scale[g] = m;
    for (let i = lo; i < hi; i++) q[i] = m > 0 ? nearestDynamic(fr(tau[i] / m)) : zeroIdx;
  }
}
