// Adam/AdamW whose parameters, gradients and moments live on the device (GpuLora's flat vectors): the
// trainer's TrainOptimizer, so the same loop (accumulation, validation, best-restore, checkpoints) drives
// CPU and GPU training. The host arrays are synchronised only when the trainer reads or writes them.
import type { AdamOptions, Param, TrainOptimizer } from './adamw.js';
import type { GpuLora } from '../model/gpu/gpu-lora.js';

export class GpuAdam implements TrainOptimizer {
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  private gradScale = 1;
  constructor(private readonly lora: GpuLora, private readonly params: Param[], private readonly o: AdamOptions) {
    this.m = params.map((p) => new Float32Array(p.data.length));
    this.v = params.map((p) => new Float32Array(p.data.length));
    lora.setParams(params.map((p) => p.data));
    lora.zeroMoments();
    lora.step = 0;
  }
  get step(): number { return this.lora.step; }
  set step(s: number) { this.lora.step = s; }
  update(lr = this.o.lr): void {
    this.lora.adam({ lr, beta1: this.o.beta1 ?? 0.9, beta2: this.o.beta2 ?? 0.999, eps: this.o.eps ?? 1e-8,
      weightDecay: this.o.weightDecay ?? 0, coupledL2: this.o.coupledL2 === true }, this.gradScale);
    this.gradScale = 1;
  }
  zeroGrad(): void { this.lora.zeroGrad(); }
  /** The norm is reduced on the device; the clip factor is folded into the next update's gradient scale. */
  clipGradNorm(maxNorm: number): number {
    const n = this.lora.gradNorm();
    this.gradScale = maxNorm > 0 && n > maxNorm ? maxNorm / n : 1;
    return n;
  }
  pull(): void { this.lora.getParams(this.params.map((p) => p.data)); this.lora.getMoments(this.m, this.v); }
  push(): void { this.lora.setParams(this.params.map((p) => p.data)); this.lora.setMoments(this.m, this.v); }
}
