// f16 / bf16 <-> f32 conversions, scalar and bulk. Rounding is round-to-nearest-even as torch does
// (c10::BFloat16 round_to_nearest_even, c10::fp16_ieee_from_fp32_value): NaN -> 0x7FC0 for bf16
// (sign dropped, as torch), NaN -> sign|0x7E00 for f16, overflow -> ±inf, f16 subnormals exact.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

let F16_TABLE: Float32Array | null = null;

/** 65536-entry f16 -> f32 lookup table (256 KiB), built on first use. */
export function f16Table(): Float32Array {
  if (F16_TABLE) return F16_TABLE;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f, m = h & 0x3ff;
    let v: number;
    if (e === 0) v = m * 2 ** -24;
    else if (e === 31) v = m ? NaN : Infinity;
    else v = (1 + m / 1024) * 2 ** (e - 15);
    t[h] = sign * v;
  }
  F16_TABLE = t;
  return t;
}

export function f16BitsToF32(h: number): number { return f16Table()[h & 0xffff]; }

export function bf16BitsToF32(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0];
}

/** f32 bit pattern (as uint32) -> bf16 bits, round to nearest even; NaN -> 0x7FC0. */
function bf16FromBits(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  return bf16FromBits(u32[0]);
}

/** f32 bit pattern (as uint32) -> f16 bits, round to nearest even, subnormals exact, overflow -> inf. */
function f16FromBits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | (mant ? 0x7e00 : 0x7c00);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // |x| < 2^-25: rounds to ±0 (2^-25 itself ties to even 0 below)
    mant |= 0x800000;
    const shift = 14 - e; // 14..24
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1), mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half; // a carry to 0x400 is the smallest normal, encoded correctly
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++; // carry may reach 0x7c00 = inf: correct
  return sign | half;
}

export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  return f16FromBits(u32[0]);
}

/** Bulk conversions; `dst` defaults to a new array of src.length. */
export function f16ToF32Array(src: Uint16Array, dst: Float32Array = new Float32Array(src.length), dstOffset = 0): Float32Array {
  const t = f16Table();
  for (let i = 0; i < src.length; i++) dst[dstOffset + i] = t[src[i]];
  return dst;
}

export function bf16ToF32Array(src: Uint16Array, dst: Float32Array = new Float32Array(src.length), dstOffset = 0): Float32Array {
  const d = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) d[dstOffset + i] = src[i] << 16;
  return dst;
}

export function f32ToBf16Array(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length), srcOffset = 0, n = src.length - srcOffset): Uint16Array {
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < n; i++) dst[i] = bf16FromBits(s[srcOffset + i]);
  return dst;
}

export function f32ToF16Array(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length), srcOffset = 0, n = src.length - srcOffset): Uint16Array {
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < n; i++) dst[i] = f16FromBits(s[srcOffset + i]);
  return dst;
}
