// A host-memory emulator of the CUDA engine, built from the kernels' TypeScript twins: device buffers are
// ArrayBuffers behind the same numeric handles, and every kernel the GPU model calls is its reference
// (sgemm in f64 on bf16-rounded operands, dequantize, rmsnorm/rope/swiglu/attention refs, the chunked CE, AdamW)
// with bf16 rounding exactly where the CUDA kernels store bf16. CUDA graphs record the calls made between
// begin and end and replay them; uploads, downloads and allocations during a capture throw, as on a GPU.
// It lets CI run the GPU model's orchestration (arenas, views, grouped adapters, decoder, graphs, the RILQ
// objective through the trainer) against the CPU model; the kernels themselves are tested on the GPU machine.
import { bf16ToF32, f32ToBf16 } from '../../src/backend/cuda.js';
import { decodeOwnStagedX, decodeSlotRound, type DecodeSeg } from '../../src/backend/cuda-decode.js';
import type { GpuEngine } from '../../src/model/gpu/engine.js';
import type { QuantDesc } from '../../src/backend/cuda.js';
import { attentionBackwardRef, attentionForwardRef } from '../../src/backend/kernels.js';
import { rmsnormBackwardRef, rmsnormForwardRef } from '../../src/model/ops/rmsnorm.js';
import { ropeBackward, ropeForward } from '../../src/model/ops/rope.js';
import { swigluBackwardRef, swigluForwardRef } from '../../src/model/ops/swiglu.js';
import { klCeRowsRef } from '../../src/model/ops/kl-ce.js';
import { dequantize } from '../../src/quant/dequant.js';
import { argmax } from '../../src/model/sampling.js';
import { packedBytes, unpackCodes } from '../../src/quant/pack.js';
import { f16BitsToF32 } from '../../src/quant/f16.js';
import { groupCount, type PackedTensor } from '../../src/quant/types.js';
import { INT8X_CHAIN_SYNC_WORDS, INT8X_T_UNSET as T_UNSET, int8xScratchBytes, type Int8xChainPhase, int8X, int8xLoraA, int8xPrepInput, repackInt8x, tileInt8xSz, unrepackInt8x, untileInt8xSz, type Int8xPrepBt } from '../../src/backend/cuda-int8x.js';

interface HostBuf { mem: ArrayBuffer; off: number; bytes: number }

/**
 * int8xExact: the int8-x kernels' emulation reads the exact x̃ its prep computed instead of the int8 image (the rounding
 * then is the only thing that separates kernel 8 from kernel 5, so a test can check kernel 8's orchestration at kernel
 * 5's tolerance).
 */
export type HostEngine = GpuEngine & { live(): number; calls: number; int8xExact: boolean };

