// The quantizer kernels (native/cuda/quantize.cu) against the TypeScript quantizers, on a CUDA device: every
// code, scale, zero, absmax, double-quantization code/scale/offset and τ code/scale bit-identical to
// quantizeWeight's, and the ICQ entropy statistics equal, for every method / bit width / group (short last groups
// and blocks, per-channel, double quantization, ICQ nf and int). Random N(0, 0.02²) weights with outliers.
// Also the kernels one by one (packing, τ double quantization, the absmax mean's sequential fallback) on inputs
// made for them. Skips with the reason where no CUDA device is present (the host-emulated orchestration runs in
// CI: test/quantize-gpu-emulated.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { cudaQuantizer, cudaQuantizerUnavailable, type NativeCudaQuantize } from '../src/backend/cuda-quantize.js';
import { quantizeWeight } from '../src/quant/quantizer.js';
import type { IcqStats } from '../src/quant/icq.js';
import type { QuantOpts } from '../src/quant/types.js';
import { packCodes, packedBytes } from '../src/quant/pack.js';
import { dynamicMap } from '../src/quant/normalfloat.js';
import { tauDqRef } from '../src/quant/quantize-gpu-twins.js';
import { quantizeWeightGpu } from '../src/quant/quantize-gpu.js';
import { QUANT_CASES, caseName, outlierWeight, packedMismatches } from './helpers/quantize-cases.js';

type TestContext = { skip(message?: string): void; diagnostic(message: string): void };

function quantizerOrSkip(t: TestContext): NativeCudaQuantize | null {
  const c = cudaQuantizer();
  if (!c) t.skip(cudaQuantizerUnavailable());
  return c;
}

const stats0 = (): IcqStats => ({ entropyBefore: 0, entropyAfter: 0, blocks: 0 });

/** GPU vs CPU on one weight; returns the mismatch descriptions (empty = bit-identical, stats included). */
function compare(c: NativeCudaQuantize, W: Float32Array, out: number, inF: number, opts: QuantOpts): string[] {
  const sg = stats0(), sc = stats0();
  const got = quantizeWeightGpu(c, W, out, inF, opts, { icqStats: sg });
  const want = quantizeWeight(W, out, inF, opts, { icqStats: sc });
  const bad = packedMismatches(got, want);
  if (!Object.is(sg.entropyBefore, sc.entropyBefore) || !Object.is(sg.entropyAfter, sc.entropyAfter) || sg.blocks !== sc.blocks) {
    bad.push(`ICQ stats ${JSON.stringify(sg)} vs ${JSON.stringify(sc)}`);
  }
  return bad;
}

test('GPU quantizers = TypeScript quantizers, bit for bit: every method, bit width and group (37×203, 96×256)', (t) => {
  const c = quantizerOrSkip(t);
  if (!c) return;
  const rng = new Rng(21);
  const failures: string[] = [];
  for (const [out, inF] of [[37, 203], [96, 256]]) {
    const W = outlierWeight(rng, out, inF);
    for (const opts of QUANT_CASES) {
      const bad = compare(c, W, out, inF, opts);
      t.diagnostic(`${caseName(opts)} ${out}x${inF}: ${bad.length ? bad.join('; ') : 'identical'}`);
      if (bad.length) failures.push(`${caseName(opts)} ${out}x${inF}: ${bad.join('; ')}`);
    }
  }
  assert.deepEqual(failures, [], failures.join('\n'));
});

test('GPU quantizers at a larger size: many DQ groups (parallel absmax mean), ICQ-NF2 DQ and RTN2 on 256×4096', (t) => {
  const c = quantizerOrSkip(t);
  if (!c) return;
  const rng = new Rng(22);
  const W = outlierWeight(rng, 256, 4096);
  const failures: string[] = [];
  for (const opts of [{ method: 'nf', bits: 2, groupSize: 64, doubleQuant: true }, { method: 'nf', bits: 4, groupSize: 64, doubleQuant: true },
    { method: 'icq', icqMode: 'nf', bits: 2, groupSize: 64, doubleQuant: true }, { method: 'rtn', bits: 2, groupSize: 64 },
    { method: 'icq', icqMode: 'int', bits: 2, groupSize: 64 }] as QuantOpts[]) {
    const bad = compare(c, W, 256, 4096, opts);
    t.diagnostic(`${caseName(opts)} 256x4096: ${bad.length ? bad.join('; ') : 'identical'}`);
    if (bad.length) failures.push(`${caseName(opts)}: ${bad.join('; ')}`);
  }
  assert.deepEqual(failures, [], failures.join('\n'));
});

