#!/usr/bin/env node
// GPTQ of a whole (random, LLaMA-shaped) model on the GPU: quantizeModel --device cuda with the calibration forward on
// the GPU engine (src/quant/gptq-calib-gpu.ts), wall-clock seconds per stage summed over the layers — setup (reading
// and uploading each layer's weights, embedding the windows), hessians (the FP forward of every window with the
// projection groups' inputs accumulated into the GPU Hessians), solves (quantizeGPTQGpu of the 7 projections, packed
// upload), advance (the forward of the quantized layer that makes the next layer's inputs) — and the whole call.
//   node bench/cuda-gptq-model.mjs [--layers 2] [--windows 32] [--seq 512] [--true-sequential] [--cpu-forward]
//                                  [--md out.md] [--json out.json] [--emulate]
// Default shape: LLaMA-7B widths (D 4096, I 11008, 32 heads of 128), 2 layers, 32 windows × 512 tokens, W2 g64.
// --cpu-forward also times the same run with the CPU model's forward (Hessians and solves still on the GPU).
// --emulate: a tiny model on the host emulator (test/helpers/host-*.ts): a smoke check of this script, not a timing.
// The model is written as a bf16 safetensors directory under the OS temp dir (≈ 1 GB at the default) and removed.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../dist/src/tensor.js';
import { writeHfConfig } from '../dist/src/io/config.js';
import { SafetensorsWriter } from '../dist/src/io/safetensors.js';
import { PROJECTIONS, projectionPath, projectionShape } from '../dist/src/model/config.js';
import { quantizeModel } from '../dist/src/quant/model.js';
import { gptqEngine, gptqGpuUnavailable } from '../dist/src/quant/gptq-gpu.js';
import { gpuEngine, gpuUnavailable } from '../dist/src/model/gpu/engine.js';

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const emulate = args.includes('--emulate'), trueSequential = args.includes('--true-sequential');
let eng;
if (emulate) {
  const { hostEngine } = await import('../dist/test/helpers/host-engine.js');
  const { hostGptq } = await import('../dist/test/helpers/host-gptq.js');
  eng = hostGptq(hostEngine());
} else {
  eng = gptqEngine();
  if (!eng || !gpuEngine()) { console.error(`cuda-gptq-model bench: ${!eng ? gptqGpuUnavailable() : gpuUnavailable()}`); process.exit(2); }
}
const L = Number(opt('--layers', 2)), S = Number(opt('--windows', emulate ? 4 : 32)), T = Number(opt('--seq', emulate ? 16 : 512));
const cfg = emulate
  ? { architecture: 'llama', vocabSize: 97, hiddenSize: 64, intermediateSize: 172, numLayers: L, numHeads: 2, numKvHeads: 2, headDim: 32 }
  : { architecture: 'llama', vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numLayers: L, numHeads: 32, numKvHeads: 32, headDim: 128 };
Object.assign(cfg, { rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' }, maxPositionEmbeddings: 4096,
  tieWordEmbeddings: true, bosTokenId: 1, eosTokenId: 2, torchDtype: 'bfloat16' });
const log = (m) => console.log(m);

