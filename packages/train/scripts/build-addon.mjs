#!/usr/bin/env node
// Builds the optional libtorch training addon (native/ -> native/build).
//
// Runs as npm's install step, so it must never fail the install: without
// libtorch (or a compiler) it prints one line saying training is unavailable
// and exits 0. Everything except `extd train` works without the addon.
//
//   node scripts/build-addon.mjs            build if libtorch is present
//   node scripts/build-addon.mjs --strict   exit 1 when the build fails (CI)
//   node scripts/build-addon.mjs --force    rebuild even when up to date
//
// npm runs this on every install of the package, `npx extd` in a checkout
// included, so an addon newer than its sources is kept as is.
//
// TORCH_INCLUDE (default /usr/include) and TORCH_LIB point at another libtorch.
// EXTD_SKIP_TORCH=1 skips the build.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const strict = process.argv.includes('--strict');
const force = process.argv.includes('--force');
const built = join(nativeDir, 'build/Release/extd_torch.node');
const HOWTO = 'apt-get install libtorch-dev, then npm rebuild @extd/train';

function skip(reason) {
  console.log(`extd: training addon skipped (${reason}); \`extd train\` needs libtorch: ${HOWTO}`);
  process.exit(strict ? 1 : 0);
}

if (process.env.EXTD_SKIP_TORCH === '1') skip('EXTD_SKIP_TORCH=1');

const include = process.env.TORCH_INCLUDE || '/usr/include';
const header = join(include, 'torch/csrc/api/include/torch/torch.h');
if (!existsSync(header)) skip(`libtorch headers not found at ${header}`);
if (!existsSync(join(nativeDir, 'binding.gyp'))) skip('native/binding.gyp is missing from this copy of the package');

// npm runs install scripts with npm_config_node_gyp pointing at its bundled
// node-gyp; fall back to our devDependency, then to one on PATH.
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
// to it (Debian's nodejs, official tarballs): node-gyp would otherwise try to
// download them, which fails offline. npm passes its nodedir setting itself.
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include/node/node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

function upToDate() {
  if (!existsSync(built)) return false;
  const t = statSync(built).mtimeMs;
  return ['extd_torch.cc', 'binding.gyp'].every((f) => statSync(join(nativeDir, f)).mtimeMs <= t);
}

if (!force && upToDate()) {
  console.log(`extd: training addon up to date: ${built}`);
  process.exit(0);
}

const [cmd, ...pre] = nodeGypCommand();
const started = Date.now();
console.log('extd: building the libtorch training addon (native/build), this takes a minute or two ...');
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
console.log(`extd: training addon built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${built}`);
