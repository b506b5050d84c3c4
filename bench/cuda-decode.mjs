#!/usr/bin/env node
// Batch-1 greedy decode on lowbit's GPU engine: a LLaMA-2-7B-shaped model with a packed RTN W2 g64 base
// (random codes made on the device), with and without an UNMERGED rank-64 LoRA on all 7 projections, for
// each fused-GEMV variant. Reports tokens/s and the share of the memory-bandwidth bound: bytes a token must
// read (packed base + adapters + lm_head + KV cache) ÷ the device-to-device copy bandwidth measured in the
// same run. Compare with transformers' bf16 greedy decode (bench/torch_reference.py).
//   node bench/cuda-decode.mjs [--json out.json] [--tiny] [--tokens 128]
import { writeFileSync } from 'node:fs';
import { gpuEngine, gpuUnavailable } from '../dist/src/model/gpu/engine.js';
import { randomGpuWeights } from '../dist/src/model/gpu/device-weights.js';
import { GpuLora } from '../dist/src/model/gpu/gpu-lora.js';
import { GpuDecoder, greedyDecode } from '../dist/src/model/gpu/gpu-decode.js';
import { allSiteSpecs, benchConfig, randomLoraParams } from './gpu-shapes.mjs';

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const tiny = args.includes('--tiny');
const c = gpuEngine();
if (!c) { console.error(`cuda-decode bench: ${gpuUnavailable()}`); process.exit(2); }
const cfg = benchConfig(tiny, 704);  // tiny: intermediate a multiple of 64, so every projection takes the fused GEMV
const N = Number(opt('--tokens', 128)), rank = 64, prompt = Array.from({ length: 8 }, (_, i) => (i * 31 + 5) % cfg.vocabSize);
const log = (m) => console.log(m);
const bytes = 1 << 28, a = c.cudaAlloc(bytes), b = c.cudaAlloc(bytes);
c.cudaFillRandomBytes(a, bytes, 1);
const copyMs = c.cudaBenchCopy(b, a, bytes, 20);
c.cudaFree(a); c.cudaFree(b);
const BW = (2 * bytes) / (copyMs * 1e-3);
log(`copy bandwidth ${(BW / 1e9).toFixed(0)} GB/s (read + write)`);

