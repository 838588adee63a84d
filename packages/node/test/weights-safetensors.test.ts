import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExtdError } from '@extd/core/utils/errors';
import type { Tensor } from '@extd/core/utils/tensor';
import { readSafetensors, writeSafetensors } from '@extd/core/weights/safetensors';
import { detectWeightsFormat } from '@extd/core/weights/format';
import { readWeightsFile, writeSafetensorsFile } from '../src/weights/files-node.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';
import { throwsExtd } from '../../../test-support/expect-error.js';

const enc = new TextEncoder();

/** A safetensors file from a header object (or raw header text) and a data section. */
function craft(header: unknown, data: Uint8Array = new Uint8Array(0), declaredLen?: bigint): Uint8Array {
  const json = enc.encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declaredLen ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function bytesOf(t: Tensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function assertSameTensors(a: Map<string, Tensor>, b: Map<string, Tensor>): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [k, t] of a) {
    const u = b.get(k)!;
    assert.equal(u.dtype, t.dtype, k);
    assert.deepEqual(u.shape, t.shape, k);
    assert.ok(bytesOf(u).equals(bytesOf(t)), `${k}: data differs`);
  }
}

const ALL_DTYPES = {
  f32: { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1.5, -0, NaN, Infinity, -3.25e-39, 3.4e38]) },
  f64: { dtype: 'float64', shape: [3], data: Float64Array.from([Math.PI, -1e-310, 2 ** 60]) },
  i64: { dtype: 'int64', shape: [2], data: BigInt64Array.from([-(2n ** 63n), 2n ** 62n + 7n]) },
  i32: { dtype: 'int32', shape: [1, 2], data: Int32Array.from([-(2 ** 31), 2 ** 31 - 1]) },
  i16: { dtype: 'int16', shape: [3], data: Int16Array.from([-32768, 0, 32767]) },
  i8: { dtype: 'int8', shape: [2], data: Int8Array.from([-128, 127]) },
  u8: { dtype: 'uint8', shape: [3], data: Uint8Array.from([0, 128, 255]) },
  flags: { dtype: 'bool', shape: [2, 2], data: Uint8Array.from([1, 0, 0, 1]) },
  empty: { dtype: 'float32', shape: [0, 3], data: new Float32Array(0) },
  scalar: { dtype: 'float64', shape: [], data: Float64Array.from([-7.5]) },
} satisfies Record<string, Tensor>;

test('safetensors round trip: every dtype, empty tensors, scalars, metadata', () => {
  const meta = { arch: 'EXTD-FPN-32-PReLU', note: 'ünïcode ok' };
  const bytes = writeSafetensors(ALL_DTYPES, meta);
  const { tensors, metadata } = readSafetensors(bytes, 'rt.safetensors');
  assertSameTensors(new Map(Object.entries(ALL_DTYPES)), tensors);
  assert.deepEqual(metadata, meta);
  // Data is copied into fresh, aligned arrays, not views of the file.
  for (const t of tensors.values()) assert.equal(t.data.byteOffset, 0);
  bytes.fill(0);
  assert.equal((tensors.get('u8')!.data as Uint8Array)[2], 255);
});

test('safetensors writer: header padded to 8 with spaces, every tensor aligned to its item size', () => {
  const bytes = writeSafetensors({ a: ALL_DTYPES.u8, b: ALL_DTYPES.f64, c: ALL_DTYPES.i16, d: ALL_DTYPES.i64 });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  assert.equal(text, text.trimEnd() + ' '.repeat(text.length - text.trimEnd().length));
  const header = JSON.parse(text) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const size: Record<string, number> = { U8: 1, F64: 8, I16: 2, I64: 8 };
  for (const [name, e] of Object.entries(header)) {
    assert.equal(e.data_offsets[0] % size[e.dtype]!, 0, `${name} misaligned at ${e.data_offsets[0]}`);
  }
  assert.equal(readSafetensors(bytes).tensors.size, 4);
});

test('safetensors with no tensors and no metadata', () => {
  const bytes = writeSafetensors(new Map());
  const r = readSafetensors(bytes);
  assert.equal(r.tensors.size, 0);
  assert.deepEqual(r.metadata, {});
});

