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
import type { GpuLora } from './gpu-lora.js';
import { LowbitError } from '../../io/errors.js';

type Named = Record<string, Slot>;

/** Every tensor a forward+backward of B×T tokens touches, by name and size: THE one place they are sized. */
function actSlots(c: LlamaConfig, B: number, T: number, lora: GpuLora | null, chunkRows: number): Named {
  const N = B * T, D = c.hiddenSize, Q = c.numHeads * c.headDim, KV = c.numKvHeads * c.headDim, I = c.intermediateSize;
  const L = c.numLayers, V = c.vocabSize, half = c.headDim / 2;
  const s: Named = {
    ids: { n: N, t: 'i32' }, targets: { n: N, t: 'i32' }, cos: { n: T * half, t: 'f32' }, sin: { n: T * half, t: 'f32' },
    // forward scratch shared by the layers
    qf: { n: N * Q, t: 'f32' }, kf: { n: N * KV, t: 'f32' }, tmpD: { n: N * D, t: 'f32' },
    lnf: { n: N * D, t: 'bf16' }, lnfF: { n: N * D, t: 'f32' }, rstdf: { n: N, t: 'f32' },
    // backward scratch shared by the layers
    dH: { n: N * D, t: 'f32' }, dres: { n: N * D, t: 'f32' }, dresB: { n: N * D, t: 'bf16' }, dln: { n: N * D, t: 'f32' },
    act: { n: N * I, t: 'bf16' }, dactF: { n: N * I, t: 'f32' }, dactB: { n: N * I, t: 'bf16' },
    dgate: { n: N * I, t: 'bf16' }, dup: { n: N * I, t: 'bf16' },
    dattF: { n: N * Q, t: 'f32' }, dattB: { n: N * Q, t: 'bf16' },
    dq: { n: N * Q, t: 'f32' }, dk: { n: N * KV, t: 'f32' }, dv: { n: N * KV, t: 'f32' },
    dqB: { n: N * Q, t: 'bf16' }, dkB: { n: N * KV, t: 'bf16' }, dvB: { n: N * KV, t: 'bf16' },
    u: { n: N * Math.max(1, lora?.maxRank ?? 1), t: 'bf16' },
    // losses and the chunked lm_head scratch
    teacher: { n: N * D, t: 'f32' }, loss: { n: 4, t: 'f32' },
    ceLogits: { n: chunkRows * V, t: 'f32' }, ceDlogits: { n: chunkRows * V, t: 'bf16' },
  };
  for (let l = 0; l <= L; l++) s[`resid${l}`] = { n: N * D, t: 'f32' };
  for (let l = 0; l < L; l++) {
    // kept for backward (the SwiGLU product is recomputed there instead of kept)
    s[`ln1_${l}`] = { n: N * D, t: 'bf16' }; s[`rstd1_${l}`] = { n: N, t: 'f32' };
    s[`q_${l}`] = { n: N * Q, t: 'bf16' }; s[`k_${l}`] = { n: N * KV, t: 'bf16' }; s[`v_${l}`] = { n: N * KV, t: 'bf16' };
    s[`att_${l}`] = { n: N * Q, t: 'bf16' }; s[`lse_${l}`] = { n: B * c.numHeads * T, t: 'f32' };
    s[`mid_${l}`] = { n: N * D, t: 'f32' }; s[`ln2_${l}`] = { n: N * D, t: 'bf16' }; s[`rstd2_${l}`] = { n: N, t: 'f32' };
    s[`gate_${l}`] = { n: N * I, t: 'bf16' }; s[`up_${l}`] = { n: N * I, t: 'bf16' };
  }
  if (lora) for (const x of lora.sites) s[`t_${x.layer}_${x.proj}`] = { n: N * x.r, t: 'bf16' }; // x·Aᵀ, kept for ∂B
  return s;
}

export interface GpuLossParts { mse: number; ceSum: number; ceCount: number }

export class GpuLlama {
  readonly config: LlamaConfig;
  private arena: DeviceArena<string> | null = null;
  private B = 0;
  private T = 0;
  private readonly scratch: number;
  private readonly invFreq: Float64Array;
  readonly chunkRows: number;

