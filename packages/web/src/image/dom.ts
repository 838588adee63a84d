/**
 * Browser image inputs -> RgbImage (HxWx3 uint8), for the browser entry.
 *
 * Decoded sources (img, canvas, ImageBitmap, video, VideoFrame) are drawn
 * onto one canvas that is kept for the reader's lifetime and read back with
 * getImageData within the same synchronous call; pixel arrays (ImageData, raw
 * RGBA/RGB) are converted directly. Every read() returns a NEW RGB buffer:
 * detect() awaits between reading its input and running the network, so a
 * buffer reused across reads would let a second call in flight overwrite the
 * first one's pixels. (One frame's buffer is small next to the network's
 * work; getImageData allocates a fresh ImageData per call anyway.)
 */
import { ExtdError } from '@extd/core/utils/errors';
import { RGB_MEAN, type RgbImage } from '@extd/core/image/types';

/** Raw pixels, RGB (3 bytes/pixel) or RGBA (4 bytes/pixel, alpha ignored). */
export interface RawPixels {
  /** Pixels, rows top to bottom: width * height * 3 (RGB) or * 4 (RGBA) bytes. */
  data: Uint8Array | Uint8ClampedArray;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/** Everything `detect` accepts in the browser. */
export type DomImageInput = HTMLImageElement | HTMLCanvasElement | HTMLVideoElement | OffscreenCanvas | ImageBitmap | ImageData | VideoFrame | RawPixels;

type Ctx2D = CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D;

const has = (name: string): boolean => typeof (globalThis as Record<string, unknown>)[name] === 'function';

function describeInput(input: unknown): string {
  return Object.prototype.toString.call(input);
}

/** Pixel size of a drawable source, with a clear error for media that has not loaded yet. */
function sourceSize(input: CanvasImageSource | VideoFrame): { width: number; height: number } {
  if (has('HTMLImageElement') && input instanceof HTMLImageElement) {
    if (!input.complete || input.naturalWidth === 0) {
      throw new ExtdError(
        `image input '${input.currentSrc || input.src}' is not loaded (complete=${input.complete}, naturalWidth=${input.naturalWidth}); await img.decode() first`,
      );
    }
    return { width: input.naturalWidth, height: input.naturalHeight };
  }
  if (has('HTMLVideoElement') && input instanceof HTMLVideoElement) {
    // HAVE_CURRENT_DATA (2): a frame is available to draw.
    if (input.readyState < 2 || input.videoWidth === 0) {
      throw new ExtdError(`video input has no frame yet (readyState=${input.readyState}, needs >= 2); wait for 'loadeddata'`);
    }
    return { width: input.videoWidth, height: input.videoHeight };
  }
  if (has('VideoFrame') && input instanceof VideoFrame) return { width: input.displayWidth, height: input.displayHeight };
  const { width, height } = input as { width: number; height: number };
  return { width, height };
}

/**
 * Converts browser images to RgbImage, reusing its canvas (drawn and read
 * back synchronously, so calls may overlap). Each result owns its pixels.
 */
export class DomImageReader {
  private canvas: HTMLCanvasElement | OffscreenCanvas | undefined;
  private ctx: Ctx2D | undefined;

  /** Convert `input` to a new RgbImage. */
  read(input: DomImageInput): RgbImage {
    if (input === null || typeof input !== 'object') throw new TypeError(`detect: unsupported input ${describeInput(input)}`);
    if (has('ImageData') && input instanceof ImageData) return this.fromPixels(input, 'ImageData');
    if (isRawPixels(input)) return this.fromPixels(input, 'raw image');
    if (isDrawable(input)) return this.fromDrawable(input);
    throw new TypeError(
      `detect: unsupported input ${describeInput(input)} (expected HTMLImageElement, HTMLCanvasElement, HTMLVideoElement, OffscreenCanvas, ImageBitmap, ImageData, VideoFrame or { data, width, height })`,
    );
  }

  private output(width: number, height: number): Uint8Array {
    return new Uint8Array(width * height * 3);
  }

  private fromPixels(px: RawPixels, name: string): RgbImage {
    const { data, width, height } = px;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
      throw new ExtdError(`${name}: width and height must be positive integers, got ${width}x${height}`);
    }
    const n = width * height;
    const out = this.output(width, height);
    if (data.length === n * 3) {
      out.set(data);
    } else if (data.length === n * 4) {
      rgbaToRgb(data, out, n);
    } else {
      throw new ExtdError(`${name}: data has ${data.length} values, ${width}x${height} needs ${n * 3} (RGB) or ${n * 4} (RGBA)`);
    }
    return { data: out, width, height };
  }

  private fromDrawable(input: CanvasImageSource | VideoFrame): RgbImage {
    const { width, height } = sourceSize(input);
    if (!(width >= 1 && height >= 1)) throw new ExtdError(`image input ${describeInput(input)} has size ${width}x${height}, expected at least 1x1`);
    const ctx = this.context(width, height);
    // Transparent pixels become the training mean colour, as in the Node decoder.
    ctx.fillStyle = `rgb(${RGB_MEAN[0]}, ${RGB_MEAN[1]}, ${RGB_MEAN[2]})`;
    ctx.fillRect(0, 0, width, height);
    ctx.drawImage(input as CanvasImageSource, 0, 0, width, height);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    const out = this.output(width, height);
    rgbaToRgb(rgba, out, width * height);
    return { data: out, width, height };
  }

  private context(width: number, height: number): Ctx2D {
    if (!this.canvas) {
      this.canvas = has('OffscreenCanvas') ? new OffscreenCanvas(width, height) : document.createElement('canvas');
      // willReadFrequently keeps the canvas in CPU memory: we read every frame back.
      const ctx = this.canvas.getContext('2d', { willReadFrequently: true }) as Ctx2D | null;
      if (!ctx) throw new ExtdError('browser refused a 2D canvas context, needed to read image pixels');
      this.ctx = ctx;
    }
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    return this.ctx!;
  }
}

function rgbaToRgb(rgba: ArrayLike<number>, out: Uint8Array, n: number): void {
  for (let p = 0, i = 0, o = 0; p < n; p++, i += 4, o += 3) {
    out[o] = rgba[i]!;
    out[o + 1] = rgba[i + 1]!;
    out[o + 2] = rgba[i + 2]!;
  }
}

function isRawPixels(x: object): x is RawPixels {
  const r = x as Partial<RawPixels>;
  return (r.data instanceof Uint8Array || r.data instanceof Uint8ClampedArray) && typeof r.width === 'number' && typeof r.height === 'number';
}

function isDrawable(x: object): x is CanvasImageSource | VideoFrame {
  return (
    (has('HTMLImageElement') && x instanceof HTMLImageElement) ||
    (has('HTMLCanvasElement') && x instanceof HTMLCanvasElement) ||
    (has('HTMLVideoElement') && x instanceof HTMLVideoElement) ||
    (has('OffscreenCanvas') && x instanceof OffscreenCanvas) ||
    (has('ImageBitmap') && x instanceof ImageBitmap) ||
    (has('VideoFrame') && x instanceof VideoFrame) ||
    (has('SVGImageElement') && x instanceof SVGImageElement)
  );
}
