// The rank-sensitivity analysis scopes of RILQ §5 (analysis baselines, not RILQ itself):
//  - linear: each adapted projection's output vs the FP projection applied to the SAME input
//    (the student's own activations): Σ_sites MSE((Q + sBA)x, Wx)/sites. Gradients stay inside each site.
//  - layer: each decoder block run on the FP model's input to that block vs the FP block output:
//    Σ_l MSE(block_l^S(x_l^T), x_{l+1}^T)/L. Gradients stay inside each block. The teacher runs online.
import { type Arr, like } from '../../tensor.js';
import { sgemm } from '../../backend/kernels.js';
import type { LlamaModel } from '../../model/llama.js';
import type { Projection } from '../../model/config.js';
import { DenseLinear } from '../../model/linear.js';
import { LoraLinear } from '../../adapters/lora.js';
import type { LossParts, Objective } from './types.js';

export class LinearScopeObjective implements Objective {
  readonly name = 'linear';
  private readonly fp = new Map<string, Arr>();
  constructor(private student: LlamaModel, teacher: LlamaModel) {
    for (const [l, p, lin] of student.weights.linears()) {
      if (!(lin instanceof LoraLinear)) continue;
      const t = teacher.weights.linearAt(l, p);
      const W = t instanceof DenseLinear ? t.weight : (t as unknown as { dense(): Arr }).dense();
      this.fp.set(`${l}.${p}`, W);
    }
    if (this.fp.size === 0) throw new Error('linear scope: the student has no LoRA layers');
  }

  run(ids: Int32Array, _index: number, grad: boolean, scale: number): LossParts {
    const T = ids.length, nSites = this.fp.size;
    let lastX: Arr | null = null, total = 0;
    const onLinearInput = (_l: number, _p: Projection, x: Arr) => { lastX = x; };
    const onLinearOutput = (l: number, p: Projection, y: Arr, rows: number) => {
      const W = this.fp.get(`${l}.${p}`);
      if (!W || !lastX) return;
      const lin = this.student.weights.linearAt(l, p) as LoraLinear, out = lin.outFeatures, n = rows * out;
      const tgt = like(y, n);
      sgemm(false, true, rows, out, lin.inFeatures, 1, lastX, W, 0, tgt);
      let s = 0;
      for (let i = 0; i < n; i++) { const d = y[i] - tgt[i]; s += d * d; tgt[i] = d; }
      total += s / n;
      if (grad) {
        const k = (2 * scale) / (n * nSites);
        for (let i = 0; i < n; i++) tgt[i] *= k;
        lin.backward(null, tgt, lastX, rows);
      }
    };
    this.student.forward(ids, 1, T, { train: false, hooks: { onLinearInput, onLinearOutput } });
    const mse = total / nSites;
    return { loss: mse, mse };
  }
}

export class LayerScopeObjective implements Objective {
  readonly name = 'layer';
  constructor(private student: LlamaModel, private teacher: LlamaModel) {}

  run(ids: Int32Array, _index: number, grad: boolean, scale: number): LossParts {
    const T = ids.length, L = this.student.config.numLayers, n = T * this.student.config.hiddenSize;
    const tf = this.teacher.forward(ids, 1, T, { train: false });
    const ins = [tf.embeddings, ...tf.layerOutputs];
    this.student.prepare(1, T, grad);
    let total = 0;
    const d = like(tf.embeddings, n);
    for (let l = 0; l < L; l++) {
      const out = this.student.forwardLayer(l, ins[l], 1, T);
      const tgt = ins[l + 1];
      let s = 0;
      for (let i = 0; i < n; i++) { const e = out[i] - tgt[i]; s += e * e; d[i] = e; }
      total += s / n;
      if (grad) {
        const k = (2 * scale) / (n * L);
        for (let i = 0; i < n; i++) d[i] *= k;
        this.student.backwardLayer(l, d);
      }
    }
    const mse = total / L;
    return { loss: mse, mse };
  }
}
