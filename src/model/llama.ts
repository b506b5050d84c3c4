// LlamaForCausalLM / MistralForCausalLM forward and hand-written backward (llm.c style).
// Activations live in named views sized in ONE place (`layerActSizes` / `Activations`), allocated once
// per (B, T) and reused. The model calls only Linear.forward/backward, so dense, quantized and LoRA
// layers are interchangeable.
import { type Arr, type ArrCtor, ctorOf } from '../tensor.js';
import type { LlamaConfig, Projection } from './config.js';
import type { Linear } from './linear.js';
import { LlamaWeights } from './weights.js';
import { rmsnormBackward, rmsnormForward } from './ops/rmsnorm.js';
import { ropeBackward, ropeForward, ropeInvFreq, ropeTables } from './ops/rope.js';
import { attentionBackward, attentionForward } from '../backend/kernels.js';
import { swigluBackward, swigluForward } from './ops/swiglu.js';
import { embeddingBackward, embeddingForward } from './ops/embedding.js';
import { residualForward } from './ops/residual.js';
import { crossEntropyForward, crossEntropyFused } from './ops/cross-entropy.js';
import { klForward } from './ops/kl.js';
import { LowbitError } from '../io/errors.js';
import type { KvCache } from './generate.js';

/** Observers of every projection's input/output during a forward (GPTQ statistics, linear-scope targets). */
export interface LinearHooks {
  /** x[rows, in] is the input of projection p of layer l (q/k/v share one input, gate/up another). */
  onLinearInput?(layer: number, p: Projection, x: Arr, rows: number): void;
  /** y[rows, out] is the output of projection p of layer l (q/k before RoPE). */
  onLinearOutput?(layer: number, p: Projection, y: Arr, rows: number): void;
}

export interface ForwardOptions {
  /** keep every layer's activations for backward() (default true); false shares one layer's scratch */
  train?: boolean;
  /**
   * keep every block's output readable in ForwardResult.layerOutputs (default true). Inference that needs
   * only the final hidden (perplexity, teacher hidden caching) should pass false: saves L·B·T·D floats.
   */
  captureLayerOutputs?: boolean;
  /** also compute logits [B·T, V]: true allocates, an array is filled */
  logits?: boolean | Arr;
  hooks?: LinearHooks;
}

export interface BackwardOptions {
  /**
   * Extra gradients at block outputs: dLayerOutputs[l] (if set) is added to ∂L/∂(output of block l)
   * — for `layer`-scope objectives comparing every block's output.
   */
  dLayerOutputs?: (Arr | null | undefined)[];
  /**
   * Called before each projection's backward with dy = ∂L/∂(its output) [rows, out] (q/k before RoPE);
   * the callback may ADD its own gradient into dy (for `linear`-scope objectives). The buffer is scratch.
   */
  onLinearGrad?(layer: number, p: Projection, dy: Arr, rows: number): void;
}

export interface ForwardResult {
  /** final post-norm hidden state [B·T, D] — the lm_head input (view; valid until the next forward) */
  hidden: Arr;
  /** logits [B·T, V] when asked for */
  logits: Arr | null;
  /** layerOutputs[l] = output of decoder block l [B·T, D] (views; valid until the next forward); [] if not captured */
  layerOutputs: Arr[];
  /** the embedding output [B·T, D] (view) */
  embeddings: Arr;
}

export interface LmHeadLoss {
  /** mean cross-entropy over non-ignored targets (NaN when there are none) */
  loss: number;
  /** summed cross-entropy and number of counted targets */
  sum: number;
  count: number;
  /** ∂loss/∂hidden [rows, D] (accumulated into opts.dHidden when given) or null when no grad was asked */
  dHidden: Arr | null;
}

/** The per-layer activations kept for backward, by name and size: THE one place they are sized. */
function layerActSizes(c: LlamaConfig, B: number, T: number): Record<LayerActName, number> {
  const N = B * T, D = c.hiddenSize, Q = c.numHeads * c.headDim, KV = c.numKvHeads * c.headDim, I = c.intermediateSize;
  return {
    ln1: N * D, rstd1: N,          // input_layernorm output and 1/rms
    q: N * Q, k: N * KV, v: N * KV, // projections; q, k after RoPE
    att: N * Q, lse: B * c.numHeads * T, // attention output (o_proj input) and its log-sum-exp
    mid: N * D,                     // residual stream after attention
    ln2: N * D, rstd2: N,          // post_attention_layernorm output and 1/rms
    gate: N * I, up: N * I, act: N * I, // MLP: gate_proj, up_proj outputs, silu(gate)·up (down_proj input)
  };
}
const LAYER_ACTS = ['ln1', 'rstd1', 'q', 'k', 'v', 'att', 'lse', 'mid', 'ln2', 'rstd2', 'gate', 'up', 'act'] as const;
type LayerActName = typeof LAYER_ACTS[number];
export type LayerActs = Record<LayerActName, Arr>;

