import { MODEL_FLAG_CHOICES } from '@extd/core/model/bundled';
import { PROTOCOLS, type ProtocolName } from '@extd/core/eval/protocols';
import { ExtdError } from '@extd/core/utils/errors';
import { evaluateModel } from '../eval/evaluate.js';
import { UsageError, engineFlag, numberFlag, parseCli, precisionFlags, threadsFlag } from './args.js';
import type { Command } from './command.js';

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
  --threads N        CPU threads for the network (default 2)
  --precision P      float32 or int8 (default as extd detect: see extd detect --help)
  --calibration FILE int8 ranges from extd quantize, for a model other than the bundled ones
  --engine E         auto (default) or onnxruntime (see extd detect --help)
  --baselines DIR    published curves to draw beside ours (default: next to --gt)`;

export const command: Command = {
  name: 'eval',
  usage,
  async run(argv) {
    const { values } = parseCli(
      argv,
      {
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
        engine: { type: 'string' },
        baselines: { type: 'string' },
        category: { type: 'string' },
        split: { type: 'string' },
      },
      false,
    );
    if (!values.gt)
      throw new UsageError(
        "--gt is required (the WIDER evaluation kit's eval_tools/ground_truth folder, WIDER annotations, COCO JSON, a Pascal VOC folder or a YOLO data.yaml)",
      );
    if (!values.out) throw new UsageError('--out DIR is required (predictions go to DIR/pred, results to DIR/ap.json)');
    const protocol = (values.protocol ?? 'single') as ProtocolName;
    if (!PROTOCOLS.includes(protocol)) throw new ExtdError(`--protocol ${values.protocol}: expected one of ${PROTOCOLS.join(', ')}`);
    const scale = numberFlag(values.scale, '--scale', 1, (x) => x > 0 && Number.isFinite(x), 'a positive number');
    if (scale !== 1 && protocol !== 'single')
      throw new ExtdError(`--scale ${values.scale}: applies to --protocol single only (the paper protocol chooses its own scales)`);
    const threads = threadsFlag(values.threads);
    const { precision, calibration } = precisionFlags(values.precision, values.calibration);
    const engine = engineFlag(values.engine);

    const r = await evaluateModel({
      gt: values.gt,
      images: values.images,
      out: values.out,
      model: values.model,
      variant: values.variant,
      category: values.category,
      split: values.split,
      list: values.list,
      protocol,
      scale,
      force: values.force ?? false,
      threads,
      precision,
      calibration,
      engine,
      baselines: values.baselines,
      log: (line) => console.error(line),
      progress: true,
    });
    console.log(`model ${r.modelName} (${r.variant}), protocol ${r.how}, ${r.images} images (${r.predicted} predicted now, ${r.skipped} reused)`);
    for (const line of r.report) console.log(line);
    console.error(`wrote ${r.files.join(', ')}`);
    return 0;
  },
};
