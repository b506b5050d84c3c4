// Packed directory: save → load bitwise round trip, packed model = dense model on dequantized weights,
// GPTQ end to end, fake-quant export, malformed-directory errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, cpSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/tensor.js';
import type { LlamaConfig } from '../src/model/config.js';
import { PROJECTIONS, projectionPath, projectionShape } from '../src/model/config.js';
import { LlamaWeights } from '../src/model/weights.js';
import { LlamaModel } from '../src/model/llama.js';
import { DenseLinear } from '../src/model/linear.js';
import { writeHfConfig } from '../src/io/config.js';
import { writeSafetensors, SafetensorsFile, openTensorStore } from '../src/io/safetensors.js';
import { LowbitError } from '../src/io/errors.js';
import { quantizeWeight, dequantize } from '../src/quant/quantizer.js';
import { packedEntries, readPackedTensor, layoutRecord, loadPackedModel, exportFakeQuant, QUANT_FILE, isPackedDir } from '../src/quant/format.js';
import { quantizeModel } from '../src/quant/model.js';
import { PackedLinear, DequantCache } from '../src/quant/packed-linear.js';
import type { QuantOpts } from '../src/quant/types.js';

const CFG: LlamaConfig = {
  architecture: 'llama', vocabSize: 61, hiddenSize: 48, intermediateSize: 100, numLayers: 2, numHeads: 3, numKvHeads: 1,
  headDim: 16, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' }, maxPositionEmbeddings: 64,
  tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 2, torchDtype: 'float32',
};

function makeModelDir(): { dir: string; weights: LlamaWeights } {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-quant-'));
  const weights = LlamaWeights.initRandom(CFG, new Rng(123), 'f32', 0.05);
  writeHfConfig(join(dir, 'config.json'), CFG);
  writeSafetensors(join(dir, 'model.safetensors'), [...weights.toTensors()].map(([name, data, shape]) => ({ name, dtype: 'F32' as const, shape, data })));
  writeFileSync(join(dir, 'tokenizer_config.json'), '{}\n');
  return { dir, weights };
}

const METHODS: QuantOpts[] = [
  { method: 'rtn', bits: 2, groupSize: 32 },
  { method: 'rtn', bits: 3, groupSize: -1 },
  { method: 'nf', bits: 4, doubleQuant: true },
  { method: 'nf', bits: 3 },
  { method: 'icq', bits: 2, doubleQuant: true },
  { method: 'icq', bits: 4, icqMode: 'int', groupSize: 32 },
];

test('packed tensor save → load is bitwise identical (every layout, odd shapes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-pt-'));
  const rng = new Rng(2);
  const W = rng.fillNormal(new Float32Array(37 * 100));
  const H = new Float64Array(100 * 100); for (let i = 0; i < 100; i++) H[i * 101] = 1 + rng.next();
  const cases = [...METHODS, { method: 'gptq', bits: 3, groupSize: 32, actOrder: true } as QuantOpts];
  for (const [k, o] of cases.entries()) {
    const p = quantizeWeight(W, 37, 100, o, { hessian: H });
    const file = join(dir, `t${k}.safetensors`);
    writeSafetensors(file, packedEntries('x.proj', p));
    const f = SafetensorsFile.open(file);
    const q = readPackedTensor(f, file, 'x.proj', JSON.parse(JSON.stringify(layoutRecord(p))), { out: 37, in: 100 });
    f.close();
    assert.deepEqual(q, p, JSON.stringify(o));
    assert.deepEqual(dequantize(q), dequantize(p));
  }
  rmSync(dir, { recursive: true });
});

