/**
 * The evaluation pipeline behind `extd eval`: run a model over an annotated
 * image set, write resumable prediction files to OUT/pred/, score them and
 * write OUT/ap.json and the PR figures. The CLI (src/cli/eval.ts) only parses
 * flags, calls `evaluateModel` and prints what it returns.
 *
 * - WIDER FACE (the kit's ground_truth folder, *_bbx_gt.txt, .mat): the
 *   official protocol, easy / medium / hard AP, OUT/pr-{easy,medium,hard}.
 * - Other formats (COCO, Pascal VOC, YOLO): AP at IoU 0.5 (VOC all-point),
 *   OUT/pr.{png,svg}.
 * Node only.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileKey, parseCategory, summaryLine } from '@extd/core/data/dataset';
import type { ProtocolName } from '@extd/core/eval/protocols';
import { DEFAULT_MODEL_NAME, isBundledModelName } from '@extd/core/model/bundled';
import { ExtdError } from '@extd/core/utils/errors';
import { detectAnnotationFormat, readFaceDataset } from '../data/read-dataset.js';
import { YOLO_SPLITS, type YoloSplit } from '../data/yolo.js';
import { createDetector, loadImageRgb, type Engine, type NodeDetector } from '../index.js';
import { resolveModelPath } from '../load-model.js';
import { bundledCalibrationPath } from '../quantize/calibration-node.js';
import { writeFileAtomic } from '../utils/atomic.js';
import { Progress } from '../utils/progress.js';
import { formatScore, scoreDataset, type DetectionsByKey } from './dataset-eval.js';
import { loadGroundTruth, restrictGroundTruth } from './ground-truth.js';
import { prCurvesPng, prCurvesSvg } from './plot.js';
import { readPredictions } from './predictions-node.js';
import {
  defaultBaselinesDir,
  formatApTable,
  listImages,
  predictFolder,
  readImageList,
  resolveImagePath,
  scorePredictions,
  writeReport,
  type PredictionSettings,
} from './run-node.js';

export interface EvaluateModelOptions {
  /** The WIDER kit's ground_truth folder, WIDER annotations, COCO JSON, a Pascal VOC folder or a YOLO data.yaml. */
  gt: string;
  /** Images folder; required for WIDER, where the format does not say. */
  images?: string;
  /** Results folder: OUT/pred/, OUT/ap.json, the PR figures. */
  out: string;
  /** Bundled model name or checkpoint path (default: the default bundled model). */
  model?: string;
  variant?: string;
  /** COCO, VOC, YOLO: classes that are faces (not for WIDER). */
  category?: string;
  /** YOLO: the split of data.yaml (default val; not for WIDER). */
  split?: string;
  /** Evaluate only the images of this list file. */
  list?: string;
  protocol: ProtocolName;
  /** Single protocol: factor on top of the automatic shrink. */
  scale: number;
  /** Recompute predictions already in OUT/pred. */
  force: boolean;
  threads: number;
  precision?: 'float32' | 'int8';
  calibration?: string;
  /**
   * createDetector's `engine` (default 'auto'). Not recorded in the folder's settings: for float32 the
   * native kernels and onnxruntime agree to about 1e-5 relative (tests), as two onnxruntime versions would.
   */
  engine?: Engine;
  /** WIDER: published curves to draw beside ours (default: next to `gt`). */
  baselines?: string;
  /** Notices (data summary, annotation problems, resuming): stderr in the CLI. */
  log?: (line: string) => void;
  /** Show a progress line on stderr. */
  progress?: boolean;
}

/** What an evaluation did, for the caller to print. */
export interface EvaluateModelResult {
  /** Model name as given (or the default bundled one). */
  modelName: string;
  variant: string;
  precision: 'float32' | 'int8';
  /** The protocol in words, e.g. `single at scale 0.5, int8`. */
  how: string;
  images: number;
  /** Images run now, and those whose prediction files were reused. */
  predicted: number;
  skipped: number;
  /** The scores as text lines (WIDER: the easy / medium / hard table; else AP@0.5 and the protocol). */
  report: string[];
  /** Files written (ap.json and figures). */
  files: string[];
}

