// Fused KL(teacher ‖ student) + cross-entropy over rows of logits, with the gradient w.r.t. the student logits:
// the loss of one LREC lm_head chunk (src/train/objectives/lrec.ts) in one pass. TypeScript twin (f64) of
// native/cuda/kl_ce.cu (cudaKlCeRows); the CPU objective composes the same result from klForward/klBackward and
// crossEntropyForward/crossEntropyBackward.
import type { Arr } from '../../tensor.js';
import { logSumExp } from './kl.js';

export interface KlCeSums {
  /** Σ over rows of Σ_v p_T (log p_T − log p_S) (every row) */
  kl: number;
  /** Σ over rows with target ≥ 0 of lse(student) − student[target] */
  ce: number;
}

/**
 * Rows of student s [rows, V] and teacher t [rows, V] logits, targets [rows] (< 0: no CE term; ≥ V: NaN CE and a NaN
 * gradient row, as the kernel). When d is given it is OVERWRITTEN with
 *   klScale·(p_S − p_T) + ceScale·(p_S − onehot(target))   (the CE term only on rows with target ≥ 0).
 */
export function klCeRowsRef(s: Arr, t: Arr, targets: ArrayLike<number>, d: Arr | null, rows: number, V: number,
  klScale: number, ceScale: number): KlCeSums {
  let kl = 0, ce = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * V, tg = targets[r];
    const lseS = logSumExp(s, o, V), lseT = logSumExp(t, o, V);
    const bad = tg >= V, counted = tg >= 0 && !bad, c = counted ? ceScale : 0;
    let rowKl = 0;
    for (let i = 0; i < V; i++) {
      const ls = s[o + i] - lseS, lt = t[o + i] - lseT, pt = Math.exp(lt);
      rowKl += pt * (lt - ls);
      if (d) d[o + i] = bad ? NaN : Math.exp(ls) * (klScale + c) - klScale * pt - (i === tg ? c : 0);
    }
    kl += rowKl;
    if (counted) ce += lseS - s[o + tg];
    else if (bad) ce = NaN;
  }
  return { kl, ce };
}
