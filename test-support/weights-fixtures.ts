/**
 * Test-only builders for PyTorch checkpoints, so the .pth reader can be tested
 * without PyTorch: a pickle writer that emits the opcodes torch.save emits
 * (protocol 2), the legacy file layout, and a zip writer (STORED or DEFLATE,
 * optional zip64 end records, PyTorch-style alignment padding).
 *
 * Written independently of src/weights (it shares no code with the reader),
 * using node:zlib for CRC-32 and deflate.
 */
import { crc32 as zlibCrc32, deflateRawSync } from 'node:zlib';

/** Emits pickle opcodes; each method appends one instruction. */
export class PickleWriter {
  private parts: number[] = [];
  private memo = 0;

  private u8(...b: number[]): this {
    this.parts.push(...b);
    return this;
  }
  private le(v: number, n: number): this {
    for (let i = 0; i < n; i++) this.parts.push(Math.floor(v / 2 ** (8 * i)) & 0xff);
    return this;
  }
  proto(v = 2): this {
    return this.u8(0x80, v);
  }
  stop(): this {
    return this.u8(0x2e);
  }
  mark(): this {
    return this.u8(0x28);
  }
  emptyTuple(): this {
    return this.u8(0x29);
  }
  emptyDict(): this {
    return this.u8(0x7d);
  }
  emptyList(): this {
    return this.u8(0x5d);
  }
  none(): this {
    return this.u8(0x4e);
  }
  bool(v: boolean): this {
    return this.u8(v ? 0x88 : 0x89);
  }
  tuple(): this {
    return this.u8(0x74);
  }
  tuple1(): this {
    return this.u8(0x85);
  }
  reduce(): this {
    return this.u8(0x52);
  }
  newobj(): this {
    return this.u8(0x81);
  }
  build(): this {
    return this.u8(0x62);
  }
  binpersid(): this {
    return this.u8(0x51);
  }
  setitem(): this {
    return this.u8(0x73);
  }
  setitems(): this {
    return this.u8(0x75);
  }
  appends(): this {
    return this.u8(0x65);
  }
  stackGlobal(): this {
    return this.u8(0x93);
  }
  memoize(): this {
    return this.u8(0x94);
  }
  /** BINPUT with the next memo slot; returns the slot through `slot`. */
  put(slot?: (i: number) => void): this {
    slot?.(this.memo);
    return this.u8(0x71, this.memo++);
  }
  get(i: number): this {
    return this.u8(0x68, i);
  }
  int(v: number): this {
    if (v >= 0 && v < 256) return this.u8(0x4b, v);
    if (v >= 0 && v < 65536) return this.u8(0x4d).le(v, 2);
    return this.u8(0x4a).le(v >>> 0, 4);
  }
  /** LONG1 of a non-negative bigint. */
  long(v: bigint): this {
    const bytes: number[] = [];
    while (v > 0n) {
      bytes.push(Number(v & 0xffn));
      v >>= 8n;
    }
    if (bytes.length === 0 || bytes[bytes.length - 1]! & 0x80) bytes.push(0);
    return this.u8(0x8a, bytes.length, ...bytes);
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.u8(0x58)
      .le(b.length, 4)
      .u8(...b);
  }
  shortStr(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.u8(0x8c, b.length, ...b);
  }
  global(module: string, name: string): this {
    return this.u8(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }
  raw(...b: number[]): this {
    return this.u8(...b);
  }
  /** BINFLOAT: 8 bytes, big-endian. */
  float(v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    return this.u8(0x47, ...b);
  }
  intTuple(v: number[]): this {
    if (v.length === 1) return this.int(v[0]!).tuple1();
    if (v.length === 0) return this.emptyTuple();
    this.mark();
    for (const d of v) this.int(d);
    return this.tuple();
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

export interface FakeTensor {
  name: string;
  storageKey: string;
  /** e.g. 'FloatStorage' (module torch). */
  storageType: string;
  storageNumel: number;
  offset: number;
  shape: number[];
  stride: number[];
  /** Legacy view metadata (view key, element offset, view size). */
  view?: [string, number, number];
}

/**
 * The state_dict pickle as torch.save writes it: an OrderedDict of
 * _rebuild_tensor_v2 calls whose storages are persistent ids, then BUILD with
 * the `_metadata` attribute. Legacy pids have 6 fields, zip pids 5.
 */
export function stateDictPickle(tensors: FakeTensor[], layout: 'legacy' | 'zip'): Uint8Array {
  const p = new PickleWriter().proto(2);
  let od = 0;
  let rebuild = -1;
  p.global('collections', 'OrderedDict')
    .put((i) => (od = i))
    .emptyTuple()
    .reduce()
    .put()
    .mark();
  for (const t of tensors) {
    p.str(t.name).put();
    if (rebuild < 0) p.global('torch._utils', '_rebuild_tensor_v2').put((i) => (rebuild = i));
    else p.get(rebuild);
    p.mark();
    p.mark().str('storage').global('torch', t.storageType).str(t.storageKey).str('cpu').int(t.storageNumel);
    if (layout === 'legacy') {
      if (t.view) p.mark().str(t.view[0]).int(t.view[1]).int(t.view[2]).tuple();
      else p.none();
    }
    p.tuple().put().binpersid();
    p.int(t.offset).intTuple(t.shape).intTuple(t.stride).bool(false);
    p.get(od).emptyTuple().reduce(); // backward_hooks = OrderedDict()
    p.tuple().put().reduce().put();
  }
  p.setitems();
  // state_dict()'s `_metadata` attribute, restored by BUILD.
  p.emptyDict().str('_metadata').get(od).emptyTuple().reduce().str('').emptyDict().str('version').int(1).setitem().setitem().setitem();
  p.build().stop();
  return p.bytes();
}

/** A pickle holding just `value` written by `body` (for the legacy preamble pickles). */
export function smallPickle(body: (p: PickleWriter) => void): Uint8Array {
  const p = new PickleWriter().proto(2);
  body(p);
  return p.stop().bytes();
}

export const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

export function legacyPreamble(littleEndian = true): Uint8Array {
  return concat([
    smallPickle((p) => p.long(LEGACY_MAGIC)),
    smallPickle((p) => p.int(1001)),
    smallPickle((p) =>
      p
        .emptyDict()
        .mark()
        .str('protocol_version')
        .int(1001)
        .str('little_endian')
        .bool(littleEndian)
        .str('type_sizes')
        .emptyDict()
        .mark()
        .str('short')
        .int(2)
        .str('int')
        .int(4)
        .str('long')
        .int(4)
        .setitems()
        .setitems(),
    ),
  ]);
}

/** Legacy layout: preamble, main pickle, storage-key list pickle, then each storage as u64 count + bytes. */
export function legacyCheckpoint(mainPickle: Uint8Array, storages: Array<{ key: string; numel: number; bytes: Uint8Array }>): Uint8Array {
  const keys = new PickleWriter().proto(2).emptyList().put().mark();
  for (const s of storages) keys.str(s.key);
  const parts = [legacyPreamble(), mainPickle, keys.appends().stop().bytes()];
  for (const s of storages) {
    const n = new Uint8Array(8);
    new DataView(n.buffer).setBigInt64(0, BigInt(s.numel), true);
    parts.push(n, s.bytes);
  }
  return concat(parts);
}

export interface ZipOptions {
  deflate?: boolean;
  /** Write zip64 end-of-central-directory records with the classic fields saturated. */
  zip64?: boolean;
  /** Pad local headers so data starts at a multiple of 64, as PyTorch's writer does. */
  align64?: boolean;
}

export function zipArchive(files: Array<[string, Uint8Array]>, opts: ZipOptions = {}): Uint8Array {
  const out: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of files) {
    const nameBytes = new TextEncoder().encode(name);
    const payload = opts.deflate ? new Uint8Array(deflateRawSync(data)) : data;
    const crc = zlibCrc32(data) >>> 0;
    let extra = new Uint8Array(0);
    if (opts.align64) {
      const unpadded = offset + 30 + nameBytes.length + 4;
      const pad = (64 - (unpadded % 64)) % 64;
      extra = new Uint8Array(4 + pad);
      new DataView(extra.buffer).setUint16(0, 0x4246, true); // 'FB', PyTorch's padding record
      new DataView(extra.buffer).setUint16(2, pad, true);
    }
    const local = new Uint8Array(30);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, opts.deflate ? 8 : 0, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, payload.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, nameBytes.length, true);
    lv.setUint16(28, extra.length, true);
    const cd = new Uint8Array(46);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(10, opts.deflate ? 8 : 0, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, payload.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, nameBytes.length, true);
    cv.setUint32(42, offset, true);
    central.push(cd, nameBytes);
    out.push(local, nameBytes, extra, payload);
    offset += 30 + nameBytes.length + extra.length + payload.length;
  }
  const cdBytes = concat(central);
  const cdOffset = offset;
  out.push(cdBytes);
  offset += cdBytes.length;
  if (opts.zip64) {
    const z = new Uint8Array(56);
    const zv = new DataView(z.buffer);
    zv.setUint32(0, 0x06064b50, true);
    zv.setBigUint64(4, 44n, true);
    zv.setUint16(12, 45, true);
    zv.setUint16(14, 45, true);
    zv.setBigUint64(24, BigInt(files.length), true);
    zv.setBigUint64(32, BigInt(files.length), true);
    zv.setBigUint64(40, BigInt(cdBytes.length), true);
    zv.setBigUint64(48, BigInt(cdOffset), true);
    const loc = new Uint8Array(20);
    const lv = new DataView(loc.buffer);
    lv.setUint32(0, 0x07064b50, true);
    lv.setBigUint64(8, BigInt(offset), true);
    lv.setUint32(16, 1, true);
    out.push(z, loc);
  }
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, opts.zip64 ? 0xffff : files.length, true);
  ev.setUint16(10, opts.zip64 ? 0xffff : files.length, true);
  ev.setUint32(12, opts.zip64 ? 0xffffffff : cdBytes.length, true);
  ev.setUint32(16, opts.zip64 ? 0xffffffff : cdOffset, true);
  out.push(end);
  return concat(out);
}

