// The normalized LLaMA-family config every module works from. io/config.ts parses HF config.json
// (both the rope_theta/rope_scaling and the rope_parameters styles) into this record.
export type RopeScaling =
  | { type: 'default' }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

export interface LlamaConfig {
  architecture: 'llama' | 'mistral';
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenId: number | null;
  /** dtype the checkpoint was stored in ('float32' | 'float16' | 'bfloat16'); compute is f32 */
  torchDtype: string;
}

/** The seven linear projections of a decoder layer, by their HF names. */
export const PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type Projection = typeof PROJECTIONS[number];

/** HF module path of a projection, e.g. model.layers.3.self_attn.q_proj */
export function projectionPath(layer: number, p: Projection): string {
  const block = p === 'gate_proj' || p === 'up_proj' || p === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${p}`;
}

export function projectionShape(c: LlamaConfig, p: Projection): { out: number; in: number } {
  const q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  switch (p) {
    case 'q_proj': return { out: q, in: c.hiddenSize };
    case 'k_proj': case 'v_proj': return { out: kv, in: c.hiddenSize };
    case 'o_proj': return { out: c.hiddenSize, in: q };
    case 'gate_proj': case 'up_proj': return { out: c.intermediateSize, in: c.hiddenSize };
    case 'down_proj': return { out: c.hiddenSize, in: c.intermediateSize };
  }
}
