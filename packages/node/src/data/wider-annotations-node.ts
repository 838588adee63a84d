/** Node file wrapper around the browser-safe WIDER annotation parser. */
import { readFileSync } from 'node:fs';
import { ExtdError } from '@extd/core/utils/errors';
import { parseWiderAnnotations, type WiderImageAnnotation } from '@extd/core/data/wider-annotations';

export type { WiderFace, WiderImageAnnotation } from '@extd/core/data/wider-annotations';
export { formatWiderAnnotations, parseWiderAnnotations } from '@extd/core/data/wider-annotations';

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
