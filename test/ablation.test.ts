import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ABLATION_ROWS, RESERVED_FLAGS, ablationEtaMinutes, renderTable, type RowResult } from '../scripts/ablation.js';
import { syntheticDataset } from '../packages/train/test/synthetic-dataset.js';
import { torchUnavailableReason } from '@extd/train/train/torch';
import { train } from '@extd/train/train/trainer';
import { readLatest } from '@extd/train/train/checkpoint';
import { noShared, requiredInCi, sharedPath } from '../test-support/shared.js';

const SCRIPT = fileURLToPath(new URL('../scripts/ablation.ts', import.meta.url));
const run = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'extd-ablation-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

async function ablation(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, ['--conditions=extd-source', '--import', 'tsx', SCRIPT, ...args], { env: { ...process.env, EXTD_TCMALLOC: 'off' } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('ABLATION_ROWS: unique names, the campaign reference first, every other row changes something', () => {
  const names = ABLATION_ROWS.map((r) => r.name);
  assert.equal(new Set(names).size, names.length);
  assert.equal(ABLATION_ROWS[0]!.name, 'campaign');
  assert.deepEqual(ABLATION_ROWS[0]!.flags, []);
  for (const r of ABLATION_ROWS.slice(1)) {
    assert.ok(r.flags.length >= 2 && r.flags[0]!.startsWith('--'), r.name);
    assert.ok(!r.flags.some((f) => RESERVED_FLAGS.includes(f)), r.name);
  }
});

test('ablationEtaMinutes: rows in flight finish their budget, queued rows go to the first free of P workers', () => {
  // The last of two parallel 45-minute rows, a few seconds behind the first: done now, not in another 45 minutes.
  assert.equal(ablationEtaMinutes(2700, [2695], 0, 2), 0);
  // 7 rows of 15 minutes, 2 at a time, none started: 4 waves.
  assert.equal(ablationEtaMinutes(900, [], 7, 2), 60);
  // One row in flight for 5 of its 10 minutes, 3 queued, 2 workers: free at 5 and 0 min -> 10, 15, 20 -> 20 min.
  assert.equal(ablationEtaMinutes(600, [300], 3, 2), 20);
  // A row over its mean counts as done now; one worker runs the queue alone.
  assert.equal(ablationEtaMinutes(600, [900], 2, 1), 20);
  assert.equal(ablationEtaMinutes(600, [], 0, 2), 0);
  // Rows in flight count with what is left of them: 5 of 10 minutes left, nothing queued.
  assert.equal(ablationEtaMinutes(600, [300], 0, 2), 5);
  assert.equal(ablationEtaMinutes(600, [300, 540], 1, 2), 11);
});

test('renderTable: one line per finished row with its iterations, images, CPU seconds and AP; unfinished rows left out', () => {
  const done: RowResult = {
    name: 'campaign',
    what: 'same',
    flags: [],
    fromIteration: 100,
    toIteration: 130,
    images: 120,
    wallSeconds: 60,
    cpuSeconds: 55,
    ema: { easy: 0.5, medium: 0.25, hard: 0.125 },
    raw: { easy: 0.4, medium: 0.2, hard: 0.1 },
  };
  const running: RowResult = { name: 'paper', what: 'paper', flags: ['--lr', '0.001'], fromIteration: 100 };
  const t = renderTable([done, running], 15, 2);
  const lines = t.split('\n').filter((l) => l.startsWith('| '));
  assert.equal(lines.length, 3, 'header, rule, one row');
  const cells = (l: string) =>
    l
      .slice(2, -2)
      .split(' | ')
      .map((c) => c.trim());
  assert.deepEqual(cells(lines[2]!), ['campaign', 'same', '100-130', '120', '55', '0.500 / 0.250 / 0.125', '0.400 / 0.200 / 0.100']);
  // Columns aligned: every line has its bars at the same places, the rule is dashes.
  const bars = (l: string) => [...l].flatMap((ch, i) => (ch === '|' ? [i] : []));
  for (const l of lines) assert.deepEqual(bars(l), bars(lines[0]!), l);
  assert.match(lines[1]!, /^\| -+ \| -+ \| -+ \| -+ \| -+ \| -+ \| -+ \|$/);
  assert.match(t, /15 minutes of wall time, 1 libtorch thread, 1 loader worker, 2 rows at a time; AP on/);
  const restarted = renderTable(
    [
      { ...done, common: ['--iterations', '32000'] },
      { ...running, common: ['--lr', '1'] },
    ],
    15,
    2,
  );
  assert.match(restarted, /2 rows at a time, with `--iterations 32000` added to every row's flags; AP on/);
  const mixed = renderTable(
    [
      { ...done, common: ['--iterations', '32000'] },
      { ...done, name: 'batch-8' },
    ],
    15,
    2,
  );
  assert.match(mixed, /with `--iterations 32000` or nothing added to the rows' flags \(see each row.json\); AP on/);
});

test('bad input: one line naming it, exit 2', async () => {
  const a = await ablation(['run', '--from', join(root, 'nothing'), '--out', join(root, 'abl')]);
  assert.equal(a.code, 2);
  assert.match(a.stderr, /^ablation: --from .*nothing: no latest\.json/);
  for (const r of [a]) assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  const b = await ablation([
    'run',
    '--from',
    fileURLToPath(new URL('../campaign/extd32', import.meta.url)),
    '--out',
    join(root, 'abl'),
    '--rows',
    'campaign,fast',
  ]);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /^ablation: --rows: no row 'fast'; rows: campaign, paper, /);
  const d = await ablation(['run', '--out', join(root, 'abl'), '--', 'iterations', '5']);
  assert.equal(d.code, 2);
  assert.match(d.stderr, /^ablation: after --: expected extd train flags, got 'iterations'/);
  const e = await ablation(['run', '--out', join(root, 'abl'), '--', '--lr', '0.1', '--threads=2']);
  assert.equal(e.code, 2);
  assert.match(e.stderr, /^ablation: after --: --threads is the ablation's own/);
  const f = await ablation(['table', '--out', join(root, 'abl'), '--', '--lr', '0.1']);
  assert.equal(f.code, 2);
  assert.match(f.stderr, /^ablation: extd train flags after -- apply to run only/);
  const c = await ablation(['run', '--out', join(root, 'abl'), '--minutes=-1']);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /^ablation: --minutes -1: expected a positive number/);
  assert.ok(!existsSync(join(root, 'abl')), 'nothing written');
});

const skipRun = requiredInCi(torchUnavailableReason() ?? noShared('wider/WIDER_val/images'));

test('run: branches a run, trains each row for the budget, stops it with a checkpoint, scores it; a rerun resumes without training again', {
  skip: skipRun,
  timeout: 300_000,
}, async () => {
  // A tiny run at iteration 2 to branch from, on a synthetic data folder laid out as the campaign's.
  const data = join(root, 'data');
  const made = await syntheticDataset(data);
  renameSync(made.annotations, join(data, 'wider_face_train_bbx_gt.txt'));
  const from = join(root, 'from');
  await train(
    {
      annotations: join(data, 'wider_face_train_bbx_gt.txt'),
      images: made.images,
      size: 64,
      batch: 2,
      lr: 0.001,
      clipGradNorm: 20,
      iterations: 100000,
      checkpointEvery: 1000,
      seed: 3,
    },
    { out: from, threads: 1, workers: 0, progress: null, stopAfter: 2 },
  );
  assert.equal(readLatest(from)!.iteration, 2);
  // Two validation images.
  const val = readdirSync(sharedPath('wider/WIDER_val/images')).sort()[0]!;
  const images = readdirSync(sharedPath(`wider/WIDER_val/images/${val}`))
    .sort()
    .slice(0, 2);
  const list = join(root, 'val2.txt');
  writeFileSync(list, images.map((n) => `${val}/${n}`).join('\n') + '\n');
  const out = join(root, 'abl');
  const args = [
    'run',
    '--from',
    from,
    '--out',
    out,
    '--rows',
    'campaign,batch-8',
    '--minutes',
    '0.4',
    '--data',
    data,
    '--val-list',
    list,
    '--',
    '--iterations',
    '50000',
  ];
  const a = await ablation(args);
  assert.equal(a.code, 0, a.stderr);
  const rows = ['campaign', 'batch-8'].map((n) => JSON.parse(readFileSync(join(out, n, 'row.json'), 'utf8')) as RowResult);
  for (const r of rows) {
    assert.equal(r.fromIteration, 2);
    assert.ok(r.toIteration! > 2, `${r.name} trained: ${r.toIteration}`);
    assert.equal(readLatest(join(out, r.name))!.iteration, r.toIteration);
    assert.ok(existsSync(join(out, r.name, `ckpt-${r.toIteration}.ema.safetensors`)), 'the moving average was kept');
    assert.ok(r.cpuSeconds! > 0 && r.wallSeconds! >= 24, `${r.name}: ${r.cpuSeconds} CPU s, ${r.wallSeconds} s`);
    for (const k of ['easy', 'medium', 'hard'] as const) assert.ok(r.ema![k] >= 0 && r.ema![k] <= 1);
    assert.deepEqual(r.flags.slice(-2), ['--ema', '0.99']);
    assert.deepEqual(r.common, ['--iterations', '50000']);
  }
  assert.equal(rows[0]!.images, (rows[0]!.toIteration! - 2) * 2);
  assert.equal(rows[1]!.images, (rows[1]!.toIteration! - 2) * 8, 'batch-8 trains 8 images per iteration');
  assert.ok(rows[0]!.raw, 'the campaign row scores the raw weights too');
  assert.equal(rows[1]!.raw, undefined);
  const config = JSON.parse(readFileSync(join(out, 'batch-8', 'config.json'), 'utf8')) as { batch: number; ema: number; iterations: number };
  assert.equal(config.batch, 8);
  assert.equal(config.ema, 0.99);
  assert.equal(config.iterations, 50000, 'the flags after -- reached every row');
  assert.match(readFileSync(join(out, 'table.md'), 'utf8'), /\| batch-8 +\| batch 8 \(320x320\) +\| 2-\d+ +\|/);
  // A rerun finds both rows done: no training, the same table.
  const t0 = Date.now();
  const b = await ablation(args);
  assert.equal(b.code, 0, b.stderr);
  assert.ok(Date.now() - t0 < 20_000, 'the rerun did not train again');
  for (const r of rows) assert.equal(readLatest(join(out, r.name))!.iteration, r.toIteration);
  // Other flags after -- into the same folder, even for another row: refused, nothing trained.
  const c = await ablation([...args.slice(0, 6), 'paper', ...args.slice(7, -1), '60000']);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /^ablation: row campaign in .* ran with '-- --iterations 50000', this run has '-- --iterations 60000': name another --out/);
  for (const r of rows) assert.equal(readLatest(join(out, r.name))!.iteration, r.toIteration);
  assert.ok(!existsSync(join(out, 'paper')), 'the refused row was not started');
});
