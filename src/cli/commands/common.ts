// Options shared by the commands that load a model.
import type { OptionSpec, ParsedArgs } from '../args.js';
import { list, req, str } from '../args.js';
import { LowbitError } from '../../io/errors.js';
import { gpuEngine } from '../../model/gpu/engine.js';
import { loadModel, type LoadedModel } from '../../serve/load.js';

export const MODEL_OPTIONS: OptionSpec[] = [
  { name: 'model', help: 'model directory: HF (config.json + safetensors) or a lowbit packed directory' },
  { name: 'adapter', help: 'PEFT adapter directory to stack on the model', repeat: true },
];

export const JSON_OPTION: OptionSpec = { name: 'json', flag: true, help: 'print one JSON object as the last stdout line' };

export function loadFromArgs(a: ParsedArgs, cmd: string): LoadedModel {
  return loadModel(req(a, 'model', cmd), { adapters: list(a, 'adapter') });
}

export const DEVICE_OPTION: OptionSpec = {
  name: 'device', default: 'cpu',
  help: 'cpu | cuda (GPU engine: packed base on the device, bf16 activations) | auto (cuda when a usable GPU is present)',
};

/** --device resolved to cpu or cuda ('auto' picks cuda when the GPU engine is usable). */
export function deviceOf(a: ParsedArgs, cmd: string): 'cpu' | 'cuda' {
  const d = str(a, 'device') ?? 'cpu';
  if (d === 'auto') return gpuEngine() ? 'cuda' : 'cpu';
  if (d !== 'cpu' && d !== 'cuda') throw new LowbitError(`lowbit ${cmd}: --device must be cpu, cuda or auto, got '${d}'`);
  return d;
}
