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
  /** Per prior (B*P, image b in rows b*P..), 1 where it is in the classification term: what distillLoss() also uses. */
  selected: Uint8Array;
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
    return { lossL: zero(), lossC: zero(), numPositives, numSelected, selected };
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
  return { ...terms, numPositives, numSelected, selected };
}

/** Options of distillLoss; see DISTILL_DEFAULTS. */
export interface DistillOptions {
  /**
   * A prior counts as one of the teacher's detections when the teacher's face
   * probability exceeds this (0.5: it prefers face to background). Those
   * priors get the box term and join the class term.
   */
  faceThreshold: number;
}

export const DISTILL_DEFAULTS: Readonly<DistillOptions> = Object.freeze({ faceThreshold: 0.5 });

/** The two distillation terms (one-element tensors with autograd history through the student) and counts for logging. */
export interface DistillLossTensors {
  /** KL(teacher || student) of the per-prior 2-class softmax, summed over the class term's priors, divided by the positives. */
  lossKdC: TorchTensor;
  /** Smooth-L1 between the student's and the teacher's box regression on the teacher's detections, divided by the positives. */
  lossKdL: TorchTensor;
  /** Priors in the class term. */
  numSoft: number;
  /** Priors whose teacher face probability exceeds faceThreshold (the box term's priors). */
  numTeacherFaces: number;
}

/**
 * Knowledge distillation from a teacher run on the same batch: its per-prior
 * class probabilities and boxes as soft targets beside the labels' multibox
 * loss. Student and teacher share the S3FD priors (same input size), so row r
 * of one is row r of the other whatever their widths.
 *
 * - Class term: KL(p_teacher || softmax(student logits)), temperature 1,
 *   over the labels' selected priors (positives + mined hard negatives, the
 *   `selected` mask multiboxLoss returns) plus the teacher's detections.
 *   Why not all priors: at 640x640 there are ~34k priors per image and a few
 *   dozen positives, and the easy background priors, where both networks are
 *   near-certain, would make up nearly all of a sum divided by the positives,
 *   so the term's scale would follow the prior count rather than the faces.
 *   The mined set is where the labels' loss already looks (hard, informative
 *   priors, with the teacher softening their one-hot targets); the teacher's
 *   own detections add the priors it finds face-like that the labels do not
 *   (unlabelled or unmatched faces, its "dark knowledge").
 * - Box term: smooth-L1 (beta 1, like the labels' term) between the
 *   student's and the teacher's raw regression outputs (the same encoded
 *   offsets) on the priors where the teacher's face probability exceeds
 *   faceThreshold: a teacher's box is only a target where it sees a face.
 *
 * Both are sums divided by the number of labelled positives in the batch,
 * the convention of multiboxLoss, so the weights of the terms compare
 * directly with its lambda = 1. KL rather than soft cross-entropy: the same
 * gradient (softmax(student) - p_teacher), but 0 when the student matches the
 * teacher, so the logged value says how far apart they are. With no positive
 * in the batch both terms are 0 without gradient (as multiboxLoss).
 *
 * @param loc, conf          the student's outputs, B x P x 4 and B x P x 2.
 * @param teacherLoc, teacherConf the teacher's outputs of the same shapes (no gradient needed; detached here).
 * @param selected           B*P mask of the labels' class term (MultiboxLossTensors.selected).
 * @param numPositives       the labels' positives (MultiboxLossTensors.numPositives), the divisor.
 */
