// safetensors reader/writer (https://github.com/huggingface/safetensors format):
//   [u64 LE header length N][N bytes of JSON header, space padded][data section]
// header: { "__metadata__"?: {string: string}, name: {dtype, shape, data_offsets: [begin, end)} }
// offsets are relative to the data section, contiguous, and cover it exactly.
//
// The reader validates the whole header on open and reads one tensor at a time with positioned reads
// (chunked conversion for f16/bf16), so a multi-GB file is never read into one buffer.
// The writer streams tensor data to a side file while tensors are added, then writes the header and
// appends the data, so tensors can come from a generator one at a time.
import { closeSync, existsSync, fstatSync, openSync, readSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync, mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { endianness } from 'node:os';
import { LowbitError, fileError, fmtShape, readJsonFile } from './errors.js';
import { bf16ToF32Array, f16ToF32Array, f32ToBf16Array, f32ToF16Array } from './halfs.js';

if (endianness() !== 'LE') throw new Error('lowbit safetensors I/O assumes a little-endian host');

export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

export type RawArray =
  | Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array
  | BigUint64Array | Uint32Array | Uint8Array;

interface DtypeSpec { size: number; ctor: { new(n: number): RawArray; new(buf: ArrayBuffer, off: number, n: number): RawArray } }

const DTYPES: Record<Dtype, DtypeSpec> = {
  F64: { size: 8, ctor: Float64Array }, F32: { size: 4, ctor: Float32Array },
  F16: { size: 2, ctor: Uint16Array }, BF16: { size: 2, ctor: Uint16Array },
  I64: { size: 8, ctor: BigInt64Array }, I32: { size: 4, ctor: Int32Array },
  I16: { size: 2, ctor: Int16Array }, I8: { size: 1, ctor: Int8Array },
  U64: { size: 8, ctor: BigUint64Array }, U32: { size: 4, ctor: Uint32Array },
  U16: { size: 2, ctor: Uint16Array }, U8: { size: 1, ctor: Uint8Array }, BOOL: { size: 1, ctor: Uint8Array },
};

export function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, s);
}
export function dtypeSize(d: Dtype): number { return DTYPES[d].size; }

/** Where a tensor lives; begin/end are byte offsets into the data section (end exclusive). */
export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
  /** file holding the tensor */
  file: string;
}

export interface RawTensor {
  dtype: Dtype;
  shape: number[];
  /** F16/BF16 come back as their bit patterns in a Uint16Array; BOOL as Uint8Array */
  data: RawArray;
}

/** A read-only set of named tensors: one safetensors file or a sharded checkpoint. */
export interface TensorStore {
  /** the file or index the store was opened from */
  readonly source: string;
  /** `__metadata__` of the (first) file, or null */
  readonly metadata: Record<string, string> | null;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  readTensorF32(name: string): Float32Array;
  readTensorRaw(name: string): RawTensor;
  close(): void;
}

/** safetensors' own limit on the header (MAX_HEADER_SIZE) */
export const MAX_HEADER_BYTES = 100_000_000;
const CHUNK_BYTES = 1 << 24;

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function openForRead(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw fileError(path, 'file not found');
    if (code === 'EISDIR') throw fileError(path, 'is a directory, expected a file');
    throw fileError(path, `cannot open (${code ?? String(e)})`);
  }
}

