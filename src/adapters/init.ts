// LoRA initialisations. gaussian (RILQ / PEFT "gaussian"): A ~ N(0, std 1/r), B = 0. kaiming (PEFT default):
// A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in), B = 0. svd: top-r SVD of the residual E = W − Q with √s on
// each side, the forward scale folded in (A = R/√c, B = L/√c, c = α/r) so s·B·A = the rank-r part of E.
import { Rng } from '../tensor.js';
import type { LoraAdapter } from './lora.js';
import { svdFactors, truncatedSvd, type TruncatedSvdOptions } from './svd.js';

export type LoraInit = 'gaussian' | 'kaiming' | 'svd' | 'loftq' | 'zero';
export const LORA_INITS: readonly LoraInit[] = ['gaussian', 'kaiming', 'svd', 'loftq', 'zero'];

export function initGaussian(a: LoraAdapter, rng: Rng): void {
  rng.fillNormal(a.A, 1 / a.r);
  a.B.fill(0);
}

export function initKaiming(a: LoraAdapter, inFeatures: number, rng: Rng): void {
  const bound = 1 / Math.sqrt(inFeatures); // gain √(2/(1+5)) · √(3/fan_in)
  rng.fillUniform(a.A, -bound, bound);
  a.B.fill(0);
}

/** Fill A, B from the top-r SVD of E [out, in] so that scale·B·A ≈ E. Returns the singular values kept. */
export function initFromResidual(a: LoraAdapter, E: ArrayLike<number>, out: number, inF: number, o: TruncatedSvdOptions = {}): Float64Array {
  const s = truncatedSvd(E, out, inF, a.r, o);
  const { L, R } = svdFactors(s, a.r, a.scale);
  a.B.set(L);
  a.A.set(R);
  return s.S;
}
