// End-to-end CLI checks on the shipped model: every numbers command prints exactly one JSON object as its last
// stdout line, the values agree with the library, and bad input gives a one-line error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import '../src/backend/native.js';
import { loadModel } from '../src/serve/load.js';
import { loadTokenizer } from '../src/io/tokenizer.js';
import { evalPerplexity } from '../src/eval/ppl.js';
import { gpuEngine } from '../src/model/gpu/engine.js';

const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
const MODEL = 'models/tiny-jargon';

function runJson(args: string[]): Record<string, unknown> {
  const out = execFileSync(process.execPath, [CLI, ...args, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = out.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
}

test('lowbit logits --json equals the library forward, one row per position', () => {
  const ids = [5, 17, 300, 2047, 42];
  const r = runJson(['logits', '--model', MODEL, '--ids', ids.join(',')]) as { logits: number[][] };
  assert.equal(r.logits.length, ids.length);
  const m = loadModel(MODEL);
  const V = m.config.vocabSize;
  const { logits } = m.model.forward(Int32Array.from(ids), 1, ids.length, { train: false, logits: true });
  let maxErr = 0, maxAbs = 0;
  for (let t = 0; t < ids.length; t++) {
    assert.equal(r.logits[t].length, V);
    for (let v = 0; v < V; v++) {
      maxErr = Math.max(maxErr, Math.abs(r.logits[t][v] - logits![t * V + v]));
      maxAbs = Math.max(maxAbs, Math.abs(logits![t * V + v]));
    }
  }
  assert.ok(maxAbs > 1, `logits are not trivially small (${maxAbs})`);
  assert.ok(maxErr / maxAbs < 1e-6, `CLI vs library ${maxErr}`);
});

test('lowbit eval ppl --json follows the GPTQ protocol and matches evalPerplexity', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-cli-'));
  const text = readFileSync('data/jargon.heldout.txt', 'utf8').slice(0, 6000);
  const file = join(dir, 'small.txt');
  writeFileSync(file, text);
  const r = runJson(['eval', 'ppl', '--model', MODEL, '--data', file, '--seq', '128']) as { ppl: number; tokens: number; windows: number };
  const tok = loadTokenizer(MODEL);
  const ids = tok.encode(text, { addBos: false });
  assert.equal(r.windows, Math.floor(ids.length / 128));
  assert.equal(r.tokens, r.windows * 127);
  const lib = evalPerplexity(loadModel(MODEL).model, ids, { seq: 128 });
  assert.ok(Math.abs(r.ppl - lib.ppl) / lib.ppl < 1e-9, `${r.ppl} vs ${lib.ppl}`);
  assert.ok(r.ppl > 5 && r.ppl < 1000, `plausible perplexity ${r.ppl}`);
});

test('lowbit generate --json is deterministic for a seed and greedy at temperature 0', () => {
  const a = runJson(['generate', '--model', MODEL, '--prompt', 'The hacker', '--max-tokens', '12', '--temperature', '0']) as { ids: number[] };
  const b = runJson(['generate', '--model', MODEL, '--prompt', 'The hacker', '--max-tokens', '12', '--temperature', '0.9', '--seed', '3']) as { ids: number[] };
  const c = runJson(['generate', '--model', MODEL, '--prompt', 'The hacker', '--max-tokens', '12', '--temperature', '0.9', '--seed', '3']) as { ids: number[] };
  assert.equal(a.ids.length, 12);
  assert.deepEqual(b.ids, c.ids);
  // greedy: each token is the argmax of the full forward over prompt + previous tokens
  const m = loadModel(MODEL), tok = loadTokenizer(MODEL), V = m.config.vocabSize;
  const seq = tok.encode('The hacker', { addBos: false });
  for (const id of a.ids) {
    const { logits } = m.model.forward(Int32Array.from(seq), 1, seq.length, { train: false, logits: true });
    const row = logits!.subarray((seq.length - 1) * V, seq.length * V);
    let best = 0;
    for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
    assert.equal(id, best);
    seq.push(id);
  }
});

test('lowbit pretrain: the loss falls on a small corpus and the model reloads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-pt-'));
  const corpus = join(dir, 'c.txt');
  writeFileSync(corpus, readFileSync('data/jargon.train.txt', 'utf8').slice(0, 40000));
  const r = runJson(['pretrain', '--corpus', corpus, '--out', join(dir, 'm'), '--vocab', '300', '--dim', '32', '--layers', '1',
    '--heads', '4', '--kv-heads', '2', '--ffn', '64', '--seq', '32', '--batch', '4', '--steps', '40', '--lr', '1e-2',
    '--warmup', '5', '--eval-every', '20', '--eval-windows', '4', '--checkpoint-every', '20', '--dtype', 'float32']) as { heldoutPpl: number };
  const log = JSON.parse(readFileSync(join(dir, 'm', 'train_log.json'), 'utf8')) as { loss: number }[];
  const first = log.slice(0, 5).reduce((s, x) => s + x.loss, 0) / 5, last = log.slice(-5).reduce((s, x) => s + x.loss, 0) / 5;
  assert.ok(last < first - 0.5, `loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
  assert.ok(Number.isFinite(r.heldoutPpl));
  const ppl = runJson(['eval', 'ppl', '--model', join(dir, 'm'), '--data', corpus, '--seq', '32']) as { ppl: number };
  assert.ok(ppl.ppl < 150, `the reloaded model is far better than uniform over 300 tokens: ${ppl.ppl}`);
});

test('bad input gives a one-line error and exit code 2', () => {
  for (const args of [['eval', 'ppl', '--model', 'no/such/dir', '--data', 'x.txt'], ['logits', '--model', MODEL, '--ids', '1,x'],
    ['frobnicate'], ['logits', '--model', MODEL, '--ids', '99999'], ['eval', 'ppl', '--bogus', '1']]) {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status} ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^error: /);
  }
});

test('--device: auto runs where the GPU engine is (else the CPU, same numbers); cuda without a GPU or a bad value is a one-line error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-cli-'));
  const file = join(dir, 'small.txt');
  writeFileSync(file, readFileSync('data/jargon.heldout.txt', 'utf8').slice(0, 4000));
  const base = ['eval', 'ppl', '--model', MODEL, '--data', file, '--seq', '128'];
  const cpu = runJson([...base, '--device', 'cpu']) as { ppl: number; device: string };
  const auto = runJson([...base, '--device', 'auto']) as { ppl: number; device: string };
  assert.equal(cpu.device, 'cpu');
  const gpu = gpuEngine();
  assert.equal(auto.device, gpu ? 'cuda' : 'cpu');
  // bf16 activations on the GPU: perplexity within 1 %; on the CPU fallback, identical
  assert.ok(Math.abs(auto.ppl / cpu.ppl - 1) < (gpu ? 1e-2 : 1e-12), `${auto.ppl} vs ${cpu.ppl}`);
  const bad = [[...base, '--device', 'gpu']];
  if (!gpu) bad.push([...base, '--device', 'cuda'], ['logits', '--model', MODEL, '--ids', '1,2', '--device', 'cuda']);
  for (const args of bad) {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status} ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^error: .*--device/);
  }
});

test('every command answers --help', () => {
  for (const c of [['env'], ['pretrain'], ['logits'], ['eval', 'ppl'], ['generate'], ['quantize'], ['compensate'], ['rank-sweep'], ['demo']]) {
    const out = execFileSync(process.execPath, [CLI, ...c, '--help'], { encoding: 'utf8' });
    assert.match(out, new RegExp(`lowbit ${c.join(' ')}`));
    assert.match(out, /usage:/);
  }
});
