/**
 * Crop-and-resize with the five interpolation kernels the S3FD training code
 * picks from at random (OpenCV's INTER_LINEAR, INTER_CUBIC, INTER_AREA,
 * INTER_NEAREST, INTER_LANCZOS4), written from their definitions.
 *
 * One primitive, `resampleRegion`, maps an axis-aligned source rectangle (in
 * pixels, possibly reaching outside the image) onto an output grid. Doing crop
 * and resize in one step means data-anchor-sampling never materialises the
 * rescaled full image (which can be tens of megapixels when a tiny face is
 * blown up to a 256 px anchor); only the window it keeps is computed.
 *
 * Coordinate conventions follow OpenCV's resize: output pixel d samples the
 * source at x0 + (d + 0.5) * scale - 0.5 (pixel centres), except nearest,
 * which takes floor(x0 + d * scale). Taps past the image edge repeat the edge
 * pixel; output pixels whose centre falls outside the image get `fill`
 * (the mean colour, i.e. zero network input). Linear, which detection also
 * uses for every image, reads its four source pixels directly; the other
 * kernels are separable: a horizontal pass over the source rows the vertical
 * taps need, then a vertical pass. Results are rounded to 0..255 like
 * OpenCV's 8-bit output.
 *
 * No node: imports.
 */
import type { RgbImage } from './types.js';

export type Interpolation = 'linear' | 'cubic' | 'area' | 'nearest' | 'lanczos4';

/** All kernels, in the order the S3FD code lists them. */
export const INTERPOLATIONS: readonly Interpolation[] = Object.freeze(['linear', 'cubic', 'area', 'nearest', 'lanczos4']);

/** A rectangle in source pixels: x, y top-left corner, width and height (xywh). */
export interface RegionXywh {
  x: number;
  y: number;
  width: number;
  height: number;
}

interface AxisTaps {
  taps: number;
  /** outLen x taps source indices (already clamped into the image). */
  idx: Int32Array;
  /** outLen x taps weights, summing to 1 per output. */
  w: Float32Array;
  /** 1 when the output pixel's centre maps inside the image. */
  inside: Uint8Array;
}

/**
 * Resample `region` of `src` to an outWidth x outHeight RGB image.
 * @param fill RGB colour of output pixels that map outside the source image.
 */
