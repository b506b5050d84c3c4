// The teacher (full-precision model) outputs for the calibration windows, computed once and kept within a
// memory budget. What is cached is the final post-norm hidden state [T, D] (the lm_head input): RILQ's MSE
// target, and, through the FP lm_head, the exact teacher logits for the logits-MSE and LREC's KL, computed
// chunk by chunk when needed. This replaces LREC's terabyte full-vocabulary logit cache (V/D times larger).
// Windows beyond the budget are recomputed online from the teacher model.
import type { Arr } from '../tensor.js';
import type { LlamaModel } from '../model/llama.js';
import type { Linear } from '../model/linear.js';
import { bf16ToF32Array, f32ToBf16Array } from '../io/halfs.js';
import { Progress } from '../cli/progress.js';

export type CacheDtype = 'f32' | 'bf16';

export interface TeacherCacheOptions {
  /** bytes the cached hidden states may take (default 2 GiB) */
  budgetBytes?: number;
  /** storage precision: f32 (default) or bf16 (what the authors' bf16 teacher holds; half the memory) */
  dtype?: CacheDtype;
}

export class TeacherCache {
  private readonly store = new Map<number, Arr | Uint16Array>();
  private bytes = 0;
  readonly D: number;
  readonly lmHead: Linear;
  private scratch: Float32Array | null = null;
  online = 0;

  constructor(private teacher: LlamaModel | null, readonly windows: Int32Array[], private o: TeacherCacheOptions = {}) {
    if (!teacher) throw new Error('TeacherCache: a teacher model is required');
    this.D = teacher.config.hiddenSize;
    this.lmHead = teacher.weights.lmHead;
  }

  get cachedCount(): number { return this.store.size; }
  get cachedBytes(): number { return this.bytes; }

  private compute(i: number): Arr {
    if (!this.teacher) throw new Error(`TeacherCache: window ${i} is not cached and the teacher was released`);
    const ids = this.windows[i];
    return this.teacher.forward(ids, 1, ids.length, { train: false }).hidden;
  }

  /** Compute and cache every window that fits the budget (in index order). */
  fill(indices: number[] = this.windows.map((_, i) => i), progress = false): void {
    const bar = progress ? new Progress('teacher', indices.length, 'win') : null;
    const budget = this.o.budgetBytes ?? 2 ** 31;
    for (const i of indices) {
      if (this.store.has(i)) { bar?.tick(); continue; }
      const per = this.windows[i].length * this.D * (this.o.dtype === 'bf16' ? 2 : 4);
      if (this.bytes + per > budget) break;
      const h = this.compute(i);
      if (this.o.dtype === 'bf16') this.store.set(i, f32ToBf16Array(h instanceof Float32Array ? h : Float32Array.from(h)));
      else this.store.set(i, h.slice());
      this.bytes += per;
      bar?.tick();
    }
    bar?.finish(`${this.store.size} cached, ${(this.bytes / 2 ** 20).toFixed(1)} MiB`);
  }

  /** Drop the teacher model when every window is cached (frees the FP weights, as RILQ does). */
  releaseTeacherIfComplete(): boolean {
    if (this.store.size === this.windows.length) { this.teacher = null; return true; }
    return false;
  }

  /** Teacher final hidden state of window i [T, D] (valid until the next call). */
  hidden(i: number): Arr {
    const s = this.store.get(i);
    if (s === undefined) { this.online++; return this.compute(i); }
    if (s instanceof Uint16Array) {
      if (!this.scratch || this.scratch.length !== s.length) this.scratch = new Float32Array(s.length);
      return bf16ToF32Array(s, this.scratch);
    }
    return s;
  }
}
