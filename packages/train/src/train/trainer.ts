/**
 * The training loop: loader -> matching -> libtorch forward -> multibox loss
 * -> backward -> SGD, with the lr schedule, a JSON-lines log, atomic
 * checkpoints and exact resume.
 *
 * Iteration i (0-based) consumes batch i of the loader's seeded stream and
 * uses learningRate(i); after it, `i + 1` iterations are complete and that is
 * the number a checkpoint and a log record carry. Resuming from checkpoint N
 * restores the weights, BN statistics and momentum buffers and restarts the
 * loader at batch N, so the continued run computes what the uninterrupted one
 * would have (to float rounding of the thread pool's reductions).
 *
 * Node only.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePriors } from '@extd/core/anchors/priors';
import { loadModel, resolveModelPath } from 'extd/load-model';
import { buildGraph } from '@extd/core/model/graph';
import { parseVariant, variantName } from '@extd/core/model/variant';
import { writeFileAtomic } from 'extd/utils/atomic';
import { ExtdError } from '@extd/core/utils/errors';
import { Progress } from 'extd/utils/progress';
import type { Float32Tensor } from '@extd/core/utils/tensor';
import { checkpointNames, loadCheckpoint, pruneCheckpoints, saveCheckpoint, writeModelFile, type SavedCheckpoint } from './checkpoint.js';
import type { AugmentOptions } from './augment.js';
import { initialWeights, INIT_DEFAULTS, type InitOptions } from './init.js';
import { TrainLoader, type TrainSample } from './loader.js';
import { parseCategory, summaryLine, type FaceDataset } from '@extd/core/data/dataset';
import { readFaceDataset, trainingSamples } from 'extd/data/read-dataset';
import { evaluateDetector, formatScore, type DatasetScore } from 'extd/eval/dataset-eval';
import { modelFromTensors, type LoadedModel } from '@extd/core/weights/checkpoint';
import { distillLoss, multiboxLoss } from './loss.js';
import { matchBatch } from './match.js';
import { learningRate, SCHEDULE_DEFAULTS, validateSchedule, type ScheduleOptions } from './schedule.js';
import { createTorchModel, type Renorm } from './torch-model.js';
import { loadTorch, type Torch, type TorchTensor } from './torch.js';

/** Everything that defines a run. Stored in every checkpoint; `--resume` continues with it. */
export interface TrainConfig {
  /**
   * Training annotations in any format src/data/read-dataset.ts recognises:
   * WIDER text or .mat, COCO JSON, a Pascal VOC folder, a YOLO data.yaml
   * (its `train` split).
   */
  annotations: string;
  /** Folder the annotation's image paths are relative to ('' where the format says: COCO, VOC, YOLO). */
  images: string;
  /** Classes taken as faces (COCO, VOC, YOLO): a name, comma-separated names, or 'all'. */
  category: string;
  /** Train only on the images of this list file (one path per line, relative to the images folder; '' = all). */
  list: string;
  /** Validation set (same formats; YOLO: its `val` split), scored every valEvery iterations ('' = none). */
  val: string;
  /** Images folder of the validation set, where its format needs one. */
  valImages: string;
  /** Validate only on the images of this list file ('' = all). */
  valList: string;
  /** Iterations between validations (0: at every checkpoint). */
  valEvery: number;
  /** Use only the first N annotated images with faces (0: all). */
  limitImages: number;
  /** One of the 18 variants, e.g. extd-fpn-32-prelu. */
  variant: string;
  /** Square training input side. */
  size: number;
  /** Images per iteration (default 16). */
  batch: number;
  /** Base learning rate, schedule and warm-up (see schedule.ts). */
  lr: number;
  /** 'step': multiply the lr by gamma at each of `steps`; 'cosine': half-cosine from lr to minLr after the warm-up. */
  policy: ScheduleOptions['policy'];
  /** Iterations at which the step policy multiplies the lr by gamma (default 120000, 180000). */
  steps: number[];
  /** Step policy's lr factor (default 0.1). */
  gamma: number;
  /** Total iterations of the run (default 240000; the end of the cosine). */
  iterations: number;
  /** Linear warm-up iterations (0: none, the default). */
  warmup: number;
  /** The warm-up starts at warmupFactor x lr (default 0.01). */
  warmupFactor: number;
  /** Final lr of the cosine policy (default 0). */
  minLr: number;
  /** SGD momentum (default 0.9). */
  momentum: number;
  /** SGD weight decay, L2 (default 5e-4). */
  weightDecay: number;
  /** Hard negatives per positive. */
  negPosRatio: number;
  /** BatchNorm running-statistics momentum. */
  bnMomentum: number;
  /**
   * After this many iterations (0: never, the paper's recipe) BatchNorm
   * normalises with its running statistics and stops updating them, as at
   * inference (iterations 1..N train BN as usual, N+1 on are frozen);
   * its scale and shift still learn. Why: EXTD's block F is applied six
   * times, at six resolutions, through the same BN layers. In training mode
   * each application normalises with its own batch statistics, but inference
   * has one set of running statistics per layer, an average over the six
   * scales. Early in training the two differ widely (on the 8-image overfit
   * set after 200 iterations, loss_l / loss_c on the same batches were
   * 4.8 / 4.5 in training mode and 6.8 / 6.9 in inference mode, 7.0 / 7.1
   * after re-estimating the running statistics), so a model can learn in
   * training mode while its inference-mode outputs stay useless. Freezing BN
   * trains the function that inference runs. Freeze only once the running
   * statistics have settled (hundreds of iterations), and expect the loss to
   * jump at the switch: frozen after 2 or 10 iterations, the inference-mode
   * outputs were so large that training diverged within a few steps.
   */
  bnFreeze: number;
  /**
   * BatchNorm uses its running statistics from the first iteration and never
   * updates them (its scale and shift still learn): what fine-tuning a
   * trained model needs. Measured: EXTD-32 from the released weights, 8
   * face-mask images at 128x128, batch 2, lr 0.001: two iterations with BN
   * in training mode took AP@0.5 on 20 held-out images from 0.61 to 0.01
   * (the running statistics move towards small batches' at momentum 0.1);
   * with BN frozen it was 0.40 and 0.49 after 2 and 4 iterations. The CLI
   * turns it on with --init.
   */
  bnFrozen: boolean;
  /**
   * After this many iterations (0: never) BatchNorm in training mode becomes
   * batch renormalisation (TorchModel's Renorm): the batch statistics still
   * shape the gradient, but each output is corrected towards what the running
   * statistics give, so training sees the function inference runs. The
   * correction limits grow linearly from none (plain BN) to bnRenormRMax /
   * bnRenormDMax over bnRenormRamp iterations. The same six-scale mismatch as
   * bnFreeze addresses, without giving up batch normalisation's conditioning.
   */
  bnRenorm: number;
  /** Iterations over which the renormalisation limits reach their final values. */
  bnRenormRamp: number;
  /** Final limit of r (r in [1/rMax, rMax]); the Batch Renormalization paper's 3. */
  bnRenormRMax: number;
  /** Final limit of d (|d| <= dMax); the paper's 5. */
  bnRenormDMax: number;
  /**
   * Rescale the gradient when its global L2 norm exceeds this (0: never, the
   * paper's recipe). A guard against the loss spikes of from-scratch training
   * at a high learning rate.
   */
  clipGradNorm: number;
  /** How new weights are initialised (Kaiming fan mode, PReLU slope, heads' std); ignored with initFrom or when resuming. */
  init: InitOptions;
  /**
   * Start from the weights (and BN statistics) of this checkpoint, of the
   * same variant, instead of initialising them; the optimiser starts fresh.
   * '' (default): initialise as `init` says. Ignored when resuming.
   */
  initFrom: string;
  /**
   * Knowledge distillation: a released model run on every batch (BN with its
   * running statistics, no gradient) whose per-prior class probabilities and
   * boxes are soft targets beside the labels (see distillLoss in loss.ts). A
   * bundled model name (extd-32, extd-48, extd-64, extd-32-scratch) or a
   * .safetensors/.pth file, of any variant (all share the S3FD priors).
   * '' (default, the paper's recipe): no teacher. Recorded in config.json and
   * in every model file's metadata (`teacher`).
   */
  teacher: string;
  /** Weight of the distillation class term, KL(teacher || student) (loss_kd_c; default 1). */
  teacherWeight: number;
  /** Weight of the distillation box term, smooth-L1 to the teacher's boxes where it sees a face (loss_kd_l; default 1). */
  teacherBoxWeight: number;
  /**
   * Exponential moving average of the weights, for evaluation: after every
   * step, ema = d * ema + (1 - d) * weights for every tensor of the model
   * (BN running statistics included), with d = min(ema, (1 + t) / (10 + t))
   * at step t so that a young average follows the weights. When on,
   * validation scores the averaged weights (best.safetensors holds them), and
   * every checkpoint also writes them as ckpt-N.ema.safetensors; the state
   * file carries them for --resume. 0 (default, the paper's recipe): off.
   * Typical: 0.999 (an average over about the last 1,000 steps).
   */
  ema: number;
  /** Augmentation overrides (defaults: the S3FD pipeline of augment.ts; size comes from `size`). */
  augment: Partial<AugmentOptions>;
  /** Seed of the data stream and the initial weights. */
  seed: number;
  /** Save a checkpoint every N iterations (and at the end or on interrupt). */
  checkpointEvery: number;
  /** Keep the newest N checkpoints plus every multiple of keepEvery (0: keep all). */
  keepLast: number;
  /** With keepLast > 0, also keep every checkpoint whose iteration is a multiple of this (0: none kept that way). */
  keepEvery: number;
}

