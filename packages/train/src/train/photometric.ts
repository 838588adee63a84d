/**
 * S3FD photometric distortion: brightness, contrast, saturation and hue, each
 * applied with probability 0.5, in one of two orders chosen at random
 * (brightness, contrast, saturation, hue  or  brightness, saturation, hue,
 * contrast), as the released training code does.
 *
 * The enhancers follow PIL's ImageEnhance definitions, because that is what
 * the factors were tuned with: each blends the image with a "degenerate"
 * version, out = degenerate + factor * (image - degenerate), truncated to
 * 0..255:
 *   - brightness: degenerate = black;
 *   - contrast:   degenerate = uniform grey at the mean luma of the image
 *                 (rounded to an integer);
 *   - saturation: degenerate = the image's own luma (grey version).
 * Luma is PIL's "L" conversion: (R*19595 + G*38470 + B*7471 + 2^15) >> 16.
 * Hue: convert to PIL's 8-bit HSV (all channels 0..255), add the shift to H
 * modulo 256, convert back.
 *
 * Works in place on a copy the caller owns; no node: imports.
 */
import type { RgbImage } from '@extd/core/image/types';
import type { Rng } from '@extd/core/utils/rng';

export interface PhotometricOptions {
  /** Probability of each of the four distortions. */
  prob: number;
  /** Brightness factor drawn from 1 +- brightnessDelta. */
  brightnessDelta: number;
  /** Contrast factor drawn from [contrastLower, contrastUpper). */
  contrastLower: number;
  contrastUpper: number;
  /** Saturation factor drawn from [saturationLower, saturationUpper). */
  saturationLower: number;
  saturationUpper: number;
  /** Hue shift drawn from +-hueDelta, on the 0..255 hue circle. */
  hueDelta: number;
}

/** The released S3FD/EXTD training values. */
export const PHOTOMETRIC_DEFAULTS: Readonly<PhotometricOptions> = Object.freeze({
  prob: 0.5,
  brightnessDelta: 0.125,
  contrastLower: 0.5,
  contrastUpper: 1.5,
  saturationLower: 0.5,
  saturationUpper: 1.5,
  hueDelta: 18,
});

/** What was applied, in order (for logs and tests). */
export type PhotometricStep =
  | { op: 'brightness'; factor: number }
  | { op: 'contrast'; factor: number }
  | { op: 'saturation'; factor: number }
  | { op: 'hue'; delta: number };

/**
 * Distort `image.data` in place with random draws from `rng`; returns the
 * steps applied. Every coin is drawn whether or not an earlier one fired, so
 * the number of draws depends only on which steps fire.
 */
export function photometricDistort(image: RgbImage, rng: Rng, options: Partial<PhotometricOptions> = {}): PhotometricStep[] {
  const o = { ...PHOTOMETRIC_DEFAULTS, ...options };
  const steps: PhotometricStep[] = [];
  const order: Array<PhotometricStep['op']> =
    rng.float() > 0.5 ? ['brightness', 'contrast', 'saturation', 'hue'] : ['brightness', 'saturation', 'hue', 'contrast'];
  for (const op of order) {
    if (!(rng.float() < o.prob)) continue;
    switch (op) {
      case 'brightness': {
        const factor = rng.uniform(1 - o.brightnessDelta, 1 + o.brightnessDelta);
        adjustBrightness(image, factor);
        steps.push({ op, factor });
        break;
      }
      case 'contrast': {
        const factor = rng.uniform(o.contrastLower, o.contrastUpper);
        adjustContrast(image, factor);
        steps.push({ op, factor });
        break;
      }
      case 'saturation': {
        const factor = rng.uniform(o.saturationLower, o.saturationUpper);
        adjustSaturation(image, factor);
        steps.push({ op, factor });
        break;
      }
      case 'hue': {
        const delta = rng.uniform(-o.hueDelta, o.hueDelta);
        shiftHue(image, delta);
        steps.push({ op, delta });
        break;
      }
    }
  }
  return steps;
}

/** PIL's Image.blend on 8 bits: float blend, truncated toward zero, clamped. */
function blend8(degenerate: number, value: number, factor: number): number {
  const v = degenerate + factor * (value - degenerate);
  return v <= 0 ? 0 : v >= 255 ? 255 : v | 0;
}

/** PIL "L" luma of one RGB pixel. */
export function luma(r: number, g: number, b: number): number {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
}

/** blend8 for every 8-bit value against a fixed degenerate value, as a lookup table. */
function blendTable(degenerate: number, factor: number): Uint8Array {
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = blend8(degenerate, v, factor);
  return lut;
}

/** ImageEnhance.Brightness(factor): blend with black. */
export function adjustBrightness(image: RgbImage, factor: number): void {
  const d = image.data;
  const lut = blendTable(0, factor);
  for (let i = 0; i < d.length; i++) d[i] = lut[d[i]!]!;
}

/** ImageEnhance.Contrast(factor): blend with a uniform grey at the rounded mean luma. */
export function adjustContrast(image: RgbImage, factor: number): void {
  const d = image.data;
  const n = image.width * image.height;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += (d[3 * i]! * 19595 + d[3 * i + 1]! * 38470 + d[3 * i + 2]! * 7471 + 0x8000) >>> 16;
  const mean = n > 0 ? Math.floor(sum / n + 0.5) : 0;
  const lut = blendTable(mean, factor);
  for (let i = 0; i < d.length; i++) d[i] = lut[d[i]!]!;
}

