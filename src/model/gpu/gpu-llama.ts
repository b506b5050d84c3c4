// LLaMA forward and hand-written backward on the GPU, mirroring src/model/llama.ts op for op. The frozen base
// stays packed (each projection is dequantized into one shared bf16 scratch right before its GEMM, forward and
// backward: dX = dY·Ŵ, no weight gradient), activations are bf16 where they feed a GEMM and fp32 on the
// residual stream and in every gradient accumulation; the LoRA factors train in fp32 (GpuLora).
// Activations are sized in ONE place (actSlots) and allocated once per (B, T).
import type { LlamaConfig, Projection } from '../config.js';
import { ropeInvFreq, ropeTables } from '../ops/rope.js';
import { DeviceArena, type Slot } from './arena.js';
import type { GpuEngine } from './engine.js';
import type { GpuWeights } from './device-weights.js';
import type { GpuLora, GpuLoraSite } from './gpu-lora.js';
import { LowbitError } from '../../io/errors.js';
import type { GpuProfiler } from './profiler.js';
import { bf16ToF32 } from '../../backend/cuda.js';
import { klCeMissing } from '../../backend/cuda-kl-ce.js';

type Named = Record<string, Slot>;

/** Every tensor a forward+backward of B×T tokens touches, by name and size: THE one place they are sized. */
/** Split-K for the skinny LoRA products: K cut into up to this many slices of at least 256. */
const MAX_SPLITS = 16;
function splitsFor(K: number): number {
  for (let s = MAX_SPLITS; s > 1; s >>= 1) if (K % s === 0 && K / s >= 256) return s;
  return 1;
}

/** Projections whose adapters run as one GEMM (same input, A's adjacent): q/k/v and gate/up when possible. */
const GROUPS: readonly (readonly Projection[])[] = [['q_proj', 'k_proj', 'v_proj'], ['o_proj'], ['gate_proj', 'up_proj'], ['down_proj']];
function groupsOf(lora: GpuLora, l: number, grouped: boolean): Projection[][] {
  const out: Projection[][] = [];
  for (const g of GROUPS) {
    if (grouped && g.length > 1 && lora.group(l, g)) { out.push([...g]); continue; }
    for (const p of g) if (lora.at(l, p)) out.push([p]);
  }
  return out;
}

function actSlots(c: LlamaConfig, B: number, T: number, lora: GpuLora | null, chunkRows: number, grouped: boolean, recompute: boolean,
  splitK: boolean, distill = false): Named {
  const N = B * T, D = c.hiddenSize, Q = c.numHeads * c.headDim, KV = c.numKvHeads * c.headDim, I = c.intermediateSize;
  const L = c.numLayers, V = c.vocabSize, half = c.headDim / 2;
  const s: Named = {
    ids: { n: N, t: 'i32' }, targets: { n: N, t: 'i32' }, cos: { n: T * half, t: 'f32' }, sin: { n: T * half, t: 'f32' },
    // forward scratch shared by the layers
    qf: { n: N * Q, t: 'f32' }, kf: { n: N * KV, t: 'f32' }, tmpD: { n: N * D, t: 'f32' },
    lnf: { n: N * D, t: 'bf16' }, lnfF: { n: N * D, t: 'f32' }, rstdf: { n: N, t: 'f32' },
    // backward scratch shared by the layers
    dH: { n: N * D, t: 'f32' }, dres: { n: N * D, t: 'f32' }, dresB: { n: N * D, t: 'bf16' }, dln: { n: N * D, t: 'f32' },
    act: { n: N * I, t: 'bf16' }, dactB: { n: N * I, t: 'bf16' },
    dgate: { n: N * I, t: 'bf16' }, dup: { n: N * I, t: 'bf16' },
    dattB: { n: N * Q, t: 'bf16' },
    dq: { n: N * Q, t: 'f32' }, dk: { n: N * KV, t: 'f32' }, dv: { n: N * KV, t: 'f32' },
    dqB: { n: N * Q, t: 'bf16' }, dkB: { n: N * KV, t: 'bf16' }, dvB: { n: N * KV, t: 'bf16' },
    u: { n: N * 3 * Math.max(1, lora?.maxRank ?? 1), t: 'bf16' },
    splitk: { n: lora && splitK ? MAX_SPLITS * N * 3 * lora.maxRank : 1, t: 'f32' },
    // losses and the chunked lm_head scratch
    teacher: { n: N * D, t: 'f32' }, loss: { n: 4, t: 'f32' },
    ceLogits: { n: chunkRows * V, t: 'f32' }, ceDlogits: { n: chunkRows * V, t: 'bf16' },
  };
  // logit distillation (LREC): the teacher hidden as the teacher lm_head's bf16 input, one chunk of teacher logits
  if (distill) { s.teacherB = { n: N * D, t: 'bf16' }; s.klTeacherLogits = { n: chunkRows * V, t: 'f32' }; }
  for (let l = 0; l <= L; l++) s[`resid${l}`] = { n: N * D, t: 'f32' };
  // with recompute, one layer's set serves every layer (the backward re-runs each block from its input first)
  for (let l = 0; l < (recompute ? 1 : L); l++) {
    // kept for backward (the SwiGLU product is recomputed there instead of kept)
    s[`ln1_${l}`] = { n: N * D, t: 'bf16' }; s[`rstd1_${l}`] = { n: N, t: 'f32' };
    s[`q_${l}`] = { n: N * Q, t: 'bf16' }; s[`k_${l}`] = { n: N * KV, t: 'bf16' }; s[`v_${l}`] = { n: N * KV, t: 'bf16' };
    s[`att_${l}`] = { n: N * Q, t: 'bf16' }; s[`lse_${l}`] = { n: B * c.numHeads * T, t: 'f32' };
    s[`mid_${l}`] = { n: N * D, t: 'f32' }; s[`ln2_${l}`] = { n: N * D, t: 'bf16' }; s[`rstd2_${l}`] = { n: N, t: 'f32' };
    s[`gate_${l}`] = { n: N * I, t: 'bf16' }; s[`up_${l}`] = { n: N * I, t: 'bf16' };
  }
  // x·Aᵀ of every adapter, kept for ∂B: one [N, Σr] block per group of projections sharing an input
  if (lora) {
    for (let l = 0; l < L; l++) {
      for (const ps of groupsOf(lora, l, grouped)) {
        const r = ps.reduce((a, p) => a + lora.at(l, p)!.r, 0), key = `t_${recompute ? 'x' : l}_${ps[0]}`;
        s[key] = { n: Math.max(N * r, s[key]?.n ?? 0), t: 'bf16' };
      }
    }
  }
  return s;
}

