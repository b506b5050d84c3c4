// CPU model of the fused sm_90a packed GEMM (native/cuda/qgemm_wgmma.cu, src/backend/qgemm-fused-model.ts), run in
// CI (no GPU): the A and D fragment maps cover their tiles exactly once, the loader's swizzled X layout is what
// the 128-byte-swizzle descriptor reads, the kernel's shift/mask picks the codes the fragment map names, the
// magic-number FMA gives the TS dequantizer's f32 weight bit for bit, and the twin built on all of these equals
// the plain f64 product. test/cuda-qgemm-fused.test.ts checks the kernel against the same maps on a device.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { dequantize } from '../src/quant/dequant.js';
import { unpackCodes } from '../src/quant/pack.js';
import { roundF16 } from '../src/quant/f16.js';
import { f32ToBf16, bf16ToF32 } from '../src/backend/cuda.js';
import { aFragment, accFragment, loaderOffset, descriptorOffset, shiftedWord, rowConsts, deqPair, aRegisters,
  fusedGemmTwin, bf16Bits, threadParts } from '../src/backend/qgemm-fused-model.js';
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
