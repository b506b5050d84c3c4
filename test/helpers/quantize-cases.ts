// Shared by the GPU quantizer tests (test/cuda-quantize.test.ts on a device, test/quantize-gpu-emulated.test.ts
// on the host emulator): the option sets, random weights with outliers, and a field-by-field comparison of two
// PackedTensors that counts mismatching elements.
import type { PackedTensor, QuantOpts } from '../../src/quant/types.js';
import type { Rng } from '../../src/tensor.js';
import { randf } from './arrays.js';

/** Every GPU method / bit width / group: per-channel, short last groups and blocks, double quantization. */
export const QUANT_CASES: QuantOpts[] = [
  ...[1, 2, 3, 4, 8].map((bits): QuantOpts => ({ method: 'rtn', bits, groupSize: 64 })),
  { method: 'rtn', bits: 2, groupSize: 128 },
  { method: 'rtn', bits: 3, groupSize: 20 },
  { method: 'rtn', bits: 4, groupSize: -1 },
  { method: 'rtn', bits: 2 },
  ...[2, 3, 4].flatMap((bits): QuantOpts[] => [
    { method: 'nf', bits, groupSize: 64 }, { method: 'nf', bits, groupSize: 64, doubleQuant: true },
  ]),
  { method: 'nf', bits: 8, groupSize: 64, doubleQuant: true },
  { method: 'nf', bits: 4, groupSize: 100 },
  ...[2, 3, 4].flatMap((bits): QuantOpts[] => [
    { method: 'icq', icqMode: 'nf', bits, groupSize: 64 }, { method: 'icq', icqMode: 'nf', bits, groupSize: 64, doubleQuant: true },
  ]),
  { method: 'icq', icqMode: 'nf', bits: 2, groupSize: 40, tauLambda: 0.2, tauN: 30 },
  { method: 'icq', icqMode: 'nf', bits: 2, groupSize: 256, doubleQuant: true },
  ...[2, 3, 4, 8].map((bits): QuantOpts => ({ method: 'icq', icqMode: 'int', bits, groupSize: 64 })),
  { method: 'icq', icqMode: 'int', bits: 2, groupSize: -1 },
  { method: 'icq', icqMode: 'int', bits: 3, groupSize: 32 },
];

export function caseName(o: QuantOpts): string {
  const m = o.method === 'icq' ? `icq-${o.icqMode ?? 'nf'}` : o.method;
  return `${m}${o.bits} g${o.groupSize ?? 'default'}${o.doubleQuant ? ' DQ' : ''}${o.tauN !== undefined ? ` λ${o.tauLambda} n${o.tauN}` : ''}`;
}

/** N(0, 0.02²) weights with ~1 % outliers ×(5..20) and one exact median duplicate per row (ties in the τ search). */
export function outlierWeight(rng: Rng, out: number, inF: number): Float32Array {
  const W = randf(rng, out * inF, 0.02);
  for (let i = 0; i < W.length; i++) if (rng.next() < 0.01) W[i] *= 5 + 15 * rng.next();
  for (let o = 0; o < out; o++) if (inF > 2) W[o * inF + 1] = W[o * inF];
  return W;
}

/** "field: k of n differ (first at i: got x, want y)" for every field that is not bit-identical; [] when equal. */
export function packedMismatches(got: PackedTensor, want: PackedTensor): string[] {
  const msgs: string[] = [];
  const keys = new Set([...Object.keys(got), ...Object.keys(want)]) as Set<keyof PackedTensor>;
  for (const k of keys) {
    const a = got[k] as unknown, b = want[k] as unknown;
    if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
      const x = a as unknown as ArrayLike<number>, y = b as unknown as ArrayLike<number>;
      if (x.length !== y.length) { msgs.push(`${k}: length ${x.length}, want ${y.length}`); continue; }
      let bad = 0, first = -1;
      for (let i = 0; i < y.length; i++) if (!Object.is(x[i], y[i])) { bad++; if (first < 0) first = i; }
      if (bad) msgs.push(`${k}: ${bad} of ${y.length} differ (first at ${first}: got ${x[first]}, want ${y[first]})`);
    } else if (!Object.is(a, b)) msgs.push(`${k}: got ${String(a)}, want ${String(b)}`);
  }
  return msgs;
}
