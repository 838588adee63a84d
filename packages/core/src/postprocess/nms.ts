import { argsortDescending } from './boxes.js';

/**
 * Greedy non-maximum suppression.
 *
 * boxes: N x 4 xyxy (flat); scores: N. Visits boxes by descending score and
 * keeps a box unless its IoU with an already kept box is GREATER than
 * `iouThreshold` (IoU exactly at the threshold survives, as in S3FD's NMS).
 * Returns the kept indices in descending score order, at most `maxKeep`.
 * IoU has no +1 pixel term. See nmsSortedXyxy for the cost.
 */
export function nmsXyxy(boxes: Float32Array, scores: Float32Array, iouThreshold: number, maxKeep = Infinity): Uint32Array {
  const order = argsortDescending(scores, scores.length);
  return nmsSortedXyxy(boxes, scores.length, iouThreshold, maxKeep, order);
}

/** Below this many boxes the grid costs more than it saves. */
const GRID_MIN_BOXES = 64;

/**
 * Greedy NMS over boxes already in visiting order: box `order[r]` (or box r
 * when `order` is omitted) is the r-th best. Same rule and result as
 * nmsXyxy; returns kept box indices in visiting order, at most `maxKeep`.
 *
 * Only kept boxes that intersect a candidate can suppress it (IoU > t >= 0
 * needs a positive intersection), so kept boxes are registered in a uniform
 * grid over the boxes' extent and a candidate is tested only against the
 * kept boxes sharing a cell with it: O(N x kept neighbours) instead of
 * O(N x kept). Which kept boxes are tested changes, not the arithmetic of a
 * test, so the result is identical to the plain scan (used for few boxes,
 * a negative threshold, or non-finite coordinates).
 */
export function nmsSortedXyxy(boxes: Float32Array, n: number, iouThreshold: number, maxKeep = Infinity, order?: ArrayLike<number>): Uint32Array {
  const areas = new Float32Array(n);
  let finite = true;
  let minX = Infinity,
    minY = Infinity,
    maxX = -Infinity,
    maxY = -Infinity,
    sumSide = 0;
  for (let i = 0; i < n; i++) {
    const x1 = boxes[i * 4]!,
      y1 = boxes[i * 4 + 1]!,
      x2 = boxes[i * 4 + 2]!,
      y2 = boxes[i * 4 + 3]!;
    areas[i] = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
    if (!(Number.isFinite(x1) && Number.isFinite(y1) && Number.isFinite(x2) && Number.isFinite(y2))) finite = false;
    if (x1 < minX) minX = x1;
    if (y1 < minY) minY = y1;
    if (x2 > maxX) maxX = x2;
    if (y2 > maxY) maxY = y2;
    sumSide += Math.max(0, x2 - x1) + Math.max(0, y2 - y1);
  }
  const limit = Math.min(n, maxKeep);
  const keep = new Uint32Array(limit);
  let kept = 0;
  const at = order ? (r: number) => order[r]! : (r: number) => r;

  // Suppressed by kept box j? The one IoU test, shared by both paths.
  const suppresses = (i: number, j: number, x1: number, y1: number, x2: number, y2: number): boolean => {
    const iw = Math.min(x2, boxes[j * 4 + 2]!) - Math.max(x1, boxes[j * 4]!);
    if (iw <= 0) return false;
    const ih = Math.min(y2, boxes[j * 4 + 3]!) - Math.max(y1, boxes[j * 4 + 1]!);
    if (ih <= 0) return false;
    const inter = iw * ih;
    return inter / (areas[i]! + areas[j]! - inter) > iouThreshold;
  };

  if (n < GRID_MIN_BOXES || !finite || !(iouThreshold >= 0)) {
    for (let r = 0; r < n && kept < limit; r++) {
      const i = at(r);
      const x1 = boxes[i * 4]!,
        y1 = boxes[i * 4 + 1]!,
        x2 = boxes[i * 4 + 2]!,
        y2 = boxes[i * 4 + 3]!;
      let suppressed = false;
      for (let t = 0; t < kept; t++) {
        if (suppresses(i, keep[t]!, x1, y1, x2, y2)) {
          suppressed = true;
          break;
        }
      }
      if (!suppressed) keep[kept++] = i;
    }
    return keep.slice(0, kept);
  }

  // Cell side: about the mean box side (at least 1/64 of the extent, so the grid stays small).
  const extent = Math.max(maxX - minX, maxY - minY, 1e-6);
  const cell = Math.max(sumSide / (2 * n), extent / 64, 1e-6);
  const gw = Math.max(1, Math.min(64, Math.ceil((maxX - minX) / cell) + 1));
  const gh = Math.max(1, Math.min(64, Math.ceil((maxY - minY) / cell) + 1));
  const cellX = (x: number) => Math.min(gw - 1, Math.max(0, Math.floor((x - minX) / cell)));
  const cellY = (y: number) => Math.min(gh - 1, Math.max(0, Math.floor((y - minY) / cell)));
  // Per cell, a growable list of kept box indices.
  const lists: number[][] = Array.from({ length: gw * gh }, () => []);
  // Last candidate (rank + 1) each kept box was tested against: a box spanning several cells is tested once.
  const seen = new Uint32Array(n);

  for (let r = 0; r < n && kept < limit; r++) {
    const i = at(r);
    const x1 = boxes[i * 4]!,
      y1 = boxes[i * 4 + 1]!,
      x2 = boxes[i * 4 + 2]!,
      y2 = boxes[i * 4 + 3]!;
    const cx1 = cellX(x1),
      cx2 = cellX(x2),
      cy1 = cellY(y1),
      cy2 = cellY(y2);
    let suppressed = false;
    search: for (let cy = cy1; cy <= cy2; cy++) {
      for (let cx = cx1; cx <= cx2; cx++) {
        const list = lists[cy * gw + cx]!;
        for (let t = 0; t < list.length; t++) {
          const j = list[t]!;
          if (seen[j] === r + 1) continue;
          seen[j] = r + 1;
          if (suppresses(i, j, x1, y1, x2, y2)) {
            suppressed = true;
            break search;
          }
        }
      }
    }
    if (suppressed) continue;
    keep[kept++] = i;
    for (let cy = cy1; cy <= cy2; cy++) for (let cx = cx1; cx <= cx2; cx++) lists[cy * gw + cx]!.push(i);
  }
  return keep.slice(0, kept);
}

/**
 * NMS per class: boxes of different `classes` never suppress each other.
 * Implemented, as in torchvision, by offsetting each class's boxes so that
 * boxes of different classes cannot overlap.
 */
export function batchedNmsXyxy(boxes: Float32Array, scores: Float32Array, classes: ArrayLike<number>, iouThreshold: number, maxKeep = Infinity): Uint32Array {
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
