// The packed model directory:
//   config.json          the source HF config plus a `quantization_config` entry
//   tokenizer files etc. copied from the source directory
//   model.safetensors    non-quantized tensors in their source dtype (embeddings, norms, lm_head) and, per
//                        projection P = model.layers.{l}.{self_attn|mlp}.{q,k,v,o,gate,up,down}_proj:
//                          P.qcodes U8 [⌈out·in·bits/8⌉]   codes, pack.ts bit-stream layout, row-major over W[out,in]
//                          layout 'int': P.scales F16 [out, G], P.zeros F16 [out, G], P.g_idx I32 [in] (act-order)
//                          layout 'nf':  P.absmax F32 [nb]  or  P.absmax_q U8 [nb], P.absmax_scale F32 [⌈nb/256⌉],
//                                        P.absmax_offset F32 [1] (double quantization);
//                                        ICQ: P.tau_q U8 [nb], P.tau_scale F32 [⌈nb/256⌉]
//   quantization.json    { format, version, method, bits, group_size, double_quant, ..., tensors: { P: layout } }
// Loading reads only these packed arrays; a projection is dequantized when it is used (PackedLinear).
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LowbitError, fileError, readJsonFile } from '../io/errors.js';
import { loadHfConfig } from '../io/config.js';
import { openTensorStore, SafetensorsWriter, SINGLE_FILE, INDEX_FILE, type TensorStore, type Dtype, type RawArray } from '../io/safetensors.js';
import { f16ToF32Array } from '../io/halfs.js';
import { type LlamaConfig, PROJECTIONS, type Projection, projectionPath, projectionShape } from '../model/config.js';
import { LlamaWeights, type LayerWeights } from '../model/weights.js';
import { DenseLinear, type Linear } from '../model/linear.js';
import type { PackedTensor, QuantMethod, QuantLayout, QuantOpts } from './types.js';
import { QUANT_METHODS } from './types.js';
import { packedBytes } from './pack.js';
import { PackedLinear } from './packed-linear.js';
import { DQ_BLOCK } from './normalfloat.js';

export const QUANT_FILE = 'quantization.json';
export const PACKED_FORMAT = 'lowbit-packed';
export const PACKED_VERSION = 1;

/** Per-tensor layout record in quantization.json. */
export interface TensorLayoutRecord {
  layout: QuantLayout;
  method: QuantMethod;
  bits: number;
  shape: [number, number];
  group_size: number;
  double_quant?: boolean;
  act_order?: boolean;
  icq?: boolean;
}

export interface QuantRecord {
  format: typeof PACKED_FORMAT;
  version: number;
  method: QuantMethod;
  bits: number;
  group_size: number;
  double_quant: boolean;
  icq_mode?: 'nf' | 'int';
  gptq?: { calib: string; samples: number; seq: number; seed: number; percdamp: number; act_order: boolean; static_groups: boolean; true_sequential?: boolean };
  tensors: Record<string, TensorLayoutRecord>;
  stats?: BitStats;
}

// ------------------------------------------------------------------------------------------------
// Bit accounting

export interface BitStats {
  /** parameters in the quantized projections */
  quantizedParams: number;
  /** parameters kept in original precision (embeddings, norms, lm_head) */
  otherParams: number;
  codeBits: number;
  metaBits: number;
  /** bits per quantized weight: codes alone, and codes + scales/zeros/absmax/τ/g_idx */
  bitsPerWeightCodes: number;
  bitsPerWeightAll: number;
  /** tensor-data bytes of the packed model and of the source checkpoint */
  packedBytes: number;
  originalBytes: number;
  /** packed / original */
  sizeRatio: number;
}

/** Bits of metadata a packed tensor stores. */
export function metadataBits(p: PackedTensor): number {
  const n = p.out * p.in;
  if (p.layout === 'int') {
    const groups = p.out * Math.ceil(p.in / p.groupSize);
    return groups * 32 + (p.gIdx ? 32 * p.in : 0);
  }
  const nb = Math.ceil(n / p.groupSize), nd = Math.ceil(nb / DQ_BLOCK);
  let b = p.absmax ? 32 * nb : 8 * nb + 32 * nd + 32;
  if (p.tauQ) b += 8 * nb + 32 * nd;
  return b;
}

