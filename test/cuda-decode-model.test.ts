// A lane-by-lane CPU model of the v4 decode GEMV (native/cuda/decode.cu): the span repack, the x staging into the
// fp16 fragment image with its per-slot power-of-two scales and sums, the LOP3 code → half2 conversion, the
// mma.m16n8k16 fragment layouts (PTX ISA: A row-major 16×16, B column 16×8, C/D 16×8) and the per-slot fold. It runs
// in CI and checks the kernel's indexing before (and independently of) the GPU: the model's y must match f64 on the
// TS-dequantized weight within the fp16 rounding of x, and the engine twin (decodeSlotRound) much closer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { quantizeRTN } from '../src/quant/rtn.js';
import { dequantize } from '../src/quant/dequant.js';
import { f16BitsToF32 } from '../src/quant/f16.js';
import { decodeOwnStagedX, decodeSlotRound, roundF16 } from '../src/backend/cuda-decode.js';
import type { PackedTensor } from '../src/quant/types.js';
import { relErr } from './helpers/gpu-model.js';

const fr = Math.fround;

/** The kernel's y for one packed tensor, lane by lane. */
function v4Model(p: PackedTensor, x: Float32Array): Float64Array {
  const out = p.out, inF = p.in, nsp = inF / 256, nslot = inF / 64, ng = Math.ceil(inF / p.groupSize);
  // repack4_kernel: per 64-byte span, word (slot j, lane t) → position t·4 + j
  const src = new Uint32Array(p.qcodes.buffer.slice(p.qcodes.byteOffset, p.qcodes.byteOffset + out * inF / 4));
  const codes4 = new Uint32Array(src.length);
  for (let s = 0; s < src.length / 16; s++) for (let j = 0; j < 4; j++) for (let t = 0; t < 4; t++) codes4[s * 16 + t * 4 + j] = src[s * 16 + j * 4 + t];
  // staging: fp16 image in fragment order + (1024·Σx', Σx̂', 2^−E) per slot
  const img = new Float64Array(inF), slot: [number, number, number][] = [];
  for (let j = 0; j < nslot; j++) {
    let m = 0;
    for (let c = 0; c < 64; c++) m = Math.max(m, Math.abs(x[j * 64 + c]));
    const E = m > 0 ? 14 - (Math.floor(Math.log2(m)) + 1) : 0;
    let bias = 0, xsum = 0;
    for (let c = 0; c < 64; c++) {
      const tt = c >> 4, i = c & 15, pp = i & 7, hi = i >> 3, e = pp <= 4 ? pp : pp - 5;
      const hv = roundF16(fr(x[j * 64 + c] * 2 ** (E - 2 * e)));
      bias = fr(bias + fr(1024 * hv)); xsum = fr(xsum + fr(2 ** (2 * e) * hv));
      img[(j * 32 + tt * 8 + pp) * 2 + hi] = hv;
    }
    slot.push([bias, xsum, 2 ** -E]);
  }
  const half = (u: number) => f16BitsToF32(u & 0xffff);
  const lop = (w: number, mask: number) => ((w & mask) | 0x64006400) >>> 0;
  const y = new Float64Array(out);
  const tiles = Math.ceil(out / 16);
  for (let tile = 0; tile < tiles; tile++) {
    const r0 = tile * 16;
    const acc = Array.from({ length: 32 }, () => [0, 0]);  // per lane: rows g, g + 8
    for (let sp = 0; sp < nsp; sp++) {
      for (let j = 0; j < 4; j++) {
        const sl = sp * 4 + j;
        const A = Array.from({ length: 16 }, () => new Float64Array(16)), d = Array.from({ length: 16 }, () => new Float64Array(8));
        const frag: { a: number[][]; b: number[][] }[] = [];
        for (let lane = 0; lane < 32; lane++) {
          const g = lane >> 2, t = lane & 3;
          const rg = Math.min(r0 + g, out - 1), rh = Math.min(r0 + g + 8, out - 1);
          const wg = codes4[rg * (inF / 16) + (sp * 4 + t) * 4 + j], wh = codes4[rh * (inF / 16) + (sp * 4 + t) * 4 + j];
          const wgs = wg >>> 10, whs = wh >>> 10;
          const pg = [lop(wg, 0x00030003), lop(wg, 0x000c000c), lop(wg, 0x00300030), lop(wg, 0x00c000c0), lop(wg, 0x03000300),
            lop(wgs, 0x00030003), lop(wgs, 0x000c000c), lop(wgs, 0x00300030)];
          const ph = [lop(wh, 0x00030003), lop(wh, 0x000c000c), lop(wh, 0x00300030), lop(wh, 0x00c000c0), lop(wh, 0x03000300),
            lop(whs, 0x00030003), lop(whs, 0x000c000c), lop(whs, 0x00300030)];
          const a: number[][] = [], b: number[][] = [];
          for (let m = 0; m < 4; m++) {
            a.push([pg[2 * m], ph[2 * m], pg[2 * m + 1], ph[2 * m + 1]]);
            const w0 = sl * 32 + t * 8 + m * 2;
            b.push([w0, w0 + 1]);  // word indices into the image
          }
          frag.push({ a, b });
        }
        for (let m = 0; m < 4; m++) {
          const B = Array.from({ length: 16 }, () => new Float64Array(8));
          for (let lane = 0; lane < 32; lane++) {
            const g = lane >> 2, t = lane & 3, { a, b } = frag[lane];
            for (let h = 0; h < 2; h++) {
              const sh = h * 16;
              A[g][2 * t + h] = half(a[m][0] >>> sh); A[g + 8][2 * t + h] = half(a[m][1] >>> sh);
              A[g][2 * t + 8 + h] = half(a[m][2] >>> sh); A[g + 8][2 * t + 8 + h] = half(a[m][3] >>> sh);
              B[2 * t + h][g] = img[b[m][0] * 2 + h]; B[2 * t + 8 + h][g] = img[b[m][1] * 2 + h];
            }
          }
          for (let r = 0; r < 16; r++) for (let n = 0; n < 8; n++) { let s = d[r][n]; for (let k = 0; k < 16; k++) s += A[r][k] * B[k][n]; d[r][n] = fr(s); }
        }
        const [bias, xsum, inv] = slot[sl];
        for (let lane = 0; lane < 32; lane++) {
          const g = lane >> 2, t = lane & 3;
          const rg = Math.min(r0 + g, out - 1), rh = Math.min(r0 + g + 8, out - 1), gi = Math.floor(sl * 64 / p.groupSize);
          const fold = (row: number, D: number, a0: number) => {
            const s = fr(p.scales![row * ng + gi] * inv), z = p.zeros![row * ng + gi];
            return fr(a0 + fr(s * fr(fr(D - bias) - fr(z * xsum))));
          };
          acc[lane][0] = fold(rg, d[g][2 * t], acc[lane][0]);
          acc[lane][1] = fold(rh, d[g + 8][2 * t], acc[lane][1]);
        }
      }
    }
    for (let g = 0; g < 8; g++) {
      if (r0 + g < out) y[r0 + g] = acc[g * 4][0];
      if (r0 + g + 8 < out) y[r0 + g + 8] = acc[g * 4][1];
    }
  }
  return y;
}