/** Forward scratch shared by all layers: linear outputs before the residual add, the final norm. */
function fwdScratchSizes(c: LlamaConfig, B: number, T: number) {
  const N = B * T, D = c.hiddenSize;
  return {
    tmpD: N * D,                    // o_proj / down_proj output (backward: hook copy of the residual grad)
    lnf: N * D, rstdf: N,          // final norm output and 1/rms
  };
}
/** Backward scratch shared by all layers (allocated only for training). */
function bwdScratchSizes(c: LlamaConfig, B: number, T: number) {
  const N = B * T, D = c.hiddenSize, Q = c.numHeads * c.headDim, KV = c.numKvHeads * c.headDim, I = c.intermediateSize;
  return {
    dres: N * D, dln: N * D,        // residual-stream grad, norm-output grad
    datt: N * Q, dq: N * Q, dqr: N * Q, // grads of attention output, rotated q, pre-RoPE q
    dk: N * KV, dkr: N * KV, dv: N * KV,
    dgate: N * I, dup: N * I, dact: N * I,
  };
}
type FwdName = keyof ReturnType<typeof fwdScratchSizes>;
type BwdName = keyof ReturnType<typeof bwdScratchSizes>;

function carve<K extends string>(A: ArrCtor, sizes: Record<K, number>): Record<K, Arr> {
  let total = 0;
  for (const k in sizes) total += sizes[k];
  const buf = new A(total);
  const out = {} as Record<K, Arr>;
  let o = 0;
  for (const k in sizes) { out[k] = buf.subarray(o, o + sizes[k]); o += sizes[k]; }
  return out;
}

/**
 * Everything a forward/backward of B×T tokens writes. train: every layer keeps its activations and the
 * backward scratch exists; otherwise one layer's activations are reused by all. keepAll: resid[l] are
 * distinct buffers (the layer outputs stay readable); otherwise two buffers alternate.
 */
class Activations {
  readonly N: number;
  /** resid[l] = input of block l; resid[L] = output of the last block */
  readonly resid: Arr[];
  readonly layers: LayerActs[];
  readonly s: Record<FwdName, Arr>;
  readonly g: Record<BwdName, Arr> | null;
  readonly cos: Float64Array;
  readonly sin: Float64Array;
  constructor(c: LlamaConfig, A: ArrCtor, readonly B: number, readonly T: number, readonly train: boolean,
    readonly keepAll: boolean, invFreq: Float64Array) {
    this.N = B * T;
    const D = c.hiddenSize;
    this.resid = [];
    for (let l = 0; l <= c.numLayers; l++) this.resid.push(keepAll || l < 2 ? new A(this.N * D) : this.resid[l - 2]);
    const sizes = layerActSizes(c, B, T);
    this.layers = [];
    for (let l = 0; l < (train ? c.numLayers : 1); l++) this.layers.push(carve(A, sizes));
    this.s = carve(A, fwdScratchSizes(c, B, T));
    this.g = train ? carve(A, bwdScratchSizes(c, B, T)) : null;
    this.cos = new Float64Array(T * invFreq.length);
    this.sin = new Float64Array(T * invFreq.length);
    ropeTables(this.cos, this.sin, invFreq, 0, T);
  }
}

export class LlamaModel {
  readonly config: LlamaConfig;
  readonly invFreq: Float64Array;
  private acts: Activations | null = null;
  private inferActs: Activations | null = null;
  private readonly A: ArrCtor;
  private ids: Int32Array | null = null;

