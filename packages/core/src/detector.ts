import { makePriors } from './anchors/priors.js';
import type { RgbImage } from './image/types.js';
import { RGB_MEAN, toNetworkInput } from './image/types.js';
import { resizeBilinear } from './image/resize.js';
import { AUTO_MAX_AREA, autoScale } from './image/shrink.js';
import { POSTPROCESS_DEFAULTS, postprocess, selectDetections, type Detections, type PostprocessOptions } from './postprocess/detections.js';
import { exportOnnx, type Int8ExportOptions } from './runtime/onnx-export.js';
import type { CreateNativeSession, CreateSession, InferenceSession } from './runtime/backend.js';
import type { LoadedModel } from './weights/checkpoint.js';
import type { Float32Tensor } from './utils/tensor.js';
import { ExtdError } from './utils/errors.js';
import { ReusePool } from './utils/pool.js';
import { variantName } from './model/variant.js';

/**
 * The platform-independent detector: preprocessing, one inference session
 * (onnxruntime on an exported ONNX graph, or a runtime's native engine),
 * priors and post-processing. The Node entry (index.ts) and the browser
 * entry (browser.ts) construct it with their own session factory and image
 * decoder; nothing here touches the filesystem or the DOM.
 */

/**
 * A detected face. `box` is in the input image's pixels (x, y = top-left
 * corner), clipped to the image: 0 <= x, x + width <= image width, and the
 * same for y and height.
 */
export interface Face {
  /** The face's box in input-image pixels (xywh: top-left corner, then size). */
  box: {
    /** Left edge, pixels from the image's left. */
    x: number;
    /** Top edge, pixels from the image's top. */
    y: number;
    /** Box width in pixels. */
    width: number;
    /** Box height in pixels. */
    height: number;
  };
  /** Face probability, 0..1 (`detect` returns only those above DetectOptions.scoreThreshold). */
  score: number;
}

/** Options of `Detector.detect`; defaults in DETECT_DEFAULTS. */
export interface DetectOptions {
  /** Report faces whose score is above this (0..1). */
  scoreThreshold: number;
  /** Suppress a box overlapping a higher-scoring one with IoU above this. */
  nmsThreshold: number;
  /**
   * Return at most this many faces, best first: the boxes NMS keeps. The same
   * limit as PostprocessOptions.maxFaces (S3FD's top_k, 750), under the
   * public name, used for it everywhere.
   */
  maxFaces: number;
  /**
   * Resize factor applied before the network. 'auto' shrinks large images to
   * about 1700x1200 pixels of area (min(1, sqrt(1700*1200 / (w*h)))), the
   * released models' single-scale evaluation setting; 1 runs at full size.
   * Small faces need scale >= 1; larger scales cost time quadratically.
   */
  scale: number | 'auto';
}

/** Defaults of DetectOptions: score > 0.5, NMS IoU 0.3, at most 750 faces, scale 'auto'. */
export const DETECT_DEFAULTS: DetectOptions = { scoreThreshold: 0.5, nmsThreshold: 0.3, maxFaces: 750, scale: 'auto' };

/** One network pass with the evaluation post-processing (score > 0.05, best 5000 into NMS 0.3, top 750 by default). */
export interface PassOptions extends PostprocessOptions {
  /** Resize factor applied (bilinear) before the network; boxes are mapped back. */
  scale: number;
}

/** Defaults of PassOptions: scale 1 and POSTPROCESS_DEFAULTS (score > 0.05, 5000 candidates, NMS 0.3, top 750). */
export const PASS_DEFAULTS: PassOptions = { scale: 1, ...POSTPROCESS_DEFAULTS };

// The 'auto' scale rule lives in image/shrink.ts (shared with the evaluation protocols).
export { AUTO_MAX_AREA, autoScale };

/**
 * Turns a runtime's image input (`I`: a path, bytes, a DOM element...) into
 * 8-bit RGB pixels; each package supplies its own. Rejects for inputs it cannot read.
 */
export type ImageDecoder<I> = (input: I) => Promise<RgbImage>;

/** Arithmetic of the network: float32, or static int8 (uint8 activations, int8 weights) from calibrated ranges. */
export type Precision = 'float32' | 'int8';

