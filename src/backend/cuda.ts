// Typed access to the CUDA engine of the native addon: device buffers, packed low-bit weights uploaded
// once (codes + metadata as device buffers), and the kernels on them (dequantize to bf16, fused decode
// GEMV, dequantize + cuBLAS GEMM). TypeScript twins: src/quant/dequant.ts (dequantization) and
// kernels.ts sgemmRef on the dequantized weight (GEMV/GEMM); test/cuda-*.test.ts compares them.
import { nativeAddon, nativeReason, type NativeCuda } from './native.js';
import type { PackedTensor } from '../quant/types.js';
import { groupCount } from '../quant/types.js';
import { packedBytes } from '../quant/pack.js';
import { dynamicMap, nfLevels } from '../quant/normalfloat.js';
import { f16BitsToF32, f32ToF16Bits } from '../quant/f16.js';
import { LowbitError } from '../io/errors.js';

/** Descriptor of a packed tensor on the device, as the addon reads it (handles; 0/absent = none). */
export interface QuantDesc {
  layout: 0 | 1;
  bits: number;
  out: number;
  in: number;
  group: number;
  codes: number;
  sz?: number;
  gidx?: number;
  levels?: number;
  dynmap?: number;
  absmax?: number;
  absq?: number;
  absscale?: number;
  absoffset?: number;
  tauq?: number;
  tauscale?: number;
  /** 'int' 2-bit group 64: the fused GEMM's repacked stream (cudaQGemmFusedRepack; DeviceQuant.attachFusedRepack). */
  fused?: number;
}

/** Fused packed GEMM kernel choice (cudaQGemmFused): 0 default, 1/2 original codes, 3/4 repacked stream, 5/6 repacked
 * stream with split-K inside a 512-thread CTA, 7 = 5 with its stages filled by the copy engine (tensor map + bulk copies),
 * 8 = stream-K over two workers per SM (tiles split between workers, fixed up through a workspace; never the default). */
export type QGemmFusedVariant = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;

/** Fused GEMV kernel choice (cudaQGemv): 0 default (v1), 1 v1, 2 v2, 3 v3 (rows per thread auto), 34 / 38 v3 with 4 / 8. */
export type QGemvVariant = 0 | 1 | 2 | 3 | 34 | 38;

