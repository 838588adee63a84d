/**
 * extd for Node: EXTD face detection on onnxruntime-node, images decoded by
 * sharp. Re-exports the documented API of `@extd/core`.
 *
 * ```ts
 * import { createDetector } from 'extd';
 * const detector = await createDetector({ model: 'extd-64' });   // or a .pth/.safetensors path
 * const faces = await detector.detect('photo.jpg');  // [{ box: { x, y, width, height }, score }]
 * ```
 *
 * @packageDocumentation
 * @module extd
 */
import { type Detector, createDetectorWith, rawToRgb } from '@extd/core/detector';
import { loadImageRgb } from './image/node.js';
import type { RgbImage } from '@extd/core/image/types';
import { loadModel, type ModelSource } from './load-model.js';
import { DEFAULT_MODEL_NAME } from '@extd/core/model/bundled';
import { ExtdError } from '@extd/core/utils/errors';
import type { LoadedModel } from '@extd/core/weights/checkpoint';
import { createOrtNodeSession } from './runtime/ort-node.js';
import { createNativeSession, onnxInt8WeightType } from './runtime/native-network.js';
import type { Precision } from '@extd/core/detector';
import { BUNDLED_MODELS, BUNDLED_MODEL_NAMES, defaultPrecisionOf, isBundledModelName, type BundledModelName } from '@extd/core/model/bundled';
import { bundledModelPath } from './load-model.js';
import { resolve } from 'node:path';
import { checkCalibration, type Calibration } from '@extd/core/quantize/calibration';
import { bundledCalibrationPath, readCalibrationFile } from './quantize/calibration-node.js';

/** What `detect` accepts in Node: a file path, an encoded image (JPEG/PNG/WebP...), or raw RGB/RGBA pixels. */
export type NodeImageInput =
  | string
  | Uint8Array
  | {
      /** Pixels, rows top to bottom: width * height * 3 (RGB) or * 4 (RGBA, alpha dropped) bytes. */
      data: Uint8Array | Uint8ClampedArray;
      /** Width in pixels. */
      width: number;
      /** Height in pixels. */
      height: number;
    };

/** Options of createDetector; defaults in CREATE_DETECTOR_DEFAULTS (model: `extd-32`). */
export interface CreateDetectorOptions {
  /**
   * A bundled model name (`extd-32`, `extd-48`, `extd-64`, `extd-32-scratch`),
   * a path or the bytes of a .safetensors / PyTorch .pth checkpoint, or a loaded
   * model. Default: `extd-32` (the authors' released EXTD-32).
   */
  model?: ModelSource;
  /** Variant name, needed only for ReLU/LeakyReLU checkpoints without metadata (e.g. `extd-fpn-32-relu`). */
  variant?: string;
  /** CPU threads for the network (the native kernels or onnxruntime; a positive integer). Default 2. */
  threads: number;
  /**
   * The network's arithmetic: 'float32' or 'int8'. int8 runs on one of two
   * engines (`detector.engine` says which):
   * - extd's native kernels (engine 'auto' on a CPU with AVX512-VNNI): the
   *   inverted-residual blocks' 1x1 convs multiply int8 weights (one scale
   *   per output channel) by uint8 activations quantised per image row or
   *   chunk of 24 pixels from that row's own range; the rest stays float32.
   *   Any model, no calibration.
   * - onnxruntime elsewhere (static QDQ int8: uint8 activations from
   *   calibrated ranges, run as QLinearConv): needs `calibration`, except for
   *   the bundled `extd-32` / `extd-48` / `extd-64`, whose ranges ship in
   *   `models/`.
   * Default: 'int8' for the bundled `extd-32`, `extd-48` and `extd-64` where
   * the kernels run int8 (their AP on the 646 WIDER val images within 0.005
   * of float32's on every setting); elsewhere the bundled model's
   * `defaultPrecision` ('int8' for `extd-48`, whose onnxruntime int8 meets
   * the same bound; 'float32' for the others), and 'float32' for any other
   * model. See README, Speed.
   */
  precision?: Precision;
  /**
   * int8 on onnxruntime only (the kernels need none): a calibration file
   * written by `extd quantize` (path), or its parsed content; checked
   * against the model (variant and weights) whichever engine runs. Default:
   * the bundled model's own file.
   */
  calibration?: string | Calibration;
  /**
   * What runs the network. 'auto': extd's own native kernels (fused
   * inverted-residual blocks, then the FPN and heads) where the package's
   * addon was built at install (a C++ compiler is needed), onnxruntime where
   * it was not; int8 runs on the kernels where the CPU has AVX512-VNNI, on
   * onnxruntime elsewhere. 'onnxruntime': onnxruntime alone. Default 'auto';
   * `detector.engine` says what runs.
   */
  engine: Engine;
}

