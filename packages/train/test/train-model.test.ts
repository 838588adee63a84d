import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makePriors } from '@extd/core/anchors/priors';
import { createDetector } from 'extd';
import { buildGraph } from '@extd/core/model/graph';
import { parseVariant } from '@extd/core/model/variant';
import { saveCheckpoint } from '../src/train/checkpoint.js';
import { initialWeights } from '../src/train/init.js';
import { multiboxLoss } from '../src/train/loss.js';
import { matchBatch } from '../src/train/match.js';
import { createTorchModel } from '../src/train/torch-model.js';
import { gradCheck, loadTorch, torchUnavailableReason, type Torch } from '../src/train/torch.js';
import { Rng } from '@extd/core/utils/rng';
import { requiredInCi } from '../../../test-support/shared.js';

const skip = requiredInCi(torchUnavailableReason() ?? false);
const torch = (skip ? undefined : loadTorch()) as Torch;
const graph = buildGraph(parseVariant('extd-fpn-32-prelu'));

function randomInput(rng: Rng, n: number, lo = -100, hi = 130): Float32Array {
  return Float32Array.from({ length: n }, () => rng.uniform(lo, hi));
}

test('whole-model gradient (EXTD-32, 2x3x32x32, training-mode BN) matches finite differences', { skip }, () => {
  const rng = Rng.fromSeed(11);
  const model = createTorchModel(torch, graph, initialWeights(graph, 5), { dtype: 'float64' });
  try {
    const S = 32,
      B = 2;
    const x = torch.toDtype(torch.fromFloat32Array(randomInput(rng, B * 3 * S * S), [B, 3, S, S]), 'float64');
    const P = makePriors(S, S).length / 4;
    // A fixed random projection of both heads' outputs: every output element gets a gradient.
    const rl = torch.fromFloat64Array(
      Float64Array.from({ length: B * P * 4 }, () => rng.uniform(-1, 1)),
      [B, P, 4],
    );
    const rc = torch.fromFloat64Array(
      Float64Array.from({ length: B * P * 2 }, () => rng.uniform(-1, 1)),
      [B, P, 2],
    );
    const f = () => {
      const out = model.forward(x, { training: true });
      return torch.add(torch.sum(torch.mul(out.loc, rl)), torch.sum(torch.mul(out.conf, rc)));
    };
    // A small eps: a perturbation that moves some activation across a ReLU/PReLU kink breaks finite
    // differences, and the stem's PReLU slope moves every activation of the network.
    // One tensor of each kind, from the stem, the reused block F (used six times), the FPN and a head.
    const names = ['base.0.0.weight', 'base.0.2.weight', 'base.3.conv.3.bias', 'base.4.conv.1.weight', 'upfeat.2.1.weight', 'loc.1.weight', 'conf.0.bias'];
    const inputs = names.map((n) => model.tensors.get(n)!);
    const r = gradCheck(torch, f, inputs, { eps: 1e-7, tolerance: 1e-4, maxElementsPerInput: 3 });
    assert.ok(r.ok, `max error ${r.maxError} at ${names[r.worst.input]}[${r.worst.index}]: analytic ${r.worst.analytic}, numeric ${r.worst.numeric}`);
    assert.ok(r.checked >= 15);
    // The check must be able to fail: one checked element of one gradient off by 0.01 is caught.
    const analytic = torch.tidy(() => {
      for (const t of inputs) t.clearGrad();
      f().backward();
      return inputs.map((t) => t.grad!.toFloat64Array());
    });
    analytic[5]![0]! += 0.01;
    const bad = gradCheck(torch, f, [inputs[5]!], { eps: 1e-7, tolerance: 1e-4, maxElementsPerInput: 1 }, [analytic[5]!]);
    assert.equal(bad.ok, false);
  } finally {
    model.dispose();
  }
});

