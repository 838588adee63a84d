import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DomImageReader } from '../src/image/dom.js';
import { ExtdError } from '@extd/core/utils/errors';

// Node has no DOM: these cover the pixel-array paths; the canvas paths run in Chromium (browser-e2e.test.ts).

test('RGBA raw pixels become RGB with alpha dropped, RGB passes through', () => {
  const reader = new DomImageReader();
  const rgba = new Uint8ClampedArray([1, 2, 3, 0, 4, 5, 6, 255]);
  const a = reader.read({ data: rgba, width: 2, height: 1 });
  assert.deepEqual([...a.data], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([a.width, a.height], [2, 1]);
  const b = reader.read({ data: new Uint8Array([9, 8, 7]), width: 1, height: 1 });
  assert.deepEqual([...b.data], [9, 8, 7]);
});

test('each read returns its own buffer: a second frame of the same size leaves the first one intact', () => {
  // detect() calls in flight at once each read their frame; a shared buffer would hand one call another's pixels.
  const reader = new DomImageReader();
  const frame = (v: number) => ({ data: new Uint8Array(4 * 3 * 4).fill(v), width: 4, height: 3 });
  const a = reader.read(frame(10));
  const b = reader.read(frame(20));
  assert.notEqual(b.data, a.data, 'a new buffer per read');
  assert.ok(
    a.data.every((v) => v === 10),
    'the first frame is unchanged',
  );
  assert.ok(b.data.every((v) => v === 20));
  // RGB input is copied too: the caller may refill its array at once.
  const rgb = new Uint8Array(2 * 2 * 3).fill(5);
  const c = reader.read({ data: rgb, width: 2, height: 2 });
  rgb.fill(6);
  assert.ok(c.data.every((v) => v === 5));
});

test('wrong sizes and unsupported inputs are rejected with the values named', () => {
  const reader = new DomImageReader();
  assert.throws(
    () => reader.read({ data: new Uint8Array(10), width: 2, height: 2 }),
    (e: Error) => e instanceof ExtdError && /10 values, 2x2 needs 12 \(RGB\) or 16 \(RGBA\)/.test(e.message),
  );
  assert.throws(() => reader.read({ data: new Uint8Array(0), width: 0, height: 1 }), /positive integers, got 0x1/);
  assert.throws(
    () => reader.read({ foo: 1 } as never),
    (e: Error) => e instanceof TypeError && /unsupported input \[object Object\]/.test(e.message),
  );
});