/**
 * The paper's recipe and the released code's settings: SGD lr 1e-3, momentum
 * 0.9, weight decay 5e-4, batch 16, 240k iterations with lr x0.1 at 120k and
 * 180k, 640x640 inputs, 3 negatives per positive, EXTD-32 FPN PReLU.
 */
export const TRAIN_DEFAULTS: Readonly<TrainConfig> = Object.freeze({
  annotations: '',
  images: '',
  category: 'face',
  list: '',
  val: '',
  valImages: '',
  valList: '',
  valEvery: 0,
  limitImages: 0,
  variant: 'extd-fpn-32-prelu',
  size: 640,
  batch: 16,
  lr: SCHEDULE_DEFAULTS.lr,
  policy: SCHEDULE_DEFAULTS.policy,
  steps: [...SCHEDULE_DEFAULTS.steps],
  gamma: SCHEDULE_DEFAULTS.gamma,
  iterations: SCHEDULE_DEFAULTS.iterations,
  warmup: SCHEDULE_DEFAULTS.warmup,
  warmupFactor: SCHEDULE_DEFAULTS.warmupFactor,
  minLr: SCHEDULE_DEFAULTS.minLr,
  momentum: 0.9,
  weightDecay: 5e-4,
  negPosRatio: 3,
  bnMomentum: 0.1,
  bnFreeze: 0,
  bnFrozen: false,
  bnRenorm: 0,
  bnRenormRamp: 500,
  bnRenormRMax: 3,
  bnRenormDMax: 5,
  clipGradNorm: 0,
  init: INIT_DEFAULTS,
  initFrom: '',
  teacher: '',
  teacherWeight: 1,
  teacherBoxWeight: 1,
  ema: 0,
  augment: {},
  seed: 0,
  checkpointEvery: 1000,
  keepLast: 0,
  keepEvery: 0,
});

