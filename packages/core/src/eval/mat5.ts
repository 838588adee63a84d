/**
 * A small reader for MATLAB level 5 MAT-files: enough for the WIDER FACE
 * evaluation kit (ground truth as nested cell arrays of numeric matrices and
 * strings, baseline precision-recall curves), with compressed elements.
 *
 * Why our own: the one maintained npm reader (mat-for-js) is GPL-licensed,
 * which this MIT package cannot depend on, and the format subset needed here
 * is small. Sparse and complex arrays and MATLAB objects are refused with a
 * clear error rather than misread. MATLAB v7.3 files are HDF5 containers and
 * are not handled here (see baselines.ts).
 *
 * Format reference: "MAT-File Format" (MathWorks), version 5 section. Arrays
 * are stored column-major; we keep that order and expose `dims` so callers
 * index `data[i + rows * j]`.
 */
import { inflateZlib } from '../weights/inflate.js';
import { ExtdError } from '../utils/errors.js';

export type MatClass =
  | 'cell'
  | 'struct'
  | 'object'
  | 'char'
  | 'sparse'
  | 'double'
  | 'single'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64';

/** A numeric (or logical) array; values converted to float64, column-major. */
export interface MatNumeric {
  kind: 'numeric';
  /** Storage class MATLAB reports (the values themselves are always float64 here). */
  class: MatClass;
  logical: boolean;
  dims: number[];
  data: Float64Array;
}
/** A char array; `value` is the characters in column-major order (a row string for 1 x N). */
export interface MatChar {
  kind: 'char';
  dims: number[];
  value: string;
}
export interface MatCell {
  kind: 'cell';
  dims: number[];
  /** Column-major. */
  cells: MatValue[];
}
export interface MatStruct {
  kind: 'struct';
  dims: number[];
  fieldNames: string[];
  /** One record per element, column-major. */
  elements: Array<Record<string, MatValue>>;
}
export type MatValue = MatNumeric | MatChar | MatCell | MatStruct;

/** Top-level variables by name. */
export type MatFile = Map<string, MatValue>;

const HEADER_BYTES = 128;

// Data element types (miXXX).
const MI = {
  INT8: 1,
  UINT8: 2,
  INT16: 3,
  UINT16: 4,
  INT32: 5,
  UINT32: 6,
  SINGLE: 7,
  DOUBLE: 9,
  INT64: 12,
  UINT64: 13,
  MATRIX: 14,
  COMPRESSED: 15,
  UTF8: 16,
  UTF16: 17,
  UTF32: 18,
} as const;

// Array classes (mxXXX_CLASS), indexed by their code.
const MX_CLASS: Record<number, MatClass> = {
  1: 'cell',
  2: 'struct',
  3: 'object',
  4: 'char',
  5: 'sparse',
  6: 'double',
  7: 'single',
  8: 'int8',
  9: 'uint8',
  10: 'int16',
  11: 'uint16',
  12: 'int32',
  13: 'uint32',
  14: 'int64',
  15: 'uint64',
};

/** True when the bytes start like a v5 MAT-file (text header, version 0x0100). v7.3 files say 0x0200. */
export function isMat5(bytes: Uint8Array): boolean {
  if (bytes.length < HEADER_BYTES) return false;
  const v = matVersion(bytes);
  return v === 0x0100;
}

/** The header's version field (0x0100 for v5 layout, 0x0200 for v7.3/HDF5), or undefined when unreadable. */
export function matVersion(bytes: Uint8Array): number | undefined {
  if (bytes.length < HEADER_BYTES) return undefined;
  const e0 = bytes[126],
    e1 = bytes[127];
  const little = e0 === 0x49 && e1 === 0x4d; // 'IM' as read on a little-endian writer
  const big = e0 === 0x4d && e1 === 0x49;
  if (!little && !big) return undefined;
  return little ? bytes[124]! | (bytes[125]! << 8) : (bytes[124]! << 8) | bytes[125]!;
}

/**
 * Parse a v5 MAT-file. `source` names the input in error messages; positions
 * are byte offsets in the file (or "in compressed element at N, offset M").
 */
