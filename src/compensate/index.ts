// Library layer of `lowbit compensate` / `lowbit rank-sweep` / `lowbit demo`: load the FP teacher and the
// quantized student, draw calibration windows, run one LoRA error-compensation method, evaluate, save.
//
// Methods: rilq (hidden MSE + CE), rilq-logits (logit MSE + CE), lrec (KL sum + w·CE), linear / layer (RILQ's
// analysis scopes), svd (closed-form top-r SVD of W − Q), loftq (alternating re-quantization + SVD; also writes
// the re-quantized base).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import '../backend/native.js'; // loads the addon (native sgemm/attention) when built
import { Rng } from '../tensor.js';
import { LowbitError } from '../io/errors.js';
import { type Projection, PROJECTIONS, projectionPath, projectionShape } from '../model/config.js';
import { DenseLinear, type Linear } from '../model/linear.js';
import { LlamaModel } from '../model/llama.js';
import type { LlamaWeights } from '../model/weights.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { loadHfWeights } from '../serve/load.js';
import { isPackedDir, loadPackedModel, packedEntries, layoutRecord, copyAuxFiles, writePackedConfig, QUANT_FILE, type QuantRecord } from '../quant/format.js';
import { PackedLinear } from '../quant/packed-linear.js';
import { quantizeWeight } from '../quant/quantizer.js';
import { dequantize } from '../quant/dequant.js';
import type { PackedTensor, QuantOpts } from '../quant/types.js';
import { SafetensorsWriter, SINGLE_FILE, openTensorStore } from '../io/safetensors.js';
import { randomWindows, splitWindows } from '../train/data.js';
import { evalPerplexity, type PplResult } from '../eval/ppl.js';
import { attachLora, detachLora, loraParams, loraParamCount, type LoraLinear } from '../adapters/lora.js';
import { initGaussian, initKaiming, initFromResidual, type LoraInit } from '../adapters/init.js';
import { loftq } from '../adapters/loftq.js';
import { frobenius } from '../adapters/svd.js';
import { savePeftAdapter } from '../adapters/peft-io.js';
import { TeacherCache, type CacheDtype } from '../train/teacher-cache.js';
import { RilqObjective } from '../train/objectives/rilq.js';
import { LrecObjective } from '../train/objectives/lrec.js';
import { LayerScopeObjective, LinearScopeObjective } from '../train/objectives/scopes.js';
import type { Objective } from '../train/objectives/types.js';
import { trainAdapters, trainOrder, evaluate, type TrainResult, type TrainOptions } from '../train/trainer.js';
import { requireGpu } from '../model/gpu/engine.js';
import { uploadWeights } from '../model/gpu/device-weights.js';
import { GpuLora, loraSiteSpecs } from '../model/gpu/gpu-lora.js';
import { GpuLlama } from '../model/gpu/gpu-llama.js';
import { GpuAdam } from '../train/gpu-adam.js';
import { GpuLayerScopeObjective, GpuLinearScopeObjective } from '../train/objectives/scopes-gpu.js';
import { GpuRilqObjective } from '../train/objectives/rilq-gpu.js';
import { GpuLrecObjective } from '../train/objectives/lrec-gpu.js';
import { Progress } from '../cli/progress.js';

export type CompensateMethod = 'rilq' | 'rilq-logits' | 'lrec' | 'linear' | 'layer' | 'svd' | 'loftq';
export const COMPENSATE_METHODS: readonly CompensateMethod[] = ['rilq', 'rilq-logits', 'lrec', 'linear', 'layer', 'svd', 'loftq'];
export const TRAINED_METHODS: readonly CompensateMethod[] = ['rilq', 'rilq-logits', 'lrec', 'linear', 'layer'];

