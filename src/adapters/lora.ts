// LoRA on any Linear: y = base(x) + Σ_adapters scale·B(A x), scale = α/r (or α/√r with rsLoRA).
// Adapters are keyed by name, so several can be stacked on one base (one trainable, the others frozen).
// A is [r, in] and B is [out, r] (PEFT's lora_A.weight / lora_B.weight layouts). The base never trains:
// its backward only propagates dx, so a packed quantized base stays packed.
import { type Arr, type Precision, ctorOf } from '../tensor.js';
import { sgemm } from '../backend/kernels.js';
import type { Linear } from '../model/linear.js';
import { type LlamaWeights } from '../model/weights.js';
import { PROJECTIONS, type Projection, projectionPath } from '../model/config.js';

export interface LoraAdapter {
  readonly name: string;
  readonly r: number;
  readonly alpha: number;
  readonly rslora: boolean;
  /** α/r, or α/√r with rsLoRA */
  readonly scale: number;
  /** [r, in] */
  A: Arr;
  /** [out, r] */
  B: Arr;
  /** gradient buffers while trainable, else null */
  gradA: Arr | null;
  gradB: Arr | null;
}

export interface LoraSpec { r: number; alpha: number; rslora?: boolean }

export function loraScale(s: LoraSpec): number {
  return s.rslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r;
}

interface HasDense { dense(): Arr }

export class LoraLinear implements Linear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly adapters = new Map<string, LoraAdapter>();
  private t: Arr | null = null;
  private u: Arr | null = null;

  constructor(readonly base: Linear, readonly precision: Precision = 'f32') {
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
  }

  /** Add a named adapter with zero A and B (inits fill them). */
  add(name: string, spec: LoraSpec, trainable = true): LoraAdapter {
    if (this.adapters.has(name)) throw new Error(`LoraLinear: adapter '${name}' already exists`);
    if (!(Number.isInteger(spec.r) && spec.r >= 1)) throw new Error(`LoraLinear: rank must be a positive integer, got ${spec.r}`);
    const C = ctorOf(this.precision);
    const ad: LoraAdapter = {
      name, r: spec.r, alpha: spec.alpha, rslora: spec.rslora === true, scale: loraScale(spec),
      A: new C(spec.r * this.inFeatures), B: new C(this.outFeatures * spec.r), gradA: null, gradB: null,
    };
    this.adapters.set(name, ad);
    this.setTrainable(name, trainable);
    return ad;
  }

  get(name: string): LoraAdapter {
    const a = this.adapters.get(name);
    if (!a) throw new Error(`LoraLinear: no adapter '${name}'`);
    return a;
  }

  setTrainable(name: string, trainable: boolean): void {
    const a = this.get(name), C = ctorOf(this.precision);
    if (trainable) {
      a.gradA ??= new C(a.A.length);
      a.gradB ??= new C(a.B.length);
    } else {
      a.gradA = null; a.gradB = null;
    }
  }

  remove(name: string): void { this.adapters.delete(name); }

  private scratch(rows: number, r: number, x: Arr): { t: Arr; u: Arr } {
    const n = rows * r;
    const C = x instanceof Float64Array ? Float64Array : Float32Array;
    if (!this.t || this.t.length < n || !(this.t instanceof C)) { this.t = new C(n); this.u = new C(n); }
    return { t: this.t.subarray(0, n), u: this.u!.subarray(0, n) };
  }

  forward(out: Arr, x: Arr, rows: number): void {
    this.base.forward(out, x, rows);
    for (const a of this.adapters.values()) {
      const { t } = this.scratch(rows, a.r, x);
      sgemm(false, true, rows, a.r, this.inFeatures, 1, x, a.A, 0, t);          // t = x Aᵀ
      sgemm(false, true, rows, this.outFeatures, a.r, a.scale, t, a.B, 1, out); // out += s · t Bᵀ
    }
  }

  backward(dx: Arr | null, dy: Arr, x: Arr, rows: number): void {
    if (dx) this.base.backward(dx, dy, x, rows);
    for (const a of this.adapters.values()) {
      if (!dx && !a.gradA) continue;
      const { t, u } = this.scratch(rows, a.r, x);
      if (a.gradB) {
        sgemm(false, true, rows, a.r, this.inFeatures, 1, x, a.A, 0, t);
        sgemm(true, false, this.outFeatures, a.r, rows, a.scale, dy, t, 1, a.gradB); // gB += s · dyᵀ t
      }
      sgemm(false, false, rows, a.r, this.outFeatures, a.scale, dy, a.B, 0, u);      // u = s · dy B
      if (a.gradA) sgemm(true, false, a.r, this.inFeatures, rows, 1, u, x, 1, a.gradA); // gA += uᵀ x
      if (dx) sgemm(false, false, rows, this.inFeatures, a.r, 1, u, a.A, 1, dx);      // dx += u A
    }
  }

  /** The merged dense weight base + Σ s·B·A (needs a base that can produce its dense weight). */
  dense(): Arr {
    const b = this.base as Partial<HasDense>;
    if (typeof b.dense !== 'function') throw new Error(`LoraLinear: base ${this.base.constructor.name} has no dense()`);
    const W = b.dense.call(this.base);
    const out = W instanceof Float64Array ? Float64Array.from(W) : Float32Array.from(W);
    for (const a of this.adapters.values()) sgemm(false, false, this.outFeatures, this.inFeatures, a.r, a.scale, a.B, a.A, 1, out);
    return out;
  }

  /** The adapter's own delta s·B·A [out, in]. */
  delta(name: string): Float64Array {
    const a = this.get(name), d = new Float64Array(this.outFeatures * this.inFeatures);
    sgemm(false, false, this.outFeatures, this.inFeatures, a.r, a.scale, Float64Array.from(a.B), Float64Array.from(a.A), 0, d);
    return d;
  }
}

