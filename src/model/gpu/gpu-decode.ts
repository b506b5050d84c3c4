// Batch-1 KV-cached decoding on the GPU: one token at a time through the packed base with the fused low-bit
// GEMV (codes read directly, never dequantized to memory), the LoRA kept UNMERGED (t = A·x, y += (s·B)·t as
// two skinny bf16 GEMVs), K/V appended to a bf16 cache and attended by the flash kernel with Tq = 1.
// Shapes the fused GEMV does not take (in or group not a multiple of 32, act-order gIdx) fall back to
// dequantize + cuBLAS with M = 1. Prefill runs the prompt through the same step, token by token.
import { PROJECTIONS as PROJ, type Projection } from '../config.js';
import { ropeInvFreq, ropeTables } from '../ops/rope.js';
import { DeviceArena, type Slot } from './arena.js';
import type { GpuEngine } from './engine.js';
import type { GpuBase, GpuWeights } from './device-weights.js';
import type { GpuLora } from './gpu-lora.js';
import { LowbitError } from '../../io/errors.js';
import { Rng } from '../../tensor.js';
import { sampleToken } from '../sampling.js';
import type { GenerateOptions } from '../generate.js';
import { decodeSegRanges, type DecodePrefetch, type DecodeSeg } from '../../backend/cuda-decode.js';
import { INT8X_CHAIN_SYNC_WORDS, INT8X_T_UNSET, int8xScratchBytes, type Int8xChainGemvPhase, type Int8xChainPhase, type NativeCudaInt8x } from '../../backend/cuda-int8x.js';

/**
 * One int8-x GEMV launch of the kernel-8 plan: the projections reading one x, their int8-x words and scale|zero rows
 * concatenated (each out is a multiple of 16, so the tiles of one are the tiles of the whole), y f32 [Σout], and the
 * adapters' A rows (bf16 [R, in], adjacent in the flat LoRA vector) writing t f32 [R] in the same launch.
 */
interface Int8xGemv {
  words: number; sz: number; out: number; in: number; y: number; A: number | null; R: number; t: number; ks: number; parts: number;
  /** The per-tile kernel's split K and parts, kept while the streamed kernel (streamGemv) runs this GEMV; szT: its
   * scale|zero words tile-blocked (made on the first streamGemv = true). */
  tiled: { ks: number; parts: number }; szT: number | null;
  /** B·t added in this GEMV's own epilogue (its projections' scaled B, their row ends, the rank, the A rows' counters). */
  bt: { Bs: number[]; ends: number[]; r: number; sync: number } | null;
}
/** Per layer: the four launches and the hand-offs' B factors (s·B bf16 [out, r]) and t slices. */
interface Int8xLayer {
  qkv: Int8xGemv; o: Int8xGemv; gu: Int8xGemv; down: Int8xGemv;
  B: Record<Projection, number | null>; t: Record<Projection, number | null>;
  /** The four GEMVs' B·t counters, 8 bytes each in one buffer (q/k/v, o, gate/up, down), and views of [q/k/v, o] and
   * of each of the others: with zeroSync the preps zero them (parts & 256) instead of each GEMV's last tile block. */
  sync: { qkvO: number; gu: number; down: number } | null;
  /** The same split of the layer's t values (one buffer: q/k/v, o, gate/up, down; floats [4r, 2r, r]): with i8tval the
   * preps set them to the "not yet stored" mark instead of zeroing the counters (parts & 2048). */
  tset: { qkvO: number; gu: number; down: number } | null;
}

/** Per layer, the v4 path's launches: segments of the three GEMVs reading x (q/k/v, gate/up) and the o/down ones. */
interface V4Layer {
  qkv: DecodeSeg[]; o: DecodeSeg[]; gu: DecodeSeg[]; down: DecodeSeg[];
  /** per projection: scaled B (bf16), its t view, rank (null/0 without an adapter) */
  ad: Record<string, { B: number | null; t: number | null; r: number }>;
  /**
   * GEMV kernel 5 with everything folded in: each projection's LoRA B·t added in its own GEMV (t from the A segment of
   * the same launch), o and down accumulated straight into x (no residual kernels), the SwiGLU staged by the down
   * GEMV (no SwiGLU kernel); the q/k/v epilogue is left with RoPE and the cache rows.
   */
  fold: boolean;
  /** folded plan: per launch, the weights of the launch after it (prefetched into L2 while it runs; see prefetchNext) */
  pf: { qkv: DecodePrefetch[]; o: DecodePrefetch[]; gu: DecodePrefetch[]; down: DecodePrefetch[] };
}

/**
 * Warps a block of a streamed GEMV (its K slices): LOWBIT_INT8X_STREAM_WARPS is one count for every GEMV (8 by default)
 * or a list by GEMV, e.g. "o=16,down=16". Run 99's profile: o and down have 256 tiles, one a block, so at 8 warps their
 * 256 blocks leave a third of three blocks an SM empty; with 16 warps they take the per-tile plan's K slices (split K 16).
 */
function streamWarps(name: string): number {
  const e = process.env.LOWBIT_INT8X_STREAM_WARPS ?? '8';
  if (!e.includes('=')) return Number(e);
  for (const kv of e.split(',')) { const [k, v] = kv.split('='); if (k === name) return Number(v); }
  return 8;
}

