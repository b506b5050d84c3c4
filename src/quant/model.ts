// Quantize a whole HF model directory into a packed directory (format.ts). RTN/NF/ICQ stream one
// projection at a time from the checkpoint; GPTQ loads the model, draws GPTQ-style random calibration
// windows from a text file and quantizes layer by layer, the inputs of layer l coming from the
// already-quantized layers < l. With --device cuda that forward runs on the GPU engine (gptq-calib-gpu.ts).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LowbitError, fileError } from '../io/errors.js';
import { loadHfConfig } from '../io/config.js';
import { openTensorStore, SafetensorsWriter, SINGLE_FILE, type TensorStore } from '../io/safetensors.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { randomWindows } from '../train/data.js';
import { type LlamaConfig, PROJECTIONS, type Projection, projectionPath, projectionShape } from '../model/config.js';
import { LlamaWeights } from '../model/weights.js';
import { LlamaModel } from '../model/llama.js';
import type { Arr } from '../tensor.js';
import type { PackedTensor, QuantMethod, QuantOpts } from './types.js';
import { quantizeWeight, type QuantContext } from './quantizer.js';
import type { IcqStats } from './icq.js';
import { HessianAccumulator } from './gptq.js';
import { GpuHessian, quantizeGPTQGpu, requireGptqEngine } from './gptq-gpu.js';
import { GpuCalibration, type CalibEngine, type HostLayer, type TapGroup } from './gptq-calib-gpu.js';
import { requireGpu, type GpuEngine } from '../model/gpu/engine.js';
import type { GptqEngine } from '../backend/cuda-gptq.js';
import { PackedLinear } from './packed-linear.js';
import {
  BitCounter, type BitStats, type QuantRecord, PACKED_FORMAT, PACKED_VERSION, QUANT_FILE, copyAuxFiles, layoutRecord,
  packedEntries, writePackedConfig, checkpointBytes, exportFakeQuant,
} from './format.js';

export interface ModelQuantOpts extends QuantOpts {
  /** GPTQ calibration text file, number of windows, window length, seed */
  calib?: string;
  calibSamples?: number;
  seq?: number;
  seed?: number;
  /** GPTQ: already tokenized calibration windows (instead of --calib) */
  calibWindows?: Int32Array[];
  /** GPTQ: quantize q/k/v, o, gate/up, down in turn, each seeing the earlier ones quantized */
  trueSequential?: boolean;
  /** GPTQ forward batch (windows per forward) */
  calibBatch?: number;
  exportFakeQuant?: string;
  /**
   * 'cuda': GPTQ's Hessians and solves on the GPU (gptqEngine, default requireGptqEngine()), and its calibration
   * forward too unless calibForward is 'cpu'. Methods outside GPU_QUANT_METHODS run on the CPU (or through weightQuantizer).
   */
  device?: 'cpu' | 'cuda';
  gptqEngine?: GptqEngine;
  /**
   * GPTQ with device 'cuda': where the layer-by-layer calibration forward runs. 'cuda' (default): the GPU engine
   * (gpuEngine, default requireGpu(); it must be the same object as the GPTQ engine), bf16 activations; 'cpu': the CPU
   * model in f32, its rows sent to the GPU Hessians.
   */
  calibForward?: 'cpu' | 'cuda';
  gpuEngine?: GpuEngine;
  /** GPTQ: filled with the seconds of its stages (adds a device sync between stages). */
  gptqTimings?: GptqModelTimings;
  /** rtn/nf/icq: the per-weight quantizer (default quantizeWeight on the CPU); the hook for GPU quantizers. */
  weightQuantizer?: (W: Float32Array, out: number, inF: number, opts: QuantOpts, ctx: QuantContext) => PackedTensor;
}

/** Methods that quantizeModel runs on the GPU with device 'cuda'. */
export const GPU_QUANT_METHODS: ReadonlySet<QuantMethod> = new Set<QuantMethod>(['gptq']);

