/**
 * S3FD training augmentation: one decoded image + its faces in, one square
 * network input + normalised face boxes out, every random choice drawn from
 * the caller's seeded Rng (same seed, same sample).
 *
 * Pipeline (defaults = the paper / released code):
 *  1. Photometric distortion (photometric.ts) on the whole image.
 *  2. Geometry, one of
 *     - data-anchor-sampling (probability 0.5): pick a face; take the anchor
 *       size nearest to sqrt(face area), choose a target uniformly among the
 *       anchor sizes up to one above it; rescale the image so the face side
 *       becomes target * 2^U(-1,1); take a `size` x `size` window that contains
 *       the face (or, along an axis where the rescaled image is smaller than the
 *       window, contains the whole image), mean colour outside the image;
 *     - otherwise an SSD-style square crop: side U(0.3, 1) x the shorter image
 *       side at a uniform position, up to 50 tries until one contains at least
 *       one face entirely; if none does, the whole image (squashed to square,
 *       as the reference does).
 *     Faces whose centres fall inside the window are kept, clipped to it.
 *  3. Resize to `size` x `size` with a kernel drawn from `interpolations`
 *     (fused with step 2: only the window is ever resampled).
 *  4. Faces narrower or shorter than `minFaceSize` output pixels are dropped;
 *     if no face is left, step 2 is redrawn (up to `retries` times), then the
 *     whole image is used whatever remains.
 *  5. Horizontal flip with probability 0.5.
 *  6. Mean subtraction, CHW float32 (toNetworkInput).
 *
 * The anchor-sampling window is `size` (the training size) rather than a fixed
 * 640: the point of the step is to give faces anchor-sized extents in network
 * pixels, and at the default size 640 the two are the same.
 *
 * Boxes: input xyxy in source pixels; output xyxy in output pixels
 * (augmentSample) or normalised 0..1 (augment). N = 0 is allowed throughout.
 * No node: imports.
 */
import { ANCHOR_SIZES } from '@extd/core/anchors/priors';
import { RGB_MEAN, type RgbImage, toNetworkInput } from '@extd/core/image/types';

export { toNetworkInput };
import type { Rng } from '@extd/core/utils/rng';
import { INTERPOLATIONS, resampleRegion, type Interpolation, type RegionXywh } from '@extd/core/image/interp';
import { PHOTOMETRIC_DEFAULTS, photometricDistort, type PhotometricOptions, type PhotometricStep } from './photometric.js';

export interface AugmentOptions {
  /** Output side in pixels (square). */
  size: number;
  /** Photometric distortion settings, or false to skip it. */
  photometric: PhotometricOptions | false;
  /** Probability of data-anchor-sampling instead of the square random crop. */
  anchorSamplingProb: number;
  /** Anchor sides in network pixels that data-anchor-sampling targets. */
  anchorSizes: readonly number[];
  /** Square crop side range, as a fraction of the shorter image side. */
  cropMinScale: number;
  cropMaxScale: number;
  /** Attempts at a square crop that fully contains a face. */
  cropTries: number;
  /** Faces smaller than this (width or height, output pixels) are dropped. */
  minFaceSize: number;
  /** Probability of a horizontal flip. */
  flipProb: number;
  /** Kernels the resize picks from uniformly. */
  interpolations: readonly Interpolation[];
  /** Per-channel RGB mean: padding colour and value subtracted for the network. */
  mean: readonly [number, number, number];
  /** Redraws of the geometry when it leaves no face. */
  retries: number;
}

export const AUGMENT_DEFAULTS: Readonly<AugmentOptions> = Object.freeze({
  size: 640,
  photometric: PHOTOMETRIC_DEFAULTS,
  anchorSamplingProb: 0.5,
  anchorSizes: ANCHOR_SIZES,
  cropMinScale: 0.3,
  cropMaxScale: 1,
  cropTries: 50,
  minFaceSize: 6,
  flipProb: 0.5,
  interpolations: INTERPOLATIONS,
  mean: RGB_MEAN,
  retries: 10,
});

/** The geometric part of one augmentation: which source rectangle becomes the output. */
export interface GeometryPlan {
  mode: 'anchor' | 'crop' | 'full';
  /** Source rectangle (pixels, may extend outside the image for 'anchor'). */
  region: RegionXywh;
}

export interface AugmentInfo extends GeometryPlan {
  interp: Interpolation;
  flipped: boolean;
  photometric: PhotometricStep[];
  /** Geometry redraws needed because a plan kept no face. */
  retries: number;
}

export interface AugmentedImage {
  /** size x size RGB. */
  image: RgbImage;
  /** n x 4, xyxy in output pixels. */
  boxes: Float32Array;
  info: AugmentInfo;
}

export interface AugmentedSample {
  /** 3 x size x size, mean-subtracted RGB planes. */
  input: Float32Array;
  /** n x 4, xyxy normalised 0..1 by the output size. */
  boxes: Float32Array;
  info: AugmentInfo;
}

