// GPTQ on the GPU: the same algorithm and contract as quantizeGPTQ (src/quant/gptq.ts, the f64 reference), run by
// the kernels of native/cuda/gptq.cu through an engine (the addon's, or test/helpers/host-gptq.ts's emulator).
// W and H stay f64 on the device. The host keeps the O(n log n) and O(n) parts: the act-order sort of the Hessian
// diagonal, the damping value and its ×10 retries, the column → group map, and the un-permutation and packing of
// the codes. See docs/cuda.md, "GPTQ on the GPU".
import { LowbitError } from '../io/errors.js';
import type { Arr } from '../tensor.js';
import { cudaGptq, cudaGptqUnavailable, type GptqEngine } from '../backend/cuda-gptq.js';
import type { GptqOpts, GptqResult } from './gptq.js';
import { packCodes } from './pack.js';
import { resolveGroup } from './rtn.js';
import type { PackedTensor } from './types.js';

/** Columns per block of the column loop that the kernel takes (its shared memory holds 32 rows × the block). */
export const GPU_MAX_BLOCK = 800;

let override: GptqEngine | null = null;
/** Route gptqEngine() to another implementation (tests: the host emulator); null resets. */
export function useGptqEngine(e: GptqEngine | null): void { override = e; }

/** The engine GPTQ runs on when a CUDA device with GPTQ's kernels is usable, else null. */
export function gptqEngine(): GptqEngine | null { return override ?? cudaGptq(); }

/** Why gptqEngine() is null ('available' when it is not). */
export function gptqGpuUnavailable(): string { return override ? 'available' : cudaGptqUnavailable(); }

/** The engine, or a one-line error saying why there is none (for --device cuda). */
export function requireGptqEngine(): GptqEngine {
  const e = gptqEngine();
  if (!e) throw new LowbitError(`--device cuda: ${gptqGpuUnavailable()}`);
  return e;
}

/**
 * H = 2/N · Σ xᵀx accumulated on the device (the GPU twin of HessianAccumulator): f32 rows are uploaded and added
 * by f32 GEMMs of ≤ 256 rows into an f64 H. finalize() scales H in place and returns its handle; free() releases it.
 */
export class GpuHessian {
  readonly H: number;
  rows = 0;
  private tmp: number;
  private stage = 0;
  private stageRows = 0;
  private done = false;
  constructor(private readonly eng: GptqEngine, readonly n: number) {
    this.H = eng.cudaAlloc(n * n * 8);
    eng.cudaMemset0(this.H);
    this.tmp = eng.cudaAlloc(n * n * 4);
  }
  /** x[rows, n] (row-major, f32: the GPU path accumulates in f32 GEMMs as the CPU does for f32 rows). */
  add(x: Arr, rows: number): void {
    if (this.done) throw new Error('GpuHessian: add() after finalize()');
    if (!(x instanceof Float32Array)) throw new Error('GpuHessian: calibration rows must be a Float32Array');
    if (rows <= 0) return;
    const n = this.n;
    if (x.length < rows * n) throw new Error(`GpuHessian: ${x.length} values hold fewer than ${rows} rows of ${n}`);
    if (rows > this.stageRows) {
      if (this.stage) this.eng.cudaFree(this.stage);
      this.stage = this.eng.cudaAlloc(rows * n * 4);
      this.stageRows = rows;
    }
    this.eng.cudaUpload(this.stage, x.subarray(0, rows * n));
    this.eng.cudaGptqHessianAdd(this.H, this.stage, rows, n, this.tmp);
    this.rows += rows;
  }
  /**
   * Rows already on the device: x a device buffer holding f32 [rows, n] row-major (the GPU calibration forward converts
   * its bf16 activations into one), added by the same ≤ 256-row f32 GEMMs as add().
   */
  addDevice(x: number, rows: number): void {
    if (this.done) throw new Error('GpuHessian: addDevice() after finalize()');
    if (rows <= 0) return;
    this.eng.cudaGptqHessianAdd(this.H, x, rows, this.n, this.tmp);
    this.rows += rows;
  }
  /** 2/N·XᵀX, in place; the handle stays owned by this object (free() releases it). */
  finalize(): number {
    if (!this.done) {
      this.eng.cudaGptqScaleF64(this.H, this.n * this.n, this.rows > 0 ? 2 / this.rows : 0);
      this.done = true;
      this.releaseScratch();
    }
    return this.H;
  }
  /** The finalized Hessian copied to the host (tests, debugging). */
  download(): Float64Array {
    const h = new Float64Array(this.n * this.n);
    this.eng.cudaDownload(this.H, h);
    return h;
  }
  free(): void {
    this.releaseScratch();
    this.eng.cudaFree(this.H);
  }
  private releaseScratch(): void {
    if (this.tmp) { this.eng.cudaFree(this.tmp); this.tmp = 0; }
    if (this.stage) { this.eng.cudaFree(this.stage); this.stage = 0; this.stageRows = 0; }
  }
}

