/**
 * The multibox loss on libtorch: smooth-L1 on the positives' box offsets plus
 * softmax cross-entropy over the positives and the hard negatives, each term
 * divided by the number of positives in the batch (SSD / S3FD; the paper's
 * lambda = 4 with N_cls = positives + negatives is the same thing).
 *
 * Which priors take part is decided on the CPU by D's mining code
 * (src/train/mining.ts) from a detached copy of the classifier output: the
 * selection has no gradient, and doing it in TypeScript keeps one
 * implementation of the ranking rules (the one checked against golden/train).
 * libtorch then gathers the selected rows and computes the differentiable
 * terms, so backward flows only through the selected predictions.
 */
import { backgroundLoss, hardNegativeMask, MINING_DEFAULTS } from './mining.js';
import type { Torch, TorchTensor } from './torch.js';

/** Options of multiboxLoss; see MULTIBOX_DEFAULTS. */
export interface MultiboxOptions {
  /** Hard negatives kept per positive, per image (3, as in SSD and S3FD). */
  negPosRatio: number;
}

export const MULTIBOX_DEFAULTS: Readonly<MultiboxOptions> = Object.freeze({ negPosRatio: MINING_DEFAULTS.negPosRatio });

/** The two loss terms (one-element tensors with autograd history) and counts for logging. */
export interface MultiboxLossTensors {
  lossL: TorchTensor;
  lossC: TorchTensor;
  numPositives: number;
  /** Priors in the classification term (positives + mined negatives). */
  numSelected: number;
}

/**
 * @param loc   B x P x 4 raw box regression (the model's `loc` output).
 * @param conf  B x P x 2 raw logits, class 0 background (the model's `conf` output).
 * @param confT B*P targets (0 background, 1 face), image b in rows b*P.., as matchBatch() gives.
 * @param locT  B*P x 4 encoded offsets; only the positives' rows are read.
 *
 * With no positive in the whole batch both terms are exactly 0 (nothing is
 * selected) and carry no gradient to the network: there is nothing to learn
 * from such a batch under this loss, as in SSD.
 */
export function multiboxLoss(
  torch: Torch,
  loc: TorchTensor,
  conf: TorchTensor,
  confT: Uint8Array,
  locT: Float32Array,
  options: Partial<MultiboxOptions> = {},
): MultiboxLossTensors {
  const o = { ...MULTIBOX_DEFAULTS, ...options };
  if (loc.shape.length !== 3 || loc.shape[2] !== 4) throw new Error(`multiboxLoss: loc has shape [${loc.shape}], expected [B, P, 4]`);
  const [B, P] = loc.shape as [number, number, number];
  if (conf.shape.length !== 3 || conf.shape[0] !== B || conf.shape[1] !== P || conf.shape[2] !== 2) {
    throw new Error(`multiboxLoss: conf has shape [${conf.shape}], expected [${B}, ${P}, 2]`);
  }
  if (confT.length !== B * P || locT.length !== B * P * 4) {
    throw new Error(`multiboxLoss: targets cover ${confT.length} priors (loc ${locT.length / 4}), the predictions ${B * P}`);
  }

  // Mining sees the current logits as float32 exactly as the reference does.
  const confHost = torch.tidy(() => torch.toDtype(torch.detach(conf), 'float32').toFloat32Array());
  const selected = hardNegativeMask(backgroundLoss(confHost, confT, 2), confT, P, o.negPosRatio);

  let numPositives = 0;
  let numSelected = 0;
  for (let r = 0; r < confT.length; r++) {
    if (confT[r] !== 0) numPositives++;
    if (selected[r]) numSelected++;
  }
  const posRows = new BigInt64Array(numPositives);
  const posTargets = new Float32Array(numPositives * 4);
  const selRows = new BigInt64Array(numSelected);
  const selLabels = new BigInt64Array(numSelected);
  for (let r = 0, p = 0, s = 0; r < confT.length; r++) {
    if (confT[r] !== 0) {
      posRows[p] = BigInt(r);
      posTargets.set(locT.subarray(4 * r, 4 * r + 4), 4 * p);
      p++;
    }
    if (selected[r]) {
      selRows[s] = BigInt(r);
      selLabels[s] = BigInt(confT[r]!);
      s++;
    }
  }

  if (numPositives === 0) {
    const zero = () => torch.zeros([], loc.dtype);
    return { lossL: zero(), lossC: zero(), numPositives, numSelected };
  }
  const terms = torch.tidy(() => {
    const dtype = loc.dtype;
    const locRows = torch.indexSelect(torch.reshape(loc, [B * P, 4]), 0, torch.fromInt64Array(posRows, [numPositives]));
    const target = torch.toDtype(torch.fromFloat32Array(posTargets, [numPositives, 4]), dtype);
    const lossL = torch.div(torch.smoothL1Loss(locRows, target, 'sum', 1), numPositives);
    const confRows = torch.indexSelect(torch.reshape(conf, [B * P, 2]), 0, torch.fromInt64Array(selRows, [numSelected]));
    const lossC = torch.div(torch.crossEntropy(confRows, torch.fromInt64Array(selLabels, [numSelected]), 'sum'), numPositives);
    return { lossL, lossC };
  });
  return { ...terms, numPositives, numSelected };
}
