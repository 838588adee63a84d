import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GroundTruthImage, ImagePredictions } from '@extd/core/eval/evaluator';
import { BY_SIZE_DEFAULTS, bySize, renderBySize } from '../scripts/by-size.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));

const gtImage = (key: string, boxes: number[]): GroundTruthImage => {
  const n = boxes.length / 4;
  const all = new Uint8Array(n).fill(1);
  return { key, boxes: Float64Array.from(boxes), inSetting: { easy: all, medium: all, hard: all } };
};
const preds = (boxes: number[], scores: number[]): ImagePredictions => ({ boxes: Float64Array.from(boxes), scores: Float64Array.from(scores) });

test('bySize: faces found, true and false positives per side bucket, score and IoU thresholds applied', () => {
  const images = [
    // a 10x10 face, a 100x100 face, a 300x300 face and one with w = 0 (not counted)
    gtImage('0--A/a', [0, 0, 10, 10, 200, 200, 100, 100, 400, 0, 300, 300, 50, 50, 0, 10]),
    // a 40x40 face whose image has no prediction file
    gtImage('0--A/b', [5, 5, 40, 40]),
  ];
  const predictions = new Map([
    [
      '0--A/a',
      preds(
        [
          // matches the 100x100 face exactly (score 0.9)
          200, 200, 100, 100,
          // matches the 10x10 face, but scores below 0.5: left out
          0, 0, 10, 10,
          // a 300x300 box on the background: a false positive of the 256-400 bucket
          700, 700, 300, 300,
          // lies inside the 300x300 face: IoU 270*300 / (300*300) = 0.9, found
          430, 0, 270, 300,
        ],
        [0.9, 0.4, 0.8, 0.6],
      ),
    ],
  ]);
  const b = bySize(images, predictions);
  assert.deepEqual(
    b.map((x) => [x.lo, x.faces, x.found, x.truePositives, x.falsePositives]),
    [
      [0, 1, 0, 0, 0],
      [16, 0, 0, 0, 0],
      [32, 1, 0, 0, 0],
      [64, 1, 1, 1, 0],
      [128, 0, 0, 0, 0],
      [256, 1, 1, 1, 1],
      [400, 0, 0, 0, 0],
    ],
  );
  // A lower score threshold lets the 10x10 prediction in; an IoU threshold above 0.9 drops the 270x300 match.
  const low = bySize(images, predictions, { score: 0.3, iou: 0.95 });
  assert.deepEqual(
    low.map((x) => [x.faces, x.found, x.truePositives, x.falsePositives]),
    [
      [1, 1, 1, 0],
      [0, 0, 0, 0],
      [1, 0, 0, 0],
      [1, 1, 1, 0],
      [0, 0, 0, 0],
      [1, 0, 0, 2],
      [0, 0, 0, 0],
    ],
  );
  // Why the missed faces were missed: the 10x10 face has no kept box, nor has the 40x40 one (no prediction
  // file); with score 0.3 and IoU 0.95 the 300x300 face's best box (270x300) is about its size but not enough on it.
  assert.deepEqual(
    b.map((x) => x.missed),
    [
      { none: 1, tooSmall: 0, tooLarge: 0, misplaced: 0 },
      { none: 0, tooSmall: 0, tooLarge: 0, misplaced: 0 },
      { none: 1, tooSmall: 0, tooLarge: 0, misplaced: 0 },
      ...Array.from({ length: 4 }, () => ({ none: 0, tooSmall: 0, tooLarge: 0, misplaced: 0 })),
    ],
  );
  assert.deepEqual(low[5]!.missed, { none: 0, tooSmall: 0, tooLarge: 0, misplaced: 1 });
  // A 100x100 face whose best box is 40x40 inside it (IoU 0.16), and one whose best box is 200x200 around it
  // (IoU 0.25, side ratio 2): too small and too large; with --size-tolerance 3 both count as misplaced.
  const sized = [gtImage('0--A/c', [0, 0, 100, 100]), gtImage('0--A/d', [0, 0, 100, 100])];
  const sizedPred = new Map([
    ['0--A/c', preds([30, 30, 40, 40], [0.9])],
    ['0--A/d', preds([0, 0, 200, 200], [0.9])],
  ]);
  assert.deepEqual(bySize(sized, sizedPred)[3]!.missed, { none: 0, tooSmall: 1, tooLarge: 1, misplaced: 0 });
  assert.deepEqual(bySize(sized, sizedPred, { sizeTolerance: 3 })[3]!.missed, { none: 0, tooSmall: 0, tooLarge: 0, misplaced: 2 });
  // The box that overlaps most decides, not the best-scoring or the first one: a 40x40 box inside the face
  // scoring 0.9 (IoU 0.16), then a right-sized 100x100 box shifted by 50 px scoring 0.6 (IoU 0.33): misplaced.
  const two = new Map([['0--A/c', preds([30, 30, 40, 40, 50, 0, 100, 100], [0.9, 0.6])]]);
  assert.deepEqual(bySize([sized[0]!], two)[3]!.missed, { none: 0, tooSmall: 0, tooLarge: 0, misplaced: 1 });
  assert.equal(b.at(-1)!.hi, Number.POSITIVE_INFINITY);
  assert.match(renderBySize(b, BY_SIZE_DEFAULTS), /\| 64-128 \| 1 \| 1 \(100%\) \| 1 \| 0 \| 0 \/ 0 \/ 0 \/ 0 \|/);
  // N = 0: no images, or no faces and no predictions.
  assert.ok(bySize([], new Map()).every((x) => x.faces === 0 && x.falsePositives === 0));
  assert.ok(bySize([gtImage('0--A/c', [])], new Map([['0--A/c', preds([], [])]])).every((x) => x.faces === 0));
});

