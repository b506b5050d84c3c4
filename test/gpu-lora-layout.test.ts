// The GPU model's memory bookkeeping, on a host-memory stand-in for the engine (runs in CI): the flat LoRA
// layout (per layer the A factors adjacent in projection order, then the B's), host-order round trips, the
// q/k/v and gate/up A blocks the grouped GEMMs read, the bf16 copies, and the device-resident Adam driven like
// the trainer drives AdamW (clipping folded into the update, pull/push of parameters and moments).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/tensor.js';
import { GpuLora, type LoraSiteSpec } from '../src/model/gpu/gpu-lora.js';
import { DeviceArena } from '../src/model/gpu/arena.js';
import { GpuAdam } from '../src/train/gpu-adam.js';
import { AdamW } from '../src/train/adamw.js';
import { PROJECTIONS, type Projection } from '../src/model/config.js';
import { f32ToBf16 } from '../src/backend/cuda.js';
import { hostEngine } from './helpers/host-engine.js';

const D = 24, I = 40, KV = 8;
const shape = (p: Projection) => p === 'gate_proj' || p === 'up_proj' ? { in: D, out: I } : p === 'down_proj' ? { in: I, out: D }
  : p === 'k_proj' || p === 'v_proj' ? { in: D, out: KV } : { in: D, out: D };

/** Two layers; layer 1 has no v_proj adapter and a different rank on up_proj (so its groups break). Specs deliberately out of projection order. */
function specs(): LoraSiteSpec[] {
  const out: LoraSiteSpec[] = [];
  for (const l of [0, 1]) for (const p of [...PROJECTIONS].reverse()) {
    if (l === 1 && p === 'v_proj') continue;
    const r = l === 1 && p === 'up_proj' ? 3 : 4;
    out.push({ layer: l, proj: p, r, scale: 16 / r, ...shape(p) });
  }
  return out;
}
const randn = (rng: Rng, n: number) => Float32Array.from({ length: n }, () => rng.normal());

test('flat LoRA layout: host-order round trip, per-layer A blocks, group() only where the A factors are adjacent', () => {
  const c = hostEngine(), sp = specs(), rng = new Rng(3);
  const lora = new GpuLora(c, sp);
  const ts = sp.flatMap((s) => [randn(rng, s.r * s.in), randn(rng, s.out * s.r)]);
  assert.equal(lora.n, ts.reduce((a, t) => a + t.length, 0));
  lora.setParams(ts);
  const back = ts.map((t) => new Float32Array(t.length));
  lora.getParams(back);
  back.forEach((b, i) => assert.deepEqual(b, ts[i]));
  // the flat vector: every site's A and B where its offsets say, A's of a layer before its B's, in projection order
  const P = new Float32Array(lora.n);
  c.cudaDownload(lora.flat.P, P);
  sp.forEach((s, i) => {
    const site = lora.at(s.layer, s.proj)!;
    assert.deepEqual(P.subarray(site.offA, site.offA + s.r * s.in), ts[2 * i]);
    assert.deepEqual(P.subarray(site.offB, site.offB + s.out * s.r), ts[2 * i + 1]);
    const viaView = new Float32Array(s.r * s.in);
    c.cudaDownload(site.A, viaView);
    assert.deepEqual(viaView, ts[2 * i]);
  });
  for (const l of [0, 1]) {
    const sites = PROJECTIONS.map((p) => lora.at(l, p)).filter((x) => x !== undefined);
    for (let k = 1; k < sites.length; k++) assert.equal(sites[k]!.offA, sites[k - 1]!.offA + sites[k - 1]!.r * sites[k - 1]!.in, `layer ${l} A's adjacent`);
    const lastA = sites[sites.length - 1]!;
    assert.equal(sites[0]!.offB, lastA.offA + lastA.r * lastA.in, `layer ${l}: B's after the A's`);
  }
  const g = lora.group(0, ['q_proj', 'k_proj', 'v_proj']);
  assert.ok(g && g.offA === lora.at(0, 'q_proj')!.offA && g.r === 4 && g.sites.length === 3);
  assert.ok(lora.group(0, ['gate_proj', 'up_proj']));
  assert.equal(lora.group(1, ['q_proj', 'k_proj', 'v_proj']), null, 'a missing v_proj adapter breaks the group');
  assert.equal(lora.group(1, ['gate_proj', 'up_proj']), null, 'different ranks break the group');
  // the bf16 copy the GEMMs read
  const PB = new Uint16Array(lora.n);
  c.cudaDownload(lora.flat.PB, PB);
  assert.deepEqual(PB, f32ToBf16(P));
  lora.free();
  assert.equal(c.live(), 0, 'every view and allocation freed');
});

