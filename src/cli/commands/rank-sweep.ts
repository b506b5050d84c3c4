// `lowbit rank-sweep`: run compensation methods over ranks; held-out perplexity table (markdown + JSON) and plot.
import type { CommandSpec } from '../args.js';
import { flag, int, list, req, str } from '../args.js';
import { LowbitError } from '../../io/errors.js';
import { makeOut } from '../output.js';
import { COMPENSATE_METHODS, type CompensateMethod } from '../../compensate/index.js';
import { rankSweep } from '../../compensate/sweep.js';
import { COMPENSATE_OPTIONS, commonOptions } from './compensate.js';

const CMD = 'rank-sweep';

export const command: CommandSpec = {
  name: CMD,
  summary: 'run compensation methods over ranks; rank-sensitivity table and SVG plot',
  usage: 'lowbit rank-sweep --model FP_DIR --quant Q_DIR --methods svd,linear,layer,rilq --ranks 4,8,16,32,64 --calib FILE --heldout FILE [--seq L --samples N --max-steps N …] --out DIR [--json]',
  options: [
    { name: 'methods', help: `comma-separated: ${COMPENSATE_METHODS.join(', ')}`, default: 'svd,linear,layer,rilq' },
    { name: 'ranks', help: 'comma-separated ranks', default: '4,8,16,32,64' },
    { name: 'save-adapters', flag: true, help: 'save every run\'s adapter under OUT/adapters/{method}-r{rank}' },
    ...COMPENSATE_OPTIONS.filter((o) => o.name !== 'rank' && o.name !== 'checkpoint' && o.name !== 'base-out'),
  ],
  async run(a) {
    const out = makeOut(flag(a, 'json'));
    const methods = list(a, 'methods').flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean) as CompensateMethod[];
    for (const m of methods) if (!COMPENSATE_METHODS.includes(m)) throw new LowbitError(`lowbit ${CMD}: unknown method '${m}' (known: ${COMPENSATE_METHODS.join(', ')})`);
    const ranks = list(a, 'ranks').flatMap((s) => s.split(',')).map((s) => Number(s.trim()));
    for (const r of ranks) if (!(Number.isInteger(r) && r >= 1)) throw new LowbitError(`lowbit ${CMD}: --ranks must be positive integers`);
    if (!str(a, 'heldout')) throw new LowbitError(`lowbit ${CMD}: --heldout FILE is required`);
    const c = commonOptions(a, CMD);
    const res = rankSweep({
      ...c, methods, ranks, out: req(a, 'out', CMD), saveAdapters: flag(a, 'save-adapters'), windowsJson: str(a, 'windows-json'), evalSeq: int(a, 'eval-seq', CMD) ?? c.seq!,
      onResult: (r) => out.info(`${r.method} r=${r.rank}: ppl ${r.ppl.toFixed(3)}${r.updates !== undefined ? ` (${r.updates} updates)` : ''} ${r.seconds.toFixed(0)} s`),
    });
    out.info(`FP ppl ${res.fpPpl.toFixed(3)}, quantized ${res.quantPpl.toFixed(3)}\n${res.table}\nwrote ${res.files.join(', ')}`);
    out.result({ fpPpl: res.fpPpl, quantPpl: res.quantPpl, rows: res.rows, settings: res.settings, files: res.files });
  },
};
