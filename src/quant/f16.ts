// Half-precision helpers for the quantizers: scales and zeros of the integer formats are stored in f16.
// The conversions themselves live in io/halfs.ts (round to nearest even, as torch's .half() does).
import { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../io/halfs.js';

export { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits };

/** Round a number to the nearest f16 value. */
export function roundF16(x: number): number { return f16BitsToF32(f32ToF16Bits(x)); }

export function toF16Bits(a: ArrayLike<number>): Uint16Array {
  const o = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) o[i] = f32ToF16Bits(a[i]);
  return o;
}

export function fromF16Bits(a: Uint16Array): Float32Array {
  const o = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) o[i] = f16BitsToF32(a[i]);
  return o;
}
