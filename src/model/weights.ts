// The parameters of a LLaMA-family decoder (HF LlamaForCausalLM / MistralForCausalLM layout) and,
// when training all weights, their gradient buffers. Linear projections are `Linear` objects so
// quantizers and adapters can swap them (linearAt / setLinear).
import { type Arr, type Precision, type Rng, ctorOf } from '../tensor.js';
import { type LlamaConfig, type Projection, PROJECTIONS, projectionPath, projectionShape } from './config.js';
import { DenseLinear, type Linear } from './linear.js';
import { LowbitError } from '../io/errors.js';

export interface LayerWeights {
  inputNorm: Arr;   // [D]  input_layernorm
  q: Linear; k: Linear; v: Linear; o: Linear;
  postNorm: Arr;    // [D]  post_attention_layernorm
  gate: Linear; up: Linear; down: Linear;
}

/** Gradients of the non-Linear parameters (Linear layers keep their own, e.g. DenseLinear.grad). */
export interface WeightGrads {
  embed: Arr;                                    // [V,D]; also the tied lm_head's grad
  layers: { inputNorm: Arr; postNorm: Arr }[];
  finalNorm: Arr;
}

/** One trainable tensor for an optimizer: its HF name, values and gradient. */
export interface Param { name: string; data: Arr; grad: Arr; }

const KEY: Record<Projection, 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down'> = {
  q_proj: 'q', k_proj: 'k', v_proj: 'v', o_proj: 'o', gate_proj: 'gate', up_proj: 'up', down_proj: 'down',
};

/** A Linear that can hand back a dense W[out,in] (DenseLinear, and quantized layers that dequantize). */
interface HasDense { dense(): Arr; }
function hasDense(l: Linear): l is Linear & HasDense {
  return typeof (l as Partial<HasDense>).dense === 'function';
}

export class LlamaWeights {
  grads: WeightGrads | null = null;

  constructor(
    readonly config: LlamaConfig,
    readonly precision: Precision,
    public embed: Arr,
    public layers: LayerWeights[],
    public finalNorm: Arr,
    public lmHead: Linear,
  ) {}

  /** LLaMA-style init: normal(0, 0.02); o_proj/down_proj scaled by 1/sqrt(2·layers); norms = 1. */
  static initRandom(config: LlamaConfig, rng: Rng, precision: Precision = 'f32', std = 0.02): LlamaWeights {
    const A = ctorOf(precision);
    const { vocabSize: V, hiddenSize: D, numLayers: L } = config;
    const embed = rng.fillNormal(new A(V * D), std);
    const residStd = std / Math.sqrt(2 * L);
    const layers: LayerWeights[] = [];
    for (let l = 0; l < L; l++) {
      const lin = (p: Projection): Linear => {
        const s = projectionShape(config, p);
        const w = rng.fillNormal(new A(s.out * s.in), p === 'o_proj' || p === 'down_proj' ? residStd : std);
        return new DenseLinear(w, s.out, s.in);
      };
      layers.push({
        inputNorm: new A(D).fill(1),
        q: lin('q_proj'), k: lin('k_proj'), v: lin('v_proj'), o: lin('o_proj'),
        postNorm: new A(D).fill(1),
        gate: lin('gate_proj'), up: lin('up_proj'), down: lin('down_proj'),
      });
    }
    const lmHead = config.tieWordEmbeddings
      ? new DenseLinear(embed, V, D)
      : new DenseLinear(rng.fillNormal(new A(V * D), std), V, D);
    return new LlamaWeights(config, precision, embed, layers, new A(D).fill(1), lmHead);
  }

  /**
   * Build from HF-named tensors. `get(name, shape)` returns the float32 values of that tensor (it is
   * asked for lm_head.weight only when the embeddings are not tied).
   */
  static fromTensors(config: LlamaConfig, get: (hfName: string, expectedShape: number[]) => Float32Array,
    precision: Precision = 'f32'): LlamaWeights {
    const load = (name: string, shape: number[]): Arr => {
      const src = get(name, shape);
      const n = shape.reduce((a, b) => a * b, 1);
      if (src.length !== n) {
        throw new LowbitError(`src/model/weights.ts: tensor ${name} has ${src.length} values, expected [${shape.join(', ')}]`);
      }
      return precision === 'f32' ? src : Float64Array.from(src);
    };
    const { vocabSize: V, hiddenSize: D, numLayers: L } = config;
    const embed = load('model.embed_tokens.weight', [V, D]);
    const layers: LayerWeights[] = [];
    for (let l = 0; l < L; l++) {
      const lin = (p: Projection): Linear => {
        const s = projectionShape(config, p);
        return new DenseLinear(load(`${projectionPath(l, p)}.weight`, [s.out, s.in]), s.out, s.in);
      };
      layers.push({
        inputNorm: load(`model.layers.${l}.input_layernorm.weight`, [D]),
        q: lin('q_proj'), k: lin('k_proj'), v: lin('v_proj'), o: lin('o_proj'),
        postNorm: load(`model.layers.${l}.post_attention_layernorm.weight`, [D]),
        gate: lin('gate_proj'), up: lin('up_proj'), down: lin('down_proj'),
      });
    }
    const finalNorm = load('model.norm.weight', [D]);
    const lmHead = new DenseLinear(config.tieWordEmbeddings ? embed : load('lm_head.weight', [V, D]), V, D);
    return new LlamaWeights(config, precision, embed, layers, finalNorm, lmHead);
  }