export class GpuDecoder {
  private arena: DeviceArena<string>;
  private views: number[] = [];
  private cosAt: number[] = [];
  private sinAt: number[] = [];
  private kAt: number[][] = [];
  private vAt: number[][] = [];
  /** s·B in bf16 per adapted projection (the decode GEMV has no alpha) */
  private scaledB = new Map<string, number>();
  /** per layer, the adjacent A block of the q/k/v (gate/up) adapters and views of their slices of t */
  private groupA = new Map<string, { A: number; R: number; in: number; t: number[] }>();
  private readonly scratch: number;
  pos = 0;
  /**
   * GEMV variant for the packed projections: 4 = the fused decode path (decode.cu: one launch per group of projections
   * with their RMSNorm and LoRA A, tensor-core 2-bit GEMV, fused epilogues) where every projection qualifies ('int'
   * 2-bit with group % 64 == 0, or dense; widths multiples of 256), else 3 (v3, int 2/4-bit) falling back to v1.
   */
  variant: 0 | 1 | 2 | 3 | 4 = 4;
  /** the v4 GEMV's kernel configuration (see cudaDecodeGemv; LOWBIT_DGEMV_KERNEL); 5 folds the LoRA, residuals and SwiGLU in */
  readonly gemvKernel: number = Number(process.env.LOWBIT_DGEMV_KERNEL ?? 5);  // 5: codes streamed into shared memory by bulk copies (0: v4); 6: 5 in one persistent launch per token
  /**
   * Kernel 6: the folded plan's launches of all layers (kernel-5 GEMVs and the attention) recorded once as a persistent
   * plan (decode.cu decode_persist_kernel): one launch per token, a block per SM, grid-wide barriers between the phases,
   * each GEMV's first weights streamed before the barrier in front of it. null where the plan could not be built.
   */
  private persistPlan: number | null = null;
  /**
   * With the folded plan: RoPE, the cache rows and the attention in one kernel (cudaDecodeAttn: a block per head,
   * positions split over 8 warps) where the head dim is 64/128/256; else the q/k/v epilogue + the flash kernel.
   */
  get attnFused(): boolean { return [64, 128, 256].includes(this.w.config.headDim) && process.env.LOWBIT_DECODE_ATTN !== 'flash'; }
  /**
   * With the fused attention: it runs inside the o GEMV's kernel-5 launch (cudaDecodeAttnFoldNext) instead of a launch of
   * its own (device run 75, 7B shape: 391.6 vs 376.8 tok/s with the rank-64 adapter, 485.5 vs 459.9 without, same greedy
   * tokens). LOWBIT_DECODE_FOLD_ATTN=0: its own launch.
   */
  foldAttn = process.env.LOWBIT_DECODE_FOLD_ATTN !== '0';
  /** Kernel 8: each prep launch folded into the GEMV before it (i8fold; LOWBIT_INT8X_FOLD=1). Off by default: run 89
   * measured the fold 10–12 % slower than the prep launches it replaces (each tile block's count at its exit). */
  foldPrep = process.env.LOWBIT_INT8X_FOLD === '1';
  /** Kernel 8: the preps zero the next GEMVs' B·t counters instead of each GEMV's last tile block (i8zeroSync). On by
   * default since run 92 (H100: 408.8 vs 398.3 tok/s with the rank-64 adapter, 539.2 vs 539.1 without);
   * LOWBIT_INT8X_ZERO=tile: the last tile block out resets them. */
  zeroSync = process.env.LOWBIT_INT8X_ZERO !== 'tile';
  private streamOn = false;
  /**
   * Kernel 8 with streamed GEMVs: per layer the attention launch, then ONE launch (a cudaInt8xChainPlan) for o → gate/up →
   * down → the next layer's q/k/v with grid barriers between them, each block making the next GEMV's x̂ itself (the
   * residual add with RMSNorm, the SwiGLU), so no prep launches and one ring of weight copies across the four GEMVs:
   * 2 launches a layer instead of 8. LOWBIT_INT8X_CHAIN=1 (opt-in: run 100 measured it exact and 32 % slower than the
   * default, its x̂ and fold rate the cause, docs/cuda.md; it turns the streamed GEMVs on).
   */
  chain = process.env.LOWBIT_INT8X_CHAIN === '1';
  /**
   * The chain with the attention as its first phase (a block per query head; the ring streams o's weights meanwhile):
   * ONE launch a layer, attention → o → gate/up → down → the next q/k/v. LOWBIT_INT8X_CHAIN_ATTN=1 (with the chain;
   * opt-in; run 100: +3 % over the chain alone).
   */
  chainAttn = process.env.LOWBIT_INT8X_CHAIN_ATTN === '1';
  /**
   * With the attention in the chain: every layer's phases in ONE chain, a token in one launch after layer 0's prep and
   * q/k/v GEMV (no launch boundary between layers, so a layer's ring fills during the one before).
   * LOWBIT_INT8X_CHAIN_TOKEN=1 (opt-in; run 100: +1.6 % over the chain with the attention).
   */
  chainToken = process.env.LOWBIT_INT8X_CHAIN_TOKEN === '1';
  /**
   * The chain's x̂ made once a phase, by a prep phase before gate/up, down and the next q/k/v (a warp a group over the
   * grid, then a barrier), instead of by every block from the whole y (run 102: 4–16 µs a phase, 48–88 KB of L2 reads a
   * block). LOWBIT_INT8X_CHAIN_PREP=1 (with the chain; opt-in until measured on a GPU).
   */
  chainPrep = process.env.LOWBIT_INT8X_CHAIN_PREP === '1';
  /** the chains' device plans (cudaInt8xChainPlan ids) by warps, attention and token: made at the first step that runs them */
  private chainPlans = new Map<string, number[]>();
  /** the chain's counters (INT8X_CHAIN_SYNC_WORDS u32) and the residual's second buffer (the chain's residual phases write the other one) */
  private chainSync: number | null = null;
  private chainH: number | null = null;
  /** the v4 plan (null when the model does not qualify: then variant 4 runs as 3) */
  private v4: V4Layer[] | null = null;
  /**
   * Kernel 8: the int8-x plan (native/cuda/int8x_gemv.cu; docs/cuda.md "An int8 operand for x"): per layer a prep launch
   * in front of the q/k/v, gate/up and down GEMVs — the residual add of the previous GEMV's y, the RMSNorm's weights, the
   * SwiGLU, x rounded to int8 per 64 inputs — and the GEMVs on mma.m16n8k32 with the LoRA-A rows and B·t in their
   * launch; the attention (RoPE, cache rows) writes the o GEMV's int8 input itself (bodyInt8x). null when the model does
   * not qualify (int8xUnsupported) or another kernel was asked for.
   */
  private i8: Int8xLayer[] | null = null;
  private i8bufs: number[] = [];
  private i8scr: Record<'D' | 'Q' | 'I', number> | null = null;
  private i8cnt: number | null = null;
  /**
   * Folded plan: each GEMV launch prefetches the next GEMV launch's weights (codes, scale|zero words, LoRA A and B) into
   * L2, so HBM keeps streaming across the launch boundaries (the next launch's wait for its x, its staging and the
   * attention in between) and every GEMV reads its weights from L2. Off by default (LOWBIT_DECODE_PREFETCH=1: on): device
   * run 41 (H100, 7B shape, graphs) measured 338.0 tok/s with it vs 351.3 without (rank-64 adapter), 420.6 vs 417.0 without
   * an adapter — HBM is not idle across the launch boundaries the way this assumed.
   */
  prefetchNext = process.env.LOWBIT_DECODE_PREFETCH === '1';
  /**
   * Benchmarks only (wrong tokens by design): kernel 5's probe bits for the folded plan's GEMVs (cudaDecodeGemv probe 16·b;
   * bench/cuda-decode.mjs --v5probes), from LOWBIT_DECODE_V5_PROBE at construction. 0: none. Bits 64 and 128 stay on this
   * side: the folded plan leaves out each layer's attention launch (64) or its o GEMV launch (128) — upper bounds of what
   * folding that launch into a neighbour could save.
   */
  v5Probe = Number(process.env.LOWBIT_DECODE_V5_PROBE ?? 0) | 0;
  /** Folded plan: the GEMVs' own code copies with an L2 evict-first hint, so they do not push the prefetched data out (run 41: no change). */
  evictFirst = process.env.LOWBIT_DECODE_EVICT_FIRST === '1';
  private repacked: number[] = [];
  /**
   * Replay each position's token step as a CUDA graph (captured the first time that position is decoded after one
   * eager warm-up step, then reused by every later sequence): removes the ~1000 host launches per token.
   */
  useGraphs = false;
  private graphs: number[] = [];
  private greedyGraphs: number[] = [];
  private warm = false;
  /** seconds spent capturing + instantiating graphs so far */
  captureSeconds = 0;

  /** gemvKernel: see the field (fixed at construction: the plan depends on it). */
  constructor(readonly c: GpuEngine, readonly w: GpuWeights, readonly lora: GpuLora | null, readonly maxT: number, gemvKernel?: number) {
    if (gemvKernel !== undefined) this.gemvKernel = gemvKernel;
    const cfg = w.config, D = cfg.hiddenSize, I = cfg.intermediateSize, Q = cfg.numHeads * cfg.headDim, KV = cfg.numKvHeads * cfg.headDim;
    const half = cfg.headDim / 2, L = cfg.numLayers, R = Math.max(1, lora?.maxRank ?? 1);
    const s: Record<string, Slot> = {
      id: { n: 1, t: 'i32' }, ids: { n: maxT, t: 'i32' }, x: { n: D, t: 'f32' }, xn: { n: D, t: 'f32' }, xb: { n: Math.max(D, I, Q), t: 'bf16' },
      q: { n: Q, t: 'f32' }, k: { n: KV, t: 'f32' }, v: { n: KV, t: 'f32' }, qb: { n: Q, t: 'bf16' }, att: { n: Q, t: 'bf16' },
      attF: { n: Q, t: 'f32' }, tmp: { n: D, t: 'f32' }, gate: { n: I, t: 'f32' }, up: { n: I, t: 'f32' }, gateB: { n: I, t: 'bf16' },
      upB: { n: I, t: 'bf16' }, actB: { n: I, t: 'bf16' }, act: { n: I, t: 'f32' }, t: { n: 3 * R, t: 'f32' },
      lnf: { n: D, t: 'bf16' }, logits: { n: cfg.vocabSize, t: 'f32' }, cos: { n: maxT * half, t: 'f32' }, sin: { n: maxT * half, t: 'f32' },
      yb: { n: Math.max(D, I, Q), t: 'bf16' },
    };
    for (let l = 0; l < L; l++) { s[`kc${l}`] = { n: maxT * KV, t: 'bf16' }; s[`vc${l}`] = { n: maxT * KV, t: 'bf16' }; }
    this.arena = new DeviceArena(c, s);
    const h = this.arena.h, cos = new Float32Array(maxT * half), sin = new Float32Array(maxT * half);
    ropeTables(cos, sin, ropeInvFreq(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling), 0, maxT);
    c.cudaUpload(h.cos, cos); c.cudaUpload(h.sin, sin);
    for (let p = 0; p < maxT; p++) { this.cosAt.push(this.view(h.cos, p * half * 4, half * 4)); this.sinAt.push(this.view(h.sin, p * half * 4, half * 4)); }
    for (let l = 0; l < L; l++) {
      this.kAt.push([]); this.vAt.push([]);
      for (let p = 0; p < maxT; p++) { this.kAt[l].push(this.view(h[`kc${l}`], p * KV * 2, KV * 2)); this.vAt[l].push(this.view(h[`vc${l}`], p * KV * 2, KV * 2)); }
    }
    if (lora) for (const st of lora.sites) {
      const b = c.cudaAlloc(st.out * st.r * 2);
      const tmp = c.cudaAlloc(st.out * st.r * 4);
      c.cudaCopy(tmp, st.B, st.out * st.r * 4);
      c.cudaCastF32ToBf16Scaled(b, tmp, st.out * st.r, st.scale);
      c.cudaFree(tmp);
      this.scaledB.set(`${st.layer}.${st.proj}`, b);
    }
    if (lora) {
      for (let l = 0; l < L; l++) {
        for (const ps of [['q_proj', 'k_proj', 'v_proj'], ['gate_proj', 'up_proj']] as Projection[][]) {
          const g = lora.group(l, ps);
          if (!g) continue;
          const R = g.r * ps.length, inF = g.sites[0].in;
          this.groupA.set(`${l}.${ps[0]}`, { A: this.view(lora.flat.PB, g.offA * 2, R * inF * 2), R, in: inF,
            t: ps.map((_, i) => this.view(h.t, i * g.r * 4, g.r * 4)) });
        }
      }
    }
    this.scratch = c.cudaAlloc(w.maxWeight * 2);
    // kernel 8 reads its own repacked words: the v4 plan (a second repacked copy of every weight) only where it cannot run
    if (this.gemvKernel === 8 && !this.int8xUnsupported()) this.i8 = this.planInt8x();
    else this.v4 = this.planV4();
    // streamed GEMVs with an adapter (runs 96–98, H100: three blocks an SM 451.2 vs 406.5 tok/s per tile); without one the
    // per-tile kernel stays faster (544.3 vs 511.8). LOWBIT_INT8X_STREAM=0 / 1 forces either.
    const st = process.env.LOWBIT_INT8X_STREAM;
    if (this.i8 && (st === '1' || this.chain || (st !== '0' && !!this.lora))) this.streamGemv = true;
    if (this.gemvKernel === 6 && this.v4?.every((pl) => pl.fold) && typeof c.cudaDecodePlanBegin === 'function' && this.attnFused)
      this.persistPlan = this.recordPlan();
  }

