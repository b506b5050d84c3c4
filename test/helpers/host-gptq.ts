// A host emulator of GPTQ's CUDA kernels (native/cuda/gptq.cu) built from their TypeScript twins in
// src/quant/gptq.ts: HessianAccumulator, choleskyLower, choleskyInverse, gptqMinMaxRule/quantizeValue and the
// reference's column loop, on the device layouts of native/cuda/gptq.h (column-major square matrices, Wt [in, out],
// codes [in, out]). Device memory is the host engine's (test/helpers/host-engine.ts), read and written through
// its upload/download. The lazy update subtracts in the reference's order, so quantizeGPTQGpu on this engine
// reproduces quantizeGPTQ exactly; on the GPU only cuBLAS's summation orders differ.
import type { GptqEngine, NativeCudaGptq } from '../../src/backend/cuda-gptq.js';
import { HessianAccumulator, choleskyInverse, choleskyLower } from '../../src/quant/gptq.js';
import { gptqMinMaxRule } from '../../src/quant/icq.js';
import { quantizeValue } from '../../src/quant/rtn.js';
import { hostEngine, type HostEngine } from './host-engine.js';

const fr = Math.fround;

export type HostGptqEngine = HostEngine & GptqEngine;

export function hostGptq(base: HostEngine = hostEngine()): HostGptqEngine {
  const read64 = (h: number, n: number) => { const a = new Float64Array(n); base.cudaDownload(h, a); return a; };
  const read32 = (h: number, n: number) => { const a = new Float32Array(n); base.cudaDownload(h, a); return a; };
  const readI32 = (h: number, n: number) => { const a = new Int32Array(n); base.cudaDownload(h, a); return a; };
  const write = (h: number, a: ArrayBufferView, byteOff = 0) => base.cudaUpload(h, a, byteOff);
  /** The lower triangle of a column-major matrix as a full row-major symmetric one (what the kernels read). */
  const symFromLower = (A: Float64Array, n: number) => {
    const S = new Float64Array(n * n);
    for (let j = 0; j < n; j++) for (let i = j; i < n; i++) { const v = A[i + j * n]; S[i * n + j] = v; S[j * n + i] = v; }
    return S;
  };
  /** GPTQ's min/max parameters of row r over columns [c0, c1) of Wt [C, out]. */
  const fit = (Wt: Float64Array, out: number, r: number, c0: number, c1: number, bits: number) => {
    const row = new Float64Array(c1 - c0);
    for (let c = c0; c < c1; c++) row[c - c0] = Wt[c * out + r];
    return gptqMinMaxRule(row, 0, c1 - c0, bits);
  };
  const ops: NativeCudaGptq = {
    cudaGptqHessianAdd(H, X, rows, n, _tmp) {
      const acc = new HessianAccumulator(n);
      acc.H.set(read64(H, n * n));
      acc.add(read32(X, rows * n), rows);
      write(H, acc.H);
    },
    cudaGptqScaleF64(x, n, k) { const a = read64(x, n); for (let i = 0; i < n; i++) a[i] *= k; write(x, a); },
    cudaGptqTransposeF64(dst, src, rows, cols) {
      const s = read64(src, rows * cols), d = new Float64Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) d[c * rows + r] = s[r * cols + c];
      write(dst, d);
    },
    cudaGptqDeadColumns(H, Wt, n, out, diag) {
      const h = read64(H, n * n), w = read64(Wt, n * out), d = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        if (h[i * n + i] === 0) { h[i * n + i] = 1; w.fill(0, i * out, (i + 1) * out); }
        d[i] = h[i * n + i];
      }
      write(H, h); write(Wt, w); write(diag, d);
    },
    cudaGptqPermute(Hsrc, Wsrc, perm, n, out, Hdst, Wdst) {
      const h = read64(Hsrc, n * n), w = read64(Wsrc, n * out), p = readI32(perm, n);
      const hd = new Float64Array(n * n), wd = new Float64Array(n * out);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) hd[i * n + j] = h[p[i] * n + p[j]];
      for (let j = 0; j < n; j++) wd.set(w.subarray(p[j] * out, (p[j] + 1) * out), j * out);
      write(Hdst, hd); write(Wdst, wd);
    },
    cudaGptqDampCopy(dst, src, n, damp) {
      const a = read64(src, n * n);
      for (let i = 0; i < n; i++) a[i * n + i] += damp;
      write(dst, a);
    },
    cudaGptqCholesky(A, n) {
      const S = symFromLower(read64(A, n * n), n);
      const ok = choleskyLower(S, n); // row-major lower L → column-major lower = its transpose in memory
      const L = new Float64Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) L[i + j * n] = S[i * n + j];
      write(A, L);
      return ok;
    },
    cudaGptqCholeskyInverse(A, n, work) {
      const a = read64(A, n * n), L = new Float64Array(n * n);
      for (let j = 0; j < n; j++) for (let i = j; i < n; i++) L[i * n + j] = a[i + j * n];
      write(A, choleskyInverse(L, n));
      write(work, new Float64Array(n * n).fill(NaN)); // scratch: its contents are not part of the contract
    },
    cudaGptqFitGroups(Wt, out, C, g, bits, scales, zeros) {
      const w = read64(Wt, C * out), ng = Math.ceil(C / g), S = new Float32Array(out * ng), Z = new Float32Array(out * ng);
      for (let r = 0; r < out; r++) for (let gi = 0; gi < ng; gi++) {
        const { s, z } = fit(w, out, r, gi * g, Math.min(C, (gi + 1) * g), bits);
        S[r * ng + gi] = s; Z[r * ng + gi] = z;
      }
      write(scales, S); write(zeros, Z);
    },
    cudaGptqQuantBlock(Wt, err, hinv, scales, zeros, colGroup, codes, lossRows, out, C, i1, i2, g, bits, fitGroups) {
      const cnt = i2 - i1, ng = Math.ceil(C / g), M = 2 ** bits - 1;
      const w = read64(Wt, C * out), U = read64(hinv, C * C), cg = readI32(colGroup, C);
      const S = read32(scales, out * ng), Z = read32(zeros, out * ng), loss = read64(lossRows, out);
      const E = new Float64Array(cnt * out), q8 = new Uint8Array(cnt * out);
      for (let r = 0; r < out; r++) {
        const w1 = new Float64Array(cnt);
        for (let i = 0; i < cnt; i++) w1[i] = w[(i1 + i) * out + r];
        let l = 0;
        for (let i = 0; i < cnt; i++) {
          const col = i1 + i, gi = cg[col];
          if (fitGroups && col % g === 0) {
            const p = fit(w, out, r, col, Math.min(C, col + g), bits);
            S[r * ng + gi] = p.s; Z[r * ng + gi] = p.z;
          }
          const s = S[r * ng + gi], z = Z[r * ng + gi], d = U[col * C + col];
          const q = quantizeValue(w1[i], s, z, M);
          q8[i * out + r] = q;
          const wq = fr(s * (q - z)), e = (w1[i] - wq) / d;
          l += ((w1[i] - wq) * (w1[i] - wq)) / (d * d) / 2;
          E[i * out + r] = e;
          for (let j = i + 1; j < cnt; j++) w1[j] -= e * U[col * C + i1 + j];
        }
        loss[r] += l;
      }
      write(err, E); write(scales, S); write(zeros, Z); write(lossRows, loss); write(codes, q8, i1 * out);
    },
    cudaGptqLazyUpdate(Wt, err, hinv, out, C, i1, i2) {
      const cnt = i2 - i1, w = read64(Wt, C * out), E = read64(err, cnt * out), U = read64(hinv, C * C);
      for (let r = 0; r < out; r++) {
        for (let i = 0; i < cnt; i++) {
          const e = E[i * out + r];
          if (e === 0) continue;
          const hrow = (i1 + i) * C;
          for (let j = i2; j < C; j++) w[j * out + r] -= e * U[hrow + j];
        }
      }
      write(Wt, w);
    },
  };
  return Object.assign(base, ops) as HostGptqEngine;
}
