/**
 * Reader for the official WIDER FACE annotation .mat files
 * (`wider_face_split/wider_face_{train,val}.mat`, and the evaluation kit's
 * `ground_truth/wider_face_val.mat`), MATLAB v5, read with our mat5 reader.
 *
 * Variables (61 x 1 cell arrays, one cell per event):
 *   event_list{e}          char, the event folder, e.g. '0--Parade'
 *   file_list{e}{f}        char, the image name without extension
 *   face_bbx_list{e}{f}    n x 4 double, x y w h per face (pixels)
 *   blur_label_list, expression_label_list, illumination_label_list,
 *   invalid_label_list, occlusion_label_list, pose_label_list
 *                          {e}{f}: n x 1 labels (optional; 0 when absent)
 *
 * The result is the same `WiderImageAnnotation[]` as the text format gives
 * (paths `EVENT/NAME.jpg`), so both feed the same training and evaluation.
 */
import { ExtdError } from '../utils/errors.js';
import { parseMat5, type MatValue } from '../eval/mat5.js';
import type { WiderFace, WiderImageAnnotation } from './wider-annotations.js';

const LABELS = ['blur', 'expression', 'illumination', 'invalid', 'occlusion', 'pose'] as const;

/** Parse the bytes of a WIDER annotation .mat file; errors name `source` and the cell. */
export function parseWiderMat(bytes: Uint8Array, source: string): WiderImageAnnotation[] {
  const m = parseMat5(bytes, source);
  const cells = (name: string, required: boolean): MatValue[] | undefined => {
    const v = m.get(name);
    if (!v) {
      if (!required) return undefined;
      throw new ExtdError(`${source}: no variable '${name}' (has: ${[...m.keys()].join(', ') || 'none'}); expected a WIDER FACE annotation .mat file`);
    }
    if (v.kind !== 'cell') throw new ExtdError(`${source}: ${name} is a ${v.kind} array, expected a cell array`);
    return v.cells;
  };
  const events = cells('event_list', true)!;
  const files = cells('file_list', true)!;
  const boxes = cells('face_bbx_list', true)!;
  const labels = LABELS.map((l) => cells(`${l}_label_list`, false));
  if (files.length !== events.length || boxes.length !== events.length) {
    throw new ExtdError(`${source}: event_list has ${events.length} entries, file_list ${files.length}, face_bbx_list ${boxes.length}; expected equal`);
  }
  labels.forEach((l, k) => {
    if (l && l.length !== events.length) throw new ExtdError(`${source}: ${LABELS[k]}_label_list has ${l.length} entries, event_list ${events.length}`);
  });
  const out: WiderImageAnnotation[] = [];
  for (let e = 0; e < events.length; e++) {
    const ev = charOf(events[e]!, `${source}: event_list{${e + 1}}`);
    const names = cellOf(files[e]!, `${source}: file_list{${e + 1}}`);
    const bbs = cellOf(boxes[e]!, `${source}: face_bbx_list{${e + 1}}`);
    if (bbs.length !== names.length) throw new ExtdError(`${source}: event ${ev}: ${names.length} files but ${bbs.length} box lists`);
    const lab = labels.map((l, k) => {
      if (!l) return undefined;
      const c = cellOf(l[e]!, `${source}: ${LABELS[k]}_label_list{${e + 1}}`);
      if (c.length !== names.length) throw new ExtdError(`${source}: event ${ev}: ${names.length} files but ${c.length} ${LABELS[k]} label lists`);
      return c;
    });
    for (let f = 0; f < names.length; f++) {
      const name = charOf(names[f]!, `${source}: file_list{${e + 1}}{${f + 1}}`);
      const where = `${source}: face_bbx_list{${e + 1}}{${f + 1}} (${ev}/${name})`;
      const b = bbs[f]!;
      if (b.kind !== 'numeric') throw new ExtdError(`${where}: a ${b.kind} array, expected an n x 4 numeric matrix`);
      const n = b.data.length === 0 ? 0 : b.dims[0]!;
      if (n > 0 && (b.dims.length !== 2 || b.dims[1] !== 4)) throw new ExtdError(`${where}: dimensions ${b.dims.join('x')}, expected n x 4`);
      const labelValues = lab.map((c, k) => {
        if (!c) return undefined;
        const v = c[f]!;
        const w = `${source}: ${LABELS[k]}_label_list{${e + 1}}{${f + 1}} (${ev}/${name})`;
        if (v.kind !== 'numeric') throw new ExtdError(`${w}: a ${v.kind} array, expected n x 1 numbers`);
        if (v.data.length !== n) throw new ExtdError(`${w}: ${v.data.length} labels for ${n} faces`);
        return v.data;
      });
      const faces: WiderFace[] = [];
      for (let i = 0; i < n; i++) {
        const col = (c: number) => b.data[i + n * c]!; // column-major
        const face: WiderFace = { x: col(0), y: col(1), w: col(2), h: col(3), blur: 0, expression: 0, illumination: 0, invalid: 0, occlusion: 0, pose: 0 };
        if (![face.x, face.y, face.w, face.h].every(Number.isFinite)) throw new ExtdError(`${where}: face ${i + 1} has a non-finite coordinate`);
        LABELS.forEach((l, k) => {
          const v = labelValues[k];
          if (v) face[l] = v[i]!;
        });
        faces.push(face);
      }
      out.push({ path: `${ev}/${name}.jpg`, faces });
    }
  }
  return out;
}

function cellOf(v: MatValue, where: string): MatValue[] {
  if (v.kind !== 'cell') throw new ExtdError(`${where}: a ${v.kind} array, expected a cell array`);
  return v.cells;
}

function charOf(v: MatValue, where: string): string {
  if (v.kind !== 'char') throw new ExtdError(`${where}: a ${v.kind} array, expected a char array`);
  return v.value;
}
