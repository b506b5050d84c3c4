// RILQ §5's layer scope on the GPU engine (the twin of LayerScopeObjective in scopes.ts): every decoder block of the
// student runs on the FP teacher's input to that block and is pulled toward the teacher's output of it,
// Σ_l MSE(block_l^S(x_l^T), x_{l+1}^T)/L, gradients staying inside each block. The teacher is a second GpuLlama on the
// FP weights (bf16 on the device), run online per window; the whole window (teacher forward, then per block: copy the
// teacher's input in, forward, loss, backward) is one device sequence, replayed as a CUDA graph.
import { GraphCache } from '../../model/gpu/graph-cache.js';
import type { GpuLlama } from '../../model/gpu/gpu-llama.js';
import type { LossParts, Objective } from './types.js';

export class GpuLayerScopeObjective implements Objective {
  readonly name = 'layer';
  private readonly graphs: GraphCache;
  constructor(private readonly m: GpuLlama, private readonly teacher: GpuLlama) {
    if (teacher.config.numLayers !== m.config.numLayers || teacher.config.hiddenSize !== m.config.hiddenSize)
      throw new Error('layer scope: the teacher and the student differ in shape');
    this.graphs = new GraphCache(m);
  }

  run(ids: Int32Array, _index: number, grad: boolean, scale: number): LossParts {
    const m = this.m, tm = this.teacher, T = ids.length, L = m.config.numLayers, D = m.config.hiddenSize;
    tm.setIds(ids, 1, T);  // uploads (outside the graph)
    m.prepare(1, T);
    const work = () => {
      tm.forwardDevice();  // the teacher's residual stream: its input to every block and the last output
      m.beginLoss(false);
      for (let l = 0; l < L; l++) {
        m.c.cudaCopy(m.residual(l), tm.residual(l), T * D * 4);
        m.forwardBlock(l);
        m.mseResidual(l + 1, tm.residual(l + 1), grad, scale / L, 0);
        if (grad) m.backwardBlock(l);
      }
    };
    this.graphs.run(`${T}|${grad}|${scale}`, work);
    const mse = m.readLoss()[0] / (T * D * L);
    return { loss: mse, mse };
  }

  free(): void { this.graphs.free(); }
}