/** Full pipeline to network input: augmentImage + toNetworkInput + box normalisation. */
export function augment(image: RgbImage, boxesXyxyPx: Float32Array, rng: Rng, options: Partial<AugmentOptions> = {}): AugmentedSample {
  const o = { ...AUGMENT_DEFAULTS, ...options };
  const r = augmentImage(image, boxesXyxyPx, rng, o);
  const boxes = r.boxes;
  for (let i = 0; i < boxes.length; i++) boxes[i] = boxes[i]! / o.size;
  return { input: toNetworkInput(r.image, o.mean), boxes, info: r.info };
}

/** Steps 1-5: the augmented pixels and boxes in output pixels (drawable). */
export function augmentImage(image: RgbImage, boxesXyxyPx: Float32Array, rng: Rng, options: Partial<AugmentOptions> = {}): AugmentedImage {
  const o = { ...AUGMENT_DEFAULTS, ...options };
  validate(image, boxesXyxyPx, o);
  const S = o.size;
  const boxes = clipToImage(boxesXyxyPx, image.width, image.height);

  let src = image;
  let photometric: PhotometricStep[] = [];
  if (o.photometric) {
    src = { data: image.data.slice(), width: image.width, height: image.height };
    photometric = photometricDistort(src, rng, o.photometric);
  }

  let plan: GeometryPlan | undefined;
  let out: Float32Array = new Float32Array(0);
  let retries = 0;
  for (let attempt = 0; attempt <= o.retries; attempt++) {
    const p =
      boxes.length > 0 && rng.float() < o.anchorSamplingProb
        ? planAnchorSampling(image.width, image.height, boxes, rng, S, o.anchorSizes)
        : planSquareCrop(image.width, image.height, boxes, rng, o.cropMinScale, o.cropMaxScale, o.cropTries);
    const kept = dropSmallBoxes(projectBoxes(boxes, p.region, S, S), o.minFaceSize);
    if (kept.length > 0 || boxes.length === 0) {
      plan = p;
      out = kept;
      break;
    }
    retries++;
  }
  if (!plan) {
    plan = { mode: 'full', region: { x: 0, y: 0, width: image.width, height: image.height } };
    out = dropSmallBoxes(projectBoxes(boxes, plan.region, S, S), o.minFaceSize);
  }

  const interp = o.interpolations.length === 1 ? o.interpolations[0]! : rng.pick(o.interpolations);
  const resampled = resampleRegion(src, plan.region, S, S, interp, o.mean);
  const flipped = rng.float() < o.flipProb;
  if (flipped) {
    flipImageInPlace(resampled);
    flipBoxesXyxy(out, S);
  }
  return { image: resampled, boxes: out, info: { ...plan, interp, flipped, photometric, retries } };
}

/**
 * Data-anchor-sampling geometry for an image of W x H with faces `boxes`
 * (xyxy px, at least one). The returned region is in source pixels; mapping it
 * to size x size realises the rescale-then-window of the recipe.
 */
export function planAnchorSampling(
  W: number,
  H: number,
  boxes: Float32Array,
  rng: Rng,
  size: number,
  anchorSizes: readonly number[] = ANCHOR_SIZES,
): GeometryPlan {
  const n = boxes.length / 4;
  if (n === 0) throw new Error('planAnchorSampling needs at least one face');
  const f = rng.int(n);
  const x1 = boxes[4 * f]!,
    y1 = boxes[4 * f + 1]!,
    x2 = boxes[4 * f + 2]!,
    y2 = boxes[4 * f + 3]!;
  const side = Math.sqrt(Math.max((x2 - x1) * (y2 - y1), 1e-6));
  let nearest = 0;
  for (let a = 1; a < anchorSizes.length; a++) {
    if (Math.abs(anchorSizes[a]! - side) < Math.abs(anchorSizes[nearest]! - side)) nearest = a;
  }
  const top = Math.min(nearest + 1, anchorSizes.length - 1);
  const target = anchorSizes[rng.int(top + 1)]!;
  const ratio = (target / side) * Math.pow(2, rng.uniform(-1, 1));
  // Window offsets in the rescaled frame, one axis at a time.
  const ox = windowOffset(W * ratio, x1 * ratio, (x2 - x1) * ratio, size, rng);
  const oy = windowOffset(H * ratio, y1 * ratio, (y2 - y1) * ratio, size, rng);
  return { mode: 'anchor', region: { x: ox / ratio, y: oy / ratio, width: size / ratio, height: size / ratio } };
}

/** Start of a window of length `win` on an axis of length `extent` holding a face at [a, a + len]. */
function windowOffset(extent: number, a: number, len: number, win: number, rng: Rng): number {
  if (extent <= win) return rng.uniform(extent - win, 0); // the window holds the whole axis
  if (len <= win) return rng.uniform(a + len - win, a); // the window holds the face
  return rng.uniform(a, a + len - win); // face larger than the window: window inside the face
}

/**
 * SSD-style square crop: side U(minScale, maxScale) x min(W, H), uniform
 * position inside the image, accepted when it contains at least one face
 * entirely; after `tries` failures (or with no faces) the whole image.
 */
