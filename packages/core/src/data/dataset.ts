/**
 * The one in-memory form every annotation reader produces (WIDER text and
 * .mat, COCO JSON, Pascal VOC XML, YOLO): a list of images, each with its
 * face boxes as xyxy pixels and a per-box ignore flag.
 *
 * Box convention: continuous pixel coordinates, a box covering pixel columns
 * 0..9 is x1 = 0, x2 = 10 (COCO's x, y, w, h maps to x, y, x + w, y + h;
 * VOC's 1-based inclusive xmin..xmax to xmin - 1, xmax; YOLO's normalised
 * centre and size to (cx -/+ w/2) * width; WIDER's x y w h to x, y, x + w,
 * y + h as the reference training code does).
 *
 * Readers report bad entries (a non-numeric coordinate, an unknown image id,
 * a class index outside `names`, ...) as `problems`, one line each naming the
 * file and the entry; a box partly outside the image (when the format gives
 * the image size) is clipped to it and a box left empty (zero or negative
 * width or height) is dropped, and both are counted in `stats`.
 * No node: imports.
 */
import { ExtdError } from '../utils/errors.js';
import { Rng } from '../utils/rng.js';
import type { WiderImageAnnotation } from './wider-annotations.js';

/** The annotation formats the readers understand (names as `--format` takes them). */
export const ANNOTATION_FORMATS = ['wider-text', 'wider-mat', 'coco', 'voc', 'yolo'] as const;
/** One of ANNOTATION_FORMATS: WIDER text or .mat, COCO JSON, Pascal VOC XML, YOLO. */
export type AnnotationFormat = (typeof ANNOTATION_FORMATS)[number];

/** Human name of a format, for messages and reports. */
export const FORMAT_NAMES: Record<AnnotationFormat, string> = {
  'wider-text': 'WIDER text annotations',
  'wider-mat': 'WIDER .mat annotations',
  coco: 'COCO JSON',
  voc: 'Pascal VOC XML',
  yolo: 'YOLO dataset',
};

/** One annotated image of a FaceDataset, with its face boxes (xyxy pixels) and ignore flags. */
export interface DatasetImage {
  /**
   * The image file relative to the dataset's `imagesDir`, '/'-separated.
   * Without its extension it is the image's key (prediction file names).
   */
  file: string;
  /** Width in pixels as the annotation states it; 0 when it does not. */
  width: number;
  /** Height in pixels as the annotation states it; 0 when it does not. */
  height: number;
  /** n x 4 face boxes, xyxy, pixels (see the module comment for the convention). */
  boxes: Float64Array;
  /**
   * Per box, 1 when the box is to be ignored: VOC `difficult`, COCO
   * `iscrowd`, WIDER `invalid`. Evaluation counts a detection on it as
   * neither a hit nor a false positive; training leaves it out (except for
   * WIDER, whose recipe trains on every box).
   */
  ignore: Uint8Array;
  /** Where the entry was read from, for messages (`file`, `file:line`). */
  origin: string;
  /** Boxes of this image clipped to it (counted in stats). */
  clipped: number;
  /** Boxes of this image dropped as empty, after clipping (counted in stats). */
  dropped: number;
}

export interface DatasetStats {
  /** Images annotated (with or without faces). */
  images: number;
  /** Face boxes kept, ignored ones included. */
  faces: number;
  /** Of those, marked ignore. */
  ignored: number;
  /** Boxes partly outside their image, clipped to it. */
  clipped: number;
  /** Boxes dropped for being empty (after clipping: width or height <= 0). */
  dropped: number;
  /** Objects of classes not selected (VOC, COCO, YOLO), not counted as faces. */
  otherClasses: number;
}

