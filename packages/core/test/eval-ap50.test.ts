import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateAp50, type ApDetections, type ApGroundTruth } from '../src/eval/ap50.js';

const gt = (key: string, boxes: number[][], ignore: number[] = boxes.map(() => 0)): ApGroundTruth => ({
  key,
  boxes: Float64Array.from(boxes.flat()),
  ignore: Uint8Array.from(ignore),
});
const det = (rows: Array<[number, number, number, number, number]>): ApDetections => ({
  boxes: rows.flatMap((r) => r.slice(0, 4)),
  scores: rows.map((r) => r[4]),
});

test('AP@0.5: perfect detections give 1, nothing gives 0, misses lower recall', () => {
  const g = [
    gt('a', [
      [0, 0, 10, 10],
      [20, 20, 40, 40],
    ]),
    gt('b', [[5, 5, 15, 15]]),
  ];
  const perfect = new Map([
    [
      'a',
      det([
        [0, 0, 10, 10, 0.9],
        [20, 20, 40, 40, 0.8],
      ]),
    ],
    ['b', det([[5, 5, 15, 15, 0.7]])],
  ]);
  const r = evaluateAp50(g, perfect);
  assert.equal(r.ap, 1);
  assert.equal(r.faces, 3);
  assert.equal(r.truePositives, 3);
  assert.equal(evaluateAp50(g, new Map()).ap, 0);
  // Only two of three found, both ranked first: precision 1 up to recall 2/3.
  const two = new Map([
    [
      'a',
      det([
        [0, 0, 10, 10, 0.9],
        [20, 20, 40, 40, 0.8],
      ]),
    ],
  ]);
  assert.ok(Math.abs(evaluateAp50(g, two).ap - 2 / 3) < 1e-12);
});

test('AP@0.5: a false positive ranked first, a duplicate and a box below IoU 0.5, computed by hand', () => {
  const g = [gt('a', [[0, 0, 10, 10]]), gt('b', [[0, 0, 10, 10]])];
  // Ranked: FP (0.95, nowhere), TP a (0.9), duplicate of a (0.8: FP), b at IoU 0.25 (0.7: FP, [0,0,10,10] vs [0,0,5,5]... IoU 25/100).
  const d = new Map([
    [
      'a',
      det([
        [50, 50, 60, 60, 0.95],
        [0, 0, 10, 10, 0.9],
        [0, 0, 10, 10, 0.8],
      ]),
    ],
    [
      'b',
      det([
        [0, 0, 5, 5, 0.7],
        [0, 0, 10, 9, 0.6],
      ]),
    ], // the last one: IoU 0.9, a TP
  ]);
  const r = evaluateAp50(g, d);
  // Counted: FP, TP, FP, FP, TP -> precision 0, 1/2, 1/3, 1/4, 2/5; recall 0, .5, .5, .5, 1.
  assert.deepEqual(Array.from(r.recall), [0, 0.5, 0.5, 0.5, 1]);
  assert.deepEqual(
    Array.from(r.precision, (p) => Math.round(p * 1e9) / 1e9),
    [0, 0.5, 0.333333333, 0.25, 0.4],
  );
  // Envelope: 0.5 on (0, 0.5], 0.4 on (0.5, 1] -> 0.25 + 0.2.
  assert.ok(Math.abs(r.ap - 0.45) < 1e-12, String(r.ap));
  assert.equal(r.detections, 5);
});

test('AP@0.5: detections on ignored faces count neither way; ignored faces are not to be found; IoU exactly 0.5 matches', () => {
  const g = [
    gt(
      'a',
      [
        [0, 0, 10, 10],
        [20, 0, 30, 10],
      ],
      [0, 1],
    ),
  ];
  const d = new Map([
    [
      'a',
      det([
        [20, 0, 30, 10, 0.99],
        [20, 0, 30, 10, 0.98],
        [0, 0, 10, 10, 0.5],
      ]),
    ],
  ]);
  const r = evaluateAp50(g, d);
  assert.equal(r.faces, 1);
  assert.equal(r.ignoredFaces, 1);
  assert.equal(r.detections, 1);
  assert.equal(r.ap, 1);
  // [0,0,10,10] vs [0,0,10,5]: IoU 0.5 exactly.
  const half = evaluateAp50([gt('h', [[0, 0, 10, 10]])], new Map([['h', det([[0, 0, 10, 5, 1]])]]));
  assert.equal(half.ap, 1);
  const below = evaluateAp50([gt('h', [[0, 0, 10, 10]])], new Map([['h', det([[0, 0, 10, 4.9, 1]])]]));
  assert.equal(below.ap, 0);
});

test("AP@0.5: detections of all images are ranked together (a confident miss in one image costs another image's hits)", () => {
  const g = [gt('a', [[0, 0, 10, 10]]), gt('b', [[0, 0, 10, 10]])];
  const lowFp = evaluateAp50(
    g,
    new Map([
      ['a', det([[0, 0, 10, 10, 0.9]])],
      [
        'b',
        det([
          [0, 0, 10, 10, 0.8],
          [50, 50, 60, 60, 0.1],
        ]),
      ],
    ]),
  );
  const highFp = evaluateAp50(
    g,
    new Map([
      ['a', det([[0, 0, 10, 10, 0.9]])],
      [
        'b',
        det([
          [0, 0, 10, 10, 0.8],
          [50, 50, 60, 60, 0.95],
        ]),
      ],
    ]),
  );
  assert.equal(lowFp.ap, 1);
  // FP first: precision 0, 1/2, 2/3 at recall 0, .5, 1 -> envelope 2/3 everywhere.
  assert.ok(Math.abs(highFp.ap - 2 / 3) < 1e-12, String(highFp.ap));
});
