import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUNDLED_MODEL_PATH, createDetector, loadModel } from '../src/index.js';
import { iouXyxy } from '../src/postprocess/boxes.js';
import { runCli } from './cli-run.js';
import { noShared, sharedPath } from './shared.js';

// The bundled default model (models/extd-default.safetensors, trained with
// `extd train`; README "Training" says how and what it scores). These tests
// use it only through the paths a user takes: no model given.

test('the bundled model ships in the package and loads when no model is given', async () => {
  assert.ok(existsSync(BUNDLED_MODEL_PATH), `${BUNDLED_MODEL_PATH} is missing`);
  assert.ok(statSync(BUNDLED_MODEL_PATH).size < 1_000_000, 'the bundled model should stay under 1 MB');
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.ok(pkg.files.includes('models'), 'package.json "files" must include models/');
  const m = await loadModel();
  assert.equal(m.metadata.variant, 'extd-fpn-32-prelu');
  assert.match(m.metadata.iteration ?? '', /^\d+$/);
  assert.match(m.metadata.training ?? '', /extd train/);
});

// A validation image (not trained on) with one large face, which the bundled model finds.
const IMAGE = ['wider', 'WIDER_val', 'images', '56--Voter', '56_Voter_peoplevoting_56_887.jpg'] as const;
const FACE_XYWH = [523, 206, 206, 259] as const; // from wider_face_val_bbx_gt.txt
const skip = noShared(...IMAGE);

test('createDetector() without a model finds the face in a validation image', { skip }, async () => {
  const detector = await createDetector({ threads: 1 });
  try {
    const faces = await detector.detect(sharedPath(...IMAGE));
    assert.ok(faces.length >= 1, 'no face found at the default threshold');
    const [x, y, w, h] = FACE_XYWH;
    const best = faces[0]!.box;
    const iou = iouXyxy([best.x, best.y, best.x + best.width, best.y + best.height], 0, [x, y, x + w, y + h], 0);
    assert.ok(iou >= 0.5, `best box ${JSON.stringify(faces[0])} overlaps the annotated face by IoU ${iou.toFixed(2)}`);
  } finally {
    await detector.dispose();
  }
});

test('extd detect and extd eval run without --model', { skip }, () => {
  const r = runCli(['detect', sharedPath(...IMAGE), '--threads', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(JSON.parse(r.stdout)[0].faces.length >= 1, r.stdout);

  const dir = mkdtempSync(join(tmpdir(), 'extd-bundled-'));
  try {
    const list = join(dir, 'list.txt');
    writeFileSync(list, `${IMAGE[3]}/${IMAGE[4]}\n`);
    const out = join(dir, 'out');
    const e = runCli(['eval', '--images', sharedPath('wider', 'WIDER_val', 'images'), '--gt', sharedPath('wider', 'wider_face_split', 'wider_face_val_bbx_gt.txt'),
      '--list', list, '--out', out, '--threads', '1']);
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /model bundled \(extd-fpn-32-prelu\)/);
    const settings = JSON.parse(readFileSync(join(out, 'pred', 'settings.json'), 'utf8'));
    assert.equal(settings.model, createHash('sha256').update(readFileSync(BUNDLED_MODEL_PATH)).digest('hex'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