/** Values of CreateDetectorOptions.engine. */
export type Engine = 'auto' | 'onnxruntime';
/** Every value of CreateDetectorOptions.engine. */
export const ENGINES: readonly Engine[] = ['auto', 'onnxruntime'];

/**
 * Defaults of CreateDetectorOptions: 2 threads, engine 'auto'; `model` unset means the
 * bundled `extd-32`; `precision` unset means the model's default
 * (defaultPrecisionOf: int8 for the released models where the kernels run
 * int8, else int8 for extd-48 and float32 for the others).
 */
export const CREATE_DETECTOR_DEFAULTS: CreateDetectorOptions = { threads: 2, engine: 'auto' };

/** A Detector whose `detect` takes a NodeImageInput (path, encoded bytes or raw pixels). */
export type NodeDetector = Detector<NodeImageInput>;

/**
 * Decode a NodeImageInput to RGB: paths and encoded bytes through sharp
 * (loadImageRgb), raw pixels copied (RGBA loses its alpha).
 * @throws ExtdError for a missing or undecodable file and for raw pixels whose length does not match width x height.
 * @throws TypeError for any other kind of value.
 */
export async function decodeNodeInput(input: NodeImageInput): Promise<RgbImage> {
  if (typeof input === 'string' || (input instanceof Uint8Array && !('width' in input))) return loadImageRgb(input as string | Uint8Array);
  if (input && typeof input === 'object' && 'data' in input) return rawToRgb(input);
  throw new TypeError(
    `detect: unsupported input ${Object.prototype.toString.call(input)} (expected a path, an encoded image buffer, or { data, width, height })`,
  );
}

/**
 * Create a detector on onnxruntime-node (CPU): loads the model (default the
 * bundled `extd-32`), exports it to ONNX (float32 or int8) and opens a session.
 * Call `dispose()` when done.
 * @throws ExtdError for an unknown model name, an unreadable or mismatched checkpoint, a bad `threads`,
 * `precision` or `engine`, and (int8) a missing or mismatched calibration.
 */
export async function createDetector(options: Partial<CreateDetectorOptions> = {}): Promise<NodeDetector> {
  const opts = { ...CREATE_DETECTOR_DEFAULTS, ...options };
  // An option given as undefined (e.g. an absent CLI flag) means its default: the model's own.
  opts.engine = options.engine ?? CREATE_DETECTOR_DEFAULTS.engine;
  if (!ENGINES.includes(opts.engine))
    throw new ExtdError(`engine must be one of ${ENGINES.map((e) => `'${e}'`).join(', ')}, got ${JSON.stringify(opts.engine)}`);
  if (options.precision !== undefined && options.precision !== 'float32' && options.precision !== 'int8')
    throw new ExtdError(`precision must be 'float32' or 'int8', got ${JSON.stringify(options.precision)}`);
  const model = await loadModel(opts.model, opts.variant);
  // int8 on the kernels (engine 'auto', CPUs with AVX512-VNNI) quantises each row's activations from its
  // own range: no calibration. Its session is built here, only where int8 is asked for or would be the
  // default, and is the one the detector gets (null: the kernels do not run this model in int8).
  const name = bundledNameOf(opts.model);
  const wantsInt8 = options.precision === 'int8' || (options.precision === undefined && name !== null && BUNDLED_MODELS[name].int8OnKernels);
  const int8Native = wantsInt8 && opts.engine === 'auto' ? createNativeSession(model.graph, model.weights, { threads: opts.threads, precision: 'int8' }) : null;
  const onKernels = int8Native !== null;
  opts.precision = options.precision ?? defaultPrecisionOf(name, onKernels);
  if (opts.precision === 'float32') {
    const native = opts.engine === 'auto' ? createNativeSession : undefined;
    return createDetectorWith(model, createOrtNodeSession, decodeNodeInput, opts.threads, undefined, native);
  }
  // A calibration given is checked even where the kernels do not need it.
  const calibration = onKernels && opts.calibration === undefined ? null : await resolveCalibration(opts.calibration, opts.model, model);
  return createDetectorWith(
    model,
    createOrtNodeSession,
    decodeNodeInput,
    opts.threads,
    { ranges: calibration?.ranges ?? {}, weightType: onnxInt8WeightType() },
    int8Native ? () => int8Native : undefined,
  );
}

