// The decode kernels (native/cuda/decode.cu) against their TypeScript twins on random inputs at real widths: the v4
// GEMV over several packed + dense segments (rows not multiples of 16, 16 or 43 spans per row, group 64 and 128,
// RMSNorm fused or not, f32 or bf16 x, accumulate), the span repack, and the three epilogues. Skipped with the reason
// where no CUDA device is present (the indexing is also checked in CI by test/cuda-decode-model.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { gpuEngine, gpuUnavailable, type GpuEngine } from '../src/model/gpu/engine.js';
import { uploadPacked, bf16ToF32, f32ToBf16 } from '../src/backend/cuda.js';
import { decodeOwnStagedX, decodeSegRanges, decodeSlotRound, type DecodeSeg } from '../src/backend/cuda-decode.js';
import { cudaInt8xOps, int8xScratchBytes } from '../src/backend/cuda-int8x.js';
import { quantizeRTN } from '../src/quant/rtn.js';
import { dequantize } from '../src/quant/dequant.js';
import { rmsnormForwardRef } from '../src/model/ops/rmsnorm.js';
import { ropeForward } from '../src/model/ops/rope.js';
import { randf } from './helpers/arrays.js';
import { bf, relErr } from './helpers/gpu-model.js';


function up(c: GpuEngine, a: Float32Array | Uint16Array | Uint8Array): number { const h = c.cudaAlloc(Math.max(16, a.byteLength)); c.cudaUpload(h, a); return h; }
function down(c: GpuEngine, h: number, n: number): Float32Array { const o = new Float32Array(n); c.cudaDownload(h, o); return o; }
function downU16(c: GpuEngine, h: number, n: number): Uint16Array { const o = new Uint16Array(n); c.cudaDownload(h, o); return o; }

for (const [inF, group] of [[4096, 64], [11008, 64], [2048, 128]] as const) {
  test(`CUDA v4 decode GEMV, in ${inF}, group ${group}: packed + dense segments = f64 twin`, (t) => {
    const c = gpuEngine();
    if (!c) { t.skip(gpuUnavailable()); return; }
    const rng = new Rng(inF + group);
    const rowsP = [200, 37], rowsD = 24;
    const packs = rowsP.map((r) => quantizeRTN(randf(rng, r * inF, 0.03), r, inF, { bits: 2, groupSize: group }));
    const Wd = bf(randf(rng, rowsD * inF, 0.02));
    const handles: number[] = [];
    const dqs = packs.map((p) => uploadPacked(c, p));
    try {
      for (const [xBf16, norm, kernel] of [[false, true, 0], [false, false, 0], [true, true, 0], [true, false, 0], [false, true, 2], [true, false, 2], [false, true, 5], [true, false, 5], [false, false, 5]] as const) {
        let x = randf(rng, inF, 1.5);
        if (xBf16) x = bf(x);
        const nw = randf(rng, inF, 1).map((v) => 1 + 0.3 * v);
        const xh = xBf16 ? up(c, f32ToBf16(x)) : up(c, x), nwh = up(c, nw);
        handles.push(xh, nwh);
        const segs: DecodeSeg[] = [];
        const outs: number[] = [];
        packs.forEach((p, i) => {
          const codes4 = c.cudaAlloc(p.out * p.in / 4); handles.push(codes4);
          c.cudaRepackSpan4(dqs[i].desc, codes4);
          const y = c.cudaAlloc(p.out * 4); handles.push(y); outs.push(y);
          segs.push({ desc: dqs[i].desc, codes4, y });
        });
        const wh = up(c, f32ToBf16(Wd)), yd = c.cudaAlloc(rowsD * 4); handles.push(wh, yd);
        c.cudaUpload(yd, Float32Array.from({ length: rowsD }, (_, i) => i));  // accumulated into
        segs.push({ w: wh, rows: rowsD, y: yd, acc: 1 });
        c.cudaDecodeGemv(xh, xBf16, norm ? nwh : null, 1e-5, inF, segs, 0, kernel);
        c.cudaSync();
        let xn = x;
        if (norm) { xn = new Float32Array(inF); rmsnormForwardRef(xn, new Float32Array(1), x, nw, 1, inF, 1e-5); }
        // kernel 5 rounds x·normW and scales the row sums by 1/rms (decode.cu stage_own); v4 rounds the normalized x
        let xr: Float64Array = new Float64Array(inF);
        if (kernel === 5 && group === 64) xr = decodeOwnStagedX(x, norm ? nw : null, 1e-5);
        else for (let j = 0; j < inF; j += 64) decodeSlotRound(xn, j, xr);
        packs.forEach((p, i) => {
          const W = dequantize(p), y = down(c, outs[i], p.out), twin = new Float64Array(p.out), ref = new Float64Array(p.out);
          for (let o = 0; o < p.out; o++) for (let k = 0; k < inF; k++) { twin[o] += W[o * inF + k] * xr[k]; ref[o] += W[o * inF + k] * xn[k]; }
          const e = relErr(y, twin), er = relErr(y, ref);
          t.diagnostic(`kernel ${kernel}, x ${xBf16 ? 'bf16' : 'f32'}${norm ? ' + RMSNorm' : ''}, packed ${p.out} rows: vs twin ${e.toExponential(2)}, vs exact x ${er.toExponential(2)}`);
          assert.ok(e < 3e-4, `packed segment ${i} vs twin ${e}`);
          assert.ok(er < 3e-3, `packed segment ${i} vs f64 ${er}`);
        });
        const y = down(c, yd, rowsD), ref = new Float64Array(rowsD);
        for (let o = 0; o < rowsD; o++) { ref[o] = o; for (let k = 0; k < inF; k++) ref[o] += Wd[o * inF + k] * xn[k]; }
        const e = relErr(y, ref);
        assert.ok(e < 1e-5, `dense segment (accumulated) vs f64 ${e}`);
      }
    } finally {
      for (const h of handles) c.cudaFree(h);
      for (const d of dqs) d.free();
    }
  });
}

