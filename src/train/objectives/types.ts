// A training objective over one calibration window: forward (and backward into the trainable adapters).
export interface LossParts {
  /** the weighted total that is minimised */
  loss: number;
  /** named components (mse, ce, kl, …), unweighted */
  [part: string]: number;
}

export interface Objective {
  readonly name: string;
  /**
   * Loss of window `ids` (global window index `index`, for teacher-cache lookups). With grad, accumulates
   * scale·∂loss/∂θ into the trainable adapters' gradient buffers.
   */
  run(ids: Int32Array, index: number, grad: boolean, scale: number): LossParts;
}
