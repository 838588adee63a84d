/**
 * Training loader throughput: images/s delivered by TrainLoader on the WIDER
 * training subset, for given sizes and worker counts. Not a test.
 *
 *   node --conditions=extd-source --import tsx bench/loader.ts [--sizes 640,320] [--workers 0,1,2] [--batches 8] [--batch 16]
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { readWiderTrainingSet, TrainLoader } from '../src/train/loader.js';
import { SHARED } from '../../../test-support/shared.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '640,320' },
    workers: { type: 'string', default: '1,2' },
    batches: { type: 'string', default: '8' },
    batch: { type: 'string', default: '16' },
    shared: { type: 'string', default: SHARED },
  },
});
const shared = resolve(values.shared!);
const samples = readWiderTrainingSet(`${shared}/wider/wider_face_split/wider_face_train_bbx_gt.txt`, `${shared}/wider/WIDER_train/images`);
const batches = Number(values.batches);
const B = Number(values.batch);
console.log(`${samples.length} training images; batch ${B}, ${batches} batches after 1 warm-up batch`);
for (const size of values.sizes!.split(',').map(Number)) {
  for (const workers of values.workers!.split(',').map(Number)) {
    const loader = new TrainLoader(samples, { size, workers, batchSize: B, seed: 1, prefetch: 2 });
    await loader.next(); // warm-up: worker start, first decode
    const t0 = performance.now();
    const c0 = process.cpuUsage(); // all threads of this process: workers, sharp, main
    let faces = 0;
    for (let i = 0; i < batches; i++) {
      const b = await loader.next();
      for (const x of b.boxes) faces += x.length / 4;
    }
    const s = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    const cpuMs = (c.user + c.system) / 1000 / (batches * B);
    console.log(
      `size ${size} workers ${workers}: ${((batches * B) / s).toFixed(1)} images/s wall (${(s / batches).toFixed(2)} s/batch), ` +
        `${cpuMs.toFixed(0)} ms CPU/image, ${(faces / (batches * B)).toFixed(1)} faces/image`,
    );
    await loader.close();
  }
}