/** Everything a method needs, loaded once (rank-sweep reuses it across methods and ranks). */
export interface CompensateContext {
  fpDir: string;
  quantDir: string;
  fp: LlamaWeights;
  teacher: LlamaModel;
  student: LlamaWeights;
  studentModel: LlamaModel;
  /** the quantizer of the base (for LoftQ's re-quantization) */
  quantOpts: QuantOpts;
  quantRecord: QuantRecord | null;
  windows: Int32Array[];
  trainIdx: number[];
  valIdx: number[];
  cache: TeacherCache | null;
  teacherBudgetBytes: number;
  teacherDtype: CacheDtype;
  heldout: number[] | null;
  calib: string;
  seq: number;
  seed: number;
}

export interface ContextOptions {
  model: string;
  quant: string;
  calib?: string;
  /** pre-drawn windows (overrides calib/samples/seq) */
  windows?: Int32Array[];
  samples?: number;
  seq?: number;
  valRatio?: number;
  seed?: number;
  heldout?: string | null;
  teacherBudgetMB?: number;
  teacherDtype?: CacheDtype;
  quiet?: boolean;
}

/** The original quantized bases of the student, to restore after LoftQ swapped them. */
function snapshotBases(w: LlamaWeights): Map<string, Linear> {
  const m = new Map<string, Linear>();
  for (const [l, p, lin] of w.linears()) m.set(`${l}.${p}`, lin);
  return m;
}

export function loadContext(o: ContextOptions): CompensateContext {
  const { weights: fp } = loadHfWeights(o.model);
  let student: LlamaWeights, quantRecord: QuantRecord | null = null;
  let quantOpts: QuantOpts = { method: 'rtn', bits: 2, groupSize: 64 };
  if (isPackedDir(o.quant)) {
    const pm = loadPackedModel(o.quant);
    student = pm.weights; quantRecord = pm.record;
    quantOpts = { method: pm.record.method === 'gptq' ? 'rtn' : pm.record.method, bits: pm.record.bits, groupSize: pm.record.group_size,
      doubleQuant: pm.record.double_quant, icqMode: pm.record.icq_mode };
  } else {
    student = loadHfWeights(o.quant).weights; // fake-quant HF export
  }
  const c = fp.config, s = student.config;
  if (c.hiddenSize !== s.hiddenSize || c.numLayers !== s.numLayers || c.vocabSize !== s.vocabSize || c.intermediateSize !== s.intermediateSize) {
    throw new LowbitError(`${o.quant}: architecture differs from ${o.model} (hidden ${s.hiddenSize}/${c.hiddenSize}, layers ${s.numLayers}/${c.numLayers}, vocab ${s.vocabSize}/${c.vocabSize})`);
  }
  const seed = o.seed ?? 42, seq = o.seq ?? o.windows?.[0]?.length ?? 512;
  let windows = o.windows;
  let tok: ReturnType<typeof loadTokenizer> | null = null;
  if (!windows) {
    if (!o.calib) throw new LowbitError('compensate: --calib FILE is required');
    if (!existsSync(o.calib)) throw new LowbitError(`${o.calib}: calibration file not found`);
    tok = loadTokenizer(o.model);
    windows = randomWindows(tok.encode(readFileSync(o.calib, 'utf8')), seq, o.samples ?? 320, seed, o.calib);
  }
  const nVal = splitWindows(windows, o.valRatio ?? 0.2).val.length;
  const n = windows.length;
  const trainIdx = Array.from({ length: n - nVal }, (_, i) => i), valIdx = Array.from({ length: nVal }, (_, i) => n - nVal + i);
  let heldout: number[] | null = null;
  if (o.heldout) {
    if (!existsSync(o.heldout)) throw new LowbitError(`${o.heldout}: held-out text file not found`);
    tok ??= loadTokenizer(o.model);
    heldout = tok.encode(readFileSync(o.heldout, 'utf8'));
  }
  const teacher = new LlamaModel(fp);
  return {
    fpDir: o.model, quantDir: o.quant, fp, teacher, student, studentModel: new LlamaModel(student), quantOpts, quantRecord,
    windows, trainIdx, valIdx, cache: null, teacherBudgetBytes: (o.teacherBudgetMB ?? 2048) * 2 ** 20,
    teacherDtype: o.teacherDtype ?? 'f32', heldout, calib: o.calib ?? '(windows)', seq, seed,
  };
}

