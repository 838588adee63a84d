import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildGraph } from '@extd/core/model/graph';
import { parseVariant } from '@extd/core/model/variant';
import { inferVariant, modelFromTensors } from '@extd/core/weights/checkpoint';
import { isExtdError } from '../../../test-support/expect-error.js';
import { numel, type Tensor } from '@extd/core/utils/tensor';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { readWeightsBytes } from '@extd/core/weights/format';
import { readPth, STATE_DICT_KEYS } from '@extd/core/weights/pth';
import { writeSafetensors } from '@extd/core/weights/safetensors';
import { createDetector, loadModel } from '../src/index.js';
import { PickleWriter, stateDictValue, torchSave, zipCheckpoint, type PyValue, type SavedTensor } from '../../../test-support/weights-fixtures.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';

function randomState(name: string): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  for (const p of buildGraph(parseVariant(name)).params) m.set(p.name, { dtype: 'float32', shape: p.shape, data: new Float32Array(numel(p.shape)) });
  return m;
}

test('variants are inferred from tensors and metadata', () => {
  assert.deepEqual(inferVariant(randomState('extd-ssd-48-prelu'), {}, 'x'), parseVariant('extd-ssd-48-prelu'));
  assert.deepEqual(inferVariant(randomState('extd-fpn-32-prelu'), {}, 'x'), parseVariant('extd-fpn-32-prelu'));
  assert.deepEqual(inferVariant(randomState('extd-fpn-64-relu'), { variant: 'extd-fpn-64-relu' }, 'x'), parseVariant('extd-fpn-64-relu'));
  assert.throws(() => inferVariant(randomState('extd-fpn-64-relu'), {}, 'm.pth'), isExtdError(/m\.pth: .*--variant extd-fpn-64-relu/));
  assert.throws(() => inferVariant(new Map(), {}, 'empty.pth'), isExtdError(/empty\.pth: not an EXTD checkpoint/));
});

test('every tensor is checked by name and shape', () => {
  const ok = randomState('extd-fpn-48-leaky');
  assert.equal(modelFromTensors(ok, {}, 'm', 'extd-fpn-48-leaky').weights.size, ok.size);

  const missing = randomState('extd-fpn-48-leaky');
  missing.delete('upfeat.3.1.weight');
  assert.throws(() => modelFromTensors(missing, {}, 'm.pth', 'extd-fpn-48-leaky'), isExtdError(/m\.pth: missing tensor 'upfeat\.3\.1\.weight'/));

  const wrong = randomState('extd-fpn-48-leaky');
  wrong.set('conf.0.weight', { dtype: 'float32', shape: [2, 48, 3, 3], data: new Float32Array(864) });
  assert.throws(
    () => modelFromTensors(wrong, {}, 'm.pth', 'extd-fpn-48-leaky'),
    isExtdError(/'conf\.0\.weight' has shape \[2, 48, 3, 3\], .* needs \[4, 48, 3, 3\]/),
  );

  const extra = randomState('extd-fpn-48-leaky');
  extra.set('fc.weight', { dtype: 'float32', shape: [1], data: new Float32Array(1) });
  extra.set('base.0.1.num_batches_tracked', { dtype: 'int64', shape: [], data: new BigInt64Array(1) });
  assert.throws(() => modelFromTensors(extra, {}, 'm.pth', 'extd-fpn-48-leaky'), isExtdError(/unexpected tensor 'fc\.weight'/));

  // A width-64 file loaded as width 32: the first mismatch is named.
  assert.throws(() => modelFromTensors(randomState('64'), {}, 'm.pth', '32'), isExtdError(/m\.pth: /));
});

// ---------------------------------------------------------------- checkpoints as training scripts save them

/** The graph's tensors of `name` with distinct values, plus BN counters, as torchSave input. */
function savedState(name: string): Map<string, SavedTensor> {
  const m = new Map<string, SavedTensor>();
  let v = 0;
  for (const p of buildGraph(parseVariant(name)).params) {
    const data = new Float32Array(numel(p.shape)).map(() => (v++ % 997) / 997 + 0.01);
    m.set(p.name, { shape: p.shape, data });
    if (p.name.endsWith('.running_var')) m.set(p.name.replace('running_var', 'num_batches_tracked'), { shape: [], data: new BigInt64Array([123n]) });
  }
  return m;
}

function loadBytes(bytes: Uint8Array, source: string) {
  const { tensors, metadata } = readWeightsBytes(bytes, source);
  return modelFromTensors(tensors, metadata, source);
}

function assertSameWeights(got: Map<string, Tensor>, want: Map<string, SavedTensor>, label: string): void {
  for (const [name, t] of got) assert.deepEqual(t.data, want.get(name)!.data, `${label}: ${name}`);
  assert.equal(got.size, [...want.keys()].filter((k) => !k.endsWith('num_batches_tracked')).length, label);
}

