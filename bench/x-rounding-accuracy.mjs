// What the decode GEMV's rounding of its input x costs in held-out perplexity, on the shipped tiny model quantized to
// 2-bit RTN g64 (CPU, a few seconds per mode). The packed projections see x rounded as a candidate kernel would read it:
//   f32      exact (the CPU reference)
//   fp16     every element to fp16 (kernel 5's image of x·normW today)
//   int8/64  symmetric int8 per group of 64 inputs (absmax / 127): the operand of an mma.m16n8k32 u8×s8 body, which would
//            need about half of kernel 5's instructions per weight (docs/cuda.md, "Why it stops near 30 %")
//   int8/row symmetric int8 with one scale per token row
//   int4/64  symmetric int4 per group of 64 (for scale)
// --outliers K,…: also with outlier channels the tiny model lacks (LLaMA-7B's inputs carry a few channels far above the
// rest): input channels 7 and 135 of every projection scaled by K before the rounding and back after it. That is the
// same as a model whose norm weights carry K on those channels and whose weight columns carry 1/K, so f32 is unchanged
// and only the rounding sees the outliers. Each one costs the rest of its group of 64 their precision: here one group in
// 4 (hidden 256), in a 7B one in 64.
// Usage: node bench/x-rounding-accuracy.mjs [--outliers 10,30,100] [--json FILE]   (after npm run build)
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer } from '../dist/src/io/tokenizer.js';
import { loadModel } from '../dist/src/serve/load.js';
import { quantizeModel } from '../dist/src/quant/model.js';
import { evalPerplexity } from '../dist/src/eval/ppl.js';
import { PackedLinear } from '../dist/src/quant/packed-linear.js';
import { roundF16 } from '../dist/src/backend/cuda-decode.js';

const args = process.argv.slice(2);
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;
const fpDir = 'models/tiny-jargon', seq = 256;
const tok = loadTokenizer(fpDir);
const heldout = tok.encode(readFileSync('data/jargon.heldout.txt', 'utf8'), { addBos: false });
const work = mkdtempSync(join(tmpdir(), 'lowbit-xround-'));
const qDir = join(work, 'rtn-w2-g64');
await quantizeModel(fpDir, qDir, { method: 'rtn', bits: 2, groupSize: 64 });

function symmetric(x, off, n, levels) {  // round x[off .. off + n) to a symmetric grid of ±levels steps of absmax / levels
  let m = 0;
  for (let i = 0; i < n; i++) m = Math.max(m, Math.abs(x[off + i]));
  if (m === 0) return;
  const s = m / levels;
  for (let i = 0; i < n; i++) x[off + i] = Math.round(x[off + i] / s) * s;
}
const MODES = {
  f32: null,
  fp16: (x) => { for (let i = 0; i < x.length; i++) x[i] = roundF16(x[i]); },
  'int8/64': (x) => { for (let o = 0; o < x.length; o += 64) symmetric(x, o, 64, 127); },
  'int8/row': (x, inF) => { for (let o = 0; o < x.length; o += inF) symmetric(x, o, inF, 127); },
  'int4/64': (x) => { for (let o = 0; o < x.length; o += 64) symmetric(x, o, 64, 7); },
};
const fwd = PackedLinear.prototype.forward;
const results = {};
const OUT_CH = [7, 135];
const outliers = args.includes('--outliers') ? args[args.indexOf('--outliers') + 1].split(',').map(Number) : [];
for (const K of [1, ...outliers]) for (const [name, round] of Object.entries(MODES)) {
  if (K !== 1 && !['f32', 'fp16', 'int8/64', 'int8/row'].includes(name)) continue;
  const scale = (xr, inF, f) => { for (let o = 0; o < xr.length; o += inF) for (const c of OUT_CH) if (c < inF) xr[o + c] *= f; };
  PackedLinear.prototype.forward = round || K !== 1
    ? function (out, x, rows) {
      const xr = Float32Array.from(x.subarray(0, rows * this.inFeatures));
      if (K !== 1) scale(xr, this.inFeatures, K);
      if (round) round(xr, this.inFeatures);
      if (K !== 1) scale(xr, this.inFeatures, 1 / K);
      fwd.call(this, out, xr, rows);
    }
    : fwd;
  const t0 = Date.now(), label = K === 1 ? name : `${name}, outliers ×${K}`;
  const ppl = evalPerplexity(loadModel(qDir).model, heldout, { seq, batch: 4, progress: false, label }).ppl;
  results[label] = ppl;
  console.log(`${label.padEnd(22)} held-out perplexity ${ppl.toFixed(3)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
PackedLinear.prototype.forward = fwd;
rmSync(work, { recursive: true, force: true });
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ date: new Date().toISOString(), model: fpDir, quant: 'rtn w2 g64', seq, ppl: results }, null, 1) + '\n');
