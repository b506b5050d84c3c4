// CPU model of the fused sm_90a packed GEMM (native/cuda/qgemm_wgmma.cu, src/backend/qgemm-fused-model.ts), run in
// CI (no GPU): the A and D fragment maps cover their tiles exactly once, the loader's swizzled X layout is what
// the 128-byte-swizzle descriptor reads, the kernel's shift/mask picks the codes the fragment map names, the
// magic-number FMA gives the TS dequantizer's f32 weight bit for bit, and the twin built on all of these equals
// the plain f64 product. Variants 3/4: the repacked stream puts each thread's codes where its conversion looks, the
// LOP3 + two bf16 FMAs give a weight within one bf16 rounding step of the dequantizer's (bit-equal to bf16(Ŵ) where
// the scale is bf16-exact and the zero an integer), and the twin on the repacked stream equals its f64 product. test/cuda-qgemm-fused.test.ts checks the kernel against the same maps on a device.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { dequantize } from '../src/quant/dequant.js';
import { unpackCodes } from '../src/quant/pack.js';
import { roundF16 } from '../src/quant/f16.js';
import { f32ToBf16, bf16ToF32 } from '../src/backend/cuda.js';
import { aFragment, accFragment, loaderOffset, descriptorOffset, shiftedWord, rowConsts, deqPair, aRegisters,
  fusedGemmTwin, bf16Bits, bf16Value, threadParts, repackBlock, repackStream, aRegistersRp, repackedWeights,
  rpRowConsts, rpMagicPair, rpC1, RP_SLOT_SCALE, hfma2, bf16RneBits, RP_BLOCK_BYTES } from '../src/backend/qgemm-fused-model.js';
import { randomInt2 } from './helpers/packed-int2.js';
import { relNorm } from './helpers/arrays.js';

test('qgemm-fused model: A fragments cover each warpgroup\'s 64×16 step tile once; D fragments its 64×128 tile once', () => {
  for (let wg = 0; wg < 2; wg++) {
    for (let s = 0; s < 4; s++) {
      const seen = new Uint8Array(64 * 64);
      for (let tl = 0; tl < 128; tl++) {
        for (let r = 0; r < 4; r++) {
          const { row, k } = aFragment(128 * wg + tl, s, r);
          assert.ok(row >= 64 * wg && row < 64 * wg + 64 && k >= 16 * s && k + 1 < 16 * s + 16);
          seen[(row - 64 * wg) * 64 + k]++;
          seen[(row - 64 * wg) * 64 + k + 1]++;
        }
      }
      for (let row = 0; row < 64; row++) {
        for (let k = 0; k < 64; k++) assert.equal(seen[row * 64 + k], k >> 4 === s ? 1 : 0, `wg ${wg} s ${s} (${row}, ${k})`);
      }
    }
    const seen = new Uint8Array(64 * 128);
    for (let tl = 0; tl < 128; tl++) {
      for (let i = 0; i < 64; i++) {
        const { row, col } = accFragment(128 * wg + tl, i);
        seen[(row - 64 * wg) * 128 + col]++;
      }
    }
    assert.ok(seen.every((c) => c === 1), `wg ${wg}: D tile not covered exactly once`);
  }
  // the documented per-warp order (mma.m16n8k16 A): lane 4g + t, a0/a1 row g k 2t/2t+1, a2/a3 row g+8, a4..a7 k+8
  assert.deepEqual(aFragment(5, 0, 0), { row: 1, k: 2 });
  assert.deepEqual(aFragment(5, 0, 1), { row: 9, k: 2 });
  assert.deepEqual(aFragment(5, 0, 2), { row: 1, k: 10 });
  assert.deepEqual(aFragment(32 + 5, 1, 3), { row: 16 + 9, k: 16 + 10 });
  assert.deepEqual(accFragment(5, 6), { row: 9, col: 10 });  // d6 = j 1, row g+8, col 8 + 2t
});

