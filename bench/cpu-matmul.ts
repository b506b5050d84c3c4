// CPU sgemm benchmark: native addon vs numpy/OpenBLAS (python3 subprocess, same shapes and transposes)
// vs the TypeScript reference. Writes bench/results/cpu-matmul.md.
//   npx tsc -p . && node dist/bench/cpu-matmul.js [--quick]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sgemmRef } from '../src/backend/kernels.js';
import { nativeAddon, nativeInfo, nativeReason } from '../src/backend/native.js';

interface Shape { name: string; ta: boolean; tb: boolean; M: number; N: number; K: number }

const quick = process.argv.includes('--quick');
const shapes: Shape[] = [
  ...[256, 512, 1024, 2048].map((n) => ({ name: `square ${n}`, ta: false, tb: false, M: n, N: n, K: n })),
  // Linear(in=256, out=768) on 512 rows: forward y = x·Wᵀ (NT), dx = dy·W (NN), dW = dyᵀ·x (TN)
  { name: 'fwd 512x256 · (768x256)ᵀ', ta: false, tb: true, M: 512, N: 768, K: 256 },
  { name: 'dx 512x768 · 768x256', ta: false, tb: false, M: 512, N: 256, K: 768 },
  { name: 'dW (512x768)ᵀ · 512x256', ta: true, tb: false, M: 768, N: 256, K: 512 },
  // Linear(in=512, out=2048) on 512 rows (an MLP up-projection)
  { name: 'fwd 512x512 · (2048x512)ᵀ', ta: false, tb: true, M: 512, N: 2048, K: 512 },
  { name: 'dx 512x2048 · 2048x512', ta: false, tb: false, M: 512, N: 512, K: 2048 },
  { name: 'dW (512x2048)ᵀ · 512x512', ta: true, tb: false, M: 2048, N: 512, K: 512 },
  // decode-time GEMV (M = 1) through a 4096x4096 weight
  { name: 'gemv 1x4096 · (4096x4096)ᵀ', ta: false, tb: true, M: 1, N: 4096, K: 4096 },
];
const opName = (s: Shape) => `${s.ta ? 'T' : 'N'}${s.tb ? 'T' : 'N'}`;
const flops = (s: Shape) => 2 * s.M * s.N * s.K;

interface Timing { median: number; best: number }
function stats(xs: number[]): Timing {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { median, best: s[0] };
}

/** Seconds per call (median and best): repeats until ~budget seconds or maxRuns, after one warmup call. */
function timeIt(fn: () => void, budget: number, minRuns = 5, maxRuns = 100): Timing {
  fn();
  const ts: number[] = [];
  const start = performance.now();
  while (ts.length < minRuns || (ts.length < maxRuns && (performance.now() - start) / 1000 < budget)) {
    const t0 = performance.now();
    fn();
    ts.push((performance.now() - t0) / 1000);
  }
  return stats(ts);
}

const rand = (n: number) => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1; return a; };

// numpy/OpenBLAS: the same physical layouts (A stored [K,M] when transposed, used as A.T: numpy hands
// the transposed view to cblas_sgemm with a trans flag, no copy).
const PY = String.raw`
import json, sys, time, os, ctypes
import numpy as np
shapes = json.loads(sys.argv[1]); budget = float(sys.argv[2])
info = {'numpy': np.__version__}
try:
    d = os.path.join(os.path.dirname(np.__file__), '..', 'numpy.libs')
    lib = ctypes.CDLL(os.path.join(d, [f for f in os.listdir(d) if 'openblas' in f][0]))
    for key, sym, ty in [('config', 'scipy_openblas_get_config64_', ctypes.c_char_p), ('core', 'scipy_openblas_get_corename64_', ctypes.c_char_p), ('threads', 'scipy_openblas_get_num_threads64_', ctypes.c_int)]:
        f = getattr(lib, sym); f.restype = ty; v = f(); info[key] = v.decode() if isinstance(v, bytes) else v
except Exception as e:
    info['config'] = np.show_config(mode='dicts')['Build Dependencies']['blas'].get('openblas configuration', '?') + ' (runtime query failed: %s)' % e
rng = np.random.default_rng(0)
out = []
for s in shapes:
    M, N, K = s['M'], s['N'], s['K']
    A = rng.standard_normal((K, M) if s['ta'] else (M, K), dtype=np.float32)
    B = rng.standard_normal((N, K) if s['tb'] else (K, N), dtype=np.float32)
    a = A.T if s['ta'] else A; b = B.T if s['tb'] else B
    C = np.empty((M, N), dtype=np.float32)
    np.matmul(a, b, out=C)
    ts = []; start = time.perf_counter()
    while len(ts) < 5 or (len(ts) < 100 and time.perf_counter() - start < budget):
        t0 = time.perf_counter(); np.matmul(a, b, out=C); ts.append(time.perf_counter() - t0)
    out.append({'median': float(np.median(ts)), 'best': float(min(ts))})
print(json.dumps({'info': info, 'seconds': out}))
`;

type NumpyResult = { info: Record<string, unknown>; seconds: Timing[] } | { error: string };
function runNumpy(shape: Shape, threads: number): NumpyResult {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  delete env.OPENBLAS_CORETYPE;  // let OpenBLAS pick its best kernel for this CPU
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync('python3', ['-c', PY, JSON.stringify([shape]), String(budget)], { env, encoding: 'utf8' });
  if (r.status !== 0) return { error: (r.stderr || r.error?.message || 'python3 failed').trim().split('\n').pop()! };
  return JSON.parse(r.stdout);
}

function lscpu(key: string): string {
  try {
    const line = execFileSync('lscpu', { encoding: 'utf8' }).split('\n').find((l) => l.startsWith(`${key}:`));
    return line ? line.slice(key.length + 1).trim() : '?';
  } catch { return '?'; }
}

