// IR-QLoRA Information Calibration Quantization.
// NF path (IR-QLoRA utils.py `search`): per flat block of 64, a shift τ = f·a + τ0 (τ0 = lower median,
// a = max|w − τ0|), f over linspace(−λσ', λσ', 2n+1) with σ' = 1/Φ⁻¹(0.9677083); keep, per block, the f whose NF
// codes of (w − τ) have the largest Shannon entropy (strict '>', so the earliest = most negative f wins ties).
// Codes use the exact τ*; τ is stored double-quantized (8-bit dynamic-map index of τ/τ2, τ2 = max|τ| per 256
// blocks, no mean offset) and the dequantizer adds the stored τ back.
// INT path (integer quantizer/quantizer_icq.py): per group, min/max params (xmin ≤ 0 ≤ xmax) and a range
// multiplier p ∈ [1] + linspace(1,1.1,51)[1:] + linspace(1,0.9,51)[1:] chosen by max code entropy (strict).
import { roundHalfEven } from '../tensor.js';
import type { PackedTensor } from './types.js';
import { packCodes, unpackCodes } from './pack.js';
import { nfLevels, midpoints, bucketize, dynamicMap, setAbsmax, linspaceF32, normPpf, NF_OFFSET, DQ_BLOCK, nfAbsmax } from './normalfloat.js';
import { quantizeIntWith, storeScale, type ParamRule } from './rtn.js';

const fr = Math.fround;

/** σ' = 1/Φ⁻¹(float32(0.9677083)) ≈ 0.54109 */
export const ICQ_SIGMA = 1 / normPpf(linspaceF32(NF_OFFSET, 0.5, 9)[0]);

/** numpy.linspace(a, b, n) in float64 */
export function linspaceF64(a: number, b: number, n: number): number[] {
  if (n === 1) return [a];
  const step = (b - a) / (n - 1), out: number[] = [];
  for (let i = 0; i < n; i++) out.push(a + i * step);
  out[n - 1] = b;
  return out;
}

/** Shannon entropy (bits) of the codes[lo, hi) over 2^bits bins; 0·log 0 = 0. */
export function codeEntropy(codes: ArrayLike<number>, lo: number, hi: number, bits: number, counts?: Int32Array): number {
  const c = counts ?? new Int32Array(1 << bits);
  c.fill(0);
  for (let i = lo; i < hi; i++) c[codes[i]]++;
  const n = hi - lo;
  let h = 0;
  for (let v = 0; v < c.length; v++) if (c[v] > 0) { const p = c[v] / n; h -= p * Math.log2(p); }
  return h;
}

/** Lower median (torch.median) of x[lo, hi). */
export function lowerMedian(x: ArrayLike<number>, lo: number, hi: number): number {
  const v = Float64Array.from({ length: hi - lo }, (_, i) => x[lo + i]).sort();
  return v[Math.floor((v.length - 1) / 2)];
}

/** Index of the dynamic-map value nearest to y (argmin |y − map|, first index on ties). */
export function nearestDynamic(y: number): number {
  const map = dynamicMap();
  let best = 0, bd = Infinity;
  // map is sorted: binary search then check neighbours
  let lo = 0, hi = map.length - 1;
  while (lo < hi) { const m = (lo + hi) >> 1; if (map[m] < y) lo = m + 1; else hi = m; }
  for (let k = Math.max(0, lo - 1); k <= Math.min(map.length - 1, lo + 1); k++) {
    const d = Math.abs(fr(y - map[k]));
    if (d < bd) { bd = d; best = k; }
  }
  return best;
}

export interface IcqStats { entropyBefore: number; entropyAfter: number; blocks: number }

/** NF codes of block [lo, hi) of (w − τ) into codes; returns nothing. */
function nfBlockCodes(W: ArrayLike<number>, lo: number, hi: number, tau: number, mids: Float32Array, codes: Uint8Array, shifted: Float32Array): number {
  let am = 0;
  for (let i = lo; i < hi; i++) { const v = fr(W[i] - tau); shifted[i - lo] = v; const a = Math.abs(v); if (a > am) am = a; }
  const inv = fr(1 / Math.max(am, 1e-38));
  for (let i = lo; i < hi; i++) {
    let y = fr(shifted[i - lo] * inv);
    if (y > 1) y = 1; else if (y < -1) y = -1;
    codes[i] = bucketize(y, mids);
  }
  return am;
}

/**
 * The ICQ search on one block [lo, hi): τ0 = lower median, a = max|w − τ0|, τ_f = f·a + τ0 (float32), entropy of
 * the NF codes of (w − τ_f) with the block's own absmax; strict argmax over the candidates in order.
 */
