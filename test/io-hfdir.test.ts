import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, unlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/tensor.js';
import { PROJECTIONS, projectionPath, projectionShape, type LlamaConfig } from '../src/model/config.js';
import { LowbitError } from '../src/io/errors.js';
import { bf16BitsToF32, f32ToBf16Bits } from '../src/io/halfs.js';
import { checkTensorShape, openHfModelDir, readTensorChecked, writeHfModelDir } from '../src/io/hf-dir.js';
import { saveBpeTokenizer, trainByteLevelBpe } from '../src/io/bpe-train.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'lowbit-io-dir-'));

const CFG: LlamaConfig = {
  architecture: 'llama', vocabSize: 262, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 4, numKvHeads: 2,
  headDim: 4, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' }, maxPositionEmbeddings: 64,
  tieWordEmbeddings: false, bosTokenId: 0, eosTokenId: 1, torchDtype: 'float32',
};

function tinyWeights(c: LlamaConfig): [string, Float32Array, number[]][] {
  const rng = new Rng(11);
  const out: [string, Float32Array, number[]][] = [];
  const add = (name: string, shape: number[]) => out.push([name, rng.fillNormal(new Float32Array(shape[0] * (shape[1] ?? 1)), 0.1) as Float32Array, shape]);
  add('model.embed_tokens.weight', [c.vocabSize, c.hiddenSize]);
  for (let l = 0; l < c.numLayers; l++) {
    add(`model.layers.${l}.input_layernorm.weight`, [c.hiddenSize]);
    add(`model.layers.${l}.post_attention_layernorm.weight`, [c.hiddenSize]);
    for (const p of PROJECTIONS) {
      const s = projectionShape(c, p);
      add(`${projectionPath(l, p)}.weight`, [s.out, s.in]);
    }
  }
  add('model.norm.weight', [c.hiddenSize]);
  add('lm_head.weight', [c.vocabSize, c.hiddenSize]);
  return out;
}

function lowbit(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LowbitError, `expected LowbitError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

test('write a sharded bf16 model dir with tokenizer, open it back', () => {
  const tokDir = tmp();
  saveBpeTokenizer(tokDir, trainByteLevelBpe('low low low lower newest newest', { vocabSize: 262 }));
  const dir = tmp();
  const weights = tinyWeights(CFG);
  const res = writeHfModelDir(dir, CFG, weights, { dtype: 'bfloat16', tokenizerDir: tokDir, maxShardBytes: 9000 });
  assert.ok(res.files.length >= 2, `sharded into ${res.files.length}`);
  assert.equal(res.totalSize, weights.reduce((s, [, d]) => s + 2 * d.length, 0));
  const files = readdirSync(dir).sort();
  assert.ok(files.includes('model.safetensors.index.json'));
  assert.ok(files.includes('tokenizer.json') && files.includes('tokenizer_config.json'));
  assert.ok(!files.includes('model.safetensors'));
  const cfgJson = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  assert.equal(cfgJson.torch_dtype, 'bfloat16');
  assert.deepEqual(cfgJson.architectures, ['LlamaForCausalLM']);

  const m = openHfModelDir(dir);
  assert.deepEqual(m.config, { ...CFG, torchDtype: 'bfloat16' });
  assert.equal(m.hasTokenizer, true);
  assert.deepEqual(m.tokenizer.encode(' lowest'), [260, 2 + 101, 2 + 115, 2 + 116]);
  assert.equal(m.store.names().length, weights.length);
  for (const [name, data, shape] of weights) {
    const got = readTensorChecked(m.store, name, shape);
    assert.equal(got.length, data.length);
    for (let i = 0; i < data.length; i++) assert.equal(got[i], bf16BitsToF32(f32ToBf16Bits(data[i])), `${name}[${i}]`);
  }
  const q = projectionPath(1, 'q_proj') + '.weight';
  const shard = m.store.info(q).file.split('/').pop()!;
  assert.match(shard, /^model-0000\d-of-0000\d\.safetensors$/);
  lowbit(() => readTensorChecked(m.store, q, [16, 8]), new RegExp(`^${shard.replace(/\./g, '\\.')}: tensor '${q.replace(/\./g, '\\.')}' has shape \\[16, 16\\], config expects \\[16, 8\\]$`));
  lowbit(() => readTensorChecked(m.store, 'model.layers.9.mlp.up_proj.weight', [1]), /^model\.safetensors\.index\.json: missing tensor 'model\.layers\.9\.mlp\.up_proj\.weight'$/);
  m.close();

  // rewriting unsharded in f32 removes the stale shards
  writeHfModelDir(dir, CFG, weights);
  const after = readdirSync(dir).sort();
  assert.ok(after.includes('model.safetensors'));
  assert.ok(!after.some((f) => /^model-\d{5}-of-\d{5}/.test(f) || f === 'model.safetensors.index.json'), after.join(','));
  const m2 = openHfModelDir(dir);
  assert.equal(m2.config.torchDtype, 'float32');
  assert.deepEqual(m2.store.readTensorF32('model.norm.weight'), weights.find(([n]) => n === 'model.norm.weight')![1]);
  m2.close();
});

test('checkTensorShape message', () => {
  checkTensorShape('w', [2, 3], [2, 3]);
  lowbit(() => checkTensorShape('model.embed_tokens.weight', [32000, 4096], [32001, 4096]), /^model\.safetensors: tensor 'model\.embed_tokens\.weight' has shape \[32000, 4096\], config expects \[32001, 4096\]$/);
  lowbit(() => checkTensorShape('b', [4], [4, 1], '/x/model-00002-of-00003.safetensors'), /^model-00002-of-00003\.safetensors: tensor 'b' has shape \[4\], config expects \[4, 1\]$/);
  lowbit(() => checkTensorShape('/x/model-00002-of-00003.safetensors', 'b', [4], [4, 1]), /^model-00002-of-00003\.safetensors: tensor 'b' has shape \[4\], config expects \[4, 1\]$/);
  checkTensorShape('/x/m.safetensors', 'b', [4, 1], [4, 1]);
});

test('openHfModelDir errors', () => {
  const root = tmp();
  lowbit(() => openHfModelDir(join(root, 'absent')), /^absent: model directory not found$/);
  const d = join(root, 'm');
  mkdirSync(d);
  lowbit(() => openHfModelDir(d), /^m: no config\.json in the model directory$/);
  writeHfModelDir(d, CFG, tinyWeights(CFG).slice(0, 2));
  unlinkSync(join(d, 'model.safetensors'));
  lowbit(() => openHfModelDir(d), /^m: no weights: neither model\.safetensors nor model\.safetensors\.index\.json/);
  writeFileSync(join(d, 'config.json'), JSON.stringify({ model_type: 'gemma', hidden_size: 8 }));
  lowbit(() => openHfModelDir(d), /^config\.json: unsupported architecture "gemma"/);
  writeHfModelDir(d, CFG, tinyWeights(CFG).slice(0, 2));
  const m = openHfModelDir(d);
  assert.equal(m.hasTokenizer, false);
  lowbit(() => m.tokenizer, /^tokenizer\.json: file not found$/);
  m.close();
  lowbit(() => writeHfModelDir(d, CFG, [], { tokenizerDir: root }), /^tokenizer\.json: file not found \(tokenizerDir has no tokenizer\.json\)$/);
});
