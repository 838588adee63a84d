/**
 * A small synchronous DEFLATE decoder (RFC 1951), for the rare zip-format
 * PyTorch checkpoint whose entries are compressed (torch.save writes them
 * STORED). Written from the RFC; it decodes one symbol bit by bit, which is
 * slow (tens of MB/s) but simple, and weights files are small.
 *
 * Synchronous and without node: imports, so readPth stays a plain function
 * usable in the browser (DecompressionStream would force it to be async).
 */

// RFC 1951 section 3.2.5: base values and extra bits of length / distance codes.
const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
// Section 3.2.7: the order in which code-length code lengths are sent.
const CLEN_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** Canonical Huffman code: number of codes of each length and the symbols sorted by code. */
interface Huffman {
  counts: Uint16Array;
  symbols: Uint16Array;
}

function buildHuffman(lengths: ArrayLike<number>): Huffman {
  const counts = new Uint16Array(16);
  // Every length is below 16: code-length codes send 3 bits, literal/distance
  // lengths are code-length symbols < 16, and the fixed tables use 5 to 9.
  for (let i = 0; i < lengths.length; i++) counts[lengths[i]!]!++;
  counts[0] = 0;
  const offsets = new Uint16Array(16);
  for (let len = 1; len < 16; len++) offsets[len] = offsets[len - 1]! + counts[len - 1]!;
  const symbols = new Uint16Array(lengths.length);
  for (let i = 0; i < lengths.length; i++) if (lengths[i]) symbols[offsets[lengths[i]!]!++] = i;
  return { counts, symbols };
}

const FIXED_LITLEN = buildHuffman(Array.from({ length: 288 }, (_, i) => (i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8)));
const FIXED_DIST = buildHuffman(new Array(30).fill(5));

class InflateError extends Error {}

/**
 * Decompress a zlib stream (RFC 1950: a 2-byte header, raw DEFLATE, the
 * Adler-32 of the output big-endian), as MATLAB's compressed elements hold.
 * @throws Error when the header is not zlib DEFLATE, a preset dictionary is
 *   required, the data do not inflate, or the checksum does not match.
 */
