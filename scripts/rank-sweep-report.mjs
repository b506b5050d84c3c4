#!/usr/bin/env node
// Builds the results section of docs/compensation.md (between <!-- RESULTS --> markers) and docs/rank-sweep.svg
// from scripts/rank-sweep.sh's outputs.   node scripts/rank-sweep-report.mjs [OUT_DIR]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
const OUT = process.argv[2] ?? 'out/compensation';
import { svgLinePlot } from '../dist/src/report/svg-plot.js';
const sweep = JSON.parse(readFileSync(`${OUT}/r16/rank-sweep.json`, 'utf8'));
const rest = existsSync(`${OUT}/sweep/rank-sweep.json`) ? JSON.parse(readFileSync(`${OUT}/sweep/rank-sweep.json`, 'utf8')) : { rows: [] };
const rows = [...sweep.rows, ...rest.rows];
const ranks = [...new Set(rows.map((r) => r.rank))].sort((a, b) => a - b);
const swept = ['svd', 'linear', 'layer', 'rilq'].filter((m) => rows.some((r) => r.method === m && r.rank !== 16));
const s = sweep.settings, f = (x, d = 2) => (x === undefined || x === null ? '–' : Number(x).toFixed(d));
const gap = sweep.quantPpl - sweep.fpPpl;
const closed = (p) => `${(100 * (sweep.quantPpl - p) / gap).toFixed(1)}%`;
const order = ['svd', 'loftq', 'linear', 'layer', 'rilq', 'lrec'];
const at16 = order.map((m) => rows.find((r) => r.method === m && r.rank === 16)).filter(Boolean);
const lines = [];
lines.push('## Results on the shipped model (`models/tiny-jargon`, RTN W2 g64)', '');
lines.push(`Held-out perplexity of \`data/jargon.heldout.txt\` (GPTQ protocol, windows of ${sweep.evalSeq}` +
  `, ${s.evalMaxWindows && s.evalMaxWindows < Math.round(sweep.tokens / (sweep.evalSeq - 1)) ? `first ${s.evalMaxWindows}` : `all ${Math.round(sweep.tokens / (sweep.evalSeq - 1))}`} windows, ${sweep.tokens} predicted tokens). Calibration: ${s.samples} random windows × ${s.seq} tokens of` +
  ` \`data/jargon.train.txt\` (seed ${s.seed}), the last ${s.valWindows} held out for validation; batch 1 × accumulation ${s.gradAccum},` +
  ` Adam lr ${s.lr}, at most ${s.maxSteps} micro-steps (${s.maxSteps / s.gradAccum} updates), validation every ${s.evalEvery} updates, patience ${s.patience}, α = ${s.alpha}.` +
  ` This is a much smaller budget than RILQ's 7B defaults (320 × 512, lr 1e-4, up to 1250 updates, validation every 25), sized for a 2-core CPU` +
  ` and a 4M-parameter model: fewer, shorter windows, a 10× higher learning rate to converge in fewer updates, validation more often.`, '');
