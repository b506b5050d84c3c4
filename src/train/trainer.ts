// Adapter training loop (RILQ main.py's recipe, generalised): micro-batches with gradient accumulation,
// Adam/AdamW on fp32 adapter weights and states, validation every N updates on held-out windows, the best
// adapters kept and restored, early stopping with patience, a fixed seeded order over the training windows,
// a progress bar, a JSON log + SVG loss curve, and checkpoints from which a killed run resumes bit-identically.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type Arr, Rng } from '../tensor.js';
import { AdamW, type AdamOptions, type Param, type TrainOptimizer } from './adamw.js';
import type { LossParts, Objective } from './objectives/types.js';
import { Progress, fmtTime } from '../cli/progress.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { svgLinePlot } from '../report/svg-plot.js';

export interface TrainOptions extends AdamOptions {
  /** windows per micro-step (default 1) */
  microBatch?: number;
  /** micro-steps per optimizer update (default 8) */
  gradAccum?: number;
  /** budget in micro-steps (RILQ's approx_total_steps, default 10000) */
  maxSteps?: number;
  /** validate every this many updates (default 25); 0 disables validation */
  evalEvery?: number;
  /** stop after this many validations in a row without improvement (default 5; 0 = never) */
  patience?: number;
  /** global-norm gradient clipping (default none, as RILQ) */
  maxGradNorm?: number;
  seed?: number;
  /** shuffle the training windows once (RILQ shuffles its lists once; default true) */
  shuffle?: boolean;
  ckptDir?: string | null;
  /** resume from ckptDir when a checkpoint is there (default true) */
  resume?: boolean;
  logPath?: string | null;
  svgPath?: string | null;
  label?: string;
  quiet?: boolean;
  /** optimizer factory (default: AdamW on the host arrays); GPU training passes a device-resident one */
  optimizer?: (params: Param[], o: AdamOptions) => TrainOptimizer;
  /** extra fields for the JSON log header */
  meta?: Record<string, unknown>;
  /** test hook: stop (as if killed) after this many updates, leaving the checkpoint */
  killAfterUpdates?: number;
}

export interface LogEntry { update: number; micro: number; train?: number; trainParts?: Record<string, number>; val?: number; valParts?: Record<string, number>; seconds: number }

export interface TrainResult {
  updates: number;
  microSteps: number;
  initialVal: number | null;
  bestVal: number | null;
  bestUpdate: number;
  finalVal: number | null;
  stoppedEarly: boolean;
  resumed: boolean;
  killed: boolean;
  seconds: number;
  log: LogEntry[];
}

interface State {
  micro: number; update: number; best: number | null; bestUpdate: number; bad: number;
  initialVal: number | null; log: LogEntry[]; adamStep: number; tensors: string; elapsed: number; stopped: boolean;
}

function meanParts(acc: Record<string, number>, n: number): Record<string, number> {
  const o: Record<string, number> = {};
  for (const k in acc) o[k] = acc[k] / n;
  return o;
}

function addParts(acc: Record<string, number>, p: LossParts): void {
  for (const k in p) acc[k] = (acc[k] ?? 0) + p[k];
}

/** Mean loss (and parts) of the objective over windows, no gradients. */
export function evaluate(obj: Objective, windows: Int32Array[], indices: number[]): Record<string, number> {
  const acc: Record<string, number> = {};
  for (const i of indices) addParts(acc, obj.run(windows[i], i, false, 0));
  return meanParts(acc, Math.max(1, indices.length));
}

/** The fixed order the trainer walks the training windows in (shuffled once, seeded; cyclic afterwards). */
export function trainOrder(trainIdx: number[], seed: number): number[] {
  const order = trainIdx.slice();
  const rng = new Rng(seed ^ 0x5bd1e995);
  for (let i = order.length - 1; i > 0; i--) { const j = rng.int(i + 1); [order[i], order[j]] = [order[j], order[i]]; }
  return order;
}