/** ImageEnhance.Color(factor): blend each pixel with its own luma. */
export function adjustSaturation(image: RgbImage, factor: number): void {
  const d = image.data;
  const n = image.width * image.height;
  // Table indexed by (luma << 8) | value: 64 KiB, built once per call.
  const lut = new Uint8Array(65536);
  for (let l = 0; l < 256; l++) for (let v = 0; v < 256; v++) lut[(l << 8) | v] = blend8(l, v, factor);
  for (let i = 0; i < n; i++) {
    const j = 3 * i;
    const l = ((d[j]! * 19595 + d[j + 1]! * 38470 + d[j + 2]! * 7471 + 0x8000) >>> 16) << 8;
    d[j] = lut[l | d[j]!]!;
    d[j + 1] = lut[l | d[j + 1]!]!;
    d[j + 2] = lut[l | d[j + 2]!]!;
  }
}

/**
 * Shift hue by `delta` on PIL's 0..255 hue scale. The shifted 8-bit hue is
 * (h + round(delta)) mod 256; the round trip through 8-bit HSV is lossy, as in PIL.
 */
export function shiftHue(image: RgbImage, delta: number): void {
  const d = image.data;
  const n = image.width * image.height;
  const hsv = new Uint8Array(3);
  const shift = Math.round(delta);
  // Cache per colour: photos repeat colours a lot, and the HSV round trip is the slow part.
  const cacheKey = new Int32Array(4096).fill(-1);
  const cacheVal = new Int32Array(4096);
  for (let i = 0; i < n; i++) {
    const j = 3 * i;
    const r = d[j]!,
      g = d[j + 1]!,
      b = d[j + 2]!;
    if (r === g && g === b) continue; // grey: no hue, the round trip returns the pixel unchanged
    const key = (r << 16) | (g << 8) | b;
    const slot = (Math.imul(key, 0x9e3779b1) >>> 20) & 4095;
    if (cacheKey[slot] === key) {
      const v = cacheVal[slot]!;
      d[j] = v >>> 16;
      d[j + 1] = (v >>> 8) & 255;
      d[j + 2] = v & 255;
      continue;
    }
    rgbToHsv8(r, g, b, hsv);
    if (hsv[1] !== 0) hsv8ToRgb((hsv[0]! + shift) & 255, hsv[1]!, hsv[2]!, d, j);
    cacheKey[slot] = key;
    cacheVal[slot] = (d[j]! << 16) | (d[j + 1]! << 8) | d[j + 2]!;
  }
}

const f32 = Math.fround;

/**
 * PIL's RGB -> HSV, all three channels 0..255. PIL computes in C floats; the
 * f32() roundings reproduce its results on edge cases such as pure green
 * (hue 1/3 x 255 is 84.99999 in doubles but 85 in PIL).
 */
export function rgbToHsv8(r: number, g: number, b: number, out: Uint8Array): void {
  const maxc = Math.max(r, g, b);
  const minc = Math.min(r, g, b);
  if (maxc === minc) {
    out[0] = 0;
    out[1] = 0;
    out[2] = maxc;
    return;
  }
  const cr = maxc - minc;
  const s = f32(cr / maxc);
  const rc = f32((maxc - r) / cr);
  const gc = f32((maxc - g) / cr);
  const bc = f32((maxc - b) / cr);
  let h: number;
  if (r === maxc) h = f32(bc - gc);
  else if (g === maxc) h = f32(2 + rc - bc);
  else h = f32(4 + gc - rc);
  h = f32((h / 6 + 1) % 1);
  out[0] = Math.min(255, Math.max(0, Math.trunc(h * 255)));
  out[1] = Math.min(255, Math.max(0, Math.trunc(s * 255)));
  out[2] = maxc;
}

/** PIL's HSV -> RGB (inverse of rgbToHsv8 up to 8-bit rounding), written at out[at..at+2]. */
export function hsv8ToRgb(h: number, s: number, v: number, out: Uint8Array, at: number): void {
  if (s === 0) {
    out[at] = v;
    out[at + 1] = v;
    out[at + 2] = v;
    return;
  }
  const i = Math.floor((h * 6) / 255);
  const f = f32((h * 6) / 255 - i);
  const fs = f32(s / 255);
  const p = clampRound(v * (1 - fs));
  const q = clampRound(v * (1 - f32(fs * f)));
  const t = clampRound(v * (1 - fs * (1 - f)));
  let r: number, g: number, b: number;
  switch (i % 6) {
    case 0:
      r = v;
      g = t;
      b = p;
      break;
    case 1:
      r = q;
      g = v;
      b = p;
      break;
    case 2:
      r = p;
      g = v;
      b = t;
      break;
    case 3:
      r = p;
      g = q;
      b = v;
      break;
    case 4:
      r = t;
      g = p;
      b = v;
      break;
    default:
      r = v;
      g = p;
      b = q;
      break;
  }
  out[at] = r;
  out[at + 1] = g;
  out[at + 2] = b;
}

function clampRound(x: number): number {
  const v = Math.round(x);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}
