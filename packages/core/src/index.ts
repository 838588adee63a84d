/**
 * @extd/core: the browser-safe half of extd. The EXTD model definition, weights
 * I/O (safetensors, the restricted PyTorch .pth reader), S3FD priors, box
 * decoding and NMS, the runtime-independent detector, the ONNX export (float32
 * and static int8), the WIDER FACE evaluation and the annotation parsers.
 *
 * It imports nothing Node-only (its type-check runs without Node's types), so
 * bundlers can take it as is. The runtimes plug in through `CreateSession`:
 * `extd` (onnxruntime-node, sharp) and `@extd/web` (onnxruntime-web, DOM
 * images) are thin packages around it. Every module is also reachable as
 * `@extd/core/<folder>/<module>` for the sibling packages; this index is the
 * documented API.
 *
 * @packageDocumentation
 * @module @extd/core
 */
export { Detector, DETECT_DEFAULTS, PASS_DEFAULTS, AUTO_MAX_AREA, autoScale, createDetectorWith, rawToRgb, toFaces } from './detector.js';
export type { Face, DetectOptions, PassOptions, Precision, ImageDecoder } from './detector.js';
export type { InferenceSession, SessionOptions, CreateSession } from './runtime/backend.js';
export { exportOnnx, ONNX_EXPORT_DEFAULTS, OPSET, type OnnxExportOptions, type Int8ExportOptions, type ActivationRange } from './runtime/onnx-export.js';
export {
  CALIBRATE_DEFAULTS,
  CALIBRATION_FORMAT,
  calibrate,
  checkCalibration,
  modelFingerprint,
  type Calibration,
  type CalibrateOptions,
} from './quantize/calibration.js';
export { postprocess, POSTPROCESS_DEFAULTS, type Detections, type PostprocessOptions } from './postprocess/detections.js';
export { nmsXyxy, batchedNmsXyxy } from './postprocess/nms.js';
export { iouXyxy, boxIouXyxy } from './postprocess/boxes.js';
export { makePriors, priorCount, levelSizes, STRIDES, ANCHOR_SIZES, NUM_LEVELS } from './anchors/priors.js';
export { decodeBoxXyxyPx, encodeBoxXyxy, VARIANCES } from './anchors/decode.js';
export type { RgbImage } from './image/types.js';
export { resizeBilinear, flipHorizontal } from './image/resize.js';
export { buildGraph, countParams, type ModelGraph } from './model/graph.js';
export { countConvMacs } from './model/count.js';
export { parseVariant, variantName, allVariants, type Variant } from './model/variant.js';
export { BUNDLED_MODELS, BUNDLED_MODEL_NAMES, DEFAULT_MODEL_NAME, type BundledModel, type BundledModelName } from './model/bundled.js';
export { modelFromTensors, type LoadedModel } from './weights/checkpoint.js';
export { readWeightsBytes, detectWeightsFormat, type WeightsFormat, type WeightsContent } from './weights/format.js';
export { readSafetensors, writeSafetensors, type SafetensorsContent } from './weights/safetensors.js';
export { readPth, STATE_DICT_KEYS } from './weights/pth.js';
export type { Tensor } from './utils/tensor.js';
export { ExtdError } from './utils/errors.js';
export {
  evaluateWider,
  EVAL_DEFAULTS,
  WIDER_SETTINGS,
  type WiderSetting,
  type WiderResult,
  type GroundTruthImage,
  type ImagePredictions,
} from './eval/evaluator.js';
export { evaluateAp50, AP_DEFAULTS, AP50_PROTOCOL, type ApResult } from './eval/ap50.js';
export { runProtocol, planPasses, PROTOCOLS, PROTOCOL_DEFAULTS, type ProtocolName, type ProtocolOptions } from './eval/protocols.js';
export { ANNOTATION_FORMATS, summaryLine, splitImages, type FaceDataset, type DatasetImage, type AnnotationFormat } from './data/dataset.js';
export { parseWiderAnnotations, formatWiderAnnotations, type WiderFace, type WiderImageAnnotation } from './data/wider-annotations.js';