/** The teacher cache (filled on first use, shared by every method of the context). */
export function teacherCache(ctx: CompensateContext, quiet = false): TeacherCache {
  if (!ctx.cache) {
    ctx.cache = new TeacherCache(ctx.teacher, ctx.windows, { budgetBytes: ctx.teacherBudgetBytes, dtype: ctx.teacherDtype });
    ctx.cache.fill(undefined, !quiet);
  }
  return ctx.cache;
}

export interface MethodOptions {
  method: CompensateMethod;
  rank: number;
  /** default 16 (RILQ's fixed α); svd/loftq fold α/r into the factors so any α reproduces W − Q */
  alpha?: number;
  rslora?: boolean;
  targets?: Projection[];
  /** trained methods: gaussian (default, RILQ) | kaiming | svd | loftq | zero */
  init?: LoraInit;
  lr?: number;
  maxSteps?: number;
  gradAccum?: number;
  microBatch?: number;
  evalEvery?: number;
  patience?: number;
  weightDecay?: number;
  coupledL2?: boolean;
  /** lrec: CE weight (default 120·T/2048, the authors' INT2 balance) and KL weight */
  ceWeight?: number;
  klWeight?: number;
  /** rilq: MSE / CE weights (0.5 / 0.5) */
  mseWeight?: number;
  loftqIters?: number;
  seed?: number;
  ckptDir?: string | null;
  logPath?: string | null;
  svgPath?: string | null;
  quiet?: boolean;
  /** evaluate held-out perplexity with this window length after (and, with pplBefore, before) */
  evalSeq?: number;
  evalMaxWindows?: number;
  pplBefore?: boolean;
  adapterName?: string;
  /** 'cuda': train on the GPU engine (rilq and lrec); evaluation stays on the CPU path */
  device?: 'cpu' | 'cuda';
  /** GPU engine: keep only each block's input and recompute its activations in the backward (less memory, +1 forward) */
  recompute?: boolean;
}

export interface MethodResult {
  method: CompensateMethod;
  rank: number;
  alpha: number;
  targets: Projection[];
  adapterParams: number;
  seconds: number;
  train?: TrainResult;
  /** validation loss (RILQ loss: 0.5 MSE + 0.5 CE) of the calibration hold-out, before/after */
  valBefore?: number;
  valAfter?: number;
  /** the RILQ validation loss after, whatever the method (a common yardstick) */
  rilqVal?: number;
  /** svd/loftq: Σ‖W − Q − sBA‖_F / Σ‖W − Q‖_F over the adapted projections */
  relWeightError?: number;
  loftqErrors?: number[][];
  pplBefore?: PplResult;
  pplAfter?: PplResult;
  /** loftq: packed tensors of the re-quantized base, by HF path */
  requantized?: Map<string, PackedTensor>;
}

function denseOf(lin: Linear): Float32Array {
  if (lin instanceof DenseLinear) return lin.weight instanceof Float32Array ? lin.weight : Float32Array.from(lin.weight);
  const d = (lin as unknown as { dense?: () => Float32Array }).dense;
  if (typeof d !== 'function') throw new Error(`compensate: cannot read the weight of a ${lin.constructor.name}`);
  return d.call(lin);
}

