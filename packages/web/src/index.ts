/**
 * @extd/web: EXTD face detection in the browser, on extd's own kernels
 * compiled to WebAssembly (float32, src/runtime/wasm-kernels.ts) or on
 * onnxruntime-web (int8, WebGPU, or where the kernels' files are not served).
 *
 *   import { createDetector } from '@extd/web';
 *   const detector = await createDetector({ model: 'extd-64', wasmPaths: '/ort/' });
 *   const faces = await detector.detect(videoElement);   // [{ box: { x, y, width, height }, score }]
 *
 * The Detector class, pre- and post-processing, the model graph and the
 * weights parsers are the same modules the Node entry uses; only the
 * sessions (src/runtime/wasm-kernels.ts, src/runtime/ort-web.ts) and the
 * image reader (src/image/dom.ts) differ.
 * Nothing here imports a node: module.
 *
 * @packageDocumentation
 * @module @extd/web
 */
import { Detector, checkThreads, createDetectorWith, type Precision } from '@extd/core/detector';
import { checkCalibration, type Calibration } from '@extd/core/quantize/calibration';
import { DomImageReader, type DomImageInput } from './image/dom.js';
import { ortWebSessionFactory, type OrtWebInfo, type WebExecutionProvider } from './runtime/ort-web.js';
import { loadWasmKernels, wasmKernelsSessionFactory } from './runtime/wasm-kernels.js';
import { ExtdError } from '@extd/core/utils/errors';
import {
  BUNDLED_CALIBRATION_URLS,
  BUNDLED_MODEL_URLS,
  DEFAULT_MODEL_NAME,
  isBundledModelName,
  looksLikeModelName,
  unknownModelError,
  type BundledModelName,
} from '@extd/core/model/bundled';
import { modelFromTensors, type LoadedModel } from '@extd/core/weights/checkpoint';
import { readWeightsBytes } from '@extd/core/weights/format';

/**
 * A model as browser users give it: a bundled model name (`extd-32`, `extd-48`,
 * `extd-64`, `extd-32-scratch`), a URL (absolute or relative to the page; write
 * a relative URL that has no dot or slash as `./name`), the bytes of a
 * .safetensors/.pth file, or a loaded model.
 */
export type BrowserModelSource = string | URL | ArrayBuffer | Uint8Array | LoadedModel;

/** Options of the browser createDetector; defaults in BROWSER_DETECTOR_DEFAULTS. */
export interface BrowserDetectorOptions {
  /** The checkpoint: a bundled model name, URL, bytes or loaded model. Default: `extd-32`. */
  model: BrowserModelSource;
  /** Variant name, needed only for ReLU/LeakyReLU checkpoints without metadata (e.g. `extd-fpn-32-relu`). */
  variant: string | undefined;
  /**
   * wasm threads. Honoured only on cross-origin isolated pages (COOP/COEP
   * headers), otherwise 1. The wasm kernels use at most 4 (and at most the
   * core count); onnxruntime-web's count is fixed for the page by the first
   * detector created.
   */
  threads: number;
  /** Same-origin folder (e.g. '/ort/') serving onnxruntime-web's ort-wasm-simd-threaded*.{mjs,wasm}; undefined: next to onnxruntime's script. */
  wasmPaths:
    | string
    | {
        /** URL of onnxruntime-web's glue module (ort-wasm-simd-threaded*.mjs). */
        mjs: string;
        /** URL of its wasm binary (ort-wasm-simd-threaded*.wasm). */
        wasm: string;
      }
    | undefined;
  /** Preferred providers in order; 'webgpu' is skipped where navigator.gpu is missing, 'wasm' is always the fallback. */
  executionProviders: WebExecutionProvider[];
  /**
   * Run onnxruntime in a worker so the page stays responsive during
   * inference. The wasm kernels run on the calling thread, so `proxy: true`
   * selects onnxruntime-web (engine 'auto' included).
   */
  proxy: boolean;
  /**
   * 'float32' or 'int8' (static QDQ int8 from calibrated ranges, as in Node).
   * int8 needs `calibration` except for the bundled extd-32/48/64, whose
   * ranges ship in `models/` and are fetched next to the weights.
   */
  precision: Precision;
  /** int8 only: the URL of a calibration file from `extd quantize`, or its parsed content. */
  calibration: string | URL | Calibration | undefined;
  /**
   * What runs the network. 'auto': extd's own kernels compiled to
   * WebAssembly (src/runtime/wasm-kernels.ts) for float32 on the 'wasm'
   * provider, where their files are served; onnxruntime-web otherwise (int8,
   * WebGPU first in `executionProviders`, `proxy: true`, or the kernels
   * failing to load or refusing the model: `detector.kernelsError` says why). 'onnxruntime': onnxruntime-web alone.
   * `detector.engine` says what runs.
   */
  engine: BrowserEngine;
  /**
   * Same-origin folder URL ending in '/' (absolute, or relative to the
   * page) that serves the kernels' builds (`extd-kernels.{js,wasm,worker.js}`,
   * `extd-kernels-st.{js,wasm}` from this package's `wasm/` folder);
   * undefined: that folder, resolved next to this module (bundlers such as
   * Vite emit its files as assets in a production build).
   */
  kernelsPath: string | undefined;
}

