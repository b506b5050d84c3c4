// Opens what a user passes as --model: a plain HF directory or a lowbit packed directory, plus any
// number of PEFT adapters stacked on it by name (all frozen: this is the inference path).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LowbitError } from '../io/errors.js';
import { loadHfConfig } from '../io/config.js';
import { openTensorStore, SINGLE_FILE, INDEX_FILE } from '../io/safetensors.js';
import { checkTensorShape } from '../io/hf-dir.js';
import type { LlamaConfig } from '../model/config.js';
import { LlamaModel, LlamaWeights } from '../model/llama.js';
import type { Precision } from '../tensor.js';
import { loadPeftAdapter } from '../adapters/peft-io.js';
import { isPackedDir, loadPackedWeights } from '../quant/format.js';

export interface LoadedModel {
  dir: string;
  kind: 'hf' | 'packed';
  config: LlamaConfig;
  weights: LlamaWeights;
  model: LlamaModel;
  adapters: string[];
}

/** Dense weights of an HF directory (float32 in memory whatever the file dtype). */
export function loadHfWeights(dir: string, precision: Precision = 'f32'): { config: LlamaConfig; weights: LlamaWeights } {
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(dir)) throw new LowbitError(`${dir}: no such model directory`);
  if (!existsSync(cfgPath)) throw new LowbitError(`${dir}: no config.json (not a HF model directory)`);
  const config = loadHfConfig(cfgPath);
  const wpath = existsSync(join(dir, INDEX_FILE)) ? join(dir, INDEX_FILE) : join(dir, SINGLE_FILE);
  if (!existsSync(wpath)) throw new LowbitError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`);
  const store = openTensorStore(wpath);
  try {
    const weights = LlamaWeights.fromTensors(config, (name, shape) => {
      if (!store.has(name)) throw new LowbitError(`${store.source}: missing tensor '${name}'`);
      checkTensorShape(store.source, name, store.info(name).shape, shape);
      return store.readTensorF32(name);
    }, precision);
    return { config, weights };
  } finally { store.close(); }
}

export interface LoadOptions { adapters?: string[]; precision?: Precision }

export function loadModel(dir: string, o: LoadOptions = {}): LoadedModel {
  const packed = isPackedDir(dir);
  const { config, weights } = packed ? loadPackedWeights(dir) : loadHfWeights(dir, o.precision);
  const names: string[] = [];
  (o.adapters ?? []).forEach((a, i) => {
    const name = `adapter${i}`;
    loadPeftAdapter(a, weights, name, false);
    names.push(name);
  });
  return { dir, kind: packed ? 'packed' : 'hf', config, weights, model: new LlamaModel(weights), adapters: names };
}
