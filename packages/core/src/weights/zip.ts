/**
 * A minimal zip archive reader for PyTorch's zip checkpoints (torch.save since
 * 1.6): central directory (including zip64 records, which PyTorch's writer
 * may emit), STORED and DEFLATE entries, CRC-32 verification.
 *
 * Works on Uint8Array only (no node: imports) so the browser build can use it.
 */
import { ExtdError } from '../utils/errors.js';
import { inflateRaw, isInflateError } from './inflate.js';

export interface ZipEntry {
  name: string;
  /** 0 = STORED, 8 = DEFLATE. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
  flags: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

/** True when the bytes start like a zip archive (a local file header). */
export function looksLikeZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`64-bit value ${v} too large`);
  return Number(v);
}

/** The archive's entries, from its central directory. */
export function readZipDirectory(bytes: Uint8Array, source = 'zip'): ZipEntry[] {
  const err = (msg: string): never => {
    throw new ExtdError(`${source}: ${msg}`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The end-of-central-directory record is the last 22 bytes plus a comment of up to 64 KiB.
  let eocd = -1;
  for (let p = bytes.length - 22; p >= Math.max(0, bytes.length - 22 - 0xffff); p--) {
    if (view.getUint32(p, true) === SIG_EOCD) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0) err('zip end-of-central-directory record not found (truncated or not a zip archive)');

  let count = view.getUint16(eocd + 10, true);
  let cdSize = view.getUint32(eocd + 12, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || view.getUint32(loc, true) !== SIG_ZIP64_LOCATOR) err('zip64 end-of-central-directory locator missing');
    const z = u64(view, loc + 8);
    if (z + 56 > bytes.length || view.getUint32(z, true) !== SIG_ZIP64_EOCD) err(`zip64 end-of-central-directory record not found at offset ${z}`);
    count = u64(view, z + 32);
    cdSize = u64(view, z + 40);
    cdOffset = u64(view, z + 48);
  }
  if (cdOffset + cdSize > bytes.length)
    err(`zip central directory [${cdOffset}, ${cdOffset + cdSize}) lies beyond the end of the file (${bytes.length} bytes)`);

  const decoder = new TextDecoder();
  const entries: ZipEntry[] = [];
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > bytes.length || view.getUint32(p, true) !== SIG_CENTRAL) err(`zip central directory entry ${i} at offset ${p} is corrupt`);
    const flags = view.getUint16(p + 8, true);
    const method = view.getUint16(p + 10, true);
    const crc32 = view.getUint32(p + 16, true);
    let compressedSize = view.getUint32(p + 20, true);
    let size = view.getUint32(p + 24, true);
    const nameLen = view.getUint16(p + 28, true);
    const extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    let localHeaderOffset = view.getUint32(p + 42, true);
    if (p + 46 + nameLen + extraLen > bytes.length) err(`zip central directory entry ${i} runs past the end of the file`);
    const name = decoder.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // Zip64 extended information: 64-bit values for exactly the fields saturated at 0xffffffff, in this order.
    for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen; ) {
      const id = view.getUint16(e, true);
      const len = view.getUint16(e + 2, true);
      if (id === 0x0001) {
        let q = e + 4;
        if (size === 0xffffffff) {
          size = u64(view, q);
          q += 8;
        }
        if (compressedSize === 0xffffffff) {
          compressedSize = u64(view, q);
          q += 8;
        }
        if (localHeaderOffset === 0xffffffff) {
          localHeaderOffset = u64(view, q);
          q += 8;
        }
      }
      e += 4 + len;
    }
    entries.push({ name, method, compressedSize, size, crc32, localHeaderOffset, flags });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** An entry's uncompressed content (a view into `bytes` for STORED entries), CRC-checked. */
export function readZipEntry(bytes: Uint8Array, entry: ZipEntry, source = 'zip'): Uint8Array {
  const err = (msg: string): never => {
    throw new ExtdError(`${source}: zip entry '${entry.name}' ${msg}`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = entry.localHeaderOffset;
  if (h + 30 > bytes.length || view.getUint32(h, true) !== SIG_LOCAL) err(`has no local header at offset ${h}`);
  if (entry.flags & 1) err('is encrypted');
  // The local header's name/extra lengths may differ from the central directory's (PyTorch pads here for alignment).
  const start = h + 30 + view.getUint16(h + 26, true) + view.getUint16(h + 28, true);
  const end = start + entry.compressedSize;
  if (end > bytes.length) err(`needs bytes [${start}, ${end}) but the file ends at ${bytes.length} (truncated)`);
  const raw = bytes.subarray(start, end);
  let data: Uint8Array;
  if (entry.method === 0) {
    if (entry.compressedSize !== entry.size) err(`is STORED but records ${entry.compressedSize} stored and ${entry.size} uncompressed bytes`);
    data = raw;
  } else if (entry.method === 8) {
    // DEFLATE cannot expand more than 1032:1; a larger recorded size is a lie meant to make us allocate it.
    if (entry.size > entry.compressedSize * 1032 + 1024)
      err(`records ${entry.size} uncompressed bytes from ${entry.compressedSize} compressed, more than DEFLATE can produce`);
    try {
      data = inflateRaw(raw, entry.size);
    } catch (e) {
      if (isInflateError(e)) err(`cannot be decompressed: ${e.message}`);
      throw e;
    }
  } else {
    err(`uses compression method ${entry.method} (supported: 0 stored, 8 deflate)`);
  }
  const crc = crc32(data!);
  if (crc !== entry.crc32) err(`fails its CRC-32 check (${hex(crc)}, archive records ${hex(entry.crc32)}): the file is corrupt`);
  return data!;
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

let CRC_TABLE: Uint32Array | undefined;

/** CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as used by zip. */
export function crc32(bytes: Uint8Array): number {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
