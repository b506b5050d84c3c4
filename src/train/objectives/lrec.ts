// LREC (INT2.1, Chai et al. 2023; LREC/lrec.py): L = w_kl·KL_sum + w_ce·CE_mean per sequence, with
// KL_sum = Σ_{positions, vocab} p_T (log p_T − log p_S) (forward KL(teacher‖student), temperature 1, every position)
// and CE_mean the usual next-token cross-entropy. Teacher logits come from the cached teacher hidden through
// the FP lm_head, chunk by chunk (no full-vocabulary logit cache).
import { like } from '../../tensor.js';
import type { LlamaModel } from '../../model/llama.js';
import { crossEntropyBackward, crossEntropyForward, klBackward, klForward, shiftTargets } from '../../model/loss.js';
import type { TeacherCache } from '../teacher-cache.js';
import type { LossParts, Objective } from './types.js';

export interface LrecOptions { klWeight?: number; ceWeight?: number; chunkRows?: number }

/** The authors' INT2 run used w_ce = 120 with 2048-token windows; keep the same per-token balance at seq T. */
export function lrecDefaultCeWeight(T: number): number { return (120 * T) / 2048; }

export class LrecObjective implements Objective {
  readonly name = 'lrec';
  private readonly wk: number;
  private readonly wc: number | undefined;
  constructor(private student: LlamaModel, private teacher: TeacherCache, private o: LrecOptions = {}) {
    this.wk = o.klWeight ?? 1; this.wc = o.ceWeight;
  }

  run(ids: Int32Array, index: number, grad: boolean, scale: number): LossParts {
    const m = this.student, T = ids.length, D = m.config.hiddenSize, V = m.config.vocabSize;
    const wc = this.wc ?? lrecDefaultCeWeight(T);
    const { hidden } = m.forward(ids, 1, T, { train: grad });
    const th = this.teacher.hidden(index);
    const targets = shiftTargets(ids, 1, T);
    let count = 0; for (let i = 0; i < T; i++) if (targets[i] >= 0) count++;
    const dH = grad ? like(hidden, T * D) : null;
    const chunk = Math.max(1, Math.min(T, this.o.chunkRows ?? Math.max(1, Math.floor((1 << 21) / V))));
    const sl = like(hidden, chunk * V), tl = like(hidden, chunk * V), dl = like(hidden, chunk * V);
    let kl = 0, ceSum = 0;
    for (let r0 = 0; r0 < T; r0 += chunk) {
      const cr = Math.min(chunk, T - r0), n = cr * V;
      const h = hidden.subarray(r0 * D, (r0 + cr) * D);
      const s = sl.subarray(0, n), t = tl.subarray(0, n), tg = targets.subarray(r0, r0 + cr);
      m.lmHeadForward(s, h, cr);
      this.teacher.lmHead.forward(t, th.subarray(r0 * D, (r0 + cr) * D), cr);
      kl += klForward(t, s, cr, V);
      ceSum += crossEntropyForward(null, s, tg, cr, V);
      if (dH) {
        const d = dl.subarray(0, n); d.fill(0);
        klBackward(d, t, s, cr, V, scale * this.wk);
        crossEntropyBackward(d, s, tg, cr, V, (scale * wc) / count);
        m.lmHeadBackward(dH.subarray(r0 * D, (r0 + cr) * D), d, h, cr);
      }
    }
    if (dH) m.backward(dH);
    const ce = ceSum / count;
    return { loss: this.wk * kl + wc * ce, kl, ce };
  }
}