test('qgemm-fused model: the loader\'s swizzled X tile is what the descriptor reads (every k16 step)', () => {
  const used = new Uint8Array(128 * 128);
  for (let n = 0; n < 128; n++) {
    for (let k = 0; k < 64; k++) {
      const o = loaderOffset(n, k);
      assert.equal(o, descriptorOffset(n, k >> 4, k & 15), `token ${n} k ${k}`);
      assert.equal(o & 1, 0);
      used[o]++;
      // 8-token groups are 1024-byte swizzle atoms: token n's row stays in its 128-byte line
      assert.equal(o >> 7, n);
    }
  }
  for (let o = 0; o < used.length; o += 2) assert.equal(used[o], 1, `byte ${o}`);
});

test('qgemm-fused model: the kernel\'s shifts pick the codes of the fragment map', () => {
  const rng = new Rng(3);
  for (let trial = 0; trial < 200; trial++) {
    const word = (rng.int(65536) | (rng.int(65536) << 16)) >>> 0;
    for (let t = 0; t < 4; t++) {
      for (let r = 0; r < 4; r++) {
        const x = shiftedWord(word, t, r), kappa = 2 * t + 8 * (r >> 1);  // k within the step, as aFragment
        assert.equal((x >>> 16) & 3, (word >>> (2 * kappa)) & 3, `t ${t} r ${r} low`);
        assert.equal((x >>> 18) & 3, (word >>> (2 * kappa + 2)) & 3, `t ${t} r ${r} high`);
      }
    }
  }
});

test('qgemm-fused model: magic-number FMA = s·(q − z) of the TS dequantizer, bit for bit (z integer ≤ 255)', () => {
  const rng = new Rng(4);
  const scales = [2 ** -24, 2 ** -14, roundF16(0.000123), 1, 65504, roundF16(-0.0371)];  // f16 subnormal, normal, max, negative
  for (let i = 0; i < 200; i++) scales.push(roundF16((rng.next() * 2 - 1) * 2 ** (rng.int(30) - 20)));
  for (const s of scales) {
    for (const z of [0, 1, 2, 3, 17, 128, 255, rng.int(256)]) {
      const k = rowConsts(s, z);
      for (let q = 0; q < 4; q++) {
        for (let q2 = 0; q2 < 4; q2++) {
          const [lo, hi] = deqPair((q << 16) | (q2 << 18), k);
          // === : a negative scale with q = z gives +0 here and −0 in the dequantizer (same value in a GEMM)
          assert.ok(lo === Math.fround(s * (q - z)), `s ${s} z ${z} q ${q}: ${lo}`);
          assert.ok(hi === Math.fround(s * (q2 - z)), `s ${s} z ${z} q ${q2}: ${hi}`);
        }
      }
    }
  }
});

test('qgemm-fused model: A registers hold bf16(Ŵ) at the fragment map\'s (row, k)', () => {
  const rng = new Rng(5);
  const p = randomInt2(rng, 256, 192, 3), W = dequantize(p);
  for (const [m0, kb] of [[0, 0], [128, 2]]) {
    for (let tid = 0; tid < 256; tid++) {
      const regs = aRegisters(p, m0, kb, tid);
      for (let s = 0; s < 4; s++) {
        for (let r = 0; r < 4; r++) {
          const { row, k } = aFragment(tid, s, r), e = (m0 + row) * p.in + 64 * kb + k;
          assert.equal(regs[s][r] & 0xffff, bf16Bits(W[e]), `tid ${tid} s ${s} r ${r}`);
          assert.equal(regs[s][r] >>> 16, bf16Bits(W[e + 1]));
        }
      }
    }
  }
  assert.deepEqual(threadParts(255), { wg: 1, warp: 3, g: 7, t: 3 });
});

test('qgemm-fused twin (fragment maps + swizzle + conversion) = f64 product of bf16 weights and X', () => {
  const rng = new Rng(6);
  for (const [out, inF, M] of [[256, 512, 81], [128, 128, 130]]) {
    const p = randomInt2(rng, out, inF);
    const Xb = f32ToBf16(Float32Array.from({ length: M * inF }, () => rng.normal()));
    const Xf = bf16ToF32(Xb), Wb = bf16ToF32(f32ToBf16(dequantize(p)));
    const codes = unpackCodes(p.qcodes, 2, out * inF);
    assert.ok(codes.some((c) => c !== 0));
    const want = new Float64Array(M * out);
    for (let m = 0; m < M; m++) {
      for (let o = 0; o < out; o++) {
        let s = 0;
        for (let i = 0; i < inF; i++) s += Xf[m * inF + i] * Wb[o * inF + i];
        want[m * out + o] = s;
      }
    }
    const got = fusedGemmTwin(p, M, Xb);
    const e = relNorm(got, want);
    assert.ok(e < 1e-12, `${out}x${inF} M=${M}: rel err ${e}`);
  }
});

