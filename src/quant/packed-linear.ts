// A frozen quantized projection: holds the packed codes + metadata and dequantizes on use into a
// Float32Array kept in a process-wide LRU cache with a byte budget, so a packed model is never expanded
// to 32-bit as a whole (only the most recently used layers are). Backward gives the input gradient only.
import type { Arr } from '../tensor.js';
import type { Linear } from '../model/linear.js';
import { sgemm } from '../backend/kernels.js';
import type { PackedTensor } from './types.js';
import { dequantize } from './dequant.js';

/** LRU of dequantized weights, bounded in bytes (one entry may exceed the budget; it is then alone). */
export class DequantCache {
  private map = new Map<PackedLinear, Float32Array>();
  private bytes = 0;
  hits = 0;
  misses = 0;
  constructor(public budgetBytes: number) {}
  get(l: PackedLinear): Float32Array {
    const w = this.map.get(l);
    if (w) { this.hits++; this.map.delete(l); this.map.set(l, w); return w; }
    this.misses++;
    const d = dequantize(l.packed);
    this.map.set(l, d);
    this.bytes += d.byteLength;
    for (const [k, v] of this.map) {
      if (this.bytes <= this.budgetBytes || k === l) break;
      this.map.delete(k); this.bytes -= v.byteLength;
    }
    return d;
  }
  evict(l: PackedLinear): void { const w = this.map.get(l); if (w) { this.map.delete(l); this.bytes -= w.byteLength; } }
  clear(): void { this.map.clear(); this.bytes = 0; }
  get usedBytes(): number { return this.bytes; }
  get entries(): number { return this.map.size; }
}

function defaultBudget(): number {
  const mb = Number(process.env.LOWBIT_DEQUANT_CACHE_MB);
  return (Number.isFinite(mb) && mb >= 0 ? mb : 512) * 2 ** 20;
}

/** The shared cache (LOWBIT_DEQUANT_CACHE_MB, default 512 MiB). */
export const dequantCache = new DequantCache(defaultBudget());

export class PackedLinear implements Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  constructor(readonly packed: PackedTensor, readonly name = '', private readonly cache: DequantCache = dequantCache) {
    this.inFeatures = packed.in;
    this.outFeatures = packed.out;
  }
  /** The dequantized weight W[out, in] (cached; do not modify). */
  weight(): Float32Array { return this.cache.get(this); }
  forward(out: Arr, x: Arr, rows: number): void {
    sgemm(false, true, rows, this.outFeatures, this.inFeatures, 1, x, this.weight(), 0, out);
  }
  backward(dx: Arr | null, dy: Arr, _x: Arr, rows: number): void {
    if (dx) sgemm(false, false, rows, this.inFeatures, this.outFeatures, 1, dy, this.weight(), 1, dx);
  }
  /** A fresh dense copy (exports, merges). */
  dense(): Float32Array { return dequantize(this.packed); }
}
