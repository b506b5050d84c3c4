// CUDA graphs of a GPU model's device work, one per key (the window's shape and scalars): the first run of a key is
// captured (and, as captureGraph does, executed once eagerly), later runs replay it. LOWBIT_GPU_GRAPHS=0 runs eagerly.
import type { GpuLlama } from './gpu-llama.js';

export class GraphCache {
  private graphs = new Map<string, number>();
  private readonly on = process.env.LOWBIT_GPU_GRAPHS !== '0';
  constructor(private readonly m: GpuLlama) {}

  /** Runs `work` (device calls only: no uploads or downloads) for `key`: eagerly, captured, or replayed. */
  run(key: string, work: () => void): void {
    const g = this.graphs.get(key);
    if (!this.on) work();
    else if (g) this.m.launchGraph(g);
    else this.graphs.set(key, this.m.captureGraph(work));
  }

  free(): void {
    for (const g of this.graphs.values()) this.m.c.cudaGraphFree(g);
    this.graphs.clear();
  }
}
