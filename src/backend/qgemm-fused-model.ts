// CPU model and TypeScript twin of the fused sm_90a packed GEMM (native/cuda/qgemm_wgmma.cu): which (row, k) each
// thread's A registers hold, where the loader puts X in the 128-byte-swizzled shared tile and where the wgmma
// descriptor reads it, which (row, token) each accumulator is, and the code → bf16 conversion (variants 1/2:
// magic-number float, one fused multiply-add; variants 3/4: the repacked stream, one LOP3 + two bf16x2 FMAs). fusedGemmTwin runs the kernel's data flow through these maps on the CPU, so a wrong
// index shows up in CI; the GPU test (test/cuda-qgemm-fused.test.ts) compares the kernel's debug dumps with them.
import type { PackedTensor } from '../quant/types.js';

export const FUSED_BM = 128, FUSED_BN = 128, FUSED_BK = 64;

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
const asFloat = (bits: number): number => { u32[0] = bits >>> 0; return f32[0]; };
const floatBits = (x: number): number => { f32[0] = x; return u32[0]; };

/** bf16 bits of an f32 value, round to nearest even (as __float2bfloat16_rn; no NaN here). */
export function bf16Bits(x: number): number {
  const b = floatBits(x);
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}
export const bf16Value = (bits: number): number => asFloat(bits << 16);

/** Thread tid (0..255) of the CTA: warpgroup, warp in it, groupID g = lane/4, thread-in-group t = lane%4. */
export function threadParts(tid: number): { wg: number; warp: number; g: number; t: number } {
  const lane = tid & 31;
  return { wg: tid >> 7, warp: (tid >> 5) & 3, g: lane >> 2, t: lane & 3 };
}

/**
 * A register r (0..3) of k16 step s (0..3) of thread tid: the tile row (0..127) and the k (0..63) of its low bf16;
 * the high bf16 is k + 1. PTX ISA, wgmma .m64nNk16 A fragment for 16-bit types (CuTe ALayout_64x16
 * ((4,8,4),(2,2,2)):((128,1,16),(64,8,512)) over the column-major 64×16 tile): a_{2r}, a_{2r+1} at
 * row 16·warp + g + 8·(r & 1), k 2t + 8·(r >> 1) (+1).
 */
export function aFragment(tid: number, s: number, r: number): { row: number; k: number } {
  const { wg, warp, g, t } = threadParts(tid);
  return { row: 64 * wg + 16 * warp + g + 8 * (r & 1), k: 16 * s + 2 * t + 8 * (r >> 1) };
}

/** Accumulator i (0..63) of thread tid: tile row (out) and tile column (token); CuTe CLayout_64x128. */
export function accFragment(tid: number, i: number): { row: number; col: number } {
  const { wg, warp, g, t } = threadParts(tid);
  const j = i >> 2, v = (i >> 1) & 1, u = i & 1;
  return { row: 64 * wg + 16 * warp + g + 8 * v, col: 8 * j + 2 * t + u };
}

/** Byte offset in the stage's X tile where the kernel's loader puts X[token n][k] (k < 64): chunk k/8 at k/8 ^ n%8. */
export function loaderOffset(n: number, k: number): number {
  return n * 128 + (((k >> 3) ^ (n & 7)) << 4) + 2 * (k & 7);
}

/**
 * Byte offset (from the 1024-aligned tile) the wgmma reads for B element (k = κ of the k16 step s, token n), from the
 * descriptor (start = tile + 32·s, SBO = 1024, 128-byte swizzle): the canonical K-major layout
 * ((8,m),(8,2)):((64,SBO),(1,8)) in elements, then address bits [4,7) ^= bits [7,10).
 */
export function descriptorOffset(n: number, s: number, kappa: number): number {
  const logical = 32 * s + (n & 7) * 128 + (n >> 3) * 1024 + 2 * kappa;
  return logical ^ (((logical >> 7) & 7) << 4);
}

/** Per-row constants of a k-block from its scale|zero f16 values, as row_consts (f32, exact for integer z ≤ 255). */
export function rowConsts(s: number, z: number): { s16: number; s18: number; c16: number; c18: number } {
  const fr = Math.fround;
  return { s16: fr(s * 2 ** -16), s18: fr(s * 2 ** -18), c16: -fr(s * fr(128 + z)), c18: -fr(s * fr(32 + z)) };
}

