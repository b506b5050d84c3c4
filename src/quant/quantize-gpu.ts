// quantizeWeight (quantizer.ts) on the GPU for RTN, NormalFloat (+ double quantization) and ICQ (nf and int):
// the weight is uploaded once, the kernels of native/cuda/quantize.cu write one-byte codes and the metadata,
// the codes are packed into the pack.ts stream on the device (so only ⌈n·b/8⌉ bytes come back, and no host
// loop touches every weight), and the PackedTensor is assembled here — bit-identical to the CPU quantizers.
// GPTQ has its own GPU path (it needs the calibration Hessian).
import { LowbitError } from '../io/errors.js';
import { cudaQuantizer, type NativeCudaQuantize } from '../backend/cuda-quantize.js';
import type { PackedTensor, QuantOpts } from './types.js';
import { quantizeWeight, type QuantContext } from './quantizer.js';
import { packedBytes } from './pack.js';
import { resolveGroup } from './rtn.js';
import { nfLevels, dynamicMap, DQ_BLOCK } from './normalfloat.js';
import { icqFactors, icqIntMultipliers } from './icq.js';
import { quantEntropyTerms } from './quantize-gpu-twins.js';

/** Largest ICQ-NF block the GPU search holds in registers. */
export const GPU_ICQ_MAX_BLOCK = 256;

/** null when quantizeWeightGpu supports these options, else why not (the caller then uses the CPU). */
export function gpuQuantizeUnsupported(opts: QuantOpts): string | null {
  const int = (b: number) => Number.isInteger(b) && b >= 1 && b <= 8;
  switch (opts.method) {
    case 'rtn': return int(opts.bits) ? null : `rtn with ${opts.bits} bits`;
    case 'nf': return int(opts.bits) && opts.bits >= 2 ? null : `nf with ${opts.bits} bits`;
    case 'icq': {
      if ((opts.icqMode ?? 'nf') === 'int') return int(opts.bits) ? null : `icq-int with ${opts.bits} bits`;
      if (![2, 3, 4].includes(opts.bits)) return `icq-nf with ${opts.bits} bits (the GPU search does 2..4)`;
      const block = opts.groupSize && opts.groupSize > 0 ? opts.groupSize : 64;
      return block <= GPU_ICQ_MAX_BLOCK ? null : `icq-nf blocks of ${block} (the GPU search holds at most ${GPU_ICQ_MAX_BLOCK})`;
    }
    case 'gptq': return 'gptq (it needs the calibration Hessian: its own GPU path)';
    default: return `method '${(opts as QuantOpts).method}'`;
  }
}

/** Device buffers of one call, freed together. */
class Scratch {
  private readonly handles: number[] = [];
  constructor(readonly c: NativeCudaQuantize) {}
  alloc(bytes: number): number { const h = this.c.cudaAlloc(Math.max(4, bytes)); this.handles.push(h); return h; }
  upload(data: ArrayBufferView): number { const h = this.alloc(data.byteLength); if (data.byteLength) this.c.cudaUpload(h, data); return h; }
  download<T extends ArrayBufferView>(h: number, into: T): T { if (into.byteLength) this.c.cudaDownload(h, into); return into; }
  free(): void { for (const h of this.handles.splice(0)) this.c.cudaFree(h); }
}

/**
 * quantizeWeight(W, out, in, opts, ctx) on the GPU: the same PackedTensor bit for bit, and the same ICQ entropy
 * statistics in ctx.icqStats. W must hold float32 values (a Float32Array). Throws for unsupported options.
 * Every buffer is allocated and every input uploaded before the first kernel, and nothing comes back before the
 * last one, so the kernels run back to back.
 */
export function quantizeWeightGpu(c: NativeCudaQuantize, W: Float32Array, out: number, inF: number, opts: QuantOpts,
  ctx: QuantContext = {}): PackedTensor {
  const why = gpuQuantizeUnsupported(opts);
  if (why) throw new LowbitError(`quantize on the GPU: ${why} is not supported`);
  const n = out * inF;
  if (!(Number.isInteger(out) && out >= 1 && Number.isInteger(inF) && inF >= 1)) throw new LowbitError(`quantize on the GPU: bad shape ${out}x${inF}`);
  if (W.length !== n) throw new LowbitError(`quantize on the GPU: weight has ${W.length} values, expected ${out}x${inF}`);
  const s = new Scratch(c);
  try {
    const dW = s.upload(W), dCodes = s.alloc(n), dPacked = s.alloc(packedBytes(n, opts.bits));
    const finish = opts.method === 'rtn' || (opts.method === 'icq' && opts.icqMode === 'int')
      ? intLayout(s, dW, dCodes, out, inF, opts, ctx) : nfLayout(s, dW, dCodes, out, inF, opts, ctx);
    c.cudaPackCodes(dCodes, n, opts.bits, dPacked);
    const t = finish();
    t.qcodes = s.download(dPacked, new Uint8Array(packedBytes(n, opts.bits)));
    return t;
  } finally { s.free(); }
}

/** Downloads a layout's results into the tensor (all but its packed codes), after the kernels. */
type Finish = () => PackedTensor;