export function codeBits(p: PackedTensor): number { return p.bits * p.out * p.in; }

export class BitCounter {
  quantizedParams = 0; otherParams = 0; codeBits = 0; metaBits = 0; packedBytes = 0; originalBytes = 0;
  addPacked(p: PackedTensor): void {
    this.quantizedParams += p.out * p.in; this.codeBits += codeBits(p); this.metaBits += metadataBits(p);
  }
  result(): BitStats {
    const q = Math.max(1, this.quantizedParams);
    return {
      quantizedParams: this.quantizedParams, otherParams: this.otherParams, codeBits: this.codeBits, metaBits: this.metaBits,
      bitsPerWeightCodes: this.codeBits / q, bitsPerWeightAll: (this.codeBits + this.metaBits) / q,
      packedBytes: this.packedBytes, originalBytes: this.originalBytes,
      sizeRatio: this.originalBytes > 0 ? this.packedBytes / this.originalBytes : NaN,
    };
  }
}

export function formatBitStats(s: BitStats): string {
  const mb = (b: number) => (b / 2 ** 20).toFixed(b < 2 ** 20 ? 3 : 2);
  return [
    `bits/weight (quantized projections, ${s.quantizedParams} params): codes ${s.bitsPerWeightCodes.toFixed(3)}, with metadata ${s.bitsPerWeightAll.toFixed(3)}`,
    `model size: ${mb(s.packedBytes)} MiB packed vs ${mb(s.originalBytes)} MiB original (${(100 * s.sizeRatio).toFixed(1)}%; ${s.otherParams} params kept in original precision)`,
  ].join('\n');
}

// ------------------------------------------------------------------------------------------------
// Packed tensors ↔ safetensors entries

export interface Entry { name: string; dtype: Dtype; shape: number[]; data: RawArray }

export function layoutRecord(p: PackedTensor): TensorLayoutRecord {
  const r: TensorLayoutRecord = { layout: p.layout, method: p.method, bits: p.bits, shape: [p.out, p.in], group_size: p.groupSize };
  if (p.layout === 'nf') r.double_quant = !p.absmax;
  if (p.gIdx) r.act_order = true;
  if (p.tauQ) r.icq = true;
  return r;
}

/** The safetensors entries of one packed projection (path = HF module path without '.weight'). */
export function packedEntries(path: string, p: PackedTensor): Entry[] {
  const e: Entry[] = [{ name: `${path}.qcodes`, dtype: 'U8', shape: [p.qcodes.length], data: p.qcodes }];
  if (p.layout === 'int') {
    const G = Math.ceil(p.in / p.groupSize);
    e.push({ name: `${path}.scales`, dtype: 'F16', shape: [p.out, G], data: p.scales! });
    e.push({ name: `${path}.zeros`, dtype: 'F16', shape: [p.out, G], data: p.zeros! });
    if (p.gIdx) e.push({ name: `${path}.g_idx`, dtype: 'I32', shape: [p.in], data: p.gIdx });
  } else {
    if (p.absmax) e.push({ name: `${path}.absmax`, dtype: 'F32', shape: [p.absmax.length], data: p.absmax });
    else {
      e.push({ name: `${path}.absmax_q`, dtype: 'U8', shape: [p.absmaxQ!.length], data: p.absmaxQ! });
      e.push({ name: `${path}.absmax_scale`, dtype: 'F32', shape: [p.absmaxScale!.length], data: p.absmaxScale! });
      e.push({ name: `${path}.absmax_offset`, dtype: 'F32', shape: [1], data: Float32Array.of(p.absmaxOffset!) });
    }
    if (p.tauQ) {
      e.push({ name: `${path}.tau_q`, dtype: 'U8', shape: [p.tauQ.length], data: p.tauQ });
      e.push({ name: `${path}.tau_scale`, dtype: 'F32', shape: [p.tauScale!.length], data: p.tauScale! });
    }
  }
  return e;
}

const SUFFIXES = ['qcodes', 'scales', 'zeros', 'g_idx', 'absmax', 'absmax_q', 'absmax_scale', 'absmax_offset', 'tau_q', 'tau_scale'];