/** Evaluate a model on an annotated set (WIDER FACE or another format); see the module comment. */
export async function evaluateModel(o: EvaluateModelOptions): Promise<EvaluateModelResult> {
  const format = detectAnnotationFormat(o.gt).format;
  const wider = format === 'wider-text' || format === 'wider-mat';
  if (wider && (o.category !== undefined || o.split !== undefined)) {
    throw new ExtdError(`--${o.category !== undefined ? 'category' : 'split'} does not apply to WIDER FACE annotations (every box is a face)`);
  }
  if (!wider && o.baselines !== undefined) throw new ExtdError('--baselines applies to WIDER FACE only (published curves on its validation set)');
  return wider ? evaluateWiderSet(o) : evaluateAnnotatedSet(o);
}

/** The detector and the settings recorded beside its prediction files. */
async function openDetector(o: EvaluateModelOptions): Promise<{ detector: NodeDetector; modelName: string; settings: PredictionSettings; how: string }> {
  const modelPath = resolveModelPath(o.model);
  const modelName = o.model ?? DEFAULT_MODEL_NAME;
  const detector = await createDetector({
    model: modelPath,
    variant: o.variant,
    threads: o.threads,
    precision: o.precision,
    calibration: o.calibration,
    engine: o.engine,
  });
  // float32 keeps the settings older folders recorded; int8 adds its precision and what quantises the
  // activations: on onnxruntime the ranges' file, on the native kernels (their own per-row ranges) the engine.
  const int8Settings: Record<string, string> =
    detector.precision !== 'int8'
      ? {}
      : detector.engine === 'extd-kernels'
        ? { precision: 'int8', engine: detector.engine }
        : { precision: 'int8', calibration: sha256File(o.calibration ?? (isBundledModelName(modelName) ? bundledCalibrationPath(modelName) : null)) };
  const settings = { model: sha256File(modelPath), variant: detector.variant, protocol: o.protocol, scale: o.scale, ...int8Settings };
  const how = (o.scale === 1 ? o.protocol : `${o.protocol} at scale ${o.scale}`) + (detector.precision === 'int8' ? ', int8' : '');
  return { detector, modelName, settings, how };
}

/** Run the protocol over `images` into predDir (resumable), then release the detector. */
async function predict(o: EvaluateModelOptions, detector: NodeDetector, settings: PredictionSettings, imagesDir: string, images: string[], predDir: string) {
  const log = o.log ?? (() => {});
  const progress = o.progress ? new Progress({ label: `eval ${o.protocol}`, total: images.length }) : null;
  try {
    return await predictFolder({
      detector,
      decode: (p) => loadImageRgb(p),
      imagesDir,
      images,
      predDir,
      protocol: o.protocol,
      protocolOptions: { scale: o.scale },
      force: o.force,
      settings,
      onSkip: (n) => {
        if (n > 0) {
          progress?.skip(n);
          log(`resuming: ${n} of ${images.length} images already have predictions in ${predDir} (--force to redo)`);
        }
      },
      onImage: () => progress?.tick(),
    });
  } finally {
    await detector.dispose();
  }
}

async function evaluateWiderSet(o: EvaluateModelOptions): Promise<EvaluateModelResult> {
  if (!o.images) throw new ExtdError('--images DIR is required for WIDER FACE (a WIDER-layout folder such as WIDER_val/images)');
  const imagesDir = o.images;
  // Fail on ground-truth problems before spending minutes on detection.
  const groundTruth = loadGroundTruth(o.gt);
  // The images: the list, else those an annotation file given as gt annotates, else every image of the folder.
  let source: string;
  let images: string[];
  if (o.list) {
    source = o.list;
    images = readImageList(o.list).map((e) => resolveImagePath(imagesDir, e, source));
  } else if (groundTruth.source === 'annotations') {
    source = o.gt;
    images = groundTruth.images.map((g) => resolveImagePath(imagesDir, g.key, source));
  } else {
    source = imagesDir;
    images = listImages(imagesDir);
  }
  const predDir = join(o.out, 'pred');
  restrictGroundTruth(groundTruth, images, source);

  const { detector, modelName, settings, how } = await openDetector(o);
  const { variant, precision } = detector;
  const { predicted, skipped } = await predict(o, detector, settings, imagesDir, images, predDir);

  const r = scorePredictions({ predDir, gtDir: o.gt, images, source, groundTruth });
  const files = await writeReport(
    o.out,
    r,
    {
      name: `${variant} (${how})`,
      model: modelName,
      variant,
      protocol: o.protocol,
      scale: o.scale,
      precision,
      imagesDir,
      list: o.list ?? null,
      gt: o.gt,
      groundTruth: groundTruth.source === 'kit' ? 'WIDER FACE validation (evaluation kit)' : 'annotation file, every valid face in all settings',
    },
    o.baselines ?? defaultBaselinesDir(o.gt),
  );
  return { modelName, variant, precision, how, images: r.images, predicted, skipped, report: [formatApTable(r)], files };
}