test('state_dicts nested under state_dict / model_state_dict / model / net / weight, beside epoch and optimizer state', () => {
  const sd = savedState('extd-fpn-32-prelu');
  const first = [...sd.values()][0]!;
  // What torch.optim.SGD.state_dict() holds: per-parameter momentum tensors keyed by index, and the hyper-parameters.
  const optimizer: PyValue = {
    dict: [
      ['state', { dict: [[0, { dict: [['momentum_buffer', { tensor: first }]] }]] }],
      [
        'param_groups',
        [
          {
            dict: [
              ['lr', 0.001],
              ['momentum', 0.9],
              ['params', [0, 1, 2]],
            ],
          },
        ],
      ],
    ],
  };
  for (const key of STATE_DICT_KEYS) {
    for (const layout of ['zip', 'legacy'] as const) {
      const file = torchSave(
        {
          dict: [
            ['epoch', 7],
            [key, stateDictValue(sd)],
            ['optimizer', optimizer],
            ['best_ap', 0.85],
            ['arch', 'extd'],
          ],
        },
        layout,
      );
      assertSameWeights(loadBytes(file, `${key}.pth`).weights, sd, `${key} (${layout})`);
    }
  }
  // Two levels ({'model': {'state_dict': ...}}), and wrapper prefixes inside the nested dict, as the authors' train.py saves a DataParallel model.
  assertSameWeights(loadBytes(torchSave({ dict: [['model', { dict: [['state_dict', stateDictValue(sd)]] }]] }), 'two.pth').weights, sd, 'two levels');
  assertSameWeights(
    loadBytes(
      torchSave({
        dict: [
          ['weight', stateDictValue(sd, 'module.')],
          ['iteration', 240000],
        ],
      }),
      'w.pth',
    ).weights,
    sd,
    'weight + module.',
  );
  // A bare state_dict with extra non-tensor entries beside the tensors.
  const flat = stateDictValue(sd) as { dict: Array<[string, PyValue]> };
  assertSameWeights(loadBytes(torchSave({ dict: [...flat.dict, ['epoch', 3], ['note', 'x']] }), 'flat.pth').weights, sd, 'flat + extras');
});

test('wrapper prefixes: module. (DataParallel / DDP), _orig_mod. (torch.compile), both', () => {
  const sd = savedState('extd-ssd-48-prelu');
  for (const prefix of ['module.', '_orig_mod.', 'module._orig_mod.', '_orig_mod.module.']) {
    assertSameWeights(loadBytes(torchSave(stateDictValue(sd, prefix)), 'p.pth').weights, sd, prefix);
    // safetensors files written from a wrapped model carry the prefix too.
    const st = writeSafetensors(
      new Map(
        [...sd].filter(([k]) => !k.endsWith('num_batches_tracked')).map(([k, t]) => [prefix + k, { dtype: 'float32', shape: t.shape, data: t.data } as Tensor]),
      ),
    );
    assertSameWeights(loadBytes(st, 'p.safetensors').weights, sd, `${prefix} safetensors`);
  }
  // A prefix on only some keys is not a wrapper's: those tensors are reported.
  const partial = new Map([...sd].map(([k, t], i): [string, SavedTensor] => [i === 0 ? `module.${k}` : k, t]));
  assert.throws(() => loadBytes(torchSave(stateDictValue(partial)), 'part.pth'), isExtdError(/part\.pth: missing tensor 'base\.0\.0\.weight'/));
});

test('a checkpoint holding no state_dict: one line listing its top-level keys and what was expected', () => {
  const noModel = torchSave({
    dict: [
      ['epoch', 3],
      ['lr', 0.5],
      ['optimizer', { dict: [['state', { dict: [] }]] }],
    ],
  });
  assert.throws(
    () => loadBytes(noModel, 'ckpt.pth'),
    isExtdError(
      /^ckpt\.pth: no model state_dict found: top-level keys 'epoch', 'lr', 'optimizer'; expected a dict of name -> tensor, or one under 'state_dict', 'model_state_dict', 'model', 'net', 'weight'$/,
    ),
  );
  assert.throws(
    () => loadBytes(torchSave({ dict: [['state_dict', { dict: [['epoch', 1]] }]] }), 'e.pth'),
    isExtdError(/e\.pth: no model state_dict found: top-level keys 'state_dict'/),
  );
  assert.throws(() => loadBytes(torchSave({ dict: [] }), 'empty.pth'), isExtdError(/top-level keys none \(an empty dict\)/));
  // Tensors that are not EXTD's: their names are shown.
  const other = torchSave(stateDictValue(new Map([['backbone.conv1.weight', { shape: [1], data: new Float32Array(1) }]])));
  assert.throws(
    () => loadBytes(other, 'r.pth'),
    isExtdError(/r\.pth: not an EXTD checkpoint \(no 'loc\.0\.weight' tensor; found 1 tensors: 'backbone\.conv1\.weight'\)/),
  );
});