  /** Records the folded launches of every layer (attention at position 0: the run supplies pos and its RoPE tables). */
  private recordPlan(): number {
    const c = this.c;
    c.cudaDecodePlanBegin();
    try {
      this.foldedLayers(0);
    } catch (e) {
      try { c.cudaDecodePlanFree(c.cudaDecodePlanEnd()); } catch { /* nothing recorded */ }
      throw e;
    }
    return c.cudaDecodePlanEnd();
  }

  /** Whether token steps run as one persistent launch (kernel 6). */
  get persistent(): boolean { return this.persistPlan !== null; }

  /** Why the fused v4 path cannot run this model ('' when it can). */
  v4Unsupported(): string {
    const c = this.c as Partial<GpuEngine>, cfg = this.w.config;
    if (typeof c.cudaDecodeGemv !== 'function') return 'the engine has no decode kernels';
    const D = cfg.hiddenSize, I = cfg.intermediateSize, Q = cfg.numHeads * cfg.headDim;
    if (D % 256 || I % 256 || Q % 256) return `hidden ${D}, intermediate ${I} and heads·headDim ${Q} must be multiples of 256`;
    for (let l = 0; l < cfg.numLayers; l++) for (const p of PROJ) {
      const b = this.w.layers[l].proj[p];
      if (b.kind === 'quant') {
        const d = b.q.desc;
        if (d.layout !== 0 || d.bits !== 2 || d.group % 64 !== 0 || d.gidx) return `layer ${l} ${p}: only 'int' 2-bit codes with group % 64 == 0 and no gIdx`;
      }
      const s = this.lora?.at(l, p);
      if (s && s.offA % 8 !== 0) return `layer ${l} ${p}: adapter A not 16-byte aligned in the flat vector`;
    }
    return '';
  }

  private planV4(): V4Layer[] | null {
    if (this.v4Unsupported()) return null;
    const c = this.c, cfg = this.w.config, h = this.arena.h, R = Math.max(1, this.lora?.maxRank ?? 1);
    const tv = [0, 1, 2].map((i) => this.view(h.t, i * R * 4, R * 4));
    const plan: V4Layer[] = [];
    // kernel 5 takes group 64 only (else the launch runs v4, which cannot fold), and folds ranks that are multiples of 8
    // (each stage carries the tile's rows of B by one bulk copy of a multiple of 16 bytes)
    const fold = (this.gemvKernel === 5 || this.gemvKernel === 6) && PROJ.every((p) => this.w.layers.every((L) => L.proj[p].kind !== 'quant' || L.proj[p].q.desc.group === 64))
      && (this.lora?.sites.every((st) => st.r % 8 === 0 && st.r <= 128) ?? true);
    for (let l = 0; l < cfg.numLayers; l++) {
      const ad: V4Layer['ad'] = {};
      const seg = (p: Projection, y: number): DecodeSeg => {
        const b = this.w.layers[l].proj[p];
        if (b.kind === 'dense') return { w: b.w, rows: b.out, y };
        const codes4 = c.cudaAlloc(b.out * b.in / 4);
        this.repacked.push(codes4);
        c.cudaRepackSpan4(b.q.desc, codes4);
        return { desc: b.q.desc, codes4, y };
      };
      const group = (ps: Projection[], ys: number[], acc = 0): DecodeSeg[] => {
        const segs = ps.map((p, i) => ({ ...seg(p, ys[i]), ...(acc ? { acc } : {}) }));
        ps.forEach((p, i) => {
          const s = this.lora?.at(l, p);
          if (!s) { ad[p] = { B: null, t: null, r: 0 }; return; }
          const B = this.scaledB.get(`${l}.${p}`)!;
          if (fold) Object.assign(segs[i], { B, r: s.r, tseg: segs.length });
          segs.push({ w: s.Ab, rows: s.r, y: tv[i] });
          ad[p] = { B, t: tv[i], r: s.r };
        });
        return segs;
      };
      plan.push({
        qkv: group(['q_proj', 'k_proj', 'v_proj'], [h.q, h.k, h.v]), o: fold ? group(['o_proj'], [h.x], 1) : group(['o_proj'], [h.tmp]),
        gu: group(['gate_proj', 'up_proj'], [h.gate, h.up]), down: fold ? group(['down_proj'], [h.x], 1) : group(['down_proj'], [h.tmp]),
        ad, fold, pf: { qkv: [], o: [], gu: [], down: [] },
      });
    }
    // launch i prefetches launch i + 1 (down of layer l: q/k/v of layer l + 1)
    const D = cfg.hiddenSize, I = cfg.intermediateSize, Q = cfg.numHeads * cfg.headDim;
    const r16 = (segs: DecodeSeg[], inF: number) => decodeSegRanges(segs, inF).slice(0, 16);
    plan.forEach((pl, l) => {
      pl.pf.qkv = r16(pl.o, Q);
      pl.pf.o = r16(pl.gu, D);
      pl.pf.gu = r16(pl.down, I);
      pl.pf.down = l + 1 < plan.length ? r16(plan[l + 1].qkv, D) : [];
    });
    return plan;
  }

  /** Why the kernel-8 (int8-x) plan cannot run this model ('' when it can). */
  int8xUnsupported(): string {
    const c = this.c as unknown as Partial<NativeCudaInt8x>, cfg = this.w.config;
    if (typeof c.cudaInt8xGemv !== 'function' || typeof c.cudaInt8xRepack !== 'function' || typeof c.cudaInt8xPrep !== 'function') return 'the addon has no int8-x kernels';
    const D = cfg.hiddenSize, I = cfg.intermediateSize, Q = cfg.numHeads * cfg.headDim;
    if (D % 128 || I % 128 || Q % 128) return `hidden ${D}, intermediate ${I} and heads·headDim ${Q} must be multiples of 128`;
    for (let l = 0; l < cfg.numLayers; l++) for (const p of PROJ) {
      const b = this.w.layers[l].proj[p];
      if (b.kind !== 'quant') return `layer ${l} ${p}: dense (the int8-x GEMV reads packed codes only)`;
      const d = b.q.desc;
      if (d.layout !== 0 || d.bits !== 2 || d.group !== 64 || d.gidx || !d.sz || d.out % 16) return `layer ${l} ${p}: only 'int' 2-bit codes, group 64, no gIdx, out % 16 == 0`;
    }
    const lora = this.lora;
    if (lora) {
      const r = lora.sites[0]?.r ?? 0;
      for (let l = 0; l < cfg.numLayers; l++) {
        for (const p of PROJ) { const s = lora.at(l, p); if (!s || s.r !== r) return `layer ${l} ${p}: kernel 8 needs one adapter of one rank on every projection`; }
        if (!lora.group(l, ['q_proj', 'k_proj', 'v_proj']) || !lora.group(l, ['gate_proj', 'up_proj'])) return `layer ${l}: the q/k/v (gate/up) adapters' A factors are not adjacent`;
        for (const p of PROJ) if (lora.at(l, p)!.offA % 8) return `layer ${l} ${p}: adapter A not 16-byte aligned in the flat vector`;
      }
    }
    return '';
  }

