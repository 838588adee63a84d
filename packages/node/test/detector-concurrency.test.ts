/**
 * One detector, several calls in flight (servers, UIs): every call must get
 * the result of its own input, for same-size and different-size inputs,
 * through detect, detectPass and forward. And the public results stay inside
 * the image; a disposed detector says so.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { ExtdError, createDetector, loadImageRgb, type Face, type NodeDetector, type RgbImage } from '../src/index.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';

const MODEL = ['reference', 'weights', 'EXTD_32.pth'] as const;
const PHOTO = ['wider', 'WIDER_val', 'images', '1--Handshaking', '1_Handshaking_Handshaking_1_107.jpg'] as const;
const skip = noShared(...MODEL) || noShared(...PHOTO);

let det: NodeDetector;
let photo: RgbImage;
const tmp = mkdtempSync(join(tmpdir(), 'extd-concurrency-'));

before(async () => {
  if (skip) return;
  det = await createDetector({ model: sharedPath(...MODEL), threads: 1 });
  photo = await loadImageRgb(sharedPath(...PHOTO));
});
after(async () => {
  await det?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const rounded = (faces: Face[]) => faces.map((f) => [f.box.x, f.box.y, f.box.width, f.box.height].map(Math.round));

function grey(width: number, height: number): RgbImage {
  return { data: new Uint8Array(width * height * 3).fill(128), width, height };
}

/** A window of `image` (x, y, width, height). */
function crop(image: RgbImage, x: number, y: number, width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let r = 0; r < height; r++) data.set(image.data.subarray(((y + r) * image.width + x) * 3, ((y + r) * image.width + x + width) * 3), r * width * 3);
  return { data, width, height };
}

/** `image` mirrored left-right. */
function mirror(image: RgbImage): RgbImage {
  const { width, height } = image;
  const data = new Uint8Array(width * height * 3);
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) data.set(image.data.subarray((r * width + c) * 3, (r * width + c) * 3 + 3), (r * width + width - 1 - c) * 3);
  }
  return { data, width, height };
}

test('the issue recipe: photo and a flat grey frame of its size, in flight together, each get their own result', { skip }, async () => {
  const B = grey(photo.width, photo.height);
  const a = await det.detect(photo);
  const b = await det.detect(B);
  assert.deepEqual(rounded(a), [[392, 178, 182, 249]], 'sequential result of the photo');
  assert.deepEqual(b, [], 'sequential result of the grey frame');
  assert.deepEqual(await Promise.all([det.detect(photo), det.detect(B)]), [a, b]);
  assert.deepEqual(await Promise.all([det.detect(B), det.detect(photo)]), [b, a]);
});

test('three same-size JPEG files passed by path, in flight together', { skip }, async () => {
  // 400x500 windows: the face, a mirrored face, a grey frame (smaller than the photo to keep the test quick).
  const face = crop(photo, 300, 100, 400, 500);
  const files = [join(tmp, 'face.jpg'), join(tmp, 'mirrored.jpg'), join(tmp, 'grey.jpg')];
  const images = [face, mirror(face), grey(400, 500)];
  await Promise.all(
    images.map((im, i) =>
      sharp(im.data, { raw: { width: 400, height: 500, channels: 3 } })
        .jpeg({ quality: 95 })
        .toFile(files[i]!),
    ),
  );
  const sequential: Face[][] = [];
  for (const f of files) sequential.push(await det.detect(f));
  assert.equal(sequential[0]!.length, 1, 'one face in the window');
  assert.equal(sequential[1]!.length, 1, 'one face in the mirrored window');
  assert.notDeepEqual(rounded(sequential[0]!), rounded(sequential[1]!), 'the mirrored face is elsewhere');
  assert.deepEqual(sequential[2], []);
  assert.deepEqual(await Promise.all(files.map((f) => det.detect(f))), sequential);
  assert.deepEqual(await Promise.all([...files].reverse().map((f) => det.detect(f))), [...sequential].reverse());
});

