// Token windows from a text file: the GPTQ perplexity protocol (non-overlapping, remainder dropped) and
// GPTQ/RILQ-style random calibration windows (seeded start offsets).
import { Rng } from '../tensor.js';
import { LowbitError } from '../io/errors.js';

/** Non-overlapping windows of `seq` tokens; the remainder is dropped. */
export function contiguousWindows(ids: ArrayLike<number>, seq: number): Int32Array[] {
  const n = Math.floor(ids.length / seq), out: Int32Array[] = [];
  for (let w = 0; w < n; w++) out.push(Int32Array.from({ length: seq }, (_, i) => ids[w * seq + i]));
  return out;
}

/** `count` random windows of `seq` tokens from the token stream (GPTQ-style calibration), seeded. */
export function randomWindows(ids: ArrayLike<number>, seq: number, count: number, seed: number, source = 'calibration text'): Int32Array[] {
  if (ids.length <= seq) throw new LowbitError(`${source}: ${ids.length} tokens, need more than --seq ${seq}`);
  const rng = new Rng(seed), out: Int32Array[] = [];
  for (let c = 0; c < count; c++) {
    const start = rng.int(ids.length - seq);
    out.push(Int32Array.from({ length: seq }, (_, i) => ids[start + i]));
  }
  return out;
}

/** Split windows into train and validation (the last `valRatio` share validates, as RILQ does). */
export function splitWindows<T>(w: T[], valRatio: number): { train: T[]; val: T[] } {
  const nVal = Math.round(w.length * valRatio);
  return { train: w.slice(0, w.length - nVal), val: w.slice(w.length - nVal) };
}
