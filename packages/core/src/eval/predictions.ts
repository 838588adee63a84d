/**
 * The official WIDER FACE prediction file, one per image at `EVENT/NAME.txt`:
 *
 *     EVENT/NAME.jpg        image name line (readers ignore it)
 *     N                     number of boxes
 *     x y w h score         N rows, pixels, w = x2 - x1 + 1, h = y2 - y1 + 1
 *
 * The `+ 1` is the official writer's convention (the corners are treated as
 * inclusive pixel indices); the evaluator then uses x2 = x + w. We write one
 * decimal for coordinates and three for scores, rows sorted by score.
 * Browser-safe: strings in, strings out.
 */
import { ExtdError } from '../utils/errors.js';
import { argsortDescending } from '../postprocess/boxes.js';
import type { ImagePredictions } from './evaluator.js';

/**
 * `EVENT/NAME` from an image or prediction path (`EVENT/NAME.jpg`,
 * `EVENT/NAME.txt`, Windows separators): the key shared by ground truth,
 * images and prediction files.
 */
export function imageKey(path: string): string {
  return path
    .trim()
    .replace(/\\/g, '/')
    .replace(/^\.\//, '')
    .replace(/\.(jpe?g|png|txt)$/i, '');
}

/**
 * Text of one prediction file. `imagePath` is `EVENT/NAME.jpg` (written as the
 * first line). Boxes are x1 y1 x2 y2 in pixels (n x 4), scores n; rows are
 * sorted by score, highest first. N = 0 writes just the two header lines.
 */
export function formatPredictionFile(imagePath: string, boxesXyxy: ArrayLike<number>, scores: ArrayLike<number>): string {
  const n = scores.length;
  if (boxesXyxy.length !== n * 4) {
    throw new Error(`formatPredictionFile: ${boxesXyxy.length} box values for ${n} scores, expected ${n * 4}`);
  }
  const order = argsortDescending(scores, n);
  const lines = [imagePath, String(n)];
  for (const i of order) {
    const x1 = boxesXyxy[i * 4]!,
      y1 = boxesXyxy[i * 4 + 1]!,
      x2 = boxesXyxy[i * 4 + 2]!,
      y2 = boxesXyxy[i * 4 + 3]!;
    lines.push(`${x1.toFixed(1)} ${y1.toFixed(1)} ${(x2 - x1 + 1).toFixed(1)} ${(y2 - y1 + 1).toFixed(1)} ${scores[i]!.toFixed(3)}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Parse a prediction file (ours or another detector's). Rows may have extra
 * whitespace; the count line must match the number of rows. Errors name
 * `source` and the line.
 */
export function parsePredictionFile(text: string, source: string): ImagePredictions & { name: string } {
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  if (lines.length < 2) {
    throw new ExtdError(`${source}: ${lines.length} line(s), expected an image name line and a box count line`);
  }
  const name = lines[0]!.trim();
  const countText = lines[1]!.trim();
  if (!/^\d+$/.test(countText)) {
    throw new ExtdError(`${source}:2: box count '${countText.slice(0, 40)}' is not a non-negative integer`);
  }
  const n = Number(countText);
  const rows = lines.length - 2;
  if (rows !== n) {
    throw new ExtdError(`${source}:2: box count says ${n}, the file has ${rows} box line(s)`);
  }
  const boxes = new Float64Array(n * 4);
  const scores = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const line = lines[i + 2]!.trim();
    const parts = line.split(/\s+/);
    if (parts.length !== 5) {
      throw new ExtdError(`${source}:${i + 3}: ${parts.length} fields '${line.slice(0, 60)}', expected 5 (x y w h score)`);
    }
    for (let f = 0; f < 5; f++) {
      const v = Number(parts[f]);
      if (parts[f] === '' || !Number.isFinite(v)) {
        throw new ExtdError(`${source}:${i + 3}: field ${f + 1} is '${parts[f]}', expected a number`);
      }
      if (f < 4) boxes[i * 4 + f] = v;
      else scores[i] = v;
    }
  }
  return { name, boxes, scores };
}
