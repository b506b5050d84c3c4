// The trainable LoRA adapter of every adapted projection on the device, as ONE flat parameter vector: fp32
// master weights P, gradients G, Adam moments M and V, and bf16 copies PB for the GEMMs (refreshed after each
// update). A flat layout makes the optimizer, the gradient norm and the bf16 refresh one launch each.
// Device layout: per layer, the A factors [r, in] of its sites in projection order, then their B factors [out, r]
// (PEFT's lora_A / lora_B). So the A's of q/k/v (and of gate/up), which read the same input, form one
// contiguous [3r, in] ([2r, in]) block that a single GEMM serves. Host order (setParams/getParams) is the order
// of the specs, A then B per site = loraParams().
import { type Projection, PROJECTIONS } from '../config.js';
import { DeviceArena } from './arena.js';
import type { GpuEngine } from './engine.js';
import type { Arr } from '../../tensor.js';
import type { LlamaWeights } from '../weights.js';
import { loraSites } from '../../adapters/lora.js';

export interface GpuLoraSite {
  layer: number; proj: Projection; r: number; scale: number; in: number; out: number;
  /** element offsets of A and B in the flat vector */
  offA: number; offB: number;
  /** views (handles): fp32 A, B; bf16 A, B; fp32 grads */
  A: number; B: number; Ab: number; Bb: number; gA: number; gB: number;
}

export interface LoraSiteSpec { layer: number; proj: Projection; r: number; scale: number; in: number; out: number }

/** The sites of adapter `name` of a CPU model as GPU specs, in loraParams() order (the host order of GpuLora). */
export function loraSiteSpecs(w: LlamaWeights, name: string): LoraSiteSpec[] {
  return loraSites(w, name).map((s) => {
    const a = s.lin.get(name);
    return { layer: s.layer, proj: s.proj, r: a.r, scale: a.scale, in: s.lin.inFeatures, out: s.lin.outFeatures };
  });
}

export class GpuLora {
  readonly n: number;
  readonly sites: GpuLoraSite[] = [];
  private readonly byKey = new Map<string, GpuLoraSite>();
  private readonly arena: DeviceArena<'P' | 'G' | 'M' | 'V' | 'PB' | 'norm'>;
  private readonly views: number[] = [];
  step = 0;

  /** device offsets of the host-order tensors (A0, B0, A1, B1, …) */
  private readonly hostOffsets: number[] = [];

  constructor(private readonly c: GpuEngine, specs: LoraSiteSpec[]) {
    let n = 0;
    const offs: [number, number][] = specs.map(() => [0, 0]);
    const layers = [...new Set(specs.map((s) => s.layer))].sort((a, b) => a - b);
    const order = (l: number) => specs.map((s, i) => [s, i] as const).filter(([s]) => s.layer === l)
      .sort(([a], [b]) => PROJECTIONS.indexOf(a.proj) - PROJECTIONS.indexOf(b.proj));
    for (const l of layers) {
      for (const [s, i] of order(l)) { offs[i][0] = n; n += s.r * s.in; }
      for (const [s, i] of order(l)) { offs[i][1] = n; n += s.out * s.r; }
    }
    for (const [a, b] of offs) this.hostOffsets.push(a, b);
    this.n = n;
    this.arena = new DeviceArena(c, { P: { n, t: 'f32' }, G: { n, t: 'f32' }, M: { n, t: 'f32' }, V: { n, t: 'f32' }, PB: { n, t: 'bf16' }, norm: { n: 1, t: 'f32' } });
    const h = this.arena.h;
    specs.forEach((s, i) => {
      const [oa, ob] = offs[i], na = s.r * s.in, nb = s.out * s.r;
      const v = (buf: number, off: number, cnt: number, bytes: number) => { const x = c.cudaView(buf, off * bytes, cnt * bytes); this.views.push(x); return x; };
      const site: GpuLoraSite = { ...s, offA: oa, offB: ob,
        A: v(h.P, oa, na, 4), B: v(h.P, ob, nb, 4), Ab: v(h.PB, oa, na, 2), Bb: v(h.PB, ob, nb, 2), gA: v(h.G, oa, na, 4), gB: v(h.G, ob, nb, 4) };
      this.sites.push(site);
      this.byKey.set(`${s.layer}.${s.proj}`, site);
    });
    c.cudaMemset0(h.G); c.cudaMemset0(h.M); c.cudaMemset0(h.V);
  }

