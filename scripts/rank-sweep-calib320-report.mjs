#!/usr/bin/env node
// Table and plot of the rank sweep at RILQ's calibration-set size (scripts/rank-sweep-calib320.sh for r16 and
// the sweep over 4/8/32/64 written to OUT/sweep-calib320). Prints the markdown table; writes docs/rank-sweep-calib320.svg.
import { readFileSync, writeFileSync } from 'node:fs';
import { svgLinePlot } from '../dist/src/report/svg-plot.js';
const OUT = process.argv[2] ?? 'out/compensation';
const a = JSON.parse(readFileSync(`${OUT}/r16-calib320/rank-sweep.json`, 'utf8'));
const b = JSON.parse(readFileSync(`${OUT}/sweep-calib320/rank-sweep.json`, 'utf8'));
const rows = [...a.rows, ...b.rows].filter((r) => r.method === 'rilq' || r.method === 'svd');
const ranks = [...new Set(rows.map((r) => r.rank))].sort((x, y) => x - y);
const cell = (m, k) => rows.find((r) => r.method === m && r.rank === k)?.ppl;
const lines = [`| method | ${ranks.map((k) => `r=${k}`).join(' | ')} | spread (max−min) |`, `|---|${ranks.map(() => '---:').join('|')}|---:|`];
lines.push(`| FP teacher | ${ranks.map(() => b.fpPpl.toFixed(3)).join(' | ')} | |`);
lines.push(`| no adapter | ${ranks.map(() => b.quantPpl.toFixed(3)).join(' | ')} | |`);
for (const m of ['svd', 'rilq']) {
  const v = ranks.map((k) => cell(m, k));
  lines.push(`| ${m} | ${v.map((x) => x.toFixed(3)).join(' | ')} | ${(Math.max(...v) - Math.min(...v)).toFixed(3)} |`);
}
console.log(lines.join('\n'));
writeFileSync('docs/rank-sweep-calib320.svg', svgLinePlot([
  { name: 'FP teacher', points: ranks.map((k) => [k, b.fpPpl]) },
  { name: 'no adapter', points: ranks.map((k) => [k, b.quantPpl]) },
  ...['svd', 'rilq'].map((m) => ({ name: m, points: ranks.map((k) => [k, cell(m, k)]) })),
], { title: 'RTN W2 g64, 320 calibration windows: held-out ppl vs rank', xLabel: 'LoRA rank', yLabel: 'held-out perplexity', logX: true }));
