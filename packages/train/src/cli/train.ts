import { join } from 'node:path';
import { ExtdError } from '@extd/core/utils/errors';
import { resolveModelPath } from 'extd/load-model';
import { UsageError, numberFlag, parseCli, threadsFlag } from 'extd/cli/args';
import type { Command } from 'extd/cli/command';
import type { TrainConfig } from '../train/trainer.js';
import { LATEST_FILE, readLatest } from '../train/checkpoint.js';

const usage = `usage: extd train --annotations DATA --out DIR [--init MODEL] [options]

Fine-tune a released model on your own annotated photos, for example a
Pascal VOC folder, validating on a held-out part every 100 iterations:

  extd train --init extd-32 --annotations photos/annotations --list train.txt \\
    --val photos/annotations --val-list val.txt --val-every 100 \\
    --size 320 --batch 4 --lr 0.001 --iterations 600 --out runs/mine

or train from scratch on WIDER FACE (the paper's recipe is the default):

  extd train --annotations wider_face_train_bbx_gt.txt --images WIDER_train/images --out runs/wider

DATA is recognised by its content: WIDER text (*_bbx_gt.txt) or .mat
(wider_face_train.mat), COCO JSON, a Pascal VOC folder of .xml files, or a
YOLO data.yaml (its train split; --val takes its val split). --images is
needed only where the format does not say where the images are (WIDER; for
COCO it defaults to the JSON's folder). Each bad annotation is reported on
its own line (file and entry); boxes partly outside their image are clipped
and empty ones dropped, both counted in the summary line.

Uses libtorch (the optional addon: apt-get install libtorch-dev, then npm
rebuild extd). Writes OUT/log.jsonl (one JSON line per iteration, and one per
validation), OUT/config.json, and every --checkpoint-every iterations
OUT/ckpt-N.safetensors (the model: usable with extd detect/eval/convert and
PyTorch's load_state_dict), OUT/ckpt-N.state.safetensors (optimiser state)
and OUT/latest.json; with --val, OUT/best.safetensors and OUT/best.json (the
best validated model). Ctrl-C finishes the current iteration, saves, and
exits; --resume continues exactly where the latest checkpoint left off.

options:
  --annotations DATA     training annotations (any format above)
  --images DIR           folder of the annotation's image paths (WIDER: WIDER_train/images)
  --category NAMES       classes that are faces (COCO, VOC, YOLO): a name, NAME,NAME,... or all
                         (default face)
  --list FILE            train only on these images (one path per line, relative to the images
                         folder; extd split writes such lists)
  --val DATA             validation set (same formats); scored with the single protocol: AP at
                         IoU 0.5 (VOC all-point) for non-WIDER sets, the official WIDER protocol
                         for WIDER ones; logged to log.jsonl, drawn by extd plot-log; the best
                         model is kept as OUT/best.safetensors
  --val-images DIR       images folder of --val, where its format needs one
  --val-list FILE        validate only on these images
  --val-every N          iterations between validations (default: every --checkpoint-every)
  --out DIR              run folder
  --variant NAME         any of extd-{fpn,ssd}-{32,48,64}-{prelu,leaky,relu} (default extd-fpn-32-prelu)
  --size N               square training input side (default 640)
  --batch N              images per iteration (default 16)
  --iterations N         total iterations (default 240000)
  --lr X                 base learning rate (default 0.001)
  --steps A,B,...        iterations where the lr is multiplied by --gamma (default 120000,180000)
  --gamma X              step factor (default 0.1)
  --lr-policy P          step (default) or cosine (to --min-lr at --iterations)
  --min-lr X             final lr of the cosine policy (default 0)
  --warmup N             linear lr warm-up iterations (default 0)
  --warmup-factor X      warm-up starts at X * lr (default 0.01)
  --momentum X           SGD momentum (default 0.9)
  --weight-decay X       SGD weight decay (default 0.0005)
  --neg-pos N            hard negatives per positive (default 3)
  --bn-momentum X        BatchNorm running-statistics momentum (default 0.1)
  --bn-freeze N          after N iterations, BatchNorm uses and keeps its running statistics,
                         as at inference (default 0: never)
  --bn-renorm N          after N iterations, BatchNorm trains as batch renormalisation, whose
                         forward pass moves to what inference computes (default 0: never)
  --bn-renorm-ramp N     iterations over which its limits grow to their final values (default 500)
  --bn-renorm-rmax X     final limit of r (default 3)
  --bn-renorm-dmax X     final limit of d (default 5)
  --clip-grad X          rescale gradients whose global L2 norm exceeds X (default 0: off)
  --head-std X           std of the heads' initial weights (loc.N, conf.N; default 0: He
                         initialisation like every other conv)
  --init MODEL           fine-tune: start from this model's weights instead of initialising them:
                         a bundled name (extd-32, extd-48, extd-64, extd-32-scratch) or a
                         .safetensors/.pth file, same variant as --variant; the optimiser starts
                         fresh, and BatchNorm stays frozen (--bn-frozen) unless --bn-train,
                         --bn-freeze or --bn-renorm is given
  --bn-frozen            BatchNorm uses its running statistics from the first iteration and never
                         updates them (default with --init: one step in training mode on a small
                         batch replaces a trained model's statistics and ruins it)
  --bn-train             with --init, train BatchNorm in training mode as from scratch
  --teacher MODEL        distil from this model: a bundled name (extd-32, extd-48, extd-64,
                         extd-32-scratch) or a .safetensors/.pth file of any variant, run on every
                         batch as at inference; its per-prior face probabilities and boxes are soft
                         targets beside the labels (logged as loss_kd_c and loss_kd_l; recorded
                         in config.json and every model file's metadata). Default: none (the
                         paper's recipe). Costs a teacher forward pass per iteration
  --teacher-weight X     weight of the class term, KL(teacher || student) over the labels' mined
                         priors and the teacher's detections (default 1)
  --teacher-box-weight X weight of the box term, smooth-L1 to the teacher's boxes where its face
                         probability exceeds 0.5 (default 1)
  --ema D                keep an exponential moving average of the weights (decay D in [0, 1),
                         e.g. 0.999): validation scores it, checkpoints also write it as
                         ckpt-N.ema.safetensors (default 0: off, the paper's recipe)
  --seed N               seed of the data stream and the initial weights (default 0)
  --checkpoint-every N   iterations between checkpoints (default 1000)
  --keep-last N          delete older checkpoints, keeping the newest N (default 0: keep all)
  --keep-every N         with --keep-last, also keep every multiple of N
  --limit-images N       train on the first N images only (default: all)
  --resume               continue from OUT/latest.json (flags given now override the stored config)
  --threads N            libtorch threads (default 2)
  --workers N            data loader worker threads (default 1; 0 = main thread)`;