/** Positioned read of exactly `len` bytes into `dst[off..]` (in ≤1 GiB calls). */
function readExact(fd: number, file: string, dst: Uint8Array, off: number, len: number, position: number): void {
  let done = 0;
  while (done < len) {
    const n = readSync(fd, dst, off + done, Math.min(len - done, 1 << 30), position + done);
    if (n === 0) throw fileError(file, `unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

export class SafetensorsFile implements TensorStore {
  private fd: number | null;
  private constructor(
    readonly source: string,
    fd: number,
    /** absolute file offset of the data section (8 + header length) */
    readonly dataStart: number,
    readonly dataSize: number,
    private readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string> | null,
  ) { this.fd = fd; }

  /** Open and validate a safetensors file. Throws LowbitError naming the file for any malformation. */
  static open(path: string): SafetensorsFile {
    const fd = openForRead(path);
    try {
      return SafetensorsFile.parse(path, fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  private static parse(path: string, fd: number): SafetensorsFile {
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8) throw fileError(path, `file is ${fileSize} bytes, too short for the 8-byte header length`);
    const lenBuf = new Uint8Array(8);
    readExact(fd, path, lenBuf, 0, 8, 0);
    const n64 = new DataView(lenBuf.buffer).getBigUint64(0, true);
    if (n64 < 2n) throw fileError(path, `header length ${n64} is too small for a JSON header`);
    if (n64 > BigInt(MAX_HEADER_BYTES)) throw fileError(path, `header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
    const n = Number(n64);
    if (8 + n > fileSize) throw fileError(path, `header length ${n} exceeds file size ${fileSize}`);
    const hbuf = new Uint8Array(n);
    readExact(fd, path, hbuf, 0, n, 8);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(hbuf);
    } catch {
      throw fileError(path, 'header is not valid UTF-8');
    }
    if (!text.startsWith('{')) throw fileError(path, `header does not start with '{' (not a safetensors file?)`);
    let header: unknown;
    try {
      header = JSON.parse(text);
    } catch (e) {
      throw fileError(path, `header is not valid JSON (${(e as Error).message})`);
    }
    if (!isPlainObject(header)) throw fileError(path, 'header is not a JSON object');
    const dataStart = 8 + n, dataSize = fileSize - dataStart;
    let metadata: Record<string, string> | null = null;
    const tensors = new Map<string, TensorInfo>();
    for (const [name, v] of Object.entries(header)) {
      if (name === '__metadata__') {
        if (v === null) continue;
        if (!isPlainObject(v)) throw fileError(path, `'__metadata__' is not an object`);
        for (const [k, mv] of Object.entries(v)) {
          if (typeof mv !== 'string') throw fileError(path, `'__metadata__' value of '${k}' is not a string`);
        }
        metadata = v as Record<string, string>;
        continue;
      }
      if (!isPlainObject(v)) throw fileError(path, `header entry '${name}' is not an object`);
      const { dtype, shape, data_offsets: offs } = v;
      if (!isDtype(dtype)) throw fileError(path, `tensor '${name}' has unsupported dtype ${JSON.stringify(dtype)}`);
      if (!Array.isArray(shape) || !shape.every(isCount)) throw fileError(path, `tensor '${name}' has invalid shape ${JSON.stringify(shape)}`);
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount) || offs[0] > offs[1]) {
        throw fileError(path, `tensor '${name}' has invalid data_offsets ${JSON.stringify(offs)}`);
      }
      const [begin, end] = offs as [number, number];
      const nbytes = numel(shape) * DTYPES[dtype].size;
      if (!Number.isSafeInteger(nbytes) || nbytes !== end - begin) {
        throw fileError(path, `tensor '${name}' (${dtype} ${fmtShape(shape)}) needs ${nbytes} bytes but data_offsets [${begin}, ${end}) span ${end - begin}`);
      }
      if (end > dataSize) throw fileError(path, `header offsets [${begin}, ${end}) of '${name}' exceed data size ${dataSize}`);
      tensors.set(name, { name, dtype, shape: shape.slice(), begin, end, file: path });
    }
    // contiguous, non-overlapping, covering the data section exactly (as the safetensors crate checks)
    const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
    let pos = 0, prev: TensorInfo | null = null;
    for (const t of sorted) {
      if (t.begin < pos && prev) throw fileError(path, `data of '${prev.name}' [${prev.begin}, ${prev.end}) and '${t.name}' [${t.begin}, ${t.end}) overlap`);
      if (t.begin > pos) throw fileError(path, `data bytes [${pos}, ${t.begin}) before '${t.name}' belong to no tensor`);
      pos = t.end;
      prev = t;
    }
    if (pos !== dataSize) throw fileError(path, `data section is ${dataSize} bytes but the tensors cover ${pos}`);
    return new SafetensorsFile(path, fd, dataStart, dataSize, tensors, metadata);
  }

  names(): string[] { return [...this.tensors.keys()]; }
  has(name: string): boolean { return this.tensors.has(name); }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw fileError(this.source, `no tensor '${name}'`);
    return t;
  }

  private handle(): number {
    if (this.fd === null) throw new Error(`${this.source}: read after close()`);
    return this.fd;
  }

  /** Read `len` bytes at `offset` within the data section into dst. */
  private readData(dst: Uint8Array, offset: number, len: number): void {
    readExact(this.handle(), this.source, dst, 0, len, this.dataStart + offset);
  }

  readTensorRaw(name: string): RawTensor {
    const t = this.info(name);
    const spec = DTYPES[t.dtype];
    const data = new spec.ctor(numel(t.shape));
    this.readData(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), t.begin, t.end - t.begin);
    return { dtype: t.dtype, shape: t.shape.slice(), data };
  }

  /** Any dtype as f32 (F16/BF16/F64 converted in 16 MiB chunks; integers and BOOL by value). */
  readTensorF32(name: string): Float32Array {
    const t = this.info(name);
    const n = numel(t.shape);
    const out = new Float32Array(n);
    if (t.dtype === 'F32') {
      this.readData(new Uint8Array(out.buffer), t.begin, n * 4);
      return out;
    }
    if (t.dtype === 'F16' || t.dtype === 'BF16' || t.dtype === 'F64') {
      const size = DTYPES[t.dtype].size;
      const per = Math.min(n, CHUNK_BYTES / size);
      const scratch = new Uint8Array(per * size);
      for (let i = 0; i < n; i += per) {
        const m = Math.min(per, n - i);
        this.readData(scratch, t.begin + i * size, m * size);
        if (t.dtype === 'F64') {
          const s = new Float64Array(scratch.buffer, 0, m);
          for (let j = 0; j < m; j++) out[i + j] = s[j];
        } else {
          const s = new Uint16Array(scratch.buffer, 0, m);
          if (t.dtype === 'F16') f16ToF32Array(s, out, i);
          else bf16ToF32Array(s, out, i);
        }
      }
      return out;
    }
    const raw = this.readTensorRaw(name).data;
    for (let i = 0; i < n; i++) out[i] = Number(raw[i]);
    return out;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface WriteOptions {
  /** `__metadata__`, e.g. { format: 'pt' } (transformers wants format 'pt') */
  metadata?: Record<string, string>;
}

/** Data accepted by the writers: Float32Array for F32/F16/BF16 (converted), else the dtype's own array. */
export type TensorData = RawArray;

function checkData(name: string, dtype: Dtype, shape: readonly number[], data: TensorData): void {
  if (!isDtype(dtype)) throw new Error(`safetensors writer: unknown dtype ${String(dtype)} for '${name}'`);
  if (!shape.every(isCount)) throw new Error(`safetensors writer: invalid shape ${fmtShape(shape)} for '${name}'`);
  const n = numel(shape);
  if (data.length !== n) throw new Error(`safetensors writer: '${name}' has ${data.length} values for shape ${fmtShape(shape)}`);
  const ok = (dtype === 'F32' || dtype === 'F16' || dtype === 'BF16') && data instanceof Float32Array ||
    data instanceof DTYPES[dtype].ctor;
  if (!ok) throw new Error(`safetensors writer: '${name}' as ${dtype} needs a ${dtype === 'F16' || dtype === 'BF16' ? 'Float32Array (or Uint16Array of bits)' : DTYPES[dtype].ctor.name}, got ${data.constructor.name}`);
}

function writeAll(fd: number, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, Math.min(buf.length - done, 1 << 30));
}