for (const [out, inF, group] of [[40, 512, 64], [16, 768, 128], [33, 256, 64]] as const) {
  test(`v4 decode GEMV model (2-bit, ${out}×${inF}, group ${group}): fragment indexing = f64 within the fp16 rounding of x`, () => {
    const rng = new Rng(out + inF);
    const W = new Float32Array(out * inF);
    for (let i = 0; i < W.length; i++) W[i] = 0.05 * rng.normal();
    const p = quantizeRTN(W, out, inF, { bits: 2, groupSize: group });
    assert.ok(p.scales!.every((s) => s !== 0), 'non-degenerate scales');
    const x = new Float32Array(inF);
    for (let i = 0; i < inF; i++) x[i] = rng.normal() * 10 ** ((i >> 6) % 4 - 2);  // slots of very different magnitude
    const Wq = dequantize(p);
    const ref = new Float64Array(out), twin = new Float64Array(out), xr = new Float64Array(inF);
    for (let j = 0; j < inF; j += 64) decodeSlotRound(x, j, xr);
    for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) { ref[o] += Wq[o * inF + i] * x[i]; twin[o] += Wq[o * inF + i] * xr[i]; }
    const y = v4Model(p, x);
    const eRef = relErr(y, ref), eTwin = relErr(y, twin);
    assert.ok(eRef < 2e-3, `model vs f64 ${eRef}`);
    assert.ok(eTwin < 2e-4, `model vs the emulator twin ${eTwin}`);
    assert.ok(relErr(twin, ref) < 2e-3);
  });
}

