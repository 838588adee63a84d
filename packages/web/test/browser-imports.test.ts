/**
 * The browser entry must not reach Node-only code: walk the static and
 * dynamic imports of @extd/web's src/index.ts through our sources (relative
 * imports, and @extd/<package>/<module> specifiers into the sibling packages'
 * src/) and check every other bare specifier. Only onnxruntime-web may come
 * from outside the repository's packages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importSpecifiers } from '../../../test-support/imports.js';

const ALLOWED_PACKAGES = /^onnxruntime-web(\/(wasm|webgpu))?$/;
const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const PACKAGES = fileURLToPath(new URL('../../', import.meta.url));
/** Our packages by name, and their folders under packages/. */
const OWN: Record<string, string> = { '@extd/core': 'core', extd: 'node', '@extd/web': 'web', '@extd/train': 'train' };

/** The source file a specifier of one of our packages names (`@extd/core/model/graph` -> packages/core/src/model/graph.ts), or null for another package. */
export function ownSource(spec: string): string | null {
  for (const [name, dir] of Object.entries(OWN)) {
    if (spec === name) return resolve(PACKAGES, dir, 'src/index.ts');
    if (spec.startsWith(`${name}/`)) return resolve(PACKAGES, dir, 'src', `${spec.slice(name.length + 1)}.ts`);
  }
  return null;
}

/** Modules reachable from `entry` (relative imports followed), and the bare specifiers each imports. */
function walk(entry: string): { files: string[]; external: { file: string; spec: string }[] } {
  const seen = new Set<string>();
  const external: { file: string; spec: string }[] = [];
  const stack = [entry];
  while (stack.length) {
    const file = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) {
      const target = spec.startsWith('.') ? resolve(dirname(file), spec.replace(/\.js$/, '.ts')) : ownSource(spec);
      if (target) {
        assert.ok(existsSync(target), `${relative('.', file)} imports '${spec}', no such source`);
        stack.push(target);
      } else {
        external.push({ file: relative('.', file), spec });
      }
    }
  }
  return { files: [...seen], external };
}

test('the import scanner sees static, dynamic and re-export specifiers but not type-only ones', () => {
  const specs = importSpecifiers(
    "import { a } from './a.js';\nimport type { B } from 'node:fs';\nexport { c } from \"./c.js\";\nimport 'side';\nconst m = await import('onnxruntime-web/wasm');\n// import x from 'commented';\n",
  );
  assert.deepEqual(specs.sort(), ['./a.js', './c.js', 'onnxruntime-web/wasm', 'side'].sort());
});

test('@extd/web reaches no Node built-in, sharp, onnxruntime-node or fs', () => {
  const { files, external } = walk(resolve(PACKAGES, 'web/src/index.ts'));
  assert.ok(files.length > 10, `walked only ${files.length} modules`);
  assert.ok(
    files.some((f) => f.endsWith('core/src/detector.ts')),
    'shares the Detector with Node',
  );
  const bad = external.filter(({ spec }) => NODE_BUILTINS.has(spec) || !ALLOWED_PACKAGES.test(spec));
  assert.deepEqual(bad, [], 'imports not allowed in the browser build');
  assert.ok(
    external.some(({ spec }) => spec.startsWith('onnxruntime-web')),
    'uses onnxruntime-web',
  );
});

test('the Node entry, by contrast, is caught by the same walk', () => {
  const { external } = walk(resolve(PACKAGES, 'node/src/index.ts'));
  const specs = new Set(external.map((e) => e.spec));
  assert.ok(specs.has('onnxruntime-node') && specs.has('sharp'), `Node entry imports: ${[...specs].join(', ')}`);
});
