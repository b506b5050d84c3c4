#!/usr/bin/env python3
"""Summarise an Nsight Compute source-page CSV (--page source --print-source sass --csv): warp-stall samples per opcode
and the hottest SASS instructions, per profiled kernel block of the file.  Usage: sass-stalls.py gemv-sass.csv [top]"""
import csv, sys, collections, io

path, top = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30
text = open(path, encoding='utf-8', errors='replace').read()
# the export may hold one table per profiled kernel: split at each header line
chunks, cur = [], []
for line in text.splitlines():
    if line.startswith('"Address"') and cur:
        chunks.append(cur); cur = []
    cur.append(line)
if cur: chunks.append(cur)
for ci, lines in enumerate(chunks):
    rows = list(csv.reader(io.StringIO('\n'.join(l for l in lines if l.startswith('"')))))
    if not rows or rows[0][0] != 'Address': continue
    h = rows[0]
    src = h.index('Source')
    samp = next((i for i, c in enumerate(h) if c.startswith('Warp Stall Sampling (All')), None)
    execd = next((i for i, c in enumerate(h) if c.startswith('Instructions Executed')), None)
    reasons = [(i, c) for i, c in enumerate(h) if c.startswith('stall_') or c.startswith('Stall ')]
    if samp is None: continue
    num = lambda r, i: float(r[i].replace(',', '')) if i is not None and i < len(r) and r[i].strip() not in ('', '-') else 0.0
    tot, by_op, by_reason, inst = 0.0, collections.Counter(), collections.Counter(), 0.0
    hot = []
    for r in rows[1:]:
        if len(r) <= samp: continue
        s = num(r, samp); tot += s; inst += num(r, execd)
        op = r[src].strip().split(' ')[0] if r[src].strip() else '?'
        if op.startswith('@'): op = r[src].strip().split(' ')[1]
        by_op[op.split('.')[0]] += s
        for i, c in reasons: by_reason[c] += num(r, i)
        hot.append((s, r[0], r[src].strip()[:90]))
    print(f'== table {ci}: {len(rows) - 1} SASS lines, {tot:.0f} stall samples, {inst:.0f} warp-instructions executed')
    print('  samples by opcode: ' + ', '.join(f'{k} {100 * v / max(tot, 1):.1f}%' for k, v in by_op.most_common(14)))
    if by_reason: print('  by reason: ' + ', '.join(f'{k} {100 * v / max(tot, 1):.1f}%' for k, v in by_reason.most_common(12) if v))
    for s, a, t in sorted(hot, reverse=True)[:top]: print(f'  {100 * s / max(tot, 1):5.1f}%  {a}  {t}')
