// GPU time per op category from CUDA events recorded between consecutive ops on the one stream: tick(cat)
// after an op attributes the time since the previous tick to cat. No host sync until report(); events are
// pooled, so a profiled step costs one event record per op on the host.
import type { NativeCuda } from '../../backend/native.js';

export class GpuProfiler {
  private pool: number[] = [];
  private used = 0;
  private marks: string[] = [];
  private readonly totals = new Map<string, { ms: number; calls: number }>();
  constructor(private readonly c: NativeCuda) {}

  private ev(): number {
    if (this.used === this.pool.length) this.pool.push(this.c.cudaEventNew());
    return this.pool[this.used++];
  }
  /** Start a profiled region (records the first boundary). */
  begin(): void { this.used = 0; this.marks = []; this.c.cudaEventRecord(this.ev()); }
  /** The op just issued belongs to `cat`. */
  tick(cat: string): void { this.c.cudaEventRecord(this.ev()); this.marks.push(cat); }
  /** Sync, add this region's times to the totals, return them (ms per category, summed over regions). */
  end(): Map<string, { ms: number; calls: number }> {
    this.c.cudaSync();
    for (let i = 0; i < this.marks.length; i++) {
      const ms = this.c.cudaEventMs(this.pool[i], this.pool[i + 1]);
      const t = this.totals.get(this.marks[i]) ?? { ms: 0, calls: 0 };
      t.ms += ms; t.calls++;
      this.totals.set(this.marks[i], t);
    }
    return this.totals;
  }
  reset(): void { this.totals.clear(); }
  free(): void { for (const e of this.pool.splice(0)) this.c.cudaEventFree(e); this.used = 0; }
}
