/** Node file access for int8 calibration: reading and writing calibration files, calibrating over an image folder. */
import { readFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BUNDLED_CALIBRATION_URLS, type BundledModelName } from '@extd/core/model/bundled';
import { autoScale } from '@extd/core/detector';
import { loadImageRgb } from '../image/node.js';
import { resizeBilinear } from '@extd/core/image/resize';
import { createOrtNodeSession } from '../runtime/ort-node.js';
import { writeFileAtomic } from '../utils/atomic.js';
import { ExtdError } from '@extd/core/utils/errors';
import type { LoadedModel } from '@extd/core/weights/checkpoint';
import { calibrate, checkCalibration, formatCalibration, type Calibration, type CalibrateOptions } from '@extd/core/quantize/calibration';

/** Path of a bundled model's shipped calibration file, or null when it has none. */
export function bundledCalibrationPath(name: BundledModelName): string | null {
  const url = BUNDLED_CALIBRATION_URLS[name];
  return url ? fileURLToPath(url()) : null;
}

/**
 * Read a calibration file and check it against `model` (see checkCalibration).
 * @throws ExtdError for a missing or unreadable file, bad JSON, or ranges that do not fit the model.
 */
export async function readCalibrationFile(path: string, model: LoadedModel): Promise<Calibration> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ExtdError(
      `calibration ${path}: ${code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a directory, expected a .json file' : (e as Error).message}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ExtdError(`calibration ${path}: not valid JSON (${(e as Error).message})`);
  }
  return checkCalibration(value, model, path);
}

/** Write a calibration file atomically. */
export function writeCalibrationFile(path: string, c: Calibration): void {
  writeFileAtomic(path, formatCalibration(c));
}

/** `count` items spread evenly over `list` (all of it when shorter), keeping its order. */
export function pickEvenly<T>(list: readonly T[], count: number): T[] {
  if (list.length <= count) return [...list];
  return Array.from({ length: count }, (_, i) => list[Math.floor(((i + 0.5) * list.length) / count)]!);
}

/**
 * Calibrate `model` over image files (decoded with EXIF rotation, resized as
 * detect() would with `options.scale`). `names` are what the file records
 * (e.g. paths relative to the images folder).
 * @throws ExtdError for an image that cannot be read or decoded (naming it).
 */
export async function calibrateFiles(
  model: LoadedModel,
  files: Array<{ path: string; name: string }>,
  options: Partial<CalibrateOptions> = {},
  onImage?: (name: string) => void,
): Promise<Calibration> {
  const scaleOpt = options.scale ?? 'auto';
  async function* images() {
    for (const f of files) {
      const image = await loadImageRgb(f.path);
      const s = scaleOpt === 'auto' ? autoScale(image.width, image.height) : scaleOpt;
      const resized = s === 1 ? image : resizeBilinear(image, Math.max(1, Math.round(image.width * s)), Math.max(1, Math.round(image.height * s)));
      yield { name: f.name, image: resized };
    }
  }
  return calibrate(model, images(), createOrtNodeSession, options, onImage);
}

/** @throws ExtdError unless `dir` is an existing folder. */
export function checkImagesFolder(dir: string): void {
  if (!existsSync(dir)) throw new ExtdError(`--images ${dir}: folder not found`);
  if (!statSync(dir).isDirectory()) throw new ExtdError(`--images ${dir}: not a folder`);
}