/** The packed-weight functions of the addon (native/cuda/cuda_napi.cc, register_cuda_quant). */
export interface NativeCudaQuant extends NativeCuda {
  /** dst bf16 [out·in] = dequantized weight (bf16 round-to-nearest-even of the TS float32 value). */
  cudaDequantBf16(desc: QuantDesc, dst: number): void;
  /**
   * y f32 [out] = Ŵ·x (+ y), x f32 [in]; fp32 accumulate; needs in, group multiples of 32 and no gIdx.
   * variant: 0 = default (v1), 1 = v1 (block of 4 rows), 2 = v2 (warp per row pair, 16-byte chunks, prefetch;
   * opt-in, measured slower than v1, see docs/cuda.md), 3 = v3 ('int' layout, 2 or 4 bits, in and group multiples
   * of 64; x staged once per block in shared memory and reused from registers over 4 or 8 rows per thread, picked
   * from the occupancy; 34 / 38 force 4 / 8 rows; opt-in until it has run on a device). Unsupported shapes throw.
   */
  cudaQGemv(desc: QuantDesc, x: number, y: number, accumulate: boolean, variant?: QGemvVariant): void;
  /** y f32 [rows] = W·x (+ y), W bf16 [rows, K], x f32 [K]. */
  cudaGemvBf16(W: number, rows: number, K: number, x: number, y: number, accumulate: boolean): void;
  /**
   * Y [M, out] = X [M, in]·Ŵᵀ (X bf16; Y f32 or bf16): dequantize into scratch (bf16 out·in), cuBLAS GEMM; the fused
   * kernel instead (scratch unused) where desc.fused is set (attachFusedRepack), 64 ≤ M ≤ LOWBIT_QGEMM_FUSED_MAX_M
   * (default 1024) and LOWBIT_QGEMM_FUSED is not 0.
   */
  cudaQGemm(desc: QuantDesc, M: number, X: number, Y: number, yF32: boolean, scratch: number): void;
  /**
   * The fused sm_90a kernel alone (native/cuda/qgemm_wgmma.cu; what cudaQGemm takes where it applies):
   * 'int' 2-bit group-64 weights without gIdx, in % 64 == 0, out % 128 == 0, on an sm_90 device; throws otherwise.
   * debug 1/2/3 (out = 128, M ≤ 128, f32 Y) dumps the A fragments / the swizzled X tile / the raw accumulators
   * into Y instead (CPU models: src/backend/qgemm-fused-model.ts). variant: 0 default (LOWBIT_QGEMM_FUSED_VARIANT if
   * set, else with desc.fused 7 when the tiles fit one wave of one CTA per SM and 4 otherwise, else 1); 1 / 2 = from the
   * original codes (6 stages, one CTA per SM / 5 stages, two CTAs per SM); 3 / 4 = from the repacked stream desc.fused
   * (the same two configurations); 5 / 6 = repacked stream, 512-thread CTA whose two warpgroup pairs each take half of
   * the k-blocks (5 / 4 stages per pair); 7 = 5 with each stage filled by one thread's tensor copy of X and bulk copy of
   * the codes (no debug modes).
   */
  cudaQGemmFused(desc: QuantDesc, M: number, X: number, Y: number, yF32: boolean, debug?: 0 | 1 | 2 | 3, variant?: QGemmFusedVariant): void;
  /** null when cudaQGemm would take the fused kernel for these operands (M ≥ 64 aside), else the reason. */
  cudaQGemmFusedWhyNot(desc: QuantDesc, M: number, X: number, Y: number): string | null;
  /** Bytes of the fused GEMM's repacked stream for this weight (out/128 · in/64 · 4096); 0 where it does not apply. */
  cudaQGemmFusedRepackBytes(desc: QuantDesc): number;
  /** dst = the repacked stream (layout: native/cuda/qgemm_wgmma.cu, model: src/backend/qgemm-fused-model.ts). */
  cudaQGemmFusedRepack(desc: QuantDesc, dst: number): void;
  cudaFillRandomBytes(h: number, bytes: number, seed: number): void;
  cudaFillUniformBf16(h: number, n: number, seed: number, lo: number, hi: number): void;
  cudaBenchDequant(descs: QuantDesc[], dst: number, dstStrideBytes: number, reps: number): number;
  cudaBenchCopy(dst: number, src: number, bytes: number, reps: number): number;
  cudaBenchQGemm(descs: QuantDesc[], M: number, X: number, Y: number, scratch: number, reps: number): number;
  /** Layer-stack prefill: dequantization of weight i+1 overlaps the GEMM of weight i (scratch: 2 weights, 256-aligned). */
  cudaBenchQGemmPipelined(descs: QuantDesc[], M: number, X: number, Y: number, scratch2: number, reps: number): number;
  cudaBenchDenseGemm(weights: number[], M: number, N: number, K: number, X: number, Y: number, reps: number): number;
  /** The fused kernel (bf16 Y) on the same rotation as cudaBenchQGemm; throws where it does not apply. */
  cudaBenchQGemmFused(descs: QuantDesc[], M: number, X: number, Y: number, reps: number, variant?: QGemmFusedVariant): number;
  cudaBenchQGemv(descs: QuantDesc[], x: number, y: number, reps: number, variant?: QGemvVariant): number;
  cudaBenchDecode(descs: QuantDesc[], A: number[] | null, B: number[] | null, rank: number, x: number, y: number,
    t: number, reps: number): number;
}

/** The CUDA engine when a device is usable; otherwise null and `cudaUnavailable()` says why. */
export function cudaEngine(): NativeCudaQuant | null {
  const a = nativeAddon();
  if (!a?.cuda || typeof (a.cuda as Partial<NativeCudaQuant>).cudaDequantBf16 !== 'function') return null;
  return a.cuda.cudaInfo().deviceCount > 0 ? (a.cuda as NativeCudaQuant) : null;
}

export function cudaUnavailable(): string {
  const a = nativeAddon();
  if (!a) return `native addon not built: ${nativeReason()}`;
  if (!a.cuda) return 'native addon built without CUDA (no nvcc at build time, or LOWBIT_NO_CUDA=1)';
  if (typeof (a.cuda as Partial<NativeCudaQuant>).cudaDequantBf16 !== 'function') return 'addon predates the packed-weight kernels (rebuild it)';
  const info = a.cuda.cudaInfo();
  return info.deviceCount > 0 ? 'available' : `no CUDA device: ${info.error ?? 'deviceCount is 0'}`;
}

/** A packed weight on the device. `bytes` = device bytes of codes + metadata (what a kernel must read). */
export class DeviceQuant {
  constructor(private readonly c: NativeCudaQuant, readonly desc: QuantDesc, readonly bytes: number,
    private readonly handles: number[]) {}
  get out(): number { return this.desc.out; }
  get in(): number { return this.desc.in; }
  free(): void { for (const h of this.handles.splice(0)) this.c.cudaFree(h); }
  /**
   * Builds the fused GEMM's repacked stream (codes in wgmma fragment order + per-row bf16 constants, 1.2× the code
   * and scale bytes; a one-time device pass) and sets desc.fused, so cudaQGemm may take the fused kernel. false
   * where the fused kernel does not take the weight (the addon lacks it, or the shape/layout does not fit).
   */
  attachFusedRepack(): boolean {
    if (this.desc.fused) return true;
    if (typeof this.c.cudaQGemmFusedRepackBytes !== 'function') return false;
    const n = this.c.cudaQGemmFusedRepackBytes(this.desc);
    if (!n) return false;
    const h = this.c.cudaAlloc(n);
    try {
      this.c.cudaQGemmFusedRepack(this.desc, h);
    } catch (e) {
      this.c.cudaFree(h);
      throw e;
    }
    this.handles.push(h);
    this.desc.fused = h;
    return true;
  }
}

