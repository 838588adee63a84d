import { test } from 'node:test';
import assert from 'node:assert/strict';
import { boxVote, planPasses, runProtocol, type PassDetector } from '../src/eval/protocols.js';
import type { RgbImage } from '../src/image/types.js';

/** An image whose top-left pixel is marked, so a fake detector can tell whether it was mirrored. */
function image(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  data[0] = 255;
  return { data, width, height };
}
const isFlipped = (im: RgbImage) => im.data[0] !== 255;

class FakeDetector implements PassDetector {
  calls: Array<{ scale: number; flipped: boolean; scoreThreshold: number; nmsThreshold: number; maxFaces: number }> = [];
  constructor(private readonly respond: (scale: number, flipped: boolean, im: RgbImage) => number[][] = () => []) {}
  async detectPass(im: RgbImage, o: { scale: number; scoreThreshold: number; nmsThreshold: number; maxFaces: number }) {
    this.calls.push({ ...o, flipped: isFlipped(im) });
    const rows = this.respond(o.scale, isFlipped(im), im);
    return { boxes: Float32Array.from(rows.flatMap((r) => r.slice(0, 4))), scores: Float32Array.from(rows.map((r) => r[4]!)) };
  }
}

const close = (a: number, b: number) => Math.abs(a - b) < 1e-9;

test('single: one pass at min(1, sqrt(1700*1200/(h*w))) with the evaluation post-processing', async () => {
  for (const [w, h, s] of [
    [1700, 1200, 1],
    [300, 200, 1],
    [3400, 2400, 0.5],
  ] as const) {
    const det = new FakeDetector(() => [
      [0, 0, 10, 10, 0.2],
      [5, 5, 20, 20, 0.9],
    ]);
    const out = await runProtocol(det, image(w, h), 'single');
    assert.equal(det.calls.length, 1);
    assert.ok(close(det.calls[0]!.scale, s), `${w}x${h}: ${det.calls[0]!.scale}`);
    assert.deepEqual([det.calls[0]!.scoreThreshold, det.calls[0]!.nmsThreshold, det.calls[0]!.maxFaces], [0.05, 0.3, 750]);
    assert.deepEqual(Array.from(out.scores), [Math.fround(0.9), Math.fround(0.2)]); // sorted by score, no voting
  }
});

test('single with a scale: the pass runs at shrink * scale; the paper protocol refuses a scale', async () => {
  for (const [w, h, scale, s] of [
    [300, 200, 0.5, 0.5],
    [3400, 2400, 0.5, 0.25],
    [300, 200, 2, 2],
  ] as const) {
    const det = new FakeDetector();
    await runProtocol(det, image(w, h), 'single', { scale });
    assert.ok(close(det.calls[0]!.scale, s), `${w}x${h} x${scale}: ${det.calls[0]!.scale}`);
  }
  assert.throws(() => planPasses('paper', 300, 200, undefined, 0.5), /single protocol only/);
  assert.throws(() => planPasses('single', 300, 200, undefined, 0), /scale 0: expected a positive number/);
  assert.equal(planPasses('paper', 300, 200, undefined, 1).length > 1, true);
});

test('paper: scales requested for large, medium and small images', async () => {
  const scales = async (w: number, h: number) => {
    const det = new FakeDetector();
    await runProtocol(det, image(w, h), 'paper');
    return det.calls.map((c) => `${c.scale.toFixed(4)}${c.flipped ? 'f' : ''}`);
  };
  // max_shrink = 1: base 1, flip, st = 0.5, bt = (0.5 + 1) / 2.
  assert.deepEqual(await scales(1700, 1200), ['1.0000', '1.0000f', '0.5000', '0.7500']);
  // max_shrink = sqrt(34) = 5.831: bt = 2, then 4, then max_shrink itself.
  assert.deepEqual(await scales(300, 200), ['1.0000', '1.0000f', '0.5000', '2.0000', '4.0000', '5.8310']);
  // max_shrink = 0.5 < 0.75: st = 0.25, bt = (0.25 + 0.5) / 2.
  assert.deepEqual(await scales(3400, 2400), ['0.5000', '0.5000f', '0.2500', '0.3750']);
  // 1 < max_shrink = sqrt(1.7) <= 2: bt = max_shrink, no further passes.
  assert.deepEqual(await scales(1200, 1000), ['1.0000', '1.0000f', '0.5000', '1.3038']);
  assert.deepEqual(
    planPasses('paper', 1200, 1000).map((p) => p.keep),
    ['all', 'all', 'longer>30', 'shorter<100'],
  );
  assert.deepEqual(
    planPasses('paper', 1700, 1200).map((p) => p.keep),
    ['all', 'all', 'longer>30', 'longer>30'],
  );
});

