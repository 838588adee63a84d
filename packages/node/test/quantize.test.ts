import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { BUNDLED_MODEL_NAMES, bundledModelPath, createDetector, decodeNodeInput, defaultPrecisionOf, loadModel } from '../src/index.js';
import { nativeKernels, onnxInt8WeightType } from '../src/runtime/native-network.js';
import { createOrtNodeSession } from '../src/runtime/ort-node.js';
import { createDetectorWith } from '@extd/core/detector';
import { checkCalibration, modelFingerprint, percentileRange, type Calibration } from '@extd/core/quantize/calibration';
import { bundledCalibrationPath, readCalibrationFile } from '../src/quantize/calibration-node.js';
import { exportOnnx, quantizedValues, quantizeWeightsPerChannel, uint8Params } from '@extd/core/runtime/onnx-export';
import { iouXyxy } from '@extd/core/postprocess/boxes';
import { Rng } from '@extd/core/utils/rng';
import { GOLDEN_TAGS, goldenPixels } from '../../../test-support/golden.js';
import { runCli } from '../../../test-support/cli-run.js';
import { noShared, sharedPath } from '../../../test-support/shared.js';
import { isExtdError } from '../../../test-support/expect-error.js';

/** Whether this machine's kernels run int8 (AVX512-VNNI): engine 'auto' then runs int8 there. */
const int8OnKernels = Boolean(nativeKernels()?.int8 && nativeKernels()!.vectorWidth >= 8);

const expectExtdError = (fn: () => Promise<unknown>, re: RegExp) => assert.rejects(fn, isExtdError(re));

const tmp = mkdtempSync(join(tmpdir(), 'extd-quantize-'));
const skip = noShared('reference', 'golden');

test('percentileRange equals sorting with linear interpolation (ties, NaN, a constant tensor)', () => {
  const rng = Rng.fromSeed(3);
  const sorted = (d: Float32Array) => Float64Array.from([...d].filter((v) => !Number.isNaN(v))).sort();
  const q = (s: Float64Array, p: number) => {
    const x = (p / 100) * (s.length - 1),
      f = Math.floor(x);
    return x > f ? s[f]! + (s[f + 1]! - s[f]!) * (x - f) : s[f]!;
  };
  for (let trial = 0; trial < 20; trial++) {
    const n = 1 + Math.floor(rng.float() * 50_000);
    // Half zeros (as after a ReLU), some NaN, a long tail.
    const d = new Float32Array(n).map(() => (rng.float() < 0.5 ? 0 : rng.float() < 0.01 ? NaN : (rng.float() - 0.3) ** 3 * 100));
    const s = sorted(d);
    if (s.length === 0) continue;
    for (const p of [99.999, 99, 90, 100]) {
      const [lo, hi] = percentileRange(d, 100 - p, p);
      assert.ok(Math.abs(lo - q(s, 100 - p)) <= 1e-9 * Math.max(1, Math.abs(lo)), `trial ${trial} p ${p} low ${lo} vs ${q(s, 100 - p)}`);
      assert.ok(Math.abs(hi - q(s, p)) <= 1e-9 * Math.max(1, Math.abs(hi)), `trial ${trial} p ${p} high ${hi} vs ${q(s, p)}`);
    }
  }
  assert.deepEqual(percentileRange(new Float32Array(10).fill(2.5), 0.001, 99.999), [2.5, 2.5]);
  assert.deepEqual(percentileRange(Float32Array.of(NaN), 1, 99), [0, 0]);
});

test('uint8 activation and int8 per-channel weight quantisation', () => {
  const a = uint8Params([-1, 3]);
  assert.equal(a.zeroPoint, Math.round(1 / a.scale));
  assert.ok(Math.abs(a.scale - 4 / 255) < 1e-7);
  assert.deepEqual(uint8Params([0.5, 2]).zeroPoint, 0); // widened to include 0
  const w = Float32Array.of(1, -0.5, 0.25, 0, 0, 0, 10, 5, -10);
  const { q, scales } = quantizeWeightsPerChannel(w, 3);
  assert.deepEqual([...q], [127, -64, 32, 0, 0, 0, 127, 64, -127]);
  assert.deepEqual([...scales], [1 / 127, 1, 10 / 127].map(Math.fround));
});