  /**
   * Kernel 8's GEMVs streamed (parts & 512, native/cuda/int8x_stream.cu; LOWBIT_INT8X_STREAM=0 / 1 forces it off / on): each
   * of LOWBIT_INT8X_STREAM_BPS blocks an SM owns a run of whole tiles and issues its ring of bulk copies (codes, tile-blocked scale|zero words, B rows) and its LoRA-A rows
   * before the PDL wait, so the weights stream while the launches before it run. 8 warps a block
   * (LOWBIT_INT8X_STREAM_WARPS), the K slices of the per-tile kernel with split K 8 (same bits). With one block an SM it
   * was 10–14 % slower than the per-tile kernel (run 94: its warps latency-bound); with three an SM (the native default,
   * LOWBIT_INT8X_STREAM_BPS) it is faster with an adapter and the default there. A GEMV that does not qualify (out % 16,
   * not fixed order) keeps the per-tile kernel.
   */
  get streamGemv(): boolean { return this.streamOn; }
  set streamGemv(on: boolean) {
    const x8 = this.c as unknown as NativeCudaInt8x;
    this.streamOn = on && !!this.i8 && typeof x8.cudaInt8xTileSz === 'function';
    // LOWBIT_INT8X_STREAM_SET: which of a layer's GEMVs stream (a comma list of qkv, o, gu, down; all by default)
    const set = (process.env.LOWBIT_INT8X_STREAM_SET ?? 'qkv,o,gu,down').split(',');
    for (const l of this.i8 ?? []) for (const [name, g] of [['qkv', l.qkv], ['o', l.o], ['gu', l.gu], ['down', l.down]] as const) {
      const ok = this.streamOn && set.includes(name) && g.out % 16 === 0 && (g.tiled.parts & 64) !== 0;
      if (ok && g.szT === null) {
        g.szT = this.c.cudaAlloc(g.out * g.in / 16);
        this.i8bufs.push(g.szT);
        x8.cudaInt8xTileSz!(g.sz, g.szT, g.out, g.in);
      }
      g.ks = ok ? streamWarps(name) : g.tiled.ks;
      g.parts = ok ? g.tiled.parts | 512 : g.tiled.parts;
    }
  }

  /** Whether token steps run the kernel-8 (int8-x) plan. */
  get int8x(): boolean { return this.i8 !== null; }

  private planInt8x(): Int8xLayer[] {
    const c = this.c, x8 = this.c as unknown as NativeCudaInt8x, cfg = this.w.config, lora = this.lora;
    const D = cfg.hiddenSize, I = cfg.intermediateSize, Q = cfg.numHeads * cfg.headDim, KV = cfg.numKvHeads * cfg.headDim;
    const r = lora?.sites[0]?.r ?? 0;
    const alloc = (bytes: number) => { const h = c.cudaAlloc(bytes); this.i8bufs.push(h); return h; };
    this.i8scr = { D: alloc(int8xScratchBytes(D)), Q: alloc(int8xScratchBytes(Q)), I: alloc(int8xScratchBytes(I)) };
    this.chainSync = alloc(4 * INT8X_CHAIN_SYNC_WORDS);
    c.cudaMemset0(this.chainSync, 4 * INT8X_CHAIN_SYNC_WORDS);
    this.chainH = alloc(D * 4);
    // the folded preps' group counters (i8fold): one set serves every launch, each leaves them zero
    this.i8cnt = null;
    if (D % 64 === 0 && I % 64 === 0) { this.i8cnt = alloc(4 * Math.max(D, I) / 64); c.cudaMemset0(this.i8cnt, 4 * Math.max(D, I) / 64); }
    // a block per tile with its K slices added in a fixed order (64): deterministic, so graph replay = eager bit for bit;
    // x̂ in shared memory (32) and one block in flight per warp, split K so that a launch has ~8192 warps, at most 16 (the
    // fixed-order GEMVs of run 87: o 3.40 µs and down 6.81 at split K 16, gate/up 13.31 at 8 against 14.24 at 4, q/k/v
    // 8.8 at 4–16; two blocks in flight cost ~100 registers, one block of 16 warps per SM). LOWBIT_INT8X_PICK=4096 keeps
    // the earlier rule (~4096 warps; two blocks in flight where the tiles are few).
    const env = (k: string) => (process.env[k] ? Number(process.env[k]) : null);
    const old = process.env.LOWBIT_INT8X_PICK === '4096';
    const pick = (out: number, inF: number) => {
      const tiles = out / 16, nblk = inF / 128, warps = old ? 4096 : 8192;
      let ks = 1;
      while (ks * 2 <= Math.min(nblk, 16) && tiles * ks < warps) ks *= 2;
      // LOWBIT_INT8X_AROWS=4: 4 LoRA-A rows a block (parts & 1024; run 96: 366.0 vs 410.1 tok/s with the rank-64 adapter)
      const arows = process.env.LOWBIT_INT8X_AROWS === '4' ? 1024 : 0;
      return { ks: env('LOWBIT_INT8X_KSPLIT') ?? ks, parts: 12 | arows | (env('LOWBIT_INT8X_PARTS') ?? (64 | (old && tiles <= 512 ? 16 : 32))) };
    };
    const gemv = (l: number, ps: Projection[], inF: number, y: number, t: number, sync: number): Int8xGemv => {
      const ds = ps.map((p) => { const b = this.w.layers[l].proj[p]; if (b.kind !== 'quant') throw new LowbitError('int8-x plan: dense'); return b.q.desc; });
      const out = ds.reduce((a, d) => a + d.out, 0), ng = inF / 64;
      const words = alloc(out * inF / 4), sz = alloc(out * ng * 4);
      let row = 0;
      for (const d of ds) {
        const wv = this.view(words, row * inF / 4, d.out * inF / 4);
        x8.cudaInt8xRepack!(d, wv);
        c.cudaCopy(sz, d.sz!, d.out * ng * 4, row * ng * 4, 0);
        row += d.out;
      }
      let A: number | null = null, R = 0;
      if (lora) {
        const g = ps.length > 1 ? lora.group(l, ps)! : { offA: lora.at(l, ps[0])!.offA, r };
        R = r * ps.length;
        A = this.view(lora.flat.PB, g.offA * 2, R * inF * 2);
      }
      const kp = pick(out, inF);
      // the adapters' B·t in the GEMV's epilogue (fixed-order mode, rank ≤ 128), so the preps and the attention carry none;
      // LOWBIT_INT8X_BT=handoff keeps it in the next launch
      let bt: Int8xGemv['bt'] = null;
      if (A && kp.parts & 64 && r <= 128 && process.env.LOWBIT_INT8X_BT !== 'handoff') {
        let end = 0;
        bt = { Bs: ps.map((p) => this.scaledB.get(`${l}.${p}`)!), ends: ds.map((d) => (end += d.out)), r, sync };
      }
      return { words, sz, out, in: inF, y, A, R, t, bt, ...kp, tiled: kp, szT: null };
    };
    const plan: Int8xLayer[] = [];
    for (let l = 0; l < cfg.numLayers; l++) {
      const yqkv = alloc((Q + 2 * KV) * 4), yo = alloc(D * 4), ygu = alloc(2 * I * 4), yd = alloc(D * 4);
      // one buffer for the layer's t values, so that each prep sets the next GEMVs' t with one range (i8tval)
      const R = Math.max(r, 1), tl = alloc(7 * R * 4);
      c.cudaUpload(tl, new Uint32Array(7 * R).fill(INT8X_T_UNSET));  // every t unset (parts & 2048, the chain)
      const tqkv = this.view(tl, 0, 3 * R * 4), to = this.view(tl, 3 * R * 4, R * 4),
        tgu = this.view(tl, 4 * R * 4, 2 * R * 4), td = this.view(tl, 6 * R * 4, R * 4);
      const B = {} as Int8xLayer['B'], t = {} as Int8xLayer['t'];
      const tv: Record<Projection, number> = { q_proj: this.view(tqkv, 0, R * 4), k_proj: this.view(tqkv, R * 4, R * 4), v_proj: this.view(tqkv, 2 * R * 4, R * 4),
        o_proj: to, gate_proj: this.view(tgu, 0, R * 4), up_proj: this.view(tgu, R * 4, R * 4), down_proj: td };
      for (const p of PROJ) { B[p] = lora ? this.scaledB.get(`${l}.${p}`)! : null; t[p] = lora ? tv[p] : null; }
      const sync = alloc(32);
      c.cudaMemset0(sync, 32);
      const sv = (off: number, bytes: number) => this.view(sync, off, bytes);
      const g = {
        qkv: gemv(l, ['q_proj', 'k_proj', 'v_proj'], D, yqkv, tqkv, sv(0, 8)), o: gemv(l, ['o_proj'], Q, yo, to, sv(8, 8)),
        gu: gemv(l, ['gate_proj', 'up_proj'], D, ygu, tgu, sv(16, 8)), down: gemv(l, ['down_proj'], I, yd, td, sv(24, 8)),
      };
      plan.push({ ...g, B, t, sync: lora ? { qkvO: sv(0, 16), gu: sv(16, 8), down: sv(24, 8) } : null,
        tset: lora ? { qkvO: this.view(tl, 0, 4 * R * 4), gu: tgu, down: td } : null });
    }
    return plan;
  }

  /**
   * Kernel 8's attention as ONE launch (cudaDecodeAttn with the q/k/v B·t and the int8-x output: 8 launches a layer
   * instead of 10) where the head dim allows it and the o GEMV stores its y (nothing left to zero); foldAttn false
   * (LOWBIT_DECODE_FOLD_ATTN=0) keeps the q/k/v epilogue, attention and prep launches.
   */
  private get i8attn(): boolean {
    return this.foldAttn && this.attnFused && !!this.i8 && (this.i8[0].o.parts & 64) !== 0;
  }

