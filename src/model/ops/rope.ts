// Rotary position embedding, HF `rotate_half` convention (not interleaved): for head dim D the pairs
// are (i, i + D/2), angle = position · inv_freq[i], inv_freq[i] = 1/theta^(2i/D), with the optional
// `llama3` frequency scaling of transformers' _compute_llama3_parameters.
//   out[i]       = x[i]·cos − x[i+D/2]·sin
//   out[i+D/2]   = x[i+D/2]·cos + x[i]·sin
// Angles are rounded to float32 exactly as HF computes them (inv_freq in fp32, position·inv_freq in
// fp32), so f32 logits match transformers at long positions too.
import type { Arr } from '../../tensor.js';
import type { RopeScaling } from '../config.js';

const f32 = Math.fround;

/** inv_freq[D/2] as transformers computes it in float32 (default or llama3-scaled). */
export function ropeInvFreq(headDim: number, theta: number, scaling: RopeScaling): Float64Array {
  if (headDim % 2 !== 0) throw new Error(`src/model/ops/rope.ts: head dim ${headDim} is odd`);
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    // torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)) — all in float32
    const e = f32(f32(2 * i) / headDim);
    inv[i] = f32(1 / f32(Math.pow(theta, e)));
  }
  if (scaling.type === 'llama3') {
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: old } = scaling;
    const lowFreqWavelen = old / lowFreqFactor;
    const highFreqWavelen = old / highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = inv[i];
      const wavelen = f32(2 * Math.PI / f);
      let out = wavelen > lowFreqWavelen ? f / factor : f;
      if (!(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen)) {
        const smooth = (old / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
        out = (1 - smooth) * out / factor + smooth * out;
      }
      inv[i] = f32(out);
    }
  }
  return inv;
}

/**
 * Fill cos/sin tables [T, D/2] for positions pos0 .. pos0+T-1 (float32 angles, like HF).
 * Tables may be Float64Array or Float32Array; values are cos/sin of the fp32 angle.
 */
export function ropeTables(cos: Arr, sin: Arr, invFreq: Float64Array, pos0: number, T: number): void {
  const half = invFreq.length;
  for (let t = 0; t < T; t++) {
    const p = pos0 + t;
    for (let i = 0; i < half; i++) {
      const a = f32(p * invFreq[i]);
      cos[t * half + i] = Math.cos(a);
      sin[t * half + i] = Math.sin(a);
    }
  }
}

/**
 * out[B,T,H,D] = rope(x) with tables cos/sin [T, D/2] (row t is the position of x[:, t]).
 * out may alias x.
 */
export function ropeForward(out: Arr, x: Arr, cos: Arr, sin: Arr, B: number, T: number, H: number, D: number): void {
  const half = D >> 1;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const to = t * half;
      for (let h = 0; h < H; h++) {
        const o = ((b * T + t) * H + h) * D;
        for (let i = 0; i < half; i++) {
          const c = cos[to + i], s = sin[to + i];
          const x1 = x[o + i], x2 = x[o + i + half];
          out[o + i] = x1 * c - x2 * s;
          out[o + i + half] = x2 * c + x1 * s;
        }
      }
    }
  }
}

/** dx += Rᵀ · dout (the inverse rotation). dx must not alias dout. */
export function ropeBackward(dx: Arr, dout: Arr, cos: Arr, sin: Arr, B: number, T: number, H: number, D: number): void {
  const half = D >> 1;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const to = t * half;
      for (let h = 0; h < H; h++) {
        const o = ((b * T + t) * H + h) * D;
        for (let i = 0; i < half; i++) {
          const c = cos[to + i], s = sin[to + i];
          const g1 = dout[o + i], g2 = dout[o + i + half];
          dx[o + i] += g1 * c + g2 * s;
          dx[o + i + half] += g2 * c - g1 * s;
        }
      }
    }
  }
}
