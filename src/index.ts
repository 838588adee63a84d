/**
 * extd for Node: EXTD face detection on onnxruntime-node.
 *
 *   import { createDetector } from 'extd';
 *   const detector = await createDetector({ model: 'extd-64' });   // or a .pth/.safetensors path
 *   const faces = await detector.detect('photo.jpg');  // [{ box: { x, y, width, height }, score }]
 */
import { Detector, createDetectorWith, rawToRgb } from './detector.js';
import { loadImageRgb } from './image/node.js';
import type { RgbImage } from './image/types.js';
import { loadModel, type ModelSource } from './load-model.js';
import { createOrtNodeSession } from './runtime/ort-node.js';

/** What `detect` accepts in Node: a file path, an encoded image (JPEG/PNG/WebP...), or raw RGB/RGBA pixels. */
export type NodeImageInput = string | Uint8Array | { data: Uint8Array | Uint8ClampedArray; width: number; height: number };

export interface CreateDetectorOptions {
  /**
   * A bundled model name (`extd-32`, `extd-48`, `extd-64`, `extd-32-scratch`),
   * a path or the bytes of a .safetensors / PyTorch .pth checkpoint, or a loaded
   * model. Default: `extd-32` (the authors' released EXTD-32).
   */
  model?: ModelSource;
  /** Variant name, needed only for ReLU/LeakyReLU checkpoints without metadata (e.g. `extd-fpn-32-relu`). */
  variant?: string;
  /** CPU threads for onnxruntime. */
  threads: number;
}

export const CREATE_DETECTOR_DEFAULTS: CreateDetectorOptions = { threads: 2 };

export type NodeDetector = Detector<NodeImageInput>;

export async function decodeNodeInput(input: NodeImageInput): Promise<RgbImage> {
  if (typeof input === 'string' || (input instanceof Uint8Array && !('width' in input))) return loadImageRgb(input as string | Uint8Array);
  if (input && typeof input === 'object' && 'data' in input) return rawToRgb(input);
  throw new TypeError(`detect: unsupported input ${Object.prototype.toString.call(input)} (expected a path, an encoded image buffer, or { data, width, height })`);
}

export async function createDetector(options: Partial<CreateDetectorOptions> = {}): Promise<NodeDetector> {
  const opts = { ...CREATE_DETECTOR_DEFAULTS, ...options };
  const model = await loadModel(opts.model, opts.variant);
  return createDetectorWith(model, createOrtNodeSession, decodeNodeInput, opts.threads);
}

export { Detector, DETECT_DEFAULTS, PASS_DEFAULTS, autoScale, toFaces } from './detector.js';
export type { Face, DetectOptions, PassOptions } from './detector.js';
export type { Detections } from './postprocess/detections.js';
export { loadImageRgb } from './image/node.js';
export type { RgbImage } from './image/types.js';
export { loadModel, resolveModelPath, bundledModelPath, BUNDLED_MODEL_PATH, type ModelSource } from './load-model.js';
export { BUNDLED_MODELS, BUNDLED_MODEL_NAMES, DEFAULT_MODEL_NAME, type BundledModel, type BundledModelName } from './model/bundled.js';
export { modelFromTensors, type LoadedModel } from './weights/checkpoint.js';
export { readWeightsFile, writeSafetensorsFile } from './weights/files-node.js';
export { buildGraph, countParams } from './model/graph.js';
export { countConvMacs } from './model/count.js';
export { parseVariant, variantName, allVariants, type Variant } from './model/variant.js';
export { nmsXyxy, batchedNmsXyxy } from './postprocess/nms.js';
export { iouXyxy, boxIouXyxy } from './postprocess/boxes.js';
export { ExtdError } from './utils/errors.js';
export { readFaceDataset, detectAnnotationFormat, trainingSamples, type DatasetOptions } from './data/read-dataset.js';
export { summaryLine, splitImages, type FaceDataset, type DatasetImage, type AnnotationFormat } from './data/dataset.js';
export { evaluateAp50, type ApResult } from './eval/ap50.js';
export { evaluateDetector, scoreDataset, type DatasetScore } from './eval/dataset-eval.js';
