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
