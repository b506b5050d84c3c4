// HF config.json <-> LlamaConfig. Reads both rope styles:
//   older (transformers <= 4.x): rope_theta + rope_scaling ({rope_type|type, factor, ...} | null)
//   newer (transformers v5):     rope_parameters: {rope_type, rope_theta, factor, ...}
// and refuses what the model code does not implement (other architectures, biases, activations,
// rope types other than default/llama3) with a one-line LowbitError.
import { writeFileSync } from 'node:fs';
import type { LlamaConfig, RopeScaling } from '../model/config.js';
import { LowbitError, fileError, readJsonFile } from './errors.js';

const ARCHS: Record<string, 'llama' | 'mistral'> = {
  llama: 'llama', mistral: 'mistral', LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral',
};
const DTYPES = ['float32', 'float16', 'bfloat16'];

type Json = Record<string, unknown>;

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class Fields {
  constructor(private readonly file: string, private readonly j: Json) {}
  err(problem: string): LowbitError { return fileError(this.file, problem); }
  has(k: string): boolean { return this.j[k] !== undefined && this.j[k] !== null; }
  raw(k: string): unknown { return this.j[k]; }
  posInt(k: string, dflt?: number): number {
    const v = this.j[k];
    if (v === undefined || v === null) {
      if (dflt !== undefined) return dflt;
      throw this.err(`missing '${k}'`);
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw this.err(`'${k}' must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  }
  posNum(k: string, dflt?: number): number {
    const v = this.j[k];
    if (v === undefined || v === null) {
      if (dflt !== undefined) return dflt;
      throw this.err(`missing '${k}'`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw this.err(`'${k}' must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  }
  bool(k: string, dflt: boolean): boolean {
    const v = this.j[k];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') throw this.err(`'${k}' must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }
  /** token id: integer, null, or a list (first element taken, as for Llama 3's eos list) */
  tokenId(k: string): number | null {
    let v = this.j[k];
    if (Array.isArray(v)) v = v.length ? v[0] : null;
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw this.err(`'${k}' must be a token id, got ${JSON.stringify(this.j[k])}`);
    return v;
  }
}

function parseArchitecture(f: Fields): 'llama' | 'mistral' {
  const mt = f.raw('model_type');
  if (mt !== undefined && mt !== null) {
    if (typeof mt !== 'string' || !Object.prototype.hasOwnProperty.call(ARCHS, mt) || mt.endsWith('CausalLM')) {
      throw f.err(`unsupported architecture ${JSON.stringify(mt)} (supported: llama, mistral)`);
    }
    return ARCHS[mt];
  }
  const archs = f.raw('architectures');
  if (Array.isArray(archs) && archs.length) {
    for (const a of archs) if (typeof a === 'string' && a.endsWith('ForCausalLM') && ARCHS[a]) return ARCHS[a];
    throw f.err(`unsupported architecture ${JSON.stringify(archs[0])} (supported: LlamaForCausalLM, MistralForCausalLM)`);
  }
  throw f.err(`has neither 'model_type' nor 'architectures'; cannot tell the architecture`);
}

/** Rope settings from either style: { theta, scaling }. */
function parseRope(f: Fields): { theta: number; scaling: RopeScaling } {
  let params: Json | null = null;
  let theta: unknown = f.raw('rope_theta');
  const rp = f.raw('rope_parameters');
  if (rp !== undefined && rp !== null) {
    if (!isObj(rp)) throw f.err(`'rope_parameters' must be an object`);
    if (rp.rope_type === undefined && rp.rope_theta === undefined && Object.values(rp).some(isObj)) {
      throw f.err(`per-layer-type 'rope_parameters' (${Object.keys(rp).join(', ')}) are not supported`);
    }
    params = rp;
    if (rp.rope_theta !== undefined) theta = rp.rope_theta;
  } else {
    const rs = f.raw('rope_scaling');
    if (rs !== undefined && rs !== null) {
      if (!isObj(rs)) throw f.err(`'rope_scaling' must be an object or null`);
      params = rs;
    }
  }
  if (theta === undefined || theta === null) theta = 10000;
  if (typeof theta !== 'number' || !(theta > 0) || !Number.isFinite(theta)) throw f.err(`rope theta must be a positive number, got ${JSON.stringify(theta)}`);
  if (!params) return { theta, scaling: { type: 'default' } };
  const type = params.rope_type ?? params.type ?? 'default';
  if (type === 'default') return { theta, scaling: { type: 'default' } };
  if (type !== 'llama3') throw f.err(`unsupported rope scaling type ${JSON.stringify(type)} (supported: default, llama3)`);
  const num = (k: string): number => {
    const v = params![k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw f.err(`llama3 rope scaling needs a positive '${k}', got ${JSON.stringify(v)}`);
    return v;
  };
  const lowFreqFactor = num('low_freq_factor'), highFreqFactor = num('high_freq_factor');
  if (!(highFreqFactor > lowFreqFactor)) throw f.err(`llama3 rope scaling needs high_freq_factor > low_freq_factor, got ${highFreqFactor} and ${lowFreqFactor}`);
  const orig = num('original_max_position_embeddings');
  if (!Number.isSafeInteger(orig)) throw f.err(`llama3 rope scaling needs an integer 'original_max_position_embeddings', got ${orig}`);
  return { theta, scaling: { type: 'llama3', factor: num('factor'), lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: orig } };
}

/** max_position_embeddings; Mistral's sliding_window (when set) caps it, since within the window
 *  sliding-window attention equals the full causal attention the model code implements. */
function maxPositions(f: Fields): number {
  const m = f.posInt('max_position_embeddings', 2048);
  return f.has('sliding_window') ? Math.min(m, f.posInt('sliding_window')) : m;
}

/** Parse a config.json object. `file` only names the source in error messages. */
export function parseHfConfig(json: unknown, file = 'config.json'): LlamaConfig {
  if (!isObj(json)) throw fileError(file, 'is not a JSON object');
  const f = new Fields(file, json);
  const architecture = parseArchitecture(f);
  const hiddenSize = f.posInt('hidden_size');
  const numHeads = f.posInt('num_attention_heads');
  let headDim: number;
  if (f.has('head_dim')) headDim = f.posInt('head_dim');
  else {
    if (hiddenSize % numHeads !== 0) throw f.err(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads} and no 'head_dim' is given`);
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) throw f.err(`head_dim ${headDim} must be even for rotary embeddings`);
  const numKvHeads = f.posInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) throw f.err(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const act = f.raw('hidden_act') ?? 'silu';
  if (act !== 'silu') throw f.err(`unsupported hidden_act ${JSON.stringify(act)} (only silu)`);
  if (f.bool('attention_bias', false)) throw f.err(`attention_bias true is not supported`);
  if (f.bool('mlp_bias', false)) throw f.err(`mlp_bias true is not supported`);
  const dtypeRaw = f.raw('torch_dtype') ?? f.raw('dtype') ?? 'float32';
  if (typeof dtypeRaw !== 'string' || !DTYPES.includes(dtypeRaw)) throw f.err(`unsupported torch_dtype ${JSON.stringify(dtypeRaw)} (supported: ${DTYPES.join(', ')})`);
  const rope = parseRope(f);
  return {
    architecture,
    vocabSize: f.posInt('vocab_size'),
    hiddenSize,
    intermediateSize: f.posInt('intermediate_size'),
    numLayers: f.posInt('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: f.posNum('rms_norm_eps', 1e-6),
    ropeTheta: rope.theta,
    ropeScaling: rope.scaling,
    maxPositionEmbeddings: maxPositions(f),
    tieWordEmbeddings: f.bool('tie_word_embeddings', false),
    bosTokenId: f.tokenId('bos_token_id'),
    eosTokenId: f.tokenId('eos_token_id'),
    torchDtype: dtypeRaw,
  };
}

/** Read and parse `path` (a config.json). */
export function loadHfConfig(path: string): LlamaConfig {
  return parseHfConfig(readJsonFile(path), path);
}

/** An older-style (rope_theta + rope_scaling) HF config that transformers 4.x and 5 both load. */
export function configToHfJson(c: LlamaConfig): Record<string, unknown> {
  const mistral = c.architecture === 'mistral';
  const out: Record<string, unknown> = {
    architectures: [mistral ? 'MistralForCausalLM' : 'LlamaForCausalLM'],
    model_type: c.architecture,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    max_position_embeddings: c.maxPositionEmbeddings,
    initializer_range: 0.02,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling.type === 'llama3' ? {
      rope_type: 'llama3',
      factor: c.ropeScaling.factor,
      low_freq_factor: c.ropeScaling.lowFreqFactor,
      high_freq_factor: c.ropeScaling.highFreqFactor,
      original_max_position_embeddings: c.ropeScaling.originalMaxPositionEmbeddings,
    } : null,
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    tie_word_embeddings: c.tieWordEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    use_cache: true,
    torch_dtype: c.torchDtype,
  };
  if (mistral) out.sliding_window = null;
  return out;
}

export function writeHfConfig(path: string, c: LlamaConfig): void {
  writeFileSync(path, JSON.stringify(configToHfJson(c), null, 2) + '\n');
}
