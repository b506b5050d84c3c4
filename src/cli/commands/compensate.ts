// `lowbit compensate`: train (or fit) LoRA adapters that compensate the quantization error of a packed model
// against its full-precision original, and save them as a PEFT directory.
import type { CommandSpec, ParsedArgs } from '../args.js';
import { flag, int, list, num, req, str } from '../args.js';
import { LowbitError } from '../../io/errors.js';
import { makeOut } from '../output.js';
import { COMPENSATE_METHODS, compensate, type CompensateMethod, type CompensateOptions } from '../../compensate/index.js';
import { parseTargets } from '../../adapters/lora.js';
import { LORA_INITS, type LoraInit } from '../../adapters/init.js';
import { DEVICE_OPTION, deviceOf } from './common.js';

const CMD = 'compensate';

export const COMPENSATE_OPTIONS = [
  { name: 'model', help: 'full-precision HF model directory (the teacher)' },
  { name: 'quant', help: 'quantized model: a lowbit packed directory (or a fake-quant HF export)' },
  { name: 'rank', help: 'LoRA rank', default: '16' },
  { name: 'alpha', help: 'LoRA alpha (scale α/r; RILQ fixes α=16); svd/loftq fold α/r into the stored factors', default: '16' },
  { name: 'rslora', flag: true, help: 'rank-stabilised scale α/√r' },
  { name: 'targets', help: 'comma-separated projections (q,k,v,o,gate,up,down or all)', default: 'all' },
  { name: 'init', help: `trained methods: ${LORA_INITS.join(' | ')}`, default: 'gaussian' },
  { name: 'calib', help: 'calibration text file (GPTQ-style random windows)' },
  { name: 'samples', help: 'calibration windows (RILQ: 320)', default: '320' },
  { name: 'seq', help: 'window length in tokens (RILQ: 512)', default: '512' },
  { name: 'val-ratio', help: 'share of windows held out for validation (the last ones)', default: '0.2' },
  { name: 'max-steps', help: 'budget in micro-steps (RILQ approx_total_steps)', default: '10000' },
  { name: 'lr', help: 'Adam learning rate', default: '1e-4' },
  { name: 'grad-accum', help: 'micro-steps per update', default: '8' },
  { name: 'micro-batch', help: 'windows per micro-step', default: '1' },
  { name: 'eval-every', help: 'validate every N updates', default: '25' },
  { name: 'patience', help: 'early stop after N validations without improvement', default: '5' },
  { name: 'weight-decay', help: 'weight decay (lrec: coupled L2 1e-5 as the authors)' },
  { name: 'ce-weight', help: 'lrec: CE weight (default 120·seq/2048, the authors\' INT2 per-token balance)' },
  { name: 'loftq-iters', help: 'loftq: alternating iterations T', default: '5' },
  { name: 'seed', help: 'seed (windows, init, order)', default: '42' },
  { name: 'teacher-budget-mb', help: 'memory for cached teacher hidden states; the rest is recomputed online', default: '2048' },
  { name: 'teacher-dtype', help: 'f32 | bf16 storage of the teacher cache', default: 'f32' },
  { name: 'heldout', help: 'held-out text: report perplexity before/after' },
  { name: 'eval-seq', help: 'perplexity window length (default --seq)' },
  { name: 'eval-max-windows', help: 'score only the first N held-out windows' },
  { name: 'checkpoint', help: 'checkpoint directory (a killed run resumes from it)' },
  { name: 'windows-json', help: 'write the calibration windows as JSON (input of scripts/reference/rilq_torch.py)' },
  { name: 'base-out', help: 'loftq: directory for the re-quantized base (default OUT/base)' },
  { ...DEVICE_OPTION, help: 'cpu | cuda (rilq, lrec, linear and layer on the GPU engine: packed base, adapters, teacher logits or the FP weights, and Adam on the device) | auto' },
  { name: 'recompute', flag: true, help: 'GPU engine: recompute each block\'s activations in the backward (one layer\'s worth kept)' },
  { name: 'out', help: 'output PEFT adapter directory' },
  { name: 'json', flag: true, help: 'print one JSON object as the last stdout line' },
];

export function methodOf(a: ParsedArgs, cmd: string): CompensateMethod {
  const m = req(a, 'method', cmd) as CompensateMethod;
  if (!COMPENSATE_METHODS.includes(m)) throw new LowbitError(`lowbit ${cmd}: unknown --method '${m}' (known: ${COMPENSATE_METHODS.join(', ')})`);
  return m;
}

