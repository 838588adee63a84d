import { test } from 'node:test';
import assert from 'node:assert/strict';
import { argsortDescending, boxIouXyxy, iouXyxy } from '../src/postprocess/boxes.js';
import { formatPredictionFile } from '../src/eval/predictions.js';
import { batchedNmsXyxy, nmsXyxy } from '../src/postprocess/nms.js';
import { decodeBoxXyxyPx, encodeBoxXyxy } from '../src/anchors/decode.js';
import { levelSizes, makePriors, priorCount } from '../src/anchors/priors.js';
import { postprocess } from '../src/postprocess/detections.js';
import { Rng } from '../src/utils/rng.js';
import { Detector, toFaces } from '../src/detector.js';
import type { InferenceSession } from '../src/runtime/backend.js';
import type { LoadedModel } from '../src/weights/checkpoint.js';
import type { RgbImage } from '../src/image/types.js';

const createRng = (seed: number) => {
  const r = Rng.fromSeed(seed);
  return () => r.float();
};

/** Naive oracle: the textbook greedy NMS, written independently of the implementation. */
function naiveNms(boxes: number[][], scores: number[], thr: number): number[] {
  const iou = (a: number[], b: number[]) => {
    const w = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!));
    const h = Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
    const u = (a[2]! - a[0]!) * (a[3]! - a[1]!) + (b[2]! - b[0]!) * (b[3]! - b[1]!) - w * h;
    return u > 0 ? (w * h) / u : 0;
  };
  let rest = scores.map((_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
  const keep: number[] = [];
  while (rest.length) {
    const i = rest.shift()!;
    keep.push(i);
    rest = rest.filter((j) => iou(boxes[i]!, boxes[j]!) <= thr);
  }
  return keep;
}

function randomBoxes(rng: () => number, n: number) {
  const boxes: number[][] = [];
  for (let i = 0; i < n; i++) {
    const x = rng() * 100,
      y = rng() * 100,
      w = 1 + rng() * 40,
      h = 1 + rng() * 40;
    boxes.push([x, y, x + w, y + h]);
  }
  // Scores on a coarse grid so that ties occur.
  const scores = boxes.map(() => Math.round(rng() * 20) / 20);
  return { boxes, scores, flat: Float32Array.from(boxes.flat()), f32scores: Float32Array.from(scores) };
}

test('NMS equals the naive oracle on random boxes (with ties), any threshold', () => {
  const rng = createRng(1);
  for (let trial = 0; trial < 300; trial++) {
    const n = Math.floor(rng() * 40);
    const { boxes, flat, f32scores } = randomBoxes(rng, n);
    const thr = [0, 0.1, 0.3, 0.5, 0.9, 1][trial % 6]!;
    // The oracle sees the same float32-rounded inputs.
    const got = [...nmsXyxy(flat, f32scores, thr)];
    const want = naiveNms(
      boxes.map((_, i) => [...flat.subarray(i * 4, i * 4 + 4)]),
      [...f32scores],
      thr,
    );
    assert.deepEqual(got, want, `trial ${trial}`);
  }
});

test('NMS: N = 0, maxKeep, and identical boxes', () => {
  assert.deepEqual([...nmsXyxy(new Float32Array(0), new Float32Array(0), 0.3)], []);
  const same = Float32Array.from([0, 0, 10, 10, 0, 0, 10, 10, 20, 20, 30, 30]);
  assert.deepEqual([...nmsXyxy(same, Float32Array.from([0.5, 0.9, 0.1]), 0.3)], [1, 2]);
  assert.deepEqual([...nmsXyxy(same, Float32Array.from([0.5, 0.9, 0.1]), 0.3, 1)], [1]);
});

test('batched NMS never suppresses across classes', () => {
  const same = Float32Array.from([0, 0, 10, 10, 0, 0, 10, 10]);
  assert.deepEqual([...batchedNmsXyxy(same, Float32Array.from([0.9, 0.8]), [0, 1], 0.3)], [0, 1]);
  assert.deepEqual([...batchedNmsXyxy(same, Float32Array.from([0.9, 0.8]), [1, 1], 0.3)], [0]);
  assert.deepEqual([...batchedNmsXyxy(new Float32Array(0), new Float32Array(0), [], 0.3)], []);
});

test('argsortDescending: descending, equal scores in index order; the prediction writer orders ties the same way', () => {
  const scores = [0.5, 0.9, 0.5, 0.1, 0.9, 0.5];
  assert.deepEqual([...argsortDescending(scores)], [1, 4, 0, 2, 5, 3]);
  assert.deepEqual([...argsortDescending(scores, 3)], [1, 0, 2]);
  assert.deepEqual([...argsortDescending(new Float32Array(0))], []);
  // Rows with equal scores keep their input order (x1 = row index tells which is which).
  const boxes = scores.flatMap((_, i) => [i, 0, i + 1, 1]);
  const rows = formatPredictionFile('e/n.jpg', boxes, scores).trim().split('\n').slice(2);
  assert.deepEqual(
    rows.map((r) => Number(r.split(' ')[0])),
    [1, 4, 0, 2, 5, 3],
  );
});

test('IoU: known values, symmetry, empty boxes, matrix shape', () => {
  const a = Float32Array.from([0, 0, 10, 10]);
  const b = Float32Array.from([5, 0, 15, 10]);
  assert.equal(iouXyxy(a, 0, b, 0), 50 / 150);
  assert.equal(iouXyxy(b, 0, a, 0), 50 / 150);
  assert.equal(iouXyxy(a, 0, Float32Array.from([20, 20, 30, 30]), 0), 0);
  assert.equal(iouXyxy(Float32Array.from([1, 1, 1, 1]), 0, Float32Array.from([1, 1, 1, 1]), 0), 0);
  assert.equal(boxIouXyxy(a, new Float32Array(0)).length, 0);
  assert.deepEqual([...boxIouXyxy(Float32Array.from([...a, ...b]), a)], [1, 50 / 150].map(Math.fround));
});

test('priors: order, centres and sizes follow the golden README', () => {
  const p = makePriors(677, 1024);
  assert.equal(p.length, priorCount(677, 1024) * 4);
  assert.deepEqual(
    levelSizes(677, 1024).map(([h]) => h),
    [170, 85, 43, 22, 11, 6],
  );
  // First prior: level 1, row 0, col 0: centre (2/1024, 2/677), size 16 px.
  assert.deepEqual([...p.subarray(0, 4)], [2 / 1024, 2 / 677, 16 / 1024, 16 / 677].map(Math.fround));
  // Second prior: next column.
  assert.equal(p[4], Math.fround(6 / 1024));
  // Last prior: level 6, last cell: stride 128, size 512.
  const last = p.subarray(p.length - 4);
  assert.deepEqual([...last], [(7.5 * 128) / 1024, (5.5 * 128) / 677, 512 / 1024, 512 / 677].map(Math.fround));
});

test('box encoding and decoding are inverse', () => {
  const rng = createRng(7);
  const priors = makePriors(320, 480);
  const out = new Float32Array(4),
    back = new Float32Array(4);
  for (let t = 0; t < 200; t++) {
    const p = Math.floor(rng() * (priors.length / 4));
    const x1 = rng() * 0.8,
      y1 = rng() * 0.8;
    const box = [x1, y1, x1 + 0.01 + rng() * 0.2, y1 + 0.01 + rng() * 0.2];
    encodeBoxXyxy(box, 0, priors, p, out, 0);
    decodeBoxXyxyPx(out, priors.subarray(p * 4, p * 4 + 4), 0, 480, 320, back, 0);
    for (let c = 0; c < 4; c++) assert.ok(Math.abs(back[c]! - box[c]! * (c % 2 ? 320 : 480)) < 1e-3, `coord ${c}`);
  }
});

test('postprocess: threshold is strict, decoding uses the variances, N = 0 works', () => {
  const priors = Float32Array.from([0.5, 0.5, 0.1, 0.2, 0.2, 0.2, 0.1, 0.1]);
  // Prior 0 face logit so that p = 0.9; prior 1 exactly at the threshold after rounding is dropped.
  const conf = Float32Array.from([0, Math.log(9), 0, 0]);
  const loc = Float32Array.from([1, -1, 0, Math.log(2) / 0.2, 0, 0, 0, 0]);
  const d = postprocess(loc, conf, priors, 100, 200, { scoreThreshold: 0.5, nmsThreshold: 0.3, maxFaces: 10, candidateLimit: 5000 });
  assert.equal(d.scores.length, 1);
  assert.ok(Math.abs(d.scores[0]! - 0.9) < 1e-6);
  // cx = 0.5 + 1*0.1*0.1 = 0.51, cy = 0.5 - 0.1*0.2 = 0.48, w = 0.1, h = 0.4
  const want = [(0.51 - 0.05) * 100, (0.48 - 0.2) * 200, (0.51 + 0.05) * 100, (0.48 + 0.2) * 200];
  want.forEach((v, i) => assert.ok(Math.abs(d.boxes[i]! - v) < 1e-4, `coord ${i}`));
  const none = postprocess(loc, conf, priors, 100, 200, { scoreThreshold: 0.95, nmsThreshold: 0.3, maxFaces: 10, candidateLimit: 5000 });
  assert.equal(none.scores.length, 0);
  assert.equal(none.boxes.length, 0);
});

test('postprocess: a box whose decoded size overflows float32 is dropped, the others kept', () => {
  // Three far-apart priors, all scored as faces; the middle one regresses an absurd log-size.
  const priors = Float32Array.from([0.1, 0.1, 0.1, 0.1, 0.5, 0.5, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1]);
  const loc = Float32Array.from([0, 0, 0, 0, 0, 0, 1000, 0, 0, 0, 0, 0]);
  const conf = Float32Array.from([0, 3, 0, 4, 0, 2]);
  const d = postprocess(loc, conf, priors, 100, 100);
  assert.equal(d.scores.length, 2);
  assert.ok(d.boxes.every(Number.isFinite));
  // Sorted by score: prior 0 (logit gap 3) then prior 2 (gap 2).
  assert.deepEqual(
    [...d.boxes].map((v) => Math.round(v)),
    [5, 5, 15, 15, 85, 85, 95, 95],
  );
});

test('detect() and detectPass() never return a non-finite box or score, whatever the network outputs; detect() clips to the image', async () => {
  // A stand-in network whose outputs are garbage: NaN, infinities, and log-sizes near float32's limit.
  const rnd = createRng(11);
  const session: InferenceSession = {
    async run(input) {
      const [, , h, w] = input.shape as [number, number, number, number];
      const p = makePriors(h, w).length / 4;
      const pick = (values: number[]) => values[Math.floor(rnd() * values.length)]!;
      const loc = new Float32Array(p * 4).map((_, i) =>
        i % 4 < 2 ? pick([NaN, Infinity, -Infinity, 3, -50, 1e30]) : pick([NaN, Infinity, 0, 400 + rnd() * 50]),
      );
      const conf = new Float32Array(p * 2).map(() => pick([NaN, Infinity, -Infinity, 0, 5, -5, 1e38]));
      return { loc: { dtype: 'float32', shape: [1, p, 4], data: loc }, conf: { dtype: 'float32', shape: [1, p, 2], data: conf } };
    },
    async release() {},
  };
  const det = new Detector({} as LoadedModel, session, async (im: RgbImage) => im);
  const image: RgbImage = { data: new Uint8Array(640 * 480 * 3), width: 640, height: 480 };
  let seen = 0;
  for (const scale of [0.05, 0.1, 1]) {
    const d = await det.detectPass(image, { scale, scoreThreshold: 0.05, nmsThreshold: 0.3, maxFaces: 750 });
    seen += d.scores.length;
    assert.ok(d.boxes.every(Number.isFinite) && d.scores.every(Number.isFinite), `detectPass at scale ${scale}`);
    for (const f of await det.detect(image, { scale, scoreThreshold: 0.05 })) {
      const b = f.box;
      assert.ok([b.x, b.y, b.width, b.height, f.score].every(Number.isFinite), JSON.stringify(f));
      assert.ok(b.x >= 0 && b.y >= 0 && b.width > 0 && b.height > 0 && b.x + b.width <= 640 && b.y + b.height <= 480, JSON.stringify(f));
    }
  }
  assert.ok(seen > 0, 'some detections survive');
});

test('toFaces: boxes clipped to the image, boxes left without area dropped; unclipped without a size', () => {
  const d = { boxes: Float32Array.from([-12, 5, 30, 40, 90, -3, 130, 20, 200, 10, 220, 30]), scores: Float32Array.from([0.9, 0.8, 0.7]) };
  assert.deepEqual(toFaces(d, { width: 100, height: 50 }), [
    { box: { x: 0, y: 5, width: 30, height: 35 }, score: d.scores[0] },
    { box: { x: 90, y: 0, width: 10, height: 20 }, score: d.scores[1] },
  ]);
  assert.equal(toFaces(d)[0]!.box.x, -12);
});

/** Clustered boxes of mixed sizes, like a detector's candidates around faces, with coarse (tied) scores. */
function clusteredBoxes(rng: () => number, n: number) {
  const centres = Array.from({ length: 1 + Math.floor(rng() * 12) }, () => [rng() * 600, rng() * 400, 8 + rng() * 200]);
  const flat = new Float32Array(n * 4);
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const [cx, cy, s] = centres[Math.floor(rng() * centres.length)]!;
    const w = s! * (0.5 + rng()),
      h = s! * (0.5 + rng());
    const x = cx! + (rng() - 0.5) * s!,
      y = cy! + (rng() - 0.5) * s!;
    flat.set([x - w / 2, y - h / 2, x + w / 2, y + h / 2], i * 4);
    scores[i] = Math.round(rng() * 50) / 50;
  }
  return { flat, scores };
}

