/**
 * Where a model's WIDER predictions go right and wrong, by box size: for each
 * size bucket (side = sqrt(w * h) in image pixels), the faces, the share of
 * them found (matched at IoU >= --iou by a prediction scoring >= --score) and
 * the predictions scoring >= --score that match a face / match none (false
 * positives), and why the faces not found were missed: the kept prediction
 * that overlaps a face most (score >= --score) is smaller than the face's
 * side / --size-tolerance, larger than side x --size-tolerance, about the
 * right size (side sqrt(w * h)) but misplaced or misshapen, or there is none. A diagnostic beside the official AP, not a replacement: it
 * counts every face with w, h > 0 whatever its difficulty, and one threshold.
 *
 *   node --conditions=extd-source --import tsx scripts/by-size.ts --pred OUT/pred --gt GT [--list FILE]
 *       [--score 0.5] [--iou 0.5] [--edges 16,32,64,128,256,400] [--size-tolerance 1.3]
 *
 * --pred is `extd eval`'s OUT/pred folder (EVENT/NAME.txt, the official
 * format); --gt what `extd eval --gt` takes (the kit's ground_truth folder or
 * WIDER annotations); --list the images to count (default: every image with
 * a prediction file).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { GroundTruthImage, ImagePredictions } from '@extd/core/eval/evaluator';
import { ExtdError } from '@extd/core/utils/errors';
import { loadGroundTruth, restrictGroundTruth } from 'extd/eval/ground-truth';
import { listPredictionKeys, readPredictions } from 'extd/eval/predictions-node';
import { runAsScript } from './campaign.js';

export interface BySizeOptions {
  /** Predictions below this score are left out. */
  score: number;
  /** IoU at which a prediction and a face match. */
  iou: number;
  /** Bucket edges in pixels of side, ascending; buckets are [0, e0), [e0, e1), ..., [eLast, inf). */
  edges: readonly number[];
  /** A missed face's best box (most IoU) counts as too small / too large when its side is off by more than this factor. */
  sizeTolerance: number;
}

export const BY_SIZE_DEFAULTS: Readonly<BySizeOptions> = Object.freeze({ score: 0.5, iou: 0.5, edges: [16, 32, 64, 128, 256, 400], sizeTolerance: 1.3 });

export interface SizeBucket {
  /** Side range in pixels, [lo, hi). */
  lo: number;
  hi: number;
  faces: number;
  /** Faces matched by at least one prediction at or above the score. */
  found: number;
  /** Predictions at or above the score (by their own size) that match a face / match none. */
  truePositives: number;
  falsePositives: number;
  /**
   * Faces not found, by the kept prediction with the most IoU with them:
   * none overlaps the face; its side sqrt(w * h) is below the face's /
   * sizeTolerance (tooSmall) or above the face's x sizeTolerance (tooLarge);
   * else it is about the right size but placed or shaped off the face
   * (misplaced: side ignores the aspect ratio, so a misshapen box counts here).
   */
  missed: { none: number; tooSmall: number; tooLarge: number; misplaced: number };
}

/** Side sqrt(w * h) of box i of x y w h boxes (0 for a negative width or height). */
function sideOf(boxes: Float64Array, i: number): number {
  return Math.sqrt(Math.max(0, boxes[4 * i + 2]!) * Math.max(0, boxes[4 * i + 3]!));
}

