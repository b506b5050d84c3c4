// CPU model and TypeScript twin of the fused sm_90a packed GEMM (native/cuda/qgemm_wgmma.cu): which (row, k) each
// thread's A registers hold, where the loader puts X in the 128-byte-swizzled shared tile and where the wgmma
// descriptor reads it, which (row, token) each accumulator is, and the code → bf16 conversion (magic-number float,
// one fused multiply-add). fusedGemmTwin runs the kernel's data flow through these maps on the CPU, so a wrong
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
 * the fragment maps, the loader's swizzle and the descriptor's addressing above.
 */
export function fusedGemmTwin(p: PackedTensor, M: number, X: Uint16Array): Float64Array {
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
        for (let wg = 0; wg < 2; wg++) {
          const A = new Float64Array(64 * 64);  // [row in warpgroup][k in block]
          for (let tl = 0; tl < 128; tl++) {
            const tid = 128 * wg + tl, regs = aRegisters(p, m0, kb, tid);
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
