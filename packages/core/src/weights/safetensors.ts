/**
 * safetensors reader and writer (https://github.com/huggingface/safetensors).
 *
 * Layout: an 8-byte little-endian header length N, then N bytes of UTF-8 JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": {..} }`,
 * then the data section; offsets are relative to the data section's start.
 *
 * The reader is strict in the same ways as the reference implementation:
 * tensors must tile the data section exactly (no gaps, no overlaps, no trailing
 * bytes), because a file that does not is either corrupt or crafted, and
 * accepting it silently would hide the problem until inference looks wrong.
 *
 * Works on Uint8Array only (no node: imports) so the browser build can use it;
 * file access is in files-node.ts.
 */
import { ExtdError } from '../utils/errors.js';
import { formatShape, numel, type DType, type Tensor } from '../utils/tensor.js';
import { ITEM_SIZE, bfloat16BytesToFloat32, bytesOfTypedArray, float16BytesToFloat32, typedArrayFromBytes } from './bytes.js';

/** What readSafetensors returns. */
export interface SafetensorsContent {
  /** Tensors in the order their data appears in the file. */
  tensors: Map<string, Tensor>;
  /** The `__metadata__` string map ({} when absent). */
  metadata: Record<string, string>;
}

/** safetensors dtype name -> ours, for the dtypes stored as they are. */
const FROM_ST: Record<string, DType> = {
  F32: 'float32',
  F64: 'float64',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};

/** Half-precision dtypes are widened to float32 on read (exact), since we have no 16-bit float type. */
const WIDENED: Record<string, (b: Uint8Array) => Float32Array> = {
  F16: float16BytesToFloat32,
  BF16: bfloat16BytesToFloat32,
};

const TO_ST: Record<DType, string> = Object.fromEntries(Object.entries(FROM_ST).map(([st, ours]) => [ours, st])) as Record<DType, string>;

const ALLOWED_DTYPES = [...Object.keys(FROM_ST), ...Object.keys(WIDENED)].join(', ');

/** Same cap as the reference implementation: a larger header is a corrupt or hostile file. */
const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

/**
 * Parse the bytes of a .safetensors file; F16 and BF16 tensors are widened to
 * float32. `source` names the input in error messages.
 * @throws ExtdError for a malformed header, an unsupported dtype, or tensors that do not tile the data section exactly.
 */