/** Read and validate one packed projection. Every problem is a one-line LowbitError naming file and tensor. */
export function readPackedTensor(store: TensorStore, file: string, path: string, rec: TensorLayoutRecord,
  expect?: { out: number; in: number }): PackedTensor {
  const qerr = (msg: string) => fileError(file, `${path}: ${msg}`);
  const recFile = QUANT_FILE;
  const rerr = (msg: string) => fileError(recFile, `${path}: ${msg}`);
  if (typeof rec !== 'object' || rec === null) throw rerr('layout entry is not an object');
  if (!QUANT_METHODS.includes(rec.method)) throw rerr(`unknown method ${JSON.stringify(rec.method)} (known: ${QUANT_METHODS.join(', ')})`);
  if (rec.layout !== 'int' && rec.layout !== 'nf') throw rerr(`unknown layout ${JSON.stringify(rec.layout)} (known: int, nf)`);
  if (!Number.isInteger(rec.bits) || rec.bits < 1 || rec.bits > 8 || (rec.layout === 'nf' && rec.bits < 2)) throw rerr(`invalid bits ${JSON.stringify(rec.bits)}`);
  if (!Array.isArray(rec.shape) || rec.shape.length !== 2 || !rec.shape.every((d) => Number.isInteger(d) && d > 0)) throw rerr(`invalid shape ${JSON.stringify(rec.shape)}`);
  const [out, inF] = rec.shape;
  if (expect && (out !== expect.out || inF !== expect.in)) throw rerr(`shape [${out}, ${inF}] does not match the config's [${expect.out}, ${expect.in}]`);
  const g = rec.group_size;
  if (!Number.isInteger(g) || g < 1 || (rec.layout === 'int' && g > inF)) throw rerr(`invalid group_size ${JSON.stringify(g)}`);
  const n = out * inF;
  const get = (suffix: string, dtype: Dtype, len: number, why: string): RawArray => {
    const name = `${path}.${suffix}`;
    if (!store.has(name)) throw qerr(`missing tensor '${name}' (${why})`);
    const info = store.info(name);
    if (info.dtype !== dtype) throw qerr(`tensor '${name}' is ${info.dtype}, expected ${dtype}`);
    const cnt = info.shape.reduce((a, b) => a * b, 1);
    if (cnt !== len) throw qerr(`tensor '${name}' has ${cnt} values, expected ${len} (${why})`);
    return store.readTensorRaw(name).data;
  };
  const what = `${rec.method} ${rec.bits}-bit, ${rec.layout} layout, group ${g}, shape [${out}, ${inF}]`;
  const qcodes = get('qcodes', 'U8', packedBytes(n, rec.bits), `packed codes of ${what}`) as Uint8Array;
  const p: PackedTensor = { method: rec.method, layout: rec.layout, bits: rec.bits, out, in: inF, groupSize: g, qcodes };
  if (rec.layout === 'int') {
    const G = Math.ceil(inF / g), M = 2 ** rec.bits - 1;
    p.scales = f16ToF32Array(get('scales', 'F16', out * G, `scales of ${what}`) as Uint16Array);
    p.zeros = f16ToF32Array(get('zeros', 'F16', out * G, `zeros of ${what}`) as Uint16Array);
    for (let i = 0; i < p.scales.length; i++) if (!Number.isFinite(p.scales[i])) throw qerr(`tensor '${path}.scales' holds a non-finite value at ${i}`);
    for (let i = 0; i < p.zeros.length; i++) {
      const z = p.zeros[i];
      if (!(Number.isInteger(z) && z >= 0 && z <= M)) throw qerr(`tensor '${path}.zeros' holds ${z} at ${i}, not an integer in [0, ${M}]`);
    }
    if (rec.act_order) {
      const gi = get('g_idx', 'I32', inF, `act-order group index of ${what}`) as Int32Array;
      for (let i = 0; i < inF; i++) if (!(gi[i] >= 0 && gi[i] < G)) throw qerr(`tensor '${path}.g_idx' holds ${gi[i]} at ${i}, outside [0, ${G})`);
      p.gIdx = gi;
    }
  } else {
    const nb = Math.ceil(n / g), nd = Math.ceil(nb / DQ_BLOCK);
    if (rec.double_quant) {
      p.absmaxQ = get('absmax_q', 'U8', nb, `double-quantized absmax of ${what}`) as Uint8Array;
      p.absmaxScale = get('absmax_scale', 'F32', nd, `double-quant scales of ${what}`) as Float32Array;
      p.absmaxOffset = (get('absmax_offset', 'F32', 1, 'double-quant offset') as Float32Array)[0];
    } else p.absmax = get('absmax', 'F32', nb, `absmax of ${what}`) as Float32Array;
    if (rec.icq || rec.method === 'icq') {
      p.tauQ = get('tau_q', 'U8', nb, `ICQ shifts of ${what}`) as Uint8Array;
      p.tauScale = get('tau_scale', 'F32', nd, `ICQ shift scales of ${what}`) as Float32Array;
    }
  }
  return p;
}

