// A host-memory emulator of the quantizer kernels (native/cuda/quantize.cu) on top of the engine emulator:
// each binding downloads its inputs from the emulated device buffers, runs the kernel's TypeScript twin
// (src/quant/quantize-gpu-twins.ts, pack.ts) and uploads its outputs, checking every buffer's size the way the
// native bindings do (the host engine throws on a short buffer). It runs quantizeWeightGpu's host logic
// (buffer sizes, entropy tables, descriptor assembly, statistics) in CI; the kernels themselves are tested on a GPU.
import type { NativeCudaQuantize } from '../../src/backend/cuda-quantize.js';
import { packCodes, packedBytes } from '../../src/quant/pack.js';
import { absmaxMeanRef, icqNfRef, quantBlockwiseRef, quantIntRef, tauDqRef } from '../../src/quant/quantize-gpu-twins.js';
import { icqIntMultipliers } from '../../src/quant/icq.js';
import { nfLevels } from '../../src/quant/normalfloat.js';
import { hostEngine, type HostEngine } from './host-engine.js';

export type HostQuantizer = HostEngine & NativeCudaQuantize & { kernelCalls: string[] };

export function hostQuantizer(): HostQuantizer {
  const e = hostEngine();
  const kernelCalls: string[] = [];
  const get = <T extends ArrayBufferView>(h: number, a: T): T => { e.cudaDownload(h, a); return a; };
  const f32 = (h: number, n: number) => get(h, new Float32Array(n));
  const put = (h: number, a: ArrayBufferView) => e.cudaUpload(h, a);
  const need = (ok: boolean, what: string) => { if (!ok) throw new Error(`host quantizer: ${what}`); };
  const q: Omit<NativeCudaQuantize, keyof HostEngine> = {
    cudaQuantInt(W, out, inF, bits, group, rule, codes, scales, zeros, mults, nMults, ent, stats) {
      kernelCalls.push(`int${rule}`);
      need(group >= 1 && group <= inF, `group ${group} outside 1..${inF}`);
      const ng = out * Math.ceil(inF / group);
      if (rule === 1) {
        need(mults !== null && ent !== null, 'icq-int needs multipliers and entropy terms');
        const m = get(mults!, new Float64Array(nMults));
        need(m.every((v, i) => v === icqIntMultipliers()[i]) && nMults === icqIntMultipliers().length, 'multipliers differ from icqIntMultipliers()');
        get(ent!, new Float64Array(2 * (group + 1)));
      }
      const c = new Uint8Array(out * inF), s = new Float32Array(ng), z = new Float32Array(ng);
      const st = rule === 1 && stats !== null ? new Float64Array(2 * ng) : undefined;
      quantIntRef(f32(W, out * inF), out, inF, bits, group, rule, c, s, z, st);
      put(codes, c); put(scales, s); put(zeros, z);
      if (st) put(stats!, st);
    },
    cudaQuantBlockwise(x, n, block, levels, nLevels, offset, codes, absmax) {
      kernelCalls.push('blockwise');
      const c = new Uint8Array(n), am = new Float32Array(Math.ceil(n / block));
      quantBlockwiseRef(f32(x, n), block, f32(levels, nLevels), offset === null ? undefined : f32(offset, 1)[0], c, am);
      put(codes, c); put(absmax, am);
    },
    cudaIcqNf(W, n, bits, block, levels, factors, nFactors, ent, codes, absmax, tau, stats) {
      kernelCalls.push('icq-nf');
      need(f32(levels, 1 << bits).every((v, i) => v === nfLevels(bits)[i]), 'levels differ from nfLevels(bits)');
      get(ent, new Float64Array(2 * (block + 1)));
      const nb = Math.ceil(n / block);
      const c = new Uint8Array(n), am = new Float32Array(nb), t = new Float32Array(nb);
      const st = stats === null ? undefined : new Float64Array(2 * nb);
      icqNfRef(f32(W, n), bits, block, f32(factors, nFactors), c, am, t, st);
      put(codes, c); put(absmax, am); put(tau, t);
      if (st) put(stats!, st);
    },
    cudaAbsmaxMean(absmax, nb, work) {
      kernelCalls.push('mean');
      get(work, new Uint8Array(16));
      put(work, Float32Array.of(absmaxMeanRef(f32(absmax, nb))));
    },
    cudaTauDq(tau, nb, dynmap, qh, scale) {
      kernelCalls.push('tau-dq');
      f32(dynmap, 256);
      const qq = new Uint8Array(nb), sc = new Float32Array(Math.ceil(nb / 256));
      tauDqRef(f32(tau, nb), qq, sc);
      put(qh, qq); put(scale, sc);
    },
    cudaPackCodes(codes, n, bits, packed) {
      kernelCalls.push('pack');
      const p = packCodes(get(codes, new Uint8Array(n)), bits);
      need(p.length === packedBytes(n, bits), 'packed size');
      put(packed, p);
    },
  };
  return Object.assign(e, q, { kernelCalls }) as HostQuantizer;
}
