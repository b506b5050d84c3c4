// Pretraining a small LLaMA from scratch (all weights trainable): AdamW, warmup + cosine schedule,
// gradient clipping, held-out perplexity, checkpoints that a killed run resumes from.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../tensor.js';
import type { LlamaConfig } from '../model/config.js';
import { LlamaModel, LlamaWeights } from '../model/llama.js';
import { AdamW, clipGradNorm } from './adamw.js';
import { cosineLr } from './schedule.js';
import { randomWindows } from './data.js';
import { evalPerplexity, nextTokenTargets } from '../eval/ppl.js';
import { Progress } from '../cli/progress.js';
import { svgLinePlot } from '../report/svg-plot.js';
import { writeSafetensors, openTensorStore } from '../io/safetensors.js';

export interface PretrainOptions {
  config: LlamaConfig;
  /** continue from these weights (e.g. an earlier run's model) instead of a random init */
  initWeights?: LlamaWeights;
  trainIds: Int32Array;
  heldoutIds: Int32Array;
  outDir: string;
  seq: number;
  batch: number;
  steps: number;
  lr: number;
  minLr?: number;
  warmup: number;
  weightDecay: number;
  clip: number;
  seed: number;
  evalEvery: number;
  evalWindows: number;
  checkpointEvery: number;
  resume: boolean;
  /** stop early (and save) once this many minutes have passed in this run */
  maxMinutes?: number;
  /** stop (and save) after this many steps while the schedule still spans `steps` */
  stopAfter?: number;
  quiet?: boolean;
  log?: (msg: string) => void;
}

export interface PretrainLogRow { step: number; lr: number; loss: number; heldoutPpl?: number; elapsedS: number }

export interface PretrainResult { weights: LlamaWeights; log: PretrainLogRow[]; finalHeldoutPpl: number; tokensSeen: number; seconds: number }

const CKPT = 'checkpoint';