/** A located LoRA module of a model. */
export interface LoraSite { layer: number; proj: Projection; lin: LoraLinear }

export const ALL_TARGETS: readonly Projection[] = PROJECTIONS;

export function parseTargets(s: string | string[] | undefined): Projection[] {
  if (s === undefined) return [...PROJECTIONS];
  const parts = (Array.isArray(s) ? s : [s]).flatMap((x) => x.split(',')).map((x) => x.trim()).filter(Boolean);
  if (parts.length === 1 && (parts[0] === 'all' || parts[0] === 'all-linear')) return [...PROJECTIONS];
  const out: Projection[] = [];
  for (const p0 of parts) {
    const p = (p0.endsWith('_proj') ? p0 : `${p0}_proj`) as Projection;
    if (!PROJECTIONS.includes(p)) throw new Error(`unknown LoRA target '${p0}' (expected some of ${PROJECTIONS.join(', ')})`);
    if (!out.includes(p)) out.push(p);
  }
  return PROJECTIONS.filter((p) => out.includes(p));
}

/**
 * Wrap every target projection of every layer in a LoraLinear (reusing an existing wrapper) and add
 * adapter `name` (zero-initialised). Returns the sites in HF order.
 */
export function attachLora(w: LlamaWeights, name: string, spec: LoraSpec, targets: readonly Projection[] = PROJECTIONS,
  trainable = true): LoraSite[] {
  const sites: LoraSite[] = [];
  for (let l = 0; l < w.layers.length; l++) {
    for (const p of PROJECTIONS) {
      if (!targets.includes(p)) continue;
      let lin = w.linearAt(l, p);
      if (!(lin instanceof LoraLinear)) { lin = new LoraLinear(lin, w.precision); w.setLinear(l, p, lin); }
      (lin as LoraLinear).add(name, spec, trainable);
      sites.push({ layer: l, proj: p, lin: lin as LoraLinear });
    }
  }
  return sites;
}

/** The sites of a model that carry adapter `name`. */
export function loraSites(w: LlamaWeights, name: string): LoraSite[] {
  const out: LoraSite[] = [];
  for (const [layer, proj, lin] of w.linears()) if (lin instanceof LoraLinear && lin.adapters.has(name)) out.push({ layer, proj, lin });
  return out;
}

/** PEFT tensor name of a site's factor. */
export function peftKey(layer: number, proj: Projection, which: 'A' | 'B'): string {
  return `base_model.model.${projectionPath(layer, proj)}.lora_${which}.weight`;
}

export interface LoraParam { name: string; data: Arr; grad: Arr }

/** The trainable tensors of adapter `name` (PEFT names), for an optimizer. */
export function loraParams(w: LlamaWeights, name: string): LoraParam[] {
  const out: LoraParam[] = [];
  for (const s of loraSites(w, name)) {
    const a = s.lin.get(name);
    if (!a.gradA || !a.gradB) continue;
    out.push({ name: peftKey(s.layer, s.proj, 'A'), data: a.A, grad: a.gradA });
    out.push({ name: peftKey(s.layer, s.proj, 'B'), data: a.B, grad: a.gradB });
  }
  return out;
}

/** Remove adapter `name` everywhere (unwrapping layers left with no adapters). */
export function detachLora(w: LlamaWeights, name: string): void {
  for (const s of loraSites(w, name)) {
    s.lin.remove(name);
    if (s.lin.adapters.size === 0) w.setLinear(s.layer, s.proj, s.lin.base);
  }
}

/** Number of adapter parameters of `name`. */
export function loraParamCount(w: LlamaWeights, name: string): number {
  let n = 0;
  for (const s of loraSites(w, name)) { const a = s.lin.get(name); n += a.A.length + a.B.length; }
  return n;
}
