// The trainable LoRA adapter of every adapted projection on the device, as ONE flat parameter vector: fp32
// master weights P, gradients G, Adam moments M and V, and bf16 copies PB for the GEMMs (refreshed after each
// update). A flat layout makes the optimizer, the gradient norm and the bf16 refresh one launch each.
// Order and layout = loraParams(): for each site A [r, in] then B [out, r] (PEFT's lora_A / lora_B).
import type { Projection } from '../config.js';
import { DeviceArena } from './arena.js';
import type { GpuEngine } from './engine.js';
import type { Arr } from '../../tensor.js';

export interface GpuLoraSite {
  layer: number; proj: Projection; r: number; scale: number; in: number; out: number;
  /** element offsets of A and B in the flat vector */
  offA: number; offB: number;
  /** views (handles): fp32 A, B; bf16 A, B; fp32 grads */
  A: number; B: number; Ab: number; Bb: number; gA: number; gB: number;
}

export interface LoraSiteSpec { layer: number; proj: Projection; r: number; scale: number; in: number; out: number }

export class GpuLora {
  readonly n: number;
  readonly sites: GpuLoraSite[] = [];
  private readonly byKey = new Map<string, GpuLoraSite>();
  private readonly arena: DeviceArena<'P' | 'G' | 'M' | 'V' | 'PB' | 'norm'>;
  private readonly views: number[] = [];
  step = 0;

  constructor(private readonly c: GpuEngine, specs: LoraSiteSpec[]) {
    let n = 0;
    const offs = specs.map((s) => { const a = n; n += s.r * s.in; const b = n; n += s.out * s.r; return [a, b]; });
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

  /** Upload parameters (A, B per site, in order) and refresh the bf16 copies. */
  setParams(tensors: Arr[]): void {
    const all = new Float32Array(this.n);
    let o = 0;
    for (const t of tensors) { all.set(t, o); o += t.length; }
    if (o !== this.n) throw new Error(`GpuLora.setParams: ${o} values for ${this.n} parameters`);
    this.c.cudaUpload(this.arena.h.P, all);
    this.refreshBf16();
  }
  /** Download parameters into the given arrays (same order as setParams). */
  getParams(into: Arr[]): void { this.download(this.arena.h.P, into); }
  getMoments(m: Arr[], v: Arr[]): void { this.download(this.arena.h.M, m); this.download(this.arena.h.V, v); }
  setMoments(m: Arr[], v: Arr[]): void { this.upload(this.arena.h.M, m); this.upload(this.arena.h.V, v); }
  getGrads(into: Arr[]): void { this.download(this.arena.h.G, into); }

  private download(h: number, into: Arr[]): void {
    const all = new Float32Array(this.n);
    this.c.cudaDownload(h, all);
    let o = 0;
    for (const t of into) { t.set(all.subarray(o, o + t.length)); o += t.length; }
  }
  private upload(h: number, from: Arr[]): void {
    const all = new Float32Array(this.n);
    let o = 0;
    for (const t of from) { all.set(t, o); o += t.length; }
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
