import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * Location of the read-only reference data (WIDER FACE subset, released
 * checkpoints, golden outputs). Tests read it in place and never copy it.
 */
export const SHARED = resolve(process.env.EXTD_SHARED ?? '../shared');

export function sharedPath(...parts: string[]): string {
  return resolve(SHARED, ...parts);
}

/** For `test(name, { skip: noShared(...) }, fn)`: a reason string when the data is absent. */
export function noShared(...parts: string[]): string | false {
  const p = sharedPath(...parts);
  return existsSync(p) ? false : `reference data not found at ${p} (set EXTD_SHARED)`;
}
