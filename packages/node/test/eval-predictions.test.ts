import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatPredictionFile, imageKey, parsePredictionFile } from '@extd/core/eval/predictions';
import { listPredictionKeys, readPredictions, writePredictions } from '../src/eval/predictions-node.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';

test('writes the official format: w = x2 - x1 + 1, one decimal, three for scores, sorted by score', () => {
  const text = formatPredictionFile('0--Parade/0_P_1.jpg', [10, 20, 29, 59, 1.04, 2.26, 3.5, 4], [0.2, 0.9]);
  assert.equal(text, '0--Parade/0_P_1.jpg\n2\n1.0 2.3 3.5 2.7 0.900\n10.0 20.0 20.0 40.0 0.200\n');
  assert.equal(formatPredictionFile('a/b.jpg', [], []), 'a/b.jpg\n0\n');
});

test('parses files with extra whitespace and CRLF; names file and line on errors', () => {
  const p = parsePredictionFile('b\r\n2\r\n 1 2 3 4  0.5 \r\n5 6 7 8 0.25\r\n\r\n', 'x.txt');
  assert.deepEqual(Array.from(p.boxes), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(Array.from(p.scores), [0.5, 0.25]);
  assert.equal(parsePredictionFile('b\n0\n', 'x.txt').scores.length, 0);
  assert.throws(() => parsePredictionFile('b\n', 'x.txt'), /x\.txt: 1 line/);
  assert.throws(() => parsePredictionFile('b\nzz\n', 'x.txt'), /x\.txt:2: box count 'zz'/);
  assert.throws(() => parsePredictionFile('b\n3\n1 2 3 4 5\n', 'x.txt'), /x\.txt:2: box count says 3, the file has 1/);
  assert.throws(() => parsePredictionFile('b\n1\n1 2 3 4\n', 'x.txt'), /x\.txt:3: 4 fields/);
  assert.throws(() => parsePredictionFile('b\n2\n1 2 3 4 5\n1 2 nan? 4 5\n', 'x.txt'), /x\.txt:4: field 3 is 'nan\?'/);
});

test('image keys', () => {
  assert.equal(imageKey('0--Parade/a.jpg'), '0--Parade/a');
  assert.equal(imageKey('0--Parade\\a.txt'), '0--Parade/a');
  assert.equal(imageKey('./e/a'), 'e/a');
});

test('folder round trip: write atomically, list, read back', () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-pred-'));
  try {
    writePredictions(dir, 'ev/one.jpg', [0, 0, 9, 9], [0.5]);
    writePredictions(dir, 'ev/two', [], []);
    assert.deepEqual(listPredictionKeys(dir), ['ev/one', 'ev/two']);
    assert.deepEqual(readdirSync(join(dir, 'ev')).sort(), ['one.txt', 'two.txt']); // no temp files left
    assert.equal(readFileSync(join(dir, 'ev/two.txt'), 'utf8'), 'ev/two.jpg\n0\n');
    const m = readPredictions(dir, ['ev/one', 'ev/missing']);
    assert.deepEqual([...m.keys()], ['ev/one']);
    assert.deepEqual(Array.from(m.get('ev/one')!.boxes), [0, 0, 10, 10]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('reads the shared dev108 prediction files', { skip: noShared('reference/wider_pred/dev108-extd64-single') }, () => {
  const dir = sharedPath('reference/wider_pred/dev108-extd64-single');
  const keys = listPredictionKeys(dir);
  assert.equal(keys.length, 108);
  const m = readPredictions(dir, keys);
  for (const [, p] of m) for (let i = 1; i < p.scores.length; i++) assert.ok(p.scores[i - 1]! >= p.scores[i]!);
});
