// The in-memory form of one quantized weight W[out, in] and the options of the quantizers.

export type QuantMethod = 'rtn' | 'nf' | 'icq' | 'gptq';
export const QUANT_METHODS: readonly QuantMethod[] = ['rtn', 'nf', 'icq', 'gptq'];

/**
 * Storage layout. 'int': affine integer codes, groups of `groupSize` consecutive inputs of one output row
 * (the last group of a row may be shorter), ŵ = s·(q − z) with f16 s and z (`gIdx` remaps columns to groups).
 * 'nf': NormalFloat codes, the row-major flattened tensor cut into blocks of `groupSize` (the last may be
 * shorter), ŵ = level[q]·absmax (+ τ for ICQ), absmax plain f32 or double-quantized.
 */
export type QuantLayout = 'int' | 'nf';

export interface PackedTensor {
  method: QuantMethod;
  layout: QuantLayout;
  bits: number;
  out: number;
  in: number;
  groupSize: number;
  /** codes in the pack.ts stream layout, row-major over W[out, in] */
  qcodes: Uint8Array;
  // ---- layout 'int' ----
  /** [out, nGroups], values exactly representable in f16 */
  scales?: Float32Array;
  /** [out, nGroups], integers 0..2^b−1 */
  zeros?: Float32Array;
  /** [in] group index of each input column (GPTQ act-order with dynamic groups); absent = ⌊i/groupSize⌋ */
  gIdx?: Int32Array;
  // ---- layout 'nf' ----
  /** [nBlocks] f32 absmax (without double quantization) */
  absmax?: Float32Array;
  /** double quantization: 8-bit dynamic-map codes [nBlocks], f32 scale per 256 blocks, f32 mean offset */
  absmaxQ?: Uint8Array;
  absmaxScale?: Float32Array;
  absmaxOffset?: number;
  /** ICQ shift per block: 8-bit dynamic-map codes [nBlocks] and f32 scale per 256 blocks */
  tauQ?: Uint8Array;
  tauScale?: Float32Array;
}

export interface QuantOpts {
  method: QuantMethod;
  bits: number;
  /** group/block size; 0 or -1 = per-channel (int layout only). Defaults: rtn/gptq 64... see defaultGroup */
  groupSize?: number;
  /** NF/ICQ-NF: double-quantize the absmax values */
  doubleQuant?: boolean;
  /** ICQ variant: 'nf' (IR-QLoRA NormalFloat path, default) or 'int' (scale-multiplier search on RTN) */
  icqMode?: 'nf' | 'int';
  /** ICQ-NF search: λ and n (201 = 2n+1 candidates) */
  tauLambda?: number;
  tauN?: number;
  /** GPTQ */
  percdamp?: number;
  actOrder?: boolean;
  staticGroups?: boolean;
  blockSize?: number;
}

export function defaultGroup(method: QuantMethod, icqMode: 'nf' | 'int' = 'nf'): number {
  if (method === 'nf' || (method === 'icq' && icqMode === 'nf')) return 64;
  return 64;
}

/** Number of groups per row (int layout) or blocks (nf layout). */
export function groupCount(p: Pick<PackedTensor, 'layout' | 'out' | 'in' | 'groupSize'>): number {
  return p.layout === 'int' ? Math.ceil(p.in / p.groupSize) : Math.ceil((p.out * p.in) / p.groupSize);
}