test('scripts/by-size.ts reads extd eval predictions and WIDER annotations; bad input is one line and exit 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-by-size-'));
  try {
    writeFileSync(join(dir, 'gt.txt'), '0--A/a.jpg\n2\n10 10 100 100 0 0 0 0 0 0\n300 10 20 20 0 0 0 0 0 0\n');
    mkdirSync(join(dir, 'pred', '0--A'), { recursive: true });
    writeFileSync(join(dir, 'pred', '0--A', 'a.txt'), 'a.jpg\n2\n10 10 100 100 0.95\n500 500 30 30 0.7\n');
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ['--conditions=extd-source', '--import', 'tsx', join(REPO, 'scripts/by-size.ts'), ...args], { encoding: 'utf8', cwd: REPO });
    const ok = run('--pred', join(dir, 'pred'), '--gt', join(dir, 'gt.txt'));
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /^1 images, /);
    assert.match(ok.stdout, /\| 16-32 \| 1 \| 0 \(0%\) \| 0 \| 1 \| 1 \/ 0 \/ 0 \/ 0 \|/);
    assert.match(ok.stdout, /\| 64-128 \| 1 \| 1 \(100%\) \| 1 \| 0 \|/);
    // --size-tolerance reaches the counts: the 20x20 face's only overlapping box is 10x10 inside it (IoU 0.25).
    mkdirSync(join(dir, 'pred2', '0--A'), { recursive: true });
    writeFileSync(join(dir, 'pred2', '0--A', 'a.txt'), 'a.jpg\n2\n10 10 100 100 0.95\n305 15 10 10 0.9\n');
    const small = run('--pred', join(dir, 'pred2'), '--gt', join(dir, 'gt.txt'));
    assert.match(small.stdout, /\| 16-32 \| 1 \| 0 \(0%\) \| 0 \| 0 \| 0 \/ 1 \/ 0 \/ 0 \|/);
    const loose = run('--pred', join(dir, 'pred2'), '--gt', join(dir, 'gt.txt'), '--size-tolerance', '3');
    assert.match(loose.stdout, /\| 16-32 \| 1 \| 0 \(0%\) \| 0 \| 0 \| 0 \/ 0 \/ 0 \/ 1 \|/);
    const help = run('--help');
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^usage: scripts\/by-size.ts --pred OUT\/pred --gt GT/);
    for (const [args, re] of [
      [['--pred', join(dir, 'nowhere'), '--gt', join(dir, 'gt.txt')], /^by-size: prediction folder .*nowhere does not exist\n$/],
      [['--pred', join(dir, 'pred'), '--gt', join(dir, 'gt.txt'), '--score', '2'], /^by-size: --score 2: expected a number from 0 to 1\n$/],
      [['--pred', join(dir, 'pred'), '--gt', join(dir, 'gt.txt'), '--edges', '32,16'], /^by-size: --edges 32,16: expected ascending/],
      [['--gt', join(dir, 'gt.txt')], /^by-size: --pred DIR and --gt GT are required/],
      [['--pred', join(dir, 'pred'), '--gt', join(dir, 'gt.txt'), '--size-tolerance', '0.5'], /^by-size: --size-tolerance 0.5: expected a number >= 1\n$/],
      [['--pred', join(dir, 'pred'), '--gt', join(dir, 'gt.txt'), '--iou', '0'], /^by-size: --iou 0: expected a number from 0 \(excluded\) to 1\n$/],
      [['--pred', join(dir, 'pred'), '--bogus'], /^by-size: Unknown option '--bogus'.* \(see --help\)\n$/],
    ] as const) {
      const r = run(...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
