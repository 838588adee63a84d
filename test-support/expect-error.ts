import assert from 'node:assert/strict';
import { ExtdError } from '@extd/core/utils/errors';

/** An assert.throws validator: an ExtdError whose one-line message matches `re`. */
export function isExtdError(re: RegExp) {
  return (e: unknown): true => {
    assert.ok(e instanceof ExtdError, `expected ExtdError, got ${String(e)}`);
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), 'error message must be one line');
    return true;
  };
}

export function throwsExtd(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, isExtdError(re));
}
