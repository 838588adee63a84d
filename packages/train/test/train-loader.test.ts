import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ExtdError } from '@extd/core/utils/errors';
import { readWiderTrainingSet, samplesFromWider, TrainLoader, type TrainSample } from '../src/train/loader.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';

test('samplesFromWider: drops faces with w or h <= 0 and images left without faces; boxes are x, y, x+w, y+h', () => {
  const face = (x: number, y: number, w: number, h: number) => ({ x, y, w, h, blur: 0, expression: 0, illumination: 0, invalid: 0, occlusion: 0, pose: 0 });
  const s = samplesFromWider(
    [
      { path: 'a/1.jpg', faces: [face(10, 20, 30, 40), face(5, 5, 0, 10), face(1, 1, 4, -1)] },
      { path: 'a/2.jpg', faces: [face(3, 3, 0, 0)] },
      { path: 'b/3.jpg', faces: [] },
      { path: 'b/4.jpg', faces: [face(0, 0, 1, 1), face(7, 8, 9, 10)] },
    ],
    '/imgs',
  );
  assert.deepEqual(
    s.map((x) => x.path),
    ['/imgs/a/1.jpg', '/imgs/b/4.jpg'],
  );
  assert.deepEqual([...s[0]!.boxes], [10, 20, 40, 60]);
  assert.deepEqual([...s[1]!.boxes], [0, 0, 1, 1, 7, 8, 16, 18]);
});

test('readWiderTrainingSet on the shared WIDER training subset', { skip: noShared('wider', 'wider_face_split', 'wider_face_train_bbx_gt.txt') }, () => {
  const samples = readWiderTrainingSet(sharedPath('wider', 'wider_face_split', 'wider_face_train_bbx_gt.txt'), sharedPath('wider', 'WIDER_train', 'images'));
  // 1,239 images are listed; only images whose faces all have w or h <= 0 may be skipped.
  assert.ok(samples.length <= 1239 && samples.length >= 1200, `${samples.length} samples`);
  const faces = samples.reduce((n, s) => n + s.boxes.length / 4, 0);
  assert.ok(faces <= 6590 && faces > 6000, `${faces} faces`);
  for (const s of samples) for (let i = 0; i < s.boxes.length; i += 4) assert.ok(s.boxes[i + 2]! > s.boxes[i]! && s.boxes[i + 3]! > s.boxes[i + 1]!);
  assert.throws(() => readWiderTrainingSet(sharedPath('wider', 'wider_face_split', 'wider_face_train_bbx_gt.txt'), '/nonexistent-dir'), ExtdError);
});

/** Five small PNGs with one or two coloured rectangles each, in a temp folder. */
async function syntheticDataset(): Promise<{ dir: string; samples: TrainSample[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'extd-loader-'));
  const samples: TrainSample[] = [];
  for (let k = 0; k < 5; k++) {
    const w = 120 + 10 * k,
      h = 90 + 7 * k;
    const data = new Uint8Array(w * h * 3).fill(100 + 10 * k);
    const boxes = [10 + k, 12, 50 + k, 60, 70, 20 + k, 100, 55 + k];
    for (let b = 0; b < (k % 2 ? 2 : 1); b++) {
      const [x1, y1, x2, y2] = boxes.slice(4 * b, 4 * b + 4) as [number, number, number, number];
      for (let y = y1; y < y2; y++) for (let x = x1; x < x2; x++) data.set([200, 40 * b, 30 * k], 3 * (y * w + x));
    }
    const path = join(dir, `img${k}.png`);
    await sharp(data, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toFile(path);
    samples.push({ path, boxes: new Float32Array(boxes.slice(0, k % 2 ? 8 : 4)) });
  }
  return { dir, samples };
}

