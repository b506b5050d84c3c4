#!/usr/bin/env node
// Builds the native addon build/lowbit.node with g++ (and nvcc when present), offline: N-API headers
// come from the node-api-headers npm package, so no node-gyp and no header download. Runs as the
// package's `install` script, i.e. inside `npm ci`.
//
// Environment:
//   LOWBIT_MARCH=<arch>      -march value (default: native). Use x86-64-v3 for a machine you can't see.
//   LOWBIT_BUILD_DIR=<dir>   output folder, relative to the package root (default: build)
//   LOWBIT_NO_CUDA=1         skip CUDA even when nvcc exists
//   LOWBIT_NVCC=<path>       nvcc to use (default: PATH, then /usr/local/cuda/bin/nvcc)
//   CXX=<compiler>           C++ compiler (default: g++)
//   LOWBIT_NATIVE_FORCE=1    rebuild even when sources and flags are unchanged
//   LOWBIT_REQUIRE_CUDA=1    fail instead of falling back to the CPU-only addon (builds meant for the GPU machine)
// A CPU compile failure fails the install; a CUDA failure warns and builds the CPU-only addon.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, statSync, accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rel = (p) => path.relative(root, p) || '.';
const log = (m) => console.log(`lowbit native: ${m}`);
const warn = (m) => console.warn(`lowbit native: WARNING: ${m}`);
function fail(m) {
  console.error(`lowbit native: ERROR: ${m}`);
  process.exit(1);
}

const t0 = Date.now();
const march = process.env.LOWBIT_MARCH || 'native';
const buildDir = path.resolve(root, process.env.LOWBIT_BUILD_DIR || 'build');
const objDir = path.join(buildDir, 'obj');
const out = path.join(buildDir, 'lowbit.node');
const cxx = process.env.CXX || 'g++';
const jobs = Math.max(1, os.availableParallelism ? os.availableParallelism() : os.cpus().length);

let napiInclude;
try {
  napiInclude = createRequire(import.meta.url)('node-api-headers').include_dir;
} catch (e) {
  fail(`cannot find the node-api-headers package (run npm ci first): ${e.message}`);
}

const cpuSrc = readdirSync(path.join(root, 'native/cpu')).filter((f) => f.endsWith('.cc')).map((f) => path.join(root, 'native/cpu', f));
const cudaDir = path.join(root, 'native/cuda');
const cuSrc = existsSync(cudaDir) ? readdirSync(cudaDir).filter((f) => f.endsWith('.cu')).map((f) => path.join(cudaDir, f)) : [];
const cudaGlue = existsSync(cudaDir) ? readdirSync(cudaDir).filter((f) => f.endsWith('.cc')).map((f) => path.join(cudaDir, f)) : [];

function findNvcc() {
  if (process.env.LOWBIT_NO_CUDA === '1') return { why: 'LOWBIT_NO_CUDA=1' };
  const cands = [process.env.LOWBIT_NVCC,
    ...(process.env.PATH || '').split(path.delimiter).filter(Boolean).map((d) => path.join(d, 'nvcc')),
    '/usr/local/cuda/bin/nvcc'].filter(Boolean);
  for (const c of cands) {
    try { accessSync(c, constants.X_OK); return { nvcc: c }; } catch { /* next */ }
  }
  return { why: 'nvcc not found (PATH, /usr/local/cuda/bin)' };
}

// libcudart_static.a next to the nvcc that compiles (…/bin/nvcc → …/lib64 or targets/*/lib).
function findCudart(nvcc) {
  let real = nvcc;
  try { real = spawnSync('readlink', ['-f', nvcc], { encoding: 'utf8' }).stdout.trim() || nvcc; } catch { /* keep */ }
  const home = path.resolve(path.dirname(real), '..');
  const cands = [path.join(home, 'lib64/libcudart_static.a'), path.join(home, 'lib/libcudart_static.a'),
    path.join(home, 'targets/x86_64-linux/lib/libcudart_static.a'), '/usr/local/cuda/lib64/libcudart_static.a'];
  return cands.find((c) => existsSync(c));
}

const cxxFlags = ['-std=c++17', '-O3', `-march=${march}`, '-fno-math-errno', '-fPIC', '-pthread', '-fvisibility=hidden',
  '-Wall', '-Wno-unused-function', '-DNAPI_VERSION=8', '-DNODE_GYP_MODULE_NAME=lowbit', `-I${napiInclude}`];
