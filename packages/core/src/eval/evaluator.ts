/**
 * The official WIDER FACE evaluation (eval_tools/wider_eval.m and its Python
 * port), reimplemented step for step so the numbers match to rounding:
 *
 * 1. Per image, predictions sorted by score, descending (stable).
 * 2. Scores min-max normalised over the whole evaluated set, where the running
 *    min starts at 1 and the running max at 0 (as the official code does).
 *    When every score of the set is the same (range 0, where the official code
 *    divides by zero and scores AP 0), all normalised scores are 1.
 * 3. Boxes are x, y, w, h in pixels; corners are x2 = x + w, y2 = y + h and IoU
 *    counts pixels inclusively (+1 on widths and heights).
 * 4. Each prediction in turn takes the single ground-truth face of highest IoU
 *    (first one on ties). If that IoU >= 0.5: a face outside the setting marks
 *    both the face and the prediction ignored; an unclaimed face in the setting
 *    becomes found. After each prediction we record how many faces are found.
 * 5. For 1000 thresholds t = 1 - k/1000 (k = 1..1000), each image contributes
 *    the non-ignored proposals with score >= t and the faces found by them.
 * 6. precision = found / proposals, recall = found / faces in the setting,
 *    summed over images; AP is the VOC all-point interpolated area.
 *
 * Images with no faces or no predictions only add their face count.
 * Pure TypeScript on typed arrays; no node: imports.
 */
import { argsortDescending } from '../postprocess/boxes.js';

/** The WIDER FACE evaluation settings (difficulty subsets), in the official order. */
export const WIDER_SETTINGS = ['easy', 'medium', 'hard'] as const;
/** One of WIDER_SETTINGS: 'easy', 'medium' or 'hard'. */
export type WiderSetting = (typeof WIDER_SETTINGS)[number];

/** Ground truth of one image. */
export interface GroundTruthImage {
  /** `EVENT/NAME` (no extension), the key predictions are matched by. */
  key: string;
  /** n x 4, x y w h in pixels, as in the official files. */
  boxes: Float64Array;
  /**
   * Per setting, 1 for the faces that count in it (the official gt_list),
   * 0 for faces that are only ignored. Length n each.
   */
  inSetting: Record<WiderSetting, Uint8Array>;
}

/** Predictions for one image. */
export interface ImagePredictions {
  /** n x 4, x y w h in pixels (the official prediction format). */
  boxes: Float64Array;
  /** n raw scores (any range: they are normalised over the set). */
  scores: Float64Array;
}

export interface EvalOptions {
  /** IoU at which a prediction matches a face. */
  iouThreshold: number;
  /** Number of score thresholds on the PR curve. */
  thresholds: number;
}

/** The official evaluation's settings. */
export const EVAL_DEFAULTS: EvalOptions = {
  iouThreshold: 0.5,
  thresholds: 1000,
};

export interface SettingResult {
  /** VOC all-point average precision. */
  ap: number;
  /** Per threshold k = 1..K (t = 1 - k/K): found / proposals (0 where there are no proposals). */
  precision: Float64Array;
  /** Per threshold: found / faces in the setting. */
  recall: Float64Array;
  /** Faces that count in this setting over the evaluated images. */
  faces: number;
}

/** What evaluateWider returns: per setting AP with its precision/recall curves, plus image counts. */
export type WiderResult = Record<WiderSetting, SettingResult> & {
  /** Images evaluated (the ground-truth set). */
  images: number;
  /** Of those, images that had a prediction entry (possibly empty). */
  imagesWithPredictions: number;
};

/**
 * Evaluate `predictions` against `groundTruth`. Exactly the images of
 * `groundTruth` are evaluated: restrict it to the evaluated set first. A
 * ground-truth image missing from `predictions` counts as having no detections.
 */