const gw = randomGpuWeights(c, cfg, { layout: 'int', bits: 2, group: 64 }, 3);
const specs = allSiteSpecs(cfg, rank);
const lora = new GpuLora(c, specs);
lora.setParams(randomLoraParams(specs, 99, 1, 0.01));
const res = { date: new Date().toISOString(), device: c.cudaInfo().deviceName, shape: tiny ? 'tiny' : 'llama-2-7b', copyGBs: BW / 1e9, tokens: N, runs: [] };
const variants = (opt('--variants', '1,2')).split(',').map(Number);
// --profile gemv|token: a few eager launches for Nsight Compute (scripts/device/profile-decode.sh), then exit.
//   gemv: the four v4 GEMV groups without LoRA, in the order q/k/v+norm, gate/up+norm, o, down, three times;
//   token: greedy decode of a 1-token prompt for 2 tokens with the rank-64 adapter, eager (every kernel of a step);
//   token-base: the same without the adapter.
// the median of the values that are not NaN (trace stamps a block did not take are NaN)
const medOf = (a) => { const v = a.filter((x) => !Number.isNaN(x)).sort((x, y) => x - y); return v.length ? v[v.length >> 1] : NaN; };
const profile = opt('--profile');
if (profile) {
  const d = new GpuDecoder(c, gw, profile === 'token' ? lora : null, 8);
  d.variant = 4;
  if (profile === 'token' || profile === 'token-base') greedyDecode(d, [prompt[0]], 2);
  else {
    const h = d.arena.h;
    c.cudaFillUniformBf16(h.xb, cfg.intermediateSize, 5, -1, 1);
    for (const [buf, n] of [[h.x, cfg.hiddenSize], [h.attF, cfg.hiddenSize], [h.act, cfg.intermediateSize]]) {
      c.cudaMemset0(buf, n * 4); c.cudaAccumulateBf16ToF32(buf, h.xb, n, 1);
    }
    for (let rep = 0; rep < 3; rep++) {
      const l = rep % cfg.numLayers;
      c.cudaDecodeGemv(h.x, false, gw.layers[l].inputNorm, 1e-5, cfg.hiddenSize, d.v4[l].qkv, 0, d.gemvKernel);
      c.cudaDecodeGemv(h.x, false, gw.layers[l].postNorm ?? gw.layers[l].inputNorm, 1e-5, cfg.hiddenSize, d.v4[l].gu, 0, d.gemvKernel);
      c.cudaDecodeGemv(h.attF, false, null, 1e-5, cfg.hiddenSize, d.v4[l].o, 0, d.gemvKernel);
      c.cudaDecodeGemv(h.act, false, null, 1e-5, cfg.intermediateSize, d.v4[l].down, 0, d.gemvKernel);
    }
  }
  c.cudaSync();
  d.free(); lora.free(); gw.free();
  process.exit(0);
}
// --trace: one token of the persistent plan (kernel 6, rank-64 adapter) with %globaltimer stamps per phase and block,
// summarised per phase kind (median over the layers, µs): the phase's period, its blocks' work (median / max), the spread
// of their starts, "barrier" = the next phase's first start − the latest stamp after arrive + next prologue (negative:
// blocks were released while a block still issued its prologue), the last-finishing block's end of work → that stamp
// (arrive + next prologue), and for GEMVs the block medians of x staging, dense tiles, first-stage wait, packed items.
if (args.includes('--trace')) {
  for (const withLora of [true, false]) {
    const d = new GpuDecoder(c, gw, withLora ? lora : null, prompt.length + 40, 6);
    if (!d.persistent) { log('--trace: the persistent plan could not be built'); process.exit(1); }
    greedyDecode(d, prompt, 30);
    const plan = d.persistPlan, info = c.cudaDecodePlanTrace(plan, null), K = 6, n = info.phases * info.grid * K;
    const tb = c.cudaAlloc(n * 8);
    c.cudaUpload(tb, new BigUint64Array(n));  // stamps a block does not take (no dense tile, no packed item) stay 0
    c.cudaDecodePlanTrace(plan, tb);
    d.step(prompt[0]);
    c.cudaSync();
    const raw = new BigUint64Array(n);
    c.cudaDownload(tb, raw);
    c.cudaDecodePlanTrace(plan, null);
    c.cudaFree(tb);
    const G = info.grid, t0 = raw[0], at = (i, b, k) => raw[(i * G + b) * K + k] === 0n ? NaN : Number(raw[(i * G + b) * K + k] - t0) / 1000;
    const kinds = ['q/k/v', 'attention', 'o', 'gate/up', 'down'], per = kinds.map(() => []);
    for (let i = 0; i + 1 < info.phases; i++) {
      const bs = [...Array(G).keys()], st = bs.map((b) => at(i, b, 0)), en = bs.map((b) => at(i, b, 4)), ar = bs.map((b) => at(i, b, 5));
      const nx = bs.map((b) => at(i + 1, b, 0)), work = bs.map((b) => en[b] - st[b]).sort((x, y) => x - y);
      const lastEnd = en.indexOf(Math.max(...en));
      // GEMV sub-intervals (median over blocks): staging x, the dense (LoRA A) tiles, the wait for the first stage, the packed items
      const sub = (k0, k1) => medOf(bs.map((b) => at(i, b, k1) - at(i, b, k0)));
      per[i % 5].push({ period: Math.min(...nx) - Math.min(...st), workMed: work[G >> 1], workMax: work[G - 1], skew: Math.max(...st) - Math.min(...st),
        barrier: Math.min(...nx) - Math.max(...ar), lastArrive: ar[lastEnd] - en[lastEnd],
        stageX: sub(0, 1), dense: sub(1, 2), firstWait: sub(2, 3), packed: sub(3, 4) });
    }
    log(`trace, ${withLora ? 'rank-64 adapter' : 'no adapter'} (one token, µs, median over layers): phase | period | work median / max | start spread | barrier | last block's arrive + prologue || work split (block medians): stage x | dense tiles | first-stage wait | packed items`);
    let tot = 0;
    per.forEach((rows, k) => {
      const f = (key) => medOf(rows.map((r) => r[key])).toFixed(2);
      tot += rows.reduce((a, r) => a + r.period, 0);
      log(`  ${kinds[k].padEnd(10)} | ${f('period')} | ${f('workMed')} / ${f('workMax')} | ${f('skew')} | ${f('barrier')} | ${f('lastArrive')}` +
        (k === 1 ? '' : ` || ${f('stageX')} | ${f('dense')} | ${f('firstWait')} | ${f('packed')}`));
    });
    log(`  all phases: ${(tot / 1000).toFixed(3)} ms per token`);
    d.free();
  }
  process.exit(0);
}
// One traced token at position P under graph replay: the graphs warmed, position P captured with the stamps' addresses
// (setTrace(tb) turns the stamps on, setTrace(null) off and returns the launches it counted) and run, then replayed warm
// over fresh zeros. Returns the stamps, the launch count and the earliest stamp.
function tracedToken(d, tb, n, setTrace) {
  d.useGraphs = true;
  greedyDecode(d, prompt, 4); d.reset();
  const P = 12, tok = (i) => prompt[i % prompt.length];
  for (let i = 0; i < P; i++) d.step(tok(i), false);
  c.cudaUpload(tb, new BigUint64Array(n));
  setTrace(tb);
  d.step(tok(P), false);  // position P: captured with the stamps' addresses, and run
  const { launches } = setTrace(null);
  d.reset();  // replay (warm graphs): the stamps of position P are overwritten
  for (let i = 0; i < P; i++) d.step(tok(i), false);
  c.cudaUpload(tb, new BigUint64Array(n));
  d.step(tok(P), false);
  c.cudaSync();
  const raw = new BigUint64Array(n);
  c.cudaDownload(tb, raw);
  let t0 = null;
  for (const v of raw) if (v !== 0n && (t0 === null || v < t0)) t0 = v;
  return { raw, launches, t0 };
}
// --trace5: one token of kernel 5's folded plan (graph replay) with %globaltimer stamps per GEMV launch and block,
// summarised per GEMV kind (median over layers, µs): period (this launch's first block start → the next GEMV's), span
// (first start → last exit), start spread, block work median / max, the slowest block's stages, and the block medians
// of: stage x | dense (LoRA A) tiles | packed items (with the first stage's wait) | exit (t-count reset).
if (args.includes('--trace5')) {
  if (typeof c.cudaDecodeGemvTrace !== 'function') { log('--trace5: this addon has no cudaDecodeGemvTrace'); process.exit(1); }
  const K = 6, { stride: G } = c.cudaDecodeGemvTrace(null), maxL = 4 * cfg.numLayers + 8, n = maxL * G * K;
  const tb = c.cudaAlloc(n * 8);
  res.trace5 = {};
  for (const withLora of [true, false]) {
    const d = new GpuDecoder(c, gw, withLora ? lora : null, prompt.length + 40, 5);
    const { raw, launches, t0 } = tracedToken(d, tb, n, (buf) => c.cudaDecodeGemvTrace(buf));
    const L = Math.min(launches, maxL);
    const at = (i, b, k) => raw[(i * G + b) * K + k] === 0n ? NaN : Number(raw[(i * G + b) * K + k] - t0) / 1000;
    const kinds = ['q/k/v', 'o', 'gate/up', 'down'], per = kinds.map(() => []);
    const blocks = (i) => [...Array(G).keys()].filter((b) => !Number.isNaN(at(i, b, 0)));
    for (let i = 0; i + 1 < L && i < 4 * cfg.numLayers; i++) {
      const bs = blocks(i), st = bs.map((b) => at(i, b, 0)), ex = bs.map((b) => at(i, b, 5)), nx = blocks(i + 1).map((b) => at(i + 1, b, 0));
      const work = bs.map((b) => at(i, b, 4) - at(i, b, 0)).sort((x, y) => x - y);
      const slow = bs[ex.indexOf(Math.max(...ex))], sub = (k0, k1) => medOf(bs.map((b) => at(i, b, k1) - at(i, b, k0)));
      per[i % 4].push({ period: Math.min(...nx) - Math.min(...st), span: Math.max(...ex) - Math.min(...st), skew: Math.max(...st) - Math.min(...st),
        gapNext: Math.min(...nx) - Math.max(...ex), workMed: work[work.length >> 1], workMax: work[work.length - 1],
        slowStart: at(i, slow, 0) - Math.min(...st), slowX: at(i, slow, 1) - at(i, slow, 0), slowDense: at(i, slow, 2) - at(i, slow, 1),
        slowPacked: at(i, slow, 4) - at(i, slow, 2), stageX: sub(0, 1), dense: sub(1, 2), packed: sub(2, 4), exit: sub(4, 5) });
    }
    const tokenUs = L > 1 ? Math.max(...blocks(L - 1).map((b) => at(L - 1, b, 5))) - Math.min(...blocks(0).map((b) => at(0, b, 0))) : NaN;
    log(`trace5, ${withLora ? 'rank-64 adapter' : 'no adapter'}: ${launches} kernel-5 launches, first start → last exit ${tokenUs.toFixed(1)} µs (µs, median over layers)`);
    log('  GEMV     | period | span | start spread | gap to next | work med / max || slowest block: start, x, dense, packed || block medians: stage x | dense | packed | exit');
    const sum = {};
    per.forEach((rows, k) => {
      const f = (key) => medOf(rows.map((r) => r[key]));
      const o = Object.fromEntries(Object.keys(rows[0] ?? {}).map((key) => [key, f(key)]));
      sum[kinds[k]] = o;
      const x = (v) => v.toFixed(2);
      log(`  ${kinds[k].padEnd(8)} | ${x(o.period)} | ${x(o.span)} | ${x(o.skew)} | ${x(o.gapNext)} | ${x(o.workMed)} / ${x(o.workMax)} || ${x(o.slowStart)}, ${x(o.slowX)}, ${x(o.slowDense)}, ${x(o.slowPacked)} || ${x(o.stageX)} | ${x(o.dense)} | ${x(o.packed)} | ${x(o.exit)}`);
    });
    res.trace5[withLora ? 'lora' : 'none'] = { launches, tokenUs, perKind: sum };
    d.free();
  }
  c.cudaFree(tb);
  const out = opt('--json');
  if (out) writeFileSync(out, JSON.stringify(res, null, 1) + '\n');
  process.exit(0);
}
// --trace-chain: one token of kernel 8 with the chain (LOWBIT_INT8X_CHAIN=1 is set here; graph replay) with
// %globaltimer stamps per chain launch and block, summarised per phase (the attention with LOWBIT_INT8X_CHAIN_ATTN=1, o,
// gate/up, down, next q/k/v; median over the layers, µs): the phase's span (first block past its barrier → last block's items done), and the block medians of the
// barrier wait (from the block's previous phase's items done; phase o: from past the PDL wait), the x̂ staging, the A
// rows and the items; per launch: entry → past the PDL wait (how early PDL let the blocks in), span, and the gap to the
// next chain launch (the attention and the launch boundaries).
if (args.includes('--trace-chain')) {
  process.env.LOWBIT_INT8X_CHAIN = '1';
  if (typeof c.cudaInt8xChainTrace !== 'function') { log('--trace-chain: this addon has no cudaInt8xChainTrace'); process.exit(1); }
  const { grid: G, stamps: K } = c.cudaInt8xChainTrace(null), maxL = cfg.numLayers + 2, n = maxL * G * K;
  const tb = c.cudaAlloc(n * 8);
  res.traceChain = {};
  for (const withLora of [true, false]) {
    const d = new GpuDecoder(c, gw, withLora ? lora : null, prompt.length + 40, 8);
    if (!d.chained) { log(`--trace-chain: the chain does not run (${d.int8xUnsupported() || 'streamed GEMVs / attention launch / t by value missing'})`); process.exit(1); }
    const { raw, launches, t0 } = tracedToken(d, tb, n, (buf) => c.cudaInt8xChainTrace(buf));
    const L = Math.min(launches, maxL);
    const at = (i, b, k) => raw[(i * G + b) * K + k] === 0n ? NaN : Number(raw[(i * G + b) * K + k] - t0) / 1000;
    // phase p of a launch is kinds[p % kinds.length] (a layer's chain, or with LOWBIT_INT8X_CHAIN_TOKEN=1 every layer's)
    const kinds = [...(d.chainedAttention ? ['attention'] : []), 'o', ...(d.chainedPrep ? ['prep g/u', 'gate/up', 'prep down', 'down', 'prep qkv', 'next q/k/v'] : ['gate/up', 'down', 'next q/k/v'])];
    const per = kinds.map(() => []), launch = [];
    const bs = [...Array(G).keys()];
    const minOf = (a) => Math.min(...a.filter((x) => !Number.isNaN(x))), maxOf = (a) => Math.max(...a.filter((x) => !Number.isNaN(x)));
    for (let i = 0; i < L; i++) {
      // the launch's phases: those with stamps (the last layer has no next q/k/v; at most (K - 2) / 4 are stamped)
      let nph = 0;
      while (nph < (K - 2) / 4 && !Number.isNaN(medOf(bs.map((b) => at(i, b, 2 + 4 * nph))))) nph++;
      const last = (b) => at(i, b, 5 + 4 * (nph - 1));
      for (let p = 0; p < nph; p++) {
        const from = (b) => (p === 0 ? at(i, b, 1) : at(i, b, 5 + 4 * (p - 1)));
        per[p % kinds.length].push({ span: maxOf(bs.map((b) => at(i, b, 5 + 4 * p))) - minOf(bs.map((b) => at(i, b, 2 + 4 * p))),
          barrier: medOf(bs.map((b) => at(i, b, 2 + 4 * p) - from(b))), stage: medOf(bs.map((b) => at(i, b, 3 + 4 * p) - at(i, b, 2 + 4 * p))),
          arows: medOf(bs.map((b) => at(i, b, 4 + 4 * p) - at(i, b, 3 + 4 * p))), items: medOf(bs.map((b) => at(i, b, 5 + 4 * p) - at(i, b, 4 + 4 * p))),
          itemsMax: maxOf(bs.map((b) => at(i, b, 5 + 4 * p) - at(i, b, 4 + 4 * p))) });
      }
      const end = maxOf(bs.map(last)), next = i + 1 < L ? minOf(bs.map((b) => at(i + 1, b, 1))) : NaN;
      launch.push({ early: medOf(bs.map((b) => at(i, b, 1) - at(i, b, 0))), span: end - minOf(bs.map((b) => at(i, b, 1))), gap: next - end });
    }
    const f2 = (v) => (Number.isNaN(v) ? '–' : v.toFixed(2));
    const lm = (key) => medOf(launch.map((r) => r[key]));
    log(`trace-chain, ${withLora ? 'rank-64 adapter' : 'no adapter'}: ${launches} chain launches, grid ${G}; per launch (median over layers, µs): entry → past the PDL wait ${f2(lm('early'))}, span ${f2(lm('span'))}, gap to the next chain ${f2(lm('gap'))}`);
    log('  phase      | span | barrier | x̂ | A rows | items med / max');
    const sum = { launch: { early: lm('early'), span: lm('span'), gap: lm('gap') } };
    per.forEach((rows, k) => {
      if (!rows.length) return;
      const o = Object.fromEntries(Object.keys(rows[0]).map((key) => [key, medOf(rows.map((r) => r[key]))]));
      sum[kinds[k]] = o;
      log(`  ${kinds[k].padEnd(10)} | ${f2(o.span)} | ${f2(o.barrier)} | ${f2(o.stage)} | ${f2(o.arows)} | ${f2(o.items)} / ${f2(o.itemsMax)}`);
    });
    res.traceChain[withLora ? 'lora' : 'none'] = sum;
    d.free();
  }
  c.cudaFree(tb);
  const out = opt('--json');
  if (out) writeFileSync(out, JSON.stringify(res, null, 1) + '\n');
  process.exit(0);
}
const gemvOnly = args.includes('--gemv-only');
const modes = (opt('--modes', 'eager,graph')).split(',');
// --prefetch 0,1,2: the folded plan's L2 prefetch of the next launch's weights off (0), on (1), on + evict-first copies (2)
const pfModes = opt('--prefetch', '0').split(',').map(Number);
// --kernels 5,6: the folded plan's GEMV kernel for variant 4 — 5 = a launch per GEMV / attention, 6 = every layer in one
// persistent launch per token (decode.cu decode_persist_kernel)
const kernels = opt('--kernels', '5,6').split(',').map(Number);
// --v5probes 0,1,2,4: kernel 5 with benchmark probes (decode.cu DParams::probe5; wrong tokens by design): 1 no wait for
// the LoRA t vectors, 2 no SwiGLU in down's staging, 4 no LoRA A tiles — upper bounds of what removing each costs; 8 (same
// tokens) no stage issued before the wait for x; 64 / 128 (gpu-decode.ts): no attention / no o launch per layer
const v5probes = opt('--v5probes', '0').split(',').map(Number);
for (const withLora of gemvOnly ? [] : [true, false]) {
  for (const variant of variants) for (const kernel of variant === 4 ? kernels : [0]) for (const mode of modes) for (const pfMode of pfModes)
  for (const probe of kernel === 5 ? v5probes : [0]) {
    if (kernel === 6 && pfMode !== 0) continue;  // the persistent kernel streams the next phase's weights itself
    if (probe) process.env.LOWBIT_DECODE_V5_PROBE = String(probe); else delete process.env.LOWBIT_DECODE_V5_PROBE;
    const d = new GpuDecoder(c, gw, withLora ? lora : null, prompt.length + N + 1, variant === 4 ? kernel : undefined);
    d.variant = variant;
    d.useGraphs = mode === 'graph';
    d.prefetchNext = pfMode >= 1;
    d.evictFirst = pfMode === 2;
    try {
      greedyDecode(d, prompt, 4); d.reset();  // warmup
      if (d.useGraphs) { greedyDecode(d, prompt, N); d.reset(); }  // first sequence: captures one graph per position
      c.cudaSync();
      const t0 = performance.now();
      const out = greedyDecode(d, prompt, N);
      c.cudaSync();
      const s = (performance.now() - t0) / 1000;
      const tps = N / s, perTok = d.bytesPerToken(prompt.length + N / 2);
      const bound = BW / perTok;
      if (kernel === 8 && !d.int8x) throw new Error(`kernel 8: ${d.int8xUnsupported()}`);
      const r = { lora: withLora, variant, kernel, probe, persistent: d.persistent, int8x: d.int8x, chained: d.chained, chainedAttention: d.chainedAttention, chainedToken: d.chainedToken, chainedPrep: d.chainedPrep, mode, prefetch: pfMode, captureSeconds: d.captureSeconds, tokensPerS: tps, msPerToken: 1000 / tps, bytesPerToken: perTok, boundTokensPerS: bound, ofBound: tps / bound, first: out.slice(0, 8) };
      res.runs.push(r);
      log(`${withLora ? 'rank-64 LoRA unmerged' : 'no adapter         '} GEMV v${variant}${variant === 4 ? ` k${kernel}${d.persistent ? ' (persistent)' : ''}${d.int8x ? ` (int8-x${d.chained ? `, chained${d.chainedAttention ? ' with the attention' : ''}${d.chainedToken ? ', a token in one launch' : ''}${d.chainedPrep ? ', x̂ by prep phases' : ''}` : ''})` : ''}${probe ? ` probe ${probe}` : ''}` : ''} ${mode.padEnd(5)} prefetch ${pfMode}: ${tps.toFixed(1)} tok/s (${r.msPerToken.toFixed(2)} ms/token), bound ${bound.toFixed(0)} tok/s (${(perTok / 1e6).toFixed(0)} MB/token) → ${(100 * r.ofBound).toFixed(1)} %`);
    } catch (e) {
      res.runs.push({ lora: withLora, variant, kernel, mode, prefetch: pfMode, error: String(e) });
      log(`${withLora ? 'lora' : 'base'} v${variant} ${mode}: ${e}`);
    } finally { d.free(); delete process.env.LOWBIT_DECODE_V5_PROBE; }
  }
}
// the persistent launch must decode the same tokens as the launch-per-phase plan
for (const r6 of res.runs.filter((r) => r.kernel === 6 && r.first)) {
  const r5 = res.runs.find((r) => r.kernel === 5 && !r.probe && r.lora === r6.lora && r.mode === r6.mode && r.first);
  if (r5) log(`${r6.lora ? 'lora' : 'base'} ${r6.mode}: persistent ${(r6.tokensPerS / r5.tokensPerS).toFixed(3)}× the per-phase launches; first tokens ${r6.first.join(',') === r5.first.join(',') ? 'identical' : `DIFFER (${r6.first} vs ${r5.first})`}`);
}
// kernel 8 (the int8-x plan) rounds x to int8 in front of every GEMV: its greedy tokens may part from kernel 5's
for (const r8 of res.runs.filter((r) => r.kernel === 8 && r.first)) {
  const r5 = res.runs.find((r) => r.kernel === 5 && !r.probe && r.lora === r8.lora && r.mode === r8.mode && r.first);
  if (r5) log(`${r8.lora ? 'lora' : 'base'} ${r8.mode}: int8-x plan ${(r8.tokensPerS / r5.tokensPerS).toFixed(3)}× kernel 5; first tokens ${r8.first.join(',') === r5.first.join(',') ? 'identical' : `differ (${r8.first} vs ${r5.first})`}`);
}
// The GEMVs alone (no LoRA): v4 (one launch for q/k/v with the RMSNorm; one for gate/up) vs v3 (one launch per
// projection, the RMSNorm a separate kernel), rotating over 8 layers' weights so L2 (50 MB) holds none; graph-captured.
if (!tiny && variants.includes(4) && !args.includes('--no-gemv')) {  // --no-gemv: skip this section
  const d = new GpuDecoder(c, gw, args.includes('--gemv-lora') ? lora : null, 4);  // --gemv-lora: the plan with the adapter folded in
  const plan = d.v4, L = Math.min(8, cfg.numLayers), reps = 20, h = d.arena.h;
  const timeGraph = (body) => {
    c.cudaGraphBegin();
    for (let r = 0; r < reps; r++) for (let l = 0; l < L; l++) body(l);
    const g = c.cudaGraphEnd();
    c.cudaGraphLaunch(g); c.cudaSync();
    const t0 = performance.now();
    c.cudaGraphLaunch(g); c.cudaSync();
    const ms = (performance.now() - t0) / (reps * L);
    c.cudaGraphFree(g);
    return ms;
  };
  const qb = (p) => gw.layers[0].proj[p].q.bytes;
  const groups = [
    { name: 'q/k/v + RMSNorm', ps: ['q_proj', 'k_proj', 'v_proj'], ys: [h.q, h.k, h.v], seg: 'qkv', x: h.x, norm: true, inF: cfg.hiddenSize },
    { name: 'q/k/v', ps: ['q_proj', 'k_proj', 'v_proj'], ys: [h.q, h.k, h.v], seg: 'qkv', x: h.x, norm: false, inF: cfg.hiddenSize },
    { name: 'gate/up + RMSNorm', ps: ['gate_proj', 'up_proj'], ys: [h.gate, h.up], seg: 'gu', x: h.x, norm: true, inF: cfg.hiddenSize },
    { name: 'o', ps: ['o_proj'], ys: [h.tmp], seg: 'o', x: h.attF, norm: false, inF: cfg.hiddenSize },
    { name: 'down (in 11008)', ps: ['down_proj'], ys: [h.tmp], seg: 'down', x: h.act, norm: false, inF: cfg.intermediateSize },
  ];
  c.cudaFillUniformBf16(h.xb, cfg.intermediateSize, 5, -1, 1);
  for (const [buf, n] of [[h.x, cfg.hiddenSize], [h.attF, cfg.hiddenSize], [h.act, cfg.intermediateSize]]) {
    c.cudaMemset0(buf, n * 4); c.cudaAccumulateBf16ToF32(buf, h.xb, n, 1);
  }
  res.gemv = [];
  for (const gr of groups) {
    const by = gr.ps.reduce((a, p) => a + qb(p), 0);
    const t4 = timeGraph((l) => c.cudaDecodeGemv(gr.x, false, gr.norm ? gw.layers[l].inputNorm : null, 1e-5, gr.inF, plan[l][gr.seg]));
    const t3 = timeGraph((l) => {
      if (gr.norm) c.cudaRmsnormFwd(h.x, gw.layers[l].inputNorm, null, h.xn, null, 1, gr.inF, 1e-5);
      gr.ps.forEach((p, i) => c.cudaQGemv(gw.layers[l].proj[p].q.desc, gr.norm ? h.xn : gr.x, gr.ys[i], false, 3));
    });
    const r = { group: gr.name, bytes: by, v4us: t4 * 1e3, v3us: t3 * 1e3, v4ofCopy: by / (t4 * 1e-3) / BW, v3ofCopy: by / (t3 * 1e-3) / BW };
    res.gemv.push(r);
    log(`GEMV ${gr.name.padEnd(18)} ${(by / 1e6).toFixed(1)} MB: v4 kernel ${r.v4us.toFixed(2)} µs (${(100 * r.v4ofCopy).toFixed(0)} % of copy), v3${gr.norm ? ' + RMSNorm' : ''} ${r.v3us.toFixed(2)} µs (${(100 * r.v3ofCopy).toFixed(0)} %)`);
    const kernels = opt('--kernels', '0').split(',').map(Number);
    r.kernels = {};
    for (const k of kernels) r.kernels[k] = timeGraph((l) => c.cudaDecodeGemv(gr.x, false, gr.norm ? gw.layers[l].inputNorm : null, 1e-5, gr.inF, plan[l][gr.seg], 0, k)) * 1e3;
    // (the line above is the v4 kernel, cudaDecodeGemv's default; kernel 5 — the decoder's — only appears here)
    log(`     by kernel: ${Object.entries(r.kernels).map(([k, v]) => `#${k} ${v.toFixed(2)} µs (${(100 * by / (v * 1e-6) / BW).toFixed(0)} % of copy)`).join(', ')}`);
    if (args.includes('--probes')) {  // where the v4 time goes: L2-resident codes, loads only, compute only
      r.probes = {};
      for (const [k, name] of [[1, 'codes in L2'], [2, 'loads, no compute'], [3, 'compute, no loads'], [4, 'no fold'],
        [5, 'no MMA'], [6, 'no x image staging'], [7, 'no span loop']]) {
        r.probes[name] = timeGraph((l) => c.cudaDecodeGemv(gr.x, false, gr.norm ? gw.layers[l].inputNorm : null, 1e-5, gr.inF, plan[l][gr.seg], k)) * 1e3;
      }
      log(`     probes: ${Object.entries(r.probes).map(([k, v]) => `${k} ${v.toFixed(2)} µs`).join(', ')}`);
    }
  }
  d.free();
}
const out = opt('--json');
if (out) writeFileSync(out, JSON.stringify(res, null, 1) + '\n');
lora.free(); gw.free();