test('the unpickler stays restricted: a checkpoint saving argparse.Namespace beside the model is refused, nothing runs', () => {
  // {'args': argparse.Namespace(), ...}: a class outside the allow-list, refused where it is named.
  const p = new PickleWriter().proto(2).emptyDict().str('args').global('argparse', 'Namespace').emptyTuple().reduce().setitem().stop().bytes();
  assert.throws(
    () => readPth(zipCheckpoint(p, []), 'args.pth'),
    isExtdError(/args\.pth: archive\/data\.pkl: refusing pickle global 'argparse\.Namespace' \(allowed: /),
  );
});

test('EXTD_32.pth with module. before every key (torch.nn.DataParallel) loads like the plain file', {
  skip: noShared('reference', 'weights', 'EXTD_32.pth'),
}, async () => {
  const path = sharedPath('reference', 'weights', 'EXTD_32.pth');
  const plain = readPth(new Uint8Array(readFileSync(path)), path);
  assert.equal(plain.size, 213);
  const saved = new Map([...plain].map(([k, t]): [string, SavedTensor] => [k, { shape: t.shape, data: t.data as Float32Array | BigInt64Array }]));
  // Refused before as "not an EXTD checkpoint (no 'loc.0.weight' tensor; found 213 tensors)".
  const wrapped = await loadModel(torchSave(stateDictValue(saved, 'module.')));
  const reference = await loadModel(path);
  assert.equal(wrapped.weights.size, reference.weights.size);
  for (const [name, t] of reference.weights) assert.deepEqual(wrapped.weights.get(name)!.data, t.data, name);
});

// ---------------------------------------------------------------- non-finite values

test('NaN or an infinity in any tensor (weight, bias, BN statistics, PReLU slope) is refused with one line naming the tensor', () => {
  const cases: Array<[string, number, number, RegExp]> = [
    ['base.0.0.weight', 0, NaN, /m\.pth: tensor 'base\.0\.0\.weight' holds NaN at \[0, 0, 0, 0\]; a model checkpoint must hold finite numbers/],
    ['loc.2.bias', 3, Infinity, /tensor 'loc\.2\.bias' holds Infinity at \[3\]/],
    ['base.0.1.running_var', 5, NaN, /tensor 'base\.0\.1\.running_var' holds NaN at \[5\]/],
    ['base.0.1.running_mean', 0, -Infinity, /tensor 'base\.0\.1\.running_mean' holds -Infinity at \[0\]/],
    ['base.0.2.weight', 0, NaN, /tensor 'base\.0\.2\.weight' holds NaN at \[0\]/],
    ['conf.0.weight', 2 * 9 * 32 + 9 + 4, Infinity, /tensor 'conf\.0\.weight' holds Infinity at \[2, 1, 1, 1\]/],
  ];
  for (const [name, index, value, re] of cases) {
    const sd = randomState('extd-fpn-32-prelu');
    assert.ok(sd.has(name), name);
    (sd.get(name)!.data as Float32Array)[index] = value;
    assert.throws(() => modelFromTensors(sd, {}, 'm.pth'), isExtdError(re));
  }
  // float64 tensors are checked too (they are narrowed to float32 on load).
  const sd = randomState('extd-fpn-32-prelu');
  const w = sd.get('upfeat.0.0.weight')!;
  const d64 = Float64Array.from(w.data as Float32Array);
  d64[1] = NaN;
  sd.set('upfeat.0.0.weight', { dtype: 'float64', shape: w.shape, data: d64 });
  assert.throws(() => modelFromTensors(sd, {}, 'd.pth'), isExtdError(/tensor 'upfeat\.0\.0\.weight' holds NaN at \[0, 0, 0, 1\]/));
});

test("the issue's recipe: EXTD_32.pth with base.0.0.weight[0,0,0,0] = NaN is refused by loadModel and createDetector", {
  skip: noShared('reference', 'weights', 'EXTD_32.pth'),
}, async () => {
  const path = sharedPath('reference', 'weights', 'EXTD_32.pth');
  const saved = new Map(
    [...readPth(new Uint8Array(readFileSync(path)), path)].map(([k, t]): [string, SavedTensor] => [
      k,
      { shape: t.shape, data: (t.data as Float32Array | BigInt64Array).slice() },
    ]),
  );
  (saved.get('base.0.0.weight')!.data as Float32Array)[0] = NaN;
  const file = join(mkdtempSync(join(tmpdir(), 'extd-nan-')), 'nan.pth');
  writeFileSync(file, torchSave(stateDictValue(saved), 'legacy'));
  const re = new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: tensor 'base\\.0\\.0\\.weight' holds NaN at \\[0, 0, 0, 0\\]`);
  await assert.rejects(loadModel(file), isExtdError(re));
  await assert.rejects(createDetector({ model: file, threads: 1 }), isExtdError(re));
  rmSync(dirname(file), { recursive: true, force: true });
});