// --default-stream per-thread: stream 0 in every .cu file is the calling thread's default stream, which (unlike
// the legacy stream) can be captured into a CUDA graph; cuBLAS is put on the same stream (cublas_dl.cu).
const nvccGencode = ['-gencode', 'arch=compute_90,code=sm_90', '-gencode', 'arch=compute_90,code=compute_90'];
const nvccFlags = ['-std=c++17', '-O3', '--default-stream', 'per-thread', '-Xcompiler', `-fPIC,-fvisibility=hidden,-march=${march}`];
// Files whose kernels need an arch-specific target instead of the portable one: wgmma exists only in sm_90a
// (the file guards its device code, and its launcher refuses other devices so callers fall back).
const nvccGencodeFor = { 'qgemm_wgmma.cu': ['-gencode', 'arch=compute_90a,code=sm_90a'] };
const gencodeOf = (src) => nvccGencodeFor[path.basename(src)] ?? nvccGencode;

const found = findNvcc();
const cudart = found.nvcc ? findCudart(found.nvcc) : undefined;

// Skip the work when nothing changed (sources, flags, compilers).
const hash = createHash('sha256');
hash.update(JSON.stringify({ cxxFlags, nvccFlags, nvccGencode, nvccGencodeFor, cxx, nvcc: found.nvcc ?? null, cudart: cudart ?? null, node: process.versions.modules }));
for (const dir of ['native/cpu', 'native/cuda']) {
  const d = path.join(root, dir);
  if (!existsSync(d)) continue;
  for (const f of readdirSync(d).sort()) hash.update(f).update(readFileSync(path.join(d, f)));
}
const key = hash.digest('hex');
const stampFile = path.join(buildDir, 'lowbit.stamp');
if (process.env.LOWBIT_NATIVE_FORCE !== '1' && existsSync(out) && existsSync(stampFile) &&
    readFileSync(stampFile, 'utf8') === key) {
  log(`${rel(out)} is up to date`);
  process.exit(0);
}
mkdirSync(objDir, { recursive: true });

function run(cmd, args) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    p.stdout.on('data', (d) => { text += d; });
    p.stderr.on('data', (d) => { text += d; });
    p.on('error', (e) => resolve({ ok: false, text: `${cmd}: ${e.message}` }));
    p.on('close', (code, sig) => resolve({ ok: code === 0, text: text || (code === 0 ? '' : `${cmd} exited with ${sig ?? `code ${code}`} and no output`) }));
  });
}

// Runs compile jobs `jobs` at a time; resolves to the failures.
// Per-object reuse: an object is recompiled only when its command, its source or any header changed
// (all headers count, which is simple and safe). Saves the slow nvcc step when only C++ changed.
const headers = createHash('sha256');
for (const dir of ['native/cpu', 'native/cuda']) {
  const d = path.join(root, dir);
  if (!existsSync(d)) continue;
  for (const f of readdirSync(d).sort()) if (f.endsWith('.h') || f.endsWith('.cuh')) headers.update(f).update(readFileSync(path.join(d, f)));
}
const headersKey = headers.digest('hex');
function jobKey(job) {
  return createHash('sha256').update(job.cmd).update(JSON.stringify(job.args)).update(headersKey)
    .update(readFileSync(job.src)).digest('hex');
}

async function compileAll(list) {
  const failures = [];
  let i = 0;
  async function worker() {
    while (i < list.length) {
      const job = list[i++];
      const out = job.args[job.args.length - 1], keyFile = `${out}.key`, k = jobKey(job);
      if (process.env.LOWBIT_NATIVE_FORCE !== '1' && existsSync(out) && existsSync(keyFile) && readFileSync(keyFile, 'utf8') === k) continue;
      const r = await run(job.cmd, job.args);
      if (!r.ok) failures.push({ src: job.src, cuda: !!job.cuda, text: r.text });
      else {
        writeFileSync(keyFile, k);
        if (r.text.trim()) console.warn(r.text.trim());
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(jobs, list.length) }, worker));
  return failures;
}

const obj = (src, tag = '') => path.join(objDir, path.basename(src).replace(/\.(cc|cu)$/, `${tag}.o`));
const gxx = (src, extra = [], tag = '') => ({ src, cmd: cxx, args: [...cxxFlags, ...extra, '-c', src, '-o', obj(src, tag)] });

