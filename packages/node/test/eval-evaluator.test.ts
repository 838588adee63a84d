import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { bestMatches, evaluateWider, vocAp, type GroundTruthImage, type ImagePredictions } from '@extd/core/eval/evaluator';
import { loadWiderGroundTruth, restrictGroundTruth } from '../src/eval/ground-truth.js';
import { readPredictions } from '../src/eval/predictions-node.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';

/** Same faces count in every setting unless a per-setting mask is given. */
function gt(key: string, boxes: number[], mask: number[]): GroundTruthImage {
  const m = new Uint8Array(mask);
  return { key, boxes: new Float64Array(boxes), inSetting: { easy: m, medium: m, hard: m } };
}
function preds(rows: number[][]): ImagePredictions {
  return { boxes: new Float64Array(rows.flatMap((r) => r.slice(0, 4))), scores: new Float64Array(rows.map((r) => r[4]!)) };
}

test('IoU uses the +1 pixel convention (x2 = x + w, inclusive areas)', () => {
  // GT 10x10 pixels with +1 (x2 = 9); the prediction covers half of it: IoU exactly 0.5 (0.444 without the +1).
  const g = new Float64Array([0, 0, 9, 9]);
  assert.deepEqual(Array.from(bestMatches(new Float64Array([0, 0, 4, 9]), g, 0.5)), [0]);
  assert.deepEqual(Array.from(bestMatches(new Float64Array([0, 0, 3, 9]), g, 0.5)), [-1]);
  // Highest IoU wins, not the first above threshold.
  const two = new Float64Array([0, 0, 9, 9, 1, 0, 9, 9]);
  assert.deepEqual(Array.from(bestMatches(new Float64Array([1, 0, 9, 9]), two, 0.5)), [1]);
  assert.deepEqual(Array.from(bestMatches(new Float64Array(0), two, 0.5)), []);
});

test('hand-computed: ignored face, duplicate, missed face, image without predictions', () => {
  // Image a: faces A and C count, B is outside the setting.
  const a = gt('e/a', [0, 0, 10, 10, 100, 100, 10, 10, 200, 0, 10, 10], [1, 0, 1]);
  const b = gt('e/b', [50, 50, 20, 20], [1]); // no predictions at all
  const p = preds([
    [0, 0, 10, 10, 0.9], // finds A
    [100, 100, 10, 10, 0.8], // matches B (outside the setting): ignored, not a proposal
    [1, 0, 10, 10, 0.7], // duplicate on A: a proposal that finds nothing new
    [200, 0, 10, 10, 0.6], // finds C
  ]);
  // Normalised scores: 1, 2/3, 1/3, 0. Curve: (R, P) = (1/3, 1) until t <= 1/3, then (1/3, 1/2), at t = 0 (2/3, 2/3).
  const r = evaluateWider([a, b], new Map([['e/a', p]]));
  assert.equal(r.hard.faces, 3);
  assert.equal(r.images, 2);
  assert.equal(r.imagesWithPredictions, 1);
  assert.equal(r.hard.recall[0], 1 / 3);
  assert.equal(r.hard.precision[0], 1);
  assert.equal(r.hard.precision[400], 1); // t = 0.599: the ignored prediction is in, still precision 1
  assert.equal(r.hard.precision[700], 0.5); // t = 0.299 < 1/3: the duplicate is in
  assert.equal(r.hard.precision[665], 1); // t = 0.334 > 1/3
  assert.equal(r.hard.precision[666], 0.5); // t = 0.333
  assert.equal(r.hard.precision[999], 2 / 3);
  assert.equal(r.hard.recall[999], 2 / 3);
  // AP = 1/3 * 1 + 1/3 * 2/3.
  assert.ok(Math.abs(r.hard.ap - 5 / 9) < 1e-12, `ap ${r.hard.ap}`);
  // Predictions in reverse file order give the same result (sorted per image).
  const reversed = preds([
    [200, 0, 10, 10, 0.6],
    [1, 0, 10, 10, 0.7],
    [100, 100, 10, 10, 0.8],
    [0, 0, 10, 10, 0.9],
  ]);
  assert.equal(evaluateWider([a, b], new Map([['e/a', reversed]])).hard.ap, r.hard.ap);
});

