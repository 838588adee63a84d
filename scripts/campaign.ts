/**
 * A training campaign that survives machines: its small resumable state lives
 * in one committed folder (default `campaign/extd32/`), and any machine
 * continues it from there.
 *
 *   node --conditions=extd-source --import tsx scripts/campaign.ts start    --out DIR [--data DIR] [--threads N] [--workers N] [--dry-run]
 *   node --conditions=extd-source --import tsx scripts/campaign.ts resume   --out DIR [--data DIR] [--threads N] [--workers N] [--dry-run] [-- TRAIN FLAGS]
 *   node --conditions=extd-source --import tsx scripts/campaign.ts snapshot --run DIR
 *   node --conditions=extd-source --import tsx scripts/campaign.ts eval     --run DIR [--iteration N] [--threads N] [--weights ema|model]
 *   node --conditions=extd-source --import tsx scripts/campaign.ts plot
 *   node --conditions=extd-source --import tsx scripts/campaign.ts bundle   --run DIR [--threads N] [--weights ema|model] [--list FILE] [--to FILE]
 *   (each takes --campaign FOLDER, default campaign/extd32)
 *
 * The folder holds (a few MB at most):
 * - `campaign.json`: the recipe (the `extd train` flags of the run), where the
 *   data came from, every start/resume (command line, machine, threads, from
 *   which iteration), and the progress at the last snapshot (iteration,
 *   training hours, CPU-hours);
 * - `latest.json`, `ckpt-N.safetensors`, `ckpt-N.state.safetensors`: the
 *   latest checkpoint with its optimiser state: the folder is itself a run
 *   folder `extd train --resume` accepts; with `--ema` in the recipe also
 *   `ckpt-N.ema.safetensors` (the moving average of the weights);
 * - `config.json`: the run's training configuration;
 * - `log.jsonl`: the training log thinned to one record per
 *   CAMPAIGN_DEFAULTS.thinEvery iterations (means of the losses, the
 *   gradient norm and the throughput; the last lr), which `extd plot-log`
 *   draws.
 *
 * `start` begins the campaign's run in DIR with the recipe; `resume` copies
 * the committed state into DIR (unless DIR already holds the same run at or
 * past it) and continues it with `extd train --resume`. `extd train` flags
 * after `--` change the recipe from that iteration on (e.g. `-- --ema 0.999`);
 * they are recorded in campaign.json's `recipeChanges`, and the run's stored
 * configuration keeps them for later resumes. Both run in the
 * foreground (start them with `setsid nohup ... &` to outlive a shell) and
 * append themselves to campaign.json. `snapshot` copies a run's latest
 * checkpoint into the folder, thins the new part of its log and adds up the
 * CPU-hours; every file is written atomically and latest.json after the
 * checkpoint it names, so a snapshot interrupted at any point leaves a
 * folder that resumes (a repeated snapshot repairs it).
 *
 * `eval` scores a checkpoint of the run (default: its latest; its moving
 * average `ckpt-N.ema.safetensors` when there is one, unless `--weights
 * model`) on the fixed
 * 200-image validation subset `campaign/val200.txt` (single protocol, the
 * evaluation kit's ground truth restricted to those images) with `extd eval`
 * into DIR/eval-val200/ckpt-N, and records its easy / medium / hard AP in the
 * folder's `ap.jsonl` (one line per iteration), so the AP curve is tracked
 * across machines. The subset: the 646 images of `$EXTD_SHARED/wider/WIDER_val`
 * sorted by EVENT/NAME.jpg, the one at index floor(i * 646 / 200) for i = 0..199
 * (`valSubset`); 200 images at 1 thread took 6 minutes on the shared
 * 2-core machine beside the training run.
 *
 * `bundle` makes the folder's snapshot the bundled model `extd-32-scratch`:
 * it scores the snapshot's checkpoint (its moving average unless `--weights
 * model`) on all 646 images of `$EXTD_SHARED/wider/WIDER_val` with `extd eval`
 * (single protocol, into DIR/eval-val646/ckpt-N), and writes its tensors to
 * `packages/core/models/extd-32-scratch.safetensors` with metadata saying what
 * made it: the recipe and its changes, the data, the iterations, the
 * CPU-hours, whether a teacher was used, and that AP (`bundleMetadata`); the
 * campaign's `bundled` field records the same. `--list` scores a subset
 * instead (the metadata says how many images), `--to` writes elsewhere.
 *
 * CPU-hours are the summed wall time of the training steps (from the log's
 * img_s) times the libtorch threads of the segment that ran them: on the
 * 2-core development machine a run at --threads 1 --workers 1 used about 0.9
 * CPU-seconds per wall second (ps), the loader worker being mostly idle.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readLatest, checkpointNames, LATEST_FILE } from '@extd/train/train/checkpoint';
import type { LogRecord } from '@extd/train/train/trainer';
import { writeFileAtomic } from 'extd/utils/atomic';
import { plotTrainingLog, readTrainingLog, type ValPoint } from '@extd/train/cli/plot-log';
import { ExtdError } from '@extd/core/utils/errors';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const CAMPAIGN_DEFAULTS = Object.freeze({
  /** The committed folder, relative to the repository root. */
  campaign: 'campaign/extd32',
  /** One thinned log record per this many iterations. */
  thinEvery: 50,
  threads: 1,
  workers: 1,
  /** Inside a data folder (scripts/extract-wider-train.ts's output). */
  annotationFile: 'wider_face_train_bbx_gt.txt',
  imagesDir: 'images',
});

