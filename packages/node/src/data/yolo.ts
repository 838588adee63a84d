/**
 * Reader for YOLO datasets (the Ultralytics / Darknet layout most tools
 * export): a `data.yaml`
 *
 *     path: .                  # dataset root (optional; default: the yaml's folder)
 *     train: images/train      # folder of images, a .txt list of images, or a list of either
 *     val: images/val
 *     names: [face, mask]      # class names (or a list / `index: name` block)
 *
 * and one label file per image, found by replacing the last `/images/` of the
 * image's path with `/labels/` and its extension with `.txt` (beside the
 * image when the path has no `images` folder). A label line is
 * `class cx cy w h`, normalised 0..1 by the image's width and height (a
 * segmentation polygon `class x1 y1 x2 y2 ...` counts as its bounding box).
 * An image without a label file has no faces. Faces are the classes picked by
 * name (default `face`). Image sizes come from the image headers (EXIF
 * orientation applied, as the images are decoded for training).
 *
 * Relative split paths resolve against the root; a Roboflow-style `../train/images`
 * that does not exist there is also tried without the leading `../`.
 * Node only.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import sharp from 'sharp';
import { ExtdError } from '@extd/core/utils/errors';
import { DatasetBuilder, describeCategory, isSelected, READ_DEFAULTS, type FaceDataset, type ReadOptions } from '@extd/core/data/dataset';
import { parseDataYaml, type YamlValue } from '@extd/core/data/yaml';

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff']);

/** The splits a data.yaml names. */
export const YOLO_SPLITS = ['train', 'val', 'test'] as const;
export type YoloSplit = (typeof YOLO_SPLITS)[number];

/** True when a YAML text has a top-level `names:` key (what marks a YOLO data file). */
export function looksLikeYoloYaml(text: string): boolean {
  return /^names\s*:/m.test(text);
}

/** The class names of a data.yaml's `names` (list, or map of index to name). */
export function yoloNames(v: YamlValue | undefined, source: string): string[] {
  if (Array.isArray(v)) return v;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v);
    const names: string[] = [];
    for (const [k, n] of entries) {
      const i = Number(k);
      if (!Number.isInteger(i) || i < 0 || i >= entries.length) throw new ExtdError(`${source}: names: key '${k}' is not an index 0..${entries.length - 1}`);
      names[i] = n;
    }
    return names;
  }
  throw new ExtdError(`${source}: 'names' must list the class names (names: [face] or one '- name' / 'N: name' per line)`);
}

/**
 * Read the `split` part of the YOLO dataset described by `yamlPath`. Throws
 * ExtdError on an unreadable yaml, a missing split, or no selected class;
 * label-level problems go to `problems`.
 */