/**
 * Calls may overlap: `detect`, `detectPass` and `forward` keep no state
 * between calls that outlives an `await` (each call has its own input tensor
 * and outputs), so several calls in flight on one detector each get the
 * result of their own input. Whether the engine then runs them in parallel is
 * the backend's business: onnxruntime-node runs one at a time on the main
 * thread, the Node package's native kernels one at a time on a worker thread
 * (each call with its own output buffers), the browser's wasm kernels each
 * call synchronously when it is made (see @extd/web's
 * src/runtime/wasm-kernels.ts), and onnxruntime-web queued (its
 * src/runtime/ort-web.ts).
 */
export class Detector<I = RgbImage> {
  /** Priors per input size; read-only once made, so calls in flight may share them. */
  private priorsCache = new Map<string, Float32Array>();
  private disposed = false;
  /** Input buffers of settled runs, for reuse (see preprocess). */
  private readonly inputPool = new ReusePool<Float32Array>((b) => b.length);
  /** Calls in flight (detect, detectPass, forward), awaited by dispose() before the session is released. */
  private readonly running = new Set<Promise<unknown>>();

  constructor(
    /** The model (graph, weights, variant) the session was exported from. */
    readonly model: LoadedModel,
    private readonly session: InferenceSession,
    private readonly decode: ImageDecoder<I>,
    /** The network's arithmetic (see createDetectorWith). */
    readonly precision: Precision = 'float32',
    /**
     * What runs the network: 'onnxruntime' (onnxruntime-node or -web),
     * 'extd-kernels' (extd's own native kernels, Node; float32 or int8), or
     * 'extd-kernels-wasm' / 'extd-kernels-wasm-st' (the same kernels compiled
     * to WebAssembly, threaded or single-threaded; browser, float32).
     */
    readonly engine: string = 'onnxruntime',
  ) {}

  /** Canonical variant name, e.g. `extd-fpn-64-prelu`. */
  get variant(): string {
    return variantName(this.model.variant);
  }

  /**
   * Detect faces; see DetectOptions for the defaults. Boxes are clipped to
   * the image. Throws ExtdError for bad options or inputs, and after dispose().
   */
  async detect(input: I, options: Partial<DetectOptions> = {}): Promise<Face[]> {
    const opts = validateDetectOptions({ ...DETECT_DEFAULTS, ...options });
    return this.track(async () => {
      const image = await this.decode(input);
      const scale = opts.scale === 'auto' ? autoScale(image.width, image.height) : opts.scale;
      const d = await this.pass(image, {
        ...PASS_DEFAULTS,
        scale,
        scoreThreshold: opts.scoreThreshold,
        nmsThreshold: opts.nmsThreshold,
        maxFaces: opts.maxFaces,
      });
      return toFaces(d, { width: image.width, height: image.height });
    });
  }

  /**
   * One pass of the network on `image` resized by `scale` (bilinear), then
   * score threshold, NMS and the best `maxFaces`. Boxes are xyxy in the ORIGINAL image's
   * pixels, NOT clipped to the image (as the WIDER FACE evaluation expects);
   * every box and score is finite. This is the building block of the
   * evaluation protocols.
   */
  async detectPass(image: RgbImage, options: Partial<PassOptions> = {}): Promise<Detections> {
    const opts = { ...PASS_DEFAULTS, ...options };
    if (!(opts.scale > 0) || !Number.isFinite(opts.scale)) throw new ExtdError(`scale must be a positive number, got ${opts.scale}`);
    return this.track(() => this.pass(image, opts));
  }

  /**
   * Raw network outputs for an image at its own size: loc (P x 4) and conf
   * logits (P x 2), priors in src/anchors/priors.ts order.
   */
  async forward(image: RgbImage): Promise<{
    /** Box regression, flat P x 4 (dx, dy, dw, dh), decoded against the priors with VARIANCES. */
    loc: Float32Array;
    /** Class logits, flat P x 2 (background, face). */
    conf: Float32Array;
  }> {
    return this.track(async () => {
      const out = await this.run(image);
      return { loc: out.loc!.data, conf: out.conf!.data };
    });
  }

