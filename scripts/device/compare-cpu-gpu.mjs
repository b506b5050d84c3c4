#!/usr/bin/env node
// The shipped model on both engines: logits of held-out windows (FP model, and the 2-bit model with its RILQ
// adapter), and greedy generations, CPU path vs GPU engine.
//   node scripts/device/compare-cpu-gpu.mjs QUANT_DIR ADAPTER_DIR [--json out.json]
import { readFileSync, writeFileSync } from 'node:fs';
import '../../dist/src/backend/native.js';
import { loadModel } from '../../dist/src/serve/load.js';
import { loadTokenizer } from '../../dist/src/io/tokenizer.js';
import { requireGpu } from '../../dist/src/model/gpu/engine.js';
import { gpuModelFromHost } from '../../dist/src/model/gpu/from-host.js';
import { GpuDecoder, greedyDecode } from '../../dist/src/model/gpu/gpu-decode.js';
import { generate } from '../../dist/src/model/generate.js';

const [qDir, adDir] = process.argv.slice(2);
const jsonOut = process.argv.includes('--json') ? process.argv[process.argv.indexOf('--json') + 1] : null;
const c = requireGpu();
const tok = loadTokenizer('models/tiny-jargon');
const text = readFileSync('data/jargon.heldout.txt', 'utf8');
const ids = Int32Array.from(tok.encode(text, { addBos: false }).slice(0, 4 * 256));
const res = {};
for (const [name, dir, adapters] of [['fp', 'models/tiny-jargon', []], ['w2+rilq', qDir, [adDir]]]) {
  const m = loadModel(dir, { adapters });
  const V = m.config.vocabSize, N = ids.length;
  const cpu = m.model.forward(ids, 4, 256, { train: false, logits: true }).logits;
  const g = gpuModelFromHost(c, m.weights);
  let gpu;
  try { g.model.forward(ids, 4, 256); gpu = g.model.logits(); } finally { g.free(); }
  let num = 0, den = 0, agree = 0;
  for (let n = 0; n < N; n++) {
    let a = 0, b = 0;
    for (let i = 0; i < V; i++) {
      const d = gpu[n * V + i] - cpu[n * V + i]; num += d * d; den += cpu[n * V + i] ** 2;
      if (cpu[n * V + i] > cpu[n * V + a]) a = i;
      if (gpu[n * V + i] > gpu[n * V + b]) b = i;
    }
    if (a === b) agree++;
  }
  const prompt = tok.encode('A hacker is', { addBos: false });
  const cpuGen = generate(m.model, prompt, { maxTokens: 32, temperature: 0 });
  const gw = gpuModelFromHost(c, m.weights), d = new GpuDecoder(c, gw.weights, gw.lora, prompt.length + 40);
  let gpuGen;
  try { gpuGen = greedyDecode(d, prompt, 32); } finally { d.free(); gw.free(); }
  let same = 0;
  while (same < 32 && cpuGen[same] === gpuGen[same]) same++;
  res[name] = { logitsRelErr: Math.sqrt(num / den), argmaxAgree: agree / N, positions: N,
    greedyCommonPrefix: same, cpuText: tok.decode(cpuGen), gpuText: tok.decode(gpuGen) };
  console.log(`${name}: logits rel err ${Math.sqrt(num / den).toExponential(2)}, argmax agreement ${(100 * agree / N).toFixed(2)} % of ${N}; greedy 32 tokens: first ${same} identical`);
  console.log(`  cpu: ${JSON.stringify(tok.decode(cpuGen))}\n  gpu: ${JSON.stringify(tok.decode(gpuGen))}`);
}
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(res, null, 1) + '\n');
