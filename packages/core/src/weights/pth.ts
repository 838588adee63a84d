/**
 * Reader for PyTorch checkpoints that hold a state_dict (an OrderedDict of
 * name -> tensor), bare or as training scripts save it (nested under a key
 * such as 'state_dict' beside the epoch and optimizer state; see
 * STATE_DICT_KEYS), in both on-disk formats:
 *
 * - legacy (torch < 1.6, and the released EXTD_*.pth): pickles back to back:
 *   magic number, protocol version, sys_info, the state_dict (tensors refer to
 *   storages through persistent ids), the list of storage keys; then every
 *   storage's raw little-endian bytes, each preceded by its element count as
 *   an 8-byte little-endian integer, in the order of that list.
 * - zip (torch.save default since 1.6): `<dir>/data.pkl` (the state_dict
 *   pickle), `<dir>/data/<key>` (one raw storage per file), `<dir>/version`,
 *   and in newer versions `<dir>/byteorder`.
 *
 * Unpickling is restricted to an allow-list of globals (see pickle.ts), so a
 * malicious checkpoint fails with an error instead of running anything.
 * Half and bfloat16 tensors are widened to float32; strided tensors are
 * materialised contiguous.
 *
 * Works on Uint8Array only (no node: imports) so the browser build can use it.
 */
import { ExtdError } from '../utils/errors.js';
import { formatShape, numel, type DType, type Tensor } from '../utils/tensor.js';
import { ITEM_SIZE, bfloat16BytesToFloat32, float16BytesToFloat32, typedArrayFromBytes } from './bytes.js';
import { PyDict, describe, globalName, unpickle, type PickleGlobal } from './pickle.js';
import { looksLikeZip, readZipDirectory, readZipEntry } from './zip.js';

/** How a torch storage type's bytes are read: element size in the file and the dtype we return. */
interface StorageKind {
  itemSize: number;
  dtype: DType;
  widen?: (b: Uint8Array) => Float32Array;
}

const STORAGE_KINDS: Record<string, StorageKind> = {
  'torch.FloatStorage': { itemSize: 4, dtype: 'float32' },
  'torch.DoubleStorage': { itemSize: 8, dtype: 'float64' },
  'torch.HalfStorage': { itemSize: 2, dtype: 'float32', widen: float16BytesToFloat32 },
  'torch.BFloat16Storage': { itemSize: 2, dtype: 'float32', widen: bfloat16BytesToFloat32 },
  'torch.LongStorage': { itemSize: 8, dtype: 'int64' },
  'torch.IntStorage': { itemSize: 4, dtype: 'int32' },
  'torch.ShortStorage': { itemSize: 2, dtype: 'int16' },
  'torch.CharStorage': { itemSize: 1, dtype: 'int8' },
  'torch.ByteStorage': { itemSize: 1, dtype: 'uint8' },
  'torch.BoolStorage': { itemSize: 1, dtype: 'bool' },
};

const MAX_EXPANDED_BYTES = 256 * 1024 * 1024;

/** legacy torch.save's first pickle: 0x1950a86a20f9469cfc6c. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL_VERSION = 1001;

/** A storage as the pickle refers to it; its bytes are attached after unpickling. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly kindName: string,
    readonly kind: StorageKind,
    /** Elements in the storage as declared by the persistent id. */
    readonly numel: number,
    /** Legacy views into a larger storage: element offset into the root storage. */
    readonly viewOffset: number,
  ) {}
}

/** A tensor as the pickle describes it; materialised once all storages are read. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

function intList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && d >= 0);
}

function pthGlobals(source: string): Record<string, PickleGlobal> {
  const err = (msg: string): never => {
    throw new ExtdError(`${source}: ${msg}`);
  };
  const rebuildTensor = (args: unknown[]): TensorRef => {
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof StorageRef)) err(`tensor storage is ${describe(storage)}, expected a storage`);
    if (!Number.isSafeInteger(offset) || (offset as number) < 0) err(`tensor storage_offset is ${describe(offset)}, expected a non-negative integer`);
    if (!intList(size)) err(`tensor size is ${describe(size)}, expected a tuple of non-negative integers`);
    if (!intList(stride) || stride.length !== (size as number[]).length)
      err(`tensor stride is ${describe(stride)}, expected ${(size as number[]).length} non-negative integers`);
    return new TensorRef(storage as StorageRef, offset as number, [...(size as number[])], [...(stride as number[])]);
  };
  const globals: Record<string, PickleGlobal> = {
    'collections.OrderedDict': {
      call: (args) => {
        if (args.length !== 0) err('OrderedDict(...) with arguments is not supported');
        return new PyDict();
      },
    },
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    'torch._utils._rebuild_tensor_v2': { call: rebuildTensor },
    'torch._utils._rebuild_tensor': { call: rebuildTensor },
    // (data, requires_grad, backward_hooks[, state]): a Parameter is its data for us.
    'torch._utils._rebuild_parameter': { call: (args) => args[0] },
    'torch._utils._rebuild_parameter_with_state': { call: (args) => args[0] },
  };
  for (const name of Object.keys(STORAGE_KINDS)) globals[name] = {};
  return globals;
}

/**
 * Parse a persistent id `('storage', storage_type, key, location, numel[, view_metadata])`.
 * The legacy format's view_metadata `(view_key, offset, size)` makes the
 * storage a window into the root storage `key`.
 */
