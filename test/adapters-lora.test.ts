// LoRA layer, inits, SVD, LoftQ and PEFT I/O.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/tensor.js';
import { DenseLinear } from '../src/model/linear.js';
import { LlamaWeights } from '../src/model/weights.js';
import type { LlamaConfig } from '../src/model/config.js';
import { LoraLinear, attachLora, loraParams, loraSites, parseTargets } from '../src/adapters/lora.js';
import { initGaussian, initKaiming, initFromResidual } from '../src/adapters/init.js';
import { jacobiSvd, truncatedSvd, svdFactors, residualNorm, frobenius } from '../src/adapters/svd.js';
import { loftq } from '../src/adapters/loftq.js';
import { savePeftAdapter, loadPeftAdapter } from '../src/adapters/peft-io.js';
import { mergeAllLora } from '../src/adapters/merge.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { quantizeRTN, dequantizeInt } from '../src/quant/rtn.js';
import { checkGrad, dot, maxAbsDiff, randn } from './model-fd.js';

test('LoraLinear forward = base + s·B·A·x; backward == finite differences (A, B, x), two stacked adapters', () => {
  const rng = new Rng(1), out = 7, inF = 9, rows = 4;
  const base = new DenseLinear(randn(rng, out * inF), out, inF);
  const lin = new LoraLinear(base, 'f64');
  const a = lin.add('comp', { r: 3, alpha: 6 }, false);
  const b = lin.add('task', { r: 2, alpha: 2, rslora: true }, true);
  assert.equal(a.scale, 2); assert.equal(b.scale, 2 / Math.sqrt(2));
  rng.fillNormal(a.A); rng.fillNormal(a.B); rng.fillNormal(b.A); rng.fillNormal(b.B);
  const x = randn(rng, rows * inF), y = new Float64Array(rows * out);
  lin.forward(y, x, rows);
  const W = lin.dense();
  for (let i = 0; i < rows; i++) for (let o = 0; o < out; o++) {
    let s = 0; for (let j = 0; j < inF; j++) s += x[i * inF + j] * W[o * inF + j];
    assert.ok(Math.abs(s - y[i * out + o]) < 1e-12);
  }
  const r = randn(rng, rows * out);
  const f = () => { lin.forward(y, x, rows); return dot(r, y); };
  const dx = new Float64Array(rows * inF);
  lin.backward(dx, r, x, rows);
  assert.equal(a.gradA, null);
  checkGrad('task.A', f, b.A as Float64Array, b.gradA!);
  checkGrad('task.B', f, b.B as Float64Array, b.gradB!);
  checkGrad('x', f, x, dx);
});

test('inits: gaussian std 1/r, kaiming bound 1/sqrt(in), B = 0', () => {
  const rng = new Rng(2);
  const lin = new LoraLinear(new DenseLinear(new Float32Array(64 * 256), 64, 256));
  const g = lin.add('g', { r: 8, alpha: 16 }), k = lin.add('k', { r: 8, alpha: 16 });
  initGaussian(g, rng); initKaiming(k, 256, rng);
  let s = 0; for (const v of g.A) s += v * v;
  assert.ok(Math.abs(Math.sqrt(s / g.A.length) - 1 / 8) < 0.01);
  assert.ok(Math.max(...k.A.map(Math.abs)) <= 1 / 16 && Math.max(...k.A.map(Math.abs)) > 0.06);
  assert.ok(g.B.every((v) => v === 0) && k.B.every((v) => v === 0));
});

