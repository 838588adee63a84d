// `--gt` given a WIDER annotation file (*_bbx_gt.txt) instead of the kit's
// ground_truth folder: every valid face counts in all three settings,
// invalid and empty boxes are ignored, and `extd eval` evaluates the images
// the file annotates.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { command as evalCommand } from '../src/cli/eval.js';
import { command as evalPreds } from '../src/cli/eval-preds.js';
import { formatWiderAnnotations, readWiderAnnotations } from '../src/data/wider-annotations-node.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';
import { throwsExtd } from '../../../test-support/expect-error.js';
import { loadGroundTruth } from '../src/eval/ground-truth.js';

async function quiet<T>(fn: () => Promise<T>): Promise<{ result: T; out: string }> {
  const log = console.log;
  const err = console.error;
  const lines: string[] = [];
  console.log = (s: string) => lines.push(String(s));
  console.error = () => {};
  try {
    return { result: await fn(), out: lines.join('\n') };
  } finally {
    console.log = log;
    console.error = err;
  }
}

// Image a: two faces and one marked invalid (7th number 1); image b: one face and one empty box.
const ANNOTATIONS = `ev/a.jpg
3
10 10 40 40 0 0 0 0 0 0
100 100 40 40 0 0 0 0 0 0
200 200 30 30 0 0 0 1 0 0
ev/b.jpg
2
50 50 60 60 0 0 0 0 0 0
5 5 0 0 0 0 0 0 0 0
`;

function writePreds(dir: string, name: string, rows: number[][]): void {
  mkdirSync(join(dir, 'ev'), { recursive: true });
  writeFileSync(join(dir, 'ev', `${name}.txt`), `${name}\n${rows.length}\n${rows.map((r) => r.join(' ')).join('\n')}\n`);
}

test('eval-preds with an annotation file: invalid faces ignored, the three settings equal', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-annot-gt-'));
  try {
    const gt = join(dir, 'gt.txt');
    writeFileSync(gt, ANNOTATIONS);
    // Every valid face found; the highest score sits on the invalid face, which must not count as a false positive.
    const perfect = join(dir, 'perfect');
    writePreds(perfect, 'a', [
      [10, 10, 40, 40, 0.9],
      [100, 100, 40, 40, 0.8],
      [200, 200, 30, 30, 0.95],
    ]);
    writePreds(perfect, 'b', [[50, 50, 60, 60, 0.85]]);
    const r1 = await quiet(() => evalPreds.run(['--preds', perfect, '--gt', gt, '--out', join(dir, 'o1')]));
    assert.equal(r1.result, 0);
    const ap1 = JSON.parse(readFileSync(join(dir, 'o1', 'ap.json'), 'utf8'));
    for (const s of ['easy', 'medium', 'hard']) assert.ok(Math.abs(ap1[s] - 1) < 1e-9, `${s} ${ap1[s]}`);
    // One of the three valid faces missed, a false positive above the hits: AP well below 1, the same in all settings.
    const partial = join(dir, 'partial');
    writePreds(partial, 'a', [
      [10, 10, 40, 40, 0.9],
      [300, 20, 40, 40, 0.95],
    ]);
    writePreds(partial, 'b', [[50, 50, 60, 60, 0.85]]);
    const r2 = await quiet(() => evalPreds.run(['--preds', partial, '--gt', gt, '--out', join(dir, 'o2')]));
    assert.equal(r2.result, 0);
    const ap2 = JSON.parse(readFileSync(join(dir, 'o2', 'ap.json'), 'utf8'));
    // Ranked: FP 0.95, TP 0.9, TP 0.85 over 3 counted faces -> precision 2/3 at recall 2/3 (all-point AP 4/9).
    // Counting the invalid face would give 1/3, counting the empty box too 4/15.
    assert.deepEqual(ap2.faces, { easy: 3, medium: 3, hard: 3 });
    assert.ok(Math.abs(ap2.hard - 4 / 9) < 1e-9, `hard ${ap2.hard}`);
    assert.equal(ap2.easy, ap2.hard);
    assert.equal(ap2.medium, ap2.hard);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loadGroundTruth: a missing path and a malformed annotation file are one-line errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-annot-gt-'));
  try {
    throwsExtd(() => loadGroundTruth(join(dir, 'nope.txt')), /cannot read ground truth .*nope\.txt: ENOENT/);
    const bad = join(dir, 'bad.txt');
    writeFileSync(bad, 'ev/a.jpg\n1\n10 10 x 40 0 0 0 0 0 0\n');
    throwsExtd(() => loadGroundTruth(bad), /bad\.txt:3/);
    const twice = join(dir, 'twice.txt');
    writeFileSync(twice, 'ev/a.jpg\n1\n10 10 20 20 0 0 0 0 0 0\nev/a.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n');
    throwsExtd(() => loadGroundTruth(twice), /twice\.txt: image 'ev\/a\.jpg' is annotated twice/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const TRAIN_GT = 'wider/wider_face_split/wider_face_train_bbx_gt.txt';
test('extd eval --gt FILE: evaluates exactly the annotated training images with a released model', {
  skip: noShared(TRAIN_GT) || noShared('reference/weights/EXTD_32.pth'),
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-annot-gt-'));
  try {
    // The first two training images with at most 3 faces: a small, real annotation file.
    const picked = readWiderAnnotations(sharedPath(TRAIN_GT))
      .filter((a) => a.faces.length > 0 && a.faces.length <= 3)
      .slice(0, 2);
    const gt = join(dir, 'two.txt');
    writeFileSync(gt, formatWiderAnnotations(picked));
    const out = join(dir, 'out');
    const r = await quiet(() =>
      evalCommand.run([
        '--model',
        sharedPath('reference/weights/EXTD_32.pth'),
        '--images',
        sharedPath('wider/WIDER_train/images'),
        '--gt',
        gt,
        '--out',
        out,
        '--threads',
        '1',
      ]),
    );
    assert.equal(r.result, 0);
    assert.match(r.out, /2 images/);
    const ap = JSON.parse(readFileSync(join(out, 'ap.json'), 'utf8'));
    assert.equal(ap.images, 2);
    assert.equal(ap.easy, ap.hard);
    // The released EXTD-32 finds clear faces in these images.
    assert.ok(ap.hard > 0.5, `AP ${ap.hard}`);
    assert.equal(ap.scale, 1);

    // --scale 0.5: the same images at half resolution, boxes still in the images' own pixels (so still matching).
    const half = join(dir, 'half');
    const h = await quiet(() =>
      evalCommand.run([
        '--model',
        sharedPath('reference/weights/EXTD_32.pth'),
        '--images',
        sharedPath('wider/WIDER_train/images'),
        '--gt',
        gt,
        '--out',
        half,
        '--threads',
        '1',
        '--scale',
        '0.5',
      ]),
    );
    assert.equal(h.result, 0);
    assert.match(h.out, /protocol single at scale 0\.5/);
    const apHalf = JSON.parse(readFileSync(join(half, 'ap.json'), 'utf8'));
    assert.equal(apHalf.scale, 0.5);
    assert.ok(apHalf.hard > 0.5, `AP at scale 0.5: ${apHalf.hard}`);
    const predFiles = (d: string) =>
      readdirSync(join(d, 'pred'), { recursive: true })
        .filter((f) => String(f).endsWith('.txt'))
        .map(String)
        .sort();
    assert.deepEqual(predFiles(half), predFiles(out));
    const first = predFiles(out)[0]!;
    assert.notEqual(readFileSync(join(half, 'pred', first), 'utf8'), readFileSync(join(out, 'pred', first), 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
