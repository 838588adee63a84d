/**
 * `extd eval --gt DATA` for annotated sets that are not WIDER FACE (COCO,
 * Pascal VOC, YOLO): predictions in OUT/pred (resumable, as for WIDER),
 * AP at IoU 0.5 with VOC all-point interpolation, OUT/ap.json and OUT/pr.{png,svg}.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCategory, summaryLine, fileKey } from '@extd/core/data/dataset';
import { readFaceDataset } from '../data/read-dataset.js';
import { YOLO_SPLITS, type YoloSplit } from '../data/yolo.js';
import { scoreDataset, formatScore, type DetectionsByKey } from '../eval/dataset-eval.js';
import { prCurvesPng, prCurvesSvg } from '../eval/plot.js';
import { readPredictions } from '../eval/predictions-node.js';
import type { ProtocolName } from '@extd/core/eval/protocols';
import { predictFolder } from '../eval/run-node.js';
import { createDetector, loadImageRgb } from '../index.js';
import { resolveModelPath } from '../load-model.js';
import { DEFAULT_MODEL_NAME } from '@extd/core/model/bundled';
import { writeFileAtomic } from '../utils/atomic.js';
import { ExtdError } from '@extd/core/utils/errors';
import { Progress } from '../utils/progress.js';

export interface DatasetEvalArgs {
  gt: string;
  images: string | undefined;
  out: string;
  model: string | undefined;
  variant: string | undefined;
  category: string | undefined;
  split: string | undefined;
  list: string | undefined;
  protocol: ProtocolName;
  scale: number;
  force: boolean;
  threads: number;
}

export async function evalDataset(a: DatasetEvalArgs): Promise<number> {
  const split = (a.split ?? 'val') as YoloSplit;
  if (!YOLO_SPLITS.includes(split)) throw new ExtdError(`--split ${a.split}: expected one of ${YOLO_SPLITS.join(', ')}`);
  // Fail on annotation problems before spending minutes on detection.
  const d = await readFaceDataset(a.gt, {
    images: a.images, category: parseCategory(a.category), split, list: a.list, onProblem: (l) => console.error(l),
  });
  console.error(summaryLine(d));
  const files = d.images.map((im) => im.file);
  const predDir = join(a.out, 'pred');

  const modelPath = resolveModelPath(a.model);
  const modelName = a.model ?? DEFAULT_MODEL_NAME;
  const detector = await createDetector({ model: modelPath, variant: a.variant, threads: a.threads });
  const progress = new Progress({ label: `eval ${a.protocol}`, total: files.length });
  const { predicted, skipped } = await predictFolder({
    detector,
    decode: (p) => loadImageRgb(p),
    imagesDir: d.imagesDir,
    images: files,
    predDir,
    protocol: a.protocol,
    protocolOptions: { scale: a.scale },
    force: a.force,
    settings: {
      model: createHash('sha256').update(readFileSync(modelPath)).digest('hex'),
      variant: detector.variant,
      protocol: a.protocol,
      scale: a.scale,
    },
    onSkip: (n) => {
      if (n > 0) {
        progress.skip(n);
        console.error(`resuming: ${n} of ${files.length} images already have predictions in ${predDir} (--force to redo)`);
      }
    },
    onImage: () => progress.tick(),
  });
  await detector.dispose();

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
  const how = a.scale === 1 ? a.protocol : `${a.protocol} at scale ${a.scale}`;
  console.log(`model ${modelName} (${detector.variant}), protocol ${how}, ${r.images} images (${predicted} predicted now, ${skipped} reused)`);
  console.log(formatScore(score));
  console.log(`evaluation: ${score.description}`);

  const name = `${detector.variant} (${how})`;
  const json = {
    name,
    model: modelName,
    variant: detector.variant,
    protocol: a.protocol,
    scale: a.scale,
    gt: a.gt,
    format: d.format,
    classes: d.classes,
    imagesDir: d.imagesDir,
    list: a.list ?? null,
    images: r.images,
    imagesWithPredictions: r.imagesWithPredictions,
    faces: r.faces,
    ignoredFaces: r.ignoredFaces,
    ap50: r.ap,
    evaluation: score.description,
    date: new Date().toISOString(),
  };
  const apPath = join(a.out, 'ap.json');
  writeFileAtomic(apPath, JSON.stringify(json, null, 2) + '\n');
  const curve = { name, ap: r.ap, precision: r.precision, recall: r.recall, highlight: true };
  const title = `AP at IoU 0.5, ${r.images} images of ${a.gt}`;
  writeFileAtomic(join(a.out, 'pr.png'), await prCurvesPng([curve], { title }));
  writeFileAtomic(join(a.out, 'pr.svg'), prCurvesSvg([curve], { title }));
  console.error(`wrote ${apPath}, ${join(a.out, 'pr.png')}, ${join(a.out, 'pr.svg')}`);
  return 0;
}