export const command: Command = {
  name: 'train',
  usage,
  async run(argv) {
    const { values: v } = parseCli(
      argv,
      {
        annotations: { type: 'string' },
        images: { type: 'string' },
        category: { type: 'string' },
        list: { type: 'string' },
        val: { type: 'string' },
        'val-images': { type: 'string' },
        'val-list': { type: 'string' },
        'val-every': { type: 'string' },
        out: { type: 'string' },
        variant: { type: 'string' },
        size: { type: 'string' },
        batch: { type: 'string' },
        iterations: { type: 'string' },
        lr: { type: 'string' },
        steps: { type: 'string' },
        gamma: { type: 'string' },
        'lr-policy': { type: 'string' },
        'min-lr': { type: 'string' },
        warmup: { type: 'string' },
        'warmup-factor': { type: 'string' },
        momentum: { type: 'string' },
        'weight-decay': { type: 'string' },
        'neg-pos': { type: 'string' },
        'bn-momentum': { type: 'string' },
        'clip-grad': { type: 'string' },
        'bn-freeze': { type: 'string' },
        'head-std': { type: 'string' },
        init: { type: 'string' },
        'bn-frozen': { type: 'boolean' },
        'bn-train': { type: 'boolean' },
        teacher: { type: 'string' },
        'teacher-weight': { type: 'string' },
        'teacher-box-weight': { type: 'string' },
        ema: { type: 'string' },
        'bn-renorm': { type: 'string' },
        'bn-renorm-ramp': { type: 'string' },
        'bn-renorm-rmax': { type: 'string' },
        'bn-renorm-dmax': { type: 'string' },
        seed: { type: 'string' },
        'checkpoint-every': { type: 'string' },
        'keep-last': { type: 'string' },
        'keep-every': { type: 'string' },
        'limit-images': { type: 'string' },
        resume: { type: 'boolean' },
        threads: { type: 'string' },
        workers: { type: 'string' },
      },
      false,
    );
    if (!v.out) throw new UsageError('--out DIR is required (the run folder for checkpoints and log.jsonl)');
    const resume = v.resume ?? false;
    if (!resume && !v.annotations) {
      throw new UsageError('--annotations DATA is required (WIDER text or .mat, COCO JSON, a Pascal VOC folder or a YOLO data.yaml)');
    }
    // libtorch is loaded by train() once every flag and input has been checked, so a bad flag
    // gets its own message whether or not the addon is built.
    const { train, TRAIN_DEFAULTS } = await import('../train/trainer.js');
    type Config = TrainConfig;

    // Flags are only parsed here: train() checks the values (validateConfig, the one place
    // training options are validated). Only flags given on the command line go into the
    // config, so --resume keeps the stored values for the others.
    const config: Partial<Config> = {};
    const set = <K extends keyof Config>(key: K, value: Config[K] | undefined) => {
      if (value !== undefined) config[key] = value;
    };
    const num = (name: string) => {
      const raw = (v as Record<string, string | undefined>)[name];
      return raw === undefined ? undefined : numberFlag(raw, `--${name}`, 0, () => true, 'a number');
    };
    set('annotations', v.annotations);
    set('images', v.images);
    set('category', v.category);
    set('list', v.list);
    set('val', v.val);
    set('valImages', v['val-images']);
    set('valList', v['val-list']);
    set('valEvery', num('val-every'));
    set('variant', v.variant);
    set('size', num('size'));
    set('batch', num('batch'));
    set('iterations', num('iterations'));
    set('lr', num('lr'));
    set('steps', v.steps === undefined ? undefined : v.steps === '' ? [] : v.steps.split(',').map(Number));
    set('gamma', num('gamma'));
    set('policy', v['lr-policy'] as Config['policy'] | undefined);
    set('minLr', num('min-lr'));
    set('warmup', num('warmup'));
    set('warmupFactor', num('warmup-factor'));
    set('momentum', num('momentum'));
    set('weightDecay', num('weight-decay'));
    set('negPosRatio', num('neg-pos'));
    set('bnMomentum', num('bn-momentum'));
    set('clipGradNorm', num('clip-grad'));
    set('bnFreeze', num('bn-freeze'));
    set('bnRenorm', num('bn-renorm'));
    set('bnRenormRamp', num('bn-renorm-ramp'));
    set('bnRenormRMax', num('bn-renorm-rmax'));
    set('bnRenormDMax', num('bn-renorm-dmax'));
    const headStd = num('head-std');
    if (headStd !== undefined) config.init = { ...TRAIN_DEFAULTS.init, headStd };
    if (v.init !== undefined) config.initFrom = resolveModelPath(v.init, '--init');
    if (v['bn-frozen'] && v['bn-train']) throw new ExtdError('--bn-frozen and --bn-train contradict each other: choose one');
    if (v['bn-frozen']) config.bnFrozen = true;
    else if (v['bn-train']) config.bnFrozen = false;
    else if (v.init !== undefined && config.bnFreeze === undefined && config.bnRenorm === undefined) config.bnFrozen = true;
    set('teacher', v.teacher);
    set('teacherWeight', num('teacher-weight'));
    set('teacherBoxWeight', num('teacher-box-weight'));
    set('ema', num('ema'));
    set('seed', num('seed'));
    set('checkpointEvery', num('checkpoint-every'));
    set('keepLast', num('keep-last'));
    set('keepEvery', num('keep-every'));
    set('limitImages', num('limit-images'));
    const threads = threadsFlag(v.threads);
    const workers = numberFlag(v.workers, '--workers', 1, (x) => Number.isInteger(x) && x >= 0 && x <= 64, 'an integer from 0 to 64');

    if (resume) {
      const latest = readLatest(v.out);
      if (latest) console.error(`extd train: resuming from ${join(v.out, latest.model)} (iteration ${latest.iteration})`);
      else if (!v.annotations)
        throw new ExtdError(
          `--resume: ${v.out} has no checkpoint to resume from (no ${LATEST_FILE}); start a new run with --annotations (and --images for WIDER annotations)`,
        );
      else console.error(`extd train: --resume: no checkpoint in ${v.out} yet (no ${LATEST_FILE}), starting a new run`);
    }

    const result = await train(config, { out: v.out, resume, threads, workers });
    const how = result.reason === 'done' ? 'finished' : 'stopped';
    console.error(
      `extd train: ${how} at iteration ${result.iteration}; latest checkpoint ${result.checkpoint ?? '(none)'}` +
        (result.emaCheckpoint ? `, its moving average ${result.emaCheckpoint}` : ''),
    );
    return result.reason === 'interrupted' ? 130 : 0;
  },
};
