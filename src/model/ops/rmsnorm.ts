// RMSNorm (HF LlamaRMSNorm): out = x · rsqrt(mean(x²) + eps) · weight, per row of C channels.
import type { Arr } from '../../tensor.js';
import { allFloat32, nativeOps } from '../../backend/kernels.js';

/** out[N,C] = x / rms(x) · w;  rstd[N] = 1/sqrt(mean(x²)+eps) is kept for the backward. */
export function rmsnormForward(out: Arr, rstd: Arr | null, x: Arr, w: Arr, N: number, C: number, eps: number): void {
  const nat = nativeOps();
  if (nat && allFloat32(out, rstd, x, w)) return nat.rmsnormForward(out as Float32Array, rstd as Float32Array | null, x as Float32Array, w as Float32Array, N, C, eps);
  rmsnormForwardRef(out, rstd, x, w, N, C, eps);
}

/** TypeScript reference (the native kernel's twin). */
export function rmsnormForwardRef(out: Arr, rstd: Arr | null, x: Arr, w: Arr, N: number, C: number, eps: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * C;
    let ss = 0;
    for (let i = 0; i < C; i++) { const v = x[o + i]; ss += v * v; }
    const r = 1 / Math.sqrt(ss / C + eps);
    if (rstd) rstd[n] = r;
    for (let i = 0; i < C; i++) out[o + i] = x[o + i] * r * w[i];
  }
}

/**
 * dx[N,C] += ∂L/∂x, dw[C] += ∂L/∂w (dw may be null) given dout[N,C], the forward input x and rstd.
 * With xh = x·r: dx = r·(g − xh·mean(g·xh)) where g = dout·w.
 */
export function rmsnormBackward(dx: Arr | null, dw: Arr | null, dout: Arr, x: Arr, w: Arr, rstd: Arr,
  N: number, C: number): void {
  const nat = nativeOps();
  if (nat && allFloat32(dx, dw, dout, x, w, rstd)) {
    return nat.rmsnormBackward(dx as Float32Array | null, dw as Float32Array | null, dout as Float32Array, x as Float32Array, w as Float32Array, rstd as Float32Array, N, C);
  }
  rmsnormBackwardRef(dx, dw, dout, x, w, rstd, N, C);
}

/** TypeScript reference (the native kernel's twin). */
export function rmsnormBackwardRef(dx: Arr | null, dw: Arr | null, dout: Arr, x: Arr, w: Arr, rstd: Arr,
  N: number, C: number): void {
  for (let n = 0; n < N; n++) {
    const o = n * C, r = rstd[n];
    let dot = 0;
    for (let i = 0; i < C; i++) dot += dout[o + i] * w[i] * x[o + i];
    const k = dot * r * r / C;
    if (dx) for (let i = 0; i < C; i++) dx[o + i] += r * (dout[o + i] * w[i] - x[o + i] * k);
    if (dw) for (let i = 0; i < C; i++) dw[i] += dout[o + i] * x[o + i] * r;
  }
}