export interface QuantizeStats {
  method: QuantOpts['method'];
  bits: number;
  groupSize: number;
  doubleQuant: boolean;
  bitStats: BitStats;
  /** ICQ: mean per-block code entropy of plain NF/RTN codes vs ICQ codes */
  icq?: { entropyBefore: number; entropyAfter: number; blocks: number };
  /** GPTQ: summed GPTQ loss, calibration tokens, where the calibration forward ran */
  gptq?: { loss: number; tokens: number; forward: 'cpu' | 'cuda' };
  /** 'cuda' when device was 'cuda' and the GPU paths ran (GPTQ, or the other methods through a weightQuantizer) */
  device: 'cpu' | 'cuda';
  seconds: number;
  outDir: string;
}

export type QuantProgress = (done: number, total: number, what: string) => void;

function checkOpts(o: ModelQuantOpts): void {
  if (!['rtn', 'nf', 'icq', 'gptq'].includes(o.method)) throw new LowbitError(`unknown quantization method '${o.method}' (known: rtn, nf, icq, gptq)`);
  const nfLike = o.method === 'nf' || (o.method === 'icq' && (o.icqMode ?? 'nf') === 'nf');
  const okBits = nfLike ? [2, 3, 4] : [2, 3, 4, 8];
  if (!okBits.includes(o.bits)) throw new LowbitError(`--bits ${o.bits} is not supported by ${o.method}${o.method === 'icq' ? `-${o.icqMode ?? 'nf'}` : ''} (choose ${okBits.join(', ')})`);
  if (o.groupSize !== undefined && o.groupSize > 0 && !nfLike && ![32, 64, 128].includes(o.groupSize)) {
    // any positive size works; the documented ones are 32/64/128 or per-channel (-1)
  }
  if (o.doubleQuant && !nfLike) throw new LowbitError(`--double-quant applies to the NormalFloat methods (nf, icq), not ${o.method}`);
  if (o.method === 'gptq' && !o.calib && !o.calibWindows) throw new LowbitError('gptq needs --calib FILE (calibration text)');
}

