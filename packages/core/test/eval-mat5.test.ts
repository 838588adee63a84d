import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { isMat5, matVersion, parseMat5, type MatValue } from '../src/eval/mat5.js';
import { ExtdError } from '../src/utils/errors.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';

import { cat, f64, header, i32, matrix, small, tag, u16 } from '../../../test-support/mat5-writer.js';

const num = (v: MatValue | undefined): number[] => {
  assert.equal(v?.kind, 'numeric');
  return Array.from((v as { data: Float64Array }).data);
};

test('reads doubles, int32 stored as smaller types, chars, cells (with an empty cell) and compressed elements', () => {
  const dbl = matrix(6, [2, 3], 'mat', tag(9, f64(1, 2, 3, 4, 5, 6.5)));
  // An int32 class array whose values MATLAB stored as miUINT8 (it does this to save space).
  const int = matrix(12, [1, 2], 'ints', small(2, new Uint8Array([7, 200])));
  const chr = matrix(4, [1, 5], 'label', tag(4, u16('hello')));
  const cell = matrix(1, [3, 1], 'cells', matrix(4, [1, 2], '', tag(4, u16('ab'))), tag(14, new Uint8Array(0)), matrix(6, [1, 1], '', tag(9, f64(-1.25))));
  const compressed = tag(15, deflateSync(cell), false);
  const file = cat(header(), dbl, int, chr, compressed);
  assert.equal(isMat5(file), true);
  const m = parseMat5(file, 'mem.mat');
  assert.deepEqual([...m.keys()], ['mat', 'ints', 'label', 'cells']);
  const mat = m.get('mat')!;
  assert.equal(mat.kind, 'numeric');
  assert.deepEqual(mat.dims, [2, 3]);
  assert.deepEqual(num(mat), [1, 2, 3, 4, 5, 6.5]);
  assert.equal(mat.kind === 'numeric' && mat.class, 'double');
  assert.deepEqual(num(m.get('ints')), [7, 200]);
  assert.deepEqual(m.get('label'), { kind: 'char', dims: [1, 5], value: 'hello' });
  const c = m.get('cells')!;
  assert.equal(c.kind, 'cell');
  if (c.kind !== 'cell') return;
  assert.deepEqual(c.cells[0], { kind: 'char', dims: [1, 2], value: 'ab' });
  assert.deepEqual(c.cells[1]!.dims, [0, 0]);
  assert.deepEqual(num(c.cells[2]), [-1.25]);
});

test('malformed files: clear errors with file and byte position', () => {
  const good = cat(header(), matrix(6, [2, 2], 'x', tag(9, f64(1, 2, 3, 4))));
  assert.throws(() => parseMat5(good.subarray(0, 100), 'a.mat'), /a\.mat: 100 bytes, too short/);
  assert.throws(
    () => parseMat5(good.subarray(0, good.length - 8), 'a.mat'),
    (e: unknown) => e instanceof ExtdError && /a\.mat: byte \d+: .*truncated/.test(e.message),
  );
  const wrongCount = cat(header(), matrix(6, [3, 2], 'x', tag(9, f64(1, 2, 3, 4))));
  assert.throws(() => parseMat5(wrongCount, 'b.mat'), /b\.mat: byte \d+: array 'x' of dimensions 3x2 holds 4 values, expected 6/);
  const badZip = cat(header(), tag(15, new Uint8Array([1, 2, 3, 4, 5]), false));
  assert.throws(() => parseMat5(badZip, 'c.mat'), /c\.mat: byte 128: compressed element does not inflate/);
  const v73 = header();
  v73.set([0x00, 0x02], 124);
  assert.equal(matVersion(v73), 0x0200);
  assert.throws(() => parseMat5(v73, 'd.mat'), /d\.mat: byte 124: .*0x200.*HDF5/);
  const sparse = cat(header(), matrix(5, [2, 2], 'sp', tag(9, f64(1))));
  assert.throws(() => parseMat5(sparse, 'e.mat'), /e\.mat: byte 136: array 'sp' has class sparse/);
});

test('reads the official WIDER ground truth (3,226 val images in 61 events)', { skip: noShared('wider/eval_tools/ground_truth/wider_hard_val.mat') }, () => {
  const p = sharedPath('wider/eval_tools/ground_truth/wider_hard_val.mat');
  const m = parseMat5(readFileSync(p), p);
  const events = m.get('event_list')!;
  const files = m.get('file_list')!;
  const boxes = m.get('face_bbx_list')!;
  const keep = m.get('gt_list')!;
  assert.ok(events.kind === 'cell' && files.kind === 'cell' && boxes.kind === 'cell' && keep.kind === 'cell');
  assert.equal(events.cells.length, 61);
  let images = 0;
  for (const f of files.cells) images += f.kind === 'cell' ? f.cells.length : 0;
  assert.equal(images, 3226);
  const b0 = (boxes.cells[0] as { cells: MatValue[] }).cells[0]!;
  assert.equal(b0.kind, 'numeric');
  assert.equal(b0.dims[1], 4);
  // Hard-setting indices are 1-based and within the image's face count.
  const k0 = (keep.cells[0] as { cells: MatValue[] }).cells[0]!;
  for (const i of num(k0)) assert.ok(i >= 1 && i <= b0.dims[0]!);
});
