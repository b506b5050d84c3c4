import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, truncateSync, unlinkSync, existsSync, readdirSync, copyFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../src/tensor.js';
import { LowbitError } from '../src/io/errors.js';
import { bf16BitsToF32, f16BitsToF32, f16Table, f32ToBf16Bits, f32ToF16Bits } from '../src/io/halfs.js';
import {
  SafetensorsFile, ShardedSafetensorsWriter, writeSafetensors, openTensorStore, INDEX_FILE, shardName, type Dtype, type TensorToWrite,
} from '../src/io/safetensors.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'lowbit-io-st-'));
const fromBits = (u: number) => new Float32Array(new Uint32Array([u >>> 0]).buffer)[0];
const bitsOf = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0];

test('bf16: round to nearest even, specials', () => {
  const cases: [number, number][] = [
    [1, 0x3f80], [-2, 0xc000], [0, 0x0000], [-0, 0x8000],
    [fromBits(0x3f808000), 0x3f80], // exact tie, even stays
    [fromBits(0x3f818000), 0x3f82], // exact tie, odd rounds up
    [fromBits(0x3f808001), 0x3f81], // just above the tie
    [fromBits(0x3f807fff), 0x3f80], // just below the tie
    [Infinity, 0x7f80], [-Infinity, 0xff80], [NaN, 0x7fc0],
    [fromBits(0x7f7fffff), 0x7f80], // f32 max rounds to inf, as torch
    [fromBits(0x00000001), 0x0000], // f32 subnormal
    [fromBits(0x00018000), 0x0002], // subnormal tie with odd lsb rounds up
    [fromBits(0x80008000), 0x8000],
    [Math.PI, 0x4049], // 3.140625
  ];
  for (const [x, want] of cases) assert.equal(f32ToBf16Bits(x), want, `bf16(${x}) bits ${bitsOf(x).toString(16)}`);
  assert.equal(f32ToBf16Bits(fromBits(0xffc00001)), 0x7fc0); // any NaN -> canonical
  assert.equal(bf16BitsToF32(0x4049), 3.140625);
  assert.equal(bf16BitsToF32(0xff80), -Infinity);
  assert.ok(Number.isNaN(bf16BitsToF32(0x7fc1)));
  assert.equal(bf16BitsToF32(0x0001), 2 ** -133); // bf16 subnormal
});

test('f16: round to nearest even, subnormals, overflow, specials', () => {
  const cases: [number, number][] = [
    [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [-0, 0x8000], [65504, 0x7bff],
    [65519.99, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00], [-1e6, 0xfc00],
    [1 + 2 ** -11, 0x3c00], // tie, even stays
    [1 + 3 * 2 ** -11, 0x3c02], // tie, odd rounds up
    [1 + 2 ** -11 + 2 ** -20, 0x3c01],
    [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001], [3 * 2 ** -25, 0x0002],
    [2 ** -14, 0x0400], [2 ** -14 - 2 ** -25, 0x0400], [1023 * 2 ** -24, 0x03ff],
    [1e-10, 0x0000], [-1e-10, 0x8000], [-(2 ** -24), 0x8001],
    [Infinity, 0x7c00], [-Infinity, 0xfc00], [NaN, 0x7e00], [fromBits(0xffc00000), 0xfe00],
    [0.1, 0x2e66], // 0.0999755859375
  ];
  for (const [x, want] of cases) assert.equal(f32ToF16Bits(Math.fround(x)), want, `f16(${x})`);
  assert.equal(f16BitsToF32(0x0001), 2 ** -24);
  assert.equal(f16BitsToF32(0x03ff), 1023 * 2 ** -24);
  assert.equal(f16BitsToF32(0x7bff), 65504);
  assert.equal(f16BitsToF32(0x2e66), 0.0999755859375);
  assert.equal(f16BitsToF32(0xfc00), -Infinity);
  assert.ok(Number.isNaN(f16BitsToF32(0x7e00)));
  assert.ok(Object.is(f16BitsToF32(0x8000), -0));
  // every finite/inf f16 survives f16 -> f32 -> f16
  const t = f16Table();
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff)) continue;
    assert.equal(f32ToF16Bits(t[h]), h);
  }
  // random values: the chosen f16 is a nearest one (never farther than a neighbour)
  const rng = new Rng(7);
  for (let i = 0; i < 20000; i++) {
    const x = Math.fround((rng.next() * 2 - 1) * 2 ** (rng.int(40) - 26));
    const h = f32ToF16Bits(x);
    if ((h & 0x7fff) === 0x7c00) { assert.ok(Math.abs(x) >= 65520); continue; }
    const d = Math.abs(x - t[h]);
    for (const nb of [h - 1, h + 1]) {
      if (nb < 0 || (nb & 0x8000) !== (h & 0x8000) || (nb & 0x7fff) > 0x7bff) continue;
      assert.ok(d <= Math.abs(x - t[nb]), `x=${x} h=${h.toString(16)}`);
    }
  }
});