async function evaluateAnnotatedSet(o: EvaluateModelOptions): Promise<EvaluateModelResult> {
  const log = o.log ?? (() => {});
  const split = (o.split ?? 'val') as YoloSplit;
  if (!YOLO_SPLITS.includes(split)) throw new ExtdError(`--split ${o.split}: expected one of ${YOLO_SPLITS.join(', ')}`);
  // Fail on annotation problems before spending minutes on detection.
  const d = await readFaceDataset(o.gt, { images: o.images, category: parseCategory(o.category), split, list: o.list, onProblem: log });
  log(summaryLine(d));
  const files = d.images.map((im) => im.file);
  const predDir = join(o.out, 'pred');

  const { detector, modelName, settings, how } = await openDetector(o);
  const { variant, precision } = detector;
  const { predicted, skipped } = await predict(o, detector, settings, d.imagesDir, files, predDir);

  // Prediction files hold x y w h with w = x2 - x1 + 1 (the official writer's convention): back to xyxy.
  const read = readPredictions(predDir, files);
  const detections: DetectionsByKey = new Map();
  for (const f of files) {
    const p = read.get(f);
    if (!p) continue;
    const boxes = new Float64Array(p.boxes.length);
    for (let i = 0; i < p.boxes.length; i += 4) {
      boxes[i] = p.boxes[i]!;
      boxes[i + 1] = p.boxes[i + 1]!;
      boxes[i + 2] = p.boxes[i]! + p.boxes[i + 2]! - 1;
      boxes[i + 3] = p.boxes[i + 1]! + p.boxes[i + 3]! - 1;
    }
    detections.set(fileKey(f), { boxes, scores: p.scores });
  }
  const score = scoreDataset(d, detections);
  const r = score.ap50!;

  const name = `${variant} (${how})`;
  const json = {
    name,
    model: modelName,
    variant,
    protocol: o.protocol,
    scale: o.scale,
    ...(precision === 'int8' ? { precision } : {}),
    gt: o.gt,
    format: d.format,
    classes: d.classes,
    imagesDir: d.imagesDir,
    list: o.list ?? null,
    images: r.images,
    imagesWithPredictions: r.imagesWithPredictions,
    faces: r.faces,
    ignoredFaces: r.ignoredFaces,
    ap50: r.ap,
    evaluation: score.description,
    date: new Date().toISOString(),
  };
  const apPath = join(o.out, 'ap.json');
  writeFileAtomic(apPath, JSON.stringify(json, null, 2) + '\n');
  const curve = { name, ap: r.ap, precision: r.precision, recall: r.recall, highlight: true };
  const title = `AP at IoU 0.5, ${r.images} images of ${o.gt}`;
  writeFileAtomic(join(o.out, 'pr.png'), await prCurvesPng([curve], { title }));
  writeFileAtomic(join(o.out, 'pr.svg'), prCurvesSvg([curve], { title }));
  return {
    modelName,
    variant,
    precision,
    how,
    images: r.images,
    predicted,
    skipped,
    report: [formatScore(score), `evaluation: ${score.description}`],
    files: [apPath, join(o.out, 'pr.png'), join(o.out, 'pr.svg')],
  };
}

/** SHA-256 (hex) of a file's bytes; 'unknown' without a path. */
function sha256File(path: string | null): string {
  return path ? createHash('sha256').update(readFileSync(path)).digest('hex') : 'unknown';
}