export function parseMat5(bytes: Uint8Array, source: string): MatFile {
  if (bytes.length < HEADER_BYTES) {
    throw new ExtdError(`${source}: ${bytes.length} bytes, too short for a MAT-file (128-byte header)`);
  }
  const version = matVersion(bytes);
  if (version === undefined) {
    throw new ExtdError(`${source}: byte 126: endian indicator is not 'IM' or 'MI'; not a MATLAB MAT-file`);
  }
  if (version !== 0x0100) {
    throw new ExtdError(`${source}: byte 124: MAT-file version 0x${version.toString(16)}, expected 0x0100 (v5); v7.3 files are HDF5`);
  }
  const little = bytes[126] === 0x49;
  const out: MatFile = new Map();
  const top = new Reader(bytes, little, source, '');
  top.pos = HEADER_BYTES;
  while (top.pos < bytes.length) {
    // MATLAB pads some files with a few zero bytes at the end.
    if (bytes.length - top.pos < 8) break;
    const el = top.element();
    let value: { name: string; value: MatValue };
    if (el.type === MI.COMPRESSED) {
      let raw: Uint8Array;
      try {
        raw = inflateZlib(el.data);
      } catch (err) {
        throw new ExtdError(`${source}: byte ${el.start}: compressed element does not inflate (${(err as Error).message})`);
      }
      const inner = new Reader(raw, little, source, ` in compressed element at byte ${el.start}, offset`);
      const innerEl = inner.element();
      if (innerEl.type !== MI.MATRIX) {
        throw new ExtdError(`${source}: byte ${el.start}: compressed element holds data type ${innerEl.type}, expected miMATRIX (14)`);
      }
      value = inner.matrix(innerEl);
    } else if (el.type === MI.MATRIX) {
      value = top.matrix(el);
    } else {
      throw new ExtdError(`${source}: byte ${el.start}: top-level data type ${el.type}, expected miMATRIX (14) or miCOMPRESSED (15)`);
    }
    out.set(value.name, value.value);
  }
  return out;
}

interface Element {
  type: number;
  /** Offset of the tag, for messages. */
  start: number;
  data: Uint8Array;
}

class Reader {
  pos = 0;
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly little: boolean,
    private readonly source: string,
    /** Prefix that turns a local offset into a file position in messages. */
    private readonly where: string,
    /** Position of bytes[0] in the file (or in the inflated element), for messages. */
    private readonly base = 0,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** `at` is a local offset into `bytes`. */
  fail(at: number, msg: string): never {
    const abs = this.base + at;
    const pos = this.where ? `${this.where} ${abs}` : ` byte ${abs}`;
    throw new ExtdError(`${this.source}:${pos}: ${msg}`);
  }

  /** Read one data element (tag + data) at `pos`, moving past its padding. */
  element(): Element {
    const start = this.pos;
    if (start + 8 > this.bytes.length) this.fail(start, `truncated data element tag (${this.bytes.length - start} bytes left, need 8)`);
    const first = this.view.getUint32(start, this.little);
    // Small data element: the byte count lives in the upper half of the type word and the data in the next 4 bytes.
    if (first >>> 16 !== 0) {
      const type = first & 0xffff;
      const n = first >>> 16;
      if (n > 4) this.fail(start, `small data element claims ${n} bytes, at most 4 allowed`);
      this.pos = start + 8;
      return { type, start, data: this.bytes.subarray(start + 4, start + 4 + n) };
    }
    const type = first;
    const n = this.view.getUint32(start + 4, this.little);
    const begin = start + 8;
    if (begin + n > this.bytes.length) {
      this.fail(start, `data element of type ${type} claims ${n} bytes, only ${this.bytes.length - begin} left (truncated file?)`);
    }
    // Compressed elements are not padded; everything else is padded to 8 bytes.
    this.pos = type === MI.COMPRESSED ? begin + n : begin + ((n + 7) & ~7);
    return { type, start, data: this.bytes.subarray(begin, begin + n) };
  }

