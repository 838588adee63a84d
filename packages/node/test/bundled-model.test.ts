import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BUNDLED_MODELS,
  BUNDLED_MODEL_NAMES,
  BUNDLED_MODEL_PATH,
  DEFAULT_MODEL_NAME,
  ExtdError,
  bundledModelPath,
  createDetector,
  loadModel,
  resolveModelPath,
} from 'extd';
import { loadBrowserModel } from '@extd/web';
import { iouXyxy } from '@extd/core/postprocess/boxes';
import { runCli } from '../../../test-support/cli-run.js';
import { goldenPixels, releasedModel, GOLDEN_TAGS } from '../../../test-support/golden.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';

// The bundled models (models/, README there): the authors' released EXTD-32/48/64
// and our own extd-32-scratch, loaded by name; extd-32 is the default.

const ROOT = fileURLToPath(new URL('../../core', import.meta.url)); // the package that ships the models

test('every bundled name resolves to a file under models/ that loads as its variant', async () => {
  assert.deepEqual(BUNDLED_MODEL_NAMES, ['extd-32', 'extd-48', 'extd-64', 'extd-32-scratch']);
  assert.equal(DEFAULT_MODEL_NAME, 'extd-32');
  assert.equal(BUNDLED_MODEL_PATH, bundledModelPath('extd-32'));
  for (const name of BUNDLED_MODEL_NAMES) {
    const path = resolveModelPath(name);
    assert.equal(path, join(ROOT, 'models', BUNDLED_MODELS[name].file));
    assert.ok(statSync(path).size < 1_000_000, `${name} should stay under 1 MB`);
    const m = await loadModel(name);
    assert.equal(m.metadata.variant, BUNDLED_MODELS[name].variant, name);
  }
  const scratch = await loadModel('extd-32-scratch');
  assert.match(scratch.metadata.training ?? '', /extd train/);
  assert.match((await loadModel()).metadata.source ?? '', /clovaai\/EXTD_Pytorch.*EXTD_32\.pth/);
});

test('an unknown model name is an error listing the names (Node API, CLI, browser entry)', async () => {
  await assert.rejects(loadModel('extd-99'), (e: Error) => e instanceof ExtdError && /'extd-99'.*extd-32, extd-48, extd-64, extd-32-scratch/.test(e.message));
  await assert.rejects(loadBrowserModel('extd-99'), (e: Error) => e instanceof ExtdError && /names: extd-32, extd-48/.test(e.message));
  const r = runCli(['detect', 'whatever.jpg', '--model', 'extd-99']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^extd detect: model 'extd-99': not a bundled model name \(names: extd-32, extd-48, extd-64, extd-32-scratch\)/);
  // A path that does not exist is still reported as a missing file.
  await assert.rejects(loadModel('no/such/model.pth'), /model file not found: no\/such\/model\.pth/);
});

test('the released models are the original checkpoints, tensor for tensor', { skip: noShared('reference', 'weights', 'EXTD_64.pth') }, async () => {
  for (const width of [32, 48, 64] as const) {
    const original = releasedModel(width);
    const bundled = await loadModel(`extd-${width}`);
    assert.equal(bundled.weights.size, original.weights.size);
    for (const [name, t] of original.weights) {
      assert.deepEqual(bundled.weights.get(name)!.shape, t.shape, name);
      assert.deepEqual(bundled.weights.get(name)!.data, t.data, `extd-${width} ${name}`);
    }
    const sha = createHash('sha256')
      .update(readFileSync(sharedPath('reference', 'weights', `EXTD_${width}.pth`)))
      .digest('hex');
    assert.ok(bundled.metadata.source!.includes(sha), `extd-${width} metadata names the original's SHA-256`);
    assert.ok(readFileSync(join(ROOT, 'models', 'README.md'), 'utf8').includes(sha), `models/README.md gives extd-${width}'s SHA-256`);
  }
});

