// Rank sweep: every method × every rank on one loaded context (teacher cache shared), held-out perplexity of
// FP, the bare quantized model and each compensated model; a markdown table and an SVG plot.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { evalPerplexity } from '../eval/ppl.js';
import { svgLinePlot } from '../report/svg-plot.js';
import { type CompensateMethod, type ContextOptions, type MethodOptions, type MethodResult, loadContext, resetStudent, runMethod, snapshotBases, buildObjective } from './index.js';
import { evaluate } from '../train/trainer.js';
import { savePeftAdapter } from '../adapters/peft-io.js';
import { writeRequantizedBase, writeWindowsJson } from './index.js';

export interface SweepOptions extends ContextOptions, Omit<MethodOptions, 'method' | 'rank'> {
  methods: CompensateMethod[];
  ranks: number[];
  out: string;
  evalSeq: number;
  /** save each run's adapter as a PEFT dir under OUT/adapters/{method}-r{rank} */
  saveAdapters?: boolean;
  /** write the calibration windows JSON (scripts/reference/rilq_torch.py input) */
  windowsJson?: string;
  /** called after each run (CLI progress / JSON lines) */
  onResult?: (r: SweepRow) => void;
}

export interface SweepRow {
  method: CompensateMethod; rank: number; ppl: number; nll: number; valLoss?: number; rilqVal?: number; relWeightError?: number;
  updates?: number; bestUpdate?: number; seconds: number; adapterParams: number;
}

export interface SweepResult {
  fpPpl: number; quantPpl: number; quantVal?: number; rows: SweepRow[]; tokens: number; evalSeq: number;
  samples: number; seq: number; settings: Record<string, unknown>; table: string; files: string[];
}

export function rankSweep(o: SweepOptions): SweepResult {
  const ctx = loadContext(o);
  if (o.windowsJson) writeWindowsJson(o.windowsJson, ctx);
  if (!ctx.heldout) throw new Error('rank-sweep needs --heldout');
  const quiet = o.quiet ?? false;
  const ev = (label: string, m = ctx.studentModel) => evalPerplexity(m, ctx.heldout!, { seq: o.evalSeq, maxWindows: o.evalMaxWindows, progress: !quiet, label });
  const fp = ev('ppl fp', ctx.teacher), q = ev('ppl quant');
  let quantVal: number | undefined;
  if (ctx.valIdx.length) quantVal = evaluate(buildObjective(ctx, { method: 'rilq', rank: 1 }, quiet), ctx.windows, ctx.valIdx).loss;
  const files = [join(o.out, 'rank-sweep.json'), join(o.out, 'rank-sweep.md'), join(o.out, 'rank-sweep.svg')];
  const settings = {
    samples: ctx.windows.length, seq: ctx.seq, trainWindows: ctx.trainIdx.length, valWindows: ctx.valIdx.length, alpha: o.alpha ?? 16,
    lr: o.lr ?? 1e-4, gradAccum: o.gradAccum ?? 8, maxSteps: o.maxSteps ?? 10000, evalEvery: o.evalEvery ?? 25, patience: o.patience ?? 5,
    seed: ctx.seed, calib: ctx.calib, evalSeq: o.evalSeq, evalMaxWindows: o.evalMaxWindows ?? null,
  };
  const bases = snapshotBases(ctx.student);
  const rows: SweepRow[] = [];
  mkdirSync(o.out, { recursive: true });
  for (const method of o.methods) {
    for (const rank of o.ranks) {
      const r: MethodResult = runMethod(ctx, {
        ...o, method, rank, pplBefore: false, quiet,
        logPath: join(o.out, 'logs', `${method}-r${rank}.json`), svgPath: null, ckptDir: null,
      });
      const row: SweepRow = {
        method, rank, ppl: r.pplAfter!.ppl, nll: r.pplAfter!.nll, valLoss: r.valAfter, rilqVal: r.rilqVal, relWeightError: r.relWeightError,
        updates: r.train?.updates, bestUpdate: r.train?.bestUpdate, seconds: r.seconds, adapterParams: r.adapterParams,
      };
      rows.push(row);
      if (o.saveAdapters) {
        const dir = join(o.out, 'adapters', `${method}-r${rank}`);
        if (r.requantized) writeRequantizedBase(ctx, join(dir, 'base'), r.requantized);
        savePeftAdapter(dir, ctx.student, 'comp', { baseModel: r.requantized ? join(dir, 'base') : ctx.quantDir, init: method === 'svd' || method === 'loftq' ? method : 'gaussian' });
      }
      o.onResult?.(row);
      resetStudent(ctx, bases);
      writeOutputs();
    }
  }
  function table(): string {
    const ranks = o.ranks;
    const lines = [`| method | ${ranks.map((r) => `r=${r}`).join(' | ')} | spread (max−min) |`, `|---|${ranks.map(() => '---:').join('|')}|---:|`];
    lines.push(`| FP16 teacher | ${ranks.map(() => fp.ppl.toFixed(3)).join(' | ')} | |`);
    lines.push(`| quantized, no adapter | ${ranks.map(() => q.ppl.toFixed(3)).join(' | ')} | |`);
    for (const m of o.methods) {
      const v = ranks.map((r) => rows.find((x) => x.method === m && x.rank === r)?.ppl);
      const ok = v.filter((x): x is number => x !== undefined);
      lines.push(`| ${m} | ${v.map((x) => (x === undefined ? '' : x.toFixed(3))).join(' | ')} | ${ok.length > 1 ? (Math.max(...ok) - Math.min(...ok)).toFixed(3) : ''} |`);
    }
    return lines.join('\n');
  }
  function writeOutputs(): void {
    const res = { fpPpl: fp.ppl, quantPpl: q.ppl, quantVal, rows, tokens: fp.tokens, evalSeq: o.evalSeq, settings };
    writeFileSync(files[0], JSON.stringify(res, null, 1) + '\n');
    writeFileSync(files[1], `Held-out perplexity (windows of ${o.evalSeq}, ${fp.tokens} predicted tokens)\n\n${table()}\n`);
    const series = o.methods.map((m) => ({ name: m, points: rows.filter((x) => x.method === m).map((x) => [x.rank, x.ppl] as [number, number]) }));
    const flat = (name: string, y: number) => ({ name, points: o.ranks.map((r) => [r, y] as [number, number]) });
    writeFileSync(files[2], svgLinePlot([...series, flat('FP', fp.ppl), flat('no adapter', q.ppl)],
      { title: 'Held-out perplexity vs LoRA rank', xLabel: 'rank', yLabel: 'perplexity', logX: true, logY: true }));
  }
  writeOutputs();
  return { fpPpl: fp.ppl, quantPpl: q.ppl, quantVal, rows, tokens: fp.tokens, evalSeq: o.evalSeq, samples: ctx.windows.length, seq: ctx.seq, settings, table: table(), files };
}
