// The prototype int8-x GEMV (native/cuda/int8x_gemv.cu) alone on the 7B decode shapes: µs per call (CUDA events over 200
// calls after 20 warm-ups, median of 5) and the bytes it must read ÷ the same run's copy rate. Its words are 2 bits per
// weight like kernel 5's codes, but its scales and zeros are f32 (8 bytes per 64 weights instead of kernel 5's 4), so the
// bytes counted are what it reads. Compare with kernel 5's lone GEMVs in bench/cuda-decode.mjs (same machine, same call).
// Usage: node bench/cuda-int8x-gemv.mjs [--ksplit 1,2,4,8] [--json FILE]
import { writeFileSync } from 'node:fs';
import { cudaInt8xOps, cudaInt8xUnavailable } from '../dist/src/backend/cuda-int8x.js';

const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const c = cudaInt8xOps();
if (!c) { console.error(`cuda-int8x-gemv bench: ${cudaInt8xUnavailable()}`); process.exit(2); }
const ksplits = opt('--ksplit', '1,2,4,8').split(',').map(Number);
const bytes = 1 << 28, a = c.cudaAlloc(bytes), b = c.cudaAlloc(bytes);
c.cudaFillRandomBytes(a, bytes, 1);
const BW = (2 * bytes) / (c.cudaBenchCopy(b, a, bytes, 20) * 1e-3);
c.cudaFree(a); c.cudaFree(b);
console.log(`copy bandwidth ${(BW / 1e9).toFixed(0)} GB/s (read + write)`);
const rows = [];
for (const [out, inF, name] of [[4096, 4096, 'o (4096²)'], [12288, 4096, 'q/k/v (3·4096 × 4096)'], [22016, 4096, 'gate/up (2·11008 × 4096)'], [4096, 11008, 'down (4096 × 11008)']]) {
  const tiles = Math.ceil(out / 16), ng = inF / 64;
  const wBytes = tiles * 16 * inF / 4, szBytes = out * ng * 4;
  const hw = c.cudaAlloc(wBytes), hs = c.cudaAlloc(szBytes), hz = c.cudaAlloc(szBytes), hx = c.cudaAlloc(inF * 4);
  const hscr = c.cudaAlloc(inF + ng * 8), hy = c.cudaAlloc(out * 4);
  c.cudaFillRandomBytes(hw, wBytes, 2);
  c.cudaUpload(hs, new Float32Array(out * ng).map((_, i) => 0.01 + (i % 7) * 1e-3));
  c.cudaUpload(hz, new Float32Array(out * ng).map((_, i) => i % 4));
  c.cudaUpload(hx, new Float32Array(inF).map((_, i) => Math.sin(i * 0.37)));
  const read = wBytes + 2 * szBytes + inF * 4;
  for (const ks of ksplits) {
    const e0 = c.cudaEventNew(), e1 = c.cudaEventNew(), reps = 200, ms = [];
    for (let i = 0; i < 20; i++) c.cudaInt8xGemv(hw, hs, hz, hx, hscr, hy, out, inF, ks);
    for (let k = 0; k < 5; k++) {
      c.cudaEventRecord(e0);
      for (let i = 0; i < reps; i++) c.cudaInt8xGemv(hw, hs, hz, hx, hscr, hy, out, inF, ks);
      c.cudaEventRecord(e1);
      c.cudaSync();
      ms.push(c.cudaEventMs(e0, e1) / reps);
    }
    c.cudaEventFree(e0); c.cudaEventFree(e1);
    const us = ms.sort((p, q) => p - q)[2] * 1e3, ofCopy = read / (us * 1e-6) / BW;  // as the decode bench: bytes ÷ the copy rate (read + write)
    rows.push({ name, out, in: inF, ksplit: ks, us, readBytes: read, ofCopyRead: ofCopy });
    console.log(`${name.padEnd(26)} split K ${ks}: ${us.toFixed(2)} µs, ${(read / 1e6).toFixed(1)} MB → ${(100 * ofCopy).toFixed(1)} % of the copy rate`);
  }
  for (const h of [hw, hs, hz, hx, hscr, hy]) c.cudaFree(h);
}
const jsonOut = opt('--json', null);
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ date: new Date().toISOString(), copyGBs: BW / 1e9, rows }, null, 1) + '\n');
