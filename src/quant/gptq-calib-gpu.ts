// GPTQ's layer-by-layer calibration forward on the GPU engine (quantize --method gptq --device cuda). The hidden
// states of every calibration window stay on the device (f32, the residual stream) and ONE decoder layer at a time
// runs over them, batch by batch, through GpuLlama.forwardLayer: first with the layer's FP weights (dense bf16), each
// projection group's input widened to f32 and added to its GpuHessian without leaving the device; then, once the
// caller has swapped the layer's projections for their packed tensors (setQuantized), once more in place, so the
// inputs of layer l+1 come from the quantized layers ≤ l — runGptq's semantics (src/quant/model.ts). Only one layer's
// weights are on the device at a time. The activations feeding GEMMs are bf16 here (f32 on the CPU model), so the
// Hessians differ from the CPU's by bf16 rounding (docs/cuda.md, "GPTQ on the GPU").
import { LowbitError } from '../io/errors.js';
import { type LlamaConfig, PROJECTIONS, type Projection, projectionShape } from '../model/config.js';
import { GpuWeights, type GpuBase, type GpuLayer } from '../model/gpu/device-weights.js';
import { GpuLlama, type LayerInputTap } from '../model/gpu/gpu-llama.js';
import { deviceAlloc } from '../model/gpu/arena.js';
import type { GpuEngine } from '../model/gpu/engine.js';
import type { GptqEngine } from '../backend/cuda-gptq.js';
import { f32ToBf16, uploadPacked, type DeviceQuant } from '../backend/cuda.js';
import type { GpuHessian } from './gptq-gpu.js';
import type { PackedTensor } from './types.js';

/** The forward's kernels and GPTQ's on one engine (the addon's CUDA object, or the host emulator in tests). */
export type CalibEngine = GpuEngine & GptqEngine;

/** The projection group whose input a tap sees: q/k/v share q_proj's, gate/up share gate_proj's. */
export type TapGroup = Parameters<LayerInputTap>[0];

/** One decoder layer's weights on the host (f32; projections in HF layout [out, in]). */
export interface HostLayer { inputNorm: Float32Array; postNorm: Float32Array; proj: Record<Projection, Float32Array> }

export class GpuCalibration {
  readonly rows: number;
  private hidden: number;
  private views: number[] = [];
  private out: number;
  private stage: number;
  private layer: GpuLayer;
  private layerBufs: number[] = [];
  private layerQuants: DeviceQuant[] = [];
  private weights: GpuWeights;
  private model: GpuLlama;

  /**
   * Embeds the windows (each `seq` ids) on the host from the f32 table embed [V, D] (exactly the CPU model's rows) and
   * uploads them; B windows run per forward (B divides the window count, as the CPU path's calibBatch).
   */
  constructor(readonly c: CalibEngine, readonly config: LlamaConfig, embed: Float32Array, windows: Int32Array[], readonly B: number) {
    const D = config.hiddenSize, V = config.vocabSize, seq = windows[0]?.length ?? 0;
    if (!windows.length || windows.length % B !== 0) throw new Error(`GpuCalibration: ${windows.length} windows in batches of ${B}`);
    if (embed.length !== V * D) throw new Error(`GpuCalibration: embedding has ${embed.length} values, expected [${V}, ${D}]`);
    this.rows = B * seq;
    // a one-layer model: the current layer is swapped in by loadLayer (the placeholder only sizes the scratch)
    const proj = {} as Record<Projection, GpuBase>;
    for (const p of PROJECTIONS) proj[p] = { kind: 'dense', ...projectionShape(config, p), w: 0 };
    this.layer = { inputNorm: 0, postNorm: 0, proj };
    this.weights = new GpuWeights(c, { ...config, numLayers: 1 }, 0, 0, 0, [this.layer]);
    const maxIn = Math.max(...PROJECTIONS.map((p) => projectionShape(config, p).in));
    const handles: number[] = [];
    try {
      this.hidden = handles[handles.length] = deviceAlloc(c, windows.length * seq * D, 'f32');
      this.out = handles[handles.length] = deviceAlloc(c, this.rows * D, 'f32');
      this.stage = handles[handles.length] = deviceAlloc(c, this.rows * maxIn, 'f32');
      const x = new Float32Array(seq * D);
      windows.forEach((w, i) => {
        if (w.length !== seq) throw new LowbitError(`calibration window ${i} has ${w.length} tokens, expected ${seq}`);
        for (let t = 0; t < seq; t++) {
          const id = w[t];
          if (!(id >= 0 && id < V)) throw new LowbitError(`calibration window ${i}: token id ${id} outside the vocabulary [0, ${V})`);
          x.set(embed.subarray(id * D, (id + 1) * D), t * D);
        }
        c.cudaUpload(this.hidden, x, i * seq * D * 4);
      });
      for (let b = 0; b < windows.length / B; b++) this.views.push(c.cudaView(this.hidden, b * this.rows * D * 4, this.rows * D * 4));
      this.model = new GpuLlama(c, this.weights);
      this.model.prepare(B, seq);
    } catch (e) {
      for (const v of this.views.splice(0)) c.cudaFree(v);
      for (const h of handles) c.cudaFree(h);
      throw e;
    }
  }