lines.push(`### Rank 16`, '', '| method | held-out ppl | gap to FP closed | validation loss (0.5 MSE + 0.5 CE) | ‖W−Q−sBA‖/‖W−Q‖ | updates (best) | time |', '|---|---:|---:|---:|---:|---:|---:|');
lines.push(`| FP teacher | ${f(sweep.fpPpl, 3)} | | | | | |`);
lines.push(`| RTN W2 g64, no adapter | ${f(sweep.quantPpl, 3)} | 0% | ${f(sweep.quantVal, 4)} | 1 | | |`);
for (const r of at16) lines.push(`| ${r.method} | ${f(r.ppl, 3)} | ${closed(r.ppl)} | ${f(r.rilqVal, 4)} | ${r.relWeightError !== undefined ? f(r.relWeightError, 3) : ''} | ${r.updates !== undefined ? `${r.updates} (${r.bestUpdate})` : ''} | ${f(r.seconds, 0)} s |`);
if (existsSync(`${OUT}/r16-long/rank-sweep.json`)) {
  const lg = JSON.parse(readFileSync(`${OUT}/r16-long/rank-sweep.json`, 'utf8')), ls = lg.settings;
  lines.push('', `With a 4× longer budget (at most ${ls.maxSteps} micro-steps = ${ls.maxSteps / ls.gradAccum} updates, same data and lr; \`scripts/rank-sweep-long.sh\`):`, '',
    '| method (r=16, long) | held-out ppl | gap to FP closed | validation loss (0.5 MSE + 0.5 CE) | updates (best) | time |', '|---|---:|---:|---:|---:|---:|');
  for (const r of lg.rows) lines.push(`| ${r.method} | ${f(r.ppl, 3)} | ${closed(r.ppl)} | ${f(r.rilqVal, 4)} | ${r.updates} (${r.bestUpdate}) | ${f(r.seconds, 0)} s |`);
}
if (existsSync(`${OUT}/r16-calib320/rank-sweep.json`)) {
  const lg = JSON.parse(readFileSync(`${OUT}/r16-calib320/rank-sweep.json`, 'utf8')), ls = lg.settings;
  if (existsSync(`${OUT}/r16-calib320b/rank-sweep.json`)) lg.rows.push(...JSON.parse(readFileSync(`${OUT}/r16-calib320b/rank-sweep.json`, 'utf8')).rows);
  const ord = ['svd', 'linear', 'layer', 'rilq', 'lrec'];
  lg.rows.sort((a, b) => ord.indexOf(a.method) - ord.indexOf(b.method));
  lines.push('', `With RILQ's calibration-set size (${ls.samples} windows × ${ls.seq}, ${ls.valWindows} for validation), at most ${ls.maxSteps} micro-steps = ${ls.maxSteps / ls.gradAccum} updates, validation every ${ls.evalEvery} (\`scripts/rank-sweep-calib320.sh\`):`, '',
    '| method (r=16, 320 windows) | held-out ppl | gap to FP closed | validation loss (0.5 MSE + 0.5 CE) | updates (best) | time |', '|---|---:|---:|---:|---:|---:|');
  for (const r of lg.rows) lines.push(`| ${r.method} | ${f(r.ppl, 3)} | ${closed(r.ppl)} | ${f(r.rilqVal, 4)} | ${r.updates !== undefined ? `${r.updates} (${r.bestUpdate})` : ''} | ${f(r.seconds, 0)} s |`);
}
lines.push('', '### Rank sweep', '', `| method | ${ranks.map((r) => `r=${r}`).join(' | ')} | spread (max−min) |`, `|---|${ranks.map(() => '---:').join('|')}|---:|`);
lines.push(`| FP teacher | ${ranks.map(() => f(sweep.fpPpl, 3)).join(' | ')} | |`, `| no adapter | ${ranks.map(() => f(sweep.quantPpl, 3)).join(' | ')} | |`);
for (const m of swept) {
  const v = ranks.map((r) => rows.find((x) => x.method === m && x.rank === r)?.ppl);
  const ok = v.filter((x) => x !== undefined);
  lines.push(`| ${m} | ${v.map((x) => f(x, 3)).join(' | ')} | ${f(Math.max(...ok) - Math.min(...ok), 3)} |`);
}
lines.push('');
const series = swept.map((m) => ({ name: m, points: ranks.map((r) => [r, rows.find((x) => x.method === m && x.rank === r)?.ppl]).filter((p) => p[1] !== undefined) }));
const flat = (name, y) => ({ name, points: ranks.map((r) => [r, y]) });
writeFileSync('docs/rank-sweep.svg', svgLinePlot([...series, flat('FP', sweep.fpPpl), flat('no adapter', sweep.quantPpl)],
  { title: 'tiny-jargon RTN W2 g64: held-out perplexity vs LoRA rank', xLabel: 'rank', yLabel: 'perplexity', logX: true, logY: true }));
lines.push('![held-out perplexity vs rank](rank-sweep.svg)', '');
lines.push(`Raw numbers: \`scripts/rank-sweep.sh\` writes \`${OUT}/sweep/rank-sweep.json\` and \`${OUT}/r16/rank-sweep.json\` (training logs per run in \`logs/\`).`, '');
const doc = readFileSync('docs/compensation.md', 'utf8');
const block = `<!-- RESULTS -->\n${lines.join('\n')}\n<!-- /RESULTS -->`;
const out = doc.includes('<!-- /RESULTS -->') ? doc.replace(/<!-- RESULTS -->[\s\S]*<!-- \/RESULTS -->/, block) : doc.replace('<!-- RESULTS -->', block);
writeFileSync('docs/compensation.md', out);
console.log(lines.join('\n'));