export interface GpuLossParts { mse: number; ceSum: number; ceCount: number }

/**
 * Sees the bf16 input [B·T, in] of each projection group of a layer as the forward forms it (forwardLayer): 'q_proj'
 * the input-norm output (shared by q/k/v), 'o_proj' the attention output, 'gate_proj' the post-norm output (shared by
 * gate/up), 'down_proj' the SwiGLU product. GPTQ's calibration accumulates its Hessians from these.
 */
export type LayerInputTap = (p: 'q_proj' | 'o_proj' | 'gate_proj' | 'down_proj', x: number) => void;
/** A projection's input x (bf16) and output y (f32 when yF32, else bf16) during forwardWithSiteTap. */
export type SiteTap = (l: number, p: Projection, x: number, y: number, yF32: boolean) => void;

export class GpuLlama {
  readonly config: LlamaConfig;
  private arena: DeviceArena<string> | null = null;
  private B = 0;
  private T = 0;
  private readonly scratch: number;
  private readonly invFreq: Float64Array;
  readonly chunkRows: number;
  /** run the adapters of q/k/v and of gate/up as one GEMM each (LOWBIT_GPU_LORA_GROUP=0 turns it off) */
  readonly grouped = process.env.LOWBIT_GPU_LORA_GROUP !== '0';
  /** split-K GEMMs for x·Aᵀ and dy·B (LOWBIT_GPU_SPLITK=1; measured no faster than cuBLAS alone on the H100) */
  readonly splitK = process.env.LOWBIT_GPU_SPLITK === '1';
  /** the packed weight whose dequantization the scratch holds (the backward starts with the forward's last) */
  private scratchHolds: unknown = null;
  /**
   * Activation recomputation: keep only each block's input and re-run the block right before its backward (one
   * layer's activations instead of L; one extra forward). Constructor option, or LOWBIT_GPU_RECOMPUTE=1.
   */
  readonly recompute: boolean;
  /** Room for logit distillation (lmHeadKlCe: LREC's KL + CE); constructor option. */
  readonly distill: boolean;
  /** A per-layer activation slot (the shared one under recompute). */
  private la(name: string, l: number): number { return this.h[`${name}_${this.recompute ? 0 : l}`]; }
  /** The kept x·Aᵀ of the adapter group starting at projection p of layer l. */
  private tbuf(l: number, p: Projection): number { return this.h[`t_${this.recompute ? 'x' : l}_${p}`]; }
  /** op-category GPU times when set (bench/cuda-rilq.mjs --profile) */
  prof: GpuProfiler | null = null;
  private tick(cat: string): void { this.prof?.tick(cat); }