const addonSrc = cpuSrc.find((f) => path.basename(f) === 'addon.cc');
if (!addonSrc) fail('native/cpu/addon.cc is missing');
const kernelSrc = cpuSrc.filter((f) => f !== addonSrc);

let cuda = false;
let cudaWhy = found.why;
const jobsList = [...kernelSrc.map((s) => gxx(s)), gxx(addonSrc)];
if (found.nvcc && !cudart) cudaWhy = `libcudart_static.a not found next to ${found.nvcc}`;
if (found.nvcc && cudart && cuSrc.length) {
  cuda = true;
  const cudaJobs = [...cuSrc.map((s) => ({ src: s, cmd: found.nvcc, args: [...nvccFlags, ...gencodeOf(s), '-c', s, '-o', obj(s)] })),
    ...cudaGlue.map((s) => gxx(s, ['-DLOWBIT_CUDA'])), gxx(addonSrc, ['-DLOWBIT_CUDA'], '.cuda')];
  for (const j of cudaJobs) j.cuda = true;
  jobsList.unshift(...cudaJobs);  // nvcc is the slowest: start it first
}
log(`compiling (${cxx} -march=${march}${cuda ? `, ${found.nvcc} sm_90` : ', CPU only'}; ${jobs} jobs)`);
const failures = await compileAll(jobsList);
const cpuFail = failures.filter((f) => !f.cuda);
for (const f of failures) {
  const tag = f.cuda ? 'CUDA' : 'C++';
  (tag === 'CUDA' ? console.warn : console.error)(`--- ${tag} compile of ${rel(f.src)} failed:\n${f.text.trim()}`);
}
if (cpuFail.length) fail(`C++ compile failed (${cpuFail.map((f) => rel(f.src)).join(', ')}); see the compiler output above`);
if (cuda && failures.some((f) => f.cuda)) {
  if (process.env.LOWBIT_REQUIRE_CUDA === '1') fail('CUDA compile failed (LOWBIT_REQUIRE_CUDA=1); see the compiler output above');
  cuda = false;
  cudaWhy = 'CUDA compile failed (see above)';
  warn(`${cudaWhy}; building the CPU-only addon`);
}

function link(withCuda) {
  const objs = [...kernelSrc.map((s) => obj(s))];
  if (withCuda) objs.push(obj(addonSrc, '.cuda'), ...cuSrc.map((s) => obj(s)), ...cudaGlue.map((s) => obj(s)));
  else objs.push(obj(addonSrc));
  const args = ['-shared', '-pthread', '-o', out, ...objs];
  if (process.platform === 'darwin') args.push('-undefined', 'dynamic_lookup');
  if (withCuda) args.push(cudart, '-ldl', '-lrt', '-lpthread');
  return run(cxx, args);
}

// Loads the result in a fresh node so a broken link (missing symbol) is caught here, not at runtime.
function loadCheck() {
  const r = spawnSync(process.execPath, ['-e', `const m=require(${JSON.stringify(out)}); console.log(JSON.stringify(m.info()))`], { encoding: 'utf8' });
  return { ok: r.status === 0, text: (r.stdout + r.stderr).trim() };
}

let linked = cuda ? await link(true) : { ok: false };
if (cuda && linked.ok) {
  const lc = loadCheck();
  if (!lc.ok) linked = { ok: false, text: lc.text };
}
if (cuda && !linked.ok) {
  warn(`CUDA link/load failed; building the CPU-only addon:\n${linked.text}`);
  cuda = false;
  cudaWhy = 'CUDA link failed';
}
if (!cuda && process.env.LOWBIT_REQUIRE_CUDA === '1') fail(`no CUDA in this build (LOWBIT_REQUIRE_CUDA=1): ${cudaWhy}`);
if (!cuda) {
  linked = await link(false);
  if (!linked.ok) fail(`link failed:\n${linked.text}`);
}
const lc = loadCheck();
if (!lc.ok) {
  if (march === 'native') fail(`the built addon does not load:\n${lc.text}`);
  warn(`the addon built for -march=${march} does not load on this machine (fine if it targets another one):\n${lc.text}`);
}
writeFileSync(stampFile, key);
const kb = (statSync(out).size / 1024).toFixed(0);
log(`built ${rel(out)} (${kb} KiB, ${cuda ? 'CUDA sm_90 + ' : ''}CPU ${lc.ok ? JSON.parse(lc.text).simd : march}${cuda ? '' : `; no CUDA: ${cudaWhy}`}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
