// KL(teacher ‖ student) between the softmaxes of two logit arrays [N,V], summed over vocab and rows:
//   Σ_n Σ_v p_v (log p_v − log q_v),  p = softmax(teacher[n]), q = softmax(student[n]).
import type { Arr } from '../../tensor.js';

/** log Σ_v exp(x[o + v]) over one row of V logits (max-shifted). */
export function logSumExp(x: Arr, o: number, V: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (x[o + i] > max) max = x[o + i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(x[o + i] - max);
  return max + Math.log(sum);
}

export function klForward(teacher: Arr, student: Arr, N: number, V: number): number {
  let total = 0;
  for (let n = 0; n < N; n++) {
    const o = n * V;
    const lt = logSumExp(teacher, o, V), ls = logSumExp(student, o, V);
    let s = 0;
    for (let i = 0; i < V; i++) {
      const lp = teacher[o + i] - lt;
      s += Math.exp(lp) * (lp - (student[o + i] - ls));
    }
    total += s;
  }
  return total;
}

/** dstudent[n] += scale · (softmax(student[n]) − softmax(teacher[n])) (teacher is treated as constant). */
export function klBackward(dstudent: Arr, teacher: Arr, student: Arr, N: number, V: number, scale = 1): void {
  for (let n = 0; n < N; n++) {
    const o = n * V;
    const lt = logSumExp(teacher, o, V), ls = logSumExp(student, o, V);
    for (let i = 0; i < V; i++) {
      dstudent[o + i] += scale * (Math.exp(student[o + i] - ls) - Math.exp(teacher[o + i] - lt));
    }
  }
}