  at(layer: number, p: Projection): GpuLoraSite | undefined { return this.byKey.get(`${layer}.${p}`); }
  get bytes(): number { return this.arena.bytes; }
  get maxRank(): number { return this.sites.reduce((m, s) => Math.max(m, s.r), 0); }

  /** Upload parameters (A, B per site, in spec order) and refresh the bf16 copies. */
  setParams(tensors: Arr[]): void {
    this.upload(this.arena.h.P, tensors);
    this.refreshBf16();
  }

  /**
   * The contiguous A block of projections `ps` of a layer ([Σr, in] starting at element offA of the flat
   * vectors), when all of them carry an adapter of one rank and their A's are adjacent; else null.
   */
  group(layer: number, ps: readonly Projection[]): { offA: number; r: number; sites: GpuLoraSite[] } | null {
    const sites = ps.map((p) => this.at(layer, p));
    if (sites.some((s) => !s)) return null;
    const ss = sites as GpuLoraSite[];
    for (let i = 1; i < ss.length; i++) if (ss[i].r !== ss[0].r || ss[i].in !== ss[0].in || ss[i].offA !== ss[i - 1].offA + ss[0].r * ss[0].in) return null;
    return { offA: ss[0].offA, r: ss[0].r, sites: ss };
  }
  /** Handles of the whole flat vectors (for grouped GEMMs with element offsets). */
  get flat(): { P: number; PB: number; G: number } { return { P: this.arena.h.P, PB: this.arena.h.PB, G: this.arena.h.G }; }
  /** Download parameters into the given arrays (same order as setParams). */
  getParams(into: Arr[]): void { this.download(this.arena.h.P, into); }
  getMoments(m: Arr[], v: Arr[]): void { this.download(this.arena.h.M, m); this.download(this.arena.h.V, v); }
  setMoments(m: Arr[], v: Arr[]): void { this.upload(this.arena.h.M, m); this.upload(this.arena.h.V, v); }
  getGrads(into: Arr[]): void { this.download(this.arena.h.G, into); }
  /** Set the gradients (spec order, like setParams): for tests and for gradients computed elsewhere. */
  setGrads(from: Arr[]): void { this.upload(this.arena.h.G, from); }

  private checkCount(ts: Arr[]): void {
    if (ts.length !== this.hostOffsets.length) throw new Error(`GpuLora: ${ts.length} tensors for ${this.hostOffsets.length / 2} sites`);
    let n = 0;
    for (const t of ts) n += t.length;
    if (n !== this.n) throw new Error(`GpuLora: ${n} values for ${this.n} parameters`);
  }
  private download(h: number, into: Arr[]): void {
    this.checkCount(into);
    const all = new Float32Array(this.n);
    this.c.cudaDownload(h, all);
    into.forEach((t, i) => t.set(all.subarray(this.hostOffsets[i], this.hostOffsets[i] + t.length)));
  }
  private upload(h: number, from: Arr[]): void {
    this.checkCount(from);
    const all = new Float32Array(this.n);
    from.forEach((t, i) => all.set(t, this.hostOffsets[i]));
    this.c.cudaUpload(h, all);
  }

  refreshBf16(): void { this.c.cudaCastF32ToBf16Scaled(this.arena.h.PB, this.arena.h.P, this.n, 1); }
  zeroGrad(): void { this.c.cudaMemset0(this.arena.h.G); }
  zeroMoments(): void { this.c.cudaMemset0(this.arena.h.M); this.c.cudaMemset0(this.arena.h.V); }

  /** Global L2 norm of the gradients (one reduction + a 4-byte download). */
  gradNorm(): number {
    const h = this.arena.h.norm;
    this.c.cudaMemset0(h);
    this.c.cudaSumSquaresF32(this.arena.h.G, this.n, h);
    const o = new Float32Array(1);
    this.c.cudaDownload(h, o);
    return Math.sqrt(o[0]);
  }

  /** One Adam/AdamW update of every adapter (gradients × gradScale first), then the bf16 refresh. */
  adam(o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; coupledL2: boolean }, gradScale = 1): void {
    this.step++;
    const h = this.arena.h;
    this.c.cudaAdamW(h.P, h.G, h.M, h.V, this.n, o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, this.step, gradScale, o.coupledL2);
    this.refreshBf16();
  }

  free(): void {
    for (const v of this.views.splice(0)) this.c.cudaFree(v);
    this.arena.free();
  }
}