export function trainAdapters(params: Param[], obj: Objective, windows: Int32Array[], trainIdx: number[], valIdx: number[],
  o: TrainOptions): TrainResult {
  if (params.length === 0) throw new Error('trainAdapters: nothing to train');
  if (trainIdx.length === 0) throw new Error('trainAdapters: no training windows');
  const mb = o.microBatch ?? 1, accum = o.gradAccum ?? 8, maxSteps = o.maxSteps ?? 10000;
  const evalEvery = o.evalEvery ?? 25, patience = o.patience ?? 5, seed = o.seed ?? 42;
  const order = o.shuffle === false ? trainIdx.slice() : trainOrder(trainIdx, seed);
  const adamOpts: AdamOptions = { lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, coupledL2: o.coupledL2 };
  const opt: TrainOptimizer = o.optimizer ? o.optimizer(params, adamOpts) : new AdamW(params, adamOpts);
  const best = params.map((p) => Float32Array.from(p.data));
  const canVal = valIdx.length > 0 && evalEvery > 0;
  const t0 = Date.now();
  let st: State = { micro: 0, update: 0, best: null, bestUpdate: -1, bad: 0, initialVal: null, log: [], adamStep: 0, tensors: '', elapsed: 0, stopped: false };
  let resumed = false;
  const ck = o.ckptDir ?? null;
  if (ck && o.resume !== false && existsSync(join(ck, 'state.json'))) {
    st = JSON.parse(readFileSync(join(ck, 'state.json'), 'utf8')) as State;
    const f = SafetensorsFile.open(join(ck, st.tensors));
    try {
      params.forEach((p, i) => {
        p.data.set(f.readTensorF32(`p:${p.name}`));
        best[i].set(f.readTensorF32(`best:${p.name}`));
        opt.m[i].set(f.readTensorF32(`m:${p.name}`));
        opt.v[i].set(f.readTensorF32(`v:${p.name}`));
      });
    } finally { f.close(); }
    opt.step = st.adamStep;
    opt.push?.();
    resumed = true;
  }
  const elapsed = () => st.elapsed + (Date.now() - t0) / 1000;
  const writeLog = (final: boolean) => {
    if (o.logPath) {
      mkdirSync(dirname(o.logPath), { recursive: true });
      writeFileSync(o.logPath, JSON.stringify({ objective: obj.name, ...o.meta, options: { ...o, meta: undefined, logPath: undefined, svgPath: undefined },
        final, updates: st.update, microSteps: st.micro, initialVal: st.initialVal, bestVal: st.best, bestUpdate: st.bestUpdate, log: st.log }, null, 1) + '\n');
    }
    if (o.svgPath) {
      mkdirSync(dirname(o.svgPath), { recursive: true });
      const tr = st.log.filter((e) => e.train !== undefined).map((e) => [e.update, e.train!] as [number, number]);
      const va = st.log.filter((e) => e.val !== undefined).map((e) => [e.update, e.val!] as [number, number]);
      writeFileSync(o.svgPath, svgLinePlot([{ name: 'train', points: tr }, { name: 'validation', points: va }],
        { title: `${o.label ?? obj.name} loss`, xLabel: 'optimizer update', yLabel: 'loss', logY: true }));
    }
  };
  const checkpoint = () => {
    if (!ck) return;
    mkdirSync(ck, { recursive: true });
    const name = `tensors-${st.update}.safetensors`, old = st.tensors;
    opt.pull?.();
    const f32 = (a: Arr) => (a instanceof Float32Array ? a : Float32Array.from(a));
    const ts: TensorToWrite[] = [];
    params.forEach((p, i) => {
      ts.push({ name: `p:${p.name}`, dtype: 'F32', shape: [p.data.length], data: f32(p.data) });
      ts.push({ name: `best:${p.name}`, dtype: 'F32', shape: [p.data.length], data: best[i] });
      ts.push({ name: `m:${p.name}`, dtype: 'F32', shape: [p.data.length], data: opt.m[i] });
      ts.push({ name: `v:${p.name}`, dtype: 'F32', shape: [p.data.length], data: opt.v[i] });
    });
    writeSafetensors(join(ck, name), ts);
    st.tensors = name; st.adamStep = opt.step;
    const s = { ...st, elapsed: elapsed() };
    writeFileSync(join(ck, 'state.json.partial'), JSON.stringify(s));
    renameSync(join(ck, 'state.json.partial'), join(ck, 'state.json'));
    if (old && old !== name) rmSync(join(ck, old), { force: true });
  };
  const validate = (): Record<string, number> => evaluate(obj, windows, valIdx);
  const consider = (val: number): void => {
    if (st.best === null || val < st.best) {
      st.best = val; st.bestUpdate = st.update; st.bad = 0;
      opt.pull?.();
      params.forEach((p, i) => best[i].set(p.data));
    } else st.bad++;
  };

  if (!resumed && canVal) {
    const v = validate();
    st.initialVal = v.loss;
    st.log.push({ update: 0, micro: 0, val: v.loss, valParts: v, seconds: elapsed() });
  }
  const bar = new Progress(o.label ?? obj.name, maxSteps, 'step', o.quiet);
  const acc: Record<string, number> = {};
  let accN = 0, killed = false, lastEvalUpdate = st.bestUpdate;
  opt.zeroGrad();
  const scale = 1 / (mb * accum);
  while (!st.stopped && st.micro < maxSteps) {
    for (let k = 0; k < mb; k++) {
      const idx = order[(st.micro * mb + k) % order.length];
      const p = obj.run(windows[idx], idx, true, scale);
      if (!Number.isFinite(p.loss)) throw new Error(`${obj.name}: loss is ${p.loss} at micro-step ${st.micro}`);
      addParts(acc, p); accN++;
    }
    st.micro++;
    if (st.micro % accum === 0) {
      if (o.maxGradNorm) opt.clipGradNorm(o.maxGradNorm);
      opt.update();
      opt.zeroGrad();
      st.update++;
      const tp = meanParts(acc, accN);
      for (const k in acc) delete acc[k];
      accN = 0;
      const entry: LogEntry = { update: st.update, micro: st.micro, train: tp.loss, trainParts: tp, seconds: elapsed() };
      if (canVal && st.update % evalEvery === 0) {
        const v = validate();
        entry.val = v.loss; entry.valParts = v;
        consider(v.loss);
        lastEvalUpdate = st.update;
        if (patience > 0 && st.bad >= patience) st.stopped = true;
      }
      st.log.push(entry);
      if (entry.val !== undefined) { checkpoint(); writeLog(false); }
      bar.update(st.micro, `loss ${tp.loss.toPrecision(4)}${st.best !== null ? ` best-val ${st.best.toPrecision(4)}@${st.bestUpdate}` : ''}`);
      if (o.killAfterUpdates !== undefined && st.update >= o.killAfterUpdates) { killed = true; break; }
    } else bar.update(st.micro);
  }
  if (killed) {
    opt.pull?.();
    return { updates: st.update, microSteps: st.micro, initialVal: st.initialVal, bestVal: st.best, bestUpdate: st.bestUpdate, finalVal: null, stoppedEarly: false, resumed, killed, seconds: elapsed(), log: st.log };
  }
  bar.finish();
  const stoppedEarly = st.stopped;
  let finalVal: number | null = null;
  if (canVal && st.update > 0 && lastEvalUpdate !== st.update) {
    // evaluate the last iterate too (the authors' loop crashes when no validation ran after step 0)
    const v = validate();
    finalVal = v.loss;
    st.log.push({ update: st.update, micro: st.micro, val: v.loss, valParts: v, seconds: elapsed() });
    consider(v.loss);
  }
  if (canVal && st.best !== null) { params.forEach((p, i) => p.data.set(best[i])); opt.push?.(); } else opt.pull?.();
  st.stopped = true;
  checkpoint();
  writeLog(true);
  return { updates: st.update, microSteps: st.micro, initialVal: st.initialVal, bestVal: st.best, bestUpdate: st.bestUpdate, finalVal, stoppedEarly, resumed, killed, seconds: elapsed(), log: st.log };
}

/** One-line summary of a run's timing. */
export function trainSummary(r: TrainResult): string {
  return `${r.updates} updates (${r.microSteps} micro-steps) in ${fmtTime(r.seconds)}; val ${r.initialVal?.toPrecision(4)} → best ${r.bestVal?.toPrecision(4)} at update ${r.bestUpdate}${r.stoppedEarly ? ' (early stop)' : ''}`;
}
