// `lowbit pretrain`: train a byte-level BPE tokenizer and a small LLaMA from a text file.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadHfWeights } from '../../serve/load.js';
import { join } from 'node:path';
import type { CommandSpec } from '../args.js';
import { flag, int, num, req, str } from '../args.js';
import { LowbitError } from '../../io/errors.js';
import { saveBpeTokenizer, trainByteLevelBpe } from '../../io/bpe-train.js';
import { loadTokenizer } from '../../io/tokenizer.js';
import { writeHfConfig } from '../../io/config.js';
import { writeSafetensors } from '../../io/safetensors.js';
import type { LlamaConfig } from '../../model/config.js';
import { pretrain } from '../../train/pretrain.js';
import { makeOut } from '../output.js';
import { setNativeThreads } from '../../backend/native.js';

export const command: CommandSpec = {
  name: 'pretrain',
  summary: 'train a small LLaMA (and its byte-level BPE tokenizer) from a text file',
  usage: 'lowbit pretrain --corpus FILE --out DIR [--heldout FILE] [model and training options] [--json]',
  options: [
    { name: 'corpus', help: 'training text file' },
    { name: 'heldout', help: 'held-out text file (default: the last 10% of the corpus tokens)' },
    { name: 'out', help: 'output HF model directory' },
    { name: 'init', help: 'continue training this HF model (its config and tokenizer are used; size options are ignored)' },
    { name: 'vocab', help: 'BPE vocabulary size', default: '2048' },
    { name: 'dim', help: 'hidden size', default: '256' },
    { name: 'layers', help: 'decoder layers', default: '4' },
    { name: 'heads', help: 'attention heads', default: '8' },
    { name: 'kv-heads', help: 'key/value heads (GQA)', default: '4' },
    { name: 'ffn', help: 'MLP intermediate size', default: '688' },
    { name: 'tie', flag: true, help: 'tie lm_head to the embeddings' },
    { name: 'rope-theta', help: 'RoPE base', default: '10000' },
    { name: 'seq', help: 'training window length', default: '256' },
    { name: 'batch', help: 'windows per step', default: '8' },
    { name: 'steps', help: 'optimizer steps', default: '2000' },
    { name: 'lr', help: 'peak learning rate', default: '3e-3' },
    { name: 'warmup', help: 'warmup steps', default: '100' },
    { name: 'weight-decay', help: 'AdamW decoupled weight decay', default: '0.1' },
    { name: 'clip', help: 'global gradient-norm clip', default: '1.0' },
    { name: 'seed', help: 'seed for init and data order', default: '1' },
    { name: 'eval-every', help: 'held-out perplexity every N steps', default: '250' },
    { name: 'eval-windows', help: 'held-out windows per evaluation', default: '32' },
    { name: 'checkpoint-every', help: 'resumable checkpoint every N steps', default: '200' },
    { name: 'max-minutes', help: 'stop early and save after this many minutes' },
    { name: 'stop-after', help: 'stop and save after N steps (the schedule still spans --steps)' },
    { name: 'threads', help: 'CPU threads for the native kernels (default: all cores)' },
    { name: 'resume', flag: true, help: 'continue from OUT/checkpoint if present' },
    { name: 'dtype', help: 'weights dtype on disk: float32 | bfloat16 | float16', default: 'bfloat16' },
    { name: 'json', flag: true, help: 'print one JSON object as the last stdout line' },
  ],
  async run(a) {
    const cmd = 'pretrain', out = makeOut(flag(a, 'json'));
    const th = int(a, 'threads', cmd);
    if (th) setNativeThreads(th);
    const corpusPath = req(a, 'corpus', cmd), dir = req(a, 'out', cmd);
    const corpus = readText(corpusPath);
    mkdirSync(dir, { recursive: true });
    const vocab = int(a, 'vocab', cmd)!;
    // the tokenizer is trained once; a resumed run reuses it so the ids stay the same
    const initDir = str(a, 'init');
    const init = initDir ? loadHfWeights(initDir) : null;
    if (initDir) {
      for (const f of ['tokenizer.json', 'tokenizer_config.json']) if (existsSync(join(initDir, f))) copyFileSync(join(initDir, f), join(dir, f));
      out.info(`continuing from ${initDir} (its config and tokenizer)`);
    } else if (!(flag(a, 'resume') && existsSync(join(dir, 'tokenizer.json')))) {
      const t0 = Date.now();
      const bpe = trainByteLevelBpe(corpus, { vocabSize: vocab });
      saveBpeTokenizer(dir, bpe, { modelMaxLength: int(a, 'seq', cmd)! * 8 });
      out.info(`tokenizer: ${bpe.tokens.length} tokens, ${bpe.merges.length} merges (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    }
    const tok = loadTokenizer(dir);
    const ids = Int32Array.from(tok.encode(corpus, { addBos: false }));
    let trainIds = ids, heldoutIds: Int32Array;
    const hf = str(a, 'heldout');
    if (hf) heldoutIds = Int32Array.from(tok.encode(readText(hf), { addBos: false }));
    else { const cut = Math.floor(ids.length * 0.9); trainIds = ids.subarray(0, cut); heldoutIds = ids.subarray(cut); }
    out.info(`corpus: ${trainIds.length} training tokens, ${heldoutIds.length} held-out tokens (${(corpus.length / ids.length).toFixed(2)} chars/token)`);
    const D = int(a, 'dim', cmd)!, H = int(a, 'heads', cmd)!;
    const config: LlamaConfig = init ? { ...init.config, torchDtype: str(a, 'dtype')! } : {
      architecture: 'llama', vocabSize: tok.vocabSize, hiddenSize: D, intermediateSize: int(a, 'ffn', cmd)!,
      numLayers: int(a, 'layers', cmd)!, numHeads: H, numKvHeads: int(a, 'kv-heads', cmd)!, headDim: D / H,
      rmsNormEps: 1e-5, ropeTheta: num(a, 'rope-theta', cmd)!, ropeScaling: { type: 'default' },
      maxPositionEmbeddings: int(a, 'seq', cmd)! * 8, tieWordEmbeddings: flag(a, 'tie'),
      bosTokenId: tok.bosId, eosTokenId: tok.eosId, torchDtype: str(a, 'dtype')!,
    };
    if (!Number.isInteger(config.headDim)) throw new LowbitError(`lowbit pretrain: --dim ${D} is not a multiple of --heads ${H}`);
    const dtype = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' }[config.torchDtype] as 'F32' | 'BF16' | 'F16' | undefined;
    if (!dtype) throw new LowbitError(`lowbit pretrain: --dtype must be float32, bfloat16 or float16`);
    const r = pretrain({
      config, initWeights: init?.weights, trainIds, heldoutIds, outDir: dir, seq: int(a, 'seq', cmd)!, batch: int(a, 'batch', cmd)!,
      steps: int(a, 'steps', cmd)!, lr: num(a, 'lr', cmd)!, warmup: int(a, 'warmup', cmd)!,
      weightDecay: num(a, 'weight-decay', cmd)!, clip: num(a, 'clip', cmd)!, seed: int(a, 'seed', cmd)!,
      evalEvery: int(a, 'eval-every', cmd)!, evalWindows: int(a, 'eval-windows', cmd)!,
      checkpointEvery: int(a, 'checkpoint-every', cmd)!, resume: flag(a, 'resume'), log: out.info,
      maxMinutes: num(a, 'max-minutes', cmd), stopAfter: int(a, 'stop-after', cmd),
    });
    writeHfConfig(join(dir, 'config.json'), config);
    const tensors = [...r.weights.toTensors()].map(([name, data, shape]) => ({ name, dtype, shape, data }));
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { metadata: { format: 'pt' } });
    const nParams = tensors.reduce((s, t) => s + t.data.length, 0);
    const summary = {
      out: dir, params: nParams, vocab: config.vocabSize, trainTokens: trainIds.length, heldoutTokens: heldoutIds.length,
      tokensSeen: r.tokensSeen, steps: r.log.length ? r.log[r.log.length - 1].step : 0, seconds: r.seconds,
      finalTrainLoss: r.log.length ? r.log[r.log.length - 1].loss : null, heldoutPpl: r.finalHeldoutPpl,
    };
    writeFileSync(join(dir, 'pretrain_summary.json'), JSON.stringify(summary, null, 2) + '\n');
    out.info(`saved ${dir}: ${(nParams / 1e6).toFixed(2)}M parameters, held-out perplexity ${r.finalHeldoutPpl.toFixed(3)} (window ${int(a, 'seq', cmd)}), ${r.seconds.toFixed(0)} s`);
    out.result(summary);
  },
};

function readText(path: string): string {
  try { return readFileSync(path, 'utf8'); } catch { throw new LowbitError(`${path}: cannot read the text file`); }
}
