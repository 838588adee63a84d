import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReusePool } from '../src/utils/pool.js';

test('ReusePool: take finds an item by size and removes it; put keeps the newest max items', () => {
  const pool = new ReusePool<Float32Array>((b) => b.length, 2);
  assert.equal(pool.take(4), undefined, 'empty');
  const a = new Float32Array(4),
    b = new Float32Array(8),
    c = new Float32Array(4);
  pool.put(a);
  pool.put(b);
  assert.equal(pool.take(8), b);
  assert.equal(pool.take(8), undefined, 'an item goes to one caller only');
  pool.put(b);
  pool.put(c); // over max: the oldest (a) goes
  assert.equal(pool.take(4), c);
  assert.equal(pool.take(4), undefined);
  assert.equal(pool.take(8), b);
});
