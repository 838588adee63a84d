/**
 * Score a model on WIDER FACE val images with the library API: read the
 * official annotations, run the detector (the single-scale protocol) and
 * print AP. `extd eval` does the same with prediction files, plots and resume.
 *
 *   node --conditions=extd-source --import tsx examples/evaluate-wider.ts WIDER_DIR [COUNT] [MODEL]
 *
 * WIDER_DIR holds WIDER_val/images and wider_face_split/wider_face_val_bbx_gt.txt
 * (the official kit's layout). COUNT: the first N images of the annotation
 * file (default 20; 0 = all 3,226). The AP of a subset is that subset's, not
 * the val set's.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDetector, evaluateDetector, readFaceDataset } from 'extd';

const [root, countArg = '20', model = 'extd-32'] = process.argv.slice(2);
const count = Number(countArg);
if (!root || !Number.isInteger(count) || count < 0) {
  console.error('usage: evaluate-wider.ts WIDER_DIR [COUNT] [MODEL]');
  process.exit(2);
}
const annotations = join(root, 'wider_face_split', 'wider_face_val_bbx_gt.txt');
const images = join(root, 'WIDER_val', 'images');
if (!existsSync(annotations)) {
  console.error(`evaluate-wider: ${annotations}: no such file (WIDER_DIR must have the official kit's layout)`);
  process.exit(2);
}
const all = await readFaceDataset(annotations, { images, checkImages: false });
let listDir: string | undefined;
let list: string | undefined;
if (count > 0 && count < all.images.length) {
  listDir = mkdtempSync(join(tmpdir(), 'extd-example-'));
  list = join(listDir, 'list.txt');
  writeFileSync(
    list,
    all.images
      .slice(0, count)
      .map((im) => im.file)
      .join('\n') + '\n',
  );
}
try {
  const dataset = await readFaceDataset(annotations, { images, list });
  const detector = await createDetector({ model });
  const score = await evaluateDetector(detector, dataset, {
    onImage: (done, total) => process.stderr.write(`\r${done}/${total} images`),
  });
  process.stderr.write('\n');
  await detector.dispose();
  console.log(`${model} on ${dataset.images.length} WIDER val images: ${score.metricName} ${score.metric.toFixed(4)} (${score.description})`);
} finally {
  if (listDir) rmSync(listDir, { recursive: true, force: true });
}
