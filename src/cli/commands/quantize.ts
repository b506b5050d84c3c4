// `lowbit quantize`: RTN / NormalFloat / ICQ / GPTQ into a packed directory, with bit accounting.
import { gpuQuantizeUnsupported, gpuWeightQuantizer } from '../../quant/quantize-gpu.js';
import { cudaQuantizerUnavailable } from '../../backend/cuda-quantize.js';
import type { CommandSpec, ParsedArgs } from '../args.js';
import { flag, int, num, req, str } from '../args.js';
import { LowbitError } from '../../io/errors.js';
import { makeOut } from '../output.js';
import { Progress } from '../progress.js';
import { GPU_QUANT_METHODS, quantizeModel, type ModelQuantOpts } from '../../quant/model.js';
import { gptqEngine, requireGptqEngine } from '../../quant/gptq-gpu.js';
import { DEVICE_OPTION } from './common.js';
import { formatBitStats } from '../../quant/format.js';
import type { QuantMethod } from '../../quant/types.js';

const CMD = 'quantize';

/** --device for quantize: cuda needs GPTQ's kernels (one-line error without them); auto falls back to the CPU. */
export function quantizeDevice(a: ParsedArgs): 'cpu' | 'cuda' {
  const d = str(a, 'device') ?? 'cpu';
  if (d === 'auto') return gptqEngine() ? 'cuda' : 'cpu';
  if (d !== 'cpu' && d !== 'cuda') throw new LowbitError(`lowbit ${CMD}: --device must be cpu, cuda or auto, got '${d}'`);
  if (d === 'cuda') requireGptqEngine();
  return d;
}

export function quantOptsFromArgs(a: ParsedArgs): ModelQuantOpts {
  const method = req(a, 'method', CMD);
  if (!['rtn', 'nf', 'icq', 'gptq'].includes(method)) throw new LowbitError(`lowbit ${CMD}: unknown --method '${method}' (rtn, nf, icq, gptq)`);
  const bits = int(a, 'bits', CMD);
  if (bits === undefined) throw new LowbitError(`lowbit ${CMD}: --bits is required`);
  const icqMode = str(a, 'icq-mode') ?? 'nf';
  if (icqMode !== 'nf' && icqMode !== 'int') throw new LowbitError(`lowbit ${CMD}: --icq-mode must be nf or int, got '${icqMode}'`);
  const groupRaw = str(a, 'group');
  let groupSize: number | undefined;
  if (groupRaw !== undefined) {
    groupSize = groupRaw === 'channel' ? -1 : int(a, 'group', CMD);
    if (groupSize === 0 || (groupSize !== undefined && groupSize < -1)) throw new LowbitError(`lowbit ${CMD}: --group must be a positive size or -1/channel (per-channel)`);
  }
  const o: ModelQuantOpts = {
    method: method as QuantMethod, bits, groupSize, doubleQuant: flag(a, 'double-quant'), icqMode,
    calib: str(a, 'calib'), calibSamples: int(a, 'calib-samples', CMD), seq: int(a, 'seq', CMD), seed: int(a, 'seed', CMD),
    percdamp: num(a, 'percdamp', CMD), actOrder: flag(a, 'act-order'), staticGroups: flag(a, 'static-groups'), trueSequential: flag(a, 'true-sequential'),
    exportFakeQuant: str(a, 'export-fake-quant'),
  };
  return o;
}

