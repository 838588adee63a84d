import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../../test-support/cli-run.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';
import sharp from 'sharp';
import { readWeightsFile } from '../src/weights/files-node.js';
import { readPth } from '@extd/core/weights/pth';
import { EXIT_BUG, runCommand } from '../src/cli/main.js';
import { UsageError } from '../src/cli/args.js';
import { ExtdError } from '@extd/core/utils/errors';
import { stateDictValue, torchSave, type SavedTensor } from '../../../test-support/weights-fixtures.js';

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

// ---------------------------------------------------------------- usage, exit statuses, errors that help

/** Small PNG files (grey, the given sizes) in a fresh folder. */
async function pngs(...sizes: Array<[number, number]>): Promise<string[]> {
  const dir = mkdtempSync(join(tmp, 'png-'));
  return Promise.all(
    sizes.map(async ([w, h], i) => {
      const p = join(dir, `im${i}.png`);
      await sharp({ create: { width: w, height: h, channels: 3, background: { r: 128, g: 128, b: 128 } } })
        .png()
        .toFile(p);
      return p;
    }),
  );
}

const oneLine = (s: string) => s.trim().split('\n').length === 1;

test('usage errors exit with 2, bad values with 1, each one line', async () => {
  const [im] = await pngs([32, 32]);
  const foo = runCli(['detect', im!, '--foo']);
  assert.equal(foo.code, 2);
  assert.equal(foo.stderr.trim(), "extd detect: unknown option '--foo' (extd detect --help for usage)");
  const none = runCli(['detect']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^extd detect: no image given/);
  assert.ok(oneLine(none.stderr), none.stderr);
  for (const args of [['convert'], ['eval'], ['eval-preds', '--gt', 'x'], ['train'], ['plot-log']]) {
    const r = runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(oneLine(r.stderr), r.stderr);
  }
  // A negative number after a flag is its value, refused by the flag's own check (parseArgs called it "ambiguous").
  const threads = runCli(['detect', im!, '--threads', '-1']);
  assert.equal(threads.code, 1);
  assert.equal(threads.stderr.trim(), 'extd detect: --threads -1: expected an integer from 1 to 64');
  const thr = runCli(['detect', im!, '--score-threshold', '-0.5']);
  assert.equal(thr.stderr.trim(), 'extd detect: --score-threshold -0.5: expected a number from 0 to 1');
});

test('--draw is checked before any work: unknown extension, an image name for several images', async () => {
  const [a, b] = await pngs([32, 32], [40, 30]);
  // The model does not exist: an error about --draw proves it came first.
  const noModel = join(tmp, 'no-such-model.pth');
  const bmp = runCli(['detect', a!, '--model', noModel, '--draw', join(tmp, 'x.bmp')]);
  assert.equal(bmp.code, 1);
  assert.equal(bmp.stderr.trim(), `extd detect: --draw ${join(tmp, 'x.bmp')}: unsupported extension '.bmp' (allowed: .png, .jpg, .jpeg, .webp)`);
  const two = join(tmp, 'two.png');
  const several = runCli(['detect', a!, b!, '--model', noModel, '--draw', two]);
  assert.equal(several.code, 1);
  assert.match(
    several.stderr.trim(),
    /^extd detect: --draw .*two\.png: with 2 images \(or a folder\) --draw names a folder to draw into, not an image file; give a folder path$/,
  );
  assert.ok(!existsSync(two), 'no folder named two.png');
  // A folder given as input is a folder of results too, even when it holds one image.
  const folder = runCli(['detect', join(a!, '..'), '--model', noModel, '--draw', join(tmp, 'one.png')]);
  assert.match(folder.stderr, /--draw .*one\.png: with 2 images \(or a folder\)/);
  // With valid --draw, the model is the next thing checked.
  const model = runCli(['detect', a!, '--model', noModel, '--draw', join(tmp, 'ok.png')]);
  assert.equal(model.stderr.trim(), `extd detect: model file not found: ${noModel}`);
});