export function evaluateWider(
  groundTruth: readonly GroundTruthImage[],
  predictions: ReadonlyMap<string, ImagePredictions>,
  options: Partial<EvalOptions> = {},
): WiderResult {
  const opt = { ...EVAL_DEFAULTS, ...options };
  const K = opt.thresholds;

  // Sorting and the global score range first: normalisation needs every image.
  let minScore = 1;
  let maxScore = 0;
  const sorted: Array<{ boxes: Float64Array; scores: Float64Array } | undefined> = [];
  let withPreds = 0;
  for (const gt of groundTruth) {
    const p = predictions.get(gt.key);
    if (p) withPreds++;
    if (!p || p.scores.length === 0) {
      sorted.push(undefined);
      continue;
    }
    const s = sortByScore(p);
    for (let i = 0; i < s.scores.length; i++) {
      const v = s.scores[i]!;
      if (v < minScore) minScore = v;
      if (v > maxScore) maxScore = v;
    }
    sorted.push(s);
  }
  const range = maxScore - minScore;

  const proposals: Record<WiderSetting, Float64Array> = { easy: new Float64Array(K), medium: new Float64Array(K), hard: new Float64Array(K) };
  const found: Record<WiderSetting, Float64Array> = { easy: new Float64Array(K), medium: new Float64Array(K), hard: new Float64Array(K) };
  const faces: Record<WiderSetting, number> = { easy: 0, medium: 0, hard: 0 };

  for (let g = 0; g < groundTruth.length; g++) {
    const gt = groundTruth[g]!;
    for (const s of WIDER_SETTINGS) faces[s] += countOnes(gt.inSetting[s]);
    const pred = sorted[g];
    const nGt = gt.boxes.length / 4;
    if (!pred || nGt === 0) continue;
    const nPred = pred.scores.length;
    const norm = new Float64Array(nPred);
    // The official code divides by the range unguarded, which makes every score NaN (AP 0) when all
    // scores of the set are equal. Defined here: they all become 1, so they enter at the first threshold.
    if (range > 0) for (let i = 0; i < nPred; i++) norm[i] = (pred.scores[i]! - minScore) / range;
    else norm.fill(1);
    const best = bestMatches(pred.boxes, gt.boxes, opt.iouThreshold);
    for (const s of WIDER_SETTINGS) {
      accumulateImage(norm, best, gt.inSetting[s], nGt, K, proposals[s], found[s]);
    }
  }

  const result = { images: groundTruth.length, imagesWithPredictions: withPreds } as WiderResult;
  for (const s of WIDER_SETTINGS) {
    const precision = new Float64Array(K);
    const recall = new Float64Array(K);
    for (let k = 0; k < K; k++) {
      precision[k] = proposals[s][k]! > 0 ? found[s][k]! / proposals[s][k]! : 0;
      recall[k] = faces[s] > 0 ? found[s][k]! / faces[s] : 0;
    }
    result[s] = { ap: vocAp(recall, precision), precision, recall, faces: faces[s] };
  }
  return result;
}

/** Copy of the predictions sorted by score, descending; ties keep file order (MATLAB's sort is stable). */
function sortByScore(p: ImagePredictions): { boxes: Float64Array; scores: Float64Array } {
  const n = p.scores.length;
  const order = argsortDescending(p.scores, n);
  const boxes = new Float64Array(n * 4);
  const scores = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const j = order[i]!;
    scores[i] = p.scores[j]!;
    boxes.set(p.boxes.subarray(j * 4, j * 4 + 4), i * 4);
  }
  return { boxes, scores };
}

/**
 * For each prediction (x y w h), the index of the face with the highest IoU
 * if that IoU >= threshold, else -1. IoU uses corners x2 = x + w and inclusive
 * pixel counting, as the official bbox_overlaps does.
 */
