/**
 * The packages' dependency direction: core imports nothing outside itself;
 * web only core and onnxruntime-web; node only core, its runtime libraries
 * and Node; train may use node and core. Every bare import of a package's
 * sources is one of its package.json dependencies (or a Node built-in).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importSpecifiers } from '../test-support/imports.js';

const PACKAGES = fileURLToPath(new URL('../packages/', import.meta.url));
const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** The package a bare specifier names: '@scope/name' or 'name'. */
function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** Bare specifiers imported by a package's src/, with the file. */
function bareImports(pkg: string): { file: string; spec: string }[] {
  const out: { file: string; spec: string }[] = [];
  for (const file of sources(join(PACKAGES, pkg, 'src'))) {
    for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) if (!spec.startsWith('.')) out.push({ file: file.slice(PACKAGES.length), spec });
  }
  return out;
}

const ALLOWED: Record<string, (pkg: string) => boolean> = {
  core: () => false,
  web: (p) => p === '@extd/core' || p === 'onnxruntime-web',
  node: (p) => NODE_BUILTINS.has(p) || ['@extd/core', 'onnxruntime-node', 'sharp', 'jsfive'].includes(p),
  train: (p) => NODE_BUILTINS.has(p) || ['@extd/core', 'extd'].includes(p),
};

for (const [pkg, allowed] of Object.entries(ALLOWED)) {
  test(`packages/${pkg}/src imports only what its layer may, and declares it`, () => {
    const manifest = JSON.parse(readFileSync(join(PACKAGES, pkg, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    const deps = new Set(Object.keys(manifest.dependencies ?? {}));
    const imports = bareImports(pkg);
    const bad = imports.filter(({ spec }) => !allowed(NODE_BUILTINS.has(spec) ? spec : packageOf(spec)));
    assert.deepEqual(bad, [], `imports across the boundary of ${pkg}`);
    const undeclared = imports.filter(({ spec }) => !NODE_BUILTINS.has(spec) && !deps.has(packageOf(spec)));
    assert.deepEqual(undeclared, [], `imports missing from packages/${pkg}/package.json dependencies`);
  });
}

test('the checks see the imports (not an empty scan)', () => {
  assert.equal(bareImports('core').length, 0);
  assert.ok(bareImports('node').some(({ spec }) => spec === 'onnxruntime-node'));
  assert.ok(bareImports('web').some(({ spec }) => spec.startsWith('onnxruntime-web')));
  assert.ok(bareImports('train').some(({ spec }) => spec.startsWith('extd/')));
  assert.ok(ALLOWED.node!('sharp') && !ALLOWED.node!('@extd/web') && !ALLOWED.web!('sharp') && !ALLOWED.core!('node:fs'));
});
