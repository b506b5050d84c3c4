// Byte-level BPE trainer (GPT-2 style) writing a standard HF tokenizer.json + tokenizer_config.json.
//
//   pre-tokenization  GPT-2 split regex over the text, each piece's UTF-8 bytes mapped through the
//                     byte->unicode alphabet (ByteLevel pre-tokenizer, add_prefix_space false)
//   ids               0 '<s>' (BOS), 1 '</s>' (EOS), then the 256 byte symbols in byte order
//                     (id = 2 + byte), then merged tokens in the order learned
//   training          repeatedly merge the most frequent adjacent pair over the word counts (ties: the
//                     pair with the smaller ids, i.e. the earlier-created symbols); pair counts are
//                     updated incrementally from the words that contain the merged pair, with a lazy
//                     max-heap (stale entries are re-pushed with their current count when popped)
//   post-processing   none: BOS/EOS are never added by the tokenizer itself (the perplexity protocol
//                     wants no BOS; callers prepend it explicitly)
//
// Compatibility (checked once, see src/io/README.md): a 4096-token vocab trained on
// data/jargon.train.txt loads in @huggingface/tokenizers 0.2.0 (JS) and in Python's HF `tokenizers`
// 0.23.2, and both give identical ids (add_special_tokens=False, and Python's default encode adds no
// BOS either) for the whole train and held-out corpus and for unicode/whitespace/emoji/contraction
// probes; both decode every case back to the exact input.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The GPT-2 pre-tokenizer regex, as HF's ByteLevel pre-tokenizer uses it (use_regex: true). */
export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

let B2U: string[] | null = null;

/** GPT-2's bytes_to_unicode: byte -> printable unicode char (printable latin-1 bytes map to themselves). */
export function bytesToUnicode(): string[] {
  if (B2U) return B2U;
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const map = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + n++);
  B2U = map;
  return map;
}

const utf8 = new TextEncoder();

/** Split text into GPT-2 pieces and map each to its byte-level string. */
export function byteLevelPieces(text: string): string[] {
  const b2u = bytesToUnicode();
  const out: string[] = [];
  for (const m of text.matchAll(GPT2_SPLIT)) {
    let s = '';
    for (const b of utf8.encode(m[0])) s += b2u[b];
    out.push(s);
  }
  return out;
}

export interface BpeTrainOptions {
  /** total vocabulary: special tokens + 256 bytes + merged tokens */
  vocabSize: number;
  /** stop when the best pair occurs fewer times than this (default 2) */
  minFrequency?: number;
  /** special tokens, given ids 0.. in this order; default ['<s>', '</s>'] (BOS, EOS) */
  specialTokens?: string[];
}

export interface TrainedBpe {
  /** id -> token string */
  tokens: string[];
  /** merges in rank order */
  merges: [string, string][];
  specialTokens: string[];
  bosToken: string | null;
  eosToken: string | null;
}

/** Binary max-heap over (count desc, key asc). */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  get size(): number { return this.keys.length; }
  private above(i: number, j: number): boolean {
    return this.counts[i] > this.counts[j] || (this.counts[i] === this.counts[j] && this.keys[i] < this.keys[j]);
  }
  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j], this.counts[i]];
    [this.keys[i], this.keys[j]] = [this.keys[j], this.keys[i]];
  }
  push(key: number, count: number): void {
    this.keys.push(key);
    this.counts.push(count);
    let i = this.keys.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): { key: number; count: number } | null {
    const n = this.keys.length;
    if (n === 0) return null;
    const top = { key: this.keys[0], count: this.counts[0] };
    this.swap(0, n - 1);
    this.keys.pop();
    this.counts.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < n - 1 && this.above(l, m)) m = l;
      if (r < n - 1 && this.above(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }
}

const SHIFT = 2 ** 21; // pair key = a * SHIFT + b (ids < 2^21)

