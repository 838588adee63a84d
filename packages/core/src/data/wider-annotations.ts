/**
 * Parser for the official WIDER FACE annotation text format
 * (`wider_face_split/wider_face_{train,val}_bbx_gt.txt`).
 *
 * The format is a sequence of records:
 *
 *     EVENT/NAME.jpg
 *     N
 *     x y w h blur expression illumination invalid occlusion pose   (N lines)
 *
 * where x, y are the top-left corner and w, h the size of the face box in
 * pixels. An image with N = 0 is still followed by one line of ten zeros,
 * which is a placeholder and not a face; we accept files without that line too.
 *
 * This module works on strings only (no node: imports) so a browser can use it;
 * `readWiderAnnotations` in wider-annotations-node.ts reads a file.
 */
import { ExtdError } from '../utils/errors.js';

/** One annotated face; box in pixels, exactly as written in the file (w or h may be <= 0). */
export interface WiderFace {
  /** Left edge, pixels. */
  x: number;
  /** Top edge, pixels. */
  y: number;
  /** Width, pixels. */
  w: number;
  /** Height, pixels. */
  h: number;
  /** 0 clear, 1 normal blur, 2 heavy blur. */
  blur: number;
  /** 0 typical, 1 exaggerated. */
  expression: number;
  /** 0 normal, 1 extreme. */
  illumination: number;
  /** 0 valid, 1 invalid. */
  invalid: number;
  /** 0 none, 1 partial, 2 heavy. */
  occlusion: number;
  /** 0 typical, 1 atypical. */
  pose: number;
}

/** One image of a WIDER FACE `*_bbx_gt.txt` file: its path and its faces. */
export interface WiderImageAnnotation {
  /** Relative image path as in the file, `EVENT/NAME.jpg`. */
  path: string;
  /** Empty for N = 0 images. */
  faces: WiderFace[];
}

const FIELDS = ['x', 'y', 'w', 'h', 'blur', 'expression', 'illumination', 'invalid', 'occlusion', 'pose'] as const;

/**
 * Parse the whole text of a `*_bbx_gt.txt` file. `source` names the input in
 * error messages (usually the file path). Throws ExtdError with the line number
 * on a malformed record.
 */
export function parseWiderAnnotations(text: string, source: string): WiderImageAnnotation[] {
  const lines = text.split(/\r?\n/);
  // Trailing blank lines are common; blank lines elsewhere are tolerated too.
  let i = 0;
  const next = (): { line: string; no: number } | undefined => {
    while (i < lines.length && lines[i]!.trim() === '') i++;
    if (i >= lines.length) return undefined;
    const no = i + 1;
    return { line: lines[i++]!.trim(), no };
  };
  const peek = (): string | undefined => {
    let j = i;
    while (j < lines.length && lines[j]!.trim() === '') j++;
    return j < lines.length ? lines[j]!.trim() : undefined;
  };

  const out: WiderImageAnnotation[] = [];
  for (;;) {
    const head = next();
    if (!head) break;
    if (!isImagePath(head.line)) {
      throw new ExtdError(`${source}:${head.no}: expected an image path 'EVENT/NAME.jpg', got '${clip(head.line)}'`);
    }
    const countLine = next();
    if (!countLine) throw new ExtdError(`${source}: unexpected end of file after image path '${head.line}' (expected a face count)`);
    if (!/^\d+$/.test(countLine.line)) {
      throw new ExtdError(`${source}:${countLine.no}: expected the face count of '${head.line}' (a non-negative integer), got '${clip(countLine.line)}'`);
    }
    const n = Number(countLine.line);
    const faces: WiderFace[] = [];
    if (n === 0) {
      // Skip the placeholder row of zeros if present (the official files have it).
      const p = peek();
      if (p !== undefined && !isImagePath(p)) {
        const row = next()!;
        parseRow(row.line, row.no, source, head.line);
      }
    }
    for (let k = 0; k < n; k++) {
      const row = next();
      if (!row) {
        throw new ExtdError(`${source}: unexpected end of file in '${head.line}': ${n} faces announced, ${k} found`);
      }
      faces.push(parseRow(row.line, row.no, source, head.line));
    }
    out.push({ path: head.line, faces });
  }
  return out;
}

function parseRow(line: string, no: number, source: string, image: string): WiderFace {
  const parts = line.split(/\s+/);
  if (parts.length !== FIELDS.length) {
    const hint = isImagePath(line) ? ' (face count larger than the number of face lines?)' : '';
    throw new ExtdError(
      `${source}:${no}: face line of '${image}' has ${parts.length} fields, expected 10 (x y w h blur expression illumination invalid occlusion pose)${hint}`,
    );
  }
  const face = {} as Record<(typeof FIELDS)[number], number>;
  for (let f = 0; f < FIELDS.length; f++) {
    const v = Number(parts[f]);
    if (!Number.isFinite(v) || parts[f] === '') {
      throw new ExtdError(`${source}:${no}: field ${FIELDS[f]} of '${image}' is '${clip(parts[f]!)}', expected a number`);
    }
    face[FIELDS[f]!] = v;
  }
  return face;
}

function isImagePath(line: string): boolean {
  return /\.(jpe?g|png)$/i.test(line) && !/\s/.test(line);
}

function clip(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * The text of a `*_bbx_gt.txt` file for `annotations` (parseWiderAnnotations
 * reads it back unchanged). An image with no faces is written as the
 * official file does: a count of 0 followed by one line of ten zeros.
 */
export function formatWiderAnnotations(annotations: readonly WiderImageAnnotation[]): string {
  let out = '';
  for (const a of annotations) {
    out += `${a.path}\n${a.faces.length}\n`;
    if (a.faces.length === 0) out += '0 0 0 0 0 0 0 0 0 0\n';
    for (const f of a.faces) out += FIELDS.map((k) => f[k]).join(' ') + '\n';
  }
  return out;
}