test('an error that is not bad input prints its stack trace and asks for a report; ExtdError stays one line', async () => {
  const capture = async (fn: () => Promise<number>) => {
    const lines: string[] = [];
    const orig = console.error;
    console.error = (...a: unknown[]) => void lines.push(a.join(' '));
    try {
      return { code: await runCommand('detect', fn), err: lines.join('\n') };
    } finally {
      console.error = orig;
    }
  };
  const bug = await capture(async () => {
    throw new TypeError('cannot read properties of undefined');
  });
  assert.equal(bug.code, EXIT_BUG);
  assert.match(bug.err, /^extd detect: internal error: this is a bug in extd, please report it/);
  assert.match(bug.err, /TypeError: cannot read properties of undefined\n\s+at /);
  const user = await capture(async () => {
    throw new ExtdError('image not found: x.jpg');
  });
  assert.deepEqual(user, { code: 1, err: 'extd detect: image not found: x.jpg' });
  const usage = await capture(async () => {
    throw new UsageError('no image given');
  });
  assert.deepEqual(usage, { code: 2, err: 'extd detect: no image given (extd detect --help for usage)' });
});

test('extd train checks its flags and --init file before loading libtorch', async () => {
  const env = { EXTD_TORCH_ADDON: join(tmp, 'no-addon.node') };
  // A valid one-image training set, so that only the flags (and at last the addon) can be at fault.
  const [im] = await pngs([64, 64]);
  const annotations = join(tmp, 'train-gt.txt');
  writeFileSync(annotations, `${im!.split('/').at(-1)}\n1\n10 10 20 20 0 0 0 0 0 0\n`);
  const base = ['train', '--annotations', annotations, '--images', join(im!, '..'), '--out', join(tmp, 'run')];
  const cases: Array<[string[], string]> = [
    [['--lr', '-1'], '--lr -1: expected a positive number'],
    [['--batch', '0'], '--batch 0: expected a positive integer'],
    [['--size', '30'], '--size 30: expected an integer >= 32, a multiple of 4'],
    [['--lr-policy', 'linear'], '--lr-policy linear: expected step or cosine'],
    [['--threads', '0'], '--threads 0: expected an integer from 1 to 64'],
  ];
  for (const [flags, message] of cases) {
    const r = runCli([...base, ...flags], env);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim(), `extd train: ${message}`);
  }
  const badInit = runCli([...base, '--init', join(tmp, 'missing.pth')], env);
  assert.equal(badInit.stderr.trim(), `extd train: model file not found: ${join(tmp, 'missing.pth')}`);
  // Valid flags: only now is the addon missed.
  const noAddon = runCli([...base], env);
  // The data set's summary line comes first (the data are read and checked before libtorch), then the one error line.
  const lines = noAddon.stderr.trim().split('\n');
  assert.match(lines[0]!, /^training set .*train-gt\.txt: WIDER text annotations, 1 images, 1 faces/);
  assert.match(lines.at(-1)!, /^extd train: training needs libtorch: .*\(addon not built: no file at .*no-addon\.node\)$/);
  assert.equal(lines.length, 2, noAddon.stderr);
  assert.ok(!existsSync(join(tmp, 'run')), 'a refused run left its folder behind');
});

// ---------------------------------------------------------------- the recipes through the CLI

const PHOTO = () => sharedPath('wider', 'WIDER_val', 'images', '1--Handshaking', '1_Handshaking_Handshaking_1_107.jpg');
const skipPhoto = skip || noShared('wider', 'WIDER_val', 'images', '1--Handshaking', '1_Handshaking_Handshaking_1_107.jpg');

/** EXTD_32.pth's tensors, as torchSave takes them. */
function released32(): Map<string, SavedTensor> {
  return new Map(
    [...readPth(new Uint8Array(readFileSync(pth(32))), pth(32))].map(([k, t]): [string, SavedTensor] => [
      k,
      { shape: t.shape, data: (t.data as Float32Array | BigInt64Array).slice() },
    ]),
  );
}

test('extd detect on a face cut by the left edge prints the box clipped to the image', { skip: skipPhoto }, async () => {
  // left 470, top 100, width 400, height 500: the face is cut by the left edge (x=-12.1 before).
  const cut = join(tmp, 'cut.png');
  await sharp(PHOTO()).extract({ left: 470, top: 100, width: 400, height: 500 }).png().toFile(cut);
  const text = runCli(['detect', cut, '--model', pth(32), '--threads', '1']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /cut\.png: 1 face\n  x=0\.0 y=\d+\.\d width=\d+\.\d height=\d+\.\d score=0\.\d{3}\n$/);
  const json = JSON.parse(runCli(['detect', cut, '--model', pth(32), '--threads', '1', '--json']).stdout);
  const { box } = json[0].faces[0];
  assert.equal(box.x, 0);
  assert.ok(box.y >= 0 && box.x + box.width <= 400 && box.y + box.height <= 500, JSON.stringify(box));
});

