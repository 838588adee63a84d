import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { torchUnavailableReason } from '../src/train/torch.js';
import { train, type TrainConfig, type ValRecord } from '../src/train/trainer.js';
import { readWeightsFile } from 'extd/weights/files-node';
import { loadModel } from 'extd/load-model';
import { runCli } from '../../../test-support/cli-run.js';
import { writeCoco, writeVoc, writeWiderMat, writeWiderText, writeYolo } from '../../../test-support/face-sets.js';

const skip = torchUnavailableReason() ?? false;
const root = mkdtempSync(join(tmpdir(), 'extd-train-formats-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const sets = skip
  ? undefined
  : {
      'wider-text': await writeWiderText(join(root, 'wt')),
      'wider-mat': await writeWiderMat(join(root, 'wm')),
      coco: await writeCoco(join(root, 'coco')),
      voc: await writeVoc(join(root, 'voc')),
      yolo: await writeYolo(join(root, 'yolo')),
    };
/** Fine-tuning from the bundled released EXTD-32, tiny inputs, one thread. */
const tiny: Partial<TrainConfig> = { initFrom: 'extd-32', bnFrozen: true, size: 64, batch: 2, lr: 0.001, iterations: 2, checkpointEvery: 2, seed: 1 };
const quiet = { threads: 1, workers: 0, progress: null };

test('a 2-iteration fine-tuning run from each annotation format: the boxes reach the loss, checkpoints are written', { skip }, async () => {
  for (const [format, s] of Object.entries(sets!)) {
    const out = join(root, `run-${format}`);
    const log: number[] = [];
    const r = await train(
      { ...tiny, annotations: s.annotations, images: 'images' in s ? s.images : '' },
      {
        out,
        ...quiet,
        onIteration: (rec) => log.push(rec.positives, rec.loss_c),
      },
    );
    assert.equal(r.iteration, 2, format);
    assert.equal(r.reason, 'done');
    assert.ok(existsSync(join(out, 'ckpt-2.safetensors')), format);
    // Positives in each batch: faces were read, matched to priors and trained on.
    assert.ok(log[0]! > 0 && log[2]! > 0, `${format}: positives ${log[0]}, ${log[2]}`);
    assert.ok(Number.isFinite(log[1]!) && Number.isFinite(log[3]!), format);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as TrainConfig;
    assert.equal(config.annotations, s.annotations);
  }
});

test('bnFrozen: BN running statistics stay exactly those of the starting model while the weights learn', { skip }, async () => {
  const out = join(root, 'frozen');
  await train({ ...tiny, annotations: sets!.voc.annotations }, { out, ...quiet });
  const start = (await loadModel('extd-32')).weights;
  const after = (await readWeightsFile(join(out, 'ckpt-2.safetensors'))).tensors;
  let statsDiff = 0,
    weightDiff = 0;
  for (const [name, t] of start) {
    const u = after.get(name)!.data as Float32Array;
    const d = Math.max(...Array.from(t.data as Float32Array, (v, i) => Math.abs(v - u[i]!)));
    if (name.endsWith('running_mean') || name.endsWith('running_var')) statsDiff = Math.max(statsDiff, d);
    else weightDiff = Math.max(weightDiff, d);
  }
  assert.equal(statsDiff, 0);
  assert.ok(weightDiff > 0);
  await assert.rejects(
    train({ ...tiny, annotations: sets!.voc.annotations, bnFreeze: 5 }, { out: join(root, 'contradiction'), ...quiet }),
    /bn-frozen\) contradicts bn-freeze 5/,
  );
  assert.ok(!existsSync(join(root, 'contradiction')));
});

test('--val: scored at the start, every N iterations and at the end; logged, best kept, resumable', { skip }, async () => {
  const out = join(root, 'val');
  const vals: ValRecord[] = [];
  const r = await train(
    { ...tiny, iterations: 3, checkpointEvery: 3, annotations: sets!.coco.annotations, val: sets!.yolo.annotations, valEvery: 2 },
    {
      out,
      ...quiet,
      onValidation: (v) => vals.push(v),
    },
  );
  assert.equal(r.iteration, 3);
  assert.deepEqual(
    vals.map((v) => v.iter),
    [0, 2, 3],
  );
  for (const v of vals) {
    assert.equal(v.val_protocol, 'ap50');
    assert.equal(v.val_images, 4);
    assert.ok(v.val_ap! >= 0 && v.val_ap! <= 1 && v.val_metric === v.val_ap);
  }
  const lines = readFileSync(join(out, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { iter: number; val_metric?: number });
  assert.deepEqual(
    lines.map((l) => `${l.iter}${l.val_metric === undefined ? '' : 'v'}`),
    ['0v', '1', '2', '2v', '3', '3v'],
  );
  const best = JSON.parse(readFileSync(join(out, 'best.json'), 'utf8')) as { iteration: number; metric: number };
  const top = vals.reduce((a, v) => (v.val_metric > a.val_metric ? v : a));
  assert.equal(best.iteration, top.iter);
  assert.equal(best.metric, top.val_metric);
  const m = await loadModel(join(out, 'best.safetensors'));
  assert.equal(m.variant.width, 32);
  // WIDER validation sets use the WIDER protocol (three settings).
  const w: ValRecord[] = [];
  await train(
    { ...tiny, iterations: 1, annotations: sets!.voc.annotations, val: sets!['wider-mat'].annotations, valImages: sets!['wider-mat'].images },
    {
      out: join(root, 'val-wider'),
      ...quiet,
      onValidation: (v) => w.push(v),
    },
  );
  assert.deepEqual(
    w.map((v) => v.iter),
    [0, 1],
  );
  assert.equal(w[0]!.val_protocol, 'wider');
  assert.ok(Math.abs(w[0]!.val_metric - (w[0]!.val_easy! + w[0]!.val_medium! + w[0]!.val_hard!) / 3) < 1e-12);
});

test('extd train / eval / split / plot-log CLI on VOC, COCO and YOLO sets', { skip }, () => {
  const voc = sets!.voc.annotations;
  const split = runCli(['split', voc, '--out', join(root, 'lists'), '--fraction', '0.5', '--seed', '3']);
  assert.equal(split.code, 0, split.stderr);
  assert.match(split.stdout, /4 images: 2 in .*train\.txt, 2 in .*val\.txt/);
  const out = join(root, 'cli-run');
  const t = runCli([
    'train',
    '--init',
    'extd-32',
    '--annotations',
    voc,
    '--list',
    join(root, 'lists', 'train.txt'),
    '--val',
    voc,
    '--val-list',
    join(root, 'lists', 'val.txt'),
    '--val-every',
    '1',
    '--size',
    '64',
    '--batch',
    '2',
    '--iterations',
    '2',
    '--threads',
    '1',
    '--workers',
    '0',
    '--out',
    out,
  ]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stderr, /training set .*Annotations: Pascal VOC XML, 2 images/);
  assert.match(t.stderr, /validation at iteration 0: AP@0\.5 [01]\.\d{4} \(2 images/);
  assert.match(t.stderr, /validation at iteration 2: /);
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as TrainConfig;
  assert.equal(config.bnFrozen, true, '--init freezes BN by default');
  assert.ok(existsSync(join(out, 'best.safetensors')));
  const plot = runCli(['plot-log', out]);
  assert.equal(plot.code, 0, plot.stderr);
  assert.ok(readFileSync(join(out, 'loss.png')).length > 1000);

  // eval on a COCO file: AP at IoU 0.5, stated as such, in ap.json and the output.
  const ev = runCli(['eval', '--model', join(out, 'best.safetensors'), '--gt', sets!.coco.annotations, '--out', join(root, 'eval-coco'), '--threads', '1']);
  assert.equal(ev.code, 0, ev.stderr);
  assert.match(ev.stdout, /AP@0\.5 [01]\.\d{4} \(4 images, 5 faces\)/);
  assert.match(ev.stdout, /evaluation: AP at IoU 0\.5, PASCAL VOC all-point/);
  const ap = JSON.parse(readFileSync(join(root, 'eval-coco', 'ap.json'), 'utf8'));
  assert.equal(ap.format, 'coco');
  assert.ok(ap.ap50 >= 0 && ap.ap50 <= 1);
  assert.match(ap.evaluation, /IoU 0\.5/);
  assert.ok(existsSync(join(root, 'eval-coco', 'pr.png')) && existsSync(join(root, 'eval-coco', 'pred', 'img_0.txt')));
  // YOLO: the val split by default; --split picks another.
  const y = runCli(['eval', '--gt', sets!.yolo.annotations, '--split', 'train', '--out', join(root, 'eval-yolo'), '--threads', '1']);
  assert.equal(y.code, 0, y.stderr);
  assert.match(y.stderr, /YOLO dataset, 4 images, 5 faces/);

  // Bad input: one line, non-zero exit, nothing left behind.
  const cat = runCli(['train', '--annotations', voc, '--category', 'head', '--out', join(root, 'refused'), '--threads', '1']);
  assert.equal(cat.code, 1);
  assert.match(cat.stderr, /no object named 'head' in 4 files \(names: face \(5\)\)/);
  assert.equal(cat.stderr.trim().split('\n').length, 1, cat.stderr);
  assert.ok(!existsSync(join(root, 'refused')));
  writeFileSync(
    join(root, 'bad.json'),
    JSON.stringify({
      images: [{ id: 1, file_name: 'img_0.jpg' }],
      annotations: [
        { id: 4, image_id: 1, category_id: 1, bbox: [1, 2] },
        { id: 5, image_id: 2, category_id: 1, bbox: [1, 2, 3, 4] },
      ],
      categories: [{ id: 1, name: 'face' }],
    }),
  );
  const bad = runCli(['eval', '--gt', join(root, 'bad.json'), '--images', join(root, 'coco'), '--out', join(root, 'eval-bad')]);
  assert.equal(bad.code, 1);
  const lines = bad.stderr.trim().split('\n');
  assert.equal(lines.length, 3, bad.stderr);
  assert.match(lines[0]!, /bad\.json: annotation id 4: bbox \[1,2\] is not/);
  assert.match(lines[1]!, /bad\.json: annotation id 5: image_id 2 is not in images/);
  assert.match(lines[2]!, /^extd eval: .*annotation id 4.* \(and 1 more problem in .*bad\.json, listed above\)$/);
  assert.ok(!existsSync(join(root, 'eval-bad')));
});
