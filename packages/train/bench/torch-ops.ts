// Micro-benchmark of the libtorch addon: a few layer shapes EXTD uses, then
// one training step (forward in training mode, a loss over both heads,
// backward, SGD step) of EXTD-32 / EXTD-64, on 1 and 2 threads.
//
//   node --conditions=extd-source --import tsx bench/torch-ops.ts [--size 320] [--batch 4] [--iters 3]
//
// Prints medians. Not a test: numbers depend on the machine and its load.
import { buildGraph } from '@extd/core/model/graph';
import { loadTorch, type TorchTensor } from '../src/train/torch.js';
import { createTorchModel } from '../src/train/torch-model.js';
import { initialWeights } from '../src/train/init.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const size = arg('size', 320);
const batch = arg('batch', 4);
const iters = arg('iters', 3);

const torch = loadTorch();
torch.manualSeed(0);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function time(fn: () => void, n: number): number {
  fn(); // warm-up: oneDNN builds its kernels on first use
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

console.log(`libtorch ${torch.version().torch}, batch ${batch}, ${size}x${size}, median of ${iters}`);
for (const threads of [1, 2]) {
  torch.setNumThreads(threads);
  const x = torch.randn([batch, 128, size / 4, size / 4]);
  x.requiresGrad = true;
  const dw = torch.randn([128, 1, 3, 3]);
  dw.requiresGrad = true;
  const pw = torch.randn([64, 128, 1, 1]);
  pw.requiresGrad = true;
  const layer = (f: () => TorchTensor) => time(() => torch.tidy(() => torch.sum(f()).backward()), iters);
  console.log(
    `threads ${threads}: layers fwd+bwd at ${size / 4}x${size / 4}x128: ` +
      `depthwise 3x3 ${layer(() => torch.conv2d(x, dw, null, 1, 1, 128)).toFixed(1)} ms, ` +
      `pointwise 128->64 ${layer(() => torch.conv2d(x, pw, null)).toFixed(1)} ms, ` +
      `prelu ${layer(() => torch.prelu(x, torch.full([1], 0.25))).toFixed(1)} ms`,
  );
  for (const width of [32, 64] as const) {
    const graph = buildGraph({ arch: 'fpn', width, activation: 'prelu' });
    const model = createTorchModel(torch, graph, initialWeights(graph, 0));
    const opt = torch.sgd(model.parameters());
    const input = torch.randn([batch, 3, size, size]);
    const step = () =>
      torch.tidy(() => {
        opt.zeroGrad();
        const { loc, conf } = model.forward(input, { training: true });
        const p = loc.shape[1]!;
        const labels = torch.fromInt64Array(
          Array.from({ length: batch * p }, (_, i) => (i % 50 === 0 ? 1 : 0)),
          [batch * p],
        );
        const loss = torch.add(torch.smoothL1Loss(loc, torch.zeros(loc.shape), 'sum'), torch.crossEntropy(torch.reshape(conf, [-1, 2]), labels, 'sum'));
        loss.backward();
        opt.step();
      });
    const ms = time(step, iters);
    console.log(`threads ${threads}: EXTD-${width} training step ${ms.toFixed(0)} ms = ${((batch * 1000) / ms).toFixed(2)} images/s`);
    model.dispose();
  }
}
