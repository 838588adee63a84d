import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logTicks, tradeoffSvg, type TradeoffPoint } from '../bench/tradeoff-figure.js';
import { svgToPng } from '../src/image/svg.js';

const point = (model: string, precision: 'float32' | 'int8', scale: number, ms: number, easy: number, hard: number): TradeoffPoint => ({
  model,
  precision,
  scale,
  ms,
  ap: { easy, medium: (easy + hard) / 2, hard },
});

test('logTicks: 1-2-5 ticks inside the range only', () => {
  assert.deepEqual(logTicks(8, 300), [10, 20, 50, 100, 200]);
  assert.deepEqual(logTicks(12, 19), []);
  assert.deepEqual(logTicks(1, 1), [1]);
});

test('tradeoffSvg: one point per configuration and panel, faster to the left, higher AP above', () => {
  const pts = [point('extd-32', 'float32', 0.5, 20, 0.7, 0.3), point('extd-32', 'float32', 1, 80, 0.9, 0.8), point('extd-64', 'int8', 1, 120, 0.93, 0.84)];
  const svg = tradeoffSvg(pts, { title: 'test' });
  const circles = [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
  assert.equal(circles.length, 2 * pts.length);
  // Easy panel first, points in series order: extd-32 x0.5, extd-32 x1, extd-64 x1.
  const [a, b, c] = circles;
  assert.ok(a![0] < b![0] && b![0] < c![0], 'x grows with ms');
  assert.ok(a![1] > b![1] && b![1] > c![1], 'y falls (SVG) as AP rises');
  // The hard panel is to the right of the easy one.
  assert.ok(circles[3]![0] > 600);
  assert.match(svg, /extd-32 float32 \(scales 0\.5, 1\)/);
  assert.match(svg, /extd-64 int8 \(scales 1\)/);
  assert.match(svg, />x0\.5</);
  assert.match(svg, /<title>test<\/title>/);
});

test('tradeoffSvg: empty input and non-positive times are errors; the SVG renders to PNG', async () => {
  assert.throws(() => tradeoffSvg([]), /no points/);
  assert.throws(() => tradeoffSvg([point('extd-32', 'int8', 1, 0, 0.5, 0.5)]), /extd-32 int8 scale 1: ms must be positive/);
  const png = await svgToPng(tradeoffSvg([point('extd-32', 'float32', 1, 50, 0.9, 0.8)]));
  assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]);
});