export function inflateZlib(input: Uint8Array): Uint8Array {
  if (input.length < 6) throw new Error(`zlib stream of ${input.length} bytes is too short`);
  const cmf = input[0]!,
    flg = input[1]!;
  if ((cmf & 0x0f) !== 8 || (cmf * 256 + flg) % 31 !== 0) throw new Error('not a zlib DEFLATE stream (bad header)');
  if (flg & 0x20) throw new Error('zlib stream needs a preset dictionary');
  const out = inflateRaw(input.subarray(2));
  let a = 1,
    b = 0;
  for (let k = 0; k < out.length; ) {
    const end = Math.min(out.length, k + 3800);
    for (; k < end; k++) {
      a += out[k]!;
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  const n = input.length;
  const stored = ((input[n - 4]! << 24) | (input[n - 3]! << 16) | (input[n - 2]! << 8) | input[n - 1]!) >>> 0;
  if (((b << 16) | a) >>> 0 !== stored) throw new Error('zlib checksum mismatch (corrupt data)');
  return out;
}

/**
 * Decompress raw DEFLATE data (no zlib/gzip wrapper). `expectedSize`, when
 * known (zip entries record it), sizes the output and bounds it: a stream that
 * decodes to more is rejected rather than allowed to grow without limit.
 */
export function inflateRaw(input: Uint8Array, expectedSize?: number): Uint8Array {
  let pos = 0; // next input byte
  let bitBuf = 0;
  let bitCount = 0;
  let out = new Uint8Array(expectedSize ?? Math.max(1024, input.length * 4));
  let outLen = 0;

  const bits = (n: number): number => {
    while (bitCount < n) {
      if (pos >= input.length) throw new InflateError('compressed data ends early');
      bitBuf |= input[pos++]! << bitCount;
      bitCount += 8;
    }
    const v = bitBuf & ((1 << n) - 1);
    bitBuf >>>= n;
    bitCount -= n;
    return v;
  };

  // Huffman codes are sent most-significant bit first, one bit at a time.
  const decode = (h: Huffman): number => {
    let code = 0;
    let first = 0;
    let index = 0;
    for (let len = 1; len < 16; len++) {
      code |= bits(1);
      const count = h.counts[len]!;
      // index + code - first < (codes of length <= len) <= symbols.length.
      if (code - first < count) return h.symbols[index + code - first]!;
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    throw new InflateError('invalid Huffman code');
  };

  const ensure = (extra: number): void => {
    if (outLen + extra <= out.length) return;
    if (expectedSize !== undefined) throw new InflateError(`data decompresses to more than the recorded ${expectedSize} bytes`);
    const grown = new Uint8Array(Math.max(out.length * 2, outLen + extra));
    grown.set(out.subarray(0, outLen));
    out = grown;
  };

  let final = 0;
  while (!final) {
    final = bits(1);
    const type = bits(2);
    if (type === 0) {
      // Stored block: skip to a byte boundary, then LEN and its one's complement.
      bitBuf = 0;
      bitCount = 0;
      if (pos + 4 > input.length) throw new InflateError('compressed data ends early');
      const len = input[pos]! | (input[pos + 1]! << 8);
      const nlen = input[pos + 2]! | (input[pos + 3]! << 8);
      if ((len ^ 0xffff) !== nlen) throw new InflateError('stored block length check failed');
      pos += 4;
      if (pos + len > input.length) throw new InflateError('compressed data ends early');
      ensure(len);
      out.set(input.subarray(pos, pos + len), outLen);
      outLen += len;
      pos += len;
      continue;
    }
    let litlen: Huffman;
    let dist: Huffman;
    if (type === 1) {
      litlen = FIXED_LITLEN;
      dist = FIXED_DIST;
    } else if (type === 2) {
      const hlit = bits(5) + 257;
      const hdist = bits(5) + 1;
      const hclen = bits(4) + 4;
      const clen = new Uint8Array(19);
      for (let i = 0; i < hclen; i++) clen[CLEN_ORDER[i]!] = bits(3); // hclen <= 19 = CLEN_ORDER.length
      const clenCode = buildHuffman(clen);
      const lengths = new Uint8Array(hlit + hdist);
      for (let i = 0; i < hlit + hdist; ) {
        const sym = decode(clenCode);
        if (sym < 16) {
          lengths[i++] = sym;
          continue;
        }
        let repeat: number;
        let value = 0;
        if (sym === 16) {
          if (i === 0) throw new InflateError('length repeat with no previous length');
          value = lengths[i - 1]!;
          repeat = 3 + bits(2);
        } else if (sym === 17) repeat = 3 + bits(3);
        else repeat = 11 + bits(7);
        if (i + repeat > hlit + hdist) throw new InflateError('code lengths overflow');
        lengths.fill(value, i, i + repeat);
        i += repeat;
      }
      litlen = buildHuffman(lengths.subarray(0, hlit));
      dist = buildHuffman(lengths.subarray(hlit));
    } else {
      throw new InflateError('invalid block type 3');
    }
    for (;;) {
      const sym = decode(litlen);
      if (sym < 256) {
        ensure(1);
        out[outLen++] = sym;
      } else if (sym === 256) {
        break;
      } else {
        const li = sym - 257;
        if (li >= LENGTH_BASE.length) throw new InflateError(`invalid length symbol ${sym}`);
        const len = LENGTH_BASE[li]! + bits(LENGTH_EXTRA[li]!);
        const di = decode(dist);
        if (di >= DIST_BASE.length) throw new InflateError(`invalid distance symbol ${di}`);
        const d = DIST_BASE[di]! + bits(DIST_EXTRA[di]!);
        if (d > outLen) throw new InflateError(`distance ${d} reaches before the start of the data`);
        ensure(len);
        // Byte by byte: the source may overlap the bytes being written (run-length copies).
        for (let k = 0; k < len; k++, outLen++) out[outLen] = out[outLen - d]!;
      }
    }
  }
  if (expectedSize !== undefined && outLen !== expectedSize) {
    throw new InflateError(`data decompresses to ${outLen} bytes, the archive records ${expectedSize}`);
  }
  return out.subarray(0, outLen);
}

export function isInflateError(e: unknown): e is Error {
  return e instanceof InflateError;
}