  /** Decode a miMATRIX element (read by this reader). A 0-byte matrix is an empty double array. */
  matrix(el: Element): { name: string; value: MatValue } {
    if (el.data.length === 0) {
      // An empty cell entry is written as a miMATRIX of zero bytes.
      return { name: '', value: { kind: 'numeric', class: 'double', logical: false, dims: [0, 0], data: new Float64Array(0) } };
    }
    const sub = new Reader(el.data, this.little, this.source, this.where, this.base + el.start + 8);
    const subFail = (p: number, msg: string): never => sub.fail(p, msg);

    const flagsEl = sub.element();
    if (flagsEl.type !== MI.UINT32 || flagsEl.data.length !== 8) {
      subFail(flagsEl.start, `array flags: type ${flagsEl.type} with ${flagsEl.data.length} bytes, expected miUINT32 (6) with 8`);
    }
    const flagsWord = new DataView(flagsEl.data.buffer, flagsEl.data.byteOffset, 8).getUint32(0, this.little);
    const classCode = flagsWord & 0xff;
    const complex = (flagsWord & 0x0800) !== 0;
    const logical = (flagsWord & 0x0200) !== 0;
    const cls = MX_CLASS[classCode] ?? subFail(flagsEl.start, `array class ${classCode}, expected one of ${Object.keys(MX_CLASS).join(', ')}`);

    const dimsEl = sub.element();
    if (dimsEl.type !== MI.INT32) subFail(dimsEl.start, `dimensions: data type ${dimsEl.type}, expected miINT32 (5)`);
    const dims = Array.from(numbers(dimsEl, this.little, (p, m) => subFail(p, m)));
    const count = dims.reduce((a, b) => a * b, 1);

    const nameEl = sub.element();
    if (nameEl.type !== MI.INT8 && nameEl.type !== MI.UINT8) subFail(nameEl.start, `array name: data type ${nameEl.type}, expected miINT8 (1)`);
    const name = LATIN1.decode(nameEl.data);

    switch (cls) {
      case 'cell': {
        const cells: MatValue[] = [];
        for (let k = 0; k < count; k++) {
          const c = sub.element();
          if (c.type !== MI.MATRIX) subFail(c.start, `cell ${k} of '${name}': data type ${c.type}, expected miMATRIX (14)`);
          cells.push(sub.matrix(c).value);
        }
        return { name, value: { kind: 'cell', dims, cells } };
      }
      case 'struct': {
        const lenEl = sub.element();
        const fieldLen = numbers(lenEl, this.little, (p, m) => subFail(p, m))[0] ?? 0;
        const namesEl = sub.element();
        const fieldNames: string[] = [];
        for (let o = 0; fieldLen > 0 && o + fieldLen <= namesEl.data.length; o += fieldLen) {
          const raw = namesEl.data.subarray(o, o + fieldLen);
          const end = raw.indexOf(0);
          fieldNames.push(LATIN1.decode(end < 0 ? raw : raw.subarray(0, end)));
        }
        const elements: Array<Record<string, MatValue>> = [];
        for (let k = 0; k < count; k++) {
          const rec: Record<string, MatValue> = {};
          for (const f of fieldNames) {
            const c = sub.element();
            if (c.type !== MI.MATRIX) subFail(c.start, `field '${f}' of '${name}': data type ${c.type}, expected miMATRIX (14)`);
            rec[f] = sub.matrix(c).value;
          }
          elements.push(rec);
        }
        return { name, value: { kind: 'struct', dims, fieldNames, elements } };
      }
      case 'char': {
        const d = sub.element();
        let value: string;
        if (d.type === MI.UTF8) value = UTF8.decode(d.data);
        else if (d.type === MI.UTF16 || d.type === MI.UINT16) value = String.fromCharCode(...numbers(d, this.little, (p, m) => subFail(p, m)));
        else value = String.fromCodePoint(...numbers(d, this.little, (p, m) => subFail(p, m)));
        return { name, value: { kind: 'char', dims, value } };
      }
      case 'sparse':
      case 'object':
        return subFail(flagsEl.start, `array '${name}' has class ${cls}, which this reader does not support`);
      default: {
        if (complex) subFail(flagsEl.start, `array '${name}' is complex, which this reader does not support`);
        const d = sub.element();
        const data = numbers(d, this.little, (p, m) => subFail(p, m));
        if (data.length !== count) {
          subFail(d.start, `array '${name}' of dimensions ${dims.join('x')} holds ${data.length} values, expected ${count}`);
        }
        return { name, value: { kind: 'numeric', class: cls, logical, dims, data } };
      }
    }
  }
}

const VALUE_BYTES: Record<number, number> = {
  [MI.INT8]: 1,
  [MI.UINT8]: 1,
  [MI.UTF8]: 1,
  [MI.INT16]: 2,
  [MI.UINT16]: 2,
  [MI.UTF16]: 2,
  [MI.INT32]: 4,
  [MI.UINT32]: 4,
  [MI.UTF32]: 4,
  [MI.SINGLE]: 4,
  [MI.DOUBLE]: 8,
  [MI.INT64]: 8,
  [MI.UINT64]: 8,
};
const LATIN1 = new TextDecoder('latin1');
const UTF8 = new TextDecoder('utf-8');

/** Values of a numeric data element, converted to float64. */
function numbers(el: Element, little: boolean, fail: (pos: number, msg: string) => never): Float64Array {
  const d = el.data;
  const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const s = VALUE_BYTES[el.type];
  if (s === undefined) return fail(el.start, `data type ${el.type} is not a numeric type`);
  if (d.length % s !== 0) return fail(el.start, `${d.length} bytes is not a whole number of ${s}-byte values`);
  const n = d.length / s;
  const out = new Float64Array(n);
  for (let i = 0, o = 0; i < n; i++, o += s) {
    switch (el.type) {
      case MI.INT8:
        out[i] = view.getInt8(o);
        break;
      case MI.UINT8:
      case MI.UTF8:
        out[i] = view.getUint8(o);
        break;
      case MI.INT16:
        out[i] = view.getInt16(o, little);
        break;
      case MI.UINT16:
      case MI.UTF16:
        out[i] = view.getUint16(o, little);
        break;
      case MI.INT32:
        out[i] = view.getInt32(o, little);
        break;
      case MI.UINT32:
      case MI.UTF32:
        out[i] = view.getUint32(o, little);
        break;
      case MI.SINGLE:
        out[i] = view.getFloat32(o, little);
        break;
      case MI.DOUBLE:
        out[i] = view.getFloat64(o, little);
        break;
      case MI.INT64:
        out[i] = Number(view.getBigInt64(o, little));
        break;
      case MI.UINT64:
        out[i] = Number(view.getBigUint64(o, little));
        break;
    }
  }
  return out;
}
