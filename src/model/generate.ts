// KV-cached incremental decoding and a streaming generate().
import { type Arr, Rng, ctorOf } from '../tensor.js';
import type { LlamaModel } from './llama.js';
import { type SamplingOptions, sampleToken } from './sampling.js';

/** Per-layer K/V (after RoPE) for B rows × maxT positions: k[l], v[l] are [B, maxT, Hkv, headDim]. */
export class KvCache {
  readonly k: Arr[] = [];
  readonly v: Arr[] = [];
  /** number of positions filled (the absolute position of the next token) */
  pos = 0;
  constructor(model: LlamaModel, readonly B: number, readonly maxT: number) {
    const c = model.config, A = ctorOf(model.weights.precision);
    const n = B * maxT * c.numKvHeads * c.headDim;
    for (let l = 0; l < c.numLayers; l++) { this.k.push(new A(n)); this.v.push(new A(n)); }
  }
  reset(): void { this.pos = 0; }
}

/**
 * Run the prompt ids [B, T] through the cache (which it fills from cache.pos). Returns the logits of the
 * last position of each row [B, V], or of every position [B·T, V] with allLogits.
 */
export function prefill(model: LlamaModel, cache: KvCache, ids: Int32Array, B: number, T: number, allLogits = false): Arr {
  const c = model.config, V = c.vocabSize, D = c.hiddenSize;
  const hidden = model.forwardCached(ids, B, T, cache);
  const A = ctorOf(model.weights.precision);
  if (allLogits) {
    const out = new A(B * T * V);
    model.lmHeadForward(out, hidden, B * T);
    return out;
  }
  const last = new A(B * D);
  for (let b = 0; b < B; b++) last.set(hidden.subarray(((b + 1) * T - 1) * D, (b + 1) * T * D), b * D);
  const out = new A(B * V);
  model.lmHeadForward(out, last, B);
  return out;
}

/** One decode step: ids[B] (one token per row) at position cache.pos → logits [B, V]. */
export function decodeStep(model: LlamaModel, cache: KvCache, ids: Int32Array): Arr {
  return prefill(model, cache, ids, cache.B, 1);
}

export interface GenerateOptions extends SamplingOptions {
  /** maximum number of new tokens */
  maxTokens: number;
  /** sampling seed (default 0) */
  seed?: number;
  /** called with each new token as soon as it is chosen; return false to stop */
  onToken?: (id: number, index: number) => boolean | void;
  /** tokens that end generation (included in the output); default: the config's eos token */
  stopTokens?: number[];
}

/** Stream new token ids after the prompt (one sequence), KV-cached. */
export function* streamTokens(model: LlamaModel, promptIds: ArrayLike<number>, opts: GenerateOptions): Generator<number> {
  const c = model.config, V = c.vocabSize;
  const T = promptIds.length;
  if (T === 0) throw new Error('src/model/generate.ts: empty prompt');
  const maxTokens = Math.max(0, opts.maxTokens | 0);
  if (maxTokens === 0) return;
  const stops = new Set(opts.stopTokens ?? (c.eosTokenId != null ? [c.eosTokenId] : []));
  const rng = new Rng(opts.seed ?? 0);
  const cache = new KvCache(model, 1, T + maxTokens);
  let logits = prefill(model, cache, Int32Array.from(promptIds), 1, T);
  const one = new Int32Array(1);
  for (let i = 0; i < maxTokens; i++) {
    const id = sampleToken(logits, V, opts, rng);
    yield id;
    if (stops.has(id) || i === maxTokens - 1) return;
    one[0] = id;
    logits = decodeStep(model, cache, one);
  }
}

/** Generate up to maxTokens new ids after the prompt; onToken streams them. Returns the new ids. */
export function generate(model: LlamaModel, promptIds: ArrayLike<number>, opts: GenerateOptions): number[] {
  const out: number[] = [];
  for (const id of streamTokens(model, promptIds, opts)) {
    out.push(id);
    if (opts.onToken && opts.onToken(id, out.length - 1) === false) break;
  }
  return out;
}
