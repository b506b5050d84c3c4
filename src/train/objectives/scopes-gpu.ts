// RILQ §5's scopes on the GPU engine. Layer scope (the twin of LayerScopeObjective in scopes.ts): every decoder block of the
// student runs on the FP teacher's input to that block and is pulled toward the teacher's output of it,
// Σ_l MSE(block_l^S(x_l^T), x_{l+1}^T)/L, gradients staying inside each block. The teacher is a second GpuLlama on the
// FP weights (bf16 on the device), run online per window; the whole window (teacher forward, then per block: copy the
// teacher's input in, forward, loss, backward) is one device sequence, replayed as a CUDA graph.
import { PROJECTIONS } from '../../model/config.js';
import { GraphCache } from '../../model/gpu/graph-cache.js';
import type { GpuWeights } from '../../model/gpu/device-weights.js';
import type { GpuLlama } from '../../model/gpu/gpu-llama.js';
import type { LossParts, Objective } from './types.js';

export class GpuLayerScopeObjective implements Objective {
  readonly name = 'layer';
  private readonly graphs: GraphCache;
  constructor(private readonly m: GpuLlama, private readonly teacher: GpuLlama) {
    if (teacher.config.numLayers !== m.config.numLayers || teacher.config.hiddenSize !== m.config.hiddenSize)
      throw new Error('layer scope: the teacher and the student differ in shape');
    this.graphs = new GraphCache(m);
  }

  run(ids: Int32Array, _index: number, grad: boolean, scale: number): LossParts {
    const m = this.m, tm = this.teacher, T = ids.length, L = m.config.numLayers, D = m.config.hiddenSize;
    tm.setIds(ids, 1, T);  // uploads (outside the graph)
    m.prepare(1, T);
    const work = () => {
      tm.forwardDevice();  // the teacher's residual stream: its input to every block and the last output
      m.beginLoss(false);
      for (let l = 0; l < L; l++) {
        m.c.cudaCopy(m.residual(l), tm.residual(l), T * D * 4);
        m.forwardBlock(l);
        m.mseResidual(l + 1, tm.residual(l + 1), grad, scale / L, 0);
        if (grad) m.backwardBlock(l);
      }
    };
    this.graphs.run(`${T}|${grad}|${scale}`, work);
    const mse = m.readLoss()[0] / (T * D * L);
    return { loss: mse, mse };
  }

  free(): void { this.graphs.free(); }
}

/**
 * RILQ §5's linear scope on the GPU engine (the twin of LinearScopeObjective): every adapted projection's output on the
 * student's own input, (Q + sBA)x, is pulled toward the FP projection on the SAME input, Wx, Σ_sites MSE/sites; the
 * gradient of each site stays in its adapter (no gradient to x). One forward per window with a tap after every
 * projection: the FP target (one GEMM against the teacher's bf16 weight), the loss, and the site's adapter backward.
 */
export class GpuLinearScopeObjective implements Objective {
  readonly name = 'linear';
  private readonly graphs: GraphCache;
  private readonly nSites: number;
  private bufs: { n: number; yF: number; tgt: number; dF: number; dB: number } | null = null;
  constructor(private readonly m: GpuLlama, private readonly teacher: GpuWeights) {
    const lora = m.lora, cfg = m.config;
    if (!lora) throw new Error('linear scope: the student has no adapters');
    let n = 0;
    for (let l = 0; l < cfg.numLayers; l++) for (const p of PROJECTIONS) {
      if (!lora.at(l, p)) continue;
      if (teacher.layers[l].proj[p].kind !== 'dense') throw new Error(`linear scope: the teacher's layer ${l} ${p} is not dense`);
      n++;
    }
    if (n === 0) throw new Error('linear scope: the student has no LoRA layers');
    this.nSites = n;
    this.graphs = new GraphCache(m);
  }

  run(ids: Int32Array, _index: number, grad: boolean, scale: number): LossParts {
    const m = this.m, c = m.c, T = ids.length, cfg = m.config, lora = m.lora!;
    m.setIds(ids, 1, T);
    const maxOut = Math.max(cfg.hiddenSize, cfg.intermediateSize, cfg.numHeads * cfg.headDim), n = T * maxOut;
    if (!this.bufs || this.bufs.n < n) {
      this.graphs.free();  // captured windows point at the old buffers
      this.freeBufs();
      this.bufs = { n, yF: c.cudaAlloc(n * 4), tgt: c.cudaAlloc(n * 4), dF: c.cudaAlloc(n * 4), dB: c.cudaAlloc(n * 2) };
    }
    const b = this.bufs, gs = scale / this.nSites;
    const work = () => {
      m.beginLoss(false);
      m.forwardWithSiteTap((l, p, x, y, yF32) => {
        const site = lora.at(l, p);
        if (!site) return;
        const W = this.teacher.layers[l].proj[p], k = T * site.out;
        if (W.kind !== 'dense') return;
        // the loss accumulator sums squares: both sides scaled by 1/√k make a site's share its MSE over its own k values
        const rk = 1 / Math.sqrt(k);
        if (yF32) c.cudaCopy(b.yF, y, k * 4);
        else c.cudaConvertBf16ToF32(b.yF, y, k);
        c.cudaScaleF32(b.yF, k, rk);
        c.cublasGemmBf16(false, true, T, site.out, site.in, x, W.w, b.tgt, rk, 0, true);  // Wx/√k, f32
        if (grad) c.cudaMemset0(b.dF, k * 4);
        m.mseInto(b.yF, b.tgt, grad ? b.dF : null, k, gs, 0);  // dF = gs·2(y − Wx)/(k·√k)
        if (!grad) return;
        c.cudaCastF32ToBf16Scaled(b.dB, b.dF, k, Math.sqrt(k));  // ∂L/∂y = gs·2(y − Wx)/k
        m.siteBackward(l, p, b.dB, x);
      });
    };
    this.graphs.run(`${T}|${grad}|${scale}`, work);
    const mse = m.readLoss()[0] / this.nSites;  // Σ_sites MSE_site / sites
    return { loss: mse, mse };
  }

  private freeBufs(): void {
    if (!this.bufs) return;
    for (const h of [this.bufs.yF, this.bufs.tgt, this.bufs.dF, this.bufs.dB]) this.m.c.cudaFree(h);
    this.bufs = null;
  }

  free(): void { this.graphs.free(); this.freeBufs(); }
}