test('safetensors F16 and BF16 are widened to float32 exactly', () => {
  // half: 1.0, -2.0, 65504 (max), 2^-24 (smallest subnormal); bfloat16: 1.0, -3.0
  const half = Uint8Array.from([0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00]);
  const bf = Uint8Array.from([0x80, 0x3f, 0x40, 0xc0]);
  const data = new Uint8Array([...half, ...bf]);
  const file = craft({ h: { dtype: 'F16', shape: [4], data_offsets: [0, 8] }, b: { dtype: 'BF16', shape: [2], data_offsets: [8, 12] } }, data);
  const t = readSafetensors(file).tensors;
  assert.equal(t.get('h')!.dtype, 'float32');
  assert.deepEqual([...(t.get('h')!.data as Float32Array)], [1, -2, 65504, 2 ** -24]);
  assert.deepEqual([...(t.get('b')!.data as Float32Array)], [1, -3]);
});

test('safetensors reader returns tensors in file data order', () => {
  const data = new Uint8Array(12);
  const file = craft(
    {
      z: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      '1': { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
      a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
    },
    data,
  );
  assert.deepEqual([...readSafetensors(file).tensors.keys()], ['z', 'a', '1']);
});

test('safetensors malformed inputs -> one-line ExtdError naming the file and tensor', () => {
  const src = 'weights/x.safetensors';
  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const d8 = new Uint8Array(8);
  throwsExtd(() => readSafetensors(new Uint8Array(5), src), /^weights\/x\.safetensors: file is 5 bytes, too short/);
  throwsExtd(() => readSafetensors(craft({ a: ok }, d8, 1000n), src), /header length 1000 exceeds the \d+ bytes after the length field/);
  throwsExtd(() => readSafetensors(craft({ a: ok }, d8, 2n ** 63n), src), /header length 9223372036854775808 exceeds/);
  throwsExtd(() => readSafetensors(craft('{"a": ', d8), src), /header is not valid UTF-8 JSON/);
  throwsExtd(() => readSafetensors(craft('[1, 2]', d8), src), /header must be a JSON object, got an array/);
  throwsExtd(
    () => readSafetensors(craft({ 'conf.0.bias': { dtype: 'F32', shape: [5], data_offsets: [10, 30] } }, new Uint8Array(24)), src),
    /^weights\/x\.safetensors: tensor 'conf\.0\.bias' data_offsets \[10, 30\] exceed the data section \(24 bytes\)$/,
  );
  throwsExtd(
    () => readSafetensors(craft({ a: { ...ok, dtype: 'F8_E4M3' } }, d8), src),
    /tensor 'a' has dtype "F8_E4M3" \(supported: F32, F64, I64, I32, I16, I8, U8, BOOL, F16, BF16\)/,
  );
  throwsExtd(() => readSafetensors(craft({ a: { ...ok, dtype: 'toString' } }, d8), src), /tensor 'a' has dtype "toString"/);
  throwsExtd(
    () => readSafetensors(craft({ a: { ...ok, shape: [3] } }, d8), src),
    /tensor 'a' has 8 bytes \(data_offsets \[0, 8\]\) but dtype F32 shape \[3\] needs 12/,
  );
  throwsExtd(() => readSafetensors(craft({ a: { ...ok, shape: [-2] } }, d8), src), /tensor 'a' has shape \[-2\], expected an array of non-negative integers/);
  throwsExtd(() => readSafetensors(craft({ a: { ...ok, data_offsets: [8, 0] } }, d8), src), /tensor 'a' data_offsets \[8, 0\] end before they begin/);
  throwsExtd(() => readSafetensors(craft({ a: { ...ok, data_offsets: [0] } }, d8), src), /tensor 'a' has data_offsets \[0\], expected \[begin, end\]/);
  throwsExtd(
    () => readSafetensors(craft({ a: ok, b: { ...ok, data_offsets: [4, 12] } }, new Uint8Array(12)), src),
    /tensor 'b' data_offsets \[4, 12\] overlap tensor 'a'/,
  );
  throwsExtd(() => readSafetensors(craft({ a: { ...ok, data_offsets: [4, 12] } }, new Uint8Array(12)), src), /tensor 'a' .* leave a gap of 4 bytes/);
  throwsExtd(() => readSafetensors(craft({ a: ok }, new Uint8Array(10)), src), /data section is 10 bytes but the tensors cover only 8 \(2 trailing bytes\)/);
  throwsExtd(() => readSafetensors(craft({ a: ok, __metadata__: { k: 3 } }, d8), src), /__metadata__ entry 'k' is 3, must be a string/);
  throwsExtd(() => readSafetensors(craft({ a: 'F32' }, d8), src), /tensor 'a' entry must be an object/);
});

test('safetensors truncated file: a valid file cut anywhere fails cleanly', () => {
  const bytes = writeSafetensors({ w: ALL_DTYPES.f32, b: ALL_DTYPES.i64 });
  for (const cut of [3, 8, 20, bytes.length - 30, bytes.length - 1]) {
    assert.throws(() => readSafetensors(bytes.subarray(0, cut), 'cut.safetensors'), ExtdError, `cut at ${cut}`);
  }
});

test('safetensors writer rejects tensors whose data does not match the shape', () => {
  throwsExtd(
    () => writeSafetensors({ w: { dtype: 'float32', shape: [2, 2], data: new Float32Array(3) } }),
    /tensor 'w' has 3 elements but shape \[2, 2\] needs 4/,
  );
  throwsExtd(() => writeSafetensors({ __metadata__: ALL_DTYPES.u8 }), /reserved/);
});

test('reference safetensors: rewrite is lossless and byte-identical', { skip: noShared('reference/weights') }, () => {
  for (const w of [32, 48, 64]) {
    const file = new Uint8Array(readFileSync(sharedPath(`reference/weights/extd-fpn-${w}-prelu.safetensors`)));
    const ref = readSafetensors(file, `extd-fpn-${w}`);
    assert.equal(ref.metadata.width, String(w));
    const again = writeSafetensors(ref.tensors, ref.metadata);
    const back = readSafetensors(again, 'rewritten');
    assertSameTensors(ref.tensors, back.tensors);
    assert.deepEqual(back.metadata, ref.metadata);
    assert.deepEqual([...back.tensors.keys()], [...ref.tensors.keys()], 'order preserved');
    // The reference writer's conventions (insertion order, metadata last, space padding) are reproduced exactly.
    assert.ok(Buffer.from(again).equals(Buffer.from(file)), `extd-fpn-${w}: rewritten bytes differ`);
  }
});

test('readWeightsFile: format by content, file errors name the path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-weights-'));
  try {
    const st = join(dir, 'model.pth'); // misleading extension on purpose
    writeSafetensorsFile(st, { x: ALL_DTYPES.f32 }, { a: 'b' });
    const r = await readWeightsFile(st);
    assert.equal(r.format, 'safetensors');
    assert.deepEqual(r.metadata, { a: 'b' });
    assertSameTensors(new Map([['x', ALL_DTYPES.f32]]), r.tensors);

    const missing = join(dir, 'nope.safetensors');
    await assert.rejects(readWeightsFile(missing), (e: unknown) => e instanceof ExtdError && e.message === `model file not found: ${missing}`);
    mkdirSync(join(dir, 'sub'));
    await assert.rejects(readWeightsFile(join(dir, 'sub')), /sub: is a directory/);
    writeFileSync(join(dir, 'empty'), '');
    await assert.rejects(readWeightsFile(join(dir, 'empty')), /empty: file is empty \(0 bytes\)/);
    writeFileSync(join(dir, 'junk'), 'hello world, not weights');
    await assert.rejects(
      readWeightsFile(join(dir, 'junk')),
      (e: unknown) => e instanceof ExtdError && /junk: not a weights file: starts with bytes 68 65 6c 6c/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readWeightsFile reads the released .pth by content', { skip: noShared('reference/weights/EXTD_32.pth') }, async () => {
  const r = await readWeightsFile(sharedPath('reference/weights/EXTD_32.pth'));
  assert.equal(r.format, 'pth');
  assert.equal(r.tensors.size, 213);
});

test('detectWeightsFormat', () => {
  assert.equal(detectWeightsFormat(writeSafetensors({ a: ALL_DTYPES.u8 })), 'safetensors');
  assert.equal(detectWeightsFormat(Uint8Array.from([0x80, 0x02, 0x8a])), 'pth');
  assert.equal(detectWeightsFormat(Uint8Array.from([0x50, 0x4b, 0x03, 0x04, 0])), 'pth');
  assert.equal(detectWeightsFormat(enc.encode('{"not": "weights"}')), undefined);
  assert.equal(detectWeightsFormat(new Uint8Array(0)), undefined);
});

test('a Node Buffer input (whose slice() is a view) reads the same as a Uint8Array', () => {
  const bytes = writeSafetensors({ a: { dtype: 'float32', shape: [3], data: Float32Array.from([1, 2, 3]) } });
  // Put the file at a non-zero offset inside a larger pooled buffer, as readFileSync may.
  const pooled = Buffer.alloc(bytes.length + 13, 7);
  pooled.set(bytes, 13);
  const { tensors } = readSafetensors(pooled.subarray(13), 'buffer');
  assert.deepEqual([...(tensors.get('a')!.data as Float32Array)], [1, 2, 3]);
});