function parseStoragePid(pid: unknown, source: string): StorageRef {
  const err = (msg: string): never => {
    throw new ExtdError(`${source}: ${msg}`);
  };
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) err(`persistent id ${describe(pid)} is not a ('storage', ...) tuple`);
  const [, type, key, , count, view] = pid as unknown[];
  const kindName = globalName(type);
  if (!kindName || !Object.hasOwn(STORAGE_KINDS, kindName)) err(`storage type ${describe(type)} is not supported (${Object.keys(STORAGE_KINDS).join(', ')})`);
  if (typeof key !== 'string') err(`storage key ${describe(key)} is not a string`);
  if (!Number.isSafeInteger(count) || (count as number) < 0) err(`storage '${key}' size ${describe(count)} is not a non-negative integer`);
  let viewOffset = 0;
  if (view !== undefined && view !== null) {
    if (!Array.isArray(view) || view.length !== 3 || !intList(view.slice(1))) err(`storage '${key}' view ${describe(view)} is not (key, offset, size)`);
    viewOffset = (view as number[])[1]!; // length 3, checked above
  }
  return new StorageRef(key as string, kindName!, STORAGE_KINDS[kindName!]!, count as number, viewOffset); // an own key, checked above
}

/**
 * Keys under which training scripts nest the model's state_dict beside other
 * entries (epoch, optimizer state, ...), tried in this order: `state_dict`
 * (Lightning and many scripts), `model_state_dict` (PyTorch's tutorial),
 * `model`, `net`, and `weight` (as EXTD's own train.py saves).
 */
export const STATE_DICT_KEYS = ['state_dict', 'model_state_dict', 'model', 'net', 'weight'] as const;

/** How deep state_dicts are looked for under STATE_DICT_KEYS (e.g. {'model': {'state_dict': ...}}). */
const MAX_NESTING = 3;

/** The string-keyed tensor entries of `dict`, ignoring every other entry. */
function tensorEntries(dict: PyDict): Array<[string, TensorRef]> {
  const out: Array<[string, TensorRef]> = [];
  for (const [k, v] of dict.map) if (typeof k === 'string' && v instanceof TensorRef) out.push([k, v]);
  return out;
}

/** A state_dict nested under STATE_DICT_KEYS (preferred), else the dict's own tensors; undefined when neither holds any. */
function findStateDict(dict: PyDict, depth: number): Array<[string, TensorRef]> | undefined {
  if (depth < MAX_NESTING) {
    for (const key of STATE_DICT_KEYS) {
      const v = dict.map.get(key);
      const nested = v instanceof PyDict ? findStateDict(v, depth + 1) : undefined;
      if (nested) return nested;
    }
  }
  const own = tensorEntries(dict);
  return own.length > 0 ? own : undefined;
}

/**
 * The model's state_dict: the checkpoint itself when it is a dict of
 * name -> tensor, or the one a training script saved under one of
 * STATE_DICT_KEYS; entries that are not tensors (epoch, optimizer state,
 * hyper-parameters) are ignored.
 */
function stateDictEntries(root: unknown, source: string): Array<[string, TensorRef]> {
  if (!(root instanceof PyDict)) {
    throw new ExtdError(`${source}: checkpoint holds ${describe(root)}, expected a state_dict (a dict of name -> tensor)`);
  }
  const found = findStateDict(root, 0);
  if (found) return found;
  const keys = [...root.map.keys()].map((k) => (typeof k === 'string' ? `'${k}'` : String(k)));
  const shown = keys.length === 0 ? 'none (an empty dict)' : `${keys.slice(0, 8).join(', ')}${keys.length > 8 ? ` and ${keys.length - 8} more` : ''}`;
  throw new ExtdError(
    `${source}: no model state_dict found: top-level keys ${shown}; expected a dict of name -> tensor, or one under ${STATE_DICT_KEYS.map((k) => `'${k}'`).join(', ')}`,
  );
}

/**
 * Copy a (possibly strided) tensor out of its storage's bytes into a
 * contiguous typed array.
 */