test('a few SGD steps on one fixed batch lower the multibox loss', { skip }, () => {
  const rng = Rng.fromSeed(3);
  const S = 64,
    B = 2;
  const model = createTorchModel(torch, graph, initialWeights(graph, 1));
  const sgd = torch.sgd(model.parameters(), { lr: 0.005 });
  try {
    const boxes = [Float32Array.of(0.1, 0.1, 0.4, 0.45, 0.55, 0.5, 0.8, 0.8), Float32Array.of(0.3, 0.2, 0.6, 0.55)];
    // Dim noise with the "faces" painted bright, so there is something to learn.
    const input = randomInput(rng, B * 3 * S * S, -40, 0);
    boxes.forEach((bx, b) => {
      for (let k = 0; k < bx.length; k += 4) {
        for (let c = 0; c < 3; c++)
          for (let y = Math.round(bx[k + 1]! * S); y < Math.round(bx[k + 3]! * S); y++) {
            for (let x = Math.round(bx[k]! * S); x < Math.round(bx[k + 2]! * S); x++) input[((b * 3 + c) * S + y) * S + x] = 100;
          }
      }
    });
    const t = matchBatch(boxes, makePriors(S, S));
    const losses: number[] = [];
    for (let i = 0; i < 4; i++) {
      losses.push(
        torch.tidy(() => {
          const out = model.forward(torch.fromFloat32Array(input, [B, 3, S, S]), { training: true });
          const l = multiboxLoss(torch, out.loc, out.conf, t.confT, t.locT);
          const total = torch.add(l.lossL, l.lossC);
          total.backward();
          sgd.step();
          sgd.zeroGrad();
          return total.item();
        }),
      );
    }
    assert.ok(losses.every(Number.isFinite), losses.join(', '));
    // Four steps only: at this size the last levels are 1x1 maps, so BN normalises over 2 values and
    // longer runs are chaotic. Over 8 steps at lr 0.005, libtorch's batch_norm + prelu ended at 0.30x the
    // first loss and the fused kernels (same values to 1e-7) at 0.76x; at lr 0.003 the former reached 38,000.
    // The first four steps agree to about 10% whatever the rounding (0.53x-0.61x at lr 0.002-0.005).
    assert.ok(losses.at(-1)! < 0.7 * losses[0]!, `loss went ${losses[0]} -> ${losses.at(-1)} (${losses.map((l) => l.toFixed(2)).join(', ')})`);
  } finally {
    model.dispose();
  }
});

