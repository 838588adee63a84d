import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadImageRgb } from '../src/image/node.js';
import { flipHorizontal, resizeBilinear } from '@extd/core/image/resize';
import { RGB_MEAN } from '@extd/core/image/types';
import { ExtdError } from '@extd/core/utils/errors';
import { GOLDEN_TAGS, goldenPixels, readGolden } from '../../../test-support/golden.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';

test('JPEG decoding of the golden images is identical to the stored pixels', { skip: noShared('reference', 'golden') }, async () => {
  for (const tag of GOLDEN_TAGS) {
    const { metadata } = readGolden(`${tag}.pixels.safetensors`);
    const ours = await loadImageRgb(sharedPath('wider', 'WIDER_val', 'images', metadata.image!));
    const gold = goldenPixels(tag);
    assert.equal(ours.width, gold.width);
    assert.equal(ours.height, gold.height);
    assert.ok(Buffer.compare(Buffer.from(ours.data), Buffer.from(gold.data)) === 0, `${tag}: pixels differ`);
  }
});

const tmp = mkdtempSync(join(tmpdir(), 'extd-image-'));

test('EXIF orientation is applied', async () => {
  // A 4x2 image, left half red, right half blue, stored with orientation 6 (rotate 90 deg clockwise to view).
  const raw = new Uint8Array(4 * 2 * 3);
  for (let y = 0; y < 2; y++) for (let x = 0; x < 4; x++) raw.set(x < 2 ? [255, 0, 0] : [0, 0, 255], (y * 4 + x) * 3);
  const path = join(tmp, 'rotated.png');
  await sharp(raw, { raw: { width: 4, height: 2, channels: 3 } })
    .withMetadata({ orientation: 6 })
    .toFile(path);
  const img = await loadImageRgb(path);
  assert.deepEqual([img.width, img.height], [2, 4]);
  // After a clockwise quarter turn the left half (red) is on top.
  assert.deepEqual([...img.data.subarray(0, 3)], [255, 0, 0]);
  assert.deepEqual([...img.data.subarray(img.data.length - 3)], [0, 0, 255]);
});

test('grayscale expands to RGB, transparency flattens onto the mean colour', async () => {
  const gray = join(tmp, 'gray.png');
  await sharp(Buffer.from([10, 200, 30, 40]), { raw: { width: 2, height: 2, channels: 1 } }).toFile(gray);
  const g = await loadImageRgb(gray);
  assert.deepEqual([...g.data.subarray(0, 6)], [10, 10, 10, 200, 200, 200]);
  const rgba = join(tmp, 'alpha.png');
  await sharp(Buffer.from([255, 255, 255, 0, 9, 8, 7, 255]), { raw: { width: 2, height: 1, channels: 4 } }).toFile(rgba);
  const a = await loadImageRgb(rgba);
  assert.deepEqual([...a.data], [...RGB_MEAN, 9, 8, 7]);
});

test('missing, directory and corrupt images give one-line errors naming the input', async () => {
  await assert.rejects(loadImageRgb(join(tmp, 'nope.jpg')), (e) => e instanceof ExtdError && e.message === `image not found: ${join(tmp, 'nope.jpg')}`);
  await assert.rejects(loadImageRgb(tmp), (e) => e instanceof ExtdError && e.message.includes(tmp));
  const bad = join(tmp, 'corrupt.jpg');
  writeFileSync(bad, Buffer.from('this is not a jpeg at all'));
  await assert.rejects(loadImageRgb(bad), (e) => e instanceof ExtdError && e.message.startsWith(`cannot decode image ${bad}:`) && !e.message.includes('\n'));
  const truncated = join(tmp, 'truncated.jpg');
  const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } })
    .jpeg()
    .toBuffer();
  writeFileSync(truncated, jpeg.subarray(0, jpeg.length / 2));
  await assert.rejects(loadImageRgb(truncated), (e) => e instanceof ExtdError && e.message.includes(truncated));
});

test('bilinear resize: half-pixel centres, constant images stay constant, identity', () => {
  // 2 px wide -> 4 px: source x = (d + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped)
  const src = { width: 2, height: 1, data: Uint8Array.from([0, 0, 0, 100, 100, 100]) };
  const up = resizeBilinear(src, 4, 1);
  assert.deepEqual(
    [...up.data].filter((_, i) => i % 3 === 0),
    [0, 25, 75, 100],
  );
  const flat = { width: 5, height: 3, data: new Uint8Array(45).fill(77) };
  assert.ok(resizeBilinear(flat, 11, 2).data.every((v) => v === 77));
  assert.deepEqual(resizeBilinear(src, 2, 1).data, src.data);
  const f = flipHorizontal(src);
  assert.deepEqual([...f.data], [100, 100, 100, 0, 0, 0]);
});