/** Train on `text` (a string or several documents). */
export function trainByteLevelBpe(text: string | Iterable<string>, opts: BpeTrainOptions): TrainedBpe {
  const specials = opts.specialTokens ?? ['<s>', '</s>'];
  const minFreq = opts.minFrequency ?? 2;
  const base = specials.length + 256;
  if (!(opts.vocabSize >= base)) throw new Error(`vocabSize ${opts.vocabSize} is below the ${base} special + byte tokens`);
  if (opts.vocabSize >= SHIFT) throw new Error(`vocabSize ${opts.vocabSize} too large`);

  // word counts over raw pieces, then byte-level symbol sequences
  const rawCounts = new Map<string, number>();
  for (const doc of typeof text === 'string' ? [text] : text) {
    for (const m of doc.matchAll(GPT2_SPLIT)) rawCounts.set(m[0], (rawCounts.get(m[0]) ?? 0) + 1);
  }
  const b2u = bytesToUnicode();
  const tokens: string[] = [...specials, ...b2u];
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => { if (!idOf.has(t)) idOf.set(t, i); });
  const words: number[][] = [];
  const wcount: number[] = [];
  for (const [w, c] of rawCounts) {
    words.push(Array.from(utf8.encode(w), (b) => specials.length + b));
    wcount.push(c);
  }

  const pairCount = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  words.forEach((sym, w) => {
    for (let i = 0; i + 1 < sym.length; i++) {
      const k = sym[i] * SHIFT + sym[i + 1];
      pairCount.set(k, (pairCount.get(k) ?? 0) + wcount[w]);
      let s = where.get(k);
      if (!s) where.set(k, (s = new Set()));
      s.add(w);
    }
  });
  const heap = new PairHeap();
  for (const [k, c] of pairCount) heap.push(k, c);

  const merges: [string, string][] = [];
  const local = new Map<number, number>();
  while (tokens.length < opts.vocabSize) {
    const top = heap.pop();
    if (!top) break;
    const cur = pairCount.get(top.key) ?? 0;
    if (cur !== top.count) {
      if (cur > 0) heap.push(top.key, cur);
      continue;
    }
    if (cur < minFreq) break;
    const a = Math.floor(top.key / SHIFT), b = top.key % SHIFT;
    const merged = tokens[a] + tokens[b];
    let id = idOf.get(merged);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(merged);
      idOf.set(merged, id);
    }
    merges.push([tokens[a], tokens[b]]);

    const bumped = new Set<number>();
    for (const w of where.get(top.key) ?? []) {
      const sym = words[w];
      let found = false;
      for (let i = 0; i + 1 < sym.length; i++) if (sym[i] === a && sym[i + 1] === b) { found = true; break; }
      if (!found) continue;
      local.clear();
      for (let i = 0; i + 1 < sym.length; i++) {
        const k = sym[i] * SHIFT + sym[i + 1];
        local.set(k, (local.get(k) ?? 0) - 1);
      }
      const out: number[] = [];
      for (let i = 0; i < sym.length; i++) {
        if (i + 1 < sym.length && sym[i] === a && sym[i + 1] === b) { out.push(id); i++; } else out.push(sym[i]);
      }
      for (let i = 0; i + 1 < out.length; i++) {
        const k = out[i] * SHIFT + out[i + 1];
        local.set(k, (local.get(k) ?? 0) + 1);
      }
      words[w] = out;
      const c = wcount[w];
      for (const [k, d] of local) {
        if (d === 0) continue;
        const nc = (pairCount.get(k) ?? 0) + d * c;
        if (nc > 0) pairCount.set(k, nc); else pairCount.delete(k);
        if (d > 0) {
          bumped.add(k);
          let s = where.get(k);
          if (!s) where.set(k, (s = new Set()));
          s.add(w);
        }
      }
    }
    where.delete(top.key);
    pairCount.delete(top.key);
    for (const k of bumped) {
      const c = pairCount.get(k);
      if (c) heap.push(k, c);
    }
  }
  return {
    tokens, merges, specialTokens: specials,
    bosToken: specials.includes('<s>') ? '<s>' : null,
    eosToken: specials.includes('</s>') ? '</s>' : null,
  };
}

/** tokenizer.json for a trained byte-level BPE (merges in the "a b" string form all versions read). */
export function bpeTokenizerJson(bpe: TrainedBpe): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  bpe.tokens.forEach((t, i) => { if (!(t in vocab)) vocab[t] = i; });
  for (const [x, y] of bpe.merges) {
    if (x.includes(' ') || y.includes(' ')) throw new Error(`merge token with a space: ${JSON.stringify([x, y])}`);
  }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: bpe.specialTokens.map((content) => ({
      id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab,
      merges: bpe.merges.map(([x, y]) => `${x} ${y}`),
    },
  };
}

export function bpeTokenizerConfigJson(bpe: TrainedBpe, opts: { modelMaxLength?: number } = {}): Record<string, unknown> {
  const decoder: Record<string, unknown> = {};
  bpe.specialTokens.forEach((content, i) => {
    decoder[String(i)] = { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  });
  return {
    added_tokens_decoder: decoder,
    bos_token: bpe.bosToken,
    eos_token: bpe.eosToken,
    add_bos_token: false,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: opts.modelMaxLength ?? 2048,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
}

/** Write tokenizer.json + tokenizer_config.json into dir. */
export function saveBpeTokenizer(dir: string, bpe: TrainedBpe, opts: { modelMaxLength?: number } = {}): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(bpeTokenizerJson(bpe), null, 2) + '\n');
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(bpeTokenizerConfigJson(bpe, opts), null, 2) + '\n');
}