export async function quantizeModel(srcDir: string, outDir: string, opts: ModelQuantOpts, progress?: QuantProgress): Promise<QuantizeStats> {
  const t0 = Date.now();
  checkOpts(opts);
  if (!existsSync(join(srcDir, 'config.json'))) throw new LowbitError(`${srcDir}: no config.json (not a HF model directory)`);
  if (existsSync(join(srcDir, QUANT_FILE))) throw new LowbitError(`${srcDir}: is already a packed (quantized) directory`);
  const config = loadHfConfig(join(srcDir, 'config.json'));
  const store = openTensorStore(srcDir);
  const nfLike = opts.method === 'nf' || (opts.method === 'icq' && (opts.icqMode ?? 'nf') === 'nf');
  const group = opts.groupSize === undefined ? 64 : opts.groupSize;
  const qopts: QuantOpts = { ...opts, groupSize: group };
  mkdirSync(outDir, { recursive: true });
  const counter = new BitCounter();
  counter.originalBytes = checkpointBytes(store);
  const icqStats: IcqStats = { entropyBefore: 0, entropyAfter: 0, blocks: 0 };
  const gptqLoss = { sum: 0 };
  const record: QuantRecord = {
    format: PACKED_FORMAT, version: PACKED_VERSION, method: opts.method, bits: opts.bits, group_size: group,
    double_quant: nfLike && !!opts.doubleQuant, tensors: {},
  };
  if (opts.method === 'icq') record.icq_mode = opts.icqMode ?? 'nf';
  const writer = new SafetensorsWriter(join(outDir, SINGLE_FILE), { metadata: { format: 'lowbit-packed' } });
  const total = config.numLayers * PROJECTIONS.length;
  let done = 0;
  let gptqTokens = 0;
  let gptqForward: 'cpu' | 'cuda' = 'cpu';
  try {
    const quantNames = new Set<string>();
    for (let l = 0; l < config.numLayers; l++) for (const p of PROJECTIONS) quantNames.add(`${projectionPath(l, p)}.weight`);
    // non-quantized tensors, in their source dtype
    for (const name of store.names()) {
      if (quantNames.has(name)) continue;
      const r = store.readTensorRaw(name);
      writer.add(name, r.dtype, r.shape, r.data);
      counter.otherParams += r.data.length;
    }
    const emit = (l: number, p: Projection, t: PackedTensor) => {
      const path = projectionPath(l, p);
      for (const e of packedEntries(path, t)) writer.add(e.name, e.dtype, e.shape, e.data);
      record.tensors[path] = layoutRecord(t);
      counter.addPacked(t);
      progress?.(++done, total, path);
    };
    if (opts.method !== 'gptq') {
      for (let l = 0; l < config.numLayers; l++) for (const p of PROJECTIONS) {
        const s = projectionShape(config, p), name = `${projectionPath(l, p)}.weight`;
        if (!store.has(name)) throw fileError(store.source, `missing tensor '${name}'`);
        const W = store.readTensorF32(name);
        if (W.length !== s.out * s.in) throw fileError(store.source, `tensor '${name}' has ${W.length} values, expected [${s.out}, ${s.in}]`);
        emit(l, p, (opts.weightQuantizer ?? quantizeWeight)(W, s.out, s.in, qopts, { icqStats }));
      }
    } else {
      const r = await runGptq(config, store, srcDir, opts, qopts, emit, gptqLoss);
      gptqTokens = r.tokens;
      gptqForward = r.forward;
      record.gptq = {
        calib: opts.calib ?? '(windows)', samples: opts.calibWindows?.length ?? opts.calibSamples ?? 128, seq: opts.calibWindows?.[0].length ?? opts.seq ?? 256, seed: opts.seed ?? 0,
        percdamp: opts.percdamp ?? 0.01, act_order: !!opts.actOrder, static_groups: !!opts.staticGroups, true_sequential: !!opts.trueSequential,
      };
    }
    counter.packedBytes = writer.dataBytes;
    writer.finish();
  } catch (e) {
    writer.abort();
    throw e;
  } finally { store.close(); }
  const bitStats = counter.result();
  record.stats = bitStats;
  copyAuxFiles(srcDir, outDir);
  writePackedConfig(srcDir, outDir, record);
  writeFileSync(join(outDir, QUANT_FILE), JSON.stringify(record, null, 1) + '\n');
  if (opts.exportFakeQuant) exportFakeQuant(outDir, opts.exportFakeQuant);
  const stats: QuantizeStats = {
    method: opts.method, bits: opts.bits, groupSize: group, doubleQuant: record.double_quant, bitStats,
    device: opts.device === 'cuda' && (opts.method === 'gptq' || opts.weightQuantizer) ? 'cuda' : 'cpu', seconds: (Date.now() - t0) / 1000, outDir,
  };
  if (opts.method === 'icq' && icqStats.blocks > 0) {
    stats.icq = { entropyBefore: icqStats.entropyBefore / icqStats.blocks, entropyAfter: icqStats.entropyAfter / icqStats.blocks, blocks: icqStats.blocks };
  }
  if (opts.method === 'gptq') stats.gptq = { loss: gptqLoss.sum, tokens: gptqTokens, forward: gptqForward };
  return stats;
}

/** GPTQ calibration windows: whole file tokenized (no BOS), seeded random start offsets. */
export function calibrationWindows(tokDir: string, file: string, samples: number, seq: number, seed: number): Int32Array[] {
  if (!existsSync(file)) throw new LowbitError(`${file}: calibration file not found`);
  const tok = loadTokenizer(tokDir);
  const ids = tok.encode(readFileSync(file, 'utf8'));
  return randomWindows(ids, seq, samples, seed, file);
}

/** Seconds of GPTQ's stages (ModelQuantOpts.gptqTimings; filled with a device sync between stages on the GPU). */
export interface GptqModelTimings { setup: number; hessians: number; solves: number; advance: number }

