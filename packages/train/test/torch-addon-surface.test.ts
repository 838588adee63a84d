// The addon's face is one list, NATIVE_CLASSES + NATIVE_FUNCTIONS in
// src/train/torch.ts (TorchNative is checked against it at compile time).
// Here that list is checked against what native/extd_torch.cc registers (read
// from the source, so it runs without libtorch) and against the exports of the
// built addon, so a name added to or dropped from either side fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { NATIVE_CLASSES, NATIVE_FUNCTIONS, loadTorch, torchUnavailableReason } from '../src/train/torch.js';
import { requiredInCi } from '../../../test-support/shared.js';

const SOURCE = fileURLToPath(new URL('../native/extd_torch.cc', import.meta.url));

/** What the C++ registers: the names set on `exports` in Init (the classes) and the kOps table (the functions), in order. */
function registrations(cc: string): { classes: string[]; functions: string[] } {
  // Comments out first: a commented-out entry registers nothing.
  const code = cc.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');
  const table = /const OpEntry kOps\[\] = \{([\s\S]*?)\n\};/.exec(code);
  assert.ok(table, 'extd_torch.cc: the kOps table (const OpEntry kOps[] = { ... };) was not found');
  const functions = [...table[1]!.matchAll(/\{\s*"(\w+)"\s*,/g)].map((m) => m[1]!);
  const classes = [...code.matchAll(/\bexports\.Set\(\s*"(\w+)"/g)].map((m) => m[1]!);
  // Every other exports.Set must be the loop over kOps; a new way of registering needs this parser updated.
  const calls = code.match(/\bexports\.Set\(/g)?.length ?? 0;
  assert.equal(calls, classes.length + 1, 'extd_torch.cc: exports.Set with a non-literal name other than the kOps loop');
  assert.ok(/for \(const OpEntry& e : kOps\)[\s\S]*?exports\.Set\(name,/.test(code), 'extd_torch.cc: the loop registering kOps was not found');
  return { classes, functions };
}

function difference(name: string, got: readonly string[], want: readonly string[]): string {
  const extra = got.filter((n) => !want.includes(n));
  const missing = want.filter((n) => !got.includes(n));
  return `${name}: not in torch.ts NATIVE_CLASSES/NATIVE_FUNCTIONS: [${extra.join(', ')}]; in torch.ts but not here: [${missing.join(', ')}]`;
}

const declared = [...NATIVE_CLASSES, ...NATIVE_FUNCTIONS];

test('NATIVE_FUNCTIONS has no duplicates', () => {
  assert.equal(new Set(declared).size, declared.length);
});

test('the C++ registers exactly the names torch.ts declares, functions in the same order', () => {
  const { classes, functions } = registrations(readFileSync(SOURCE, 'utf8'));
  assert.deepEqual([...classes, ...functions].sort(), [...declared].sort(), difference('extd_torch.cc', [...classes, ...functions], declared));
  assert.deepEqual(classes, [...NATIVE_CLASSES]);
  assert.deepEqual(functions, [...NATIVE_FUNCTIONS], 'NATIVE_FUNCTIONS lists the functions in kOps order');
});

test('the registration parser sees added, dropped and commented-out entries', () => {
  const cc = readFileSync(SOURCE, 'utf8');
  const base = registrations(cc).functions;
  assert.ok(base.includes('conv2d') && base.length === NATIVE_FUNCTIONS.length);
  const dropped = registrations(cc.replace(/\n\s*\{"conv2d", conv2d\},/, '')).functions;
  assert.deepEqual(
    dropped,
    base.filter((n) => n !== 'conv2d'),
  );
  const commented = registrations(cc.replace(/\{"conv2d", conv2d\},/, '// {"conv2d", conv2d},')).functions;
  assert.deepEqual(commented, dropped);
  const added = registrations(cc.replace(/(\{"conv2d", conv2d\},)/, '$1\n    {"sigmoid", sigmoid},')).functions;
  assert.deepEqual(
    added.filter((n) => n !== 'sigmoid'),
    base,
  );
  assert.equal(added.length, base.length + 1);
  const extraClass = registrations(cc.replace(/(exports\.Set\("SGD", sgdClass\);)/, '$1\n  exports.Set("Generator", genClass);')).classes;
  assert.deepEqual(extraClass, ['Tensor', 'SGD', 'Generator']);
});

const skip = requiredInCi(torchUnavailableReason() ?? false);

test('the built addon exports exactly the names torch.ts declares', { skip }, () => {
  const { addonPath } = loadTorch();
  const exported = Object.keys(createRequire(import.meta.url)(addonPath) as object);
  assert.deepEqual([...exported].sort(), [...declared].sort(), difference(addonPath, exported, declared));
});