test('NMS with many boxes (grid path) equals the naive oracle, with ties, maxKeep and any threshold', () => {
  const rng = createRng(7);
  for (let trial = 0; trial < 60; trial++) {
    const n = 64 + Math.floor(rng() * 600);
    const { flat, scores } =
      trial % 2
        ? clusteredBoxes(rng, n)
        : (() => {
            const r = randomBoxes(rng, n);
            return { flat: r.flat, scores: r.f32scores };
          })();
    const thr = [0, 0.1, 0.3, 0.5, 0.9, 1][trial % 6]!;
    const want = naiveNms(
      [...Array(n).keys()].map((i) => [...flat.subarray(i * 4, i * 4 + 4)]),
      [...scores],
      thr,
    );
    assert.deepEqual([...nmsXyxy(flat, scores, thr)], want, `trial ${trial}`);
    const maxKeep = 1 + Math.floor(rng() * 20);
    assert.deepEqual([...nmsXyxy(flat, scores, thr, maxKeep)], want.slice(0, maxKeep), `trial ${trial} maxKeep ${maxKeep}`);
  }
});

/**
 * The straightforward post-processing, written independently: every prior's
 * probability, a full stable sort, the first candidateLimit, decode, drop
 * non-finite, the naive NMS, top K.
 */
function naivePostprocess(
  loc: Float32Array,
  conf: Float32Array,
  priors: Float32Array,
  w: number,
  h: number,
  o: { scoreThreshold: number; nmsThreshold: number; maxFaces: number; candidateLimit: number },
) {
  const cands: Array<{ i: number; s: number }> = [];
  for (let i = 0; i < priors.length / 4; i++) {
    const s = 1 / (1 + Math.exp(conf[2 * i]! - conf[2 * i + 1]!));
    if (s > o.scoreThreshold) cands.push({ i, s });
  }
  cands.sort((a, b) => b.s - a.s || a.i - b.i);
  const boxes: number[][] = [];
  const scores: number[] = [];
  const out = new Float32Array(4);
  for (const { i, s } of cands.slice(0, o.candidateLimit)) {
    decodeBoxXyxyPx(loc, priors, i, w, h, out, 0);
    if (out.every(Number.isFinite)) boxes.push([...out]), scores.push(Math.fround(s));
  }
  return naiveNms(boxes, scores, o.nmsThreshold)
    .slice(0, o.maxFaces)
    .map((k) => ({ box: boxes[k]!, score: scores[k]! }));
}

