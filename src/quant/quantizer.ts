// The quantizer handlers behind one call: quantizeWeight(W, out, in, opts) → PackedTensor.
import type { PackedTensor, QuantOpts } from './types.js';
import { quantizeRTN } from './rtn.js';
import { quantizeNF } from './normalfloat.js';
import { quantizeICQ_Int, quantizeICQ_NF, type IcqStats } from './icq.js';
import { quantizeGPTQ } from './gptq.js';
export { dequantize } from './dequant.js';

export interface QuantContext {
  /** GPTQ: the layer input Hessian 2/N·XᵀX [in, in] */
  hessian?: Float64Array;
  /** ICQ: accumulates entropy before/after */
  icqStats?: IcqStats;
  /** GPTQ: accumulates the GPTQ loss */
  gptqLoss?: { sum: number };
}

export function quantizeWeight(W: ArrayLike<number>, out: number, inF: number, opts: QuantOpts, ctx: QuantContext = {}): PackedTensor {
  switch (opts.method) {
    case 'rtn': return quantizeRTN(W, out, inF, opts);
    case 'nf': return quantizeNF(W, out, inF, opts);
    case 'icq': return (opts.icqMode ?? 'nf') === 'nf' ? quantizeICQ_NF(W, out, inF, opts, ctx.icqStats) : quantizeICQ_Int(W, out, inF, opts, ctx.icqStats);
    case 'gptq': {
      if (!ctx.hessian) throw new Error('gptq needs the layer Hessian (calibration data)');
      const r = quantizeGPTQ(W, out, inF, ctx.hessian, opts);
      if (ctx.gptqLoss) ctx.gptqLoss.sum += r.loss;
      return r.packed;
    }
    default: throw new Error(`unknown quantization method '${(opts as QuantOpts).method}'`);
  }
}
