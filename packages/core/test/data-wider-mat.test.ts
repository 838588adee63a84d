import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MatFile, MatValue } from '../src/eval/mat5.js';
import { assertNoValidationImages, sameFaces, widerImageName, widerMatAnnotations, widerMatImageNames } from '../src/data/wider-mat.js';
import { formatWiderAnnotations, parseWiderAnnotations } from '../src/data/wider-annotations.js';
import { ExtdError } from '../src/utils/errors.js';

const str = (value: string): MatValue => ({ kind: 'char', dims: [1, value.length], value });
const cell = (cells: MatValue[]): MatValue => ({ kind: 'cell', dims: [cells.length, 1], cells });
/** rows x cols matrix from row-major numbers, stored column-major as MATLAB does. */
const mat = (rows: number[][], cls: 'int32' | 'uint8' = 'int32'): MatValue => {
  const r = rows.length,
    c = rows[0]?.length ?? 0;
  const data = new Float64Array(r * c);
  rows.forEach((row, i) => row.forEach((v, j) => (data[i + r * j] = v)));
  return { kind: 'numeric', class: cls, logical: false, dims: [r, c], data };
};
const labels = (values: number[]): MatValue =>
  mat(
    values.map((v) => [v]),
    'uint8',
  );

/** Two events: A with two images (2 faces, 1 face), B with two images without faces (0 x 4, and the official files' one row of zeros). */
function syntheticMat(): MatFile {
  const m: MatFile = new Map();
  m.set('event_list', cell([str('0--A'), str('7--B')]));
  m.set('file_list', cell([cell([str('0_A_1'), str('0_A_2')]), cell([str('7_B_9'), str('7_B_10')])]));
  m.set(
    'face_bbx_list',
    cell([
      cell([
        mat([
          [10, 20, 30, 40],
          [1, 2, 3, 4],
        ]),
        mat([[5, 6, 7, 8]]),
      ]),
      cell([{ kind: 'numeric', class: 'int32', logical: false, dims: [0, 4], data: new Float64Array(0) }, mat([[0, 0, 0, 0]])]),
    ]),
  );
  m.set('blur_label_list', cell([cell([labels([2, 0]), labels([1])]), cell([labels([]), labels([0])])]));
  m.set('invalid_label_list', cell([cell([labels([0, 1]), labels([0])]), cell([labels([]), labels([0])])]));
  return m;
}

test('widerMatAnnotations: boxes from the N x 4 column-major matrices, attributes from the label lists, .mat order', () => {
  const a = widerMatAnnotations(syntheticMat(), 'synthetic.mat');
  assert.deepEqual(
    a.map((x) => x.path),
    ['0--A/0_A_1.jpg', '0--A/0_A_2.jpg', '7--B/7_B_9.jpg', '7--B/7_B_10.jpg'],
  );
  assert.deepEqual(
    a[0]!.faces.map((f) => [f.x, f.y, f.w, f.h, f.blur, f.invalid, f.pose]),
    [
      [10, 20, 30, 40, 2, 0, 0],
      [1, 2, 3, 4, 0, 1, 0],
    ],
  );
  assert.deepEqual(a[2]!.faces, []);
  assert.deepEqual(a[3]!.faces, []);
  assert.match(formatWiderAnnotations([a[3]!]), /^7--B\/7_B_10.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n$/);
  // Round trip through the text format, as the extraction script writes it.
  const back = parseWiderAnnotations(formatWiderAnnotations(a), 'x');
  assert.ok(back.every((b, i) => b.path === a[i]!.path && sameFaces(b.faces, a[i]!.faces)));
  assert.ok(!sameFaces(a[0]!.faces, [a[0]!.faces[0]!, { ...a[0]!.faces[1]!, invalid: 0 }]));
});

test('widerMatAnnotations: a label list of the wrong length names the image', () => {
  const m = syntheticMat();
  m.set('pose_label_list', cell([cell([labels([0]), labels([0])]), cell([labels([]), labels([0])])]));
  assert.throws(
    () => widerMatAnnotations(m, 'synthetic.mat'),
    (e: Error) => e instanceof ExtdError && /pose_label_list of 0--A\/0_A_1 has 1 values for 2 faces/.test(e.message),
  );
});

test('assertNoValidationImages refuses a training list holding a validation image, in one line naming it', () => {
  const val = widerMatImageNames(syntheticMat(), 'val.mat');
  assert.deepEqual([...val], ['0_A_1', '0_A_2', '7_B_9', '7_B_10']);
  assert.equal(widerImageName('0--A/0_A_2.jpg'), '0_A_2');
  // Clean list: no error.
  assertNoValidationImages(['0--A/0_A_3.jpg', '7--B/7_B_11.jpg'], val, 'train');
  assert.throws(
    () => assertNoValidationImages(['0--A/0_A_3.jpg', '7--B/7_B_9.jpg', '0--A/0_A_1.jpg'], val, 'snapshot@b7e3719a'),
    (e: Error) => {
      assert.ok(e instanceof ExtdError);
      assert.ok(!e.message.includes('\n'));
      assert.equal(e.message, 'snapshot@b7e3719a: 2 images are WIDER validation images (first: 7--B/7_B_9.jpg); refusing to train on the validation set');
      return true;
    },
  );
  // A prefix of a validation name is not a match.
  assertNoValidationImages(['7--B/7_B_9x.jpg', '7_B_'], val, 'train');
});
