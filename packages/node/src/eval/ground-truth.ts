/**
 * The official WIDER FACE validation ground truth from the evaluation kit's
 * `ground_truth/` folder: `wider_face_val.mat` (event_list, file_list,
 * face_bbx_list) and `wider_{easy,medium,hard}_val.mat` (gt_list: 1-based
 * indices of the faces that count in each setting; the other faces of the
 * image are only ignored). Node-only (reads files).
 *
 * A WIDER annotation file (`*_bbx_gt.txt`, e.g. the training split's, or
 * your own set in that format) can stand in for the kit: see
 * groundTruthFromAnnotations.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { readWiderAnnotations, type WiderImageAnnotation } from '../data/wider-annotations-node.js';
import { ExtdError } from '@extd/core/utils/errors';
import { WIDER_SETTINGS, type GroundTruthImage, type WiderSetting } from '@extd/core/eval/evaluator';
import { isMat5, parseMat5, type MatValue } from '@extd/core/eval/mat5';
import { parseWiderMat } from '@extd/core/data/wider-mat';
import { imageKey } from '@extd/core/eval/predictions';

export interface WiderGroundTruth {
  /** All images of the .mat files (event, then file) or of the annotation file, in their order. */
  images: GroundTruthImage[];
  byKey: Map<string, GroundTruthImage>;
  /** What was read: the kit's folder or an annotation file. */
  source: 'kit' | 'annotations';
  /** The folder or file it was read from, for messages ('' when built in memory). */
  path: string;
}

/**
 * `path` is the kit's ground_truth folder or its wider_face_val.mat (the
 * official validation ground truth), or WIDER annotations: a `*_bbx_gt.txt`
 * file or a `wider_face_{train,val}.mat` (groundTruthFromAnnotations).
 */
export function loadGroundTruth(path: string): WiderGroundTruth {
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch (err) {
    throw new ExtdError(
      `cannot read ground truth ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)} (expected the kit's eval_tools/ground_truth folder or a *_bbx_gt.txt file)`,
    );
  }
  if (!isFile) return loadWiderGroundTruth(path);
  const bytes = readFileSync(path);
  if (isMat5(bytes)) {
    // The kit's wider_face_val.mat beside its setting files: the official ground truth; any other .mat: annotations.
    const dir = dirname(path);
    const kit = basename(path) === 'wider_face_val.mat' && WIDER_SETTINGS.every((s) => existsSync(join(dir, `wider_${s}_val.mat`)));
    return kit ? loadWiderGroundTruth(dir) : groundTruthFromAnnotations(parseWiderMat(bytes, path), path);
  }
  return groundTruthFromAnnotations(readWiderAnnotations(path), path);
}

/**
 * Ground truth from annotations in the WIDER text format. The text format has
 * no easy/medium/hard split (the kit's .mat files define it for the
 * validation set only), so every valid face (w, h > 0, not marked invalid)
 * counts in all three settings and the three APs are equal; invalid and
 * empty boxes are kept as ignored faces (a detection on them is neither a
 * hit nor a false positive), as the kit treats faces outside a setting.
 */
export function groundTruthFromAnnotations(annotations: readonly WiderImageAnnotation[], path = ''): WiderGroundTruth {
  const seen = new Set<string>();
  const images: GroundTruthImage[] = annotations.map((a) => {
    const key = imageKey(a.path);
    if (seen.has(key)) throw new ExtdError(`${path || 'annotations'}: image '${a.path}' is annotated twice`);
    seen.add(key);
    const n = a.faces.length;
    const boxes = new Float64Array(4 * n);
    const valid = new Uint8Array(n);
    a.faces.forEach((f, i) => {
      boxes.set([f.x, f.y, f.w, f.h], 4 * i);
      valid[i] = f.w > 0 && f.h > 0 && f.invalid === 0 ? 1 : 0;
    });
    return { key, boxes, inSetting: { easy: valid, medium: valid, hard: valid } };
  });
  return { images, byKey: new Map(images.map((im) => [im.key, im])), source: 'annotations', path };
}