test('SVD: Jacobi exact (tall and wide); randomized top-r matches Jacobi; Eckart–Young residual', () => {
  const rng = new Rng(3);
  for (const [m, n] of [[12, 7], [6, 15]]) {
    const M = randn(rng, m * n);
    const s = jacobiSvd(M, m, n);
    // reconstruct
    let err = 0;
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let v = 0; for (let c = 0; c < s.k; c++) v += s.U[i * s.k + c] * s.S[c] * s.V[j * s.k + c];
      err = Math.max(err, Math.abs(v - M[i * n + j]));
    }
    assert.ok(err < 1e-12, `reconstruction ${err}`);
    for (let c = 1; c < s.k; c++) assert.ok(s.S[c] <= s.S[c - 1]);
    // orthonormal U columns
    for (let a = 0; a < s.k; a++) for (let b = 0; b < s.k; b++) {
      let d = 0; for (let i = 0; i < m; i++) d += s.U[i * s.k + a] * s.U[i * s.k + b];
      assert.ok(Math.abs(d - (a === b ? 1 : 0)) < 1e-12);
    }
  }
  // decaying spectrum, 96x80, top 6
  const m = 96, n = 80, M = new Float64Array(m * n);
  for (let c = 0; c < 40; c++) {
    const u = randn(rng, m), v = randn(rng, n), sc = Math.pow(0.7, c);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) M[i * n + j] += sc * u[i] * v[j];
  }
  const ex = jacobiSvd(M, m, n), rs = truncatedSvd(M, m, n, 6, { method: 'randomized' });
  for (let c = 0; c < 6; c++) assert.ok(Math.abs(rs.S[c] - ex.S[c]) < 1e-9 * ex.S[0], `σ${c}: ${rs.S[c]} vs ${ex.S[c]}`);
  const { L, R } = svdFactors(rs, 6, 4);
  let tail = 0; for (let c = 6; c < ex.k; c++) tail += ex.S[c] ** 2;
  assert.ok(Math.abs(residualNorm(M, m, n, L, R, 6, 4) - Math.sqrt(tail)) < 1e-8);
});

test('svd init folds the scale: s·B·A = rank-r part of W − Q', () => {
  const rng = new Rng(4), out = 16, inF = 24;
  const E = randn(rng, out * inF);
  const lin = new LoraLinear(new DenseLinear(new Float64Array(out * inF), out, inF), 'f64');
  const a = lin.add('c', { r: 16, alpha: 4 }); // full rank (min(out, in) = 16): exact
  initFromResidual(a, E, out, inF);
  assert.ok(maxAbsDiff(lin.delta('c'), E) < 1e-10);
});

test('LoftQ RTN2 r=8 on a 128x128 Gaussian: error logged per iteration, best kept, below plain quantization', () => {
  const rng = new Rng(5), n = 128, r = 8;
  const W = Float32Array.from(randn(rng, n * n));
  const q = (X: Float32Array) => { const p = quantizeRTN(X, n, n, { bits: 2, groupSize: 64 }); return { deq: dequantizeInt(p), packed: p }; };
  const res = loftq(W, n, n, r, 16 / r, 4, q, { method: 'randomized' });
  assert.equal(res.errors.length, 4);
  assert.ok(res.errors.every(Number.isFinite));
  assert.equal(res.errors[res.bestIter - 1], Math.min(...res.errors));
  assert.ok(res.errors[0] < res.quantError);
  // the returned factors reproduce the logged error
  const E = new Float64Array(n * n); for (let i = 0; i < n * n; i++) E[i] = W[i] - res.deq[i];
  assert.ok(Math.abs(residualNorm(E, n, n, res.B, res.A, r, 16 / r) - res.errors[res.bestIter - 1]) < 1e-6);
  assert.ok(frobenius(E) === frobenius(E));
});

function tinyConfig(): LlamaConfig {
  return {
    architecture: 'llama', vocabSize: 37, hiddenSize: 16, intermediateSize: 24, numLayers: 2,
    numHeads: 4, numKvHeads: 2, headDim: 4, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' },
    maxPositionEmbeddings: 128, tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 2, torchDtype: 'float32',
  };
}

