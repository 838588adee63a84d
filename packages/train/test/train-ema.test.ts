import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { syntheticDataset } from './synthetic-dataset.js';
import { torchUnavailableReason } from '../src/train/torch.js';
import { train, validateConfig, TRAIN_DEFAULTS, type TrainConfig } from '../src/train/trainer.js';
import { readWeightsFile } from 'extd/weights/files-node';
import { modelFromTensors } from '@extd/core/weights/checkpoint';
import type { Tensor } from '@extd/core/utils/tensor';
import { requiredInCi } from '../../../test-support/shared.js';

const skip = requiredInCi(torchUnavailableReason() ?? false);
const root = mkdtempSync(join(tmpdir(), 'extd-train-ema-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

const data = skip ? undefined : await syntheticDataset(root);
const tiny: Partial<TrainConfig> = { size: 64, batch: 2, lr: 0.01, iterations: 4, checkpointEvery: 1, seed: 3, ema: 0.9 };
const quiet = { threads: 1, workers: 0, progress: null };
const floats = async (path: string) => (await readWeightsFile(path)).tensors;

test('--ema: every checkpoint writes the moving average d_t * ema + (1 - d_t) * weights, d_t = min(D, (1 + t) / (10 + t))', { skip }, async () => {
  const out = join(root, 'ema');
  // Iteration 0: the starting weights, as a checkpoint (stopAfter 0 writes it).
  await train(tiny, { out, samples: data!.samples, ...quiet, stopAfter: 0 });
  const r = await train({}, { out, samples: data!.samples, ...quiet, resume: true });
  assert.equal(r.iteration, 4);
  assert.equal(r.emaCheckpoint, join(out, 'ckpt-4.ema.safetensors'));
  const w = await Promise.all([0, 1, 2, 3, 4].map((t) => floats(join(out, `ckpt-${t}.safetensors`))));
  const saved = await floats(join(out, 'ckpt-4.ema.safetensors'));
  let compared = 0;
  for (const [name, t0] of w[0]!) {
    if (t0.dtype !== 'float32') continue;
    const e = Float32Array.from(t0.data as Float32Array);
    for (let t = 1; t <= 4; t++) {
      const d = Math.min(0.9, (1 + t) / (10 + t));
      const wt = w[t]!.get(name)!.data as Float32Array;
      for (let i = 0; i < e.length; i++) e[i] = d * e[i]! + (1 - d) * wt[i]!;
    }
    const s = saved.get(name)!.data as Float32Array;
    for (let i = 0; i < e.length; i++) assert.ok(Math.abs(s[i]! - e[i]!) <= 1e-6 + 1e-5 * Math.abs(e[i]!), `${name}[${i}]: ${s[i]} vs ${e[i]}`);
    compared++;
  }
  assert.ok(compared > 50, `compared ${compared} tensors`);
  // The average differs from the weights (a test of something), is a loadable model file, and is marked as an average.
  const last = w[4]!.get('conf.0.weight')!.data as Float32Array;
  assert.ok((saved.get('conf.0.weight')!.data as Float32Array).some((v, i) => Math.abs(v - last[i]!) > 1e-7));
  modelFromTensors(saved as Map<string, Tensor>, {}, 'ema file');
  assert.equal((await readWeightsFile(join(out, 'ckpt-4.ema.safetensors'))).metadata.weights, 'ema');
  // The state file carries it for --resume.
  assert.ok((await loadCheckpoint(out))!.ema.size > 50);
});

test('--ema survives --resume: 4 iterations straight == 2 + resume + 2', { skip }, async () => {
  const a = join(root, 'straight');
  const b = join(root, 'resumed');
  await train({ ...tiny, checkpointEvery: 2 }, { out: a, samples: data!.samples, ...quiet });
  await train({ ...tiny, checkpointEvery: 2 }, { out: b, samples: data!.samples, ...quiet, stopAfter: 2 });
  await train({}, { out: b, samples: data!.samples, ...quiet, resume: true });
  const ea = await floats(join(a, 'ckpt-4.ema.safetensors'));
  const eb = await floats(join(b, 'ckpt-4.ema.safetensors'));
  let maxDiff = 0;
  for (const [name, t] of ea) {
    if (t.dtype !== 'float32') continue;
    const u = eb.get(name)!.data as Float32Array;
    (t.data as Float32Array).forEach((v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - u[i]!))));
  }
  assert.ok(maxDiff < 1e-5, `EMA differs by ${maxDiff}`);
});

test('--ema off (the default) writes no EMA files; pruning removes an EMA file with its checkpoint', { skip }, async () => {
  const off = join(root, 'off');
  await train({ ...tiny, ema: 0, iterations: 2 }, { out: off, samples: data!.samples, ...quiet });
  assert.ok(existsSync(join(off, 'ckpt-2.safetensors')));
  assert.ok(!existsSync(join(off, 'ckpt-2.ema.safetensors')));
  assert.equal((await loadCheckpoint(off))!.ema.size, 0);
  const pruned = join(root, 'pruned');
  await train({ ...tiny, iterations: 3, keepLast: 1 }, { out: pruned, samples: data!.samples, ...quiet });
  assert.ok(existsSync(join(pruned, 'ckpt-3.ema.safetensors')));
  assert.ok(!existsSync(join(pruned, 'ckpt-2.ema.safetensors')));
  assert.ok(!existsSync(join(pruned, 'ckpt-1.ema.safetensors')));
  const config = JSON.parse(readFileSync(join(pruned, 'config.json'), 'utf8')) as TrainConfig;
  assert.equal(config.ema, 0.9);
});

test('--ema must be in [0, 1)', () => {
  for (const bad of [1, -0.1, Number.NaN])
    assert.throws(() => validateConfig({ ...TRAIN_DEFAULTS, ema: bad }), /^ExtdError: --ema .*: expected a number in \[0, 1\)/);
  validateConfig({ ...TRAIN_DEFAULTS, ema: 0.999 });
});
