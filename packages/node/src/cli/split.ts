import { join } from 'node:path';
import { splitImages } from '@extd/core/data/dataset';
import { readFaceDataset } from '../data/read-dataset.js';
import { YOLO_SPLITS, type YoloSplit } from '../data/yolo.js';
import { writeFileAtomic } from '../utils/atomic.js';
import { ExtdError } from '@extd/core/utils/errors';
import { numberFlag, parseCli } from './args.js';
import type { Command } from './command.js';

const usage = `usage: extd split DATA --out DIR [--fraction X] [--seed N] [--images DIR]

Split the images of an annotated set (any format extd train reads) into
DIR/train.txt and DIR/val.txt, one image path per line (relative to the
images folder), for extd train --list / --val-list and extd eval --list.
Deterministic: the sorted image paths are shuffled by --seed and the first
round(X * n) go to val.txt, so the same command always gives the same split.

options:
  --out DIR          folder for train.txt and val.txt
  --fraction X       share of the images in val.txt (default 0.2)
  --seed N           shuffle seed (default 0)
  --images DIR       images folder, where the format needs one (WIDER)
  --split NAME       YOLO: which split of data.yaml to divide (default train)`;

export const command: Command = {
  name: 'split',
  usage,
  async run(argv) {
    const { values, positionals } = parseCli(argv, {
      out: { type: 'string' },
      fraction: { type: 'string' },
      seed: { type: 'string' },
      images: { type: 'string' },
      split: { type: 'string' },
    });
    if (positionals.length !== 1) throw new ExtdError('expected one DATA argument (annotations in any format extd train reads)');
    if (!values.out) throw new ExtdError('--out DIR is required (train.txt and val.txt go there)');
    const fraction = numberFlag(values.fraction, '--fraction', 0.2, (x) => x > 0 && x < 1, 'a number between 0 and 1');
    const seed = numberFlag(values.seed, '--seed', 0, (x) => Number.isSafeInteger(x), 'an integer');
    const split = (values.split ?? 'train') as YoloSplit;
    if (!YOLO_SPLITS.includes(split)) throw new ExtdError(`--split ${values.split}: expected one of ${YOLO_SPLITS.join(', ')}`);
    // Every image counts, whatever its classes.
    const d = await readFaceDataset(positionals[0]!, { images: values.images, category: 'all', split, onProblem: (l) => console.error(l) });
    const { train, val } = splitImages(d, fraction, seed);
    const header = (what: string) => `# ${what} of ${positionals[0]}: extd split --fraction ${fraction} --seed ${seed}\n`;
    writeFileAtomic(join(values.out, 'train.txt'), header('training images') + train.join('\n') + '\n');
    writeFileAtomic(join(values.out, 'val.txt'), header('held-out images') + val.join('\n') + '\n');
    console.log(`${d.images.length} images: ${train.length} in ${join(values.out, 'train.txt')}, ${val.length} in ${join(values.out, 'val.txt')}`);
    return 0;
  },
};