// a random bf16 checkpoint: normal-ish weights (sum of 4 uniforms), std 0.02, norms 1
const dir = mkdtempSync(join(tmpdir(), 'lowbit-gptq-model-'));
const t0 = performance.now();
writeHfConfig(join(dir, 'config.json'), cfg);
writeFileSync(join(dir, 'tokenizer_config.json'), '{}\n');
let x = 0x9e3779b9;
const rnd = (n, std) => {
  const a = new Float32Array(n), k = std * Math.sqrt(3) / 2 ** 31;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < 4; j++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; s += x | 0; }
    a[i] = s * k / 2;
  }
  return a;
};
const D = cfg.hiddenSize, w = new SafetensorsWriter(join(dir, 'model.safetensors'));
w.add('model.embed_tokens.weight', 'BF16', [cfg.vocabSize, D], rnd(cfg.vocabSize * D, 0.02));
for (let l = 0; l < L; l++) {
  w.add(`model.layers.${l}.input_layernorm.weight`, 'BF16', [D], new Float32Array(D).fill(1));
  w.add(`model.layers.${l}.post_attention_layernorm.weight`, 'BF16', [D], new Float32Array(D).fill(1));
  for (const p of PROJECTIONS) { const s = projectionShape(cfg, p); w.add(`${projectionPath(l, p)}.weight`, 'BF16', [s.out, s.in], rnd(s.out * s.in, 0.02)); }
}
w.add('model.norm.weight', 'BF16', [D], new Float32Array(D).fill(1));
w.finish();
log(`model: ${L} layers, D ${D}, I ${cfg.intermediateSize}, V ${cfg.vocabSize} (written in ${((performance.now() - t0) / 1000).toFixed(1)} s); ${S} windows × ${T}`);

const rng = new Rng(3);
const calibWindows = Array.from({ length: S }, () => Int32Array.from({ length: T }, () => rng.int(cfg.vocabSize)));
const base = { method: 'gptq', bits: 2, groupSize: 64, calibWindows, trueSequential, device: 'cuda', gptqEngine: eng, gpuEngine: eng };
const res = { date: new Date().toISOString(), device: eng.cudaInfo().deviceName, emulated: emulate, layers: L, windows: S, seq: T,
  trueSequential, shape: { D, I: cfg.intermediateSize, V: cfg.vocabSize }, runs: [] };
try {
  const forwards = args.includes('--cpu-forward') ? ['cuda', 'cpu'] : ['cuda'];
  for (const f of forwards) {
    const tm = { setup: 0, hessians: 0, solves: 0, advance: 0 };
    const s = await quantizeModel(dir, join(dir, `out-${f}`), { ...base, calibForward: f, gptqTimings: tm });
    const run = { forward: f, seconds: s.seconds, ...tm, loss: s.gptq.loss, tokens: s.gptq.tokens };
    res.runs.push(run);
    log(`forward on ${f}: ${s.seconds.toFixed(2)} s — setup ${tm.setup.toFixed(2)}, hessians ${tm.hessians.toFixed(2)}, solves ${tm.solves.toFixed(2)}, ` +
      `advance ${tm.advance.toFixed(2)} s; loss ${s.gptq.loss.toExponential(4)}, ${s.gptq.tokens} tokens`);
    rmSync(join(dir, `out-${f}`), { recursive: true });
  }
} finally { rmSync(dir, { recursive: true, force: true }); }

const md = [
  `# GPTQ of a whole model on the GPU (${res.device}${emulate ? ', EMULATED: not a timing' : ''})`, '',
  `${L} random layers of ${emulate ? 'tiny' : 'LLaMA-7B'} widths (D ${D}, I ${cfg.intermediateSize}), ${S} calibration windows × ${T} tokens, W2 g64${trueSequential ? ', true-sequential' : ''}; ` +
  'seconds summed over the layers, a device sync between stages (bench/cuda-gptq-model.mjs).', '',
  '| calibration forward | total s | setup | hessians (FP forward + Hessians) | solves (7 projections) | advance (quantized forward) | s per layer |',
  '|---|---:|---:|---:|---:|---:|---:|',
  ...res.runs.map((r) => `| ${r.forward} | ${r.seconds.toFixed(2)} | ${r.setup.toFixed(2)} | ${r.hessians.toFixed(2)} | ${r.solves.toFixed(2)} | ${r.advance.toFixed(2)} | ${(r.seconds / L).toFixed(2)} |`),
  '',
];
const mdOut = opt('--md'), jsonOut = opt('--json');
if (mdOut) writeFileSync(mdOut, md.join('\n'));
if (jsonOut) writeFileSync(jsonOut, JSON.stringify(res, null, 1) + '\n');
log(md.join('\n'));
