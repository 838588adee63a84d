/**
 * Reader for Pascal VOC annotations: a folder of XML files, one per image,
 * as VOC itself, LabelImg, CVAT and Roboflow write them:
 *
 *     <annotation>
 *       <folder>images</folder> <filename>a.jpg</filename>
 *       <size><width>512</width><height>366</height><depth>3</depth></size>
 *       <object>
 *         <name>face</name> <difficult>0</difficult>
 *         <bndbox><xmin>79</xmin><ymin>105</ymin><xmax>109</xmax><ymax>142</ymax></bndbox>
 *       </object> ...
 *     </annotation>
 *
 * Faces are the objects whose name is selected (default `face`); `difficult`
 * objects are kept as ignored. Coordinates are VOC's 1-based inclusive pixel
 * indices: xmin..xmax becomes x1 = xmin - 1, x2 = xmax.
 *
 * `parseVocXml` works on one file's text (no node: imports); the folder
 * reader is in read-dataset.ts.
 */
import { ExtdError } from '../utils/errors.js';
import { child, childText, children, parseXml } from './xml.js';

export interface VocObject {
  name: string;
  difficult: boolean;
  /** xyxy, continuous pixels (xmin - 1, ymin - 1, xmax, ymax). */
  box: [number, number, number, number];
}

export interface VocAnnotation {
  /** `<filename>` as written. */
  filename: string;
  /** `<folder>` as written ('' when absent). */
  folder: string;
  /** `<size>`; 0 when absent or 0. */
  width: number;
  height: number;
  objects: VocObject[];
}

/**
 * Parse one VOC XML file. Malformed XML or a missing `<filename>` is an
 * ExtdError (the file is unusable); a bad object is reported through
 * `problem` (naming the file and the object's number and line) and skipped.
 */
export function parseVocXml(text: string, source: string, problem: (line: string) => void): VocAnnotation {
  const root = parseXml(text, source);
  if (root.name !== 'annotation') throw new ExtdError(`${source}:${root.line}: root element <${root.name}>, expected <annotation> (Pascal VOC)`);
  const filename = childText(root, 'filename');
  if (!filename) throw new ExtdError(`${source}: no <filename> (the image this file annotates)`);
  const folder = childText(root, 'folder') ?? '';
  let width = 0,
    height = 0;
  const size = child(root, 'size');
  if (size) {
    const w = Number(childText(size, 'width') ?? '0'),
      h = Number(childText(size, 'height') ?? '0');
    if (!(Number.isFinite(w) && w >= 0 && Number.isFinite(h) && h >= 0)) {
      problem(`${source}:${size.line}: <size> ${childText(size, 'width')} x ${childText(size, 'height')} is not a pair of non-negative numbers`);
    } else {
      width = w;
      height = h;
    }
  }
  const objects: VocObject[] = [];
  children(root, 'object').forEach((obj, k) => {
    const where = `${source}:${obj.line}: object ${k + 1}`;
    const name = childText(obj, 'name');
    if (!name) return problem(`${where}: no <name>`);
    const d = childText(obj, 'difficult') ?? '0';
    if (d !== '0' && d !== '1') return problem(`${where} (${name}): <difficult> is '${d}', expected 0 or 1`);
    const bb = child(obj, 'bndbox');
    if (!bb) return problem(`${where} (${name}): no <bndbox>`);
    const v: number[] = [];
    for (const f of ['xmin', 'ymin', 'xmax', 'ymax']) {
      const t = childText(bb, f);
      const n = t === undefined || t === '' ? NaN : Number(t);
      if (!Number.isFinite(n)) return problem(`${where} (${name}): <${f}> is ${t === undefined ? 'missing' : `'${t.slice(0, 20)}'`}, expected a number`);
      v.push(n);
    }
    const [xmin, ymin, xmax, ymax] = v as [number, number, number, number];
    if (xmax < xmin || ymax < ymin) return problem(`${where} (${name}): box ${xmin},${ymin} - ${xmax},${ymax} has xmax < xmin or ymax < ymin`);
    objects.push({ name, difficult: d === '1', box: [xmin - 1, ymin - 1, xmax, ymax] });
  });
  return { filename, folder, width, height, objects };
}
