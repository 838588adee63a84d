// The libtorch addon: gradients of every differentiable operation the model
// and loss use, checked against finite differences in float64; SGD against
// hand-computed steps; threads, RNG, memory and error behaviour.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { gradCheck, loadTorch, torchUnavailableReason, type Torch, type TorchTensor } from '../src/train/torch.js';
import { ExtdError } from '@extd/core/utils/errors';
import { requiredInCi } from '../../../test-support/shared.js';

/** This package's folder (the spawned scripts run there). */
const PACKAGE = fileURLToPath(new URL('..', import.meta.url));
const skip = requiredInCi(torchUnavailableReason() ?? false);
const torch = (skip ? undefined : loadTorch()) as Torch;

/** A float64 leaf with N(0, 1) entries, requiring grad. */
function param(shape: number[]): TorchTensor {
  const t = torch.randn(shape, 'float64');
  t.requiresGrad = true;
  return t;
}

/**
 * Checks op's gradients w.r.t. inputs through the scalar sum(op(...) * R)
 * with a fixed random R, so every output element has a distinct weight.
 */
function checkOp(name: string, op: (...xs: TorchTensor[]) => TorchTensor, inputs: TorchTensor[]): void {
  const out = torch.noGrad(() => op(...inputs));
  const weights = torch.randn(out.shape, 'float64');
  const res = gradCheck(torch, (...xs) => torch.sum(torch.mul(op(...xs), weights)), inputs);
  assert.ok(res.checked > 0, `${name}: nothing checked`);
  if (process.env.EXTD_GRADCHECK_VERBOSE) console.log(`${name}: ${res.checked} elements, max error ${res.maxError.toExponential(2)}`);
  assert.ok(
    res.ok,
    `${name}: max error ${res.maxError} at input ${res.worst.input}[${res.worst.index}] (analytic ${res.worst.analytic}, numeric ${res.worst.numeric})`,
  );
}

test('loads with 2 threads by default, and the thread count is settable', { skip }, () => {
  assert.equal(torch.getNumThreads(), 2);
  torch.setNumThreads(1);
  assert.equal(torch.getNumThreads(), 1);
  torch.setNumThreads(2);
  assert.equal(torch.getNumThreads(), 2);
  assert.throws(() => torch.setNumThreads(0), /setNumThreads: threads is 0, must be >= 1/);
  assert.match(torch.version().torch, /^1\.13/);
  // The addon's own kernels split their work over those threads too: without
  // OpenMP in the addon's build, at::parallel_for runs on one thread.
  assert.equal(torch.intraOpWorkers(), 2, "the addon's at::parallel_for runs on 2 threads");
  torch.setNumThreads(1);
  assert.equal(torch.intraOpWorkers(), 1);
  // The tensors below are tiny; a second OpenMP thread only adds barrier
  // waits, which cost seconds when other processes load the machine.
  torch.setNumThreads(1);
});

test('data round-trips by copy; dtypes, shapes and item()', { skip }, () => {
  const src = new Float32Array([1, 2, 3, 4, 5, 6]);
  const t = torch.fromFloat32Array(src, [2, 3]);
  src[0] = 100; // a copy: later writes to the JS array do not reach libtorch
  assert.deepEqual(t.shape, [2, 3]);
  assert.equal(t.dtype, 'float32');
  assert.deepEqual([...t.toFloat32Array()], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...torch.permute(t, [1, 0]).toFloat32Array()], [1, 4, 2, 5, 3, 6]);
  const idx = torch.fromInt64Array([2, 0], [2]);
  assert.equal(idx.dtype, 'int64');
  assert.deepEqual([...torch.add(idx, 1).toBigInt64Array()], [3n, 1n], 'integer + integer number stays int64');
  assert.equal(torch.add(idx, 1).dtype, 'int64');
  assert.deepEqual([...torch.indexSelect(t, 1, idx).toFloat32Array()], [3, 1, 6, 4]);
  assert.equal(torch.sum(t).item(), 21);
  assert.throws(() => t.item(), /item: tensor has shape \[2, 3\], item\(\) needs exactly one element/);
  assert.throws(() => torch.fromFloat32Array(new Float32Array(5), [2, 3]), /data has 5 elements, shape \[2, 3\] needs 6/);
  const back = torch.toTensor(torch.fromTensor({ dtype: 'float64', shape: [3], data: new Float64Array([0.1, 0.2, 0.3]) }));
  assert.equal(back.dtype, 'float64');
  assert.deepEqual([...back.data], [0.1, 0.2, 0.3]);
});