/**
 * The bundled model a model source names: by name, by the path of its file
 * (the CLI resolves names to paths), or the default model when unset; null
 * for anything else.
 */
function bundledNameOf(source: ModelSource | undefined): BundledModelName | null {
  if (source === undefined) return DEFAULT_MODEL_NAME;
  if (typeof source !== 'string') return null;
  if (isBundledModelName(source)) return source;
  return BUNDLED_MODEL_NAMES.find((n) => resolve(bundledModelPath(n)) === resolve(source)) ?? null;
}

/** The checked calibration for an int8 detector: given (path or object), or the bundled model's own. */
async function resolveCalibration(given: string | Calibration | undefined, source: ModelSource | undefined, model: LoadedModel): Promise<Calibration> {
  if (typeof given === 'string') return readCalibrationFile(given, model);
  if (given !== undefined) return checkCalibration(given, model, 'object');
  const name = bundledNameOf(source);
  const path = name ? bundledCalibrationPath(name) : null;
  if (!path) {
    throw new ExtdError(
      `precision 'int8' needs calibration ranges for ${name ?? 'this model'}: run 'extd quantize MODEL --images DIR -o ranges.json' and pass calibration: 'ranges.json' (--calibration)`,
    );
  }
  return readCalibrationFile(path, model);
}

export { Detector, DETECT_DEFAULTS, PASS_DEFAULTS, autoScale, toFaces } from '@extd/core/detector';
export type { Face, DetectOptions, PassOptions, Precision } from '@extd/core/detector';
export {
  CALIBRATE_DEFAULTS,
  CALIBRATION_FORMAT,
  calibrate,
  checkCalibration,
  modelFingerprint,
  type Calibration,
  type CalibrateOptions,
} from '@extd/core/quantize/calibration';
export { calibrateFiles, readCalibrationFile, writeCalibrationFile, bundledCalibrationPath } from './quantize/calibration-node.js';
export type { Detections } from '@extd/core/postprocess/detections';
export { loadImageRgb } from './image/node.js';
export type { RgbImage } from '@extd/core/image/types';
export { loadModel, resolveModelPath, bundledModelPath, BUNDLED_MODEL_PATH, type ModelSource } from './load-model.js';
export {
  BUNDLED_MODELS,
  BUNDLED_MODEL_NAMES,
  DEFAULT_MODEL_NAME,
  defaultPrecisionOf,
  type BundledModel,
  type BundledModelName,
} from '@extd/core/model/bundled';
export { modelFromTensors, type LoadedModel } from '@extd/core/weights/checkpoint';
export { readWeightsFile, writeSafetensorsFile } from './weights/files-node.js';
export { buildGraph, countParams } from '@extd/core/model/graph';
export { countConvMacs } from '@extd/core/model/count';
export { parseVariant, variantName, allVariants, type Variant } from '@extd/core/model/variant';
export { nmsXyxy, batchedNmsXyxy } from '@extd/core/postprocess/nms';
export { iouXyxy, boxIouXyxy } from '@extd/core/postprocess/boxes';
export { ExtdError } from '@extd/core/utils/errors';
export { readFaceDataset, detectAnnotationFormat, trainingSamples, type DatasetOptions } from './data/read-dataset.js';
export { summaryLine, splitImages, type FaceDataset, type DatasetImage, type AnnotationFormat } from '@extd/core/data/dataset';
export { evaluateAp50, type ApResult } from '@extd/core/eval/ap50';
export { evaluateDetector, scoreDataset, type DatasetScore } from './eval/dataset-eval.js';
