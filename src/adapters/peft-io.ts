// PEFT LoRA directories: adapter_config.json + adapter_model.safetensors with keys
// base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_A.weight [r, in] / lora_B.weight [out, r]
// (metadata {"format": "pt"}), as HF PEFT saves and loads them (PeftModel.from_pretrained).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { LowbitError, fileError } from '../io/errors.js';
import { PROJECTIONS, type Projection, projectionShape } from '../model/config.js';
import type { LlamaWeights } from '../model/weights.js';
import { attachLora, loraSites, peftKey } from './lora.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export interface PeftConfig {
  peft_type: 'LORA';
  task_type: 'CAUSAL_LM';
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[];
  bias: 'none';
  fan_in_fan_out: false;
  use_rslora: boolean;
  use_dora: false;
  base_model_name_or_path: string | null;
  init_lora_weights: boolean | string;
  inference_mode: boolean;
  modules_to_save: null;
  layers_to_transform: number[] | null;
  layers_pattern: null;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  revision: null;
  [k: string]: unknown;
}

export interface SavePeftOptions {
  baseModel?: string | null;
  /** the init used; PEFT-incompatible values (svd, loftq, kaiming) are written as true (weights are explicit) */
  init?: string;
  dtype?: 'F32' | 'BF16' | 'F16';
  /** extra lowbit provenance stored in the safetensors metadata (strings) */
  metadata?: Record<string, string>;
}

/** Write adapter `name` of the model as a PEFT directory. Returns the config written. */
export function savePeftAdapter(dir: string, w: LlamaWeights, name: string, o: SavePeftOptions = {}): PeftConfig {
  const sites = loraSites(w, name);
  if (sites.length === 0) throw new Error(`savePeftAdapter: the model has no adapter '${name}'`);
  const a0 = sites[0].lin.get(name);
  for (const s of sites) {
    const a = s.lin.get(name);
    if (a.r !== a0.r || a.alpha !== a0.alpha || a.rslora !== a0.rslora) throw new Error('savePeftAdapter: mixed ranks/alphas are not supported');
  }
  const targets = PROJECTIONS.filter((p) => sites.some((s) => s.proj === p));
  const layers = [...new Set(sites.map((s) => s.layer))];
  const dtype = o.dtype ?? 'F32';
  const tensors: TensorToWrite[] = [];
  for (const s of sites) {
    const a = s.lin.get(name);
    const f32 = (x: ArrayLike<number>) => (x instanceof Float32Array ? x : Float32Array.from(x));
    tensors.push({ name: peftKey(s.layer, s.proj, 'A'), dtype, shape: [a.r, s.lin.inFeatures], data: f32(a.A) });
    tensors.push({ name: peftKey(s.layer, s.proj, 'B'), dtype, shape: [s.lin.outFeatures, a.r], data: f32(a.B) });
  }
  mkdirSync(dir, { recursive: true });
  const init = o.init === 'gaussian' ? 'gaussian' : true;
  const cfg: PeftConfig = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: a0.r, lora_alpha: a0.alpha, lora_dropout: 0,
    target_modules: targets, bias: 'none', fan_in_fan_out: false, use_rslora: a0.rslora, use_dora: false,
    base_model_name_or_path: o.baseModel ?? null, init_lora_weights: init, inference_mode: true,
    modules_to_save: null, layers_to_transform: layers.length === w.layers.length ? null : layers,
    layers_pattern: null, rank_pattern: {}, alpha_pattern: {}, revision: null,
  };
  writeSafetensors(join(dir, ADAPTER_WEIGHTS), tensors, { metadata: { format: 'pt', ...(o.metadata ?? {}) } });
  writeFileSync(join(dir, ADAPTER_CONFIG), JSON.stringify(cfg, null, 2) + '\n');
  return cfg;
}