/** An 'int' 2-bit g64 weight with arbitrary f16 zeros (non-integer, large, negative) and f16 scales of all sizes. */
function oddZeros(rng: Rng, out: number, inF: number): ReturnType<typeof randomInt2> {
  const p = randomInt2(rng, out, inF);
  const zs = [0, 1, 2, 3, 1.5, 0.25, -3, 127, 128, 200.5, -128, -200, 2.0009765625, 65504];
  const ss = [2 ** -24, 2 ** -14, 1, 65504, -0.0371, roundF16(0.000123)];
  for (let i = 0; i < p.zeros!.length; i++) {
    if (rng.int(2)) p.zeros![i] = roundF16(zs[rng.int(zs.length)]);
    if (rng.int(4) === 0) p.scales![i] = roundF16(ss[rng.int(ss.length)]);
  }
  return p;
}

test('qgemm-fused model (repacked): bf16 FMA emulation and the magic pairs', () => {
  // 2^(7+2p) + 4^p·q for every code pair and position
  for (let i = 0; i < 8; i++) {
    for (let q = 0; q < 4; q++) {
      for (let q2 = 0; q2 < 4; q2++) {
        const w = ((q << (2 * i)) | (q2 << (16 + 2 * i))) >>> 0, v = rpMagicPair(w, i), p = i % 3;
        assert.equal(bf16Value(v & 0xffff), 128 + 4 ** p * q, `pair ${i} q ${q}`);
        assert.equal(bf16Value(v >>> 16), 128 + 4 ** p * q2, `pair ${i} q2 ${q2}`);
        for (const z of [-128, -3, 0, 2, 3, 127]) {
          const d = hfma2(v, RP_SLOT_SCALE[p], rpC1(rpRowConsts(1, z).c1, p));
          assert.equal(bf16Value(d & 0xffff), q - z, `pair ${i} z ${z}`);
          assert.equal(bf16Value(d >>> 16), q2 - z);
        }
      }
    }
  }
  // round to nearest even at a tie, and the f32 path agrees where the value is f32-exact
  assert.equal(bf16RneBits(1 + 2 ** -8), 0x3f80);
  assert.equal(bf16RneBits(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(bf16RneBits(-(1 + 2 ** -8 + 2 ** -30)), 0xbf81);
  const rng = new Rng(7);
  for (let i = 0; i < 1000; i++) {
    const x = Math.fround((rng.next() * 2 - 1) * 2 ** (rng.int(40) - 20));
    assert.equal(bf16RneBits(x), bf16Bits(x));
  }
});

test('qgemm-fused model (repacked): each thread\'s code words hold the fragment map\'s codes; stream = blocks', () => {
  const rng = new Rng(8);
  const p = randomInt2(rng, 256, 192), codes = unpackCodes(p.qcodes, 2, p.out * p.in);
  for (const [b, kb] of [[0, 0], [1, 2]]) {
    const blk = repackBlock(p, b, kb), dv = new DataView(blk.buffer);
    for (let tid = 0; tid < 256; tid++) {
      for (let s = 0; s < 4; s++) {
        for (let r = 0; r < 4; r++) {
          const { row, k } = aFragment(tid, s, r), e = (128 * b + row) * p.in + 64 * kb + k;
          const h = s >> 1, i = 4 * (s & 1) + r, w = dv.getUint32(8 * tid + 4 * h, true);
          assert.equal((w >>> (2 * i)) & 3, codes[e], `tid ${tid} s ${s} r ${r} low`);
          assert.equal((w >>> (16 + 2 * i)) & 3, codes[e + 1], `tid ${tid} s ${s} r ${r} high`);
        }
      }
    }
  }
  const all = repackStream(p);
  assert.equal(all.length, 2 * 3 * RP_BLOCK_BYTES);
  assert.deepEqual(all.subarray(4 * RP_BLOCK_BYTES + 2 * RP_BLOCK_BYTES - RP_BLOCK_BYTES, 6 * RP_BLOCK_BYTES), repackBlock(p, 1, 2));
});

test('qgemm-fused model (repacked): A registers within one bf16 step of Ŵ (bit-equal for bf16-exact s, integer z)', () => {
  const rng = new Rng(9);
  for (const odd of [false, true]) {
    const p = odd ? oddZeros(rng, 256, 192) : randomInt2(rng, 256, 192, 3), W = dequantize(p), ng = p.in / 64;
    const codes = unpackCodes(p.qcodes, 2, p.out * p.in), Wr = repackedWeights(p);
    let exact = 0, checked = 0;
    for (const [m0, kb] of [[0, 0], [128, 2], [128, 1]]) {
      for (let tid = 0; tid < 256; tid++) {
        const regs = aRegistersRp(p, m0, kb, tid);
        for (let s = 0; s < 4; s++) {
          for (let r = 0; r < 4; r++) {
            const { row, k } = aFragment(tid, s, r);
            for (let u = 0; u < 2; u++) {
              const R = m0 + row, c = 64 * kb + k + u, e = R * p.in + c;
              const got = bf16Value(u ? regs[s][r] >>> 16 : regs[s][r] & 0xffff);
              assert.equal(got, Wr[e], `repackedWeights disagrees with the registers at (${R}, ${c})`);
              const sc = p.scales![R * ng + kb], z = p.zeros![R * ng + kb], zi = rpRowConsts(sc, z).zi, q = codes[e];
              const bound = 2 ** -8 * (Math.abs(sc) * (Math.abs(q - zi) + Math.abs(z - zi)) + Math.abs(got)) + 2 ** -140;
              assert.ok(Math.abs(got - W[e]) <= bound, `(${R}, ${c}) s ${sc} z ${z} q ${q}: ${got} vs ${W[e]}`);
              if (bf16Value(bf16Bits(sc)) === sc && Number.isInteger(z) && z >= -128 && z <= 127) {
                // (=== on zero: a negative scale with q = z gives −0 in the dequantizer, +0 here)
                assert.ok(got === W[e] || bf16Bits(got) === bf16Bits(W[e]), `(${R}, ${c}): bf16-exact s, integer z`);
                exact++;
              }
              checked++;
            }
          }
        }
      }
    }
    assert.ok(exact > 0 && exact < checked, `${exact} of ${checked} bit-checked`);
  }
  // a weight with bf16-exact scales and integer zeros: every register equals bf16(Ŵ)
  const p = randomInt2(rng, 128, 128, 3);
  for (let i = 0; i < p.scales!.length; i++) p.scales![i] = bf16Value(bf16Bits(p.scales![i]));
  const W = dequantize(p), Wr = repackedWeights(p);
  for (let e = 0; e < W.length; e++) assert.ok(Wr[e] === W[e] || bf16Bits(Wr[e]) === bf16Bits(W[e]), `element ${e}`);
});

test('qgemm-fused twin on the repacked stream = f64 product of its weights, near the dequantized product', () => {
  const rng = new Rng(10);
  for (const [out, inF, M, odd] of [[256, 256, 70, false], [128, 128, 130, true]] as const) {
    const p = odd ? oddZeros(rng, out, inF) : randomInt2(rng, out, inF);
    const Xb = f32ToBf16(Float32Array.from({ length: M * inF }, () => rng.normal()));
    const Xf = bf16ToF32(Xb), Wr = repackedWeights(p), W = dequantize(p);
    const want = new Float64Array(M * out), ref = new Float64Array(M * out);
    for (let m = 0; m < M; m++) {
      for (let o = 0; o < out; o++) {
        let s = 0, s2 = 0;
        for (let i = 0; i < inF; i++) { s += Xf[m * inF + i] * Wr[o * inF + i]; s2 += Xf[m * inF + i] * W[o * inF + i]; }
        want[m * out + o] = s;
        ref[m * out + o] = s2;
      }
    }
    const got = fusedGemmTwin(p, M, Xb, true);
    assert.ok(relNorm(got, want) < 1e-12, `${out}x${inF}: twin vs its weights ${relNorm(got, want)}`);
    const e = relNorm(got, ref);
    assert.ok(e < 5e-3, `${out}x${inF}: repacked product vs the dequantized one ${e}`);
  }
});
