// HF tokenizer.json (+ tokenizer_config.json) through @huggingface/tokenizers, behind a small interface.
//
// BOS is explicit: encode() always asks the library for add_special_tokens: false (so no
// post-processor template — e.g. Llama's "<s> $A" — adds anything) and prepends bosId only when
// { addBos: true }. The perplexity protocol encodes with no BOS.
// decode() keeps special tokens and never "cleans up" spaces, so byte-level tokenizers round-trip exactly.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { LowbitError, fileError, readJsonFile } from './errors.js';

export interface LowbitTokenizer {
  /** ids of `text`; BOS prepended only with { addBos: true } (default false); EOS never added */
  encode(text: string, opts?: { addBos?: boolean }): number[];
  /** text of `ids`, special tokens kept as their text */
  decode(ids: readonly number[]): string;
  /** 1 + the largest id the tokenizer can produce (model vocab and added tokens) */
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
}

const BOS_GUESSES = ['<s>', '<|begin_of_text|>', '<bos>'];
const EOS_GUESSES = ['</s>', '<|end_of_text|>', '<|endoftext|>', '<eos>'];


/** tokenizer_config's bos_token/eos_token: a string or an AddedToken dict {content: ...}. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

/** Build from already-parsed JSON; `source` names the file in errors. */
export function tokenizerFromJson(tokenizerJson: unknown, tokenizerConfig: unknown = {}, source = 'tokenizer.json'): LowbitTokenizer {
  if (typeof tokenizerJson !== 'object' || tokenizerJson === null || Array.isArray(tokenizerJson)) throw fileError(source, 'is not a JSON object');
  const tj = tokenizerJson as Record<string, unknown>;
  if (typeof tj.model !== 'object' || tj.model === null) throw fileError(source, `has no 'model'`);
  // the library wants these keys present (null allowed)
  const full: Record<string, unknown> = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...tj };
  const cfg = (typeof tokenizerConfig === 'object' && tokenizerConfig !== null ? tokenizerConfig : {}) as Record<string, unknown>;
  // the library's own unk/bos lookups read these; strip the keys it cannot take as objects
  const libCfg: Record<string, unknown> = { ...cfg };
  for (const k of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    if (libCfg[k] !== undefined) libCfg[k] = tokenContent(libCfg[k]) ?? undefined;
  }
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(full, libCfg);
  } catch (e) {
    throw fileError(source, `cannot load (${(e as Error).message})`);
  }
  let maxId = -1;
  for (const id of tok.get_vocab(true).values()) if (id > maxId) maxId = id;
  const vocabSize = maxId + 1;
  const find = (configured: unknown, guesses: string[]): number | null => {
    const c = tokenContent(configured);
    if (c !== null) {
      const id = tok.token_to_id(c);
      if (id === undefined) throw fileError(source, `special token ${JSON.stringify(c)} from tokenizer_config.json is not in the vocabulary`);
      return id;
    }
    if (configured === null) return null; // explicitly none
    for (const g of guesses) {
      const id = tok.token_to_id(g);
      if (id !== undefined) return id;
    }
    return null;
  };
  const bosId = find(cfg.bos_token, BOS_GUESSES);
  const eosId = find(cfg.eos_token, EOS_GUESSES);
  return {
    vocabSize, bosId, eosId,
    encode(text: string, opts: { addBos?: boolean } = {}): number[] {
      const ids = text.length ? tok.encode(text, { add_special_tokens: false }).ids : [];
      for (const id of ids) {
        if (id === undefined || id === null) throw new LowbitError(`${source}: text has a piece the tokenizer cannot map to an id (no unk token)`);
      }
      if (!opts.addBos) return ids;
      if (bosId === null) throw new LowbitError(`${source}: BOS requested but the tokenizer has no BOS token`);
      return [bosId, ...ids];
    },
    decode(ids: readonly number[]): string {
      if (ids.length === 0) return '';
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new RangeError(`token id ${id} outside the vocabulary [0, ${vocabSize})`);
      }
      return tok.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    },
    tokenToId: (t: string) => tok.token_to_id(t),
    idToToken: (id: number) => tok.id_to_token(id),
  };
}

/** Load `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json`. */
export function loadTokenizer(dir: string): LowbitTokenizer {
  const tjPath = join(dir, 'tokenizer.json');
  if (!existsSync(tjPath)) {
    const hint = existsSync(join(dir, 'tokenizer.model')) ? ' (only tokenizer.model found: sentencepiece files are not supported, export tokenizer.json)' : '';
    throw fileError(tjPath, `file not found${hint}`);
  }
  const cfgPath = join(dir, 'tokenizer_config.json');
  const cfg = existsSync(cfgPath) ? readJsonFile(cfgPath) : {};
  return tokenizerFromJson(readJsonFile(tjPath), cfg, tjPath);
}
