// Native SwiGLU and RMSNorm against their TypeScript twins (src/model/ops), f32 random inputs, odd sizes
// (SIMD tails), accumulation into non-zero gradients, null rstd/dx/dw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { nativeOps } from '../src/backend/kernels.js';
import { nativeReason } from '../src/backend/native.js';
import { swigluBackwardRef as swigluBackward, swigluForwardRef as swigluForward } from '../src/model/ops/swiglu.js';
import { rmsnormBackwardRef as rmsnormBackward, rmsnormForwardRef as rmsnormForward } from '../src/model/ops/rmsnorm.js';
import { maxRelErr, randf } from './helpers/arrays.js';

test('native swiglu forward/backward match src/model/ops/swiglu.ts', (t) => {
  const nat = nativeOps();
  if (!nat) { t.skip(`native addon not built: ${nativeReason()}`); return; }
  const rng = new Rng(21);
  for (const N of [1, 15, 37, 1000, 70001]) {
    const gate = randf(rng, N, 4), up = randf(rng, N), dout = randf(rng, N);
    if (N > 2) { gate[0] = -100; gate[1] = 100; }  // saturated sigmoid on both sides
    const want = new Float32Array(N), got = new Float32Array(N).fill(NaN);
    swigluForward(want, gate, up, N);
    nat.swigluForward(got, gate, up, N);
    assert.ok(maxRelErr(got, want) < 1e-5, `fwd N=${N}: ${maxRelErr(got, want)}`);
    const dg0 = randf(rng, N), du0 = randf(rng, N);
    const [dgW, duW, dgG, duG] = [dg0.slice(), du0.slice(), dg0.slice(), du0.slice()];
    swigluBackward(dgW, duW, dout, gate, up, N);
    nat.swigluBackward(dgG, duG, dout, gate, up, N);
    assert.ok(maxRelErr(dgG, dgW) < 1e-5 && maxRelErr(duG, duW) < 1e-5, `bwd N=${N}: ${maxRelErr(dgG, dgW)} ${maxRelErr(duG, duW)}`);
    assert.ok(maxRelErr(dgG.map((x, i) => x - dg0[i]), dgW.map((x, i) => x - dg0[i])) < 1e-4, `bwd increment N=${N}`);
  }
});

test('native rmsnorm forward/backward match src/model/ops/rmsnorm.ts', (t) => {
  const nat = nativeOps();
  if (!nat) { t.skip(`native addon not built: ${nativeReason()}`); return; }
  const rng = new Rng(22), eps = 1e-5;
  for (const [N, C] of [[1, 7], [5, 37], [33, 64], [300, 513], [3, 4096]]) {
    const x = randf(rng, N * C), w = randf(rng, C, 0.3).map((v) => v + 1), dout = randf(rng, N * C);
    const outW = new Float32Array(N * C), rW = new Float32Array(N), outG = new Float32Array(N * C).fill(NaN), rG = new Float32Array(N);
    rmsnormForward(outW, rW, x, w, N, C, eps);
    nat.rmsnormForward(outG, rG, x, w, N, C, eps);
    assert.ok(maxRelErr(outG, outW) < 1e-5 && maxRelErr(rG, rW) < 1e-5, `fwd ${N}x${C}: ${maxRelErr(outG, outW)} ${maxRelErr(rG, rW)}`);
    const out2 = new Float32Array(N * C);
    nat.rmsnormForward(out2, null, x, w, N, C, eps);
    assert.deepEqual(out2, outG);
    const dx0 = randf(rng, N * C), dw0 = randf(rng, C);
    const [dxW, dwW, dxG, dwG] = [dx0.slice(), dw0.slice(), dx0.slice(), dw0.slice()];
    rmsnormBackward(dxW, dwW, dout, x, w, rW, N, C);
    nat.rmsnormBackward(dxG, dwG, dout, x, w, rW, N, C);
    const inc = (a: Float32Array, a0: Float32Array) => a.map((v, i) => v - a0[i]);
    assert.ok(maxRelErr(inc(dxG, dx0), inc(dxW, dx0)) < 1e-4, `dx ${N}x${C}: ${maxRelErr(inc(dxG, dx0), inc(dxW, dx0))}`);
    assert.ok(maxRelErr(inc(dwG, dw0), inc(dwW, dw0)) < 1e-4, `dw ${N}x${C}: ${maxRelErr(inc(dwG, dw0), inc(dwW, dw0))}`);
    const dxOnly = dx0.slice();
    nat.rmsnormBackward(dxOnly, null, dout, x, w, rW, N, C);
    assert.deepEqual(dxOnly, dxG);
    const dwOnly = dw0.slice();
    nat.rmsnormBackward(null, dwOnly, dout, x, w, rW, N, C);
    assert.deepEqual(dwOnly, dwG);
  }
});