/** Values of BrowserDetectorOptions.engine. */
export type BrowserEngine = 'auto' | 'onnxruntime';
/** Every value of BrowserDetectorOptions.engine. */
export const BROWSER_ENGINES: readonly BrowserEngine[] = ['auto', 'onnxruntime'];

/**
 * Defaults of BrowserDetectorOptions: model `extd-32`, 2 threads, the 'wasm'
 * provider, no proxy, float32, engine 'auto', the kernels from the package's
 * own `wasm/` folder, onnxruntime-web's files next to its script.
 */
export const BROWSER_DETECTOR_DEFAULTS: BrowserDetectorOptions = {
  model: DEFAULT_MODEL_NAME,
  variant: undefined,
  // Two threads: most of the speed-up on small models, and polite to the rest of the page.
  threads: 2,
  wasmPaths: undefined,
  executionProviders: ['wasm'],
  proxy: false,
  precision: 'float32',
  calibration: undefined,
  engine: 'auto',
  kernelsPath: undefined,
};

export interface BrowserDetector extends Detector<DomImageInput> {
  /** What onnxruntime-web runs on in this page (build, providers, threads); undefined while it is not loaded (the kernels run). */
  readonly runtime: OrtWebInfo | undefined;
  /**
   * Engine 'auto' only: why extd's wasm kernels do not run this detector
   * (e.g. their files were not served), or undefined when they do or were not asked.
   */
  readonly kernelsError: string | undefined;
}

/**
 * Fetch a checkpoint from a URL (same-origin or CORS-enabled) and check it against the model definition.
 * @throws ExtdError for a failed fetch, an HTTP status other than 200, or a bad checkpoint.
 */
export async function loadModelFromUrl(url: string | URL, variant?: string): Promise<LoadedModel> {
  const href = String(url);
  let response: Response;
  try {
    response = await fetch(href);
  } catch (e) {
    throw new ExtdError(`model URL ${href}: fetch failed (${(e as Error).message})`);
  }
  if (!response.ok) throw new ExtdError(`model URL ${href}: HTTP ${response.status} ${response.statusText}, expected 200`);
  return loadModelFromBytes(new Uint8Array(await response.arrayBuffer()), href, variant);
}

/**
 * Parse a .safetensors or PyTorch .pth checkpoint held in memory.
 * @throws ExtdError for an unrecognised or malformed file, or tensors that do not fit the model definition.
 */
export function loadModelFromBytes(bytes: Uint8Array | ArrayBuffer, source = 'model bytes', variant?: string): LoadedModel {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const { tensors, metadata } = readWeightsBytes(u8, source);
  return modelFromTensors(tensors, metadata, source, variant);
}

/**
 * Load a model given as a bundled name, URL, bytes or loaded model.
 * @throws ExtdError for an unknown model name (listing the names), a failed fetch or a bad checkpoint.
 */
export async function loadBrowserModel(model: BrowserModelSource, variant?: string): Promise<LoadedModel> {
  if (typeof model === 'string' && isBundledModelName(model)) return loadModelFromUrl(BUNDLED_MODEL_URLS[model](), variant);
  if (typeof model === 'string' && looksLikeModelName(model)) throw unknownModelError(model);
  if (typeof model === 'string' || model instanceof URL) return loadModelFromUrl(model, variant);
  if (model instanceof Uint8Array || model instanceof ArrayBuffer) return loadModelFromBytes(model, 'model bytes', variant);
  if (model && typeof model === 'object' && 'graph' in model && 'weights' in model) return model;
  throw new ExtdError(`model: unsupported value ${Object.prototype.toString.call(model)}, expected a URL string, an ArrayBuffer/Uint8Array or a loaded model`);
}

/**
 * Create a detector whose detect() takes DOM images, video frames, ImageData or raw pixels.
 * @throws ExtdError for an unknown model name, a failed fetch, a bad checkpoint, a bad `threads`,
 * `precision` or execution provider, and (int8) a missing or mismatched calibration.
 */
