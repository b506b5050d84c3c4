// Options shared by the commands that load a model.
import type { OptionSpec, ParsedArgs } from '../args.js';
import { list, req } from '../args.js';
import { loadModel, type LoadedModel } from '../../serve/load.js';

export const MODEL_OPTIONS: OptionSpec[] = [
  { name: 'model', help: 'model directory: HF (config.json + safetensors) or a lowbit packed directory' },
  { name: 'adapter', help: 'PEFT adapter directory to stack on the model', repeat: true },
];

export const JSON_OPTION: OptionSpec = { name: 'json', flag: true, help: 'print one JSON object as the last stdout line' };

export function loadFromArgs(a: ParsedArgs, cmd: string): LoadedModel {
  return loadModel(req(a, 'model', cmd), { adapters: list(a, 'adapter') });
}
