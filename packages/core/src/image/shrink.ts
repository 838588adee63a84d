/**
 * The automatic shrink rule, defined once for the detector's `scale: 'auto'`
 * and the evaluation protocols: an image of more than 1700 x 1200 pixels of
 * area is scaled down to that area (the released models' evaluation setting,
 * from S3FD's test scripts).
 *
 * Names: `maxShrink` is the scripts' name (max_shrink) for the unclamped
 * factor, which the paper protocol needs above 1 to plan its enlarged passes;
 * `autoScale` is the factor the detector applies, never enlarging. Both come
 * from the one formula here.
 */

/** Largest image area (pixels) that is not shrunk. */
export const AUTO_MAX_AREA = 1700 * 1200;

/** sqrt(maxArea / (width * height)): the factor that brings the image to `maxArea` pixels (above 1 for smaller images). */
export function maxShrink(width: number, height: number, maxArea = AUTO_MAX_AREA): number {
  return Math.sqrt(maxArea / (width * height));
}

/** min(1, maxShrink): shrink images over `maxArea` pixels to that area, leave smaller ones as they are. */
export function autoScale(width: number, height: number, maxArea = AUTO_MAX_AREA): number {
  return Math.min(1, maxShrink(width, height, maxArea));
}
