// `lowbit eval ppl`: perplexity with the GPTQ protocol.
import { readFileSync } from 'node:fs';
import type { CommandSpec } from '../args.js';
import { flag, int, req } from '../args.js';
import { LowbitError } from '../../io/errors.js';
import { loadTokenizer } from '../../io/tokenizer.js';
import { evalPerplexity, evalPerplexityGpu } from '../../eval/ppl.js';
import { requireGpu } from '../../model/gpu/engine.js';
import { gpuModelFromHost } from '../../model/gpu/from-host.js';
import { makeOut } from '../output.js';
import { DEVICE_OPTION, JSON_OPTION, MODEL_OPTIONS, deviceOf, loadFromArgs } from './common.js';

export const command: CommandSpec = {
  name: 'eval ppl',
  summary: 'perplexity: whole file tokenized without BOS, non-overlapping --seq windows, remainder dropped',
  usage: 'lowbit eval ppl --model DIR [--adapter DIR]… --data FILE [--seq 512] [--json]',
  options: [...MODEL_OPTIONS,
    { name: 'data', help: 'text file to score' },
    { name: 'seq', help: 'window length in tokens', default: '512' },
    { name: 'batch', help: 'windows per forward pass', default: '4' },
    { name: 'max-windows', help: 'score only the first N windows' },
    DEVICE_OPTION,
    JSON_OPTION],
  async run(a) {
    const out = makeOut(flag(a, 'json'));
    const file = req(a, 'data', 'eval ppl');
    let text: string;
    try { text = readFileSync(file, 'utf8'); } catch { throw new LowbitError(`${file}: cannot read the data file`); }
    const m = loadFromArgs(a, 'eval ppl');
    const tok = loadTokenizer(m.dir);
    const ids = tok.encode(text, { addBos: false });
    const seq = int(a, 'seq', 'eval ppl')!;
    if (ids.length < seq) throw new LowbitError(`${file}: ${ids.length} tokens, fewer than one window of --seq ${seq}`);
    const t0 = Date.now();
    const device = deviceOf(a, 'eval ppl');
    const po = { seq, batch: int(a, 'batch', 'eval ppl'), maxWindows: int(a, 'max-windows', 'eval ppl'), progress: true };
    let r;
    if (device === 'cuda') {
      const g = gpuModelFromHost(requireGpu(), m.model.weights);
      try { r = evalPerplexityGpu(g.model, ids, po); } finally { g.free(); }
    } else r = evalPerplexity(m.model, ids, po);
    const seconds = (Date.now() - t0) / 1000;
    out.info(`perplexity ${r.ppl.toFixed(4)}  (nll ${r.nll.toFixed(4)}, ${r.tokens} predicted tokens, ${r.windows} windows of ${seq}, ${seconds.toFixed(1)} s)`);
    out.result({ ppl: r.ppl, nll: r.nll, tokens: r.tokens, windows: r.windows, seq, device, model: m.dir, kind: m.kind, adapters: m.adapters.length, seconds });
  },
};