function sampleTensors(): { t: TensorToWrite; f32: number[] }[] {
  const f = new Float32Array([1, -2.5, 3.140625, 0.1, 65504, 1e-7]);
  return [
    { t: { name: 'a.f32', dtype: 'F32', shape: [2, 3], data: f }, f32: [...f] },
    { t: { name: 'b.f16', dtype: 'F16', shape: [6], data: f }, f32: [1, -2.5, 3.140625, 0.0999755859375, 65504, 1.1920928955078125e-7] },
    { t: { name: 'c.bf16', dtype: 'BF16', shape: [3, 2], data: f }, f32: [1, -2.5, 3.140625, 0.10009765625, 65536, 1.0011717677116394e-7] },
    { t: { name: 'd.f64', dtype: 'F64', shape: [2], data: new Float64Array([0.1, -1e300]) }, f32: [Math.fround(0.1), -Infinity] },
    { t: { name: 'e.i64', dtype: 'I64', shape: [2], data: new BigInt64Array([-5n, 1n << 40n]) }, f32: [-5, 2 ** 40] },
    { t: { name: 'f.i32', dtype: 'I32', shape: [1, 3], data: new Int32Array([-7, 0, 2147483647]) }, f32: [-7, 0, 2147483648] },
    { t: { name: 'g.i16', dtype: 'I16', shape: [2], data: new Int16Array([-32768, 12]) }, f32: [-32768, 12] },
    { t: { name: 'h.i8', dtype: 'I8', shape: [3], data: new Int8Array([-128, 127, 3]) }, f32: [-128, 127, 3] },
    { t: { name: 'i.u64', dtype: 'U64', shape: [1], data: new BigUint64Array([123n]) }, f32: [123] },
    { t: { name: 'j.u32', dtype: 'U32', shape: [2], data: new Uint32Array([0xdeadbeef, 1]) }, f32: [Math.fround(0xdeadbeef), 1] },
    { t: { name: 'k.u16', dtype: 'U16', shape: [2], data: new Uint16Array([65535, 2]) }, f32: [65535, 2] },
    { t: { name: 'l.u8', dtype: 'U8', shape: [5], data: new Uint8Array([0, 1, 2, 254, 255]) }, f32: [0, 1, 2, 254, 255] },
    { t: { name: 'm.bool', dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) }, f32: [1, 0] },
    { t: { name: 'n.bits', dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0xc000]) }, f32: [1, -2] },
    { t: { name: 'o.scalar', dtype: 'F32', shape: [], data: new Float32Array([42]) }, f32: [42] },
    { t: { name: 'p.empty', dtype: 'F16', shape: [0, 4], data: new Float32Array(0) }, f32: [] },
  ];
}

