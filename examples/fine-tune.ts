/**
 * Fine-tune the released EXTD-32 on your own annotated photos, then detect
 * with the result (Node + libtorch: `npm install extd @extd/train` with
 * libtorch-dev installed).
 *
 *   node --conditions=extd-source --import tsx examples/fine-tune.ts ANNOTATIONS IMAGES_DIR OUT_DIR [ITERATIONS]
 *
 * ANNOTATIONS: WIDER text or .mat, COCO JSON, a Pascal VOC folder or a YOLO
 * data.yaml. ITERATIONS defaults to 200 (about 15 minutes on 2 cores at
 * 320 px, batch 4); the README's Training section gives the full recipe.
 */
import { join } from 'node:path';
import { createDetector } from 'extd';
import { train, torchUnavailableReason } from '@extd/train';

const [annotations, images, out, itersArg = '200'] = process.argv.slice(2);
const iterations = Number(itersArg);
if (!annotations || !images || !out || !Number.isInteger(iterations) || iterations < 1) {
  console.error('usage: fine-tune.ts ANNOTATIONS IMAGES_DIR OUT_DIR [ITERATIONS]');
  process.exit(2);
}
const why = torchUnavailableReason();
if (why) {
  console.error(`fine-tune: ${why}`);
  process.exit(1);
}
// From the released weights, with a small learning rate and BatchNorm frozen (the README's fine-tuning recipe).
const result = await train(
  {
    annotations,
    images,
    initFrom: 'extd-32',
    iterations,
    size: 320,
    batch: 4,
    lr: 0.001,
    warmup: Math.min(50, iterations - 1),
    bnFreeze: 1,
    checkpointEvery: iterations,
  },
  { out, threads: 2 },
);
console.log(`trained ${iterations} iterations: ${JSON.stringify(result)}`);
const detector = await createDetector({ model: join(out, `ckpt-${iterations}.safetensors`) });
await detector.dispose();
console.log(`model: ${join(out, `ckpt-${iterations}.safetensors`)} (use it as createDetector({ model: PATH }) or extd detect --model PATH)`);