/** The 'int' layout (RTN, ICQ-int): launches the kernel (one-byte codes into dCodes). */
function intLayout(s: Scratch, dW: number, dCodes: number, out: number, inF: number, opts: QuantOpts, ctx: QuantContext): Finish {
  const c = s.c, bits = opts.bits;
  const g = resolveGroup(opts.groupSize, inF), ngr = out * Math.ceil(inF / g);
  const rule = opts.method === 'rtn' ? 0 : 1;
  const dS = s.alloc(ngr * 4), dZ = s.alloc(ngr * 4);
  let mults: number | null = null, ent: number | null = null, stats: number | null = null, nMults = 0;
  if (rule === 1) {
    const m = Float64Array.from(icqIntMultipliers());
    nMults = m.length;
    mults = s.upload(m);
    ent = s.upload(quantEntropyTerms(g, inF - (Math.ceil(inF / g) - 1) * g));
    if (ctx.icqStats) stats = s.alloc(2 * ngr * 8);
  }
  c.cudaQuantInt(dW, out, inF, bits, g, rule, dCodes, dS, dZ, mults, nMults, ent, stats);
  return () => {
    const t: PackedTensor = { method: opts.method, layout: 'int', bits, out, in: inF, groupSize: g, qcodes: new Uint8Array(0),
      scales: s.download(dS, new Float32Array(ngr)), zeros: s.download(dZ, new Float32Array(ngr)) };
    if (stats !== null && ctx.icqStats) {
      // quantizeICQ_Int: entropyBefore += meanGroupEntropy(minmax)·groups, entropyAfter likewise, sums in group order
      const st = s.download(stats, new Float64Array(2 * ngr));
      let hb = 0, ha = 0;
      for (let k = 0; k < ngr; k++) { hb += st[2 * k]; ha += st[2 * k + 1]; }
      ctx.icqStats.entropyBefore += (ngr ? hb / ngr : 0) * ngr;
      ctx.icqStats.entropyAfter += (ngr ? ha / ngr : 0) * ngr;
      ctx.icqStats.blocks += ngr;
    }
    return t;
  };
}

/** The 'nf' layout (NF, ICQ-NF; absmax plain or double-quantized): launches the kernels (one-byte codes into dCodes). */
function nfLayout(s: Scratch, dW: number, dCodes: number, out: number, inF: number, opts: QuantOpts, ctx: QuantContext): Finish {
  const c = s.c, n = out * inF, bits = opts.bits, icq = opts.method === 'icq', dq = !!opts.doubleQuant;
  const block = opts.groupSize && opts.groupSize > 0 ? opts.groupSize : 64, nb = Math.ceil(n / block);
  const nScale = Math.ceil(nb / DQ_BLOCK);
  // buffers and inputs first
  const levels = s.upload(nfLevels(bits)), dAbs = s.alloc(nb * 4);
  const dyn = icq || dq ? s.upload(dynamicMap()) : 0;
  const factors = icq ? Float32Array.from(icqFactors(opts.tauLambda ?? 0.1, opts.tauN ?? 100)) : new Float32Array(0);
  const dFactors = icq ? s.upload(factors) : 0, ent = icq ? s.upload(quantEntropyTerms(block, n - (nb - 1) * block)) : 0;
  const dTau = icq ? s.alloc(nb * 4) : 0, dTq = icq ? s.alloc(nb) : 0, dTs = icq ? s.alloc(nScale * 4) : 0;
  const stats = icq && ctx.icqStats ? s.alloc(2 * nb * 8) : null;
  const work = dq ? s.alloc(16) : 0, dQ = dq ? s.alloc(nb) : 0, dSc = dq ? s.alloc(nScale * 4) : 0;
  // kernels
  if (icq) {
    c.cudaIcqNf(dW, n, bits, block, levels, dFactors, factors.length, ent, dCodes, dAbs, dTau, stats);
    c.cudaTauDq(dTau, nb, dyn, dTq, dTs);
  } else c.cudaQuantBlockwise(dW, n, block, levels, 1 << bits, null, dCodes, dAbs);
  if (dq) {
    // QLoRA double quantization: offset = mean(absmax); (absmax − offset) → dynamic map in blocks of 256
    c.cudaAbsmaxMean(dAbs, nb, work);
    c.cudaQuantBlockwise(dAbs, nb, DQ_BLOCK, dyn, 256, work, dQ, dSc);
  }
  return () => {
    const t: PackedTensor = { method: icq ? 'icq' : 'nf', layout: 'nf', bits, out, in: inF, groupSize: block, qcodes: new Uint8Array(0) };
    if (icq) {
      t.tauQ = s.download(dTq, new Uint8Array(nb));
      t.tauScale = s.download(dTs, new Float32Array(nScale));
      if (stats !== null && ctx.icqStats) {
        // quantizeICQ_NF: per-tensor sums over blocks in order, then added to the running totals
        const st = s.download(stats, new Float64Array(2 * nb));
        let hb = 0, ha = 0;
        for (let b = 0; b < nb; b++) { ha += st[2 * b + 1]; hb += st[2 * b]; }
        ctx.icqStats.entropyBefore += hb; ctx.icqStats.entropyAfter += ha; ctx.icqStats.blocks += nb;
      }
    }
    if (dq) {
      t.absmaxQ = s.download(dQ, new Uint8Array(nb));
      t.absmaxScale = s.download(dSc, new Float32Array(nScale));
      t.absmaxOffset = s.download(work, new Float32Array(1))[0];
    } else t.absmax = s.download(dAbs, new Float32Array(nb));
    return t;
  };
}

export type WeightQuantizer = (W: Float32Array, out: number, inF: number, opts: QuantOpts, ctx?: QuantContext) => PackedTensor;

/**
 * The quantize command's hook: a quantizeWeight that runs on the GPU for the options it supports and on the CPU
 * otherwise (or for weights that are not float32); null when no usable GPU (see cudaQuantizerUnavailable).
 */
export function gpuWeightQuantizer(engine: NativeCudaQuantize | null = cudaQuantizer()): WeightQuantizer | null {
  if (!engine) return null;
  return (W, out, inF, opts, ctx = {}) => (W instanceof Float32Array && gpuQuantizeUnsupported(opts) === null
    ? quantizeWeightGpu(engine, W, out, inF, opts, ctx) : quantizeWeight(W, out, inF, opts, ctx));
}
