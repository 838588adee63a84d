/**
 * One entry point for annotated face sets in any supported format,
 * recognised by content (not by file name):
 *
 * | given                                   | recognised as                   |
 * |-----------------------------------------|---------------------------------|
 * | file starting `MATLAB 5.0 MAT-file`     | WIDER .mat (wider_face_*.mat)   |
 * | file starting `{` with images/annotations/categories | COCO JSON          |
 * | file with a top-level `names:` key      | YOLO data.yaml                  |
 * | file starting `<`, or a folder of *.xml (or with Annotations/) | Pascal VOC |
 * | folder with data.yaml (or data.yml)     | YOLO dataset                    |
 * | folder with wider_face_val.mat          | WIDER evaluation kit ground truth |
 * | text whose first line is an image path  | WIDER text (*_bbx_gt.txt)       |
 *
 * Where images live: WIDER formats need `images` (--images); COCO takes
 * `images` or else the JSON's folder; VOC takes `images` or else the folder
 * its `<folder>` names beside the annotations folder (then `JPEGImages/`,
 * `images/`, the annotations folder itself); YOLO's data.yaml says.
 * Node only.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { ExtdError } from '@extd/core/utils/errors';
import { parseCoco, looksLikeCoco } from '@extd/core/data/coco';
import {
  DatasetBuilder,
  describeCategory,
  isSelected,
  READ_DEFAULTS,
  selectImages,
  summaryLine,
  checkUniqueKeys,
  type AnnotationFormat,
  type FaceDataset,
  type ReadOptions,
} from '@extd/core/data/dataset';
import { parseWiderAnnotations, type WiderImageAnnotation } from '@extd/core/data/wider-annotations';
import { parseWiderMat } from '@extd/core/data/wider-mat';
import { parseVocXml, type VocAnnotation } from '@extd/core/data/voc';
import { looksLikeYoloYaml, readImageSize, readYoloDataset, type YoloSplit } from './yolo.js';

/** Options of readFaceDataset; defaults in DATASET_DEFAULTS (category ['face'], split 'train', checkImages true). */
export interface DatasetOptions extends ReadOptions {
  /** Images folder (--images); required for WIDER formats, optional for COCO and VOC, refused for YOLO. */
  images: string | undefined;
  /** YOLO: which split of data.yaml (default 'train'). */
  split: YoloSplit;
  /** Only these images: a list file, one image path (relative to the images folder, extension optional) per line. */
  list: string | undefined;
  /** Check that every image file exists (default true). */
  checkImages: boolean;
  /** Called with each problem line before the reader throws (e.g. console.error). */
  onProblem: ((line: string) => void) | undefined;
}

export const DATASET_DEFAULTS: Readonly<DatasetOptions> = Object.freeze({
  ...READ_DEFAULTS,
  images: undefined,
  split: 'train',
  list: undefined,
  checkImages: true,
  onProblem: undefined,
});

/**
 * The recognised format of `path` and the file to read (for folders: the file or folder that holds the annotations).
 * Recognition is by content (and, for folders, by the files in them), not by extension.
 * @throws ExtdError when `path` does not exist or its format is not recognised.
 */