export function buildObjective(ctx: CompensateContext, m: MethodOptions, quiet = false): Objective {
  switch (m.method) {
    case 'rilq': return new RilqObjective(ctx.studentModel, teacherCache(ctx, quiet), { mseWeight: m.mseWeight, ceWeight: 1 - (m.mseWeight ?? 0.5) });
    case 'rilq-logits': return new RilqObjective(ctx.studentModel, teacherCache(ctx, quiet), { target: 'logits', mseWeight: m.mseWeight, ceWeight: 1 - (m.mseWeight ?? 0.5) });
    case 'lrec': return new LrecObjective(ctx.studentModel, teacherCache(ctx, quiet), { ceWeight: m.ceWeight, klWeight: m.klWeight });
    case 'linear': return new LinearScopeObjective(ctx.studentModel, ctx.teacher);
    case 'layer': return new LayerScopeObjective(ctx.studentModel, ctx.teacher);
    default: throw new Error(`compensate: ${m.method} is not a trained method`);
  }
}

/**
 * Run one method on the context's student: attaches adapter `adapterName` (default 'comp'), trains or
 * fits it, evaluates. The adapter stays attached (call `resetStudent` to undo, as rank-sweep does).
 */
export function runMethod(ctx: CompensateContext, m: MethodOptions): MethodResult {
  const t0 = Date.now();
  const name = m.adapterName ?? 'comp', r = m.rank, alpha = m.alpha ?? 16, targets = m.targets ?? [...PROJECTIONS];
  if (!COMPENSATE_METHODS.includes(m.method)) throw new LowbitError(`compensate: unknown method '${m.method}' (known: ${COMPENSATE_METHODS.join(', ')})`);
  if (!(Number.isInteger(r) && r >= 1)) throw new LowbitError(`compensate: --rank must be a positive integer, got ${r}`);
  const quiet = m.quiet ?? false;
  const res: MethodResult = { method: m.method, rank: r, alpha, targets, adapterParams: 0, seconds: 0 };
  const evalPpl = (label: string) => ctx.heldout && m.evalSeq
    ? evalPerplexity(ctx.studentModel, ctx.heldout, { seq: m.evalSeq, maxWindows: m.evalMaxWindows, progress: !quiet, label }) : undefined;
  if (m.pplBefore) res.pplBefore = evalPpl('ppl before');
  const sites = attachLora(ctx.student, name, { r, alpha, rslora: m.rslora }, targets, true);
  const rng = new Rng(m.seed ?? ctx.seed);
  if (m.method === 'svd' || m.method === 'loftq' || m.init === 'svd' || m.init === 'loftq') {
    const bar = new Progress(m.method === 'loftq' || m.init === 'loftq' ? 'loftq' : 'svd', sites.length, 'lin', quiet);
    let num = 0, den = 0;
    const errs: number[][] = [];
    const requant = new Map<string, PackedTensor>();
    for (const s of sites) {
      const a = s.lin.get(name), W = denseOf(ctx.fp.linearAt(s.layer, s.proj));
      const { out, in: inF } = projectionShape(ctx.fp.config, s.proj);
      if (m.method === 'loftq' || m.init === 'loftq') {
        const q = (X: Float32Array) => { const p = quantizeWeight(X, out, inF, ctx.quantOpts); return { deq: dequantize(p), packed: p }; };
        const lr = loftq(W, out, inF, r, a.scale, m.loftqIters ?? 5, q, { seed: m.seed ?? ctx.seed });
        a.A.set(lr.A); a.B.set(lr.B);
        s.lin = swapBase(ctx.student, s.layer, s.proj, s.lin, new PackedLinear(lr.packed, projectionPath(s.layer, s.proj)));
        requant.set(projectionPath(s.layer, s.proj), lr.packed);
        errs.push(lr.errors);
        num += lr.errors[lr.bestIter - 1]; den += lr.quantError;
      } else {
        const Q = denseOf(s.lin.base);
        const E = new Float64Array(W.length);
        for (let i = 0; i < W.length; i++) E[i] = W[i] - Q[i];
        const S = initFromResidual(a, E, out, inF, { seed: m.seed ?? ctx.seed });
        const tot = frobenius(E);
        let kept = 0; for (const v of S) kept += v * v;
        num += Math.sqrt(Math.max(0, tot * tot - kept)); den += tot;
      }
      bar.tick();
    }
    bar.finish();
    res.relWeightError = num / den;
    if (errs.length) { res.loftqErrors = errs; res.requantized = requant; }
  } else {
    for (const s of sites) {
      const a = s.lin.get(name);
      if ((m.init ?? 'gaussian') === 'gaussian') initGaussian(a, rng);
      else if (m.init === 'kaiming') initKaiming(a, s.lin.inFeatures, rng);
      else { a.A.fill(0); a.B.fill(0); }
    }
  }
  res.adapterParams = loraParamCount(ctx.student, name);
  if (TRAINED_METHODS.includes(m.method)) {
    const gpu = m.device === 'cuda' ? gpuTraining(ctx, m, name, quiet) : null;
    const obj = gpu?.obj ?? buildObjective(ctx, m, quiet);
    try {
    res.train = trainAdapters(loraParams(ctx.student, name), obj, ctx.windows, ctx.trainIdx, ctx.valIdx, {
      optimizer: gpu?.optimizer,
      lr: m.lr ?? 1e-4, gradAccum: m.gradAccum ?? 8, microBatch: m.microBatch ?? 1, maxSteps: m.maxSteps ?? 10000,
      evalEvery: m.evalEvery ?? 25, patience: m.patience ?? 5,
      // LREC: torch.optim.Adam(weight_decay=1e-5), a coupled L2, as the authors
      weightDecay: m.weightDecay ?? (m.method === 'lrec' ? 1e-5 : undefined), coupledL2: m.coupledL2 ?? (m.method === 'lrec'),
      seed: m.seed ?? ctx.seed, ckptDir: m.ckptDir ?? null, logPath: m.logPath ?? null, svgPath: m.svgPath ?? null,
      label: `${m.method} r${r}${gpu ? ' (cuda)' : ''}`, quiet, meta: { method: m.method, rank: r, alpha, targets, device: m.device ?? 'cpu' },
    });
    } finally { gpu?.free(); }
    res.valBefore = res.train.initialVal ?? undefined;
    res.valAfter = res.train.bestVal ?? undefined;
  }
  if (ctx.valIdx.length) {
    // the common yardstick: the RILQ validation loss (0.5 MSE + 0.5 CE) on the held-out calibration windows
    const obj = buildObjective(ctx, { ...m, method: 'rilq', mseWeight: 0.5 }, quiet);
    res.rilqVal = evaluate(obj, ctx.windows, ctx.valIdx).loss;
    if (!res.train) res.valAfter = res.rilqVal;
  }
  res.pplAfter = evalPpl(`ppl ${m.method}`);
  res.seconds = (Date.now() - t0) / 1000;
  return res;
}