test('round trip of every dtype, header layout, metadata', () => {
  const dir = tmp(), path = join(dir, 'model.safetensors');
  const samples = sampleTensors();
  writeSafetensors(path, samples.map((s) => s.t), { metadata: { format: 'pt' } });
  const bytes = readFileSync(path);
  const hlen = Number(bytes.readBigUInt64LE(0));
  assert.equal(hlen % 8, 0);
  const htext = bytes.subarray(8, 8 + hlen).toString('utf8');
  const header = JSON.parse(htext);
  assert.deepEqual(header.__metadata__, { format: 'pt' });
  assert.deepEqual(header['a.f32'], { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
  assert.deepEqual(header['b.f16'].data_offsets, [24, 36]);
  assert.equal(bytes.length, 8 + hlen + 24 + 12 + 12 + 16 + 16 + 12 + 4 + 3 + 8 + 8 + 4 + 5 + 2 + 4 + 4);
  // f16 bytes of 0.1 are 0x2e66 little endian at data offset 24 + 3*2
  assert.equal(bytes.readUInt16LE(8 + hlen + 24 + 6), 0x2e66);

  // a generator goes through the staged streaming writer and gives the same bytes
  function* gen() { for (const s of samples) yield s.t; }
  writeSafetensors(join(dir, 'streamed.safetensors'), gen(), { metadata: { format: 'pt' } });
  assert.deepEqual(new Uint8Array(readFileSync(join(dir, 'streamed.safetensors'))), new Uint8Array(bytes));
  assert.deepEqual(readdirSync(dir).sort(), ['model.safetensors', 'streamed.safetensors']);

  const f = SafetensorsFile.open(path);
  assert.deepEqual(f.metadata, { format: 'pt' });
  assert.deepEqual(f.names().sort(), samples.map((s) => s.t.name).sort());
  for (const { t, f32 } of samples) {
    const info = f.info(t.name);
    assert.equal(info.dtype, t.dtype);
    assert.deepEqual(info.shape, t.shape);
    const raw = f.readTensorRaw(t.name);
    assert.equal(raw.dtype, t.dtype);
    if (t.data instanceof Float32Array && t.dtype !== 'F32') {
      assert.ok(raw.data instanceof Uint16Array);
    } else {
      assert.equal(raw.data.constructor, t.data.constructor, t.name);
      assert.deepEqual([...raw.data], [...t.data], t.name);
    }
    assert.deepEqual([...f.readTensorF32(t.name)], f32, t.name);
  }
  assert.throws(() => f.readTensorF32('nope'), (e: unknown) => e instanceof LowbitError && e.message === "model.safetensors: no tensor 'nope'");
  f.close();
});

test('large bf16/f16 tensors convert across read chunks', () => {
  const dir = tmp();
  const n = (1 << 23) + 3; // one more than a 16 MiB chunk of 2-byte values
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (i % 1000) - 500.25;
  writeSafetensors(join(dir, 'big.safetensors'), [
    { name: 'bf', dtype: 'BF16', shape: [n], data: x },
    { name: 'h', dtype: 'F16', shape: [n], data: x },
  ]);
  const f = SafetensorsFile.open(join(dir, 'big.safetensors'));
  const bf = f.readTensorF32('bf'), h = f.readTensorF32('h');
  for (const i of [0, 1, 999, (1 << 23) - 1, 1 << 23, n - 1]) {
    assert.equal(bf[i], bf16BitsToF32(f32ToBf16Bits(x[i])), `bf ${i}`);
    assert.equal(h[i], f16BitsToF32(f32ToF16Bits(x[i])), `h ${i}`);
  }
  let bad = 0;
  for (let i = 0; i < n; i++) if (Math.abs(h[i] - x[i]) > 0.125) bad++;
  assert.equal(bad, 0);
  f.close();
});

/** Build a safetensors file from a header object (or raw header text) and a data size. */
function rawFile(path: string, header: unknown, dataBytes: number, opts: { lenOverride?: bigint } = {}): void {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + h.length + dataBytes).fill(7);
  new DataView(out.buffer).setBigUint64(0, opts.lenOverride ?? BigInt(h.length), true);
  out.set(h, 8);
  writeFileSync(path, out);
}

function assertLowbit(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LowbitError, `expected LowbitError, got ${String(e)}`);
    assert.ok(!e.message.includes('\n'), 'one line');
    assert.match(e.message, re);
    return true;
  });
}