export async function readYoloDataset(yamlPath: string, split: YoloSplit, options: Partial<ReadOptions> = {}): Promise<FaceDataset> {
  const category = options.category ?? READ_DEFAULTS.category;
  let text: string;
  try {
    text = readFileSync(yamlPath, 'utf8');
  } catch (err) {
    throw new ExtdError(`cannot read YOLO data file ${yamlPath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const y = parseDataYaml(text, yamlPath);
  const names = yoloNames(y.get('names') ?? undefined, yamlPath);
  const nc = y.get('nc');
  if (typeof nc === 'string' && Number(nc) !== names.length) throw new ExtdError(`${yamlPath}: nc is ${nc} but names lists ${names.length} classes`);
  const selected = new Set(names.map((n, i) => (isSelected(category, n) ? i : -1)).filter((i) => i >= 0));
  if (selected.size === 0)
    throw new ExtdError(
      `${yamlPath}: no class named ${describeCategory(category)} (names: ${names.join(', ') || 'none'}); choose with --category NAME[,NAME...] or --category all`,
    );

  const yamlDir = dirname(resolve(yamlPath));
  const rootEntry = y.get('path');
  const root = typeof rootEntry === 'string' && rootEntry !== '' ? resolve(yamlDir, rootEntry) : yamlDir;
  const entry = y.get(split);
  if (entry === undefined || entry === null || (typeof entry === 'object' && !Array.isArray(entry))) {
    const have = YOLO_SPLITS.filter((s) => typeof y.get(s) === 'string' || Array.isArray(y.get(s)));
    throw new ExtdError(`${yamlPath}: no '${split}' split (it names: ${have.join(', ') || 'none'})`);
  }
  const entries = Array.isArray(entry) ? entry : [entry];
  const files: string[] = [];
  const dirs: string[] = [];
  for (const e of entries) {
    const p = locate(root, e);
    if (!p) throw new ExtdError(`${yamlPath}: ${split} '${e}' not found (looked in ${resolve(root, e)})`);
    if (statSync(p).isDirectory()) {
      dirs.push(p);
      files.push(...listImagesRecursive(p));
    } else {
      files.push(...readListFile(p, root));
    }
  }
  if (files.length === 0) throw new ExtdError(`${yamlPath}: the ${split} split has no images`);
  const imagesDir = dirs.length === 1 && entries.length === 1 ? dirs[0]! : root;

  const b = new DatasetBuilder();
  for (const img of files) {
    const rel = relative(imagesDir, img).split(sep).join('/');
    if (rel.startsWith('../')) throw new ExtdError(`${yamlPath}: image ${img} is outside the dataset root ${imagesDir}`);
    const { width, height } = await readImageSize(img);
    const labelPath = labelFileOf(img);
    const boxes: Array<[number, number, number, number]> = [];
    if (existsSync(labelPath)) {
      const lines = readFileSync(labelPath, 'utf8').split(/\r?\n/);
      lines.forEach((raw, i) => {
        const line = raw.trim();
        if (line === '' || line.startsWith('#')) return;
        const where = `${labelPath}:${i + 1}`;
        const f = line.split(/\s+/).map(Number);
        if (f.some((v) => !Number.isFinite(v))) return b.problem(`${where}: '${line.slice(0, 60)}' has a field that is not a number`);
        const cls = f[0]!;
        if (!Number.isInteger(cls) || cls < 0 || cls >= names.length)
          return b.problem(`${where}: class ${cls} is not an index 0..${names.length - 1} of names`);
        let box: [number, number, number, number];
        if (f.length === 5) {
          const [, cx, cy, w, h] = f as [number, number, number, number, number];
          if (w < 0 || h < 0) return b.problem(`${where}: negative width or height`);
          box = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height];
        } else if (f.length >= 7 && f.length % 2 === 1) {
          const xs = f.filter((_, k) => k > 0 && k % 2 === 1),
            ys = f.filter((_, k) => k > 0 && k % 2 === 0);
          box = [Math.min(...xs) * width, Math.min(...ys) * height, Math.max(...xs) * width, Math.max(...ys) * height];
        } else {
          return b.problem(`${where}: ${f.length} fields, expected 5 (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 ...)`);
        }
        if (!selected.has(cls)) {
          b.stats.otherClasses++;
          return;
        }
        boxes.push(box);
      });
    }
    b.addImage(
      rel,
      width,
      height,
      boxes,
      boxes.map(() => false),
      existsSync(labelPath) ? labelPath : img,
    );
  }
  return b.build(
    'yolo',
    yamlPath,
    imagesDir,
    names.filter((_, i) => selected.has(i)),
  );
}

function locate(root: string, entry: string): string | undefined {
  const p = isAbsolute(entry) ? entry : resolve(root, entry);
  if (existsSync(p)) return p;
  const stripped = entry.replace(/^(\.\.[/\\])+/, '');
  if (stripped !== entry) {
    const q = resolve(root, stripped);
    if (existsSync(q)) return q;
  }
  return undefined;
}

function listImagesRecursive(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (IMAGE_EXT.has(extname(e.name).toLowerCase())) out.push(p);
    }
  };
  walk(dir);
  return out;
}

function readListFile(path: string, root: string): string[] {
  const out: string[] = [];
  readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const candidates = isAbsolute(line) ? [line] : [resolve(dirname(path), line), resolve(root, line)];
      const p = candidates.find((c) => existsSync(c));
      if (!p) throw new ExtdError(`${path}:${i + 1}: image '${line}' not found`);
      out.push(p);
    });
  return out;
}

/** The label file of an image: last /images/ -> /labels/, extension -> .txt. */
export function labelFileOf(imagePath: string): string {
  const norm = imagePath.split(sep).join('/');
  const k = norm.lastIndexOf('/images/');
  const swapped = k >= 0 ? `${norm.slice(0, k)}/labels/${norm.slice(k + 8)}` : norm;
  return swapped
    .replace(/\.[^./]+$/, '.txt')
    .split('/')
    .join(sep);
}

/** Width and height of an image file from its header, EXIF orientation applied. */
export async function readImageSize(path: string): Promise<{ width: number; height: number }> {
  try {
    const m = await sharp(path).metadata();
    if (!m.width || !m.height) throw new Error('no size in the header');
    return (m.orientation ?? 1) >= 5 ? { width: m.height, height: m.width } : { width: m.width, height: m.height };
  } catch (err) {
    throw new ExtdError(`cannot read the size of image ${path}: ${(err as Error).message.split('\n')[0]}`);
  }
}
