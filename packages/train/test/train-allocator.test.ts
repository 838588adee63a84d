import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { tcmallocToPreload } from '../src/train/allocator.js';
import { throwsExtd } from '../../../test-support/expect-error.js';
import { requiredInCi } from '../../../test-support/shared.js';

const root = resolve(import.meta.dirname, '..');
const linux = process.platform === 'linux';

test('tcmallocToPreload: off, already preloaded, or a named library', () => {
  assert.equal(tcmallocToPreload({ EXTD_TCMALLOC: 'off' }), null);
  assert.equal(tcmallocToPreload({ LD_PRELOAD: '/x/libtcmalloc.so.4' }), null);
  // The relaunched process never relaunches, whatever the library is called.
  assert.equal(tcmallocToPreload({ EXTD_TCMALLOC_CHILD: '1', EXTD_TCMALLOC: '/x/libfake.so' }), null);
  if (!linux) return;
  const dir = mkdtempSync(join(tmpdir(), 'extd-alloc-'));
  try {
    const lib = join(dir, 'libfake.so');
    writeFileSync(lib, '');
    assert.equal(tcmallocToPreload({ EXTD_TCMALLOC: lib }), lib);
    throwsExtd(() => tcmallocToPreload({ EXTD_TCMALLOC: join(dir, 'missing.so') }), /EXTD_TCMALLOC=.*missing\.so: no such file/);
    throwsExtd(() => tcmallocToPreload({ EXTD_TCMALLOC: dir }), /no such file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A script that relaunches itself; the relaunched copy runs `childBody` (a statement). */
function relaunchingScript(dir: string, childBody: string): string {
  const script = join(dir, 'child.mts');
  writeFileSync(
    script,
    `import { relaunchWithTcmalloc } from ${JSON.stringify(join(root, 'src/train/allocator.ts'))};\n` +
      `const r = relaunchWithTcmalloc(process.argv[1], process.argv.slice(2));\n` +
      `if (r) { process.exitCode = await r; } else { ${childBody} }\n`,
  );
  return script;
}
/** Spawn environment: as if nothing were preloaded and this were not a relaunched process. */
const cleanEnv = () => ({ ...process.env, LD_PRELOAD: '', EXTD_TCMALLOC_CHILD: '' });

// The relaunch itself, from source: the child reports what it was started with.
// .ci/run installs tcmalloc: in CI its absence fails the tests instead of skipping them.
const noTcmalloc = !linux ? 'not Linux' : requiredInCi(tcmallocToPreload() ? false : 'no tcmalloc on this machine');

test('relaunchWithTcmalloc starts the script again with the library preloaded and returns its exit code', { skip: noTcmalloc }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-alloc-'));
  try {
    const script = relaunchingScript(
      dir,
      `console.log(JSON.stringify({ preload: process.env.LD_PRELOAD, args: process.argv.slice(2) })); process.exitCode = 3;`,
    );
    const r = spawnSync(process.execPath, ['--conditions=extd-source', '--import', 'tsx', script, 'a', '--b'], {
      encoding: 'utf8',
      cwd: root,
      env: cleanEnv(),
    });
    assert.equal(r.status, 3, r.stderr);
    const seen = JSON.parse(r.stdout.trim());
    assert.match(seen.preload, /tcmalloc/);
    assert.deepEqual(seen.args, ['a', '--b']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('relaunchWithTcmalloc: a SIGINT sent to the parent reaches the child exactly once', { skip: noTcmalloc }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-alloc-'));
  try {
    const script = relaunchingScript(
      dir,
      `let n = 0; process.on('SIGINT', () => { n++; setTimeout(() => { console.log('interrupts ' + n); process.exit(5); }, 300); }); ` +
        `console.log('ready'); setInterval(() => {}, 1000);`,
    );
    const parent = spawn(process.execPath, ['--conditions=extd-source', '--import', 'tsx', script], {
      cwd: root,
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const ready = new Promise<void>((res) =>
      parent.stdout.on('data', (d) => {
        out += d;
        if (out.includes('ready')) res();
      }),
    );
    const exited = new Promise<number | null>((res) => parent.on('exit', (code) => res(code)));
    await ready;
    parent.kill('SIGINT');
    assert.equal(await exited, 5);
    assert.match(out, /interrupts 1\b/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The published entry point: `extd train` goes through the relaunch and still
// reports bad input on one line with a non-zero exit.
test('bin/extd.js train: bad input is one line and a non-zero exit, through the relaunch', () => {
  // The bin is the extd package's; it finds this package's allocator when installed next to it.
  const bin = join(root, '../node/bin/extd.js');
  if (!existsSync(join(root, '../node/dist/cli/main.js')) || !existsSync(join(root, 'dist/train/allocator.js'))) {
    const b = spawnSync('npm', ['run', 'build'], { cwd: join(root, '../..'), encoding: 'utf8' });
    assert.equal(b.status, 0, b.stderr);
  }
  const r = spawnSync(process.execPath, [bin, 'train', '--annotations', 'x.txt', '--images', '.', '--out', join(tmpdir(), 'extd-never'), '--size', '7'], {
    encoding: 'utf8',
    cwd: root,
  });
  assert.notEqual(r.status, 0);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /size 7/);
  const bad = spawnSync(process.execPath, [bin, 'train', '--size', '8'], {
    encoding: 'utf8',
    cwd: root,
    env: { ...process.env, LD_PRELOAD: '', EXTD_TCMALLOC: '/nonexistent/libtcmalloc.so' },
  });
  assert.equal(bad.status, 2);
  assert.equal(
    bad.stderr.trim(),
    "extd train: EXTD_TCMALLOC=/nonexistent/libtcmalloc.so: no such file (expected the path of libtcmalloc_minimal.so.4, or 'off')",
  );
});
