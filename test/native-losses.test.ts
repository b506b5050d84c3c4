// Native cross-entropy (forward, backward, fused in place), KL and the AdamW step against their
// TypeScript twins (src/model/ops/cross-entropy.ts, kl.ts, src/train/adamw.ts) on random f32 inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { nativeOps } from '../src/backend/kernels.js';
import { nativeReason } from '../src/backend/native.js';
import { crossEntropyBackward, crossEntropyForward, crossEntropyFused } from '../src/model/ops/cross-entropy.js';
import { klBackward, klForward } from '../src/model/ops/kl.js';
import { AdamW } from '../src/train/adamw.js';
import { maxRelErr, randf } from './helpers/arrays.js';

const SHAPES: [number, number][] = [[1, 5], [7, 37], [33, 1000], [5, 32003]];

test('native cross-entropy forward/backward/fused match src/model/ops/cross-entropy.ts', (t) => {
  const nat = nativeOps();
  if (!nat) { t.skip(`native addon not built: ${nativeReason()}`); return; }
  const rng = new Rng(31);
  for (const [N, V] of SHAPES) {
    const logits = randf(rng, N * V, 3);
    const targets = Int32Array.from({ length: N }, (_, n) => (n % 3 === 2 ? -100 : rng.int(V)));
    const lw = new Float32Array(N), lg = new Float32Array(N).fill(NaN);
    const want = crossEntropyForward(lw, logits, targets, N, V), got = nat.crossEntropyForward(lg, logits, targets, N, V);
    assert.ok(Math.abs(got - want) < 1e-5 * Math.abs(want), `fwd ${N}x${V}: ${got} vs ${want}`);
    assert.ok(maxRelErr(lg, lw) < 1e-5, `per-row losses ${N}x${V}`);
    assert.equal(nat.crossEntropyForward(null, logits, targets, N, V), got);
    const d0 = randf(rng, N * V, 1e-3), dw = d0.slice(), dg = d0.slice();  // small: float rounding of d0 + Δ stays below Δ·1e-6
    crossEntropyBackward(dw, logits, targets, N, V, 0.37);
    nat.crossEntropyBackward(dg, logits, targets, N, V, 0.37);
    assert.ok(maxRelErr(dg.map((x, i) => x - d0[i]), dw.map((x, i) => x - d0[i])) < 1e-5, `bwd ${N}x${V}`);
    const fw = new Float32Array(N * V), inPlace = logits.slice();
    const sw = crossEntropyFused(fw, logits, targets, N, V, 0.37);
    const sg = nat.crossEntropyFused(inPlace, inPlace, targets, N, V, 0.37);  // aliased, as the lm-head chunks call it
    assert.ok(Math.abs(sg - sw) < 1e-5 * Math.abs(sw), `fused loss ${N}x${V}`);
    assert.ok(maxRelErr(inPlace, fw) < 1e-5, `fused grad ${N}x${V}: ${maxRelErr(inPlace, fw)}`);
  }
  assert.throws(() => nat.crossEntropyForward(null, new Float32Array(4), Int32Array.from([1, 2]), 2, 2),
    /target 2 at row 1 is outside the vocabulary \[0, 2\)/);
});

test('native KL forward/backward match src/model/ops/kl.ts', (t) => {
  const nat = nativeOps();
  if (!nat) { t.skip(`native addon not built: ${nativeReason()}`); return; }
  const rng = new Rng(32);
  for (const [N, V] of SHAPES) {
    const te = randf(rng, N * V, 2), st = te.map((x) => x + 0.5 * rng.normal());
    const want = klForward(te, st, N, V), got = nat.klForward(te, st, N, V);
    assert.ok(Math.abs(got - want) < 1e-4 * Math.abs(want), `fwd ${N}x${V}: ${got} vs ${want}`);
    const d0 = randf(rng, N * V, 1e-3), dw = d0.slice(), dg = d0.slice();  // small: float rounding of d0 + Δ stays below Δ·1e-6
    klBackward(dw, te, st, N, V, 1.7);
    nat.klBackward(dg, te, st, N, V, 1.7);
    assert.ok(maxRelErr(dg.map((x, i) => x - d0[i]), dw.map((x, i) => x - d0[i])) < 1e-5, `bwd ${N}x${V}`);
  }
});

test('native AdamW step matches AdamW.update (decoupled and coupled decay), sumSquares', (t) => {
  const nat = nativeOps();
  if (!nat) { t.skip(`native addon not built: ${nativeReason()}`); return; }
  const rng = new Rng(33);
  for (const coupled of [false, true]) {
    const n = 70001, w0 = randf(rng, n), opts = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, coupledL2: coupled };
    const ref = { name: 'w', data: w0.slice(), grad: new Float32Array(n) };
    const opt = new AdamW([ref], opts);
    const w = w0.slice(), m = new Float32Array(n), v = new Float32Array(n);
    for (let step = 1; step <= 3; step++) {
      const g = randf(rng, n);
      ref.grad.set(g);
      opt.update();
      nat.adamwUpdate(w, g, m, v, opts.lr, opts.beta1, opts.beta2, opts.eps, opts.weightDecay, coupled,
        1 - opts.beta1 ** step, 1 - opts.beta2 ** step);
    }
    assert.ok(maxRelErr(m, opt.m[0]) < 1e-5 && maxRelErr(v, opt.v[0]) < 1e-5, `moments coupled=${coupled}`);
    const dW = w.map((x, i) => x - w0[i]), dR = ref.data.map((x, i) => x - w0[i]);
    assert.ok(maxRelErr(dW, dR) < 1e-4, `update coupled=${coupled}: ${maxRelErr(dW, dR)}`);
  }
  const x = randf(rng, 100003);
  let s = 0;
  for (const e of x) s += e * e;
  assert.ok(Math.abs(nat.sumSquares(x) - s) < 1e-6 * s, `sumSquares ${nat.sumSquares(x)} vs ${s}`);
});