  constructor(readonly c: GpuEngine, readonly w: GpuWeights, readonly lora: GpuLora | null = null, opts: { recompute?: boolean; distill?: boolean } = {}) {
    this.config = w.config;
    this.recompute = opts.recompute ?? process.env.LOWBIT_GPU_RECOMPUTE === '1';
    this.distill = opts.distill ?? false;
    const noKl = this.distill ? klCeMissing(c) : null;
    if (noKl) throw new LowbitError(`--device cuda: ${noKl}`);
    const cfg = this.config;
    if (![32, 64, 128].includes(cfg.headDim)) throw new LowbitError(`GPU engine: head dim ${cfg.headDim} (supported: 32, 64, 128)`);
    this.scratch = c.cudaAlloc(w.maxWeight * 2);
    this.invFreq = ropeInvFreq(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling);
    this.chunkRows = Math.max(1, Math.floor((1 << 22) / cfg.vocabSize));
  }

  get h(): Record<string, number> {
    if (!this.arena) throw new Error('GpuLlama: call prepare(B, T) first');
    return this.arena.h;
  }
  get activationBytes(): number { return this.arena?.bytes ?? 0; }

  /** Allocate (or keep) the activations of B×T tokens; uploads the RoPE tables. */
  prepare(B: number, T: number): void {
    if (this.arena && this.B === B && this.T === T) return;
    for (const v of this.lossViews.splice(0)) if (v) this.c.cudaFree(v);
    this.arena?.free();
    this.arena = null;
    this.arena = new DeviceArena(this.c, actSlots(this.config, B, T, this.lora, Math.min(this.chunkRows, B * T), this.grouped, this.recompute, this.splitK, this.distill));
    this.B = B; this.T = T;
    const half = this.config.headDim / 2, cos = new Float32Array(T * half), sin = new Float32Array(T * half);
    ropeTables(cos, sin, this.invFreq, 0, T);
    this.c.cudaUpload(this.h.cos, cos);
    this.c.cudaUpload(this.h.sin, sin);
  }

  /** Forward of ids [B·T] → final post-norm hidden in h.lnf (bf16, the lm_head input) and h.lnfF (f32). */
  forward(ids: Int32Array, B: number, T: number): void {
    this.setIds(ids, B, T);
    this.forwardDevice();
  }

  /** Validate and upload ids [B·T] (allocating for B×T when needed). */
  setIds(ids: Int32Array, B: number, T: number): void {
    const cfg = this.config, N = B * T;
    if (ids.length < N) throw new LowbitError(`GpuLlama: ${ids.length} ids for B=${B} × T=${T}`);
    for (let i = 0; i < N; i++) if (!(ids[i] >= 0 && ids[i] < cfg.vocabSize)) throw new LowbitError(`GpuLlama: token id ${ids[i]} at ${i} outside the vocabulary [0, ${cfg.vocabSize})`);
    this.prepare(B, T);
    this.c.cudaUpload(this.h.ids, ids.subarray(0, N));
  }

  /** The forward of the uploaded ids: device work only (capturable into a CUDA graph). */
  forwardDevice(): void {
    const cfg = this.config, h = this.h, c = this.c, N = this.B * this.T;
    c.cudaEmbedding(h.ids, this.w.embed, h.resid0, N, cfg.hiddenSize, cfg.vocabSize, true); this.tick('embedding');
    for (let l = 0; l < cfg.numLayers; l++) this.block(l);
    c.cudaRmsnormFwd(h[`resid${cfg.numLayers}`], this.w.finalNorm, h.lnf, h.lnfF, h.rstdf, N, cfg.hiddenSize, cfg.rmsNormEps);
    this.tick('rmsnorm');
  }

  /**
   * Record `fn` (device work only: no uploads, downloads or first-use allocations) as a CUDA graph, after one eager
   * run that warms every lazy allocation up. Returns the graph id for cudaGraphLaunch; free with cudaGraphFree.
   */
  captureGraph(fn: () => void): number {
    fn();
    this.c.cudaSync();
    this.scratchHolds = null;  // the graph must not depend on what the scratch held before it
    this.c.cudaGraphBegin();
    try { fn(); } catch (e) { try { this.c.cudaGraphEnd(); } catch { /* the capture is broken anyway */ } throw e; }
    return this.c.cudaGraphEnd();
  }