/** deq_pair: the two f32 weights whose codes sit at bits 16–17 and 18–19 of x (fma emulated: the product is exact in f64). */
export function deqPair(x: number, k: ReturnType<typeof rowConsts>): [number, number] {
  const lo = asFloat(((x & 0x00030000) | 0x4b000000) >>> 0), hi = asFloat(((x & 0x000c0000) | 0x4b000000) >>> 0);
  return [Math.fround(lo * k.s16 + k.c16), Math.fround(hi * k.s18 + k.c18)];
}

/** The 32-bit word the kernel shifts for register r: word s of the row's 16-byte code block, << (16−4t) or >> 4t. */
export function shiftedWord(word: number, t: number, r: number): number {
  return r < 2 ? (word << (16 - 4 * t)) >>> 0 : word >>> (4 * t);
}

/** The A registers of thread tid for k-block kb of CTA row block m0, as the kernel builds them: [s][r] = bf16 pair bits. */
export function aRegisters(p: PackedTensor, m0: number, kb: number, tid: number): number[][] {
  const ng = p.in / FUSED_BK, rowBytes = p.in / 4, t = threadParts(tid).t;
  const regs: number[][] = [];
  for (let s = 0; s < 4; s++) {
    const rs: number[] = [];
    for (let r = 0; r < 4; r++) {
      const { row } = aFragment(tid, s, r), R = m0 + row, o = R * rowBytes + kb * 16 + 4 * s;
      const word = (p.qcodes[o] | (p.qcodes[o + 1] << 8) | (p.qcodes[o + 2] << 16) | (p.qcodes[o + 3] << 24)) >>> 0;
      const k = rowConsts(p.scales![R * ng + kb], p.zeros![R * ng + kb]);
      const [lo, hi] = deqPair(shiftedWord(word, t, r), k);
      rs.push((bf16Bits(lo) | (bf16Bits(hi) << 16)) >>> 0);
    }
    regs.push(rs);
  }
  return regs;
}

/** The stage's X tile bytes for k-block kb of token block n0 as the loader writes it (tokens ≥ M zero). */
export function xTile(X: Uint16Array, M: number, K: number, n0: number, kb: number): Uint8Array {
  const tile = new Uint8Array(FUSED_BN * 128);
  for (let n = 0; n < FUSED_BN; n++) {
    if (n0 + n >= M) continue;
    for (let k = 0; k < FUSED_BK; k++) {
      const v = X[(n0 + n) * K + kb * FUSED_BK + k], o = loaderOffset(n, k);
      tile[o] = v & 0xff;
      tile[o + 1] = v >> 8;
    }
  }
  return tile;
}

/**
 * Twin of the kernel: Y[M, out] (f64 sums of exact bf16 products; the GPU sums in f32 in its own order) from the
 * packed weight ('int', 2-bit, group 64, in % 64 == 0, out % 128 == 0) and X as bf16 bits [M, in], computed through
 * the fragment maps, the loader's swizzle and the descriptor's addressing above; `repacked`: A as variants 3/4
 * build it (repackBlock + aRegistersFromBlock), else as variants 1/2 (aRegisters).
 */
export function fusedGemmTwin(p: PackedTensor, M: number, X: Uint16Array, repacked = false): Float64Array {
  if (p.layout !== 'int' || p.bits !== 2 || p.groupSize !== 64 || p.gIdx || p.in % 64 || p.out % 128) {
    throw new Error('fusedGemmTwin: needs an int 2-bit group-64 weight, in % 64 == 0, out % 128 == 0');
  }
  const Y = new Float64Array(M * p.out), KB = p.in / FUSED_BK;
  const acc = new Float64Array(256 * 64);
  for (let m0 = 0; m0 < p.out; m0 += FUSED_BM) {
    for (let n0 = 0; n0 < M; n0 += FUSED_BN) {
      acc.fill(0);
      for (let kb = 0; kb < KB; kb++) {
        const tile = xTile(X, M, p.in, n0, kb);
        const Bval = (s: number, kappa: number, n: number): number => {
          const o = descriptorOffset(n, s, kappa);
          return bf16Value(tile[o] | (tile[o + 1] << 8));
        };
        // wgmma per warpgroup: D[row][n] += Σ_κ A[row][κ]·B[κ][n], A gathered from the 128 threads' registers
        const blk = repacked ? repackBlock(p, m0 / FUSED_BM, kb) : null;
        for (let wg = 0; wg < 2; wg++) {
          const A = new Float64Array(64 * 64);  // [row in warpgroup][k in block]
          for (let tl = 0; tl < 128; tl++) {
            const tid = 128 * wg + tl, regs = blk ? aRegistersFromBlock(blk, tid) : aRegisters(p, m0, kb, tid);
            for (let s = 0; s < 4; s++) {
              for (let r = 0; r < 4; r++) {
                const { row, k } = aFragment(tid, s, r);
                A[(row - 64 * wg) * 64 + k] = bf16Value(regs[s][r] & 0xffff);
                A[(row - 64 * wg) * 64 + k + 1] = bf16Value(regs[s][r] >>> 16);
              }
            }
          }
          for (let tl = 0; tl < 128; tl++) {
            const tid = 128 * wg + tl;
            for (let i = 0; i < 64; i++) {
              const { row, col } = accFragment(tid, i);
              let sum = 0;
              for (let s = 0; s < 4; s++) {
                for (let kappa = 0; kappa < 16; kappa++) sum += A[(row - 64 * wg) * 64 + 16 * s + kappa] * Bval(s, kappa, col);
              }
              acc[tid * 64 + i] += sum;
            }
          }
        }
      }
      for (let tid = 0; tid < 256; tid++) {
        for (let i = 0; i < 64; i++) {
          const { row, col } = accFragment(tid, i);
          if (n0 + col < M) Y[(n0 + col) * p.out + m0 + row] = acc[tid * 64 + i];
        }
      }
    }
  }
  return Y;
}