test('CUDA decode epilogues (LoRA B·t + RoPE + cache rows; residual; SwiGLU) = f64 twins', (t) => {
  const c = gpuEngine();
  if (!c) { t.skip(gpuUnavailable()); return; }
  const rng = new Rng(5);
  const Hq = 8, Hkv = 2, hd = 64, Q = Hq * hd, KV = Hkv * hd, half = hd / 2, I = 1000;
  const hs: number[] = [];
  const U = (a: Float32Array | Uint16Array) => { const h = up(c, a); hs.push(h); return h; };
  const A = (n: number) => { const h = c.cudaAlloc(n); hs.push(h); return h; };
  try {
    for (const r of [64, 12, 0]) {
      const q = randf(rng, Q), k = randf(rng, KV), v = randf(rng, KV), cs = randf(rng, half), sn = randf(rng, half);
      const lora = (n: number) => r ? { B: bf(randf(rng, n * r, 0.1)), t: randf(rng, r) } : null;
      const lq = lora(Q), lk = lora(KV), lv = lora(KV);
      const hB = (l: ReturnType<typeof lora>) => l ? U(f32ToBf16(l.B)) : null, hT = (l: ReturnType<typeof lora>) => l ? U(l.t) : null;
      const qo = A(Q * 2), ko = A(KV * 2), vo = A(KV * 2);
      c.cudaDecodeQkvEpi(U(q), U(k), U(v), hT(lq), hT(lk), hT(lv), hB(lq), hB(lk), hB(lv), r, r, r, U(cs), U(sn), Hq, Hkv, hd, qo, ko, vo);
      const add = (y: Float32Array, l: ReturnType<typeof lora>) => y.map((yi, i) => { let s = yi; if (l) for (let j = 0; j < r; j++) s += l.B[i * r + j] * l.t[j]; return s; });
      const qr = new Float32Array(Q), kr = new Float32Array(KV);
      ropeForward(qr, add(q, lq), cs, sn, 1, 1, Hq, hd); ropeForward(kr, add(k, lk), cs, sn, 1, 1, Hkv, hd);
      const bfDown = (h: number, n: number) => { const u = new Uint16Array(n); c.cudaDownload(h, u); return bf16ToF32(u); };
      const eq = relErr(bfDown(qo, Q), qr), ek = relErr(bfDown(ko, KV), kr), ev = relErr(bfDown(vo, KV), add(v, lv));
      t.diagnostic(`r ${r}: q ${eq.toExponential(2)} k ${ek.toExponential(2)} v ${ev.toExponential(2)} (bf16 outputs)`);
      assert.ok(eq < 4e-3 && ek < 4e-3 && ev < 4e-3, `qkv epilogue ${eq} ${ek} ${ev}`);
      // residual
      const x = randf(rng, I), y = randf(rng, I), lo = lora(I), xh = U(x);
      c.cudaDecodeResidualEpi(xh, U(y), hT(lo), hB(lo), r, I);
      const xr = add(y, lo).map((v2, i) => x[i] + v2);
      const er = relErr(down(c, xh, I), xr);
      assert.ok(er < 1e-6, `residual epilogue ${er}`);
      // swiglu
      const g = randf(rng, I, 2), u = randf(rng, I), lg = lora(I), lu = lora(I), act = A(I * 4);
      c.cudaDecodeSwigluEpi(U(g), U(u), hT(lg), hT(lu), hB(lg), hB(lu), r, r, I, act);
      const G = add(g, lg), Uu = add(u, lu), ar = G.map((gi, i) => gi / (1 + Math.exp(-gi)) * Uu[i]);
      const es = relErr(down(c, act, I), ar);
      assert.ok(es < 1e-6, `swiglu epilogue ${es}`);
    }
  } finally { for (const h of hs) c.cudaFree(h); }
});

