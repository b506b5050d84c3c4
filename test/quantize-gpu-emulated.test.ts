// quantizeWeightGpu's host logic on the emulated quantizer kernels (test/helpers/host-quantize.ts: the kernels'
// TypeScript twins behind the engine's buffer handles): every method, bit width and group of the GPU path gives
// the CPU quantizer's PackedTensor and ICQ statistics exactly, all device buffers are freed, unsupported options
// fall back to the CPU. Plus CI checks of two things the kernels rely on: the entropy-term table reproduces
// codeEntropy bit for bit, and the absmax mean's parallel sum equals the sequential one when the kernel says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { quantizeWeight } from '../src/quant/quantizer.js';
import { codeEntropy, type IcqStats } from '../src/quant/icq.js';
import { quantEntropyTerms } from '../src/quant/quantize-gpu-twins.js';
import { quantizeWeightGpu, gpuWeightQuantizer, gpuQuantizeUnsupported } from '../src/quant/quantize-gpu.js';
import { hostQuantizer } from './helpers/host-quantize.js';
import { QUANT_CASES, caseName, outlierWeight, packedMismatches } from './helpers/quantize-cases.js';

const stats0 = (): IcqStats => ({ entropyBefore: 0, entropyAfter: 0, blocks: 0 });

test('emulated GPU quantizer = quantizeWeight for every method, bit width and group (37×203 and 16×256)', () => {
  const rng = new Rng(11);
  for (const [out, inF] of [[37, 203], [16, 256]]) {
    const W = outlierWeight(rng, out, inF);
    for (const opts of QUANT_CASES) {
      assert.equal(gpuQuantizeUnsupported(opts), null, caseName(opts));
      const e = hostQuantizer();
      const sg = stats0(), sc = stats0();
      const got = quantizeWeightGpu(e, W, out, inF, opts, { icqStats: sg });
      const want = quantizeWeight(W, out, inF, opts, { icqStats: sc });
      const bad = packedMismatches(got, want);
      assert.deepEqual(bad, [], `${caseName(opts)} ${out}x${inF}: ${bad.join('; ')}`);
      assert.deepEqual(sg, sc, `${caseName(opts)}: ICQ statistics`);
      if (opts.method === 'icq') assert.ok(sc.blocks > 0 && sc.entropyAfter > sc.entropyBefore, `${caseName(opts)}: ICQ raised the entropy`);
      assert.equal(e.live(), 0, `${caseName(opts)}: device buffers left allocated`);
      assert.ok(e.kernelCalls.includes('pack'), 'codes packed on the device');
    }
  }
});

test('the entropy-term table reproduces codeEntropy bit for bit (full and short segments)', () => {
  const rng = new Rng(5);
  for (const [len, tail, bits] of [[64, 27, 2], [64, 64, 4], [128, 1, 3], [203, 11, 8]]) {
    const t = quantEntropyTerms(len, tail);
    for (let trial = 0; trial < 200; trial++) {
      const n = trial % 2 ? tail : len, K = 1 << bits;
      // skewed codes so that some bins are empty and some counts repeat
      const codes = Uint8Array.from({ length: n }, () => Math.min(K - 1, Math.floor(K * rng.next() ** (1 + trial % 3))));
      const counts = new Int32Array(K);
      for (const c of codes) counts[c]++;
      let h = 0;
      for (let v = 0; v < K; v++) if (counts[v] > 0) h -= t[(n === len ? 0 : len + 1) + counts[v]];
      assert.ok(Object.is(h, codeEntropy(codes, 0, n, bits)), `len ${n} bits ${bits}: ${h} vs ${codeEntropy(codes, 0, n, bits)}`);
    }
  }
});

/** The absmax mean kernel's arithmetic: 1024 strided f64 partial sums, warp and block reductions, the exactness test. */
function kernelMeanModel(x: Float32Array): { sum: number; exact: boolean } {
  const part = new Float64Array(1024);
  let minE = Infinity, bad = false;
  const u32 = new Uint32Array(x.buffer, x.byteOffset, x.length);
  for (let i = 0; i < x.length; i++) {
    part[i % 1024] += x[i];
    if (!(x[i] >= 0) || x[i] === Infinity) bad = true;
    if (x[i] !== 0) minE = Math.min(minE, Math.max(1, (u32[i] >>> 23) & 0xff));
  }
  for (let w = 0; w < 32; w++) {  // butterfly within each warp: lane 0's order
    const lanes = Array.from(part.subarray(w * 32, w * 32 + 32));
    for (let o = 16; o; o >>= 1) { const prev = lanes.slice(); for (let l = 0; l < 32; l++) lanes[l] = prev[l] + prev[l ^ o]; }
    part[w * 32] = lanes[0];
  }
  let s = 0;
  for (let w = 0; w < 32; w++) s += part[w * 32];
  return { sum: s, exact: !bad && (minE === Infinity || s < 2 ** (52 + minE - 150)) };
}

test('absmax mean: the parallel f64 sum equals the sequential one whenever the kernel takes it as exact', () => {
  const rng = new Rng(3);
  let exactSeen = 0, fallbackSeen = 0;
  for (const [n, tiny] of [[5000, false], [70000, false], [3000, true], [1, false], [256 * 37, false]] as const) {
    const x = Float32Array.from({ length: n }, () => 0.005 + 0.2 * rng.next() ** 3);
    if (tiny) x[17] = 1e-30;  // one near-empty block: its ulp makes the sum inexact, the kernel must fall back
    let seq = 0;
    for (const v of x) seq += v;
    const m = kernelMeanModel(x);
    if (m.exact) { exactSeen++; assert.ok(Object.is(m.sum, seq), `n=${n}: parallel ${m.sum} vs sequential ${seq}`); } else fallbackSeen++;
    assert.equal(m.exact, !tiny, `n=${n}: exactness test`);
  }
  assert.ok(exactSeen >= 4 && fallbackSeen === 1);
});

test('gpuWeightQuantizer: null without an engine; GPU for supported options, CPU otherwise', () => {
  assert.equal(gpuWeightQuantizer(null), null);
  const e = hostQuantizer();
  const q = gpuWeightQuantizer(e)!;
  const rng = new Rng(2);
  const W = outlierWeight(rng, 8, 600);
  const cpuOnly = { method: 'icq', icqMode: 'nf', bits: 2, groupSize: 512 } as const;
  assert.match(gpuQuantizeUnsupported(cpuOnly)!, /blocks of 512/);
  assert.deepEqual(packedMismatches(q(W, 8, 600, cpuOnly), quantizeWeight(W, 8, 600, cpuOnly)), []);
  assert.equal(e.kernelCalls.length, 0, 'unsupported options ran no kernel');
  assert.throws(() => q(W, 8, 600, { method: 'gptq', bits: 2 }), /gptq needs the layer Hessian/);
  const rtn = { method: 'rtn', bits: 2, groupSize: 64 } as const;
  assert.deepEqual(packedMismatches(q(W, 8, 600, rtn), quantizeWeight(W, 8, 600, rtn)), []);
  assert.deepEqual(e.kernelCalls, ['int0', 'pack']);
  assert.throws(() => quantizeWeightGpu(e, W, 8, 601, rtn), /weight has 4800 values, expected 8x601/);
  assert.throws(() => quantizeWeightGpu(e, W, 8, 600, { method: 'nf', bits: 1 }), /quantize on the GPU: nf with 1 bits is not supported/);
});
