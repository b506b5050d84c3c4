// End to end on a tiny on-disk model: FP HF dir → RTN W2 packed dir → compensate with every method →
// PEFT dir that loads back and reproduces the student's outputs; LoftQ writes a loadable re-quantized base.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/tensor.js';
import type { LlamaConfig } from '../src/model/config.js';
import { LlamaWeights } from '../src/model/weights.js';
import { LlamaModel } from '../src/model/llama.js';
import { writeHfModelDir } from '../src/io/hf-dir.js';
import { saveBpeTokenizer, trainByteLevelBpe } from '../src/io/bpe-train.js';
import { quantizeModel } from '../src/quant/model.js';
import { loadPackedModel } from '../src/quant/format.js';
import { loadPeftAdapter } from '../src/adapters/peft-io.js';
import { rankSweep } from '../src/compensate/sweep.js';
import { COMPENSATE_METHODS, compensate, loadContext, runMethod, resetStudent, snapshotBases } from '../src/compensate/index.js';

const TEXT = Array.from({ length: 60 }, (_, i) => `the quick brown fox ${i % 7} jumps over the lazy dog number ${i % 5}. `).join('');

test('compensate end to end: every method on a tiny RTN-W2 model, PEFT round trip, LoftQ base', async () => {
  const root = mkdtempSync(join(tmpdir(), 'lowbit-comp-'));
  try {
    const tokDir = join(root, 'tok'), fpDir = join(root, 'fp'), qDir = join(root, 'q'), calib = join(root, 'calib.txt');
    const bpe = trainByteLevelBpe(TEXT, { vocabSize: 300 });
    saveBpeTokenizer(tokDir, bpe);
    writeFileSync(calib, TEXT);
    const c: LlamaConfig = {
      architecture: 'llama', vocabSize: bpe.tokens.length, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2,
      headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' }, maxPositionEmbeddings: 64,
      tieWordEmbeddings: false, bosTokenId: 0, eosTokenId: 1, torchDtype: 'float32',
    };
    const w = LlamaWeights.initRandom(c, new Rng(3), 'f32', 0.2);
    writeHfModelDir(fpDir, c, w.toTensors(), { tokenizerDir: tokDir });
    await quantizeModel(fpDir, qDir, { method: 'rtn', bits: 2, groupSize: 16 });
    const base = { model: fpDir, quant: qDir, calib, samples: 10, seq: 16, valRatio: 0.2, maxSteps: 8, gradAccum: 2, evalEvery: 2, patience: 3, lr: 1e-3, quiet: true, heldout: calib, evalSeq: 16, evalMaxWindows: 4 };
    // all methods on one context (as rank-sweep does), each undone afterwards
    const ctx = loadContext(base);
    const bases = snapshotBases(ctx.student);
    for (const method of COMPENSATE_METHODS) {
      const r = runMethod(ctx, { ...base, method, rank: 4 });
      assert.ok(Number.isFinite(r.pplAfter!.ppl), `${method} ppl`);
      if (r.train) assert.ok(r.train.updates === 4 && r.valAfter! <= r.valBefore!, `${method}: ${r.valBefore} → ${r.valAfter}`);
      if (method === 'svd' || method === 'loftq') assert.ok(r.relWeightError! < 1);
      resetStudent(ctx, bases);
    }
    // the CLI path: rilq saved, loaded back onto the packed base gives the same logits
    const out = join(root, 'rilq');
    const s = compensate({ ...base, method: 'rilq', rank: 4, pplBefore: true, out, windowsJson: join(root, 'win.json') });
    assert.ok(existsSync(join(out, 'adapter_config.json')) && existsSync(join(out, 'loss.svg')) && existsSync(join(out, 'train-log.json')));
    assert.equal(JSON.parse(readFileSync(join(root, 'win.json'), 'utf8')).train.length, 8);
    assert.ok(s.valAfter! <= s.valBefore! && Number.isFinite(s.pplAfter!) && Number.isFinite(s.pplBefore!));
    const lo = compensate({ ...base, method: 'loftq', rank: 4, alpha: 16, loftqIters: 3, out: join(root, 'loftq') });
    assert.equal(lo.loftqErrors![0].length, 3);
    const pm = loadPackedModel(lo.baseOut!);
    loadPeftAdapter(join(root, 'loftq'), pm.weights, 'comp');
    const ctx2 = loadContext({ ...base });
    const r2 = runMethod(ctx2, { ...base, method: 'loftq', rank: 4, alpha: 16, loftqIters: 3 });
    const ids = ctx2.windows[0];
    const a = new LlamaModel(pm.weights).forward(ids, 1, 16, { train: false, logits: true }).logits!;
    const b = ctx2.studentModel.forward(ids, 1, 16, { train: false, logits: true }).logits!;
    let d = 0; for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
    assert.ok(d < 1e-4, `loftq reload max |Δlogit| ${d}`);
    assert.ok(r2.relWeightError! > 0);
    const sw = rankSweep({ ...base, methods: ['svd', 'rilq'], ranks: [2, 4], out: join(root, 'sweep') });
    assert.equal(sw.rows.length, 4);
    assert.ok(existsSync(join(root, 'sweep', 'rank-sweep.svg')) && sw.table.includes('| rilq |'));
  } finally { rmSync(root, { recursive: true, force: true }); }
});