export const CAMPAIGN_FILE = 'campaign.json';
/** AP at evaluated iterations, one JSON line each. */
export const AP_FILE = 'ap.jsonl';
/** The fixed validation subset, relative to the repository root. */
export const VAL_SUBSET_FILE = 'campaign/val200.txt';
export const VAL_SUBSET_SIZE = 200;
const LOG = 'log.jsonl';
const CONFIG = 'config.json';

/** One start or resume. */
export interface Segment {
  /** Completed iterations when it began. */
  fromIteration: number;
  /** ISO time. */
  started: string;
  host: string;
  threads: number;
  workers: number;
  /** The command line that ran it. */
  command: string;
  /** What became of it, written by hand where it did not end in a snapshot (e.g. lost with its machine). */
  note?: string;
}

export interface Campaign {
  name: string;
  description: string;
  /** Default data folder (DIR/wider_face_train_bbx_gt.txt and DIR/images) and how it was made. */
  data: { dir: string; madeBy: string; images: number; faces: number };
  /** `extd train` flags of the run, except --out, --annotations, --images, --threads, --workers. */
  recipe: string[];
  /** Flags added by a resume (`resume ... -- FLAGS`), from that iteration on. */
  recipeChanges?: { fromIteration: number; flags: string[]; time: string }[];
  segments: Segment[];
  /** At the last snapshot (null before the first). */
  progress: { iteration: number; snapshotTime: string; trainHours: number; cpuHours: number } | null;
  /** The snapshot last made the bundled extd-32-scratch (`bundle`). */
  bundled?: { iteration: number; weights: 'ema' | 'model'; cpuHours: number; ap: BundledAp; file: string; time: string };
}

/** AP of a bundled checkpoint on WIDER val (single protocol). */
export interface BundledAp {
  easy: number;
  medium: number;
  hard: number;
  images: number;
}

/** Where `bundle` writes the model, relative to the repository root. */
export const SCRATCH_MODEL_FILE = 'packages/core/models/extd-32-scratch.safetensors';

/**
 * The teachers the campaign trained with before iteration `upTo`, as periods
 * in order: the recipe's `--teacher` (or none) from iteration 0, then each
 * recipe change that sets `--teacher` (an empty name: none from there on).
 */
export function teacherPeriods(c: Campaign, upTo = Number.POSITIVE_INFINITY): { from: number; teacher: string | null }[] {
  const at = (flags: readonly string[]) => {
    const i = flags.lastIndexOf('--teacher');
    return i < 0 ? undefined : flags[i + 1] || null;
  };
  const periods = [{ from: 0, teacher: at(c.recipe) ?? null }];
  for (const r of c.recipeChanges ?? []) {
    const t = at(r.flags);
    if (t !== undefined && r.fromIteration < upTo) periods.push({ from: r.fromIteration, teacher: t });
  }
  return periods;
}

/** The teacher in use at iteration `upTo` (default: the latest), or null for labels only. */
export function teacherOf(c: Campaign, upTo = Number.POSITIVE_INFINITY): string | null {
  return teacherPeriods(c, upTo).at(-1)!.teacher;
}

/** One line for a model's metadata: which teacher, from when ('none (labels only)' when never). */
export function describeTeachers(periods: readonly { from: number; teacher: string | null }[]): string {
  if (periods.every((p) => p.teacher === null)) return 'none (labels only)';
  return periods.map((p) => `${p.teacher ?? 'none (labels only)'} from iteration ${p.from}`).join(', then ');
}