test('dataView is a zero-copy view of the tensor storage', { skip }, () => {
  const t = torch.zeros([2, 2]);
  const view = t.dataView();
  view[3] = 7;
  assert.deepEqual([...t.toFloat32Array()], [0, 0, 0, 7]);
  torch.noGrad(() => t.copyFrom(torch.ones([2, 2])));
  assert.deepEqual([...view], [1, 1, 1, 1]);
  assert.throws(() => torch.permute(torch.zeros([2, 3]), [1, 0]).dataView(), /dataView: needs a contiguous float32 tensor/);
});

test('manualSeed makes randn reproducible', { skip }, () => {
  torch.manualSeed(123);
  const a = torch.randn([5]).toFloat32Array();
  const b = torch.randn([5]).toFloat32Array();
  torch.manualSeed(123);
  assert.deepEqual(torch.randn([5]).toFloat32Array(), a);
  assert.deepEqual(torch.randn([5]).toFloat32Array(), b);
  assert.notDeepEqual(a, b);
});

test('gradient check: conv2d grouped, strided, padded, with and without bias', { skip }, () => {
  torch.manualSeed(1);
  checkOp('conv2d groups=2 stride=2 pad=1', (x, w, b) => torch.conv2d(x, w, b, 2, 1, 2), [param([2, 4, 7, 6]), param([6, 2, 3, 3]), param([6])]);
  checkOp('conv2d depthwise stride=[1,2] pad=[1,0]', (x, w) => torch.conv2d(x, w, null, [1, 2], [1, 0], 4), [param([1, 4, 5, 6]), param([4, 1, 3, 3])]);
  checkOp('conv2d 1x1', (x, w) => torch.conv2d(x, w, null), [param([1, 3, 4, 4]), param([5, 3, 1, 1])]);
});

/** max |a - b| over max |b| (at least 1e-30): the error of a relative to the reference b. */
function relMaxError(a: TorchTensor, b: TorchTensor): number {
  const x = a.toFloat64Array();
  const y = b.toFloat64Array();
  assert.equal(x.length, y.length);
  let err = 0;
  let scale = 1e-30;
  for (let i = 0; i < x.length; i++) {
    err = Math.max(err, Math.abs(x[i]! - y[i]!));
    scale = Math.max(scale, Math.abs(y[i]!));
  }
  return err / scale;
}

test("conv2d: depthwise 3x3 (the addon's own kernel) equals libtorch's convolution, values and gradients", { skip }, () => {
  // float32 depthwise 3x3, padding 1, stride 1 or 2 runs the addon's kernel;
  // the same convolution in float64 runs libtorch's. Both see the same numbers
  // (the float32 ones, widened), so they differ by float32 rounding only.
  torch.manualSeed(14);
  // [batch, channels, height, width, stride, bias]
  const cases: [number, number, number, number, 1 | 2, boolean][] = [
    [1, 1, 1, 1, 1, true],
    [1, 3, 1, 1, 2, false],
    [3, 4, 2, 3, 1, true],
    [3, 4, 2, 3, 2, false],
    [1, 2, 1, 7, 2, true],
    [1, 2, 7, 1, 1, false],
    [1, 5, 7, 9, 2, true],
    [3, 2, 8, 6, 2, true],
    [1, 6, 13, 11, 1, false],
    [3, 3, 17, 16, 1, true],
    [2, 8, 33, 35, 2, true],
    [3, 16, 40, 40, 1, true],
  ];
  for (const [n, c, h, w, stride, withBias] of cases) {
    const name = `${n}x${c}x${h}x${w} stride ${stride}${withBias ? ' bias' : ''}`;
    torch.tidy(() => {
      const leaf = (shape: number[]) => {
        const f32 = torch.randn(shape);
        const f64 = torch.toDtype(f32, 'float64');
        f32.requiresGrad = true;
        f64.requiresGrad = true;
        return [f32, f64] as const;
      };
      const [x, x64] = leaf([n, c, h, w]);
      const [k, k64] = leaf([c, 1, 3, 3]);
      const [b, b64] = withBias ? leaf([c]) : [null, null];
      const y = torch.conv2d(x, k, b, stride, 1, c);
      const y64 = torch.conv2d(x64, k64, b64, stride, 1, c);
      assert.deepEqual(y.shape, y64.shape, name);
      assert.equal(y.dtype, 'float32');
      const r64 = torch.randn(y64.shape, 'float64');
      torch.sum(torch.mul(y, torch.toDtype(r64, 'float32'))).backward();
      torch.sum(torch.mul(y64, r64)).backward();
      const checks: [string, TorchTensor, TorchTensor][] = [
        ['output', y, y64],
        ['input gradient', x.grad!, x64.grad!],
        ['weight gradient', k.grad!, k64.grad!],
      ];
      if (b) checks.push(['bias gradient', b.grad!, b64!.grad!]);
      for (const [what, got, want] of checks) {
        const err = relMaxError(got, want);
        assert.ok(err <= 1e-5, `${name}: ${what} differs from libtorch's by ${err.toExponential(2)} (relative to its largest value)`);
      }
    });
  }
});