  constructor(readonly weights: LlamaWeights) {
    this.config = weights.config;
    this.A = ctorOf(weights.precision);
    const c = this.config;
    if (c.numHeads % c.numKvHeads !== 0) {
      throw new Error(`src/model/llama.ts: ${c.numHeads} attention heads are not a multiple of ${c.numKvHeads} kv heads`);
    }
    this.invFreq = ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling);
  }

  /**
   * Allocate (or reuse) the activations for B×T tokens. train keeps every layer's activations for
   * backward; keepLayerOutputs (default true; forced by train) keeps every block's output readable.
   */
  prepare(B: number, T: number, train = true, keepLayerOutputs = true): void {
    const a = this.acts, keep = train || keepLayerOutputs;
    if (a && a.B === B && a.T === T && (a.train || !train) && (a.keepAll || !keep)) return;
    this.acts = null; // let the old buffers go before allocating
    this.acts = new Activations(this.config, this.A, B, T, train, keep, this.invFreq);
  }

  private get a(): Activations {
    if (!this.acts) throw new Error('src/model/llama.ts: no activations — call forward()/prepare() first');
    return this.acts;
  }

  /** Full forward: embeddings → blocks → final norm (→ logits). Positions are 0..T−1 in every row. */
  forward(ids: Int32Array, B: number, T: number, opts: ForwardOptions = {}): ForwardResult {
    const c = this.config, N = B * T;
    if (ids.length < N) throw new LowbitError(`src/model/llama.ts: ${ids.length} ids for B=${B} × T=${T}`);
    this.prepare(B, T, opts.train ?? true, opts.captureLayerOutputs ?? true);
    const a = this.a;
    this.embed(ids, B, T);
    for (let l = 0; l < c.numLayers; l++) this.runBlock(l, a.resid[l], a.resid[l + 1], a, opts.hooks ?? null, 0, null);
    const hidden = this.finalNorm(a.resid[c.numLayers]);
    let logits: Arr | null = null;
    if (opts.logits) {
      logits = opts.logits === true ? new this.A(N * c.vocabSize) : opts.logits;
      this.lmHeadForward(logits, hidden, N);
    }
    return { hidden, logits, layerOutputs: a.keepAll ? a.resid.slice(1) : [], embeddings: a.resid[0] };
  }

  /**
   * Embedding lookup into the block-0 input buffer [B·T, D] (view). Layer-by-layer use: prepare(B, T,
   * train, keepLayerOutputs) once, then embed → forwardLayer(0..L−1) → finalNorm (→ backwardLayer …).
   * Without a prior prepare for this B, T it allocates with the previous mode (default: train).
   */
  embed(ids: Int32Array, B: number, T: number): Arr {
    this.prepare(B, T, this.acts?.train ?? true, this.acts?.keepAll ?? true);
    const c = this.config, a = this.a;
    embeddingForward(a.resid[0], ids, this.weights.embed, B * T, c.hiddenSize, c.vocabSize);
    this.ids = ids.slice(0, B * T);
    return a.resid[0];
  }

  /**
   * Run decoder block l on x [B·T, D] (copied into the block's input buffer unless it is that buffer);
   * returns the block output (view). Activations are kept for backwardLayer(l) when prepared with train.
   */
  forwardLayer(l: number, x: Arr, B: number, T: number, hooks: LinearHooks | null = null): Arr {
    this.prepare(B, T, this.acts?.train ?? true, this.acts?.keepAll ?? true);
    const a = this.a, inp = a.resid[l];
    if (x !== inp) inp.set(x.subarray(0, inp.length));
    this.runBlock(l, inp, a.resid[l + 1], a, hooks, 0, null);
    return a.resid[l + 1];
  }

  /** Final RMSNorm of x [B·T, D] (the lm_head input). */
  finalNorm(x: Arr): Arr {
    const c = this.config, a = this.a;
    rmsnormForward(a.s.lnf, a.s.rstdf, x, this.weights.finalNorm, a.N, c.hiddenSize, c.rmsNormEps);
    return a.s.lnf;
  }

  /**
   * Full backward from ∂L/∂hidden [B·T, D] of the last forward(train). Accumulates every grad (Linear
   * layers', and embed/norm grads when enableWeightGrads() was called); returns ∂L/∂embeddings (view).
   */
  backward(dHidden: Arr | null, opts: BackwardOptions = {}): Arr {
    const c = this.config, a = this.a, g = this.weights.grads, L = c.numLayers, ND = a.N * c.hiddenSize;
    this.requireTrain();
    const dres = a.g!.dres;
    dres.fill(0);
    if (dHidden) rmsnormBackward(dres, g ? g.finalNorm : null, dHidden, a.resid[L], this.weights.finalNorm, a.s.rstdf, a.N, c.hiddenSize);
    for (let l = L - 1; l >= 0; l--) {
      const extra = opts.dLayerOutputs?.[l];
      if (extra) for (let i = 0; i < ND; i++) dres[i] += extra[i];
      this.backwardLayer(l, dres, opts.onLinearGrad ?? null);
    }
    if (g && this.ids) embeddingBackward(g.embed, dres, this.ids, a.N, c.hiddenSize);
    return dres;
  }

  /**
   * Backward through block l, in place: d holds ∂L/∂(block output) [B·T, D] on entry and
   * ∂L/∂(block input) on exit. Accumulates Linear grads (adapters, dense weights) and norm grads.
   */
  backwardLayer(l: number, d: Arr, onLinearGrad: BackwardOptions['onLinearGrad'] | null = null): void {
    const c = this.config, a = this.a, w = this.weights.layers[l], g = this.weights.grads;
    this.requireTrain();
    const la = a.layers[l], s = a.g!, N = a.N, B = a.B, T = a.T, tmpD = a.s.tmpD;
    const D = c.hiddenSize, hd = c.headDim, Hq = c.numHeads, Hkv = c.numKvHeads;
    // MLP: out = mid + down(silu(gate(ln2)) · up(ln2)),  ln2 = norm(mid)
    const hook = onLinearGrad ?? null;
    // dy of o_proj/down_proj is the residual grad itself: hand a hook a copy, never d
    const resDy = (p: Projection): Arr => {
      if (!hook) return d;
      tmpD.set(d.subarray(0, N * D));
      hook(l, p, tmpD, N);
      return tmpD;
    };
    s.dact.fill(0);
    w.down.backward(s.dact, resDy('down_proj'), la.act, N);
    s.dgate.fill(0); s.dup.fill(0);
    swigluBackward(s.dgate, s.dup, s.dact, la.gate, la.up, N * c.intermediateSize);
    if (hook) { hook(l, 'gate_proj', s.dgate, N); hook(l, 'up_proj', s.dup, N); }
    s.dln.fill(0);
    w.gate.backward(s.dln, s.dgate, la.ln2, N);
    w.up.backward(s.dln, s.dup, la.ln2, N);
    rmsnormBackward(d, g ? g.layers[l].postNorm : null, s.dln, la.mid, w.postNorm, la.rstd2, N, D);
    // attention: mid = x + o(attn(rope(q(ln1)), rope(k(ln1)), v(ln1))),  ln1 = norm(x)
    s.datt.fill(0);
    w.o.backward(s.datt, resDy('o_proj'), la.att, N);
    s.dq.fill(0); s.dk.fill(0); s.dv.fill(0);
    attentionBackward(s.dq, s.dk, s.dv, s.datt, la.q, la.k, la.v, la.att, la.lse, B, T, T, Hq, Hkv, hd);
    s.dqr.fill(0); s.dkr.fill(0);
    ropeBackward(s.dqr, s.dq, a.cos, a.sin, B, T, Hq, hd);
    ropeBackward(s.dkr, s.dk, a.cos, a.sin, B, T, Hkv, hd);
    if (hook) { hook(l, 'q_proj', s.dqr, N); hook(l, 'k_proj', s.dkr, N); hook(l, 'v_proj', s.dv, N); }
    s.dln.fill(0);
    w.q.backward(s.dln, s.dqr, la.ln1, N);
    w.k.backward(s.dln, s.dkr, la.ln1, N);
    w.v.backward(s.dln, s.dv, la.ln1, N);
    rmsnormBackward(d, g ? g.layers[l].inputNorm : null, s.dln, a.resid[l], w.inputNorm, la.rstd1, N, D);
  }

  /** logits[rows, V] = lm_head(hidden[rows, D]). */
  lmHeadForward(logits: Arr, hidden: Arr, rows: number): void {
    this.weights.lmHead.forward(logits, hidden, rows);
  }

  /** dHidden[rows, D] += dLogits · W_lm (and the lm_head's own grads). */
  lmHeadBackward(dHidden: Arr | null, dLogits: Arr, hidden: Arr, rows: number): void {
    this.weights.lmHead.backward(dHidden, dLogits, hidden, rows);
  }

  /**
   * Fused, chunked lm_head + cross-entropy: never holds more than chunkRows × V logits. targets[rows]
   * (already aligned: targets[n] is the id position n must predict; <0 ignored). Mean over counted
   * targets; with grad (default true) returns ∂loss/∂hidden (accumulated into opts.dHidden if given)
   * and accumulates the lm_head's grads. opts.scale multiplies the gradient (e.g. 1/gradAccumSteps).
   */
  lmHeadCrossEntropy(hidden: Arr, targets: Int32Array, rows: number,
    opts: { grad?: boolean; dHidden?: Arr; chunkRows?: number; scale?: number } = {}): LmHeadLoss {
    const c = this.config, V = c.vocabSize, D = c.hiddenSize;
    const grad = opts.grad ?? true;
    let count = 0;
    for (let n = 0; n < rows; n++) if (targets[n] >= 0) count++;
    const chunk = Math.max(1, Math.min(rows, opts.chunkRows ?? Math.max(1, Math.floor((1 << 22) / V))));
    const logits = new this.A(chunk * V);
    const dHidden = grad ? (opts.dHidden ?? new this.A(rows * D)) : null;
    const scale = count > 0 ? (opts.scale ?? 1) / count : 0;
    let sum = 0;
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const cr = Math.min(chunk, rows - r0);
      const h = hidden.subarray(r0 * D, (r0 + cr) * D);
      const lg = logits.subarray(0, cr * V), t = targets.subarray(r0, r0 + cr);
      this.weights.lmHead.forward(lg, h, cr);
      sum += dHidden ? crossEntropyFused(lg, lg, t, cr, V, scale) : crossEntropyForward(null, lg, t, cr, V);
      if (dHidden) this.weights.lmHead.backward(dHidden.subarray(r0 * D, (r0 + cr) * D), lg, h, cr);
    }
    return { loss: count > 0 ? sum / count : NaN, sum, count, dHidden };
  }

  /**
   * Fused, chunked lm_head + KL(teacher ‖ student) for distillation: student logits = lm_head(hidden),
   * teacher logits = teacherHead(teacherHidden) (default: this lm_head). Never holds more than chunkRows × V
   * logits per side. loss = scale · Σ_rows KL / rows (default scale 1: mean over positions, summed over
   * vocab); with grad, returns ∂loss/∂hidden (accumulated into opts.dHidden if given) and accumulates the
   * lm_head's grads.
   */
  lmHeadKl(hidden: Arr, teacherHidden: Arr, rows: number,
    opts: { teacherHead?: Linear; grad?: boolean; dHidden?: Arr; chunkRows?: number; scale?: number } = {}): { loss: number; sum: number; dHidden: Arr | null } {
    const c = this.config, V = c.vocabSize, D = c.hiddenSize;
    const grad = opts.grad ?? true, teacherHead = opts.teacherHead ?? this.weights.lmHead;
    const chunk = Math.max(1, Math.min(rows, opts.chunkRows ?? Math.max(1, Math.floor((1 << 21) / V))));
    const sl = new this.A(chunk * V), tl = new this.A(chunk * V);
    const dHidden = grad ? (opts.dHidden ?? new this.A(rows * D)) : null;
    const scale = (opts.scale ?? 1) / rows;
    let sum = 0;
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const cr = Math.min(chunk, rows - r0);
      const h = hidden.subarray(r0 * D, (r0 + cr) * D);
      const s = sl.subarray(0, cr * V), t = tl.subarray(0, cr * V);
      this.weights.lmHead.forward(s, h, cr);
      teacherHead.forward(t, teacherHidden.subarray(r0 * D, (r0 + cr) * D), cr);
      sum += klForward(t, s, cr, V);
      if (dHidden) {
        // reuse the teacher buffer for dlogits
        const ds = t;
        klGradInto(ds, s, cr, V, scale);
        this.weights.lmHead.backward(dHidden.subarray(r0 * D, (r0 + cr) * D), ds, h, cr);
      }
    }
    return { loss: (opts.scale ?? 1) * sum / rows, sum, dHidden };
  }

  /**
   * Inference forward of T new tokens per row through a KV cache (positions cache.pos .. cache.pos+T−1).
   * Appends their K/V to the cache, advances cache.pos, and returns the final hidden [B·T, D] (view).
   */
  forwardCached(ids: Int32Array, B: number, T: number, cache: KvCache): Arr {
    const c = this.config;
    if (B !== cache.B) throw new Error(`src/model/llama.ts: cache holds ${cache.B} rows, got B=${B}`);
    if (cache.pos + T > cache.maxT) throw new LowbitError(`src/model/llama.ts: KV cache of ${cache.maxT} positions is full (at ${cache.pos}, +${T})`);
    let a = this.inferActs;
    if (!a || a.B !== B || a.T !== T) a = this.inferActs = new Activations(c, this.A, B, T, false, false, this.invFreq);
    embeddingForward(a.resid[0], ids, this.weights.embed, B * T, c.hiddenSize, c.vocabSize);
    const cos = new Float64Array(T * this.invFreq.length), sin = new Float64Array(T * this.invFreq.length);
    ropeTables(cos, sin, this.invFreq, cache.pos, T);
    for (let l = 0; l < c.numLayers; l++) this.runBlock(l, a.resid[l], a.resid[l + 1], a, null, cache.pos, cache, cos, sin);
    cache.pos += T;
    rmsnormForward(a.s.lnf, a.s.rstdf, a.resid[c.numLayers], this.weights.finalNorm, a.N, c.hiddenSize, c.rmsNormEps);
    return a.s.lnf;
  }

  // ---------------------------------------------------------------------------------------------

  private runBlock(l: number, x: Arr, out: Arr, a: Activations, hooks: LinearHooks | null,
    pos0: number, cache: KvCache | null, cos: Arr = a.cos, sin: Arr = a.sin): void {
    const c = this.config, w = this.weights.layers[l];
    const la = a.layers[a.train ? l : 0], s = a.s, N = a.N, B = a.B, T = a.T;
    const D = c.hiddenSize, hd = c.headDim, Hq = c.numHeads, Hkv = c.numKvHeads;
    // attention
    rmsnormForward(la.ln1, la.rstd1, x, w.inputNorm, N, D, c.rmsNormEps);
    this.lin(hooks, l, 'q_proj', w.q, la.q, la.ln1, N);
    this.lin(hooks, l, 'k_proj', w.k, la.k, la.ln1, N);
    this.lin(hooks, l, 'v_proj', w.v, la.v, la.ln1, N);
    ropeForward(la.q, la.q, cos, sin, B, T, Hq, hd);
    ropeForward(la.k, la.k, cos, sin, B, T, Hkv, hd);
    if (cache) {
      const KV = Hkv * hd, Q = Hq * hd, Tk = pos0 + T, kc = cache.k[l], vc = cache.v[l];
      for (let b = 0; b < B; b++) {
        const co = b * cache.maxT * KV;
        kc.set(la.k.subarray(b * T * KV, (b + 1) * T * KV), co + pos0 * KV);
        vc.set(la.v.subarray(b * T * KV, (b + 1) * T * KV), co + pos0 * KV);
        attentionForward(la.att.subarray(b * T * Q, (b + 1) * T * Q), null, la.q.subarray(b * T * Q, (b + 1) * T * Q),
          kc.subarray(co, co + Tk * KV), vc.subarray(co, co + Tk * KV), 1, T, Tk, Hq, Hkv, hd);
      }
    } else {
      attentionForward(la.att, la.lse, la.q, la.k, la.v, B, T, T, Hq, Hkv, hd);
    }
    this.lin(hooks, l, 'o_proj', w.o, s.tmpD, la.att, N);
    residualForward(la.mid, x, s.tmpD, N * D);
    // MLP
    rmsnormForward(la.ln2, la.rstd2, la.mid, w.postNorm, N, D, c.rmsNormEps);
    this.lin(hooks, l, 'gate_proj', w.gate, la.gate, la.ln2, N);
    this.lin(hooks, l, 'up_proj', w.up, la.up, la.ln2, N);
    swigluForward(la.act, la.gate, la.up, N * c.intermediateSize);
    this.lin(hooks, l, 'down_proj', w.down, s.tmpD, la.act, N);
    residualForward(out, la.mid, s.tmpD, N * D);
  }

  private lin(hooks: LinearHooks | null, l: number, p: Projection, lin: Linear, y: Arr, x: Arr, N: number): void {
    if (hooks?.onLinearInput) hooks.onLinearInput(l, p, x, N);
    lin.forward(y, x, N);
    if (hooks?.onLinearOutput) hooks.onLinearOutput(l, p, y, N);
  }

  private requireTrain(): void {
    if (!this.a.train) throw new Error('src/model/llama.ts: backward needs a forward with train: true');
  }
}

/** In place: t (teacher logits) becomes scale · (softmax(s) − softmax(t)), row by row. */
function klGradInto(t: Arr, s: Arr, N: number, V: number, scale: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * V;
    let ms = -Infinity, mt = -Infinity;
    for (let i = 0; i < V; i++) { if (s[o + i] > ms) ms = s[o + i]; if (t[o + i] > mt) mt = t[o + i]; }
    let zs = 0, zt = 0;
    for (let i = 0; i < V; i++) { zs += Math.exp(s[o + i] - ms); zt += Math.exp(t[o + i] - mt); }
    for (let i = 0; i < V; i++) t[o + i] = scale * (Math.exp(s[o + i] - ms) / zs - Math.exp(t[o + i] - mt) / zt);
  }
}

export { LlamaWeights };
