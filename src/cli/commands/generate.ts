// `lowbit generate`: KV-cached sampling, streamed to stdout as the tokens come.
import type { CommandSpec } from '../args.js';
import { flag, int, num, req } from '../args.js';
import { loadTokenizer } from '../../io/tokenizer.js';
import { streamTokens } from '../../model/generate.js';
import { makeOut } from '../output.js';
import { DEVICE_OPTION, JSON_OPTION, MODEL_OPTIONS, deviceOf, loadFromArgs } from './common.js';
import { requireGpu } from '../../model/gpu/engine.js';
import { gpuModelFromHost } from '../../model/gpu/from-host.js';
import { GpuDecoder, streamTokensGpu } from '../../model/gpu/gpu-decode.js';

export const command: CommandSpec = {
  name: 'generate',
  summary: 'generate text, streaming',
  usage: 'lowbit generate --model DIR [--adapter DIR]… --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P] [--seed S]',
  options: [...MODEL_OPTIONS,
    { name: 'prompt', help: 'prompt text' },
    { name: 'max-tokens', help: 'new tokens at most', default: '64' },
    { name: 'temperature', help: '0 = greedy', default: '0.8' },
    { name: 'top-p', help: 'nucleus mass', default: '0.95' },
    { name: 'seed', help: 'sampling seed', default: '0' },
    { name: 'bos', flag: true, help: 'prepend the BOS token to the prompt' },
    DEVICE_OPTION,
    JSON_OPTION],
  async run(a) {
    const out = makeOut(flag(a, 'json'));
    const m = loadFromArgs(a, 'generate');
    const tok = loadTokenizer(m.dir);
    const prompt = req(a, 'prompt', 'generate');
    const ids = tok.encode(prompt, { addBos: flag(a, 'bos') });
    const o = {
      maxTokens: int(a, 'max-tokens', 'generate')!, temperature: num(a, 'temperature', 'generate')!,
      topP: num(a, 'top-p', 'generate')!, seed: int(a, 'seed', 'generate')!,
    };
    const write = (s: string) => (out.json ? process.stderr : process.stdout).write(s);
    let r;
    if (deviceOf(a, 'generate') === 'cuda') {
      const c = requireGpu(), g = gpuModelFromHost(c, m.model.weights), d = new GpuDecoder(c, g.weights, g.lora, ids.length + o.maxTokens + 1);
      try { r = generateText(m.model, tok, ids, o, write, streamTokensGpu(d, ids, o)); } finally { d.free(); g.free(); }
    } else r = generateText(m.model, tok, ids, o, write);
    (out.json ? process.stderr : process.stdout).write('\n');
    out.info(`[${r.ids.length} tokens, ${r.tokensPerSecond.toFixed(1)} tokens/s]`);
    out.result({ prompt, text: r.text, ids: r.ids, tokensPerSecond: r.tokensPerSecond });
  },
};

/** Generates and streams the decoded text; BPE tokens may split a UTF-8 character, so the text is
 *  re-decoded as a whole and only the stable new suffix is written. */
export function generateText(model: Parameters<typeof streamTokens>[0], tok: { decode(ids: number[]): string },
  promptIds: number[], o: { maxTokens: number; temperature: number; topP: number; seed: number },
  write: (s: string) => void, source?: Iterable<number>): { ids: number[]; text: string; tokensPerSecond: number } {
  write(tok.decode(promptIds));
  const ids: number[] = [];
  let shown = '';
  const t0 = Date.now();
  for (const id of source ?? streamTokens(model, promptIds, o)) {
    ids.push(id);
    const text = tok.decode(ids);
    const stable = text.endsWith('\uFFFD') ? text.slice(0, text.lastIndexOf('\uFFFD')) : text;
    if (stable.length > shown.length && stable.startsWith(shown)) { write(stable.slice(shown.length)); shown = stable; }
  }
  const text = tok.decode(ids);
  if (text.length > shown.length && text.startsWith(shown)) write(text.slice(shown.length));
  return { ids, text, tokensPerSecond: ids.length / Math.max(1e-9, (Date.now() - t0) / 1000) };
}