export function distillLoss(
  torch: Torch,
  loc: TorchTensor,
  conf: TorchTensor,
  teacherLoc: TorchTensor,
  teacherConf: TorchTensor,
  selected: Uint8Array,
  numPositives: number,
  options: Partial<DistillOptions> = {},
): DistillLossTensors {
  const o = { ...DISTILL_DEFAULTS, ...options };
  const shapes = [loc, conf, teacherLoc, teacherConf].map((t) => `[${t.shape}]`);
  if (
    loc.shape.length !== 3 ||
    teacherLoc.shape.length !== 3 ||
    conf.shape.length !== 3 ||
    teacherConf.shape.length !== 3 ||
    loc.shape.join() !== teacherLoc.shape.join() ||
    conf.shape.join() !== teacherConf.shape.join() ||
    loc.shape[2] !== 4 ||
    conf.shape[2] !== 2 ||
    loc.shape[0] !== conf.shape[0] ||
    loc.shape[1] !== conf.shape[1]
  ) {
    throw new Error(
      `distillLoss: student loc ${shapes[0]} conf ${shapes[1]}, teacher loc ${shapes[2]} conf ${shapes[3]}: expected [B, P, 4] and [B, P, 2] for both`,
    );
  }
  const [B, P] = loc.shape as [number, number, number];
  if (selected.length !== B * P) throw new Error(`distillLoss: the selection covers ${selected.length} priors, the predictions ${B * P}`);

  // The teacher's probabilities on the host (float64 softmax), to pick its detections and build the soft targets.
  const logits = torch.tidy(() => torch.toDtype(torch.detach(teacherConf), 'float32').toFloat32Array());
  const pFace = new Float64Array(B * P);
  for (let r = 0; r < B * P; r++) {
    const d = logits[2 * r + 1]! - logits[2 * r]!;
    pFace[r] = 1 / (1 + Math.exp(-d));
  }
  let numSoft = 0;
  let numTeacherFaces = 0;
  for (let r = 0; r < B * P; r++) {
    const face = pFace[r]! > o.faceThreshold;
    if (face) numTeacherFaces++;
    if (face || selected[r]) numSoft++;
  }
  if (numPositives === 0 || numSoft === 0) {
    const zero = () => torch.zeros([], loc.dtype);
    return { lossKdC: zero(), lossKdL: zero(), numSoft, numTeacherFaces };
  }
  const softRows = new BigInt64Array(numSoft);
  const softTargets = new Float32Array(numSoft * 2);
  const faceRows = new BigInt64Array(numTeacherFaces);
  let entropy = 0; // sum of the teacher's entropies over the class term's priors: KL = cross-entropy - entropy
  for (let r = 0, s = 0, f = 0; r < B * P; r++) {
    const face = pFace[r]! > o.faceThreshold;
    if (face) faceRows[f++] = BigInt(r);
    if (face || selected[r]) {
      // Entropy of the float32 targets the cross-entropy sees, so KL is 0 (to rounding) when the student matches.
      const p1 = Math.fround(pFace[r]!);
      const p0 = Math.fround(1 - p1);
      softRows[s] = BigInt(r);
      softTargets[2 * s] = p0;
      softTargets[2 * s + 1] = p1;
      if (p0 > 0) entropy -= p0 * Math.log(p0);
      if (p1 > 0) entropy -= p1 * Math.log(p1);
      s++;
    }
  }
  return torch.tidy(() => {
    const dtype = loc.dtype;
    const confRows = torch.indexSelect(torch.reshape(conf, [B * P, 2]), 0, torch.fromInt64Array(softRows, [numSoft]));
    const target = torch.toDtype(torch.fromFloat32Array(softTargets, [numSoft, 2]), dtype);
    // crossEntropy with a [N, 2] float target is the soft-target cross-entropy -sum_k p_k log softmax(x)_k.
    const ce = torch.crossEntropy(confRows, target, 'sum');
    const lossKdC = torch.div(torch.sub(ce, entropy), numPositives);
    let lossKdL: TorchTensor;
    if (numTeacherFaces === 0) lossKdL = torch.zeros([], dtype);
    else {
      const idx = torch.fromInt64Array(faceRows, [numTeacherFaces]);
      const s = torch.indexSelect(torch.reshape(loc, [B * P, 4]), 0, idx);
      const t = torch.toDtype(torch.indexSelect(torch.reshape(torch.detach(teacherLoc), [B * P, 4]), 0, idx), dtype);
      lossKdL = torch.div(torch.smoothL1Loss(s, t, 'sum', 1), numPositives);
    }
    return { lossKdC, lossKdL, numSoft, numTeacherFaces };
  });
}
