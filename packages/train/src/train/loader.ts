/**
 * Training data loader: WIDER FACE samples -> decoded, augmented, batched
 * network inputs, prepared by a pool of worker threads ahead of the engine.
 *
 * The sample stream is an endless sequence of epochs; epoch e visits every
 * sample once in the order of a permutation drawn from (seed, e). Batch b holds
 * stream positions b*B .. b*B + B - 1 (a batch may straddle two epochs, so any
 * dataset size works with any batch size and nothing is dropped). Sample k's
 * augmentation draws from Rng.fromKey(seed, epoch, sampleIndex), so a batch is
 * the same whichever worker made it and in whatever order: a run resumed at
 * batch b sees exactly the batches the uninterrupted run would have seen.
 *
 * Node only (worker_threads, sharp).
 */
import { existsSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { readWiderAnnotations, type WiderImageAnnotation } from 'extd/data/wider-annotations-node';
import { loadImageRgb } from 'extd/image/node';
import { fromWider, trainingSamples } from 'extd/data/read-dataset';
import { ExtdError } from '@extd/core/utils/errors';
import { Rng } from '@extd/core/utils/rng';
import { AUGMENT_DEFAULTS, augment, type AugmentOptions } from './augment.js';

/** One training image: its file and its faces (n x 4, xyxy, source pixels). */
export interface TrainSample {
  path: string;
  boxes: Float32Array;
}

/**
 * Training samples from parsed WIDER annotations: face boxes with w or h <= 0
 * are dropped (the official files mark missing faces that way) and images left
 * without faces are skipped, as the recipe says. A face's box is
 * [x, y, x + w, y + h], as the reference training code builds it.
 */
export function samplesFromWider(annotations: readonly WiderImageAnnotation[], imagesDir: string): TrainSample[] {
  return trainingSamples(fromWider(annotations, 'wider-text', 'annotations', imagesDir));
}

/**
 * Read a WIDER annotation file and check that the images folder holds every
 * listed image; throws ExtdError naming the first missing file.
 */
export function readWiderTrainingSet(annotationFile: string, imagesDir: string): TrainSample[] {
  if (!existsSync(imagesDir) || !statSync(imagesDir).isDirectory()) {
    throw new ExtdError(`training images folder not found: ${imagesDir}`);
  }
  const samples = samplesFromWider(readWiderAnnotations(annotationFile), imagesDir);
  if (samples.length === 0) throw new ExtdError(`${annotationFile}: no image with at least one face (w, h > 0)`);
  const missing = samples.filter((s) => !existsSync(s.path));
  if (missing.length > 0) {
    throw new ExtdError(`${missing.length} of ${samples.length} images listed in ${annotationFile} are missing from ${imagesDir}, first: ${missing[0]!.path}`);
  }
  return samples;
}

export interface LoaderOptions {
  /** Images per batch. */
  batchSize: number;
  /** Network input side (square); overrides augment.size. */
  size: number;
  /** Run seed; the whole stream is a function of it. */
  seed: number;
  /** Worker threads; 0 prepares samples on the calling thread (tests, debugging). */
  workers: number;
  /** Batches prepared ahead of the one being consumed. */
  prefetch: number;
  /** First batch of the stream to produce (resume point). */
  startBatch: number;
  /** Shuffle each epoch; false visits samples in dataset order. */
  shuffle: boolean;
  /** Augmentation settings (size comes from `size`). */
  augment: Partial<AugmentOptions>;
}

export const LOADER_DEFAULTS: Readonly<LoaderOptions> = Object.freeze({
  batchSize: 16,
  size: AUGMENT_DEFAULTS.size,
  seed: 0,
  // One worker keeps up with the engine on this 2-core machine (see the
  // loader benchmark) and leaves the other core to libtorch.
  workers: 1,
  prefetch: 2,
  startBatch: 0,
  shuffle: true,
  augment: {},
});

export interface Batch {
  /** Position of this batch in the stream (the iteration it is meant for). */
  index: number;
  /** Epoch of the batch's first sample. */
  epoch: number;
  /** B x 3 x size x size, mean-subtracted RGB. */
  input: Float32Array;
  /** Per image: n x 4 face boxes, xyxy normalised 0..1 (n may be 0). */
  boxes: Float32Array[];
  /** Per image: the source file. */
  paths: string[];
}

/** One prepared sample, as a worker returns it. */
export interface PreparedSample {
  input: Float32Array;
  boxes: Float32Array;
}

/** Decode and augment one sample: the work unit of the pool (also run in-thread when workers = 0). */
export async function prepareSample(path: string, boxes: Float32Array, key: readonly number[], options: Partial<AugmentOptions>): Promise<PreparedSample> {
  const image = await loadImageRgb(path);
  const r = augment(image, boxes, Rng.fromKey(...key), options);
  return { input: r.input, boxes: r.boxes };
}

interface Task {
  id: number;
  path: string;
  boxes: Float32Array;
  key: number[];
  resolve: (s: PreparedSample) => void;
  reject: (e: Error) => void;
}

interface PoolWorker {
  worker: Worker;
  busy: Map<number, Task>;
}

/** Tasks in flight per worker: two lets one decode (sharp's own threads) while the other augments. */
const TASKS_PER_WORKER = 2;

export class TrainLoader {
  readonly options: LoaderOptions;
  readonly samples: readonly TrainSample[];
  private readonly augmentOptions: Partial<AugmentOptions>;
  private readonly workers: PoolWorker[] = [];
  private readonly queue: Task[] = [];
  private readonly pending = new Map<number, Promise<Batch>>();
  private readonly permutations = new Map<number, Uint32Array>();
  private nextIndex: number;
  private scheduled: number;
  private taskId = 0;
  private failure: Error | undefined;
  private closed = false;

  constructor(samples: readonly TrainSample[], options: Partial<LoaderOptions> = {}) {
    const o: LoaderOptions = { ...LOADER_DEFAULTS, ...options };
    if (samples.length === 0) throw new Error('training loader: the dataset is empty');
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new Error(`batch size ${o.batchSize} must be a positive integer`);
    if (!Number.isInteger(o.workers) || o.workers < 0 || o.workers > 64) throw new Error(`loader workers ${o.workers} must be an integer in 0..64`);
    if (!Number.isInteger(o.prefetch) || o.prefetch < 0) throw new Error(`loader prefetch ${o.prefetch} must be a non-negative integer`);
    if (!Number.isInteger(o.startBatch) || o.startBatch < 0) throw new Error(`start batch ${o.startBatch} must be a non-negative integer`);
    if (!Number.isSafeInteger(o.seed)) throw new Error(`seed ${o.seed} must be an integer`);
    this.options = o;
    this.samples = samples;
    this.augmentOptions = { ...o.augment, size: o.size };
    this.nextIndex = o.startBatch;
    this.scheduled = o.startBatch;
    for (let w = 0; w < o.workers; w++) this.workers.push(this.spawn());
  }

  /** Samples per epoch. */
  get epochSize(): number {
    return this.samples.length;
  }

  /** Index of the batch the next `next()` returns (store it to resume). */
  get position(): number {
    return this.nextIndex;
  }

  /** The next batch of the stream; prepares the following ones in the background. */
  async next(): Promise<Batch> {
    if (this.closed) throw new Error('training loader is closed');
    if (this.failure) throw this.failure;
    const index = this.nextIndex++;
    this.fill(index);
    const batch = this.pending.get(index)!;
    this.pending.delete(index);
    return batch;
  }

  /** Stop the workers; pending batches are abandoned. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new Error('training loader closed');
    for (const t of this.queue.splice(0)) t.reject(err);
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
    for (const w of this.workers) for (const t of w.busy.values()) t.reject(err);
    this.pending.clear();
  }

  /** Which sample sits at stream position k, and its augmentation key. */
  sampleAt(k: number): { sample: number; epoch: number; key: number[] } {
    const n = this.samples.length;
    const epoch = Math.floor(k / n);
    const perm = this.permutation(epoch);
    const sample = perm ? perm[k % n]! : k % n;
    return { sample, epoch, key: [this.options.seed, epoch, sample] };
  }

  private permutation(epoch: number): Uint32Array | undefined {
    if (!this.options.shuffle) return undefined;
    let p = this.permutations.get(epoch);
    if (!p) {
      // Key -1 keeps the shuffle stream apart from every sample's stream (sample indices are >= 0).
      p = Rng.fromKey(this.options.seed, epoch, -1).permutation(this.samples.length);
      this.permutations.set(epoch, p);
      for (const e of this.permutations.keys()) if (e < epoch - 1) this.permutations.delete(e);
    }
    return p;
  }

  /** Schedule batches up to `from + prefetch`: while `from` is consumed, the next `prefetch` are in the works. */
  private fill(from: number): void {
    const until = from + this.options.prefetch;
    while (this.scheduled <= until) {
      const index = this.scheduled++;
      const p = this.buildBatch(index);
      p.catch(() => {}); // observed by next(); avoid an unhandled rejection for prefetched batches
      this.pending.set(index, p);
    }
  }

  private async buildBatch(index: number): Promise<Batch> {
    const B = this.options.batchSize;
    const S = this.options.size;
    const plane = 3 * S * S;
    const input = new Float32Array(B * plane);
    const boxes: Float32Array[] = new Array(B);
    const paths: string[] = new Array(B);
    const first = this.sampleAt(index * B);
    await Promise.all(
      Array.from({ length: B }, async (_, i) => {
        const { sample, key } = this.sampleAt(index * B + i);
        const s = this.samples[sample]!;
        paths[i] = s.path;
        const r = await this.run(s, key);
        input.set(r.input, i * plane);
        boxes[i] = r.boxes;
      }),
    );
    return { index, epoch: first.epoch, input, boxes, paths };
  }

  private run(sample: TrainSample, key: number[]): Promise<PreparedSample> {
    if (this.workers.length === 0) return prepareSample(sample.path, sample.boxes, key, this.augmentOptions);
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.queue.push({ id: this.taskId++, path: sample.path, boxes: sample.boxes, key, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let target: PoolWorker | undefined;
      for (const w of this.workers) if (w.busy.size < TASKS_PER_WORKER && (!target || w.busy.size < target.busy.size)) target = w;
      if (!target) return;
      const t = this.queue.shift()!;
      // Referenced only while working: an idle pool never keeps the process alive, a busy one must.
      if (target.busy.size === 0) target.worker.ref();
      target.busy.set(t.id, t);
      target.worker.postMessage({ id: t.id, path: t.path, boxes: t.boxes, key: t.key });
    }
  }

  private spawn(): PoolWorker {
    const entry = workerEntry();
    const worker = new Worker(entry.script, { eval: entry.eval, workerData: { augment: this.augmentOptions } });
    worker.unref();
    const pw: PoolWorker = { worker, busy: new Map() };
    worker.on('message', (m: WorkerReply) => {
      // A reply posted just before close() still arrives. Dropping it matters:
      // unref'ing the worker here would undo the ref that terminate() takes,
      // and an unref'd worker's shutdown does not keep the event loop alive, so
      // the process could exit with close() (and the caller's code after it)
      // never resuming.
      if (this.closed) return;
      const t = pw.busy.get(m.id);
      if (!t) return;
      pw.busy.delete(m.id);
      if (pw.busy.size === 0) worker.unref();
      if (m.ok) t.resolve({ input: m.input, boxes: m.boxes });
      else t.reject(m.user ? new ExtdError(m.message) : new Error(m.message));
      this.dispatch();
    });
    const die = (err: Error) => {
      if (this.closed) return;
      this.failure ??= new Error(`training loader worker failed: ${err.message}`);
      for (const t of pw.busy.values()) t.reject(this.failure);
      pw.busy.clear();
      for (const t of this.queue.splice(0)) t.reject(this.failure);
    };
    worker.on('error', die);
    worker.on('exit', (code) => {
      if (code !== 0) die(new Error(`exit code ${code}`));
    });
    return pw;
  }
}

export type WorkerReply = { id: number; ok: true; input: Float32Array; boxes: Float32Array } | { id: number; ok: false; message: string; user: boolean };

/**
 * How to start the worker script next to this module. From the compiled .js,
 * directly. From the .ts source (tsx), the worker needs tsx's loader, but on
 * Node 20 a worker ignores `--import tsx` in its execArgv, so a two-line
 * bootstrap registers tsx's ESM hooks in the worker, then imports the script.
 */
function workerEntry(): { script: string | URL; eval: boolean } {
  if (!import.meta.url.endsWith('.ts')) return { script: new URL('./loader-worker.js', import.meta.url), eval: false };
  const api = import.meta.resolve('tsx/esm/api');
  const target = new URL('./loader-worker.ts', import.meta.url).href;
  return {
    script: `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(target)}); });`,
    eval: true,
  };
}

/** Cores minus the ones the engine uses, at least 1: a starting point for `workers`. */
export function suggestedWorkers(engineThreads = 2): number {
  return Math.max(1, availableParallelism() - engineThreads);
}