/**
 * The metadata of the bundled model made from the campaign's snapshot: the
 * checkpoint's own (`base`: format, variant, width, ...) plus what made it
 * and how it scores. All values are strings (safetensors metadata).
 */
export function bundleMetadata(c: Campaign, weights: 'ema' | 'model', ap: BundledAp, base: Record<string, string>): Record<string, string> {
  if (!c.progress) throw new ExtdError(`campaign ${c.name}: no snapshot to bundle`);
  const changes = (c.recipeChanges ?? []).map((r) => `from iteration ${r.fromIteration}: ${r.flags.join(' ')}`).join('; ');
  const what = weights === 'ema' ? 'the moving average of the weights (--ema)' : 'the weights';
  return {
    ...base,
    iteration: String(c.progress.iteration),
    weights,
    training:
      `extd train, the ${c.name} campaign (campaign/${c.name}, scripts/campaign.ts): ${c.description} ` +
      `Recipe: ${c.recipe.join(' ')}${changes ? `; changes: ${changes}` : ''}. ` +
      `${c.progress.iteration} iterations, ${c.progress.cpuHours.toFixed(2)} CPU-hours; ${what} at iteration ${c.progress.iteration}.`,
    data: `${c.data.images} WIDER FACE training images, ${c.data.faces} faces (${c.data.madeBy})`,
    cpuHours: c.progress.cpuHours.toFixed(2),
    teacher: describeTeachers(teacherPeriods(c, c.progress.iteration)),
    ap: `${ap.easy.toFixed(3)} / ${ap.medium.toFixed(3)} / ${ap.hard.toFixed(3)} (easy / medium / hard; WIDER val, ${ap.images} images, single protocol)`,
  };
}

/** One line of an extd train log.jsonl; in a thinned log `n` says how many iterations the record averages. */
export type LogLine = LogRecord & { n?: number };

/** Parse a JSON file; an unreadable or invalid one is an ExtdError naming it. */
export function readJson<T>(path: string): T {
  if (!existsSync(path)) throw new ExtdError(`${path}: not found`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    throw new ExtdError(`${path}: not valid JSON (${(err as Error).message})`);
  }
}

export function readCampaign(dir: string): Campaign {
  const c = readJson<Campaign>(join(dir, CAMPAIGN_FILE));
  if (!Array.isArray(c.recipe) || !Array.isArray(c.segments) || !c.data) throw new ExtdError(`${join(dir, CAMPAIGN_FILE)}: expected recipe, segments and data`);
  return c;
}

function writeCampaign(dir: string, c: Campaign): void {
  writeFileAtomic(join(dir, CAMPAIGN_FILE), JSON.stringify(c, null, 1) + '\n');
}

/** Parse a log.jsonl; a line cut by a crash (the last) is skipped, any other bad line is an error. */
export function readLog(path: string): LogLine[] {
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, 'utf8').split('\n');
  const out: LogLine[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      if (i < lines.length - 2) throw new ExtdError(`${path}:${i + 1}: not a JSON log record`);
    }
  });
  return out;
}

/**
 * Records averaged over buckets of `every` iterations ((k-1)*every, k*every]:
 * means of loss_l, loss_c, grad_norm, positives and img_s, the last lr, iter
 * and time, and `n` (iterations averaged). Input in iteration order.
 */
export function thinLog(records: readonly LogLine[], every: number): LogLine[] {
  const out: LogLine[] = [];
  let bucket: LogLine[] = [];
  const flush = () => {
    if (bucket.length === 0) return;
    const mean = (k: 'loss_l' | 'loss_c' | 'grad_norm' | 'positives' | 'img_s') => bucket.reduce((s, r) => s + r[k], 0) / bucket.length;
    const last = bucket[bucket.length - 1]!;
    out.push({
      iter: last.iter,
      loss_l: mean('loss_l'),
      loss_c: mean('loss_c'),
      lr: last.lr,
      grad_norm: mean('grad_norm'),
      positives: mean('positives'),
      img_s: mean('img_s'),
      time: last.time,
      n: bucket.length,
    });
    bucket = [];
  };
  for (const r of records) {
    if (bucket.length > 0 && Math.ceil(r.iter / every) !== Math.ceil(bucket[0]!.iter / every)) flush();
    bucket.push(r);
  }
  flush();
  return out;
}

/** libtorch threads of the segment that ran iteration `iter` (1-based). */
function threadsAt(segments: readonly Segment[], iter: number): number {
  let t = segments[0]?.threads ?? 1;
  for (const s of segments) if (s.fromIteration < iter) t = s.threads;
  return t;
}