test('postprocess equals the naive pipeline: many candidates, tied scores, the candidate limit cutting through ties', () => {
  const rng = createRng(11);
  const priors = makePriors(120, 160);
  const p = priors.length / 4;
  for (let trial = 0; trial < 12; trial++) {
    const loc = new Float32Array(p * 4).map(() => (rng() - 0.5) * 4);
    // Logit differences on a coarse grid, so that many priors tie exactly.
    const conf = new Float32Array(p * 2).map((_, k) => (k % 2 ? Math.round((rng() - 0.3) * 8) / 2 : 0));
    if (trial === 3) loc[4 * 17 + 2] = 1e4; // overflowing size, dropped
    const options = {
      scoreThreshold: [0.05, 0.3, 0.5, 0.9][trial % 4]!,
      nmsThreshold: [0.3, 0.5, 0][trial % 3]!,
      maxFaces: [750, 20, 5][trial % 3]!,
      candidateLimit: [5000, 333, 1000, 1][trial % 4]!,
    };
    const got = postprocess(loc, conf, priors, 160, 120, options);
    const want = naivePostprocess(loc, conf, priors, 160, 120, options);
    assert.equal(got.scores.length, want.length, `trial ${trial} count`);
    want.forEach((d, k) => {
      assert.equal(got.scores[k], d.score, `trial ${trial} score ${k}`);
      assert.deepEqual([...got.boxes.subarray(k * 4, k * 4 + 4)], d.box, `trial ${trial} box ${k}`);
    });
  }
});