function upload(c: NativeCudaQuant, data: ArrayBufferView, handles: number[], minBytes = data.byteLength): number {
  const h = c.cudaAlloc(Math.max(minBytes, data.byteLength, 4));
  handles.push(h);
  if (data.byteLength) c.cudaUpload(h, data);
  return h;
}

/** Code-stream allocation: the packed bytes rounded up to 4 plus 16 bytes the kernels may over-read. */
export function codeAllocBytes(n: number, bits: number): number {
  return ((packedBytes(n, bits) + 3) & ~3) + 16;
}

/**
 * Uploads a PackedTensor: codes (padded), and for 'int' the f16 scale/zero pairs as one 32-bit word per group
 * (exact: scales are f16 values, zeros integers ≤ 255) plus gIdx; for 'nf' the levels, absmax (plain or
 * double-quantized with the dynamic map) and ICQ τ.
 */
export function uploadPacked(c: NativeCudaQuant, p: PackedTensor): DeviceQuant {
  const n = p.out * p.in, ng = groupCount(p);
  if (p.qcodes.length < packedBytes(n, p.bits)) throw new LowbitError(`uploadPacked: ${p.qcodes.length} code bytes, need ${packedBytes(n, p.bits)}`);
  const handles: number[] = [];
  try {
    const desc: QuantDesc = { layout: p.layout === 'int' ? 0 : 1, bits: p.bits, out: p.out, in: p.in, group: p.groupSize,
      codes: upload(c, p.qcodes.subarray(0, packedBytes(n, p.bits)), handles, codeAllocBytes(n, p.bits)) };
    let bytes = packedBytes(n, p.bits);
    if (p.layout === 'int') {
      if (!p.scales || !p.zeros || p.scales.length < p.out * ng || p.zeros.length < p.out * ng) {
        throw new LowbitError(`uploadPacked: 'int' tensor needs ${p.out * ng} scales and zeros`);
      }
      const sz = new Uint32Array(p.out * ng);
      for (let k = 0; k < sz.length; k++) {
        const s = f32ToF16Bits(p.scales[k]), z = f32ToF16Bits(p.zeros[k]);
        if (f16BitsToF32(s) !== p.scales[k] || f16BitsToF32(z) !== p.zeros[k]) {
          throw new LowbitError(`uploadPacked: scale/zero ${k} (${p.scales[k]}, ${p.zeros[k]}) is not exact in f16`);
        }
        sz[k] = (s | (z << 16)) >>> 0;
      }
      desc.sz = upload(c, sz, handles);
      bytes += sz.byteLength;
      if (p.gIdx) {
        if (p.gIdx.length !== p.in) throw new LowbitError(`uploadPacked: gIdx has ${p.gIdx.length} entries, need ${p.in}`);
        for (let i = 0; i < p.in; i++) {
          if (!(p.gIdx[i] >= 0 && p.gIdx[i] < ng)) throw new LowbitError(`uploadPacked: gIdx[${i}] = ${p.gIdx[i]} outside 0..${ng - 1}`);
        }
        desc.gidx = upload(c, p.gIdx, handles);
        bytes += p.gIdx.byteLength;
      }
    } else {
      desc.levels = upload(c, nfLevels(p.bits), handles);
      if (p.absmaxQ || p.tauQ) desc.dynmap = upload(c, dynamicMap(), handles);
      if (p.absmax) {
        desc.absmax = upload(c, p.absmax, handles, ng * 4);
        bytes += ng * 4;
      } else if (p.absmaxQ && p.absmaxScale && p.absmaxOffset !== undefined) {
        desc.absq = upload(c, p.absmaxQ, handles, ng);
        desc.absscale = upload(c, p.absmaxScale, handles, Math.ceil(ng / 256) * 4);
        desc.absoffset = p.absmaxOffset;
        bytes += ng + p.absmaxScale.byteLength;
      } else throw new LowbitError('uploadPacked: nf tensor has neither absmax nor double-quantized absmax');
      if (p.tauQ && p.tauScale) {
        desc.tauq = upload(c, p.tauQ, handles, ng);
        desc.tauscale = upload(c, p.tauScale, handles, Math.ceil(ng / 256) * 4);
        bytes += ng + p.tauScale.byteLength;
      }
    }
    return new DeviceQuant(c, desc, bytes, handles);
  } catch (e) {
    for (const h of handles) c.cudaFree(h);
    throw e;
  }
}

