import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatWiderAnnotations, parseWiderAnnotations } from '@extd/core/data/wider-annotations';
import { readWiderAnnotations } from '../src/data/wider-annotations-node.js';
import { ExtdError } from '@extd/core/utils/errors';
import { noShared, sharedPath } from '../../../test-support/shared.js';

const SAMPLE = [
  '0--Parade/0_Parade_a.jpg',
  '2',
  '281 303 20 36 2 0 0 0 2 0 ',
  '10 20 0 5 0 1 0 1 0 1',
  '1--Handshaking/1_b.jpg',
  '0',
  '0 0 0 0 0 0 0 0 0 0 ',
  '1--Handshaking/1_c.jpg',
  '1',
  '1 2 3 4 0 0 1 0 1 0',
  '',
].join('\n');

test('parses faces, N = 0 placeholder rows and keeps degenerate boxes', () => {
  const a = parseWiderAnnotations(SAMPLE, 'sample');
  assert.equal(a.length, 3);
  assert.equal(a[0]!.path, '0--Parade/0_Parade_a.jpg');
  assert.deepEqual(a[0]!.faces[0], { x: 281, y: 303, w: 20, h: 36, blur: 2, expression: 0, illumination: 0, invalid: 0, occlusion: 2, pose: 0 });
  assert.deepEqual(a[0]!.faces[1], { x: 10, y: 20, w: 0, h: 5, blur: 0, expression: 1, illumination: 0, invalid: 1, occlusion: 0, pose: 1 });
  assert.deepEqual(a[1], { path: '1--Handshaking/1_b.jpg', faces: [] });
  assert.equal(a[2]!.faces[0]!.illumination, 1);
});

test('N = 0 without the placeholder row, and CRLF line ends', () => {
  const a = parseWiderAnnotations('A/a.jpg\r\n0\r\nB/b.jpg\r\n1\r\n1 2 3 4 0 0 0 0 0 0\r\n', 'crlf');
  assert.deepEqual(
    a.map((r) => [r.path, r.faces.length]),
    [
      ['A/a.jpg', 0],
      ['B/b.jpg', 1],
    ],
  );
});

test('formatWiderAnnotations writes what parseWiderAnnotations reads back (N = 0 placeholder included)', () => {
  const parsed = parseWiderAnnotations(SAMPLE, 'sample');
  const text = formatWiderAnnotations(parsed);
  assert.deepEqual(parseWiderAnnotations(text, 'formatted'), parsed);
  assert.equal(text.split('\n')[6], '0 0 0 0 0 0 0 0 0 0');
  assert.equal(formatWiderAnnotations([]), '');
});

test('malformed input names the source and line', () => {
  assert.throws(
    () => parseWiderAnnotations('A/a.jpg\nx\n', 'f.txt'),
    (e: unknown) => e instanceof ExtdError && /f\.txt:2: .*count/.test(e.message),
  );
  assert.throws(() => parseWiderAnnotations('A/a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n', 'f.txt'), /f\.txt: unexpected end of file .*2 faces announced, 1 found/);
  assert.throws(() => parseWiderAnnotations('A/a.jpg\n1\n1 2 3 4 0 0\n', 'f.txt'), /f\.txt:3: .*6 fields/);
  assert.throws(() => parseWiderAnnotations('A/a.jpg\n1\n1 2 3 q 0 0 0 0 0 0\n', 'f.txt'), /f\.txt:3: field h .*'q'/);
  assert.throws(() => parseWiderAnnotations('hello\n', 'f.txt'), /f\.txt:1: expected an image path/);
  assert.throws(() => readWiderAnnotations('/nonexistent/x.txt'), /\/nonexistent\/x\.txt/);
});

test('reads the shared val annotations (646 images, 6,178 faces)', { skip: noShared('wider/wider_face_split/wider_face_val_bbx_gt.txt') }, () => {
  const a = readWiderAnnotations(sharedPath('wider/wider_face_split/wider_face_val_bbx_gt.txt'));
  assert.equal(a.length, 646);
  assert.equal(
    a.reduce((s, r) => s + r.faces.length, 0),
    6178,
  );
  assert.equal(a[0]!.path, '0--Parade/0_Parade_marchingband_1_379.jpg');
  assert.equal(a[0]!.faces.length, 26);
});