test('absmax mean: a block of tiny weights makes the parallel sum inexact; the sequential fallback still matches', (t) => {
  const c = quantizerOrSkip(t);
  if (!c) return;
  const rng = new Rng(23);
  const W = outlierWeight(rng, 64, 1024);
  for (let i = 64 * 5; i < 64 * 6; i++) W[i] = (rng.next() - 0.5) * 1e-30;  // block 5: absmax ~5e-31
  for (const opts of [{ method: 'nf', bits: 4, groupSize: 64, doubleQuant: true }, { method: 'icq', icqMode: 'nf', bits: 2, groupSize: 64, doubleQuant: true }] as QuantOpts[]) {
    const bad = compare(c, W, 64, 1024, opts);
    assert.deepEqual(bad, [], `${caseName(opts)}: ${bad.join('; ')}`);
  }
});

test('cudaPackCodes = packCodes for bits 1..8 and odd lengths', (t) => {
  const c = quantizerOrSkip(t);
  if (!c) return;
  const rng = new Rng(24);
  for (const n of [1, 7, 8, 9, 1001, 65536 + 13]) {
    for (let bits = 1; bits <= 8; bits++) {
      const codes = Uint8Array.from({ length: n }, () => rng.int(1 << bits));
      const hc = c.cudaAlloc(n), hp = c.cudaAlloc(packedBytes(n, bits) + 8);
      try {
        c.cudaUpload(hc, codes);
        c.cudaUpload(hp, new Uint8Array(packedBytes(n, bits) + 8).fill(0xa5));  // poison, incl. past the end
        c.cudaPackCodes(hc, n, bits, hp);
        const got = new Uint8Array(packedBytes(n, bits) + 8);
        c.cudaDownload(hp, got);
        const want = packCodes(codes, bits);
        let bad = 0;
        for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) bad++;
        assert.equal(bad, 0, `n=${n} bits=${bits}: ${bad} of ${want.length} bytes differ`);
        assert.ok(got.subarray(want.length).every((b) => b === 0xa5), `n=${n} bits=${bits}: wrote past the stream`);
      } finally { c.cudaFree(hc); c.cudaFree(hp); }
    }
  }
});

test('cudaTauDq = tauDqRef (τ per 256 blocks; one all-zero group; ties between map values)', (t) => {
  const c = quantizerOrSkip(t);
  if (!c) return;
  const rng = new Rng(25);
  const nb = 256 * 3 + 41, map = dynamicMap();
  const tau = Float32Array.from({ length: nb }, () => (rng.next() - 0.5) * 0.006);
  for (let i = 256; i < 512; i++) tau[i] = 0;                        // group 1: scale 0 → zero index
  for (let i = 0; i < 40; i++) tau[600 + i] = Math.fround(map[100 + i] * 0.004); // exact map multiples
  tau[512] = 0.004;                                                  // group 2's max: those are exact map values
  const q = new Uint8Array(nb), scale = new Float32Array(Math.ceil(nb / 256));
  tauDqRef(tau, q, scale);
  const ht = c.cudaAlloc(nb * 4), hm = c.cudaAlloc(1024), hq = c.cudaAlloc(nb), hs = c.cudaAlloc(scale.byteLength);
  try {
    c.cudaUpload(ht, tau); c.cudaUpload(hm, map);
    c.cudaTauDq(ht, nb, hm, hq, hs);
    const gq = new Uint8Array(nb), gs = new Float32Array(scale.length);
    c.cudaDownload(hq, gq); c.cudaDownload(hs, gs);
    let bad = 0;
    for (let i = 0; i < nb; i++) if (gq[i] !== q[i]) bad++;
    assert.equal(bad, 0, `${bad} of ${nb} τ codes differ`);
    assert.deepEqual(Array.from(gs), Array.from(scale));
  } finally { for (const h of [ht, hm, hq, hs]) c.cudaFree(h); }
});