/** An annotated face dataset as every reader returns it (see the module comment for the box convention). */
export interface FaceDataset {
  /** The format it was read from. */
  format: AnnotationFormat;
  /** The annotation file or folder as given. */
  source: string;
  /** The folder `DatasetImage.file` is relative to ('' until a reader that needs --images gets it). */
  imagesDir: string;
  /** The annotated images, in the reader's order. */
  images: DatasetImage[];
  /** The class names taken as faces ([] for WIDER, whose every box is a face). */
  classes: string[];
  /** Counts of images, faces, ignored, clipped and dropped boxes. */
  stats: DatasetStats;
  /** Entry-level problems, one line each ('file:line: ...' or 'file: object 3: ...'). */
  problems: string[];
  /** WIDER formats: the annotations as read (the official evaluation protocol works on them). */
  wider?: WiderImageAnnotation[];
  /** Set when read from the evaluation kit's ground_truth folder (its easy/medium/hard settings apply). */
  widerKitDir?: string;
}

/** Which classes count as faces: a list of names, or every class. */
export type CategorySelection = readonly string[] | 'all';

/** Options shared by the readers. */
export interface ReadOptions {
  /**
   * Classes taken as faces (COCO categories, VOC object names, YOLO names).
   * Default ['face']. 'all' takes every class.
   */
  category: CategorySelection;
}

export const READ_DEFAULTS: Readonly<ReadOptions> = Object.freeze({ category: ['face'] });

/**
 * Parse a --category value: `face`, `with_mask,without_mask` or `all`.
 * Throws ExtdError on an empty name.
 */
export function parseCategory(value: string | undefined): CategorySelection {
  if (value === undefined) return READ_DEFAULTS.category;
  if (value.trim() === 'all') return 'all';
  const names = value.split(',').map((s) => s.trim());
  if (names.some((n) => n === '')) throw new ExtdError(`--category ${value}: expected NAME, NAME,NAME,... or all`);
  return [...new Set(names)];
}

/** `face` / `a, b` / `all` for messages. */
export function describeCategory(c: CategorySelection): string {
  return c === 'all' ? 'all classes' : c.map((n) => `'${n}'`).join(', ');
}

export function isSelected(c: CategorySelection, name: string): boolean {
  return c === 'all' || c.includes(name);
}

/**
 * Collects one image's boxes: clips to the image when its size is known,
 * drops empty boxes, counts both.
 */
export class DatasetBuilder {
  readonly images: DatasetImage[] = [];
  readonly problems: string[] = [];
  readonly stats: DatasetStats = { images: 0, faces: 0, ignored: 0, clipped: 0, dropped: 0, otherClasses: 0 };

  problem(line: string): void {
    this.problems.push(line);
  }

  /**
   * Add an image. `boxes` are xyxy pixels (unclipped); `width`/`height` 0
   * means unknown (no clipping).
   */
  addImage(
    file: string,
    width: number,
    height: number,
    boxes: ReadonlyArray<readonly [number, number, number, number]>,
    ignore: readonly boolean[],
    origin: string,
  ): DatasetImage {
    const kept: number[] = [];
    const flags: number[] = [];
    let clipped = 0;
    let dropped = 0;
    const known = width > 0 && height > 0;
    boxes.forEach((b, i) => {
      let [x1, y1, x2, y2] = b;
      if (known) {
        const cx1 = Math.min(Math.max(x1, 0), width),
          cy1 = Math.min(Math.max(y1, 0), height);
        const cx2 = Math.min(Math.max(x2, 0), width),
          cy2 = Math.min(Math.max(y2, 0), height);
        const empty = !(cx2 > cx1 && cy2 > cy1);
        if (!empty && (cx1 !== x1 || cy1 !== y1 || cx2 !== x2 || cy2 !== y2)) clipped++;
        [x1, y1, x2, y2] = [cx1, cy1, cx2, cy2];
      }
      if (!(x2 > x1 && y2 > y1)) {
        dropped++;
        return;
      }
      kept.push(x1, y1, x2, y2);
      flags.push(ignore[i] ? 1 : 0);
    });
    const im: DatasetImage = { file, width, height, boxes: Float64Array.from(kept), ignore: Uint8Array.from(flags), origin, clipped, dropped };
    this.images.push(im);
    this.stats.images++;
    this.stats.clipped += clipped;
    this.stats.dropped += dropped;
    this.stats.faces += flags.length;
    this.stats.ignored += flags.reduce((a, v) => a + v, 0);
    return im;
  }