// ------------------------------------------------------------------------------------------------
// Directory

export function isPackedDir(dir: string): boolean {
  return existsSync(join(dir, QUANT_FILE));
}


export function readQuantRecord(dir: string): QuantRecord {
  const file = join(dir, QUANT_FILE);
  const r = readJsonFile(file) as Partial<QuantRecord> | null;
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw fileError(file, 'is not a JSON object');
  if (r.format !== PACKED_FORMAT) throw fileError(file, `format is ${JSON.stringify(r.format)}, expected "${PACKED_FORMAT}"`);
  if (r.version !== PACKED_VERSION) throw fileError(file, `version ${JSON.stringify(r.version)} is not supported (this build reads ${PACKED_VERSION})`);
  if (!QUANT_METHODS.includes(r.method as QuantMethod)) throw fileError(file, `unknown method ${JSON.stringify(r.method)} (known: ${QUANT_METHODS.join(', ')})`);
  if (!Number.isInteger(r.bits) || r.bits! < 1 || r.bits! > 8) throw fileError(file, `invalid bits ${JSON.stringify(r.bits)}`);
  if (typeof r.tensors !== 'object' || r.tensors === null || Array.isArray(r.tensors)) throw fileError(file, `has no 'tensors' object`);
  return r as QuantRecord;
}

export interface PackedModel {
  config: LlamaConfig;
  weights: LlamaWeights;
  record: QuantRecord;
  packed: Map<string, PackedTensor>;
}

/** Load a packed directory: LlamaWeights whose projections are PackedLinear (nothing is dequantized yet). */
export function loadPackedModel(dir: string): PackedModel {
  if (!existsSync(dir)) throw new LowbitError(`${dir}: no such model directory`);
  const record = readQuantRecord(dir);
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) throw new LowbitError(`${dir}: no config.json (not a packed model directory)`);
  const config = loadHfConfig(cfgPath);
  const cfgJson = readJsonFile(cfgPath) as { quantization_config?: { method?: unknown } };
  if (cfgJson.quantization_config?.method !== undefined && cfgJson.quantization_config.method !== record.method) {
    throw fileError(cfgPath, `quantization_config.method ${JSON.stringify(cfgJson.quantization_config.method)} disagrees with ${QUANT_FILE}'s ${JSON.stringify(record.method)}`);
  }
  const store = openTensorStore(dir);
  const file = store.source;
  try {
    const dense = (name: string, shape: number[]): Float32Array => {
      if (!store.has(name)) throw fileError(file, `missing tensor '${name}'`);
      const s = store.info(name).shape;
      if (s.length !== shape.length || s.some((d, i) => d !== shape[i])) throw fileError(file, `tensor '${name}' has shape [${s.join(', ')}], expected [${shape.join(', ')}]`);
      return store.readTensorF32(name);
    };
    const packed = new Map<string, PackedTensor>();
    const known = new Set<string>();
    for (let l = 0; l < config.numLayers; l++) for (const p of PROJECTIONS) known.add(projectionPath(l, p));
    for (const k of Object.keys(record.tensors)) if (!known.has(k)) throw fileError(join(dir, QUANT_FILE), `tensor entry '${k}' is not a projection of this ${config.numLayers}-layer model`);
    const { vocabSize: V, hiddenSize: D } = config;
    const embed = dense('model.embed_tokens.weight', [V, D]);
    const layers: LayerWeights[] = [];
    for (let l = 0; l < config.numLayers; l++) {
      const lin = (p: Projection): Linear => {
        const path = projectionPath(l, p), shape = projectionShape(config, p);
        const rec = record.tensors[path];
        if (!rec) {
          if (store.has(`${path}.weight`)) return new DenseLinear(dense(`${path}.weight`, [shape.out, shape.in]), shape.out, shape.in);
          throw fileError(join(dir, QUANT_FILE), `no layout entry for '${path}' and no dense '${path}.weight' in ${SINGLE_FILE}`);
        }
        const t = readPackedTensor(store, file, path, rec, shape);
        packed.set(path, t);
        return new PackedLinear(t, path);
      };
      layers.push({
        inputNorm: dense(`model.layers.${l}.input_layernorm.weight`, [D]),
        q: lin('q_proj'), k: lin('k_proj'), v: lin('v_proj'), o: lin('o_proj'),
        postNorm: dense(`model.layers.${l}.post_attention_layernorm.weight`, [D]),
        gate: lin('gate_proj'), up: lin('up_proj'), down: lin('down_proj'),
      });
    }
    const finalNorm = dense('model.norm.weight', [D]);
    const lmHead = new DenseLinear(config.tieWordEmbeddings ? embed : dense('lm_head.weight', [V, D]), V, D);
    const weights = new LlamaWeights(config, 'f32', embed, layers, finalNorm, lmHead);
    return { config, weights, record, packed };
  } finally { store.close(); }
}

