// Opens what a user passes as --model: a plain HF directory or a lowbit packed directory, plus any
// number of PEFT adapters stacked on it by name (all frozen: this is the inference path).
import { openHfModelDir, readTensorChecked } from '../io/hf-dir.js';
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
  const d = openHfModelDir(dir);
  try {
    return { config: d.config, weights: LlamaWeights.fromTensors(d.config, (name, shape) => readTensorChecked(d.store, name, shape), precision) };
  } finally { d.close(); }
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