  build(format: AnnotationFormat, source: string, imagesDir: string, classes: string[]): FaceDataset {
    return { format, source, imagesDir, images: this.images, classes, stats: this.stats, problems: this.problems };
  }
}

/**
 * One summary line: format, images, faces, ignored, clipped and dropped boxes,
 * e.g. `masks/annotations: Pascal VOC XML, 853 images, 4072 faces
 * (classes 'with_mask', 'without_mask'); 0 ignored, 3 clipped to the image, 0 empty dropped`.
 */
export function summaryLine(d: FaceDataset): string {
  const s = d.stats;
  const classes = d.classes.length > 0 ? ` (classes ${d.classes.map((c) => `'${c}'`).join(', ')})` : '';
  const other = s.otherClasses > 0 ? `, ${s.otherClasses} objects of other classes skipped` : '';
  const ign = d.format === 'coco' ? ' (iscrowd)' : d.format === 'voc' ? ' (difficult)' : d.format.startsWith('wider') ? ' (invalid)' : '';
  return `${d.source}: ${FORMAT_NAMES[d.format]}, ${s.images} images, ${s.faces} faces${classes}; ${s.ignored} ignored${ign}, ${s.clipped} clipped to the image, ${s.dropped} empty dropped${other}`;
}

/** The key of an image file: its '/'-separated path without the extension. */
export function fileKey(file: string): string {
  return file
    .replace(/\\/g, '/')
    .replace(/^\.\//, '')
    .replace(/\.[^./]+$/, '');
}

/**
 * The images of `d` named by `entries` (paths relative to the images folder,
 * extension optional), in that order. `source` names the list for errors.
 */
export function selectImages(d: FaceDataset, entries: readonly string[], source: string): FaceDataset {
  const byKey = new Map(d.images.map((im) => [fileKey(im.file), im]));
  const seen = new Set<string>();
  const images = entries.map((e, i) => {
    const key = fileKey(e.trim());
    const im = byKey.get(key);
    if (!im) throw new ExtdError(`${source}: entry ${i + 1} '${e}' is not an image of ${d.source} (${d.images.length} images)`);
    if (seen.has(key)) throw new ExtdError(`${source}: entry ${i + 1} '${e}' is listed twice`);
    seen.add(key);
    return im;
  });
  // otherClasses is not tracked per image: the subset's summary leaves it out.
  const stats = { ...d.stats, images: images.length, faces: 0, ignored: 0, clipped: 0, dropped: 0, otherClasses: 0 };
  for (const im of images) {
    stats.clipped += im.clipped;
    stats.dropped += im.dropped;
    stats.faces += im.ignore.length;
    stats.ignored += im.ignore.reduce((a, v) => a + v, 0);
  }
  return { ...d, images, stats };
}

/** Throw on two images with the same key (their predictions would share a file). */
export function checkUniqueKeys(d: FaceDataset): void {
  const seen = new Map<string, string>();
  for (const im of d.images) {
    const k = fileKey(im.file);
    const prev = seen.get(k);
    if (prev !== undefined)
      throw new ExtdError(`${im.origin}: image '${im.file}' has the same name as '${prev}' (annotated twice, or two files differing only in extension)`);
    seen.set(k, im.file);
  }
}

/**
 * A deterministic split of `d`'s images: shuffle their files (sorted first,
 * so the result does not depend on the reader's order) with Rng.fromSeed(seed)
 * and put round(fraction * n) of them in `val`, the rest in `train`; each
 * list is returned sorted.
 * @throws ExtdError when `fraction` is not strictly between 0 and 1.
 */
export function splitImages(
  d: FaceDataset,
  fraction: number,
  seed: number,
): {
  /** The other images' files (DatasetImage.file), sorted. */
  train: string[];
  /** round(fraction * n) image files, sorted. */
  val: string[];
} {
  if (!(fraction > 0 && fraction < 1)) throw new ExtdError(`split fraction ${fraction}: expected a number between 0 and 1`);
  const files = d.images.map((im) => im.file).sort();
  Rng.fromSeed(seed).shuffle(files);
  const nVal = Math.round(fraction * files.length);
  return { val: files.slice(0, nVal).sort(), train: files.slice(nVal).sort() };
}