test('malformed files give one-line LowbitErrors naming the file', () => {
  const dir = tmp(), p = join(dir, 'bad.safetensors');
  const ok = { 'model.norm.weight': { dtype: 'F32', shape: [1024], data_offsets: [0, 4096] } };

  // truncated file: header promises 4096 data bytes, 1024 remain
  writeSafetensors(p, [{ name: 'model.norm.weight', dtype: 'F32', shape: [1024], data: new Float32Array(1024) }]);
  const full = readFileSync(p).length;
  truncateSync(p, full - 3072);
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: header offsets \[0, 4096\) of 'model\.norm\.weight' exceed data size 1024$/);

  writeFileSync(p, new Uint8Array([1, 2, 3]));
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: file is 3 bytes, too short/);

  rawFile(p, ok, 4096, { lenOverride: 5000n });
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: header length 5000 exceeds file size \d+$/);

  rawFile(p, ok, 16, { lenOverride: 1n << 40n });
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: header length 1099511627776 exceeds the 100000000-byte limit/);

  rawFile(p, '{"a": {"dtype": "F32",', 0);
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: header is not valid JSON \(/);

  rawFile(p, '[1, 2]', 0);
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: header does not start with '\{'/);

  rawFile(p, { w: { dtype: 'Q4', shape: [2], data_offsets: [0, 1] } }, 1);
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: tensor 'w' has unsupported dtype "Q4"$/);

  rawFile(p, { w: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 10] } }, 10);
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: tensor 'w' \(F16 \[2, 3\]\) needs 12 bytes but data_offsets \[0, 10\) span 10$/);

  rawFile(p, { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4);
  assertLowbit(() => SafetensorsFile.open(p), /tensor 'w' has invalid shape \[-1\]/);

  rawFile(p, { w: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, 8);
  assertLowbit(() => SafetensorsFile.open(p), /tensor 'w' has invalid data_offsets \[8,4\]/);

  rawFile(p, { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12);
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: data of 'a' \[0, 8\) and 'b' \[4, 12\) overlap$/);

  rawFile(p, { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12);
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: data bytes \[4, 8\) before 'b' belong to no tensor$/);

  rawFile(p, { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 9);
  assertLowbit(() => SafetensorsFile.open(p), /^bad\.safetensors: data section is 9 bytes but the tensors cover 4$/);

  rawFile(p, { __metadata__: { format: 1 } }, 0);
  assertLowbit(() => SafetensorsFile.open(p), /'__metadata__' value of 'format' is not a string/);

  assertLowbit(() => SafetensorsFile.open(join(dir, 'absent.safetensors')), /^absent\.safetensors: file not found$/);

  // a valid hand-built file with unordered keys opens
  rawFile(p, { b: { dtype: 'U8', shape: [2], data_offsets: [4, 6] }, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 6);
  const f = SafetensorsFile.open(p);
  assert.deepEqual([...f.readTensorRaw('b').data], [7, 7]);
  f.close();
});

function shardTensors(): { name: string; data: Float32Array; shape: number[] }[] {
  const rng = new Rng(3);
  return Array.from({ length: 7 }, (_, i) => {
    const shape = [i + 1, 10];
    return { name: `model.layers.${i}.w`, data: rng.fillNormal(new Float32Array(10 * (i + 1))) as Float32Array, shape };
  });
}

test('sharded write/read through the index', () => {
  const dir = tmp();
  const ts = shardTensors();
  const w = new ShardedSafetensorsWriter(dir, { maxShardBytes: 300, metadata: { format: 'pt' } });
  for (const t of ts) w.add(t.name, 'F32', t.shape, t.data);
  const res = w.finish();
  // sizes 40,80,...,280 bytes: shards {40,80,120}=240, {160}, {200}, {240}, {280}
  assert.deepEqual(res.files.map((f) => f.slice(dir.length + 1)), [1, 2, 3, 4, 5].map((i) => shardName(i, 5)));
  assert.equal(shardName(1, 5), 'model-00001-of-00005.safetensors');
  const idx = JSON.parse(readFileSync(join(dir, INDEX_FILE), 'utf8'));
  assert.equal(idx.metadata.total_size, 40 * 28);
  assert.equal(idx.weight_map['model.layers.2.w'], 'model-00001-of-00005.safetensors');
  assert.equal(idx.weight_map['model.layers.3.w'], 'model-00002-of-00005.safetensors');
  assert.equal(idx.weight_map['model.layers.6.w'], 'model-00005-of-00005.safetensors');
  assert.deepEqual(readdirSync(dir).sort(), [INDEX_FILE, ...[1, 2, 3, 4, 5].map((i) => shardName(i, 5))].sort());

  const store = openTensorStore(dir);
  assert.deepEqual(store.metadata, { format: 'pt' });
  assert.deepEqual(store.names().sort(), ts.map((t) => t.name).sort());
  for (const t of ts) {
    assert.deepEqual(store.info(t.name).shape, t.shape);
    assert.deepEqual(store.readTensorF32(t.name), t.data);
  }
  assertLowbit(() => store.readTensorF32('x'), /^model\.safetensors\.index\.json: no tensor 'x' in weight_map$/);
  store.close();

  // tensor missing from its shard
  const bad = { ...idx, weight_map: { ...idx.weight_map, 'model.layers.6.w': 'model-00001-of-00005.safetensors' } };
  writeFileSync(join(dir, INDEX_FILE), JSON.stringify(bad));
  assertLowbit(() => openTensorStore(dir), /^model-00001-of-00005\.safetensors: tensor 'model\.layers\.6\.w' listed in model\.safetensors\.index\.json is missing$/);
  // missing shard
  writeFileSync(join(dir, INDEX_FILE), JSON.stringify(idx));
  unlinkSync(join(dir, shardName(4, 5)));
  assertLowbit(() => openTensorStore(dir), /^model\.safetensors\.index\.json: shard 'model-00004-of-00005\.safetensors' \(holding 'model\.layers\.5\.w'\) not found$/);
  writeFileSync(join(dir, INDEX_FILE), '{"weight_map": 3}');
  assertLowbit(() => openTensorStore(dir), /^model\.safetensors\.index\.json: has no 'weight_map' object$/);
  writeFileSync(join(dir, INDEX_FILE), '{"weight_map": {"a": "../x.safetensors"}}');
  assertLowbit(() => openTensorStore(dir), /weight_map entry for 'a' is not a shard file name/);
});

test('one shard means a plain model.safetensors; store lookup order and errors', () => {
  const dir = tmp();
  const ts = shardTensors();
  const w = new ShardedSafetensorsWriter(dir, { maxShardBytes: 1 << 20 });
  for (const t of ts) w.add(t.name, 'BF16', t.shape, t.data);
  const res = w.finish();
  assert.equal(res.index, null);
  assert.deepEqual(readdirSync(dir), ['model.safetensors']);
  const s = openTensorStore(dir);
  const got = s.readTensorF32('model.layers.4.w');
  assert.deepEqual([...got], [...ts[4].data].map((v) => bf16BitsToF32(f32ToBf16Bits(v))));
  s.close();
  // a file path opens directly
  const s2 = openTensorStore(join(dir, 'model.safetensors'));
  assert.equal(s2.names().length, 7);
  s2.close();

  const empty = tmp();
  assertLowbit(() => openTensorStore(empty), /: no model\.safetensors or model\.safetensors\.index\.json$/);
  writeFileSync(join(empty, 'pytorch_model.bin'), 'x');
  assertLowbit(() => openTensorStore(empty), /pytorch_model\.bin checkpoints are not supported/);
  assertLowbit(() => openTensorStore(join(empty, 'nothing-here')), /^nothing-here: not found$/);
  // model.safetensors wins over an index, as in transformers
  mkdirSync(join(empty, 'both'));
  copyFileSync(join(dir, 'model.safetensors'), join(empty, 'both', 'model.safetensors'));
  writeFileSync(join(empty, 'both', INDEX_FILE), '{}');
  const s3 = openTensorStore(join(empty, 'both'));
  assert.ok(s3.has('model.layers.0.w'));
  s3.close();
  assert.ok(!existsSync(join(dir, 'model.safetensors.partial')));
});

test('writer rejects mismatched data', () => {
  const dir = tmp();
  assert.throws(() => writeSafetensors(join(dir, 'x.safetensors'), [{ name: 'a', dtype: 'F32', shape: [3], data: new Float32Array(2) }]), /has 2 values for shape \[3\]/);
  assert.throws(() => writeSafetensors(join(dir, 'x.safetensors'), [{ name: 'a', dtype: 'I32' as Dtype, shape: [2], data: new Float32Array(2) }]), /needs a Int32Array/);
  assert.ok(!existsSync(join(dir, 'x.safetensors')));
  assert.deepEqual(readdirSync(dir), []);
});

test('odd tensor names and null metadata', () => {
  const dir = tmp(), p = join(dir, 'odd.safetensors');
  writeSafetensors(p, [
    { name: '__proto__', dtype: 'F32', shape: [1], data: new Float32Array([5]) },
    { name: 'ünï "quoted"', dtype: 'U8', shape: [1], data: new Uint8Array([9]) },
  ]);
  const f = SafetensorsFile.open(p);
  assert.deepEqual(f.names(), ['__proto__', 'ünï "quoted"']);
  assert.deepEqual([...f.readTensorF32('__proto__')], [5]);
  assert.deepEqual([...f.readTensorRaw('ünï "quoted"').data], [9]);
  f.close();
  rawFile(p, { __metadata__: null, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 4);
  const g = SafetensorsFile.open(p);
  assert.equal(g.metadata, null);
  g.close();
  const w = new ShardedSafetensorsWriter(join(dir, 'sh'));
  w.add('a', 'F32', [1], new Float32Array(1));
  assert.throws(() => w.add('a', 'F32', [1], new Float32Array(1)), /duplicate tensor name 'a'/);
  w.abort();
});

test('reads a file written by Python safetensors/torch 2.13, and our conversions match torch bit for bit', () => {
  const fixture = new URL('../../test/fixtures/io/torch-2.13.safetensors', import.meta.url).pathname;
  const f = SafetensorsFile.open(fixture);
  assert.deepEqual(f.metadata, { format: 'pt' });
  assert.deepEqual(f.names().sort(), ['bf16', 'codes', 'f16', 'i32', 'idx', 'mask', 'x']);
  const x = f.readTensorF32('x');
  assert.deepEqual(f.info('x').shape, [4, 8]);
  assert.equal(bitsOf(x[1]), 0x3f808000);
  assert.equal(x[0], 1);
  const tb = f.readTensorRaw('bf16').data as Uint16Array, th = f.readTensorRaw('f16').data as Uint16Array;
  for (let i = 0; i < 32; i++) {
    // torch's x.to(bfloat16) / x.to(float16) on ties, subnormals, overflow, inf
    assert.equal(f32ToBf16Bits(x[i]), tb[i], `bf16 of ${bitsOf(x[i]).toString(16)}`);
    assert.equal(f32ToF16Bits(x[i]), th[i], `f16 of ${bitsOf(x[i]).toString(16)}`);
  }
  assert.deepEqual([...f.readTensorF32('bf16')], [...tb].map(bf16BitsToF32));
  assert.deepEqual([...f.readTensorF32('f16')], [...th].map(f16BitsToF32));
  assert.deepEqual([...f.readTensorRaw('codes').data], [0, 1, 2, 3, 3, 2, 1, 0]);
  assert.deepEqual([...f.readTensorRaw('idx').data], [-1n, 1n << 40n]);
  assert.deepEqual([...f.readTensorRaw('mask').data], [1, 0]);
  assert.equal(f.readTensorRaw('mask').dtype, 'BOOL');
  assert.deepEqual([...f.readTensorRaw('i32').data], [7, -7]);
  f.close();
});