function materialise(name: string, t: TensorRef, storageBytes: Uint8Array, source: string): Tensor {
  const { kind } = t.storage;
  const size = kind.itemSize;
  const storageNumel = storageBytes.byteLength / size;
  const n = numel(t.shape);
  const offset = t.storage.viewOffset + t.offset;
  // rebuildTensor checked that stride has one entry per dimension of shape.
  let last = offset;
  for (let i = 0; i < t.shape.length; i++) last += (t.shape[i]! - 1) * t.stride[i]!;
  if (n > 0 && last >= storageNumel) {
    throw new ExtdError(
      `${source}: tensor '${name}' (shape ${formatShape(t.shape)}, stride ${formatShape(t.stride)}, offset ${offset}) reaches element ${last} of storage '${t.storage.key}', which has ${storageNumel} elements`,
    );
  }
  // Overlapping strides (expand) can make a tensor far larger than its storage;
  // bound that so a crafted 4-byte storage cannot demand gigabytes.
  if (n > storageNumel && n * size > MAX_EXPANDED_BYTES) {
    throw new ExtdError(
      `${source}: tensor '${name}' (shape ${formatShape(t.shape)}, stride ${formatShape(t.stride)}) expands storage '${t.storage.key}' of ${storageNumel} elements to ${n}; refusing more than ${MAX_EXPANDED_BYTES} bytes`,
    );
  }
  let bytes: Uint8Array;
  let contiguous = true;
  for (let i = t.shape.length - 1, expect = 1; i >= 0; i--) {
    if (t.shape[i] !== 1 && t.stride[i] !== expect) contiguous = false;
    expect *= t.shape[i]!;
  }
  if (n === 0) {
    bytes = new Uint8Array(0);
  } else if (contiguous) {
    bytes = storageBytes.subarray(offset * size, (offset + n) * size);
  } else {
    bytes = new Uint8Array(n * size);
    const idx = new Array<number>(t.shape.length).fill(0);
    let src = offset;
    for (let k = 0; k < n; k++) {
      bytes.set(storageBytes.subarray(src * size, (src + 1) * size), k * size);
      // Odometer increment over the multi-index, last dimension fastest.
      for (let d = t.shape.length - 1; d >= 0; d--) {
        const stride = t.stride[d]!;
        const i = ++idx[d]!;
        src += stride;
        if (i < t.shape[d]!) break;
        src -= i * stride;
        idx[d] = 0;
      }
    }
  }
  const data = kind.widen ? kind.widen(bytes) : typedArrayFromBytes(kind.dtype, bytes);
  return { dtype: kind.dtype, shape: t.shape, data } as Tensor;
}

/** Materialise the state_dict's tensors; `storage` returns a storage's bytes (or undefined when the file lacks it). */
function buildStateDict(root: unknown, storage: (ref: StorageRef) => Uint8Array | undefined, source: string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, ref] of stateDictEntries(root, source)) {
    const bytes = storage(ref.storage);
    if (!bytes) throw new ExtdError(`${source}: tensor '${name}' refers to storage '${ref.storage.key}', which the file does not contain`);
    out.set(name, materialise(name, ref, bytes, source));
  }
  return out;
}