export function planSquareCrop(
  W: number,
  H: number,
  boxes: Float32Array,
  rng: Rng,
  minScale = AUGMENT_DEFAULTS.cropMinScale,
  maxScale = AUGMENT_DEFAULTS.cropMaxScale,
  tries = AUGMENT_DEFAULTS.cropTries,
): GeometryPlan {
  const n = boxes.length / 4;
  const short = Math.min(W, H);
  for (let t = 0; t < tries && n > 0; t++) {
    const side = rng.uniform(minScale, maxScale) * short;
    const x = rng.uniform(0, W - side);
    const y = rng.uniform(0, H - side);
    for (let i = 0; i < n; i++) {
      if (boxes[4 * i]! >= x && boxes[4 * i + 1]! >= y && boxes[4 * i + 2]! <= x + side && boxes[4 * i + 3]! <= y + side) {
        return { mode: 'crop', region: { x, y, width: side, height: side } };
      }
    }
  }
  return { mode: 'full', region: { x: 0, y: 0, width: W, height: H } };
}

/**
 * Faces (xyxy, source px) whose centres lie strictly inside `region`, clipped
 * to it and mapped to an outW x outH output (xyxy, output px).
 */
export function projectBoxes(boxes: Float32Array, region: RegionXywh, outW: number, outH: number): Float32Array {
  const n = boxes.length / 4;
  const sx = outW / region.width;
  const sy = outH / region.height;
  const rx2 = region.x + region.width;
  const ry2 = region.y + region.height;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x1 = boxes[4 * i]!,
      y1 = boxes[4 * i + 1]!,
      x2 = boxes[4 * i + 2]!,
      y2 = boxes[4 * i + 3]!;
    const cx = (x1 + x2) / 2;
    const cy = (y1 + y2) / 2;
    if (!(cx > region.x && cx < rx2 && cy > region.y && cy < ry2)) continue;
    out.push(
      (Math.max(x1, region.x) - region.x) * sx,
      (Math.max(y1, region.y) - region.y) * sy,
      (Math.min(x2, rx2) - region.x) * sx,
      (Math.min(y2, ry2) - region.y) * sy,
    );
  }
  return new Float32Array(out);
}

/** Keep boxes (xyxy) at least `minSize` wide and high. */
export function dropSmallBoxes(boxes: Float32Array, minSize: number): Float32Array {
  const out: number[] = [];
  for (let i = 0; i < boxes.length; i += 4) {
    if (boxes[i + 2]! - boxes[i]! >= minSize && boxes[i + 3]! - boxes[i + 1]! >= minSize) {
      out.push(boxes[i]!, boxes[i + 1]!, boxes[i + 2]!, boxes[i + 3]!);
    }
  }
  return new Float32Array(out);
}

/** Mirror boxes (xyxy) in place for an image `width` wide (pixels or 1 for normalised). */
export function flipBoxesXyxy(boxes: Float32Array, width: number): Float32Array {
  for (let i = 0; i < boxes.length; i += 4) {
    const x1 = boxes[i]!;
    boxes[i] = width - boxes[i + 2]!;
    boxes[i + 2] = width - x1;
  }
  return boxes;
}

function flipImageInPlace(img: RgbImage): void {
  const { data, width, height } = img;
  for (let y = 0; y < height; y++) {
    let l = y * width * 3;
    let r = l + (width - 1) * 3;
    while (l < r) {
      for (let c = 0; c < 3; c++) {
        const t = data[l + c]!;
        data[l + c] = data[r + c]!;
        data[r + c] = t;
      }
      l += 3;
      r -= 3;
    }
  }
}

/** Clip boxes (xyxy px) to the image and drop the ones left empty. */
function clipToImage(boxes: Float32Array, W: number, H: number): Float32Array {
  const out: number[] = [];
  for (let i = 0; i < boxes.length; i += 4) {
    const x1 = Math.max(0, boxes[i]!),
      y1 = Math.max(0, boxes[i + 1]!);
    const x2 = Math.min(W, boxes[i + 2]!),
      y2 = Math.min(H, boxes[i + 3]!);
    if (x2 > x1 && y2 > y1) out.push(x1, y1, x2, y2);
  }
  return new Float32Array(out);
}

function validate(image: RgbImage, boxes: Float32Array, o: AugmentOptions): void {
  if (image.data.length !== image.width * image.height * 3 || image.width <= 0 || image.height <= 0) {
    throw new Error(`augment: image data has ${image.data.length} bytes, expected ${image.width} x ${image.height} x 3 (non-empty)`);
  }
  if (boxes.length % 4 !== 0) throw new Error(`augment: boxes has ${boxes.length} values, expected n x 4 (xyxy)`);
  if (!Number.isInteger(o.size) || o.size < 16) throw new Error(`augment: size ${o.size} must be an integer >= 16`);
  if (o.interpolations.length === 0) throw new Error('augment: interpolations must not be empty');
}
