// `lowbit quantize` argument handling.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs } from '../src/cli/args.js';
import { command, quantOptsFromArgs } from '../src/cli/commands/quantize.js';

const parse = (s: string) => quantOptsFromArgs(parseArgs(s.split(' '), command));

test('quantize options', () => {
  const o = parse('--model m --method gptq --bits 3 --group 128 --calib c.txt --calib-samples 16 --seq 64 --seed 5 --act-order --out o');
  assert.equal(o.method, 'gptq'); assert.equal(o.bits, 3); assert.equal(o.groupSize, 128);
  assert.equal(o.calib, 'c.txt'); assert.equal(o.calibSamples, 16); assert.equal(o.seq, 64); assert.equal(o.seed, 5);
  assert.equal(o.actOrder, true); assert.equal(o.percdamp, 0.01);
  assert.equal(parse('--method rtn --bits 2 --group channel').groupSize, -1);
  assert.equal(parse('--method rtn --bits 2 --group -1').groupSize, -1);
  assert.equal(parse('--method rtn --bits 2').groupSize, 64);
  const n = parse('--method icq --bits 2 --double-quant --icq-mode int');
  assert.equal(n.doubleQuant, true); assert.equal(n.icqMode, 'int');
  assert.throws(() => parse('--method awq --bits 2'), /unknown --method 'awq'/);
  assert.throws(() => parse('--method rtn'), /--bits is required/);
  assert.throws(() => parse('--method icq --bits 2 --icq-mode foo'), /--icq-mode/);
  assert.throws(() => parse('--method rtn --bits 2 --group 0'), /--group/);
});
