// Two GPTQ runs of the same model compared (test/gptq-calib-gpu-emulated.test.ts, test/cuda-gptq-calib.test.ts): the
// share of identical codes per projection, the dequantized weights' error against the FP weights, and the quantized
// model's final hidden states on held-out windows against the FP model's (CPU model, f32).
import { PROJECTIONS, projectionPath } from '../../src/model/config.js';
import type { LlamaWeights } from '../../src/model/weights.js';
import { LlamaModel } from '../../src/model/llama.js';
import { loadPackedModel } from '../../src/quant/format.js';
import { dequantize } from '../../src/quant/dequant.js';
import { unpackCodes } from '../../src/quant/pack.js';
import { f32ToBf16 } from '../../src/backend/cuda.js';
import type { HostGptqEngine } from './host-gptq.js';

export interface PackedRunsComparison {
  /** the lowest share of identical codes over the projections, and where */
  minAgree: number;
  minPath: string;
  /** identical codes over all projections */
  agree: number;
  /** ‖Ŵ − W‖ / ‖W‖ over all projections, of run A and of run B */
  errA: number;
  errB: number;
}

export function comparePackedRuns(dirA: string, dirB: string, fp: LlamaWeights): PackedRunsComparison {
  const a = loadPackedModel(dirA).packed, b = loadPackedModel(dirB).packed;
  let minAgree = 1, minPath = '', same = 0, total = 0, dA = 0, dB = 0, nW = 0;
  for (let l = 0; l < fp.config.numLayers; l++) {
    for (const p of PROJECTIONS) {
      const path = projectionPath(l, p), ta = a.get(path), tb = b.get(path);
      if (!ta || !tb) throw new Error(`${path}: missing in one run`);
      const n = ta.out * ta.in, ca = unpackCodes(ta.qcodes, ta.bits, n), cb = unpackCodes(tb.qcodes, tb.bits, n);
      let s = 0;
      for (let i = 0; i < n; i++) if (ca[i] === cb[i]) s++;
      if (s / n < minAgree) { minAgree = s / n; minPath = path; }
      same += s; total += n;
      const W = (fp.linearAt(l, p) as unknown as { dense(): ArrayLike<number> }).dense(), wa = dequantize(ta), wb = dequantize(tb);
      for (let i = 0; i < n; i++) { dA += (wa[i] - W[i]) ** 2; dB += (wb[i] - W[i]) ** 2; nW += W[i] ** 2; }
    }
  }
  return { minAgree, minPath, agree: same / total, errA: Math.sqrt(dA / nW), errB: Math.sqrt(dB / nW) };
}

/** ‖h_q − h_fp‖ / ‖h_fp‖ of the final post-norm hidden states on the windows (one batch). */
export function heldOutError(packedDir: string, fp: LlamaWeights, windows: Int32Array[]): number {
  const T = windows[0].length, B = windows.length, ids = new Int32Array(B * T);
  windows.forEach((w, i) => ids.set(w, i * T));
  const hidden = (w: LlamaWeights) => Float32Array.from(new LlamaModel(w).forward(ids, B, T, { train: false, captureLayerOutputs: false }).hidden as Float32Array);
  const ref = hidden(fp), q = hidden(loadPackedModel(packedDir).weights);
  let d = 0, n = 0;
  for (let i = 0; i < ref.length; i++) { d += (q[i] - ref[i]) ** 2; n += ref[i] ** 2; }
  return Math.sqrt(d / n);
}

/**
 * GPTQ's emulated kernels whose Hessian rows are rounded to bf16 first: with the CPU calibration forward, the run that
 * differs from the CPU run only by the rounding the GPU forward's bf16 activations bring into the Hessians — the
 * floor of how much two such GPTQ runs can agree (GPTQ's error feedback turns tiny Hessian changes into code flips).
 */
export function bf16RowsGptq(eng: HostGptqEngine): HostGptqEngine {
  const add = eng.cudaGptqHessianAdd.bind(eng);
  eng.cudaGptqHessianAdd = (H, X, rows, n, tmp) => {
    const x = new Float32Array(rows * n);
    eng.cudaDownload(X, x);
    const r = eng.cudaAlloc(x.byteLength);
    try {
      eng.cudaUpload(r, bf16Round(x));
      add(H, r, rows, n, tmp);
    } finally { eng.cudaFree(r); }
  };
  return eng;
}

function bf16Round(x: Float32Array): Float32Array {
  const b = f32ToBf16(x), u = new Uint32Array(b.length);
  for (let i = 0; i < b.length; i++) u[i] = b[i] << 16;
  return new Float32Array(u.buffer);
}

/** Share of identical codes over all projections of two packed runs. */
export function codeAgreement(dirA: string, dirB: string): { all: number; byPath: Map<string, number> } {
  const a = loadPackedModel(dirA).packed, b = loadPackedModel(dirB).packed, byPath = new Map<string, number>();
  let same = 0, total = 0;
  for (const [path, ta] of a) {
    const tb = b.get(path)!, n = ta.out * ta.in, ca = unpackCodes(ta.qcodes, ta.bits, n), cb = unpackCodes(tb.qcodes, tb.bits, n);
    let s = 0;
    for (let i = 0; i < n; i++) if (ca[i] === cb[i]) s++;
    byPath.set(path, s / n);
    same += s; total += n;
  }
  return { all: same / total, byPath };
}
