/**
 * Average precision at IoU 0.5 with PASCAL VOC's all-point interpolation
 * (the VOC2010+ devkit's rule), for face sets that are not WIDER FACE:
 *
 * 1. Every detection of every image, ranked together by score, highest first
 *    (ties: image order, then the image's own order).
 * 2. Each detection in turn is compared with every face of its image by IoU
 *    on continuous xyxy pixel boxes (no +1); it takes the face of highest IoU.
 *    If that IoU >= the threshold: a face marked ignore (VOC `difficult`,
 *    COCO `iscrowd`) makes the detection ignored (neither a hit nor a false
 *    positive); a face not yet found becomes found (a true positive); a face
 *    already found makes it a false positive (a duplicate). Below the
 *    threshold it is a false positive.
 * 3. precision = TP / (TP + FP) and recall = TP / (faces not ignored) after
 *    each counted detection; AP = the area under the precision envelope
 *    (all-point interpolation, vocAp).
 *
 * Pure TypeScript on typed arrays; no node: imports.
 */
import { vocAp } from './evaluator.js';

/** Ground truth of one image. */
export interface ApGroundTruth {
  key: string;
  /** n x 4, xyxy, pixels. */
  boxes: Float64Array;
  /** n flags; 1 = ignore. */
  ignore: Uint8Array;
}

/** Detections of one image. */
export interface ApDetections {
  /** n x 4, xyxy, pixels. */
  boxes: ArrayLike<number>;
  scores: ArrayLike<number>;
}

export interface ApOptions {
  /** IoU at which a detection matches a face (inclusive). */
  iouThreshold: number;
}

/** Default options of evaluateAp50: IoU threshold 0.5. */
export const AP_DEFAULTS: Readonly<ApOptions> = Object.freeze({ iouThreshold: 0.5 });

/** What evaluateAp50 returns: AP, the precision/recall curve and the counts behind it. */
export interface ApResult {
  /** All-point interpolated average precision, 0..1 (0 when there is no face to find). */
  ap: number;
  /** Precision (0..1) after each counted detection, in rank order. */
  precision: Float64Array;
  /** Recall (0..1) after each counted detection, in rank order. */
  recall: Float64Array;
  /** Faces to find (not ignored). */
  faces: number;
  /** Faces marked ignore. */
  ignoredFaces: number;
  /** Detections counted (ignored ones excluded). */
  detections: number;
  /** True positives among the counted detections. */
  truePositives: number;
  /** Images evaluated (those of the ground truth). */
  images: number;
  /** Images that had a detections entry (possibly empty). */
  imagesWithPredictions: number;
}

/** Human statement of the protocol, for reports and ap.json. */
export const AP50_PROTOCOL =
  'AP at IoU 0.5, PASCAL VOC all-point interpolation (detections of all images ranked together; ignored faces, i.e. VOC difficult / COCO iscrowd, count neither as hits nor as misses)';

/**
 * Evaluate `detections` (by image key) against `groundTruth`. Exactly the
 * images of `groundTruth` are evaluated; a missing entry means no detections.
 */
export function evaluateAp50(groundTruth: readonly ApGroundTruth[], detections: ReadonlyMap<string, ApDetections>, options: Partial<ApOptions> = {}): ApResult {
  const o = { ...AP_DEFAULTS, ...options };
  let faces = 0;
  let ignoredFaces = 0;
  let withPreds = 0;
  const all: Array<{ g: number; i: number; score: number }> = [];
  groundTruth.forEach((gt, g) => {
    for (let k = 0; k < gt.ignore.length; k++) gt.ignore[k] ? ignoredFaces++ : faces++;
    const d = detections.get(gt.key);
    if (!d) return;
    withPreds++;
    for (let i = 0; i < d.scores.length; i++) all.push({ g, i, score: d.scores[i]! });
  });
  all.sort((a, b) => b.score - a.score || a.g - b.g || a.i - b.i);

  const found = groundTruth.map((gt) => new Uint8Array(gt.ignore.length));
  const tpCum: number[] = [];
  const fpCum: number[] = [];
  let tp = 0;
  let fp = 0;
  for (const det of all) {
    const gt = groundTruth[det.g]!;
    const box = detections.get(gt.key)!.boxes;
    const [x1, y1, x2, y2] = [box[4 * det.i]!, box[4 * det.i + 1]!, box[4 * det.i + 2]!, box[4 * det.i + 3]!];
    const area = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
    let best = -1;
    let bestIou = -Infinity;
    for (let j = 0; j < gt.ignore.length; j++) {
      const gx1 = gt.boxes[4 * j]!,
        gy1 = gt.boxes[4 * j + 1]!,
        gx2 = gt.boxes[4 * j + 2]!,
        gy2 = gt.boxes[4 * j + 3]!;
      const iw = Math.min(x2, gx2) - Math.max(x1, gx1);
      const ih = Math.min(y2, gy2) - Math.max(y1, gy1);
      const inter = iw > 0 && ih > 0 ? iw * ih : 0;
      const union = area + (gx2 - gx1) * (gy2 - gy1) - inter;
      const iou = union > 0 ? inter / union : 0;
      if (iou > bestIou) {
        bestIou = iou;
        best = j;
      }
    }
    if (best >= 0 && bestIou >= o.iouThreshold) {
      if (gt.ignore[best]) continue;
      if (!found[det.g]![best]) {
        found[det.g]![best] = 1;
        tp++;
      } else fp++;
    } else fp++;
    tpCum.push(tp);
    fpCum.push(fp);
  }
  const n = tpCum.length;
  const precision = new Float64Array(n);
  const recall = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    precision[k] = tpCum[k]! / (tpCum[k]! + fpCum[k]!);
    recall[k] = faces > 0 ? tpCum[k]! / faces : 0;
  }
  const ap = faces > 0 && n > 0 ? vocAp(recall, precision) : 0;
  return { ap, precision, recall, faces, ignoredFaces, detections: n, truePositives: tp, images: groundTruth.length, imagesWithPredictions: withPreds };
}