/** How this process runs (not part of the run's identity; may differ between sessions). */
export interface RunOptions {
  /** Output folder: checkpoints, log.jsonl, config.json. */
  out: string;
  /** Continue from out/latest.json; config fields in `overrides` replace the stored ones. */
  resume: boolean;
  /** libtorch threads. */
  threads: number;
  /** Loader worker threads (0: prepare batches on the main thread). */
  workers: number;
  /** Stop after this many iterations in this process (default Infinity: run to config.iterations; 0 just writes the starting checkpoint). */
  stopAfter: number;
  /** Progress line; null to stay silent. */
  progress: NodeJS.WriteStream | null;
  /** Samples to train on instead of reading config.annotations (tests). */
  samples?: readonly TrainSample[];
  /** Called after each iteration with its log record. */
  onIteration?: (record: LogRecord) => void;
  /** Called after each validation with its log record. */
  onValidation?: (record: ValRecord) => void;
}

/** Defaults of RunOptions: a new run, 2 libtorch threads, 1 loader worker, to the end, progress on stderr. */
export const RUN_DEFAULTS: Readonly<Omit<RunOptions, 'out'>> = Object.freeze({
  resume: false,
  threads: 2,
  workers: 1,
  stopAfter: Infinity,
  progress: process.stderr,
});

/** One line of log.jsonl. */
export interface LogRecord {
  /** Completed iterations after this step. */
  iter: number;
  /** Localisation loss: smooth L1 on the positives' box offsets, divided by the positives. */
  loss_l: number;
  /** Classification loss: softmax cross-entropy over positives and mined hard negatives, divided by the positives. */
  loss_c: number;
  /** With a teacher: the distillation class term, KL(teacher || student) over the class term's priors and the teacher's detections, divided by the positives (unweighted). */
  loss_kd_c?: number;
  /** With a teacher: the distillation box term, smooth L1 to the teacher's boxes where its face probability exceeds 0.5, divided by the positives (unweighted). */
  loss_kd_l?: number;
  /** lr used by this step. */
  lr: number;
  /** Global L2 norm of the gradient before any clipping. */
  grad_norm: number;
  /** Priors matched to a face in this batch (the losses' divisor). */
  positives: number;
  /** Training throughput of this step (images / wall second, loader wait included). */
  img_s: number;
  /** Wall-clock ISO time. */
  time: string;
}

/**
 * A validation line of log.jsonl (beside the per-iteration LogRecords; it has
 * no loss fields). `val_metric` is what the best checkpoint is chosen by.
 */
export interface ValRecord {
  /** Completed iterations when the weights were scored (0: the starting weights). */
  iter: number;
  /** AP at IoU 0.5 (ap50), or the mean of easy / medium / hard AP (wider). */
  val_metric: number;
  /** How the set was scored: 'ap50' (VOC AP at IoU 0.5) or 'wider' (the official WIDER FACE protocol). */
  val_protocol: 'ap50' | 'wider';
  /** Images scored. */
  val_images: number;
  /** ap50: the AP. */
  val_ap?: number;
  /** wider: the easy setting's AP. */
  val_easy?: number;
  /** wider: the medium setting's AP. */
  val_medium?: number;
  /** wider: the hard setting's AP. */
  val_hard?: number;
  /** 'ema' when the moving average of the weights was scored (--ema); absent: the weights themselves. */
  val_weights?: 'ema';
  /** Wall seconds the validation took. */
  val_seconds: number;
  /** Wall-clock ISO time. */
  time: string;
}