test("conv2d: only depthwise 3x3 float32 convolutions with padding 1 take the addon's kernel", { skip }, async () => {
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'extd-profile-'));
  // Whether conv(input, weight) ran the addon's kernel: its backward node is in the profile.
  const ownKernel = (conv: (x: TorchTensor, w: TorchTensor) => TorchTensor, x: TorchTensor, w: TorchTensor): boolean =>
    torch.tidy(() => {
      const trace = join(dir, 'trace.json');
      x.requiresGrad = true;
      torch.profileStart(trace);
      torch.sum(conv(x, w)).backward();
      torch.profileStop();
      const names = (JSON.parse(readFileSync(trace, 'utf8')) as { name: string }[]).map((e) => e.name);
      const own = names.some((s) => s.includes('Depthwise3x3'));
      assert.equal(own, !names.includes('aten::convolution'), `both or neither path ran: ${[...new Set(names)].join(', ')}`);
      return own;
    });
  try {
    const x = () => torch.randn([2, 4, 6, 5]);
    const dw = torch.randn([4, 1, 3, 3]);
    assert.ok(
      ownKernel((a, w) => torch.conv2d(a, w, null, 1, 1, 4), x(), dw),
      'stride 1',
    );
    assert.ok(
      ownKernel((a, w) => torch.conv2d(a, w, torch.zeros([4]), 2, 1, 4), x(), dw),
      'stride 2 with bias',
    );
    assert.ok(!ownKernel((a, w) => torch.conv2d(a, w, null, 1, 1, 4), torch.randn([2, 4, 6, 5], 'float64'), torch.randn([4, 1, 3, 3], 'float64')), 'float64');
    assert.ok(!ownKernel((a, w) => torch.conv2d(a, w, null, 1, 0, 4), x(), dw), 'padding 0');
    assert.ok(!ownKernel((a, w) => torch.conv2d(a, w, null, [1, 2], 1, 4), x(), dw), 'stride [1, 2]');
    assert.ok(!ownKernel((a, w) => torch.conv2d(a, w, null, 1, 1, 4, 2), x(), dw), 'dilation 2');
    assert.ok(!ownKernel((a, w) => torch.conv2d(a, w, null, 3, 1, 4), x(), dw), 'stride 3');
    assert.ok(!ownKernel((a, w) => torch.conv2d(a, w, null, 1, 1, 4), x(), torch.randn([8, 1, 3, 3])), 'channel multiplier 2');
    assert.ok(!ownKernel((a, w) => torch.conv2d(a, w, null, 1, 1, 2), x(), torch.randn([4, 2, 3, 3])), 'groups 2');
    assert.ok(!ownKernel((a, w) => torch.conv2d(a, w, null, 1, 0), x(), torch.randn([4, 4, 1, 1])), '1x1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('gradient check: batch norm in training mode, and its running statistics', { skip }, () => {
  torch.manualSeed(2);
  const mean = torch.zeros([4], 'float64');
  const vari = torch.ones([4], 'float64');
  checkOp('batchNorm train', (x, w, b) => torch.batchNorm(x, w, b, mean, vari, true, 0.1, 1e-5), [param([3, 4, 3, 2]), param([4]), param([4])]);

  // One training-mode call moves the running stats 10% towards the batch's
  // mean and unbiased variance (PyTorch's convention), computed here by hand.
  const x = torch.randn([2, 3, 2, 2], 'float64');
  const rm = torch.zeros([3], 'float64');
  const rv = torch.ones([3], 'float64');
  torch.batchNorm(x, null, null, rm, rv, true, 0.1, 1e-5);
  const xs = x.toFloat64Array();
  for (let c = 0; c < 3; c++) {
    const vals: number[] = [];
    for (let n = 0; n < 2; n++) for (let i = 0; i < 4; i++) vals.push(xs[n * 12 + c * 4 + i]!);
    const m = vals.reduce((s, v) => s + v, 0) / vals.length;
    const unbiased = vals.reduce((s, v) => s + (v - m) ** 2, 0) / (vals.length - 1);
    assert.ok(Math.abs(rm.toFloat64Array()[c]! - 0.1 * m) < 1e-12);
    assert.ok(Math.abs(rv.toFloat64Array()[c]! - (0.9 + 0.1 * unbiased)) < 1e-12);
  }
  // Eval mode uses the running stats and leaves them alone.
  const before = rm.toFloat64Array();
  const y = torch.batchNorm(x, null, null, rm, rv, false).toFloat64Array();
  assert.deepEqual(rm.toFloat64Array(), before);
  const rmv = rm.toFloat64Array();
  const rvv = rv.toFloat64Array();
  assert.ok(Math.abs(y[5]! - (xs[5]! - rmv[1]!) / Math.sqrt(rvv[1]! + 1e-5)) < 1e-12);
});

