import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildGraph } from '@extd/core/model/graph';
import { parseVariant } from '@extd/core/model/variant';
import { convFans, initialWeights } from '../src/train/init.js';
import { learningRate, SCHEDULE_DEFAULTS, validateSchedule } from '../src/train/schedule.js';

test('step schedule: the paper recipe, x0.1 at 120k and 180k', () => {
  assert.equal(learningRate(0), 1e-3);
  assert.equal(learningRate(119_999), 1e-3);
  assert.ok(Math.abs(learningRate(120_000) - 1e-4) < 1e-12);
  assert.ok(Math.abs(learningRate(179_999) - 1e-4) < 1e-12);
  assert.ok(Math.abs(learningRate(180_000) - 1e-5) < 1e-13);
  assert.ok(Math.abs(learningRate(239_999) - 1e-5) < 1e-13);
});

test('linear warm-up from warmupFactor x lr, then the schedule', () => {
  const o = { lr: 0.01, warmup: 100, warmupFactor: 0.1, steps: [1000] };
  assert.ok(Math.abs(learningRate(0, o) - 0.001) < 1e-12);
  assert.ok(Math.abs(learningRate(50, o) - 0.0055) < 1e-12);
  assert.ok(Math.abs(learningRate(99, o) - 0.01 * (0.1 + 0.9 * 0.99)) < 1e-12);
  assert.equal(learningRate(100, o), 0.01);
  assert.ok(Math.abs(learningRate(1000, o) - 0.001) < 1e-12);
});

test('cosine schedule: lr at the end of warm-up, minLr at the end, half-way in the middle', () => {
  const o = { lr: 0.02, policy: 'cosine' as const, iterations: 1100, warmup: 100, minLr: 0.002 };
  assert.ok(Math.abs(learningRate(100, o) - 0.02) < 1e-12);
  assert.ok(Math.abs(learningRate(600, o) - 0.011) < 1e-12);
  assert.ok(Math.abs(learningRate(1100, o) - 0.002) < 1e-12);
  assert.ok(learningRate(300, o) > learningRate(301, o));
});

test('schedule validation names the bad option', () => {
  assert.throws(() => validateSchedule({ ...SCHEDULE_DEFAULTS, lr: -1 }), /--lr -1: expected a positive number/);
  assert.throws(() => validateSchedule({ ...SCHEDULE_DEFAULTS, warmup: 1.5 }), /--warmup 1.5: expected a non-negative integer/);
  assert.throws(() => validateSchedule({ ...SCHEDULE_DEFAULTS, policy: 'poly' as never }), /--lr-policy poly: expected step or cosine/);
});

test('He init: conv weights N(0, 2/fan_in), BN 1/0, running stats 0/1, PReLU 0.25; seeded', () => {
  const graph = buildGraph(parseVariant('extd-fpn-32-prelu'));
  const w = initialWeights(graph, 3);
  assert.equal(w.size, graph.params.length);
  // The stem's expansion conv of F (1x1, 32 -> 64): fan_in 32, 2048 samples.
  const big = w.get('base.2.conv.0.weight')!;
  assert.deepEqual(big.shape, [64, 32, 1, 1]);
  const { fanIn } = convFans(big.shape);
  const n = big.data.length;
  let mean = 0,
    sq = 0;
  for (const v of big.data) (mean += v), (sq += v * v);
  mean /= n;
  const std = Math.sqrt(sq / n - mean * mean);
  const expected = Math.sqrt(2 / fanIn);
  // std of a 2048-sample estimate is ~1.6% of sigma; 6% is ~4 sigma.
  assert.ok(Math.abs(std / expected - 1) < 0.06, `std ${std}, expected ${expected}`);
  assert.ok(Math.abs(mean) < (4 * expected) / Math.sqrt(n), `mean ${mean}`);
  // Depthwise conv: fan_in is 1 * 3 * 3.
  assert.equal(convFans(w.get('base.2.conv.3.weight')!.shape).fanIn, 9);
  assert.ok(w.get('base.0.1.weight')!.data.every((v) => v === 1));
  assert.ok(w.get('base.0.1.bias')!.data.every((v) => v === 0));
  assert.ok(w.get('base.0.1.running_mean')!.data.every((v) => v === 0));
  assert.ok(w.get('base.0.1.running_var')!.data.every((v) => v === 1));
  assert.ok(w.get('loc.0.bias')!.data.every((v) => v === 0));
  assert.equal(w.get('base.0.2.weight')!.data[0], 0.25);
  // Same seed, same weights; another seed, other weights.
  assert.deepEqual(initialWeights(graph, 3).get('loc.3.weight')!.data, w.get('loc.3.weight')!.data);
  assert.notDeepEqual(initialWeights(graph, 4).get('loc.3.weight')!.data, w.get('loc.3.weight')!.data);
  const fanOut = initialWeights(graph, 3, { mode: 'fan_out' }).get('loc.0.weight')!;
  assert.ok(Math.abs(fanOut.data[0]! / w.get('loc.0.weight')!.data[0]! - Math.sqrt(convFans(fanOut.shape).fanIn / convFans(fanOut.shape).fanOut)) < 1e-5);
});

test('headStd: only the heads (loc.N, conf.N weights) get N(0, headStd^2), the backbone stays He', () => {
  const graph = buildGraph(parseVariant('extd-fpn-32-prelu'));
  const he = initialWeights(graph, 3);
  const small = initialWeights(graph, 3, { headStd: 0.01 });
  for (const p of graph.params) {
    const a = he.get(p.name)!.data,
      b = small.get(p.name)!.data;
    if (/^(loc|conf)\.\d+\.weight$/.test(p.name)) {
      // The same normal samples, rescaled from He's std to 0.01.
      const ratio = 0.01 / Math.sqrt(2 / convFans(p.shape).fanIn);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(b[i]! - a[i]! * ratio) <= 1e-6 * Math.abs(a[i]! * ratio) + 1e-12, p.name);
    } else {
      assert.deepEqual(b, a, p.name);
    }
  }
  // The heads of all 6 levels were rescaled (4 outputs at level 1's conf, so 12 head weights in all).
  const heads = graph.params.filter((p) => /^(loc|conf)\.\d+\.weight$/.test(p.name));
  assert.equal(heads.length, 12);
});
