// Parity with transformers: tiny random checkpoints saved by scripts/fixtures/make_hf_fixtures.py with the
// float32 eager-attention logits of LlamaForCausalLM / MistralForCausalLM (MHA/GQA, tied/untied,
// default/llama3 RoPE, f32/bf16/f16 storage, sharded). Our f32 and f64 forwards must match within 1e-4.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { openTensorStore } from '../src/io/safetensors.js';
import { loadHfConfig } from '../src/io/config.js';
import { LlamaWeights } from '../src/model/weights.js';
import { LlamaModel } from '../src/model/llama.js';
import { KvCache, decodeStep, prefill } from '../src/model/generate.js';
import { maxAbs, maxAbsDiff } from './model-fd.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'test', 'fixtures', 'hf');
const FIXTURES = ['llama2-mha-f32-sharded', 'llama32-gqa-bf16-tied', 'llama3-gqa-bf16-oldstyle', 'mistral-gqa-f16'];

for (const name of FIXTURES) {
  test(`HF parity: ${name} logits match transformers (f32 and f64), KV-cached decode too`, () => {
    const dir = join(root, name);
    const config = loadHfConfig(join(dir, 'config.json'));
    const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { ids: number[]; logits: number[][] };
    const want = Float64Array.from(expected.logits.flat());
    const ids = Int32Array.from(expected.ids), T = ids.length, V = config.vocabSize;
    const store = openTensorStore(dir);
    try {
      const get = (n: string, shape: number[]) => {
        assert.deepEqual(store.info(n).shape, shape, `${n} shape`);
        return store.readTensorF32(n);
      };
      for (const precision of ['f32', 'f64'] as const) {
        const m = new LlamaModel(LlamaWeights.fromTensors(config, get, precision));
        const got = m.forward(ids, 1, T, { logits: true, train: false }).logits!;
        const rel = maxAbsDiff(got, want) / maxAbs(want);
        assert.ok(rel < 1e-4, `${name} ${precision}: max |Δlogit| / max |logit| = ${rel}`);
        if (precision === 'f32') {
          const cache = new KvCache(m, 1, T);
          const first = prefill(m, cache, ids.subarray(0, T - 3), 1, T - 3);
          assert.ok(maxAbsDiff(first, want.subarray((T - 4) * V, (T - 3) * V)) / maxAbs(want) < 1e-4);
          for (let t = T - 3; t < T; t++) {
            const lg = decodeStep(m, cache, ids.subarray(t, t + 1));
            assert.ok(maxAbsDiff(lg, want.subarray(t * V, (t + 1) * V)) / maxAbs(want) < 1e-4, `${name} decode at ${t}`);
          }
        }
      }
    } finally {
      store.close();
    }
  });
}
