// Residual add. Its backward is the identity on both inputs, which the model applies by
// accumulating into the shared residual-stream gradient, so only the forward is needed.
import type { Arr } from '../../tensor.js';

/** out[i] = a[i] + b[i] (out may alias a). */
export function residualForward(out: Arr, a: Arr, b: Arr, N: number): void {
  for (let i = 0; i < N; i++) out[i] = a[i] + b[i];
}

/** da += dout, db += dout (either may be null). */
export function residualBackward(da: Arr | null, db: Arr | null, dout: Arr, N: number): void {
  if (da) for (let i = 0; i < N; i++) da[i] += dout[i];
  if (db) for (let i = 0; i < N; i++) db[i] += dout[i];
}