export function resampleRegion(
  src: RgbImage,
  region: RegionXywh,
  outWidth: number,
  outHeight: number,
  interp: Interpolation,
  fill: readonly [number, number, number] | readonly number[] = [0, 0, 0],
): RgbImage {
  if (!INTERPOLATIONS.includes(interp)) {
    throw new Error(`interpolation '${interp}' is not one of ${INTERPOLATIONS.join(', ')}`);
  }
  if (!(region.width > 0 && region.height > 0)) {
    throw new Error(`resampleRegion: region ${region.width}x${region.height} must have a positive size`);
  }
  if (!(Number.isInteger(outWidth) && Number.isInteger(outHeight) && outWidth > 0 && outHeight > 0)) {
    throw new Error(`resampleRegion: output size ${outWidth}x${outHeight} must be positive integers`);
  }
  if (interp === 'linear') return resampleLinear(src, region, outWidth, outHeight, fill);
  const W = src.width;
  const H = src.height;
  const tx = axisTaps(W, region.x, region.width, outWidth, interp);
  const ty = axisTaps(H, region.y, region.height, outHeight, interp);

  // Source rows referenced by any inside output row.
  let rowMin = H;
  let rowMax = -1;
  for (let d = 0; d < outHeight; d++) {
    if (!ty.inside[d]) continue;
    for (let k = 0; k < ty.taps; k++) {
      if (ty.w[d * ty.taps + k] === 0) continue;
      const r = ty.idx[d * ty.taps + k]!;
      if (r < rowMin) rowMin = r;
      if (r > rowMax) rowMax = r;
    }
  }

  const out = new Uint8Array(outWidth * outHeight * 3);
  const f0 = fill[0] ?? 0,
    f1 = fill[1] ?? 0,
    f2 = fill[2] ?? 0;
  if (rowMax < rowMin) {
    for (let i = 0; i < outWidth * outHeight; i++) {
      out[3 * i] = f0;
      out[3 * i + 1] = f1;
      out[3 * i + 2] = f2;
    }
    return { data: out, width: outWidth, height: outHeight };
  }

  // Horizontal pass: rowMin..rowMax x outWidth x 3 floats.
  const rows = rowMax - rowMin + 1;
  const tmp = new Float32Array(rows * outWidth * 3);
  const sd = src.data;
  const T = tx.taps;
  for (let r = 0; r < rows; r++) {
    const srcRow = (rowMin + r) * W * 3;
    const dstRow = r * outWidth * 3;
    for (let x = 0; x < outWidth; x++) {
      let a = 0,
        b = 0,
        c = 0;
      const base = x * T;
      for (let k = 0; k < T; k++) {
        const wk = tx.w[base + k]!;
        if (wk === 0) continue;
        const s = srcRow + tx.idx[base + k]! * 3;
        a += wk * sd[s]!;
        b += wk * sd[s + 1]!;
        c += wk * sd[s + 2]!;
      }
      tmp[dstRow + 3 * x] = a;
      tmp[dstRow + 3 * x + 1] = b;
      tmp[dstRow + 3 * x + 2] = c;
    }
  }

  // Vertical pass.
  const TY = ty.taps;
  for (let y = 0; y < outHeight; y++) {
    const o = y * outWidth * 3;
    if (!ty.inside[y]) {
      for (let x = 0; x < outWidth; x++) {
        out[o + 3 * x] = f0;
        out[o + 3 * x + 1] = f1;
        out[o + 3 * x + 2] = f2;
      }
      continue;
    }
    for (let x = 0; x < outWidth; x++) {
      if (!tx.inside[x]) {
        out[o + 3 * x] = f0;
        out[o + 3 * x + 1] = f1;
        out[o + 3 * x + 2] = f2;
        continue;
      }
      let a = 0,
        b = 0,
        c = 0;
      for (let k = 0; k < TY; k++) {
        const wk = ty.w[y * TY + k]!;
        if (wk === 0) continue;
        const t = ((ty.idx[y * TY + k]! - rowMin) * outWidth + x) * 3;
        a += wk * tmp[t]!;
        b += wk * tmp[t + 1]!;
        c += wk * tmp[t + 2]!;
      }
      out[o + 3 * x] = clamp8(a);
      out[o + 3 * x + 1] = clamp8(b);
      out[o + 3 * x + 2] = clamp8(c);
    }
  }
  return { data: out, width: outWidth, height: outHeight };
}

/**
 * The linear kernel, unseparated: four source pixels per output pixel, no
 * intermediate buffer. Twice as fast as the generic separable path, and
 * detection resizes every image with it (resizeBilinear).
 */
function resampleLinear(
  src: RgbImage,
  region: RegionXywh,
  outWidth: number,
  outHeight: number,
  fill: readonly [number, number, number] | readonly number[],
): RgbImage {
  const { data: s, width: W, height: H } = src;
  const xs = linearTaps(W, region.x, region.width, outWidth);
  const ys = linearTaps(H, region.y, region.height, outHeight);
  const out = new Uint8Array(outWidth * outHeight * 3);
  const fillRgb = [fill[0] ?? 0, fill[1] ?? 0, fill[2] ?? 0];
  let o = 0;
  for (let y = 0; y < outHeight; y++) {
    const r0 = ys.i0[y]! * W * 3,
      r1 = ys.i1[y]! * W * 3,
      fy = ys.f[y]!;
    const rowInside = ys.inside[y] === 1;
    for (let x = 0; x < outWidth; x++) {
      if (!rowInside || !xs.inside[x]) {
        (out[o++] = fillRgb[0]!), (out[o++] = fillRgb[1]!), (out[o++] = fillRgb[2]!);
        continue;
      }
      const x0 = xs.i0[x]! * 3,
        x1 = xs.i1[x]! * 3,
        fx = xs.f[x]!;
      for (let c = 0; c < 3; c++) {
        const top = s[r0 + x0 + c]! + (s[r0 + x1 + c]! - s[r0 + x0 + c]!) * fx;
        const bot = s[r1 + x0 + c]! + (s[r1 + x1 + c]! - s[r1 + x0 + c]!) * fx;
        out[o++] = Math.round(top + (bot - top) * fy);
      }
    }
  }
  return { data: out, width: outWidth, height: outHeight };
}

