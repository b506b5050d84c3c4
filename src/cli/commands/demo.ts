// `lowbit demo`: the main job on the shipped tiny model — full precision → RTN W2 g64 (2-bit) →
// RILQ LoRA compensation → held-out perplexity at each stage, and a sample from each.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CommandSpec } from '../args.js';
import { flag, int, num, str } from '../args.js';
import { LowbitError } from '../../io/errors.js';
import { loadTokenizer } from '../../io/tokenizer.js';
import { nativeInfo } from '../../backend/native.js';
import { evalPerplexity } from '../../eval/ppl.js';
import { loadModel } from '../../serve/load.js';
import { quantizeModel } from '../../quant/model.js';
import { compensate } from '../../compensate/index.js';
import { generateText } from './generate.js';
import { makeOut } from '../output.js';
import { DEVICE_OPTION, deviceOf } from './common.js';
import { Progress } from '../progress.js';

export const command: CommandSpec = {
  name: 'demo',
  summary: 'the main job on the shipped tiny model: quantize to 2 bits, compensate with RILQ, compare',
  usage: 'lowbit demo [--out DIR] [--rank 16] [--samples 320] [--max-steps 1280] [--json]',
  options: [
    { name: 'model', help: 'full-precision model', default: 'models/tiny-jargon' },
    { name: 'heldout', help: 'held-out text for perplexity', default: 'data/jargon.heldout.txt' },
    { name: 'calib', help: 'calibration text', default: 'data/jargon.train.txt' },
    { name: 'out', help: 'working directory for the quantized model and the adapter', default: 'demo-out' },
    { name: 'rank', help: 'LoRA rank', default: '16' },
    { name: 'samples', help: 'calibration windows (20% held out for validation; RILQ uses 320)', default: '320' },
    { name: 'seq', help: 'window length', default: '256' },
    { name: 'max-steps', help: 'RILQ budget in micro-steps (batch 1, accumulation 8)', default: '1280' },
    { name: 'lr', help: 'Adam learning rate', default: '1e-3' },
    { name: 'prompt', help: 'prompt for the samples', default: 'A hacker is' },
    { ...DEVICE_OPTION, help: 'where RILQ trains: cpu | cuda (GPU engine) | auto' },
    { name: 'json', flag: true, help: 'print one JSON object as the last stdout line' },
  ],
  async run(a) {
    const cmd = 'demo', out = makeOut(flag(a, 'json'));
    const fpDir = str(a, 'model')!, heldoutPath = str(a, 'heldout')!, calib = str(a, 'calib')!, work = resolve(str(a, 'out')!);
    for (const p of [fpDir, heldoutPath, calib]) if (!existsSync(p)) throw new LowbitError(`lowbit demo: ${p} not found (run from the lowbit repository root)`);
    const seq = int(a, 'seq', cmd)!, rank = int(a, 'rank', cmd)!, device = deviceOf(a, cmd), t0 = Date.now();
    const n = nativeInfo();
    out.info(`lowbit demo — native ${n.loaded ? `${n.simd}, ${n.threads} threads` : `off (${n.reason})`}; model ${fpDir}\n`);
    mkdirSync(work, { recursive: true });
    const tok = loadTokenizer(fpDir);
    const heldout = tok.encode(readFileSync(heldoutPath, 'utf8'), { addBos: false });
    const ppl = (dir: string, adapters: string[], label: string) =>
      evalPerplexity(loadModel(dir, { adapters }).model, heldout, { seq, batch: 4, progress: !out.json, label }).ppl;

    out.info('[1/4] full precision');
    const fp = ppl(fpDir, [], 'ppl fp16');
    out.info(`      held-out perplexity ${fp.toFixed(2)}\n`);

    out.info('[2/4] quantize: RTN, 2 bits, groups of 64 (the RILQ paper\'s W2A16 g64 setting)');
    const qDir = join(work, 'rtn-w2-g64');
    const bar = out.json ? null : new Progress('quantize', 1, 'tensor');
    const qs = await quantizeModel(fpDir, qDir, { method: 'rtn', bits: 2, groupSize: 64 }, (d, t) => { bar?.setTotal(t); bar?.update(d); });
    bar?.finish();
    const q = ppl(qDir, [], 'ppl w2');
    out.info(`      ${qs.bitStats.bitsPerWeightCodes.toFixed(2)} bits/weight codes, ${qs.bitStats.bitsPerWeightAll.toFixed(3)} with scales/zeros; held-out perplexity ${q.toFixed(2)}\n`);

    out.info(`[3/4] compensate: RILQ (0.5·MSE on the final hidden state + 0.5·CE), LoRA rank ${rank} on all 7 projections${device === 'cuda' ? ', on the GPU engine' : ''}`);
    const adDir = join(work, `rilq-r${rank}`);
    const cs = compensate({
      model: fpDir, quant: qDir, calib, samples: int(a, 'samples', cmd)!, seq, method: 'rilq', rank,
      maxSteps: int(a, 'max-steps', cmd)!, lr: num(a, 'lr', cmd)!, evalEvery: 10, patience: 5, out: adDir, quiet: out.json, device,
    });
    const c = ppl(qDir, [adDir], 'ppl w2+rilq');
    out.info(`      ${cs.adapterParams} adapter parameters, ${cs.updates} updates in ${cs.seconds.toFixed(0)} s; held-out perplexity ${c.toFixed(2)}\n`);

    out.info('[4/4] samples (greedy)');
    const prompt = str(a, 'prompt')!, ids = tok.encode(prompt, { addBos: false });
    const samples: Record<string, string> = {};
    for (const [label, dir, ads] of [['fp', fpDir, []], ['w2', qDir, []], ['w2+rilq', qDir, [adDir]]] as [string, string, string[]][]) {
      const m = loadModel(dir, { adapters: ads });
      const r = generateText(m.model, tok, ids, { maxTokens: 40, temperature: 0, topP: 1, seed: 0 }, () => {});
      samples[label] = prompt + r.text;
      out.info(`  ${label.padEnd(8)} ${JSON.stringify(samples[label])}`);
    }
    const recovered = (q - c) / (q - fp);
    out.info(`\nheld-out perplexity: fp ${fp.toFixed(2)} → 2-bit ${q.toFixed(2)} → 2-bit + RILQ r${rank} ${c.toFixed(2)}` +
      ` (${(100 * recovered).toFixed(0)}% of the gap closed; ${((Date.now() - t0) / 1000).toFixed(0)} s). Outputs in ${work}`);
    out.result({ ppl: { fp, w2: q, w2_rilq: c }, gapClosed: recovered, bits: qs.bitStats, rank, adapter: adDir, quant: qDir, samples, seconds: (Date.now() - t0) / 1000 });
  },
};