  constructor(readonly c: GpuEngine, readonly w: GpuWeights, readonly lora: GpuLora | null = null) {
    this.config = w.config;
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
    this.arena = new DeviceArena(this.c, actSlots(this.config, B, T, this.lora, Math.min(this.chunkRows, B * T)));
    this.B = B; this.T = T;
    const half = this.config.headDim / 2, cos = new Float32Array(T * half), sin = new Float32Array(T * half);
    ropeTables(cos, sin, this.invFreq, 0, T);
    this.c.cudaUpload(this.h.cos, cos);
    this.c.cudaUpload(this.h.sin, sin);
  }

  /** Forward of ids [B·T] → final post-norm hidden in h.lnf (bf16, the lm_head input) and h.lnfF (f32). */
  forward(ids: Int32Array, B: number, T: number): void {
    const cfg = this.config, N = B * T;
    if (ids.length < N) throw new LowbitError(`GpuLlama: ${ids.length} ids for B=${B} × T=${T}`);
    for (let i = 0; i < N; i++) if (!(ids[i] >= 0 && ids[i] < cfg.vocabSize)) throw new LowbitError(`GpuLlama: token id ${ids[i]} at ${i} outside the vocabulary [0, ${cfg.vocabSize})`);
    this.prepare(B, T);
    const h = this.h, c = this.c;
    c.cudaUpload(h.ids, ids.subarray(0, N));
    c.cudaEmbedding(h.ids, this.w.embed, h.resid0, N, cfg.hiddenSize, cfg.vocabSize, true);
    for (let l = 0; l < cfg.numLayers; l++) this.block(l);
    c.cudaRmsnormFwd(h[`resid${cfg.numLayers}`], this.w.finalNorm, h.lnf, h.lnfF, h.rstdf, N, cfg.hiddenSize, cfg.rmsNormEps);
  }

  private block(l: number): void {
    const cfg = this.config, h = this.h, c = this.c, w = this.w.layers[l];
    const B = this.B, T = this.T, N = B * T, D = cfg.hiddenSize, I = cfg.intermediateSize;
    const hd = cfg.headDim, Hq = cfg.numHeads, Hkv = cfg.numKvHeads, eps = cfg.rmsNormEps;
    const x = h[`resid${l}`], mid = h[`mid_${l}`], ln1 = h[`ln1_${l}`], ln2 = h[`ln2_${l}`];
    c.cudaRmsnormFwd(x, w.inputNorm, ln1, null, h[`rstd1_${l}`], N, D, eps);
    this.linFwd(l, 'q_proj', ln1, h.qf, true);
    this.linFwd(l, 'k_proj', ln1, h.kf, true);
    this.linFwd(l, 'v_proj', ln1, h[`v_${l}`], false);
    c.cudaRopeFwd(h.qf, h[`q_${l}`], h.cos, h.sin, B, T, Hq, hd);
    c.cudaRopeFwd(h.kf, h[`k_${l}`], h.cos, h.sin, B, T, Hkv, hd);
    c.cudaAttnFwd(h[`q_${l}`], h[`k_${l}`], h[`v_${l}`], h[`att_${l}`], h[`lse_${l}`], B, T, T, Hq, Hkv, hd);
    this.linFwd(l, 'o_proj', h[`att_${l}`], h.tmpD, true);
    c.cudaAddF32(mid, x, h.tmpD, N * D);
    c.cudaRmsnormFwd(mid, w.postNorm, ln2, null, h[`rstd2_${l}`], N, D, eps);
    this.linFwd(l, 'gate_proj', ln2, h[`gate_${l}`], false);
    this.linFwd(l, 'up_proj', ln2, h[`up_${l}`], false);
    c.cudaSwigluFwd(h[`gate_${l}`], h[`up_${l}`], h.act, N * I);
    this.linFwd(l, 'down_proj', h.act, h.tmpD, true);
    c.cudaAddF32(h[`resid${l + 1}`], mid, h.tmpD, N * D);
  }