  /** The y the prep zeroes for its consumer GEMV: none where that GEMV stores y (parts & 64), else y's floats; given
   * sync (i8zeroSync), the B·t counters of the GEMVs up to the next prep instead (n: their floats). */
  private i8zero(g: Int8xGemv, sync?: number, n = 0): [number | null, number] {
    if (sync !== undefined) return [sync, n];
    return g.parts & 64 ? [null, 0] : [g.y, g.out];
  }

  /** Kernel 8 with every GEMV streamed and adding its own B·t (i8zeroSync): the A rows publish t by value (parts &
   * 2048: no fence and count in the A-row block, one L2 round trip in each tile's wait instead of the count's spin and
   * the t load after it), the preps setting the next GEMVs' t to the unset mark instead of zeroing their counters.
   * LOWBIT_INT8X_TVAL=1 (opt-in; run 101 measured no gain; the chain always publishes t so). */
  tval = process.env.LOWBIT_INT8X_TVAL === '1';
  private get i8tval(): boolean {
    return (this.tval || this.chain) && this.i8zeroSync && this.i8streamed && this.i8!.every((l) => l.tset !== null);
  }

  /** Whether every GEMV of the kernel-8 plan streams (parts & 512): t by value and the chain need it. */
  private get i8streamed(): boolean {
    return !!this.i8 && this.i8.every((l) => [l.qkv, l.o, l.gu, l.down].every((g) => (g.parts & 512) !== 0));
  }

  /** Whether the token step runs the chain (chain): every GEMV streamed, the attention in one launch writing o's x̂, and
   * with an adapter t published by value (i8tval). */
  private get i8chain(): boolean {
    const x8 = this.c as unknown as NativeCudaInt8x;
    if (!this.chain || typeof x8.cudaInt8xChainPlan !== 'function' || !this.i8attn || !this.i8streamed) return false;
    return !this.lora || this.i8tval;
  }

  /** Whether token steps run the chain (o → gate/up → down → q/k/v in one launch). */
  get chained(): boolean { return this.i8chain; }

  /** Whether the chain runs the attention as its first phase (chainAttn; head dims 64 and 128). */
  private get i8chainAttn(): boolean {
    const hd = this.w.config.headDim;
    return this.i8chain && this.chainAttn && (hd === 64 || hd === 128);
  }

  /** Whether token steps run the attention inside the chain (one launch a layer). */
  get chainedAttention(): boolean { return this.i8chainAttn; }

  /** Whether a token's layers run as ONE chain (chainToken, with the attention in the chain). */
  get chainedToken(): boolean { return this.i8chainAttn && this.chainToken; }

  /** Whether the chain makes each phase's x̂ once, in a prep phase before it (chainPrep). */
  get chainedPrep(): boolean { return this.i8chain && this.chainPrep; }

  /** The plans the current settings run (made now where new), or null without the chain. */
  private chainPlansNow(): number[] | null {
    return this.i8chain ? this.chainPlansFor(Number(process.env.LOWBIT_INT8X_CHAIN_WARPS ?? 16), this.i8chainAttn, this.chainedToken, this.chainedPrep) : null;
  }

  /**
   * The chains of a token step (cudaInt8xChainPlan ids, made once): per layer l, o → gate/up → down → the next layer's
   * q/k/v (with attn the layer's attention first), or with token ONE plan of every layer's phases. The residual
   * alternates between h.x and chainH (gate/up's phase reads h.x and writes chainH, the next q/k/v's the reverse).
   */
  private chainPlansFor(cw: number, attn: boolean, token: boolean, prep: boolean): number[] {
    const key = `${cw}:${attn}:${token}:${prep}`, have = this.chainPlans.get(key);
    if (have) return have;
    const x8 = this.c as unknown as NativeCudaInt8x, cfg = this.w.config, h = this.arena.h, plan = this.i8!, scr = this.i8scr!, hB = this.chainH!;
    const eps = cfg.rmsNormEps;
    // GEMV g fed from src (the residual hin + yin with RMSNorm when normW, else SwiGLU of yin): with prep, a prep phase
    // making its x̂ into the scratch xs, then g reading it (mode 0); else g making it in every block (mode 1 or 2)
    type Src = { hin: number; yin: number; hout: number; normW: number } | { yin: number };
    const fed = (g: Int8xGemv, src: Src, xs: number): Int8xChainPhase[] => {
      const norm = 'normW' in src, e = norm ? { eps } : {};
      return prep ? [{ mode: 4, in: g.in, xs, ...src }, this.chainPhase(g, 0, { xs, npart: norm ? g.in / 64 : 0, ...e })]
        : [this.chainPhase(g, norm ? 1 : 2, { ...src, ...e })];
    };
    const layer = (l: number): Int8xChainPhase[] => {
      const pl = plan[l], next = l + 1 < cfg.numLayers ? plan[l + 1] : null;
      return [
        ...(attn ? [{ mode: 3 as const, ...this.qkvViews(pl), kc: h[`kc${l}`], vc: h[`vc${l}`],
          Hq: cfg.numHeads, Hkv: cfg.numKvHeads, hd: cfg.headDim, xs: scr.Q }] : []),
        this.chainPhase(pl.o, 0, { xs: scr.Q, npart: 0 }),
        ...fed(pl.gu, { hin: h.x, yin: pl.o.y, hout: hB, normW: this.w.layers[l].postNorm }, scr.D),
        ...fed(pl.down, { yin: pl.gu.y }, scr.I),
        ...(next ? fed(next.qkv, { hin: hB, yin: pl.down.y, hout: h.x, normW: this.w.layers[l + 1].inputNorm }, scr.D) : []),
      ];
    };
    const layers = Array.from({ length: cfg.numLayers }, (_, l) => layer(l));
    const phaseSets = token ? [layers.flat()] : layers, ids: number[] = [];
    try {
      for (const ph of phaseSets) ids.push(x8.cudaInt8xChainPlan!(ph, cw, this.maxT));
    } catch (e) { for (const id of ids) x8.cudaInt8xChainFree!(id); throw e; }
    this.chainPlans.set(key, ids);
    return ids;
  }

  /** A chain phase of GEMV g (its words, tile-blocked sz, y, A rows and B·t segments). */
  private chainPhase(g: Int8xGemv, mode: 0 | 1 | 2, more: Partial<Int8xChainGemvPhase>): Int8xChainGemvPhase {
    const bt = g.A && g.bt;
    return { words: g.words, sz: g.szT!, y: g.y, out: g.out, in: g.in, mode, ...more,
      ...(bt ? { A: g.A, R: g.R, t: g.t, r: bt.r, ...Object.fromEntries(bt.Bs.flatMap((B, i) => [[`b${i}`, B], [`e${i}`, bt.ends[i]]])) } : {}) };
  }

  /** The prep's range to reset before the GEMVs up to the next prep ([buffer, floats, unsetT]): with i8tval their t
   * values (set to the unset mark), else i8zero's. */
  private i8reset(g: Int8xGemv, tval: boolean, tset: number | undefined, nt: number, sync?: number, n = 0): [number | null, number, boolean] {
    if (tval && tset !== undefined) return [tset, nt, true];
    return [...this.i8zero(g, sync, n), false];
  }

  /**
   * Whether the preps zero the next GEMVs' B·t counters (prep 1: q/k/v's and o's, prep 2: gate/up's, prep 3: down's) and
   * the GEMVs run with parts & 256, so that no tile block waits on a returning atomic at its exit (the last-block
   * reset; run 89 priced such a count at every block's exit at 9–12 % in the folded preps). On by default (run 92: +2.6 %
   * with the adapter; zeroSync). Needs every GEMV's B·t in its epilogue and the prep launches (not foldPrep).
   */
  private get i8zeroSync(): boolean {
    const p = this.i8;
    return !!p && this.zeroSync && !this.i8fold
      && p.every((l) => l.sync !== null && [l.qkv, l.o, l.gu, l.down].every((g) => g.bt !== null));
  }

  /** A kernel-8 GEMV launch (PDL) on the x̂ its prep left in scratch; more: parts bits of the step (128: that prep was
   * folded into the launch before, its Σx² partials are per group; 256: i8zeroSync); fold: this launch makes the next
   * GEMV's input (I8Fold). */
  private i8gemv(g: Int8xGemv, scratch: number, normEps: number | null, more = 0,
    fold: { scratch: number; x: number | null; normW: number | null; half: number } | null = null): void {
    (this.c as unknown as NativeCudaInt8x).cudaInt8xGemv(g.words, g.parts & 512 ? g.szT! : g.sz, null, scratch, g.y, g.out, g.in, g.ks, g.parts | more,
      normEps, g.A, g.R, g.A ? g.t : null, g.bt?.Bs ?? null, g.bt?.ends ?? null, g.bt?.r ?? 0, g.bt?.sync ?? null,
      fold?.scratch ?? null, fold?.x ?? null, fold?.normW ?? null, fold?.half ?? 0, fold ? this.i8cnt : null);
  }

