import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildGraph } from '../src/model/graph.js';
import { parseVariant } from '../src/model/variant.js';
import { inferVariant, modelFromTensors } from '../src/weights/checkpoint.js';
import { isExtdError } from './expect-error.js';
import { numel, type Tensor } from '../src/utils/tensor.js';

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
  assert.throws(() => modelFromTensors(wrong, {}, 'm.pth', 'extd-fpn-48-leaky'), isExtdError(/'conf\.0\.weight' has shape \[2, 48, 3, 3\], .* needs \[4, 48, 3, 3\]/));

  const extra = randomState('extd-fpn-48-leaky');
  extra.set('fc.weight', { dtype: 'float32', shape: [1], data: new Float32Array(1) });
  extra.set('base.0.1.num_batches_tracked', { dtype: 'int64', shape: [], data: new BigInt64Array(1) });
  assert.throws(() => modelFromTensors(extra, {}, 'm.pth', 'extd-fpn-48-leaky'), isExtdError(/unexpected tensor 'fc\.weight'/));

  // A width-64 file loaded as width 32: the first mismatch is named.
  assert.throws(() => modelFromTensors(randomState('64'), {}, 'm.pth', '32'), isExtdError(/m\.pth: /));
});
