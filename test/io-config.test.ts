import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LowbitError } from '../src/io/errors.js';
import { configToHfJson, loadHfConfig, parseHfConfig, writeHfConfig } from '../src/io/config.js';
import type { LlamaConfig } from '../src/model/config.js';

// Llama-3.1-8B's config.json (transformers 4.43, older rope style)
const LLAMA31 = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0,
  bos_token_id: 128000, eos_token_id: [128001, 128008, 128009], hidden_act: 'silu',
  hidden_size: 4096, initializer_range: 0.02, intermediate_size: 14336,
  max_position_embeddings: 131072, mlp_bias: false, model_type: 'llama',
  num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 8,
  pretraining_tp: 1, rms_norm_eps: 1e-05,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: false, torch_dtype: 'bfloat16',
  transformers_version: '4.43.0.dev0', use_cache: true, vocab_size: 128256,
};

const LLAMA31_PARSED: LlamaConfig = {
  architecture: 'llama', vocabSize: 128256, hiddenSize: 4096, intermediateSize: 14336, numLayers: 32,
  numHeads: 32, numKvHeads: 8, headDim: 128, rmsNormEps: 1e-5, ropeTheta: 500000,
  ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
  maxPositionEmbeddings: 131072, tieWordEmbeddings: false, bosTokenId: 128000, eosTokenId: 128001, torchDtype: 'bfloat16',
};