test('a training checkpoint loads in createDetector and matches the libtorch model in eval mode (1e-3)', { skip }, async () => {
  const rng = Rng.fromSeed(9);
  const dir = mkdtempSync(join(tmpdir(), 'extd-ckpt-parity-'));
  // Non-trivial BN statistics and weights: run a few training-mode passes first.
  const model = createTorchModel(torch, graph, initialWeights(graph, 2));
  try {
    const W = 72,
      H = 56;
    for (let i = 0; i < 3; i++) {
      torch.tidy(() => model.forward(torch.fromFloat32Array(randomInput(rng, 2 * 3 * H * W, -80, 80), [2, 3, H, W]), { training: true }));
    }
    const learnable = graph.params.filter((p) => p.learnable);
    const saved = saveCheckpoint(
      dir,
      graph,
      model.stateDict(),
      learnable.map(() => null),
      { iteration: 3, loaderPosition: 3, config: {} },
    );

    const pixels = new Uint8Array(H * W * 3).map(() => rng.int(256));
    const detector = await createDetector({ model: saved.modelPath, threads: 1 });
    const ort = await detector.forward({ data: pixels, width: W, height: H });
    await detector.dispose();

    // Same preprocessing by hand: CHW minus the training mean.
    const mean = [123, 117, 104];
    const chw = new Float32Array(3 * H * W);
    for (let i = 0; i < H * W; i++) for (let c = 0; c < 3; c++) chw[c * H * W + i] = pixels[3 * i + c]! - mean[c]!;
    const ref = torch.tidy(() => {
      const out = model.forward(torch.fromFloat32Array(chw, [1, 3, H, W]), { training: false });
      return { loc: out.loc.toFloat32Array(), conf: out.conf.toFloat32Array() };
    });
    assert.equal(ort.loc.length, ref.loc.length);
    assert.equal(ort.conf.length, ref.conf.length);
    let maxLoc = 0,
      maxConf = 0,
      scale = 0;
    for (let i = 0; i < ref.loc.length; i++) (maxLoc = Math.max(maxLoc, Math.abs(ort.loc[i]! - ref.loc[i]!))), (scale = Math.max(scale, Math.abs(ref.loc[i]!)));
    for (let i = 0; i < ref.conf.length; i++) maxConf = Math.max(maxConf, Math.abs(ort.conf[i]! - ref.conf[i]!));
    assert.ok(scale > 0.1, 'outputs are not trivially zero');
    assert.ok(maxLoc < 1e-3 && maxConf < 1e-3, `max |diff| loc ${maxLoc}, conf ${maxConf}`);
  } finally {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('clipGradients rescales the global gradient norm to the limit, and only above it', { skip }, async () => {
  const { clipGradients } = await import('../src/train/trainer.js');
  torch.tidy(() => {
    const a = torch.fromFloat32Array(Float32Array.of(1, 2), [2], true);
    const b = torch.fromFloat32Array(Float32Array.of(3), [1], true);
    torch.add(torch.sum(a), torch.sum(b)).backward(); // grads 1,1 and 1
    torch.add(torch.sum(a), torch.mul(torch.sum(b), 2)).backward(); // accumulated: a 2,2; b 3
    assert.deepEqual([...a.grad!.toFloat32Array()], [2, 2]);
    assert.deepEqual([...b.grad!.toFloat32Array()], [3]);
    const norm = Math.sqrt(4 + 4 + 9);
    assert.ok(Math.abs(clipGradients(torch, [a, b], 10) - norm) < 1e-5);
    assert.deepEqual([...a.grad!.toFloat32Array()], [2, 2]);
    assert.ok(Math.abs(clipGradients(torch, [a, b], 1) - norm) < 1e-5);
    const after = Math.hypot(...a.grad!.toFloat32Array(), ...b.grad!.toFloat32Array());
    assert.ok(Math.abs(after - 1) < 1e-5, `norm after clipping ${after}`);
  });
});

test('batch renormalisation: unclipped it computes the inference-mode output, fully clipped plain training-mode BN', { skip }, () => {
  const rng = Rng.fromSeed(21);
  const weights = initialWeights(graph, 6);
  // Running statistics far from any batch's, so the three modes differ clearly.
  for (const [name, t] of weights) {
    if (name.endsWith('running_mean')) t.data.forEach((_, i) => (t.data[i] = rng.uniform(-0.5, 0.5)));
    if (name.endsWith('running_var')) t.data.forEach((_, i) => (t.data[i] = rng.uniform(0.5, 3)));
  }
  // Momentum 0: the running statistics stay put, although F's six applications run in one pass.
  const model = createTorchModel(torch, graph, weights, { dtype: 'float64', bnMomentum: 0 });
  try {
    const S = 64,
      B = 2;
    const x = torch.toDtype(torch.fromFloat32Array(randomInput(rng, B * 3 * S * S), [B, 3, S, S]), 'float64');
    const run = (o: Parameters<typeof model.forward>[1]) =>
      torch.tidy(() => {
        const out = model.forward(x, o);
        return [...out.loc.toFloat64Array(), ...out.conf.toFloat64Array()];
      });
    const maxDiff = (a: number[], b: number[]) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
    const inference = run({ training: false });
    const plain = run({ training: true });
    const unclipped = run({ training: true, renorm: { rMax: 1e9, dMax: 1e9 } });
    const clipped = run({ training: true, renorm: { rMax: 1, dMax: 0 } });
    assert.ok(maxDiff(plain, inference) > 0.1, `plain training mode should differ from inference (${maxDiff(plain, inference)})`);
    assert.ok(maxDiff(unclipped, inference) < 1e-8, `unclipped renorm vs inference: ${maxDiff(unclipped, inference)}`);
    assert.ok(maxDiff(clipped, plain) < 1e-8, `fully clipped renorm vs plain BN: ${maxDiff(clipped, plain)}`);
  } finally {
    model.dispose();
  }
});
