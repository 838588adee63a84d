import { test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, crc32 as zlibCrc32, deflateRawSync } from 'node:zlib';
import { inflateRaw } from '../src/weights/inflate.js';
import { crc32 } from '../src/weights/zip.js';

/** Deterministic pseudo-random bytes with a skewed distribution, so Huffman tables are non-trivial. */
function sample(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    // Runs and repeats every so often exercise length/distance pairs, including overlapping copies.
    out[i] = i > 300 && s % 7 === 0 ? out[i - 1 - (s % 300)]! : (s >>> 24) % 40;
  }
  return out;
}

test('inflateRaw matches node:zlib for stored, fixed, dynamic and Huffman-only streams', () => {
  const inputs = [new Uint8Array(0), Uint8Array.from([42]), new Uint8Array(70000).fill(7), sample(200000, 1), sample(5000, 2)];
  const strategies = [constants.Z_DEFAULT_STRATEGY, constants.Z_FIXED, constants.Z_HUFFMAN_ONLY, constants.Z_RLE];
  for (const data of inputs) {
    for (const level of [0, 1, 6, 9]) {
      for (const strategy of strategies) {
        const packed = new Uint8Array(deflateRawSync(data, { level, strategy }));
        const what = `n=${data.length} level=${level} strategy=${strategy}`;
        assert.ok(Buffer.from(inflateRaw(packed, data.length)).equals(Buffer.from(data)), what);
        assert.ok(Buffer.from(inflateRaw(packed)).equals(Buffer.from(data)), `${what} (size unknown)`);
      }
    }
  }
});

test('inflateRaw rejects damaged streams and size mismatches', () => {
  const data = sample(20000, 3);
  const packed = new Uint8Array(deflateRawSync(data));
  assert.throws(() => inflateRaw(packed.subarray(0, packed.length >> 1), data.length), /ends early/);
  assert.throws(() => inflateRaw(packed, data.length - 1), /more than the recorded/);
  assert.throws(() => inflateRaw(packed, data.length + 1), /decompresses to 20000 bytes, the archive records 20001/);
  assert.throws(() => inflateRaw(Uint8Array.from([0x07])), /invalid block type 3/);
});

test('crc32 matches node:zlib', () => {
  for (const data of [new Uint8Array(0), new TextEncoder().encode('123456789'), sample(10000, 4)]) {
    assert.equal(crc32(data), zlibCrc32(data) >>> 0);
  }
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926); // the standard CRC-32 check value
});
