import { existsSync, mkdirSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { createDetector, loadImageRgb } from '../index.js';
import { resolveModelPath } from '../load-model.js';
import { DETECT_DEFAULTS, type Face } from '@extd/core/detector';
import { drawFacesToFile, drawFormat } from '../image/draw-node.js';
import { ExtdError } from '@extd/core/utils/errors';
import { Progress } from '../utils/progress.js';
import { UsageError, engineFlag, numberFlag, parseCli, precisionFlags, threadsFlag } from './args.js';
import type { Command } from './command.js';
import { MODEL_FLAG_CHOICES } from '@extd/core/model/bundled';
import { IMAGE_EXTENSIONS, expandImagePaths } from './files.js';

/** Extensions that name an image file, so a --draw path with one is not taken for a folder. */
const DRAW_EXTENSIONS = new Set([...IMAGE_EXTENSIONS, '.bmp', '.svg']);

const usage = `usage: extd detect <image|folder>... [options]

Detect faces. Prints per image a line 'PATH: N faces', then one line per face, best first:
  x=X y=Y width=W height=H score=S
(pixels of the image as viewers show it, the box clipped to the image; the score is 0..1).

options:
  --model M             ${MODEL_FLAG_CHOICES}
  --variant NAME        only for ReLU/LeakyReLU checkpoints without metadata, e.g. extd-fpn-32-relu
  --score-threshold S   report faces scoring above S (default ${DETECT_DEFAULTS.scoreThreshold})
  --nms-threshold T     IoU above which overlapping boxes are merged (default ${DETECT_DEFAULTS.nmsThreshold})
  --max-faces N         at most N faces per image (default ${DETECT_DEFAULTS.maxFaces})
  --scale auto|X        resize factor before the network (default auto: shrink images over 1700x1200 px of area)
  --threads N           CPU threads (default 2)
  --precision P         float32 or int8 (default: int8 for extd-32/48/64 where the native kernels run int8,
                        i.e. the CPU has AVX512-VNNI; elsewhere int8 for extd-48, float32 otherwise). int8 on
                        the kernels needs no calibration; on onnxruntime it uses calibrated ranges (bundled
                        extd-32/48/64: shipped). extd info MODEL says which engine runs each
  --calibration FILE    int8 ranges from extd quantize, for onnxruntime's int8 of a model other than the
                        bundled ones
  --engine E            auto (default: extd's native kernels where they were built at install, int8 where
                        the CPU has AVX512-VNNI; else onnxruntime) or onnxruntime
  --json                print JSON: [{ image, width, height, faces: [{ box: { x, y, width, height }, score }] }]
  --draw PATH           write the image with boxes drawn (.png/.jpg/.webp); with several images or a
                        folder, PATH is a folder (created) that gets NAME.png per image`;

export const command: Command = {
  name: 'detect',
  usage,
  async run(argv) {
    const { values, positionals } = parseCli(argv, {
      model: { type: 'string' },
      variant: { type: 'string' },
      'score-threshold': { type: 'string' },
      'nms-threshold': { type: 'string' },
      'max-faces': { type: 'string' },
      scale: { type: 'string' },
      threads: { type: 'string' },
      precision: { type: 'string' },
      calibration: { type: 'string' },
      engine: { type: 'string' },
      json: { type: 'boolean' },
      draw: { type: 'string' },
    });
    if (positionals.length === 0) throw new UsageError('no image given (usage: extd detect <image|folder>... [--model M])');
    const unit = (v: number) => v >= 0 && v <= 1;
    const options = {
      scoreThreshold: numberFlag(values['score-threshold'], '--score-threshold', DETECT_DEFAULTS.scoreThreshold, unit, 'a number from 0 to 1'),
      nmsThreshold: numberFlag(values['nms-threshold'], '--nms-threshold', DETECT_DEFAULTS.nmsThreshold, unit, 'a number from 0 to 1'),
      maxFaces: numberFlag(values['max-faces'], '--max-faces', DETECT_DEFAULTS.maxFaces, (v) => Number.isInteger(v) && v >= 1, 'a positive integer'),
      scale:
        values.scale === undefined || values.scale === 'auto'
          ? ('auto' as const)
          : numberFlag(values.scale, '--scale', 1, (v) => v > 0 && v <= 8, "'auto' or a number in (0, 8]"),
    };
    const model = resolveModelPath(values.model);
    const threads = threadsFlag(values.threads);
    const engine = engineFlag(values.engine);
    const images = expandImagePaths(positionals);
    if (images.length === 0) throw new ExtdError(`no images found in ${positionals.join(', ')}`);
    const drawDir = values.draw === undefined ? undefined : drawTarget(values.draw, images.length, positionals);
    if (drawDir) mkdirSync(drawDir, { recursive: true });

    const { precision, calibration } = precisionFlags(values.precision, values.calibration);
    const detector = await createDetector({ model, variant: values.variant, threads, precision, calibration, engine });
    const progress = images.length > 1 ? new Progress({ label: 'detect', total: images.length }) : undefined;
    const results: Array<{ image: string; width: number; height: number; faces: Face[] }> = [];
    let failures = 0;
    try {
      for (const path of images) {
        try {
          const image = await loadImageRgb(path);
          const faces = await detector.detect(image, options);
          results.push({ image: path, width: image.width, height: image.height, faces });
          if (!values.json) printFaces(path, faces);
          if (values.draw !== undefined) {
            const out = drawDir ? join(drawDir, `${basename(path, extname(path))}.png`) : values.draw;
            await drawFacesToFile(image, faces, out);
          }
        } catch (err) {
          if (!(err instanceof ExtdError)) throw err;
          failures++;
          console.error(`extd detect: ${err.message}`);
        }
        progress?.tick();
      }
    } finally {
      await detector.dispose();
    }
    if (values.json) console.log(JSON.stringify(results.map(roundResult), null, 1));
    return failures > 0 ? 1 : 0;
  },
};

/**
 * Check --draw before any work. It names a folder (returned, created by the
 * caller) when several images are given, a folder is given, or it is an
 * existing folder; otherwise the output image file, whose extension must be
 * a drawable format (undefined is returned).
 */
function drawTarget(draw: string, imageCount: number, inputs: string[]): string | undefined {
  const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();
  if (isDir(draw)) return draw;
  if (imageCount > 1 || inputs.some(isDir)) {
    if (DRAW_EXTENSIONS.has(extname(draw).toLowerCase()) || existsSync(draw)) {
      throw new ExtdError(`--draw ${draw}: with ${imageCount} images (or a folder) --draw names a folder to draw into, not an image file; give a folder path`);
    }
    return draw;
  }
  drawFormat(draw);
  return undefined;
}

function printFaces(path: string, faces: Face[]): void {
  console.log(`${path}: ${faces.length} face${faces.length === 1 ? '' : 's'}`);
  for (const { box, score } of faces) {
    console.log(`  x=${box.x.toFixed(1)} y=${box.y.toFixed(1)} width=${box.width.toFixed(1)} height=${box.height.toFixed(1)} score=${score.toFixed(3)}`);
  }
}

const r2 = (v: number) => Math.round(v * 100) / 100;

function roundResult(r: { image: string; width: number; height: number; faces: Face[] }) {
  return {
    ...r,
    faces: r.faces.map(({ box, score }) => ({
      box: { x: r2(box.x), y: r2(box.y), width: r2(box.width), height: r2(box.height) },
      score: Math.round(score * 1e4) / 1e4,
    })),
  };
}
