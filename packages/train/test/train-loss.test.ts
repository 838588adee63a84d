import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { multiboxLoss } from '../src/train/loss.js';
import { multiboxLossRef } from '../src/train/mining.js';
import { loadTorch, torchUnavailableReason, type Torch } from '../src/train/torch.js';
import { readSafetensors } from '@extd/core/weights/safetensors';
import { Rng } from '@extd/core/utils/rng';
import { noShared, requiredInCi, sharedPath } from '../../../test-support/shared.js';

const skip = requiredInCi(torchUnavailableReason() ?? false);
const torch = (skip ? undefined : loadTorch()) as Torch;
const GOLDEN = ['reference', 'golden', 'train'];

function loadCase(k: number) {
  const st = readSafetensors(new Uint8Array(readFileSync(sharedPath(...GOLDEN, `match${k}.safetensors`))), `match${k}`);
  const get = (name: string) => st.tensors.get(name)!.data;
  const confT64 = get('conf_t') as BigInt64Array;
  return {
    confT: Uint8Array.from(confT64, (v) => Number(v)),
    locT: get('loc_t') as Float32Array,
    locData: get('loc_data') as Float32Array,
    confData: get('conf_data') as Float32Array,
    lossL: (get('loss_l') as Float32Array)[0]!,
    lossC: (get('loss_c') as Float32Array)[0]!,
  };
}

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

for (let k = 0; k < 6; k++) {
  test(`libtorch multibox loss reproduces golden match${k} loss_l and loss_c (1e-4 relative)`, {
    skip: skip || noShared(...GOLDEN, `match${k}.safetensors`),
  }, () => {
    const g = loadCase(k);
    const P = g.confT.length;
    torch.tidy(() => {
      const loc = torch.fromFloat32Array(g.locData, [1, P, 4], true);
      const conf = torch.fromFloat32Array(g.confData, [1, P, 2], true);
      const r = multiboxLoss(torch, loc, conf, g.confT, g.locT);
      assert.ok(relErr(r.lossL.item(), g.lossL) < 1e-4, `loss_l ${r.lossL.item()} vs golden ${g.lossL}`);
      assert.ok(relErr(r.lossC.item(), g.lossC) < 1e-4, `loss_c ${r.lossC.item()} vs golden ${g.lossC}`);
      // Gradient flows only into the selected rows: positives for loc, positives + 3x negatives for conf.
      torch.add(r.lossL, r.lossC).backward();
      const gl = loc.grad!.toFloat32Array();
      const gc = conf.grad!.toFloat32Array();
      let locRows = 0,
        confRows = 0;
      for (let p = 0; p < P; p++) {
        if (gl[4 * p] !== 0 || gl[4 * p + 1] !== 0 || gl[4 * p + 2] !== 0 || gl[4 * p + 3] !== 0) locRows++;
        if (gc[2 * p] !== 0 || gc[2 * p + 1] !== 0) confRows++;
      }
      assert.equal(locRows, r.numPositives);
      assert.equal(confRows, r.numSelected);
      assert.equal(r.numSelected, Math.min(4 * r.numPositives, P - 1 + r.numPositives));
    });
  });
}

test('batched loss equals the float64 reference and divides by the batch positives', { skip }, () => {
  const rng = Rng.fromSeed(7);
  const B = 3,
    P = 200;
  const locData = Float32Array.from({ length: B * P * 4 }, () => rng.uniform(-2, 2));
  const confData = Float32Array.from({ length: B * P * 2 }, () => rng.uniform(-3, 3));
  const locT = Float32Array.from({ length: B * P * 4 }, () => rng.uniform(-2, 2));
  const confT = new Uint8Array(B * P);
  for (let i = 0; i < 25; i++) confT[rng.int(P)] = 1; // image 0
  for (let i = 0; i < 5; i++) confT[2 * P + rng.int(P)] = 1; // image 2; image 1 has none
  const ref = multiboxLossRef(locData, confData, locT, confT, { numPriors: P });
  torch.tidy(() => {
    const r = multiboxLoss(torch, torch.fromFloat32Array(locData, [B, P, 4]), torch.fromFloat32Array(confData, [B, P, 2]), confT, locT);
    assert.equal(r.numPositives, ref.numPositives);
    assert.equal(r.numSelected, ref.numSelected);
    assert.ok(relErr(r.lossL.item(), ref.lossL) < 1e-5, `${r.lossL.item()} vs ${ref.lossL}`);
    assert.ok(relErr(r.lossC.item(), ref.lossC) < 1e-5, `${r.lossC.item()} vs ${ref.lossC}`);
  });
});

test('a batch without positives gives zero losses', { skip }, () => {
  torch.tidy(() => {
    const r = multiboxLoss(torch, torch.zeros([2, 10, 4]), torch.zeros([2, 10, 2]), new Uint8Array(20), new Float32Array(80));
    assert.equal(r.lossL.item(), 0);
    assert.equal(r.lossC.item(), 0);
    assert.equal(r.numPositives, 0);
  });
});

test('mismatched shapes are one-line errors', { skip }, () => {
  torch.tidy(() => {
    assert.throws(() => multiboxLoss(torch, torch.zeros([1, 10, 4]), torch.zeros([1, 9, 2]), new Uint8Array(10), new Float32Array(40)), /conf has shape/);
    assert.throws(() => multiboxLoss(torch, torch.zeros([1, 10, 4]), torch.zeros([1, 10, 2]), new Uint8Array(9), new Float32Array(40)), /targets cover/);
  });
});
