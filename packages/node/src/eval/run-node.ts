/**
 * The Node side of `extd eval` / `extd eval-preds`: image sets, running a
 * protocol over a folder with resumable, atomic prediction files, scoring a
 * prediction folder, and writing ap.json and the PR figures.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import type { RgbImage } from '@extd/core/image/types';
import { writeFileAtomic } from '../utils/atomic.js';
import { ExtdError } from '@extd/core/utils/errors';
import { loadBaselines, type PrCurve } from './baselines.js';
import { evaluateWider, WIDER_SETTINGS, type WiderResult } from '@extd/core/eval/evaluator';
import { loadGroundTruth, restrictGroundTruth, type WiderGroundTruth } from './ground-truth.js';
import { prCurvesPng, prCurvesSvg, type PlotCurve } from './plot.js';
import { listPredictionKeys, predictionPath, readPredictions, writePredictions } from './predictions-node.js';
import { imageKey } from '@extd/core/eval/predictions';
import { runProtocol, type PassDetector, type ProtocolName, type ProtocolOptions } from '@extd/core/eval/protocols';

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png']);

/**
 * Image list file: one `EVENT/NAME.jpg` (or `EVENT/NAME`) per line; blank
 * lines and lines starting with # are skipped. Returns the entries as written.
 */
export function readImageList(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ExtdError(`cannot read image list ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const out: string[] = [];
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (!/^[^/\\]+[/\\][^/\\]+$/.test(line)) {
      throw new ExtdError(`${path}:${i + 1}: '${line.slice(0, 80)}' is not an EVENT/NAME.jpg image path`);
    }
    if (seen.has(imageKey(line))) throw new ExtdError(`${path}:${i + 1}: '${line}' is listed twice`);
    seen.add(imageKey(line));
    out.push(line.replace(/\\/g, '/'));
  });
  return out;
}

/** Every `EVENT/NAME.jpg` (or .jpeg/.png) under a WIDER-layout images folder, sorted. */
export function listImages(imagesDir: string): string[] {
  if (!existsSync(imagesDir) || !statSync(imagesDir).isDirectory()) throw new ExtdError(`images folder ${imagesDir} does not exist`);
  const out: string[] = [];
  for (const ev of readdirSync(imagesDir, { withFileTypes: true })) {
    if (!ev.isDirectory()) continue;
    for (const f of readdirSync(join(imagesDir, ev.name))) {
      if (IMAGE_EXT.has(extname(f).toLowerCase())) out.push(`${ev.name}/${f}`);
    }
  }
  if (out.length === 0) throw new ExtdError(`no EVENT/NAME.jpg images in ${imagesDir} (expected the WIDER layout, e.g. WIDER_val/images)`);
  return out.sort();
}

/**
 * A list entry names EVENT/NAME, maybe without extension: find the file in
 * `imagesDir`.
 */
export function resolveImagePath(imagesDir: string, entry: string, source: string): string {
  const direct = join(imagesDir, entry);
  if (extname(entry) && existsSync(direct)) return entry;
  for (const ext of ['.jpg', '.jpeg', '.png']) {
    if (existsSync(join(imagesDir, imageKey(entry) + ext))) return imageKey(entry) + ext;
  }
  throw new ExtdError(`${source}: image '${entry}' not found in ${imagesDir}`);
}

export interface PredictFolderOptions {
  detector: PassDetector;
  decode: (path: string) => Promise<RgbImage>;
  imagesDir: string;
  /** `EVENT/NAME.jpg` relative to imagesDir. */
  images: readonly string[];
  predDir: string;
  protocol: ProtocolName;
  /** Discard every prediction file already in predDir and recompute. */
  force: boolean;
  /**
   * What makes the predictions (model digest, protocol, scale, ...), recorded
   * in predDir/settings.json. A folder holding predictions made with other
   * settings is refused rather than silently mixed in.
   */
  settings?: PredictionSettings;
  protocolOptions?: Partial<ProtocolOptions>;
  /** Called once with the number skipped, then after each image. */
  onSkip?: (n: number) => void;
  onImage?: (image: string, faces: number) => void;
}

/**
 * Run the protocol over `images`, writing `predDir/EVENT/NAME.txt` for each.
 * Existing files are kept unless `force`: files are written atomically, so an
 * existing file is always complete, and a rerun continues where an interrupted
 * one stopped. The next image is decoded while the current one runs.
 */
export async function predictFolder(o: PredictFolderOptions): Promise<{ predicted: number; skipped: number }> {
  if (o.settings) claimPredictionFolder(o.predDir, o.settings, o.force);
  const todo = o.force ? [...o.images] : o.images.filter((im) => !existsSync(predictionPath(o.predDir, im)));
  const skipped = o.images.length - todo.length;
  o.onSkip?.(skipped);
  const load = (i: number): Promise<RgbImage> | undefined => {
    if (i >= todo.length) return undefined;
    const p = o.decode(join(o.imagesDir, todo[i]!));
    p.catch(() => {}); // handled when awaited; avoids an unhandled-rejection report meanwhile
    return p;
  };
  let next = load(0);
  for (let i = 0; i < todo.length; i++) {
    const image = await next!;
    next = load(i + 1);
    const d = await runProtocol(o.detector, image, o.protocol, o.protocolOptions);
    writePredictions(o.predDir, todo[i]!, d.boxes, d.scores);
    o.onImage?.(todo[i]!, d.scores.length);
  }
  return { predicted: todo.length, skipped };
}

/** Flat description of how a prediction folder was made; equal settings mean reusable files. */
export type PredictionSettings = Record<string, string | number | null>;

/** `DIR/settings.json`: beside the EVENT folders, so prediction readers never see it. */
export function predictionSettingsPath(predDir: string): string {
  return join(predDir, 'settings.json');
}

/**
 * Make predDir hold predictions of `settings` only: refuse (one line, naming
 * what differs) if it has prediction files made otherwise or by an unknown
 * run, unless `force`, which deletes them. Then record the settings.
 */
function claimPredictionFolder(predDir: string, settings: PredictionSettings, force: boolean): void {
  const path = predictionSettingsPath(predDir);
  const existing = existsSync(predDir) ? listPredictionKeys(predDir) : [];
  if (existing.length > 0 && !force) {
    const why = ' (use a new --out, or --force to discard them)';
    if (!existsSync(path)) {
      throw new ExtdError(`${predDir} holds ${existing.length} prediction files without a settings.json saying what made them${why}`);
    }
    let recorded: PredictionSettings;
    try {
      recorded = JSON.parse(readFileSync(path, 'utf8')) as PredictionSettings;
      if (typeof recorded !== 'object' || recorded === null || Array.isArray(recorded)) throw new Error('not a JSON object');
    } catch (err) {
      throw new ExtdError(`${path}: unreadable (${(err as Error).message})${why}`);
    }
    const keys = [...new Set([...Object.keys(recorded), ...Object.keys(settings)])].sort();
    const diff = keys.filter((k) => recorded[k] !== settings[k]);
    if (diff.length > 0) {
      const show = (v: unknown) => (v === undefined ? '(none)' : JSON.stringify(v));
      const parts = diff.map((k) => `${k} ${show(recorded[k])} there, ${show(settings[k])} now`);
      throw new ExtdError(`${predDir} holds predictions made with other settings: ${parts.join('; ')}${why}`);
    }
  }
  if (force) for (const key of existing) rmSync(predictionPath(predDir, key));
  writeFileAtomic(path, JSON.stringify(settings, null, 1) + '\n');
}

export interface ScoreOptions {
  predDir: string;
  /** The kit's ground_truth folder or a *_bbx_gt.txt file (loadGroundTruth). */
  gtDir: string;
  /** Image keys or paths to evaluate; the ground truth is restricted to them. */
  images: readonly string[];
  /** Where `images` came from, for error messages. */
  source: string;
  /** Already loaded ground truth (else read from gtDir). */
  groundTruth?: WiderGroundTruth;
}

/** Evaluate a prediction folder on exactly `images`. */
export function scorePredictions(o: ScoreOptions): WiderResult {
  const gt = o.groundTruth ?? loadGroundTruth(o.gtDir);
  const subset = restrictGroundTruth(gt, o.images, o.source);
  const preds = readPredictions(
    o.predDir,
    subset.map((g) => g.key),
  );
  return evaluateWider(subset, preds);
}

/** The images a prediction folder holds, for eval-preds without --list. */
export function predictedImages(predDir: string): string[] {
  const keys = listPredictionKeys(predDir);
  if (keys.length === 0) throw new ExtdError(`no EVENT/NAME.txt prediction files in ${predDir}`);
  return keys;
}

/** The kit's baseline folder next to its ground_truth folder, if present. */
export function defaultBaselinesDir(gtDir: string): string | undefined {
  if (existsSync(gtDir) && !statSync(gtDir).isDirectory()) return undefined; // an annotation file: not the validation set
  const p = resolve(dirname(resolve(gtDir)), 'plot', 'baselines', 'Val', 'setting_int');
  return existsSync(p) ? p : undefined;
}

export function formatApTable(r: WiderResult, label = 'AP'): string {
  const rows = [
    `${'setting'.padEnd(8)} ${label.padStart(7)} ${'faces'.padStart(7)}`,
    ...WIDER_SETTINGS.map((s) => `${s.padEnd(8)} ${r[s].ap.toFixed(4).padStart(7)} ${String(r[s].faces).padStart(7)}`),
  ];
  return rows.join('\n');
}

export interface ReportMeta {
  /** Legend name of our curve. */
  name: string;
  [key: string]: unknown;
}

/**
 * Write `outDir/ap.json` (atomically) and `outDir/pr-{easy,medium,hard}.{png,svg}`
 * with the baselines from `baselinesDir` when given. Returns the files written.
 */
export async function writeReport(outDir: string, r: WiderResult, meta: ReportMeta, baselinesDir?: string): Promise<string[]> {
  const written: string[] = [];
  const json = {
    ...meta,
    images: r.images,
    imagesWithPredictions: r.imagesWithPredictions,
    easy: r.easy.ap,
    medium: r.medium.ap,
    hard: r.hard.ap,
    faces: { easy: r.easy.faces, medium: r.medium.faces, hard: r.hard.faces },
    evaluation: 'official WIDER FACE algorithm (IoU 0.5, 1000 thresholds, VOC all-point AP), ground truth restricted to the evaluated images',
    date: new Date().toISOString(),
  };
  const apPath = join(outDir, 'ap.json');
  writeFileAtomic(apPath, JSON.stringify(json, null, 2) + '\n');
  written.push(apPath);
  for (const s of WIDER_SETTINGS) {
    const ours: PlotCurve = { name: meta.name, ap: r[s].ap, precision: r[s].precision, recall: r[s].recall, highlight: true };
    const baselines: PrCurve[] = baselinesDir ? loadBaselines(baselinesDir, s) : [];
    const curves = [...baselines, ours];
    const title = `${s[0]!.toUpperCase()}${s.slice(1)} set (${r.images} images${baselinesDir ? '; baselines: full val set' : ''})`;
    const png = join(outDir, `pr-${s}.png`);
    const svg = join(outDir, `pr-${s}.svg`);
    writeFileAtomic(png, await prCurvesPng(curves, { title }));
    writeFileAtomic(svg, prCurvesSvg(curves, { title }));
    written.push(png, svg);
  }
  return written;
}
