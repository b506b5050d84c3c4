// Device buffers of one CUDA test: uploads (optionally at a byte offset inside a larger allocation, through a view, to
// exercise the unaligned paths), NaN-poisoned outputs, downloads after a sync, and freeing everything (views first).
import type { NativeCuda } from '../../src/backend/native.js';
import { bf16ToF32, f32ToBf16 } from '../../src/backend/cuda.js';

const NAN_BF16 = 0x7fc0;

export class Dev {
  private readonly allocs: number[] = [];
  private readonly views: number[] = [];
  constructor(readonly c: NativeCuda) {}
  alloc(bytes: number, offset = 0): number {
    const h = this.c.cudaAlloc(Math.max(bytes + offset, 4));
    this.allocs.push(h);
    if (!offset) return h;
    const v = this.c.cudaView(h, offset, bytes);
    this.views.push(v);
    return v;
  }
  up(data: Float32Array | Int32Array | Uint16Array, offset = 0): number {
    const h = this.alloc(data.byteLength, offset);
    if (data.byteLength) this.c.cudaUpload(h, data);
    return h;
  }
  f32(data: Float32Array, offset = 0): number { return this.up(data, offset); }
  bf16(values: ArrayLike<number>, offset = 0): number { return this.up(f32ToBf16(values), offset); }
  nanF32(n: number, offset = 0): number { return this.up(new Float32Array(n).fill(NaN), offset); }
  nanBf16(n: number, offset = 0): number { return this.up(new Uint16Array(n).fill(NAN_BF16), offset); }
  getF32(h: number, n: number): Float32Array {
    this.c.cudaSync();
    const o = new Float32Array(n);
    this.c.cudaDownload(h, o);
    return o;
  }
  getBf16(h: number, n: number): Float32Array {
    this.c.cudaSync();
    const o = new Uint16Array(n);
    this.c.cudaDownload(h, o);
    return bf16ToF32(o);
  }
  free(): void {
    for (const h of this.views.splice(0)) this.c.cudaFree(h);
    for (const h of this.allocs.splice(0)) this.c.cudaFree(h);
  }
}

/** Runs fn with a fresh Dev, freeing its buffers afterwards. */
export function withDev(c: NativeCuda, fn: (d: Dev) => void): void {
  const d = new Dev(c);
  try { fn(d); } finally { d.free(); }
}