// Kernel 5's folds: LoRA B·t in the launch (t from the A segments of the same launch, computed first; packed and
// dense consumers, ranks 64/16/8, one accumulated), and the SwiGLU staging (x̃ = silu(x)·x2).
for (const [inF, swiglu] of [[4096, false], [11008, true]] as const) {
  test(`CUDA v5 decode GEMV, in ${inF}${swiglu ? ', SwiGLU staging' : ', RMSNorm'}: LoRA B·t folded in = f64 twin`, (t) => {
    const c = gpuEngine();
    if (!c) { t.skip(gpuUnavailable()); return; }
    const rng = new Rng(inF + 7);
    const rowsP = [200, 37], ranks = [64, 16, 8], rowsD = 24;
    const packs = rowsP.map((r) => quantizeRTN(randf(rng, r * inF, 0.03), r, inF, { bits: 2, groupSize: 64 }));
    const Wd = bf(randf(rng, rowsD * inF, 0.02));
    const As = ranks.map((r) => bf(randf(rng, r * inF, 0.02)));
    const outs = [...rowsP, rowsD];
    const Bs = ranks.map((r, i) => bf(randf(rng, outs[i] * r, 0.5)));
    const handles: number[] = [];
    const dqs = packs.map((p) => uploadPacked(c, p));
    try {
      const g = randf(rng, inF, 2), u = randf(rng, inF, 1.5), nw = randf(rng, inF, 1).map((v) => 1 + 0.3 * v);
      const xh = up(c, g), uh = up(c, u), nwh = up(c, nw);
      handles.push(xh, uh, nwh);
      const segs: DecodeSeg[] = [];
      const ys: number[] = [];
      packs.forEach((p, i) => {
        const codes4 = c.cudaAlloc(p.out * p.in / 4); handles.push(codes4);
        c.cudaRepackSpan4(dqs[i].desc, codes4);
        const y = c.cudaAlloc(p.out * 4); handles.push(y); ys.push(y);
        segs.push({ desc: dqs[i].desc, codes4, y });
      });
      const wh = up(c, f32ToBf16(Wd)), yd = c.cudaAlloc(rowsD * 4); handles.push(wh, yd); ys.push(yd);
      c.cudaUpload(yd, Float32Array.from({ length: rowsD }, (_, i) => i));  // accumulated into
      segs.push({ w: wh, rows: rowsD, y: yd, acc: 1 });
      const ts: number[] = [];
      ranks.forEach((r, i) => {
        const ah = up(c, f32ToBf16(As[i])), bh = up(c, f32ToBf16(Bs[i])), th = c.cudaAlloc(r * 4);
        handles.push(ah, bh, th); ts.push(th);
        Object.assign(segs[i], { B: bh, r, tseg: segs.length });
        segs.push({ w: ah, rows: r, y: th });
      });
      // twice: the launch's ready count must be back at zero; the second time with L2 prefetches of every weight range
      // and evict-first copies, which must change nothing (bit for bit)
      const pf = decodeSegRanges(segs, inF), first: Float32Array[] = [];
      assert.equal(pf.length, 11, 'ranges: 2 × (codes, scale|zero) + dense rows + 3 A + 3 B');
      for (let rep = 0; rep < 2; rep++) {
        c.cudaUpload(yd, Float32Array.from({ length: rowsD }, (_, i) => i));
        c.cudaDecodeGemv(xh, false, swiglu ? null : nwh, 1e-5, inF, segs, 0, 5, swiglu ? uh : null, rep ? pf : null, rep === 1);
        c.cudaSync();
        if (rep === 0) outs.forEach((rows, i) => first.push(down(c, ys[i], rows)));
      }
      outs.forEach((rows, i) => assert.deepEqual(down(c, ys[i], rows), first[i], `segment ${i}: prefetch changed the result`));
      assert.throws(() => c.cudaDecodeGemv(xh, false, swiglu ? null : nwh, 1e-5, inF, segs, 0, 5, swiglu ? uh : null,
        [{ buf: pf[0].buf, bytes: 24 }]), /16-byte|% 16/);
      let xn: Float32Array;
      if (swiglu) xn = g.map((v, i) => Math.fround(Math.fround(v / (1 + Math.exp(-v))) * u[i]));
      else { xn = new Float32Array(inF); rmsnormForwardRef(xn, new Float32Array(1), g, nw, 1, inF, 1e-5); }
      const xr = swiglu ? new Float64Array(inF) : decodeOwnStagedX(g, nw, 1e-5);  // kernel 5's staging (stage_own)
      if (swiglu) for (let j = 0; j < inF; j += 64) decodeSlotRound(xn, j, xr);
      const tRef = ranks.map((r, i) => Float64Array.from({ length: r }, (_, o) => { let s = 0; for (let k = 0; k < inF; k++) s += As[i][o * inF + k] * xn[k]; return s; }));
      ranks.forEach((r, i) => {
        const e = relErr(down(c, ts[i], r), tRef[i]);
        assert.ok(e < 1e-5, `t of adapter ${i} vs f64 ${e}`);
      });
      outs.forEach((rows, i) => {
        const dense = i === rowsP.length, W = dense ? Wd : dequantize(packs[i]), xin = dense ? xn : xr, r = ranks[i];
        const ref = new Float64Array(rows);
        for (let o = 0; o < rows; o++) {
          let s = dense ? o : 0;
          for (let k = 0; k < inF; k++) s += W[o * inF + k] * xin[k];
          for (let j = 0; j < r; j++) s += Bs[i][o * r + j] * tRef[i][j];
          ref[o] = s;
        }
        const e = relErr(down(c, ys[i], rows), ref);
        t.diagnostic(`v5 ${dense ? 'dense' : 'packed'} segment ${i} (${rows} rows, rank ${r}): vs f64 twin ${e.toExponential(2)}`);
        assert.ok(e < (dense ? 1e-5 : 3e-4), `segment ${i} vs twin ${e}`);
      });
    } finally {
      for (const h of handles) c.cudaFree(h);
      for (const d of dqs) d.free();
    }
  });
}

