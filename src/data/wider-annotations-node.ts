/** Node file wrapper around the browser-safe WIDER annotation parser. */
import { readFileSync } from 'node:fs';
import { ExtdError } from '../utils/errors.js';
import { parseWiderAnnotations, type WiderImageAnnotation } from './wider-annotations.js';

export type { WiderFace, WiderImageAnnotation } from './wider-annotations.js';
export { formatWiderAnnotations, parseWiderAnnotations } from './wider-annotations.js';

/** Read and parse a `*_bbx_gt.txt` file; errors name the file and line. */
export function readWiderAnnotations(path: string): WiderImageAnnotation[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ExtdError(`cannot read WIDER annotation file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return parseWiderAnnotations(text, path);
}
