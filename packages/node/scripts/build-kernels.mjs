#!/usr/bin/env node
// Builds extd's optional native kernels (native/ -> native/build): the
// float32 network as fused kernels (README, Speed). detect() uses them when
// they are built and falls back to onnxruntime when they are not.
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
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const strict = process.argv.includes('--strict');
const force = process.argv.includes('--force');
const built = join(nativeDir, 'build/Release/extd_kernels.node');
const SOURCES = ['extd_kernels.cc', 'network.h', 'binding.gyp'];
// The build machine's CPU flags, next to the addon: it is compiled with -march=native, and
// src/runtime/native-network.ts refuses to load it on a CPU that lacks one of its instruction sets.
const cpuRecord = built.replace(/\.node$/, '.cpu.json');

function cpuFlags() {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => /^(flags|Features)\s*:/.test(l));
    return line ? line.split(':')[1].trim().split(/\s+/).sort() : [];
  } catch {
    return [];
  }
}

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
  if (!existsSync(built) || !existsSync(cpuRecord)) return false;
  const t = statSync(built).mtimeMs;
  if (!SOURCES.every((f) => statSync(join(nativeDir, f)).mtimeMs <= t)) return false;
  // Built on another CPU (a copied node_modules, a container image): rebuild for this one.
  try {
    return JSON.stringify(JSON.parse(readFileSync(cpuRecord, 'utf8')).flags) === JSON.stringify(cpuFlags());
  } catch {
    return false;
  }
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
writeFileSync(cpuRecord, `${JSON.stringify({ flags: cpuFlags() })}\n`);
console.log(`extd: native kernels built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${built}`);
