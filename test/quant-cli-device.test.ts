// `lowbit quantize --device`: auto falls back to the CPU (same output) where GPTQ's GPU kernels are not usable;
// cuda without them is a one-line error (exit 2) for every method; with a GPU, GPTQ on cuda matches the CPU run and
// rtn says in one line that it runs on the CPU. Runs the CLI on the shipped model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import '../src/backend/native.js';
import { gptqEngine } from '../src/quant/gptq-gpu.js';

const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
const MODEL = 'models/tiny-jargon';

function run(args: string[]): { json: Record<string, unknown>; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${args.join(' ')}: exit ${r.status} ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return { json: JSON.parse(lines[lines.length - 1]) as Record<string, unknown>, stderr: r.stderr };
}
const digest = (dir: string) => createHash('sha256').update(new Uint8Array(readFileSync(join(dir, 'model.safetensors')))).digest('hex');

test('quantize --device: auto = cpu where GPTQ has no GPU; cuda without one (or a bad value) is a one-line error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-qdev-'));
  const base = ['quantize', '--model', MODEL, '--method', 'rtn', '--bits', '2'];
  const cpu = run([...base, '--out', join(dir, 'cpu'), '--device', 'cpu']).json;
  const gpu = gptqEngine();
  assert.equal(cpu.device, 'cpu');
  const bad = [[...base, '--out', join(dir, 'x'), '--device', 'gpu']];
  if (!gpu) {
    const auto = run([...base, '--out', join(dir, 'auto'), '--device', 'auto']).json;
    assert.equal(auto.device, 'cpu');
    assert.equal(digest(join(dir, 'auto')), digest(join(dir, 'cpu')), 'auto on the CPU writes the same tensors');
    writeFileSync(join(dir, 'calib.txt'), readFileSync('data/jargon.heldout.txt', 'utf8').slice(0, 2000));
    bad.push([...base, '--out', join(dir, 'y'), '--device', 'cuda'],
      ['quantize', '--model', MODEL, '--method', 'gptq', '--bits', '2', '--calib', join(dir, 'calib.txt'), '--out', join(dir, 'z'), '--device', 'cuda']);
  }
  for (const args of bad) {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status} ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^error: .*--device/);
  }
  rmSync(dir, { recursive: true });
});

test('quantize --device cuda on a GPU: GPTQ matches the CPU run (loss within 1 %); rtn and icq on the GPU write byte-identical packed files', (t) => {
  if (!gptqEngine()) { t.skip('no usable GPU for GPTQ (see lowbit env)'); return; }
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-qdev-'));
  writeFileSync(join(dir, 'calib.txt'), readFileSync('data/jargon.heldout.txt', 'utf8').slice(0, 3000));
  const g = ['quantize', '--model', MODEL, '--method', 'gptq', '--bits', '2', '--calib', join(dir, 'calib.txt'), '--calib-samples', '4', '--seq', '32', '--act-order'];
  const cpu = run([...g, '--out', join(dir, 'cpu'), '--device', 'cpu']).json as { device: string; gptq: { loss: number } };
  const cuda = run([...g, '--out', join(dir, 'cuda'), '--device', 'cuda']).json as { device: string; gptq: { loss: number }; seconds: number };
  assert.equal(cuda.device, 'cuda');
  t.diagnostic(`GPTQ loss cpu ${cpu.gptq.loss} cuda ${cuda.gptq.loss} (${cuda.seconds} s)`);
  assert.ok(Math.abs(cuda.gptq.loss / cpu.gptq.loss - 1) < 1e-2, `${cuda.gptq.loss} vs ${cpu.gptq.loss}`);
  for (const m of [['rtn'], ['icq', '--double-quant']]) {
    const outs = ['cpu', 'cuda'].map((d) => {
      const r = run(['quantize', '--model', MODEL, '--method', ...m, '--bits', '2', '--out', join(dir, `${m[0]}-${d}`), '--device', d]);
      assert.doesNotMatch(r.stderr, /runs on the CPU/);
      assert.equal((r.json as { device: string }).device, d);
      return digest(join(dir, `${m[0]}-${d}`));
    });
    assert.equal(outs[0], outs[1], `${m[0]}: GPU and CPU packed files differ`);
  }
  rmSync(dir, { recursive: true });
});
