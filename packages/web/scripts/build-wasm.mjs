#!/usr/bin/env node
// Builds extd's kernels for the browser (native/extd_wasm.cc, which includes
// ../node/native/network.h) with Emscripten into wasm/: WebAssembly SIMD128,
// in two builds:
//   wasm/extd-kernels.{js,wasm,worker.js}   threads as Web Workers (pthreads;
//                                           needs a cross-origin isolated page)
//   wasm/extd-kernels-st.{js,wasm}          one thread, for any page
// The browser entry (src/runtime/wasm-kernels.ts) loads one of them and falls
// back to onnxruntime-web where neither is served.
//
// Emscripten is Debian's (apt-get install emscripten). Without it this prints
// one line and exits 0, and the package runs on onnxruntime-web alone.
//
//   node scripts/build-wasm.mjs            build (skipped when up to date)
//   node scripts/build-wasm.mjs --strict   exit 1 when the build fails (CI)
//   node scripts/build-wasm.mjs --force    rebuild even when up to date
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict');
const force = process.argv.includes('--force');
const outDir = join(root, 'wasm');
const SOURCES = [join(root, 'native/extd_wasm.cc'), join(root, '../node/native/network.h'), fileURLToPath(import.meta.url)];

/** Emscripten settings shared by both builds. */
const COMMON = [
  '-O3',
  '-msimd128',
  '-std=c++17',
  '-fexceptions',
  '-sALLOW_MEMORY_GROWTH=1',
  '-sINITIAL_MEMORY=64MB',
  '-sMODULARIZE=1',
  '-sENVIRONMENT=web,worker,node',
  '-sEXPORTED_FUNCTIONS=_malloc,_free',
  '-sEXPORTED_RUNTIME_METHODS=UTF8ToString,HEAPU8,HEAPF32',
];
const BUILDS = [
  // Up to 4 threads: 3 workers made when the module loads. A run asking for more gets what the pool has
  // (POOL_SIZE_STRICT=2: pthread_create fails instead of making a worker the blocked page could never start).
  {
    name: 'extd-kernels',
    flags: ['-sEXPORT_NAME=createExtdKernels', '-pthread', '-sPTHREAD_POOL_SIZE=3', '-sPTHREAD_POOL_SIZE_STRICT=2'],
    files: ['.js', '.wasm', '.worker.js'],
  },
  { name: 'extd-kernels-st', flags: ['-sEXPORT_NAME=createExtdKernelsSingle'], files: ['.js', '.wasm'] },
];

function skip(reason) {
  // A failed rebuild must not leave the previous build (of older sources) to be loaded.
  for (const b of BUILDS) for (const f of b.files) rmSync(join(outDir, b.name + f), { force: true });
  console.log(
    `@extd/web: wasm kernels skipped (${reason}); the browser entry runs on onnxruntime-web alone. Install Emscripten (apt-get install emscripten), then npm run build:wasm -w @extd/web`,
  );
  process.exit(strict ? 1 : 0);
}

function upToDate() {
  const outputs = BUILDS.flatMap((b) => b.files.map((f) => join(outDir, b.name + f)));
  if (!outputs.every((f) => existsSync(f))) return false;
  const oldest = Math.min(...outputs.map((f) => statSync(f).mtimeMs));
  return SOURCES.every((f) => statSync(f).mtimeMs <= oldest);
}

if (!force && upToDate()) {
  console.log(`@extd/web: wasm kernels up to date: ${outDir}`);
  process.exit(0);
}
const probe = spawnSync('em++', ['--version'], { encoding: 'utf8' });
if (probe.status !== 0) skip('em++ not found');

const started = Date.now();
// Built into a temporary folder, then moved: a failed build leaves no half-written wasm/.
const tmp = join(root, '.wasm-build');
rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
// Debian's Emscripten runs its JS optimiser with Debian's node modules (acorn).
const env = { ...process.env, NODE_PATH: [process.env.NODE_PATH, '/usr/share/nodejs'].filter(Boolean).join(':') };
for (const b of BUILDS) {
  const res = spawnSync('em++', [...COMMON, ...b.flags, join(root, 'native/extd_wasm.cc'), '-o', join(tmp, `${b.name}.js`)], { encoding: 'utf8', env });
  if (res.status !== 0) {
    const log = `${res.stdout ?? ''}${res.stderr ?? ''}`;
    if (strict || process.env.EXTD_VERBOSE_BUILD === '1') process.stderr.write(log);
    rmSync(tmp, { recursive: true, force: true });
    skip(`${b.name}: ${(log.split('\n').find((l) => /error/.test(l)) ?? `em++ exited with ${res.status}`).trim().slice(0, 200)}`);
  }
}
mkdirSync(outDir, { recursive: true });
// The Emscripten glue is CommonJS-style script; this package is "type": "module", so Node (which runs the
// builds in the tests, thread workers included) must be told so for this folder.
writeFileSync(join(outDir, 'package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);
for (const b of BUILDS) for (const f of b.files) renameSync(join(tmp, b.name + f), join(outDir, b.name + f));
rmSync(tmp, { recursive: true, force: true });
console.log(`@extd/web: wasm kernels built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${outDir}`);