  /**
   * Whether kernel 8 folds its prep launches into the GEMVs before them (I8Fold: o → gate/up's input, gate/up → down's,
   * down → the next layer's q/k/v input; 5 launches a layer instead of 8): where o, gate/up and down store y (parts &
   * 64) and add their own B·t (or there is no adapter); foldPrep false keeps the prep launches.
   */
  private get i8fold(): boolean {
    const p = this.i8;
    if (!p || !this.foldPrep || this.i8cnt === null || this.streamOn) return false;  // the streamed GEMV has no folded prep
    return p.every((l) => [l.o, l.gu, l.down].every((g) => (g.parts & 64) !== 0 && (!g.A || g.bt !== null)));
  }

  /** The B·t a hand-off applies after GEMV g ([B, t]): none where g added it in its own epilogue. */
  private i8Bt(g: Int8xGemv | null, B: number | null | undefined, t: number | null | undefined): [number | null, number | null] {
    return !g || g.bt ? [null, null] : [B ?? null, t ?? null];
  }

  /**
   * The kernel-8 token step, per layer: prep (x += down's y of the layer before; RMSNorm weights) → q/k/v GEMV (+ A
   * rows) → attention with RoPE and the cache rows, its output quantized for the o GEMV (i8attn; else the q/k/v epilogue
   * → attention → prep of its bf16 output) → o GEMV → prep (x += o's y; RMSNorm weights) → gate/up GEMV → prep (SwiGLU)
   * → down GEMV; after the last layer the residual epilogue adds down's y. Each GEMV adds its adapters' B·t in its own
   * epilogue (Int8xGemv.bt); where it cannot, the launch after it does (the hand-off).
   */
  private bodyInt8x(pos: number, logits: boolean): void {
    const c = this.c, x8 = this.c as unknown as NativeCudaInt8x, cfg = this.w.config, h = this.arena.h, plan = this.i8!, scr = this.i8scr!;
    const D = cfg.hiddenSize, I = cfg.intermediateSize, Q = cfg.numHeads * cfg.headDim, eps = cfg.rmsNormEps;
    const r = this.lora?.sites[0]?.r ?? 0;
    c.cudaEmbedding(h.id, this.w.embed, h.x, 1, D, cfg.vocabSize, true);
    const fold = this.i8fold, zero = this.i8zeroSync, tval = this.i8tval, zb = (zero ? 256 : 0) | (tval ? 2048 : 0);  // once per step, not per launch
    const chain = this.i8chain, chainAttn = this.i8chainAttn, chainToken = this.chainedToken, hB = this.chainH!;
    const plans = chain ? this.chainPlansNow()! : [];
    for (let l = 0; l < cfg.numLayers; l++) {
      const w = this.w.layers[l], pl = plan[l], prev = l > 0 ? plan[l - 1] : null, B = pl.B, t = pl.t, sync = zero ? pl.sync : null;
      if (!chain || !prev) {  // with the chain, layer l > 0's q/k/v ran in the chain of layer l - 1
        const [z1, n1, u1] = this.i8reset(pl.qkv, tval, pl.tset?.qkvO, 4 * r, sync?.qkvO, 4);
        if (!fold || !prev)
          x8.cudaInt8xPrep(h.x, null, w.inputNorm, scr.D, D, z1, n1, true, prev ? prev.down.y : null,
            ...this.i8Bt(prev?.down ?? null, prev?.B.down_proj, prev?.t.down_proj), null, null, r, h.x, false, u1);
        this.i8gemv(pl.qkv, scr.D, eps, zb | (fold && prev !== null ? 128 : 0));
      }
      const { q, k, v } = this.qkvViews(pl);
      const [bq, tq] = this.i8Bt(pl.qkv, B.q_proj, t.q_proj), [bk, tk] = this.i8Bt(pl.qkv, B.k_proj, t.k_proj), [bv, tv] = this.i8Bt(pl.qkv, B.v_proj, t.v_proj);
      if (chainAttn) {
        // the attention runs as the chain's first phase (below; q/k/v's GEMV added its B·t)
      } else if (this.i8attn) {  // one launch: B·t (unless q/k/v's GEMV added it), RoPE, cache rows, attention, the o GEMV's int8 input
        c.cudaDecodeAttn(q, k, v, this.cosAt[pos], this.sinAt[pos], h[`kc${l}`], h[`vc${l}`], pos, cfg.numHeads, cfg.numKvHeads,
          cfg.headDim, null, tq, tk, tv, bq, bk, bv, bq ? r : 0, scr.Q);
      } else {
        c.cudaDecodeQkvEpi(q, k, v, tq, tk, tv, bq, bk, bv, r, r, r, this.cosAt[pos], this.sinAt[pos],
          cfg.numHeads, cfg.numKvHeads, cfg.headDim, h.qb, this.kAt[l][pos], this.vAt[l][pos]);
        c.cudaAttnFwd(h.qb, h[`kc${l}`], h[`vc${l}`], h.att, null, 1, 1, pos + 1, cfg.numHeads, cfg.numKvHeads, cfg.headDim);
        x8.cudaInt8xPrep(h.att, null, null, scr.Q, Q, ...this.i8zero(pl.o), true, null, null, null, null, null, 0, null, true);
      }
      if (chain) {  // o → gate/up → down → the next layer's q/k/v in one launch (with the attention first), or the whole token
        x8.cudaInt8xChainRun!(chainToken ? plans[0] : plans[l], true, this.chainSync!, pos, this.cosAt[pos], this.sinAt[pos]);
        if (chainToken) break;
        continue;
      }
      if (fold) {  // o → gate/up's input → gate/up → down's input → down → the next layer's q/k/v input, no prep launches
        this.i8gemv(pl.o, scr.Q, null, 0, { scratch: scr.D, x: h.x, normW: w.postNorm, half: 0 });
        this.i8gemv(pl.gu, scr.D, eps, 128, { scratch: scr.I, x: null, normW: null, half: I });
        const next = l + 1 < cfg.numLayers ? this.w.layers[l + 1] : null;
        this.i8gemv(pl.down, scr.I, null, 0, next ? { scratch: scr.D, x: h.x, normW: next.inputNorm, half: 0 } : null);
        continue;
      }
      this.i8gemv(pl.o, scr.Q, null, zb);
      const [z2, n2, u2] = this.i8reset(pl.gu, tval, pl.tset?.gu, 2 * r, sync?.gu, 2);
      x8.cudaInt8xPrep(h.x, null, w.postNorm, scr.D, D, z2, n2, true, pl.o.y, ...this.i8Bt(pl.o, B.o_proj, t.o_proj), null, null, r, h.x, false, u2);
      this.i8gemv(pl.gu, scr.D, eps, zb);
      const gate = this.i8view(pl.gu.y, 0, I), up = this.i8view(pl.gu.y, I, I);
      const [z3, n3, u3] = this.i8reset(pl.down, tval, pl.tset?.down, r, sync?.down, 2);
      x8.cudaInt8xPrep(gate, up, null, scr.I, I, z3, n3, true, null, ...this.i8Bt(pl.gu, B.gate_proj, t.gate_proj),
        ...this.i8Bt(pl.gu, B.up_proj, t.up_proj), r, null, false, u3);
      this.i8gemv(pl.down, scr.I, null, zb);
    }
    const last = plan[cfg.numLayers - 1];
    const [bl, tl] = this.i8Bt(last.down, last.B.down_proj, last.t.down_proj);
    const hx = chain ? hB : h.x;  // the chain's last residual phase (gate/up's) wrote hB
    c.cudaDecodeResidualEpi(hx, last.down.y, tl, bl, r, D);
    if (!logits) return;
    c.cudaRmsnormFwd(hx, this.w.finalNorm, h.lnf, null, null, 1, D, eps);
    c.cublasGemmBf16(false, true, 1, cfg.vocabSize, D, h.lnf, this.w.lmHead, h.logits, 1, 0, true);
  }

  /** A layer's q, k and v: views into its q/k/v GEMV's y. */
  private qkvViews(pl: Int8xLayer): { q: number; k: number; v: number } {
    const cfg = this.w.config, Q = cfg.numHeads * cfg.headDim, KV = cfg.numKvHeads * cfg.headDim, y = pl.qkv.y;
    return { q: this.i8view(y, 0, Q), k: this.i8view(y, Q, KV), v: this.i8view(y, Q + KV, KV) };
  }

  /** f32 views into the kernel-8 plan's y buffers (made once, reused by every token step and graph). */
  private i8views = new Map<string, number>();
  private i8view(buf: number, off: number, n: number): number {
    const key = `${buf}:${off}:${n}`;
    let v = this.i8views.get(key);
    if (v === undefined) { v = this.view(buf, off * 4, n * 4); this.i8views.set(key, v); }
    return v;
  }

