import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDetector, loadImageRgb } from '../index.js';
import { resolveModelPath } from '../load-model.js';
import { DEFAULT_MODEL_NAME, MODEL_FLAG_CHOICES, isBundledModelName } from '@extd/core/model/bundled';
import { bundledCalibrationPath } from '../quantize/calibration-node.js';
import { loadGroundTruth, restrictGroundTruth } from '../eval/ground-truth.js';
import { PROTOCOLS, type ProtocolName } from '@extd/core/eval/protocols';
import {
  defaultBaselinesDir, formatApTable, listImages, predictFolder, readImageList, resolveImagePath, scorePredictions, writeReport,
} from '../eval/run-node.js';
import { detectAnnotationFormat } from '../data/read-dataset.js';
import { ExtdError } from '@extd/core/utils/errors';
import { Progress } from '../utils/progress.js';
import { UsageError, numberFlag, parseCli, precisionFlags, threadsFlag } from './args.js';
import type { Command } from './command.js';
import { evalDataset } from './eval-dataset.js';

const usage = `usage: extd eval --model M --gt DATA --out DIR [--images DIR] [options]

Run a model over an annotated image set, write predictions in the official
WIDER format to OUT/pred/, score them and write OUT/ap.json and PR plots.

--gt DATA is recognised by its content. For your own photos: a COCO JSON
file, a Pascal VOC folder of .xml files or a YOLO data.yaml (its val split);
these are scored by AP at IoU 0.5 with VOC all-point interpolation
(difficult / iscrowd faces ignored), written to OUT/ap.json and
OUT/pr.{png,svg}. --images is needed only where the format does not say
where the images are (COCO: default the JSON's folder).

For WIDER FACE the official protocol applies: predictions in
OUT/pred/EVENT/NAME.txt, easy / medium / hard AP in OUT/ap.json and
OUT/pr-{easy,medium,hard}.{png,svg}; --images is required. Rerunning resumes:
images that already have a prediction file are skipped (unless --force).
OUT/pred/settings.json records the model (its SHA-256), protocol and scale; a
rerun with other ones is refused instead of mixing predictions.

For WIDER, --gt is normally the kit's ground_truth folder (the validation
set). It may instead be WIDER annotations (*_bbx_gt.txt, or
wider_face_train.mat / wider_face_val.mat): then its images are the ones
evaluated, and as annotations have no difficulty split, every valid face
counts in all three settings (the three APs are equal).

options:
  --model M          ${MODEL_FLAG_CHOICES}
  --variant NAME     only for ReLU/LeakyReLU checkpoints without metadata
  --images DIR       images folder (WIDER: WIDER_val/images, EVENT/NAME.jpg)
  --gt DATA          the evaluation kit's ground_truth folder, WIDER annotations, COCO JSON,
                     a Pascal VOC folder, or a YOLO data.yaml
  --category NAMES   classes that are faces (COCO, VOC, YOLO): a name, NAME,NAME,... or all
                     (default face)
  --split NAME       YOLO: which split of data.yaml to evaluate (default val)
  --out DIR          results folder
  --protocol P       single (one pass, images shrunk to at most 1700x1200 px of area; default)
                     or paper (flip + multi-scale + box voting, as in the paper's table)
  --scale X          single protocol: resize images by X on top of that shrink (default 1);
                     boxes are still written in the image's own pixels
  --list FILE        evaluate only these images (one path per line, e.g. EVENT/NAME.jpg); default:
                     all of --images (WIDER kit) or all annotated images
  --force            discard the predictions already in OUT/pred and recompute them
  --threads N        CPU threads for onnxruntime (default 2)
  --precision P      float32 or int8 (default float32; see extd detect --help)
  --calibration FILE int8 ranges from extd quantize, for a model other than the bundled ones
  --baselines DIR    published curves to draw beside ours (default: next to --gt)`;