test("the default model's detections on a golden image equal those of EXTD_32.pth", { skip: noShared('reference', 'golden') }, async () => {
  const image = goldenPixels(GOLDEN_TAGS[0]);
  // float32 for both: the default precision of the bundled model (int8 where the kernels run it) and of a
  // checkpoint file (float32) may differ; the weights are what is compared here.
  const byDefault = await createDetector({ threads: 1, precision: 'float32' });
  const byPath = await createDetector({ model: sharedPath('reference', 'weights', 'EXTD_32.pth'), threads: 1, precision: 'float32' });
  try {
    const a = await byDefault.detectPass(image);
    const b = await byPath.detectPass(image);
    assert.ok(a.scores.length > 0);
    assert.deepEqual(a.scores, b.scores);
    assert.deepEqual(a.boxes, b.boxes);
  } finally {
    await byDefault.dispose();
    await byPath.dispose();
  }
});

// A validation image with one large face.
const IMAGE = ['wider', 'WIDER_val', 'images', '56--Voter', '56_Voter_peoplevoting_56_887.jpg'] as const;
const FACE_XYWH = [523, 206, 206, 259] as const; // from wider_face_val_bbx_gt.txt
const skip = noShared(...IMAGE);

function bestIou(faces: Array<{ box: { x: number; y: number; width: number; height: number } }>): number {
  const [x, y, w, h] = FACE_XYWH;
  const b = faces[0]!.box;
  return iouXyxy([b.x, b.y, b.x + b.width, b.y + b.height], 0, [x, y, x + w, y + h], 0);
}

test('createDetector() without a model, and with each name, finds the face in a validation image', { skip }, async () => {
  for (const model of [undefined, ...BUNDLED_MODEL_NAMES]) {
    const detector = await createDetector({ model, threads: 1 });
    try {
      const faces = await detector.detect(sharedPath(...IMAGE));
      assert.ok(faces.length >= 1, `${model ?? 'default'}: no face found at the default threshold`);
      assert.ok(bestIou(faces) >= 0.5, `${model ?? 'default'}: best box ${JSON.stringify(faces[0])}`);
    } finally {
      await detector.dispose();
    }
  }
});

test('extd detect and extd eval run without --model (the released EXTD-32), and take names', { skip }, () => {
  const r = runCli(['detect', sharedPath(...IMAGE), '--threads', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const faces = JSON.parse(r.stdout)[0].faces;
  assert.ok(faces.length >= 1 && bestIou(faces) >= 0.5, r.stdout);
  const named = runCli(['detect', sharedPath(...IMAGE), '--threads', '1', '--json', '--model', 'extd-32']);
  assert.equal(named.stdout, r.stdout, '--model extd-32 is the default');

  const dir = mkdtempSync(join(tmpdir(), 'extd-bundled-'));
  try {
    const list = join(dir, 'list.txt');
    writeFileSync(list, `${IMAGE[3]}/${IMAGE[4]}\n`);
    const out = join(dir, 'out');
    const e = runCli([
      'eval',
      '--images',
      sharedPath('wider', 'WIDER_val', 'images'),
      '--gt',
      sharedPath('wider', 'wider_face_split', 'wider_face_val_bbx_gt.txt'),
      '--list',
      list,
      '--out',
      out,
      '--threads',
      '1',
    ]);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /model extd-32 \(extd-fpn-32-prelu\)/);
    const settings = JSON.parse(readFileSync(join(out, 'pred', 'settings.json'), 'utf8'));
    assert.equal(settings.model, createHash('sha256').update(readFileSync(BUNDLED_MODEL_PATH)).digest('hex'));
    const info = runCli(['info', 'extd-48']);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /^variant\s+extd-fpn-48-prelu\s+\(extd-48\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the package ships the models, their licence and provenance, and no dangling source maps', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path);
  for (const f of [
    'LICENSE',
    'README.md',
    'models/README.md',
    'models/LICENSE-EXTD_Pytorch',
    ...BUNDLED_MODEL_NAMES.map((n) => `models/${BUNDLED_MODELS[n].file}`),
  ]) {
    assert.ok(files.includes(f), `${f} missing from npm pack --dry-run`);
  }
  assert.deepEqual(
    files.filter((f) => f.endsWith('.js.map')),
    [],
    'maps point to sources that are not published',
  );
  assert.ok(existsSync(join(ROOT, 'LICENSE')));
  assert.match(readFileSync(join(ROOT, 'LICENSE'), 'utf8'), /^MIT License/);
});
