// A stand-in for the CUDA engine with host memory behind the handles: enough of it (buffers, views, transfers,
// memset, the bf16 cast, AdamW, sum of squares) to test the bookkeeping of the GPU model's memory (arenas, the
// flat LoRA layout, device-resident Adam) in CI, where there is no GPU. The arithmetic follows the TypeScript
// twins (AdamW.update, f32ToBf16); the kernels themselves are tested against those twins on the GPU machine.
import { f32ToBf16 } from '../../src/backend/cuda.js';
import type { GpuEngine } from '../../src/model/gpu/engine.js';

interface HostBuf { mem: ArrayBuffer; off: number; bytes: number; view: boolean }

export function hostEngine(): GpuEngine & { live(): number } {
  const bufs = new Map<number, HostBuf>();
  let next = 1;
  const get = (h: number, need = 0): HostBuf => {
    const b = bufs.get(h);
    if (!b) throw new Error(`host engine: ${h} is not a live buffer`);
    if (b.bytes < need) throw new Error(`host engine: buffer ${h} has ${b.bytes} bytes, needs ${need}`);
    return b;
  };
  const f32 = (h: number, n: number) => { const b = get(h, n * 4); return new Float32Array(b.mem, b.off, n); };
  const eng = {
    cudaAlloc(bytes: number): number { bufs.set(next, { mem: new ArrayBuffer(Math.max(bytes, 1)), off: 0, bytes, view: false }); return next++; },
    cudaView(h: number, off: number, bytes: number): number {
      const b = get(h, off + bytes);
      bufs.set(next, { mem: b.mem, off: b.off + off, bytes, view: true });
      return next++;
    },
    cudaFree(h: number): void { get(h); bufs.delete(h); },
    cudaUpload(h: number, src: ArrayBufferView, off = 0): void {
      const b = get(h, off + src.byteLength);
      new Uint8Array(b.mem, b.off + off, src.byteLength).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    },
    cudaDownload(h: number, dst: ArrayBufferView, off = 0): void {
      const b = get(h, off + dst.byteLength);
      new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).set(new Uint8Array(b.mem, b.off + off, dst.byteLength));
    },
    cudaMemset0(h: number, bytes?: number): void { const b = get(h, bytes ?? 0); new Uint8Array(b.mem, b.off, bytes ?? b.bytes).fill(0); },
    cudaCastF32ToBf16Scaled(dst: number, src: number, n: number, scale: number): void {
      const x = f32(src, n), d = get(dst, n * 2);
      new Uint16Array(d.mem, d.off, n).set(f32ToBf16(x.map((v) => v * scale)));
    },
    cudaSumSquaresF32(x: number, n: number, out: number): void {
      const a = f32(x, n), o = f32(out, 1);
      let s = 0;
      for (let i = 0; i < n; i++) s += a[i] * a[i];
      o[0] += s;
    },
    cudaAdamW(p: number, g: number, m: number, v: number, n: number, lr: number, b1: number, b2: number, eps: number,
      wd: number, step: number, gradScale: number, coupled: boolean): void {
      const P = f32(p, n), G = f32(g, n), M = f32(m, n), Vv = f32(v, n);
      const bc1 = 1 - Math.pow(b1, step), bc2 = 1 - Math.pow(b2, step);
      for (let i = 0; i < n; i++) {
        let gi = G[i] * gradScale;
        if (coupled && wd) gi += wd * P[i];
        M[i] = b1 * M[i] + (1 - b1) * gi;
        Vv[i] = b2 * Vv[i] + (1 - b2) * gi * gi;
        P[i] -= lr * ((M[i] / bc1) / (Math.sqrt(Vv[i] / bc2) + eps) + (!coupled && wd ? wd * P[i] : 0));
      }
    },
    live: () => bufs.size,
  };
  return eng as unknown as GpuEngine & { live(): number };
}