export const command: Command = {
  name: 'eval',
  usage,
  async run(argv) {
    const { values } = parseCli(argv, {
      model: { type: 'string' },
      variant: { type: 'string' },
      images: { type: 'string' },
      gt: { type: 'string' },
      out: { type: 'string' },
      protocol: { type: 'string' },
      scale: { type: 'string' },
      list: { type: 'string' },
      force: { type: 'boolean' },
      threads: { type: 'string' },
      precision: { type: 'string' },
      calibration: { type: 'string' },
      baselines: { type: 'string' },
      category: { type: 'string' },
      split: { type: 'string' },
    }, false);
    if (!values.gt) throw new UsageError("--gt is required (the WIDER evaluation kit's eval_tools/ground_truth folder, WIDER annotations, COCO JSON, a Pascal VOC folder or a YOLO data.yaml)");
    if (!values.out) throw new UsageError('--out DIR is required (predictions go to DIR/pred, results to DIR/ap.json)');
    const format = detectAnnotationFormat(values.gt).format;
    const wider = format === 'wider-text' || format === 'wider-mat';
    if (wider && (values.category !== undefined || values.split !== undefined)) {
      throw new ExtdError(`--${values.category !== undefined ? 'category' : 'split'} does not apply to WIDER FACE annotations (every box is a face)`);
    }
    const protocol = (values.protocol ?? 'single') as ProtocolName;
    if (!PROTOCOLS.includes(protocol)) throw new ExtdError(`--protocol ${values.protocol}: expected one of ${PROTOCOLS.join(', ')}`);
    const scale = numberFlag(values.scale, '--scale', 1, (x) => x > 0 && Number.isFinite(x), 'a positive number');
    if (scale !== 1 && protocol !== 'single') throw new ExtdError(`--scale ${values.scale}: applies to --protocol single only (the paper protocol chooses its own scales)`);
    const threads = threadsFlag(values.threads);
    if (!wider) {
      if (values.baselines !== undefined) throw new ExtdError('--baselines applies to WIDER FACE only (published curves on its validation set)');
      return evalDataset({
        gt: values.gt, images: values.images, out: values.out, model: values.model, variant: values.variant, category: values.category,
        split: values.split, list: values.list, protocol, scale, force: values.force ?? false, threads,
      });
    }
    if (!values.images) throw new UsageError('--images DIR is required (a WIDER-layout folder such as WIDER_val/images)');

    // Fail on ground-truth problems before spending minutes on detection.
    const groundTruth = loadGroundTruth(values.gt);
    // The images: --list, else those an annotation file given as --gt annotates, else every image of the folder.
    let source: string;
    let images: string[];
    if (values.list) {
      source = values.list;
      images = readImageList(values.list).map((e) => resolveImagePath(values.images!, e, source));
    } else if (groundTruth.source === 'annotations') {
      source = values.gt;
      images = groundTruth.images.map((g) => resolveImagePath(values.images!, g.key, source));
    } else {
      source = values.images;
      images = listImages(values.images);
    }
    const predDir = join(values.out, 'pred');
    restrictGroundTruth(groundTruth, images, source);

    const modelPath = resolveModelPath(values.model);
    const modelName = values.model ?? DEFAULT_MODEL_NAME;
    const { precision, calibration } = precisionFlags(values.precision, values.calibration);
    const detector = await createDetector({ model: modelPath, variant: values.variant, threads, precision, calibration });
    // float32 keeps the settings older folders recorded; int8 adds its precision and the ranges' file.
    const int8Settings: Record<string, string> = detector.precision === 'int8'
      ? { precision: 'int8', calibration: sha256File(calibration ?? (isBundledModelName(modelName) ? bundledCalibrationPath(modelName) : null)) }
      : {};
    const progress = new Progress({ label: `eval ${protocol}`, total: images.length });
    const { predicted, skipped } = await predictFolder({
      detector,
      decode: (p) => loadImageRgb(p),
      imagesDir: values.images,
      images,
      predDir,
      protocol,
      protocolOptions: { scale },
      force: values.force ?? false,
      settings: {
        model: createHash('sha256').update(readFileSync(modelPath)).digest('hex'),
        variant: detector.variant,
        protocol,
        scale,
        ...int8Settings,
      },
      onSkip: (n) => {
        if (n > 0) {
          progress.skip(n);
          console.error(`resuming: ${n} of ${images.length} images already have predictions in ${predDir} (--force to redo)`);
        }
      },
      onImage: () => progress.tick(),
    });
    await detector.dispose();

    const r = scorePredictions({ predDir, gtDir: values.gt, images, source, groundTruth });
    const how = (scale === 1 ? protocol : `${protocol} at scale ${scale}`) + (detector.precision === 'int8' ? ', int8' : '');
    console.log(`model ${modelName} (${detector.variant}), protocol ${how}, ${r.images} images (${predicted} predicted now, ${skipped} reused)`);
    console.log(formatApTable(r));
    const baselines = values.baselines ?? defaultBaselinesDir(values.gt);
    const files = await writeReport(values.out, r, {
      name: `${detector.variant} (${how})`,
      model: modelName,
      variant: detector.variant,
      protocol,
      scale,
      precision: detector.precision,
      imagesDir: values.images,
      list: values.list ?? null,
      gt: values.gt,
      groundTruth: groundTruth.source === 'kit' ? 'WIDER FACE validation (evaluation kit)' : 'annotation file, every valid face in all settings',
    }, baselines);
    console.error(`wrote ${files.join(', ')}`);
    return 0;
  },
};

/** SHA-256 (hex) of a file's bytes; 'unknown' without a path. */
function sha256File(path: string | null): string {
  return path ? createHash('sha256').update(readFileSync(path)).digest('hex') : 'unknown';
}