test('loader: batches are identical with 0 or 2 workers and when resumed mid-stream; epochs cover every sample once', async () => {
  const { dir, samples } = await syntheticDataset();
  const opts = { batchSize: 3, size: 64, seed: 123, prefetch: 1 };
  const inline = new TrainLoader(samples, { ...opts, workers: 0 });
  const pooled = new TrainLoader(samples, { ...opts, workers: 2 });
  const resumed = new TrainLoader(samples, { ...opts, workers: 1, startBatch: 2 });
  try {
    const a = [await inline.next(), await inline.next(), await inline.next(), await inline.next()];
    const b = [await pooled.next(), await pooled.next(), await pooled.next(), await pooled.next()];
    for (let i = 0; i < 4; i++) {
      assert.equal(a[i]!.index, i);
      assert.equal(a[i]!.input.length, 3 * 3 * 64 * 64);
      assert.deepEqual(b[i]!.input, a[i]!.input, `batch ${i} input`);
      assert.deepEqual(b[i]!.boxes, a[i]!.boxes, `batch ${i} boxes`);
      assert.deepEqual(b[i]!.paths, a[i]!.paths);
    }
    const r2 = await resumed.next();
    assert.equal(r2.index, 2);
    assert.deepEqual(r2.input, a[2]!.input);
    assert.equal(resumed.position, 3);
    // 12 stream positions = epochs 0, 1 (5 each) and 2 samples of epoch 2; batch 1 straddles epochs 0 and 1.
    assert.equal(a[1]!.epoch, 0);
    assert.equal(a[2]!.epoch, 1);
    const visits = a.flatMap((x) => x.paths);
    for (const epoch of [visits.slice(0, 5), visits.slice(5, 10)]) assert.deepEqual([...epoch].sort(), samples.map((s) => s.path).sort());
    // Shuffled: the two epochs are in different orders (fixed seed, so this is deterministic).
    assert.notDeepEqual(visits.slice(0, 5), visits.slice(5, 10));
    // Images are different per sample and boxes normalised.
    assert.notDeepEqual(a[0]!.input.subarray(0, 3 * 64 * 64), a[0]!.input.subarray(3 * 64 * 64, 6 * 64 * 64));
    for (const bx of a.flatMap((x) => x.boxes)) for (const v of bx) assert.ok(v >= 0 && v <= 1);
    // A different seed gives a different stream.
    const other = new TrainLoader(samples, { ...opts, workers: 0, seed: 124 });
    assert.notDeepEqual((await other.next()).input, a[0]!.input);
    await other.close();
  } finally {
    await Promise.all([inline.close(), pooled.close(), resumed.close()]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loader: an undecodable image fails its batch with an error naming the file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-loader-bad-'));
  const bad = join(dir, 'broken.jpg');
  writeFileSync(bad, 'not a jpeg');
  const loader = new TrainLoader([{ path: bad, boxes: new Float32Array([1, 1, 5, 5]) }], { batchSize: 1, size: 32, workers: 1, prefetch: 0 });
  try {
    await assert.rejects(loader.next(), (e: Error) => e instanceof ExtdError && e.message.includes('broken.jpg'));
  } finally {
    await loader.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => new TrainLoader([], {}), /empty/);
  assert.throws(() => new TrainLoader([{ path: bad, boxes: new Float32Array(4) }], { batchSize: 0 }), /batch size 0/);
});

// Regression: a worker's reply that was already queued when close() ran used to
// unref the worker, undoing terminate()'s ref; the process then exited (code 13,
// unsettled top-level await) before close() resolved, so nothing after it ran.
// Holding the main thread while the worker answers makes the reply queued for
// certain, so this fails every time without the fix.
test('loader: close() resolves even when a worker reply is already queued', async () => {
  const { dir, samples } = await syntheticDataset();
  try {
    const loaderUrl = new URL('../src/train/loader.ts', import.meta.url).href;
    const script = join(dir, 'close-race.mts');
    writeFileSync(
      script,
      `import { TrainLoader } from ${JSON.stringify(loaderUrl)};
const samples = ${JSON.stringify(samples.map((s) => ({ path: s.path, boxes: [...s.boxes] })))}.map((s) => ({ path: s.path, boxes: new Float32Array(s.boxes) }));
const loader = new TrainLoader(samples, { batchSize: 1, size: 32, workers: 1, prefetch: 0 });
await loader.next(); // the worker is up and idle
const inFlight = loader.next(); // one task posted to the worker
inFlight.catch(() => {});
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500); // the worker replies meanwhile
await loader.close();
console.log('closed');
`,
    );
    const root = fileURLToPath(new URL('..', import.meta.url));
    const r = spawnSync(process.execPath, ['--conditions=extd-source', '--import', 'tsx', script], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.stdout.trim(), 'closed', `exit ${r.status}, stderr: ${r.stderr}`);
    assert.equal(r.status, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