  /** y[N, out] = x[N, in]·Ŵᵀ (+ s·(x·Aᵀ)·Bᵀ); x bf16, y f32 or bf16. */
  private linFwd(l: number, p: Projection, x: number, y: number, yF32: boolean): void {
    const c = this.c, b = this.w.layers[l].proj[p], N = this.B * this.T;
    if (b.kind === 'quant') c.cudaQGemm(b.q.desc, N, x, y, yF32, this.scratch);
    else c.cublasGemmBf16(false, true, N, b.out, b.in, x, b.w, y, 1, 0, yF32);
    const s = this.lora?.at(l, p);
    if (s) {
      const t = this.h[`t_${l}_${p}`];
      c.cublasGemmBf16(false, true, N, s.r, b.in, x, s.Ab, t, 1, 0, false);
      c.cublasGemmBf16(false, true, N, b.out, s.r, t, s.Bb, y, s.scale, 1, yF32);
    }
  }

  /** dx[N, in] (f32; overwritten, or += when acc) = dy·Ŵ (+ s·(dy·B)·A), and the adapter's ∂A, ∂B accumulate. */
  private linBwd(l: number, p: Projection, dy: number, x: number, dx: number, acc: boolean): void {
    const c = this.c, b = this.w.layers[l].proj[p], N = this.B * this.T;
    let W = this.scratch;
    if (b.kind === 'quant') c.cudaDequantBf16(b.q.desc, this.scratch); else W = b.w;
    c.cublasGemmBf16(false, false, N, b.in, b.out, dy, W, dx, 1, acc ? 1 : 0, true);
    const s = this.lora?.at(l, p);
    if (s) {
      const t = this.h[`t_${l}_${p}`], u = this.h.u;
      c.cublasGemmBf16(true, false, b.out, s.r, N, dy, t, s.gB, s.scale, 1, true);  // ∂B += s·dyᵀ·t
      c.cublasGemmBf16(false, false, N, s.r, b.out, dy, s.Bb, u, s.scale, 0, false); // u = s·dy·B
      c.cublasGemmBf16(true, false, s.r, b.in, N, u, x, s.gA, 1, 1, true);           // ∂A += uᵀ·x
      c.cublasGemmBf16(false, false, N, b.in, s.r, u, s.Ab, dx, 1, 1, true);         // dx += u·A
    }
  }

  /** Backward from ∂L/∂hidden in h.dH (f32) through every block; adapter gradients accumulate. */
  backward(): void {
    const cfg = this.config, h = this.h, c = this.c, L = cfg.numLayers;
    const B = this.B, T = this.T, N = B * T, D = cfg.hiddenSize, I = cfg.intermediateSize, Q = cfg.numHeads * cfg.headDim, KV = cfg.numKvHeads * cfg.headDim;
    const hd = cfg.headDim, Hq = cfg.numHeads, Hkv = cfg.numKvHeads;
    c.cudaMemset0(h.dres, N * D * 4);
    c.cudaRmsnormBwd(h.dres, h.dH, h[`resid${L}`], this.w.finalNorm, h.rstdf, N, D);
    for (let l = L - 1; l >= 0; l--) {
      const w = this.w.layers[l];
      // MLP: out = mid + down(silu(gate(ln2)) · up(ln2))
      c.cudaCastF32ToBf16Scaled(h.dresB, h.dres, N * D, 1);
      c.cudaSwigluFwd(h[`gate_${l}`], h[`up_${l}`], h.act, N * I);  // recompute the down_proj input
      this.linBwd(l, 'down_proj', h.dresB, h.act, h.dactF, false);
      c.cudaCastF32ToBf16Scaled(h.dactB, h.dactF, N * I, 1);
      c.cudaSwigluBwd(h.dactB, h[`gate_${l}`], h[`up_${l}`], h.dgate, h.dup, N * I);
      this.linBwd(l, 'gate_proj', h.dgate, h[`ln2_${l}`], h.dln, false);
      this.linBwd(l, 'up_proj', h.dup, h[`ln2_${l}`], h.dln, true);
      c.cudaRmsnormBwd(h.dres, h.dln, h[`mid_${l}`], w.postNorm, h[`rstd2_${l}`], N, D);
      // attention: mid = x + o(attn(rope(q(ln1)), rope(k(ln1)), v(ln1)))
      c.cudaCastF32ToBf16Scaled(h.dresB, h.dres, N * D, 1);
      this.linBwd(l, 'o_proj', h.dresB, h[`att_${l}`], h.dattF, false);
      c.cudaCastF32ToBf16Scaled(h.dattB, h.dattF, N * Q, 1);
      c.cudaAttnBwd(h.dattB, h[`q_${l}`], h[`k_${l}`], h[`v_${l}`], h[`att_${l}`], h[`lse_${l}`], h.dq, h.dk, h.dv, B, T, T, Hq, Hkv, hd);
      c.cudaRopeBwd(h.dq, h.dqB, h.cos, h.sin, B, T, Hq, hd);
      c.cudaRopeBwd(h.dk, h.dkB, h.cos, h.sin, B, T, Hkv, hd);
      c.cudaCastF32ToBf16Scaled(h.dvB, h.dv, N * KV, 1);
      this.linBwd(l, 'q_proj', h.dqB, h[`ln1_${l}`], h.dln, false);
      this.linBwd(l, 'k_proj', h.dkB, h[`ln1_${l}`], h.dln, true);
      this.linBwd(l, 'v_proj', h.dvB, h[`ln1_${l}`], h.dln, true);
      c.cudaRmsnormBwd(h.dres, h.dln, h[`resid${l}`], w.inputNorm, h[`rstd1_${l}`], N, D);
    }
  }