// ---- variants 3/4: the repacked stream (qgemm_w2_repack_kernel) and its conversion (qgemm_w2_wgmma_rp_kernel) ----

export const RP_BLOCK_BYTES = 4096, RP_CODE_BYTES = 2048;

/** bf16 bits of a real value (exact in f64), round to nearest even, one rounding; 0 → +0. Normal bf16 range only. */
export function bf16RneBits(x: number): number {
  if (x === 0) return 0;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (e - 7), m = a / ulp, f = Math.floor(m), d = m - f;
  const r = d > 0.5 ? f + 1 : d < 0.5 ? f : (f % 2 === 0 ? f : f + 1);
  return (floatBits(Math.sign(x) * r * ulp) >>> 16) & 0xffff;
}

/** fma.rn.bf16x2: per 16-bit lane a·b + c with one rounding (the inputs here keep the f64 sum exact). */
export function hfma2(a: number, b: number, c: number): number {
  const lane = (sh: number): number => bf16RneBits(bf16Value((a >>> sh) & 0xffff) * bf16Value((b >>> sh) & 0xffff) +
    bf16Value((c >>> sh) & 0xffff));
  return (lane(0) | (lane(16) << 16)) >>> 0;
}

const rintHalfEven = (x: number): number => {
  const f = Math.floor(x), d = x - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : (f % 2 === 0 ? f : f + 1);
};

/** A row's constants of one k-block in the repacked stream: bf16 pairs s2 = bf16(s), c1 = −(128 + zi), c2 = bf16(−s·(z − zi)). */
export function rpRowConsts(s: number, z: number): { s2: number; c1: number; c2: number; zi: number } {
  const fr = Math.fround;
  const zi = Math.min(Math.max(rintHalfEven(z), -128), 127);
  const pair = (b: number): number => ((b & 0xffff) * 0x10001) >>> 0;
  return { s2: pair(bf16Bits(s)), c1: pair(bf16Bits(-(128 + zi))), c2: pair(bf16Bits(fr(-fr(s * fr(z - zi))) + 0)), zi };
}

/** The 2-bit code of (row R, column c) of a packed 'int' 2-bit weight (pack.ts stream). */
const codeAt = (p: PackedTensor, R: number, c: number): number => {
  const e = R * p.in + c;
  return (p.qcodes[e >> 2] >> (2 * (e & 3))) & 3;
};

/** Block (row block b, k-block kb) of the repacked stream, as qgemm_w2_repack_kernel writes it. */
export function repackBlock(p: PackedTensor, b: number, kb: number): Uint8Array {
  const blk = new Uint8Array(RP_BLOCK_BYTES), dv = new DataView(blk.buffer), ng = p.in / FUSED_BK;
  for (let tid = 0; tid < 256; tid++) {
    for (let h = 0; h < 2; h++) {
      let w = 0;
      for (let i = 0; i < 8; i++) {
        const { row, k } = aFragment(tid, 2 * h + (i >> 2), i & 3), R = b * FUSED_BM + row, c = kb * FUSED_BK + k;
        w |= (codeAt(p, R, c) << (2 * i)) | (codeAt(p, R, c + 1) << (16 + 2 * i));
      }
      dv.setUint32(8 * tid + 4 * h, w >>> 0, true);
    }
  }
  for (let G = 0; G < 64; G++) {
    const r0 = 64 * (G >> 5) + 16 * ((G >> 3) & 3) + (G & 7);
    for (let v = 0; v < 2; v++) {
      const R = b * FUSED_BM + r0 + 8 * v, k = rpRowConsts(p.scales![R * ng + kb], p.zeros![R * ng + kb]);
      dv.setUint32(RP_CODE_BYTES + 32 * G + 12 * v, k.s2, true);
      dv.setUint32(RP_CODE_BYTES + 32 * G + 12 * v + 4, k.c1, true);
      dv.setUint32(RP_CODE_BYTES + 32 * G + 12 * v + 8, k.c2, true);
    }
  }
  return blk;
}