  /**
   * Release the onnxruntime session once the calls already started have
   * finished (they complete normally). Later calls of detect / detectPass /
   * forward throw ExtdError ('detector was disposed'). Calling it again does nothing.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await Promise.allSettled([...this.running]);
    await this.session.release();
  }

  /** Run a public call, refusing it after dispose() and letting dispose() wait for it. */
  private track<T>(call: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new ExtdError('detector was disposed; create a new one with createDetector()'));
    const p = call();
    this.running.add(p);
    const forget = () => this.running.delete(p);
    p.then(forget, forget);
    return p;
  }

  private async pass(image: RgbImage, opts: PassOptions): Promise<Detections> {
    let input = image;
    if (opts.scale !== 1) {
      const w = Math.max(1, Math.round(image.width * opts.scale));
      const h = Math.max(1, Math.round(image.height * opts.scale));
      input = resizeBilinear(image, w, h);
    }
    const out = await this.run(input);
    const d = postprocess(out.loc!.data, out.conf!.data, this.priors(input.height, input.width), input.width, input.height, opts);
    // The detections are new arrays: the raw outputs may serve a later run.
    this.session.recycle?.(out);
    // Map back with the actual per-axis ratio (rounding makes it differ slightly from `scale`).
    const sx = image.width / input.width,
      sy = image.height / input.height;
    let finite = true;
    for (let i = 0; i < d.boxes.length; i += 4) {
      (d.boxes[i]! *= sx), (d.boxes[i + 1]! *= sy), (d.boxes[i + 2]! *= sx), (d.boxes[i + 3]! *= sy);
      finite &&= Number.isFinite(d.boxes[i]! + d.boxes[i + 1]! + d.boxes[i + 2]! + d.boxes[i + 3]!);
    }
    // A box near float32's limit can overflow when scaled back up: drop it rather than return Infinity.
    return finite ? d : finiteDetections(d);
  }

  private async run(image: RgbImage): Promise<Record<string, Float32Tensor>> {
    // An engine that takes the pixels itself (the native kernels' stem reads them directly).
    if (this.session.runRgb) return this.session.runRgb(image, RGB_MEAN);
    const input = this.preprocess(image);
    try {
      return await this.session.run(input);
    } finally {
      // The engine has read the input once run() has settled: the buffer may serve a later call.
      this.inputPool.put(input.data);
    }
  }

  /**
   * One network run on a blank `width` x `height` image (default 64 x 64), so
   * that onnxruntime's lazy set-up (and, at a real frame size, its memory
   * arena) is paid here rather than by the first detect().
   */
  async warmUp(width = 64, height = 64): Promise<void> {
    await this.forward({ data: new Uint8Array(width * height * 3), width, height });
  }

  /**
   * RGB HxWx3 uint8 -> 1x3xHxW float32 minus the training mean, in a buffer
   * no other call in flight holds: onnxruntime-node reads its inputs after
   * run() has returned (its run defers to setImmediate), so a buffer shared
   * between calls would hand one call's run another call's pixels. Buffers
   * come back to `inputPool` when their run has settled (a fresh 3.7 MB
   * buffer per 640x480 frame cost about 2 ms of first-touch page faults).
   */
  private preprocess(image: RgbImage): { dtype: 'float32'; shape: number[]; data: Float32Array } {
    const size = 3 * image.width * image.height;
    const buffer = this.inputPool.take(size) ?? new Float32Array(size);
    return { dtype: 'float32', shape: [1, 3, image.height, image.width], data: toNetworkInput(image, undefined, buffer) };
  }

  private priors(h: number, w: number): Float32Array {
    const key = `${h}x${w}`;
    let p = this.priorsCache.get(key);
    if (!p) {
      if (this.priorsCache.size > 8) this.priorsCache.clear();
      p = makePriors(h, w);
      this.priorsCache.set(key, p);
    }
    return p;
  }
}

/**
 * The check createDetectorWith makes of its thread count, for a runtime that needs it earlier.
 * @throws ExtdError unless `threads` is a positive integer.
 */
export function checkThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1) throw new ExtdError(`threads must be a positive integer, got ${threads}`);
}

/**
 * Build a detector from a loaded model with the given session factory.
 * `int8`: activation ranges for the int8 graph (a checked calibration's
 * ranges); omitted: float32. `createNative`: a runtime's own engine, asked
 * for the network at that precision and used instead of `createSession` when
 * it returns a session (a native int8 engine may need no ranges; the ONNX
 * export, used when it returns null, does).
 */