test('gradient check: activations', { skip }, () => {
  torch.manualSeed(3);
  checkOp('prelu per-channel', (x, w) => torch.prelu(x, w), [param([2, 3, 4, 4]), param([3])]);
  checkOp('prelu single slope', (x, w) => torch.prelu(x, w), [param([2, 3, 4, 4]), param([1])]);
  checkOp('leakyRelu 0.25', (x) => torch.leakyRelu(x, 0.25), [param([2, 3, 5])]);
  checkOp('relu', (x) => torch.relu(x), [param([2, 3, 5])]);
});

test('batchNormPrelu: gradients check, and it equals batchNorm then prelu (values, running statistics, gradients)', { skip }, () => {
  torch.manualSeed(31);
  const mean = torch.zeros([4], 'float64');
  const vari = torch.ones([4], 'float64');
  const positive = () => {
    const s = torch.full([1], 0.3, 'float64');
    s.requiresGrad = true;
    return s;
  };
  for (const training of [true, false]) {
    checkOp(`batchNormPrelu ${training ? 'train' : 'eval'}`, (x, w, b, s) => torch.batchNormPrelu(x, w, b, mean, vari, s, training, 0.1, 1e-5), [
      param([3, 4, 3, 2]),
      param([4]),
      param([4]),
      positive(),
    ]);
  }
  // A slope <= 0 cannot be undone from the output: the unfused path, same semantics.
  const negative = torch.full([1], -0.2, 'float64');
  negative.requiresGrad = true;
  checkOp('batchNormPrelu negative slope', (x, w, b, s) => torch.batchNormPrelu(x, w, b, mean, vari, s, true, 0.1, 1e-5), [
    param([3, 4, 3, 2]),
    param([4]),
    param([4]),
    negative,
  ]);

  // float32, the training dtype: fused and unfused agree.
  const run = (fused: boolean) =>
    torch.tidy(() => {
      torch.manualSeed(32);
      const x = torch.randn([2, 8, 6, 6]);
      x.requiresGrad = true;
      const w = torch.add(torch.rand([8]), 0.5);
      w.requiresGrad = true;
      const b = torch.randn([8]);
      b.requiresGrad = true;
      const s = torch.full([1], 0.25);
      s.requiresGrad = true;
      const rm = torch.zeros([8]);
      const rv = torch.ones([8]);
      const r = torch.randn([2, 8, 6, 6]);
      const y = fused ? torch.batchNormPrelu(x, w, b, rm, rv, s, true, 0.1, 1e-5) : torch.prelu(torch.batchNorm(x, w, b, rm, rv, true, 0.1, 1e-5), s);
      torch.sum(torch.mul(y, r)).backward();
      return [y, rm, rv, x.grad!, w.grad!, b.grad!, s.grad!].map((t) => t.toFloat32Array());
    });
  const [a, b] = [run(true), run(false)];
  const names = ['output', 'running mean', 'running var', 'grad input', 'grad weight', 'grad bias', 'grad slope'];
  names.forEach((name, k) => {
    let d = 0;
    for (let i = 0; i < a[k]!.length; i++) d = Math.max(d, Math.abs(a[k]![i]! - b[k]![i]!) / Math.max(1, Math.abs(b[k]![i]!)));
    assert.ok(d <= (name === 'grad slope' ? 1e-5 : 1e-6), `${name}: fused and unfused differ by ${d}`);
  });
});