export function detectAnnotationFormat(path: string): {
  /** The format recognised. */
  format: AnnotationFormat;
  /** The file (or, for VOC, the folder of .xml files) to read. */
  path: string;
  /** WIDER .mat only: true for the evaluation kit's wider_face_val.mat with its easy/medium/hard files beside it. */
  kit?: boolean;
} {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw new ExtdError(`annotations not found: ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (st.isDirectory()) {
    for (const y of ['data.yaml', 'data.yml']) if (existsSync(join(path, y))) return { format: 'yolo', path: join(path, y) };
    if (existsSync(join(path, 'wider_face_val.mat'))) return { format: 'wider-mat', path: join(path, 'wider_face_val.mat'), kit: true };
    if (xmlFiles(path).length > 0) return { format: 'voc', path };
    const ann = join(path, 'Annotations');
    if (existsSync(ann) && statSync(ann).isDirectory() && xmlFiles(ann).length > 0) return { format: 'voc', path: ann };
    throw new ExtdError(
      `${path}: no annotations recognised in this folder (expected Pascal VOC .xml files, a YOLO dataset with data.yaml, or the WIDER kit's ground_truth folder)`,
    );
  }
  const head = readHead(path);
  if (head.startsWith('MATLAB 5.0 MAT-file')) {
    const kit = basename(path) === 'wider_face_val.mat' && ['easy', 'medium', 'hard'].every((s) => existsSync(join(dirname(path), `wider_${s}_val.mat`)));
    return { format: 'wider-mat', path, kit };
  }
  if (head.startsWith('MATLAB 7.3 MAT-file'))
    throw new ExtdError(`${path}: a MATLAB v7.3 (HDF5) file; WIDER annotations are read from the v5 .mat files (wider_face_train.mat, wider_face_val.mat)`);
  const text = head.replace(/^\ufeff/, '');
  if (/^\s*\{/.test(text)) {
    if (looksLikeCoco(text)) return { format: 'coco', path };
    throw new ExtdError(`${path}: JSON, but not COCO (expected an object with images, annotations and categories near the start)`);
  }
  if (/^\s*</.test(text)) return { format: 'voc', path };
  if (looksLikeYoloYaml(text)) return { format: 'yolo', path };
  const first =
    text
      .split(/\r?\n/)
      .find((l) => l.trim() !== '')
      ?.trim() ?? '';
  if (/^\S+\.(jpe?g|png)$/i.test(first)) return { format: 'wider-text', path };
  throw new ExtdError(
    `${path}: annotation format not recognised (first line '${first.slice(0, 50)}'); expected WIDER text or .mat, COCO JSON, a Pascal VOC folder of .xml, or a YOLO data.yaml`,
  );
}

/**
 * Read an annotated face set in any supported format (see the module
 * comment). Entry-level problems are passed to `onProblem` one line each (when
 * there are several) and then thrown as one ExtdError; nothing is returned
 * from a set with problems. With `list`, only the listed images are kept.
 * @throws ExtdError for an unrecognised format, entry-level problems, duplicate image names,
 * a missing --images folder (WIDER) and, with `checkImages`, missing image files.
 */
export async function readFaceDataset(path: string, options: Partial<DatasetOptions> = {}): Promise<FaceDataset> {
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const o: DatasetOptions = { ...DATASET_DEFAULTS, ...given };
  const found = detectAnnotationFormat(path);
  if (o.images !== undefined && found.format === 'yolo') {
    throw new ExtdError(`--images ${o.images}: a YOLO dataset names its image folders in ${found.path}; drop --images`);
  }
  let d: FaceDataset;
  switch (found.format) {
    case 'wider-text':
    case 'wider-mat': {
      if (o.images === undefined)
        throw new ExtdError(`${path}: WIDER annotations name images relative to a folder; pass --images DIR (e.g. WIDER_train/images)`);
      const annotations =
        found.format === 'wider-text' ? parseWiderAnnotations(readText(found.path), found.path) : parseWiderMat(readBytes(found.path), found.path);
      d = fromWider(annotations, found.format, path, o.images);
      if (found.kit) d.widerKitDir = dirname(found.path);
      break;
    }
    case 'coco':
      d = parseCoco(readText(found.path), path, o.images ?? dirname(resolve(found.path)), o);
      break;
    case 'voc':
      d = await readVoc(found.path, path, o);
      break;
    case 'yolo':
      d = await readYoloDataset(found.path, o.split, o);
      break;
  }
  if (d.problems.length > 0) {
    const n = d.problems.length;
    if (n > 1) for (const p of d.problems) o.onProblem?.(p);
    const more = n > 1 ? ` (and ${n - 1} more problem${n > 2 ? 's' : ''} in ${path}${o.onProblem ? ', listed above' : ''})` : '';
    throw new ExtdError(`${d.problems[0]}${more}`);
  }
  checkUniqueKeys(d);
  if (d.widerKitDir && o.list === undefined && o.checkImages) {
    // The kit covers all 3,226 validation images: evaluate the ones the images folder has.
    const present = d.images.filter((im) => existsSync(join(d.imagesDir, im.file))).map((im) => im.file);
    if (present.length === 0) throw new ExtdError(`${d.imagesDir}: none of the ${d.images.length} images of ${path} is there (expected WIDER_val/images)`);
    d = selectImages(d, present, d.imagesDir);
  }
  if (o.list !== undefined) d = selectImages(d, readListFile(o.list), o.list);
  if (o.checkImages) checkImagesExist(d);
  return d;
}

/** WIDER annotations as a FaceDataset: boxes x, y, x + w, y + h; empty ones dropped; `invalid` marks ignore. */
export function fromWider(annotations: readonly WiderImageAnnotation[], format: AnnotationFormat, source: string, imagesDir: string): FaceDataset {
  const b = new DatasetBuilder();
  for (const a of annotations) {
    b.addImage(
      a.path,
      0,
      0,
      a.faces.map((f) => [f.x, f.y, f.x + f.w, f.y + f.h] as const),
      a.faces.map((f) => f.invalid !== 0),
      source,
    );
  }
  const d = b.build(format, source, imagesDir, []);
  d.wider = [...annotations];
  return d;
}

/** Image list file: one path per line (relative to the images folder, extension optional); blank lines and # comments skipped. */
export function readListFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ExtdError(`cannot read image list ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const out = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (out.length === 0) throw new ExtdError(`${path}: the image list is empty`);
  return out;
}

/** Print-ready summary line (re-exported for the CLI). */
export { summaryLine };

/** Throw naming the first missing image and how many are missing. */
export function checkImagesExist(d: FaceDataset): void {
  if (!existsSync(d.imagesDir) || !statSync(d.imagesDir).isDirectory()) throw new ExtdError(`images folder not found: ${d.imagesDir} (for ${d.source})`);
  const missing = d.images.filter((im) => !existsSync(join(d.imagesDir, im.file)));
  if (missing.length > 0) {
    throw new ExtdError(
      `${missing.length} of ${d.images.length} images of ${d.source} are missing from ${d.imagesDir}, first: ${missing[0]!.file} (annotated in ${missing[0]!.origin})`,
    );
  }
}

/** One training image: its file and its face boxes (n x 4, xyxy, source pixels). Same as the loader's TrainSample. */
export interface FaceSample {
  path: string;
  boxes: Float32Array;
}

/**
 * Training samples of a dataset: the boxes to learn (all of them for WIDER,
 * as its recipe does; the non-ignored ones for the other formats) and only
 * images that have at least one.
 */
export function trainingSamples(d: FaceDataset): FaceSample[] {
  const keepIgnored = d.format === 'wider-text' || d.format === 'wider-mat';
  const out: FaceSample[] = [];
  for (const im of d.images) {
    const coords: number[] = [];
    for (let i = 0; i < im.ignore.length; i++) {
      if (im.ignore[i] && !keepIgnored) continue;
      coords.push(im.boxes[4 * i]!, im.boxes[4 * i + 1]!, im.boxes[4 * i + 2]!, im.boxes[4 * i + 3]!);
    }
    if (coords.length > 0) out.push({ path: join(d.imagesDir, im.file), boxes: new Float32Array(coords) });
  }
  return out;
}

// ---------------------------------------------------------------------------

async function readVoc(annPath: string, source: string, o: DatasetOptions): Promise<FaceDataset> {
  const isDir = statSync(annPath).isDirectory();
  const files = isDir ? xmlFiles(annPath).map((f) => join(annPath, f)) : [annPath];
  const annDir = isDir ? annPath : dirname(annPath);
  const b = new DatasetBuilder();
  const parsed: Array<{ file: string; a: VocAnnotation }> = [];
  for (const f of files) {
    try {
      parsed.push({ file: f, a: parseVocXml(readText(f), f, (p) => b.problem(p)) });
    } catch (err) {
      if (!(err instanceof ExtdError)) throw err;
      b.problem(err.message);
    }
  }
  const names = new Map<string, number>();
  for (const { a } of parsed) for (const ob of a.objects) names.set(ob.name, (names.get(ob.name) ?? 0) + 1);
  const classes = [...names.keys()].filter((n) => isSelected(o.category, n)).sort();
  if (classes.length === 0 && b.problems.length === 0) {
    const have =
      [...names]
        .sort((x, y) => y[1] - x[1])
        .map(([n, c]) => `${n} (${c})`)
        .join(', ') || 'none';
    throw new ExtdError(
      `${source}: no object named ${describeCategory(o.category)} in ${parsed.length} files (names: ${have}); choose with --category NAME[,NAME...] or --category all`,
    );
  }
  let imagesDir = o.images;
  if (imagesDir === undefined && parsed.length > 0) {
    const first = parsed[0]!.a;
    const candidates = [
      ...new Set(
        [first.folder ? resolve(annDir, '..', first.folder) : '', resolve(annDir, '..', 'JPEGImages'), resolve(annDir, '..', 'images'), resolve(annDir)].filter(
          (c) => c !== '',
        ),
      ),
    ];
    imagesDir = candidates.find((c) => imageFile(c, first.filename) !== undefined);
    if (imagesDir === undefined) {
      throw new ExtdError(`${parsed[0]!.file}: image '${first.filename}' not found in ${candidates.join(', ')}; pass --images DIR`);
    }
  }
  imagesDir ??= annDir;
  const seen = new Map<string, string>();
  for (const { file, a } of parsed) {
    const rel = imageFile(imagesDir, a.filename) ?? a.filename;
    const prev = seen.get(rel);
    if (prev !== undefined) {
      b.problem(`${file}: annotates '${rel}', which ${prev} annotates too`);
      continue;
    }
    seen.set(rel, file);
    let { width, height } = a;
    if ((width === 0 || height === 0) && existsSync(join(imagesDir, rel))) ({ width, height } = await readImageSize(join(imagesDir, rel)));
    const faces = a.objects.filter((ob) => isSelected(o.category, ob.name));
    b.stats.otherClasses += a.objects.length - faces.length;
    b.addImage(
      rel,
      width,
      height,
      faces.map((f) => f.box),
      faces.map((f) => f.difficult),
      file,
    );
  }
  return b.build('voc', source, imagesDir, classes);
}

/** `filename` as found in `dir`: as written, or with an image extension added when it has none. */
function imageFile(dir: string, filename: string): string | undefined {
  const name = filename.replace(/\\/g, '/');
  if (existsSync(join(dir, name)) && statSync(join(dir, name)).isFile()) return name;
  if (extname(name) === '') {
    for (const ext of ['.jpg', '.jpeg', '.png', '.JPG', '.PNG']) if (existsSync(join(dir, name + ext))) return name + ext;
  }
  return undefined;
}

function xmlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.toLowerCase().endsWith('.xml'))
    .map((e) => e.name)
    .sort();
}

function readHead(path: string): string {
  const buf = Buffer.alloc(4096);
  let n = 0;
  try {
    const fd = openSync(path, 'r');
    try {
      n = readSync(fd, buf, 0, buf.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new ExtdError(`cannot read annotations ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return buf.subarray(0, n).toString('utf8');
}

function readBytes(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ExtdError(`cannot read annotations ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function readText(path: string): string {
  return Buffer.from(readBytes(path)).toString('utf8');
}
