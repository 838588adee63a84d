import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exportOnnx } from '@extd/core/runtime/onnx-export';
import { createOrtNodeSession } from '../src/runtime/ort-node.js';
import { createDetectorWith } from '@extd/core/detector';
import { GOLDEN_TAGS, assertMatchesGolden, goldenCount, goldenPixels, readGolden, releasedModel } from '../../../test-support/golden.js';
import { noShared } from '../../../test-support/shared.js';

const skip = noShared('reference', 'golden');

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, 'length');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('every intermediate map of maps320.extd64 matches the golden one', { skip }, async () => {
  const model = releasedModel(64);
  const session = await createOrtNodeSession(exportOnnx(model.graph, model.weights, { features: true }), { threads: 2 });
  const { tensors } = readGolden('maps320.extd64.safetensors');
  const input = tensors.get('input')!;
  const out = await session.run({ dtype: 'float32', shape: [1, ...input.shape], data: input.data as Float32Array });
  const names = ['f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'g1', 'g2', 'g3', 'g4', 'g5', 'g6', 'loc', 'conf'];
  for (const name of names) {
    const gold = tensors.get(name)!;
    const ours = out[name];
    assert.ok(ours, `output ${name}`);
    assert.deepEqual(ours.shape.slice(1), gold.shape, `${name} shape`);
    const d = maxAbsDiff(ours.data, gold.data as Float32Array);
    assert.ok(d <= 1e-3, `${name}: max |diff| ${d} > 1e-3`);
  }
  await session.release();
});

for (const width of [32, 48, 64] as const) {
  test(`EXTD-${width} end-to-end detections on the golden images match`, { skip }, async () => {
    const detector = await createDetectorWith(releasedModel(width), createOrtNodeSession, async (x: never) => x, 2);
    for (const tag of GOLDEN_TAGS) {
      const image = goldenPixels(tag);
      const gold = readGolden(`${tag}.extd${width}.safetensors`).tensors;
      if (width === 64) {
        // Per-prior raw outputs: loc within 1e-3, face probability within 1e-4.
        const { loc, conf } = await detector.forward(image);
        assert.ok(maxAbsDiff(loc, gold.get('loc')!.data as Float32Array) <= 1e-3, `${tag} loc`);
        const goldScores = gold.get('scores')!.data as Float32Array;
        const face = new Float32Array(goldScores.length);
        for (let i = 0; i < face.length; i++) face[i] = 1 / (1 + Math.exp(conf[2 * i]! - conf[2 * i + 1]!));
        assert.ok(maxAbsDiff(face, goldScores) <= 1e-4, `${tag} face probabilities`);
      }
      const ours = await detector.detectPass(image, { scale: 1, scoreThreshold: 0.05, nmsThreshold: 0.3, maxFaces: 750 });
      assertMatchesGolden(tag, width, ours);
      // With S3FD's 5000-candidate limit before NMS, the whole list has the reference's length too.
      assert.equal(ours.scores.length, goldenCount(tag, width), `${tag}: detections above 0.05`);
    }
    await detector.dispose();
  });
}
