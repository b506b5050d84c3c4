import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LowbitError } from '../src/io/errors.js';
import { GPT2_SPLIT, byteLevelPieces, bytesToUnicode, bpeTokenizerJson, saveBpeTokenizer, trainByteLevelBpe } from '../src/io/bpe-train.js';
import { loadTokenizer, tokenizerFromJson } from '../src/io/tokenizer.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'lowbit-io-tok-'));
const DATA = fileURLToPath(new URL('../../data/', import.meta.url));
const byteId = (ch: string) => 2 + ch.charCodeAt(0); // ids of single ASCII bytes with the default 2 specials

test('bytes_to_unicode alphabet and GPT-2 pre-tokenization', () => {
  const b2u = bytesToUnicode();
  assert.equal(new Set(b2u).size, 256);
  assert.equal(b2u[0x20], 'Ġ');
  assert.equal(b2u[0x0a], 'Ċ');
  assert.equal(b2u[0x41], 'A');
  assert.equal(b2u[0x00], 'Ā');
  assert.equal(b2u[0xad], 'Ń');
  assert.deepEqual([..."I'm here  42x!!\n".matchAll(GPT2_SPLIT)].map((m) => m[0]), ['I', "'m", ' here', ' ', ' 42', 'x', '!!', '\n']);
  assert.deepEqual(byteLevelPieces('é ok'), ['Ã©', 'Ġok']);
});

test('BPE on a tiny corpus: hand-checked merges and encoding', () => {
  // pieces: low, Ġlow×2, Ġlower, Ġnewest×2. Pair counts: (l,o)=4, (o,w)=4 tie -> smaller ids (l,o) first;
  // then (lo,w)=4; then (Ġ,low)=3; then the count-2 pairs, smallest ids first: (Ġ,n).
  const bpe = trainByteLevelBpe('low low low lower newest newest', { vocabSize: 262 });
  assert.deepEqual(bpe.merges, [['l', 'o'], ['lo', 'w'], ['Ġ', 'low'], ['Ġ', 'n']]);
  assert.deepEqual(bpe.tokens.slice(258), ['lo', 'low', 'Ġlow', 'Ġn']);
  assert.deepEqual(bpe.tokens.slice(0, 2), ['<s>', '</s>']);
  assert.equal(bpe.tokens[2 + 0x61], 'a');
  const tok = tokenizerFromJson(bpeTokenizerJson(bpe), { bos_token: '<s>', eos_token: '</s>' });
  assert.deepEqual(tok.encode(' lowest'), [260, byteId('e'), byteId('s'), byteId('t')]);
  assert.deepEqual(tok.encode('lower'), [259, byteId('e'), byteId('r')]);
  assert.deepEqual(tok.encode(' newt', { addBos: true }), [0, 261, byteId('e'), byteId('w'), byteId('t')]);
  assert.equal(tok.decode([0, 261, byteId('e')]), '<s> ne');
  // minFrequency stops early: only pairs seen at least 4 times
  assert.equal(trainByteLevelBpe('low low low lower newest newest', { vocabSize: 300, minFrequency: 4 }).merges.length, 2);
});

/** Reference trainer: recount every pair from scratch before each merge. */
function naiveMerges(text: string, nMerges: number): [string, string][] {
  const counts = new Map<string, number>();
  for (const p of byteLevelPieces(text)) counts.set(p, (counts.get(p) ?? 0) + 1);
  const b2u = bytesToUnicode();
  const ids = new Map<string, number>([['<s>', 0], ['</s>', 1], ...b2u.map((c, i) => [c, i + 2] as [string, number])]);
  const words = [...counts].map(([w, c]) => ({ sym: [...w], c }));
  const merges: [string, string][] = [];
  for (let m = 0; m < nMerges; m++) {
    const pc = new Map<string, { a: string; b: string; n: number }>();
    for (const { sym, c } of words) {
      for (let i = 0; i + 1 < sym.length; i++) {
        const k = sym[i] + '\u0000' + sym[i + 1];
        const e = pc.get(k) ?? { a: sym[i], b: sym[i + 1], n: 0 };
        e.n += c;
        pc.set(k, e);
      }
    }
    let best: { a: string; b: string; n: number } | null = null;
    for (const e of pc.values()) {
      if (!best || e.n > best.n || (e.n === best.n && (ids.get(e.a)! < ids.get(best.a)! || (e.a === best.a && ids.get(e.b)! < ids.get(best.b)!)))) best = e;
    }
    if (!best || best.n < 2) break;
    merges.push([best.a, best.b]);
    const merged = best.a + best.b;
    if (!ids.has(merged)) ids.set(merged, ids.size);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.sym.length; i++) {
        if (i + 1 < w.sym.length && w.sym[i] === best.a && w.sym[i + 1] === best.b) { out.push(merged); i++; } else out.push(w.sym[i]);
      }
      w.sym = out;
    }
  }
  return merges;
}

test('incremental pair counts match recounting from scratch', () => {
  const corpus = readFileSync(join(DATA, 'jargon.train.txt'), 'utf8').slice(0, 30000) + ' aaaaa aaa bbbbbb abab ababab';
  const n = 250;
  const fast = trainByteLevelBpe(corpus, { vocabSize: 258 + n });
  assert.equal(fast.merges.length, n);
  assert.deepEqual(fast.merges, naiveMerges(corpus, n));
});

