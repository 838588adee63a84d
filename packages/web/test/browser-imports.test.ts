/**
 * The browser entry must not reach Node-only code: walk the static and
 * dynamic imports of src/browser.ts through our sources and check every bare
 * specifier. Only onnxruntime-web may come from outside src/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, relative, resolve } from 'node:path';

const ALLOWED_PACKAGES = /^onnxruntime-web(\/(wasm|webgpu))?$/;
const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/** Every module specifier in a TypeScript source: import/export ... from, side-effect imports, import(). Type-only imports are erased, so they do not count. */
export function importSpecifiers(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const specs: string[] = [];
  const fromRe = /(?:^|\n)\s*(import|export)\s+(type\s+)?[^'"`;]*?\sfrom\s+['"]([^'"]+)['"]/g;
  for (const m of code.matchAll(fromRe)) if (!m[2]) specs.push(m[3]!);
  for (const m of code.matchAll(/(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g)) specs.push(m[1]!);
  for (const m of code.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) specs.push(m[1]!);
  return specs;
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
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
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
    "import { a } from '../../../test/a.js';\nimport type { B } from 'node:fs';\nexport { c } from \"./c.js\";\nimport 'side';\nconst m = await import('onnxruntime-web/wasm');\n// import x from 'commented';\n",
  );
  assert.deepEqual(specs.sort(), ['./a.js', './c.js', 'onnxruntime-web/wasm', 'side'].sort());
});

test('src/browser.ts reaches no Node built-in, sharp, onnxruntime-node or fs', () => {
  const { files, external } = walk(resolve('src/browser.ts'));
  assert.ok(files.length > 10, `walked only ${files.length} modules`);
  assert.ok(files.some((f) => f.endsWith('src/detector.ts')), 'shares the Detector with Node');
  const bad = external.filter(({ spec }) => NODE_BUILTINS.has(spec) || !ALLOWED_PACKAGES.test(spec));
  assert.deepEqual(bad, [], 'imports not allowed in the browser build');
  assert.ok(external.some(({ spec }) => spec.startsWith('onnxruntime-web')), 'uses onnxruntime-web');
});

test('the Node entry, by contrast, is caught by the same walk', () => {
  const { external } = walk(resolve('src/index.ts'));
  const specs = new Set(external.map((e) => e.spec));
  assert.ok(specs.has('onnxruntime-node') && specs.has('sharp'), `Node entry imports: ${[...specs].join(', ')}`);
});