export async function createDetectorWith<I>(
  model: LoadedModel,
  createSession: CreateSession,
  decode: ImageDecoder<I>,
  threads: number,
  int8?: Int8ExportOptions,
  createNative?: CreateNativeSession,
): Promise<Detector<I>> {
  checkThreads(threads);
  const precision: Precision = int8 ? 'int8' : 'float32';
  const native = createNative ? createNative(model.graph, model.weights, { threads, precision }) : null;
  if (native) return new Detector(model, native, decode, precision, native.name);
  const session = await createSession(exportOnnx(model.graph, model.weights, { int8: int8 ?? null }), { threads });
  return new Detector(model, session, decode, int8 ? 'int8' : 'float32');
}

/**
 * Detections (xyxy) -> Face objects (x, y, width, height). With `clipTo`,
 * boxes are clipped to [0, width] x [0, height] and boxes left with no area
 * are dropped; detect() always clips to the image.
 */
export function toFaces(d: Detections, clipTo?: { width: number; height: number }): Face[] {
  const faces: Face[] = [];
  const clip = (v: number, max: number) => (clipTo ? Math.min(Math.max(v, 0), max) : v);
  for (let i = 0; i < d.scores.length; i++) {
    const x1 = clip(d.boxes[i * 4]!, clipTo?.width ?? 0),
      y1 = clip(d.boxes[i * 4 + 1]!, clipTo?.height ?? 0);
    const x2 = clip(d.boxes[i * 4 + 2]!, clipTo?.width ?? 0),
      y2 = clip(d.boxes[i * 4 + 3]!, clipTo?.height ?? 0);
    if (clipTo && !(x2 > x1 && y2 > y1)) continue;
    faces.push({ box: { x: x1, y: y1, width: x2 - x1, height: y2 - y1 }, score: d.scores[i]! });
  }
  return faces;
}

/** The detections whose box coordinates and score are all finite, in order. */
function finiteDetections(d: Detections): Detections {
  const keep: number[] = [];
  for (let i = 0; i < d.scores.length; i++) {
    if (Number.isFinite(d.boxes[i * 4]! + d.boxes[i * 4 + 1]! + d.boxes[i * 4 + 2]! + d.boxes[i * 4 + 3]! + d.scores[i]!)) keep.push(i);
  }
  return selectDetections(d, keep);
}

function validateDetectOptions(o: DetectOptions): DetectOptions {
  const inUnit = (v: number) => typeof v === 'number' && v >= 0 && v <= 1;
  if (!inUnit(o.scoreThreshold)) throw new ExtdError(`scoreThreshold must be in 0..1, got ${o.scoreThreshold}`);
  if (!inUnit(o.nmsThreshold)) throw new ExtdError(`nmsThreshold must be in 0..1, got ${o.nmsThreshold}`);
  if (!Number.isInteger(o.maxFaces) || o.maxFaces < 1) throw new ExtdError(`maxFaces must be a positive integer, got ${o.maxFaces}`);
  if (o.scale !== 'auto' && !(typeof o.scale === 'number' && o.scale > 0 && Number.isFinite(o.scale))) {
    throw new ExtdError(`scale must be 'auto' or a positive number, got ${o.scale}`);
  }
  return o;
}

/**
 * Accept raw pixels `{ data, width, height }` as RGB (3 bytes/pixel) or RGBA
 * (4, alpha dropped). The pixels are always copied, so a caller may reuse its
 * buffer (the next video frame) as soon as detect() has been called.
 */
export function rawToRgb(raw: { data: ArrayLike<number> & { length: number }; width: number; height: number }, name = 'raw image'): RgbImage {
  const { data, width, height } = raw;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ExtdError(`${name}: width and height must be positive integers, got ${width}x${height}`);
  }
  const n = width * height;
  if (data.length === n * 3) {
    // A copy (the caller may reuse its buffer while detect() runs); from a typed array, a memcpy.
    return { data: new Uint8Array(data), width, height };
  }
  if (data.length === n * 4) {
    const rgb = new Uint8Array(n * 3);
    for (let p = 0; p < n; p++) (rgb[p * 3] = data[p * 4]!), (rgb[p * 3 + 1] = data[p * 4 + 1]!), (rgb[p * 3 + 2] = data[p * 4 + 2]!);
    return { data: rgb, width, height };
  }
  throw new ExtdError(`${name}: data has ${data.length} values, ${width}x${height} needs ${n * 3} (RGB) or ${n * 4} (RGBA)`);
}