test('quantizeModel → loadPackedModel: same packed tensors, packed logits = dense dequantized logits', async () => {
  const { dir } = makeModelDir();
  const src = loadPackedModelSource(dir);
  for (const o of METHODS) {
    const out = join(dir, `packed-${o.method}-${o.bits}-${o.icqMode ?? ''}`);
    const st = await quantizeModel(dir, out, o);
    assert.ok(isPackedDir(out));
    assert.ok(existsSync(join(out, 'tokenizer_config.json')));
    const m = loadPackedModel(out);
    for (let l = 0; l < CFG.numLayers; l++) for (const p of PROJECTIONS) {
      const s = projectionShape(CFG, p), path = projectionPath(l, p);
      const ref = quantizeWeight(src.get(`${path}.weight`)!, s.out, s.in, { ...o, groupSize: o.groupSize ?? 64 });
      assert.deepEqual(m.packed.get(path), ref, `${o.method} ${path}`);
    }
    assert.equal(st.bitStats.bitsPerWeightCodes, o.bits);
    assert.ok(st.bitStats.bitsPerWeightAll > o.bits);
    if (o.method === 'icq') assert.ok(st.icq && st.icq.entropyAfter >= st.icq.entropyBefore);
    // packed model vs a dense model built from the dequantized weights
    const dense = new LlamaWeights(CFG, 'f32', m.weights.embed, m.weights.layers.map((L) => ({ ...L })), m.weights.finalNorm, m.weights.lmHead);
    for (const [l, p, lin] of m.weights.linears()) dense.setLinear(l, p, new DenseLinear((lin as PackedLinear).dense(), lin.outFeatures, lin.inFeatures));
    const ids = Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 7) % CFG.vocabSize);
    const a = new LlamaModel(m.weights).forward(ids, 2, 9, { train: false, logits: true }).logits!;
    const b = new LlamaModel(dense).forward(ids, 2, 9, { train: false, logits: true }).logits!;
    assert.deepEqual(a, b);
  }
  rmSync(dir, { recursive: true });
});

function loadPackedModelSource(dir: string): Map<string, Float32Array> {
  const s = openTensorStore(dir), m = new Map<string, Float32Array>();
  for (const n of s.names()) m.set(n, s.readTensorF32(n));
  s.close();
  return m;
}

test('GPTQ end to end: lower output error than RTN on the calibration data; fake-quant export', async () => {
  const { dir, weights } = makeModelDir();
  const rng = new Rng(5);
  const windows = Array.from({ length: 8 }, () => Int32Array.from({ length: 32 }, () => rng.int(CFG.vocabSize)));
  const g = await quantizeModel(dir, join(dir, 'gptq'), { method: 'gptq', bits: 2, groupSize: 32, calibWindows: windows, actOrder: true });
  await quantizeModel(dir, join(dir, 'rtn'), { method: 'rtn', bits: 2, groupSize: 32 });
  await quantizeModel(dir, join(dir, 'gptq-ts'), { method: 'gptq', bits: 2, groupSize: 32, calibWindows: windows, trueSequential: true });
  assert.ok(g.gptq && g.gptq.tokens === 256);
  const ids = new Int32Array(8 * 32); windows.forEach((w, i) => ids.set(w, i * 32));
  const ref = new LlamaModel(weights).forward(ids, 8, 32, { train: false }).hidden.slice();
  const err = (d: string) => {
    const h = new LlamaModel(loadPackedModel(join(dir, d)).weights).forward(ids, 8, 32, { train: false }).hidden;
    let e = 0; for (let i = 0; i < h.length; i++) e += (h[i] - ref[i]) ** 2;
    return e;
  };
  const eg = err('gptq'), er = err('rtn'), et = err('gptq-ts');
  assert.ok(eg < er, `gptq ${eg} rtn ${er}`);
  assert.ok(et < er, `gptq true-sequential ${et} rtn ${er}`);
  const rec = JSON.parse(readFileSync(join(dir, 'gptq', QUANT_FILE), 'utf8'));
  assert.equal(rec.tensors['model.layers.0.self_attn.q_proj'].act_order, true);
  // fake-quant export: plain HF dir, bf16, values = bf16(dequantized)
  exportFakeQuant(join(dir, 'rtn'), join(dir, 'fq'));
  const cfg = JSON.parse(readFileSync(join(dir, 'fq', 'config.json'), 'utf8'));
  assert.equal(cfg.quantization_config, undefined); assert.equal(cfg.torch_dtype, 'bfloat16');
  const fq = openTensorStore(join(dir, 'fq'));
  const name = 'model.layers.1.mlp.down_proj';
  assert.equal(fq.info(`${name}.weight`).dtype, 'BF16');
  const d = (loadPackedModel(join(dir, 'rtn')).weights.linearAt(1, 'down_proj') as PackedLinear).dense();
  const w = fq.readTensorF32(`${name}.weight`);
  for (let i = 0; i < d.length; i++) assert.ok(Math.abs(w[i] - d[i]) <= Math.abs(d[i]) * 2 ** -8);
  fq.close();
  rmSync(dir, { recursive: true });
});