/** A calibration of extd-32 with made-up ranges and the right fingerprint, for the format checks. */
async function syntheticCalibration() {
  const model = await loadModel('extd-32');
  const ranges: Record<string, [number, number]> = {};
  for (const v of quantizedValues(model.graph)) ranges[v] = [-4, 4];
  const c: Calibration = {
    format: 'extd-int8-calibration',
    version: 1,
    variant: 'extd-fpn-32-prelu',
    weights: await modelFingerprint(model),
    percentile: 99.999,
    images: ['a.jpg'],
    ranges,
  };
  return { model, c };
}

test('calibration files are checked: format, version, variant, weights, every range present and finite', async () => {
  const { model, c } = await syntheticCalibration();
  await checkCalibration(c, model, 'ok.json');
  const bad = async (change: (c: any) => void, message: RegExp) => {
    const copy = JSON.parse(JSON.stringify(c));
    change(copy);
    await expectExtdError(() => checkCalibration(copy, model, 'x.json'), message);
  };
  await bad((x) => (x.format = 'other'), /calibration x\.json: format is "other"/);
  await bad((x) => (x.version = 2), /version 2 is not supported/);
  await bad((x) => (x.variant = 'extd-fpn-64-prelu'), /made for variant extd-fpn-64-prelu, the model is extd-fpn-32-prelu/);
  await bad((x) => (x.weights = '00'), /other weights of this variant/);
  await bad((x) => delete x.ranges.input, /range of 'input' is missing/);
  await bad((x) => (x.ranges.input = [1, -1]), /range of 'input' is \[1,-1\]/);
  await bad((x) => (x.ranges.input = [0, null]), /range of 'input'/);
  await bad((x) => (x.ranges['nope'] = [0, 1]), /range for unknown value 'nope'/);
  await expectExtdError(() => checkCalibration([], model, 'x.json'), /not a JSON object/);
  // Files: missing, not JSON.
  await expectExtdError(() => readCalibrationFile(join(tmp, 'missing.json'), model), /missing\.json: file not found/);
  writeFileSync(join(tmp, 'bad.json'), '{ nope');
  await expectExtdError(() => readCalibrationFile(join(tmp, 'bad.json'), model), /bad\.json: not valid JSON/);
  // The detector refuses int8 for a model without shipped ranges, and ranges of another model.
  await expectExtdError(
    () => createDetector({ model: 'extd-32-scratch', precision: 'int8', engine: 'onnxruntime' }),
    /precision 'int8' needs calibration ranges for extd-32-scratch/,
  );
  // The native kernels' int8 needs no ranges.
  if (int8OnKernels) {
    const d = await createDetector({ model: 'extd-32-scratch', precision: 'int8', threads: 1 });
    assert.equal(d.precision, 'int8');
    assert.equal(d.engine, 'extd-kernels');
    await d.dispose();
  }
  await expectExtdError(() => createDetector({ model: 'extd-64', precision: 'int8', calibration: c }), /made for variant extd-fpn-32-prelu/);
  await expectExtdError(() => createDetector({ precision: 'int16' as never }), /precision must be 'float32' or 'int8'/);
});

