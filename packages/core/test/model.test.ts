import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildGraph, countParams } from '../src/model/graph.js';
import { countConvMacs, inferSizes } from '../src/model/count.js';
import { allVariants, parseVariant, variantName } from '../src/model/variant.js';
import { levelSizes } from '../src/anchors/priors.js';
import { ExtdError } from '../src/utils/errors.js';

// The paper's Table 2 counts (PReLU); LeakyReLU/ReLU drop one slope per activated conv unit.
const PRELU_PARAMS: Record<string, number> = {
  'extd-fpn-32-prelu': 62_939,
  'extd-fpn-48-prelu': 100_160,
  'extd-fpn-64-prelu': 162_352,
  'extd-ssd-32-prelu': 56_059,
  'extd-ssd-48-prelu': 86_000,
  'extd-ssd-64-prelu': 138_352,
};

test('learnable parameter counts of all 18 variants', () => {
  const variants = allVariants();
  assert.equal(variants.length, 18);
  for (const v of variants) {
    const g = buildGraph(v);
    const prelu = buildGraph({ ...v, activation: 'prelu' });
    const slopes = prelu.params.filter((p) => p.kind === 'prelu').length;
    const expected = PRELU_PARAMS[variantName({ ...v, activation: 'prelu' })]! - (v.activation === 'prelu' ? 0 : slopes);
    assert.equal(countParams(g), expected, variantName(v));
    assert.equal(new Set(g.params.map((p) => p.name)).size, g.params.length, `${variantName(v)}: duplicate tensor names`);
  }
});

test('tensor counts match the released checkpoints (187 / 144 / 144 without num_batches_tracked)', () => {
  assert.equal(buildGraph(parseVariant('32')).params.length, 187);
  assert.equal(buildGraph(parseVariant('48')).params.length, 144);
  assert.equal(buildGraph(parseVariant('64')).params.length, 144);
});

test('conv MACs at 640x640 for FPN are 5.40 / 7.89 / 13.41 G', () => {
  const g = (w: string) => Math.round(countConvMacs(buildGraph(parseVariant(w)), 640, 640) / 1e7) / 100;
  assert.deepEqual([g('32'), g('48'), g('64')], [5.4, 7.89, 13.41]);
});

test("head maps have the prior levels' sizes for odd input sizes", () => {
  const graph = buildGraph(parseVariant('extd-ssd-48-relu'));
  const sizes = inferSizes(graph, 1365, 1024);
  const levels = levelSizes(1365, 1024);
  assert.deepEqual(levels[0], [342, 256]);
  graph.loc.forEach((v, l) => assert.deepEqual(sizes.get(v), levels[l]));
});

test('variant names: canonical, short and invalid forms', () => {
  assert.deepEqual(parseVariant('EXTD_64'), { arch: 'fpn', width: 64, activation: 'prelu' });
  assert.deepEqual(parseVariant('extd-ssd-32-leakyrelu'), { arch: 'ssd', width: 32, activation: 'leaky' });
  assert.deepEqual(parseVariant('fpn-48-relu'), { arch: 'fpn', width: 48, activation: 'relu' });
  for (const v of allVariants()) assert.deepEqual(parseVariant(variantName(v)), v);
  for (const bad of ['extd-fpn-99', 'extd-fpn-64-gelu', 'mobilenet', '']) {
    assert.throws(
      () => parseVariant(bad),
      (e) => e instanceof ExtdError && /allowed/.test(e.message),
      bad,
    );
  }
});

test('backboneStage: the stem and every inverted-residual block, handing f1..f6 to the rest, for every variant', async () => {
  const { backboneStage } = await import('../src/model/backbone.js');
  for (const v of allVariants()) {
    const g = buildGraph(v);
    const st = backboneStage(g);
    assert.ok(st, variantName(v));
    // Block 1 (expansion 1) and F's blocks six times: 6 per application for width 32, 4 for 48 and 64.
    const perF = v.width === 32 ? 6 : 4;
    assert.equal(st.blocks.length, 1 + 6 * perF, variantName(v));
    assert.equal(st.stem.conv, 'base.0.0');
    assert.equal(st.blocks[0]!.expand, undefined);
    assert.ok(st.blocks.slice(1).every((b) => b.expand));
    // Stride 2 exactly in F's last block of each application, and no residual there.
    const strided = st.blocks.flatMap((b, i) => (b.dw.stride === 2 ? [i] : []));
    assert.deepEqual(
      strided,
      [1, 2, 3, 4, 5, 6].map((k) => k * perF),
    );
    assert.ok(st.blocks.every((b, i) => b.residual === (i === 0 ? v.width === 64 : b.dw.stride === 1)));
    // The rest of the graph (FPN, heads) reads f1..f6, the outputs of those strided blocks.
    assert.deepEqual(
      st.outputs.map((o) => o.value),
      [1, 2, 3, 4, 5, 6].map((l) => g.features[`f${l}`]),
    );
    assert.deepEqual(
      st.outputs.map((o) => o.block),
      strided,
    );
    assert.ok(st.outputs.every((o) => st.blocks[o.block]!.project.outChannels === v.width));
    // The stage covers every node up to f6; the rest (FPN or heads) starts right after.
    assert.equal(g.nodes[st.nodeCount - 1]!.output, g.features.f6);
  }
});

test('backboneStage: null for a graph that does not start with a stride-2 stem', async () => {
  const { backboneStage } = await import('../src/model/backbone.js');
  const g = buildGraph(parseVariant('extd-32'));
  assert.equal(backboneStage({ ...g, nodes: g.nodes.slice(1) }), null);
  assert.equal(backboneStage({ ...g, nodes: g.nodes.slice(0, 1) }), null);
});
