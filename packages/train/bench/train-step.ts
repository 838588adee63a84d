/**
 * The extd side of `npm run bench:train` (run by bench/train.ts in a process
 * of its own, so that its peak memory is its own): one warm-up step, then
 * --steps timed training steps of the synthetic batch (bench/synthetic-step.ts).
 * Prints one JSON line: {"times": [wall seconds per step], "cpu": [CPU seconds per step, all
 * threads], "peak_rss_mb": ..., "torch": version}.
 *
 *   node --conditions=extd-source --import tsx bench/train-step.ts --variant extd-fpn-32-prelu --size 320 --batch 4 [--steps 3] [--threads 2]
 */
import { parseArgs } from 'node:util';
import { loadTorch } from '../src/train/torch.js';
import { syntheticStep } from './synthetic-step.js';

const { values } = parseArgs({
  options: {
    variant: { type: 'string', default: 'extd-fpn-32-prelu' },
    size: { type: 'string', default: '320' },
    batch: { type: 'string', default: '4' },
    steps: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
  },
});
const torch = loadTorch();
torch.setNumThreads(Number(values.threads));
const run = syntheticStep(torch, values.variant!, Number(values.batch), Number(values.size));
const times: number[] = [];
const cpu: number[] = [];
for (let i = 0; i <= Number(values.steps); i++) {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  run.step();
  const c = process.cpuUsage(c0);
  if (i > 0) times.push((performance.now() - t0) / 1000), cpu.push((c.user + c.system) / 1e6);
}
run.dispose();
console.log(JSON.stringify({ times, cpu, peak_rss_mb: process.resourceUsage().maxRSS / 1024, torch: torch.version().torch }));
