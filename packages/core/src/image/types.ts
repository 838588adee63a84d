/**
 * Decoded image as the whole package passes it around: 8-bit RGB, interleaved
 * (HxWx3, row-major), no alpha. `data.length === width * height * 3`.
 */
export interface RgbImage {
  /** Pixels, R, G, B bytes per pixel, rows top to bottom: width * height * 3 values. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/** Per-channel mean the released models were trained with (R, G, B), subtracted before the network. */
export const RGB_MEAN = [123, 117, 104] as const;

/**
 * The network's input: RGB HWC uint8 -> CHW float32 minus `mean` (default
 * RGB_MEAN, the training mean), written into `out` at `offset` (a batch
 * assembled in place) or into a new array of 3 x height x width floats. The
 * one definition the detector, int8 calibration and training all use.
 * @throws Error when `out` is too short.
 */
export function toNetworkInput(img: RgbImage, mean: readonly number[] = RGB_MEAN, out?: Float32Array, offset = 0): Float32Array {
  const n = img.width * img.height;
  const dst = out ?? new Float32Array(3 * n);
  if (dst.length < offset + 3 * n) throw new Error(`toNetworkInput: output has ${dst.length} floats, needs ${offset + 3 * n}`);
  const d = img.data;
  const m0 = mean[0]!,
    m1 = mean[1]!,
    m2 = mean[2]!;
  for (let i = 0; i < n; i++) {
    dst[offset + i] = d[3 * i]! - m0;
    dst[offset + n + i] = d[3 * i + 1]! - m1;
    dst[offset + 2 * n + i] = d[3 * i + 2]! - m2;
  }
  return dst;
}