/** What src/serve/load.ts uses. */
export function loadPackedWeights(dir: string): { config: LlamaConfig; weights: LlamaWeights } {
  const m = loadPackedModel(dir);
  return { config: m.config, weights: m.weights };
}

/** Copy the non-weight files of an HF directory (tokenizer, generation config, …). */
export function copyAuxFiles(src: string, dst: string, skip: string[] = []): string[] {
  const copied: string[] = [];
  const never = new Set([SINGLE_FILE, INDEX_FILE, 'config.json', QUANT_FILE, ...skip]);
  for (const f of readdirSync(src)) {
    if (never.has(f) || f.endsWith('.safetensors') || f.endsWith('.partial') || f.endsWith('.bin') || f.endsWith('.pt')) continue;
    const p = join(src, f);
    if (!statSync(p).isFile()) continue;
    copyFileSync(p, join(dst, f));
    copied.push(f);
  }
  return copied;
}

/** Write the packed directory's config.json: the source config with a quantization_config entry. */
export function writePackedConfig(srcDir: string, outDir: string, record: QuantRecord): void {
  const cfg = readJsonFile(join(srcDir, 'config.json')) as Record<string, unknown>;
  cfg.quantization_config = {
    quant_method: 'lowbit', format: PACKED_FORMAT, method: record.method, bits: record.bits,
    group_size: record.group_size, double_quant: record.double_quant, ...(record.icq_mode ? { icq_mode: record.icq_mode } : {}),
  };
  writeFileSync(join(outDir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
}

/** Sum of tensor-data bytes of a checkpoint. */
export function checkpointBytes(store: TensorStore): number {
  let b = 0;
  for (const n of store.names()) { const i = store.info(n); b += i.end - i.begin; }
  return b;
}

/**
 * `--export-fake-quant`: a plain HF directory whose projection weights hold the dequantized values
 * (all tensors written in `dtype`, bf16 by default; config.json without quantization_config).
 */
export function exportFakeQuant(packedDir: string, outDir: string, dtype: 'BF16' | 'F32' | 'F16' = 'BF16'): void {
  const m = loadPackedModel(packedDir);
  if (resolve(packedDir) === resolve(outDir)) throw new LowbitError(`${outDir}: fake-quant export must go to a different directory`);
  mkdirSync(outDir, { recursive: true });
  copyAuxFiles(packedDir, outDir);
  const cfg = readJsonFile(join(packedDir, 'config.json')) as Record<string, unknown>;
  delete cfg.quantization_config;
  cfg.torch_dtype = dtype === 'BF16' ? 'bfloat16' : dtype === 'F16' ? 'float16' : 'float32';
  writeFileSync(join(outDir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
  const w = new SafetensorsWriter(join(outDir, SINGLE_FILE), { metadata: { format: 'pt' } });
  try {
    for (const [name, data, shape] of m.weights.toTensors()) w.add(name, dtype, shape, data);
  } catch (e) { w.abort(); throw e; }
  w.finish();
}

export type { QuantOpts };