export function hostEngine(): HostEngine {
  const bufs = new Map<number, HostBuf>();
  const exactX = new Map<number, Float32Array>();  // scratch handle → the prep's x̃ (int8xExact)
  // y + B·t (B bf16 [y.length, r], t f32 from element tOff of buffer t; f64 sums), the twin of the kernels' LoRA B·t
  const plusBt = (y: Float32Array, B: number | null, t: number | null, r: number, tOff = 0): Float32Array => {
    if (!B || !t || r < 1) return y;
    const b = bfRead(B, y.length * r), tt = f32(t, tOff + r).subarray(tOff), o = new Float32Array(y.length);
    for (let i = 0; i < y.length; i++) { let s = 0; for (let j = 0; j < r; j++) s += b[i * r + j] * tt[j]; o[i] = y[i] + s; }
    return o;
  };
  // Σv² of each span of `per` elements (the Σx² partials the GEMV's 1/rms reads: per prep block of 512, or per group of 64)
  const sumsOfSquares = (v: Float32Array, per: number): Float64Array => {
    const out = new Float64Array(Math.ceil(v.length / per));
    for (let i = 0; i < v.length; i++) out[Math.floor(i / per)] += v[i] * v[i];
    return out;
  };
  // an int8-x scratch (x̂ | a | Σx̂) from x̃, as the prep kernel leaves it (and x̃ kept for int8xExact)
  const int8xFill = (scratch: number, xt: Float32Array) => {
    const v = int8xViews(scratch, xt.length), { xq, a, sum } = int8X(xt);
    exactX.set(scratch, xt);
    v.xq.set(xq); v.a.set(a); v.sum.set(sum);
  };
  // a chain input (x̂ | a | Σx̂ | a Σv² partial per group) into scratch, as cudaInt8xPrep makes it: the residual
  // v = hin + yin (written to hout) with RMSNorm, or SwiGLU of yin's two halves
  const makeInput = (scratch: number, inF: number, src: { hin: number; yin: number; hout: number; normW: number } | { yin: number }) => {
    if ('normW' in src) {
      const res = int8xPrepInput(f32(src.hin, inF).slice(), { addY: f32(src.yin, inF).slice(), normW: f32(src.normW, inF).slice() });
      f32(src.hout, inF).set(res.xOut);
      int8xFill(scratch, res.xt);
      f32(scratch, inF / 64, (inF + inF / 8) / 4).set(sumsOfSquares(res.xOut, 64));
    } else {
      const yv = f32(src.yin, 2 * inF);
      int8xFill(scratch, int8xPrepInput(yv.slice(0, inF), { x2: yv.slice(inF, 2 * inF) }).xt);
    }
  };
  // views of an int8-x scratch of inF inputs: x̂ [inF] | a [ng] | Σx̂ [ng]
  const int8xViews = (scratch: number, inF: number) => {
    const ng = inF / 64, sb = get(scratch, inF + 8 * ng);
    return { xq: new Int8Array(sb.mem, sb.off, inF), a: f32(scratch, ng, inF / 4), sum: new Int32Array(sb.mem, sb.off + inF + 4 * ng, ng) };
  };
  let next = 1;
  // the chain's per-block x̂ (shared memory on the GPU): a scratch per input width, made outside any capture's checks
  const chainScr = new Map<number, number>();
  const chainScratch = (inF: number): number => {
    let h = chainScr.get(inF);
    if (h === undefined) { h = next++; bufs.set(h, { mem: new ArrayBuffer(int8xScratchBytes(inF)), off: 0, bytes: int8xScratchBytes(inF) }); chainScr.set(inF, h); }
    return h;
  };
  let capture: (() => void)[] | null = null;
  const graphs = new Map<number, (() => void)[]>();
  const plans = new Map<number, { name: string; args: unknown[] }[]>();
  let planRec: { name: string; args: unknown[] }[] | null = null;
  let nextGraph = 1;
  // int8-x chain plans (cudaInt8xChainPlan): their phases
  const chainPlans = new Map<number, { phases: Int8xChainPhase[]; ks: number; positions: number }>();
  let nextChain = 1;
  // whether two handles' byte ranges share memory (views of one allocation included)
  const overlaps = (h1: number, n1: number, h2: number, n2: number): boolean => {
    const a = get(h1), b = get(h2);
    return a.mem === b.mem && a.off < b.off + n2 && b.off < a.off + n1;
  };
  const get = (h: number, need = 0): HostBuf => {
    const b = bufs.get(h);
    if (!b) throw new Error(`host engine: ${h} is not a live buffer`);
    if (b.bytes < need) throw new Error(`host engine: buffer ${h} has ${b.bytes} bytes, needs ${need}`);
    return b;
  };
  const noCapture = (what: string) => { if (capture) throw new Error(`host engine: ${what} during a graph capture`); };
  const f32 = (h: number, n: number, off = 0) => { const b = get(h, (off + n) * 4); return new Float32Array(b.mem, b.off + off * 4, n); };
  const i32 = (h: number, n: number) => { const b = get(h, n * 4); return new Int32Array(b.mem, b.off, n); };
  const u32 = (h: number, n: number) => { const b = get(h, n * 4); return new Uint32Array(b.mem, b.off, n); };
  const u16 = (h: number, n: number, off = 0) => { const b = get(h, (off + n) * 2); return new Uint16Array(b.mem, b.off + off * 2, n); };
  const u8 = (h: number, n: number) => { const b = get(h, n); return new Uint8Array(b.mem, b.off, n); };
  const fromBf = (a: Uint16Array) => { const u = new Uint32Array(a.length); for (let i = 0; i < a.length; i++) u[i] = a[i] << 16; return new Float32Array(u.buffer); };
  const bfRead = (h: number, n: number) => fromBf(u16(h, n));
  const bfWrite = (h: number, x: ArrayLike<number>, off = 0) => u16(h, x.length, off).set(f32ToBf16(x));
  const round = (x: ArrayLike<number>) => fromBf(f32ToBf16(x));

  /** Row-major C (ldc, at cOff) = alpha·op(A)·op(B) + beta·C over bf16 A, B; f64 sums, C bf16 or f32. */
  function gemm(ta: boolean, tb: boolean, M: number, N: number, K: number, A: number, aOff: number, lda: number,
    B: number, bOff: number, ldb: number, C: number, cOff: number, ldc: number, alpha: number, beta: number, cF32: boolean): void {
    const aRows = ta ? K : M, bRows = tb ? N : K;
    const a = fromBf(u16(A, (aRows - 1) * lda + (ta ? M : K), aOff)), b = fromBf(u16(B, (bRows - 1) * ldb + (tb ? K : N), bOff));
    const cn = (M - 1) * ldc + N;
    const c: Float32Array | Uint16Array = cF32 ? f32(C, cn, cOff) : u16(C, cn, cOff);
    const out = new Float32Array(1);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[ta ? k * lda + m : m * lda + k] * b[tb ? n * ldb + k : k * ldb + n];
        const o = m * ldc + n;
        const old = beta !== 0 ? (cF32 ? (c as Float32Array)[o] : fromBf(Uint16Array.of((c as Uint16Array)[o]))[0]) : 0;
        out[0] = alpha * s + beta * old;
        if (cF32) (c as Float32Array)[o] = out[0]; else (c as Uint16Array)[o] = f32ToBf16(out)[0];
      }
    }
  }

  /** The packed tensor behind a descriptor, read back from emulated device memory, dequantized by the TS twin. */
  function dequantDesc(d: QuantDesc): Float32Array {
    const n = d.out * d.in;
    const p: PackedTensor = { method: d.layout === 0 ? 'rtn' : 'nf', layout: d.layout === 0 ? 'int' : 'nf', bits: d.bits, out: d.out, in: d.in,
      groupSize: d.group, qcodes: u8(d.codes, packedBytes(n, d.bits)).slice() };
    const ng = groupCount(p);
    if (d.layout === 0) {
      const sz = u32(d.sz!, d.out * ng);
      p.scales = Float32Array.from(sz, (w) => f16BitsToF32(w & 0xffff));
      p.zeros = Float32Array.from(sz, (w) => f16BitsToF32(w >>> 16));
      if (d.gidx) p.gIdx = i32(d.gidx, d.in).slice();
    } else {
      if (d.absmax) p.absmax = f32(d.absmax, ng).slice();
      else { p.absmaxQ = u8(d.absq!, ng).slice(); p.absmaxScale = f32(d.absscale!, Math.ceil(ng / 256)).slice(); p.absmaxOffset = d.absoffset; }
      if (d.tauq) { p.tauQ = u8(d.tauq, ng).slice(); p.tauScale = f32(d.tauscale!, Math.ceil(ng / 256)).slice(); }
    }
    return dequantize(p);
  }

  const ops = {
    // ---- kernels (recorded while capturing) ----
    cublasGemmBf16: (ta: boolean, tb: boolean, M: number, N: number, K: number, A: number, B: number, C: number, alpha: number, beta: number, cF32: boolean) =>
      gemm(ta, tb, M, N, K, A, 0, ta ? M : K, B, 0, tb ? K : N, C, 0, N, alpha, beta, cF32),
    cublasGemmBf16Ex: gemm,
    cublasGemmBf16SplitK: (tb: boolean, M: number, N: number, K: number, A: number, aOff: number, lda: number, B: number, bOff: number, ldb: number,
      C: number, cOff: number, ldc: number, alpha: number, beta: number, cF32: boolean) => gemm(false, tb, M, N, K, A, aOff, lda, B, bOff, ldb, C, cOff, ldc, alpha, beta, cF32),
    cudaDequantBf16: (d: QuantDesc, dst: number) => bfWrite(dst, dequantDesc(d)),
    cudaQGemv: (d: QuantDesc, x: number, y: number, acc: boolean) => {
      const W = dequantDesc(d), xv = f32(x, d.in), yv = f32(y, d.out);
      for (let o = 0; o < d.out; o++) { let s = 0; for (let i = 0; i < d.in; i++) s += W[o * d.in + i] * xv[i]; yv[o] = (acc ? yv[o] : 0) + s; }
    },
    cudaQGemm: (d: QuantDesc, M: number, X: number, Y: number, yF32: boolean, scratch: number) => {
      bfWrite(scratch, dequantDesc(d));
      gemm(false, true, M, d.out, d.in, X, 0, d.in, scratch, 0, d.in, Y, 0, d.out, 1, 0, yF32);
    },
    cudaGemvBf16: (W: number, rows: number, K: number, x: number, y: number, acc: boolean) => {
      const w = bfRead(W, rows * K), xv = f32(x, K), yv = f32(y, rows);
      for (let r = 0; r < rows; r++) { let s = 0; for (let k = 0; k < K; k++) s += w[r * K + k] * xv[k]; yv[r] = (acc ? yv[r] : 0) + s; }
    },
    // ---- decode kernels (decode.cu): the v4 GEMV's fp16 rounding of x (decodeSlotRound), f64 sums ----
    cudaRepackSpan4: (d: QuantDesc, dst: number) => {
      const n = d.out * d.in / 16, src = new Uint32Array(u8(d.codes, n * 4).slice().buffer), o = new Uint32Array(u8(dst, n * 4).buffer, u8(dst, n * 4).byteOffset, n);
      for (let sp = 0; sp < n / 16; sp++) for (let j = 0; j < 4; j++) for (let t = 0; t < 4; t++) o[sp * 16 + t * 4 + j] = src[sp * 16 + j * 4 + t];
    },
    cudaDecodeGemv: (x: number, xBf16: boolean, normW: number | null, eps: number, inF: number, segs: DecodeSeg[], _probe?: number,
      kernel?: number, x2?: number | null, prefetch?: { buf: number; bytes: number }[] | null) => {
      // prefetch changes no result; its ranges are still checked as the addon does
      for (const r of prefetch ?? []) { get(r.buf, r.bytes); if (r.bytes % 16 !== 0) throw new Error('cudaDecodeGemv: prefetch bytes % 16'); }
      let xv: Float32Array = xBf16 ? bfRead(x, inF) : f32(x, inF).slice();
      // kernel 5 (group 64 everywhere) stages x̃ = x·normW and scales the row sums by 1/rms (decodeOwnStagedX); v4 rounds RMSNorm(x)·normW
      const own = (kernel === 5 || kernel === 6) && segs.every((sg) => 'w' in sg || sg.desc.group === 64);
      const xr = own && normW ? decodeOwnStagedX(xv, f32(normW, inF), eps) : new Float64Array(inF);
      if (normW) { const y = new Float32Array(inF); rmsnormForwardRef(y, new Float32Array(1), xv, f32(normW, inF), 1, inF, eps); xv = y; }
      if (x2) { const u = f32(x2, inF); xv = xv.map((g, i) => Math.fround(Math.fround(g / (1 + Math.exp(-g))) * u[i])); }
      if (!(own && normW)) for (let j = 0; j < inF; j += 64) decodeSlotRound(xv, j, xr);
      // the t producers (segments another one names as tseg) first, as the kernel does
      const order = segs.map((_, i) => i).sort((a, b) => Number(!segs.some((s) => s.tseg === a)) - Number(!segs.some((s) => s.tseg === b)));
      for (const k of order) {
        const sg = segs[k];
        const dense = 'w' in sg, rows = dense ? sg.rows : sg.desc.out;
        const W = dense ? bfRead(sg.w, rows * inF) : dequantDesc(sg.desc), xin = dense ? xv : xr, y = f32(sg.y, rows);
        const B = sg.B ? bfRead(sg.B, rows * sg.r!) : null, t = sg.B ? f32(segs[sg.tseg!].y, sg.r!) : null;
        for (let r = 0; r < rows; r++) {
          let s = 0;
          for (let i = 0; i < inF; i++) s += W[r * inF + i] * xin[i];
          if (B && t) for (let j = 0; j < sg.r!; j++) s += B[r * sg.r! + j] * t[j];
          y[r] = (sg.acc ? y[r] : 0) + s;
        }
      }
    },
    cudaDecodeQkvEpi: (q: number, k: number, v: number, tq: number | null, tk: number | null, tv: number | null, Bq: number | null,
      Bk: number | null, Bv: number | null, rq: number, rk: number, rv: number, cos: number, sin: number, Hq: number, Hkv: number,
      hd: number, qOut: number, kOut: number, vOut: number) => {
      const Q = Hq * hd, KV = Hkv * hd, half = hd / 2;
      const qv = plusBt(f32(q, Q), Bq, tq, rq), kv = plusBt(f32(k, KV), Bk, tk, rk), vv = plusBt(f32(v, KV), Bv, tv, rv);
      const qo = new Float32Array(Q), ko = new Float32Array(KV);
      ropeForward(qo, qv, f32(cos, half), f32(sin, half), 1, 1, Hq, hd);
      ropeForward(ko, kv, f32(cos, half), f32(sin, half), 1, 1, Hkv, hd);
      bfWrite(qOut, qo); bfWrite(kOut, ko); bfWrite(vOut, vv);
    },
    cudaDecodeAttn: (q: number, k: number, v: number, cos: number, sin: number, kc: number, vc: number, pos: number, Hq: number,
      Hkv: number, hd: number, out: number | null, tq: number | null = null, tk: number | null = null, tv: number | null = null,
      Bq: number | null = null, Bk: number | null = null, Bv: number | null = null, r = 0, i8: number | null = null) => {
      const Q = Hq * hd, KV = Hkv * hd, half = hd / 2, qo = new Float32Array(Q), ko = new Float32Array(KV);
      ropeForward(qo, plusBt(f32(q, Q), Bq, tq, r), f32(cos, half), f32(sin, half), 1, 1, Hq, hd);
      ropeForward(ko, plusBt(f32(k, KV), Bk, tk, r), f32(cos, half), f32(sin, half), 1, 1, Hkv, hd);
      const K = bfRead(kc, (pos + 1) * KV), V = bfRead(vc, (pos + 1) * KV);
      const bfr = (a: Float32Array) => bf16ToF32(f32ToBf16(a));
      K.set(bfr(ko), pos * KV);
      V.set(bfr(plusBt(f32(v, KV), Bv, tv, r)), pos * KV);
      bfWrite(kc, K); bfWrite(vc, V);
      const o = new Float32Array(Q), l = new Float32Array(Hq);
      attentionForwardRef(o, l, bfr(qo), K, V, 1, 1, pos + 1, Hq, Hkv, hd);
      if (i8) int8xFill(i8, bfr(o));  // the int8-x GEMV's input from the bf16 output, as cudaInt8xPrep makes it from bf16 out
      if (out) bfWrite(out, o);
    },
    cudaArgmaxF32: (x: number, n: number, id: number, ids: number | null, slot: number) => {
      const best = argmax(f32(x, n), n);
      new Int32Array(u8(id, 4).buffer, u8(id, 4).byteOffset, 1)[0] = best;
      if (ids) new Int32Array(u8(ids, (slot + 1) * 4).buffer, u8(ids, (slot + 1) * 4).byteOffset, slot + 1)[slot] = best;
    },
    cudaDecodeResidualEpi: (x: number, y: number, t: number | null, B: number | null, r: number, n: number) => {
      const xv = f32(x, n), yv = f32(y, n), b = B ? bfRead(B, n * r) : null, tt = t ? f32(t, r) : null;
      for (let i = 0; i < n; i++) { let s = 0; if (b && tt) for (let j = 0; j < r; j++) s += b[i * r + j] * tt[j]; xv[i] += yv[i] + s; }
    },
    cudaDecodeSwigluEpi: (g: number, u: number, tg: number | null, tu: number | null, Bg: number | null, Bu: number | null,
      rg: number, ru: number, n: number, act: number) => {
      const gv = f32(g, n), uv = f32(u, n), a = f32(act, n);
      const bg = Bg ? bfRead(Bg, n * rg) : null, bu = Bu ? bfRead(Bu, n * ru) : null, tgv = tg ? f32(tg, rg) : null, tuv = tu ? f32(tu, ru) : null;
      for (let i = 0; i < n; i++) {
        let G = gv[i], U = uv[i];
        if (bg && tgv) for (let j = 0; j < rg; j++) G += bg[i * rg + j] * tgv[j];
        if (bu && tuv) for (let j = 0; j < ru; j++) U += bu[i * ru + j] * tuv[j];
        a[i] = (G / (1 + Math.exp(-G))) * U;
      }
    },
    // ---- int8-x decode kernels (int8x_gemv.cu): their twins in src/backend/cuda-int8x.ts, f64 sums ----
    cudaInt8xRepack: (d: QuantDesc, dst: number) => {
      const q = unpackCodes(u8(d.codes, packedBytes(d.out * d.in, 2)), 2, d.out * d.in), w = repackInt8x(q, d.out, d.in);
      u8(dst, w.byteLength).set(new Uint8Array(w.buffer));
    },
    cudaInt8xTileSz: (sz: number, dst: number, out: number, inF: number) => {
      const n = out * inF / 64;
      u32(dst, n).set(tileInt8xSz(u32(sz, n), out, inF));
    },
    cudaInt8xPrep: (x: number, x2: number | null, normW: number | null, scratch: number, inF: number, y: number | null, nzero: number,
      _pdl?: boolean, addY?: number | null, B1?: number | null, t1?: number | null, B2?: number | null, t2?: number | null, r = 0,
      xOut?: number | null, xBf16?: boolean, unsetT?: boolean) => {
      const bt = (B?: number | null, t?: number | null): Int8xPrepBt | undefined => (B && t ? { B: bfRead(B, inF * r), t: f32(t, r).slice(), r } : undefined);
      const xv = xBf16 ? bfRead(x, inF) : f32(x, inF).slice();
      const { xt, xOut: v } = int8xPrepInput(xv, { x2: x2 ? f32(x2, inF).slice() : undefined, normW: normW ? f32(normW, inF).slice() : undefined,
        addY: addY ? f32(addY, inF).slice() : undefined, bt1: bt(B1, t1), bt2: bt(B2, t2) });
      if (xOut) f32(xOut, inF).set(v);
      int8xFill(scratch, xt);
      const ng = inF / 64;
      if (normW) {  // Σv² per prep block of 8 groups, as the kernel leaves them for the GEMV's 1/rms
        const part = f32(scratch, Math.ceil(ng / 8), (inF + 8 * ng) / 4);
        part.set(sumsOfSquares(v, 512));
      }
      if (y) u32(y, nzero).fill(unsetT ? T_UNSET : 0);
    },
    cudaInt8xGemv: (words: number, sz: number, x: number | null, scratch: number, y: number, out: number, inF: number, ks: number, parts = 7,
      normEps: number | null = null, A: number | null = null, R = 0, t: number | null = null, Bs: number[] | null = null,
      ends: number[] | null = null, rB = 0, sync: number | null = null, fScratch: number | null = null, fX: number | null = null,
      fNormW: number | null = null, fHalf = 0, _fCnt: number | null = null) => {
      const ng = inF / 64;
      // the split K does not change the emulator's sums; its bounds are the kernel's (a decoder passing a bad count fails)
      if (parts & 512 && ![4, 8, 16].includes(ks)) throw new Error('cudaInt8xGemv (streamed, parts & 512): ksplit (warps per block) 4, 8 or 16');
      if (parts & 2048 && Bs && parts & 4) {  // t published by value: every t must carry the unset mark at the launch's
        // start, or a GPU's tiles would take the previous token's t without waiting (a prep that forgot unsetT fails here)
        if (!(parts & 512) || !t) throw new Error('cudaInt8xGemv: t published by value (parts & 2048) is the streamed GEMV\'s (parts & 512)');
        const k = u32(t, R).findIndex((v) => v !== T_UNSET);
        if (k >= 0) throw new Error(`cudaInt8xGemv: t[${k}] not unset at the launch's start (a GPU would not wait for its A row)`);
      } else if (sync && Bs && parts & 4) {  // the A-row counters: zero at every launch's start; the A rows leave R (parts & 256) or
        // the last tile block sets them back to 0 — so a decoder that forgets to zero them (256) fails here as on the GPU
        const sv = u32(sync, 2);
        if (sv[0] !== 0 || sv[1] !== 0) throw new Error(`cudaInt8xGemv: B·t counters ${sv[0]},${sv[1]} at the launch's start (a GPU would not wait for the A rows)`);
        if (parts & 256) sv[0] = R;
      }
      if (parts & 1) (ops.cudaInt8xPrep as (...a: unknown[]) => void)(x, null, null, scratch, inF, null, 0);
      if (parts & 2) f32(y, out).fill(0);
      if (!(parts & 4)) return;
      const { xq, a, sum } = int8xViews(scratch, inF);
      const xt = eng.int8xExact ? exactX.get(scratch) : undefined;
      if (eng.int8xExact && !xt) throw new Error('cudaInt8xGemv (int8xExact): the scratch has no prep');
      let rstd = 1;
      if (normEps !== null && normEps >= 0) {
        const part = f32(scratch, parts & 128 ? ng : Math.ceil(ng / 8), (inF + 8 * ng) / 4);  // 128: per group (a folded prep)
        let ss = 0;
        for (const p of part) ss += p;
        rstd = 1 / Math.sqrt(ss / inF + normEps);
      }
      const tiles = Math.ceil(out / 16);
      const q = unrepackInt8x(u32(words, tiles * 16 * inF / 16), out, inF);
      const yv = f32(y, out), szRaw = u32(sz, out * ng);
      // the streamed kernel (512) reads them tile-blocked (tileInt8xSz): back to [out, ng]
      const szw = parts & 512 ? untileInt8xSz(szRaw, out, inF) : szRaw;
      for (let o = 0; o < out; o++) {
        let acc = 0;
        for (let g = 0; g < ng; g++) {
          let dot = 0;
          const w = szw[o * ng + g], s = f16BitsToF32(w & 0xffff), z = f16BitsToF32(w >>> 16);
          if (xt) { for (let i = 64 * g; i < 64 * g + 64; i++) acc += s * (q[o * inF + i] - z) * xt[i]; continue; }
          for (let i = 64 * g; i < 64 * g + 64; i++) dot += q[o * inF + i] * xq[i];
          acc += s * a[g] * (dot - z * sum[g]);
        }
        yv[o] = (parts & 64 ? 0 : yv[o]) + acc * rstd;  // 64: a block per tile stores y; else split-K atomics add to it
      }
      if (A && t && xt) {
        const Av = bfRead(A, R * inF), tv = f32(t, R);
        for (let r = 0; r < R; r++) { let s = 0; for (let i = 0; i < inF; i++) s += Av[r * inF + i] * xt[i]; tv[r] = s * rstd; }
      } else if (A && t) f32(t, R).set(int8xLoraA(bfRead(A, R * inF), R, inF, xq, a, rstd));
      if (Bs && ends && t) {  // B·t in the epilogue, segment i: rows [ends[i-1], ends[i]) with t[i·r …]
        let row0 = 0;
        Bs.forEach((B, i) => {
          const seg = yv.subarray(row0, ends[i]);
          seg.set(plusBt(seg, B, t, rB, i * rB));
          row0 = ends[i];
        });
      }
      if (fScratch && parts & 64) {  // the next GEMV's input made in this launch (the folded prep): residual or SwiGLU
        const cin = fHalf || out, cng = cin / 64;
        const res = fHalf ? int8xPrepInput(yv.slice(0, fHalf), { x2: yv.slice(fHalf, 2 * fHalf) })
          : int8xPrepInput(f32(fX!, cin).slice(), { addY: yv.slice(), normW: fNormW ? f32(fNormW, cin).slice() : undefined });
        if (!fHalf) f32(fX!, cin).set(res.xOut);
        int8xFill(fScratch, res.xt);
        if (!fHalf && fNormW) {  // Σv² per group of 64
          const part = f32(fScratch, cng, (cin + 8 * cng) / 4);
          part.set(sumsOfSquares(res.xOut, 64));
        }
      }
    },
    // The chain (o → gate/up → down → q/k/v in one launch, with the attentions as phases): a plan keeps the phases, checked
    // as the addon checks them; a run makes each phase's x̂ as the kernel's blocks make it (mode 1: residual + RMSNorm,
    // hout written; mode 2: SwiGLU; mode 0: the scratch; mode 3: the attention, as cudaDecodeAttn with its int8-x output
    // at the run's position), then the streamed GEMV's emulation with t by value — so a phase whose t is not unset at the
    // launch's start fails here as it would race on a GPU; the chain leaves every t unset and its counters zero.
    cudaInt8xChainRun: (id: number, _pdl: boolean, sync: number, pos = 0, cos: number | null = null, sin: number | null = null) => {
      const plan = chainPlans.get(id);
      if (!plan) throw new Error('cudaInt8xChainRun: not a live int8-x chain plan');
      const { phases, ks, positions } = plan;
      const sv = u32(sync, INT8X_CHAIN_SYNC_WORDS);
      if (sv.some((v) => v !== 0)) throw new Error(`cudaInt8xChainRun: counters ${[...sv]} at the launch's start`);
      if (phases.some((P) => P.mode === 3) && (!(pos >= 0 && pos < positions) || !cos || !sin)) throw new Error('cudaInt8xChainRun: the attention phases need a position below the plan\'s and its RoPE rows');
      phases.forEach((P, p) => {
        if (P.mode === 3) {
          (ops.cudaDecodeAttn as (...a: unknown[]) => void)(P.q, P.k, P.v, cos, sin, P.kc, P.vc, pos, P.Hq, P.Hkv, P.hd, null,
            null, null, null, null, null, null, 0, P.xs);
          return;
        }
        if (P.mode === 4) {  // the next phase's x̂ into xs (cudaInt8xPrep's bytes), with a Σv² partial per group
          makeInput(P.xs, P.in, P.normW ? { hin: P.hin!, yin: P.yin, hout: P.hout!, normW: P.normW } : { yin: P.yin });
          return;
        }
        const inF = P.in, ng = inF / 64;
        let scratch = P.xs ?? 0, normEps: number | null = P.mode === 0 && P.npart ? P.eps ?? 0 : null, parts = 4 | 64 | 256 | 512;
        if (P.mode === 0 && P.npart && P.npart === ng && phases[p - 1]?.mode === 4) parts |= 128;  // a prep phase's partials: one a group
        if (P.mode !== 0) {  // the block's own x̂ (its Σv², as partials per group)
          scratch = chainScratch(inF);
          makeInput(scratch, inF, P.mode === 1 ? { hin: P.hin!, yin: P.yin!, hout: P.hout!, normW: P.normW! } : { yin: P.yin! });
          if (P.mode === 1) {
            parts |= 128;
            normEps = P.eps ?? 0;
          }
        }
        const segs = ([[P.b0, P.e0], [P.b1, P.e1], [P.b2, P.e2]] as const).filter(([b, e]) => b && e);
        if (P.A) parts |= 2048;
        (ops.cudaInt8xGemv as (...a: unknown[]) => void)(P.words, P.sz, null, scratch, P.y, P.out, inF, ks, parts, normEps, P.A ?? null,
          P.R ?? 0, P.t ?? null, P.A ? segs.map(([b]) => b) : null, P.A ? segs.map(([, e]) => e) : null, P.r ?? 0, null);
        // block 0 unsets a phase's t after the barrier that ends it (the last block out the last phase's), so a phase
        // two or more later in the same launch may use that t again (the plan refuses the next one)
        if (P.A && P.t) u32(P.t, P.R ?? 0).fill(T_UNSET);
      });
    },
    cudaRmsnormFwd: (x: number, w: number, yB: number | null, yF: number | null, rstd: number | null, N: number, C: number, eps: number) => {
      const y = new Float32Array(N * C), r = new Float32Array(N);
      rmsnormForwardRef(y, r, f32(x, N * C), f32(w, C), N, C, eps);
      if (yB) bfWrite(yB, y);
      if (yF) f32(yF, N * C).set(y);
      if (rstd) f32(rstd, N).set(r);
    },
    cudaRmsnormBwd: (dx: number, dout: number, x: number, w: number, rstd: number, N: number, C: number) =>
      rmsnormBackwardRef(f32(dx, N * C), null, f32(dout, N * C), f32(x, N * C), f32(w, C), f32(rstd, N), N, C),
    cudaRopeFwd: (x: number, out: number, cos: number, sin: number, B: number, T: number, H: number, D: number) => {
      const n = B * T * H * D, y = new Float32Array(n);
      ropeForward(y, f32(x, n), f32(cos, T * D / 2), f32(sin, T * D / 2), B, T, H, D);
      bfWrite(out, y);
    },
    cudaRopeBwd: (dout: number, dx: number, cos: number, sin: number, B: number, T: number, H: number, D: number) => {
      const n = B * T * H * D, y = new Float32Array(n);
      ropeBackward(y, f32(dout, n), f32(cos, T * D / 2), f32(sin, T * D / 2), B, T, H, D);
      bfWrite(dx, y);
    },
    cudaSwigluFwd: (gate: number, up: number, out: number, n: number) => {
      const y = new Float32Array(n);
      swigluForwardRef(y, bfRead(gate, n), bfRead(up, n), n);
      bfWrite(out, y);
    },
    cudaSwigluBwd: (dout: number, gate: number, up: number, dgate: number, dup: number, n: number) => {
      const dg = new Float32Array(n), du = new Float32Array(n);
      swigluBackwardRef(dg, du, bfRead(dout, n), bfRead(gate, n), bfRead(up, n), n);
      bfWrite(dgate, dg); bfWrite(dup, du);
    },
    cudaAddF32: (out: number, a: number, b: number, n: number) => { const av = f32(a, n), bv = f32(b, n), o = f32(out, n); for (let i = 0; i < n; i++) o[i] = av[i] + bv[i]; },
    cudaScaleF32: (x: number, n: number, k: number) => { const v = f32(x, n); for (let i = 0; i < n; i++) v[i] *= k; },
    cudaCastF32ToBf16Scaled: (dst: number, src: number, n: number, k: number) => bfWrite(dst, f32(src, n).map((v) => v * k)),
    cudaAccumulateBf16ToF32: (dst: number, src: number, n: number, k: number) => { const d = f32(dst, n), s = bfRead(src, n); for (let i = 0; i < n; i++) d[i] += k * s[i]; },
    cudaConvertF32ToBf16: (dst: number, src: number, n: number) => bfWrite(dst, f32(src, n)),
    cudaConvertBf16ToF32: (dst: number, src: number, n: number) => f32(dst, n).set(bfRead(src, n)),
    cudaEmbedding: (ids: number, table: number, out: number, N: number, D: number, V: number, isBf16: boolean) => {
      const id = i32(ids, N), o = f32(out, N * D), t = isBf16 ? bfRead(table, V * D) : f32(table, V * D);
      for (let n = 0; n < N; n++) o.set(id[n] >= 0 && id[n] < V ? t.subarray(id[n] * D, (id[n] + 1) * D) : new Float32Array(D).fill(NaN), n * D);
    },
    cudaLmHeadCe: (hidden: number, W: number, targets: number, dH: number | null, lossSum: number, N: number, D: number, V: number, scale: number) => {
      const h = bfRead(hidden, N * D), w = bfRead(W, V * D), t = i32(targets, N), loss = f32(lossSum, 1);
      const dh = dH ? f32(dH, N * D) : null, logits = new Float64Array(V), p = new Float32Array(V);
      let sum = 0;
      for (let n = 0; n < N; n++) {
        let max = -Infinity;
        for (let v = 0; v < V; v++) { let s = 0; for (let k = 0; k < D; k++) s += h[n * D + k] * w[v * D + k]; logits[v] = Math.fround(s); if (logits[v] > max) max = logits[v]; }
        let z = 0;
        for (let v = 0; v < V; v++) z += Math.exp(logits[v] - max);
        if (t[n] >= 0) sum += max + Math.log(z) - logits[t[n]];
        if (!dh) continue;
        for (let v = 0; v < V; v++) p[v] = t[n] < 0 ? 0 : scale * (Math.exp(logits[v] - max) / z - (v === t[n] ? 1 : 0));
        const pb = round(p);
        for (let k = 0; k < D; k++) { let s = 0; for (let v = 0; v < V; v++) s += pb[v] * w[v * D + k]; dh[n * D + k] += s; }
      }
      loss[0] += sum;
    },
    cudaKlCeRows: (s: number, t: number, targets: number, d: number | null, dF32: boolean, klSum: number, ceSum: number,
      rows: number, V: number, klScale: number, ceScale: number, tOff = 0) => {
      const n = rows * V, g = d ? new Float64Array(n) : null;
      const r = klCeRowsRef(f32(s, n), f32(t, n), i32(targets, tOff + rows).subarray(tOff), g, rows, V, klScale, ceScale);
      if (d && g) { if (dF32) f32(d, n).set(g); else bfWrite(d, g); }
      f32(klSum, 1)[0] += r.kl;
      f32(ceSum, 1)[0] += r.ce;
    },
    // the chunk loop of kl_ce.cu: two logit GEMMs, the rows kernel (bf16 dlogits), dHidden += dlogits·W
    cudaLmHeadKlCe: (hidden: number, W: number, tHidden: number, tW: number, targets: number, dH: number | null, klSum: number,
      ceSum: number, N: number, D: number, V: number, klScale: number, ceScale: number, chunkRows: number, sL: number, tL: number,
      dl: number | null) => {
      for (let r0 = 0; r0 < N; r0 += chunkRows) {
        const rows = Math.min(chunkRows, N - r0);
        gemm(false, true, rows, V, D, hidden, r0 * D, D, W, 0, D, sL, 0, V, 1, 0, true);
        gemm(false, true, rows, V, D, tHidden, r0 * D, D, tW, 0, D, tL, 0, V, 1, 0, true);
        ops.cudaKlCeRows(sL, tL, targets, dH ? dl : null, false, klSum, ceSum, rows, V, klScale, ceScale, r0);
        if (dH) gemm(false, false, rows, D, V, dl!, 0, V, W, 0, D, dH, r0 * D, D, 1, 1, true);
      }
    },
    cudaMseF32: (a: number, tgt: number, da: number | null, lossSum: number, n: number, gradScale: number) => {
      const av = f32(a, n), tv = f32(tgt, n), d = da ? f32(da, n) : null, loss = f32(lossSum, 1);
      let s = 0;
      for (let i = 0; i < n; i++) { const e = av[i] - tv[i]; s += e * e; if (d) d[i] += gradScale * 2 * e / n; }
      loss[0] += s;
    },
    cudaSumSquaresF32: (x: number, n: number, out: number) => { const a = f32(x, n); let s = 0; for (let i = 0; i < n; i++) s += a[i] * a[i]; f32(out, 1)[0] += s; },
    cudaAdamW: (p: number, g: number, m: number, v: number, n: number, lr: number, b1: number, b2: number, eps: number,
      wd: number, step: number, gradScale: number, coupled: boolean) => {
      const P = f32(p, n), G = f32(g, n), M = f32(m, n), Vv = f32(v, n);
      const bc1 = 1 - Math.pow(b1, step), bc2 = 1 - Math.pow(b2, step);
      for (let i = 0; i < n; i++) {
        let gi = G[i] * gradScale;
        if (coupled && wd) gi += wd * P[i];
        M[i] = b1 * M[i] + (1 - b1) * gi;
        Vv[i] = b2 * Vv[i] + (1 - b2) * gi * gi;
        P[i] -= lr * ((M[i] / bc1) / (Math.sqrt(Vv[i] / bc2) + eps) + (!coupled && wd ? wd * P[i] : 0));
      }
    },
    cudaAttnFwd: (q: number, k: number, v: number, out: number, lse: number | null, B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number) => {
      const o = new Float32Array(B * Tq * Hq * D), l = new Float32Array(B * Hq * Tq);
      attentionForwardRef(o, l, bfRead(q, B * Tq * Hq * D), bfRead(k, B * Tk * Hkv * D), bfRead(v, B * Tk * Hkv * D), B, Tq, Tk, Hq, Hkv, D);
      bfWrite(out, o);
      if (lse) f32(lse, B * Hq * Tq).set(l);
    },
    cudaAttnBwd: (dout: number, q: number, k: number, v: number, out: number, lse: number, dq: number, dk: number, dv: number,
      B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number) => {
      const nq = B * Tq * Hq * D, nk = B * Tk * Hkv * D;
      const dqv = f32(dq, nq), dkv = f32(dk, nk), dvv = f32(dv, nk);
      dqv.fill(0); dkv.fill(0); dvv.fill(0);
      attentionBackwardRef(dqv, dkv, dvv, bfRead(dout, nq), bfRead(q, nq), bfRead(k, nk), bfRead(v, nk), bfRead(out, nq), f32(lse, B * Hq * Tq), B, Tq, Tk, Hq, Hkv, D);
    },
    cudaFillUniformBf16: (h: number, n: number, seed: number, lo: number, hi: number) => {
      let x = (seed * 2654435761) >>> 0 || 1;
      bfWrite(h, Float32Array.from({ length: n }, () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return lo + (hi - lo) * (x / 4294967296); }));
    },
    cudaFillRandomBytes: (h: number, bytes: number, seed: number) => {
      let x = (seed * 2654435761) >>> 0 || 1;
      const b = u8(h, bytes);
      for (let i = 0; i < bytes; i++) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; b[i] = x & 255; }
    },
    // a persistent decode plan replays its recorded phases in order, the attention ones at the run's position
    cudaDecodePlanRun: (plan: number, pos: number, cos: number, sin: number) => {
      const ph = plans.get(plan);
      if (!ph) throw new Error('cudaDecodePlanRun: not a live decode plan');
      for (const { name, args } of ph) {
        if (name === 'cudaDecodeAttn') {
          const a = [...args];
          a[3] = cos; a[4] = sin; a[7] = pos;
          (ops.cudaDecodeAttn as (...x: unknown[]) => void)(...a);
        } else (ops.cudaDecodeGemv as (...x: unknown[]) => void)(...args);
      }
    },
    cudaMemset0: (h: number, bytes?: number) => { const b = get(h, bytes ?? 0); new Uint8Array(b.mem, b.off, bytes ?? b.bytes).fill(0); },
    cudaCopy: (dst: number, src: number, bytes: number, dOff = 0, sOff = 0) => {
      const d = get(dst, dOff + bytes), s = get(src, sOff + bytes);
      new Uint8Array(d.mem, d.off + dOff, bytes).set(new Uint8Array(s.mem, s.off + sOff, bytes));
    },
  };
  const recorded = {} as Record<string, (...a: unknown[]) => void>;
  for (const [name, fn] of Object.entries(ops)) {
    recorded[name] = (...args: unknown[]) => {
      if (planRec && (name === 'cudaDecodeGemv' || name === 'cudaDecodeAttn')) {  // recorded as a phase, as the addon does
        if (name === 'cudaDecodeGemv' && args[7] !== 5) throw new Error('cudaDecodePlan: a recorded GEMV must run as kernel 5');
        planRec.push({ name, args });
        return;
      }
      eng.calls++;
      if (capture) capture.push(() => (fn as (...a: unknown[]) => void)(...args));
      else (fn as (...a: unknown[]) => void)(...args);
    };
  }
  const eng = {
    ...recorded,
    calls: 0,
    int8xExact: false,
    cudaInfo: () => ({ deviceCount: 1, deviceName: 'host emulator' }),
    cudaMemInfo: () => ({ free: 1 << 30, total: 1 << 30 }),
    cudaSync: () => noCapture('cudaSync'),
    cudaAlloc(bytes: number): number { noCapture('cudaAlloc'); bufs.set(next, { mem: new ArrayBuffer(Math.max(bytes, 1)), off: 0, bytes }); return next++; },
    cudaView(h: number, off: number, bytes: number): number {
      const b = get(h, off + bytes);
      bufs.set(next, { mem: b.mem, off: b.off + off, bytes });
      return next++;
    },
    cudaFree(h: number): void { get(h); bufs.delete(h); },
    cudaUpload(h: number, src: ArrayBufferView, off = 0): void {
      noCapture('cudaUpload');
      const b = get(h, off + src.byteLength);
      new Uint8Array(b.mem, b.off + off, src.byteLength).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    },
    cudaDownload(h: number, dst: ArrayBufferView, off = 0): void {
      noCapture('cudaDownload');
      const b = get(h, off + dst.byteLength);
      new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).set(new Uint8Array(b.mem, b.off + off, dst.byteLength));
    },
    cudaDecodePlanBegin(): void { if (planRec) throw new Error('cudaDecodePlanBegin: already recording'); planRec = []; },
    cudaDecodePlanEnd(): number {
      if (!planRec) throw new Error('cudaDecodePlanEnd: not recording');
      const ph = planRec;
      planRec = null;
      if (!ph.length) throw new Error('cudaDecodePlanEnd: no phases recorded');
      plans.set(nextGraph, ph);
      return nextGraph++;
    },
    // int8-x chain plans (not launches: made and freed outside any capture, returning an id)
    cudaInt8xChainPlan: (phases: Int8xChainPhase[], ks: number, positions: number): number => {
      noCapture('cudaInt8xChainPlan');  // the addon uploads the table with a synchronous copy
      if (phases.length < 1 || phases.length > 4096) throw new Error('cudaInt8xChainPlan: 1 to 4096 phases');
      if (![8, 16].includes(ks)) throw new Error('cudaInt8xChainPlan: 8 or 16 warps a block');
      let hd = 0;
      phases.forEach((P, p) => {
        if (P.mode === 3) {
          const nx = phases[p + 1];
          if (!nx || nx.mode !== 0 || nx.xs !== P.xs || nx.in !== P.Hq * P.hd) throw new Error('cudaInt8xChainPlan: an attention\'s output (xs) is the x̂ of the next phase');
          if (P.hd !== 64 && P.hd !== 128) throw new Error('cudaInt8xChainPlan: the attention phase takes head dims 64 and 128');
          if (hd && P.hd !== hd) throw new Error('cudaInt8xChainPlan: one head dim for every attention phase');
          get(P.kc, positions * P.Hkv * P.hd * 2); get(P.vc, positions * P.Hkv * P.hd * 2);
          hd = P.hd;
          return;
        }
        if (P.mode === 4) {
          const nx = phases[p + 1];
          if (!nx || nx.mode !== 0 || nx.xs !== P.xs || nx.in !== P.in || (nx.npart ?? 0) !== (P.normW ? P.in / 64 : 0)) throw new Error('cudaInt8xChainPlan: a prep phase\'s xs is the x̂ of the next phase (mode 0, the same in, npart = in / 64 with normW, else 0)');
          if (P.normW && (!P.hin || !P.hout || P.hin === P.hout)) throw new Error('cudaInt8xChainPlan: a residual prep phase needs hin and a hout apart from hin');
          return;
        }
        if ((P.mode === 0) !== (p === 0 || phases[p - 1].mode === 3 || phases[p - 1].mode === 4)) throw new Error('cudaInt8xChainPlan: a GEMV phase first or after an attention or a prep reads its x̂ from a scratch (mode 0), the others make it');
        if (P.mode === 1 && (!P.hin || !P.hout || !P.yin || !P.normW || P.hin === P.hout)) throw new Error('cudaInt8xChainPlan: mode 1 needs hin, yin, normW and a hout apart from hin');
        const Q = phases[p - 1];
        if (P.A && P.t && Q && Q.mode !== 3 && Q.mode !== 4 && Q.A && Q.t && overlaps(P.t, (P.R ?? 0) * 4, Q.t, (Q.R ?? 0) * 4)) throw new Error('cudaInt8xChainPlan: adjacent phases share t values');
      });
      chainPlans.set(nextChain, { phases: phases.map((P) => ({ ...P })), ks, positions });
      return nextChain++;
    },
    cudaInt8xChainFree: (id: number) => { if (!chainPlans.delete(id)) throw new Error('cudaInt8xChainFree: not a live int8-x chain plan'); },
    cudaDecodePlanFree(id: number): void { if (!plans.delete(id)) throw new Error('cudaDecodePlanFree: not a live decode plan'); },
    cudaGraphBegin(): void { noCapture('cudaGraphBegin'); capture = []; },
    cudaGraphEnd(): number { if (!capture) throw new Error('host engine: no capture'); graphs.set(nextGraph, capture); capture = null; return nextGraph++; },
    cudaGraphLaunch(id: number): void { const g = graphs.get(id); if (!g) throw new Error('host engine: not a live graph'); noCapture('cudaGraphLaunch'); for (const f of g) f(); },
    cudaGraphFree(id: number): void { graphs.delete(id); },
    cudaEventNew: () => 1, cudaEventRecord: () => undefined, cudaEventMs: () => 0, cudaEventFree: () => undefined,
    live: () => bufs.size - chainScr.size,  // the chain's x̂ scratches are the emulator's own
  };
  return eng as unknown as HostEngine;
}