/** Act-order: columns by descending diagonal, ties by index (the reference's stable sort). */
export function actOrderPerm(diag: ArrayLike<number>): Int32Array {
  return Int32Array.from({ length: diag.length }, (_, i) => i).sort((a, b) => diag[b] - diag[a] || a - b);
}

/**
 * The group each column of the (permuted) column loop uses: one group (per-channel), ⌊col/g⌋ (dynamic groups,
 * fitted when the loop reaches a group start), or the group of the column's original index (static groups).
 */
export function columnGroups(C: number, g: number, perChannel: boolean, staticGroups: boolean, perm: Int32Array | null): Int32Array {
  const cg = new Int32Array(C);
  if (perChannel) return cg;
  for (let col = 0; col < C; col++) cg[col] = Math.floor((staticGroups && perm ? perm[col] : col) / g);
  return cg;
}

/** Codes from the device order [C, out] over permuted columns to row-major W[out, C] in original column order. */
export function unpermuteCodes(dev: Uint8Array, perm: Int32Array | null, out: number, C: number): Uint8Array {
  const codes = new Uint8Array(out * C);
  for (let col = 0; col < C; col++) {
    const c = perm ? perm[col] : col, src = col * out;
    for (let r = 0; r < out; r++) codes[r * C + c] = dev[src + r];
  }
  return codes;
}

/** Wall-clock seconds of the stages (filled when passed to quantizeGPTQGpu; it then synchronises between stages). */
export interface GptqGpuTimings { prepare: number; factor: number; columns: number; attempts: number }

/**
 * GPTQ-quantize W[out, in] (HF layout) on the GPU with Hessian H[in, in]: a host Float64Array (not modified) or a
 * finalized GpuHessian (left as is). Same options and result as quantizeGPTQ.
 */