/** The layer-by-layer calibration forward GPTQ runs on: the CPU model, or the GPU engine (GpuCalibration). */
interface CalibForward {
  /** Start layer l (the GPU path uploads its weights). */
  beginLayer(l: number): void;
  /** Layer l's FP weight of p, [out, in]. */
  weight(l: number, p: Projection): Arr;
  /** Every batch through layer l as it now is, each group's input rows added to acc (keyed by the group's first projection). */
  accumulate(l: number, acc: Map<Projection, HessianAccumulator | GpuHessian>): void;
  /** Layer l's projection p is now the packed tensor t. */
  setQuantized(l: number, p: Projection, t: PackedTensor): void;
  /** The outputs of layer l (quantized) become the inputs of layer l+1. */
  advance(l: number): void;
  free(): void;
}

function cpuCalibForward(config: LlamaConfig, store: TensorStore, windows: Int32Array[], B: number): CalibForward {
  const seq = windows[0].length, nb = windows.length / B;
  const weights = LlamaWeights.fromTensors(config, (name) => {
    if (!store.has(name)) throw fileError(store.source, `missing tensor '${name}'`);
    return store.readTensorF32(name);
  });
  const model = new LlamaModel(weights);
  // inputs of the current layer, per batch
  const inps: Float32Array[] = [];
  model.prepare(B, seq, false);
  for (let b = 0; b < nb; b++) {
    const ids = new Int32Array(B * seq);
    for (let i = 0; i < B; i++) ids.set(windows[b * B + i], i * seq);
    inps.push(Float32Array.from(model.embed(ids, B, seq) as Float32Array));
  }
  return {
    beginLayer() { /* the whole model is on the host */ },
    weight: (l, p) => (weights.linearAt(l, p) as unknown as { dense(): Arr }).dense(),
    accumulate(l, acc) {
      const hooks = { onLinearInput(_l: number, p: Projection, x: Arr, rows: number) { acc.get(p)?.add(x, rows); } };
      for (let b = 0; b < nb; b++) model.forwardLayer(l, inps[b], B, seq, hooks);
    },
    setQuantized(l, p, t) { weights.setLinear(l, p, new PackedLinear(t, projectionPath(l, p))); },
    advance(l) { for (let b = 0; b < nb; b++) inps[b].set(model.forwardLayer(l, inps[b], B, seq).subarray(0, inps[b].length)); },
    free() { /* host memory */ },
  };
}

function gpuCalibForward(eng: CalibEngine, config: LlamaConfig, store: TensorStore, windows: Int32Array[], B: number): CalibForward {
  const read = (name: string, n: number): Float32Array => {
    if (!store.has(name)) throw fileError(store.source, `missing tensor '${name}'`);
    const a = store.readTensorF32(name);
    if (a.length !== n) throw fileError(store.source, `tensor '${name}' has ${a.length} values, expected ${n}`);
    return a;
  };
  const D = config.hiddenSize;
  const cal = new GpuCalibration(eng, config, read('model.embed_tokens.weight', config.vocabSize * D), windows, B);
  let host: HostLayer | null = null;
  return {
    beginLayer(l) {
      const proj = {} as Record<Projection, Float32Array>;
      for (const p of PROJECTIONS) { const s = projectionShape(config, p); proj[p] = read(`${projectionPath(l, p)}.weight`, s.out * s.in); }
      host = {
        inputNorm: read(`model.layers.${l}.input_layernorm.weight`, D), postNorm: read(`model.layers.${l}.post_attention_layernorm.weight`, D), proj,
      };
      cal.loadLayer(host);
    },
    weight: (_l, p) => host!.proj[p],
    accumulate(_l, acc) {
      const hs = new Map<TapGroup, GpuHessian>();
      for (const [k, a] of acc) {
        if (!(a instanceof GpuHessian)) throw new Error('gptq: the GPU calibration forward feeds GPU Hessians only');
        hs.set(k as TapGroup, a);
      }
      cal.accumulate(hs);
    },
    setQuantized(_l, p, t) { cal.setQuantized(p, t); },
    advance() { cal.advance(); },
    free() { cal.free(); },
  };
}