export function readSafetensors(bytes: Uint8Array, source = 'safetensors'): SafetensorsContent {
  const err = (msg: string): never => {
    throw new ExtdError(`${source}: ${msg}`);
  };
  if (bytes.byteLength < 8) {
    err(`file is ${bytes.byteLength} bytes, too short for a safetensors header (needs at least 8)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(bytes.byteLength - 8)) {
    err(`header length ${headerLen} exceeds the ${bytes.byteLength - 8} bytes after the length field (truncated file, or not safetensors)`);
  }
  const n = Number(headerLen);
  if (n > MAX_HEADER_BYTES) err(`header length ${n} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  if (n < 2) err(`header length ${n} is too small for a JSON object`);

  let header: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
    header = JSON.parse(text);
  } catch (e) {
    err(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    err(`header must be a JSON object, got ${Array.isArray(header) ? 'an array' : typeof header}`);
  }

  const dataStart = 8 + n;
  const dataLen = bytes.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Array<{ name: string; st: string; shape: number[]; begin: number; end: number }> = [];

  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) err(`${METADATA_KEY} must be an object of strings`);
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') err(`${METADATA_KEY} entry '${k}' is ${JSON.stringify(v)}, must be a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const t = `tensor '${name}'`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) err(`${t} entry must be an object with dtype, shape, data_offsets`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(Object.hasOwn(FROM_ST, dtype) || Object.hasOwn(WIDENED, dtype))) {
      err(`${t} has dtype ${JSON.stringify(dtype)} (supported: ${ALLOWED_DTYPES})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      err(`${t} has shape ${JSON.stringify(shape)}, expected an array of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      err(`${t} has data_offsets ${JSON.stringify(offsets)}, expected [begin, end] non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) err(`${t} data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataLen) err(`${t} data_offsets [${begin}, ${end}] exceed the data section (${dataLen} bytes)`);
    const st = dtype as string;
    const ours = Object.hasOwn(FROM_ST, st) ? FROM_ST[st] : undefined;
    const itemSize = ours ? ITEM_SIZE[ours] : 2; // else a WIDENED 16-bit float
    const expected = numel(shape as number[]) * itemSize;
    if (end - begin !== expected) {
      err(`${t} has ${end - begin} bytes (data_offsets [${begin}, ${end}]) but dtype ${st} shape ${formatShape(shape as number[])} needs ${expected}`);
    }
    entries.push({ name, st, shape: [...(shape as number[])], begin, end });
  }

  // Tensors must tile the data section: sorted by offset, each starts where the previous ended.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev = '';
  for (const e of entries) {
    if (e.begin < pos) err(`tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] overlap tensor '${prev}' (which ends at ${pos})`);
    if (e.begin > pos) err(`tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] leave a gap of ${e.begin - pos} bytes after offset ${pos}`);
    pos = e.end;
    prev = e.name;
  }
  if (pos !== dataLen) err(`data section is ${dataLen} bytes but the tensors cover only ${pos} (${dataLen - pos} trailing bytes)`);

  const tensors = new Map<string, Tensor>();
  for (const e of entries) {
    const raw = bytes.subarray(dataStart + e.begin, dataStart + e.end);
    const widen = Object.hasOwn(WIDENED, e.st) ? WIDENED[e.st] : undefined;
    if (widen) {
      tensors.set(e.name, { dtype: 'float32', shape: e.shape, data: widen(raw) });
    } else {
      const dtype = FROM_ST[e.st]!; // the header loop accepted only FROM_ST and WIDENED dtypes
      tensors.set(e.name, { dtype, shape: e.shape, data: typedArrayFromBytes(dtype, raw) });
    }
  }
  return { tensors, metadata };
}

/**
 * Serialise tensors to safetensors bytes. Data is laid out in the given order,
 * except that wider dtypes come first (stable), so every tensor starts at a
 * multiple of its item size and zero-copy readers can view it in place; the
 * header is padded with spaces to a multiple of 8 so the data section starts
 * 8-aligned, as the format requires.
 */
export function writeSafetensors(tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): Uint8Array {
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [name, t] of list) {
    if (name === METADATA_KEY) throw new ExtdError(`tensor name '${METADATA_KEY}' is reserved by safetensors`);
    if (!Object.hasOwn(TO_ST, t.dtype)) throw new ExtdError(`tensor '${name}' has dtype ${String(t.dtype)} (supported: ${Object.keys(TO_ST).join(', ')})`);
    const n = numel(t.shape);
    if (t.data.length !== n) {
      throw new ExtdError(`tensor '${name}' has ${t.data.length} elements but shape ${formatShape(t.shape)} needs ${n}`);
    }
  }
  const ordered = list
    .map((entry, i) => ({ entry, i }))
    .sort((a, b) => ITEM_SIZE[b.entry[1].dtype] - ITEM_SIZE[a.entry[1].dtype] || a.i - b.i)
    .map((x) => x.entry);

  // Null prototype: a tensor named '__proto__' must become a key, not a prototype.
  const header: Record<string, unknown> = Object.create(null);
  let offset = 0;
  for (const [name, t] of ordered) {
    const len = t.data.byteLength;
    header[name] = { dtype: TO_ST[t.dtype], shape: t.shape, data_offsets: [offset, offset + len] };
    offset += len;
  }
  // Metadata last, as the reference files have it (JSON key order is otherwise irrelevant).
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new ExtdError(`metadata '${k}' is ${typeof v}, safetensors metadata values must be strings`);
    }
    header[METADATA_KEY] = metadata;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  let pos = 8 + padded;
  for (const [, t] of ordered) {
    out.set(bytesOfTypedArray(t.data), pos);
    pos += t.data.byteLength;
  }
  return out;
}