test('train on the corpus -> save -> load -> lossless round trip', () => {
  const train = readFileSync(join(DATA, 'jargon.train.txt'), 'utf8');
  const heldout = readFileSync(join(DATA, 'jargon.heldout.txt'), 'utf8');
  const t0 = Date.now();
  const bpe = trainByteLevelBpe(train, { vocabSize: 2048 });
  assert.ok(Date.now() - t0 < 10000, 'trains in well under a minute');
  assert.equal(bpe.tokens.length, 2048);
  const dir = tmp();
  saveBpeTokenizer(dir, bpe, { modelMaxLength: 512 });
  const tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  assert.equal(tj.model.type, 'BPE');
  assert.equal(tj.model.merges.length, bpe.merges.length);
  assert.equal(tj.model.merges[0], bpe.merges[0].join(' '));
  assert.equal(Object.keys(tj.model.vocab).length, 2048);
  assert.deepEqual(tj.added_tokens.map((t: { id: number; content: string; special: boolean }) => [t.id, t.content, t.special]), [[0, '<s>', true], [1, '</s>', true]]);
  assert.deepEqual(tj.pre_tokenizer, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true });
  const tc = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  assert.equal(tc.tokenizer_class, 'PreTrainedTokenizerFast');
  assert.equal(tc.bos_token, '<s>');
  assert.equal(tc.model_max_length, 512);

  const tok = loadTokenizer(dir);
  assert.equal(tok.vocabSize, 2048);
  assert.equal(tok.bosId, 0);
  assert.equal(tok.eosId, 1);
  const ids = tok.encode(heldout);
  assert.ok(ids.every((i) => Number.isInteger(i) && i >= 2 && i < 2048));
  assert.ok(heldout.length / ids.length > 2.5, `compresses: ${heldout.length / ids.length} chars/token`);
  assert.equal(tok.decode(ids), heldout);
  for (const s of ['  two  spaces\t\ttabs\n\n', "don't 3.14 émigré — ok", '日本語 😀👍🏽', '<s> x </s>', 'x'.repeat(300)]) {
    assert.equal(tok.decode(tok.encode(s)), s, JSON.stringify(s));
  }
  assert.deepEqual(tok.encode('<s>'), [0]);
  assert.deepEqual(tok.encode(''), []);
  assert.equal(tok.decode([]), '');
  const plain = tok.encode('Hacker slang');
  assert.deepEqual(tok.encode('Hacker slang', { addBos: false }), plain);
  assert.deepEqual(tok.encode('Hacker slang', { addBos: true }), [0, ...plain]);
  assert.equal(tok.idToToken(0), '<s>');
  assert.equal(tok.tokenToId('</s>'), 1);
  assert.throws(() => tok.decode([2048]), RangeError);
});

test('a template post-processor that adds BOS (Llama style) is bypassed unless addBos', () => {
  const bpe = trainByteLevelBpe('low low low lower newest newest', { vocabSize: 262 });
  const tj = bpeTokenizerJson(bpe);
  tj.post_processor = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [0], tokens: ['<s>'] } },
  };
  const tok = tokenizerFromJson(tj, { bos_token: { content: '<s>', __type: 'AddedToken' } });
  assert.equal(tok.bosId, 0);
  assert.deepEqual(tok.encode('low'), [259]);
  assert.deepEqual(tok.encode('low', { addBos: true }), [0, 259]);
});

test('tokenizer errors are LowbitErrors naming the file', () => {
  const dir = tmp();
  const isLow = (re: RegExp) => (e: unknown) => e instanceof LowbitError && re.test(e.message);
  assert.throws(() => loadTokenizer(dir), isLow(/^tokenizer\.json: file not found$/));
  writeFileSync(join(dir, 'tokenizer.model'), 'x');
  assert.throws(() => loadTokenizer(dir), isLow(/sentencepiece files are not supported/));
  writeFileSync(join(dir, 'tokenizer.json'), '{"model": ');
  assert.throws(() => loadTokenizer(dir), isLow(/^tokenizer\.json: not valid JSON \(/));
  const bpe = trainByteLevelBpe('ab ab ab', { vocabSize: 259 });
  saveBpeTokenizer(dir, bpe);
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|begin_of_text|>' }));
  assert.throws(() => loadTokenizer(dir), isLow(/^tokenizer\.json: special token "<\|begin_of_text\|>" from tokenizer_config\.json is not in the vocabulary$/));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: null, eos_token: '</s>' }));
  const tok = loadTokenizer(dir);
  assert.equal(tok.bosId, null);
  assert.equal(tok.eosId, 1);
  assert.throws(() => tok.encode('ab', { addBos: true }), isLow(/BOS requested but the tokenizer has no BOS token/));
  assert.ok(existsSync(join(dir, 'tokenizer.json')));
});

test('ids match Python HF tokenizers (fixture recorded with tokenizers 0.23.2)', () => {
  const fx = JSON.parse(readFileSync(fileURLToPath(new URL('../../test/fixtures/io/python-tokenizers-ids.json', import.meta.url)), 'utf8')) as
    { corpus_chars: number; vocab_size: number; cases: { text: string; ids: number[] }[] };
  const corpus = readFileSync(join(DATA, 'jargon.train.txt'), 'utf8').slice(0, fx.corpus_chars);
  const bpe = trainByteLevelBpe(corpus, { vocabSize: fx.vocab_size });
  const tok = tokenizerFromJson(bpeTokenizerJson(bpe), {});
  assert.equal(fx.cases.length, 10);
  for (const c of fx.cases) {
    assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text.slice(0, 40)));
    assert.equal(tok.decode(c.ids), c.text);
  }
});