/** Append a tensor's bytes, converting Float32Array to F16/BF16 in 16 MiB chunks. */
function writeTensorBytes(fd: number, dtype: Dtype, data: TensorData): void {
  if ((dtype === 'F16' || dtype === 'BF16') && data instanceof Float32Array) {
    const per = CHUNK_BYTES / 2;
    const scratch = new Uint16Array(Math.min(per, data.length));
    for (let i = 0; i < data.length; i += per) {
      const m = Math.min(per, data.length - i);
      if (dtype === 'F16') f32ToF16Array(data, scratch, i, m);
      else f32ToBf16Array(data, scratch, i, m);
      writeAll(fd, new Uint8Array(scratch.buffer, 0, m * 2));
    }
  } else {
    writeAll(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
}

/** Build the padded header bytes (length prefix included). */
function encodeHeader(entries: { name: string; dtype: Dtype; shape: number[]; begin: number; end: number }[], metadata?: Record<string, string>): Uint8Array {
  // built as text so that any tensor name (even '__proto__') is written as an ordinary key
  const parts: string[] = [];
  if (metadata) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  for (const e of entries) parts.push(`${JSON.stringify(e.name)}:${JSON.stringify({ dtype: e.dtype, shape: e.shape, data_offsets: [e.begin, e.end] })}`);
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = json.length + (8 - (json.length % 8)) % 8; // HF pads with spaces so the data section is 8-aligned
  const out = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/**
 * Streaming writer: `add()` converts and appends each tensor's bytes to `<path>.data.partial`;
 * `finish()` writes header + data to `<path>.partial` and renames it to `path`.
 */
export class SafetensorsWriter {
  private entries: { name: string; dtype: Dtype; shape: number[]; begin: number; end: number }[] = [];
  private seen = new Set<string>();
  private dataFd: number | null;
  private readonly dataPath: string;
  private size = 0;

  constructor(readonly path: string, private readonly opts: WriteOptions = {}) {
    mkdirSync(dirname(path), { recursive: true });
    this.dataPath = `${path}.data.partial`;
    this.dataFd = openSync(this.dataPath, 'w');
  }

  /** bytes of tensor data added so far */
  get dataBytes(): number { return this.size; }
  get count(): number { return this.entries.length; }

  add(name: string, dtype: Dtype, shape: readonly number[], data: TensorData): void {
    if (this.dataFd === null) throw new Error(`${this.path}: add() after finish()`);
    if (name === '__metadata__' || this.seen.has(name)) throw new Error(`safetensors writer: duplicate or reserved tensor name '${name}'`);
    checkData(name, dtype, shape, data);
    const begin = this.size;
    writeTensorBytes(this.dataFd, dtype, data);
    this.size += numel(shape) * DTYPES[dtype].size;
    this.seen.add(name);
    this.entries.push({ name, dtype, shape: [...shape], begin, end: this.size });
  }

  /** Write the file; returns its total size in bytes. */
  finish(): number {
    if (this.dataFd === null) throw new Error(`${this.path}: finish() called twice`);
    closeSync(this.dataFd);
    this.dataFd = null;
    const header = encodeHeader(this.entries, this.opts.metadata);
    const partial = `${this.path}.partial`;
    const out = openSync(partial, 'w');
    try {
      writeAll(out, header);
      const src = openSync(this.dataPath, 'r');
      try {
        const buf = new Uint8Array(Math.min(CHUNK_BYTES, Math.max(this.size, 1)));
        for (let pos = 0; pos < this.size;) {
          const m = Math.min(buf.length, this.size - pos);
          readExact(src, this.dataPath, buf, 0, m, pos);
          writeAll(out, buf.subarray(0, m));
          pos += m;
        }
      } finally {
        closeSync(src);
      }
    } finally {
      closeSync(out);
    }
    unlinkSync(this.dataPath);
    renameSync(partial, this.path);
    return header.length + this.size;
  }

  /** Drop everything written so far. */
  abort(): void {
    if (this.dataFd !== null) closeSync(this.dataFd);
    this.dataFd = null;
    for (const p of [this.dataPath, `${this.path}.partial`]) if (existsSync(p)) unlinkSync(p);
  }
}

export interface TensorToWrite {
  name: string;
  dtype: Dtype;
  shape: readonly number[];
  data: TensorData;
}

function writeSafetensorsArray(path: string, tensors: TensorToWrite[], opts: WriteOptions): void {
  const seen = new Set<string>();
  const entries: { name: string; dtype: Dtype; shape: number[]; begin: number; end: number }[] = [];
  let pos = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name)) throw new Error(`safetensors writer: duplicate or reserved tensor name '${t.name}'`);
    checkData(t.name, t.dtype, t.shape, t.data);
    seen.add(t.name);
    const n = numel(t.shape) * DTYPES[t.dtype].size;
    entries.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], begin: pos, end: pos + n });
    pos += n;
  }
  mkdirSync(dirname(path), { recursive: true });
  const partial = `${path}.partial`;
  const fd = openSync(partial, 'w');
  try {
    writeAll(fd, encodeHeader(entries, opts.metadata));
    for (const t of tensors) writeTensorBytes(fd, t.dtype, t.data);
  } catch (e) {
    closeSync(fd);
    unlinkSync(partial);
    throw e;
  }
  closeSync(fd);
  renameSync(partial, path);
}

