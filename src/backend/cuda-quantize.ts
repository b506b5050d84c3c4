// Typed access to the quantizer kernels of the addon (native/cuda/quantize.cu, bindings napi_quantize.cc): the
// RTN / ICQ-int, NormalFloat, ICQ-NF and double-quantization steps of src/quant/{rtn,normalfloat,icq}.ts on the
// device, bit-identical to them. All buffer arguments are device-buffer handles (sizes checked natively); codes are
// one byte per weight until cudaPackCodes writes the pack.ts stream. Stream-ordered on the default stream.
// TypeScript twins: src/quant/quantize-gpu-twins.ts; orchestration: src/quant/quantize-gpu.ts.
import type { NativeCuda } from './native.js';
import { kernelFamily } from './cuda-family.js';

/** The quantizer kernels (register_cuda_quantize). */
export interface NativeCudaQuantize extends NativeCuda {
  /**
   * 'int' layout, one (row, group) at a time: W f32 [out, in], groups of `group` inputs (last one shorter).
   * rule 0 = RTN min-max, 1 = ICQ-int range search over mults f64 [nMults] with entropy terms ent f64 [2·(group+1)]
   * (quantEntropyTerms). codes u8 [out·in], scales and zeros f32 [out·ng]; stats (rule 1, optional) f64 [2·out·ng]:
   * per group the entropy of the GPTQ min-max codes, then of the chosen codes.
   */
  cudaQuantInt(W: number, out: number, inF: number, bits: number, group: number, rule: 0 | 1, codes: number,
    scales: number, zeros: number, mults: number | null, nMults: number, ent: number | null, stats: number | null): void;
  /**
   * bnb blockwise quantization of x f32 [n] (minus offset f32 [1] when given) with a sorted codebook levels
   * f32 [nLevels]: codes u8 [n], absmax f32 [ceil(n/block)].
   */
  cudaQuantBlockwise(x: number, n: number, block: number, levels: number, nLevels: number, offset: number | null,
    codes: number, absmax: number): void;
  /**
   * ICQ-NF (bits 2..4, block ≤ 256): per block the τ search over factors f32 [nFactors], entropy terms
   * ent f64 [2·(block+1)]; codes u8 [n], absmax and tau f32 [nb]; stats (optional) f64 [2·nb]: per block the
   * entropy of plain NF codes, then of the ICQ codes.
   */
  cudaIcqNf(W: number, n: number, bits: number, block: number, levels: number, factors: number, nFactors: number,
    ent: number, codes: number, absmax: number, tau: number, stats: number | null): void;
  /** work (≥ 16 bytes) f32 [0] = fr(Σ absmax / max(1, nb)), the sum in f64 in index order. */
  cudaAbsmaxMean(absmax: number, nb: number, work: number): void;
  /** τ double quantization: per 256 blocks scale = max|τ|, q = nearest dynamic-map index of τ/scale. */
  cudaTauDq(tau: number, nb: number, dynmap: number, q: number, scale: number): void;
  /** codes u8 [n] → the pack.ts bit stream (ceil(n·bits/8) bytes). */
  cudaPackCodes(codes: number, n: number, bits: number, packed: number): void;
}

/** The function names of NativeCudaQuantize the addon must export. */
export const CUDA_QUANTIZE_FUNCTIONS = [
  'cudaQuantInt', 'cudaQuantBlockwise', 'cudaIcqNf', 'cudaAbsmaxMean', 'cudaTauDq', 'cudaPackCodes',
] as const satisfies readonly (keyof NativeCudaQuantize)[];

const family = kernelFamily<NativeCudaQuantize>('quantizer kernels', CUDA_QUANTIZE_FUNCTIONS);

/** The addon's CUDA object with the quantizer kernels when a device is usable; otherwise null (see cudaQuantizerUnavailable). */
export function cudaQuantizer(): NativeCudaQuantize | null { return family.get(); }

/** Why cudaQuantizer() is null ('available' when it is not). */
export function cudaQuantizerUnavailable(): string { return family.unavailable(); }
