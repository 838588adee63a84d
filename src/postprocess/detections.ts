import { decodeBoxXyxyPx } from '../anchors/decode.js';
import { nmsXyxy } from './nms.js';
import { argsortDescending } from './boxes.js';

/** Detections as flat typed arrays: N x 4 boxes (x1, y1, x2, y2, pixels) and N scores, sorted by score. */
export interface Detections {
  boxes: Float32Array;
  scores: Float32Array;
}

export interface PostprocessOptions {
  /** Keep priors whose face probability is strictly above this. */
  scoreThreshold: number;
  /** Greedy NMS: suppress a box whose IoU with a kept one is above this. */
  nmsThreshold: number;
  /** Keep at most this many after NMS. */
  topK: number;
  /**
   * Only the best this-many candidates above the threshold enter NMS (S3FD's
   * detection layer does this, 5000). It bounds NMS time on images with many
   * faces and decides which low-scoring boxes survive, so it matters for
   * reproducing the reference's output exactly.
   */
  candidateLimit: number;
}

/** The released models' evaluation settings (S3FD's test-time defaults). */
export const POSTPROCESS_DEFAULTS: PostprocessOptions = { scoreThreshold: 0.05, nmsThreshold: 0.3, topK: 750, candidateLimit: 5000 };

/**
 * Network outputs -> detections in the network input's pixels.
 *
 * loc: P x 4 raw regression; conf: P x 2 logits (background, face);
 * priors: P x 4 (cx, cy, w, h in 0..1). The face probability is the 2-way
 * softmax; only priors above the threshold are decoded, so the cost is
 * proportional to the candidates, not to P.
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
  const candIdx: number[] = [];
  const candScore: number[] = [];
  for (let i = 0; i < p; i++) {
    // softmax([b, f])[1] = 1 / (1 + exp(b - f))
    const s = 1 / (1 + Math.exp(conf[2 * i]! - conf[2 * i + 1]!));
    if (s > options.scoreThreshold) candIdx.push(i), candScore.push(s);
  }
  let order: ArrayLike<number> = argsortDescending(candScore);
  if (order.length > options.candidateLimit) order = (order as Uint32Array).subarray(0, options.candidateLimit);
  const boxes = new Float32Array(order.length * 4);
  const scores = new Float32Array(order.length);
  let n = 0;
  for (let c = 0; c < order.length; c++) {
    const k = order[c]!;
    const o = n * 4;
    decodeBoxXyxyPx(loc, priors, candIdx[k]!, inputWidth, inputHeight, boxes, o);
    // A barely trained model can regress sizes whose exp() overflows float32:
    // such a box is no detection (and would poison NMS and the output files).
    // Checked in place: this loop runs for up to candidateLimit priors per image.
    if (!(Number.isFinite(boxes[o]!) && Number.isFinite(boxes[o + 1]!) && Number.isFinite(boxes[o + 2]!) && Number.isFinite(boxes[o + 3]!))) continue;
    scores[n++] = candScore[k]!;
  }
  const keep = nmsXyxy(boxes.subarray(0, n * 4), scores.subarray(0, n), options.nmsThreshold, options.topK);
  return selectDetections({ boxes, scores }, keep);
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