test('default precision: on onnxruntime int8 for extd-48 (by name or file path), float32 for the others; on the int8 kernels int8 for the released three; an explicit precision wins', async () => {
  const made: { precision: string; dispose(): Promise<void> }[] = [];
  const precisionOf = async (options: Parameters<typeof createDetector>[0]) => {
    const d = await createDetector({ threads: 1, ...options });
    made.push(d);
    return d.precision;
  };
  // A copy of a bundled file elsewhere is just a checkpoint: float32 (its calibration is not known to belong).
  const copy = join(tmp, 'copy-of-extd-48.safetensors');
  writeFileSync(copy, readFileSync(bundledModelPath('extd-48')));
  try {
    const ort = { engine: 'onnxruntime' } as const;
    assert.equal(await precisionOf({ ...ort }), 'float32'); // the default model, extd-32
    assert.equal(await precisionOf({ ...ort, model: 'extd-32' }), 'float32');
    assert.equal(await precisionOf({ ...ort, model: 'extd-32-scratch' }), 'float32');
    assert.equal(await precisionOf({ ...ort, model: 'extd-48' }), 'int8');
    assert.equal(await precisionOf({ ...ort, model: 'extd-64' }), 'float32');
    assert.equal(await precisionOf({ ...ort, model: bundledModelPath('extd-48') }), 'int8');
    assert.equal(await precisionOf({ ...ort, model: 'extd-48', precision: undefined }), 'int8');
    assert.equal(await precisionOf({ ...ort, model: 'extd-48', precision: 'float32' }), 'float32');
    assert.equal(await precisionOf({ ...ort, model: 'extd-64', precision: 'int8' }), 'int8');
    assert.equal(await precisionOf({ ...ort, model: copy }), 'float32');
    // engine 'auto': where the kernels run int8, the three released models default to it.
    const k = int8OnKernels ? 'int8' : null;
    assert.equal(await precisionOf({}), k ?? 'float32');
    assert.equal(await precisionOf({ model: 'extd-64' }), k ?? 'float32');
    assert.equal(await precisionOf({ model: 'extd-48' }), 'int8');
    assert.equal(await precisionOf({ model: 'extd-32-scratch' }), 'float32');
    assert.equal(await precisionOf({ model: copy }), 'float32');
    assert.equal(await precisionOf({ model: 'extd-32', precision: 'float32' }), 'float32');
  } finally {
    for (const d of made) await d.dispose();
  }
  assert.deepEqual(
    BUNDLED_MODEL_NAMES.map((n) => [n, defaultPrecisionOf(n), defaultPrecisionOf(n, true)]),
    [
      ['extd-32', 'float32', 'int8'],
      ['extd-48', 'int8', 'int8'],
      ['extd-64', 'float32', 'int8'],
      ['extd-32-scratch', 'float32', 'float32'],
    ],
  );
  assert.equal(defaultPrecisionOf(undefined), 'float32');
  assert.equal(defaultPrecisionOf(undefined, true), 'int8');
  assert.equal(defaultPrecisionOf(null, true), 'float32');
});

test('the shipped calibration files fit their models and come from WIDER training images', async () => {
  for (const name of ['extd-32', 'extd-48', 'extd-64'] as const) {
    const path = bundledCalibrationPath(name)!;
    assert.ok(existsSync(path), `${path} is shipped`);
    const c = await readCalibrationFile(path, await loadModel(name));
    assert.equal(c.percentile, 99.999);
    // 48 images for extd-32, 24 for the larger two (see models/README.md).
    assert.equal(c.images.length, name === 'extd-32' ? 48 : 24);
    assert.equal(new Set(c.images).size, c.images.length);
    for (const img of c.images) {
      assert.match(img, /^\d+--[^/]+\/[^/]+\.jpg$/, `${name}: ${img} is EVENT/NAME.jpg`);
      if (!noShared('wider', 'WIDER_train', 'images')) assert.ok(existsSync(sharedPath('wider', 'WIDER_train', 'images', img)), `${img} is a training image`);
      if (!noShared('wider', 'WIDER_val', 'images'))
        assert.ok(!existsSync(sharedPath('wider', 'WIDER_val', 'images', img)), `${img} is not a validation image`);
    }
    // The network's input is mean-subtracted 8-bit RGB: its range is inside [-123, 152].
    assert.ok(c.ranges.input![0] >= -123 && c.ranges.input![1] <= 152, `${name} input range ${c.ranges.input}`);
  }
});

type Face = { box: { x: number; y: number; width: number; height: number }; score: number };
const xyxy = (f: Face) => Float32Array.of(f.box.x, f.box.y, f.box.x + f.box.width, f.box.y + f.box.height);

