import { relative } from 'node:path';
import { loadModel, resolveModelPath } from '../load-model.js';
import { MODEL_FLAG_CHOICES } from '@extd/core/model/bundled';
import { CALIBRATE_DEFAULTS, CALIBRATION_IMAGES_DEFAULT } from '@extd/core/quantize/calibration';
import { calibrateFiles, checkImagesFolder, pickEvenly, writeCalibrationFile } from '../quantize/calibration-node.js';
import { exportOnnx } from '@extd/core/runtime/onnx-export';
import { writeFileAtomic } from '../utils/atomic.js';
import { ExtdError } from '@extd/core/utils/errors';
import { Progress } from '../utils/progress.js';
import { numberFlag, parseCli, threadsFlag } from './args.js';
import type { Command } from './command.js';
import { expandImagePaths } from './files.js';

const usage = `usage: extd quantize <model> --images DIR -o OUT.json [options]

Measure the activation ranges that int8 inference needs (calibration): run the
float32 model over images and record, for every quantized tensor, the widest
range over the images of its per-image [${(100 - CALIBRATE_DEFAULTS.percentile).toFixed(3)}, ${CALIBRATE_DEFAULTS.percentile}] percentiles. Use
training images, never the images you evaluate on. Then:
  extd detect photo.jpg --model <model> --precision int8 --calibration OUT.json
The bundled extd-32/48/64 ship their ranges (models/*.int8.json).

options:
  <model>              ${MODEL_FLAG_CHOICES}
  --variant NAME       only for ReLU/LeakyReLU checkpoints without metadata
  --images DIR         calibration images (searched recursively; e.g. WIDER_train/images)
  -o, --out FILE       calibration file to write (JSON)
  --count N            use N images spread evenly over DIR's sorted list (default ${CALIBRATION_IMAGES_DEFAULT})
  --percentile P       upper percentile per image, in (50, 100] (default ${CALIBRATE_DEFAULTS.percentile}; 100 = min/max)
  --scale auto|X       resize images by X first (default auto, as detect: only images over 1700x1200 px of area shrink)
  --onnx FILE          also write the int8 ONNX graph (QDQ, opset 17) for use outside extd
  --threads N          CPU threads (default 2)`;

export const command: Command = {
  name: 'quantize',
  usage,
  async run(argv) {
    const { values, positionals } = parseCli(argv, {
      variant: { type: 'string' },
      images: { type: 'string' },
      out: { type: 'string', short: 'o' },
      count: { type: 'string' },
      percentile: { type: 'string' },
      scale: { type: 'string' },
      onnx: { type: 'string' },
      threads: { type: 'string' },
    });
    if (positionals.length !== 1) throw new ExtdError(`expected one model, got ${positionals.length} (usage: extd quantize <model> --images DIR -o OUT.json)`);
    if (!values.images) throw new ExtdError('--images DIR is required (calibration images, e.g. WIDER_train/images)');
    if (!values.out) throw new ExtdError('-o OUT.json is required (the calibration file to write)');
    const count = numberFlag(values.count, '--count', CALIBRATION_IMAGES_DEFAULT, (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
    const percentile = numberFlag(values.percentile, '--percentile', CALIBRATE_DEFAULTS.percentile, (v) => v > 50 && v <= 100, 'a number in (50, 100]');
    const scale =
      values.scale === undefined || values.scale === 'auto'
        ? ('auto' as const)
        : numberFlag(values.scale, '--scale', 1, (v) => v > 0 && v <= 8, "'auto' or a number in (0, 8]");
    const threads = threadsFlag(values.threads);

    // Inputs first, so a bad folder fails before the model is loaded and nothing is written.
    checkImagesFolder(values.images);
    const all = expandImagePaths([values.images]);
    if (all.length === 0) throw new ExtdError(`--images ${values.images}: no images (.jpg, .png, .webp, ...) in this folder`);
    const model = await loadModel(resolveModelPath(positionals[0]), values.variant);
    const files = pickEvenly(all, count).map((path) => ({ path, name: relative(values.images!, path) }));

    const progress = new Progress({ label: 'quantize', total: files.length });
    const calibration = await calibrateFiles(model, files, { percentile, scale, threads }, () => progress.tick());
    writeCalibrationFile(values.out, calibration);
    console.log(`wrote ${values.out}: ranges of ${Object.keys(calibration.ranges).length} tensors of ${calibration.variant} from ${files.length} images`);
    if (values.onnx) {
      writeFileAtomic(values.onnx, exportOnnx(model.graph, model.weights, { int8: { ranges: calibration.ranges } }));
      console.log(`wrote ${values.onnx}: int8 QDQ ONNX graph (input N x 3 x H x W mean-subtracted RGB; outputs loc, conf)`);
    }
    return 0;
  },
};