function lowbit(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LowbitError, `expected LowbitError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'));
    assert.match(e.message, re);
    return true;
  });
}

test('older style: rope_theta + llama3 rope_scaling, eos list', () => {
  assert.deepEqual(parseHfConfig(LLAMA31), LLAMA31_PARSED);
});

test('newer style: rope_parameters (transformers v5) and dtype', () => {
  const { rope_scaling: _rs, rope_theta: _rt, torch_dtype: _td, ...rest } = LLAMA31;
  const v5 = {
    ...rest, dtype: 'bfloat16',
    rope_parameters: { rope_type: 'llama3', rope_theta: 500000.0, factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192 },
  };
  assert.deepEqual(parseHfConfig(v5), LLAMA31_PARSED);
  const plain = parseHfConfig({ ...rest, rope_parameters: { rope_type: 'default', rope_theta: 1e6 } });
  assert.deepEqual(plain.ropeScaling, { type: 'default' });
  assert.equal(plain.ropeTheta, 1e6);
  assert.equal(plain.torchDtype, 'float32');
});

test('defaults: head_dim, kv heads, tie, eps, theta, max positions; old "type" key; mistral', () => {
  const tiny = {
    architectures: ['LlamaForCausalLM'], vocab_size: 32000, hidden_size: 256, intermediate_size: 688,
    num_hidden_layers: 2, num_attention_heads: 8, rope_scaling: null, bos_token_id: 1, eos_token_id: 2,
  };
  const c = parseHfConfig(tiny);
  assert.equal(c.architecture, 'llama');
  assert.equal(c.headDim, 32);
  assert.equal(c.numKvHeads, 8);
  assert.equal(c.tieWordEmbeddings, false);
  assert.equal(c.rmsNormEps, 1e-6);
  assert.equal(c.ropeTheta, 10000);
  assert.equal(c.maxPositionEmbeddings, 2048);
  assert.deepEqual(c.ropeScaling, { type: 'default' });
  assert.equal(c.bosTokenId, 1);
  assert.equal(c.eosTokenId, 2);
  const explicitHead = parseHfConfig({ ...tiny, head_dim: 64, num_key_value_heads: 2, tie_word_embeddings: true, bos_token_id: null });
  assert.equal(explicitHead.headDim, 64);
  assert.equal(explicitHead.numKvHeads, 2);
  assert.equal(explicitHead.tieWordEmbeddings, true);
  assert.equal(explicitHead.bosTokenId, null);
  const oldKey = parseHfConfig({ ...tiny, rope_scaling: { type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } });
  assert.deepEqual(oldKey.ropeScaling, { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  assert.deepEqual(parseHfConfig({ ...tiny, rope_scaling: { rope_type: 'default' } }).ropeScaling, { type: 'default' });
  // Mistral-7B-v0.1: sliding_window caps the usable context (full attention is exact within it)
  const m = parseHfConfig({ ...tiny, architectures: ['MistralForCausalLM'], model_type: 'mistral', max_position_embeddings: 32768, sliding_window: 4096 });
  assert.equal(m.architecture, 'mistral');
  assert.equal(m.maxPositionEmbeddings, 4096);
  assert.equal(parseHfConfig({ ...tiny, model_type: 'mistral', max_position_embeddings: 32768, sliding_window: null }).maxPositionEmbeddings, 32768);
});

test('unsupported architectures, rope types and malformed fields', () => {
  lowbit(() => parseHfConfig({ ...LLAMA31, model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'] }), /^config\.json: unsupported architecture "qwen2" \(supported: llama, mistral\)$/);
  const { model_type: _mt, ...noType } = LLAMA31;
  lowbit(() => parseHfConfig({ ...noType, architectures: ['GPT2LMHeadModel'] }), /^config\.json: unsupported architecture "GPT2LMHeadModel"/);
  assert.equal(parseHfConfig({ ...noType, architectures: ['MistralForCausalLM'] }).architecture, 'mistral');
  lowbit(() => parseHfConfig({ vocab_size: 3 }), /cannot tell the architecture/);
  for (const t of ['linear', 'dynamic', 'yarn', 'longrope']) {
    lowbit(() => parseHfConfig({ ...LLAMA31, rope_scaling: { rope_type: t, factor: 2 } }), new RegExp(`^config\\.json: unsupported rope scaling type "${t}" \\(supported: default, llama3\\)$`));
    lowbit(() => parseHfConfig({ ...LLAMA31, rope_parameters: { rope_type: t, rope_theta: 1e4, factor: 2 } }), /unsupported rope scaling type/);
  }
  lowbit(() => parseHfConfig({ ...LLAMA31, rope_scaling: { type: 'linear', factor: 2 } }), /unsupported rope scaling type "linear"/);
  lowbit(() => parseHfConfig({ ...LLAMA31, rope_scaling: { rope_type: 'llama3', factor: 8 } }), /llama3 rope scaling needs a positive 'low_freq_factor', got undefined/);
  lowbit(() => parseHfConfig({ ...LLAMA31, rope_parameters: { full_attention: { rope_type: 'default' }, sliding_attention: { rope_type: 'default' } } }), /per-layer-type 'rope_parameters'/);
  lowbit(() => parseHfConfig({ ...LLAMA31, hidden_size: undefined }), /^config\.json: missing 'hidden_size'$/);
  lowbit(() => parseHfConfig({ ...LLAMA31, hidden_size: 4096.5 }), /'hidden_size' must be a positive integer, got 4096\.5/);
  lowbit(() => parseHfConfig({ ...LLAMA31, num_key_value_heads: 5 }), /num_attention_heads 32 is not a multiple of num_key_value_heads 5/);
  lowbit(() => parseHfConfig({ ...LLAMA31, hidden_size: 100 }), /hidden_size 100 is not divisible by num_attention_heads 32/);
  lowbit(() => parseHfConfig({ ...LLAMA31, hidden_act: 'gelu' }), /unsupported hidden_act "gelu"/);
  lowbit(() => parseHfConfig({ ...LLAMA31, attention_bias: true }), /attention_bias true is not supported/);
  lowbit(() => parseHfConfig({ ...LLAMA31, torch_dtype: 'int8' }), /unsupported torch_dtype "int8"/);
  lowbit(() => parseHfConfig([1, 2]), /^config\.json: is not a JSON object$/);
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-io-cfg-'));
  writeFileSync(join(dir, 'config.json'), '{"model_type": "llama",');
  lowbit(() => loadHfConfig(join(dir, 'config.json')), /^config\.json: not valid JSON \(/);
  lowbit(() => loadHfConfig(join(dir, 'nope.json')), /^nope\.json: file not found$/);
});

test('configToHfJson writes an older-style config that parses back identically', () => {
  const j = configToHfJson(LLAMA31_PARSED);
  assert.deepEqual(j.architectures, ['LlamaForCausalLM']);
  assert.equal(j.model_type, 'llama');
  assert.equal(j.hidden_act, 'silu');
  assert.equal(j.attention_bias, false);
  assert.equal(j.mlp_bias, false);
  assert.equal(j.torch_dtype, 'bfloat16');
  assert.equal(j.rope_theta, 500000);
  assert.deepEqual(j.rope_scaling, { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 });
  assert.equal(j.eos_token_id, 128001);
  assert.deepEqual(parseHfConfig(JSON.parse(JSON.stringify(j))), LLAMA31_PARSED);
  const small: LlamaConfig = { ...LLAMA31_PARSED, architecture: 'mistral', ropeScaling: { type: 'default' }, tieWordEmbeddings: true, bosTokenId: null, torchDtype: 'float32' };
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-io-cfg-'));
  writeHfConfig(join(dir, 'config.json'), small);
  const back = loadHfConfig(join(dir, 'config.json'));
  assert.deepEqual(back, small);
  assert.equal(configToHfJson(small).rope_scaling, null);
  assert.deepEqual(configToHfJson(small).architectures, ['MistralForCausalLM']);
});