test('paper: size filters per pass (side = x2 - x1 + 1), then voting drops lone boxes', async () => {
  const det = new FakeDetector((scale) => {
    if (scale === 0.5)
      return [
        [0, 0, 29, 9, 0.9],
        [0, 0, 29, 9, 0.9],
        [100, 100, 130, 109, 0.8],
        [100, 100, 130, 109, 0.8],
      ];
    if (scale === 2)
      return [
        [200, 0, 299, 98, 0.7],
        [200, 0, 299, 98, 0.7],
        [0, 100, 100, 199, 0.95],
        [0, 100, 100, 199, 0.95],
      ];
    if (scale === 4) return [[50, 50, 60, 60, 0.99]]; // kept by the filter, but alone: voting drops it
    return [];
  });
  const out = await runProtocol(det, image(300, 200), 'paper');
  assert.deepEqual(Array.from(out.scores), [Math.fround(0.8), Math.fround(0.7)]);
  assert.deepEqual(Array.from(out.boxes), [100, 100, 130, 109, 200, 0, 299, 98]);
});

test('paper: boxes from the mirrored pass are mapped back with x1 = W - x2, x2 = W - x1', async () => {
  const W = 1700;
  const det = new FakeDetector((scale, flipped) => {
    if (scale !== 1) return [];
    return flipped ? [[10, 20, 50, 80, 0.6]] : [[W - 50, 20, W - 10, 80, 0.9]];
  });
  const out = await runProtocol(det, image(W, 1200), 'paper');
  // The two boxes coincide after mapping, so they form one voting group.
  assert.deepEqual(Array.from(out.boxes), [W - 50, 20, W - 10, 80]);
  assert.deepEqual(Array.from(out.scores), [Math.fround(0.9)]);
});

test('box voting: +1 IoU convention, score-weighted mean, max score, lone boxes dropped, keep limit', () => {
  const boxes = Float32Array.from([
    0,
    0,
    9,
    9, // A 0.9
    1,
    0,
    10,
    9, // B 0.6, IoU(A) = 90/110
    100,
    100,
    109,
    109, // C 0.8, alone
    0,
    0,
    9,
    9, // D 0.3
  ]);
  const scores = Float32Array.from([0.9, 0.6, 0.8, 0.3]);
  const v = boxVote(boxes, scores, 0.3, 750);
  assert.equal(v.scores.length, 1);
  assert.equal(v.scores[0], Math.fround(0.9));
  const s = 0.9 + 0.6 + 0.3;
  const want = [(1 * 0.6) / s, 0, (9 * 0.9 + 10 * 0.6 + 9 * 0.3) / s, 9];
  v.boxes.forEach((b, i) => assert.ok(Math.abs(b - want[i]!) < 1e-5, `coord ${i}: ${b} vs ${want[i]}`));
  // IoU 50/150 = 0.333 with +1 (0.286 without): grouped at 0.3.
  const pair = boxVote(Float32Array.from([0, 0, 9, 9, 5, 0, 14, 9]), Float32Array.from([0.5, 0.5]), 0.3, 750);
  assert.equal(pair.scores.length, 1);
  // keep limit and empty input.
  const many = boxVote(Float32Array.from([0, 0, 9, 9, 0, 0, 9, 9, 50, 50, 59, 59, 50, 50, 59, 59]), Float32Array.from([0.9, 0.9, 0.8, 0.8]), 0.3, 1);
  assert.deepEqual(Array.from(many.scores), [Math.fround(0.9)]);
  assert.equal(boxVote(new Float32Array(0), new Float32Array(0)).scores.length, 0);
});