export interface SnapshotResult {
  iteration: number;
  trainHours: number;
  cpuHours: number;
  logRecords: number;
}

/**
 * Copy run folder `run`'s latest checkpoint, config and (thinned) log into
 * the campaign folder `dir`, and add the new iterations' time to the
 * campaign's hours. Refuses a run behind the folder's last snapshot.
 */
export function snapshot(dir: string, run: string, every: number = CAMPAIGN_DEFAULTS.thinEvery): SnapshotResult {
  const c = readCampaign(dir);
  const latest = readLatest(run);
  if (!latest) throw new ExtdError(`${run}: no ${LATEST_FILE} (not a run folder with a checkpoint yet)`);
  const prev = c.progress?.iteration ?? 0;
  if (latest.iteration < prev)
    throw new ExtdError(`${run}: its latest checkpoint is iteration ${latest.iteration}, behind the campaign's snapshot at ${prev}; resume it first`);
  const config = readJson<{ batch: number }>(join(run, CONFIG));

  // Log: the committed (thinned) part up to the last snapshot, then the run's records after it, up to the checkpoint.
  const kept = readLog(join(dir, LOG)).filter((r) => r.iter <= prev);
  const fresh = readLog(join(run, LOG)).filter((r) => r.iter > prev && r.iter <= latest.iteration);
  const expected = latest.iteration - prev;
  if (fresh.length !== expected) {
    throw new ExtdError(`${join(run, LOG)}: ${fresh.length} records for iterations ${prev + 1}..${latest.iteration}, expected ${expected}`);
  }
  let trainSeconds = 0,
    cpuSeconds = 0;
  for (const r of fresh) {
    const s = config.batch / r.img_s;
    trainSeconds += s;
    cpuSeconds += s * threadsAt(c.segments, r.iter);
  }
  const log = [...kept, ...thinLog(fresh, every)];

  // Files: checkpoint pair, config, log; then the pointer; then the progress; then drop the older pair.
  const names = checkpointNames(latest.iteration);
  writeFileAtomic(join(dir, names.model), readFileSync(join(run, latest.model)));
  writeFileAtomic(join(dir, names.state), readFileSync(join(run, latest.state)));
  const ema = existsSync(join(run, names.ema));
  if (ema) writeFileAtomic(join(dir, names.ema), readFileSync(join(run, names.ema)));
  writeFileAtomic(join(dir, CONFIG), readFileSync(join(run, CONFIG)));
  writeFileAtomic(join(dir, LOG), log.map((r) => JSON.stringify(r)).join('\n') + '\n');
  writeFileAtomic(join(dir, LATEST_FILE), JSON.stringify({ iteration: latest.iteration, model: names.model, state: names.state }, null, 1) + '\n');
  const trainHours = (c.progress?.trainHours ?? 0) + trainSeconds / 3600;
  const cpuHours = (c.progress?.cpuHours ?? 0) + cpuSeconds / 3600;
  c.progress = { iteration: latest.iteration, snapshotTime: new Date().toISOString(), trainHours: round(trainHours), cpuHours: round(cpuHours) };
  writeCampaign(dir, c);
  for (const f of listCheckpointFiles(dir)) if (f !== names.model && f !== names.state && !(ema && f === names.ema)) rmSync(join(dir, f));
  return { iteration: latest.iteration, trainHours: c.progress.trainHours, cpuHours: c.progress.cpuHours, logRecords: log.length };
}

/** x rounded to 3 decimals (AP and hours as recorded). */
export function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function listCheckpointFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => /^ckpt-\d+(\.state|\.ema)?\.safetensors$/.test(f));
}

/**
 * Prepare run folder `out` to continue the campaign: when it holds no
 * checkpoint (a new machine), copy the folder's checkpoint pair, latest.json,
 * config.json and log.jsonl into it. When it already holds this run at or
 * past the folder's iteration, leave it. Returns the iteration it resumes at.
 */