  /** Put layer w on the device (norms f32, projections dense bf16), releasing the previous layer's buffers. */
  loadLayer(w: HostLayer): void {
    this.releaseLayer();
    const up = (a: Uint16Array | Float32Array) => {
      const h = this.c.cudaAlloc(Math.max(4, a.byteLength));
      this.layerBufs.push(h);
      this.c.cudaUpload(h, a);
      return h;
    };
    this.layer.inputNorm = up(w.inputNorm);
    this.layer.postNorm = up(w.postNorm);
    for (const p of PROJECTIONS) {
      const s = projectionShape(this.config, p);
      if (w.proj[p].length !== s.out * s.in) throw new Error(`GpuCalibration: ${p} has ${w.proj[p].length} values, expected ${s.out}x${s.in}`);
      this.layer.proj[p] = { kind: 'dense', ...s, w: up(f32ToBf16(w.proj[p])) };
    }
  }

  /** The loaded layer's projection p from now on runs on its packed tensor t (the dense copy is released). */
  setQuantized(p: Projection, t: PackedTensor): void {
    const b = this.layer.proj[p];
    const q = uploadPacked(this.c, t);
    this.layerQuants.push(q);
    if (b.kind === 'dense') this.freeBuf(b.w);
    this.layer.proj[p] = { kind: 'quant', out: t.out, in: t.in, q };
  }

  /**
   * Forward every batch through the loaded layer as it is (its output discarded), adding each tapped group's input
   * rows (B·seq per batch, widened from bf16 to f32) to its Hessian.
   */
  accumulate(hessians: ReadonlyMap<TapGroup, GpuHessian>): void {
    const c = this.c, rows = this.rows;
    const tap: LayerInputTap = (p, x) => {
      const h = hessians.get(p);
      if (!h) return;
      c.cudaConvertBf16ToF32(this.stage, x, rows * h.n);
      h.addDevice(this.stage, rows);
    };
    for (const v of this.views) this.model.forwardLayer(0, v, this.out, tap);
  }

  /** Replace every window's hidden state by the loaded layer's output (the next layer's input). */
  advance(): void {
    for (const v of this.views) this.model.forwardLayer(0, v, v);
  }

  /** All windows' current hidden states [windows·seq, D] (tests). */
  readHidden(): Float32Array {
    const o = new Float32Array(this.views.length * this.rows * this.config.hiddenSize);
    this.c.cudaDownload(this.hidden, o);
    return o;
  }

  free(): void {
    this.releaseLayer();
    this.model.free();
    for (const v of this.views.splice(0)) this.c.cudaFree(v);
    for (const h of [this.stage, this.out, this.hidden]) if (h) this.c.cudaFree(h);
    this.stage = this.out = this.hidden = 0;
  }

  private freeBuf(h: number): void {
    const i = this.layerBufs.indexOf(h);
    if (i >= 0) { this.layerBufs.splice(i, 1); this.c.cudaFree(h); }
  }

  private releaseLayer(): void {
    for (const q of this.layerQuants.splice(0)) q.free();
    for (const h of this.layerBufs.splice(0)) this.c.cudaFree(h);
    for (const p of PROJECTIONS) { const b = this.layer.proj[p]; if (b.kind === 'dense') b.w = 0; }
  }
}