export function pretrain(o: PretrainOptions): PretrainResult {
  const log = o.log ?? ((m: string) => process.stderr.write(m + '\n'));
  const weights = o.initWeights ?? LlamaWeights.initRandom(o.config, new Rng(o.seed));
  weights.enableWeightGrads();
  const model = new LlamaModel(weights);
  const params = weights.parameters();
  // decoupled weight decay on matrices only (norm gains are not decayed), as in most LLaMA recipes
  const decayed = params.filter((p) => !/norm/.test(p.name));
  const plain = params.filter((p) => /norm/.test(p.name));
  const optD = new AdamW(decayed, { lr: o.lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: o.weightDecay });
  const optP = new AdamW(plain, { lr: o.lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0 });
  let step = 0, rows: PretrainLogRow[] = [], elapsed0 = 0;
  const ck = join(o.outDir, CKPT);
  if (o.resume && existsSync(join(ck, 'state.json'))) {
    const st = JSON.parse(readFileSync(join(ck, 'state.json'), 'utf8')) as { step: number; log: PretrainLogRow[]; elapsedS: number };
    const store = openTensorStore(join(ck, 'state.safetensors'));
    for (const p of params) p.data.set(store.readTensorF32(`w.${p.name}`));
    const load = (opt: AdamW, ps: typeof params) => opt.loadState({ step: st.step,
      m: ps.map((p) => store.readTensorF32(`m.${p.name}`)), v: ps.map((p) => store.readTensorF32(`v.${p.name}`)) });
    load(optD, decayed); load(optP, plain);
    step = st.step; rows = st.log; elapsed0 = st.elapsedS;
    log(`resumed from ${ck} at step ${step}`);
  }
  const B = o.batch, T = o.seq, t0 = Date.now();
  const bar = new Progress('pretrain', o.steps, 'step', o.quiet);
  bar.update(step);
  let lastLoss = NaN;
  const heldout = () => evalPerplexity(model, o.heldoutIds, { seq: T, batch: B, maxWindows: o.evalWindows }).ppl;
  const deadline = o.maxMinutes ? t0 + o.maxMinutes * 60_000 : Infinity;
  while (step < o.steps) {
    if (o.stopAfter !== undefined && step >= o.stopAfter) { log(`stopping at step ${step} (--stop-after)`); break; }
    if (Date.now() > deadline) { log(`stopping at step ${step}: --max-minutes ${o.maxMinutes} reached`); break; }
    // each step draws fresh random windows, seeded by the step so a resumed run sees the same data
    const wins = randomWindows(o.trainIds, T, B, o.seed * 100003 + step);
    const ids = new Int32Array(B * T);
    wins.forEach((w, b) => ids.set(w, b * T));
    weights.zeroGrads();
    const { hidden } = model.forward(ids, B, T, { train: true });
    const r = model.lmHeadCrossEntropy(hidden, nextTokenTargets(ids, B, T), B * T, { grad: true });
    model.backward(r.dHidden!);
    const gn = clipGradNorm(params, o.clip); // one global norm over both optimizer groups
    const lr = cosineLr(step, o.steps, o.lr, o.warmup, o.minLr ?? o.lr * 0.1);
    optD.update(lr); optP.update(lr);
    step++;
    lastLoss = r.loss;
    const row: PretrainLogRow = { step, lr, loss: r.loss, elapsedS: elapsed0 + (Date.now() - t0) / 1000 };
    if (step % o.evalEvery === 0 || step === o.steps) row.heldoutPpl = heldout();
    rows.push(row);
    bar.update(step, `loss ${r.loss.toFixed(3)} |g| ${gn.toFixed(2)}${row.heldoutPpl ? ` heldout ppl ${row.heldoutPpl.toFixed(2)}` : ''}`);
    if (step % o.checkpointEvery === 0 && step < o.steps) saveCheckpoint(ck, params, optD, optP, decayed, plain, step, rows, row.elapsedS);
  }
  bar.finish(`loss ${lastLoss.toFixed(3)}`);
  // the reported number scores every held-out window, not the quick subset used during training
  const finalHeldoutPpl = evalPerplexity(model, o.heldoutIds, { seq: T, batch: B }).ppl;
  mkdirSync(o.outDir, { recursive: true });
  writeFileSync(join(o.outDir, 'train_log.json'), JSON.stringify(rows));
  writeFileSync(join(o.outDir, 'loss.svg'), svgLinePlot([
    { name: 'train loss', points: rows.map((r) => [r.step, r.loss]) },
    { name: 'held-out log ppl', points: rows.filter((r) => r.heldoutPpl).map((r) => [r.step, Math.log(r.heldoutPpl!)]) },
  ], { title: 'pretraining', xLabel: 'step', yLabel: 'nats/token' }));
  return { weights, log: rows, finalHeldoutPpl, tokensSeen: step * B * T, seconds: elapsed0 + (Date.now() - t0) / 1000 };
}

function saveCheckpoint(dir: string, params: ReturnType<LlamaWeights['parameters']>, optD: AdamW, optP: AdamW,
  decayed: typeof params, plain: typeof params, step: number, log: PretrainLogRow[], elapsedS: number): void {
  mkdirSync(dir, { recursive: true });
  const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] = [];
  for (const p of params) tensors.push({ name: `w.${p.name}`, dtype: 'F32', shape: [p.data.length], data: Float32Array.from(p.data) });
  const add = (opt: AdamW, ps: typeof params) => ps.forEach((p, i) => {
    tensors.push({ name: `m.${p.name}`, dtype: 'F32', shape: [p.data.length], data: opt.m[i] });
    tensors.push({ name: `v.${p.name}`, dtype: 'F32', shape: [p.data.length], data: opt.v[i] });
  });
  add(optD, decayed); add(optP, plain);
  // write-then-rename so a kill mid-write never leaves a broken checkpoint
  writeSafetensors(join(dir, 'state.safetensors.tmp'), tensors);
  renameSync(join(dir, 'state.safetensors.tmp'), join(dir, 'state.safetensors'));
  writeFileSync(join(dir, 'state.json.tmp'), JSON.stringify({ step, log, elapsedS }));
  renameSync(join(dir, 'state.json.tmp'), join(dir, 'state.json'));
}