// Kernel 5 stages x̃ = x·normW (fp16 per slot, like decodeSlotRound) and applies RMSNorm's 1/rms to the row sums:
// its twin must equal decodeSlotRound without a norm, and stay within the fp16 rounding of the normalized x with one.
test('decodeOwnStagedX (kernel 5 staging twin) = decodeSlotRound without RMSNorm, RMSNorm(x)·w within fp16 rounding with it', () => {
  const rng = new Rng(7), n = 512;
  const x = Float32Array.from({ length: n }, () => 3 * rng.normal()), w = Float32Array.from({ length: n }, () => 1 + 0.3 * rng.normal());
  const plain = new Float64Array(n);
  for (let j = 0; j < n; j += 64) decodeSlotRound(x, j, plain);
  assert.deepEqual(decodeOwnStagedX(x, null, 1e-5), plain);
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[i] * x[i];
  const rstd = 1 / Math.sqrt(ss / n + 1e-5), own = decodeOwnStagedX(x, w, 1e-5);
  let worst = 0, moved = 0;
  for (let i = 0; i < n; i++) {
    const exact = x[i] * w[i] * rstd;
    worst = Math.max(worst, Math.abs(own[i] - exact) / Math.max(Math.abs(exact), 1e-3));
    if (own[i] !== exact) moved++;
  }
  assert.ok(worst < 2 ** -10, `relative error ${worst} beyond fp16 rounding`);
  assert.ok(moved > n / 2, 'the twin rounds (most values moved by the fp16 image)');
});

// Kernel 5's tile reduction and LoRA B·t (v5_main's reduce_store, tenth session), modelled lane by lane: warp w of the
// 16 reduces rows w (lanes 0..15) and w + 16 (lanes 16..31); lane q of a half takes warp q's partial from red[par][q][row]
// (rows padded to kRedPitch = 33 floats) and B[row][64u + 4q … + 3]; a 4-step xor-shuffle tree (8, 4, 2, 1) sums each half
// and its lane 0 stores. The tile's rows of B come in the last chunk's stage: nvalid·r·2 bytes at kTile·(rowB + szB).
test('kernel-5 tile reduction model: every row sums each warp partial and each B·t term once, conflict-free, aligned copies', () => {
  const kTile = 32, kDWarps = 16, kRedPitch = kTile + 1;
  const rng = new Rng(11);
  for (const r of [8, 16, 24, 64, 72, 128]) {
    const red = Float64Array.from({ length: kDWarps * kRedPitch }, () => rng.normal());
    const B = Float64Array.from({ length: kTile * r }, () => rng.normal()), tv = Float64Array.from({ length: r }, () => rng.normal());
    const rs = 0.75, got = new Float64Array(kTile).fill(NaN);
    for (let w = 0; w < kDWarps; w++) {
      const v = new Float64Array(32), banks = new Set<number>();
      for (let lane = 0; lane < 32; lane++) {
        const hq = lane >> 4, q16 = lane & 15, row = w + 16 * hq;
        banks.add((q16 * kRedPitch + row) % 32);
        let a = red[q16 * kRedPitch + row] * rs;
        for (let u = 0; u < 2; u++) {
          const kk = 64 * u + 4 * q16;
          if (kk < r) a += B[row * r + kk] * tv[kk] + B[row * r + kk + 1] * tv[kk + 1];
          if (kk + 2 < r) a += B[row * r + kk + 2] * tv[kk + 2] + B[row * r + kk + 3] * tv[kk + 3];
        }
        v[lane] = a;
      }
      assert.equal(banks.size, 32, `warp ${w}: the 32 partial reads hit 32 banks`);
      for (const o of [8, 4, 2, 1]) {
        const nv = v.map((x, lane) => x + v[lane ^ o]);
        for (let lane = 0; lane < 32; lane++) assert.equal((lane ^ o) >> 4, lane >> 4, 'the tree stays in its half-warp');
        v.set(nv);
      }
      for (const lane of [0, 16]) got[w + (lane >> 4) * 16] = v[lane];
    }
    for (let row = 0; row < kTile; row++) {
      let want = 0;
      for (let q = 0; q < kDWarps; q++) want += red[q * kRedPitch + row] * rs;
      for (let k = 0; k < r; k++) want += B[row * r + k] * tv[k];
      assert.ok(Math.abs(got[row] - want) <= 1e-12 * (1 + Math.abs(want)), `rank ${r}, row ${row}: ${got[row]} vs ${want}`);
    }
    // the B copy: 16-byte multiple sizes, 16-byte aligned source (r0 = 32k) and destination (stage layout of v5_produce)
    for (const inF of [256, 4096, 11008]) {
      const kc = Math.min(inF, 4096), rowB = kc / 4 + ((kc / 4) % 128 === 0 ? 64 : 0), szB = kc / 16 + ((kc / 256) % 2 === 0 ? 16 : 0);
      const xsmem = inF * 4 + (inF / 64) * 16 + inF * 2, stage = kTile * (rowB + szB + 2 * r);
      for (let s = 0; s < 3; s++) assert.equal((xsmem + s * stage + kTile * (rowB + szB)) % 16, 0, `in ${inF}, rank ${r}: B area aligned`);
      for (const nvalid of [1, 7, 32]) assert.equal((nvalid * r * 2) % 16, 0, `rank ${r}: ${nvalid} rows of B are a multiple of 16 bytes`);
      for (const r0 of [0, 32, 4064]) assert.equal((r0 * r * 2) % 16, 0);
    }
  }
});