// RoPE + cache rows + attention of one token in one kernel (the folded decode path) vs an f64 twin.
for (const [hd, Hq, Hkv, pos] of [[128, 8, 2, 37], [64, 4, 4, 0], [128, 4, 1, 200]] as const) {
  test(`CUDA decode attention (RoPE + cache rows + softmax·V), hd ${hd}, Hq ${Hq}, Hkv ${Hkv}, position ${pos} = f64 twin`, (t) => {
    const c = gpuEngine();
    if (!c) { t.skip(gpuUnavailable()); return; }
    const rng = new Rng(hd + pos);
    const Q = Hq * hd, KV = Hkv * hd, half = hd / 2, T = pos + 1;
    const q = randf(rng, Q, 2), k = randf(rng, KV, 2), v = randf(rng, KV, 1);
    const ang = Float32Array.from({ length: half }, (_, i) => pos * 10000 ** (-2 * i / hd));
    const cos = ang.map(Math.cos), sin = ang.map(Math.sin);
    const K = bf(randf(rng, T * KV, 2)), V = bf(randf(rng, T * KV, 1)), K16 = f32ToBf16(K), V16 = f32ToBf16(V);
    const hs = [up(c, q), up(c, k), up(c, v), up(c, cos), up(c, sin), up(c, K16), up(c, V16), c.cudaAlloc(Q * 2),
      c.cudaAlloc(128 * 2), c.cudaAlloc(16)];
    try {
      c.cudaDecodeAttn(hs[0], hs[1], hs[2], hs[3], hs[4], hs[5], hs[6], pos, Hq, Hkv, hd, hs[7]);
      c.cudaSync();
      const raw = downU16(c, hs[7], Q);
      const out = bf16ToF32(raw), kc = bf16ToF32(downU16(c, hs[5], T * KV)), vc = bf16ToF32(downU16(c, hs[6], T * KV));
      if (c.cudaDecodeAttnFoldNext) {
        // an attention handed to the next GEMV still runs when that GEMV fails its own checks (here in = 128, not a
        // multiple of 256): the GEMV's error is thrown and the attention's output is the one launched on its own, bit for bit
        c.cudaUpload(hs[5], K16); c.cudaUpload(hs[6], V16); c.cudaUpload(hs[7], new Uint16Array(Q));
        c.cudaDecodeAttnFoldNext(hs[0], hs[1], hs[2], hs[3], hs[4], hs[5], hs[6], pos, Hq, Hkv, hd, hs[7]);
        assert.throws(() => c.cudaDecodeGemv(hs[0], false, null, 1e-5, 128, [{ w: hs[8], rows: 1, y: hs[9] }]), /multiple of 256/);
        c.cudaSync();
        assert.deepEqual(downU16(c, hs[7], Q), raw, 'the pending attention ran although its GEMV failed');
      } else t.diagnostic('cudaDecodeAttnFoldNext: not in this addon, its error path not checked');
      const qr = new Float32Array(Q), kr = new Float32Array(KV);
      ropeForward(qr, q, cos, sin, 1, 1, Hq, hd);
      ropeForward(kr, k, cos, sin, 1, 1, Hkv, hd);
      const qb = bf(qr);
      K.set(bf(kr), pos * KV); V.set(bf(v), pos * KV);
      // the new rows may differ from the twin in a rare last bf16 bit (the kernel's RoPE may fuse a multiply-add); earlier rows untouched
      assert.ok(relErr(kc, K) < 1e-3 && relErr(vc, V) === 0, `cache rows as the twin writes them: k ${relErr(kc, K)}, v ${relErr(vc, V)}`);
      if (pos > 0) assert.equal(relErr(kc.subarray(0, pos * KV), K.subarray(0, pos * KV)), 0, 'earlier cache rows untouched');
      const ref = new Float64Array(Q);
      for (let h = 0; h < Hq; h++) {
        const kvh = Math.floor(h / (Hq / Hkv)), s = new Float64Array(T);
        let m = -Infinity;
        for (let p = 0; p < T; p++) {
          let d = 0;
          for (let i = 0; i < hd; i++) d += qb[h * hd + i] * K[p * KV + kvh * hd + i];
          s[p] = d / Math.sqrt(hd); m = Math.max(m, s[p]);
        }
        let l = 0;
        for (let p = 0; p < T; p++) { s[p] = Math.exp(s[p] - m); l += s[p]; }
        for (let i = 0; i < hd; i++) { let o = 0; for (let p = 0; p < T; p++) o += s[p] * V[p * KV + kvh * hd + i]; ref[h * hd + i] = o / l; }
      }
      const e = relErr(out, ref);
      t.diagnostic(`decode attention hd ${hd}, position ${pos}: vs f64 ${e.toExponential(2)} (bf16 output)`);
      assert.ok(e < 5e-3, `attention output vs f64 ${e}`);
    } finally { for (const h of hs) c.cudaFree(h); }
  });
}