  /** Replay a graph of captureGraph (what the dequantization scratch holds is unknown afterwards). */
  launchGraph(g: number): void {
    this.c.cudaGraphLaunch(g);
    this.scratchHolds = null;
  }

  /**
   * Decoder block l alone on caller-owned hidden states (GPTQ's layer-by-layer calibration, src/quant/gptq-calib-gpu.ts):
   * x f32 [B·T, D] → out f32 [B·T, D] (out may be x: x is not read after the residual mid-point), with tap seeing each
   * projection group's input. Call prepare(B, T) first. Device work only.
   */
  forwardLayer(l: number, x: number, out: number, tap: LayerInputTap | null = null): void {
    this.tapFn = tap;
    try { this.block(l, x, out); } finally { this.tapFn = null; }
  }
  private tapFn: LayerInputTap | null = null;

  private block(l: number, x = this.h[`resid${l}`], out = this.h[`resid${l + 1}`]): void {
    const cfg = this.config, h = this.h, c = this.c, w = this.w.layers[l];
    const B = this.B, T = this.T, N = B * T, D = cfg.hiddenSize, I = cfg.intermediateSize;
    const hd = cfg.headDim, Hq = cfg.numHeads, Hkv = cfg.numKvHeads, eps = cfg.rmsNormEps;
    const mid = this.la('mid', l), ln1 = this.la('ln1', l), ln2 = this.la('ln2', l), tap = this.tapFn;
    c.cudaRmsnormFwd(x, w.inputNorm, ln1, null, this.la('rstd1', l), N, D, eps); this.tick('rmsnorm');
    tap?.('q_proj', ln1);
    this.groupFwd(l, ['q_proj', 'k_proj', 'v_proj'], ln1, [h.qf, h.kf, this.la('v', l)], [true, true, false]);
    c.cudaRopeFwd(h.qf, this.la('q', l), h.cos, h.sin, B, T, Hq, hd);
    c.cudaRopeFwd(h.kf, this.la('k', l), h.cos, h.sin, B, T, Hkv, hd); this.tick('rope');
    c.cudaAttnFwd(this.la('q', l), this.la('k', l), this.la('v', l), this.la('att', l), this.la('lse', l), B, T, T, Hq, Hkv, hd); this.tick('attention');
    tap?.('o_proj', this.la('att', l));
    this.groupFwd(l, ['o_proj'], this.la('att', l), [h.tmpD], [true]);
    c.cudaAddF32(mid, x, h.tmpD, N * D); this.tick('add/cast');
    c.cudaRmsnormFwd(mid, w.postNorm, ln2, null, this.la('rstd2', l), N, D, eps); this.tick('rmsnorm');
    tap?.('gate_proj', ln2);
    this.groupFwd(l, ['gate_proj', 'up_proj'], ln2, [this.la('gate', l), this.la('up', l)], [false, false]);
    c.cudaSwigluFwd(this.la('gate', l), this.la('up', l), h.act, N * I); this.tick('swiglu');
    tap?.('down_proj', h.act);
    this.groupFwd(l, ['down_proj'], h.act, [h.tmpD], [true]);
    c.cudaAddF32(out, mid, h.tmpD, N * D); this.tick('add/cast');
  }

  /** The frozen base's y[N, out] = x·Ŵᵀ: dequantize into the scratch, then one cuBLAS GEMM. */
  private baseFwd(l: number, p: Projection, x: number, y: number, yF32: boolean): void {
    const c = this.c, b = this.w.layers[l].proj[p], N = this.B * this.T;
    c.cublasGemmBf16(false, true, N, b.out, b.in, x, this.weight(l, p), y, 1, 0, yF32); this.tick('gemm base');
  }

  /** The bf16 W[out, in] of a projection: dense as is, packed dequantized into the shared scratch. */
  private weight(l: number, p: Projection): number {
    const b = this.w.layers[l].proj[p];
    if (b.kind === 'dense') return b.w;
    if (this.scratchHolds !== b.q) { this.c.cudaDequantBf16(b.q.desc, this.scratch); this.tick('dequant'); this.scratchHolds = b.q; }
    return this.scratch;
  }

  /** dx[N, in] (overwritten, or += when acc) = dy·Ŵ (no weight gradient: the base is frozen). */
  private baseBwd(l: number, p: Projection, dy: number, dx: number, acc: boolean, dxF32: boolean): void {
    const c = this.c, b = this.w.layers[l].proj[p], N = this.B * this.T;
    c.cublasGemmBf16(false, false, N, b.in, b.out, dy, this.weight(l, p), dx, 1, acc ? 1 : 0, dxF32); this.tick('gemm base');
  }

