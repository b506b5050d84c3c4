// The frozen base of a LLaMA on the device: packed low-bit projections stay packed (DeviceQuant: codes +
// metadata, dequantized per use into one shared bf16 scratch), dense projections and the embedding /
// lm_head are bf16, norm weights f32. Built from a CPU LlamaWeights (uploadWeights) or, for benchmarks at 7B
// sizes where a TypeScript quantization would take minutes, from random packed codes made on the device
// (randomGpuWeights).
import type { NativeCudaQuant, RandomQuantSpec } from '../../backend/cuda.js';
import { DeviceQuant, f32ToBf16, randomDeviceQuant, uploadPacked } from '../../backend/cuda.js';
import { type LlamaConfig, type Projection, PROJECTIONS, projectionShape } from '../config.js';
import type { Linear } from '../linear.js';
import type { LlamaWeights } from '../weights.js';
import { PackedLinear } from '../../quant/packed-linear.js';
import { LoraLinear } from '../../adapters/lora.js';
import type { Arr } from '../../tensor.js';
import { LowbitError } from '../../io/errors.js';

/** A frozen projection on the device: packed codes, or a dense bf16 W[out, in]. */
export type GpuBase =
  | { kind: 'quant'; out: number; in: number; q: DeviceQuant }
  | { kind: 'dense'; out: number; in: number; w: number };

export interface GpuLayer { inputNorm: number; postNorm: number; proj: Record<Projection, GpuBase> }

export class GpuWeights {
  private owned: number[] = [];
  private quants: DeviceQuant[] = [];
  constructor(readonly c: NativeCudaQuant, readonly config: LlamaConfig, public embed: number,
    public lmHead: number, public finalNorm: number, public layers: GpuLayer[]) {}

  /** Device bytes of the packed/dense projections (what a forward must read once). */
  get baseBytes(): number {
    let b = 0;
    for (const l of this.layers) for (const p of PROJECTIONS) { const x = l.proj[p]; b += x.kind === 'quant' ? x.q.bytes : x.out * x.in * 2; }
    return b;
  }
  /** Largest out·in of a projection: the size of the shared dequantization scratch. */
  get maxWeight(): number {
    let m = 0;
    for (const l of this.layers) for (const p of PROJECTIONS) m = Math.max(m, l.proj[p].out * l.proj[p].in);
    return m;
  }
  track(h: number): number { this.owned.push(h); return h; }
  trackQuant(q: DeviceQuant): DeviceQuant { this.quants.push(q); return q; }
  free(): void {
    for (const q of this.quants.splice(0)) q.free();
    for (const h of new Set(this.owned.splice(0))) this.c.cudaFree(h);
  }
}

function upF32(c: NativeCudaQuant, a: Arr): number {
  const f = a instanceof Float32Array ? a : Float32Array.from(a);
  const h = c.cudaAlloc(Math.max(4, f.byteLength));
  c.cudaUpload(h, f);
  return h;
}
function upBf16(c: NativeCudaQuant, a: Arr): number {
  const b = f32ToBf16(a);
  const h = c.cudaAlloc(Math.max(2, b.byteLength));
  c.cudaUpload(h, b);
  return h;
}

interface HasDense { dense(): Arr }
function baseOf(lin: Linear): Linear { return lin instanceof LoraLinear ? lin.base : lin; }

/** Uploads a CPU model's frozen base (adapters are uploaded separately, see GpuLora). */
export function uploadWeights(c: NativeCudaQuant, w: LlamaWeights): GpuWeights {
  const cfg = w.config;
  const embed = upBf16(c, w.embed);
  const headLin = w.lmHead as Linear & Partial<HasDense>;
  const headW = typeof headLin.dense === 'function' ? headLin.dense() : null;
  if (!headW) throw new LowbitError(`GPU engine: lm_head ${w.lmHead.constructor.name} has no dense weight`);
  const lmHead = headW === w.embed ? embed : upBf16(c, headW);
  const gw = new GpuWeights(c, cfg, embed, lmHead, upF32(c, w.finalNorm), []);
  gw.track(embed); gw.track(lmHead); gw.track(gw.finalNorm);
  for (let l = 0; l < cfg.numLayers; l++) {
    const L = w.layers[l];
    const proj = {} as Record<Projection, GpuBase>;
    for (const p of PROJECTIONS) {
      const b = baseOf(w.linearAt(l, p));
      if (b instanceof PackedLinear) {
        proj[p] = { kind: 'quant', out: b.outFeatures, in: b.inFeatures, q: gw.trackQuant(uploadPacked(c, b.packed)) };
      } else {
        const d = (b as Linear & Partial<HasDense>).dense;
        if (typeof d !== 'function') throw new LowbitError(`GPU engine: layer ${l} ${p} (${b.constructor.name}) has no dense weight`);
        proj[p] = { kind: 'dense', out: b.outFeatures, in: b.inFeatures, w: gw.track(upBf16(c, d.call(b))) };
      }
    }
    gw.layers.push({ inputNorm: gw.track(upF32(c, L.inputNorm)), postNorm: gw.track(upF32(c, L.postNorm)), proj });
  }
  return gw;
}

/**
 * A random model of the given shape on the device: every projection packed with random codes and metadata
 * (randomDeviceQuant), embedding / lm_head uniform bf16 in ±0.05, norms 1. Timing and memory only.
 */
export function randomGpuWeights(c: NativeCudaQuant, cfg: LlamaConfig, q: Omit<RandomQuantSpec, 'out' | 'in'>, seed = 1): GpuWeights {
  const V = cfg.vocabSize, D = cfg.hiddenSize;
  const embed = c.cudaAlloc(V * D * 2);
  c.cudaFillUniformBf16(embed, V * D, seed, -0.05, 0.05);
  const lmHead = c.cudaAlloc(V * D * 2);
  c.cudaFillUniformBf16(lmHead, V * D, seed + 1, -0.05, 0.05);
  const ones = new Float32Array(D).fill(1);
  const gw = new GpuWeights(c, cfg, embed, lmHead, upF32(c, ones), []);
  gw.track(embed); gw.track(lmHead); gw.track(gw.finalNorm);
  for (let l = 0; l < cfg.numLayers; l++) {
    const proj = {} as Record<Projection, GpuBase>;
    PROJECTIONS.forEach((p, i) => {
      const s = projectionShape(cfg, p);
      proj[p] = { kind: 'quant', out: s.out, in: s.in, q: gw.trackQuant(randomDeviceQuant(c, { ...q, out: s.out, in: s.in }, seed * 1000 + l * 7 + i)) };
    });
    gw.layers.push({ inputNorm: gw.track(upF32(c, ones)), postNorm: gw.track(upF32(c, ones)), proj });
  }
  return gw;
}
