import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { plotTrainingLog, readTrainingLog } from '../src/cli/plot-log.js';
import { main } from 'extd/cli/main';

const dir = mkdtempSync(join(tmpdir(), 'extd-plot-log-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

test('plot-log reads log.jsonl (skipping a cut last line) and writes a PNG', async () => {
  const lines = Array.from({ length: 40 }, (_, i) =>
    JSON.stringify({ iter: i + 1, loss_l: 5 / (1 + i / 10), loss_c: 10 / (1 + i / 5), lr: 1e-3, img_s: 1, time: '' }),
  );
  writeFileSync(join(dir, 'log.jsonl'), lines.join('\n') + '\n{"iter": 41, "loss_');
  const points = readTrainingLog(join(dir, 'log.jsonl'));
  assert.equal(points.length, 40);
  const png = await plotTrainingLog(points, { smooth: 3, width: 600, title: 't' });
  assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
  const code = await main(['plot-log', dir, '-o', join(dir, 'out.png')]);
  assert.equal(code, 0);
  assert.ok(readFileSync(join(dir, 'out.png')).length > 1000);
});

test('plot-log: a malformed line in the middle is an error naming file:line', () => {
  writeFileSync(join(dir, 'bad.jsonl'), '{"iter":1,"loss_l":1,"loss_c":2,"lr":0.1}\nnot json\n{"iter":2,"loss_l":1,"loss_c":2,"lr":0.1}\n');
  assert.throws(() => readTrainingLog(join(dir, 'bad.jsonl')), /bad\.jsonl:2/);
  writeFileSync(join(dir, 'bad2.jsonl'), '{"iter":1,"loss_l":"x","loss_c":2,"lr":0.1}\n');
  assert.throws(() => readTrainingLog(join(dir, 'bad2.jsonl')), /bad2\.jsonl:1: expected numbers/);
});
