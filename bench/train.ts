/**
 * Training throughput (`npm run bench:train`): images per second of a full
 * training step (forward in training mode, matching, multibox loss with
 * mining, backward, SGD) for EXTD-32 and EXTD-64 at 320x320 and 640x640 on
 * 2 libtorch threads. Synthetic inputs (noise with two boxes per image), so
 * the loader and JPEG decoding are not measured: the loader runs in worker
 * threads beside the engine (see bench/loader.ts).
 *
 *   node --import tsx bench/train.ts [--threads 2] [--steps 3] [--batch N] [--sizes 320,640] [--variants 32,64]
 *
 * For scale (issue 4): plain PyTorch 1.13 here, batch 4 at 320x320: about
 * 2.0 s per step for EXTD-32 and 3.6 s for EXTD-64 (2.0 and 1.1 img/s).
 * Measured on the 2-core development machine (tcmalloc, 2 threads): EXTD-32
 * 2.58 s per step at 320x320 batch 4 (1.55 img/s), EXTD-64 4.20 s (0.95
 * img/s, peak RSS 14 GB); at 640x640 batch 1: 2.81 s (0.36 img/s) and
 * 4.21 s (0.24 img/s). EXTD-64 at 640x640 peaked at 10.7 GB with batch 1,
 * so batch 4 would not fit in 24 GB: without --batch, 640x640 runs with
 * batch 1 and smaller sizes with batch 4.
 *
 * Prints the median step time over --steps after one warm-up step, and the
 * process's peak resident memory. Runs with tcmalloc preloaded when the
 * machine has it, as `extd train` does (src/train/allocator.ts;
 * EXTD_TCMALLOC=off to compare with glibc's malloc).
 */
import { parseArgs } from 'node:util';
import { variantName } from '../src/model/variant.js';
import { loadTorch } from '../src/train/torch.js';
import { syntheticStep } from './synthetic-step.js';
import { relaunchWithTcmalloc } from '../src/train/allocator.js';

const relaunched = relaunchWithTcmalloc(process.argv[1]!, process.argv.slice(2));
if (relaunched) process.exit(await relaunched);

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '3' },
    batch: { type: 'string' },
    sizes: { type: 'string', default: '320,640' },
    variants: { type: 'string', default: '32,64' },
  },
});
const torch = loadTorch();
torch.setNumThreads(Number(values.threads));
const steps = Number(values.steps);
const batchFor = (size: number) => (values.batch ? Number(values.batch) : size > 320 ? 1 : 4);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const malloc = (process.env.LD_PRELOAD ?? '').includes('tcmalloc') ? 'tcmalloc' : 'glibc malloc';
console.log(`libtorch ${torch.version().torch}, ${torch.getNumThreads()} threads, ${malloc}, median of ${steps} steps after 1 warm-up`);
for (const width of values.variants!.split(',')) {
  for (const S of values.sizes!.split(',').map(Number)) {
    const B = batchFor(S);
    const run = syntheticStep(torch, `extd-fpn-${width}-prelu`, B, S);
    const times: number[] = [];
    for (let i = 0; i <= steps; i++) {
      const t0 = performance.now();
      run.step();
      if (i > 0) times.push((performance.now() - t0) / 1000);
    }
    run.dispose();
    const s = median(times);
    console.log(
      `${variantName(run.graph.variant).padEnd(18)} ${S}x${S} batch ${B}  ${s.toFixed(2)} s/step  ${(B / s).toFixed(2)} img/s  ` +
        `(steps ${times.map((x) => x.toFixed(2)).join(', ')})  peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`,
    );
  }
}