  /**
   * HF-named float32 tensors with their shapes (lm_head omitted when tied). Linear layers must be able
   * to produce a dense weight (`dense()`); others (LoRA wrappers) should be merged or saved by their owner.
   */
  *toTensors(): Iterable<[string, Float32Array, number[]]> {
    const c = this.config, D = c.hiddenSize;
    const f32 = (a: Arr): Float32Array => (a instanceof Float32Array ? a : Float32Array.from(a));
    yield ['model.embed_tokens.weight', f32(this.embed), [c.vocabSize, D]];
    for (let l = 0; l < c.numLayers; l++) {
      const w = this.layers[l];
      yield [`model.layers.${l}.input_layernorm.weight`, f32(w.inputNorm), [D]];
      for (const p of PROJECTIONS) {
        const lin = w[KEY[p]];
        const name = `${projectionPath(l, p)}.weight`;
        if (!hasDense(lin)) throw new Error(`src/model/weights.ts: ${name} is a ${lin.constructor.name} with no dense() to export`);
        yield [name, f32(lin.dense()), [lin.outFeatures, lin.inFeatures]];
      }
      yield [`model.layers.${l}.post_attention_layernorm.weight`, f32(w.postNorm), [D]];
    }
    yield ['model.norm.weight', f32(this.finalNorm), [D]];
    if (!c.tieWordEmbeddings) {
      if (!hasDense(this.lmHead)) throw new Error('src/model/weights.ts: lm_head has no dense() to export');
      yield ['lm_head.weight', f32(this.lmHead.dense()), [c.vocabSize, D]];
    }
  }

  linearAt(layer: number, p: Projection): Linear {
    this.checkLayer(layer);
    return this.layers[layer][KEY[p]];
  }

  /** Swap a projection (quantized / LoRA layer); its shape must match. */
  setLinear(layer: number, p: Projection, lin: Linear): void {
    this.checkLayer(layer);
    const s = projectionShape(this.config, p);
    if (lin.outFeatures !== s.out || lin.inFeatures !== s.in) {
      throw new LowbitError(`src/model/weights.ts: ${projectionPath(layer, p)} needs [${s.out}, ${s.in}], got [${lin.outFeatures}, ${lin.inFeatures}]`);
    }
    this.layers[layer][KEY[p]] = lin;
  }

  /** Every (layer, projection, Linear), in HF order. */
  *linears(): Iterable<[number, Projection, Linear]> {
    for (let l = 0; l < this.layers.length; l++) for (const p of PROJECTIONS) yield [l, p, this.layers[l][KEY[p]]];
  }

  /**
   * Allocate gradients for every weight (pretraining / full fine-tuning): embed and norm grads here,
   * DenseLinear.grad on each dense projection and on the lm_head (the tied lm_head shares the embed grad).
   */
  enableWeightGrads(): void {
    if (this.grads) return;
    const A = ctorOf(this.precision), c = this.config, D = c.hiddenSize;
    this.grads = {
      embed: new A(c.vocabSize * D),
      layers: this.layers.map(() => ({ inputNorm: new A(D), postNorm: new A(D) })),
      finalNorm: new A(D),
    };
    for (const [, , lin] of this.linears()) {
      if (lin instanceof DenseLinear && !lin.grad) lin.grad = new A(lin.weight.length);
    }
    if (this.lmHead instanceof DenseLinear) {
      if (this.config.tieWordEmbeddings && this.lmHead.weight === this.embed) this.lmHead.grad = this.grads.embed;
      else if (!this.lmHead.grad) this.lmHead.grad = new A(this.lmHead.weight.length);
    }
  }

  /** The trainable tensors (after enableWeightGrads), with HF names; the tied lm_head is not repeated. */
  parameters(): Param[] {
    const g = this.grads;
    if (!g) return [];
    const c = this.config;
    const out: Param[] = [{ name: 'model.embed_tokens.weight', data: this.embed, grad: g.embed }];
    for (let l = 0; l < c.numLayers; l++) {
      const w = this.layers[l];
      out.push({ name: `model.layers.${l}.input_layernorm.weight`, data: w.inputNorm, grad: g.layers[l].inputNorm });
      for (const p of PROJECTIONS) {
        const lin = w[KEY[p]];
        if (lin instanceof DenseLinear && lin.grad) out.push({ name: `${projectionPath(l, p)}.weight`, data: lin.weight, grad: lin.grad });
      }
      out.push({ name: `model.layers.${l}.post_attention_layernorm.weight`, data: w.postNorm, grad: g.layers[l].postNorm });
    }
    out.push({ name: 'model.norm.weight', data: this.finalNorm, grad: g.finalNorm });
    if (this.lmHead instanceof DenseLinear && this.lmHead.grad && this.lmHead.grad !== g.embed) {
      out.push({ name: 'lm_head.weight', data: this.lmHead.weight, grad: this.lmHead.grad });
    }
    return out;
  }

  /** Zero every gradient this object allocated (embed, norms, dense linear grads). */
  zeroGrads(): void {
    for (const p of this.parameters()) p.grad.fill(0);
  }

  private checkLayer(layer: number): void {
    if (!(layer >= 0 && layer < this.layers.length)) {
      throw new Error(`src/model/weights.ts: layer ${layer} is outside [0, ${this.layers.length})`);
    }
  }
}
