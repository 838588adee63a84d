/**
 * WIDER FACE annotations from the official MATLAB files
 * (`wider_face_split/wider_face_{train,val}.mat`), and the guard that keeps
 * validation images out of a training set.
 *
 * Layout of those files (MATLAB v5, checked on the official train and val
 * files): every variable is a 61 x 1 cell, one entry per event.
 * - `event_list{e}`: the event's folder name, e.g. `0--Parade`;
 * - `file_list{e}`: an n_e x 1 cell of image names without `.jpg`;
 * - `face_bbx_list{e}{i}`: an N x 4 int32 matrix of x, y, w, h (pixels,
 *   column-major); an image without faces has one row of zeros (the .txt
 *   files write N = 0 and a placeholder line for it);
 * - `blur_label_list`, `expression_label_list`, `illumination_label_list`,
 *   `invalid_label_list`, `occlusion_label_list`, `pose_label_list`: cells of
 *   the same shape holding N x 1 uint8 labels, the six attribute columns of
 *   the `*_bbx_gt.txt` files.
 *
 * Works on parsed MatFile values only (no node: imports).
 */
import { parseMat5, type MatFile, type MatValue } from '../eval/mat5.js';
import { ExtdError } from '../utils/errors.js';
import type { WiderFace, WiderImageAnnotation } from './wider-annotations.js';

/** The six per-face attribute variables, in the `*_bbx_gt.txt` column order. */
export const WIDER_MAT_LABELS = Object.freeze([
  ['blur', 'blur_label_list'],
  ['expression', 'expression_label_list'],
  ['illumination', 'illumination_label_list'],
  ['invalid', 'invalid_label_list'],
  ['occlusion', 'occlusion_label_list'],
  ['pose', 'pose_label_list'],
] as const);

function cellOf(v: MatValue | undefined, what: string, source: string) {
  if (!v || v.kind !== 'cell') throw new ExtdError(`${source}: ${what} is ${v ? `a ${v.kind}` : 'missing'}, expected a cell array (a WIDER FACE .mat file)`);
  return v.cells;
}

function charOf(v: MatValue | undefined, what: string, source: string): string {
  if (!v || v.kind !== 'char') throw new ExtdError(`${source}: ${what} is ${v ? `a ${v.kind}` : 'missing'}, expected a string`);
  return v.value;
}

/**
 * Image names (without `.jpg`, e.g. `0_Parade_marchingband_1_465`) listed in
 * `file_list` of a WIDER .mat file (the val ground truth lists all 3,226
 * validation images). Throws ExtdError when the file has no such list.
 */
export function widerMatImageNames(mat: MatFile, source: string): Set<string> {
  const names = new Set<string>();
  for (const [e, files] of cellOf(mat.get('file_list'), 'file_list', source).entries()) {
    for (const [i, f] of cellOf(files, `file_list{${e + 1}}`, source).entries()) names.add(charOf(f, `file_list{${e + 1}}{${i + 1}}`, source));
  }
  return names;
}

/**
 * Every image of a WIDER .mat file as an annotation record (path
 * `EVENT/NAME.jpg`, faces with their six attributes), in the file's order:
 * what the official `*_bbx_gt.txt` holds. A label list that is missing gives
 * 0 for that attribute. Throws ExtdError naming the variable and image when
 * the lists disagree in shape.
 */
