/**
 * The examples/ programs run as a user would run them (child processes, from
 * source), on the shared WIDER FACE images.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { torchUnavailableReason } from '@extd/train';
import { noShared, requiredInCi, sharedPath } from '../test-support/shared.js';

const EXAMPLES = fileURLToPath(new URL('../examples/', import.meta.url));

function runExample(name: string, args: string[]) {
  const r = spawnSync(process.execPath, ['--conditions=extd-source', '--import', 'tsx', join(EXAMPLES, name), ...args], { encoding: 'utf8', timeout: 600_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const PHOTOS = ['0--Parade/0_Parade_Parade_0_102.jpg', '0--Parade/0_Parade_Parade_0_164.jpg'];

test('detect-folder.ts prints every photo and its faces; a missing folder is one line and exit 2', {
  skip: noShared('wider/WIDER_val/images', PHOTOS[0]!),
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-ex-'));
  try {
    for (const p of PHOTOS) copyFileSync(sharedPath('wider/WIDER_val/images', p), join(dir, p.split('/')[1]!));
    const r = runExample('detect-folder.ts', [dir]);
    assert.equal(r.code, 0, r.stderr);
    const headers = r.stdout.split('\n').filter((l) => /^\S+\.jpg: \d+ faces?$/.test(l));
    assert.equal(headers.length, 2, r.stdout);
    const faces = r.stdout.split('\n').filter((l) => /^ {2}[\d.]+ [\d.]+ [\d.]+ [\d.]+ (0\.[5-9]\d\d|1\.000)$/.test(l));
    assert.ok(faces.length >= 2, `face lines:\n${r.stdout}`);
    const bad = runExample('detect-folder.ts', [join(dir, 'nope')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr.trim(), /^detect-folder: .*nope: not a folder$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('evaluate-wider.ts scores the first images of WIDER val', {
  skip: noShared('wider/wider_face_split/wider_face_val_bbx_gt.txt'),
}, () => {
  const r = runExample('evaluate-wider.ts', [sharedPath('wider'), '6', 'extd-32']);
  assert.equal(r.code, 0, r.stderr);
  const m = /^extd-32 on 6 WIDER val images: .* (0\.\d{4}|1\.0000) \(/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) > 0.3, `AP ${m[1]} of the released EXTD-32 on 6 images`);
});

test('fine-tune.ts trains from the released EXTD-32 and the result loads', {
  skip: requiredInCi(torchUnavailableReason() ?? false) || noShared('wider/wider_face_split/wider_face_train_bbx_gt.txt'),
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-ex-'));
  try {
    // The first 8 images of the WIDER train annotations that the shared subset has.
    const lines = readFileSync(sharedPath('wider/wider_face_split/wider_face_train_bbx_gt.txt'), 'utf8').split('\n');
    const out: string[] = [];
    let kept = 0;
    for (let i = 0; i < lines.length && kept < 8; ) {
      const file = lines[i]!.trim();
      const n = Number(lines[i + 1]);
      const rows = lines.slice(i + 2, i + 2 + Math.max(n, 1));
      if (file && existsSync(sharedPath('wider/WIDER_train/images', file))) {
        out.push(file, String(n), ...rows);
        kept++;
      }
      i += 2 + Math.max(n, 1);
    }
    assert.equal(kept, 8);
    const ann = join(dir, 'train.txt');
    writeFileSync(ann, out.join('\n') + '\n');
    const run = join(dir, 'run');
    mkdirSync(dirname(run), { recursive: true });
    const r = runExample('fine-tune.ts', [ann, sharedPath('wider/WIDER_train/images'), run, '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^model: .*ckpt-2\.safetensors/m);
    assert.ok(existsSync(join(run, 'ckpt-2.safetensors')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
