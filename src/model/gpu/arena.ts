// Device memory sized in one place (llm.c style): a record of named sizes becomes ONE cudaAlloc carved into
// 256-byte-aligned views, each with its own handle. Nothing is allocated per op; freeing the arena frees the
// views first, then the allocation.
import type { NativeCuda } from '../../backend/native.js';

export type DType = 'f32' | 'bf16' | 'i32';
export const BYTES: Record<DType, number> = { f32: 4, bf16: 2, i32: 4 };

/** One named tensor of an arena: element count and type. */
export interface Slot { n: number; t: DType }

export class DeviceArena<K extends string> {
  readonly h: Record<K, number>;
  readonly bytes: number;
  private base: number;
  private views: number[] = [];
  constructor(private readonly c: NativeCuda, readonly slots: Record<K, Slot>) {
    const offs: [K, number, number][] = [];
    let o = 0;
    for (const k in slots) {
      const b = Math.max(1, slots[k].n) * BYTES[slots[k].t];
      offs.push([k, o, b]);
      o += Math.ceil(b / 256) * 256;
    }
    this.bytes = o;
    this.base = c.cudaAlloc(Math.max(o, 256));
    this.h = {} as Record<K, number>;
    for (const [k, off, b] of offs) {
      const v = c.cudaView(this.base, off, b);
      this.views.push(v);
      this.h[k] = v;
    }
  }
  free(): void {
    for (const v of this.views.splice(0)) this.c.cudaFree(v);
    if (this.base) { this.c.cudaFree(this.base); this.base = 0; }
  }
}

/** A single device buffer of n elements of type t (for the few tensors that are not part of an arena). */
export function deviceAlloc(c: NativeCuda, n: number, t: DType): number {
  return c.cudaAlloc(Math.max(1, n) * BYTES[t]);
}