export interface RandomQuantSpec {
  layout: 'int' | 'nf';
  bits: number;
  out: number;
  in: number;
  group: number;
  /** 'nf': double-quantized absmax */
  dq?: boolean;
  /** 'nf': ICQ τ shift */
  tau?: boolean;
  /** 'int': a random column → group map (GPTQ act-order layout) */
  gidx?: boolean;
}

/**
 * A packed weight with random codes made on the device (random bytes) and random metadata uploaded from here:
 * for benchmarks at LLaMA-7B sizes, where quantizing in TypeScript would take minutes. Scales in [2^-9, 2^-6)
 * (f16-exact), zeros uniform in 0..2^b−1; absmax in [0.01, 0.1).
 */
export function randomDeviceQuant(c: NativeCudaQuant, s: RandomQuantSpec, seed: number): DeviceQuant {
  const n = s.out * s.in;
  const ng = s.layout === 'int' ? Math.ceil(s.in / s.group) : Math.ceil(n / s.group);
  const handles: number[] = [];
  let x = (seed * 2654435761) >>> 0 || 1;
  const rnd = (): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 4294967296; };
  const codeBytes = codeAllocBytes(n, s.bits);
  const codes = c.cudaAlloc(codeBytes);
  handles.push(codes);
  c.cudaFillRandomBytes(codes, codeBytes, seed);
  const desc: QuantDesc = { layout: s.layout === 'int' ? 0 : 1, bits: s.bits, out: s.out, in: s.in, group: s.group, codes };
  let bytes = packedBytes(n, s.bits);
  if (s.layout === 'int') {
    const sz = new Uint32Array(s.out * ng), M = 2 ** s.bits;
    const table = new Uint32Array(1024);  // random (scale, zero) words, drawn per group from this table
    for (let k = 0; k < table.length; k++) {
      const sc = f32ToF16Bits(2 ** -9 * (1 + 7 * rnd())), z = f32ToF16Bits(Math.floor(rnd() * M));
      table[k] = (sc | (z << 16)) >>> 0;
    }
    for (let k = 0; k < sz.length; k++) sz[k] = table[Math.floor(rnd() * 1024)];
    desc.sz = upload(c, sz, handles);
    bytes += sz.byteLength;
    if (s.gidx) {
      const gi = Int32Array.from({ length: s.in }, () => Math.floor(rnd() * ng));
      desc.gidx = upload(c, gi, handles);
      bytes += gi.byteLength;
    }
  } else {
    desc.levels = upload(c, nfLevels(s.bits), handles);
    if (s.dq || s.tau) desc.dynmap = upload(c, dynamicMap(), handles);
    const nScale = Math.ceil(ng / 256);
    if (s.dq) {
      const q = new Uint8Array(ng), sc = new Float32Array(nScale);
      for (let k = 0; k < ng; k++) q[k] = 128 + Math.floor(rnd() * 128);
      sc.fill(0.05);
      desc.absq = upload(c, q, handles); desc.absscale = upload(c, sc, handles); desc.absoffset = 0.05;
      bytes += ng + sc.byteLength;
    } else {
      const am = new Float32Array(ng);
      for (let k = 0; k < ng; k++) am[k] = 0.01 + 0.09 * rnd();
      desc.absmax = upload(c, am, handles);
      bytes += am.byteLength;
    }
    if (s.tau) {
      const q = new Uint8Array(ng), sc = new Float32Array(nScale);
      for (let k = 0; k < ng; k++) q[k] = Math.floor(rnd() * 256);
      sc.fill(0.002);
      desc.tauq = upload(c, q, handles); desc.tauscale = upload(c, sc, handles);
      bytes += ng + sc.byteLength;
    }
  }
  return new DeviceQuant(c, desc, bytes, handles);
}

/** bf16 bits (Uint16Array) → numbers. */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const u = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return new Float32Array(u.buffer);
}

/** f32 → bf16 bits, round to nearest even (NaN stays NaN): what __float2bfloat16_rn does. */
export function f32ToBf16(x: ArrayLike<number>): Uint16Array {
  const f = Float32Array.from(x), u = new Uint32Array(f.buffer), o = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const b = u[i];
    o[i] = (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) ? (b >>> 16) | 0x40 : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return o;
}

/** Dequantizes on the device and downloads the bf16 result as numbers. */
export function dequantizeOnDevice(c: NativeCudaQuant, q: DeviceQuant): Float32Array {
  const n = q.out * q.in, h = c.cudaAlloc(n * 2);
  try {
    c.cudaDequantBf16(q.desc, h);
    const bits = new Uint16Array(n);
    c.cudaDownload(h, bits);
    return bf16ToF32(bits);
  } finally { c.cudaFree(h); }
}