/** The GPU engine's objective and device-resident Adam for a trained method (rilq, lrec and the linear/layer scopes so far). */
function gpuTraining(ctx: CompensateContext, m: MethodOptions, name: string, quiet: boolean): { obj: Objective; optimizer: TrainOptions['optimizer']; free(): void } {
  if (!['rilq', 'lrec', 'layer', 'linear'].includes(m.method))
    throw new LowbitError(`compensate --device cuda: only --method rilq, lrec, layer and linear run on the GPU engine so far (got ${m.method})`);
  const eng = requireGpu();
  const specs = loraSiteSpecs(ctx.student, name);
  if (m.method === 'layer' || m.method === 'linear') {  // RILQ §5's scopes: the FP weights on the device, no teacher cache
    const gw = uploadWeights(eng, ctx.student), tw = uploadWeights(eng, ctx.teacher.weights), lora = new GpuLora(eng, specs);
    let g: GpuLlama | null = null, t: GpuLlama | null = null;
    try {
      g = new GpuLlama(eng, gw, lora, { recompute: m.recompute });
      // the layer scope runs the FP model online for each block's input and output; the linear scope only its weights
      if (m.method === 'layer') t = new GpuLlama(eng, tw);
      const obj = t ? new GpuLayerScopeObjective(g, t) : new GpuLinearScopeObjective(g, tw), gm = g, tm = t;
      return { obj, optimizer: (ps, ao) => new GpuAdam(lora, ps, ao), free: () => { obj.free(); gm.free(); tm?.free(); lora.free(); gw.free(); tw.free(); } };
    } catch (e) { g?.free(); t?.free(); lora.free(); gw.free(); tw.free(); throw e; }
  }
  const cache = teacherCache(ctx, quiet);
  const gw = uploadWeights(eng, ctx.student);
  const lora = new GpuLora(eng, specs);
  let gm: GpuLlama | null = null;
  try {
    // lrec: room for the teacher's logit chunk; its teacher lm_head is the student's device buffer when equal (always
    // in lowbit: the lm_head is never quantized), else an upload of the FP one
    const g = gm = new GpuLlama(eng, gw, lora, { recompute: m.recompute, distill: m.method === 'lrec' });
    const obj = m.method === 'lrec' ? new GpuLrecObjective(g, cache, { ceWeight: m.ceWeight, klWeight: m.klWeight })
      : new GpuRilqObjective(g, cache, { mseWeight: m.mseWeight, ceWeight: 1 - (m.mseWeight ?? 0.5) });
    return {
      obj,
      optimizer: (ps, ao) => new GpuAdam(lora, ps, ao),
      free: () => { obj.free(); g.free(); lora.free(); gw.free(); },
    };
  } catch (e) { gm?.free(); lora.free(); gw.free(); throw e; }
}

