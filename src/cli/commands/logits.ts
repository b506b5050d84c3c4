// `lowbit logits`: the logits of a token sequence, one row per position.
import type { CommandSpec } from '../args.js';
import { flag, req } from '../args.js';
import { LowbitError } from '../../io/errors.js';
import { makeOut } from '../output.js';
import { DEVICE_OPTION, JSON_OPTION, MODEL_OPTIONS, deviceOf, loadFromArgs } from './common.js';
import { requireGpu } from '../../model/gpu/engine.js';
import { gpuModelFromHost } from '../../model/gpu/from-host.js';

export const command: CommandSpec = {
  name: 'logits',
  summary: 'print the logits of a token sequence',
  usage: 'lowbit logits --model DIR [--adapter DIR]… --ids 1,2,3 --json',
  options: [...MODEL_OPTIONS, { name: 'ids', help: 'comma-separated token ids' }, DEVICE_OPTION, JSON_OPTION],
  async run(a) {
    const out = makeOut(flag(a, 'json'));
    const raw = req(a, 'ids', 'logits');
    const ids = Int32Array.from(raw.split(',').map((s) => {
      const v = Number(s.trim());
      if (!Number.isInteger(v) || v < 0) throw new LowbitError(`lowbit logits: --ids has '${s}', not a token id`);
      return v;
    }));
    const m = loadFromArgs(a, 'logits');
    const V = m.config.vocabSize;
    const bad = ids.find((v) => v >= V);
    if (bad !== undefined) throw new LowbitError(`lowbit logits: id ${bad} is outside the vocabulary (${V})`);
    let logits: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> };
    if (deviceOf(a, 'logits') === 'cuda') {
      const g = gpuModelFromHost(requireGpu(), m.model.weights);
      try { g.model.forward(ids, 1, ids.length); logits = g.model.logits(); } finally { g.free(); }
    } else logits = m.model.forward(ids, 1, ids.length, { train: false, logits: true }).logits!;
    const rows: number[][] = [];
    for (let t = 0; t < ids.length; t++) rows.push(Array.from(logits.subarray(t * V, (t + 1) * V)));
    if (!out.json) {
      for (let t = 0; t < ids.length; t++) {
        const r = rows[t];
        let best = 0;
        for (let i = 1; i < V; i++) if (r[i] > r[best]) best = i;
        console.log(`pos ${t} id ${ids[t]}: argmax ${best} (${r[best].toFixed(4)}), first ${r.slice(0, 4).map((x) => x.toFixed(4)).join(' ')} …`);
      }
    }
    out.result({ logits: rows });
  },
};