test('checkpoints saved by training code load in every command: DataParallel, nested under state_dict with the optimizer', { skip: skipPhoto }, () => {
  const sd = released32();
  const dp = join(tmp, 'dataparallel.pth');
  writeFileSync(dp, torchSave(stateDictValue(sd, 'module.')));
  // The recipe: refused before as "not an EXTD checkpoint (no 'loc.0.weight' tensor; found 213 tensors)".
  const r = runCli(['detect', PHOTO(), '--model', dp, '--threads', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const faces = JSON.parse(r.stdout)[0].faces;
  assert.deepEqual(
    faces.map((f: { box: { x: number; y: number; width: number; height: number } }) => [f.box.x, f.box.y, f.box.width, f.box.height].map(Math.round)),
    [[392, 178, 182, 249]],
  );
  const nested = join(tmp, 'nested.pth');
  writeFileSync(
    nested,
    torchSave({
      dict: [
        ['epoch', 20],
        ['state_dict', stateDictValue(sd, '_orig_mod.')],
        ['optimizer', { dict: [['param_groups', [{ dict: [['lr', 0.001]] }]]] }],
      ],
    }),
  );
  const info = runCli(['info', nested]);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, /variant\s+extd-fpn-32-prelu/);
  const out = join(tmp, 'nested.safetensors');
  assert.equal(runCli(['convert', nested, '-o', out]).code, 0);
  assert.ok(existsSync(out));
  const noModel = join(tmp, 'optimizer-only.pth');
  writeFileSync(
    noModel,
    torchSave({
      dict: [
        ['epoch', 20],
        ['optimizer', { dict: [] }],
      ],
    }),
  );
  const refused = runCli(['info', noModel]);
  assert.equal(refused.code, 1);
  assert.equal(
    refused.stderr.trim(),
    `extd info: ${noModel}: no model state_dict found: top-level keys 'epoch', 'optimizer'; expected a dict of name -> tensor, or one under 'state_dict', 'model_state_dict', 'model', 'net', 'weight'`,
  );
});

test('EXTD_32.pth with base.0.0.weight[0,0,0,0] = NaN is refused by detect, info, convert, eval and train --init', { skip: skipPhoto }, () => {
  const sd = released32();
  (sd.get('base.0.0.weight')!.data as Float32Array)[0] = NaN;
  const nan = join(tmp, 'nan.pth');
  writeFileSync(nan, torchSave(stateDictValue(sd), 'legacy'));
  const what = `${nan}: tensor 'base.0.0.weight' holds NaN at [0, 0, 0, 0]; a model checkpoint must hold finite numbers (was it saved after training diverged?)`;
  const out = join(tmp, 'nan.safetensors');
  const list = join(tmp, 'nan-list.txt');
  writeFileSync(list, '1--Handshaking/1_Handshaking_Handshaking_1_107.jpg\n');
  const runs: Array<[string, string[], Record<string, string>]> = [
    ['detect', ['detect', PHOTO(), '--model', nan], {}],
    ['info', ['info', nan], {}],
    ['convert', ['convert', nan, '-o', out], {}],
    [
      'eval',
      [
        'eval',
        '--model',
        nan,
        '--images',
        sharedPath('wider', 'WIDER_val', 'images'),
        '--gt',
        sharedPath('wider', 'wider_face_split', 'wider_face_val_bbx_gt.txt'),
        '--list',
        list,
        '--out',
        join(tmp, 'nan-eval'),
      ],
      {},
    ],
    [
      'train',
      ['train', '--init', nan, '--annotations', join(tmp, 'a.txt'), '--images', tmp, '--out', join(tmp, 'nan-train')],
      { EXTD_TORCH_ADDON: join(tmp, 'no-addon.node') },
    ],
  ];
  for (const [name, args, env] of runs) {
    const r = runCli(args, env);
    assert.equal(r.code, 1, `${name}: ${r.stderr}`);
    assert.equal(r.stderr.trim(), `extd ${name}: ${what}`);
    assert.equal(r.stdout, '', `${name} printed ${r.stdout}`);
  }
  assert.ok(!existsSync(out) && !existsSync(join(tmp, 'nan-train')), 'nothing written');
});