export function icqSearchBlock(W: ArrayLike<number>, lo: number, hi: number, bits: number, factors: number[],
  mids = midpoints(nfLevels(bits)), tmpCodes = new Uint8Array(hi), shifted = new Float32Array(hi - lo),
  counts = new Int32Array(1 << bits)): { tau: number; index: number; entropy: number; tau0: number; a: number } {
  const t0 = fr(lowerMedian(W, lo, hi));
  let a = 0;
  for (let i = lo; i < hi; i++) { const v = Math.abs(fr(W[i] - t0)); if (v > a) a = v; }
  let best = -Infinity, bestTau = t0, index = -1;
  for (let k = 0; k < factors.length; k++) {
    const t = fr(fr(fr(factors[k]) * a) + t0);
    nfBlockCodes(W, lo, hi, t, mids, tmpCodes, shifted);
    const h = codeEntropy(tmpCodes, lo, hi, bits, counts);
    if (h > best) { best = h; bestTau = t; index = k; }
  }
  return { tau: bestTau, index, entropy: best, tau0: t0, a };
}

/** The candidate factors f = linspace(−λσ', λσ', 2n+1) (numpy, float64). */
export function icqFactors(lambda = 0.1, n = 100): number[] {
  return linspaceF64(-lambda * ICQ_SIGMA, lambda * ICQ_SIGMA, 2 * n + 1);
}

/** Method 'icq', NF path. `stats` (optional) receives the mean per-block entropy of plain NF vs ICQ codes. */
export function quantizeICQ_NF(W: ArrayLike<number>, out: number, inF: number,
  opts: { bits: number; groupSize?: number; doubleQuant?: boolean; tauLambda?: number; tauN?: number }, stats?: IcqStats): PackedTensor {
  const n = out * inF;
  if (W.length !== n) throw new Error(`quantizeICQ: weight has ${W.length} values, expected ${out}x${inF}`);
  const bits = opts.bits, B = opts.groupSize && opts.groupSize > 0 ? opts.groupSize : 64;
  const lambda = opts.tauLambda ?? 0.1, tn = opts.tauN ?? 100;
  const factors = icqFactors(lambda, tn);
  const mids = midpoints(nfLevels(bits));
  const nb = Math.ceil(n / B);
  const codes = new Uint8Array(n), absmax = new Float32Array(nb), tau = new Float32Array(nb);
  const tmpCodes = new Uint8Array(n), shifted = new Float32Array(B), counts = new Int32Array(1 << bits);
  let hBefore = 0, hAfter = 0;
  for (let b = 0; b < nb; b++) {
    const lo = b * B, hi = Math.min(n, lo + B);
    const bestTau = icqSearchBlock(W, lo, hi, bits, factors, mids, tmpCodes, shifted, counts).tau;
    tau[b] = bestTau;
    absmax[b] = nfBlockCodes(W, lo, hi, bestTau, mids, codes, shifted);
    hAfter += codeEntropy(codes, lo, hi, bits, counts);
    if (stats) { nfBlockCodes(W, lo, hi, 0, mids, tmpCodes, shifted); hBefore += codeEntropy(tmpCodes, lo, hi, bits, counts); }
  }
  if (stats) { stats.entropyBefore += hBefore; stats.entropyAfter += hAfter; stats.blocks += nb; }
  // τ double quantization (no offset), groups of 256 blocks
  const ng = Math.ceil(nb / DQ_BLOCK);
  const tauScale = new Float32Array(ng), tauQ = new Uint8Array(nb);
  const zeroIdx = nearestDynamic(0);
  for (let g = 0; g < ng; g++) {
    const lo = g * DQ_BLOCK, hi = Math.min(nb, lo + DQ_BLOCK);
    let m = 0;
    for (let i = lo; i < hi; i++) m = Math.max(m, Math.abs(tau[i]));
    tauScale[g] = m;
    for (let i = lo; i < hi; i++) tauQ[i] = m > 0 ? nearestDynamic(fr(tau[i] / m)) : zeroIdx;
  }
  const p: PackedTensor = { method: 'icq', layout: 'nf', bits, out, in: inF, groupSize: B, qcodes: packCodes(codes, bits), tauQ, tauScale };
  setAbsmax(p, absmax, !!opts.doubleQuant);
  return p;
}

/** The 101 range multipliers of the integer ICQ, p = 1 first. */
export function icqIntMultipliers(): number[] {
  return [1, ...linspaceF64(1, 1.1, 51).slice(1), ...linspaceF64(1, 0.9, 51).slice(1)];
}