export function readPeftConfig(dir: string): PeftConfig {
  const p = join(dir, ADAPTER_CONFIG);
  if (!existsSync(p)) throw fileError(p, `not found (is ${dir} a PEFT adapter directory?)`);
  let cfg: Record<string, unknown>;
  try { cfg = JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>; } catch (e) {
    throw fileError(p, `invalid JSON (${(e as Error).message})`);
  }
  if (cfg.peft_type !== 'LORA') throw fileError(p, `peft_type is ${JSON.stringify(cfg.peft_type)}, only LORA is supported`);
  if (!(typeof cfg.r === 'number' && Number.isInteger(cfg.r) && cfg.r > 0)) throw fileError(p, `r must be a positive integer, got ${JSON.stringify(cfg.r)}`);
  if (typeof cfg.lora_alpha !== 'number') throw fileError(p, `lora_alpha must be a number, got ${JSON.stringify(cfg.lora_alpha)}`);
  if (cfg.use_dora === true) throw fileError(p, 'use_dora is true; DoRA adapters are not supported');
  if (cfg.fan_in_fan_out === true) throw fileError(p, 'fan_in_fan_out is true; only nn.Linear layouts are supported');
  if (cfg.bias !== undefined && cfg.bias !== 'none') throw fileError(p, `bias is ${JSON.stringify(cfg.bias)}; only "none" is supported`);
  const rp = cfg.rank_pattern as Record<string, unknown> | undefined, ap = cfg.alpha_pattern as Record<string, unknown> | undefined;
  if ((rp && Object.keys(rp).length) || (ap && Object.keys(ap).length)) throw fileError(p, 'rank_pattern/alpha_pattern are not supported');
  return cfg as PeftConfig;
}

const KEY_RE = /^(?:base_model\.model\.)?model\.layers\.(\d+)\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.lora_(A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$/;

/**
 * Load a PEFT LoRA directory onto the model as adapter `name` (wrapping the target layers).
 * trainable=false freezes it (e.g. a compensation adapter under a new task adapter).
 */
export function loadPeftAdapter(dir: string, w: LlamaWeights, name: string, trainable = false): PeftConfig {
  const cfg = readPeftConfig(dir);
  const file = join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(file)) throw fileError(file, 'not found');
  const st = SafetensorsFile.open(file);
  try {
    const found = new Map<string, { layer: number; proj: Projection; A?: string; B?: string }>();
    for (const k of st.names()) {
      const m = KEY_RE.exec(k);
      if (!m) {
        if (k.includes('lora_')) throw fileError(file, `unrecognised adapter tensor '${k}'`);
        continue;
      }
      const layer = Number(m[1]), proj = m[3] as Projection, key = `${layer}.${proj}`;
      if (layer >= w.layers.length) throw fileError(file, `'${k}' is for layer ${layer}, the model has ${w.layers.length}`);
      const e = found.get(key) ?? { layer, proj };
      e[m[4] as 'A' | 'B'] = k;
      found.set(key, e);
    }
    if (found.size === 0) throw fileError(file, 'no lora_A/lora_B tensors found');
    const targets = PROJECTIONS.filter((p) => [...found.values()].some((e) => e.proj === p));
    // attach on the present sites only
    const spec = { r: cfg.r, alpha: cfg.lora_alpha, rslora: cfg.use_rslora === true };
    const sites = attachLora(w, name, spec, targets, trainable);
    for (const s of sites) {
      const e = found.get(`${s.layer}.${s.proj}`);
      const a = s.lin.get(name);
      if (!e) { s.lin.remove(name); if (s.lin.adapters.size === 0) w.setLinear(s.layer, s.proj, s.lin.base); continue; }
      if (!e.A || !e.B) throw fileError(file, `layer ${s.layer} ${s.proj} has lora_${e.A ? 'B' : 'A'} missing`);
      const sh = projectionShape(w.config, s.proj);
      const ia = st.info(e.A), ib = st.info(e.B);
      if (ia.shape.join() !== `${cfg.r},${sh.in}`) throw fileError(file, `${e.A} has shape [${ia.shape}], expected [${cfg.r}, ${sh.in}]`);
      if (ib.shape.join() !== `${sh.out},${cfg.r}`) throw fileError(file, `${e.B} has shape [${ib.shape}], expected [${sh.out}, ${cfg.r}]`);
      a.A.set(st.readTensorF32(e.A));
      a.B.set(st.readTensorF32(e.B));
    }
  } finally {
    st.close();
  }
  if (loraSites(w, name).length === 0) throw new LowbitError(`${dir}: adapter matched no layer of the model`);
  return cfg;
}
