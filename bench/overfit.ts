/**
 * Overfit check: train EXTD-32 on 8 WIDER training images to memorise them,
 * then score it on those same 8 images with `extd eval`
 * (the official evaluation algorithm). Not a CI test: it takes tens of CPU
 * minutes.
 *
 *   node --import tsx bench/overfit.ts [--out runs/overfit8] [--iterations 600] [--threads 2]
 *       [--lr 0.004] [--clip-grad 0] [--warmup 50] [--bn-freeze 450]
 *
 * writes OUT/gt.txt (the 8 images' annotations in the WIDER text format),
 * trains into OUT (resumable: run it again to continue), then runs
 *
 *   extd eval --model OUT/ckpt-N.safetensors --images WIDER_train/images --gt OUT/gt.txt --out OUT/eval
 *
 * (single protocol, full-size images; with an annotation file as --gt every
 * valid face counts in all three settings, so the three APs are equal).
 *
 * The 8 images: the first 8 of the training annotations whose every face is
 * at least MIN_FACE px on the shorter side after squeezing the shorter image
 * side to 320 px, with at most 6 faces (tiny faces are not what an overfit
 * check is about). Training: size 320, batch 4, augmentation reduced to what
 * keeps the images recognisable but still spans the evaluation scale (no
 * photometric distortion, no anchor sampling, square crops of 0.3..1 of the
 * shorter side, so faces are seen at up to ~3x the squeezed scale, covering
 * full size; flips kept), lr x0.1 at 3/4 of --iterations.
 *
 * What was measured (2-core machine, 1 libtorch thread, 2026-11-28):
 *  - lr 0.01, clip 10: diverged (loss_c over 300 by iteration 60).
 *  - lr 0.001 or 0.004, no clipping, BN in training mode: stable; after 200
 *    iterations the logged loss_l / loss_c were about 3.7 / 2.5 (loss_c of a
 *    constant predictor: 2.25 with 3 negatives per positive). On the same 4
 *    batches the lr 0.001 model scored 4.8 / 4.5 in training mode and
 *    6.8 / 6.9 in inference mode (BN running statistics): see
 *    TrainConfig.bnFreeze.
 *  - lr 0.004 to 450 with BN frozen after 450 (the defaults below), then
 *    lr 0.0004 to 600: extd eval AP 0.053 on the 8 images. Continued with
 *    `--iterations 1600 --lr 0.001` (lr 0.0001 after 1200): AP 0.19 at 1000,
 *    0.33 at 1050, about 0.3 up to 1439; then `--iterations 3000` (lr 0.001
 *    again, 0.0001 after 2250): 0.45 at 1900, 0.48 at 2300, 0.46 at 2568.
 *    Not memorised: the issue's AP > 0.9 needs more iterations.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { main as cli } from '../src/cli/main.js';
import { formatWiderAnnotations, readWiderAnnotations, type WiderImageAnnotation } from '../src/data/wider-annotations-node.js';
import { loadImageRgb } from '../src/index.js';
import { train, TRAIN_DEFAULTS } from '../src/train/trainer.js';
import { writeFileAtomic } from '../src/utils/atomic.js';
import { relaunchWithTcmalloc } from '../src/train/allocator.js';

// Train with tcmalloc preloaded, as `extd train` does (src/train/allocator.ts).
const relaunched = relaunchWithTcmalloc(process.argv[1]!, process.argv.slice(2));
if (relaunched) process.exit(await relaunched);

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
  const { values } = parseArgs({
    options: {
      out: { type: 'string' }, iterations: { type: 'string' }, threads: { type: 'string' },
      lr: { type: 'string' }, 'clip-grad': { type: 'string' }, warmup: { type: 'string' }, 'bn-freeze': { type: 'string' },
      'head-std': { type: 'string' },
    },
  });
  const out = values.out ?? 'runs/overfit8';
  const iterations = Number(values.iterations ?? 600);
  const threads = values.threads ?? '2';
  const chosen = await pickImages();
  console.log(`images: ${chosen.map((a) => `${a.path} (${a.faces.length})`).join(', ')}`);
  mkdirSync(out, { recursive: true });
  const gt = join(out, 'gt.txt');
  writeFileAtomic(gt, formatWiderAnnotations(chosen));
  const r = await train(
    {
      annotations: gt, images: IMAGES, variant: 'extd-fpn-32-prelu', size: SIZE, batch: 4,
      lr: Number(values.lr ?? 0.004), warmup: Number(values.warmup ?? 50), warmupFactor: 0.1, clipGradNorm: Number(values['clip-grad'] ?? 0), bnFreeze: Number(values['bn-freeze'] ?? 450),
      init: { ...TRAIN_DEFAULTS.init, headStd: Number(values['head-std'] ?? 0) }, steps: [Math.round(iterations * 0.75)], iterations, checkpointEvery: 50, seed: 8,
      augment: { photometric: false, anchorSamplingProb: 0, cropMinScale: 0.3, cropMaxScale: 1 },
    },
    { out, threads: Number(threads), workers: 1, resume: existsSync(join(out, 'latest.json')) },
  );
  console.log(`trained to iteration ${r.iteration}: ${r.checkpoint}`);
  if (!r.checkpoint || r.reason === 'interrupted') return;
  const code = await cli([
    'eval', '--model', r.checkpoint, '--images', IMAGES, '--gt', gt, '--out', join(out, 'eval'), '--threads', threads, '--force',
  ]);
  process.exitCode = code;
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
