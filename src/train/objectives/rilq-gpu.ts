// RILQ's loss on the GPU engine: the same objective as rilq.ts (0.5·MSE of the final post-norm hidden to the
// FP teacher's + 0.5·CE of the next token), computed by GpuLlama with the loss sums accumulated on the device
// and read once per window.
import { GraphCache } from '../../model/gpu/graph-cache.js';
import type { GpuLlama } from '../../model/gpu/gpu-llama.js';
import { shiftTargets } from '../../model/loss.js';
import type { TeacherCache } from '../teacher-cache.js';
import type { LossParts, Objective } from './types.js';

export class GpuRilqObjective implements Objective {
  readonly name = 'rilq';
  private readonly wm: number;
  private readonly wc: number;
  constructor(private readonly m: GpuLlama, private readonly teacher: TeacherCache, o: { mseWeight?: number; ceWeight?: number } = {}) {
    this.wm = o.mseWeight ?? 0.5; this.wc = o.ceWeight ?? 0.5;
    this.graphs = new GraphCache(m);
  }

  /** CUDA graphs of the device part of a window, by (T, grad, scale, count) */
  private graphs: GraphCache;

  run(ids: Int32Array, index: number, grad: boolean, scale: number): LossParts {
    const m = this.m, T = ids.length, D = m.config.hiddenSize;
    const th = this.teacher.hidden(index);
    const targets = shiftTargets(ids, 1, T);
    // host → device first (uploads cannot be part of a graph), then the device work, eager or replayed
    m.setIds(ids, 1, T);
    m.setTeacher(th instanceof Float32Array ? th : Float32Array.from(th));
    const count = m.setTargets(targets);
    const ceScale = count > 0 ? (scale * this.wc) / count : 0;
    const work = () => {
      m.forwardDevice();
      m.beginLoss(grad);
      m.mseToTeacher(null, grad, scale * this.wm, 0);
      m.lmHeadCeDevice(grad, ceScale, 1);
      if (grad) m.backward();
    };
    this.graphs.run(`${T}|${grad}|${scale}|${count}`, work);
    const l = m.readLoss();
    const mse = l[0] / (T * D), ce = count > 0 ? l[1] / count : NaN;
    return { loss: this.wm * mse + this.wc * ce, mse, ce };
  }

  free(): void {
    this.graphs.free();
  }
}