async function runGptq(config: LlamaConfig, store: TensorStore, srcDir: string, opts: ModelQuantOpts, qopts: QuantOpts,
  emit: (l: number, p: Projection, t: PackedTensor) => void, loss: { sum: number }): Promise<{ tokens: number; forward: 'cpu' | 'cuda' }> {
  const windows = opts.calibWindows ?? calibrationWindows(srcDir, opts.calib!, opts.calibSamples ?? 128, opts.seq ?? 256, opts.seed ?? 0);
  const samples = windows.length, seq = windows[0].length;
  const eng = opts.device === 'cuda' ? (opts.gptqEngine ?? requireGptqEngine()) : null;
  let B = Math.min(opts.calibBatch ?? 4, samples);
  while (samples % B !== 0) B--;
  const tm = opts.gptqTimings;
  let t = performance.now();
  const lap = (k: keyof GptqModelTimings) => {
    if (!tm) return;
    eng?.cudaSync();
    const now = performance.now();
    tm[k] += (now - t) / 1000;
    t = now;
  };
  const onGpu = !!eng && (opts.calibForward ?? 'cuda') === 'cuda';
  let fwd: CalibForward;
  if (onGpu) {
    const g = opts.gpuEngine ?? requireGpu();
    if ((g as unknown) !== eng) throw new Error('gptq: the GPU calibration forward and GPTQ\'s kernels must run on one engine (gpuEngine = gptqEngine)');
    fwd = gpuCalibForward(eng as CalibEngine, config, store, windows, B);
  } else fwd = cpuCalibForward(config, store, windows, B);
  // GPTQ's `--true-sequential`: q/k/v, then o, then gate/up, then down, each with inputs from the projections
  // of this layer quantized before it; otherwise all 7 share one pass (GPTQ's default).
  const groups: Projection[][] = opts.trueSequential
    ? [['q_proj', 'k_proj', 'v_proj'], ['o_proj'], ['gate_proj', 'up_proj'], ['down_proj']]
    : [[...PROJECTIONS]];
  const inputOf: Record<Projection, Projection> = {
    q_proj: 'q_proj', k_proj: 'q_proj', v_proj: 'q_proj', o_proj: 'o_proj', gate_proj: 'gate_proj', up_proj: 'gate_proj', down_proj: 'down_proj',
  };
  try {
    lap('setup');
    for (let l = 0; l < config.numLayers; l++) {
      fwd.beginLayer(l);
      lap('setup');
      for (const group of groups) {
        const acc = new Map<Projection, HessianAccumulator | GpuHessian>();
        try {
          for (const p of group) {
            const n = projectionShape(config, p).in;
            if (!acc.has(inputOf[p])) acc.set(inputOf[p], eng ? new GpuHessian(eng, n) : new HessianAccumulator(n));
          }
          fwd.accumulate(l, acc);
          const H = new Map<Projection, Float64Array>();
          for (const [k, a] of acc) if (a instanceof HessianAccumulator) H.set(k, a.finalize());
          lap('hessians');
          for (const p of group) {
            const W = fwd.weight(l, p), s = projectionShape(config, p), a = acc.get(inputOf[p])!;
            let q: PackedTensor;
            if (a instanceof GpuHessian) {
              const r = quantizeGPTQGpu(eng!, W, s.out, s.in, a, qopts);
              loss.sum += r.loss;
              q = r.packed;
            } else q = quantizeWeight(W, s.out, s.in, qopts, { hessian: H.get(inputOf[p]), gptqLoss: loss });
            fwd.setQuantized(l, p, q);
            emit(l, p, q);
          }
          lap('solves');
        } finally {
          for (const a of acc.values()) if (a instanceof GpuHessian) a.free();
        }
      }
      // outputs of the quantized layer l = inputs of layer l+1
      fwd.advance(l);
      lap('advance');
      await new Promise((r) => setImmediate(r));
    }
  } finally { fwd.free(); }
  return { tokens: samples * seq, forward: onGpu ? 'cuda' : 'cpu' };
}
