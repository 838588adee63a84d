import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { readWeightsFile } from 'extd/weights/files-node';
import { join } from 'node:path';
import {
  AP_FILE,
  CAMPAIGN_FILE,
  CURVE_FILE,
  plotCampaign,
  readCampaign,
  readLog,
  recordAp,
  seedRun,
  snapshot,
  teacherOf,
  teacherPeriods,
  describeTeachers,
  thinLog,
  valSubset,
  VAL_SUBSET_FILE,
  type Campaign,
  type LogLine,
} from '../scripts/campaign.js';
import { noShared, sharedPath } from '../test-support/shared.js';
import { readLatest } from '@extd/train/train/checkpoint';
import { ExtdError } from '@extd/core/utils/errors';

/** The committed campaign folder. */
const CAMPAIGN_DIR = fileURLToPath(new URL('../campaign/extd32', import.meta.url));

const rec = (iter: number, lossC = iter, imgS = 2): LogLine => ({
  iter,
  loss_l: 1,
  loss_c: lossC,
  lr: iter / 1000,
  grad_norm: 10,
  positives: 5,
  img_s: imgS,
  time: `t${iter}`,
});

test('thinLog: one record per bucket (k-1)*every < iter <= k*every, means of the losses, last lr', () => {
  const t = thinLog(
    [1, 2, 3, 4, 5, 6, 7].map((i) => rec(i)),
    3,
  );
  assert.deepEqual(
    t.map((r) => [r.iter, r.loss_c, r.lr, r.n]),
    [
      [3, 2, 0.003, 3],
      [6, 5, 0.006, 3],
      [7, 7, 0.007, 1],
    ],
  );
  // A continuation starting mid-bucket gets its own record for the rest of that bucket.
  assert.deepEqual(
    thinLog(
      [8, 9, 10].map((i) => rec(i)),
      3,
    ).map((r) => [r.iter, r.n]),
    [
      [9, 2],
      [10, 1],
    ],
  );
});

/** A fake run folder: checkpoint files (bytes only: snapshot copies them) at `iters`, a full log to `logTo`. */
function fakeRun(dir: string, iters: number[], logTo: number, threads = 1): void {
  mkdirSync(dir, { recursive: true });
  for (const i of iters) {
    writeFileSync(join(dir, `ckpt-${i}.safetensors`), `model ${i}`);
    writeFileSync(join(dir, `ckpt-${i}.state.safetensors`), `state ${i}`);
  }
  const last = iters[iters.length - 1]!;
  writeFileSync(join(dir, 'latest.json'), JSON.stringify({ iteration: last, model: `ckpt-${last}.safetensors`, state: `ckpt-${last}.state.safetensors` }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ batch: 4, threads }));
  writeFileSync(join(dir, 'log.jsonl'), Array.from({ length: logTo }, (_, k) => JSON.stringify(rec(k + 1)) + '\n').join(''));
}

function fakeCampaign(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const c: Campaign = {
    name: 't',
    description: '',
    data: { dir: '/nowhere', madeBy: 'x', images: 1, faces: 1 },
    recipe: ['--size', '320'],
    segments: [
      { fromIteration: 0, started: 's', host: 'a', threads: 1, workers: 1, command: 'c' },
      { fromIteration: 10, started: 's', host: 'b', threads: 2, workers: 1, command: 'c' },
    ],
    progress: null,
  };
  writeFileSync(join(dir, CAMPAIGN_FILE), JSON.stringify(c));
}