  private view(h: number, off: number, bytes: number): number { const v = this.c.cudaView(h, off, bytes); this.views.push(v); return v; }

  reset(): void { this.pos = 0; }

  /** The requested GEMV variant where the tensor meets its constraints, else v1 (in and group multiples of 32). */
  private gemvVariant(b: GpuBase): 0 | 1 | 2 | 3 {
    const v = this.variant === 4 ? 3 : this.variant;
    if (b.kind !== 'quant' || v < 2) return v;
    const d = b.q.desc, ok = d.in % 64 === 0 && d.group % 64 === 0 && (v === 2 || (d.layout === 0 && (d.bits === 2 || d.bits === 4)));
    return ok ? v : 1;
  }

  /** y[out] (f32) = Ŵ·x (+ s·B·(A·x)) for x f32 [in] in h.xn-like buffers. */
  /**
   * Projections ps of layer l reading the same x into ys: the packed GEMVs, then the adapters' A·x of the group as
   * ONE GEMV over their adjacent A factors ([Σr, in], see GpuLora) and one (s·B)·t GEMV per projection.
   */
  private linGroup(l: number, ps: Projection[], x: number, ys: number[]): void {
    const blk = this.groupA.get(`${l}.${ps[0]}`);
    if (!blk) { ps.forEach((p, i) => this.lin(l, p, x, ys[i])); return; }
    ps.forEach((p, i) => this.base(l, p, x, ys[i]));
    const c = this.c;
    c.cudaGemvBf16(blk.A, blk.R, blk.in, x, this.arena.h.t, false);
    ps.forEach((p, i) => {
      const s = this.lora!.at(l, p)!;
      c.cudaGemvBf16(this.scaledB.get(`${l}.${p}`)!, s.out, s.r, blk.t[i], ys[i], true);
    });
  }

  private lin(l: number, p: Projection, x: number, y: number): void {
    const c = this.c, h = this.arena.h;
    this.base(l, p, x, y);
    const s = this.lora?.at(l, p);
    if (s) {
      c.cudaGemvBf16(s.Ab, s.r, s.in, x, h.t, false);
      c.cudaGemvBf16(this.scaledB.get(`${l}.${p}`)!, s.out, s.r, h.t, y, true);
    }
  }

  /** y[out] (f32) = Ŵ·x for the frozen base of a projection. */
  private base(l: number, p: Projection, x: number, y: number): void {
    const c = this.c, b: GpuBase = this.w.layers[l].proj[p], h = this.arena.h;
    if (b.kind === 'dense') c.cudaGemvBf16(b.w, b.out, b.in, x, y, false);
    else if (b.q.desc.in % 32 === 0 && b.q.desc.group % 32 === 0 && !b.q.desc.gidx) c.cudaQGemv(b.q.desc, x, y, false, this.gemvVariant(b));
    else {
      c.cudaCastF32ToBf16Scaled(h.xb, x, b.in, 1);
      c.cudaQGemm(b.q.desc, 1, h.xb, y, true, this.scratch);
    }
  }

  /** One token at position this.pos → logits [V] (f32, on the host). */
  step(id: number, wantLogits = true): Float32Array | null {
    const c = this.c, cfg = this.w.config, h = this.arena.h, pos = this.pos;
    if (pos >= this.maxT) throw new LowbitError(`GpuDecoder: KV cache of ${this.maxT} positions is full`);
    if (!(id >= 0 && id < cfg.vocabSize)) throw new LowbitError(`GpuDecoder: token id ${id} outside the vocabulary`);
    c.cudaUpload(h.id, Int32Array.of(id));
    if (this.useGraphs && this.warm) {
      c.cudaGraphLaunch(this.graphs[pos] ||= this.capture(() => this.body(pos, true)));
      wantLogits = true;
    } else {
      this.body(pos, wantLogits || this.useGraphs);
      this.warm = true;
    }
    this.pos++;
    if (!wantLogits) return null;
    const out = new Float32Array(cfg.vocabSize);
    c.cudaDownload(h.logits, out);
    return out;
  }

  /**
   * Greedy decoding with the sampling on the device: after the prompt, each step's argmax writes the next step's input id
   * on the device (and its slot of an id buffer), so the host launches the steps back to back and reads the ids once at
   * the end instead of a logits download and a host argmax per token. Same tokens as greedyDecode's host path.
   */
  greedyOnDevice(prompt: ArrayLike<number>, n: number): number[] {
    const c = this.c, cfg = this.w.config, h = this.arena.h, T = prompt.length;
    if (T === 0) throw new LowbitError('generate: empty prompt');
    if (n <= 0) return [];
    if (T + n - 1 > this.maxT) throw new LowbitError(`GpuDecoder: KV cache of ${this.maxT} positions is full`);
    this.reset();
    for (let i = 0; i < T - 1; i++) this.step(prompt[i], false);
    c.cudaUpload(h.id, Int32Array.of(prompt[T - 1]));
    for (let i = 0; i < n; i++, this.pos++) {  // position pos reads h.id and samples ids[pos] (= the next h.id)
      const pos = this.pos;
      if (this.useGraphs && this.warm) {
        c.cudaGraphLaunch(this.greedyGraphs[pos] ||= this.capture(() => {
          this.body(pos, true);
          c.cudaArgmaxF32(h.logits, cfg.vocabSize, h.id, h.ids, pos);
        }));
      } else {
        this.body(pos, true);
        c.cudaArgmaxF32(h.logits, cfg.vocabSize, h.id, h.ids, pos);
        this.warm = true;
      }
    }
    const all = new Int32Array(this.maxT);
    c.cudaDownload(h.ids, all);
    return Array.from(all.subarray(T - 1, T - 1 + n));
  }

  /** Captures the work `enqueue` launches as one CUDA graph (ending a broken capture before rethrowing). */
  private capture(enqueue: () => void): number {
    const c = this.c, t0 = performance.now();
    this.chainPlansNow();  // a plan's upload is a synchronous copy, which a capture does not allow
    c.cudaGraphBegin();
    try { enqueue(); } catch (e) { try { c.cudaGraphEnd(); } catch { /* broken capture */ } throw e; }
    const g = c.cudaGraphEnd();
    this.captureSeconds += (performance.now() - t0) / 1000;
    return g;
  }

  /** The device work of one token at position pos (the id already uploaded): capturable. */
  private body(pos: number, logits: boolean): void {
    if (this.i8) { this.bodyInt8x(pos, logits); return; }
    if (this.variant === 4 && this.v4) { this.body4(pos, logits); return; }
    const c = this.c, cfg = this.w.config, h = this.arena.h;
    const D = cfg.hiddenSize, I = cfg.intermediateSize, Q = cfg.numHeads * cfg.headDim, KV = cfg.numKvHeads * cfg.headDim;
    const hd = cfg.headDim, Hq = cfg.numHeads, Hkv = cfg.numKvHeads, eps = cfg.rmsNormEps;
    c.cudaEmbedding(h.id, this.w.embed, h.x, 1, D, cfg.vocabSize, true);
    for (let l = 0; l < cfg.numLayers; l++) {
      const w = this.w.layers[l];
      c.cudaRmsnormFwd(h.x, w.inputNorm, null, h.xn, null, 1, D, eps);
      this.linGroup(l, ['q_proj', 'k_proj', 'v_proj'], h.xn, [h.q, h.k, h.v]);
      c.cudaRopeFwd(h.q, h.qb, this.cosAt[pos], this.sinAt[pos], 1, 1, Hq, hd);
      c.cudaRopeFwd(h.k, this.kAt[l][pos], this.cosAt[pos], this.sinAt[pos], 1, 1, Hkv, hd);
      c.cudaCastF32ToBf16Scaled(this.vAt[l][pos], h.v, KV, 1);
      c.cudaAttnFwd(h.qb, h[`kc${l}`], h[`vc${l}`], h.att, null, 1, 1, pos + 1, Hq, Hkv, hd);
      c.cudaConvertBf16ToF32(h.attF, h.att, Q);
      this.lin(l, 'o_proj', h.attF, h.tmp);
      c.cudaAddF32(h.x, h.x, h.tmp, D);
      c.cudaRmsnormFwd(h.x, w.postNorm, null, h.xn, null, 1, D, eps);
      this.linGroup(l, ['gate_proj', 'up_proj'], h.xn, [h.gate, h.up]);
      c.cudaCastF32ToBf16Scaled(h.gateB, h.gate, I, 1);
      c.cudaCastF32ToBf16Scaled(h.upB, h.up, I, 1);
      c.cudaSwigluFwd(h.gateB, h.upB, h.actB, I);
      c.cudaConvertBf16ToF32(h.act, h.actB, I);
      this.lin(l, 'down_proj', h.act, h.tmp);
      c.cudaAddF32(h.x, h.x, h.tmp, D);
    }
    if (!logits) return;
    c.cudaRmsnormFwd(h.x, this.w.finalNorm, h.lnf, null, null, 1, D, eps);
    c.cublasGemmBf16(false, true, 1, cfg.vocabSize, D, h.lnf, this.w.lmHead, h.logits, 1, 0, true);
  }

