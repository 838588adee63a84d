// End-to-end fidelity of the training engine: twelve SGD steps of EXTD-32
// from the released weights, against an independent PyTorch 1.13
// implementation (../shared/reference/golden/trajectory, tolerances from its
// README). Exercises the libtorch lowering with BN in training mode (running
// statistics updated six times per step in the reused block), the multibox
// loss with the given targets and a mining ratio that selects every prior,
// backward and SGD with momentum and weight decay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildGraph } from '@extd/core/model/graph';
import { multiboxLoss } from '../src/train/loss.js';
import { createTorchModel } from '../src/train/torch-model.js';
import { loadTorch, torchUnavailableReason, type Torch } from '../src/train/torch.js';
import { readSafetensors } from '@extd/core/weights/safetensors';
import type { Tensor } from '@extd/core/utils/tensor';
import { noShared, sharedPath } from '../../../test-support/shared.js';

const noTorch = torchUnavailableReason() ?? false;
const torch = (noTorch ? undefined : loadTorch()) as Torch;
const DIR = ['reference', 'golden', 'trajectory'];
const MEAN = [123, 117, 104];

interface Step {
  step: number;
  batch: number;
  loss_l: number;
  loss_c: number;
  positives: number;
  selected: number;
  grad_norm: number;
}
interface Trajectory {
  size: number;
  batch: number;
  level_sizes: number[];
  sgd: { lr: number; momentum: number; weight_decay: number; dampening: number; nesterov: boolean };
  neg_pos_ratio: number;
  bn_momentum: number;
  steps: Step[];
}

const read = (file: string) => readSafetensors(new Uint8Array(readFileSync(sharedPath(...DIR, file))), file).tensors;

/** Images [first, first + count) of the uint8 NHWC pixels as mean-subtracted NCHW float32. */
function inputOf(pixels: Tensor, first: number, count: number): Float32Array {
  const [, H, W] = pixels.shape as [number, number, number, number];
  const src = pixels.data as Uint8Array;
  const out = new Float32Array(count * 3 * H * W);
  for (let n = 0; n < count; n++) {
    for (let c = 0; c < 3; c++) {
      const o = (n * 3 + c) * H * W;
      const s = (first + n) * H * W * 3;
      for (let i = 0; i < H * W; i++) out[o + i] = src[s + 3 * i + c]! - MEAN[c]!;
    }
  }
  return out;
}

test('12 SGD steps of EXTD-32 follow the PyTorch golden trajectory (losses, step-1 weights and BN statistics)', {
  skip: noTorch || noShared(...DIR, 'trajectory.json'),
}, () => {
  const traj = JSON.parse(readFileSync(sharedPath(...DIR, 'trajectory.json'), 'utf8')) as Trajectory;
  const batches = read('batches.safetensors');
  const pixels = batches.get('pixels')!;
  const confAll = batches.get('conf_t')!.data as Uint8Array;
  const locAll = batches.get('loc_t')!.data as Float32Array;
  const P = batches.get('conf_t')!.shape[1]!;
  const S = traj.size;
  const B = traj.batch;

  const graph = buildGraph({ arch: 'fpn', width: 32, activation: 'prelu' });
  const model = createTorchModel(torch, graph, read('initial.safetensors'), { bnMomentum: traj.bn_momentum });
  const params = model.parameters();
  const sgd = torch.sgd(params, {
    lr: traj.sgd.lr,
    momentum: traj.sgd.momentum,
    weightDecay: traj.sgd.weight_decay,
    dampening: traj.sgd.dampening,
    nesterov: traj.sgd.nesterov,
  });
  const prevThreads = torch.getNumThreads();
  torch.setNumThreads(2);
  const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
  const lines: string[] = [];
  try {
    for (const g of traj.steps) {
      const first = g.batch * B;
      const confT = confAll.subarray(first * P, (first + B) * P);
      const locT = locAll.subarray(first * P * 4, (first + B) * P * 4);
      const r = torch.tidy(() => {
        const x = torch.fromFloat32Array(inputOf(pixels, first, B), [B, 3, S, S]);
        const out = model.forward(x, { training: true });
        assert.equal(out.loc.shape[1], P, 'priors of the lowered model');
        const l = multiboxLoss(torch, out.loc, out.conf, confT, locT, { negPosRatio: traj.neg_pos_ratio });
        const v = { lossL: l.lossL.item(), lossC: l.lossC.item(), positives: l.numPositives, selected: l.numSelected };
        torch.add(l.lossL, l.lossC).backward();
        let sq = 0;
        for (const p of params) if (p.grad) sq += torch.sum(torch.mul(p.grad, p.grad)).item();
        sgd.step();
        sgd.zeroGrad();
        return { ...v, gradNorm: Math.sqrt(sq) };
      });
      lines.push(
        `step ${g.step}: loss_l ${r.lossL} (golden ${g.loss_l}), loss_c ${r.lossC} (golden ${g.loss_c}), grad norm ${r.gradNorm} (golden ${g.grad_norm})`,
      );
      assert.equal(r.positives, g.positives, `step ${g.step}: positives`);
      assert.equal(r.selected, g.selected, `step ${g.step}: selected priors`);
      const tol = g.step <= 4 ? 1e-3 : 0.02;
      assert.ok(rel(r.lossL, g.loss_l) <= tol, `step ${g.step}: loss_l ${r.lossL} vs golden ${g.loss_l} (tolerance ${tol} relative)`);
      assert.ok(rel(r.lossC, g.loss_c) <= tol, `step ${g.step}: loss_c ${r.lossC} vs golden ${g.loss_c} (tolerance ${tol} relative)`);
      // The gradient norm is not among the README's criteria; at step 1 (same weights, same batch) it checks
      // the whole backward pass at once (our fused BN kernels sum in another order than libtorch's: about
      // 1e-5 relative). Later it follows the rounding of earlier steps (1e-3 by step 4).
      if (g.step === 1) assert.ok(rel(r.gradNorm, g.grad_norm) <= 1e-4, `step 1: gradient norm ${r.gradNorm} vs golden ${g.grad_norm}`);

      if (g.step === 1) {
        // After step 1: every weight within 1e-5 max abs, running statistics within 1e-4 relative.
        const gold = read('step1.safetensors');
        const ours = model.stateDict();
        let worstW = { d: 0, name: '' };
        let worstS = { d: 0, name: '' };
        for (const p of graph.params) {
          const a = ours.get(p.name)!.data;
          const b = gold.get(p.name)!.data as Float32Array;
          assert.equal(a.length, b.length, p.name);
          const stat = p.kind === 'running_mean' || p.kind === 'running_var';
          for (let i = 0; i < a.length; i++) {
            const d = stat ? Math.abs(a[i]! - b[i]!) / (Math.abs(b[i]!) + 1e-3) : Math.abs(a[i]! - b[i]!);
            if (stat && d > worstS.d) worstS = { d, name: `${p.name}[${i}]` };
            if (!stat && d > worstW.d) worstW = { d, name: `${p.name}[${i}]` };
          }
        }
        lines.push(
          `after step 1: weights max |diff| ${worstW.d.toExponential(2)} (${worstW.name}), running statistics max rel ${worstS.d.toExponential(2)} (${worstS.name})`,
        );
        assert.ok(worstW.d <= 1e-5, `after step 1: ${worstW.name} differs by ${worstW.d} (> 1e-5)`);
        assert.ok(worstS.d <= 1e-4, `after step 1: ${worstS.name} differs by ${worstS.d} relative (> 1e-4)`);
      }
    }
  } finally {
    torch.setNumThreads(prevThreads);
    model.dispose();
    console.log(lines.join('\n'));
  }
});