export function seedRun(dir: string, out: string): number {
  const committed = readLatest(dir);
  if (!committed) throw new ExtdError(`${dir}: no ${LATEST_FILE}: the campaign has no snapshot yet; use start`);
  const existing = existsSync(out) ? readLatest(out) : null;
  if (existing) {
    if (existing.iteration < committed.iteration) {
      throw new ExtdError(
        `${out}: holds iteration ${existing.iteration}, behind the campaign's ${committed.iteration}; pick an empty --out to continue from the campaign`,
      );
    }
    return existing.iteration;
  }
  mkdirSync(out, { recursive: true });
  for (const f of [committed.model, committed.state, checkpointNames(committed.iteration).ema, CONFIG, LOG]) {
    if (existsSync(join(dir, f))) writeFileAtomic(join(out, f), readFileSync(join(dir, f)));
  }
  writeFileAtomic(join(out, LATEST_FILE), readFileSync(join(dir, LATEST_FILE)));
  return committed.iteration;
}

/**
 * `count` of `paths` spread evenly over them in sorted order: sorted index
 * floor(i * n / count) for i = 0..count-1. Throws when there are fewer.
 */
export function valSubset(paths: readonly string[], count: number = VAL_SUBSET_SIZE): string[] {
  const sorted = [...paths].sort();
  if (sorted.length < count) throw new ExtdError(`${sorted.length} validation images, fewer than the ${count} of the subset`);
  return Array.from({ length: count }, (_, i) => sorted[Math.floor((i * sorted.length) / count)]!);
}

/** One line of ap.jsonl. */
export interface ApRecord {
  iteration: number;
  easy: number;
  medium: number;
  hard: number;
  images: number;
  set: string;
  protocol: string;
  time: string;
  /** 'ema': the moving average of the weights (ckpt-N.ema.safetensors) was scored; absent: the weights themselves. */
  weights?: 'ema';
  /** Free text, e.g. that the checkpoint came from a run lost with its machine (its segment in campaign.json says so). */
  note?: string;
}

/** Add (or replace, same iteration and weights) a record of ap.jsonl, kept in iteration order; atomic. */
export function recordAp(dir: string, r: ApRecord): ApRecord[] {
  const path = join(dir, AP_FILE);
  const lines = existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l.trim())
    : [];
  const records = lines.map((l) => JSON.parse(l) as ApRecord).filter((x) => x.iteration !== r.iteration || x.weights !== r.weights);
  records.push(r);
  records.sort((a, b) => a.iteration - b.iteration);
  writeFileAtomic(path, records.map((x) => JSON.stringify(x)).join('\n') + '\n');
  return records;
}

function dataFlags(c: Campaign, data: string | undefined): string[] {
  const d = resolve(data ?? c.data.dir);
  const annotations = join(d, CAMPAIGN_DEFAULTS.annotationFile);
  if (!existsSync(annotations)) {
    throw new ExtdError(`${annotations}: not found; make the data with ${c.data.madeBy} or name its folder with --data`);
  }
  return ['--annotations', annotations, '--images', join(d, CAMPAIGN_DEFAULTS.imagesDir)];
}

async function runTrain(trainArgs: string[]): Promise<number> {
  const { relaunchWithTcmalloc } = await import('@extd/train/train/allocator');
  const relaunched = relaunchWithTcmalloc(fileURLToPath(import.meta.url), ['__train', ...trainArgs]);
  if (relaunched) return relaunched;
  const { main } = await import('extd/cli/main');
  return main(['train', ...trainArgs]);
}

/**
 * `extd eval` arguments scoring `model` on the shared WIDER val images (all
 * of them, or those of `list`), single protocol, into `out`.
 */
export function valEvalArgs(model: string, out: string, list: string | undefined, threads: string): string[] {
  const shared = resolve(process.env.EXTD_SHARED ?? join(REPO, '../shared'));
  const args = ['eval', '--model', model, '--images', join(shared, 'wider/WIDER_val/images'), '--gt', join(shared, 'wider/eval_tools/ground_truth')];
  if (list !== undefined) args.push('--list', list);
  return [...args, '--protocol', 'single', '--out', out, '--threads', threads];
}

/**
 * Split a script's arguments at the first `--` into its own and the `extd
 * train` flags after it, which only subcommand `acceptedBy` takes. ExtdError
 * where other subcommands get such flags, where they do not start with a
 * flag, or where one is in `reserved` (also written `--flag=value`): the
 * message is `after --: FLAG ${why}`.
 */
export function splitTrainFlags(
  args: readonly string[],
  o: { sub: string; acceptedBy: string; reserved: readonly string[]; why: string },
): { own: string[]; train: string[] } {
  const dashes = args.indexOf('--');
  const own = dashes < 0 ? [...args] : args.slice(0, dashes);
  const train = dashes < 0 ? [] : args.slice(dashes + 1);
  if (train.length === 0) return { own, train };
  if (o.sub !== o.acceptedBy) throw new ExtdError(`extd train flags after -- apply to ${o.acceptedBy} only`);
  if (!train[0]!.startsWith('--')) throw new ExtdError(`after --: expected extd train flags, got '${train[0]}'`);
  const reserved = train.map((f) => f.split('=')[0]!).find((f) => o.reserved.includes(f));
  if (reserved) throw new ExtdError(`after --: ${reserved} ${o.why}`);
  return { own, train };
}