  /** Reset the device loss accumulators (h.loss[0..3]) and, with grad, ∂L/∂hidden. */
  beginLoss(grad: boolean): void {
    this.c.cudaMemset0(this.h.loss);
    if (grad) this.c.cudaMemset0(this.h.dH);
  }

  /** loss[slot] += Σ(hidden − teacher)² over N·D; with grad, dH += gradScale·2(hidden − teacher)/(N·D). */
  mseToTeacher(teacher: Float32Array, grad: boolean, gradScale: number, slot = 0): void {
    const h = this.h, n = this.B * this.T * this.config.hiddenSize;
    if (teacher.length < n) throw new LowbitError(`GpuLlama: teacher hidden has ${teacher.length} values, need ${n}`);
    this.c.cudaUpload(h.teacher, teacher.subarray(0, n));
    this.c.cudaMseF32(h.lnfF, h.teacher, grad ? h.dH : null, this.lossView(slot), n, gradScale);
  }

  /**
   * Chunked lm_head + cross-entropy of targets [B·T] (<0 ignored): loss[slot] += Σ CE; with grad,
   * dH += scale·∂CE/∂hidden (scale already divided by the count, as crossEntropyFused). Returns the count.
   */
  lmHeadCe(targets: Int32Array, grad: boolean, scale: number, slot = 1): number {
    const cfg = this.config, h = this.h, N = this.B * this.T;
    let count = 0;
    for (let i = 0; i < N; i++) {
      if (targets[i] >= cfg.vocabSize) throw new LowbitError(`GpuLlama: target ${targets[i]} outside the vocabulary`);
      if (targets[i] >= 0) count++;
    }
    this.c.cudaUpload(h.targets, targets.subarray(0, N));
    this.c.cudaLmHeadCe(h.lnf, this.w.lmHead, h.targets, grad ? h.dH : null, this.lossView(slot), N, cfg.hiddenSize, cfg.vocabSize,
      scale, Math.min(this.chunkRows, N), h.ceLogits, h.ceDlogits);
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
    const b = new Uint16Array(n); this.c.cudaDownload(this.h[name], b);
    const u = new Uint32Array(n); for (let i = 0; i < n; i++) u[i] = b[i] << 16;
    return new Float32Array(u.buffer);
  }

  free(): void {
    for (const v of this.lossViews.splice(0)) if (v) this.c.cudaFree(v);
    this.arena?.free();
    this.arena = null;
    this.c.cudaFree(this.scratch);
  }
}