  /** C[M, Nc] (ldc, at element cOff) = alpha·A[M, K]·op(B) + beta·C: split-K when K is long, else one GEMM. */
  private skinny(tb: boolean, M: number, Nc: number, K: number, A: number, lda: number, B: number, bOff: number, ldb: number,
    C: number, cOff: number, ldc: number, alpha: number, beta: number, cF32: boolean): void {
    const s = this.splitK ? splitsFor(K) : 1;
    if (s > 1) this.c.cublasGemmBf16SplitK(tb, M, Nc, K, A, 0, lda, B, bOff, ldb, C, cOff, ldc, alpha, beta, cF32, s, this.h.splitk);
    else this.c.cublasGemmBf16Ex(false, tb, M, Nc, K, A, 0, lda, B, bOff, ldb, C, cOff, ldc, alpha, beta, cF32);
  }

  /**
   * Projections ps of layer l reading the same x: ys[i] = x·Ŵᵢᵀ + sᵢ·(x·Aᵢᵀ)·Bᵢᵀ. The adapters' x·Aᵀ of a group is
   * one GEMM against their adjacent A's ([Σr, in]), kept as t [N, Σr] for the backward.
   */
  private groupFwd(l: number, ps: Projection[], x: number, ys: number[], f32s: boolean[]): void {
    this.groupFwdCore(l, ps, x, ys, f32s);
    if (this.siteTapFn) ps.forEach((p, i) => this.siteTapFn!(l, p, x, ys[i], f32s[i]));
  }

  /**
   * The forward of the uploaded ids with `tap` seeing every projection's input x (bf16 [B·T, in]) and finished output y
   * (base + adapter; f32 or bf16 [B·T, out] as yF32 says) right after it is computed — the linear-scope objective's
   * hook. Device work only.
   */
  forwardWithSiteTap(tap: SiteTap): void {
    this.siteTapFn = tap;
    try { this.forwardDevice(); } finally { this.siteTapFn = null; }
  }
  private siteTapFn: SiteTap | null = null;

  /** One adapter's ∂B += s·dyᵀ·t and u = s·dy·B (columns o .. o + r of t and u, both [N, R]). */
  private siteBGrads(st: GpuLoraSite, dy: number, t: number, o: number, R: number, u: number): void {
    const N = this.B * this.T;
    this.c.cublasGemmBf16Ex(true, false, st.out, st.r, N, dy, 0, st.out, t, o, R, st.gB, 0, st.r, st.scale, 1, true);
    this.tick('lora ∂B');
    this.skinny(false, N, st.r, st.out, dy, st.out, st.Bb, 0, st.r, u, o, R, st.scale, 0, false);
    this.tick('lora u = dy·B');
  }

  /**
   * The adapter gradients of ONE projection from its own output gradient dy (bf16 [B·T, out]) and input x (the forward's,
   * whose t = x·Aᵀ is still held): ∂B += s·dyᵀ·t, ∂A += (s·dy·B)ᵀ·x — no gradient flows to x (the linear scope).
   */
  siteBackward(l: number, p: Projection, dy: number, x: number): void {
    const c = this.c, N = this.B * this.T, lora = this.lora, u = this.h.u;
    if (!lora) return;
    const g = groupsOf(lora, l, this.grouped).find((gg) => gg.includes(p));
    if (!g) return;
    const sites = g.map((q) => lora.at(l, q)!), R = sites.reduce((a, st) => a + st.r, 0), inF = sites[0].in;
    const i = g.indexOf(p), st = sites[i], o = sites.slice(0, i).reduce((a, q) => a + q.r, 0), t = this.tbuf(l, g[0]);
    this.siteBGrads(st, dy, t, o, R, u);
    c.cublasGemmBf16Ex(true, false, st.r, inF, N, u, o, R, x, 0, inF, lora.flat.G, st.offA, inF, 1, 1, true);  // ∂A += uᵀ·x
    this.tick('lora ∂A');
  }

