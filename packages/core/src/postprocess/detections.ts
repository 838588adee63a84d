import { decodeBoxXyxyPx } from '../anchors/decode.js';
import { nmsSortedXyxy } from './nms.js';
import { argsortDescending } from './boxes.js';

/**
 * Detections as flat typed arrays: N x 4 boxes (x1, y1, x2, y2, pixels) and N
 * scores, sorted by score (highest first). The one type for boxes with scores
 * in core: post-processing, `Detector.detectPass` and the evaluation
 * protocols (which had an identical `ProtocolDetections`) all return it; the
 * name is the public one already exported by every package.
 */
export interface Detections {
  /** Flat N x 4 boxes, xyxy (x1, y1, x2, y2) in pixels. */
  boxes: Float32Array;
  /** N face probabilities (0..1), highest first; `scores[i]` belongs to `boxes[4i..4i+3]`. */
  scores: Float32Array;
}

/** Options of `postprocess` (and, through PassOptions, of `Detector.detectPass`); defaults in POSTPROCESS_DEFAULTS. */
export interface PostprocessOptions {
  /** Keep priors whose face probability is strictly above this. */
  scoreThreshold: number;
  /** Greedy NMS: suppress a box whose IoU with a kept one is above this. */
  nmsThreshold: number;
  /**
   * Keep at most this many after NMS (S3FD's top_k, 750). Named `maxFaces`,
   * as DetectOptions' public option that it is (it was `topK` here): one
   * name for one limit.
   */
  maxFaces: number;
  /**
   * Only the best this-many candidates above the threshold enter NMS (S3FD's
   * detection layer does this, 5000). A different limit from `maxFaces`,
   * applied before NMS rather than after it: it bounds NMS time on images
   * with many faces and decides which low-scoring boxes survive, so it
   * matters for reproducing the reference's output exactly.
   */
  candidateLimit: number;
}

/** The released models' evaluation settings (S3FD's test-time defaults). */
export const POSTPROCESS_DEFAULTS: PostprocessOptions = { scoreThreshold: 0.05, nmsThreshold: 0.3, maxFaces: 750, candidateLimit: 5000 };

/**
 * Network outputs -> detections in the network input's pixels.
 *
 * loc: P x 4 raw regression; conf: P x 2 logits (background, face);
 * priors: P x 4 (cx, cy, w, h in 0..1). The face probability is the 2-way
 * softmax; candidates are the priors above the threshold, best first (ties:
 * lower prior index first), at most `candidateLimit` of them; only those are
 * decoded, then greedy NMS keeps at most `maxFaces`.
 *
 * Cost at threshold 0.05, where nearly every prior is a candidate: one pass
 * over P, a linear-time selection of the best `candidateLimit` (no full
 * sort), a sort of those, and grid NMS (see nmsSortedXyxy). The candidates'
 * order is already NMS's visiting order (float32 rounding of the scores is
 * monotonic, and ties keep that order), so NMS does not sort again.
 */
export function postprocess(
  loc: Float32Array,
  conf: Float32Array,
  priors: Float32Array,
  inputWidth: number,
  inputHeight: number,
  options: PostprocessOptions = POSTPROCESS_DEFAULTS,
): Detections {
  const p = priors.length / 4;
  let candIdx = new Uint32Array(p);
  let candScore = new Float64Array(p);
  let m = 0;
  const thr = options.scoreThreshold;
  for (let i = 0; i < p; i++) {
    // softmax([b, f])[1] = 1 / (1 + exp(b - f))
    const s = 1 / (1 + Math.exp(conf[2 * i]! - conf[2 * i + 1]!));
    if (s > thr) (candIdx[m] = i), (candScore[m++] = s);
  }
  const limit = Math.max(0, Math.min(m, Math.floor(options.candidateLimit)));
  if (m > limit) {
    // The limit-th best score v: every candidate above v is in, then those equal to v by prior index.
    const v = kthLargest(candScore.slice(0, m), limit);
    let above = 0;
    for (let c = 0; c < m; c++) if (candScore[c]! > v) above++;
    let ties = limit - above;
    const idx = new Uint32Array(limit),
      sc = new Float64Array(limit);
    let k = 0;
    for (let c = 0; c < m; c++) {
      const s = candScore[c]!;
      if (s > v || (s === v && ties-- > 0)) (idx[k] = candIdx[c]!), (sc[k++] = s);
    }
    (candIdx = idx), (candScore = sc), (m = limit);
  }
  const order = argsortDescending(candScore, m);
  const boxes = new Float32Array(m * 4);
  const scores = new Float32Array(m);
  let n = 0;
  for (let c = 0; c < m; c++) {
    const k = order[c]!;
    const o = n * 4;
    decodeBoxXyxyPx(loc, priors, candIdx[k]!, inputWidth, inputHeight, boxes, o);
    // A barely trained model can regress sizes whose exp() overflows float32:
    // such a box is no detection (and would poison NMS and the output files).
    if (!(Number.isFinite(boxes[o]!) && Number.isFinite(boxes[o + 1]!) && Number.isFinite(boxes[o + 2]!) && Number.isFinite(boxes[o + 3]!))) continue;
    scores[n++] = candScore[k]!;
  }
  const keep = nmsSortedXyxy(boxes, n, options.nmsThreshold, options.maxFaces);
  return selectDetections({ boxes, scores }, keep);
}

/**
 * The k-th largest value of `values` (1 <= k <= length), in expected linear
 * time (quickselect; reorders `values`).
 */
export function kthLargest(values: Float64Array, k: number): number {
  // k-th largest = element at ascending position length - k.
  const target = values.length - k;
  let lo = 0,
    hi = values.length - 1;
  while (lo < hi) {
    // Median of three as the pivot.
    const mid = (lo + hi) >>> 1;
    const a = values[lo]!,
      b = values[mid]!,
      c = values[hi]!;
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b;
    let i = lo,
      j = hi;
    while (i <= j) {
      while (values[i]! < pivot) i++;
      while (values[j]! > pivot) j--;
      if (i <= j) {
        const t = values[i]!;
        values[i++] = values[j]!;
        values[j--] = t;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return values[target]!;
  }
  return values[target]!;
}

/** The detections at `indices`, in that order. */
export function selectDetections(d: Detections, indices: ArrayLike<number>): Detections {
  const boxes = new Float32Array(indices.length * 4);
  const scores = new Float32Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k]!;
    boxes.set(d.boxes.subarray(i * 4, i * 4 + 4), k * 4);
    scores[k] = d.scores[i]!;
  }
  return { boxes, scores };
}
