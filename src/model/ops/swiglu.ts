// SwiGLU gate of the LLaMA MLP: out = silu(gate) · up, with silu(g) = g·sigmoid(g).
import type { Arr } from '../../tensor.js';
import { allFloat32, nativeOps } from '../../backend/kernels.js';

/** out[n] = silu(gate[n]) · up[n] for n < N (N = rows · intermediate). */
export function swigluForward(out: Arr, gate: Arr, up: Arr, N: number): void {
  const nat = nativeOps();
  if (nat && allFloat32(out, gate, up)) return nat.swigluForward(out as Float32Array, gate as Float32Array, up as Float32Array, N);
  swigluForwardRef(out, gate, up, N);
}

/** TypeScript reference (the native kernel's twin). */
export function swigluForwardRef(out: Arr, gate: Arr, up: Arr, N: number): void {
  for (let i = 0; i < N; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

/** dgate += dout · up · silu'(gate), dup += dout · silu(gate). */
export function swigluBackward(dgate: Arr, dup: Arr, dout: Arr, gate: Arr, up: Arr, N: number): void {
  const nat = nativeOps();
  if (nat && allFloat32(dgate, dup, dout, gate, up)) {
    return nat.swigluBackward(dgate as Float32Array, dup as Float32Array, dout as Float32Array, gate as Float32Array, up as Float32Array, N);
  }
  swigluBackwardRef(dgate, dup, dout, gate, up, N);
}

/** TypeScript reference (the native kernel's twin). */
export function swigluBackwardRef(dgate: Arr, dup: Arr, dout: Arr, gate: Arr, up: Arr, N: number): void {
  for (let i = 0; i < N; i++) {
    const g = gate[i], s = 1 / (1 + Math.exp(-g)), d = dout[i];
    dgate[i] += d * up[i] * s * (1 + g * (1 - s));
    dup[i] += d * g * s;
  }
}