function firstBytes(bytes: Uint8Array): string {
  return [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}

/**
 * Read a PyTorch state_dict checkpoint (.pth / .pt), legacy or zip format.
 * Returns every tensor of the state_dict (the file's root dict, or the one
 * nested under a STATE_DICT_KEYS key), in file order, including integer
 * buffers such as BatchNorm's `num_batches_tracked`. Key prefixes that
 * wrappers add (`module.`) are left as they are; modelFromTensors strips them.
 * Throws ExtdError naming the file when it holds no state_dict.
 */
export function readPth(bytes: Uint8Array, source = '.pth'): Map<string, Tensor> {
  if (looksLikeZip(bytes)) return readZipPth(bytes, source);
  if (bytes.length >= 2 && bytes[0] === 0x80) return readLegacyPth(bytes, source);
  const hint = bytes.length >= 9 && bytes[8] === 0x7b ? ' (it looks like a safetensors file)' : '';
  throw new ExtdError(
    `${source}: not a PyTorch checkpoint${hint}: expected a zip archive ('PK') or a pickle (first byte 0x80), got ${bytes.length === 0 ? 'an empty file' : `bytes ${firstBytes(bytes)}`}`,
  );
}

function readLegacyPth(bytes: Uint8Array, source: string): Map<string, Tensor> {
  // Every pickle gets the same allow-list: a plain malicious pickle renamed .pth
  // puts its payload in the first one, and the error should list what is allowed.
  const globals = pthGlobals(source);
  const magic = unpickle(bytes, 0, { source, globals });
  if (magic.value !== LEGACY_MAGIC) {
    throw new ExtdError(`${source}: not a PyTorch checkpoint: the first pickle is ${describe(magic.value)}, not torch's magic number`);
  }
  const version = unpickle(bytes, magic.end, { source, globals });
  if (version.value !== LEGACY_PROTOCOL_VERSION) {
    throw new ExtdError(`${source}: legacy checkpoint protocol version ${describe(version.value)} is not supported (${LEGACY_PROTOCOL_VERSION})`);
  }
  const sysInfo = unpickle(bytes, version.end, { source, globals });
  const little = sysInfo.value instanceof PyDict ? sysInfo.value.map.get('little_endian') : undefined;
  if (little !== true) {
    throw new ExtdError(
      `${source}: checkpoint was saved on a big-endian machine (sys_info little_endian = ${describe(little)}); only little-endian is supported`,
    );
  }

  const refs = new Map<string, StorageRef>();
  const main = unpickle(bytes, sysInfo.end, {
    source,
    globals,
    persistentLoad: (pid) => {
      const ref = parseStoragePid(pid, source);
      const seen = refs.get(ref.key);
      if (seen && (seen.kindName !== ref.kindName || seen.numel !== ref.numel)) {
        throw new ExtdError(`${source}: storage '${ref.key}' is declared twice with different types or sizes`);
      }
      refs.set(ref.key, ref);
      return ref;
    },
  });
  const keysPickle = unpickle(bytes, main.end, { source, globals });
  const keys = keysPickle.value;
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) {
    throw new ExtdError(`${source}: storage key list is ${describe(keys)}, expected a list of strings`);
  }

  const storages = new Map<string, Uint8Array>();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = keysPickle.end;
  for (const key of keys as string[]) {
    const ref = refs.get(key);
    if (!ref) throw new ExtdError(`${source}: storage '${key}' at offset ${pos} is not referenced by any tensor, so its element type is unknown`);
    if (pos + 8 > bytes.length) {
      throw new ExtdError(`${source}: truncated: storage '${key}' header needs 8 bytes at offset ${pos}, the file ends at ${bytes.length}`);
    }
    const count = view.getBigInt64(pos, true);
    if (count !== BigInt(ref.numel)) {
      throw new ExtdError(`${source}: storage '${key}' at offset ${pos} holds ${count} elements, the pickle declares ${ref.numel}`);
    }
    const start = pos + 8;
    const end = start + ref.numel * ref.kind.itemSize;
    if (end > bytes.length) {
      throw new ExtdError(`${source}: truncated: storage '${key}' needs bytes [${start}, ${end}), the file ends at ${bytes.length}`);
    }
    storages.set(key, bytes.subarray(start, end));
    pos = end;
  }
  return buildStateDict(main.value, (ref) => storages.get(ref.key), source);
}

function readZipPth(bytes: Uint8Array, source: string): Map<string, Tensor> {
  const entries = readZipDirectory(bytes, source);
  const byName = new Map(entries.map((e) => [e.name, e]));
  const pkl = entries.find((e) => /^[^/]+\/data\.pkl$/.test(e.name));
  if (!pkl) {
    const names = entries
      .slice(0, 5)
      .map((e) => e.name)
      .join(', ');
    throw new ExtdError(`${source}: zip archive has no <dir>/data.pkl, so it is not a torch.save checkpoint (entries: ${names || 'none'})`);
  }
  const dir = pkl.name.slice(0, pkl.name.length - 'data.pkl'.length);
  const order = byName.get(`${dir}byteorder`);
  if (order) {
    const text = new TextDecoder().decode(readZipEntry(bytes, order, source)).trim();
    if (text !== 'little') throw new ExtdError(`${source}: checkpoint byteorder is '${text}'; only 'little' is supported`);
  }

  const pickle = readZipEntry(bytes, pkl, source);
  const main = unpickle(pickle, 0, {
    source: `${source}: ${pkl.name}`,
    globals: pthGlobals(source),
    persistentLoad: (pid) => parseStoragePid(pid, source),
  });
  // Storages are read when a tensor of the state_dict needs them: optimizer state beside the model is never inflated.
  const storages = new Map<string, Uint8Array>();
  const storage = (ref: StorageRef): Uint8Array => {
    const seen = storages.get(ref.key);
    if (seen) return seen;
    const name = `${dir}data/${ref.key}`;
    const entry = byName.get(name);
    if (!entry) throw new ExtdError(`${source}: storage '${ref.key}' is missing (no zip entry '${name}')`);
    const data = readZipEntry(bytes, entry, source);
    const expected = ref.numel * ref.kind.itemSize;
    if (data.byteLength !== expected) {
      throw new ExtdError(
        `${source}: storage '${ref.key}' (${ref.kindName}, ${ref.numel} elements) needs ${expected} bytes, zip entry '${name}' has ${data.byteLength}`,
      );
    }
    storages.set(ref.key, data);
    return data;
  };
  return buildStateDict(main.value, storage, source);
}
