/**
 * Reader for COCO-style detection annotations (one JSON file), as COCO
 * itself, CVAT, Label Studio, Roboflow and most labelling tools export them:
 *
 *     { "images":      [{ "id": 1, "file_name": "a.jpg", "width": 640, "height": 480 }, ...],
 *       "annotations": [{ "id": 7, "image_id": 1, "category_id": 1,
 *                         "bbox": [x, y, w, h], "iscrowd": 0 }, ...],
 *       "categories":  [{ "id": 1, "name": "face" }, ...] }
 *
 * Faces are the annotations of the selected categories (by name; default
 * `face`). `iscrowd: 1` boxes (a region of many faces) are kept as ignored.
 * Every image of `images` is part of the set, with or without faces.
 * `file_name` is relative to the images folder (--images; by default the
 * folder holding the JSON). Strings in, no node: imports.
 */
import { ExtdError } from '../utils/errors.js';
import { DatasetBuilder, describeCategory, isSelected, READ_DEFAULTS, type FaceDataset, type ReadOptions } from './dataset.js';

/** True when `text` looks like COCO JSON (an object with images, annotations and categories arrays) without parsing all of it. */
export function looksLikeCoco(head: string): boolean {
  return /^\s*\{/.test(head) && /"(images|annotations|categories)"\s*:/.test(head);
}

/**
 * Parse COCO JSON. `imagesDir` is recorded in the result (the dispatcher
 * resolves it). Throws ExtdError when the file is not COCO or no category is
 * selected; entry-level problems go to `problems`.
 */
export function parseCoco(text: string, source: string, imagesDir: string, options: Partial<ReadOptions> = {}): FaceDataset {
  const category = options.category ?? READ_DEFAULTS.category;
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ExtdError(`${source}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw new ExtdError(`${source}: expected a JSON object with images, annotations and categories`);
  const o = doc as Record<string, unknown>;
  for (const k of ['images', 'annotations', 'categories']) {
    if (!Array.isArray(o[k]))
      throw new ExtdError(
        `${source}: '${k}' is ${o[k] === undefined ? 'missing' : 'not an array'}; expected COCO JSON with images, annotations and categories`,
      );
  }
  const b = new DatasetBuilder();

  // Categories.
  const catName = new Map<number, string>();
  const counts = new Map<string, number>();
  (o.categories as unknown[]).forEach((c, i) => {
    const r = c as Record<string, unknown>;
    if (typeof r !== 'object' || r === null || typeof r.name !== 'string' || !Number.isFinite(r.id)) {
      b.problem(`${source}: categories[${i}]: expected { id: number, name: string }`);
      return;
    }
    if (catName.has(r.id as number)) b.problem(`${source}: category id ${r.id} is defined twice`);
    catName.set(r.id as number, r.name);
  });
  const selected = new Set([...catName].filter(([, n]) => isSelected(category, n)).map(([id]) => id));
  if (selected.size === 0) {
    for (const a of o.annotations as Array<Record<string, unknown>>) {
      const n = catName.get(a?.category_id as number);
      if (n !== undefined) counts.set(n, (counts.get(n) ?? 0) + 1);
    }
    const have = [...catName.values()].map((n) => `${n} (${counts.get(n) ?? 0})`).join(', ') || 'none';
    throw new ExtdError(
      `${source}: no category named ${describeCategory(category)} (categories: ${have}); choose with --category NAME[,NAME...] or --category all`,
    );
  }

  // Images.
  interface Img {
    file: string;
    width: number;
    height: number;
    boxes: Array<[number, number, number, number]>;
    ignore: boolean[];
    origin: string;
  }
  const images = new Map<unknown, Img>();
  const order: Img[] = [];
  (o.images as unknown[]).forEach((im, i) => {
    const r = im as Record<string, unknown>;
    const where = `${source}: image ${typeof r?.id === 'number' || typeof r?.id === 'string' ? `id ${r.id}` : `images[${i}]`}`;
    if (typeof r !== 'object' || r === null) return b.problem(`${where}: not an object`);
    if (typeof r.id !== 'number' && typeof r.id !== 'string') return b.problem(`${where}: no id`);
    if (typeof r.file_name !== 'string' || r.file_name === '') return b.problem(`${where}: no file_name`);
    if (images.has(r.id)) return b.problem(`${where}: image id given twice`);
    const size = (v: unknown) => (v === undefined || v === null ? 0 : typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : NaN);
    const width = size(r.width),
      height = size(r.height);
    if (Number.isNaN(width) || Number.isNaN(height))
      return b.problem(`${where} (${r.file_name}): width/height ${String(r.width)} x ${String(r.height)} is not a pair of non-negative numbers`);
    const entry: Img = { file: r.file_name.replace(/\\/g, '/'), width, height, boxes: [], ignore: [], origin: `${source}: image id ${r.id}` };
    images.set(r.id, entry);
    order.push(entry);
  });

  // Annotations.
  (o.annotations as unknown[]).forEach((an, i) => {
    const r = an as Record<string, unknown>;
    const where = `${source}: annotation ${typeof r?.id === 'number' || typeof r?.id === 'string' ? `id ${r.id}` : `annotations[${i}]`}`;
    if (typeof r !== 'object' || r === null) return b.problem(`${where}: not an object`);
    if (!catName.has(r.category_id as number)) return b.problem(`${where}: category_id ${String(r.category_id)} is not in categories`);
    if (!selected.has(r.category_id as number)) {
      b.stats.otherClasses++;
      return;
    }
    const img = images.get(r.image_id);
    if (!img) return b.problem(`${where}: image_id ${String(r.image_id)} is not in images`);
    const bb = r.bbox;
    if (!Array.isArray(bb) || bb.length !== 4 || !bb.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      return b.problem(`${where}: bbox ${JSON.stringify(bb)?.slice(0, 60)} is not [x, y, width, height] numbers`);
    }
    const [x, y, w, h] = bb as number[];
    if (w! < 0 || h! < 0) return b.problem(`${where}: bbox [${bb.join(', ')}] has a negative width or height`);
    const crowd = r.iscrowd === 1 || r.iscrowd === true;
    if (r.iscrowd !== undefined && r.iscrowd !== 0 && r.iscrowd !== false && !crowd)
      return b.problem(`${where}: iscrowd ${JSON.stringify(r.iscrowd)}, expected 0 or 1`);
    img.boxes.push([x!, y!, x! + w!, y! + h!]);
    img.ignore.push(crowd);
  });

  for (const im of order) b.addImage(im.file, im.width, im.height, im.boxes, im.ignore, im.origin);
  const classes = [...catName].filter(([id]) => selected.has(id)).map(([, n]) => n);
  return b.build('coco', source, imagesDir, classes);
}