/**
 * When the module at `url` is the script node was started with, run `cli`
 * on its arguments: its return value is the exit code; an ExtdError is one
 * line `NAME: message` and exit 2, and so is an error of node's parseArgs
 * (an unknown option, a missing value: its first line, then `(see --help)`).
 */
export function runAsScript(url: string, name: string, cli: (argv: string[]) => Promise<number>): void {
  if (!process.argv[1] || resolve(process.argv[1]) !== fileURLToPath(url)) return;
  cli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      if (err instanceof ExtdError) {
        console.error(`${name}: ${err.message}`);
        process.exitCode = 2;
      } else if (String((err as NodeJS.ErrnoException)?.code).startsWith('ERR_PARSE_ARGS_')) {
        console.error(`${name}: ${(err as Error).message.split('\n')[0]} (see --help)`);
        process.exitCode = 2;
      } else throw err;
    },
  );
}

const USAGE = `usage: node --conditions=extd-source --import tsx scripts/campaign.ts <command> [options]

  start    --out DIR [--data DIR] [--threads N] [--workers N] [--dry-run]   begin the campaign's run in DIR
  resume   --out DIR [--data DIR] [--threads N] [--workers N] [--dry-run] [-- TRAIN FLAGS]   continue it from the committed state
                                                                           (flags after -- change the recipe from here on)
  snapshot --run DIR                                                       copy the run's latest checkpoint into the folder
  eval     --run DIR [--iteration N] [--threads N] [--weights ema|model]   score a checkpoint on campaign/val200.txt
                                                                           (default: its moving average when there is one)
  plot                                                                     draw the folder's loss and AP curves (curve.png)
  bundle   --run DIR [--threads N] [--weights ema|model] [--list FILE] [--to FILE]
                                                                           score the snapshot on the 646 val images and
                                                                           bundle it as ${SCRATCH_MODEL_FILE}

each takes --campaign FOLDER (default ${CAMPAIGN_DEFAULTS.campaign}); see the header of scripts/campaign.ts`;

const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

/** The folder's figure: the thinned losses and lr, and the val200 AP points of ap.jsonl. */
export const CURVE_FILE = 'curve.png';

/**
 * Draw the campaign's curves (extd plot-log's figure: losses, learning rate
 * and the easy / medium / hard AP of ap.jsonl against iterations) into
 * DIR/curve.png; snapshot and eval redraw it. Returns the file written.
 */
export async function plotCampaign(dir: string): Promise<string> {
  const points = readTrainingLog(join(dir, 'log.jsonl'));
  const apPath = join(dir, AP_FILE);
  const ap: ApRecord[] = existsSync(apPath)
    ? readFileSync(apPath, 'utf8')
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as ApRecord)
    : [];
  // Where an iteration was scored both ways, the moving average (what --ema runs validate and ship) is drawn.
  const emaAt = new Set(ap.filter((r) => r.weights === 'ema').map((r) => r.iteration));
  const drawn = ap.filter((r) => r.weights === 'ema' || !emaAt.has(r.iteration));
  const firstEma = drawn.find((r) => r.weights === 'ema')?.iteration;
  const val: ValPoint[] = drawn.map((r) => ({
    iter: r.iteration,
    val_metric: (r.easy + r.medium + r.hard) / 3,
    val_protocol: 'wider',
    val_easy: r.easy,
    val_medium: r.medium,
    val_hard: r.hard,
  }));
  const c = readCampaign(dir);
  const hours = c.progress ? `, ${c.progress.cpuHours.toFixed(1)} CPU-hours` : '';
  const png = await plotTrainingLog(points, {
    smooth: 3,
    width: 1000,
    val,
    title: `EXTD-32 campaign (${dir.split('/').slice(-2).join('/')}): ${points.at(-1)?.iter ?? 0} iterations${hours}; AP on ${VAL_SUBSET_FILE}${firstEma !== undefined ? ` (EMA weights from ${firstEma})` : ''}`,
  });
  const out = join(dir, CURVE_FILE);
  writeFileAtomic(out, png);
  return out;
}