/** INT-path parameter rule: GPTQ min/max (0 included) then the entropy-maximizing range multiplier. */
export function icqIntRule(): ParamRule {
  const ps = icqIntMultipliers();
  return (v, lo, hi, bits) => {
    const M = 2 ** bits - 1;
    let mn = 0, mx = 0;
    for (let i = lo; i < hi; i++) { const x = v[i]; if (x < mn) mn = x; if (x > mx) mx = x; }
    if (mn === 0 && mx === 0) { mn = -1; mx = 1; }
    const codes = new Uint8Array(hi - lo), counts = new Int32Array(M + 1);
    let best = -Infinity, bs = 1, bz = 0;
    for (const p of ps) {
      const s = storeScale(fr(fr(fr(p * mx) - fr(p * mn)) / M));
      const z = roundHalfEven(fr(-fr(p * mn) / s));
      for (let i = lo; i < hi; i++) {
        const q = roundHalfEven(fr(v[i] / s)) + z;
        codes[i - lo] = q < 0 ? 0 : q > M ? M : q;
      }
      const h = codeEntropy(codes, 0, hi - lo, bits, counts);
      if (h > best) { best = h; bs = s; bz = Math.min(M, Math.max(0, z)); }
    }
    return { s: bs, z: bz };
  };
}

/** Method 'icq', INT path (stored in the 'int' layout, like RTN). */
export function quantizeICQ_Int(W: ArrayLike<number>, out: number, inF: number, opts: { bits: number; groupSize?: number }, stats?: IcqStats): PackedTensor {
  const p = quantizeIntWith(W, out, inF, opts.bits, opts.groupSize, icqIntRule(), 'icq');
  if (stats) {
    const ref = quantizeIntWith(W, out, inF, opts.bits, opts.groupSize, gptqMinMaxRule, 'icq');
    stats.entropyBefore += meanGroupEntropy(ref) * groupsOf(ref);
    stats.entropyAfter += meanGroupEntropy(p) * groupsOf(p);
    stats.blocks += groupsOf(p);
  }
  return p;
}

/** GPTQ Quantizer.find_params (asymmetric): xmin = min(min, 0), xmax = max(max, 0). */
export const gptqMinMaxRule: ParamRule = (v, lo, hi, bits) => {
  const M = 2 ** bits - 1;
  let mn = 0, mx = 0;
  for (let i = lo; i < hi; i++) { const x = v[i]; if (x < mn) mn = x; if (x > mx) mx = x; }
  if (mn === 0 && mx === 0) { mn = -1; mx = 1; }
  const s = storeScale(fr(fr(mx - mn) / M));
  return { s, z: Math.min(M, Math.max(0, roundHalfEven(fr(-mn / s)))) };
};

function groupsOf(p: PackedTensor): number {
  return p.layout === 'int' ? p.out * Math.ceil(p.in / p.groupSize) : Math.ceil((p.out * p.in) / p.groupSize);
}

/** Mean per-group (int layout: per row-group; nf layout: per block) code entropy of a packed tensor. */
export function meanGroupEntropy(p: PackedTensor): number {
  const n = p.out * p.in;
  const codes = unpackCodes(p.qcodes, p.bits, n);
  const counts = new Int32Array(1 << p.bits);
  let h = 0, k = 0;
  if (p.layout === 'nf') {
    for (let lo = 0; lo < n; lo += p.groupSize) { h += codeEntropy(codes, lo, Math.min(n, lo + p.groupSize), p.bits, counts); k++; }
  } else if (!p.gIdx) {
    for (let r = 0; r < p.out; r++) for (let lo = 0; lo < p.in; lo += p.groupSize) {
      h += codeEntropy(codes, r * p.in + lo, r * p.in + Math.min(p.in, lo + p.groupSize), p.bits, counts); k++;
    }
  } else {
    // act-order groups: gather the columns of each group
    const ng = Math.ceil(p.in / p.groupSize);
    const cols: number[][] = Array.from({ length: ng }, () => []);
    for (let i = 0; i < p.in; i++) cols[p.gIdx[i]].push(i);
    const buf = new Uint8Array(p.groupSize);
    for (let r = 0; r < p.out; r++) for (const cs of cols) {
      if (cs.length === 0) continue;
      cs.forEach((c, j) => { buf[j] = codes[r * p.in + c]; });
      h += codeEntropy(buf, 0, cs.length, p.bits, counts); k++;
    }
  }
  return k ? h / k : 0;
}

export { nfAbsmax };