export async function createDetector(options: Partial<BrowserDetectorOptions> = {}): Promise<BrowserDetector> {
  const opts: BrowserDetectorOptions = { ...BROWSER_DETECTOR_DEFAULTS, ...options };
  if (opts.model === undefined) opts.model = DEFAULT_MODEL_NAME;
  if (!BROWSER_ENGINES.includes(opts.engine))
    throw new ExtdError(`engine must be one of ${BROWSER_ENGINES.map((e) => `'${e}'`).join(', ')}, got ${JSON.stringify(opts.engine)}`);
  const model = await loadBrowserModel(opts.model, opts.variant);
  const createSession = ortWebSessionFactory({ wasmPaths: opts.wasmPaths, executionProviders: opts.executionProviders, proxy: opts.proxy });
  const reader = new DomImageReader();
  let int8: { ranges: Calibration['ranges'] } | undefined;
  if (opts.precision === 'int8') int8 = { ranges: (await browserCalibration(opts.calibration, opts.model, model)).ranges };
  else if (opts.precision !== 'float32') throw new ExtdError(`precision must be 'float32' or 'int8', got ${JSON.stringify(opts.precision)}`);
  // The kernels: float32 where the CPU provider comes first.
  let createNative: ReturnType<typeof wasmKernelsSessionFactory> | undefined;
  let kernelsError: string | undefined;
  if (opts.engine === 'auto' && !int8 && (opts.executionProviders[0] ?? 'wasm') === 'wasm') {
    checkThreads(opts.threads);
    if (opts.proxy) {
      kernelsError = 'proxy: true runs onnxruntime-web in its worker (the wasm kernels run on the calling thread)';
    } else {
      try {
        createNative = wasmKernelsSessionFactory(await loadWasmKernels(opts.kernelsPath, opts.threads));
      } catch (e) {
        // ExtdError: a bad kernelsPath, the caller's mistake; anything else: the files did not load.
        if (e instanceof ExtdError) throw e;
        kernelsError = `the wasm kernels did not load: ${(e as Error).message}`;
      }
    }
  }
  const detector = await createDetectorWith(model, createSession, async (input: DomImageInput) => reader.read(input), opts.threads, int8, createNative);
  if (createNative?.refusal !== undefined) kernelsError = `the wasm kernels do not take this model: ${createNative.refusal}`;
  Object.defineProperty(detector, 'kernelsError', { value: kernelsError, enumerable: true });
  return Object.defineProperty(detector, 'runtime', {
    get: () => (detector.engine.startsWith('extd-kernels') ? undefined : createSession.info()),
    enumerable: true,
  }) as BrowserDetector;
}

/** The checked calibration for an int8 detector: given (URL or object), or the bundled model's own file. */
async function browserCalibration(given: string | URL | Calibration | undefined, source: BrowserModelSource, model: LoadedModel): Promise<Calibration> {
  if (given !== undefined && !(typeof given === 'string' || given instanceof URL)) return checkCalibration(given, model, 'object');
  const url = given ?? (typeof source === 'string' && isBundledModelName(source) ? BUNDLED_CALIBRATION_URLS[source]?.() : undefined);
  if (url === undefined) throw new ExtdError("precision 'int8' needs calibration ranges for this model: run 'extd quantize' and pass calibration: URL");
  const href = String(url);
  let response: Response;
  try {
    response = await fetch(href);
  } catch (e) {
    throw new ExtdError(`calibration ${href}: fetch failed (${(e as Error).message})`);
  }
  if (!response.ok) throw new ExtdError(`calibration ${href}: HTTP ${response.status} ${response.statusText}, expected 200`);
  let value: unknown;
  try {
    value = JSON.parse(await response.text());
  } catch (e) {
    throw new ExtdError(`calibration ${href}: not valid JSON (${(e as Error).message})`);
  }
  return checkCalibration(value, model, href);
}

export { Detector, DETECT_DEFAULTS, PASS_DEFAULTS, autoScale, toFaces } from '@extd/core/detector';
export type { Face, DetectOptions, PassOptions, Precision } from '@extd/core/detector';
export { checkCalibration, modelFingerprint, CALIBRATION_FORMAT, type Calibration } from '@extd/core/quantize/calibration';
export type { Detections } from '@extd/core/postprocess/detections';
export type { RgbImage } from '@extd/core/image/types';
export { DomImageReader, type DomImageInput, type RawPixels } from './image/dom.js';
export { ORT_WEB_DEFAULTS, ortWebInfo, resolveExecutionProviders, type OrtWebInfo, type WebExecutionProvider } from './runtime/ort-web.js';
export { modelFromTensors, type LoadedModel } from '@extd/core/weights/checkpoint';
export { readWeightsBytes } from '@extd/core/weights/format';
export { readSafetensors } from '@extd/core/weights/safetensors';
export { parseVariant, variantName, allVariants, type Variant } from '@extd/core/model/variant';
export {
  BUNDLED_MODEL_URLS,
  BUNDLED_CALIBRATION_URLS,
  BUNDLED_MODELS,
  BUNDLED_MODEL_NAMES,
  DEFAULT_MODEL_NAME,
  type BundledModel,
  type BundledModelName,
} from '@extd/core/model/bundled';
export { nmsXyxy, batchedNmsXyxy } from '@extd/core/postprocess/nms';
export { iouXyxy, boxIouXyxy } from '@extd/core/postprocess/boxes';
export { ExtdError } from '@extd/core/utils/errors';
