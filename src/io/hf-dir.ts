// A HuggingFace model directory: config.json + model.safetensors (or shards + index) + tokenizer files.
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { LlamaConfig } from '../model/config.js';
import { configToHfJson, loadHfConfig } from './config.js';
import { LowbitError, fileError, fmtShape } from './errors.js';
import { INDEX_FILE, SINGLE_FILE, ShardedSafetensorsWriter, openTensorStore, type ShardedWriteResult, type TensorStore } from './safetensors.js';
import { loadTokenizer, type LowbitTokenizer } from './tokenizer.js';

export interface HfModelDir {
  dir: string;
  config: LlamaConfig;
  store: TensorStore;
  /** whether tokenizer.json exists */
  hasTokenizer: boolean;
  /** loaded on first access; throws LowbitError when the directory has no tokenizer.json */
  readonly tokenizer: LowbitTokenizer;
  close(): void;
}

export function openHfModelDir(dir: string): HfModelDir {
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw fileError(dir, 'model directory not found');
  }
  if (!st.isDirectory()) throw fileError(dir, 'is not a directory (expected a HF model directory)');
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) throw fileError(dir, 'no config.json in the model directory');
  const config = loadHfConfig(cfgPath);
  if (!existsSync(join(dir, SINGLE_FILE)) && !existsSync(join(dir, INDEX_FILE))) {
    throw fileError(dir, `no weights: neither ${SINGLE_FILE} nor ${INDEX_FILE} in the model directory`);
  }
  const store = openTensorStore(dir);
  const hasTokenizer = existsSync(join(dir, 'tokenizer.json'));
  let tok: LowbitTokenizer | null = null;
  return {
    dir, config, store, hasTokenizer,
    get tokenizer(): LowbitTokenizer {
      if (!tok) tok = loadTokenizer(dir);
      return tok;
    },
    close: () => store.close(),
  };
}

/**
 * One-line error when a checkpoint tensor does not have the shape the config implies:
 * `model.safetensors: tensor 'x' has shape [a, b], config expects [c, d]` (file defaults to model.safetensors).
 * Also callable file-first: checkTensorShape(file, name, shape, expected).
 */
export function checkTensorShape(name: string, shape: readonly number[], expected: readonly number[], file?: string): void;
export function checkTensorShape(file: string, name: string, shape: readonly number[], expected: readonly number[]): void;
export function checkTensorShape(a: string, b: string | readonly number[], c: readonly number[], d?: string | readonly number[]): void {
  const [file, name, shape, expected] = typeof b === 'string'
    ? [a, b, c, d as readonly number[]]
    : [(d as string | undefined) ?? SINGLE_FILE, a, b, c];
  if (shape.length !== expected.length || shape.some((x, i) => x !== expected[i])) {
    throw new LowbitError(`${basename(file)}: tensor '${name}' has shape ${fmtShape(shape)}, config expects ${fmtShape(expected)}`);
  }
}

/** Read a tensor as f32 after checking its shape; errors name the shard that holds it. */
export function readTensorChecked(store: TensorStore, name: string, expected: readonly number[]): Float32Array {
  if (!store.has(name)) throw fileError(store.source, `missing tensor '${name}'`);
  const info = store.info(name);
  checkTensorShape(name, info.shape, expected, info.file);
  return store.readTensorF32(name);
}

export interface WriteHfDirOptions {
  /** storage dtype of the weights (default float32); also written as torch_dtype */
  dtype?: 'float32' | 'bfloat16' | 'float16';
  /** copy tokenizer.json (+ tokenizer_config.json, special_tokens_map.json, tokenizer.model) from here */
  tokenizerDir?: string;
  /** shard when the weights exceed this many bytes (model-0000i-of-0000N.safetensors + index) */
  maxShardBytes?: number;
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model'];
const SAFETENSORS_DTYPE = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' } as const;

/**
 * Write config.json, the weights (tensors consumed one at a time) and tokenizer files.
 * Weight files already in `dir` (model.safetensors, shards, index) are removed first so a stale
 * file can never shadow the new ones.
 */
export function writeHfModelDir(
  dir: string,
  config: LlamaConfig,
  tensors: Iterable<[string, Float32Array, readonly number[]]>,
  opts: WriteHfDirOptions = {},
): ShardedWriteResult {
  const dtype = opts.dtype ?? 'float32';
  if (!(dtype in SAFETENSORS_DTYPE)) throw new Error(`writeHfModelDir: unsupported dtype ${dtype}`);
  if (opts.tokenizerDir && !existsSync(join(opts.tokenizerDir, 'tokenizer.json'))) {
    throw fileError(join(opts.tokenizerDir, 'tokenizer.json'), 'file not found (tokenizerDir has no tokenizer.json)');
  }
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(dir)) {
    if (f === SINGLE_FILE || f === INDEX_FILE || /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)) unlinkSync(join(dir, f));
  }
  const w = new ShardedSafetensorsWriter(dir, { maxShardBytes: opts.maxShardBytes, metadata: { format: 'pt' } });
  let res: ShardedWriteResult;
  try {
    for (const [name, data, shape] of tensors) w.add(name, SAFETENSORS_DTYPE[dtype], shape, data);
    res = w.finish();
  } catch (e) {
    w.abort();
    throw e;
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify(configToHfJson({ ...config, torchDtype: dtype }), null, 2) + '\n');
  if (opts.tokenizerDir) {
    for (const f of TOKENIZER_FILES) {
      const src = join(opts.tokenizerDir, f);
      if (existsSync(src)) copyFileSync(src, join(dir, f));
    }
  }
  return res;
}