/** Per output index: the two source indices (edge-clamped), the weight of the second, and whether the centre is inside. */
function linearTaps(srcLen: number, start: number, span: number, outLen: number) {
  const i0 = new Int32Array(outLen),
    i1 = new Int32Array(outLen),
    f = new Float64Array(outLen);
  const inside = new Uint8Array(outLen);
  const scale = span / outLen;
  const last = srcLen - 1;
  for (let d = 0; d < outLen; d++) {
    const centre = start + (d + 0.5) * scale;
    inside[d] = centre >= 0 && centre <= srcLen ? 1 : 0;
    const c = centre - 0.5;
    const a = Math.floor(c);
    // Taps past an edge repeat the edge pixel (weights as if the image went on).
    const a0 = a < 0 ? 0 : a > last ? last : a;
    const a1 = a + 1 < 0 ? 0 : a + 1 > last ? last : a + 1;
    i0[d] = a0;
    i1[d] = a1;
    f[d] = c - a;
  }
  return { i0, i1, f, inside };
}

/** Plain resize of the whole image (no crop). */
export function resizeWith(src: RgbImage, width: number, height: number, interp: Interpolation): RgbImage {
  return resampleRegion(src, { x: 0, y: 0, width: src.width, height: src.height }, width, height, interp);
}

function clamp8(v: number): number {
  // Round half up; Uint8Array assignment truncates, so add 0.5 after clamping.
  return v <= 0 ? 0 : v >= 255 ? 255 : (v + 0.5) | 0;
}

/** Taps of the separable kernels; linear has its own direct path (resampleLinear). */
function axisTaps(srcLen: number, start: number, span: number, outLen: number, interp: Exclude<Interpolation, 'linear'>): AxisTaps {
  const scale = span / outLen;
  let taps: number;
  switch (interp) {
    case 'nearest':
      taps = 1;
      break;
    case 'cubic':
      taps = 4;
      break;
    case 'lanczos4':
      taps = 8;
      break;
    case 'area':
      taps = Math.ceil(scale) + 2;
      break;
  }
  const idx = new Int32Array(outLen * taps);
  const w = new Float32Array(outLen * taps);
  const inside = new Uint8Array(outLen);
  const last = srcLen - 1;
  const clampIdx = (i: number) => (i < 0 ? 0 : i > last ? last : i);
  const kw = new Float64Array(taps);
  for (let d = 0; d < outLen; d++) {
    const centre = start + (d + 0.5) * scale; // continuous coordinate, pixel i covers [i, i+1)
    inside[d] = centre >= 0 && centre <= srcLen ? 1 : 0;
    const base = d * taps;
    if (interp === 'nearest') {
      idx[base] = clampIdx(Math.floor(start + d * scale));
      w[base] = 1;
      continue;
    }
    if (interp === 'area') {
      // Box filter: weight = overlap of source pixel with [lo, hi), normalised. For
      // upscaling (scale < 1) this is OpenCV's INTER_AREA enlargement rule too.
      const lo = start + d * scale;
      const hi = lo + scale;
      const first = Math.floor(lo);
      let sum = 0;
      for (let k = 0; k < taps; k++) {
        const i = first + k;
        const ov = Math.max(0, Math.min(hi, i + 1) - Math.max(lo, i));
        kw[k] = ov;
        sum += ov;
      }
      for (let k = 0; k < taps; k++) {
        idx[base + k] = clampIdx(first + k);
        w[base + k] = sum > 0 ? kw[k]! / sum : k === 0 ? 1 : 0;
      }
      continue;
    }
    const c = centre - 0.5; // source sample position in pixel-index units
    const i0 = Math.floor(c);
    const f = c - i0;
    const firstTap = i0 - (taps / 2 - 1);
    let sum = 0;
    for (let k = 0; k < taps; k++) {
      const dist = f + (taps / 2 - 1) - k; // distance from the sample point to tap k (signed)
      const v = interp === 'cubic' ? cubic(dist) : lanczos4(dist);
      kw[k] = v;
      sum += v;
    }
    for (let k = 0; k < taps; k++) {
      idx[base + k] = clampIdx(firstTap + k);
      w[base + k] = kw[k]! / sum;
    }
  }
  return { taps, idx, w, inside };
}

/** Keys' cubic convolution kernel with a = -0.75 (OpenCV's choice). */
function cubic(x: number): number {
  const a = -0.75;
  const t = Math.abs(x);
  if (t <= 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
  return 0;
}

/** Lanczos window of 4 lobes: sinc(x) sinc(x / 4) on |x| < 4. */
function lanczos4(x: number): number {
  if (x === 0) return 1;
  if (Math.abs(x) >= 4) return 0;
  const px = Math.PI * x;
  return (4 * Math.sin(px) * Math.sin(px / 4)) / (px * px);
}