test('upsampleBilinear2d matches the half-pixel formula and its gradient checks', { skip }, () => {
  // align_corners=false: source coordinate (d + 0.5) * in / out - 0.5, clamped below at 0.
  const src = [0, 1, 2, 3, 4, 5]; // 2 x 3
  const [h, w, oh, ow] = [2, 3, 5, 4];
  const got = torch.upsampleBilinear2d(torch.fromFloat32Array(new Float32Array(src), [1, 1, h, w]), [oh, ow]).toFloat32Array();
  const coord = (d: number, inn: number, out: number) => {
    const s = Math.max(0, (d + 0.5) * (inn / out) - 0.5);
    const i0 = Math.min(Math.floor(s), inn - 1);
    const i1 = Math.min(i0 + 1, inn - 1);
    return [i0, i1, s - i0] as const;
  };
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      const [y0, y1, fy] = coord(y, h, oh);
      const [x0, x1, fx] = coord(x, w, ow);
      const v = (1 - fy) * ((1 - fx) * src[y0 * w + x0]! + fx * src[y0 * w + x1]!) + fy * ((1 - fx) * src[y1 * w + x0]! + fx * src[y1 * w + x1]!);
      assert.ok(Math.abs(got[y * ow + x]! - v) < 1e-6, `(${y}, ${x}): ${got[y * ow + x]} vs ${v}`);
    }
  }
  torch.manualSeed(4);
  checkOp('upsampleBilinear2d', (x) => torch.upsampleBilinear2d(x, [9, 7]), [param([1, 2, 5, 4])]);
});

test('gradient check: arithmetic, cat, permute/reshape, narrow, max, clamp', { skip }, () => {
  torch.manualSeed(5);
  checkOp('add/mul/sub broadcast', (a, b) => torch.sub(torch.mul(torch.add(a, b), a), torch.div(b, 3)), [param([2, 3, 4]), param([3, 1])]);
  checkOp('cat dim 1', (a, b) => torch.cat([a, b], 1), [param([2, 3, 2]), param([2, 1, 2])]);
  checkOp('permute+reshape', (x) => torch.reshape(torch.permute(x, [0, 2, 3, 1]), [-1, 2]), [param([2, 2, 3, 3])]);
  checkOp('narrow twice', (x) => torch.narrow(torch.narrow(x, 1, 1, 3), 2, 0, 2), [param([2, 5, 5])]);
  checkOp('max over dim', (x) => torch.max(x, 1)[0], [param([4, 3, 5])]);
  checkOp('clamp both sides', (x) => torch.clamp(x, -0.5, 0.5), [param([10])]);
  checkOp('clamp below only', (x) => torch.clamp(x, 0.1), [param([10])]);
});

