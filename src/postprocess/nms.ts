import { argsortDescending } from './boxes.js';

/**
 * Greedy non-maximum suppression.
 *
 * boxes: N x 4 xyxy (flat); scores: N. Visits boxes by descending score and
 * keeps a box unless its IoU with an already kept box is GREATER than
 * `iouThreshold` (IoU exactly at the threshold survives, as in S3FD's NMS).
 * Returns the kept indices in descending score order, at most `maxKeep`.
 * IoU has no +1 pixel term. O(N * kept).
 */
export function nmsXyxy(boxes: Float32Array, scores: Float32Array, iouThreshold: number, maxKeep = Infinity): Uint32Array {
  const n = scores.length;
  const order = argsortDescending(scores, n);
  const keep: number[] = [];
  const areas = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    areas[i] = Math.max(0, boxes[i * 4 + 2]! - boxes[i * 4]!) * Math.max(0, boxes[i * 4 + 3]! - boxes[i * 4 + 1]!);
  }
  for (let r = 0; r < n && keep.length < maxKeep; r++) {
    const i = order[r]!;
    const x1 = boxes[i * 4]!, y1 = boxes[i * 4 + 1]!, x2 = boxes[i * 4 + 2]!, y2 = boxes[i * 4 + 3]!;
    let suppressed = false;
    for (let t = 0; t < keep.length; t++) {
      const j = keep[t]!;
      const iw = Math.min(x2, boxes[j * 4 + 2]!) - Math.max(x1, boxes[j * 4]!);
      if (iw <= 0) continue;
      const ih = Math.min(y2, boxes[j * 4 + 3]!) - Math.max(y1, boxes[j * 4 + 1]!);
      if (ih <= 0) continue;
      const inter = iw * ih;
      if (inter / (areas[i]! + areas[j]! - inter) > iouThreshold) {
        suppressed = true;
        break;
      }
    }
    if (!suppressed) keep.push(i);
  }
  return Uint32Array.from(keep);
}

/**
 * NMS per class: boxes of different `classes` never suppress each other.
 * Implemented, as in torchvision, by offsetting each class's boxes so that
 * boxes of different classes cannot overlap.
 */
export function batchedNmsXyxy(
  boxes: Float32Array,
  scores: Float32Array,
  classes: ArrayLike<number>,
  iouThreshold: number,
  maxKeep = Infinity,
): Uint32Array {
  const n = scores.length;
  if (n === 0) return new Uint32Array(0);
  let maxCoord = 0;
  for (let i = 0; i < boxes.length; i++) maxCoord = Math.max(maxCoord, Math.abs(boxes[i]!));
  const shifted = new Float32Array(boxes.length);
  for (let i = 0; i < n; i++) {
    const off = classes[i]! * (2 * maxCoord + 1);
    for (let c = 0; c < 4; c++) shifted[i * 4 + c] = boxes[i * 4 + c]! + off;
  }
  return nmsXyxy(shifted, scores, iouThreshold, maxKeep);
}
