/**
 * Overfit proof: train EXTD-32 on 8 WIDER training images until it has
 * memorised them, then score it on those same 8 images with the official
 * evaluation algorithm (src/eval/evaluator.ts). Not a CI test: it takes tens
 * of CPU minutes.
 *
 *   node --import tsx bench/overfit.ts train [--out runs/overfit8] [--iterations 400]
 *   node --import tsx bench/overfit.ts eval runs/overfit8/ckpt-400.safetensors
 *
 * The 8 images: the first 8 of the training annotations whose every face is
 * at least MIN_FACE px on the shorter side at the evaluation scale and that
 * have at most 6 faces (tiny faces are not what an overfit check is about).
 * Training: size 320, augmentation reduced to what keeps the images
 * recognisable (no photometric distortion, no anchor sampling, square crop of
 * the whole shorter side at a random position, flips kept), lr 0.01 with
 * warm-up. `extd eval` needs the .mat ground truth of the validation set, so
 * the ground truth here is built from the training annotation file, with
 * every face counted in all three settings.
 *
 * Evaluation scale: the model is trained on the shorter side squeezed to 320
 * px, so each image is evaluated resized so that its shorter side is 320
 * (the "train" scale), and also with the single protocol at full size.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readWiderAnnotations, type WiderImageAnnotation } from '../src/data/wider-annotations-node.js';
import { evaluateWider, type GroundTruthImage, type ImagePredictions } from '../src/eval/evaluator.js';
import { runProtocol } from '../src/eval/protocols.js';
import { createDetector, loadImageRgb } from '../src/index.js';
import { samplesFromWider } from '../src/train/loader.js';
import { train } from '../src/train/trainer.js';

const SHARED = process.env.EXTD_SHARED ?? '../shared';
const ANNOTATIONS = join(SHARED, 'wider/wider_face_split/wider_face_train_bbx_gt.txt');
const IMAGES = join(SHARED, 'wider/WIDER_train/images');
const SIZE = 320;
const MIN_FACE = 20;

async function pickImages(): Promise<WiderImageAnnotation[]> {
  const out: WiderImageAnnotation[] = [];
  for (const a of readWiderAnnotations(ANNOTATIONS)) {
    const faces = a.faces.filter((f) => f.w > 0 && f.h > 0);
    if (faces.length === 0 || faces.length > 6) continue;
    const img = await loadImageRgb(join(IMAGES, a.path));
    const scale = SIZE / Math.min(img.width, img.height);
    if (!faces.every((f) => Math.min(f.w, f.h) * scale >= MIN_FACE)) continue;
    out.push({ ...a, faces });
    if (out.length === 8) break;
  }
  return out;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { out: { type: 'string' }, iterations: { type: 'string' }, threads: { type: 'string' } },
  });
  const [mode, ckpt] = positionals;
  const chosen = await pickImages();
  console.log(`images: ${chosen.map((a) => `${a.path} (${a.faces.length})`).join(', ')}`);
  if (mode === 'train') {
    const out = values.out ?? 'runs/overfit8';
    const iterations = Number(values.iterations ?? 400);
    const r = await train(
      {
        annotations: ANNOTATIONS, images: IMAGES, variant: 'extd-fpn-32-prelu', size: SIZE, batch: 4,
        lr: 0.01, warmup: 30, warmupFactor: 0.1, steps: [Math.round(iterations * 0.75)], iterations, checkpointEvery: 50, seed: 8,
        augment: { photometric: false, anchorSamplingProb: 0, cropMinScale: 1, cropMaxScale: 1 },
      },
      { out, samples: samplesFromWider(chosen, IMAGES), threads: Number(values.threads ?? 2), workers: 1, resume: true },
    );
    console.log(`trained to iteration ${r.iteration}: ${r.checkpoint}`);
    return;
  }
  if (mode !== 'eval' || !ckpt) throw new Error('usage: overfit.ts train [--out DIR] [--iterations N] | overfit.ts eval CKPT');
  const gt: GroundTruthImage[] = chosen.map((a) => {
    const n = a.faces.length;
    const ones = new Uint8Array(n).fill(1);
    return {
      key: a.path.replace(/\.jpg$/i, ''),
      boxes: Float64Array.from(a.faces.flatMap((f) => [f.x, f.y, f.w, f.h])),
      inSetting: { easy: ones, medium: ones, hard: ones },
    };
  });
  const detector = await createDetector({ model: ckpt, threads: Number(values.threads ?? 2) });
  const report: Record<string, number> = {};
  for (const mode of ['train-scale', 'single'] as const) {
    const preds = new Map<string, ImagePredictions>();
    for (const a of chosen) {
      const image = await loadImageRgb(join(IMAGES, a.path));
      const d = mode === 'single'
        ? await runProtocol(detector, image, 'single')
        : await detector.detectPass(image, { scale: SIZE / Math.min(image.width, image.height), scoreThreshold: 0.05, nmsThreshold: 0.3, topK: 750 });
      const n = d.scores.length;
      const boxes = new Float64Array(4 * n);
      for (let i = 0; i < n; i++) {
        // Official writer's convention: w = x2 - x1 + 1.
        boxes[4 * i] = d.boxes[4 * i]!, boxes[4 * i + 1] = d.boxes[4 * i + 1]!;
        boxes[4 * i + 2] = d.boxes[4 * i + 2]! - d.boxes[4 * i]! + 1, boxes[4 * i + 3] = d.boxes[4 * i + 3]! - d.boxes[4 * i + 1]! + 1;
      }
      preds.set(a.path.replace(/\.jpg$/i, ''), { boxes, scores: Float64Array.from(d.scores) });
    }
    const r = evaluateWider(gt, preds);
    report[mode] = r.hard.ap;
    console.log(`${mode}: AP ${r.hard.ap.toFixed(4)} over ${r.hard.faces} faces in ${r.images} images`);
  }
  await detector.dispose();
  writeFileSync(ckpt.replace(/\.safetensors$/, '.overfit.json'), JSON.stringify({ model: ckpt, images: chosen.map((a) => a.path), ap: report }, null, 1) + '\n');
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
