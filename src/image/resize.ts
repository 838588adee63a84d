import type { RgbImage } from './types.js';

/**
 * Bilinear resize of an 8-bit RGB image with half-pixel centres (the
 * convention of OpenCV's INTER_LINEAR and PyTorch's align_corners=False):
 * source x = (dst x + 0.5) * (srcW / dstW) - 0.5, clamped to the image.
 * Results are rounded to the nearest integer.
 */
export function resizeBilinear(src: RgbImage, width: number, height: number): RgbImage {
  if (width === src.width && height === src.height) return { data: src.data.slice(), width, height };
  const { data: s, width: sw, height: sh } = src;
  const out = new Uint8Array(width * height * 3);
  const xs = axisWeights(sw, width);
  const ys = axisWeights(sh, height);
  for (let y = 0; y < height; y++) {
    const y0 = ys.i0[y]!, y1 = ys.i1[y]!, fy = ys.f[y]!;
    const r0 = y0 * sw * 3, r1 = y1 * sw * 3;
    let o = y * width * 3;
    for (let x = 0; x < width; x++) {
      const x0 = xs.i0[x]! * 3, x1 = xs.i1[x]! * 3, fx = xs.f[x]!;
      for (let c = 0; c < 3; c++) {
        const top = s[r0 + x0 + c]! + (s[r0 + x1 + c]! - s[r0 + x0 + c]!) * fx;
        const bot = s[r1 + x0 + c]! + (s[r1 + x1 + c]! - s[r1 + x0 + c]!) * fx;
        out[o++] = Math.round(top + (bot - top) * fy);
      }
    }
  }
  return { data: out, width, height };
}

function axisWeights(srcSize: number, dstSize: number) {
  const i0 = new Int32Array(dstSize), i1 = new Int32Array(dstSize), f = new Float32Array(dstSize);
  const scale = srcSize / dstSize;
  for (let d = 0; d < dstSize; d++) {
    let x = (d + 0.5) * scale - 0.5;
    if (x < 0) x = 0;
    let x0 = Math.floor(x);
    if (x0 > srcSize - 1) x0 = srcSize - 1;
    i0[d] = x0;
    i1[d] = Math.min(x0 + 1, srcSize - 1);
    f[d] = x - x0;
  }
  return { i0, i1, f };
}

/** Mirror left-right. */
export function flipHorizontal(src: RgbImage): RgbImage {
  const { width: w, height: h, data } = src;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < h; y++) {
    const row = y * w * 3;
    for (let x = 0; x < w; x++) {
      const a = row + x * 3, b = row + (w - 1 - x) * 3;
      out[b] = data[a]!, out[b + 1] = data[a + 1]!, out[b + 2] = data[a + 2]!;
    }
  }
  return { data: out, width: w, height: h };
}
