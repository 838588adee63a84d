/**
 * The test gate: in CI (CI=true, as .ci/run sets it) a missing input fails the
 * suite instead of skipping tests, and .ci/run checks the reference data
 * before running them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REQUIRED_SHARED, missingShared } from '../scripts/check-shared.js';
import { SHARED, noShared } from '../test-support/shared.js';

/** Run a test file in a child `node --test`, outside this runner's context. */
function runTestFile(file: string, env: Record<string, string>) {
  const childEnv: Record<string, string | undefined> = { ...process.env, CI: '', ...env };
  delete childEnv.NODE_TEST_CONTEXT;
  const r = spawnSync(process.execPath, ['--conditions=extd-source', '--import', 'tsx', '--test', '--test-reporter=tap', file], {
    encoding: 'utf8',
    env: childEnv,
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout + r.stderr };
}

const empty = mkdtempSync(join(tmpdir(), 'extd-no-shared-'));
process.on('exit', () => rmSync(empty, { recursive: true, force: true }));

test('without the reference data, a test file skips outside CI and fails in CI', () => {
  const local = runTestFile('packages/core/test/eval-mat5.test.ts', { EXTD_SHARED: empty });
  assert.equal(local.code, 0, local.out);
  assert.match(local.out, /# skipped 1/);
  const ci = runTestFile('packages/core/test/eval-mat5.test.ts', { EXTD_SHARED: empty, CI: 'true' });
  assert.notEqual(ci.code, 0, 'CI run passed without the reference data');
  assert.match(ci.out, /CI=true: reference data not found at .*wider_hard_val\.mat \(set EXTD_SHARED\); in CI no test may skip/);
  assert.doesNotMatch(ci.out, /# skipped [1-9]/);
});

test('without the training addon, its tests skip outside CI and fail in CI', () => {
  const env = { EXTD_TORCH_ADDON: join(empty, 'extd_torch.node') };
  const local = runTestFile('packages/train/test/train-loss.test.ts', env);
  assert.equal(local.code, 0, local.out);
  assert.match(local.out, /# skipped [1-9]/);
  const ci = runTestFile('packages/train/test/train-loss.test.ts', { ...env, CI: '1' });
  assert.notEqual(ci.code, 0, 'CI run passed without the addon');
  assert.match(ci.out, /CI=1: training needs libtorch: .*addon not built: no file at .*extd_torch\.node.*in CI no test may skip/);
});

test('check-shared (run by .ci/run before the tests) names what is missing from an incomplete copy', { skip: noShared() }, () => {
  assert.deepEqual(missingShared(SHARED), []);
  // A copy of the reference data with one file and one folder left out.
  const partial = mkdtempSync(join(tmpdir(), 'extd-partial-shared-'));
  try {
    const dropped = ['reference/weights/EXTD_48.pth', 'wider/WIDER_val/images/'];
    for (const rel of REQUIRED_SHARED) {
      if (dropped.includes(rel) || rel.startsWith('wider/WIDER_val/images/')) continue;
      const target = join(partial, rel.replace(/\/$/, ''));
      mkdirSync(dirname(target), { recursive: true });
      symlinkSync(resolve(SHARED, rel), target);
    }
    assert.deepEqual(missingShared(partial), [
      'reference/weights/EXTD_48.pth',
      'wider/WIDER_val/images/',
      'wider/WIDER_val/images/1--Handshaking/1_Handshaking_Handshaking_1_107.jpg',
      'wider/WIDER_val/images/56--Voter/56_Voter_peoplevoting_56_887.jpg',
    ]);
    const r = spawnSync(process.execPath, ['--conditions=extd-source', '--import', 'tsx', 'scripts/check-shared.ts', partial], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /^check-shared: the reference data at .* is incomplete: 4 of \d+ required paths absent \(reference\/weights\/EXTD_48\.pth, wider\/WIDER_val\/images\/, /,
    );
    const none = spawnSync(process.execPath, ['--conditions=extd-source', '--import', 'tsx', 'scripts/check-shared.ts', join(partial, 'nothing-here')], {
      encoding: 'utf8',
    });
    assert.equal(none.status, 1);
    assert.match(none.stderr, /is missing: \d+ of \d+ required paths absent/);
  } finally {
    rmSync(partial, { recursive: true, force: true });
  }
});

test('.ci/run sets CI and checks the reference data before npm test', () => {
  const script = readFileSync('.ci/run', 'utf8');
  const at = (s: string) => script.indexOf(s);
  assert.ok(at('export CI=true') >= 0, '.ci/run must set CI=true');
  assert.ok(at('scripts/check-shared.ts') >= 0 && at('scripts/check-shared.ts') < at('npm test'), 'check-shared runs before npm test');
  assert.equal(spawnSync('bash', ['-n', '.ci/run']).status, 0, '.ci/run parses');
});