test('scores are normalised over the whole set, images without faces included', () => {
  const a = gt('e/a', [0, 0, 10, 10], [1]);
  const p = preds([
    [0, 0, 10, 10, 0.5005],
    [300, 300, 10, 10, 0.5001],
  ]);
  // Alone, the range is [0.5001, 0.5005]: the true positive is alone above t = 0.999, AP 1.
  assert.equal(evaluateWider([a], new Map([['e/a', p]])).easy.ap, 1);
  // An image without faces whose scores span [0, 1] widens the range: both predictions enter at t = 0.5 together.
  const empty = gt('e/empty', [], []);
  const r = evaluateWider(
    [a, empty],
    new Map([
      ['e/a', p],
      [
        'e/empty',
        preds([
          [0, 0, 5, 5, 0],
          [9, 9, 5, 5, 1],
        ]),
      ],
    ]),
  );
  assert.equal(r.easy.ap, 0.5);
  assert.equal(r.easy.faces, 1);
});

test('no faces at all and no predictions at all give AP 0 without NaN', () => {
  const r = evaluateWider([gt('e/a', [0, 0, 10, 10], [1])], new Map());
  assert.equal(r.easy.ap, 0);
  const none = evaluateWider([], new Map());
  assert.equal(none.hard.ap, 0);
  assert.ok(!Number.isNaN(none.hard.recall[0]));
});

test('vocAp: all-point interpolation', () => {
  // Precision is made monotone from the right before integrating.
  assert.ok(Math.abs(vocAp([0.5, 0.5, 1], [0.5, 1, 0.25]) - (0.5 * 1 + 0.5 * 0.25)) < 1e-15);
  assert.equal(vocAp([], []), 0);
});

const DEV = 'reference/wider_pred/dev108-extd64-single';
test('reproduces the official AP of the dev108 EXTD-64 predictions to 1e-4', {
  skip: noShared(DEV, 'expected.json') || noShared('wider/eval_tools/ground_truth'),
}, () => {
  const all = loadWiderGroundTruth(sharedPath('wider/eval_tools/ground_truth'));
  assert.equal(all.images.length, 3226);
  const listPath = sharedPath(DEV, 'images.txt');
  const keys = readFileSync(listPath, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');
  assert.equal(keys.length, 108);
  const g = restrictGroundTruth(all, keys, listPath);
  const r = evaluateWider(
    g,
    readPredictions(
      sharedPath(DEV),
      g.map((x) => x.key),
    ),
  );
  assert.equal(r.imagesWithPredictions, 108);
  const expected = JSON.parse(readFileSync(sharedPath(DEV, 'expected.json'), 'utf8'));
  for (const s of ['easy', 'medium', 'hard'] as const) {
    assert.ok(Math.abs(r[s].ap - expected[s]) < 1e-4, `${s}: ${r[s].ap} vs ${expected[s]}`);
  }
  // Without the restriction every absent image's faces count as missed: AP collapses.
  const unrestricted = evaluateWider(
    all.images,
    readPredictions(
      sharedPath(DEV),
      g.map((x) => x.key),
    ),
  );
  assert.ok(unrestricted.hard.ap < 0.1);
});

test('all scores equal: every normalised score is 1, so perfect detections give AP 1 whatever their score', () => {
  const a = gt('e/a', [391, 177, 174, 258], [1]);
  for (const score of [0.99, 0.5, 1, 0, 7]) {
    const r = evaluateWider([a], new Map([['e/a', preds([[391, 177, 174, 258, score]])]]));
    for (const s of ['easy', 'medium', 'hard'] as const) {
      assert.equal(r[s].ap, 1, `score ${score}, ${s}`);
      assert.ok(r[s].precision.every((p) => p === 1) && r[s].recall.every((x) => x === 1), `PR curve at score ${score}`);
    }
  }
  // Several images, one score for all: a miss and a hit at the same score enter together.
  const b = gt('e/b', [0, 0, 20, 20], [1]);
  const r = evaluateWider(
    [a, b],
    new Map([
      ['e/a', preds([[391, 177, 174, 258, 0.8]])],
      ['e/b', preds([[100, 100, 20, 20, 0.8]])],
    ]),
  );
  assert.equal(r.easy.recall[0], 0.5);
  assert.equal(r.easy.precision[0], 0.5);
  assert.equal(r.easy.ap, 0.5 * 0.5);
});