test('device-resident Adam = AdamW on the host, driven as the trainer drives it (clip, update, zero, pull/push)', () => {
  const c = hostEngine(), sp = specs(), rng = new Rng(9);
  const lora = new GpuLora(c, sp);
  const mk = () => sp.flatMap((s, i) => [
    { name: `${i}A`, data: randn(new Rng(100 + i), s.r * s.in), grad: new Float32Array(s.r * s.in) },
    { name: `${i}B`, data: randn(new Rng(200 + i), s.out * s.r), grad: new Float32Array(s.out * s.r) }]);
  const host = mk(), dev = mk();
  const o = { lr: 1e-2, weightDecay: 0.01 };
  const ref = new AdamW(host, o), opt = new GpuAdam(lora, dev, o);
  for (let step = 0; step < 3; step++) {
    const grads = host.map((p) => randn(rng, p.data.length).map((x) => x * (step + 1)));
    host.forEach((p, i) => p.grad.set(grads[i]));
    lora.setGrads(grads);
    const n1 = ref.clipGradNorm(5), n2 = opt.clipGradNorm(5);
    assert.ok(Math.abs(n1 / n2 - 1) < 1e-6, `grad norm ${n1} vs ${n2}`);
    assert.ok(n1 > 5, 'the clip is exercised');
    ref.update(); opt.update();
    ref.zeroGrad(); opt.zeroGrad();
  }
  assert.equal(opt.step, 3);
  opt.pull();
  let worst = 0;
  host.forEach((p, i) => { for (let k = 0; k < p.data.length; k++) worst = Math.max(worst, Math.abs(p.data[k] - dev[i].data[k])); });
  assert.ok(worst < 1e-6, `params differ by ${worst}`);
  host.forEach((_, i) => { assert.ok(Math.abs(ref.m[i][0] - opt.m[i][0]) < 1e-7 && Math.abs(ref.v[i][0] - opt.v[i][0]) < 1e-9); });
  const G = new Float32Array(lora.n);
  c.cudaDownload(lora.flat.G, G);
  assert.ok(G.every((x) => x === 0), 'zeroGrad cleared the device gradients');
  // push: host edits reach the device (the trainer restores its best parameters this way)
  dev[0].data.fill(0.5);
  opt.push();
  const A0 = new Float32Array(dev[0].data.length);
  lora.getParams(dev.map((p, i) => (i === 0 ? A0 : new Float32Array(p.data.length))));
  assert.ok(A0.every((x) => x === 0.5));
  lora.free();
});

test('device arena: named slots carved 256-byte aligned from one allocation, sized by type', () => {
  const c = hostEngine();
  const a = new DeviceArena(c, { x: { n: 10, t: 'f32' }, y: { n: 3, t: 'bf16' }, z: { n: 100, t: 'i32' } });
  assert.equal(a.bytes, 256 + 256 + 512);
  c.cudaUpload(a.h.z, new Int32Array(100).fill(7));
  c.cudaUpload(a.h.x, new Float32Array(10).fill(1));
  const z = new Int32Array(100);
  c.cudaDownload(a.h.z, z);
  assert.ok(z.every((v) => v === 7), 'slots do not overlap');
  assert.throws(() => c.cudaUpload(a.h.y, new Uint16Array(4)), /needs 8/);
  a.free();
  assert.equal(c.live(), 0);
});