  private groupFwdCore(l: number, ps: Projection[], x: number, ys: number[], f32s: boolean[]): void {
    const c = this.c, N = this.B * this.T, lora = this.lora;
    ps.forEach((p, i) => this.baseFwd(l, p, x, ys[i], f32s[i]));
    if (!lora) return;
    for (const g of groupsOf(lora, l, this.grouped)) {
      if (!ps.includes(g[0])) continue;
      const sites = g.map((p) => lora.at(l, p)!), R = sites.reduce((a, s) => a + s.r, 0), inF = sites[0].in;
      const t = this.tbuf(l, g[0]);
      this.skinny(true, N, R, inF, x, inF, lora.flat.PB, sites[0].offA, inF, t, 0, R, 1, 0, false);
      this.tick('lora t = x·Aᵀ');
      let o = 0;
      sites.forEach((s, i) => {
        const k = ps.indexOf(g[i]);
        c.cublasGemmBf16Ex(false, true, N, s.out, s.r, t, o, R, s.Bb, 0, s.r, ys[k], 0, s.out, s.scale, 1, f32s[k]);
        o += s.r;
        this.tick('lora y += t·Bᵀ');
      });
    }
  }

  /** dx (f32 or bf16; overwritten, or += when acc) = Σᵢ dyᵢ·Ŵᵢ + adapters; the adapters' ∂A, ∂B accumulate. */
  private groupBwd(l: number, ps: Projection[], dys: number[], x: number, dx: number, acc: boolean, dxF32 = true): void {
    const c = this.c, N = this.B * this.T, lora = this.lora, u = this.h.u;
    ps.forEach((p, i) => this.baseBwd(l, p, dys[i], dx, i === 0 ? acc : true, dxF32));
    if (!lora) return;
    for (const g of groupsOf(lora, l, this.grouped)) {
      if (!ps.includes(g[0])) continue;
      const sites = g.map((p) => lora.at(l, p)!), R = sites.reduce((a, s) => a + s.r, 0), inF = sites[0].in;
      const t = this.tbuf(l, g[0]);
      let o = 0;
      sites.forEach((s, i) => {
        this.siteBGrads(s, dys[ps.indexOf(g[i])], t, o, R, u);
        o += s.r;
      });
      c.cublasGemmBf16Ex(true, false, R, inF, N, u, 0, R, x, 0, inF, lora.flat.G, sites[0].offA, inF, 1, 1, true);   // ∂A += uᵀ·x
      this.tick('lora ∂A');
      c.cublasGemmBf16Ex(false, false, N, inF, R, u, 0, R, lora.flat.PB, sites[0].offA, inF, dx, 0, inF, 1, 1, dxF32); // dx += u·A
      this.tick('lora dx += u·A');
    }
  }

  /** Backward from ∂L/∂hidden in h.dH (f32) through every block; adapter gradients accumulate. */
  backward(): void {
    const cfg = this.config, h = this.h, c = this.c, L = cfg.numLayers, N = this.B * this.T, D = cfg.hiddenSize;
    c.cudaMemset0(h.dres, N * D * 4);
    c.cudaRmsnormBwd(h.dres, h.dH, h[`resid${L}`], this.w.finalNorm, h.rstdf, N, D); this.tick('rmsnorm');
    for (let l = L - 1; l >= 0; l--) this.backwardBlock(l);
  }

  /** The residual stream entering block l (l = numLayers: the last block's output), f32 [B·T, D]. */
  residual(l: number): number { return this.h[`resid${l}`]; }

  /**
   * Block l alone, forward, from residual(l) into residual(l + 1) — the layer-scope objective runs each block on the
   * teacher's input to it (copied into residual(l) first). Device work only.
   */
  forwardBlock(l: number): void { this.block(l); }

  /** Zero ∂L/∂(block output), then with grad add gradScale·2(residual(l) − target)/(B·T·D); loss[slot] += Σ(…)². */
  mseResidual(l: number, target: number, grad: boolean, gradScale: number, slot = 0): void {
    const h = this.h, n = this.B * this.T * this.config.hiddenSize;
    if (grad) this.c.cudaMemset0(h.dres, n * 4);
    this.mseInto(h[`resid${l}`], target, grad ? h.dres : null, n, gradScale, slot);
  }

  /** loss[slot] += Σ(a − target)² over n f32 values; with dA, dA += gradScale·2(a − target)/n. Device work only. */
  mseInto(a: number, target: number, dA: number | null, n: number, gradScale: number, slot = 0): void {
    this.c.cudaMseF32(a, target, dA, this.lossView(slot), n, gradScale); this.tick('loss');
  }