test('PEFT directory round trip: keys, shapes, config, metadata; load reproduces outputs; merge', () => {
  const c = tinyConfig(), rng = new Rng(6);
  const w = LlamaWeights.initRandom(c, rng, 'f32', 0.2);
  const sites = attachLora(w, 'comp', { r: 4, alpha: 16 }, ['q_proj', 'v_proj', 'down_proj']);
  assert.equal(sites.length, 6);
  for (const s of sites) { const a = s.lin.get('comp'); rng.fillNormal(a.A, 0.3); rng.fillNormal(a.B, 0.3); }
  assert.equal(loraParams(w, 'comp').length, 12);
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-peft-'));
  try {
    savePeftAdapter(dir, w, 'comp', { baseModel: 'fp', init: 'gaussian' });
    const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.peft_type, 'LORA'); assert.equal(cfg.task_type, 'CAUSAL_LM'); assert.equal(cfg.r, 4);
    assert.equal(cfg.lora_alpha, 16); assert.deepEqual(cfg.target_modules, ['q_proj', 'v_proj', 'down_proj']);
    assert.equal(cfg.use_rslora, false); assert.equal(cfg.use_dora, false); assert.equal(cfg.bias, 'none');
    const st = SafetensorsFile.open(join(dir, 'adapter_model.safetensors'));
    assert.deepEqual(st.metadata, { format: 'pt' });
    assert.deepEqual(st.info('base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight').shape, [4, 16]);
    assert.deepEqual(st.info('base_model.model.model.layers.0.mlp.down_proj.lora_B.weight').shape, [16, 4]);
    st.close();
    // fresh copy of the base, load
    const w2 = new LlamaWeights(c, 'f32', w.embed, w.layers.map((l) => ({ ...l })), w.finalNorm, w.lmHead);
    for (const s of loraSites(w2, 'comp')) w2.setLinear(s.layer, s.proj, s.lin.base);
    loadPeftAdapter(dir, w2, 'comp');
    for (const s of sites) {
      const l2 = w2.linearAt(s.layer, s.proj) as LoraLinear;
      assert.ok(l2 instanceof LoraLinear);
      assert.ok(maxAbsDiff(l2.dense(), s.lin.dense()) === 0);
      assert.equal(l2.get('comp').gradA, null);
    }
    const d = (w.linearAt(0, 'q_proj') as LoraLinear).dense();
    mergeAllLora(w);
    assert.ok(w.linearAt(0, 'q_proj') instanceof DenseLinear);
    assert.ok(maxAbsDiff((w.linearAt(0, 'q_proj') as DenseLinear).weight, d) === 0);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('PEFT: rsLoRA round trip, targets parsing, one-line errors naming the file', () => {
  const c = tinyConfig(), rng = new Rng(7);
  const w = LlamaWeights.initRandom(c, rng, 'f32', 0.2);
  const sites = attachLora(w, 'x', { r: 4, alpha: 8, rslora: true }, ['k_proj', 'up_proj']);
  for (const s of sites) { rng.fillNormal(s.lin.get('x').A); rng.fillNormal(s.lin.get('x').B); }
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-peft2-'));
  try {
    savePeftAdapter(dir, w, 'x');
    const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.use_rslora, true); assert.equal(cfg.init_lora_weights, true);
    const w2 = LlamaWeights.initRandom(c, new Rng(7), 'f32', 0.2);
    loadPeftAdapter(dir, w2, 'y', true);
    const l2 = w2.linearAt(1, 'up_proj') as LoraLinear;
    assert.equal(l2.get('y').scale, 8 / 2);
    assert.ok(l2.get('y').gradA !== null);
    assert.ok(maxAbsDiff(l2.delta('y'), (w.linearAt(1, 'up_proj') as LoraLinear).delta('x')) < 1e-6);
    // a wrong-rank config names the file
    writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...cfg, r: 5 }));
    const w3 = LlamaWeights.initRandom(c, new Rng(7), 'f32', 0.2);
    assert.throws(() => loadPeftAdapter(dir, w3, 'z'), (e: Error) => e.name === 'LowbitError' && /adapter_model\.safetensors: .*shape/.test(e.message));
    writeFileSync(join(dir, 'adapter_config.json'), '{oops');
    assert.throws(() => loadPeftAdapter(dir, w3, 'z'), (e: Error) => e.name === 'LowbitError' && /adapter_config\.json: invalid JSON/.test(e.message));
  } finally { rmSync(dir, { recursive: true, force: true }); }
  assert.deepEqual(parseTargets('q,v,down_proj'), ['q_proj', 'v_proj', 'down_proj']);
  assert.equal(parseTargets('all').length, 7);
  assert.throws(() => parseTargets('lm_head'), /unknown LoRA target/);
});