/** IoU of two x y w h boxes (areas w * h, as extd writes them). */
function iouXywh(a: Float64Array, i: number, b: Float64Array, j: number): number {
  const ax = a[4 * i]!,
    ay = a[4 * i + 1]!,
    aw = a[4 * i + 2]!,
    ah = a[4 * i + 3]!;
  const bx = b[4 * j]!,
    by = b[4 * j + 1]!,
    bw = b[4 * j + 2]!,
    bh = b[4 * j + 3]!;
  const iw = Math.max(0, Math.min(ax + aw, bx + bw) - Math.max(ax, bx));
  const ih = Math.max(0, Math.min(ay + ah, by + bh) - Math.max(ay, by));
  const inter = iw * ih;
  const union = Math.max(0, aw) * Math.max(0, ah) + Math.max(0, bw) * Math.max(0, bh) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Counts by size bucket over `images` (ground truth, boxes x y w h px) and
 * `predictions` (by image key; an image without predictions counts its faces
 * as missed). Pure; N = 0 faces or predictions is fine.
 */
export function bySize(
  images: readonly GroundTruthImage[],
  predictions: ReadonlyMap<string, ImagePredictions>,
  options: Partial<BySizeOptions> = {},
): SizeBucket[] {
  const o = { ...BY_SIZE_DEFAULTS, ...options };
  const edges = [0, ...o.edges, Number.POSITIVE_INFINITY];
  const buckets: SizeBucket[] = edges.slice(0, -1).map((lo, k) => ({
    lo,
    hi: edges[k + 1]!,
    faces: 0,
    found: 0,
    truePositives: 0,
    falsePositives: 0,
    missed: { none: 0, tooSmall: 0, tooLarge: 0, misplaced: 0 },
  }));
  const bucketOf = (side: number) => {
    let k = 0;
    while (side >= buckets[k]!.hi) k++;
    return buckets[k]!;
  };
  for (const im of images) {
    const gt = im.boxes;
    const nFaces = gt.length / 4;
    const valid: number[] = [];
    for (let f = 0; f < nFaces; f++) if (gt[4 * f + 2]! > 0 && gt[4 * f + 3]! > 0) valid.push(f);
    const pred = predictions.get(im.key);
    const kept: number[] = [];
    if (pred) for (let p = 0; p < pred.scores.length; p++) if (pred.scores[p]! >= o.score) kept.push(p);
    for (const f of valid) {
      const b = bucketOf(sideOf(gt, f));
      b.faces++;
      let best = 0;
      let bestP = -1;
      for (const p of kept) {
        const v = iouXywh(pred!.boxes, p, gt, f);
        if (v > best) [best, bestP] = [v, p];
      }
      if (bestP >= 0 && best >= o.iou) b.found++;
      else if (bestP < 0) b.missed.none++;
      else {
        const ratio = sideOf(pred!.boxes, bestP) / sideOf(gt, f);
        if (ratio < 1 / o.sizeTolerance) b.missed.tooSmall++;
        else if (ratio > o.sizeTolerance) b.missed.tooLarge++;
        else b.missed.misplaced++;
      }
    }
    for (const p of kept) {
      const b = bucketOf(sideOf(pred!.boxes, p));
      if (valid.some((f) => iouXywh(pred!.boxes, p, gt, f) >= o.iou)) b.truePositives++;
      else b.falsePositives++;
    }
  }
  return buckets;
}

/** The table bySize's buckets print as (Markdown). */
export function renderBySize(buckets: readonly SizeBucket[], o: BySizeOptions): string {
  const lines = [
    `| side (px) | faces | found (score >= ${o.score}, IoU >= ${o.iou}) | predictions matching a face | false positives | missed: no box / too small / too large / misplaced (x${o.sizeTolerance}) |`,
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const b of buckets) {
    const range = b.hi === Number.POSITIVE_INFINITY ? `>= ${b.lo}` : `${b.lo}-${b.hi}`;
    const share = b.faces > 0 ? ` (${((100 * b.found) / b.faces).toFixed(0)}%)` : '';
    const m = b.missed;
    lines.push(
      `| ${range} | ${b.faces} | ${b.found}${share} | ${b.truePositives} | ${b.falsePositives} | ${m.none} / ${m.tooSmall} / ${m.tooLarge} / ${m.misplaced} |`,
    );
  }
  return lines.join('\n');
}

const USAGE = `usage: scripts/by-size.ts --pred OUT/pred --gt GT [--list FILE] [--score ${BY_SIZE_DEFAULTS.score}] [--iou ${BY_SIZE_DEFAULTS.iou}] [--edges ${BY_SIZE_DEFAULTS.edges.join(',')}] [--size-tolerance ${BY_SIZE_DEFAULTS.sizeTolerance}]
  --pred   extd eval's OUT/pred folder (EVENT/NAME.txt)
  --gt     the ground truth extd eval --gt took (the kit's ground_truth folder or WIDER annotations)
  --list   the images to count, one EVENT/NAME per line (default: every image with a prediction file)
  --score  predictions below this score are left out
  --iou    IoU at which a prediction and a face match (above 0)
  --edges  bucket edges in pixels of side sqrt(w * h), ascending
  --size-tolerance  a missed face's best box is too small / too large when its side is off by more than this factor`;

async function cli(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      pred: { type: 'string' },
      gt: { type: 'string' },
      list: { type: 'string' },
      score: { type: 'string' },
      iou: { type: 'string' },
      edges: { type: 'string' },
      'size-tolerance': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.pred || !values.gt) throw new ExtdError('--pred DIR and --gt GT are required (extd eval OUT/pred and the ground truth it was scored on)');
  const unit = (raw: string | undefined, name: string, def: number, min: 'inclusive' | 'exclusive') => {
    if (raw === undefined) return def;
    const x = Number(raw);
    if (!((min === 'inclusive' ? x >= 0 : x > 0) && x <= 1))
      throw new ExtdError(`--${name} ${raw}: expected a number from 0 ${min === 'inclusive' ? '' : '(excluded) '}to 1`);
    return x;
  };
  let edges: number[] = [...BY_SIZE_DEFAULTS.edges];
  if (values.edges !== undefined) {
    edges = values.edges.split(',').map(Number);
    if (edges.some((e, i) => !(e > 0) || (i > 0 && e <= edges[i - 1]!)))
      throw new ExtdError(`--edges ${values.edges}: expected ascending positive numbers, e.g. 16,32,64`);
  }
  let sizeTolerance = BY_SIZE_DEFAULTS.sizeTolerance;
  if (values['size-tolerance'] !== undefined) {
    sizeTolerance = Number(values['size-tolerance']);
    if (!(sizeTolerance >= 1)) throw new ExtdError(`--size-tolerance ${values['size-tolerance']}: expected a number >= 1`);
  }
  const o: BySizeOptions = {
    score: unit(values.score, 'score', BY_SIZE_DEFAULTS.score, 'inclusive'),
    iou: unit(values.iou, 'iou', BY_SIZE_DEFAULTS.iou, 'exclusive'),
    edges,
    sizeTolerance,
  };
  const gt = loadGroundTruth(values.gt);
  let keys: string[];
  if (values.list !== undefined) {
    let text: string;
    try {
      text = readFileSync(values.list, 'utf8');
    } catch (err) {
      throw new ExtdError(`cannot read --list ${values.list}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    keys = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0);
  } else keys = listPredictionKeys(values.pred);
  const images = restrictGroundTruth(gt, keys, values.list ?? values.pred);
  const predictions = readPredictions(
    values.pred,
    images.map((im) => im.key),
  );
  const missing = images.length - predictions.size;
  console.log(`${images.length} images${missing > 0 ? ` (${missing} without a prediction file: their faces count as missed)` : ''}, ${values.pred}`);
  console.log(renderBySize(bySize(images, predictions, o), o));
  return 0;
}

runAsScript(import.meta.url, 'by-size', cli);