/** Options shared by compensate and rank-sweep. */
export function commonOptions(a: ParsedArgs, cmd: string): Omit<CompensateOptions, 'method' | 'rank' | 'out'> {
  const init = str(a, 'init') as LoraInit;
  if (init && !LORA_INITS.includes(init)) throw new LowbitError(`lowbit ${cmd}: unknown --init '${init}' (known: ${LORA_INITS.join(', ')})`);
  let targets;
  try { targets = parseTargets(list(a, 'targets').length ? list(a, 'targets') : undefined); } catch (e) { throw new LowbitError(`lowbit ${cmd}: ${(e as Error).message}`); }
  const vr = num(a, 'val-ratio', cmd)!;
  if (!(vr >= 0 && vr < 1)) throw new LowbitError(`lowbit ${cmd}: --val-ratio must be in [0, 1), got ${vr}`);
  const td = str(a, 'teacher-dtype');
  if (td !== 'f32' && td !== 'bf16') throw new LowbitError(`lowbit ${cmd}: --teacher-dtype must be f32 or bf16`);
  const seq = int(a, 'seq', cmd)!;
  const device = deviceOf(a, cmd);
  return {
    device, recompute: flag(a, 'recompute'),
    model: req(a, 'model', cmd), quant: req(a, 'quant', cmd), calib: req(a, 'calib', cmd),
    alpha: num(a, 'alpha', cmd), rslora: flag(a, 'rslora'), targets, init,
    samples: int(a, 'samples', cmd), seq, valRatio: vr, maxSteps: int(a, 'max-steps', cmd), lr: num(a, 'lr', cmd),
    gradAccum: int(a, 'grad-accum', cmd), microBatch: int(a, 'micro-batch', cmd), evalEvery: int(a, 'eval-every', cmd),
    patience: int(a, 'patience', cmd), weightDecay: num(a, 'weight-decay', cmd), ceWeight: num(a, 'ce-weight', cmd),
    loftqIters: int(a, 'loftq-iters', cmd), seed: int(a, 'seed', cmd), teacherBudgetMB: num(a, 'teacher-budget-mb', cmd),
    teacherDtype: td, heldout: str(a, 'heldout') ?? null, evalSeq: str(a, 'heldout') ? (int(a, 'eval-seq', cmd) ?? seq) : undefined,
    evalMaxWindows: int(a, 'eval-max-windows', cmd), quiet: false,
  };
}

export const command: CommandSpec = {
  name: CMD,
  summary: 'train LoRA adapters that compensate quantization error (rilq, lrec, svd, loftq, linear, layer)',
  usage: 'lowbit compensate --model FP_DIR --quant Q_DIR --method rilq|rilq-logits|lrec|svd|loftq|linear|layer --rank R [--alpha A] [--targets q,k,v,o,gate,up,down] --calib FILE [--samples N --seq L --val-ratio F --max-steps N --lr X] --out ADAPTER_DIR [--json]',
  options: [{ name: 'method', help: COMPENSATE_METHODS.join(' | '), default: 'rilq' }, ...COMPENSATE_OPTIONS],
  async run(a) {
    const out = makeOut(flag(a, 'json'));
    const method = methodOf(a, CMD);
    const o: CompensateOptions = {
      ...commonOptions(a, CMD), method, rank: int(a, 'rank', CMD)!, out: req(a, 'out', CMD),
      ckptDir: str(a, 'checkpoint') ?? null, windowsJson: str(a, 'windows-json'), baseOut: str(a, 'base-out'),
      pplBefore: str(a, 'heldout') !== undefined,
    };
    const s = compensate(o);
    const f = (x: number | undefined, d = 4) => (x === undefined ? '-' : x.toFixed(d));
    out.info(`${method} r=${s.rank} α=${s.alpha}: ${s.adapterParams} adapter params on ${s.targets.join(',')}; ` +
      (s.updates !== undefined ? `${s.updates} updates, best at ${s.bestUpdate}${s.stoppedEarly ? ' (early stop)' : ''}, val ${f(s.valBefore)} → ${f(s.valAfter)}; ` : '') +
      (s.relWeightError !== undefined ? `‖W−Q−sBA‖/‖W−Q‖ = ${f(s.relWeightError)}; ` : '') +
      (s.pplAfter !== undefined ? `held-out ppl ${f(s.pplBefore, 3)} → ${f(s.pplAfter, 3)}; ` : '') + `${s.seconds.toFixed(1)} s`);
    if (s.loftqErrors?.length) {
      const T = s.loftqErrors[0].length, mean = (t: number) => s.loftqErrors!.reduce((a, e) => a + e[t], 0) / s.loftqErrors!.length;
      out.info(`loftq mean ‖W − Q_t − sB_tA_t‖_F per iteration: ${Array.from({ length: T }, (_, t) => mean(t).toFixed(4)).join(', ')} (best iterate kept per projection)`);
    }
    out.info(`adapter → ${s.out}${s.baseOut ? `, re-quantized base → ${s.baseOut}` : ''}`);
    out.result({ ...s });
  },
};