export function quantizeGPTQGpu(eng: GptqEngine, W: ArrayLike<number>, out: number, inF: number, H: Float64Array | GpuHessian,
  opts: GptqOpts, timings?: GptqGpuTimings): GptqResult {
  if (W.length !== out * inF) throw new Error(`gptq: weight has ${W.length} values, expected ${out}x${inF}`);
  const hn = H instanceof Float64Array ? H.length : H.n * H.n;
  if (hn !== inF * inF) throw new Error(`gptq: Hessian has ${hn} values, expected ${inF}x${inF}`);
  const bits = opts.bits;
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new Error(`gptq: bits must be 1..8, got ${bits}`);
  const C = inF, g = resolveGroup(opts.groupSize, inF), perChannel = g >= inF, ng = Math.ceil(inF / g);
  const percdamp = opts.percdamp ?? 0.01, bs = opts.blockSize ?? 128;
  if (!(Number.isInteger(bs) && bs >= 1 && bs <= GPU_MAX_BLOCK)) throw new Error(`gptq: the GPU takes block sizes 1..${GPU_MAX_BLOCK}, got ${bs}`);
  const actOrder = !!opts.actOrder, staticGroups = !!opts.staticGroups;
  const clock = () => { if (!timings) return 0; eng.cudaSync(); return performance.now(); };
  const t0 = clock();
  const live = new Set<number>();
  const alloc = (bytes: number) => { const h = eng.cudaAlloc(Math.max(bytes, 1)); live.add(h); return h; };
  const release = (h: number) => { if (live.delete(h)) eng.cudaFree(h); };
  const nn = C * C * 8, wBytes = out * C * 8;
  try {
    // W (row-major f64) → Wt [C, out]
    let Wspare = alloc(wBytes);
    eng.cudaUpload(Wspare, Float64Array.from(W));
    let Wt = alloc(wBytes);
    eng.cudaGptqTransposeF64(Wt, Wspare, out, C);
    const Hs = alloc(nn);
    if (H instanceof Float64Array) eng.cudaUpload(Hs, H); else eng.cudaCopy(Hs, H.finalize(), nn);
    const scales = alloc(out * ng * 4), zeros = alloc(out * ng * 4);
    if (perChannel) eng.cudaGptqFitGroups(Wt, out, C, C, bits, scales, zeros); // on W before dead columns are zeroed
    const diagBuf = alloc(C * 8), diag = new Float64Array(C);
    eng.cudaGptqDeadColumns(Hs, Wt, C, out, diagBuf);
    eng.cudaDownload(diagBuf, diag);
    release(diagBuf);
    if (staticGroups && !perChannel) eng.cudaGptqFitGroups(Wt, out, C, g, bits, scales, zeros);
    let perm: Int32Array | null = null, Hp = Hs;
    if (actOrder) {
      perm = actOrderPerm(diag);
      const permBuf = alloc(C * 4);
      eng.cudaUpload(permBuf, perm);
      Hp = alloc(nn);
      eng.cudaGptqPermute(Hs, Wt, permBuf, C, out, Hp, Wspare);
      [Wt, Wspare] = [Wspare, Wt];
      release(permBuf);
    }
    release(Wspare);
    let mean = 0;
    for (let i = 0; i < C; i++) mean += diag[perm ? perm[i] : i];
    let damp = percdamp * (mean / C);
    const t1 = clock();
    // Cholesky of the damped H, its inverse, the upper Cholesky of the inverse; damp ×10 on failure (as the CPU)
    const A = alloc(nn), work = Hp === Hs ? alloc(nn) : Hs;
    let ok = false, attempts = 0;
    for (let attempt = 0; attempt < 6 && !ok; attempt++, damp *= 10) {
      attempts++;
      eng.cudaGptqDampCopy(A, Hp, C, damp);
      if (!eng.cudaGptqCholesky(A, C)) continue;
      eng.cudaGptqCholeskyInverse(A, C, work);
      ok = eng.cudaGptqCholesky(A, C);
    }
    if (!ok) throw new Error('gptq: Hessian is not positive definite even after dampening');
    release(Hp); release(work);
    const t2 = clock();
    // the column loop: one kernel per block of bs columns, then the lazy batch update as one GEMM
    const colGroup = columnGroups(C, g, perChannel, staticGroups, perm);
    const cgBuf = alloc(C * 4);
    eng.cudaUpload(cgBuf, colGroup);
    const codesBuf = alloc(C * out), lossBuf = alloc(out * 8), err = alloc(bs * out * 8);
    eng.cudaMemset0(lossBuf);
    const fit = !perChannel && !staticGroups;
    for (let i1 = 0; i1 < C; i1 += bs) {
      const i2 = Math.min(C, i1 + bs);
      eng.cudaGptqQuantBlock(Wt, err, A, scales, zeros, cgBuf, codesBuf, lossBuf, out, C, i1, i2, g, bits, fit);
      if (i2 < C) eng.cudaGptqLazyUpdate(Wt, err, A, out, C, i1, i2);
    }
    const dev = new Uint8Array(C * out), S = new Float32Array(out * ng), Z = new Float32Array(out * ng), lossRows = new Float64Array(out);
    eng.cudaDownload(codesBuf, dev);
    eng.cudaDownload(scales, S);
    eng.cudaDownload(zeros, Z);
    eng.cudaDownload(lossBuf, lossRows);
    const t3 = clock();
    let loss = 0;
    for (let r = 0; r < out; r++) loss += lossRows[r];
    const packed: PackedTensor = {
      method: 'gptq', layout: 'int', bits, out, in: inF, groupSize: g, qcodes: packCodes(unpermuteCodes(dev, perm, out, C), bits),
      scales: S, zeros: Z,
    };
    if (actOrder && !staticGroups && !perChannel) {
      const gIdx = new Int32Array(C);
      for (let col = 0; col < C; col++) gIdx[perm![col]] = colGroup[col];
      packed.gIdx = gIdx;
    }
    if (timings) Object.assign(timings, { prepare: (t1 - t0) / 1000, factor: (t2 - t1) / 1000, columns: (t3 - t2) / 1000, attempts });
    return { packed, loss };
  } finally {
    for (const h of live) eng.cudaFree(h);
  }
}