test('detect, detectPass and forward in flight on inputs of the same and of different sizes equal the sequential results', { skip }, async () => {
  const face = crop(photo, 300, 100, 400, 500);
  const inputs = [face, grey(400, 500), mirror(face), crop(photo, 250, 50, 320, 360), grey(320, 360), crop(photo, 350, 150, 256, 256)];
  const pass = { scale: 1, scoreThreshold: 0.05, nmsThreshold: 0.3, maxFaces: 750 };

  const seqDetect: Face[][] = [];
  const seqPass = [];
  const seqForward = [];
  for (const im of inputs) {
    seqDetect.push(await det.detect(im));
    seqPass.push(await det.detectPass(im, pass));
    seqForward.push(await det.forward(im));
  }
  assert.ok(seqDetect.filter((f) => f.length > 0).length >= 3, 'the windows with the face have detections');

  const [detects, passes, forwards] = await Promise.all([
    Promise.all(inputs.map((im) => det.detect(im))),
    Promise.all(inputs.map((im) => det.detectPass(im, pass))),
    Promise.all(inputs.map((im) => det.forward(im))),
  ]);
  assert.deepEqual(detects, seqDetect, 'detect');
  assert.deepEqual(passes, seqPass, 'detectPass');
  for (let i = 0; i < inputs.length; i++) {
    assert.deepEqual(forwards[i]!.loc, seqForward[i]!.loc, `forward loc of input ${i}`);
    assert.deepEqual(forwards[i]!.conf, seqForward[i]!.conf, `forward conf of input ${i}`);
  }
});

test('raw pixels are read when detect() is called: the caller may refill its buffer with the next frame at once', { skip }, async () => {
  const face = crop(photo, 300, 100, 400, 500);
  const expected = await det.detect(face);
  assert.equal(expected.length, 1);
  // One buffer, reused for each frame as a video loop does, without awaiting in between.
  const frame = { data: face.data.slice(), width: 400, height: 500 };
  const first = det.detect(frame);
  frame.data.fill(128);
  const second = det.detect(frame);
  assert.deepEqual(await first, expected);
  assert.deepEqual(await second, []);
});

test('a face cut by the left edge: detect() clips the box to the image, detectPass() does not', { skip }, async () => {
  // The crop: left 470, top 100, width 400, height 500; `extd detect` reported x=-12.1.
  const cut = crop(photo, 470, 100, 400, 500);
  const raw = await det.detectPass(cut, { scale: 1, scoreThreshold: 0.5, nmsThreshold: 0.3, maxFaces: 750 });
  assert.equal(raw.scores.length, 1);
  const [x1, y1, x2, y2] = raw.boxes;
  assert.ok(x1! < -12.05 && x1! >= -12.15, `unclipped left edge ${x1}`);
  const faces = await det.detect(cut);
  assert.equal(faces.length, 1);
  const { box } = faces[0]!;
  assert.equal(box.x, 0);
  assert.ok(Math.abs(box.x + box.width - x2!) < 1e-4, 'right edge unchanged');
  assert.ok(Math.abs(box.y - y1!) < 1e-4 && Math.abs(box.y + box.height - y2!) < 1e-4, 'inside vertically: unchanged');
  // Every box of every call stays inside its image, whatever the threshold.
  for (const im of [cut, photo, crop(photo, 600, 300, 300, 200)]) {
    for (const f of await det.detect(im, { scoreThreshold: 0.05 })) {
      const b = f.box;
      assert.ok(b.x >= 0 && b.y >= 0 && b.width > 0 && b.height > 0, JSON.stringify(f));
      assert.ok(b.x + b.width <= im.width && b.y + b.height <= im.height, `${JSON.stringify(f)} outside ${im.width}x${im.height}`);
    }
  }
});

test('detect(), detectPass() and forward() after dispose() throw ExtdError "detector was disposed"; runs in flight finish first', { skip }, async () => {
  const d = await createDetector({ model: sharedPath(...MODEL), threads: 1 });
  const small = crop(photo, 300, 100, 400, 500);
  const expected = await d.detect(small);
  const inFlight = d.detect(small);
  // dispose() while a call is in flight: that call still completes with its result.
  await Promise.all([d.dispose(), (async () => assert.deepEqual(await inFlight, expected))()]);
  const disposed = (e: unknown) => e instanceof ExtdError && /^detector was disposed/.test(e.message);
  await assert.rejects(d.detect(small), disposed);
  await assert.rejects(d.detectPass(small), disposed);
  await assert.rejects(d.forward(small), disposed);
  await d.dispose(); // a second dispose is harmless
});