export function bestMatches(pred: Float64Array, gt: Float64Array, iouThreshold: number): Int32Array {
  const nPred = pred.length / 4;
  const nGt = gt.length / 4;
  const out = new Int32Array(nPred).fill(-1);
  for (let i = 0; i < nPred; i++) {
    const px1 = pred[i * 4]!,
      py1 = pred[i * 4 + 1]!;
    const px2 = px1 + pred[i * 4 + 2]!,
      py2 = py1 + pred[i * 4 + 3]!;
    const pArea = (px2 - px1 + 1) * (py2 - py1 + 1);
    let bestIou = -Infinity;
    let bestJ = -1;
    for (let j = 0; j < nGt; j++) {
      const gx1 = gt[j * 4]!,
        gy1 = gt[j * 4 + 1]!;
      const gx2 = gx1 + gt[j * 4 + 2]!,
        gy2 = gy1 + gt[j * 4 + 3]!;
      let iou = 0;
      const iw = Math.min(px2, gx2) - Math.max(px1, gx1) + 1;
      if (iw > 0) {
        const ih = Math.min(py2, gy2) - Math.max(py1, gy1) + 1;
        if (ih > 0) {
          const inter = iw * ih;
          iou = inter / (pArea + (gx2 - gx1 + 1) * (gy2 - gy1 + 1) - inter);
        }
      }
      if (iou > bestIou) {
        bestIou = iou;
        bestJ = j;
      }
    }
    if (bestIou >= iouThreshold) out[i] = bestJ;
  }
  return out;
}

/**
 * One image, one setting: walk predictions in score order applying the
 * ignore / found rules, then add this image's proposals and found faces at
 * every threshold. `norm` is sorted descending, so the predictions above a
 * threshold are a prefix and one forward pointer serves all thresholds.
 */
function accumulateImage(
  norm: Float64Array,
  best: Int32Array,
  inSetting: Uint8Array,
  nGt: number,
  K: number,
  proposals: Float64Array,
  found: Float64Array,
): void {
  const nPred = norm.length;
  const state = new Int8Array(nGt); // 0 unclaimed, 1 found, -1 ignored
  const foundAfter = new Int32Array(nPred);
  const proposalsUpTo = new Int32Array(nPred); // non-ignored proposals among 0..i
  let nFound = 0;
  let nProp = 0;
  for (let i = 0; i < nPred; i++) {
    const j = best[i]!;
    let ignored = false;
    if (j >= 0) {
      if (inSetting[j] === 0) {
        state[j] = -1;
        ignored = true;
      } else if (state[j] === 0) {
        state[j] = 1;
        nFound++;
      }
    }
    if (!ignored) nProp++;
    foundAfter[i] = nFound;
    proposalsUpTo[i] = nProp;
  }
  let last = -1; // last index with norm >= threshold
  for (let k = 0; k < K; k++) {
    const t = 1 - (k + 1) / K;
    while (last + 1 < nPred && norm[last + 1]! >= t) last++;
    if (last >= 0) {
      proposals[k]! += proposalsUpTo[last]!; // k < K, their length
      found[k]! += foundAfter[last]!;
    }
  }
}

/** VOC all-point average precision of a recall-ordered curve (recall non-decreasing). */
export function vocAp(recall: ArrayLike<number>, precision: ArrayLike<number>): number {
  const n = recall.length;
  const mrec = new Float64Array(n + 2);
  const mpre = new Float64Array(n + 2);
  for (let i = 0; i < n; i++) {
    mrec[i + 1] = recall[i]!;
    mpre[i + 1] = precision[i]!;
  }
  mrec[n + 1] = 1;
  for (let i = n; i >= 0; i--) if (mpre[i + 1]! > mpre[i]!) mpre[i] = mpre[i + 1]!;
  let ap = 0;
  for (let i = 0; i <= n; i++) if (mrec[i + 1] !== mrec[i]) ap += (mrec[i + 1]! - mrec[i]!) * mpre[i + 1]!;
  return ap;
}

function countOnes(a: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += a[i]! !== 0 ? 1 : 0;
  return n;
}
