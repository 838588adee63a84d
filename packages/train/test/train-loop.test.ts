import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint, readLatest } from '../src/train/checkpoint.js';
import { syntheticDataset } from './synthetic-dataset.js';
import { torchUnavailableReason } from '../src/train/torch.js';
import { renormLimits, train, type TrainConfig } from '../src/train/trainer.js';
import { readWeightsFile } from 'extd/weights/files-node';
import { modelFromTensors } from '@extd/core/weights/checkpoint';
import { requiredInCi } from '../../../test-support/shared.js';

const skip = requiredInCi(torchUnavailableReason() ?? false);
const root = mkdtempSync(join(tmpdir(), 'extd-train-loop-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const data = skip ? undefined : await syntheticDataset(root);
const tiny: Partial<TrainConfig> = { size: 64, batch: 2, lr: 0.01, iterations: 6, checkpointEvery: 2, seed: 5 };
const quiet = { threads: 1, workers: 0, progress: null };

test('resume continues exactly: 6 iterations straight == 3 + resume + 3', { skip }, async () => {
  const a = join(root, 'straight');
  const b = join(root, 'resumed');
  const logA: number[] = [];
  const logB: number[] = [];
  const r1 = await train(tiny, { out: a, samples: data!.samples, ...quiet, onIteration: (r) => logA.push(r.loss_c) });
  assert.equal(r1.iteration, 6);
  assert.equal(r1.reason, 'done');
  const r2 = await train({ ...tiny, checkpointEvery: 3 }, { out: b, samples: data!.samples, ...quiet, stopAfter: 3, onIteration: (r) => logB.push(r.loss_c) });
  assert.equal(r2.iteration, 3);
  assert.equal(r2.reason, 'stopAfter');
  // The resumed process gets only --resume: config, schedule and loader position come from the checkpoint.
  const r3 = await train({}, { out: b, samples: data!.samples, ...quiet, resume: true, onIteration: (r) => logB.push(r.loss_c) });
  assert.equal(r3.iteration, 6);

  assert.equal(logB.length, 6);
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(logA[i]! - logB[i]!) <= 1e-5 * Math.abs(logA[i]!), `iteration ${i + 1}: loss_c ${logA[i]} vs ${logB[i]}`);
  const wa = (await readWeightsFile(join(a, 'ckpt-6.safetensors'))).tensors;
  const wb = (await readWeightsFile(join(b, 'ckpt-6.safetensors'))).tensors;
  let maxDiff = 0;
  for (const [name, t] of wa) {
    if (t.dtype !== 'float32') continue;
    const u = wb.get(name)!.data as Float32Array;
    (t.data as Float32Array).forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - u[i]!))));
  }
  assert.ok(maxDiff < 1e-5, `weights differ by ${maxDiff}`);
  // Momentum buffers too (they decide the next step).
  const ma = (await loadCheckpoint(a))!.momentum;
  const mb = (await loadCheckpoint(b))!.momentum;
  assert.equal(ma.size, mb.size);
  assert.ok(ma.size > 0);
  // The log of the resumed run has each iteration once.
  const iters = readFileSync(join(b, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l).iter);
  assert.deepEqual(iters, [1, 2, 3, 4, 5, 6]);
  // The model file is a plain state dict our loaders accept, with num_batches_tracked for PyTorch.
  assert.ok(wa.has('base.0.1.num_batches_tracked'));
  const loaded = modelFromTensors(wa, {}, 'ckpt-6');
  assert.equal(loaded.variant.width, 32);
});

test('Ctrl-C (SIGINT) stops training after the current iteration with a checkpoint, also while a loader worker keeps batches coming', { skip }, async () => {
  // 640x640 batch 1 with a worker: the next batch arrives during every step (the case where the
  // signal used to wait until training ended).
  const out = join(root, 'sigint');
  const absorb = () => {}; // keeps the test process alive should the signal arrive after train() removed its handler
  process.on('SIGINT', absorb);
  try {
    let sent = false;
    const r = await train(
      { size: 640, batch: 1, lr: 0.001, iterations: 40, checkpointEvery: 1000, seed: 5 },
      {
        out,
        samples: data!.samples,
        threads: 1,
        workers: 1,
        progress: null,
        onIteration: (rec) => {
          if (rec.iter === 2 && !sent) {
            sent = true;
            process.kill(process.pid, 'SIGINT');
          }
        },
      },
    );
    assert.equal(r.reason, 'interrupted');
    assert.ok(r.iteration >= 2 && r.iteration <= 4, `stopped at iteration ${r.iteration}, not soon after the signal at 2`);
    assert.equal(readLatest(out)!.iteration, r.iteration, 'the checkpoint of the iteration it stopped at');
  } finally {
    process.off('SIGINT', absorb);
  }
});