test('dequant LRU cache keeps within its byte budget', () => {
  const rng = new Rng(1);
  const cache = new DequantCache(2 * 64 * 64 * 4);
  const ls = [0, 1, 2].map(() => new PackedLinear(quantizeWeight(rng.fillNormal(new Float32Array(64 * 64)), 64, 64, { method: 'rtn', bits: 4 }), '', cache));
  const x = rng.fillNormal(new Float32Array(2 * 64)), y = new Float32Array(2 * 64);
  for (const l of ls) l.forward(y, x, 2);
  assert.equal(cache.entries, 2);
  assert.ok(cache.usedBytes <= cache.budgetBytes);
  ls[2].forward(y, x, 2); assert.equal(cache.hits, 1);
  ls[0].forward(y, x, 2); assert.equal(cache.misses, 4);
  // backward = dy · W
  const dx = new Float32Array(2 * 64), W = ls[1].dense();
  ls[1].backward(dx, y, x, 2);
  let s = 0; for (let o = 0; o < 64; o++) s += y[o] * W[o * 64];
  assert.ok(Math.abs(dx[0] - s) < 1e-4);
});

test('malformed packed directories fail with one-line errors naming file and tensor', async () => {
  const { dir } = makeModelDir();
  const good = join(dir, 'good');
  await quantizeModel(dir, good, { method: 'rtn', bits: 2, groupSize: 32 });
  const variant = (name: string, mutate: (d: string) => void): string => {
    const d = join(dir, name); cpSync(good, d, { recursive: true }); mutate(d); return d;
  };
  const rewrite = (d: string, f: (name: string) => string | null) => {
    const s = SafetensorsFile.open(join(d, 'model.safetensors'));
    const ts = s.names().flatMap((n) => { const r = s.readTensorRaw(n); const nn = f(n); return nn ? [{ name: nn, dtype: r.dtype, shape: r.shape, data: r.data }] : []; });
    s.close();
    writeSafetensors(join(d, 'model.safetensors'), ts);
  };
  const editRec = (d: string, f: (r: any) => void) => {
    const p = join(d, QUANT_FILE); const r = JSON.parse(readFileSync(p, 'utf8')); f(r); writeFileSync(p, JSON.stringify(r));
  };
  const P = 'model.layers.1.self_attn.k_proj';
  const cases: [string, (d: string) => void, RegExp][] = [
    ['missing-scales', (d) => rewrite(d, (n) => (n === `${P}.scales` ? null : n)), /model\.safetensors: .*missing tensor 'model\.layers\.1\.self_attn\.k_proj\.scales'/],
    ['wrong-codes', (d) => editRec(d, (r) => { r.tensors[P].bits = 3; }), /model\.safetensors: .*k_proj\.qcodes' has \d+ values, expected \d+/],
    ['unknown-method', (d) => editRec(d, (r) => { r.method = 'awq'; }), /quantization\.json: unknown method "awq"/],
    ['unknown-tensor-method', (d) => editRec(d, (r) => { r.tensors[P].method = 'foo'; }), /quantization\.json: .*k_proj: unknown method "foo"/],
    ['bad-shape', (d) => editRec(d, (r) => { r.tensors[P].shape = [16, 40]; }), /quantization\.json: .*k_proj: shape \[16, 40\] does not match/],
    ['missing-entry', (d) => editRec(d, (r) => { delete r.tensors[P]; }), /quantization\.json: no layout entry for 'model\.layers\.1\.self_attn\.k_proj'/],
    ['bad-zeros', (d) => editRec(d, (r) => { r.tensors[P].bits = 1; r.tensors[P].shape = [16, 48]; }), /k_proj\.(qcodes|zeros)/],
    ['bad-json', (d) => writeFileSync(join(d, QUANT_FILE), '{"format":'), /quantization\.json: not valid JSON/],
    ['no-weights', (d) => rmSync(join(d, 'model.safetensors')), /no model\.safetensors/],
  ];
  for (const [name, mutate, re] of cases) {
    const d = variant(name, mutate);
    assert.throws(() => loadPackedModel(d), (e: unknown) => {
      assert.ok(e instanceof LowbitError, `${name}: ${String(e)}`);
      assert.ok(!e.message.includes('\n'), name);
      assert.match(e.message, re, name);
      return true;
    });
  }
  await assert.rejects(quantizeModel(dir, join(dir, 'x'), { method: 'awq' as 'rtn', bits: 2 }), /unknown quantization method 'awq'/);
  await assert.rejects(quantizeModel(good, join(dir, 'y'), { method: 'rtn', bits: 2 }), /already a packed/);
  rmSync(dir, { recursive: true });
});