/** The best validated model of a run: best.safetensors and this record in best.json. */
export interface BestRecord {
  /** Iteration of best.safetensors (-1: none yet). */
  iteration: number;
  /** Its validation score (DatasetScore.metric; -Infinity: none yet). */
  metric: number;
  /** What `metric` is, in words (e.g. 'AP at IoU 0.5'). */
  metricName: string;
  /** The validation set (TrainConfig.val) it was scored on. */
  val: string;
  /** The scoring protocol in words (DatasetScore.description). */
  protocol: string;
}

/** File name, in the run folder, of the best validated model. */
export const BEST_MODEL_FILE = 'best.safetensors';
/** File name, in the run folder, of the BestRecord (JSON). */
export const BEST_FILE = 'best.json';

function noBest(): BestRecord {
  return { iteration: -1, metric: -Infinity, metricName: '', val: '', protocol: '' };
}

function readBest(out: string): BestRecord {
  const path = join(out, BEST_FILE);
  if (!existsSync(path)) return noBest();
  try {
    const b = JSON.parse(readFileSync(path, 'utf8')) as BestRecord;
    if (!Number.isInteger(b.iteration) || typeof b.metric !== 'number') throw new Error('expected {"iteration": N, "metric": X, ...}');
    return b;
  } catch (err) {
    throw new ExtdError(`${path}: unreadable (${(err as Error).message}); delete it to start the best-model record afresh`);
  }
}

/** Score a model on a validation set with the single protocol (onnxruntime, `threads` threads). */
async function scoreModel(model: LoadedModel, set: FaceDataset, threads: number): Promise<DatasetScore> {
  const { createDetector } = await import('extd');
  const detector = await createDetector({ model, threads });
  try {
    return await evaluateDetector(detector, set, { protocol: 'single' });
  } finally {
    await detector.dispose();
  }
}

/** The training images of config.annotations (any supported format); problems and the summary line go to `say`. */
async function readTrainingSet(c: TrainConfig, say: (line: string) => void): Promise<TrainSample[]> {
  const d = await readFaceDataset(c.annotations, {
    images: c.images || undefined,
    category: parseCategory(c.category),
    split: 'train',
    list: c.list || undefined,
    onProblem: say,
  });
  say(`training set ${summaryLine(d)}`);
  const samples = trainingSamples(d);
  if (samples.length === 0)
    throw new ExtdError(
      `${c.annotations}: no image with at least one face to train on (${d.stats.images} images, ${d.stats.faces} faces, ${d.stats.ignored} ignored)`,
    );
  return samples;
}

async function readValidationSet(c: TrainConfig, say: (line: string) => void): Promise<FaceDataset> {
  const d = await readFaceDataset(c.val, {
    images: c.valImages || undefined,
    category: parseCategory(c.category),
    split: 'val',
    list: c.valList || undefined,
    onProblem: say,
  });
  say(`validation set ${summaryLine(d)}`);
  if (d.images.length === 0) throw new ExtdError(`${c.val}: no images to validate on`);
  return d;
}

/** How a train() call ended. */
export interface TrainResult {
  /** Completed iterations. */
  iteration: number;
  /** The latest checkpoint (model file): the last one written, else the one resumed from; null when neither. */
  checkpoint: string | null;
  /** The checkpoint (model file) this run resumed from, or null for a new run. */
  resumedFrom: string | null;
  /** With --ema: the averaged weights of the latest checkpoint written (ckpt-N.ema.safetensors), else null. */
  emaCheckpoint: string | null;
  /** Why the loop ended. */
  reason: 'done' | 'stopAfter' | 'interrupted';
}

/** File name, in the run folder, of the training log: one JSON line per iteration (LogRecord) and per validation (ValRecord). */
export const LOG_FILE = 'log.jsonl';

function scheduleOf(c: TrainConfig): ScheduleOptions {
  return {
    lr: c.lr,
    policy: c.policy,
    steps: c.steps,
    gamma: c.gamma,
    iterations: c.iterations,
    warmup: c.warmup,
    warmupFactor: c.warmupFactor,
    minLr: c.minLr,
  };
}

const isInt = (min: number) => (x: number) => Number.isInteger(x) && x >= min;

/**
 * The numeric options' checks: config field, its `extd train` flag, the test
 * and what is expected. (The schedule's fields are checked by validateSchedule.)
 */
