import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Tensor } from '../src/utils/tensor.js';
import { readPth } from '../src/weights/pth.js';
import { PyDict, globalName, unpickle } from '../src/weights/pickle.js';
import { readSafetensors, writeSafetensors } from '../src/weights/safetensors.js';
import {
  PickleWriter,
  concat,
  f32bytes,
  legacyCheckpoint,
  legacyPreamble,
  smallPickle,
  stateDictPickle,
  zipArchive,
  zipCheckpoint,
  type FakeTensor,
  type ZipOptions,
} from '../../../test-support/weights-fixtures.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';
import { throwsExtd } from '../../../test-support/expect-error.js';

function values(t: Tensor | undefined): number[] {
  assert.ok(t, 'tensor missing');
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

function bytesOf(t: Tensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

// ---------------------------------------------------------------- the released checkpoints

const GOLDEN_TENSORS: Record<number, number> = { 32: 187, 48: 144, 64: 144 }; // golden/index.json, without num_batches_tracked

for (const width of [32, 48, 64]) {
  test(`EXTD_${width}.pth equals extd-fpn-${width}-prelu.safetensors bitwise`, { skip: noShared('reference/weights') }, () => {
    const pth = readPth(new Uint8Array(readFileSync(sharedPath(`reference/weights/EXTD_${width}.pth`))), `EXTD_${width}.pth`);
    const st = readSafetensors(new Uint8Array(readFileSync(sharedPath(`reference/weights/extd-fpn-${width}-prelu.safetensors`)))).tensors;
    const kept = [...pth.keys()].filter((k) => !k.endsWith('.num_batches_tracked'));
    const dropped = [...pth.keys()].filter((k) => k.endsWith('.num_batches_tracked'));
    assert.equal(kept.length, GOLDEN_TENSORS[width]);
    assert.ok(dropped.length > 0);
    assert.deepEqual([...kept].sort(), [...st.keys()].sort());
    assert.deepEqual(kept, [...st.keys()], 'state_dict order = safetensors order');
    for (const name of kept) {
      const a = pth.get(name)!;
      const b = st.get(name)!;
      assert.equal(a.dtype, 'float32', name);
      assert.deepEqual(a.shape, b.shape, name);
      assert.ok(bytesOf(a).equals(bytesOf(b)), `${name}: data differs`);
    }
    for (const name of dropped) {
      const t = pth.get(name)!;
      assert.equal(t.dtype, 'int64', name);
      assert.deepEqual(t.shape, [], name);
      assert.ok((t.data as BigInt64Array)[0]! >= 0n, name);
    }
  });
}

// ---------------------------------------------------------------- crafted checkpoints

// Storage '0' holds 10 floats i + 0.5; 'a.weight' and 'a.bias' both view it (the bias at offset 6).
// 'b.t' is a transpose: shape [3, 2], stride [1, 3] over storage '1' = 0..5.
const S0 = Array.from({ length: 10 }, (_, i) => i + 0.5);
const S1 = [0, 1, 2, 3, 4, 5];
const NBT = new Uint8Array(new BigInt64Array([805n]).buffer);
const HALF = Uint8Array.from([0x00, 0x3c, 0x00, 0xc0]); // 1.0, -2.0

const TENSORS: FakeTensor[] = [
  { name: 'a.weight', storageKey: '0', storageType: 'FloatStorage', storageNumel: 10, offset: 0, shape: [2, 3], stride: [3, 1] },
  { name: 'a.bias', storageKey: '0', storageType: 'FloatStorage', storageNumel: 10, offset: 6, shape: [4], stride: [1] },
  { name: 'b.t', storageKey: '1', storageType: 'FloatStorage', storageNumel: 6, offset: 0, shape: [3, 2], stride: [1, 3] },
  { name: 'bn.num_batches_tracked', storageKey: '2', storageType: 'LongStorage', storageNumel: 1, offset: 0, shape: [], stride: [] },
  { name: 'h', storageKey: '3', storageType: 'HalfStorage', storageNumel: 2, offset: 0, shape: [2], stride: [1] },
  { name: 'empty', storageKey: '4', storageType: 'FloatStorage', storageNumel: 0, offset: 0, shape: [0, 5], stride: [5, 1] },
];
const STORAGES = [
  { key: '0', numel: 10, bytes: f32bytes(S0) },
  { key: '1', numel: 6, bytes: f32bytes(S1) },
  { key: '2', numel: 1, bytes: NBT },
  { key: '3', numel: 2, bytes: HALF },
  { key: '4', numel: 0, bytes: new Uint8Array(0) },
];

function checkCrafted(sd: Map<string, Tensor>): void {
  assert.deepEqual(
    [...sd.keys()],
    TENSORS.map((t) => t.name),
  );
  assert.deepEqual(sd.get('a.weight')!.shape, [2, 3]);
  assert.deepEqual(values(sd.get('a.weight')), [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]);
  assert.deepEqual(values(sd.get('a.bias')), [6.5, 7.5, 8.5, 9.5]);
  assert.deepEqual(sd.get('b.t')!.shape, [3, 2]);
  assert.deepEqual(values(sd.get('b.t')), [0, 3, 1, 4, 2, 5]);
  const nbt = sd.get('bn.num_batches_tracked')!;
  assert.equal(nbt.dtype, 'int64');
  assert.deepEqual(nbt.shape, []);
  assert.equal((nbt.data as BigInt64Array)[0], 805n);
  assert.equal(sd.get('h')!.dtype, 'float32');
  assert.deepEqual(values(sd.get('h')), [1, -2]);
  assert.deepEqual(sd.get('empty')!.shape, [0, 5]);
  assert.equal(sd.get('empty')!.data.length, 0);
  // Tensors sharing a storage must not alias each other's memory.
  (sd.get('a.weight')!.data as Float32Array).fill(0);
  assert.equal(values(sd.get('a.bias'))[0], 6.5);
}

test('legacy-format crafted checkpoint: shared storage, offsets, strides, int64, half, empty', () => {
  const file = legacyCheckpoint(stateDictPickle(TENSORS, 'legacy'), STORAGES);
  checkCrafted(readPth(file, 'crafted.pth'));
});

const ZIP_VARIANTS: Array<[string, ZipOptions]> = [
  ['stored', {}],
  ['stored, 64-byte aligned, zip64 end records', { align64: true, zip64: true }],
  ['deflate', { deflate: true }],
];
for (const [label, opts] of ZIP_VARIANTS) {
  test(`zip-format crafted checkpoint (${label})`, () => {
    const file = zipCheckpoint(stateDictPickle(TENSORS, 'zip'), STORAGES, opts);
    checkCrafted(readPth(file, 'crafted.pt'));
  });
}

test('legacy view storages: a window into a larger storage', () => {
  const t: FakeTensor[] = [
    { name: 'v', storageKey: '0', storageType: 'FloatStorage', storageNumel: 10, offset: 1, shape: [2], stride: [1], view: ['5', 2, 4] },
  ];
  const sd = readPth(legacyCheckpoint(stateDictPickle(t, 'legacy'), [STORAGES[0]!]), 'view.pth');
  assert.deepEqual(values(sd.get('v')), [S0[3], S0[4]]);
});

test('EXTD_32.pth repacked as a zip checkpoint reads the same', { skip: noShared('reference/weights/EXTD_32.pth') }, () => {
  const legacy = new Uint8Array(readFileSync(sharedPath('reference/weights/EXTD_32.pth')));
  // Walk the legacy layout to cut out the state_dict pickle and the raw storages.
  const stub = { call: (a: unknown[]) => a };
  const globals = {
    'collections.OrderedDict': { call: () => new PyDict() },
    'torch._utils._rebuild_tensor_v2': stub,
    'torch.FloatStorage': stub,
    'torch.LongStorage': stub,
  };
  const itemSize: Record<string, number> = {};
  let end = 0;
  for (let i = 0; i < 3; i++) end = unpickle(legacy, end, { source: 'x', globals }).end;
  const mainStart = end;
  end = unpickle(legacy, end, {
    source: 'x',
    globals,
    persistentLoad: (pid) => {
      const [, type, key] = pid as [string, unknown, string];
      itemSize[key] = globalName(type) === 'torch.LongStorage' ? 8 : 4;
      return pid;
    },
  }).end;
  const mainPickle = legacy.subarray(mainStart, end);
  const keysResult = unpickle(legacy, end, { source: 'x', globals });
  let pos = keysResult.end;
  const storages: Array<{ key: string; bytes: Uint8Array }> = [];
  for (const key of keysResult.value as string[]) {
    const n = Number(new DataView(legacy.buffer, legacy.byteOffset).getBigInt64(pos, true));
    const nbytes = n * itemSize[key]!; // every storage key was seen by persistentLoad
    storages.push({ key, bytes: legacy.subarray(pos + 8, pos + 8 + nbytes) });
    pos += 8 + nbytes;
  }
  assert.equal(pos, legacy.length, 'walked the whole legacy file');
  const fromZip = readPth(zipCheckpoint(mainPickle, storages, { align64: true }), 'repacked.pt');
  const fromLegacy = readPth(legacy, 'EXTD_32.pth');
  assert.deepEqual([...fromZip.keys()], [...fromLegacy.keys()]);
  for (const [k, t] of fromLegacy) {
    assert.deepEqual(fromZip.get(k)!.shape, t.shape, k);
    assert.ok(bytesOf(fromZip.get(k)!).equals(bytesOf(t)), k);
  }
});

// ---------------------------------------------------------------- malicious pickles

function osSystemPickle(module = 'os', name = 'system'): Uint8Array {
  return new PickleWriter().proto(2).global(module, name).str('touch /tmp/extd-pwned').tuple1().reduce().stop().bytes();
}

test('legacy checkpoint whose state_dict pickle calls os.system is refused', () => {
  const file = concat([legacyPreamble(), osSystemPickle()]);
  throwsExtd(
    () => readPth(file, 'evil.pth'),
    /^evil\.pth: refusing pickle global 'os\.system' \(allowed: collections\.OrderedDict, torch\._utils\._rebuild_tensor_v2, .*torch\.FloatStorage.*\) \(pickle offset \d+\)$/,
  );
});

test('a bare malicious pickle renamed .pth is refused at its first GLOBAL', () => {
  // Rejected at offset 2, the GLOBAL itself: before its argument or the REDUCE are even read.
  throwsExtd(() => readPth(osSystemPickle('posix', 'system'), 'evil.pth'), /refusing pickle global 'posix\.system' .*\(pickle offset 2\)$/);
  const popen = new PickleWriter().proto(2).global('subprocess', 'Popen').str('id').tuple1().newobj().stop().bytes();
  throwsExtd(() => readPth(popen, 'evil.pth'), /refusing pickle global 'subprocess\.Popen'/);
});

test('zip checkpoint whose data.pkl calls os.system (GLOBAL) or builtins.eval (STACK_GLOBAL) is refused', () => {
  throwsExtd(() => readPth(zipCheckpoint(osSystemPickle(), []), 'evil.pt'), /^evil\.pt: archive\/data\.pkl: refusing pickle global 'os\.system'/);
  const evalPickle = new PickleWriter()
    .proto(4)
    .shortStr('builtins')
    .memoize()
    .shortStr('eval')
    .memoize()
    .stackGlobal()
    .memoize()
    .shortStr('__import__("os").system("id")')
    .tuple1()
    .reduce()
    .stop()
    .bytes();
  throwsExtd(() => readPth(zipCheckpoint(evalPickle, []), 'evil.pt'), /refusing pickle global 'builtins\.eval'/);
});

test('a malicious global hidden inside an otherwise valid state_dict is refused', () => {
  // backward_hooks = os.system('...') instead of OrderedDict()
  const p = new PickleWriter()
    .proto(2)
    .global('collections', 'OrderedDict')
    .put()
    .emptyTuple()
    .reduce()
    .put()
    .mark()
    .str('w')
    .global('torch._utils', '_rebuild_tensor_v2')
    .mark()
    .mark()
    .str('storage')
    .global('torch', 'FloatStorage')
    .str('0')
    .str('cpu')
    .int(1)
    .tuple()
    .binpersid()
    .int(0)
    .intTuple([1])
    .intTuple([1])
    .bool(false)
    .global('nt', 'system')
    .str('calc')
    .tuple1()
    .reduce()
    .tuple()
    .reduce()
    .setitems()
    .stop()
    .bytes();
  throwsExtd(() => readPth(zipCheckpoint(p, [{ key: '0', bytes: f32bytes([1]) }]), 'evil.pt'), /refusing pickle global 'nt\.system'/);
});

test('allowed globals that are not functions cannot be called', () => {
  const p = new PickleWriter().proto(2).global('torch', 'FloatStorage').int(3).tuple1().reduce().stop().bytes();
  throwsExtd(() => readPth(zipCheckpoint(p, []), 'odd.pt'), /pickle REDUCE of global 'torch\.FloatStorage', which is not callable here/);
  // _rebuild_tensor_v2 only accepts storages that came from a persistent id.
  const fake = new PickleWriter()
    .proto(2)
    .emptyDict()
    .str('w')
    .global('torch._utils', '_rebuild_tensor_v2')
    .mark()
    .str('not a storage')
    .int(0)
    .intTuple([1])
    .intTuple([1])
    .bool(false)
    .none()
    .tuple()
    .reduce()
    .setitem()
    .stop()
    .bytes();
  throwsExtd(() => readPth(zipCheckpoint(fake, []), 'odd.pt'), /tensor storage is 'not a storage', expected a storage/);
});

test('unsupported and unknown opcodes are named with their offset', () => {
  throwsExtd(() => readPth(zipCheckpoint(new PickleWriter().proto(2).raw(0xff).bytes(), []), 'x.pt'), /unsupported pickle opcode 0xff \(pickle offset 2\)/);
  // INST names a class implicitly ("os\nsystem\n"); it is not implemented at all.
  const inst = new PickleWriter()
    .proto(2)
    .mark()
    .raw(0x69, ...new TextEncoder().encode('os\nsystem\n'))
    .stop()
    .bytes();
  throwsExtd(() => readPth(zipCheckpoint(inst, []), 'x.pt'), /unsupported pickle opcode 0x69 \(INST\) \(pickle offset 3\)/);
});

// ---------------------------------------------------------------- wrong and damaged inputs

test('readPth on a safetensors file, random bytes, or nothing', () => {
  const st = writeSafetensors({ w: { dtype: 'float32', shape: [1], data: new Float32Array(1) } });
  throwsExtd(
    () => readPth(st, 'm.safetensors'),
    /^m\.safetensors: not a PyTorch checkpoint \(it looks like a safetensors file\): expected a zip archive \('PK'\) or a pickle \(first byte 0x80\), got bytes /,
  );
  throwsExtd(() => readPth(new TextEncoder().encode('GIF89a.........'), 'x.gif'), /^x\.gif: not a PyTorch checkpoint: .* got bytes 47 49 46 38 39 61 2e 2e$/);
  throwsExtd(() => readPth(new Uint8Array(0), 'e.pth'), /not a PyTorch checkpoint: .* got an empty file/);
  // A pickle, but not torch's legacy magic number.
  throwsExtd(
    () =>
      readPth(
        smallPickle((p) => p.int(7)),
        'p.pkl',
      ),
    /not a PyTorch checkpoint: the first pickle is 7, not torch's magic number/,
  );
});

test('truncated legacy checkpoints name the storage or pickle offset', { skip: noShared('reference/weights/EXTD_32.pth') }, () => {
  const full = new Uint8Array(readFileSync(sharedPath('reference/weights/EXTD_32.pth')));
  throwsExtd(
    () => readPth(full.subarray(0, full.length - 100), 'cut.pth'),
    /^cut\.pth: truncated: storage '\d+' needs bytes \[\d+, \d+\), the file ends at \d+$/,
  );
  throwsExtd(
    () => readPth(full.subarray(0, 5000), 'cut.pth'),
    /^cut\.pth: pickle truncated: needs \d+ more bytes at offset \d+, the data ends at 5000 \(pickle offset \d+\)$/,
  );
});

test('truncated crafted legacy checkpoint: cut inside a storage count', () => {
  const file = legacyCheckpoint(stateDictPickle(TENSORS, 'legacy'), STORAGES);
  // The file ends with the storages: '0' (8 + 40 bytes), '1' (8 + 24), '2' (8 + 8), '3' (8 + 4), '4' (8 + 0).
  const storage1 = file.length - (32 + 16 + 12 + 8);
  throwsExtd(
    () => readPth(file.subarray(0, storage1 + 4), 'cut.pth'),
    new RegExp(`^cut\\.pth: truncated: storage '1' header needs 8 bytes at offset ${storage1}, the file ends at ${storage1 + 4}$`),
  );
  throwsExtd(
    () => readPth(file.subarray(0, storage1 + 8 + 10), 'cut.pth'),
    new RegExp(`^cut\\.pth: truncated: storage '1' needs bytes \\[${storage1 + 8}, ${storage1 + 32}\\), the file ends at ${storage1 + 18}$`),
  );
});

test('damaged zip checkpoints', () => {
  const good = zipCheckpoint(stateDictPickle(TENSORS, 'zip'), STORAGES);
  throwsExtd(() => readPth(good.subarray(0, good.length - 30), 'cut.pt'), /^cut\.pt: zip end-of-central-directory record not found/);
  // Flip one byte of storage '0' (float 0.5 = 00 00 00 3f) inside the STORED data.
  const bad = good.slice();
  const at = Buffer.from(bad).indexOf(Buffer.from(f32bytes(S0)));
  assert.ok(at > 0);
  bad[at + 3]! ^= 0x40;
  throwsExtd(() => readPth(bad, 'bad.pt'), /^bad\.pt: zip entry 'archive\/data\/0' fails its CRC-32 check/);
  // A storage file shorter than the pickle says.
  const short = zipCheckpoint(stateDictPickle(TENSORS, 'zip'), [{ key: '0', bytes: f32bytes(S0.slice(1)) }, ...STORAGES.slice(1)]);
  throwsExtd(() => readPth(short, 's.pt'), /storage '0' \(torch\.FloatStorage, 10 elements\) needs 40 bytes, zip entry 'archive\/data\/0' has 36/);
  // A missing storage file.
  throwsExtd(
    () => readPth(zipCheckpoint(stateDictPickle(TENSORS, 'zip'), STORAGES.slice(1)), 'm.pt'),
    /storage '0' is missing \(no zip entry 'archive\/data\/0'\)/,
  );
  // A DEFLATE entry claiming an impossible uncompressed size (central directory size field patched).
  const inflated = zipCheckpoint(stateDictPickle(TENSORS, 'zip'), STORAGES, { deflate: true });
  const cd = Buffer.from(inflated).indexOf(Buffer.from('PK\x01\x02', 'latin1'));
  new DataView(inflated.buffer, inflated.byteOffset).setUint32(cd + 24, 0x7fffffff, true);
  throwsExtd(
    () => readPth(inflated, 'zipbomb.pt'),
    /zip entry 'archive\/data\.pkl' records 2147483647 uncompressed bytes from \d+ compressed, more than DEFLATE can produce/,
  );
  // A zip that is not a torch checkpoint.
  throwsExtd(() => readPth(zipArchive([['doc/readme.txt', new Uint8Array(3)]]), 'z.zip'), /zip archive has no <dir>\/data\.pkl.*\(entries: doc\/readme\.txt\)/);
  const bigEndian = zipArchive([
    ['archive/data.pkl', stateDictPickle([], 'zip')],
    ['archive/byteorder', new TextEncoder().encode('big')],
  ]);
  throwsExtd(() => readPth(bigEndian, 'be.pt'), /byteorder is 'big'; only 'little' is supported/);
});

test('tensor reaching past its storage, and non-state_dict contents', () => {
  const over: FakeTensor[] = [{ name: 'w', storageKey: '0', storageType: 'FloatStorage', storageNumel: 10, offset: 2, shape: [3, 3], stride: [3, 1] }];
  throwsExtd(
    () => readPth(zipCheckpoint(stateDictPickle(over, 'zip'), [STORAGES[0]!]), 'o.pt'),
    /tensor 'w' \(shape \[3, 3\], stride \[3, 1\], offset 2\) reaches element 10 of storage '0', which has 10 elements/,
  );
  const expand: FakeTensor[] = [
    { name: 'e', storageKey: '0', storageType: 'FloatStorage', storageNumel: 10, offset: 0, shape: [100000, 1000], stride: [0, 0] },
  ];
  throwsExtd(
    () => readPth(zipCheckpoint(stateDictPickle(expand, 'zip'), [STORAGES[0]!]), 'x.pt'),
    /tensor 'e' \(shape \[100000, 1000\], stride \[0, 0\]\) expands storage '0' of 10 elements to 100000000; refusing more than/,
  );
  const small: FakeTensor[] = [{ name: 'e', storageKey: '0', storageType: 'FloatStorage', storageNumel: 10, offset: 8, shape: [3, 2], stride: [0, 1] }];
  assert.deepEqual(values(readPth(zipCheckpoint(stateDictPickle(small, 'zip'), [STORAGES[0]!]), 'x.pt').get('e')), [8.5, 9.5, 8.5, 9.5, 8.5, 9.5]);
  const list = new PickleWriter().proto(2).emptyList().mark().int(1).int(2).appends().stop().bytes();
  throwsExtd(() => readPth(zipCheckpoint(list, []), 'l.pt'), /checkpoint holds a tuple\/list of 2, expected a state_dict/);
  const mixed = new PickleWriter().proto(2).emptyDict().str('epoch').int(3).setitem().str('lr').int(1).setitem().stop().bytes();
  throwsExtd(
    () => readPth(zipCheckpoint(mixed, []), 'ckpt.pt'),
    /^ckpt\.pt: no model state_dict found: top-level keys 'epoch', 'lr'; expected a dict of name -> tensor, or one under 'state_dict', /,
  );
  const bigEndian = concat([legacyPreamble(false), stateDictPickle([], 'legacy')]);
  throwsExtd(() => readPth(bigEndian, 'be.pth'), /saved on a big-endian machine/);
});
