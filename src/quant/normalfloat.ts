// NormalFloat codebooks (bitsandbytes / LoftQ construction), bnb's signed dynamic 8-bit map, blockwise
// NF quantization with bucketize-on-midpoints, and QLoRA double quantization of the absmax values.
// Float32 rounding is emulated with Math.fround where torch computes in float32.
import type { PackedTensor } from './types.js';
import { packCodes, unpackCodes } from './pack.js';

const fr = Math.fround;

/** Standard normal quantile Φ⁻¹(p), Wichura's AS241 (PPND16), ~1e-16 relative accuracy. */
export function normPpf(p: number): number {
  if (!(p > 0 && p < 1)) return p === 0 ? -Infinity : p === 1 ? Infinity : NaN;
  const q = p - 0.5;
  if (Math.abs(q) <= 0.425) {
    const r = 0.180625 - q * q;
    return q * (((((((2509.0809287301226727 * r + 33430.575583588128105) * r + 67265.770927008700853) * r
      + 45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r + 133.14166789178437745) * r
      + 3.387132872796366608) / (((((((5226.495278852545925 * r + 28729.085735721942674) * r + 39307.89580009271061) * r
      + 21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r + 42.313330701600911252) * r + 1);
  }
  let r = q < 0 ? p : 1 - p;
  r = Math.sqrt(-Math.log(r));
  let v: number;
  if (r <= 5) {
    r -= 1.6;
    v = (((((((7.7454501427834140764e-4 * r + 0.0227238449892691845833) * r + 0.24178072517745061177) * r
      + 1.27045825245236838258) * r + 3.64784832476320460504) * r + 5.7694972214606914055) * r + 4.6303378461565452959) * r
      + 1.42343711074968357734) / (((((((1.05075007164441684324e-9 * r + 5.475938084995344946e-4) * r
      + 0.0151986665636164571966) * r + 0.14810397642748007459) * r + 0.68976733498510000455) * r + 1.6763848301838038494) * r
      + 2.05319162663775882187) * r + 1);
  } else {
    r -= 5;
    v = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r
      + 0.026532189526576123093) * r + 0.29656057182850489123) * r + 1.7848265399172913358) * r + 5.4637849111641143699) * r
      + 6.6579046435011037772) / (((((((2.04426310338993978564e-15 * r + 1.4215117583164458887e-7) * r
      + 1.8463183175100546818e-5) * r + 7.868691311456132591e-4) * r + 0.0148753612908506148525) * r
      + 0.13692988092273580531) * r + 0.59983220655588793769) * r + 1);
  }
  return q < 0 ? -v : v;
}

/** torch.linspace(start, end, steps, dtype=float32) on CPU, emulated (values are float32). */
export function linspaceF32(start: number, end: number, steps: number): number[] {
  if (steps <= 0) return [];
  const s = fr(start), e = fr(end);
  if (steps === 1) return [s];
  const step = fr(fr(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const out: number[] = [];
  for (let i = 0; i < steps; i++) {
    out.push(i < half ? fr(s + fr(step * i)) : fr(e - fr(step * (steps - i - 1))));
  }
  return out;
}

export const NF_OFFSET = 0.9677083;

/** Asymmetric NormalFloat levels for `bits` (2^bits values, sorted, in [−1, 1], exactly one 0). */
export function nfLevels(bits: number): Float32Array {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) throw new Error(`NormalFloat: bits must be 2..8, got ${bits}`);
  const cached = nfCache.get(bits);
  if (cached) return cached;
  const K = 1 << bits;
  const pos = linspaceF32(NF_OFFSET, 0.5, K / 2 + 1).slice(0, -1).map(normPpf);
  const neg = linspaceF32(NF_OFFSET, 0.5, K / 2).slice(0, -1).map((p) => -normPpf(p));
  const v = [...pos, 0, ...neg].map(fr).sort((a, b) => a - b);
  const mx = v[v.length - 1];
  const out = Float32Array.from(v.map((x) => fr(x / mx)));
  nfCache.set(bits, out);
  return out;
}
const nfCache = new Map<number, Float32Array>();

/** bnb create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 sorted float32 values. */
export function dynamicMap(): Float32Array {
  if (dynCache) return dynCache;
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = linspaceF32(0.1, 1, 2 ** i + 1);
    const scale = fr(10 ** (i - 6));
    for (let k = 0; k + 1 < b.length; k++) {
      const mean = fr(fr(b[k] + b[k + 1]) / 2);
      data.push(fr(scale * mean), fr(-scale * mean));
    }
  }
  data.push(0, 1);
  data.sort((a, b) => a - b);
  dynCache = Float32Array.from(data);
  return dynCache;
}
let dynCache: Float32Array | null = null;

/** Midpoints of consecutive levels, in float32 (torch: (code[:-1] + code[1:]) / 2). */
export function midpoints(levels: Float32Array): Float32Array {
  const m = new Float32Array(levels.length - 1);
  for (let k = 0; k < m.length; k++) m[k] = fr(fr(levels[k] + levels[k + 1]) / 2);
  return m;
}

/** torch.bucketize(y, mids, right=False): the number of midpoints strictly below y (ties → lower level). */
export function bucketize(y: number, mids: Float32Array): number {
  let lo = 0, hi = mids.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (mids[m] < y) lo = m + 1; else hi = m; }
  return lo;
}

