// Causal grouped-query attention, TS reference (the native twin plugs in with the same contract).
//   q [B,Tq,Hq,D], k,v [B,Tk,Hkv,D], out [B,Tq,Hq,D], lse [B,Hq,Tq] (log-sum-exp of the scaled
//   scores, kept for the backward; may be null). Query i sits at absolute position i + (Tk − Tq) and
//   sees keys 0..that position. Query head h reads kv head floor(h / (Hq/Hkv)). Scale 1/sqrt(D).
import type { Arr } from '../../tensor.js';

export function attentionForward(out: Arr, lse: Arr | null, q: Arr, k: Arr, v: Arr,
  B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): void {
  if (Hq % Hkv !== 0) throw new Error(`src/model/ops/attention.ts: ${Hq} query heads are not a multiple of ${Hkv} kv heads`);
  if (Tk < Tq) throw new Error(`src/model/ops/attention.ts: Tk=${Tk} < Tq=${Tq}`);
  const group = Hq / Hkv, scale = 1 / Math.sqrt(D), off = Tk - Tq;
  const p = new Float64Array(Tk), acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = (h / group) | 0;
      for (let i = 0; i < Tq; i++) {
        const qo = ((b * Tq + i) * Hq + h) * D;
        const last = i + off;
        let max = -Infinity;
        for (let j = 0; j <= last; j++) {
          const ko = ((b * Tk + j) * Hkv + hk) * D;
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qo + d] * k[ko + d];
          s *= scale;
          p[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j <= last; j++) { const e = Math.exp(p[j] - max); p[j] = e; sum += e; }
        const inv = 1 / sum;
        acc.fill(0);
        for (let j = 0; j <= last; j++) {
          const w = p[j] * inv, vo = ((b * Tk + j) * Hkv + hk) * D;
          for (let d = 0; d < D; d++) acc[d] += w * v[vo + d];
        }
        for (let d = 0; d < D; d++) out[qo + d] = acc[d];
        if (lse) lse[(b * Hq + h) * Tq + i] = max + Math.log(sum);
      }
    }
  }
}

/**
 * Accumulates dq, dk, dv given dout and the forward's q, k, v, out and lse (lse may be null: it is
 * then recomputed). With P = softmax(S), dS = P ∘ (dout·vᵀ − rowsum(dout ∘ out)).
 */
export function attentionBackward(dq: Arr, dk: Arr, dv: Arr, dout: Arr, q: Arr, k: Arr, v: Arr, out: Arr,
  lse: Arr | null, B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number): void {
  if (Hq % Hkv !== 0) throw new Error(`src/model/ops/attention.ts: ${Hq} query heads are not a multiple of ${Hkv} kv heads`);
  const group = Hq / Hkv, scale = 1 / Math.sqrt(D), off = Tk - Tq;
  const p = new Float64Array(Tk), dqa = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const hk = (h / group) | 0;
      for (let i = 0; i < Tq; i++) {
        const qo = ((b * Tq + i) * Hq + h) * D;
        const last = i + off;
        // scores
        let max = -Infinity;
        for (let j = 0; j <= last; j++) {
          const ko = ((b * Tk + j) * Hkv + hk) * D;
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qo + d] * k[ko + d];
          s *= scale;
          p[j] = s;
          if (s > max) max = s;
        }
        let l: number;
        if (lse) l = lse[(b * Hq + h) * Tq + i];
        else {
          let sum = 0;
          for (let j = 0; j <= last; j++) sum += Math.exp(p[j] - max);
          l = max + Math.log(sum);
        }
        for (let j = 0; j <= last; j++) p[j] = Math.exp(p[j] - l);
        let rowDot = 0;
        for (let d = 0; d < D; d++) rowDot += dout[qo + d] * out[qo + d];
        dqa.fill(0);
        for (let j = 0; j <= last; j++) {
          const ko = ((b * Tk + j) * Hkv + hk) * D;
          let dp = 0;
          for (let d = 0; d < D; d++) dp += dout[qo + d] * v[ko + d];
          const pj = p[j];
          const ds = pj * (dp - rowDot) * scale;
          for (let d = 0; d < D; d++) {
            dqa[d] += ds * k[ko + d];
            dk[ko + d] += ds * q[qo + d];
            dv[ko + d] += pj * dout[qo + d];
          }
        }
        for (let d = 0; d < D; d++) dq[qo + d] += dqa[d];
      }
    }
  }
}