function swapBase(w: LlamaWeights, layer: number, p: Projection, lin: LoraLinear, base: Linear): LoraLinear {
  // LoraLinear.base is readonly: rebuild the wrapper around the new base, keeping every adapter
  const Ctor = lin.constructor as new (b: Linear, prec: LoraLinear['precision']) => LoraLinear;
  const nl = new Ctor(base, lin.precision);
  for (const [k, a] of lin.adapters) nl.adapters.set(k, a);
  w.setLinear(layer, p, nl);
  return nl;
}

/** Remove the method's adapter and put back the original quantized bases (after LoftQ). */
export function resetStudent(ctx: CompensateContext, bases: Map<string, Linear>, name = 'comp'): void {
  detachLora(ctx.student, name);
  for (const [l, p] of [...ctx.student.linears()]) {
    const b = bases.get(`${l}.${p}`);
    if (b) ctx.student.setLinear(l, p, b);
  }
}

export { snapshotBases };

/** Write the LoftQ re-quantized base as a packed directory (same layout as `lowbit quantize`). */
export function writeRequantizedBase(ctx: CompensateContext, outDir: string, requant: Map<string, PackedTensor>): void {
  if (!ctx.quantRecord) throw new LowbitError(`${ctx.quantDir}: loftq needs a packed --quant directory to write its re-quantized base`);
  mkdirSync(outDir, { recursive: true });
  const src = openTensorStore(ctx.quantDir);
  const record: QuantRecord = { ...ctx.quantRecord, method: ctx.quantOpts.method, tensors: { ...ctx.quantRecord.tensors } };
  delete record.stats; delete record.gptq;
  const w = new SafetensorsWriter(join(outDir, SINGLE_FILE), { metadata: { format: 'lowbit-packed' } });
  try {
    const replaced = new Set<string>();
    for (const path of requant.keys()) replaced.add(path);
    for (const n of src.names()) {
      const path = n.replace(/\.(qcodes|scales|zeros|g_idx|absmax|absmax_q|absmax_scale|absmax_offset|tau_q|tau_scale)$/, '');
      if (path !== n && replaced.has(path)) continue;
      const r = src.readTensorRaw(n);
      w.add(n, r.dtype, r.shape, r.data);
    }
    for (const [path, t] of requant) {
      for (const e of packedEntries(path, t)) w.add(e.name, e.dtype, e.shape, e.data);
      record.tensors[path] = layoutRecord(t);
    }
    w.finish();
  } catch (e) { w.abort(); throw e; } finally { src.close(); }
  copyAuxFiles(ctx.quantDir, outDir);
  writePackedConfig(ctx.quantDir, outDir, record);
  writeFileSync(join(outDir, QUANT_FILE), JSON.stringify(record, null, 1) + '\n');
}

