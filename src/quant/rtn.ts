// Asymmetric min–max integer quantization (RTN) and the shared 'int' layout dequantizer.
// Groups are `groupSize` consecutive inputs of one output row (W[out, in] row-major); the last group of a row
// may be shorter when groupSize does not divide `in`. Per-channel = one group per row.
import { roundHalfEven } from '../tensor.js';
import type { PackedTensor } from './types.js';
import { packCodes, unpackCodes } from './pack.js';
import { roundF16 } from './f16.js';

const fr = Math.fround;

export function resolveGroup(groupSize: number | undefined, inF: number): number {
  if (groupSize === undefined) return Math.min(64, inF);
  if (groupSize <= 0) return inF;
  return Math.min(groupSize, inF);
}

/** A positive f16-representable scale (f16 rounding, never 0). */
export function storeScale(s: number): number {
  const r = roundF16(s);
  return r > 0 ? r : 2 ** -24;
}

/**
 * RTN group parameters (issue/LoRAQuant rule): s = max(mx − mn, 1e-5)/(2^b − 1), z = clamp(round(−mn/s), 0, M).
 * The scale is rounded to f16 (its storage precision) before the zero point and the codes are computed.
 */
export function rtnParams(mn: number, mx: number, bits: number): { s: number; z: number } {
  const M = 2 ** bits - 1;
  const s = storeScale(fr(fr(Math.max(fr(mx - mn), 1e-5)) / M));
  const z = Math.min(M, Math.max(0, roundHalfEven(fr(-mn / s))));
  return { s, z };
}

/** q = clamp(round(w/s) + z, 0, M) */
export function quantizeValue(w: number, s: number, z: number, M: number): number {
  const q = roundHalfEven(fr(w / s)) + z;
  return q < 0 ? 0 : q > M ? M : q;
}

export type ParamRule = (vals: ArrayLike<number>, lo: number, hi: number, bits: number) => { s: number; z: number };

export const rtnRule: ParamRule = (v, lo, hi, bits) => {
  let mn = Infinity, mx = -Infinity;
  for (let i = lo; i < hi; i++) { const x = v[i]; if (x < mn) mn = x; if (x > mx) mx = x; }
  return rtnParams(mn, mx, bits);
};

/** Quantize W[out, in] group by group with a parameter rule (RTN, ICQ-int). */
export function quantizeIntWith(W: ArrayLike<number>, out: number, inF: number, bits: number, groupSize: number | undefined,
  rule: ParamRule, method: PackedTensor['method']): PackedTensor {
  if (W.length !== out * inF) throw new Error(`quantize: weight has ${W.length} values, expected ${out}x${inF}`);
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new Error(`quantize: bits must be 1..8, got ${bits}`);
  const g = resolveGroup(groupSize, inF);
  const ng = Math.ceil(inF / g), M = 2 ** bits - 1;
  const codes = new Uint8Array(out * inF);
  const scales = new Float32Array(out * ng), zeros = new Float32Array(out * ng);
  for (let o = 0; o < out; o++) {
    for (let j = 0; j < ng; j++) {
      const lo = o * inF + j * g, hi = o * inF + Math.min(inF, (j + 1) * g);
      const { s, z } = rule(W, lo, hi, bits);
      scales[o * ng + j] = s; zeros[o * ng + j] = z;
      for (let i = lo; i < hi; i++) codes[i] = quantizeValue(W[i], s, z, M);
    }
  }
  return { method, layout: 'int', bits, out, in: inF, groupSize: g, qcodes: packCodes(codes, bits), scales, zeros };
}

/** Method 'rtn'. */
export function quantizeRTN(W: ArrayLike<number>, out: number, inF: number, opts: { bits: number; groupSize?: number }): PackedTensor {
  return quantizeIntWith(W, out, inF, opts.bits, opts.groupSize, rtnRule, 'rtn');
}

/** Dequantize an 'int' layout tensor: ŵ = s·(q − z), float32. */
export function dequantizeInt(p: PackedTensor, out?: Float32Array): Float32Array {
  const { out: O, in: I, groupSize: g } = p;
  const o = out ?? new Float32Array(O * I);
  const codes = unpackCodes(p.qcodes, p.bits, O * I);
  const ng = Math.ceil(I / g);
  const S = p.scales!, Z = p.zeros!;
  if (p.gIdx) {
    const gi = p.gIdx;
    for (let r = 0; r < O; r++) {
      const base = r * I, gb = r * ng;
      for (let i = 0; i < I; i++) { const k = gb + gi[i]; o[base + i] = fr(S[k] * (codes[base + i] - Z[k])); }
    }
    return o;
  }
  for (let r = 0; r < O; r++) {
    for (let j = 0; j < ng; j++) {
      const s = S[r * ng + j], z = Z[r * ng + j];
      const lo = r * I + j * g, hi = r * I + Math.min(I, (j + 1) * g);
      for (let i = lo; i < hi; i++) o[i] = fr(s * (codes[i] - z));
    }
  }
  return o;
}
