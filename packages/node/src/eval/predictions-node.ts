/** Prediction folders on disk: `DIR/EVENT/NAME.txt`, read and written (atomically). */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../utils/atomic.js';
import { ExtdError } from '@extd/core/utils/errors';
import type { ImagePredictions } from '@extd/core/eval/evaluator';
import { formatPredictionFile, imageKey, parsePredictionFile } from '@extd/core/eval/predictions';

/** Path of the prediction file for `EVENT/NAME[.jpg]` under `dir`. */
export function predictionPath(dir: string, image: string): string {
  return join(dir, `${imageKey(image)}.txt`);
}

/** Keys (`EVENT/NAME`) of every `EVENT/NAME.txt` under `dir`, sorted. Temp files of interrupted writes are skipped. */
export function listPredictionKeys(dir: string): string[] {
  if (!existsSync(dir)) throw new ExtdError(`prediction folder ${dir} does not exist`);
  const keys: string[] = [];
  for (const ev of readdirSync(dir, { withFileTypes: true })) {
    if (!ev.isDirectory()) continue;
    for (const f of readdirSync(join(dir, ev.name), { withFileTypes: true })) {
      if (f.isFile() && f.name.endsWith('.txt') && !f.name.startsWith('.tmp-')) keys.push(`${ev.name}/${f.name.slice(0, -4)}`);
    }
  }
  return keys.sort();
}

/** Read the prediction files of `keys` (missing files are simply absent from the map). */
export function readPredictions(dir: string, keys: readonly string[]): Map<string, ImagePredictions> {
  const out = new Map<string, ImagePredictions>();
  for (const key of keys) {
    const p = predictionPath(dir, key);
    let text: string;
    try {
      text = readFileSync(p, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new ExtdError(`cannot read prediction file ${p}: ${(err as Error).message}`);
    }
    const { boxes, scores } = parsePredictionFile(text, p);
    out.set(key, { boxes, scores });
  }
  return out;
}

/** Write one image's predictions (boxes x1 y1 x2 y2, pixels) atomically; returns the file path. */
export function writePredictions(dir: string, imagePath: string, boxesXyxy: ArrayLike<number>, scores: ArrayLike<number>): string {
  const p = predictionPath(dir, imagePath);
  const name = /\.(jpe?g|png)$/i.test(imagePath) ? imagePath : `${imageKey(imagePath)}.jpg`;
  writeFileAtomic(p, formatPredictionFile(name.replace(/\\/g, '/'), boxesXyxy, scores));
  return p;
}
