// Dispatch: one dequantizer per storage layout.
import type { PackedTensor } from './types.js';
import { dequantizeInt } from './rtn.js';
import { dequantizeNF } from './normalfloat.js';

export function dequantize(p: PackedTensor, out?: Float32Array): Float32Array {
  return p.layout === 'int' ? dequantizeInt(p, out) : dequantizeNF(p, out);
}