test('gradient check: cross-entropy, smooth-L1 (sum)', { skip }, () => {
  torch.manualSeed(6);
  const target = torch.fromInt64Array([2, 0, 1, 1], [4]);
  checkOp('crossEntropy sum', (x) => torch.crossEntropy(x, target, 'sum'), [param([4, 3])]);
  // Spread the differences so none sits near the |d| = 1 kink of smooth-L1.
  const a = torch.fromFloat64Array(new Float64Array([-2.1, -0.6, -0.2, 0.3, 0.8, 1.7, 2.5, -1.4]), [8], true);
  checkOp('smoothL1 sum', (x, y) => torch.smoothL1Loss(x, y, 'sum'), [a, torch.fromFloat64Array(new Float64Array(8), [8], true)]);

  // And the loss values themselves against their definitions.
  const logits = torch.fromFloat64Array(new Float64Array([1, 2, 0.5, -1, 0, 3]), [2, 3]);
  const ce = torch.crossEntropy(logits, torch.fromInt64Array([1, 2], [2]), 'sum').item();
  const lse = (r: number[]) => Math.log(r.reduce((s, v) => s + Math.exp(v), 0));
  assert.ok(Math.abs(ce - (lse([1, 2, 0.5]) - 2 + lse([-1, 0, 3]) - 3)) < 1e-12);
  const sl1 = torch.smoothL1Loss(torch.fromFloat64Array(new Float64Array([0.5, -3]), [2]), torch.zeros([2], 'float64'), 'sum').item();
  assert.ok(Math.abs(sl1 - (0.5 * 0.25 + 2.5)) < 1e-12);
});

test('gradient check: a small conv-BN-PReLU-upsample-add block (composite)', { skip }, () => {
  torch.manualSeed(7);
  const rm = torch.zeros([4], 'float64');
  const rv = torch.ones([4], 'float64');
  const block = (x: TorchTensor, w: TorchTensor, g: TorchTensor, b: TorchTensor, a: TorchTensor) => {
    const y = torch.prelu(torch.batchNorm(torch.conv2d(x, w, null, 2, 1), g, b, rm, rv, true), a);
    return torch.add(torch.upsampleBilinear2d(y, [6, 6]), torch.cat([x, torch.narrow(x, 1, 1, 1)], 1));
  };
  checkOp('block', block, [param([2, 3, 6, 6]), param([4, 3, 3, 3]), param([4]), param([4]), param([1])]);
});

test('the gradient check catches a wrong analytic gradient', { skip }, () => {
  torch.manualSeed(8);
  const x = param([3, 5]);
  const f = (t: TorchTensor) => torch.sum(torch.leakyRelu(t, 0.25));
  assert.ok(gradCheck(torch, f, [x]).ok, 'the true gradient passes');
  // Claim leaky ReLU had ReLU's gradient (0 instead of 0.25 for negatives).
  const wrong = Float64Array.from(x.toFloat64Array(), (v) => (v > 0 ? 1 : 0));
  const res = gradCheck(torch, f, [x], {}, [wrong]);
  assert.equal(res.ok, false);
  assert.ok(Math.abs(res.maxError - 0.25) < 1e-6, `max error ${res.maxError}`);
  // A 0.1% scaling error is caught too.
  const truth = Float64Array.from(x.toFloat64Array(), (v) => (v > 0 ? 1 : 0.25));
  assert.equal(gradCheck(torch, f, [x], {}, [truth]).ok, true);
  assert.equal(gradCheck(torch, f, [x], {}, [truth.map((v) => v * 1.001)]).ok, false);
});