/** Write one safetensors file. An array is written in one pass (header first); any other iterable is
 *  consumed one tensor at a time through SafetensorsWriter (data staged in a side file). */
export function writeSafetensors(path: string, tensors: Iterable<TensorToWrite>, opts: WriteOptions = {}): void {
  if (Array.isArray(tensors)) {
    writeSafetensorsArray(path, tensors as TensorToWrite[], opts);
    return;
  }
  const w = new SafetensorsWriter(path, opts);
  try {
    for (const t of tensors) w.add(t.name, t.dtype, t.shape, t.data);
  } catch (e) {
    w.abort();
    throw e;
  }
  w.finish();
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export function shardName(i: number, n: number): string {
  return `model-${String(i).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

export interface ShardedWriteOptions extends WriteOptions {
  /** start a new shard when adding a tensor would push the current one past this many data bytes;
   *  a tensor larger than this gets a shard of its own. Default: no limit (one file). */
  maxShardBytes?: number;
}

export interface ShardedWriteResult {
  /** written files (shards, or the single model.safetensors), in order */
  files: string[];
  /** path of model.safetensors.index.json, or null when one file was written */
  index: string | null;
  totalSize: number;
}

/**
 * Writes `model.safetensors` or, when more than one shard is needed, `model-0000i-of-0000N.safetensors`
 * plus `model.safetensors.index.json` ({ metadata: { total_size }, weight_map }) as transformers does.
 */
export class ShardedSafetensorsWriter {
  private shards: { writer: SafetensorsWriter; names: string[] }[] = [];
  private total = 0;
  private readonly allNames = new Set<string>();
  private readonly maxBytes: number;

  constructor(readonly dir: string, private readonly opts: ShardedWriteOptions = {}) {
    this.maxBytes = opts.maxShardBytes ?? Infinity;
    if (!(this.maxBytes > 0)) throw new Error(`maxShardBytes must be positive, got ${opts.maxShardBytes}`);
    mkdirSync(dir, { recursive: true });
  }

  add(name: string, dtype: Dtype, shape: readonly number[], data: TensorData): void {
    checkData(name, dtype, shape, data);
    if (this.allNames.has(name)) throw new Error(`safetensors writer: duplicate tensor name '${name}'`);
    const nbytes = numel(shape) * DTYPES[dtype].size;
    let cur = this.shards[this.shards.length - 1];
    if (!cur || (cur.writer.count > 0 && cur.writer.dataBytes + nbytes > this.maxBytes)) {
      cur = { writer: new SafetensorsWriter(join(this.dir, `model-shard-${this.shards.length + 1}.safetensors.tmp`), this.opts), names: [] };
      this.shards.push(cur);
    }
    this.allNames.add(name);
    cur.writer.add(name, dtype, shape, data);
    cur.names.push(name);
    this.total += nbytes;
  }

  finish(): ShardedWriteResult {
    if (this.shards.length === 0) this.shards.push({ writer: new SafetensorsWriter(join(this.dir, 'model-shard-1.safetensors.tmp'), this.opts), names: [] });
    const n = this.shards.length;
    const files: string[] = [];
    const weightMap: Record<string, string> = {};
    this.shards.forEach((s, i) => {
      s.writer.finish();
      const fname = n === 1 ? SINGLE_FILE : shardName(i + 1, n);
      renameSync(s.writer.path, join(this.dir, fname));
      files.push(join(this.dir, fname));
      for (const name of s.names) weightMap[name] = fname;
    });
    let index: string | null = null;
    if (n > 1) {
      index = join(this.dir, INDEX_FILE);
      const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
      writeFileSync(index, JSON.stringify({ metadata: { total_size: this.total }, weight_map: sorted }, null, 2) + '\n');
    }
    return { files, index, totalSize: this.total };
  }

  abort(): void {
    for (const s of this.shards) s.writer.abort();
  }
}

// ---------------------------------------------------------------------------------------------
// Opening a checkpoint as one store

class ShardedStore implements TensorStore {
  constructor(
    readonly source: string,
    private readonly files: SafetensorsFile[],
    private readonly where: Map<string, SafetensorsFile>,
  ) {}
  get metadata(): Record<string, string> | null { return this.files[0]?.metadata ?? null; }
  names(): string[] { return [...this.where.keys()]; }
  has(name: string): boolean { return this.where.has(name); }
  private file(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw fileError(this.source, `no tensor '${name}' in weight_map`);
    return f;
  }
  info(name: string): TensorInfo { return this.file(name).info(name); }
  readTensorF32(name: string): Float32Array { return this.file(name).readTensorF32(name); }
  readTensorRaw(name: string): RawTensor { return this.file(name).readTensorRaw(name); }
  close(): void { for (const f of this.files) f.close(); }
}

/** Open a sharded checkpoint from its index; every shard is opened and validated up front. */
export function openShardedIndex(indexPath: string): TensorStore {
  const idx = readJsonFile(indexPath);
  if (!isPlainObject(idx) || !isPlainObject(idx.weight_map)) throw fileError(indexPath, `has no 'weight_map' object`);
  const dir = dirname(indexPath);
  const opened = new Map<string, SafetensorsFile>();
  const where = new Map<string, SafetensorsFile>();
  try {
    for (const [name, shard] of Object.entries(idx.weight_map)) {
      if (typeof shard !== 'string' || shard === '' || /[\\/]/.test(shard) || shard === '..' || shard === '.') {
        throw fileError(indexPath, `weight_map entry for '${name}' is not a shard file name: ${JSON.stringify(shard)}`);
      }
      let f = opened.get(shard);
      if (!f) {
        const p = join(dir, shard);
        if (!existsSync(p)) throw fileError(indexPath, `shard '${shard}' (holding '${name}') not found`);
        f = SafetensorsFile.open(p);
        opened.set(shard, f);
      }
      if (!f.has(name)) throw fileError(f.source, `tensor '${name}' listed in ${basename(indexPath)} is missing`);
      where.set(name, f);
    }
  } catch (e) {
    for (const f of opened.values()) f.close();
    throw e;
  }
  return new ShardedStore(indexPath, [...opened.values()], where);
}

/**
 * Open a checkpoint: a `.safetensors` file, an index json, or a directory holding `model.safetensors`
 * (preferred, as transformers does) or `model.safetensors.index.json`.
 */
export function openTensorStore(path: string): TensorStore {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw fileError(path, 'not found');
  }
  if (!isDir) return path.endsWith('.json') ? openShardedIndex(path) : SafetensorsFile.open(path);
  const single = join(path, SINGLE_FILE), index = join(path, INDEX_FILE);
  if (existsSync(single)) return SafetensorsFile.open(single);
  if (existsSync(index)) return openShardedIndex(index);
  const hint = existsSync(join(path, 'pytorch_model.bin')) || existsSync(join(path, 'pytorch_model.bin.index.json'))
    ? ' (pytorch_model.bin checkpoints are not supported; convert to safetensors)' : '';
  throw fileError(path, `no ${SINGLE_FILE} or ${INDEX_FILE}${hint}`);
}

export { LowbitError };
