// Options shared by the commands that load a model.
import type { OptionSpec, ParsedArgs } from '../args.js';
import { list, req, str } from '../args.js';
import { LowbitError } from '../../io/errors.js';
import { loadModel, type LoadedModel } from '../../serve/load.js';

export const MODEL_OPTIONS: OptionSpec[] = [
  { name: 'model', help: 'model directory: HF (config.json + safetensors) or a lowbit packed directory' },
  { name: 'adapter', help: 'PEFT adapter directory to stack on the model', repeat: true },
];

export const JSON_OPTION: OptionSpec = { name: 'json', flag: true, help: 'print one JSON object as the last stdout line' };

export function loadFromArgs(a: ParsedArgs, cmd: string): LoadedModel {
  return loadModel(req(a, 'model', cmd), { adapters: list(a, 'adapter') });
}

export const DEVICE_OPTION: OptionSpec = { name: 'device', help: 'cpu | cuda (GPU engine: packed base on the device, bf16 activations)', default: 'cpu' };

export function deviceOf(a: ParsedArgs, cmd: string): 'cpu' | 'cuda' {
  const d = str(a, 'device') ?? 'cpu';
  if (d !== 'cpu' && d !== 'cuda') throw new LowbitError(`lowbit ${cmd}: --device must be cpu or cuda, got '${d}'`);
  return d;
}