  /** Backward through block l: ∂L/∂(its output) in h.dres → ∂L/∂(its input) in h.dres; adapter gradients accumulate. */
  backwardBlock(l: number): void {
    const cfg = this.config, h = this.h, c = this.c;
    const B = this.B, T = this.T, N = B * T, D = cfg.hiddenSize, I = cfg.intermediateSize, KV = cfg.numKvHeads * cfg.headDim;
    const hd = cfg.headDim, Hq = cfg.numHeads, Hkv = cfg.numKvHeads;
    const w = this.w.layers[l];
    if (this.recompute) this.block(l);  // this layer's activations, again, from its kept input
    // MLP: out = mid + down(silu(gate(ln2)) · up(ln2))
    c.cudaCastF32ToBf16Scaled(h.dresB, h.dres, N * D, 1); this.tick('add/cast');
    c.cudaSwigluFwd(this.la('gate', l), this.la('up', l), h.act, N * I); this.tick('swiglu');  // recompute the down_proj input
    this.groupBwd(l, ['down_proj'], [h.dresB], h.act, h.dactB, false, false);  // bf16: it feeds the SwiGLU backward
    c.cudaSwigluBwd(h.dactB, this.la('gate', l), this.la('up', l), h.dgate, h.dup, N * I); this.tick('swiglu');
    this.groupBwd(l, ['gate_proj', 'up_proj'], [h.dgate, h.dup], this.la('ln2', l), h.dln, false);
    c.cudaRmsnormBwd(h.dres, h.dln, this.la('mid', l), w.postNorm, this.la('rstd2', l), N, D); this.tick('rmsnorm');
    // attention: mid = x + o(attn(rope(q(ln1)), rope(k(ln1)), v(ln1)))
    c.cudaCastF32ToBf16Scaled(h.dresB, h.dres, N * D, 1); this.tick('add/cast');
    this.groupBwd(l, ['o_proj'], [h.dresB], this.la('att', l), h.dattB, false, false);  // bf16: it feeds the attention backward
    c.cudaAttnBwd(h.dattB, this.la('q', l), this.la('k', l), this.la('v', l), this.la('att', l), this.la('lse', l), h.dq, h.dk, h.dv, B, T, T, Hq, Hkv, hd); this.tick('attention');
    c.cudaRopeBwd(h.dq, h.dqB, h.cos, h.sin, B, T, Hq, hd);
    c.cudaRopeBwd(h.dk, h.dkB, h.cos, h.sin, B, T, Hkv, hd); this.tick('rope');
    c.cudaCastF32ToBf16Scaled(h.dvB, h.dv, N * KV, 1); this.tick('add/cast');
    this.groupBwd(l, ['q_proj', 'k_proj', 'v_proj'], [h.dqB, h.dkB, h.dvB], this.la('ln1', l), h.dln, false);
    c.cudaRmsnormBwd(h.dres, h.dln, h[`resid${l}`], w.inputNorm, this.la('rstd1', l), N, D); this.tick('rmsnorm');
  }

  /** Reset the device loss accumulators (h.loss[0..3]) and, with grad, ∂L/∂hidden. */
  beginLoss(grad: boolean): void {
    this.c.cudaMemset0(this.h.loss);
    if (grad) this.c.cudaMemset0(this.h.dH);
  }

  /** loss[slot] += Σ(hidden − teacher)² over N·D; with grad, dH += gradScale·2(hidden − teacher)/(N·D). */
  mseToTeacher(teacher: Float32Array | null, grad: boolean, gradScale: number, slot = 0): void {
    const h = this.h, n = this.B * this.T * this.config.hiddenSize;
    if (teacher) this.setTeacher(teacher);
    this.mseInto(h.lnfF, h.teacher, grad ? h.dH : null, n, gradScale, slot);
  }

  /** Upload the teacher hidden [B·T, D] (mseToTeacher(null, …) then reuses it). */
  setTeacher(teacher: Float32Array): void {
    const n = this.B * this.T * this.config.hiddenSize;
    if (teacher.length < n) throw new LowbitError(`GpuLlama: teacher hidden has ${teacher.length} values, need ${n}`);
    this.c.cudaUpload(this.h.teacher, teacher.subarray(0, n));
  }

  /**
   * Chunked lm_head + cross-entropy of targets [B·T] (<0 ignored): loss[slot] += Σ CE; with grad,
   * dH += scale·∂CE/∂hidden (scale already divided by the count, as crossEntropyFused). Returns the count.
   */
  lmHeadCe(targets: Int32Array, grad: boolean, scale: number, slot = 1): number {
    const count = this.setTargets(targets);
    this.lmHeadCeDevice(grad, scale, slot);
    return count;
  }

