#!/usr/bin/env python3
"""Per-kernel durations of one decoded token from `ncu --metrics gpu__time_duration.sum --csv` (bench/cuda-decode.mjs
--profile token|token-base): each kernel name's launches, total and mean µs, over the LAST token step (the launches
after the last argmax), so start-up repacks and the prompt step are left out. Usage: ncu-token-summary.py FILE.csv"""
import csv, re, sys
from collections import OrderedDict

rows = []
with open(sys.argv[1], newline='') as f:
    lines = [l for l in f if l.startswith('"')]
for r in csv.DictReader(lines):
    if r.get('Metric Name') != 'gpu__time_duration.sum':
        continue
    v = float(r['Metric Value'].replace(',', ''))
    unit = r.get('Metric Unit', 'nsecond')
    us = v / 1000 if unit.startswith('n') else v if unit.startswith('u') else v * 1000
    name = r['Kernel Name'].replace('(anonymous namespace)::', '').replace('lowbit::', '')
    name = re.sub(r'\(.*', '', re.sub(r'^void ', '', name))
    rows.append((name, us))
# the last token step: after the second-to-last argmax launch
idx = [i for i, (n, _) in enumerate(rows) if 'argmax' in n]
step = rows[idx[-2] + 1: idx[-1] + 1] if len(idx) >= 2 else rows
agg = OrderedDict()
for n, us in step:
    c, t = agg.get(n, (0, 0.0))
    agg[n] = (c + 1, t + us)
total = sum(t for _, t in agg.values())
print(f'{len(step)} launches in the last token step, {total:.1f} µs of kernel time (ncu serializes kernels: no PDL overlap)')
for n, (c, t) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print(f'  {n[:70]:70s} {c:4d} launches  {t:9.1f} µs  ({t / c:7.2f} µs each, {100 * t / total:5.1f} %)')
