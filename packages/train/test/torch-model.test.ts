// The model graph lowered to libtorch: parity with the golden PyTorch maps on
// the released EXTD-64, whole-model gradients, initialisation, state dicts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildGraph, countParams } from '@extd/core/model/graph';
import { gradCheckDirectional, loadTorch, torchUnavailableReason, type Torch, type TorchTensor } from '../src/train/torch.js';
import { createTorchModel, type TorchModel } from '../src/train/torch-model.js';
import { initialWeights, INIT_DEFAULTS } from '../src/train/init.js';
import { readGolden, releasedModel } from '../../../test-support/golden.js';
import { noShared, requiredInCi } from '../../../test-support/shared.js';

const noTorch = requiredInCi(torchUnavailableReason() ?? false);
const torch = (noTorch ? undefined : loadTorch()) as Torch;
if (torch) torch.setNumThreads(1); // small tensors: a second thread only adds barrier waits on a loaded machine

const STEPS = [1e-6, 1e-7, 1e-8];
const tiny = () => buildGraph({ arch: 'fpn', width: 32, activation: 'prelu' });

test('EXTD-64 lowered to libtorch reproduces every golden map of maps320 (eval mode)', { skip: noTorch || noShared('reference', 'golden') }, () => {
  const model = releasedModel(64);
  const tm = createTorchModel(torch, model.graph, model.weights);
  const { tensors } = readGolden('maps320.extd64.safetensors');
  const input = tensors.get('input')!;
  torch.tidy(() =>
    torch.noGrad(() => {
      const out = tm.forward(torch.fromFloat32Array(input.data as Float32Array, [1, ...input.shape]), { features: true });
      const ours: Record<string, TorchTensor> = { ...out.features!, loc: out.loc, conf: out.conf };
      for (const name of ['f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'g1', 'g2', 'g3', 'g4', 'g5', 'g6', 'loc', 'conf']) {
        const gold = tensors.get(name)!;
        assert.deepEqual(ours[name]!.shape.slice(1), gold.shape, `${name} shape`);
        const a = ours[name]!.toFloat32Array();
        const b = gold.data as Float32Array;
        let d = 0;
        for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
        assert.ok(d <= 1e-3, `${name}: max |diff| ${d} > 1e-3`);
      }
    }),
  );
  tm.dispose();
});

test('He initialisation (initialWeights) in libtorch: parameters and requiresGrad follow the graph', { skip: noTorch }, () => {
  const graph = tiny();
  const m = createTorchModel(torch, graph, initialWeights(graph, 0));
  const params = m.parameters();
  assert.equal(
    params.reduce((s, p) => s + p.numel, 0),
    countParams(graph),
  );
  assert.ok(params.every((p) => p.requiresGrad && p.isLeaf));
  assert.equal(m.tensors.get('base.0.1.running_mean')!.requiresGrad, false);
  assert.deepEqual([...m.tensors.get('base.0.2.weight')!.toFloat32Array()], [INIT_DEFAULTS.preluSlope]);
  assert.ok(
    m.tensors
      .get('base.0.1.weight')!
      .toFloat32Array()
      .every((v) => v === 1),
  );
  assert.ok(
    m.tensors
      .get('loc.0.bias')!
      .toFloat32Array()
      .every((v) => v === 0),
  );
  // base.2.conv.0 is a 1x1 expansion conv [64, 32, 1, 1]: fan_in 32, std sqrt(2/32) = 0.25.
  const w = m.tensors.get('base.2.conv.0.weight')!;
  assert.deepEqual(w.shape, [64, 32, 1, 1]);
  const v = w.toFloat32Array();
  const std = Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
  assert.ok(Math.abs(std - 0.25) < 0.025, `std ${std}`);
  m.dispose();
});

/** A scalar of both heads with fixed random weights, so every output matters. */
function headsScalar(m: TorchModel, x: TorchTensor, training: boolean): (...xs: TorchTensor[]) => TorchTensor {
  const o = torch.noGrad(() => m.forward(x, { training }));
  const rl = torch.randn(o.loc.shape, 'float64');
  const rc = torch.randn(o.conf.shape, 'float64');
  return () => {
    const y = m.forward(x, { training });
    return torch.add(torch.sum(torch.mul(y.loc, rl)), torch.sum(torch.mul(y.conf, rc)));
  };
}

test('whole-model gradients match finite differences on a tiny input (float64)', { skip: noTorch }, () => {
  torch.manualSeed(11);
  const graph = tiny();
  const m = createTorchModel(torch, graph, initialWeights(graph, 11), { dtype: 'float64' });
  const x = torch.randn([1, 3, 32, 32], 'float64');
  x.requiresGrad = true;
  // One training-mode pass gives BN realistic running statistics (not 0 / 1).
  torch.noGrad(() => m.forward(torch.randn([2, 3, 32, 32], 'float64'), { training: true }));

  // Eval mode, one direction per tensor, spread over the whole network
  // (stem, the six-times reused F with its BN and PReLU, FPN, both heads).
  // Steps down to 1e-8: a direction that moves every pixel or the stem can
  // cross a PReLU/ReLU kink at 1e-6 (see gradCheckDirectional).
  const f = headsScalar(m, x, false);
  const names = [
    'base.0.0.weight',
    'base.1.conv.0.bias',
    'base.2.conv.4.weight',
    'base.7.conv.8.weight',
    'upfeat.0.0.weight',
    'upfeat.4.2.bias',
    'conf.0.weight',
    'loc.5.bias',
  ];
  for (const [name, t] of [['input', x], ...names.map((n) => [n, m.tensors.get(n)!] as const)] as const) {
    assert.ok(t, name);
    const [r] = gradCheckDirectional(torch, f, [t], { directions: 1, eps: STEPS, stopBelow: 1e-7 });
    assert.ok(r!.error < 1e-5, `${name}: autograd ${r!.analytic}, finite differences ${r!.numeric}`);
  }

  // Training mode (batch statistics). The 1x1 maps of the last levels make
  // BN over two values badly conditioned for finite differences, so check
  // the tensors whose paths avoid them: the finest FPN stage and heads.
  const x64 = torch.randn([2, 3, 64, 64], 'float64');
  const ft = headsScalar(m, x64, true);
  for (const name of ['upfeat.4.1.weight', 'upfeat.4.2.weight', 'loc.0.weight']) {
    const [r] = gradCheckDirectional(torch, ft, [m.tensors.get(name)!], { directions: 1, eps: STEPS, stopBelow: 1e-7 });
    assert.ok(r!.error < 1e-5, `${name} (training): autograd ${r!.analytic}, finite differences ${r!.numeric}`);
  }
  m.dispose();
});

test('the directional check catches a wrong gradient', { skip: noTorch }, () => {
  torch.manualSeed(12);
  const x = torch.randn([20], 'float64');
  x.requiresGrad = true;
  // sum(x * detach(x)): autograd sees gradient x, the true gradient is 2x.
  const wrong = gradCheckDirectional(torch, (t) => torch.sum(torch.mul(t, torch.detach(t))), [x], { directions: 2, eps: STEPS });
  assert.ok(
    wrong.every((r) => r.error > 0.1),
    JSON.stringify(wrong),
  );
  const right = gradCheckDirectional(torch, (t) => torch.sum(torch.mul(t, t)), [x], { directions: 2 });
  assert.ok(
    right.every((r) => r.error < 1e-8),
    JSON.stringify(right),
  );
});

test('training mode updates BN running statistics, eval mode does not', { skip: noTorch }, () => {
  torch.manualSeed(13);
  const graph = tiny();
  const m = createTorchModel(torch, graph, initialWeights(graph, 13));
  const rm = m.tensors.get('base.0.1.running_mean')!;
  const x = torch.randn([2, 3, 32, 32]);
  torch.tidy(() => torch.noGrad(() => m.forward(x)));
  assert.ok(rm.toFloat32Array().every((v) => v === 0));
  torch.tidy(() => torch.noGrad(() => m.forward(x, { training: true })));
  assert.ok(rm.toFloat32Array().some((v) => v !== 0));
  m.dispose();
});

test('state dict round-trips and a few SGD steps reduce a loss', { skip: noTorch }, () => {
  torch.manualSeed(14);
  const graph = tiny();
  const a = createTorchModel(torch, graph, initialWeights(graph, 14));
  const x = torch.randn([2, 3, 64, 64]);
  torch.noGrad(() => a.forward(x, { training: true }));
  const state = a.stateDict();
  assert.deepEqual(
    [...state.keys()],
    graph.params.map((p) => p.name),
  );
  const b = createTorchModel(torch, graph, initialWeights(graph, 99));
  b.loadStateDict(state);
  const outA = torch.noGrad(() => a.forward(x).loc.toFloat32Array());
  const outB = torch.noGrad(() => b.forward(x).loc.toFloat32Array());
  assert.deepEqual(outA, outB);
  assert.throws(() => b.loadStateDict(new Map([...state].slice(1))), /missing tensor 'base\.0\.0\.weight'/);

  // Regress every box output towards zero: the loss must fall.
  const opt = torch.sgd(a.parameters(), { lr: 1e-3 });
  const losses: number[] = [];
  for (let i = 0; i < 5; i++) {
    losses.push(
      torch.tidy(() => {
        opt.zeroGrad();
        const o = a.forward(x, { training: true });
        const loss = torch.div(torch.smoothL1Loss(o.loc, torch.zeros(o.loc.shape), 'sum'), o.loc.shape[1]!);
        loss.backward();
        opt.step();
        return loss.item();
      }),
    );
  }
  assert.ok(losses[4]! < losses[0]!, `losses ${losses.join(', ')}`);
  a.dispose();
  b.dispose();
});