/**
 * bnb blockwise quantization of a flat array with a codebook: per block absmax = max|x| (float32), codes by
 * bucketize(clamp(x·(1/max(absmax,1e-38)), −1, 1)). `codes` and `absmax` are written.
 */
export function quantizeBlockwise(x: ArrayLike<number>, block: number, levels: Float32Array,
  codes: Uint8Array, absmax: Float32Array, start = 0, n = x.length): void {
  const mids = midpoints(levels);
  const nb = Math.ceil(n / block);
  for (let b = 0; b < nb; b++) {
    const lo = b * block, hi = Math.min(n, lo + block);
    let am = 0;
    for (let i = lo; i < hi; i++) { const a = Math.abs(x[start + i]); if (a > am) am = a; }
    am = fr(am);
    absmax[b] = am;
    const inv = fr(1 / Math.max(am, 1e-38));
    for (let i = lo; i < hi; i++) {
      let y = fr(x[start + i] * inv);
      if (y > 1) y = 1; else if (y < -1) y = -1;
      codes[i] = bucketize(y, mids);
    }
  }
}

export interface DoubleQuant { q: Uint8Array; scale: Float32Array; offset: number }
export const DQ_BLOCK = 256;

/** QLoRA double quantization: offset = mean(absmax); (absmax − offset) → 8-bit dynamic map, blocks of 256. */
export function doubleQuantize(absmax: Float32Array, block = DQ_BLOCK): DoubleQuant {
  let sum = 0;
  for (let i = 0; i < absmax.length; i++) sum += absmax[i];
  const offset = fr(sum / Math.max(1, absmax.length));
  const c = new Float32Array(absmax.length);
  for (let i = 0; i < c.length; i++) c[i] = fr(absmax[i] - offset);
  const q = new Uint8Array(c.length);
  const scale = new Float32Array(Math.ceil(c.length / block));
  quantizeBlockwise(c, block, dynamicMap(), q, scale);
  return { q, scale, offset };
}

export function doubleDequantize(dq: DoubleQuant, n: number, block = DQ_BLOCK): Float32Array {
  const map = dynamicMap();
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = fr(fr(map[dq.q[i]] * dq.scale[Math.floor(i / block)]) + dq.offset);
  return out;
}

/** Absmax values of an nf-layout tensor (dequantizing the double quantization when present). */
export function nfAbsmax(p: PackedTensor): Float32Array {
  const nb = Math.ceil((p.out * p.in) / p.groupSize);
  if (p.absmax) return p.absmax;
  if (p.absmaxQ && p.absmaxScale && p.absmaxOffset !== undefined) {
    return doubleDequantize({ q: p.absmaxQ, scale: p.absmaxScale, offset: p.absmaxOffset }, nb);
  }
  throw new Error('nf tensor has neither absmax nor double-quantized absmax');
}

/** Method 'nf': NormalFloat-b quantization of W[out, in] in flat blocks (bnb layout), optional DQ. */
export function quantizeNF(W: ArrayLike<number>, out: number, inF: number,
  opts: { bits: number; groupSize?: number; doubleQuant?: boolean }): PackedTensor {
  const n = out * inF;
  if (W.length !== n) throw new Error(`quantizeNF: weight has ${W.length} values, expected ${out}x${inF}`);
  const block = opts.groupSize && opts.groupSize > 0 ? opts.groupSize : 64;
  const levels = nfLevels(opts.bits);
  const codes = new Uint8Array(n);
  const absmax = new Float32Array(Math.ceil(n / block));
  quantizeBlockwise(W, block, levels, codes, absmax);
  const p: PackedTensor = { method: 'nf', layout: 'nf', bits: opts.bits, out, in: inF, groupSize: block,
    qcodes: packCodes(codes, opts.bits) };
  setAbsmax(p, absmax, !!opts.doubleQuant);
  return p;
}

export function setAbsmax(p: PackedTensor, absmax: Float32Array, dq: boolean): void {
  if (dq) {
    const d = doubleQuantize(absmax);
    p.absmaxQ = d.q; p.absmaxScale = d.scale; p.absmaxOffset = d.offset;
  } else p.absmax = absmax;
}

/** Dequantize an nf-layout tensor (level·absmax in float32, plus the ICQ shift τ when present). */
export function dequantizeNF(p: PackedTensor, out?: Float32Array): Float32Array {
  const n = p.out * p.in;
  const o = out ?? new Float32Array(n);
  const levels = nfLevels(p.bits);
  const codes = unpackCodes(p.qcodes, p.bits, n);
  const am = nfAbsmax(p);
  const tau = p.tauQ && p.tauScale ? tauValues(p.tauQ, p.tauScale) : null;
  const B = p.groupSize;
  for (let b = 0, lo = 0; lo < n; b++, lo += B) {
    const hi = Math.min(n, lo + B), a = am[b], t = tau ? tau[b] : 0;
    if (tau) for (let i = lo; i < hi; i++) o[i] = fr(fr(levels[codes[i]] * a) + t);
    else for (let i = lo; i < hi; i++) o[i] = fr(levels[codes[i]] * a);
  }
  return o;
}

/** ICQ τ reconstruction: map[τ1]·τ2 per block (τ2 per group of 256 blocks). */
export function tauValues(q: Uint8Array, scale: Float32Array, block = DQ_BLOCK): Float32Array {
  const map = dynamicMap();
  const t = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) t[i] = fr(map[q[i]] * scale[Math.floor(i / block)]);
  return t;
}
