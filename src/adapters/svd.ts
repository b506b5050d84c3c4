// Truncated SVD in float64: exact one-sided (Hestenes) Jacobi for small matrices and tests, and
// randomized subspace iteration (Halko–Martinsson–Tropp) for the top-r of a large one.
// Matrices are row-major; results are U [m, k] and V [n, k] row-major with S descending (M ≈ U·diag(S)·Vᵀ).
import { Rng } from '../tensor.js';

export interface Svd { U: Float64Array; S: Float64Array; V: Float64Array; m: number; n: number; k: number }

/** One-sided Jacobi on the k columns cols[j] (length len each); rotations are applied to vcols too. */
function jacobiColumns(cols: Float64Array[], vcols: Float64Array[], len: number, maxSweeps = 60): void {
  const k = cols.length, eps = 1e-15;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let rotated = 0;
    for (let p = 0; p < k - 1; p++) {
      for (let q = p + 1; q < k; q++) {
        const gp = cols[p], gq = cols[q];
        let a = 0, b = 0, g = 0;
        for (let i = 0; i < len; i++) { const x = gp[i], y = gq[i]; a += x * x; b += y * y; g += x * y; }
        if (g === 0 || Math.abs(g) <= eps * Math.sqrt(a * b)) continue;
        rotated++;
        const zeta = (b - a) / (2 * g);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t), s = c * t;
        for (let i = 0; i < len; i++) { const x = gp[i], y = gq[i]; gp[i] = c * x - s * y; gq[i] = s * x + c * y; }
        const vp = vcols[p], vq = vcols[q];
        for (let i = 0; i < vp.length; i++) { const x = vp[i], y = vq[i]; vp[i] = c * x - s * y; vq[i] = s * x + c * y; }
      }
    }
    if (rotated === 0) return;
  }
}

/** Exact thin SVD of M [m, n] (one-sided Jacobi on the smaller side), k = min(m, n). */
export function jacobiSvd(M: ArrayLike<number>, m: number, n: number): Svd {
  const tall = m >= n, len = tall ? m : n, k = tall ? n : m;
  // columns of M (tall) or of Mᵀ (wide)
  const cols: Float64Array[] = [], vcols: Float64Array[] = [];
  for (let j = 0; j < k; j++) {
    const c = new Float64Array(len);
    if (tall) for (let i = 0; i < m; i++) c[i] = M[i * n + j];
    else for (let i = 0; i < n; i++) c[i] = M[j * n + i];
    cols.push(c);
    const v = new Float64Array(k); v[j] = 1; vcols.push(v);
  }
  jacobiColumns(cols, vcols, len);
  const norms = cols.map((c) => { let s = 0; for (let i = 0; i < len; i++) s += c[i] * c[i]; return Math.sqrt(s); });
  const order = norms.map((_, j) => j).sort((a, b) => norms[b] - norms[a]);
  // tall: M = G Vᵀ with G = U Σ → U = G/σ, V = vcols.  wide: Mᵀ = U' Σ V'ᵀ → U = V', V = U'.
  const U = new Float64Array(m * k), V = new Float64Array(n * k), S = new Float64Array(k);
  order.forEach((j, r) => {
    const s = norms[j]; S[r] = s;
    const g = cols[j], v = vcols[j];
    const gu = (i: number) => (s > 0 ? g[i] / s : 0);
    if (tall) {
      for (let i = 0; i < m; i++) U[i * k + r] = gu(i);
      for (let i = 0; i < n; i++) V[i * k + r] = v[i];
    } else {
      for (let i = 0; i < n; i++) V[i * k + r] = gu(i);
      for (let i = 0; i < m; i++) U[i * k + r] = v[i];
    }
  });
  return { U, S, V, m, n, k };
}

/** In-place modified Gram–Schmidt (twice) on the k columns of Y [m, k] row-major. */
function orthonormalize(Y: Float64Array, m: number, k: number): void {
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < k; j++) {
      for (let p = 0; p < j; p++) {
        let d = 0;
        for (let i = 0; i < m; i++) d += Y[i * k + j] * Y[i * k + p];
        for (let i = 0; i < m; i++) Y[i * k + j] -= d * Y[i * k + p];
      }
      let s = 0;
      for (let i = 0; i < m; i++) s += Y[i * k + j] * Y[i * k + j];
      const inv = s > 1e-300 ? 1 / Math.sqrt(s) : 0;
      for (let i = 0; i < m; i++) Y[i * k + j] *= inv;
    }
  }
}

/** C[m, k] = M[m, n] · X[n, k] */
function mulMX(M: ArrayLike<number>, m: number, n: number, X: Float64Array, k: number, C: Float64Array): void {
  C.fill(0);
  for (let i = 0; i < m; i++) {
    const ci = i * k;
    for (let j = 0; j < n; j++) {
      const a = M[i * n + j];
      if (a === 0) continue;
      const xj = j * k;
      for (let c = 0; c < k; c++) C[ci + c] += a * X[xj + c];
    }
  }
}

