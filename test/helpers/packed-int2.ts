// Random 2-bit 'int' group-64 packed weights for the fused-GEMM tests: random code bytes (never all zero), f16-exact
// scales in [2^-9, 2^-6) and integer zeros 0..3 (or up to maxZero), built directly (no quantizer in the loop).
import type { Rng } from '../../src/tensor.js';
import type { PackedTensor } from '../../src/quant/types.js';
import { roundF16 } from '../../src/quant/f16.js';

export function randomInt2(rng: Rng, out: number, inF: number, maxZero = 3): PackedTensor {
  const ng = Math.ceil(inF / 64);
  const qcodes = Uint8Array.from({ length: (out * inF) / 4 }, () => rng.int(256));
  qcodes[0] |= 1;  // never all zero
  const scales = Float32Array.from({ length: out * ng }, () => roundF16(2 ** -9 * (1 + 7 * rng.next())));
  const zeros = Float32Array.from({ length: out * ng }, () => rng.int(maxZero + 1));
  return { method: 'rtn', layout: 'int', bits: 2, out, in: inF, groupSize: 64, qcodes, scales, zeros };
}
