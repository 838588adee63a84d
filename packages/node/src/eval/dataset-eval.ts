/**
 * Scoring a model on an annotated face set of any format (src/data/):
 * WIDER FACE sets (text, .mat, the kit's ground truth) with the official
 * WIDER protocol (easy / medium / hard AP), every other set with AP at IoU
 * 0.5, VOC all-point (ap50.ts). Used by `extd eval --gt` and by training's
 * `--val`. Node only.
 */
import { join } from 'node:path';
import { fileKey, type FaceDataset } from '@extd/core/data/dataset';
import { loadImageRgb } from '../image/node.js';
import { ExtdError } from '@extd/core/utils/errors';
import { AP50_PROTOCOL, evaluateAp50, type ApDetections, type ApGroundTruth, type ApResult } from '@extd/core/eval/ap50';
import { evaluateWider, WIDER_SETTINGS, type GroundTruthImage, type ImagePredictions, type WiderResult } from '@extd/core/eval/evaluator';
import { groundTruthFromAnnotations, loadWiderGroundTruth, restrictGroundTruth } from './ground-truth.js';
import { runProtocol, type PassDetector, type ProtocolName, type ProtocolOptions } from '@extd/core/eval/protocols';

/** How a set is scored. */
export type ScoreProtocol = 'wider' | 'ap50';

/** A model's score on an annotated set, as scoreDataset and evaluateDetector return it. */
export interface DatasetScore {
  /** 'wider' (official WIDER FACE easy/medium/hard AP) for WIDER formats, 'ap50' (VOC AP at IoU 0.5) for the others. */
  protocol: ScoreProtocol;
  /**
   * The one number to rank models by: AP for 'ap50'; the mean of the easy,
   * medium and hard APs for 'wider'.
   */
  metric: number;
  /** What `metric` is, in words. */
  metricName: string;
  /** The protocol in words (for ap.json and logs). */
  description: string;
  /** The full AP@0.5 result; set when `protocol` is 'ap50'. */
  ap50?: ApResult;
  /** The full WIDER result per setting; set when `protocol` is 'wider'. */
  wider?: WiderResult;
  /** Images evaluated. */
  images: number;
}

/** 'wider' for WIDER FACE formats, 'ap50' for the others. */
export function scoreProtocolOf(d: FaceDataset): ScoreProtocol {
  return d.format === 'wider-text' || d.format === 'wider-mat' ? 'wider' : 'ap50';
}

/** The AP@0.5 ground truth of a dataset's images (keyed like prediction files: the file without extension). */
export function apGroundTruth(d: FaceDataset): ApGroundTruth[] {
  return d.images.map((im) => ({ key: fileKey(im.file), boxes: im.boxes, ignore: im.ignore }));
}

/**
 * The WIDER protocol's ground truth of a WIDER-format dataset's images: the
 * kit's (with its easy / medium / hard settings) when read from the kit,
 * else from the annotations (every valid face in all three settings).
 */
export function widerGroundTruth(d: FaceDataset): GroundTruthImage[] {
  if (!d.widerKitDir && !d.wider) throw new ExtdError(`${d.source}: not a WIDER FACE dataset`);
  const gt = d.widerKitDir ? loadWiderGroundTruth(d.widerKitDir) : groundTruthFromAnnotations(d.wider!, d.source);
  return restrictGroundTruth(
    gt,
    d.images.map((im) => im.file),
    d.source,
  );
}

/** Detections as xyxy pixel boxes and scores, by image key. */
export type DetectionsByKey = Map<string, { boxes: ArrayLike<number>; scores: ArrayLike<number> }>;

/**
 * Score detections (xyxy pixels, by image key) of the dataset's images with the dataset's protocol.
 * @throws ExtdError (WIDER sets) when the ground truth cannot be read or lacks one of the dataset's images.
 */
export function scoreDataset(d: FaceDataset, detections: DetectionsByKey): DatasetScore {
  if (scoreProtocolOf(d) === 'wider') {
    // The official evaluator takes x y w h with w = x2 - x1 + 1 (the official prediction files' convention).
    const preds = new Map<string, ImagePredictions>();
    for (const [k, v] of detections) {
      const n = v.scores.length;
      const boxes = new Float64Array(4 * n);
      for (let i = 0; i < n; i++) {
        const x1 = v.boxes[4 * i]!,
          y1 = v.boxes[4 * i + 1]!;
        boxes.set([x1, y1, v.boxes[4 * i + 2]! - x1 + 1, v.boxes[4 * i + 3]! - y1 + 1], 4 * i);
      }
      preds.set(k, { boxes, scores: Float64Array.from(v.scores) });
    }
    const r = evaluateWider(widerGroundTruth(d), preds);
    const metric = WIDER_SETTINGS.reduce((a, s) => a + r[s].ap, 0) / WIDER_SETTINGS.length;
    return {
      protocol: 'wider',
      metric,
      metricName: 'mean of easy, medium and hard AP',
      wider: r,
      images: r.images,
      description: d.widerKitDir
        ? 'official WIDER FACE algorithm (IoU 0.5, 1000 thresholds, VOC all-point AP), ground truth of the evaluation kit restricted to the evaluated images'
        : 'official WIDER FACE algorithm (IoU 0.5, 1000 thresholds, VOC all-point AP) on an annotation file: every valid face in all three settings',
    };
  }
  const r = evaluateAp50(apGroundTruth(d), detections as ReadonlyMap<string, ApDetections>);
  return { protocol: 'ap50', metric: r.ap, metricName: 'AP at IoU 0.5', ap50: r, images: r.images, description: AP50_PROTOCOL };
}

export interface DetectOnDatasetOptions {
  protocol: ProtocolName;
  protocolOptions: Partial<ProtocolOptions>;
  /** Called after each image. */
  onImage?: (done: number, total: number) => void;
}

/** Run `detector` over every image of `d` (decoded one at a time) and score the result. */
export async function evaluateDetector(detector: PassDetector, d: FaceDataset, options: Partial<DetectOnDatasetOptions> = {}): Promise<DatasetScore> {
  const protocol = options.protocol ?? 'single';
  const detections: DetectionsByKey = new Map();
  let done = 0;
  for (const im of d.images) {
    const image = await loadImageRgb(join(d.imagesDir, im.file));
    const r = await runProtocol(detector, image, protocol, options.protocolOptions);
    detections.set(fileKey(im.file), { boxes: r.boxes, scores: r.scores });
    options.onImage?.(++done, d.images.length);
  }
  return scoreDataset(d, detections);
}

/** One line: `AP@0.5 0.8123 (171 images, 812 faces)` or `easy 0.9 medium 0.8 hard 0.5 (...)`. */
export function formatScore(s: DatasetScore): string {
  if (s.ap50)
    return `AP@0.5 ${s.ap50.ap.toFixed(4)} (${s.images} images, ${s.ap50.faces} faces${s.ap50.ignoredFaces ? `, ${s.ap50.ignoredFaces} ignored` : ''})`;
  const w = s.wider!;
  return `${WIDER_SETTINGS.map((k) => `${k} ${w[k].ap.toFixed(4)}`).join(' ')} (${s.images} images, WIDER protocol)`;
}