async function cli(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '__train') {
    const { main } = await import('extd/cli/main');
    return main(['train', ...rest]);
  }
  if (sub === undefined || sub === '--help' || sub === '-h' || rest.includes('--help') || rest.includes('-h')) {
    console.log(USAGE);
    return sub === undefined ? 2 : 0;
  }
  // `resume ... -- FLAGS`: extd train flags that change the recipe from this iteration on.
  const { own, train: recipeChange } = splitTrainFlags(rest, {
    sub,
    acceptedBy: 'resume',
    reserved: ['--out', '--resume', '--annotations', '--images', '--threads', '--workers', '--init', '--variant'],
    why: 'is not a recipe change (the campaign sets it)',
  });
  const v = parseArgs({
    args: own,
    options: {
      campaign: { type: 'string' },
      out: { type: 'string' },
      run: { type: 'string' },
      data: { type: 'string' },
      threads: { type: 'string' },
      workers: { type: 'string' },
      iteration: { type: 'string' },
      weights: { type: 'string' },
      list: { type: 'string' },
      to: { type: 'string' },
      'dry-run': { type: 'boolean' },
    },
  }).values;
  const dir = resolve(REPO, v.campaign ?? CAMPAIGN_DEFAULTS.campaign);
  if (sub === 'snapshot') {
    if (!v.run) throw new ExtdError('snapshot needs --run DIR (the run folder to copy the latest checkpoint from)');
    const r = snapshot(dir, resolve(v.run));
    console.error(
      `campaign ${dir}: iteration ${r.iteration}, ${r.trainHours.toFixed(2)} training hours, ${r.cpuHours.toFixed(2)} CPU-hours, ${r.logRecords} log records; commit the folder`,
    );
    console.error(`campaign ${dir}: curves drawn to ${await plotCampaign(dir)}`);
    return 0;
  }
  if (sub === 'plot') {
    console.error(`campaign ${dir}: curves drawn to ${await plotCampaign(dir)}`);
    return 0;
  }
  if (sub === 'eval') {
    if (!v.run) throw new ExtdError('eval needs --run DIR (the run folder whose checkpoint to score)');
    const run = resolve(v.run);
    const iteration = v.iteration !== undefined ? Number(v.iteration) : readLatest(run)?.iteration;
    if (iteration === undefined || !Number.isInteger(iteration)) throw new ExtdError(`${run}: no checkpoint to evaluate (no latest.json and no --iteration N)`);
    if (v.weights !== undefined && v.weights !== 'ema' && v.weights !== 'model') throw new ExtdError(`--weights ${v.weights}: expected ema or model`);
    const names = checkpointNames(iteration);
    const useEma = v.weights === 'ema' || (v.weights === undefined && existsSync(join(run, names.ema)));
    const model = join(run, useEma ? names.ema : names.model);
    if (!existsSync(model)) throw new ExtdError(`${model}: not found (kept checkpoints: ls ${run})`);
    const out = join(run, 'eval-val200', `ckpt-${iteration}${useEma ? '.ema' : ''}`);
    const { main } = await import('extd/cli/main');
    const code = await main(valEvalArgs(model, out, join(REPO, VAL_SUBSET_FILE), v.threads ?? '1'));
    if (code !== 0) return code;
    const ap = readJson<{ easy: number; medium: number; hard: number; images: number }>(join(out, 'ap.json'));
    const rec: ApRecord = {
      iteration,
      easy: round(ap.easy),
      medium: round(ap.medium),
      hard: round(ap.hard),
      images: ap.images,
      set: VAL_SUBSET_FILE,
      protocol: 'single',
      time: new Date().toISOString(),
      ...(useEma ? { weights: 'ema' as const } : {}),
    };
    recordAp(dir, rec);
    console.error(
      `campaign ${dir}: iteration ${iteration}${useEma ? ' (EMA weights)' : ''} AP ${rec.easy} / ${rec.medium} / ${rec.hard} (easy / medium / hard, ${ap.images} images of ${VAL_SUBSET_FILE}, single protocol) added to ${AP_FILE}`,
    );
    console.error(`campaign ${dir}: curves drawn to ${await plotCampaign(dir)}`);
    return 0;
  }
  if (sub === 'bundle') {
    if (!v.run) throw new ExtdError("bundle needs --run DIR (a folder for the evaluation output, e.g. the campaign's run folder)");
    if (v.weights !== undefined && v.weights !== 'ema' && v.weights !== 'model') throw new ExtdError(`--weights ${v.weights}: expected ema or model`);
    const c = readCampaign(dir);
    const latest = readLatest(dir);
    if (!c.progress || !latest) throw new ExtdError(`${dir}: no snapshot to bundle (run snapshot first)`);
    const names = checkpointNames(latest.iteration);
    const weights: 'ema' | 'model' = v.weights === 'model' || (v.weights === undefined && !existsSync(join(dir, names.ema))) ? 'model' : 'ema';
    const model = join(dir, weights === 'ema' ? names.ema : names.model);
    if (!existsSync(model)) throw new ExtdError(`${model}: not found (this snapshot has no moving average; use --weights model)`);
    const out = join(resolve(v.run), 'eval-val646', `ckpt-${latest.iteration}${weights === 'ema' ? '.ema' : ''}`);
    const { main } = await import('extd/cli/main');
    const code = await main(valEvalArgs(model, out, v.list === undefined ? undefined : resolve(v.list), v.threads ?? '2'));
    if (code !== 0) return code;
    const a = readJson<BundledAp>(join(out, 'ap.json'));
    const ap: BundledAp = { easy: round(a.easy), medium: round(a.medium), hard: round(a.hard), images: a.images };
    const { readWeightsFile, writeSafetensorsFile } = await import('extd/weights/files-node');
    const content = await readWeightsFile(model);
    const to = resolve(v.to ?? join(REPO, SCRATCH_MODEL_FILE));
    writeSafetensorsFile(to, content.tensors, bundleMetadata(c, weights, ap, content.metadata));
    c.bundled = {
      iteration: latest.iteration,
      weights,
      cpuHours: c.progress.cpuHours,
      ap,
      file: v.to ? to : SCRATCH_MODEL_FILE,
      time: new Date().toISOString(),
    };
    writeCampaign(dir, c);
    console.error(
      `campaign ${dir}: iteration ${latest.iteration} (${weights === 'ema' ? 'moving average' : 'weights'}, ${c.progress.cpuHours.toFixed(2)} CPU-hours) AP ${ap.easy} / ${ap.medium} / ${ap.hard} (easy / medium / hard, ${ap.images} WIDER val images, single protocol); written to ${to}`,
    );
    return 0;
  }
  if (sub !== 'start' && sub !== 'resume') {
    throw new ExtdError(`unknown subcommand '${sub ?? ''}': expected start, resume, snapshot, eval, plot or bundle (see the header of scripts/campaign.ts)`);
  }
  if (!v.out) throw new ExtdError(`${sub} needs --out DIR (the run folder, outside the repository's committed files, e.g. runs/extd32-campaign)`);
  const out = resolve(v.out);
  const c = readCampaign(dir);
  const threads = v.threads ?? String(CAMPAIGN_DEFAULTS.threads);
  const workers = v.workers ?? String(CAMPAIGN_DEFAULTS.workers);
  let args: string[];
  let from = 0;
  if (sub === 'start') {
    if (c.progress || readLatest(dir))
      throw new ExtdError(`${dir}: the campaign has already started (snapshot at iteration ${c.progress?.iteration}); use resume`);
    if (existsSync(join(out, LATEST_FILE))) throw new ExtdError(`${out}: already a run folder; use resume or another --out`);
    // --init is a bundled model name, or a file of the repository (models/...) wherever this runs from.
    const recipe = c.recipe.map((a, i) => (c.recipe[i - 1] === '--init' && /[./]/.test(a) ? resolve(REPO, a) : a));
    args = [...recipe, ...dataFlags(c, v.data), '--out', out];
  } else {
    from = v['dry-run'] ? (readLatest(out)?.iteration ?? readLatest(dir)?.iteration ?? 0) : seedRun(dir, out);
    args = ['--resume', '--out', out, ...dataFlags(c, v.data), ...recipeChange];
  }
  args.push('--threads', threads, '--workers', workers);
  const command = `node --conditions=extd-source --import tsx scripts/campaign.ts ${[sub, ...rest].map(quote).join(' ')}  # = extd train ${args.map(quote).join(' ')}`;
  console.error(command);
  if (v['dry-run']) return 0;
  c.segments.push({ fromIteration: from, started: new Date().toISOString(), host: hostname(), threads: Number(threads), workers: Number(workers), command });
  if (recipeChange.length > 0) c.recipeChanges = [...(c.recipeChanges ?? []), { fromIteration: from, flags: recipeChange, time: new Date().toISOString() }];
  writeCampaign(dir, c);
  return runTrain(args);
}

runAsScript(import.meta.url, 'campaign', cli);
