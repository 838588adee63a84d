import { resizeWith } from './interp.js';
import type { RgbImage } from './types.js';

/**
 * Bilinear resize of an 8-bit RGB image with half-pixel centres (the
 * convention of OpenCV's INTER_LINEAR and PyTorch's align_corners=False):
 * source x = (dst x + 0.5) * (srcW / dstW) - 0.5, edge pixels repeated.
 * Results are rounded to the nearest integer. The same kernel as training's
 * 'linear' augmentation (interp.ts), so both see identically resized pixels.
 */
export function resizeBilinear(src: RgbImage, width: number, height: number): RgbImage {
  if (width === src.width && height === src.height) return { data: src.data.slice(), width, height };
  return resizeWith(src, width, height, 'linear');
}

/** Mirror left-right. */
export function flipHorizontal(src: RgbImage): RgbImage {
  const { width: w, height: h, data } = src;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < h; y++) {
    const row = y * w * 3;
    for (let x = 0; x < w; x++) {
      const a = row + x * 3,
        b = row + (w - 1 - x) * 3;
      (out[b] = data[a]!), (out[b + 1] = data[a + 1]!), (out[b + 2] = data[a + 2]!);
    }
  }
  return { data: out, width: w, height: h };
}