test('snapshot copies the latest checkpoint, thins the log up to it, adds up hours; seedRun continues from it on a new machine', () => {
  const root = mkdtempSync(join(tmpdir(), 'extd-campaign-'));
  try {
    const camp = join(root, 'campaign'),
      run = join(root, 'run');
    fakeCampaign(camp);
    fakeRun(run, [5, 10], 12); // log runs 2 iterations past the checkpoint: those are not committed
    let r = snapshot(camp, run, 4);
    assert.equal(r.iteration, 10);
    // 10 steps of 4 images at 2 img/s = 20 s, all on segment 1 (1 thread).
    assert.equal(r.trainHours, Math.round((20 / 3600) * 1000) / 1000);
    assert.deepEqual(
      readdirSync(camp)
        .filter((f) => f.startsWith('ckpt-'))
        .sort(),
      ['ckpt-10.safetensors', 'ckpt-10.state.safetensors'],
    );
    assert.equal(readFileSync(join(camp, 'ckpt-10.safetensors'), 'utf8'), 'model 10');
    assert.deepEqual(
      readLog(join(camp, 'log.jsonl')).map((l) => [l.iter, l.n]),
      [
        [4, 4],
        [8, 4],
        [10, 2],
      ],
    );
    assert.equal(readCampaign(camp).progress?.iteration, 10);

    // The run goes on to 20 (iterations 11-20 on 2 threads) and is snapshotted again.
    fakeRun(run, [15, 20], 20);
    r = snapshot(camp, run, 4);
    assert.deepEqual(
      readLog(join(camp, 'log.jsonl')).map((l) => [l.iter, l.n]),
      [
        [4, 4],
        [8, 4],
        [10, 2],
        [12, 2],
        [16, 4],
        [20, 4],
      ],
    );
    assert.equal(r.cpuHours, Math.round(((20 + 20 * 2) / 3600) * 1000) / 1000);
    assert.deepEqual(
      readdirSync(camp)
        .filter((f) => f.startsWith('ckpt-'))
        .sort(),
      ['ckpt-20.safetensors', 'ckpt-20.state.safetensors'],
    );
    // Repeating a snapshot changes nothing.
    const before = readFileSync(join(camp, 'log.jsonl'), 'utf8');
    snapshot(camp, run, 4);
    assert.equal(readFileSync(join(camp, 'log.jsonl'), 'utf8'), before);

    // A new machine: an empty run folder receives the committed state and resumes at 20.
    const fresh = join(root, 'fresh');
    assert.equal(seedRun(camp, fresh), 20);
    assert.equal(readLatest(fresh)?.iteration, 20);
    assert.equal(readFileSync(join(fresh, 'ckpt-20.state.safetensors'), 'utf8'), 'state 20');
    assert.ok(existsSync(join(fresh, 'log.jsonl')) && existsSync(join(fresh, 'config.json')));
    // A folder already past the campaign is left alone; one behind it is refused.
    assert.equal(seedRun(camp, run), 20);
    const behind = join(root, 'behind');
    fakeRun(behind, [5], 5);
    assert.throws(
      () => seedRun(camp, behind),
      (e: Error) => e instanceof ExtdError && /holds iteration 5, behind the campaign's 20/.test(e.message),
    );
    // A run behind the snapshot cannot overwrite it.
    assert.throws(
      () => snapshot(camp, behind, 4),
      (e: Error) => e instanceof ExtdError && /behind the campaign's snapshot at 20/.test(e.message),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('snapshot and seedRun carry the moving average (ckpt-N.ema.safetensors) with its checkpoint', () => {
  const root = mkdtempSync(join(tmpdir(), 'extd-campaign-ema-'));
  try {
    const camp = join(root, 'campaign'),
      run = join(root, 'run');
    fakeCampaign(camp);
    fakeRun(run, [5, 10], 10);
    snapshot(camp, run, 4);
    // The run turns on --ema: from now on its checkpoints have an average.
    fakeRun(run, [15, 20], 20);
    writeFileSync(join(run, 'ckpt-20.ema.safetensors'), 'ema 20');
    snapshot(camp, run, 4);
    const committed = () =>
      readdirSync(camp)
        .filter((f) => f.startsWith('ckpt-'))
        .sort();
    assert.deepEqual(committed(), ['ckpt-20.ema.safetensors', 'ckpt-20.safetensors', 'ckpt-20.state.safetensors']);
    const fresh = join(root, 'fresh');
    assert.equal(seedRun(camp, fresh), 20);
    assert.equal(readFileSync(join(fresh, 'ckpt-20.ema.safetensors'), 'utf8'), 'ema 20');
    // The next snapshot replaces the old average with the new one.
    fakeRun(run, [25], 25);
    writeFileSync(join(run, 'ckpt-25.ema.safetensors'), 'ema 25');
    snapshot(camp, run, 4);
    assert.deepEqual(committed(), ['ckpt-25.ema.safetensors', 'ckpt-25.safetensors', 'ckpt-25.state.safetensors']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('valSubset: evenly spread over the sorted list; too few images is an error', () => {
  const names = Array.from({ length: 10 }, (_, i) => `e/${String(9 - i).padStart(2, '0')}.jpg`);
  assert.deepEqual(valSubset(names, 4), ['e/00.jpg', 'e/02.jpg', 'e/05.jpg', 'e/07.jpg']);
  assert.throws(() => valSubset(names, 11), ExtdError);
});

test('campaign/val200.txt is valSubset of the 646 shared validation images', { skip: noShared('wider/WIDER_val/images') }, () => {
  const root = sharedPath('wider/WIDER_val/images');
  const all = readdirSync(root).flatMap((e) =>
    readdirSync(join(root, e))
      .filter((f) => f.endsWith('.jpg'))
      .map((f) => `${e}/${f}`),
  );
  assert.equal(all.length, 646);
  const committed = readFileSync(VAL_SUBSET_FILE, 'utf8').trim().split('\n');
  assert.equal(committed.length, 200);
  assert.deepEqual(committed, valSubset(all));
});

test('recordAp keeps one record per iteration and weights, in iteration order', () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-ap-'));
  try {
    const r = (iteration: number, easy: number) => ({ iteration, easy, medium: 0, hard: 0, images: 200, set: 's', protocol: 'single', time: 't' });
    recordAp(dir, r(500, 0.1));
    recordAp(dir, r(250, 0.2));
    recordAp(dir, r(500, 0.3));
    // The moving average of the same iteration is a separate record.
    recordAp(dir, { ...r(500, 0.4), weights: 'ema' });
    const lines = readFileSync(join(dir, AP_FILE), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => [l.iteration, l.easy, l.weights]),
      [
        [250, 0.2, undefined],
        [500, 0.3, undefined],
        [500, 0.4, 'ema'],
      ],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('plotCampaign draws the committed folder (losses, lr, the ap.jsonl points) into curve.png', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-campaign-plot-'));
  try {
    for (const f of ['campaign.json', 'log.jsonl', 'ap.jsonl']) copyFileSync(join(CAMPAIGN_DIR, f), join(dir, f));
    const out = await plotCampaign(dir);
    assert.equal(out, join(dir, CURVE_FILE));
    const png = readFileSync(out);
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
    assert.ok(png.length > 10_000, `${png.length} bytes`);
    writeFileSync(join(dir, 'ap.jsonl'), '{"iteration": 5, "easy"\n');
    await assert.rejects(plotCampaign(dir), SyntaxError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('teacherOf: the last --teacher of the recipe and its changes; none is null', () => {
  const c = { recipe: ['--lr', '0.003'], recipeChanges: [] } as unknown as Campaign;
  assert.equal(teacherOf(c), null);
  c.recipeChanges = [{ fromIteration: 5, flags: ['--teacher', 'extd-64'], time: '' }];
  assert.equal(teacherOf(c), 'extd-64');
  c.recipeChanges.push({ fromIteration: 9, flags: ['--teacher', ''], time: '' });
  assert.equal(teacherOf(c), null);
  assert.equal(teacherOf(c, 9), 'extd-64', 'at iteration 9 the change of iteration 9 has not happened yet');
  assert.equal(describeTeachers(teacherPeriods(c, 9)), 'none (labels only) from iteration 0, then extd-64 from iteration 5');
  assert.equal(describeTeachers(teacherPeriods(c, 5)), 'none (labels only)');
});

test('bundle: scores the snapshot (its moving average) and writes its tensors with what made it and its AP as metadata', {
  skip: noShared('wider/WIDER_val/images'),
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-campaign-bundle-'));
  try {
    const campaign = join(dir, 'extd32');
    mkdirSync(campaign);
    for (const f of readdirSync(CAMPAIGN_DIR)) copyFileSync(join(CAMPAIGN_DIR, f), join(campaign, f));
    const iteration = readLatest(campaign)!.iteration;
    const val = readdirSync(sharedPath('wider/WIDER_val/images')).sort()[0]!;
    const images = readdirSync(sharedPath(`wider/WIDER_val/images/${val}`))
      .sort()
      .slice(0, 2);
    writeFileSync(join(dir, 'val2.txt'), images.map((n) => `${val}/${n}`).join('\n') + '\n');
    const to = join(dir, 'scratch.safetensors');
    const script = fileURLToPath(new URL('../scripts/campaign.ts', import.meta.url));
    const args = ['bundle', '--campaign', campaign, '--run', join(dir, 'run'), '--list', join(dir, 'val2.txt'), '--to', to, '--threads', '1'];
    const r = spawnSync(process.execPath, ['--conditions=extd-source', '--import', 'tsx', script, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const ap = JSON.parse(readFileSync(join(dir, 'run', 'eval-val646', `ckpt-${iteration}.ema`, 'ap.json'), 'utf8'));
    const written = await readWeightsFile(to);
    const ema = await readWeightsFile(join(campaign, `ckpt-${iteration}.ema.safetensors`));
    assert.deepEqual([...written.tensors.keys()].sort(), [...ema.tensors.keys()].sort());
    for (const [name, t] of ema.tensors) assert.deepEqual(written.tensors.get(name)!.data, t.data, name);
    const m = written.metadata;
    assert.equal(m.iteration, String(iteration));
    assert.equal(m.weights, 'ema');
    assert.equal(m.variant, 'extd-fpn-32-prelu');
    // The committed campaign's own teacher (it changes as the campaign goes on).
    // The committed campaign: labels only, then the released EXTD-64 as teacher from iteration 3565 on.
    assert.equal(m.teacher, 'none (labels only) from iteration 0, then extd-64 from iteration 3565');
    assert.equal(m.cpuHours, readCampaign(campaign).progress!.cpuHours.toFixed(2));
    assert.equal(m.ap, `${ap.easy.toFixed(3)} / ${ap.medium.toFixed(3)} / ${ap.hard.toFixed(3)} (easy / medium / hard; WIDER val, 2 images, single protocol)`);
    assert.match(m.training!, /^extd train, the extd32 campaign .*Recipe: --variant extd-fpn-32-prelu .*changes: from iteration 2032: --ema 0\.999/);
    assert.match(m.data!, /^3048 WIDER FACE training images/);
    const c = readCampaign(campaign);
    assert.equal(c.bundled!.iteration, iteration);
    assert.equal(c.bundled!.ap.images, 2);
    // The model loads by path like any checkpoint.
    const { loadModel } = await import('extd/load-model');
    assert.equal((await loadModel(to)).metadata.weights, 'ema');
    const bad = spawnSync(process.execPath, ['--conditions=extd-source', '--import', 'tsx', script, 'bundle', '--campaign', campaign], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /^campaign: bundle needs --run DIR/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('resume: flags after -- that the campaign sets are refused, also written --flag=value', () => {
  const script = fileURLToPath(new URL('../scripts/campaign.ts', import.meta.url));
  const out = mkdtempSync(join(tmpdir(), 'extd-campaign-flags-'));
  try {
    for (const flag of ['--threads', '--threads=4']) {
      const r = spawnSync(
        process.execPath,
        ['--conditions=extd-source', '--import', 'tsx', script, 'resume', '--out', out, '--', '--lr', '0.1', flag, ...(flag.includes('=') ? [] : ['4'])],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /^campaign: after --: --threads is not a recipe change \(the campaign sets it\)\n$/);
    }
    assert.deepEqual(readdirSync(out), [], 'nothing written');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