/** A torch.save zip checkpoint: `archive/data.pkl`, `archive/data/<key>`, version, byteorder. */
export function zipCheckpoint(mainPickle: Uint8Array, storages: Array<{ key: string; bytes: Uint8Array }>, opts: ZipOptions = {}): Uint8Array {
  const files: Array<[string, Uint8Array]> = [
    ['archive/data.pkl', mainPickle],
    ['archive/byteorder', new TextEncoder().encode('little')],
  ];
  for (const s of storages) files.push([`archive/data/${s.key}`, s.bytes]);
  files.push(['archive/version', new TextEncoder().encode('3\n')]);
  return zipArchive(files, opts);
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function f32bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** A float32 or int64 tensor to save with torchSave. */
export interface SavedTensor {
  shape: number[];
  data: Float32Array | BigInt64Array;
}

/**
 * A Python value for torchSave: None, bool, int (non-negative, < 2^31),
 * float (non-integer numbers), str, list, a dict (`ordered`: an
 * OrderedDict, as state_dict() returns) or a tensor.
 */
export type PyValue = null | boolean | number | string | PyValue[] | { dict: Array<[string | number, PyValue]>; ordered?: boolean } | { tensor: SavedTensor };

/**
 * What torch.save(value) writes, for any nesting of dicts, lists and tensors
 * (each tensor in its own Float/LongStorage), in the zip or the legacy layout.
 * Lets tests build the checkpoints training scripts save:
 * {'epoch': 5, 'state_dict': model.state_dict(), 'optimizer': ...}.
 */
export function torchSave(value: PyValue, layout: 'zip' | 'legacy' = 'zip'): Uint8Array {
  const p = new PickleWriter().proto(2);
  const storages: Array<{ key: string; numel: number; bytes: Uint8Array }> = [];
  const emit = (v: PyValue): void => {
    if (v === null) p.none();
    else if (typeof v === 'boolean') p.bool(v);
    else if (typeof v === 'number') {
      if (Number.isInteger(v) && v >= 0 && v < 2 ** 31) p.int(v);
      else p.float(v);
    } else if (typeof v === 'string') p.str(v);
    else if (Array.isArray(v)) {
      p.emptyList();
      if (v.length > 0) {
        p.mark();
        v.forEach(emit);
        p.appends();
      }
    } else if ('tensor' in v) {
      const { shape, data } = v.tensor;
      const key = String(storages.length);
      storages.push({ key, numel: data.length, bytes: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) });
      const stride = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
      p.global('torch._utils', '_rebuild_tensor_v2').mark();
      p.mark()
        .str('storage')
        .global('torch', data instanceof BigInt64Array ? 'LongStorage' : 'FloatStorage')
        .str(key)
        .str('cpu')
        .int(data.length);
      if (layout === 'legacy') p.none();
      p.tuple().binpersid();
      p.int(0).intTuple(shape).intTuple(stride).bool(false);
      p.global('collections', 'OrderedDict').emptyTuple().reduce();
      p.tuple().reduce();
    } else {
      if (v.ordered) p.global('collections', 'OrderedDict').emptyTuple().reduce();
      else p.emptyDict();
      if (v.dict.length > 0) {
        p.mark();
        for (const [k, x] of v.dict) {
          emit(k);
          emit(x);
        }
        p.setitems();
      }
    }
  };
  emit(value);
  const pickle = p.stop().bytes();
  return layout === 'zip' ? zipCheckpoint(pickle, storages) : legacyCheckpoint(pickle, storages);
}

/** A state_dict as torchSave's OrderedDict, every key with `prefix` in front. */
export function stateDictValue(tensors: Map<string, SavedTensor> | Iterable<[string, SavedTensor]>, prefix = ''): PyValue {
  return { ordered: true, dict: [...tensors].map(([k, t]): [string, PyValue] => [prefix + k, { tensor: t }]) };
}
