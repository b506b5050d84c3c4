// Token embedding lookup; backward scatter-adds rows into the table's gradient.
import type { Arr } from '../../tensor.js';
import { LowbitError } from '../../io/errors.js';

/** out[N,C] = table[ids[n], :] with table [V,C]. Throws on an id outside [0, V). */
export function embeddingForward(out: Arr, ids: Int32Array, table: Arr, N: number, C: number, V: number): void {
  for (let n = 0; n < N; n++) {
    const id = ids[n];
    if (!(id >= 0 && id < V)) throw new LowbitError(`src/model/ops/embedding.ts: token id ${id} at position ${n} is outside the vocabulary [0, ${V})`);
    out.set(table.subarray(id * C, id * C + C), n * C);
  }
}

/** dtable[ids[n], :] += dout[n, :]. */
export function embeddingBackward(dtable: Arr, dout: Arr, ids: Int32Array, N: number, C: number): void {
  for (let n = 0; n < N; n++) {
    const o = ids[n] * C, p = n * C;
    for (let i = 0; i < C; i++) dtable[o + i] += dout[p + i];
  }
}