const NUMBER_CHECKS: ReadonlyArray<readonly [keyof TrainConfig, string, (x: number) => boolean, string]> = [
  ['valEvery', '--val-every', isInt(0), 'a non-negative integer (0: at every checkpoint)'],
  ['limitImages', '--limit-images', isInt(0), 'a non-negative integer (0: all)'],
  ['size', '--size', (x) => isInt(32)(x) && x % 4 === 0, 'an integer >= 32, a multiple of 4'],
  ['batch', '--batch', isInt(1), 'a positive integer'],
  ['momentum', '--momentum', (x) => x >= 0 && x < 1, 'a number in [0, 1)'],
  ['weightDecay', '--weight-decay', (x) => x >= 0, 'a non-negative number'],
  ['negPosRatio', '--neg-pos', isInt(1), 'a positive integer'],
  ['bnMomentum', '--bn-momentum', (x) => x > 0 && x <= 1, 'a number in (0, 1]'],
  ['bnFreeze', '--bn-freeze', isInt(0), 'a non-negative integer (0: never)'],
  ['bnRenorm', '--bn-renorm', isInt(0), 'a non-negative integer (0: never)'],
  ['bnRenormRamp', '--bn-renorm-ramp', isInt(0), 'a non-negative integer'],
  ['bnRenormRMax', '--bn-renorm-rmax', (x) => x >= 1, 'a number >= 1'],
  ['bnRenormDMax', '--bn-renorm-dmax', (x) => x >= 0, 'a number >= 0'],
  ['clipGradNorm', '--clip-grad', (x) => x >= 0, 'a non-negative number'],
  ['seed', '--seed', (x) => Number.isSafeInteger(x), 'an integer'],
  ['checkpointEvery', '--checkpoint-every', isInt(1), 'a positive integer'],
  ['keepLast', '--keep-last', isInt(0), 'a non-negative integer'],
  ['keepEvery', '--keep-every', isInt(0), 'a non-negative integer'],
  ['teacherWeight', '--teacher-weight', (x) => x >= 0, 'a non-negative number'],
  ['teacherBoxWeight', '--teacher-box-weight', (x) => x >= 0, 'a non-negative number'],
  ['ema', '--ema', (x) => x >= 0 && x < 1, 'a number in [0, 1) (0: off)'],
];

/**
 * The one check of a training configuration, for `extd train` (which only
 * parses its flags into a TrainConfig) and library callers alike. Errors name
 * each option by its `extd train` flag (the config fields are the flags in
 * camelCase: weightDecay is --weight-decay), since that is how most users set
 * them. `given` is what the caller set explicitly (for a resumed run the rest
 * comes from the stored config); `resume` says whether the run resumes.
 * @throws ExtdError naming the first bad option.
 */
export function validateConfig(c: TrainConfig, given: Partial<TrainConfig> = c, resume = false): void {
  parseVariant(c.variant);
  parseCategory(c.category);
  validateSchedule(scheduleOf(c));
  for (const [key, flag, ok, expected] of NUMBER_CHECKS) {
    const v = c[key] as number;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new ExtdError(`${flag} ${v}: expected ${expected}`);
  }
  if (!(c.init.headStd >= 0)) throw new ExtdError(`--head-std ${c.init.headStd}: expected a non-negative number`);
  if (c.bnFrozen && (c.bnFreeze > 0 || c.bnRenorm > 0)) {
    throw new ExtdError(
      `BatchNorm frozen from the start (bn-frozen) contradicts ${c.bnFreeze > 0 ? `bn-freeze ${c.bnFreeze}` : `bn-renorm ${c.bnRenorm}`}: choose one`,
    );
  }
  if (resume && given.init !== undefined) throw new ExtdError('--head-std only applies to a new run (it sets the initial weights)');
  if (given.init !== undefined && given.initFrom) {
    throw new ExtdError(
      `--head-std ${c.init.headStd} with --init ${given.initFrom}: --init loads every weight from the file, so there is no head to initialise; drop one of them`,
    );
  }
  if (typeof c.teacher !== 'string') throw new ExtdError(`--teacher ${String(c.teacher)}: expected a bundled model name or a model file`);
  if (c.teacher) {
    // Throws for an unknown name (listing the bundled ones); a path must exist.
    const path = resolveModelPath(c.teacher, '--teacher');
    if (!existsSync(path)) throw new ExtdError(`--teacher '${c.teacher}': no such file (and not a bundled model name)`);
  }
  if (resume && given.initFrom) throw new ExtdError('--init only applies to a new run (it sets the starting weights); --resume continues from the run folder');
}

/** The weights of checkpoint `path`, which must hold `variant`. */
async function startingWeights(path: string, variant: string): Promise<Map<string, Float32Tensor>> {
  const m = await loadModel(path);
  const found = variantName(m.variant);
  if (found !== variant) throw new ExtdError(`${path}: holds ${found}, but the run trains ${variant}`);
  return m.weights;
}

/** Keep only log records of iterations <= `iteration` (a resumed run rewrites what came after its checkpoint). */
function truncateLog(path: string, iteration: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => {
      if (!line.trim()) return false;
      try {
        return (JSON.parse(line) as LogRecord).iter <= iteration;
      } catch {
        return false; // a line cut by a crash
      }
    });
  writeFileAtomic(path, kept.map((l) => l + '\n').join(''));
}

/**
 * Train (or continue training) as configured. Resolves when config.iterations
 * are complete, after `stopAfter` iterations, or after SIGINT/SIGTERM (the
 * current iteration finishes and a checkpoint is written first).
 * @throws ExtdError for an invalid config (naming the `extd train` flag), unreadable annotations or
 * checkpoints, a missing libtorch addon, and a diverging loss (non-finite).
 */
