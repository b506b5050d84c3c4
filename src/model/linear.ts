// A linear layer as the model sees it. Dense weights, packed quantized weights and LoRA-wrapped layers
// all implement this, so the model never knows which one it runs (the gpt-fast way: quantizers and
// adapters are handlers that swap the Linear objects of a loaded model).
import type { Arr } from '../tensor.js';
import { sgemm } from '../backend/kernels.js';

export interface Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** out[rows, outF] = x[rows, inF] · Wᵀ (overwrites out). */
  forward(out: Arr, x: Arr, rows: number): void;
  /**
   * Given dy[rows, outF] and the forward input x: dx[rows, inF] += dy · W when dx is given,
   * and accumulates gradients of whatever this layer trains (dense weight when trainable, adapters).
   */
  backward(dx: Arr | null, dy: Arr, x: Arr, rows: number): void;
}

/** A plain weight W[out, in] (row-major, HF layout). Frozen unless `grad` is allocated. */
export class DenseLinear implements Linear {
  grad: Arr | null = null;
  constructor(public weight: Arr, readonly outFeatures: number, readonly inFeatures: number) {
    if (weight.length !== outFeatures * inFeatures) {
      throw new Error(`DenseLinear: weight has ${weight.length} values, expected ${outFeatures}x${inFeatures}`);
    }
  }
  forward(out: Arr, x: Arr, rows: number): void {
    sgemm(false, true, rows, this.outFeatures, this.inFeatures, 1, x, this.weight, 0, out);
  }
  backward(dx: Arr | null, dy: Arr, x: Arr, rows: number): void {
    if (dx) sgemm(false, false, rows, this.inFeatures, this.outFeatures, 1, dy, this.weight, 1, dx);
    if (this.grad) sgemm(true, false, this.outFeatures, this.inFeatures, rows, 1, dy, x, 1, this.grad);
  }
  /** The weight as a dense array (quantized layers dequantize here). */
  dense(): Arr { return this.weight; }
}