  /**
   * The v4 token step: per layer four GEMV launches (RMSNorm + q/k/v + their LoRA A; o + A; RMSNorm + gate/up + A;
   * down + A) and four epilogues (LoRA B·t + RoPE + KV-cache rows; residual; SwiGLU; residual) around the attention.
   */
  private body4(pos: number, logits: boolean): void {
    const c = this.c, cfg = this.w.config, h = this.arena.h, plan = this.v4!;
    const D = cfg.hiddenSize, I = cfg.intermediateSize, Q = cfg.numHeads * cfg.headDim, eps = cfg.rmsNormEps;
    c.cudaEmbedding(h.id, this.w.embed, h.x, 1, D, cfg.vocabSize, true);
    if (this.persistPlan !== null) c.cudaDecodePlanRun(this.persistPlan, pos, this.cosAt[pos], this.sinAt[pos]);
    else if (plan.every((pl) => pl.fold)) this.foldedLayers(pos);
    else for (let l = 0; l < cfg.numLayers; l++) {
      const w = this.w.layers[l], pl = plan[l], a = pl.ad;
      c.cudaDecodeGemv(h.x, false, w.inputNorm, eps, D, pl.qkv, 0, this.gemvKernel);
      const aq = a.q_proj, ak = a.k_proj, av = a.v_proj;
      c.cudaDecodeQkvEpi(h.q, h.k, h.v, aq.t, ak.t, av.t, aq.B, ak.B, av.B, aq.r, ak.r, av.r, this.cosAt[pos], this.sinAt[pos],
        cfg.numHeads, cfg.numKvHeads, cfg.headDim, h.qb, this.kAt[l][pos], this.vAt[l][pos]);
      c.cudaAttnFwd(h.qb, h[`kc${l}`], h[`vc${l}`], h.att, null, 1, 1, pos + 1, cfg.numHeads, cfg.numKvHeads, cfg.headDim);
      c.cudaDecodeGemv(h.att, true, null, 0, Q, pl.o, 0, this.gemvKernel);
      c.cudaDecodeResidualEpi(h.x, h.tmp, a.o_proj.t, a.o_proj.B, a.o_proj.r, D);
      c.cudaDecodeGemv(h.x, false, w.postNorm, eps, D, pl.gu, 0, this.gemvKernel);
      const ag = a.gate_proj, au = a.up_proj;
      c.cudaDecodeSwigluEpi(h.gate, h.up, ag.t, au.t, ag.B, au.B, ag.r, au.r, I, h.act);
      c.cudaDecodeGemv(h.act, false, null, 0, I, pl.down, 0, this.gemvKernel);
      c.cudaDecodeResidualEpi(h.x, h.tmp, a.down_proj.t, a.down_proj.B, a.down_proj.r, D);
    }
    if (!logits) return;
    c.cudaRmsnormFwd(h.x, this.w.finalNorm, h.lnf, null, null, 1, D, eps);
    c.cublasGemmBf16(false, true, 1, cfg.vocabSize, D, h.lnf, this.w.lmHead, h.logits, 1, 0, true);
  }

  /** The folded plan's 4–5 launches per layer: GEMV q/k/v (+ B·t), attention (+ RoPE, cache rows; inside o's launch with foldAttn), GEMV o (x +=), gate/up, down (SwiGLU staged, x +=). */
  private foldedLayers(pos: number): void {
    const c = this.c, cfg = this.w.config, h = this.arena.h, plan = this.v4!;
    const D = cfg.hiddenSize, I = cfg.intermediateSize, Q = cfg.numHeads * cfg.headDim, eps = cfg.rmsNormEps;
    for (let l = 0; l < cfg.numLayers; l++) {
      const w = this.w.layers[l], pl = plan[l];
      const pf = this.prefetchNext ? pl.pf : null, ef = this.evictFirst;
      const pr = 16 * (this.v5Probe & 15);
      c.cudaDecodeGemv(h.x, false, w.inputNorm, eps, D, pl.qkv, pr, 5, null, pf?.qkv, ef);
      if (this.v5Probe & 64) {
        // probe: no attention launch
      } else if (this.attnFused) {
        const fold = this.foldAttn && typeof c.cudaDecodeAttnFoldNext === 'function' && !(this.v5Probe & 128);
        (fold ? c.cudaDecodeAttnFoldNext! : c.cudaDecodeAttn).call(c, h.q, h.k, h.v, this.cosAt[pos], this.sinAt[pos],
          h[`kc${l}`], h[`vc${l}`], pos, cfg.numHeads, cfg.numKvHeads, cfg.headDim, h.att);
      } else {
        c.cudaDecodeQkvEpi(h.q, h.k, h.v, null, null, null, null, null, null, 0, 0, 0, this.cosAt[pos], this.sinAt[pos],
          cfg.numHeads, cfg.numKvHeads, cfg.headDim, h.qb, this.kAt[l][pos], this.vAt[l][pos]);
        c.cudaAttnFwd(h.qb, h[`kc${l}`], h[`vc${l}`], h.att, null, 1, 1, pos + 1, cfg.numHeads, cfg.numKvHeads, cfg.headDim);
      }
      if (!(this.v5Probe & 128)) c.cudaDecodeGemv(h.att, true, null, 0, Q, pl.o, pr, 5, null, pf?.o, ef);
      c.cudaDecodeGemv(h.x, false, w.postNorm, eps, D, pl.gu, pr, 5, null, pf?.gu, ef);
      c.cudaDecodeGemv(h.gate, false, null, 0, I, pl.down, pr, 5, h.up, pf?.down, ef);
    }
  }

  /** Whether token steps run the fused v4 path. */
  get fused(): boolean { return this.variant === 4 && (this.v4 !== null || this.i8 !== null); }

  /** Bytes one decode step must read at least: packed base + adapters (bf16) + lm_head + the KV cache so far. */
  bytesPerToken(pos = this.pos): number {
    const cfg = this.w.config, KV = cfg.numKvHeads * cfg.headDim;
    let lora = 0;
    if (this.lora) for (const s of this.lora.sites) lora += (s.r * s.in + s.out * s.r) * 2;
    return this.w.baseBytes + lora + cfg.vocabSize * cfg.hiddenSize * 2 + 2 * cfg.numLayers * pos * KV * 2;
  }

  free(): void {
    if (this.persistPlan !== null) { this.c.cudaDecodePlanFree(this.persistPlan); this.persistPlan = null; }
    for (const ids of this.chainPlans.values()) for (const id of ids) (this.c as unknown as NativeCudaInt8x).cudaInt8xChainFree!(id);
    this.chainPlans.clear();
    for (const g of [...this.graphs, ...this.greedyGraphs]) if (g) this.c.cudaGraphFree(g);
    this.graphs = [];
    this.greedyGraphs = [];
    for (const v of this.views.splice(0)) this.c.cudaFree(v);
    for (const r of this.repacked.splice(0)) this.c.cudaFree(r);
    this.v4 = null;
    this.i8 = null;
    this.i8cnt = null;
    this.i8views.clear();
    for (const b of this.i8bufs.splice(0)) this.c.cudaFree(b);
    for (const b of this.scaledB.values()) this.c.cudaFree(b);
    this.scaledB.clear();
    this.arena.free();
    this.c.cudaFree(this.scratch);
  }
}

/** Greedy decode from an empty cache: the prompt, then n new tokens (no stop token). Returns the new ids. */
export function greedyDecode(d: GpuDecoder, prompt: ArrayLike<number>, n: number): number[] {
  if (typeof d.c.cudaArgmaxF32 === 'function' && prompt.length > 0) return d.greedyOnDevice(prompt, n);
  return [...streamTokensGpu(d, prompt, { maxTokens: n, temperature: 0, stopTokens: [] })];
}

/** The GPU twin of generate.ts streamTokens: the prompt through the cache, then sampled tokens, streamed. */
export function* streamTokensGpu(d: GpuDecoder, promptIds: ArrayLike<number>, opts: GenerateOptions): Generator<number> {
  const c = d.w.config, V = c.vocabSize, T = promptIds.length;
  if (T === 0) throw new LowbitError('generate: empty prompt');
  const maxTokens = Math.max(0, opts.maxTokens | 0);
  if (maxTokens === 0) return;
  const stops = new Set(opts.stopTokens ?? (c.eosTokenId != null ? [c.eosTokenId] : []));
  const rng = new Rng(opts.seed ?? 0);
  d.reset();
  let logits: Float32Array | null = null;
  for (let i = 0; i < T; i++) logits = d.step(promptIds[i], i === T - 1);
  for (let i = 0; i < maxTokens; i++) {
    const id = sampleToken(logits!, V, opts, rng);
    yield id;
    if (stops.has(id) || i === maxTokens - 1) return;
    logits = d.step(id);
  }
}