test('SGD with momentum and weight decay matches hand-computed steps', { skip }, () => {
  const p = torch.fromFloat64Array(new Float64Array([1, -2]), [2], true);
  const c = torch.fromFloat64Array(new Float64Array([0.5, 3]), [2]);
  const opt = torch.sgd([p], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
  const step = () => {
    opt.zeroGrad();
    torch.sum(torch.mul(p, c)).backward(); // gradient = c
    opt.step();
  };
  // Step 1: d = c + 0.01 p = [0.51, 2.98]; buf = d; p = p - 0.1 d.
  step();
  assert.deepEqual(
    [...p.toFloat64Array()].map((v) => +v.toFixed(12)),
    [0.949, -2.298],
  );
  // Step 2: d = c + 0.01 p = [0.50949, 2.97702]; buf = 0.9 buf + d = [0.96849, 5.65902].
  const saved = opt.getMomentumBuffers();
  assert.deepEqual(
    [...saved[0]!.toFloat64Array()].map((v) => +v.toFixed(12)),
    [0.51, 2.98],
  );
  const pAfter1 = torch.clone(torch.detach(p));
  step();
  assert.deepEqual(
    [...p.toFloat64Array()].map((v) => +v.toFixed(12)),
    [0.852151, -2.863902],
  );

  // Resuming from the saved buffers repeats step 2 exactly.
  const q = torch.clone(pAfter1);
  q.requiresGrad = true;
  const opt2 = torch.sgd([q], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
  opt2.setMomentumBuffers(saved);
  torch.sum(torch.mul(q, c)).backward();
  opt2.step();
  assert.deepEqual(q.toFloat64Array(), p.toFloat64Array());

  // The learning rate is settable; zeroGrad(false) keeps zero-filled gradients.
  opt.lr = 0;
  assert.equal(opt.lr, 0);
  opt.zeroGrad(false);
  assert.deepEqual([...p.grad!.toFloat64Array()], [0, 0]);
  assert.throws(() => opt2.setMomentumBuffers([torch.zeros([3], 'float64')]), /buffer 0 has shape \[3\], parameter 0 has shape \[2\]/);
  assert.throws(() => torch.sgd([p], { lr: -1 }), /lr is required and must be >= 0/);
});

test('noGrad disables history; requiresGrad is refused on non-leaves', { skip }, () => {
  const x = torch.fromFloat32Array(new Float32Array([1, 2]), [2], true);
  const y = torch.noGrad(() => torch.mul(x, 2));
  assert.equal(y.requiresGrad, false);
  assert.equal(torch.isGradEnabled(), true);
  const z = torch.mul(x, 2);
  assert.equal(z.requiresGrad, true);
  assert.equal(z.isLeaf, false);
  assert.throws(
    () =>
      torch.noGrad(() => {
        throw new Error('boom');
      }),
    /boom/,
  );
  assert.equal(torch.isGradEnabled(), true, 'restored after a throw');
});

test('libtorch errors become one-line JS exceptions', { skip }, () => {
  const check = (fn: () => unknown, re: RegExp) =>
    assert.throws(fn, (err: Error) => {
      assert.match(err.message, re);
      assert.ok(!err.message.includes('\n'), `multi-line message: ${err.message}`);
      return true;
    });
  check(
    () => torch.conv2d(torch.zeros([1, 4, 8, 8]), torch.zeros([8, 3, 3, 3]), null),
    /^conv2d: .*expected input\[1, 4, 8, 8\] to have 3 channels, but got 4/,
  );
  check(() => torch.add(torch.zeros([2, 3]), torch.zeros([4])), /^add: The size of tensor a \(3\) must match the size of tensor b \(4\)/);
  check(() => torch.cat([torch.zeros([2, 3]), torch.zeros([2, 4])], 0), /^cat: /);
  check(() => torch.sum(torch.zeros([2], 'float32')).backward(), /^backward: .*does not require grad/);
  check(() => torch.mul(torch.zeros([2]), torch.zeros([2])).backward(), /^backward: /);
  check(() => torch.zeros([2], 'complex' as never), /^zeros: dtype 'complex' is not supported/);
  check(() => torch.conv2d('x' as never, torch.zeros([1]), null), /^conv2d: argument 1 \(input\) must be a Tensor/);
  check(() => torch.add(torch.zeros([1]), 'a' as never), /^add: argument 2 \(b\) must be a Tensor or a number/);
  check(() => {
    const x = torch.ones([1]);
    x.requiresGrad = true;
    torch.mul(x, 2).requiresGrad = false;
  }, /^requiresGrad: .*leaf/);
});

test('dispose and tidy free tensors', { skip }, () => {
  const t = torch.ones([3]);
  t.dispose();
  assert.equal(t.disposed, true);
  t.dispose(); // idempotent
  assert.throws(() => torch.add(t, 1), /add: tensor was disposed/);
  assert.throws(() => t.shape, /shape: tensor was disposed/);

  let inner: TorchTensor[] = [];
  const kept = torch.tidy(() => {
    const a = torch.ones([2]);
    const b = torch.add(a, 1);
    const nested = torch.tidy(() => torch.mul(b, 2)); // survives its own scope, then belongs to ours
    inner = [a, b, nested];
    return { sum: torch.add(b, nested) };
  });
  assert.deepEqual(
    inner.map((x) => x.disposed),
    [true, true, true],
  );
  assert.equal(kept.sum.disposed, false);
  assert.deepEqual([...kept.sum.toFloat32Array()], [6, 6]);

  // 80 MB per iteration: 12 of them without freeing would add ~1 GB.
  const rss0 = process.memoryUsage().rss;
  for (let i = 0; i < 12; i++) {
    torch.tidy(() => torch.sum(torch.add(torch.ones([10_000_000]), 1)).item());
  }
  const grown = (process.memoryUsage().rss - rss0) / 2 ** 20;
  assert.ok(grown < 300, `rss grew by ${grown.toFixed(0)} MB`);
});

test('tidy frees the tensors of handles the garbage collector took inside it', { skip }, () => {
  // Node runs finalizers only at a later turn of the event loop; a scope that
  // only held weak references skipped collected handles, and a synchronous
  // training loop kept every step's intermediate maps (grew by them per step).
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const base = torch.allocatorStats().live;
  torch.tidy(() => {
    for (let i = 0; i < 8; i++) torch.add(torch.ones([1_000_000]), 1); // no reference kept
    gc();
    gc();
    assert.ok(torch.allocatorStats().live - base >= 8 * 4_000_000, 'the tensors are still live inside the scope');
  });
  assert.equal(torch.allocatorStats().live, base, 'every tensor of the scope freed at its end');
});

test('the CPU allocator counts live bytes and reuses freed blocks; the cache is bounded', { skip }, () => {
  const s0 = torch.allocatorStats();
  torch.resetAllocatorPeak();
  const step = () => torch.tidy(() => torch.sum(torch.mul(torch.add(torch.ones([2_000_000]), 1), 3)).item());
  step();
  const s1 = torch.allocatorStats();
  assert.equal(s1.live, s0.live);
  assert.ok(s1.peak - s0.live >= 3 * 8_000_000, `peak ${s1.peak - s0.live} bytes above the start, expected the three 8 MB tensors`);
  step();
  const s2 = torch.allocatorStats();
  assert.ok(s2.reused - s1.reused >= 3, `the second step reused ${s2.reused - s1.reused} cached blocks`);
  assert.ok(s2.cached > 0 && s2.cached <= s2.cacheLimit, `cached ${s2.cached}, limit ${s2.cacheLimit}`);
});

test('loadTorch explains how to install libtorch when the addon is missing', () => {
  const script = `import { loadTorch } from './src/train/torch.ts';
import { ExtdError } from '@extd/core/utils/errors';
try { loadTorch(); console.log('loaded'); } catch (e) { console.log(e instanceof ExtdError, e.message); }`;
  const res = spawnSync(process.execPath, ['--conditions=extd-source', '--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: PACKAGE,
    env: { ...process.env, EXTD_TORCH_ADDON: '/nonexistent/extd_torch.node' },
    encoding: 'utf8',
  });
  assert.equal(
    res.stdout.trim(),
    'true training needs libtorch: apt-get install libtorch-dev, then npm rebuild @extd/train (addon not built: no file at /nonexistent/extd_torch.node)',
  );
  assert.ok(ExtdError);
});

test('the install step skips the addon, exit 0 and one line, without libtorch', () => {
  const res = spawnSync(process.execPath, ['scripts/build-addon.mjs'], {
    cwd: PACKAGE,
    env: { ...process.env, TORCH_INCLUDE: '/nonexistent' },
    encoding: 'utf8',
  });
  assert.equal(res.status, 0);
  const lines = res.stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /training addon skipped \(libtorch headers not found at .*\).*apt-get install libtorch-dev/);
});

test('profiler: records the operators run between start and stop; an unwritable path is refused', { skip }, async () => {
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'extd-profile-'));
  try {
    assert.throws(() => torch.profileStart(join(dir, 'missing', 'trace.json')), /profileStart: cannot write .*missing\/trace\.json/);
    const trace = join(dir, 'trace.json');
    torch.profileStart(trace);
    torch.tidy(() => torch.conv2d(torch.ones([1, 2, 5, 5]), torch.ones([3, 2, 3, 3]), null));
    torch.profileStop();
    const events = JSON.parse(readFileSync(trace, 'utf8')) as { name: string }[];
    assert.ok(
      events.some((e) => e.name === 'aten::conv2d'),
      `events: ${events
        .map((e) => e.name)
        .slice(0, 10)
        .join(', ')}`,
    );
    assert.throws(() => torch.profileStop(), /no profile is running/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
