/**
 * Inference benchmark: median latency of detector.detect() (preprocessing,
 * network, post-processing) for the released EXTD-32 and EXTD-64 at 640x480
 * and 1024x768 on 1 and 2 threads, and the process's peak memory.
 *
 *   npm run bench [-- --runs 30 --models 32,64]
 *
 * The input is a real WIDER photo resized to each size, so post-processing
 * sees a realistic number of candidates. Uses ../shared (EXTD_SHARED).
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createDetector, loadImageRgb, loadModel } from '../src/index.js';
import { resizeBilinear } from '../src/image/resize.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '25' }, models: { type: 'string', default: '32,64' } } });
const runs = Number(values.runs);
const shared = resolve(process.env.EXTD_SHARED ?? '../shared');
const photo = await loadImageRgb(resolve(shared, 'wider/WIDER_val/images/2--Demonstration/2_Demonstration_Demonstrators_2_307.jpg'));
const sizes: Array<[number, number]> = [[640, 480], [1024, 768]];

console.log(`node ${process.version}, ${runs} timed runs after 3 warm-up runs, median (min) ms per detect() at scale 1`);
console.log('model     size       threads  median ms   min ms');
for (const w of values.models!.split(',').map(Number)) {
  const model = await loadModel(resolve(shared, `reference/weights/EXTD_${w}.pth`));
  for (const threads of [1, 2]) {
    const detector = await createDetector({ model, threads });
    for (const [width, height] of sizes) {
      const image = resizeBilinear(photo, width, height);
      for (let i = 0; i < 3; i++) await detector.detect(image, { scale: 1 });
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        await detector.detect(image, { scale: 1 });
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      const median = times[Math.floor(times.length / 2)]!;
      console.log(`EXTD-${w}   ${`${width}x${height}`.padEnd(10)} ${String(threads).padStart(7)}  ${median.toFixed(1).padStart(9)}  ${times[0]!.toFixed(1).padStart(7)}`);
    }
    await detector.dispose();
  }
}
const { maxRSS } = process.resourceUsage();
console.log(`peak RSS ${(maxRSS / 1024).toFixed(0)} MiB (whole process, all models above)`);