export async function train(configIn: Partial<TrainConfig>, runIn: Partial<RunOptions> & { out: string }): Promise<TrainResult> {
  const run: RunOptions = { ...RUN_DEFAULTS, ...runIn };

  const resumed = run.resume ? await loadCheckpoint<TrainConfig>(run.out) : null;
  // A resumed run continues with its stored config; fields given explicitly (configIn) win.
  const config: TrainConfig = { ...TRAIN_DEFAULTS, ...resumed?.state.config, ...configIn };
  if (resumed && configIn.variant && variantName(parseVariant(configIn.variant)) !== variantName(parseVariant(resumed.state.config.variant))) {
    throw new ExtdError(`${run.out}: the checkpoint is ${resumed.state.config.variant}, not ${configIn.variant}`);
  }
  const variant = parseVariant(config.variant);
  config.variant = variantName(variant);
  validateConfig(config, configIn, run.resume);
  const graph = buildGraph(variant);

  // Every input (checkpoint, --init weights, data set) is read and checked before libtorch is loaded,
  // so a bad flag or file is reported the same way whether or not the addon is built.
  const start = resumed
    ? resumed.model
    : config.initFrom
      ? await startingWeights(config.initFrom, config.variant)
      : initialWeights(graph, config.seed, config.init);
  const say = (line: string) => run.progress?.write(`${run.progress.isTTY ? '\r\x1b[K' : ''}${line}\n`);
  const samples = run.samples ?? (await readTrainingSet(config, say));
  const valSet = config.val ? await readValidationSet(config, say) : null;
  const teacherLoaded = config.teacher ? await loadModel(resolveModelPath(config.teacher, '--teacher')) : null;
  if (teacherLoaded) say(`teacher ${config.teacher} (${variantName(teacherLoaded.variant)})`);
  const torch: Torch = loadTorch();
  torch.setNumThreads(run.threads);
  const model = createTorchModel(torch, graph, start, {
    bnMomentum: config.bnMomentum,
  });
  const teacher = teacherLoaded ? createTorchModel(torch, buildGraph(teacherLoaded.variant), teacherLoaded.weights) : null;
  /** Metadata of every model file written: whether (and how) the weights were distilled. */
  const modelMetadata: Record<string, string> = config.teacher
    ? { teacher: config.teacher, teacher_weight: String(config.teacherWeight), teacher_box_weight: String(config.teacherBoxWeight) }
    : {};
  const params = model.parameters();
  const sgd = torch.sgd(params, { lr: config.lr, momentum: config.momentum, weightDecay: config.weightDecay });
  let iteration = 0;
  if (resumed) {
    iteration = resumed.state.iteration;
    const bufs = model.parameterNames().map((name) => {
      const m = resumed.momentum.get(name);
      return m ? torch.fromTensor(m) : null;
    });
    sgd.setMomentumBuffers(bufs);
    for (const b of bufs) b?.dispose();
  }

  /** The moving average of the weights (--ema): float32 copies by tensor name, or null without it. */
  let ema: Map<string, Float32Tensor> | null = null;
  if (config.ema > 0) {
    const stored = resumed && resumed.ema.size > 0 ? resumed.ema : null;
    if (resumed && !stored) say(`--ema: ${run.out}'s checkpoint has no moving average yet; it starts from the current weights`);
    ema = new Map();
    for (const [name, t] of model.stateDict()) {
      const r = stored?.get(name);
      if (stored && (!r || r.dtype !== 'float32' || r.data.length !== t.data.length)) {
        throw new ExtdError(`${run.out}: the checkpoint's moving average has no float32 '${name}' of ${t.data.length} values`);
      }
      ema.set(name, { dtype: 'float32', shape: [...t.shape], data: Float32Array.from((r?.data as Float32Array | undefined) ?? t.data) });
    }
  }
  /** One EMA step after optimiser step `step` (1-based): d = min(ema, (1 + step) / (10 + step)). */
  const updateEma = (step: number) => {
    if (!ema) return;
    const d = Math.min(config.ema, (1 + step) / (10 + step));
    for (const [name, t] of model.stateDict()) {
      const e = ema.get(name)!.data;
      const w = t.data;
      for (let i = 0; i < w.length; i++) e[i] = d * e[i]! + (1 - d) * w[i]!;
    }
  };

  const used = config.limitImages > 0 ? samples.slice(0, config.limitImages) : samples;
  const loaderPosition = resumed ? resumed.state.loaderPosition : 0;
  const loader = new TrainLoader(used, {
    batchSize: config.batch,
    size: config.size,
    seed: config.seed,
    workers: run.workers,
    startBatch: loaderPosition,
    augment: config.augment,
  });
  // Created only now, after every input has been read and checked: a run refused for bad input leaves nothing behind.
  mkdirSync(run.out, { recursive: true });
  writeFileAtomic(join(run.out, 'config.json'), JSON.stringify(config, null, 1) + '\n');
  const logPath = join(run.out, LOG_FILE);
  truncateLog(logPath, iteration);

  // A new run starts its own record (a best.json left in the folder by an earlier run is replaced at the first validation).
  const best = resumed ? readBest(run.out) : noBest();
  const valEvery = config.valEvery > 0 ? config.valEvery : config.checkpointEvery;
  /** Score the current weights on the validation set: log it, and keep the best model as best.safetensors. */
  const validate = async (): Promise<void> => {
    if (!valSet) return;
    const t0 = performance.now();
    // With --ema the average is what is evaluated (and kept as the best model).
    const weights = ema ?? model.stateDict();
    const loaded = modelFromTensors(weights, {}, `${run.out} at iteration ${iteration}${ema ? ' (EMA)' : ''}`, variant);
    const score = await scoreModel(loaded, valSet, run.threads);
    const record: ValRecord = {
      iter: iteration,
      val_metric: score.metric,
      val_protocol: score.protocol,
      val_images: score.images,
      ...(score.ap50 ? { val_ap: score.ap50.ap } : { val_easy: score.wider!.easy.ap, val_medium: score.wider!.medium.ap, val_hard: score.wider!.hard.ap }),
      ...(ema ? { val_weights: 'ema' as const } : {}),
      val_seconds: (performance.now() - t0) / 1000,
      time: new Date().toISOString(),
    };
    appendFileSync(logPath, JSON.stringify(record) + '\n');
    run.onValidation?.(record);
    let note = '';
    if (best.iteration < 0 || score.metric > best.metric) {
      writeModelFile(join(run.out, BEST_MODEL_FILE), graph, weights, iteration, {
        ...modelMetadata,
        ...(ema ? { weights: 'ema' } : {}),
        val_metric: String(score.metric),
        val_set: config.val,
      });
      Object.assign(best, { iteration, metric: score.metric, metricName: score.metricName, val: config.val, protocol: score.description });
      writeFileAtomic(join(run.out, BEST_FILE), JSON.stringify(best, null, 1) + '\n');
      note = ' (new best, saved best.safetensors)';
    } else note = ` (best ${best.metric.toFixed(4)} at iteration ${best.iteration})`;
    say(`validation at iteration ${iteration}: ${formatScore(score)}${note}`);
  };

  const priors = makePriors(config.size, config.size);
  const schedule = scheduleOf(config);
  // Assigned by save(), a closure: the cast keeps TypeScript from narrowing it to null for good.
  let lastSaved = null as SavedCheckpoint | null;
  const save = () => {
    const momentum = sgd.getMomentumBuffers().map((b) => {
      if (!b) return null;
      const t: Float32Tensor = { dtype: 'float32', shape: b.shape, data: b.toFloat32Array() };
      b.dispose();
      return t;
    });
    lastSaved = saveCheckpoint<TrainConfig>(
      run.out,
      graph,
      model.stateDict(),
      momentum,
      {
        iteration,
        loaderPosition: loader.position,
        config,
      },
      modelMetadata,
      ema,
    );
    if (config.keepLast > 0) pruneCheckpoints(run.out, config.keepLast, config.keepEvery);
  };

  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130); // second Ctrl-C: give up at once
    interrupted = true;
    run.progress?.write('\nextd train: stopping after this iteration and saving a checkpoint (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const progress = run.progress ? new Progress({ label: 'train', total: config.iterations, unit: 'it', stream: run.progress }) : null;
  progress?.skip(iteration);
  const startedAt = iteration;
  let reason: TrainResult['reason'] = 'done';
  let lastValidated = -1;
  try {
    // The starting point's score, as the first point of the validation curve (a fine-tuning run's "before").
    if (!resumed && run.stopAfter > 0) {
      await validate();
      lastValidated = iteration;
    }
    while (iteration < config.iterations) {
      // One turn of the event loop per iteration. Without it, a loader worker whose next batch
      // arrives while a step runs keeps Node inside one message-port callback (each message's
      // promise continuation is the next step): timers and signals never run, so Ctrl-C was
      // ignored (seen at 640x640, batch 1).
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (interrupted) {
        reason = 'interrupted';
        break;
      }
      if (iteration - startedAt >= run.stopAfter) {
        reason = 'stopAfter';
        break;
      }
      const t0 = performance.now();
      const batch = await loader.next();
      const targets = matchBatch(batch.boxes, priors);
      const lr = learningRate(iteration, schedule);
      sgd.lr = lr;
      const B = batch.boxes.length;
      const { lossL, lossC, lossKdC, lossKdL, positives, gradNorm } = torch.tidy(() => {
        const x = torch.fromFloat32Array(batch.input, [B, 3, config.size, config.size]);
        // BN in training mode for the first bnFreeze iterations, then with its (frozen) running statistics; bnFrozen: frozen throughout.
        const bnTraining = !config.bnFrozen && !(config.bnFreeze > 0 && iteration >= config.bnFreeze);
        const out = model.forward(x, { training: bnTraining, renorm: renormLimits(iteration, config) });
        const l = multiboxLoss(torch, out.loc, out.conf, targets.confT, targets.locT, { negPosRatio: config.negPosRatio });
        let total = torch.add(l.lossL, l.lossC);
        let kd: { lossKdC: number; lossKdL: number } | null = null;
        if (teacher) {
          // The teacher as at inference: BN with its running statistics, no autograd graph.
          const t = torch.noGrad(() => teacher.forward(x, { training: false }));
          const d = distillLoss(torch, out.loc, out.conf, t.loc, t.conf, l.selected, l.numPositives);
          kd = { lossKdC: d.lossKdC.item(), lossKdL: d.lossKdL.item() };
          total = torch.add(total, torch.add(torch.mul(d.lossKdC, config.teacherWeight), torch.mul(d.lossKdL, config.teacherBoxWeight)));
        }
        const values = { lossL: l.lossL.item(), lossC: l.lossC.item(), lossKdC: kd?.lossKdC, lossKdL: kd?.lossKdL, positives: l.numPositives };
        if (![values.lossL, values.lossC, values.lossKdC ?? 0, values.lossKdL ?? 0].every(Number.isFinite)) {
          const kdText = kd ? `, loss_kd_c ${kd.lossKdC}, loss_kd_l ${kd.lossKdL}` : '';
          throw new ExtdError(
            `training diverged at iteration ${iteration + 1}: loss_l ${values.lossL}, loss_c ${values.lossC}${kdText} (lr ${lr}); lower --lr or add --warmup`,
          );
        }
        if (l.numPositives > 0) total.backward();
        const gradNorm = clipGradients(torch, params, config.clipGradNorm);
        sgd.step();
        sgd.zeroGrad();
        return { ...values, gradNorm };
      });
      iteration++;
      updateEma(iteration);
      const seconds = (performance.now() - t0) / 1000;
      const record: LogRecord = {
        iter: iteration,
        loss_l: lossL,
        loss_c: lossC,
        ...(lossKdC === undefined ? {} : { loss_kd_c: lossKdC, loss_kd_l: lossKdL }),
        lr,
        grad_norm: gradNorm,
        positives,
        img_s: B / seconds,
        time: new Date().toISOString(),
      };
      appendFileSync(logPath, JSON.stringify(record) + '\n');
      run.onIteration?.(record);
      const kdText = lossKdC === undefined ? '' : ` kd_c ${lossKdC.toFixed(3)} kd_l ${lossKdL!.toFixed(3)}`;
      progress?.tick(1, `${record.img_s.toFixed(2)} img/s loss_l ${lossL.toFixed(3)} loss_c ${lossC.toFixed(3)}${kdText} lr ${lr.toExponential(2)}`);
      if (iteration % config.checkpointEvery === 0) save();
      if (iteration % valEvery === 0) {
        await validate();
        lastValidated = iteration;
      }
    }
    if (valSet && reason !== 'interrupted' && lastValidated !== iteration && iteration > startedAt) await validate();
    // Always end on a checkpoint, unless this process did nothing on top of the one it resumed.
    const savedNow = lastSaved !== null && iteration % config.checkpointEvery === 0;
    if (!savedNow && (iteration > startedAt || !resumed)) save();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await loader.close();
    model.dispose();
    teacher?.dispose();
  }
  const resumedFrom = resumed ? join(run.out, resumed.pointer.model) : null;
  const resumedEma = resumed && resumed.ema.size > 0 ? join(run.out, checkpointNames(resumed.pointer.iteration).ema) : null;
  return { iteration, checkpoint: lastSaved?.modelPath ?? resumedFrom, resumedFrom, emaCheckpoint: lastSaved ? lastSaved.emaPath : resumedEma, reason };
}

