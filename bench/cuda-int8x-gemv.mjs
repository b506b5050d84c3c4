// The prototype int8-x GEMV (native/cuda/int8x_gemv.cu) alone on the 7B decode shapes, timed as bench/cuda-decode.mjs
// times kernel 5's lone GEMVs: a CUDA graph of 20 rounds over 8 copies of the weights (so the 50 MB L2 holds none of
// them), µs per GEMV, and the bytes it must read ÷ the same run's copy rate. Two timings per shape and split: the GEMV
// kernel alone (x already quantized, y accumulating: what a fused pipeline would launch) and the prototype's whole call
// (x quantization + zeroing y + the GEMV, three launches); and the GEMV launched with PDL (each launch's first weight
// words loaded before its griddepcontrol.wait, so they stream while the launch before it finishes — kernel 5's
// lone GEMVs are PDL launches too). It reads what kernel 5 reads: 2 bits per weight and one f16 scale|zero word per 64.
// --fixed 1: the GEMV with a block per tile and its K slices added in a fixed order, y stored (parts & 64), beside the
// float-atomic split K (0). --stream 1: also the streamed kernel (parts & 512, native/cuda/int8x_stream.cu: a block per
// SM, weights through a bulk-copy ring issued before the PDL wait; "split K" = its warps a block), and a layer skeleton
// row with it.
// Usage: node bench/cuda-int8x-gemv.mjs [--ksplit 1,2,4,8] [--ahead 1,2] [--sx 0,1] [--fixed 0,1] [--stream 0,1] [--json FILE] | --profile [--stream] [--ksplit …]
import { writeFileSync } from 'node:fs';
import { cudaInt8xOps, cudaInt8xUnavailable, int8xScaleZero, int8xScratchBytes } from '../dist/src/backend/cuda-int8x.js';
import { roundF16 } from '../dist/src/quant/f16.js';

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const c = cudaInt8xOps();
if (!c) { console.error(`cuda-int8x-gemv bench: ${cudaInt8xUnavailable()}`); process.exit(2); }
const ksplits = opt('--ksplit', '1,2,4,8').split(',').map(Number);
if (args.includes('--profile')) {  // a few direct launches on the q/k/v shape for Nsight Compute (no graphs, no timing)
  const out = 12288, inP = 4096, ng = inP / 64, wBytes = out * inP / 4;
  const hw = c.cudaAlloc(wBytes), hsz = c.cudaAlloc(out * ng * 4), hx = c.cudaAlloc(inP * 4), hscr = c.cudaAlloc(int8xScratchBytes(inP)), hy = c.cudaAlloc(out * 4);
  c.cudaFillRandomBytes(hw, wBytes, 3);
  c.cudaUpload(hsz, int8xScaleZero(new Float32Array(out * ng).fill(roundF16(0.01)), new Float32Array(out * ng).fill(1)));
  c.cudaUpload(hx, new Float32Array(inP).map((_, i) => Math.sin(i * 0.37)));
  c.cudaInt8xGemv(hw, hsz, hx, hscr, hy, out, inP, 1);
  if (args.includes('--stream')) {  // the per-tile fixed-order kernel and the streamed one (tile-blocked scale|zero words)
    const hszT = c.cudaAlloc(out * ng * 4);
    c.cudaInt8xTileSz(hsz, hszT, out, inP);
    for (const ks of ksplits) for (let r = 0; r < 3; r++) {
      c.cudaInt8xGemv(hw, hsz, null, hscr, hy, out, inP, ks, 4 | 32 | 64);
      c.cudaInt8xGemv(hw, hszT, null, hscr, hy, out, inP, ks, 4 | 64 | 512);
    }
    c.cudaSync();
    process.exit(0);
  }
  for (const ks of ksplits) for (const A of [0, 16]) for (let r = 0; r < 3; r++) c.cudaInt8xGemv(hw, hsz, hx, hscr, hy, out, inP, ks, 4 | A);
  c.cudaSync();
  process.exit(0);
}
const aheads = opt('--ahead', '1,2').split(',').map(Number);  // blocks in flight per warp (1 or 2)
const sxs = opt('--sx', '0,1').split(',').map(Number);  // 1: x̂, a and Σx̂ staged in shared memory (parts & 32)
const fixeds = opt('--fixed', '0,1').split(',').map(Number);  // 1: a block per tile, fixed-order reduction (parts & 64)
const streams = opt('--stream', '0').split(',').map(Number);  // 1: the streamed kernel (parts & 512 | 64)
const bytes = 1 << 28, a = c.cudaAlloc(bytes), b = c.cudaAlloc(bytes);
c.cudaFillRandomBytes(a, bytes, 1);
const BW = (2 * bytes) / (c.cudaBenchCopy(b, a, bytes, 20) * 1e-3);
c.cudaFree(a); c.cudaFree(b);
console.log(`copy bandwidth ${(BW / 1e9).toFixed(0)} GB/s (read + write)`);
const L = 8, reps = 20;
const timeGraph = (body) => {  // ms per body call, median of 3 graph launches
  c.cudaGraphBegin();
  for (let r = 0; r < reps; r++) for (let l = 0; l < L; l++) body(l);
  const g = c.cudaGraphEnd();
  c.cudaGraphLaunch(g); c.cudaSync();
  const ms = [];
  for (let k = 0; k < 3; k++) {
    const t0 = performance.now();
    c.cudaGraphLaunch(g); c.cudaSync();
    ms.push((performance.now() - t0) / (reps * L));
  }
  c.cudaGraphFree(g);
  return ms.sort((p, q) => p - q)[1];
};
const rows = [];
const szWords = (n, l) => int8xScaleZero(new Float32Array(n).map((_, i) => roundF16(0.01 + ((i + l) % 7) * 1e-3)), new Float32Array(n).map((_, i) => (i + l) % 4));
for (const [out, inF, name] of [[4096, 4096, 'o (4096²)'], [12288, 4096, 'q/k/v (3·4096 × 4096)'], [22016, 4096, 'gate/up (2·11008 × 4096)'], [4096, 11008, 'down (4096 × 11008)']]) {
  const inP = Math.ceil(inF / 128) * 128;  // 11008 = 86·128
  const tiles = Math.ceil(out / 16), ng = inP / 64;
  const wBytes = tiles * 16 * inP / 4, szBytes = out * ng * 4;
  const sets = Array.from({ length: L }, (_, l) => {
    const hw = c.cudaAlloc(wBytes), hsz = c.cudaAlloc(szBytes);
    c.cudaFillRandomBytes(hw, wBytes, 2 + l);
    c.cudaUpload(hsz, szWords(out * ng, l));
    // the streamed kernel reads the scale|zero words tile-blocked (cudaInt8xTileSz)
    const hszT = streams.includes(1) ? c.cudaAlloc(szBytes) : 0;
    if (hszT) c.cudaInt8xTileSz(hsz, hszT, out, inP);
    return [hw, hsz, hszT];
  });
  const hx = c.cudaAlloc(inP * 4), hscr = c.cudaAlloc(int8xScratchBytes(inP)), hy = c.cudaAlloc(out * 4);
  c.cudaUpload(hx, new Float32Array(inP).map((_, i) => Math.sin(i * 0.37)));
  c.cudaInt8xGemv(sets[0][0], sets[0][1], hx, hscr, hy, out, inP, 1);  // scratch holds x̂ from here on
  const read = wBytes + szBytes + inP;
  for (const ks of ksplits) for (const ahead of aheads) for (const sx of sxs) for (const fixed of fixeds) for (const stream of streams) {
    if (fixed && ks > 16) continue;
    // the streamed kernel: one row per warp count (it has no register ring or x̂ option; 4, 8 or 16 warps)
    if (stream && (!fixed || ahead !== aheads[0] || sx !== sxs[0] || ![4, 8, 16].includes(ks))) continue;
    const A = stream ? 64 | 512 : (ahead >= 2 ? 16 : 0) | (sx ? 32 : 0) | (fixed ? 64 : 0);
    const szOf = (l) => sets[l][stream ? 2 : 1];
    const gemv = timeGraph((l) => c.cudaInt8xGemv(sets[l][0], szOf(l), hx, hscr, hy, out, inP, ks, 4 | A)) * 1e3;
    const pdl = timeGraph((l) => c.cudaInt8xGemv(sets[l][0], szOf(l), hx, hscr, hy, out, inP, ks, 12 | A)) * 1e3;
    const whole = timeGraph((l) => c.cudaInt8xGemv(sets[l][0], szOf(l), hx, hscr, hy, out, inP, ks, 7 | A)) * 1e3;
    const ofCopy = read / (gemv * 1e-6) / BW;  // as the decode bench: bytes ÷ the copy rate (read + write)
    rows.push({ name, out, in: inP, ksplit: ks, ahead, sx, fixed, stream, gemvUs: gemv, gemvPdlUs: pdl, wholeUs: whole, readBytes: read, ofCopyRead: ofCopy });
    console.log(`${name.padEnd(26)} ${stream ? `streamed, ${ks} warps` : `split K ${ks}, ${ahead} ahead${sx ? ', x̂ in smem' : ''}${fixed ? ', fixed order' : ''}`}: GEMV ${gemv.toFixed(2)} µs, ${(read / 1e6).toFixed(1)} MB → ${(100 * ofCopy).toFixed(1)} % of the copy rate; with PDL ${pdl.toFixed(2)} µs (${(100 * read / (pdl * 1e-6) / BW).toFixed(1)} %); whole call (3 launches) ${whole.toFixed(2)} µs`);
  }
  for (const s of sets) for (const h of s) if (h) c.cudaFree(h);
  for (const h of [hx, hscr, hy]) c.cudaFree(h);
}
// The layer skeleton: the four GEMVs of a layer (q/k/v, o, gate/up, down) chained over 8 layers' distinct weights, as a
// decode built on this body would launch them (no norm, attention, adapter or x quantization between them: an upper
// bound of what the body allows), each shape at its best split K from the rows above; µs per layer and the bytes read ÷
// the copy rate. Decode is at ~28 µs of bytes per layer with the adapter, ~21 µs without; kernel 5 takes ~64 µs per layer
// without the adapter (run 77), so this says whether the body and PDL leave room for 60 %.
const skeleton = [];
{
  const shapes = [[12288, 4096], [4096, 4096], [22016, 4096], [4096, 11008]].map(([out, inF]) => {
    const inP = Math.ceil(inF / 128) * 128, ng = inP / 64;
    const all = rows.filter((r) => r.out === out && r.in === inP), mine = all.filter((r) => !r.stream);
    const streamed = all.filter((r) => r.stream);
    const best = (key, f = () => true) => {
      const pool = mine.filter(f).length ? mine.filter(f) : mine, r = pool.reduce((p, q) => (q[key] < p[key] ? q : p));
      return { ks: r.ksplit, A: (r.ahead >= 2 ? 16 : 0) | (r.sx ? 32 : 0) | (r.fixed ? 64 : 0) };
    };
    const bestStream = streamed.length ? { ks: streamed.reduce((p, q) => (q.gemvPdlUs < p.gemvPdlUs ? q : p)).ksplit, A: 64 | 512 } : null;
    return { out, inP, ng, wBytes: Math.ceil(out / 16) * 16 * inP / 4, szBytes: out * ng * 4, ksPdl: best('gemvPdlUs'), ks: best('gemvUs'),
      ksPdlAtomic: best('gemvPdlUs', (r) => !r.fixed), ksPdlFixed: best('gemvPdlUs', (r) => r.fixed), ksPdlStream: bestStream };
  });
  const layers = Array.from({ length: L }, (_, l) => shapes.map((s) => {
    const hw = c.cudaAlloc(s.wBytes), hsz = c.cudaAlloc(s.szBytes);
    c.cudaFillRandomBytes(hw, s.wBytes, 50 + l);
    c.cudaUpload(hsz, szWords(s.out * s.ng, l));
    const hszT = streams.includes(1) ? c.cudaAlloc(s.szBytes) : 0;
    if (hszT) c.cudaInt8xTileSz(hsz, hszT, s.out, s.inP);
    return [hw, hsz, hszT];
  }));
  const hx = c.cudaAlloc(11008 * 4), hy = c.cudaAlloc(22016 * 4);
  c.cudaUpload(hx, new Float32Array(11008).map((_, i) => Math.cos(i * 0.21)));
  const scr = shapes.map((s, i) => {  // x̂ for each input width (the scratch's layout depends on it)
    const h = c.cudaAlloc(int8xScratchBytes(s.inP));
    c.cudaInt8xGemv(layers[0][i][0], layers[0][i][1], hx, h, hy, s.out, s.inP, 1);
    return h;
  });
  const read = shapes.reduce((t, s) => t + s.wBytes + s.szBytes + s.inP, 0);
  const hn = c.cudaAlloc(11008 * 4);
  c.cudaUpload(hn, new Float32Array(11008).fill(0.9));
  // with prep: each GEMV after its input's prep launch (RMSNorm for q/k/v and gate/up, plain for o, SwiGLU for down), which
  // also zeroes the GEMV's y — the 8 launches per layer a decode on this body would make without its adapter and attention
  const prepOf = [{ norm: true }, {}, { norm: true }, { swiglu: true }];
  // with the adapter: each GEMV launch also computes its projections' LoRA-A rows (rank 64: 3·64 for q/k/v, 2·64 for
  // gate/up, 64 for o and down; bf16 [R, in] per layer), the bytes decode reads for the adapter's A factors
  const rankRows = [192, 64, 128, 64];
  const loraA = layers.map((_, l) => shapes.map((s, i) => {
    const h = c.cudaAlloc(rankRows[i] * s.inP * 2);
    c.cudaFillUniformBf16(h, rankRows[i] * s.inP, 70 + l, -0.05, 0.05);
    return h;
  }));
  const ht = c.cudaAlloc(192 * 4);
  c.cudaUpload(ht, new Float32Array(192).map((_, i) => Math.sin(i)));
  // and the preps do the hand-offs decode needs: q/k/v's adds down's y + B·t to the residual stream before the norm, o's
  // reads the attention's bf16 output, gate/up's adds o's y + B·t, down's applies gate's and up's B·t inside the SwiGLU
  // (rank 64 B factors [out, 64] bf16; q/k/v's own B·t would sit in the attention's epilogue, not timed here)
  const bf = (n, seed) => { const h = c.cudaAlloc(n * 2); c.cudaFillUniformBf16(h, n, seed, -0.05, 0.05); return h; };
  const hB = { down: bf(4096 * 64, 81), o: bf(4096 * 64, 82), gate: bf(11008 * 64, 83), up: bf(11008 * 64, 84) };
  const hatt = bf(4096, 85), hyr = c.cudaAlloc(4096 * 4), hxo = c.cudaAlloc(4096 * 4), hup = c.cudaAlloc(11008 * 4);
  c.cudaUpload(hyr, new Float32Array(4096).map((_, i) => 0.1 * Math.cos(i)));
  c.cudaUpload(hup, new Float32Array(11008).map((_, i) => Math.sin(i * 0.3)));
  const readArows = shapes.reduce((t, s, i) => t + rankRows[i] * s.inP * 2, 0), readB = (2 * 4096 + 2 * 11008) * 64 * 2;
  // noB: the hand-offs without B·t (each GEMV adds its own in its epilogue)
  const prepWithA = (i, s, pdl, zy, nz, noB) => {
    const b = (h) => (noB ? null : h), tt = noB ? null : ht;
    if (i === 0) c.cudaInt8xPrep(hx, null, hn, scr[i], s.inP, zy, nz, pdl, hyr, b(hB.down), tt, null, null, 64, hxo);
    else if (i === 1) c.cudaInt8xPrep(hatt, null, null, scr[i], s.inP, zy, nz, pdl, null, null, null, null, null, 0, null, true);
    else if (i === 2) c.cudaInt8xPrep(hx, null, hn, scr[i], s.inP, zy, nz, pdl, hyr, b(hB.o), tt, null, null, 64, hxo);
    else c.cudaInt8xPrep(hx, hup, null, scr[i], s.inP, zy, nz, pdl, null, b(hB.gate), tt, b(hB.up), tt, 64);
  };
  // B·t in each GEMV's epilogue: its projections' B (rank 64) by row segment, and the A-row counters
  const hBq = [bf(4096 * 64, 86), bf(4096 * 64, 87), bf(4096 * 64, 88)];
  const epiBt = [{ Bs: hBq, ends: [4096, 8192, 12288] }, { Bs: [hB.o], ends: [4096] }, { Bs: [hB.gate, hB.up], ends: [11008, 22016] },
    { Bs: [hB.down], ends: [4096] }].map((e) => { const sync = c.cudaAlloc(16); c.cudaMemset0(sync, 16); return { ...e, sync }; });
  // the hand-offs and the LoRA-A rows once apart and once together, so each one's price shows
  for (const [label, pdl, pick, prep, handoff, withA] of [['no PDL', false, 'ks', false, false, false],
    ['PDL', true, 'ksPdl', false, false, false], ['PDL, split K 1', true, null, false, false, false],
    ['PDL + prep launches', true, 'ksPdl', true, false, false],
    ['PDL + prep launches with the hand-offs (rank 64)', true, 'ksPdl', true, true, false],
    ['PDL + prep launches + LoRA-A rows (rank 64)', true, 'ksPdl', true, false, true],
    ['PDL + prep launches with the hand-offs + LoRA-A rows (rank 64)', true, 'ksPdl', true, true, true],
    ['PDL + prep launches with the hand-offs + LoRA-A rows (rank 64), float-atomic split K', true, 'ksPdlAtomic', true, true, true],
    ['PDL + prep launches with the hand-offs + LoRA-A rows (rank 64), fixed-order split K', true, 'ksPdlFixed', true, true, true],
    ['PDL + prep launches with the hand-offs + LoRA-A rows (rank 64), B·t in the GEMV epilogues (fixed-order split K)', true, 'ksPdlFixed', true, 'epi', true],
    ...(streams.includes(1) ? [['PDL + prep launches, streamed GEMVs', true, 'ksPdlStream', true, false, false],
      ['PDL + prep launches with the hand-offs + LoRA-A rows (rank 64), B·t in the GEMV epilogues, streamed GEMVs', true, 'ksPdlStream', true, 'epi', true]] : [])]) {
    const us = timeGraph((l) => layers[l].forEach((h, i) => {
      const s = shapes[i], pr = prepOf[i];
      const { ks, A } = pick ? s[pick] : { ks: 1, A: 0 };
      const zy = A & 64 ? null : hy, nz = A & 64 ? 0 : s.out;  // a GEMV that stores y needs no zeroed y
      const epi = handoff === 'epi' && A & 64 ? epiBt[i] : null;
      if (prep && handoff) prepWithA(i, s, pdl, zy, nz, !!epi);
      else if (prep) c.cudaInt8xPrep(hx, pr.swiglu ? hx : null, pr.norm ? hn : null, scr[i], s.inP, zy, nz, pdl);
      c.cudaInt8xGemv(h[0], A & 512 ? h[2] : h[1], hx, scr[i], hy, s.out, s.inP, ks, (pdl ? 12 : 4) | A, prep && pr.norm ? 1e-5 : null,
        withA ? loraA[l][i] : null, withA ? rankRows[i] : 0, withA ? ht : null, epi?.Bs ?? null, epi?.ends ?? null, epi ? 64 : 0, epi?.sync ?? null);
    })) * 1e3;
    const bytes = read + (withA ? readArows : 0) + (handoff ? readB + (handoff === 'epi' ? 3 * 4096 * 64 * 2 : 0) : 0), ofCopy = bytes / (us * 1e-6) / BW;
    skeleton.push({ label, withLoraA: withA, withHandoffs: handoff, splits: shapes.map((s) => (pick ? `${s[pick].ks}${s[pick].A & 16 ? 'a2' : ''}${s[pick].A & 32 ? 's' : ''}${s[pick].A & 64 ? 'f' : ''}${s[pick].A & 512 ? 'S' : ''}` : '1')), usPerLayer: us, readBytes: bytes, ofCopyRead: ofCopy });
    console.log(`layer skeleton (4 GEMVs × ${L} layers, ${label}, split K ${skeleton.at(-1).splits.join('/')}): ${us.toFixed(2)} µs per layer, ${(bytes / 1e6).toFixed(1)} MB → ${(100 * ofCopy).toFixed(1)} % of the copy rate`);
  }
  for (const l of loraA) for (const h of l) c.cudaFree(h);
  for (const h of [ht, ...Object.values(hB), ...hBq, ...epiBt.map((e) => e.sync), hatt, hyr, hxo, hup]) c.cudaFree(h);
  for (const l of layers) for (const s of l) for (const h of s) if (h) c.cudaFree(h);
  for (const h of [hx, hy, hn, ...scr]) c.cudaFree(h);
}
const jsonOut = opt('--json', null);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ date: new Date().toISOString(), copyGBs: BW / 1e9, graphRounds: reps, weightSets: L, rows, skeleton }, null, 1) + '\n');