/** Every face of `a` passing `which` has a face of `b` above `minScore` at IoU >= minIou(face); returns the lowest best IoU (1 if none). */
function assertFound(a: Face[], b: Face[], which: (f: Face) => boolean, minScore: number, minIou: (f: Face) => number, what: string): number {
  let worst = 1;
  for (const f of a.filter(which)) {
    const best = Math.max(0, ...b.filter((g) => g.score > minScore).map((g) => iouXyxy(xyxy(f), 0, xyxy(g), 0)));
    assert.ok(best >= minIou(f), `${what}: face ${JSON.stringify(f)} best IoU ${best.toFixed(3)} with a face above ${minScore}`);
    worst = Math.min(worst, best);
  }
  return worst;
}

test('int8 detections match float32 on the golden images, on each int8 engine this machine has', { skip }, async (t) => {
  // Faces of at least 16 px (the smallest anchor) scoring >= 0.7 in one precision are the same faces
  // above 0.5 in the other with IoU >= 0.9. Tinier or borderline faces (8-15 px in the crowd image)
  // move by a pixel or two or cross 0.5, so for every face above 0.5 only a box above 0.05 is required,
  // with IoU >= 0.6 from 16 px up and >= 0.4 below. (On a CI machine without VNNI, onnxruntime's int8,
  // then with int8 weights, whose uint8 x int8 pair sums saturate at 16 bits there, moved a 10.6 x 13.4 px
  // EXTD-64 face at 0.62 to IoU 0.496; such CPUs now get uint8 weights, computed exactly.)
  // The float32 side is asked for by name: the released models' default is int8 where the kernels run it.
  const side = (f: Face) => Math.min(f.box.width, f.box.height);
  const clear = (f: Face) => f.score >= 0.7 && side(f) >= 16;
  const minIou = (f: Face) => (side(f) >= 16 ? 0.6 : 0.4);
  const engines = int8OnKernels ? (['auto', 'onnxruntime'] as const) : (['onnxruntime'] as const);
  t.diagnostic(
    `int8 checked on: ${engines.map((e) => (e === 'auto' ? 'extd-kernels' : `onnxruntime (${onnxInt8WeightType()} weights on this CPU)`)).join(', ')}`,
  );
  for (const model of ['extd-32', 'extd-64'] as const) {
    const float = await createDetector({ model, engine: 'onnxruntime', precision: 'float32' });
    assert.equal(float.precision, 'float32');
    for (const engine of engines) {
      const int8 = await createDetector({ model, engine, precision: 'int8' });
      assert.equal(int8.precision, 'int8');
      assert.equal(int8.engine, engine === 'auto' ? 'extd-kernels' : 'onnxruntime');
      const what = `${model} on ${int8.engine}`;
      let checked = 0,
        worst = 1;
      for (const tag of GOLDEN_TAGS) {
        const image = goldenPixels(tag);
        const a = await float.detect(image, { scoreThreshold: 0.05 });
        const b = await int8.detect(image, { scoreThreshold: 0.05 });
        assertFound(a, b, clear, 0.5, () => 0.9, `${what} ${tag} float32 -> int8`);
        // Known deviation: EXTD-32's int8 scored one box on the Interview image 0.86 where float32 gives
        // 0.42 (commit 8bddca0, onnxruntime), so for EXTD-32 only the direction float32 -> int8 is required.
        if (model === 'extd-64') assertFound(b, a, clear, 0.5, () => 0.9, `${what} ${tag} int8 -> float32`);
        worst = Math.min(
          worst,
          assertFound(a, b, (f) => f.score > 0.5, 0.05, minIou, `${what} ${tag} float32 -> int8, any face above 0.5`),
        );
        checked += a.filter(clear).length;
      }
      t.diagnostic(`${what}: worst IoU of a float32 face above 0.5 with an int8 box ${worst.toFixed(3)}`);
      assert.ok(checked >= 3, `${what}: ${checked} clear faces compared`);
      await int8.dispose();
    }
    await float.dispose();
  }
});

