// Packing of b-bit codes (b = 1..8) — the one layout used by every lowbit packed format.
//
// Layout: the codes form a little-endian bit stream. Code i occupies stream bits [i·b, (i+1)·b), its
// least-significant bit first; stream bit k lives in byte ⌊k/8⌋ at bit position k mod 8. So for b=4 the
// first code is in the LOW nibble of byte 0 (the opposite of bitsandbytes, which puts it in the high nibble),
// for b=2 byte 0 holds codes 0..3 from the low bits up, and for b=3 codes straddle byte boundaries
// (code 2 takes bits 6-7 of byte 0 and bit 0 of byte 1). The byte count is ⌈n·b/8⌉; unused trailing bits are 0.
// Read as little-endian 32-bit words (packCodes32) the stream is the same, so word w holds stream bits
// [32w, 32w+32) — GPTQ's 3-bit word layout is this stream with one tensor's codes ordered along the input dim.
// Codes are always stored in row-major order of W[out, in] (element index = o·in + i).

export function packedBytes(n: number, bits: number): number { return Math.ceil((n * bits) / 8); }

function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new Error(`pack: bits must be 1..8, got ${bits}`);
}

export function packCodes(codes: ArrayLike<number>, bits: number): Uint8Array {
  checkBits(bits);
  const n = codes.length;
  const out = new Uint8Array(packedBytes(n, bits));
  const max = (1 << bits) - 1;
  if (bits === 8) { for (let i = 0; i < n; i++) out[i] = codes[i]; return out; }
  let acc = 0, nacc = 0, p = 0; // bit accumulator (at most 15 bits used)
  for (let i = 0; i < n; i++) {
    const c = codes[i];
    if (c < 0 || c > max || !Number.isInteger(c)) throw new Error(`pack: code ${c} at ${i} does not fit in ${bits} bits`);
    acc |= c << nacc; nacc += bits;
    while (nacc >= 8) { out[p++] = acc & 0xff; acc >>>= 8; nacc -= 8; }
  }
  if (nacc > 0) out[p++] = acc & 0xff;
  return out;
}

export function unpackCodes(packed: Uint8Array, bits: number, n: number, out?: Uint8Array): Uint8Array {
  checkBits(bits);
  if (packed.length < packedBytes(n, bits)) {
    throw new Error(`unpack: ${packed.length} bytes hold fewer than ${n} codes of ${bits} bits`);
  }
  const o = out ?? new Uint8Array(n);
  if (bits === 8) { o.set(packed.subarray(0, n)); return o; }
  const mask = (1 << bits) - 1;
  if (bits === 4) {
    const h = n >> 1;
    for (let j = 0; j < h; j++) { const v = packed[j]; o[2 * j] = v & 15; o[2 * j + 1] = v >> 4; }
    if (n & 1) o[n - 1] = packed[h] & 15;
    return o;
  }
  if (bits === 2) {
    const h = n >> 2;
    for (let j = 0; j < h; j++) {
      const v = packed[j], k = 4 * j;
      o[k] = v & 3; o[k + 1] = (v >> 2) & 3; o[k + 2] = (v >> 4) & 3; o[k + 3] = v >> 6;
    }
    for (let i = 4 * h; i < n; i++) o[i] = (packed[i >> 2] >> (2 * (i & 3))) & 3;
    return o;
  }
  let acc = 0, nacc = 0, p = 0;
  for (let i = 0; i < n; i++) {
    while (nacc < bits) { acc |= packed[p++] << nacc; nacc += 8; }
    o[i] = acc & mask; acc >>>= bits; nacc -= bits;
  }
  return o;
}

/** The same bit stream as little-endian 32-bit words (⌈n·b/32⌉ words). */
export function packCodes32(codes: ArrayLike<number>, bits: number): Uint32Array {
  const bytes = packCodes(codes, bits);
  const words = new Uint32Array(Math.ceil((codes.length * bits) / 32));
  for (let i = 0; i < bytes.length; i++) words[i >> 2] |= bytes[i] << (8 * (i & 3));
  return words;
}

export function unpackCodes32(words: Uint32Array, bits: number, n: number): Uint8Array {
  const bytes = new Uint8Array(words.length * 4);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (words[i >> 2] >>> (8 * (i & 3))) & 0xff;
  return unpackCodes(bytes, bits, n);
}