/**
 * Batch renormalisation limits for the step after `iteration` completed
 * iterations (null: plain BN): linear from (1, 0) right after bnRenorm to
 * (bnRenormRMax, bnRenormDMax) bnRenormRamp iterations later.
 */
export function renormLimits(iteration: number, c: Pick<TrainConfig, 'bnRenorm' | 'bnRenormRamp' | 'bnRenormRMax' | 'bnRenormDMax'>): Renorm | null {
  if (c.bnRenorm <= 0 || iteration < c.bnRenorm) return null;
  const f = c.bnRenormRamp === 0 ? 1 : Math.min(1, (iteration - c.bnRenorm + 1) / c.bnRenormRamp);
  return { rMax: 1 + f * (c.bnRenormRMax - 1), dMax: f * c.bnRenormDMax };
}

/**
 * Global L2 norm of the parameters' gradients; when `maxNorm` > 0 and the norm
 * exceeds it, every gradient is scaled by maxNorm / norm in place
 * (torch.nn.utils.clip_grad_norm_). Call inside tidy().
 */
export function clipGradients(torch: Torch, params: readonly TorchTensor[], maxNorm: number): number {
  const grads = params.map((p) => p.grad).filter((g): g is TorchTensor => g !== null);
  if (grads.length === 0) return 0;
  const sq = grads.map((g) => torch.sum(torch.mul(g, g)));
  const norm = Math.sqrt(torch.sum(torch.stack(sq)).item());
  if (maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const g of grads) g.copyFrom(torch.mul(g, scale));
  }
  return norm;
}