test('kernel-5 packed-tile table model: two ballot rounds list the block\'s packed tiles in stride order, segment and row tile exact', () => {
  const kTile = 32, kDenseTile = 2, kPTabMax = 64;
  const rng = new Rng(12);
  for (let trial = 0; trial < 40; trial++) {
    // a launch: 1..8 segments, packed (32-row tiles) or dense (2-row tiles), random rows; grid = min(tiles, sms)
    const nseg = 1 + rng.int(8), sms = [1, 7, 132][trial % 3];
    const segs = Array.from({ length: nseg }, () => ({ packed: rng.next() < 0.7, rows: 1 + rng.int(3000) }));
    const first: number[] = [];
    let tiles = 0;
    for (const s of segs) { first.push(tiles); tiles += Math.ceil(s.rows / (s.packed ? kTile : kDenseTile)); }
    first.push(tiles);
    const grid = Math.min(tiles, sms);
    if (Math.ceil(tiles / grid) > kPTabMax) continue;  // the host sends such launches to kernel 4
    const segOf = (tile: number): number => { let s = 0; while (s + 1 < nseg && tile >= first[s + 1]) s++; return s; };
    for (const block of [0, grid >> 1, grid - 1]) {
      // v5_prologue: lane l of round h takes tile block + (l + 32h)·grid; ballot, prefix popcount, append
      const tab: number[] = [];
      let n = 0;
      for (let h = 0; h < kPTabMax / 32; h++) {
        const entry: (number | null)[] = [];
        for (let lane = 0; lane < 32; lane++) {
          const tile = block + (lane + 32 * h) * grid;
          const si = tile < tiles ? segOf(tile) : 0;
          entry.push(tile < tiles && segs[si].packed ? (((tile - first[si]) << 3) | si) : null);
        }
        const mask = entry.map((e) => e !== null);
        for (let lane = 0; lane < 32; lane++) {
          if (!mask[lane]) continue;
          const pos = n + mask.slice(0, lane).filter(Boolean).length;
          assert.ok(pos < kPTabMax && tab[pos] === undefined, 'each slot written once');
          tab[pos] = entry[lane]! & 0xffff;  // uint16 entries
        }
        n += mask.filter(Boolean).length;
      }
      // the old walk: tile += grid, skipping dense tiles
      const want: [number, number][] = [];
      for (let tile = block; tile < tiles; tile += grid) if (segs[segOf(tile)].packed) want.push([segOf(tile), (tile - first[segOf(tile)]) * kTile]);
      assert.equal(n, want.length, `trial ${trial} block ${block}: count`);
      for (let k = 0; k < n; k++) {
        const e = tab[k];
        assert.deepEqual([e & 7, (e >> 3) * kTile], want[k], `trial ${trial} block ${block}: entry ${k}`);
      }
    }
  }
});
