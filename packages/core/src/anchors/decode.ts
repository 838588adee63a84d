/** SSD/S3FD box coding variances: centre offsets are scaled by 0.1, log sizes by 0.2. */
export const VARIANCES = [0.1, 0.2] as const;

/**
 * Decode one prior's regression into a box, xyxy in PIXELS of the network input.
 *
 * loc: flat P x 4 raw outputs (dx, dy, dw, dh); priors: flat P x 4 (cx, cy, w, h in 0..1).
 * cx = pcx + dx * 0.1 * pw, w = pw * exp(dw * 0.2), likewise y; then scaled by the input size.
 * Writes 4 numbers at out[o..o+3].
 */
export function decodeBoxXyxyPx(
  loc: Float32Array,
  priors: Float32Array,
  p: number,
  inputWidth: number,
  inputHeight: number,
  out: Float32Array,
  o: number,
): void {
  const k = p * 4;
  const pw = priors[k + 2]!;
  const ph = priors[k + 3]!;
  const cx = priors[k]! + loc[k]! * VARIANCES[0] * pw;
  const cy = priors[k + 1]! + loc[k + 1]! * VARIANCES[0] * ph;
  const w = pw * Math.exp(loc[k + 2]! * VARIANCES[1]);
  const h = ph * Math.exp(loc[k + 3]! * VARIANCES[1]);
  const x1 = cx - w / 2;
  const y1 = cy - h / 2;
  out[o] = x1 * inputWidth;
  out[o + 1] = y1 * inputHeight;
  out[o + 2] = (x1 + w) * inputWidth;
  out[o + 3] = (y1 + h) * inputHeight;
}

/**
 * Inverse of the decoding, in 0..1 units: the regression target that makes
 * `prior` (cx, cy, w, h) decode to `box` (x1, y1, x2, y2). Used by training.
 */
export function encodeBoxXyxy(box: ArrayLike<number>, b: number, priors: Float32Array, p: number, out: Float32Array, o: number): void {
  const k = p * 4;
  const pw = priors[k + 2]!;
  const ph = priors[k + 3]!;
  const x1 = box[b]!,
    y1 = box[b + 1]!,
    x2 = box[b + 2]!,
    y2 = box[b + 3]!;
  out[o] = ((x1 + x2) / 2 - priors[k]!) / (VARIANCES[0] * pw);
  out[o + 1] = ((y1 + y2) / 2 - priors[k + 1]!) / (VARIANCES[0] * ph);
  out[o + 2] = Math.log((x2 - x1) / pw) / VARIANCES[1];
  out[o + 3] = Math.log((y2 - y1) / ph) / VARIANCES[1];
}