/** Load the four .mat files from `dir` (the kit's `eval_tools/ground_truth`). */
export function loadWiderGroundTruth(dir: string): WiderGroundTruth {
  const main = readMat(join(dir, 'wider_face_val.mat'));
  const src = join(dir, 'wider_face_val.mat');
  const events = cellOf(main, 'event_list', src);
  const files = cellOf(main, 'file_list', src);
  const boxes = cellOf(main, 'face_bbx_list', src);
  if (files.length !== events.length || boxes.length !== events.length) {
    throw new ExtdError(`${src}: event_list has ${events.length} entries, file_list ${files.length}, face_bbx_list ${boxes.length}; expected equal`);
  }
  const images: GroundTruthImage[] = [];
  for (let e = 0; e < events.length; e++) {
    const ev = charOf(events[e]!, `${src}: event_list{${e + 1}}`);
    const names = asCell(files[e]!, `${src}: file_list{${e + 1}}`);
    const bbs = asCell(boxes[e]!, `${src}: face_bbx_list{${e + 1}}`);
    if (bbs.length !== names.length) {
      throw new ExtdError(`${src}: event ${ev}: ${names.length} files but ${bbs.length} box lists`);
    }
    for (let f = 0; f < names.length; f++) {
      const name = charOf(names[f]!, `${src}: file_list{${e + 1}}{${f + 1}}`);
      images.push({
        key: `${ev}/${name}`,
        boxes: boxesXywh(bbs[f]!, `${src}: face_bbx_list{${e + 1}}{${f + 1}}`),
        inSetting: { easy: new Uint8Array(0), medium: new Uint8Array(0), hard: new Uint8Array(0) },
      });
    }
  }
  for (const s of WIDER_SETTINGS) applySetting(images, dir, s);
  const byKey = new Map(images.map((im) => [im.key, im]));
  return { images, byKey, source: 'kit', path: dir };
}

/**
 * The ground truth of exactly `keys` (`EVENT/NAME`, extension optional), in
 * that order. `source` names where the keys came from (a --list file or a
 * folder) for the error on an unknown image.
 */
export function restrictGroundTruth(gt: WiderGroundTruth, keys: readonly string[], source: string): GroundTruthImage[] {
  return keys.map((k, i) => {
    const im = gt.byKey.get(imageKey(k));
    if (!im) {
      const what = gt.source === 'kit' ? 'the WIDER FACE validation ground truth' : 'the ground-truth annotation file';
      throw new ExtdError(`${source}: image ${i + 1} '${k}' is not in ${what} ${gt.path} (${gt.images.length} images)`);
    }
    return im;
  });
}

function applySetting(images: GroundTruthImage[], dir: string, setting: WiderSetting): void {
  const src = join(dir, `wider_${setting}_val.mat`);
  const m = readMat(src);
  const lists = cellOf(m, 'gt_list', src);
  let i = 0;
  for (let e = 0; e < lists.length; e++) {
    const perImage = asCell(lists[e]!, `${src}: gt_list{${e + 1}}`);
    for (let f = 0; f < perImage.length; f++, i++) {
      const im = images[i];
      const where = `${src}: gt_list{${e + 1}}{${f + 1}}`;
      if (!im) throw new ExtdError(`${where}: more images than wider_face_val.mat has (${images.length})`);
      const n = im.boxes.length / 4;
      const mask = new Uint8Array(n);
      const v = perImage[f]!;
      if (v.kind !== 'numeric') throw new ExtdError(`${where}: a ${v.kind} array, expected numeric indices`);
      for (const idx of v.data) {
        if (!Number.isInteger(idx) || idx < 1 || idx > n) throw new ExtdError(`${where}: face index ${idx}, allowed 1..${n}`);
        mask[idx - 1] = 1;
      }
      im.inSetting[setting] = mask;
    }
  }
  if (i !== images.length) throw new ExtdError(`${src}: gt_list covers ${i} images, wider_face_val.mat has ${images.length}`);
}

function readMat(path: string): Map<string, MatValue> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new ExtdError(
      `cannot read WIDER ground truth ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)} (--gt must be the kit's eval_tools/ground_truth folder)`,
    );
  }
  return parseMat5(bytes, path);
}

function cellOf(m: Map<string, MatValue>, name: string, src: string): MatValue[] {
  const v = m.get(name);
  if (!v) throw new ExtdError(`${src}: no variable '${name}' (has: ${[...m.keys()].join(', ')})`);
  return asCell(v, `${src}: ${name}`);
}

function asCell(v: MatValue, where: string): MatValue[] {
  if (v.kind !== 'cell') throw new ExtdError(`${where}: a ${v.kind} array, expected a cell array`);
  return v.cells;
}

function charOf(v: MatValue, where: string): string {
  if (v.kind !== 'char') throw new ExtdError(`${where}: a ${v.kind} array, expected a char array`);
  return v.value;
}

/** MATLAB's n x 4 column-major matrix to row-major x y w h. */
function boxesXywh(v: MatValue, where: string): Float64Array {
  if (v.kind !== 'numeric') throw new ExtdError(`${where}: a ${v.kind} array, expected an n x 4 numeric matrix`);
  const n = v.dims[0] ?? 0;
  if (v.data.length === 0) return new Float64Array(0);
  if (v.dims.length !== 2 || v.dims[1] !== 4) throw new ExtdError(`${where}: dimensions ${v.dims.join('x')}, expected n x 4`);
  const out = new Float64Array(n * 4);
  for (let i = 0; i < n; i++) for (let c = 0; c < 4; c++) out[i * 4 + c] = v.data[i + n * c]!;
  return out;
}
