// RILQ's loss on the GPU engine: the same objective as rilq.ts (0.5·MSE of the final post-norm hidden to the
// FP teacher's + 0.5·CE of the next token), computed by GpuLlama with the loss sums accumulated on the device
// and read once per window.
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
  }

  run(ids: Int32Array, index: number, grad: boolean, scale: number): LossParts {
    const m = this.m, T = ids.length, D = m.config.hiddenSize;
    m.forward(ids, 1, T);
    m.beginLoss(grad);
    const th = this.teacher.hidden(index);
    m.mseToTeacher(th instanceof Float32Array ? th : Float32Array.from(th), grad, scale * this.wm, 0);
    const targets = shiftTargets(ids, 1, T);
    let count = 0;
    for (let i = 0; i < T; i++) if (targets[i] >= 0) count++;
    m.lmHeadCe(targets, grad, count > 0 ? (scale * this.wc) / count : 0, 1);
    if (grad) m.backward();
    const l = m.readLoss();
    const mse = l[0] / (T * D), ce = count > 0 ? l[1] / count : NaN;
    return { loss: this.wm * mse + this.wc * ce, mse, ce };
  }
}