/** The whole repacked stream ([out/128][in/64] blocks of 4096 bytes). */
export function repackStream(p: PackedTensor): Uint8Array {
  const KB = p.in / FUSED_BK, o = new Uint8Array((p.out / FUSED_BM) * KB * RP_BLOCK_BYTES);
  for (let b = 0; b < p.out / FUSED_BM; b++) {
    for (let kb = 0; kb < KB; kb++) o.set(repackBlock(p, b, kb), (b * KB + kb) * RP_BLOCK_BYTES);
  }
  return o;
}

/** Pair i (0..7) of a repacked code word → the bf16 pair 128 + 4^p·q (p = i mod 3) the kernel's LOP3 builds. */
export function rpMagicPair(w: number, i: number): number {
  const pos = i % 3, src = w >>> (6 * Math.floor(i / 3));
  return (((src & ((0x00030003 << (2 * pos)) >>> 0)) | 0x43004300) >>> 0);
}
export const RP_SLOT_SCALE = [0x3f803f80, 0x3e803e80, 0x3d803d80];  // bf16 pairs 1, 1/4, 1/16
/** c1_p = c1 + (0, 96, 120) = −(128·4^−p + zi), as the kernel derives it (one bf16 FMA each, exact). */
export function rpC1(c1: number, pos: number): number {
  return pos === 0 ? c1 : hfma2(c1, 0x3f803f80, pos === 1 ? 0x42c042c0 : 0x42f042f0);
}

/** The A registers of thread tid for k-block kb from a repacked block, as the kernel's convert: [s][r] = bf16 pair bits. */
export function aRegistersFromBlock(blk: Uint8Array, tid: number): number[][] {
  const dv = new DataView(blk.buffer, blk.byteOffset, blk.byteLength), G = tid >> 2;
  const k = (v: number, j: number): number => dv.getUint32(RP_CODE_BYTES + 32 * G + 12 * v + 4 * j, true);
  const regs = [0, 1, 2, 3].map(() => [0, 0, 0, 0]);
  for (let h = 0; h < 2; h++) {
    const w = dv.getUint32(8 * tid + 4 * h, true);
    for (let i = 0; i < 8; i++) {
      const s = 2 * h + (i >> 2), r = i & 3, v = r & 1, pos = i % 3;
      regs[s][r] = hfma2(hfma2(rpMagicPair(w, i), RP_SLOT_SCALE[pos], rpC1(k(v, 1), pos)), k(v, 0), k(v, 2));
    }
  }
  return regs;
}

export function aRegistersRp(p: PackedTensor, m0: number, kb: number, tid: number): number[][] {
  return aRegistersFromBlock(repackBlock(p, m0 / FUSED_BM, kb), tid);
}

/**
 * The weight variants 3/4 multiply by, as f32 [out·in]: bf16(bf16(s)·(q − zi) − bf16(s·(z − zi))) (one rounding
 * of the f64-exact value; what the two bf16 FMAs give). Within 2^−8·(|s|·(|q − zi| + |z − zi|) + |w|) of s·(q − z) (half a bf16 ulp for s, for c2 and for the result).
 */
export function repackedWeights(p: PackedTensor): Float32Array {
  const W = new Float32Array(p.out * p.in), ng = p.in / FUSED_BK;
  for (let R = 0; R < p.out; R++) {
    for (let kb = 0; kb < ng; kb++) {
      const k = rpRowConsts(p.scales![R * ng + kb], p.zeros![R * ng + kb]);
      const sb = bf16Value(k.s2 & 0xffff), c2 = bf16Value(k.c2 & 0xffff);
      const lut = [0, 1, 2, 3].map((q) => bf16Value(bf16RneBits(sb * (q - k.zi) + c2)));
      for (let c = kb * FUSED_BK; c < (kb + 1) * FUSED_BK; c++) W[R * p.in + c] = lut[codeAt(p, R, c)];
    }
  }
  return W;
}