export const command: CommandSpec = {
  name: CMD,
  summary: 'quantize a model to 2/3/4 bits (rtn, nf, icq, gptq) into a packed directory',
  usage: 'lowbit quantize --model DIR --method rtn|nf|icq|gptq --bits B [--group G] [--double-quant] [--calib FILE --calib-samples N --seq L --seed S] [--device cpu|cuda|auto] --out DIR [--export-fake-quant DIR] [--json]',
  options: [
    { name: 'model', help: 'source HF model directory (config.json + safetensors + tokenizer)' },
    { name: 'method', help: 'rtn | nf | icq | gptq' },
    { name: 'bits', help: 'bits per weight: rtn/gptq/icq-int 2,3,4,8; nf/icq 2,3,4' },
    { name: 'group', help: 'group/block size (32, 64, 128, …) or -1 / channel for per-channel (rtn/gptq/icq-int)', default: '64' },
    { name: 'double-quant', flag: true, help: 'nf/icq: double-quantize the absmax values (8-bit, groups of 256)' },
    { name: 'icq-mode', help: 'icq variant: nf (IR-QLoRA NormalFloat τ search) or int (scale-multiplier search)', default: 'nf' },
    { name: 'calib', help: 'gptq: calibration text file' },
    { name: 'calib-samples', help: 'gptq: number of random calibration windows', default: '128' },
    { name: 'seq', help: 'gptq: calibration window length in tokens', default: '256' },
    { name: 'seed', help: 'gptq: seed of the window offsets', default: '0' },
    { name: 'percdamp', help: 'gptq: dampening, fraction of mean(diag H)', default: '0.01' },
    { name: 'act-order', flag: true, help: 'gptq: quantize columns by descending Hessian diagonal' },
    { name: 'true-sequential', flag: true, help: 'gptq: quantize q/k/v, o, gate/up, down in turn (each sees the earlier ones quantized)' },
    { name: 'static-groups', flag: true, help: 'gptq: fit group parameters up front (with --act-order: no g_idx)' },
    { ...DEVICE_OPTION, help: 'cpu | cuda (GPTQ: calibration forward on the GPU engine, Hessians, Cholesky and column updates on the GPU, f64; rtn/nf/icq: GPU quantizer kernels, bit-identical) | auto (cuda when usable)' },
    { name: 'out', help: 'output packed directory' },
    { name: 'export-fake-quant', help: 'also write a plain HF directory with the dequantized weights (bf16)' },
    { name: 'json', flag: true, help: 'print one JSON object as the last stdout line' },
  ],
  async run(a) {
    const out = makeOut(flag(a, 'json'));
    const src = req(a, 'model', CMD), dst = req(a, 'out', CMD);
    const o = quantOptsFromArgs(a);
    o.device = quantizeDevice(a);
    if (o.device === 'cuda' && !GPU_QUANT_METHODS.has(o.method)) {
      // rtn / nf / icq: the GPU quantizer kernels (bit-identical to the TypeScript quantizers) where they take the options
      const why = gpuQuantizeUnsupported(o);
      o.weightQuantizer = gpuWeightQuantizer() ?? undefined;
      if (why || !o.weightQuantizer) out.info(`--device cuda: ${why ?? cudaQuantizerUnavailable()}; ${o.method} runs on the CPU`);
    }
    let bar: Progress | null = null;
    const stats = await quantizeModel(src, dst, o, (done, total, what) => {
      bar ??= new Progress(`quantize ${o.method}${o.bits}`, total, 'proj');
      bar.update(done, what);
    });
    (bar as Progress | null)?.finish();
    out.info(`quantized ${src} with ${o.method}${o.method === 'icq' ? `-${o.icqMode}` : ''} ${o.bits}-bit, group ${stats.groupSize}${stats.doubleQuant ? ', double quant' : ''} → ${dst} (${stats.seconds.toFixed(1)} s)`);
    out.info(formatBitStats(stats.bitStats));
    if (stats.icq) out.info(`ICQ mean per-block code entropy: ${stats.icq.entropyBefore.toFixed(4)} → ${stats.icq.entropyAfter.toFixed(4)} bits (${stats.icq.blocks} blocks)`);
    if (stats.gptq) out.info(`GPTQ (${stats.device}, calibration forward on ${stats.gptq.forward}): ${stats.gptq.tokens} calibration tokens, summed loss ${stats.gptq.loss.toExponential(4)}`);
    if (o.exportFakeQuant) out.info(`fake-quant export: ${o.exportFakeQuant}`);
    out.result({ ...stats, ...stats.bitStats, model: src, out: dst, exportFakeQuant: o.exportFakeQuant ?? null } as unknown as Record<string, unknown>);
  },
};

/** The issue's name for the handler. */
export async function quantizeCommand(args: ParsedArgs): Promise<void> { await command.run(args); }
