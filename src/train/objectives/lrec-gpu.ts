// LREC's loss on the GPU engine: the same objective as lrec.ts (w_kl·Σ KL(teacher‖student) over positions and vocab
// + w_ce·mean CE), with the teacher logits made on the device from the cached teacher hidden through the FP lm_head,
// chunk by chunk next to the student's (GpuLlama.lmHeadKlCeDevice); the loss sums stay on the device and are read
// once per window. Each window's device work is a CUDA graph replayed by (T, grad, scale, count), as GpuRilqObjective.
import { GraphCache } from '../../model/gpu/graph-cache.js';
import type { GpuLlama } from '../../model/gpu/gpu-llama.js';
import type { Linear } from '../../model/linear.js';
import { shiftTargets } from '../../model/loss.js';
import { f32ToBf16 } from '../../backend/cuda.js';
import { LowbitError } from '../../io/errors.js';
import type { Arr } from '../../tensor.js';
import type { TeacherCache } from '../teacher-cache.js';
import { lrecDefaultCeWeight, type LrecOptions } from './lrec.js';
import type { LossParts, Objective } from './types.js';

/**
 * The teacher lm_head on the device. lowbit never quantizes the lm_head, so the student's (the packed directory keeps
 * it in its source dtype) normally IS the FP model's: when its bf16 copy on the device equals the teacher's, it is
 * reused (no second V×D upload); otherwise the teacher's is uploaded and owned by the caller.
 */
export function deviceTeacherHead(m: GpuLlama, head: Linear): { handle: number; owned: boolean } {
  const dense = (head as Linear & { dense?: () => Arr }).dense;
  if (typeof dense !== 'function') throw new LowbitError(`GPU engine: the teacher lm_head ${head.constructor.name} has no dense weight`);
  const w = dense.call(head), V = m.config.vocabSize, D = m.config.hiddenSize;
  if (w.length !== V * D) throw new LowbitError(`GPU engine: the teacher lm_head has ${w.length} weights, the student's ${V}×${D}`);
  // compared in slices of 2^22 (a LLaMA-3 head is 0.5 G weights): no full host copy of the device's
  const step = 1 << 22, sb = new Uint16Array(Math.min(step, V * D));
  let same = true;
  for (let o = 0; o < V * D && same; o += step) {
    const n = Math.min(step, V * D - o), tb = f32ToBf16(w.subarray(o, o + n)), part = sb.subarray(0, n);
    m.c.cudaDownload(m.w.lmHead, part, o * 2);
    for (let i = 0; i < n && same; i++) same = tb[i] === part[i];
  }
  if (same) return { handle: m.w.lmHead, owned: false };
  const tb = f32ToBf16(w), h = m.c.cudaAlloc(tb.byteLength);
  m.c.cudaUpload(h, tb);
  return { handle: h, owned: true };
}

export class GpuLrecObjective implements Objective {
  readonly name = 'lrec';
  private readonly wk: number;
  private readonly wc: number | undefined;
  private readonly head: { handle: number; owned: boolean };

  /** m must be built with { distill: true }; the teacher cache's lm_head is the teacher's (see deviceTeacherHead). */
  constructor(private readonly m: GpuLlama, private readonly teacher: TeacherCache, o: Omit<LrecOptions, 'chunkRows'> = {}) {
    if (!m.distill) throw new Error('GpuLrecObjective: build the GpuLlama with { distill: true }');
    this.wk = o.klWeight ?? 1; this.wc = o.ceWeight;
    this.head = deviceTeacherHead(m, teacher.lmHead);
    this.graphs = new GraphCache(m);
  }

  /** whether the teacher lm_head is the student's device buffer (true in lowbit's own pipeline) */
  get sharesLmHead(): boolean { return !this.head.owned; }

  /** CUDA graphs of the device part of a window, by (T, grad, scale, count) */
  private graphs: GraphCache;

  run(ids: Int32Array, index: number, grad: boolean, scale: number): LossParts {
    const m = this.m, T = ids.length;
    const wc = this.wc ?? lrecDefaultCeWeight(T);
    const th = this.teacher.hidden(index);
    const targets = shiftTargets(ids, 1, T);
    // host → device first (uploads cannot be part of a graph), then the device work, eager or replayed
    m.setIds(ids, 1, T);
    m.setTeacher(th instanceof Float32Array ? th : Float32Array.from(th));
    const count = m.setTargets(targets);
    const klScale = scale * this.wk, ceScale = count > 0 ? (scale * wc) / count : 0;
    const work = () => {
      m.forwardDevice();
      m.beginLoss(grad);
      m.lmHeadKlCeDevice(this.head.handle, grad, klScale, ceScale, 0, 1);
      if (grad) m.backward();
    };
    this.graphs.run(`${T}|${grad}|${scale}|${count}`, work);
    const l = m.readLoss();
    const kl = l[0], ce = l[1] / count;  // count 0: NaN, as the CPU objective
    return { loss: this.wk * kl + wc * ce, kl, ce };
  }

  free(): void {
    this.graphs.free();
    if (this.head.owned) { this.m.c.cudaFree(this.head.handle); this.head.owned = false; }
  }
}
