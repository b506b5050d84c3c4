// RILQ (Lee et al., AAAI 2025; aiha-lab/RILQ main.py): L = w_mse·MSE(h_S, h_T) + w_ce·CE(lm_head(h_S), next token),
// 0.5/0.5 by default. h is the final post-norm hidden state (HF LlamaModel's last_hidden_state, the lm_head input);
// MSE is the plain mean over T×D; CE is the mean over the T−1 predicted positions (no masking).
// target 'logits' (the authors' --a_type logit) takes the MSE over the full-vocabulary logits instead; the
// teacher logits are recomputed chunk-wise from the cached teacher hidden through the FP lm_head.
import { type Arr, like } from '../../tensor.js';
import type { LlamaModel } from '../../model/llama.js';
import { shiftTargets } from '../../model/loss.js';
import type { TeacherCache } from '../teacher-cache.js';
import type { LossParts, Objective } from './types.js';

export interface RilqOptions { mseWeight?: number; ceWeight?: number; target?: 'hidden' | 'logits'; chunkRows?: number }

export class RilqObjective implements Objective {
  readonly name: string;
  private readonly wm: number;
  private readonly wc: number;
  private readonly target: 'hidden' | 'logits';

  constructor(private student: LlamaModel, private teacher: TeacherCache, private o: RilqOptions = {}) {
    this.wm = o.mseWeight ?? 0.5; this.wc = o.ceWeight ?? 0.5; this.target = o.target ?? 'hidden';
    this.name = this.target === 'logits' ? 'rilq-logits' : 'rilq';
  }

  run(ids: Int32Array, index: number, grad: boolean, scale: number): LossParts {
    const m = this.student, T = ids.length, D = m.config.hiddenSize, V = m.config.vocabSize;
    const { hidden } = m.forward(ids, 1, T, { train: grad });
    const th = this.teacher.hidden(index);
    const dH = grad ? like(hidden, T * D) : null;
    let mse: number;
    if (this.target === 'hidden') {
      let s = 0;
      for (let i = 0; i < T * D; i++) { const d = hidden[i] - th[i]; s += d * d; }
      mse = s / (T * D);
      if (dH) { const k = (2 * scale * this.wm) / (T * D); for (let i = 0; i < T * D; i++) dH[i] = k * (hidden[i] - th[i]); }
    } else {
      mse = logitsMse(m, this.teacher, hidden, th, T, dH, scale * this.wm, this.o.chunkRows) / (T * V);
    }
    const ce = m.lmHeadCrossEntropy(hidden, shiftTargets(ids, 1, T), T, { grad, dHidden: dH ?? undefined, scale: scale * this.wc });
    if (dH) m.backward(dH);
    return { loss: this.wm * mse + this.wc * ce.loss, mse, ce: ce.loss };
  }
}

/**
 * Σ (lm_head(h_S) − lm_head_T(h_T))² over T×V, chunked; with dH, accumulates k·2(ΔL)/(T·V) back through the
 * student lm_head (k = scale·weight). Returns the SUM.
 */
export function logitsMse(m: LlamaModel, teacher: TeacherCache, hidden: Arr, th: Arr, T: number, dH: Arr | null, k: number, chunkRows?: number): number {
  const D = m.config.hiddenSize, V = m.config.vocabSize;
  const chunk = Math.max(1, Math.min(T, chunkRows ?? Math.max(1, Math.floor((1 << 21) / V))));
  const sl = like(hidden, chunk * V), tl = like(hidden, chunk * V);
  let s = 0;
  const g = (2 * k) / (T * V);
  for (let r0 = 0; r0 < T; r0 += chunk) {
    const cr = Math.min(chunk, T - r0), n = cr * V;
    const h = hidden.subarray(r0 * D, (r0 + cr) * D);
    m.lmHeadForward(sl, h, cr);
    teacher.lmHead.forward(tl, th.subarray(r0 * D, (r0 + cr) * D), cr);
    for (let i = 0; i < n; i++) { const d = sl[i] - tl[i]; s += d * d; sl[i] = g * d; }
    if (dH) m.lmHeadBackward(dH.subarray(r0 * D, (r0 + cr) * D), sl.subarray(0, n), h, cr);
  }
  return s;
}