export interface CompensateOptions extends ContextOptions, MethodOptions {
  out: string;
  /** loftq: where to write the re-quantized base (default OUT/base) */
  baseOut?: string;
  /** write the calibration windows as JSON (for scripts/reference/rilq_torch.py) */
  windowsJson?: string;
}

export interface CompensateSummary {
  method: CompensateMethod; rank: number; alpha: number; targets: string[]; out: string; baseOut?: string;
  adapterParams: number; samples: number; seq: number; trainWindows: number; valWindows: number;
  updates?: number; microSteps?: number; bestUpdate?: number; stoppedEarly?: boolean;
  valBefore?: number; valAfter?: number; relWeightError?: number; loftqErrors?: number[][];
  pplBefore?: number; pplAfter?: number; seconds: number;
}

/**
 * Write calibration windows (token ids) as JSON, the input of scripts/reference/rilq_torch.py: `train` in the exact
 * order lowbit's trainer walks them (shuffled once with the seed, then cyclic), `val`, and the held-out token stream.
 */
export function writeWindowsJson(path: string, ctx: CompensateContext): void {
  writeFileSync(path, JSON.stringify({
    seq: ctx.seq, seed: ctx.seed, calib: ctx.calib, order: 'train is in trainer order; walk it cyclically, do not reshuffle',
    train: trainOrder(ctx.trainIdx, ctx.seed).map((i) => Array.from(ctx.windows[i])),
    val: ctx.valIdx.map((i) => Array.from(ctx.windows[i])),
    heldout: ctx.heldout ?? undefined,
  }) + '\n');
}

/** The whole job of `lowbit compensate`: load, run, save the PEFT adapter (+ the LoftQ base), return a summary. */
export function compensate(o: CompensateOptions): CompensateSummary {
  const ctx = loadContext(o);
  if (o.windowsJson) writeWindowsJson(o.windowsJson, ctx);
  mkdirSync(o.out, { recursive: true });
  const r = runMethod(ctx, {
    ...o, logPath: o.logPath ?? (TRAINED_METHODS.includes(o.method) ? join(o.out, 'train-log.json') : null),
    svgPath: o.svgPath ?? (TRAINED_METHODS.includes(o.method) ? join(o.out, 'loss.svg') : null),
  });
  let baseOut: string | undefined;
  if (r.requantized) { baseOut = o.baseOut ?? join(o.out, 'base'); writeRequantizedBase(ctx, baseOut, r.requantized); }
  savePeftAdapter(o.out, ctx.student, o.adapterName ?? 'comp', {
    baseModel: baseOut ?? o.quant, init: o.init ?? (o.method === 'svd' || o.method === 'loftq' ? o.method : 'gaussian'),
    metadata: { lowbit_method: o.method, lowbit_fp_model: o.model, lowbit_quant: o.quant },
  });
  return {
    method: o.method, rank: r.rank, alpha: r.alpha, targets: r.targets, out: o.out, baseOut, adapterParams: r.adapterParams,
    samples: ctx.windows.length, seq: ctx.seq, trainWindows: ctx.trainIdx.length, valWindows: ctx.valIdx.length,
    updates: r.train?.updates, microSteps: r.train?.microSteps, bestUpdate: r.train?.bestUpdate, stoppedEarly: r.train?.stoppedEarly,
    valBefore: r.valBefore, valAfter: r.valAfter, relWeightError: r.relWeightError, loftqErrors: r.loftqErrors,
    pplBefore: r.pplBefore?.ppl, pplAfter: r.pplAfter?.ppl, seconds: r.seconds,
  };
}