test('onnxruntime int8 with uint8 weights (x86 without VNNI) computes what int8 weights do where nothing saturates', { skip }, async (t) => {
  const model = await loadModel('extd-64');
  const { ranges } = await readCalibrationFile(bundledCalibrationPath('extd-64')!, model);
  const s8 = await createDetectorWith(model, createOrtNodeSession, decodeNodeInput, 2, { ranges, weightType: 'int8' });
  const u8 = await createDetectorWith(model, createOrtNodeSession, decodeNodeInput, 2, { ranges, weightType: 'uint8' });
  const exact = onnxInt8WeightType() === 'int8' && process.arch === 'x64';
  for (const tag of GOLDEN_TAGS.slice(0, 2)) {
    const image = goldenPixels(tag);
    const [a, b] = [await s8.forward(image), await u8.forward(image)];
    let maxDiff = 0;
    for (const k of ['loc', 'conf'] as const) for (let i = 0; i < a[k].length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[k][i]! - b[k][i]!));
    t.diagnostic(`${tag}: max |loc/conf difference| int8 vs uint8 weights ${maxDiff}`);
    // With VNNI both are exact integer sums; without it the int8-weight sums may saturate (the reason for uint8).
    if (exact) assert.equal(maxDiff, 0, `${tag}: uint8 and int8 weights give the same outputs on a VNNI CPU`);
  }
  await s8.dispose();
  await u8.dispose();
});

test('onnxruntime gets uint8 int8-graph weights on x86-64 without VNNI (or unknown flags), int8 elsewhere', () => {
  assert.equal(onnxInt8WeightType('x64', new Set(['avx2', 'avx512f', 'avx512_vnni'])), 'int8');
  assert.equal(onnxInt8WeightType('x64', new Set(['avx2', 'avx_vnni'])), 'int8');
  assert.equal(onnxInt8WeightType('x64', new Set(['avx2', 'avx512f', 'avx512bw'])), 'uint8');
  assert.equal(onnxInt8WeightType('x64', null), 'uint8');
  assert.equal(onnxInt8WeightType('arm64', new Set(['asimd'])), 'int8');
});

test('the int8 graph is QDQ and onnxruntime runs every conv as QLinearConv', async () => {
  const { model, c } = await syntheticCalibration();
  const bytes = exportOnnx(model.graph, model.weights, { int8: { ranges: c.ranges } });
  // op_type is NodeProto field 4 (tag 0x22), then the name's length.
  const opCount = (b: Uint8Array, op: string) => new TextDecoder('latin1').decode(b).split(`\x22${String.fromCharCode(op.length)}${op}`).length - 1;
  const convs = model.graph.nodes.filter((n) => n.op === 'conv').length;
  const upsamples = model.graph.nodes.filter((n) => n.op === 'upsample').length;
  const heads = model.graph.loc.length + model.graph.conf.length;
  // Every quantized value, less the heads' maps (kept float32), plus the upsampled maps (their input's range).
  assert.equal(opCount(bytes, 'QuantizeLinear'), quantizedValues(model.graph).length - heads + upsamples);
  assert.equal(opCount(bytes, 'Conv'), convs);
  const ort = await import('onnxruntime-node');
  // The same fusion with int8 weights and with uint8 ones (zero point 128; what x86 CPUs without VNNI get).
  for (const weightType of ['int8', 'uint8'] as const) {
    const optimized = join(tmp, `int8-optimized-${weightType}.onnx`);
    const graph = weightType === 'int8' ? bytes : exportOnnx(model.graph, model.weights, { int8: { ranges: c.ranges, weightType } });
    const session = await ort.InferenceSession.create(graph, { graphOptimizationLevel: 'all', optimizedModelFilePath: optimized, logSeverityLevel: 3 });
    await session.release();
    const opt = new Uint8Array(readFileSync(optimized));
    // The heads (a 3x3 conv per level for loc and for conf) keep float32 outputs: float convs over dequantized weights.
    assert.equal(opCount(opt, 'QLinearConv'), convs - heads, `${weightType} weights: every other conv fused to QLinearConv`);
    assert.equal(opCount(opt, 'Conv') + opCount(opt, 'FusedConv'), heads, `${weightType} weights: no other float conv`);
    assert.equal(opCount(opt, 'QLinearLeakyRelu'), model.graph.nodes.filter((n) => n.op === 'conv' && n.act?.kind === 'prelu').length);
  }
  assert.throws(() => exportOnnx(model.graph, model.weights, { int8: { ranges: { ...c.ranges, input: [NaN, 1] } } }), /no finite int8 range for 'input'/);
});

