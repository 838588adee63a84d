/**
 * The reference data the test suite reads from `../shared` (or EXTD_SHARED),
 * and a check that it is all there. `.ci/run` runs this before `npm test`, so
 * CI fails with the list of what is missing instead of passing with tests
 * skipped; test/ci-gate.test.ts runs it too.
 *
 *   node --conditions=extd-source --import tsx scripts/check-shared.ts [DIR]   exit 0: complete, 1: something is missing
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Paths under the shared folder the tests need; a path ending in '/' is a folder that must not be empty. */
export const REQUIRED_SHARED: readonly string[] = [
  ...[32, 48, 64].flatMap((w) => [`reference/weights/EXTD_${w}.pth`, `reference/weights/extd-fpn-${w}-prelu.safetensors`]),
  ...['35_Basketball_playingbasketball_35_582', '2_Demonstration_Demonstrators_2_307', '13_Interview_Interview_On_Location_13_537'].flatMap((tag) => [
    `reference/golden/${tag}.pixels.safetensors`,
    ...[32, 48, 64].map((w) => `reference/golden/${tag}.extd${w}.safetensors`),
  ]),
  'reference/golden/maps320.extd64.safetensors',
  ...[0, 1, 2, 3, 4, 5].map((k) => `reference/golden/train/match${k}.safetensors`),
  'reference/wider_pred/dev108-extd64-single/expected.json',
  'reference/wider_pred/dev108-extd64-single/images.txt',
  ...['face', 'easy', 'medium', 'hard'].map((s) => `wider/eval_tools/ground_truth/wider_${s}_val.mat`),
  'wider/eval_tools/plot/baselines/Val/setting_int/',
  'wider/wider_face_split/wider_face_train_bbx_gt.txt',
  'wider/wider_face_split/wider_face_val_bbx_gt.txt',
  'wider/WIDER_train/images/',
  'wider/WIDER_val/images/',
  'wider/WIDER_val/images/1--Handshaking/1_Handshaking_Handshaking_1_107.jpg',
  'wider/WIDER_val/images/56--Voter/56_Voter_peoplevoting_56_887.jpg',
];

/** The entries of REQUIRED_SHARED missing (or empty folders) under `dir`. */
export function missingShared(dir: string): string[] {
  return REQUIRED_SHARED.filter((rel) => {
    const p = resolve(dir, rel);
    if (!existsSync(p)) return true;
    if (rel.endsWith('/')) return !statSync(p).isDirectory() || readdirSync(p).length === 0;
    return !statSync(p).isFile();
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = resolve(process.argv[2] ?? process.env.EXTD_SHARED ?? '../shared');
  const missing = existsSync(dir) ? missingShared(dir) : [...REQUIRED_SHARED];
  if (missing.length > 0) {
    const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? ` and ${missing.length - 10} more` : '');
    console.error(
      `check-shared: the reference data at ${dir} is ${existsSync(dir) ? 'incomplete' : 'missing'}: ${missing.length} of ${REQUIRED_SHARED.length} required paths absent (${shown}); the tests need all of it (set EXTD_SHARED)`,
    );
    process.exitCode = 1;
  } else {
    console.log(`check-shared: ${dir}: all ${REQUIRED_SHARED.length} required paths present`);
  }
}