/** C[n, k] = Mᵀ · Y with M [m, n], Y [m, k] */
function mulMtY(M: ArrayLike<number>, m: number, n: number, Y: Float64Array, k: number, C: Float64Array): void {
  C.fill(0);
  for (let i = 0; i < m; i++) {
    const yi = i * k;
    for (let j = 0; j < n; j++) {
      const a = M[i * n + j];
      if (a === 0) continue;
      const cj = j * k;
      for (let c = 0; c < k; c++) C[cj + c] += a * Y[yi + c];
    }
  }
}

export interface TruncatedSvdOptions {
  oversample?: number;
  powerIters?: number;
  seed?: number;
  /** force 'jacobi' (exact) or 'randomized'; default picks by size */
  method?: 'jacobi' | 'randomized';
}

/** Top-r SVD of M [m, n] in float64. */
export function truncatedSvd(M: ArrayLike<number>, m: number, n: number, r: number, o: TruncatedSvdOptions = {}): Svd {
  const kmax = Math.min(m, n);
  r = Math.min(r, kmax);
  const p = o.oversample ?? 10, q = o.powerIters ?? 6;
  const method = o.method ?? (r + p >= kmax / 2 || kmax <= 64 ? 'jacobi' : 'randomized');
  if (method === 'jacobi') return truncate(jacobiSvd(M, m, n), r);
  const k = Math.min(kmax, r + p);
  const rng = new Rng(o.seed ?? 1234);
  const Om = new Float64Array(n * k);
  rng.fillNormal(Om);
  const Y = new Float64Array(m * k), Z = new Float64Array(n * k);
  mulMX(M, m, n, Om, k, Y);
  orthonormalize(Y, m, k);
  for (let it = 0; it < q; it++) {
    mulMtY(M, m, n, Y, k, Z); orthonormalize(Z, n, k);
    mulMX(M, m, n, Z, k, Y); orthonormalize(Y, m, k);
  }
  // Bt = Mᵀ Q  [n, k];  B = Qᵀ M = Btᵀ.  SVD(Bt) = U' Σ V'ᵀ → M ≈ Q B = (Q V') Σ U'ᵀ
  mulMtY(M, m, n, Y, k, Z);
  const s = jacobiSvd(Z, n, k); // U' [n, k], V' [k, k]
  const U = new Float64Array(m * k);
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < k; c++) {
      let acc = 0;
      for (let j = 0; j < k; j++) acc += Y[i * k + j] * s.V[j * k + c];
      U[i * k + c] = acc;
    }
  }
  return truncate({ U, S: s.S, V: s.U, m, n, k }, r);
}

function truncate(s: Svd, r: number): Svd {
  if (r >= s.k) return s;
  const U = new Float64Array(s.m * r), V = new Float64Array(s.n * r);
  for (let i = 0; i < s.m; i++) for (let c = 0; c < r; c++) U[i * r + c] = s.U[i * s.k + c];
  for (let i = 0; i < s.n; i++) for (let c = 0; c < r; c++) V[i * r + c] = s.V[i * s.k + c];
  return { U, S: s.S.slice(0, r), V, m: s.m, n: s.n, k: r };
}

/**
 * LoRA factors of the top-r SVD with √s on each side: L = U√S [m, r] (lora_B), R = √S Vᵀ [r, n] (lora_A),
 * each divided by √c so that c·L·R reproduces the truncated matrix under a forward scale c.
 */
export function svdFactors(s: Svd, r: number, c = 1): { L: Float64Array; R: Float64Array } {
  const k = Math.min(r, s.k), m = s.m, n = s.n;
  const L = new Float64Array(m * r), R = new Float64Array(r * n);
  const ic = 1 / Math.sqrt(c);
  for (let j = 0; j < k; j++) {
    const f = Math.sqrt(s.S[j]) * ic;
    for (let i = 0; i < m; i++) L[i * r + j] = s.U[i * s.k + j] * f;
    for (let i = 0; i < n; i++) R[j * n + i] = s.V[i * s.k + j] * f;
  }
  return { L, R };
}

/** Frobenius norm of M − c·L·R (L [m, r], R [r, n]). */
export function residualNorm(M: ArrayLike<number>, m: number, n: number, L: ArrayLike<number>, R: ArrayLike<number>, r: number, c = 1): number {
  let s = 0;
  const row = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let j = 0; j < r; j++) { const l = L[i * r + j]; if (l === 0) continue; for (let t = 0; t < n; t++) row[t] += l * R[j * n + t]; }
    for (let t = 0; t < n; t++) { const d = M[i * n + t] - c * row[t]; s += d * d; }
  }
  return Math.sqrt(s);
}

export function frobenius(M: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < M.length; i++) s += M[i] * M[i];
  return Math.sqrt(s);
}
