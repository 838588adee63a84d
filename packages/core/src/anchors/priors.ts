/**
 * S3FD anchors ("priors") for EXTD: one square anchor per feature-map cell.
 *
 * Six detection levels with strides 4..128 and anchor sides 16..512 px. The
 * feature-map sizes follow the convolutions (each stride-2 conv with padding 1
 * maps n to ceil(n / 2)), so they are derived from the input size, not from
 * input / stride, which would be wrong for sizes that are not multiples of 128.
 */
export const STRIDES = [4, 8, 16, 32, 64, 128] as const;
/** Side of the square anchor of each detection level, in input pixels (finest level first). */
export const ANCHOR_SIZES = [16, 32, 64, 128, 256, 512] as const;
/** Number of detection levels (6). */
export const NUM_LEVELS = STRIDES.length;

/** Feature-map size [height, width] of every detection level for an input of h x w pixels. */
export function levelSizes(height: number, width: number): Array<[number, number]> {
  // The stem (stride 2) and the first reuse of F (stride 2) produce level 1 at 1/4.
  let h = Math.ceil(Math.ceil(height / 2) / 2);
  let w = Math.ceil(Math.ceil(width / 2) / 2);
  const sizes: Array<[number, number]> = [];
  for (let l = 0; l < NUM_LEVELS; l++) {
    sizes.push([h, w]);
    h = Math.ceil(h / 2);
    w = Math.ceil(w / 2);
  }
  return sizes;
}

/** Total number of priors for an input of h x w pixels. */
export function priorCount(height: number, width: number): number {
  return levelSizes(height, width).reduce((n, [h, w]) => n + h * w, 0);
}

/**
 * Priors as a flat Float32Array of P x 4 rows `cx, cy, w, h`, all normalised
 * to 0..1 by the input size. Order: level (finest first), then row, then column,
 * the same order as the heads' flattened outputs.
 */
export function makePriors(height: number, width: number): Float32Array {
  const sizes = levelSizes(height, width);
  const out = new Float32Array(priorCount(height, width) * 4);
  let k = 0;
  for (let l = 0; l < NUM_LEVELS; l++) {
    const [fh, fw] = sizes[l]!;
    const stride = STRIDES[l]!;
    const pw = ANCHOR_SIZES[l]! / width;
    const ph = ANCHOR_SIZES[l]! / height;
    for (let i = 0; i < fh; i++) {
      const cy = ((i + 0.5) * stride) / height;
      for (let j = 0; j < fw; j++) {
        out[k++] = ((j + 0.5) * stride) / width;
        out[k++] = cy;
        out[k++] = pw;
        out[k++] = ph;
      }
    }
  }
  return out;
}