const addon = nativeAddon();
if (!addon) {
  console.error(`native addon not built: ${nativeReason()}`);
  process.exit(1);
}
const info = nativeInfo();
const load0 = os.loadavg()[0];
console.log(`native: ${info.simd}, ${info.threads} threads; load average ${load0.toFixed(2)}`);

// The 2 cores are shared with other work, so native and OpenBLAS are measured back to back per shape
// and thread count, alternating for `rounds` rounds; each side keeps its best median and best single call.
const rounds = quick ? 1 : 4, budget = quick ? 0.15 : 0.3;
const allThreads = info.threads;
const threadCounts = allThreads > 1 ? [1, allThreads] : [1];
const minT = (x: Timing | null, y: Timing): Timing => (x ? { median: Math.min(x.median, y.median), best: Math.min(x.best, y.best) } : y);
type Row = { s: Shape; native: Record<number, Timing>; ob: Record<number, Timing | null>; ts: number | null };
const rows: Row[] = [];
let np: NumpyResult = { error: 'not run' };
for (const s of shapes) {
  const A = rand(s.M * s.K), B = rand(s.K * s.N), C = new Float32Array(s.M * s.N);
  const row: Row = { s, native: {}, ob: {}, ts: null };
  for (const th of threadCounts) {
    addon.setThreads(th);
    let nat: Timing | null = null, ob: Timing | null = null;
    for (let r = 0; r < rounds; r++) {
      nat = minT(nat, timeIt(() => addon.sgemm(s.ta, s.tb, s.M, s.N, s.K, 1, A, B, 0, C), budget));
      const res = runNumpy(s, th);
      if ('seconds' in res) { ob = minT(ob, res.seconds[0]); np = res; } else if (!('info' in np)) np = res;
    }
    row.native[th] = nat!;
    row.ob[th] = ob;
  }
  addon.setThreads(allThreads);
  // The TS reference is ~0.5 GFLOP/s: time it only where one call stays under a second or so.
  if (flops(s) <= 4.2e8) row.ts = timeIt(() => sgemmRef(s.ta, s.tb, s.M, s.N, s.K, 1, A, B, 0, C), 0, 1, 1).median;
  rows.push(row);
  console.log(`${s.name.padEnd(28)} ${opName(s)} ` + threadCounts.map((th) =>
    `${th}T native ${(flops(s) / row.native[th].best / 1e9).toFixed(1)} OpenBLAS ${row.ob[th] ? (flops(s) / row.ob[th]!.best / 1e9).toFixed(1) : '-'}`).join('  '));
}
const gf = (s: Shape, sec: number | null | undefined) => (sec ? flops(s) / sec / 1e9 : NaN);
const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '—');
const ratio = (x: number, y: number) => (Number.isFinite(x) && Number.isFinite(y) ? (x / y).toFixed(2) : '—');

const lines: string[] = [];
lines.push('# CPU sgemm: native addon vs OpenBLAS (numpy) vs TypeScript reference', '');
lines.push(`- date: ${new Date().toISOString()}`);
lines.push(`- machine: ${lscpu('Model name')}, ${lscpu('CPU(s)')} CPUs, L2 ${lscpu('L2 cache')}, ${os.platform()} ${os.arch()}`);
lines.push(`- native: ${info.simd} micro-kernel, built -march=native; 1 thread and ${allThreads} threads (all cores)`);
if ('info' in np) {
  const i = np.info;
  lines.push(`- OpenBLAS (numpy ${i.numpy}): ${i.config}; core ${i.core ?? '?'} (OPENBLAS_NUM_THREADS set per column; OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset)`);
} else {
  lines.push(`- OpenBLAS: not measured (${np.error})`);
}
lines.push(`- load average at start: ${load0.toFixed(2)}, at end: ${os.loadavg()[0].toFixed(2)}. The 2 cores are shared with other`
  + ` work: per shape and thread count, native and OpenBLAS alternate for ${rounds} rounds of ~${budget} s each; GFLOP/s`
  + ' are from the best single call (the least disturbed one), medians in parentheses.');
lines.push(`- command: \`node dist/bench/cpu-matmul.js${quick ? ' --quick' : ''}\``, '');
const head = threadCounts.flatMap((th) => [`native ${th}T`, `OpenBLAS ${th}T`, `ratio ${th}T`]);
lines.push(`| shape | op | M | N | K | ${head.join(' | ')} | TS ref |`);
lines.push(`|---|---|---:|---:|---:|${head.map(() => '---:').join('|')}|---:|`);
for (const { s, native, ob, ts } of rows) {
  const cells = threadCounts.flatMap((th) => {
    const n = native[th], o = ob[th];
    const nb = gf(s, n.best), obb = gf(s, o?.best);
    return [`${fmt(nb)} (${fmt(gf(s, n.median))})`, `${fmt(obb)} (${fmt(gf(s, o?.median))})`,
      `${ratio(nb, obb)} (${ratio(gf(s, n.median), gf(s, o?.median))})`];
  });
  lines.push(`| ${s.name} | ${opName(s)} | ${s.M} | ${s.N} | ${s.K} | ${cells.join(' | ')} | ${ts ? gf(s, ts).toFixed(2) : '—'} |`);
}
lines.push('', 'GFLOP/s = 2·M·N·K / time. ratio = native / OpenBLAS, best calls (medians). op: N/T = operand used as stored / transposed', '(row-major), e.g. NT = x·Wᵀ, the Linear forward. TS ref = sgemmRef on Float32Array, one call.', '');
const md = lines.join('\n');
const outDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/results');
mkdirSync(outDir, { recursive: true });
writeFileSync(path.join(outDir, 'cpu-matmul.md'), md);
console.log(md);