  /** Validate and upload targets [B·T]; returns how many are counted (≥ 0). */
  setTargets(targets: Int32Array): number {
    const cfg = this.config, N = this.B * this.T;
    let count = 0;
    for (let i = 0; i < N; i++) {
      if (targets[i] >= cfg.vocabSize) throw new LowbitError(`GpuLlama: target ${targets[i]} outside the vocabulary`);
      if (targets[i] >= 0) count++;
    }
    this.c.cudaUpload(this.h.targets, targets.subarray(0, N));
    return count;
  }

  /** The lm_head + CE of the uploaded targets: device work only (capturable). */
  lmHeadCeDevice(grad: boolean, scale: number, slot = 1): void {
    const cfg = this.config, h = this.h, N = this.B * this.T;
    this.c.cudaLmHeadCe(h.lnf, this.w.lmHead, h.targets, grad ? h.dH : null, this.lossView(slot), N, cfg.hiddenSize, cfg.vocabSize,
      scale, Math.min(this.chunkRows, N), h.ceLogits, h.ceDlogits);
    this.tick('lm_head + CE');
  }

  /**
   * LREC's loss on the uploaded targets and teacher hidden (setTargets, setTeacher), chunked: student logits through
   * the student lm_head, teacher logits through `teacherHead` (bf16 [V, D]; may be w.lmHead), loss[klSlot] += Σ rows'
   * KL(teacher‖student), loss[ceSlot] += Σ CE (targets ≥ 0); with grad, dH += ∂(klScale·KL + ceScale·CE)/∂hidden
   * (ceScale already divided by the count). Device work only (capturable). Needs the constructor's { distill: true }.
   */
  lmHeadKlCeDevice(teacherHead: number, grad: boolean, klScale: number, ceScale: number, klSlot = 0, ceSlot = 1): void {
    if (!this.distill) throw new Error('GpuLlama: lmHeadKlCe needs the model built with { distill: true }');
    const cfg = this.config, h = this.h, N = this.B * this.T, D = cfg.hiddenSize;
    this.c.cudaCastF32ToBf16Scaled(h.teacherB, h.teacher, N * D, 1);
    this.c.cudaLmHeadKlCe(h.lnf, this.w.lmHead, h.teacherB, teacherHead, h.targets, grad ? h.dH : null, this.lossView(klSlot),
      this.lossView(ceSlot), N, D, cfg.vocabSize, klScale, ceScale, Math.min(this.chunkRows, N), h.ceLogits, h.klTeacherLogits,
      grad ? h.ceDlogits : null);
    this.tick('lm_head + KL/CE');
  }

  /** lmHeadKlCeDevice after uploading targets [B·T] (< 0 ignored) and the teacher hidden [B·T, D]; returns the count. */
  lmHeadKlCe(targets: Int32Array, teacher: Float32Array, teacherHead: number, grad: boolean, klScale: number, ceScale: number,
    klSlot = 0, ceSlot = 1): number {
    const count = this.setTargets(targets);
    this.setTeacher(teacher);
    this.lmHeadKlCeDevice(teacherHead, grad, klScale, ceScale, klSlot, ceSlot);
    return count;
  }

  /** The four loss accumulators (one sync). */
  readLoss(): Float32Array {
    const o = new Float32Array(4);
    this.c.cudaDownload(this.h.loss, o);
    return o;
  }

  private lossViews: number[] = [];
  private lossView(slot: number): number {
    if (!this.lossViews[slot]) this.lossViews[slot] = this.c.cudaView(this.h.loss, slot * 4, 4);
    return this.lossViews[slot];
  }

  /** logits [B·T, V] (f32, downloaded) of the last forward. */
  logits(): Float32Array {
    const cfg = this.config, N = this.B * this.T, V = cfg.vocabSize;
    const out = new Float32Array(N * V), hbuf = this.c.cudaAlloc(N * V * 4);
    try {
      this.c.cublasGemmBf16(false, true, N, V, cfg.hiddenSize, this.h.lnf, this.w.lmHead, hbuf, 1, 0, true);
      this.c.cudaDownload(hbuf, out);
    } finally { this.c.cudaFree(hbuf); }
    return out;
  }

  /** Download a named activation as f32 (bf16 ones widened). */
  read(name: string, n: number, bf16 = false): Float32Array {
    if (!bf16) { const o = new Float32Array(n); this.c.cudaDownload(this.h[name], o); return o; }
    const b = new Uint16Array(n);
    this.c.cudaDownload(this.h[name], b);
    return bf16ToF32(b);
  }

  free(): void {
    for (const v of this.lossViews.splice(0)) if (v) this.c.cudaFree(v);
    this.arena?.free();
    this.arena = null;
    this.c.cudaFree(this.scratch);
  }
}
