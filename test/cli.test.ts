import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './cli-run.js';
import { noShared, sharedPath } from './shared.js';
import { readWeightsFile } from '../src/weights/files-node.js';

const tmp = mkdtempSync(join(tmpdir(), 'extd-cli-'));
const skip = noShared('reference', 'weights');
const pth = (w: number) => sharedPath('reference', 'weights', `EXTD_${w}.pth`);
const basketball = () => sharedPath('wider', 'WIDER_val', 'images', '35--Basketball', '35_Basketball_playingbasketball_35_582.jpg');

test('extd detect prints faces, --json is machine-readable, --draw writes an image', { skip }, () => {
  const png = join(tmp, 'drawn.png');
  const text = runCli(['detect', basketball(), '--model', pth(64), '--draw', png]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /35_Basketball_playingbasketball_35_582\.jpg: 3 faces/);
  assert.equal(text.stdout.match(/score=0\.9\d\d/g)?.length, 3);
  assert.ok(existsSync(png));
  const json = runCli(['detect', basketball(), '--model', pth(64), '--json', '--score-threshold', '0.9']);
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout);
  assert.equal(parsed.length, 1);
  assert.equal(parsed[0].width, 1024);
  assert.equal(parsed[0].faces.length, 3);
  for (const f of parsed[0].faces) {
    assert.ok(f.score > 0.9 && f.box.width > 20 && f.box.width < 80, JSON.stringify(f));
  }
});

test('extd detect on a folder reports every image and draws into a folder', { skip }, () => {
  const out = join(tmp, 'drawn');
  const dir = sharedPath('wider', 'WIDER_val', 'images', '35--Basketball');
  const r = runCli(['detect', dir, '--model', pth(32), '--draw', out]);
  assert.equal(r.code, 0, r.stderr);
  const n = readdirSync(dir).length;
  assert.equal(r.stdout.split('\n').filter((l) => l.includes(': ') && l.includes(' face')).length, n);
  assert.equal(readdirSync(out).length, n);
  assert.match(r.stderr, new RegExp(`detect ${n}/${n}`));
});

test('bad inputs: one-line errors, non-zero exit, nothing half-written', { skip }, () => {
  const missing = runCli(['detect', join(tmp, 'missing.jpg'), '--model', pth(32)]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr.trim(), `extd detect: image not found: ${join(tmp, 'missing.jpg')}`);
  const corrupt = join(tmp, 'corrupt.jpg');
  writeFileSync(corrupt, 'not an image');
  const c = runCli(['detect', corrupt, '--model', pth(32), '--draw', join(tmp, 'never.png')]);
  assert.equal(c.code, 1);
  assert.match(c.stderr.trim(), /^extd detect: cannot decode image .*corrupt\.jpg: [^\n]+$/);
  assert.ok(!existsSync(join(tmp, 'never.png')));
  const badModel = runCli(['detect', basketball(), '--model', corrupt]);
  assert.equal(badModel.code, 1);
  assert.match(badModel.stderr.trim(), /^extd detect: .*corrupt\.jpg: not a weights file/);
  const variant = runCli(['info', 'extd-fpn-80-prelu']);
  assert.equal(variant.code, 1);
  assert.match(variant.stderr, /unknown model variant 'extd-fpn-80-prelu' \(allowed: /);
  const flag = runCli(['detect', basketball(), '--score-threshold', '2']);
  assert.equal(flag.code, 1);
  assert.match(flag.stderr, /--score-threshold 2: expected a number from 0 to 1/);
  const unknown = runCli(['frobnicate']);
  assert.equal(unknown.code, 2);
});

test('extd convert writes a checked safetensors file that detect and info accept', { skip }, async () => {
  const out = join(tmp, 'extd-48.safetensors');
  const r = runCli(['convert', pth(48), '-o', out]);
  assert.equal(r.code, 0, r.stderr);
  const { tensors, metadata } = await readWeightsFile(out);
  assert.equal(tensors.size, 144);
  assert.equal(metadata.variant, 'extd-fpn-48-prelu');
  const info = runCli(['info', out]);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, /parameters\s+100,160 learnable/);
  assert.match(info.stdout, /conv MACs\s+7\.89 G at 640x640/);
  const json = runCli(['info', 'extd-ssd-64-relu', '--json']);
  const parsed = JSON.parse(json.stdout);
  assert.equal(parsed.params, 138_342);
});