test('extd quantize: bad images folder, bad model, missing flags: one line, exit 1, nothing written', () => {
  const out = join(tmp, 'never.json');
  const empty = join(tmp, 'empty');
  mkdirSync(empty, { recursive: true });
  const broken = join(tmp, 'broken');
  mkdirSync(broken, { recursive: true });
  writeFileSync(join(broken, 'x.jpg'), 'not a jpeg');
  const notModel = join(tmp, 'model.safetensors');
  writeFileSync(notModel, 'garbage');
  const cases: Array<[string[], RegExp]> = [
    [['extd-32', '--images', join(tmp, 'nope'), '-o', out], /^extd quantize: --images .*nope: folder not found$/],
    [['extd-32', '--images', notModel, '-o', out], /^extd quantize: --images .*model\.safetensors: not a folder$/],
    [['extd-32', '--images', empty, '-o', out], /^extd quantize: --images .*empty: no images/],
    [['extd-32', '--images', broken, '-o', out], /^extd quantize: cannot decode image .*x\.jpg/],
    [['extd-99', '--images', broken, '-o', out], /^extd quantize: model 'extd-99': not a bundled model name/],
    [[notModel, '--images', broken, '-o', out], /^extd quantize: .*model\.safetensors/],
    [['extd-32', '-o', out], /^extd quantize: --images DIR is required/],
    [['extd-32', '--images', broken], /^extd quantize: -o OUT\.json is required/],
    [['extd-32', '--images', broken, '-o', out, '--percentile', '40'], /^extd quantize: --percentile 40: expected a number in \(50, 100\]$/],
  ];
  for (const [args, re] of cases) {
    const r = runCli(['quantize', ...args]);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('quantize '));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, re);
    assert.ok(!existsSync(out), `${args.join(' ')} wrote nothing`);
  }
  const detect = runCli(['detect', join(broken, 'x.jpg'), '--calibration', out]);
  assert.equal(detect.code, 1);
  assert.match(detect.stderr, /^extd detect: --calibration applies to --precision int8 only$/m);
});

test('extd quantize writes ranges that extd detect --precision int8 uses, and the int8 ONNX graph', {
  skip: noShared('wider', 'WIDER_train', 'images'),
}, async () => {
  const { readdirSync } = await import('node:fs');
  const event = readdirSync(sharedPath('wider', 'WIDER_train', 'images')).sort()[0]!;
  const dir = join(tmp, 'calib-images', event);
  mkdirSync(dir, { recursive: true });
  const src = sharedPath('wider', 'WIDER_train', 'images', event);
  const first = readdirSync(src).sort()[0]!;
  await sharp(join(src, first)).resize(320).png().toFile(join(dir, 'a.png'));
  const out = join(tmp, 'ranges.json');
  const onnx = join(tmp, 'int8.onnx');
  const r = runCli(['quantize', 'extd-32', '--images', join(tmp, 'calib-images'), '--count', '3', '-o', out, '--onnx', onnx]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /wrote .*ranges\.json: ranges of \d+ tensors of extd-fpn-32-prelu from 1 images/);
  const c = await readCalibrationFile(out, await loadModel('extd-32'));
  assert.deepEqual(c.images, [join(event, 'a.png')]);
  assert.ok(readFileSync(onnx).length > 50_000);
  const detect = runCli(['detect', join(dir, 'a.png'), '--precision', 'int8', '--calibration', out, '--json']);
  assert.equal(detect.code, 0, detect.stderr);
  assert.ok(Array.isArray(JSON.parse(detect.stdout)[0].faces));
  // A bundled model by name needs no --calibration (its ranges ship in models/).
  const bundled = runCli(['detect', join(dir, 'a.png'), '--precision', 'int8']);
  assert.equal(bundled.code, 0, bundled.stderr);
  const wrong = runCli(['detect', join(dir, 'a.png'), '--model', 'extd-64', '--precision', 'int8', '--calibration', out]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /^extd detect: calibration .*ranges\.json: made for variant extd-fpn-32-prelu, the model is extd-fpn-64-prelu$/m);
});
