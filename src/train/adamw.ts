// Adam / AdamW over a list of named fp32 parameter tensors with their gradient buffers.
// weightDecay is decoupled (AdamW) unless `coupledL2` is set (LREC's torch.optim.Adam(weight_decay=…)).
import type { Arr } from '../tensor.js';

export interface Param { name: string; data: Arr; grad: Arr }

/** Global L2 norm of the gradients of `params`; scales them down to maxNorm (> 0) when above it. Returns the norm before. */
export function clipGradNorm(params: readonly Param[], maxNorm: number): number {
  let s = 0;
  for (const p of params) for (let i = 0; i < p.grad.length; i++) s += p.grad[i] * p.grad[i];
  const n = Math.sqrt(s);
  if (maxNorm > 0 && n > maxNorm) {
    const k = maxNorm / n;
    for (const p of params) for (let i = 0; i < p.grad.length; i++) p.grad[i] *= k;
  }
  return n;
}

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** torch.optim.Adam(weight_decay=…) style coupled L2 (LREC) instead of decoupled AdamW */
  coupledL2?: boolean;
}

/** What the trainer needs of an optimizer; device-resident ones (GpuAdam) also move params/moments to and from the host. */
export interface TrainOptimizer {
  step: number;
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  update(lr?: number): void;
  zeroGrad(): void;
  clipGradNorm(maxNorm: number): number;
  /** copy the device parameters and moments into the host arrays (before the trainer reads them) */
  pull?(): void;
  /** copy the host parameters and moments to the device (after the trainer wrote them) */
  push?(): void;
}

export class AdamW implements TrainOptimizer {
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  step = 0;
  constructor(readonly params: Param[], public opts: AdamOptions) {
    this.m = params.map((p) => new Float32Array(p.data.length));
    this.v = params.map((p) => new Float32Array(p.data.length));
  }

  /** One update with learning rate `lr` (defaults to opts.lr); gradients are left untouched. */
  update(lr = this.opts.lr): void {
    const b1 = this.opts.beta1 ?? 0.9, b2 = this.opts.beta2 ?? 0.999, eps = this.opts.eps ?? 1e-8;
    const wd = this.opts.weightDecay ?? 0, coupled = this.opts.coupledL2 === true;
    this.step++;
    const bc1 = 1 - Math.pow(b1, this.step), bc2 = 1 - Math.pow(b2, this.step);
    for (let p = 0; p < this.params.length; p++) {
      const { data: w, grad: g } = this.params[p], m = this.m[p], v = this.v[p];
      for (let i = 0; i < w.length; i++) {
        let gi = g[i];
        if (coupled && wd) gi += wd * w[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        const upd = (m[i] / bc1) / (Math.sqrt(v[i] / bc2) + eps);
        w[i] -= lr * (upd + (!coupled && wd ? wd * w[i] : 0));
      }
    }
  }

  zeroGrad(): void { for (const p of this.params) p.grad.fill(0); }

  /** Global L2 norm of all gradients; scales them down to maxNorm when above it. Returns the norm before. */
  clipGradNorm(maxNorm: number): number { return clipGradNorm(this.params, maxNorm); }

  state(): { step: number; m: Float32Array[]; v: Float32Array[] } { return { step: this.step, m: this.m, v: this.v }; }
  loadState(s: { step: number; m: ArrayLike<number>[]; v: ArrayLike<number>[] }): void {
    this.step = s.step;
    s.m.forEach((a, i) => this.m[i].set(a));
    s.v.forEach((a, i) => this.v[i].set(a));
  }
}
