import { ExtdError } from '@extd/core/utils/errors';
import { defaultBaselinesDir, formatApTable, predictedImages, readImageList, scorePredictions, writeReport } from '../eval/run-node.js';
import { UsageError, parseCli } from './args.js';
import type { Command } from './command.js';

const usage = `usage: extd eval-preds --preds DIR --gt DIR|FILE [--list FILE] [--out DIR]

Score a folder of WIDER FACE predictions (DIR/EVENT/NAME.txt in the official
format, from extd or any other detector) with the official evaluation and print
easy / medium / hard AP.

options:
  --preds DIR        prediction folder
  --gt DIR|FILE      the evaluation kit's ground_truth folder (wider_face_val.mat, wider_{easy,medium,hard}_val.mat),
                     or a *_bbx_gt.txt annotation file (every valid face counts in all three settings)
  --list FILE        evaluate only these images (one EVENT/NAME.jpg per line); default: every
                     image that has a prediction file. Ground truth of other images is not counted.
  --out DIR          also write DIR/ap.json and DIR/pr-{easy,medium,hard}.{png,svg}
  --baselines DIR    published curves to draw beside ours (default: the kit's plot/baselines/Val/setting_int next to --gt)
  --name LABEL       legend label of this curve (default: the prediction folder)`;

export const command: Command = {
  name: 'eval-preds',
  usage,
  async run(argv) {
    const { values, positionals } = parseCli(
      argv,
      {
        preds: { type: 'string' },
        gt: { type: 'string' },
        list: { type: 'string' },
        out: { type: 'string' },
        baselines: { type: 'string' },
        name: { type: 'string' },
      },
      false,
    );
    void positionals;
    if (!values.preds) throw new UsageError('--preds DIR is required (a folder of EVENT/NAME.txt prediction files)');
    if (!values.gt) throw new UsageError("--gt is required (the WIDER evaluation kit's eval_tools/ground_truth folder, or a *_bbx_gt.txt annotation file)");
    const images = values.list ? readImageList(values.list) : predictedImages(values.preds);
    const source = values.list ?? values.preds;
    const r = scorePredictions({ predDir: values.preds, gtDir: values.gt, images, source });
    console.log(`${r.images} images (${r.imagesWithPredictions} with a prediction file)`);
    console.log(formatApTable(r));
    if (values.out) {
      const baselines = values.baselines ?? defaultBaselinesDir(values.gt);
      const files = await writeReport(
        values.out,
        r,
        { name: values.name ?? values.preds, predictions: values.preds, list: values.list ?? null, gt: values.gt },
        baselines,
      );
      console.error(`wrote ${files.join(', ')}`);
    }
    return 0;
  },
};