test('checkpoints are atomic: a failed save leaves latest.json on the previous complete pair, and resume works', { skip }, async () => {
  const out = join(root, 'atomic');
  await train({ ...tiny, iterations: 2, checkpointEvery: 2 }, { out, samples: data!.samples, ...quiet });
  assert.equal(readLatest(out)!.iteration, 2);
  // Make the next state file impossible to write (a directory where it must go): the save after iteration 4 fails.
  mkdirSync(join(out, 'ckpt-4.state.safetensors'));
  await assert.rejects(train({ iterations: 4 }, { out, samples: data!.samples, ...quiet, resume: true }));
  const latest = readLatest(out)!;
  assert.equal(latest.iteration, 2, 'latest.json must not point at the half-saved checkpoint');
  const ck = await loadCheckpoint(out);
  assert.equal(ck!.state.iteration, 2);
  // No temp file left behind, no truncated file under a real name.
  assert.deepEqual(
    readdirSync(out).filter((f) => f.startsWith('.tmp-')),
    [],
  );
  rmSync(join(out, 'ckpt-4.state.safetensors'), { recursive: true });
  const r = await train({ iterations: 4 }, { out, samples: data!.samples, ...quiet, resume: true });
  assert.equal(r.iteration, 4);
  assert.equal(readLatest(out)!.iteration, 4);
});

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(
    process.execPath,
    ['--conditions=extd-source', '--import', 'tsx', join(import.meta.dirname, '../../../test-support/cli-entry.ts'), ...args],
    {
      encoding: 'utf8',
      env: { ...process.env, ...env },
    },
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('extd train without the addon: one line saying how to install libtorch, exit 1', async () => {
  // Valid flags and data (they are checked first), so the missing addon is the only fault.
  const d = data ?? (await syntheticDataset(root));
  const r = cli(['train', '--annotations', d.annotations, '--images', d.images, '--out', join(root, 'none')], { EXTD_TORCH_ADDON: join(root, 'missing.node') });
  assert.equal(r.code, 1);
  // The data set's summary line (the data are read and checked before libtorch), then the one error line.
  const lines = r.stderr.trim().split('\n');
  assert.match(lines[0]!, /^training set .*gt\.txt: WIDER text annotations, 4 images, 8 faces/);
  assert.match(lines[1]!, /^extd train: training needs libtorch: apt-get install libtorch-dev/);
  assert.equal(lines.length, 2, r.stderr);
});

test('extd train CLI: a short run writes log, checkpoints and latest.json; a bad annotation line names file:line', { skip }, () => {
  const out = join(root, 'cli');
  const r = cli([
    'train',
    '--annotations',
    data!.annotations,
    '--images',
    data!.images,
    '--out',
    out,
    '--size',
    '64',
    '--batch',
    '2',
    '--iterations',
    '2',
    '--checkpoint-every',
    '1',
    '--threads',
    '1',
    '--workers',
    '1',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(out, 'ckpt-1.safetensors')) && existsSync(join(out, 'ckpt-2.state.safetensors')));
  assert.equal(readLatest(out)!.iteration, 2);
  assert.equal(readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').length, 2);
  assert.match(r.stderr, /train 2\/2/);
  // The closing line: the process got past the loader's shutdown (it used to exit silently before it).
  assert.match(r.stderr, /extd train: finished at iteration 2; latest checkpoint .*ckpt-2\.safetensors/);
  // --resume names the checkpoint it resumes from; with nothing left to train that one is still the latest (it said "(none)").
  const again = cli(['train', '--out', out, '--resume', '--threads', '1', '--workers', '0']);
  assert.equal(again.code, 0, again.stderr);
  assert.ok(again.stderr.includes(`extd train: resuming from ${join(out, 'ckpt-2.safetensors')} (iteration 2)`), again.stderr);
  assert.ok(again.stderr.includes(`extd train: finished at iteration 2; latest checkpoint ${join(out, 'ckpt-2.safetensors')}`), again.stderr);
  const nothing = cli(['train', '--out', join(root, 'no-run'), '--resume']);
  assert.equal(nothing.code, 1);
  assert.match(
    nothing.stderr.trim(),
    /^extd train: --resume: .*no-run has no checkpoint to resume from \(no latest\.json\); start a new run with --annotations \(and --images for WIDER annotations\)$/,
  );

  // --init: from that run's checkpoint; a missing file or --resume is refused in one line.
  const init = cli([
    'train',
    '--annotations',
    data!.annotations,
    '--images',
    data!.images,
    '--out',
    join(root, 'cli-init'),
    '--size',
    '64',
    '--batch',
    '2',
    '--iterations',
    '1',
    '--threads',
    '1',
    '--init',
    join(out, 'ckpt-2.safetensors'),
  ]);
  assert.equal(init.code, 0, init.stderr);
  const missing = cli([
    'train',
    '--annotations',
    data!.annotations,
    '--images',
    data!.images,
    '--out',
    join(root, 'cli-init2'),
    '--init',
    join(root, 'nope.safetensors'),
  ]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /nope\.safetensors/);
  assert.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
  assert.ok(!existsSync(join(root, 'cli-init2')), 'a refused run left its folder behind');
  const both = cli(['train', '--out', out, '--resume', '--init', join(out, 'ckpt-2.safetensors')]);
  assert.equal(both.code, 1);
  assert.match(both.stderr, /--init only applies to a new run/);
  // --head-std would be silently ignored under --init (every weight comes from the file): refused instead.
  const headStd = cli([
    'train',
    '--annotations',
    data!.annotations,
    '--images',
    data!.images,
    '--out',
    join(root, 'cli-init3'),
    '--head-std',
    '0.01',
    '--init',
    join(out, 'ckpt-2.safetensors'),
  ]);
  assert.equal(headStd.code, 1);
  assert.match(headStd.stderr, /--head-std 0\.01 with --init .*ckpt-2\.safetensors/);
  assert.equal(headStd.stderr.trim().split('\n').length, 1, headStd.stderr);
  assert.ok(!existsSync(join(root, 'cli-init3')), 'a refused run left its folder behind');

  const bad = join(root, 'bad.txt');
  writeFileSync(bad, '0--Test/img_0.png\n1\n10 10 abc 20 0 0 0 0 0 0\n');
  const e = cli(['train', '--annotations', bad, '--images', data!.images, '--out', join(root, 'bad')]);
  assert.equal(e.code, 1);
  assert.match(e.stderr, /bad\.txt:3/);
  assert.equal(e.stderr.trim().split('\n').length, 1, e.stderr);

  const f = cli(['train', '--annotations', bad, '--images', data!.images, '--out', join(root, 'bad'), '--lr', '0']);
  assert.equal(f.code, 1);
  assert.match(f.stderr, /--lr 0: expected a positive number/);
});

test('--bn-freeze: BN running statistics change before iteration N and stay fixed after it, while weights keep learning', { skip }, async () => {
  const out = join(root, 'bn-freeze');
  // A tiny lr: frozen after only 2 iterations, the statistics are far from settled and inference-mode outputs are large.
  const r = await train({ ...tiny, lr: 1e-5, bnFreeze: 2 }, { out, samples: data!.samples, ...quiet });
  assert.equal(r.iteration, 6);
  const at = async (i: number) => (await readWeightsFile(join(out, `ckpt-${i}.safetensors`))).tensors;
  const [w2, w4, w6] = [await at(2), await at(4), await at(6)];
  const diff = (a: Map<string, { data: unknown }>, b: Map<string, { data: unknown }>, pick: (name: string) => boolean) => {
    let m = 0;
    for (const [name, t] of a) {
      if (!pick(name)) continue;
      const u = b.get(name)!.data as Float32Array;
      (t.data as Float32Array).forEach((v, i) => (m = Math.max(m, Math.abs(v - u[i]!))));
    }
    return m;
  };
  const stats = (n: string) => n.endsWith('.running_mean') || n.endsWith('.running_var');
  const convWeights = (n: string) => n.endsWith('.weight') && !n.includes('running');
  // Iterations 1-2 ran in training mode from the initial statistics (mean 0, var 1), so these moved ...
  const init = new Map([...w2].filter(([n]) => stats(n)).map(([n, t]) => [n, { data: (t.data as Float32Array).map(() => (n.endsWith('var') ? 1 : 0)) }]));
  assert.ok(diff(init, w2, stats) > 1e-3, 'running statistics did not move before the freeze');
  // ... and iterations 3-6 left them exactly as they were.
  assert.equal(diff(w2, w4, stats), 0);
  assert.equal(diff(w2, w6, stats), 0);
  assert.ok(diff(w4, w6, convWeights) > 0, 'weights stopped learning');
});

test('--init: a new run starts from the given checkpoint (weights and BN statistics), of the same variant only', { skip }, async () => {
  const src = join(root, 'init-source');
  await train({ ...tiny, iterations: 3, checkpointEvery: 3 }, { out: src, samples: data!.samples, ...quiet });
  const from = join(src, 'ckpt-3.safetensors');
  // stopAfter 0 trains nothing and ends on a checkpoint of the starting weights.
  const out = join(root, 'init-run');
  const r = await train({ ...tiny, seed: 99, initFrom: from }, { out, samples: data!.samples, ...quiet, stopAfter: 0 });
  assert.equal(r.iteration, 0);
  const a = (await readWeightsFile(from)).tensors;
  const b = (await readWeightsFile(join(out, 'ckpt-0.safetensors'))).tensors;
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  // Every tensor but num_batches_tracked, which checkpoints derive from the run's own iteration count.
  for (const [name, t] of a) if (!name.endsWith('num_batches_tracked')) assert.deepEqual(b.get(name)!.data, t.data, name);
  // Without --init, seed 99 gives different weights: the equality above is not a coincidence of seeds.
  const fresh = join(root, 'init-none');
  await train({ ...tiny, seed: 99 }, { out: fresh, samples: data!.samples, ...quiet, stopAfter: 0 });
  assert.notDeepEqual((await readWeightsFile(join(fresh, 'ckpt-0.safetensors'))).tensors.get('loc.0.weight')!.data, a.get('loc.0.weight')!.data);
  // It trains on from there.
  const more = await train({ ...tiny, iterations: 2, initFrom: from }, { out: join(root, 'init-train'), samples: data!.samples, ...quiet });
  assert.equal(more.iteration, 2);
  await assert.rejects(
    train({ ...tiny, variant: 'extd-fpn-48-prelu', initFrom: from }, { out: join(root, 'init-wrong'), samples: data!.samples, ...quiet }),
    (e: Error) => e.message.includes(from) && e.message.includes('extd-fpn-32-prelu') && e.message.includes('extd-fpn-48-prelu'),
  );
});

test('renormLimits: none before bnRenorm, then a linear ramp from plain BN (1, 0) to (rMax, dMax)', () => {
  const c = { bnRenorm: 10, bnRenormRamp: 4, bnRenormRMax: 3, bnRenormDMax: 5 };
  assert.equal(renormLimits(9, c), null);
  assert.deepEqual(renormLimits(10, c), { rMax: 1.5, dMax: 1.25 });
  assert.deepEqual(renormLimits(12, c), { rMax: 2.5, dMax: 3.75 });
  assert.deepEqual(renormLimits(13, c), { rMax: 3, dMax: 5 });
  assert.deepEqual(renormLimits(1000, c), { rMax: 3, dMax: 5 });
  assert.deepEqual(renormLimits(10, { ...c, bnRenormRamp: 0 }), { rMax: 3, dMax: 5 });
  assert.equal(renormLimits(1000, { ...c, bnRenorm: 0 }), null);
});

test('--bn-renorm trains (finite losses, running statistics still updated after the switch)', { skip }, async () => {
  const out = join(root, 'bn-renorm');
  const r = await train({ ...tiny, lr: 1e-4, bnRenorm: 2, bnRenormRamp: 2 }, { out, samples: data!.samples, ...quiet });
  assert.equal(r.iteration, 6);
  const lines = readFileSync(join(out, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { loss_l: number; loss_c: number });
  assert.ok(lines.every((l) => Number.isFinite(l.loss_l) && Number.isFinite(l.loss_c)));
  const a = (await readWeightsFile(join(out, 'ckpt-4.safetensors'))).tensors.get('base.2.conv.1.running_mean')!.data as Float32Array;
  const b = (await readWeightsFile(join(out, 'ckpt-6.safetensors'))).tensors.get('base.2.conv.1.running_mean')!.data as Float32Array;
  assert.ok(
    a.some((v, i) => v !== b[i]),
    'running statistics froze under renormalisation',
  );
});
