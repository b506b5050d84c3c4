#!/usr/bin/env node
// lowbit CLI entry. Each command lives in src/cli/commands/<name>.ts and exports `command: CommandSpec`;
// modules load lazily so `lowbit --help` stays instant.
import '../backend/native.js'; // installs the native kernels when the addon is built
import { helpText, parseArgs, type CommandSpec } from './args.js';
import { LowbitError } from '../io/errors.js';

const COMMANDS: Record<string, { summary: string; file: string }> = {
  env: { summary: 'what lowbit found: native addon, threads, SIMD, CUDA device, cuBLAS', file: 'env' },
  pretrain: { summary: 'train a small LLaMA (and its BPE tokenizer) from a text file', file: 'pretrain' },
  logits: { summary: 'print the logits of a token sequence', file: 'logits' },
  'eval ppl': { summary: 'perplexity with the GPTQ protocol (non-overlapping windows)', file: 'eval-ppl' },
  generate: { summary: 'generate text, streaming', file: 'generate' },
  quantize: { summary: 'quantize a model to 2/3/4 bits (rtn, nf, icq, gptq) into a packed directory', file: 'quantize' },
  compensate: { summary: 'train LoRA adapters that compensate quantization error (rilq, lrec, svd, loftq, …)', file: 'compensate' },
  'rank-sweep': { summary: 'run compensation methods over ranks; table and plot', file: 'rank-sweep' },
  demo: { summary: 'the main job on the shipped tiny model', file: 'demo' },
};

function topHelp(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return ['lowbit — make 2-bit LLaMA-family models accurate and cheap to adapt', '', 'usage: lowbit <command> [options]   (lowbit <command> --help)', '', 'commands:',
    ...Object.entries(COMMANDS).map(([k, v]) => `  ${k.padEnd(w)}  ${v.summary}`)].join('\n');
}

async function main(argv: string[]): Promise<void> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    console.log(topHelp());
    return;
  }
  let name = argv[0], rest = argv.slice(1);
  if (argv.length > 1 && COMMANDS[`${argv[0]} ${argv[1]}`]) { name = `${argv[0]} ${argv[1]}`; rest = argv.slice(2); }
  const entry = COMMANDS[name];
  if (!entry) throw new LowbitError(`lowbit: unknown command '${argv[0]}' (see lowbit --help)`);
  let mod: { command: CommandSpec };
  try { mod = await import(`./commands/${entry.file}.js`) as { command: CommandSpec }; } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(`commands/${entry.file}.js`)) throw new LowbitError(`lowbit ${name}: not available in this build`);
    throw e;
  }
  if (rest.includes('--help') || rest.includes('-h')) { console.log(helpText(mod.command)); return; }
  await mod.command.run(parseArgs(rest, mod.command));
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof LowbitError) { process.stderr.write(`error: ${e.message}\n`); process.exit(2); }
  throw e;
});