export function widerMatAnnotations(mat: MatFile, source: string): WiderImageAnnotation[] {
  const events = cellOf(mat.get('event_list'), 'event_list', source);
  const files = cellOf(mat.get('file_list'), 'file_list', source);
  const boxes = cellOf(mat.get('face_bbx_list'), 'face_bbx_list', source);
  if (files.length !== events.length || boxes.length !== events.length) {
    throw new ExtdError(`${source}: event_list has ${events.length} events, file_list ${files.length}, face_bbx_list ${boxes.length}`);
  }
  const labels = WIDER_MAT_LABELS.map(([field, name]) => {
    const v = mat.get(name);
    return { field, name, cells: v === undefined ? null : cellOf(v, name, source) };
  });
  const out: WiderImageAnnotation[] = [];
  for (let e = 0; e < events.length; e++) {
    const event = charOf(events[e], `event_list{${e + 1}}`, source);
    const names = cellOf(files[e], `file_list{${e + 1}}`, source);
    const eventBoxes = cellOf(boxes[e], `face_bbx_list{${e + 1}}`, source);
    if (eventBoxes.length !== names.length) {
      throw new ExtdError(`${source}: event ${event} lists ${names.length} files but ${eventBoxes.length} box matrices`);
    }
    for (let i = 0; i < names.length; i++) {
      const name = charOf(names[i], `file_list{${e + 1}}{${i + 1}}`, source);
      const where = `${event}/${name}`;
      const b = eventBoxes[i]!;
      if (b.kind !== 'numeric') throw new ExtdError(`${source}: face_bbx_list of ${where} is a ${b.kind}, expected a numeric N x 4 matrix`);
      // The official files mark an image without faces with one all-zero row (their .txt writes N = 0 then).
      const n = b.data.length === 0 || (b.data.length === 4 && b.data.every((x) => x === 0)) ? 0 : b.dims[0]!;
      if (n > 0 && b.data.length !== n * 4) throw new ExtdError(`${source}: face_bbx_list of ${where} is ${b.dims.join(' x ')}, expected N x 4`);
      const faces: WiderFace[] = [];
      for (let k = 0; k < n; k++) {
        faces.push({
          x: b.data[k]!,
          y: b.data[k + n]!,
          w: b.data[k + 2 * n]!,
          h: b.data[k + 3 * n]!,
          blur: 0,
          expression: 0,
          illumination: 0,
          invalid: 0,
          occlusion: 0,
          pose: 0,
        });
      }
      for (const l of labels) {
        if (!l.cells) continue;
        const ev = cellOf(l.cells[e], `${l.name}{${e + 1}}`, source);
        const v = ev[i];
        if (n === 0) continue;
        if (!v || v.kind !== 'numeric' || v.data.length !== n) {
          throw new ExtdError(`${source}: ${l.name} of ${where} has ${v && v.kind === 'numeric' ? v.data.length : 'no'} values for ${n} faces`);
        }
        for (let k = 0; k < n; k++) faces[k]![l.field] = v.data[k]!;
      }
      out.push({ path: `${where}.jpg`, faces });
    }
  }
  return out;
}

/**
 * Parse the bytes of a WIDER annotation .mat file (`wider_face_{train,val}.mat`
 * or the evaluation kit's `ground_truth/wider_face_val.mat`) into the records the
 * text format gives (see widerMatAnnotations). Errors name `source` and the cell.
 */
export function parseWiderMat(bytes: Uint8Array, source: string): WiderImageAnnotation[] {
  const mat = parseMat5(bytes, source);
  for (const name of ['event_list', 'file_list', 'face_bbx_list']) {
    if (!mat.has(name))
      throw new ExtdError(`${source}: no variable '${name}' (has: ${[...mat.keys()].join(', ') || 'none'}); expected a WIDER FACE annotation .mat file`);
  }
  return widerMatAnnotations(mat, source);
}

/** `EVENT/NAME.jpg` or `NAME.jpg` -> `NAME` (the key of the WIDER file lists). */
export function widerImageName(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return base.endsWith('.jpg') ? base.slice(0, -4) : base;
}

/**
 * Refuse a training set that holds a validation image: throws one ExtdError
 * line naming how many of `paths` (image paths or names) are in
 * `validationNames` and the first one, and `source` (where they came from).
 * Validation images are how every AP here is measured; training on one
 * would inflate it.
 */
export function assertNoValidationImages(paths: Iterable<string>, validationNames: ReadonlySet<string>, source: string): void {
  const hits: string[] = [];
  for (const p of paths) if (validationNames.has(widerImageName(p))) hits.push(p);
  if (hits.length > 0) {
    throw new ExtdError(
      `${source}: ${hits.length} image${hits.length === 1 ? ' is a' : 's are'} WIDER validation image${hits.length === 1 ? '' : 's'} (first: ${hits[0]}); refusing to train on the validation set`,
    );
  }
}

/** Two annotation records' faces agree exactly (all ten columns), ignoring the N = 0 placeholder. */
export function sameFaces(a: readonly WiderFace[], b: readonly WiderFace[]): boolean {
  if (a.length !== b.length) return false;
  const keys = ['x', 'y', 'w', 'h', 'blur', 'expression', 'illumination', 'invalid', 'occlusion', 'pose'] as const;
  return a.every((f, i) => keys.every((k) => f[k] === b[i]![k]));
}
