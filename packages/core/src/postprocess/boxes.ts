/**
 * Box utilities on flat typed arrays. Boxes are N x 4 rows `x1, y1, x2, y2`
 * (xyxy) in any consistent unit; areas use (x2 - x1) * (y2 - y1), without the
 * +1 pixel convention of the WIDER evaluation (see src/eval for that one).
 */

/** IoU of box i of `a` with box j of `b` (both flat xyxy arrays). 0 when the union is empty. */
export function iouXyxy(a: ArrayLike<number>, i: number, b: ArrayLike<number>, j: number): number {
  const ai = i * 4,
    bj = j * 4;
  const ix1 = Math.max(a[ai]!, b[bj]!);
  const iy1 = Math.max(a[ai + 1]!, b[bj + 1]!);
  const ix2 = Math.min(a[ai + 2]!, b[bj + 2]!);
  const iy2 = Math.min(a[ai + 3]!, b[bj + 3]!);
  const iw = Math.max(0, ix2 - ix1);
  const ih = Math.max(0, iy2 - iy1);
  const inter = iw * ih;
  const areaA = Math.max(0, a[ai + 2]! - a[ai]!) * Math.max(0, a[ai + 3]! - a[ai + 1]!);
  const areaB = Math.max(0, b[bj + 2]! - b[bj]!) * Math.max(0, b[bj + 3]! - b[bj + 1]!);
  const union = areaA + areaB - inter;
  return union > 0 ? inter / union : 0;
}

/** M x N matrix (row-major Float32Array) of IoUs between every box of `a` (M) and of `b` (N). */
export function boxIouXyxy(a: Float32Array, b: Float32Array): Float32Array {
  const m = a.length / 4,
    n = b.length / 4;
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[i * n + j] = iouXyxy(a, i, b, j);
  return out;
}

/**
 * Indices 0..n-1 sorted by descending score; equal scores keep index order
 * (a stable sort, as MATLAB's sort in the WIDER evaluation and S3FD's scripts).
 *
 * The one "sort detections by score" of the code base: NMS, postprocess, box
 * voting, the evaluator and the prediction-file writer all order through it,
 * so their tie-breaking cannot drift apart. Named `argsortDescending` (numpy's
 * argsort, descending) because it returns an order, not sorted copies; pair it
 * with `selectDetections` to reorder boxes and scores together.
 */
export function argsortDescending(scores: ArrayLike<number>, n = scores.length): Uint32Array {
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  // A typed-array sort with a comparator is stable (ES2019+); the index
  // tie-break makes the order unique anyway for non-NaN scores.
  return idx.sort((x, y) => scores[y]! - scores[x]! || x - y);
}