// Kernel 8's attention in one launch: the q/k/v B·t added before RoPE, and the output written as the o GEMV's int8
// input — against the same kernel on q + B·t, k + B·t, v + B·t (f64) with its bf16 output through cudaInt8xPrep (the
// launches it replaces). Without B·t the two are the same bits; with it, B·t's f32 sum order may move a value by an
// ulp and, rarely, an int8 code by one.
for (const [hd, Hq, Hkv, pos, r, withK] of [[128, 8, 2, 37, 16, true], [64, 4, 4, 5, 24, true], [128, 4, 1, 90, 64, false],
  [64, 4, 2, 12, 0, false]] as const) {
  test(`CUDA decode attention with q/k/v B·t (rank ${r}${withK ? '' : ', no k adapter'}) and the int8-x output, hd ${hd}, Hq ${Hq}, Hkv ${Hkv} = B·t added first + attention + cudaInt8xPrep of its bf16 output`, (t) => {
    const c = gpuEngine(), x8 = cudaInt8xOps();
    if (!c || !x8) { t.skip(gpuUnavailable()); return; }
    const rng = new Rng(hd + pos + r);
    const Q = Hq * hd, KV = Hkv * hd, half = hd / 2, T = pos + 1, ng = Q / 64;
    const q = randf(rng, Q, 2), k = randf(rng, KV, 2), v = randf(rng, KV, 1);
    const ang = Float32Array.from({ length: half }, (_, i) => pos * 10000 ** (-2 * i / hd));
    const cos = ang.map(Math.cos), sin = ang.map(Math.sin);
    const K16 = f32ToBf16(bf(randf(rng, T * KV, 2))), V16 = f32ToBf16(bf(randf(rng, T * KV, 1)));
    const mkB = (rows: number) => bf(randf(rng, rows * Math.max(r, 1), 0.1)), mkT = () => randf(rng, Math.max(r, 1), 1);
    const Bq = mkB(Q), Bk = mkB(KV), Bv = mkB(KV), tq = mkT(), tk = mkT(), tv = mkT();
    const plus = (y: Float32Array, B: Float32Array, tt: Float32Array, on: boolean) => y.map((yi, i) => {
      if (!on || r === 0) return yi;
      let s = 0;
      for (let j = 0; j < r; j++) s += B[i * r + j] * tt[j];
      return yi + s;
    });
    const hs: number[] = [];
    const u = (a: Float32Array | Uint16Array) => { const h = up(c, a); hs.push(h); return h; };
    const al = (n: number) => { const h = c.cudaAlloc(n); hs.push(h); return h; };
    try {
      const scrA = al(int8xScratchBytes(Q)), scrB = al(int8xScratchBytes(Q)), outB = al(Q * 2);
      const kcA = u(K16), vcA = u(V16), kcB = u(K16), vcB = u(V16), hc = u(cos), hsn = u(sin);
      const hq = u(q), hk = u(k), hv = u(v);
      c.cudaDecodeAttn(hq, hk, hv, hc, hsn, kcA, vcA, pos, Hq, Hkv, hd, null,
        r ? u(tq) : null, r && withK ? u(tk) : null, r ? u(tv) : null, r ? u(f32ToBf16(Bq)) : null,
        r && withK ? u(f32ToBf16(Bk)) : null, r ? u(f32ToBf16(Bv)) : null, r, scrA);
      c.cudaDecodeAttn(u(plus(q, Bq, tq, true)), u(plus(k, Bk, tk, withK)), u(plus(v, Bv, tv, true)), hc, hsn, kcB, vcB, pos, Hq, Hkv, hd, outB);
      x8.cudaInt8xPrep(outB, null, null, scrB, Q, null, 0, false, null, null, null, null, null, 0, null, true);
      c.cudaSync();
      const get = (h: number) => { const b = new Uint8Array(int8xScratchBytes(Q)); c.cudaDownload(h, b); return b; };
      const A = get(scrA), B = get(scrB);
      const xa = new Int8Array(A.buffer, 0, Q), xb = new Int8Array(B.buffer, 0, Q);
      const aa = new Float32Array(A.buffer, Q, ng), ab = new Float32Array(B.buffer, Q, ng);
      const sa = new Int32Array(A.buffer, Q + 4 * ng, ng), sb = new Int32Array(B.buffer, Q + 4 * ng, ng);
      let moved = 0, far = 0;
      for (let i = 0; i < Q; i++) { const d = Math.abs(xa[i] - xb[i]); if (d) moved++; if (d > 1) far++; }
      const deqA = Float32Array.from(xa, (x, i) => x * aa[Math.floor(i / 64)]), deqB = Float32Array.from(xb, (x, i) => x * ab[Math.floor(i / 64)]);
      const e = relErr(deqA, deqB), eK = relErr(bf16ToF32(downU16(c, kcA, T * KV)), bf16ToF32(downU16(c, kcB, T * KV)));
      const eV = relErr(bf16ToF32(downU16(c, vcA, T * KV)), bf16ToF32(downU16(c, vcB, T * KV)));
      t.diagnostic(`hd ${hd}, rank ${r}: x̂ codes moved ${moved} of ${Q} (by more than 1: ${far}), a·x̂ vs the three launches ${e.toExponential(2)}, cache rows k ${eK.toExponential(2)} v ${eV.toExponential(2)}`);
      if (r === 0) {
        assert.deepEqual([...xa], [...xb], 'no adapter: x̂ = the prep of the bf16 output, bit for bit');
        assert.deepEqual([...aa], [...ab], 'no adapter: group scales equal');
        assert.deepEqual([...sa], [...sb], 'no adapter: Σx̂ equal');
      } else {
        assert.ok(far === 0 && moved <= Q / 32, `x̂ within one code of the three launches' (${moved} moved, ${far} by more)`);
        assert.ok(e < 2e-3, `a·x̂ vs the three launches ${e}`);
        for (let g = 0; g < ng; g++) assert.ok(Math.abs(aa[g] - ab[g]) <= 2e-3 * ab[g], `group ${g} scale ${aa[g]} vs ${ab[g]}`);
      }
      assert.ok(eK < 2e-3 && eV < 2e-3, `cache rows k ${eK} v ${eV}`);
      // its errors: B·t or the int8 output inside a persistent plan recording is refused
      if (typeof c.cudaDecodePlanBegin === 'function' && r > 0) {
        c.cudaDecodePlanBegin();
        try {
          assert.throws(() => c.cudaDecodeAttn(hq, hk, hv, hc, hsn, kcA, vcA, pos, Hq, Hkv, hd, null, null, null, null, null, null, null, 0, scrA),
            /only in a launch of its own/);
        } finally { assert.throws(() => c.cudaDecodePlanEnd(), /no phases recorded/); }  // the refused call recorded nothing
      }
    } finally { for (const h of hs) c.cudaFree(h); }
  });
}
