#!/usr/bin/env node
// Builds extd's optional native kernels (native/ -> native/build): the fused
// float32 kernels of EXTD's first stage (README, Speed). detect() uses them
// when they are built and falls back to onnxruntime alone when they are not.
//
// Runs as npm's install step, so it must never fail the install: without a
// C++ compiler (or node-gyp's Python) it prints one line and exits 0.
//
//   node scripts/build-kernels.mjs            build (skipped when up to date)
//   node scripts/build-kernels.mjs --strict   exit 1 when the build fails (CI)
//   node scripts/build-kernels.mjs --force    rebuild even when up to date
//
// EXTD_SKIP_KERNELS=1 skips the build.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const strict = process.argv.includes('--strict');
const force = process.argv.includes('--force');
const built = join(nativeDir, 'build/Release/extd_kernels.node');
const SOURCES = ['extd_kernels.cc', 'network.h', 'binding.gyp'];

function skip(reason) {
  console.log(`extd: native kernels skipped (${reason}); detect() runs on onnxruntime alone (slower). Install a C++ compiler, then npm rebuild extd`);
  process.exit(strict ? 1 : 0);
}

if (process.env.EXTD_SKIP_KERNELS === '1') skip('EXTD_SKIP_KERNELS=1');
if (!existsSync(join(nativeDir, 'binding.gyp'))) skip('native/binding.gyp is missing from this copy of the package');

// npm runs install scripts with npm_config_node_gyp pointing at its bundled
// node-gyp; fall back to the workspace's devDependency, then to one on PATH.
function nodeGypCommand() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  try {
    const require = createRequire(import.meta.url);
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js')];
  } catch {
    return ['node-gyp'];
  }
}

// Build against the running node's own headers when they are installed next
// to it: node-gyp would otherwise try to download them, which fails offline.
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include/node/node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

function upToDate() {
  if (!existsSync(built)) return false;
  const t = statSync(built).mtimeMs;
  return SOURCES.every((f) => statSync(join(nativeDir, f)).mtimeMs <= t);
}

if (!force && upToDate()) {
  console.log(`extd: native kernels up to date: ${built}`);
  process.exit(0);
}

const [cmd, ...pre] = nodeGypCommand();
const started = Date.now();
console.log('extd: building the native kernels (native/build) ...');
const res = spawnSync(cmd, [...pre, 'rebuild', '--release', ...nodedirArgs()], {
  cwd: nativeDir,
  stdio: ['ignore', 'pipe', 'pipe'],
  encoding: 'utf8',
  env: process.env,
});
if (res.status !== 0 || !existsSync(built)) {
  const log = `${res.stdout ?? ''}${res.stderr ?? ''}`;
  const firstError = log
    .split('\n')
    .find((l) => /error:|ERR! stack Error/.test(l))
    ?.trim();
  if (process.env.EXTD_VERBOSE_BUILD === '1' || strict) process.stderr.write(log);
  skip(`build failed: ${(firstError ?? res.error?.message ?? `node-gyp exited with ${res.status}`).slice(0, 200)}`);
}
console.log(`extd: native kernels built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${built}`);
