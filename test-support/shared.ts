import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Location of the read-only reference data (WIDER FACE subset, released
 * checkpoints, golden outputs). Tests read it in place and never copy it.
 * EXTD_SHARED (relative to the working directory), else `shared/` next to the
 * repository, whichever package's tests run.
 */
export const SHARED = process.env.EXTD_SHARED ? resolve(process.env.EXTD_SHARED) : fileURLToPath(new URL('../../shared', import.meta.url));

export function sharedPath(...parts: string[]): string {
  return resolve(SHARED, ...parts);
}

/**
 * True in CI (the CI variable set to anything but '', 'false' or '0', as CI
 * services and .ci/run set it). There, nothing a test needs may be missing.
 */
export const IN_CI = !!process.env.CI && !['false', '0'].includes(process.env.CI.toLowerCase());

/**
 * For `test(name, { skip: requiredInCi(reason) }, fn)`: outside CI the skip
 * reason (or false) as given; in CI a reason throws instead, so the test file
 * fails rather than skipping: CI provides the reference data, libtorch,
 * Chromium and tcmalloc (.ci/run), and a suite that passes with tests skipped
 * proves nothing.
 */
export function requiredInCi(reason: string | false): string | false {
  if (reason && IN_CI) throw new Error(`CI=${process.env.CI}: ${reason}; in CI no test may skip for a missing input (see .ci/run)`);
  return reason;
}

/** For `test(name, { skip: noShared(...) }, fn)`: a reason string when the data is absent (in CI: throws, see requiredInCi). */
export function noShared(...parts: string[]): string | false {
  const p = sharedPath(...parts);
  return requiredInCi(existsSync(p) ? false : `reference data not found at ${p} (set EXTD_SHARED)`);
}
