/**
 * Speed / accuracy trade-off of the bundled models: for each model,
 * precision and scale, the median detect() time of a 640x480 frame at that
 * scale and the AP (easy / medium / hard, single protocol at that scale) on
 * the WIDER val images; a table, a JSON file and the README's figure.
 * Not a test: it prints numbers.
 *
 *   npm run bench:tradeoff [-- --models 32,48,64 --precisions float32,int8 --scales 0.5,0.75,1
 *                            --images 646 --runs 9 --threads 2 --out DIR --figure FILE.png]
 *   (DIR default: bench-results/tradeoff under packages/node, where npm runs the script; a DIR or FILE
 *   given is relative to the folder npm was run from)
 *
 * The AP part runs `extd eval`'s pipeline once per configuration into
 * OUT/<model>-<precision>-x<scale>/ (resumable: predictions already there are
 * reused, so an interrupted run continues; delete a folder to recompute).
 * On the 2-core development machine all 18 configurations on the 646 images
 * take over an hour. Timing runs first, interleaving the precisions
 * of a model in blocks of 3 runs (one scale at a time) so they share the machine's load; the load average is
 * printed with the numbers. Results: OUT/tradeoff.json (atomic) and the
 * figure (PNG, and SVG beside it). Uses ../shared (EXTD_SHARED).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { resizeBilinear } from '@extd/core/image/resize';
import type { Precision } from '@extd/core/detector';
import { createDetector, loadImageRgb, type NodeDetector } from '../src/index.js';
import { evaluateModel } from '../src/eval/evaluate.js';
import { svgToPng } from '../src/image/svg.js';
import { writeFileAtomic } from '../src/utils/atomic.js';
import { SHARED } from '../../../test-support/shared.js';
import { BENCH_PHOTO, loadAverage as load, median, spreadEvenly, timeInterleaved, widerImageList } from './common.js';
import { tradeoffSvg, type TradeoffPoint } from './tradeoff-figure.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: '32,48,64' },
    precisions: { type: 'string', default: 'float32,int8' },
    scales: { type: 'string', default: '0.5,0.75,1' },
    images: { type: 'string' },
    runs: { type: 'string', default: '9' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string' },
    figure: { type: 'string' },
  },
});
const fail = (msg: string): never => {
  console.error(`bench:tradeoff: ${msg}`);
  process.exit(1);
};
const models = values.models!.split(',').map((w) => `extd-${w.trim()}`);
const precisions = values.precisions!.split(',').map((p) => p.trim()) as Precision[];
for (const p of precisions) if (p !== 'float32' && p !== 'int8') fail(`--precisions ${values.precisions}: each must be float32 or int8`);
const scales = values.scales!.split(',').map(Number);
for (const s of scales) if (!(s > 0 && s <= 4)) fail(`--scales ${values.scales}: each must be a number in (0, 4]`);
const runs = Number(values.runs);
if (!(Number.isInteger(runs) && runs >= 1)) fail(`--runs ${values.runs}: expected a positive integer`);
const threads = Number(values.threads);
if (!(Number.isInteger(threads) && threads >= 1)) fail(`--threads ${values.threads}: expected a positive integer`);
// Paths given on the command line are relative to where npm was run (INIT_CWD), not to this package's
// folder, where npm runs the script; the default --out stays under this package.
const userPath = (p: string) => resolve(process.env.INIT_CWD ?? process.cwd(), p);
const out = values.out === undefined ? resolve('bench-results/tradeoff') : userPath(values.out);
const figure = values.figure === undefined ? join(out, 'tradeoff.png') : userPath(values.figure);
const imagesDir = resolve(SHARED, 'wider/WIDER_val/images');
const gt = resolve(SHARED, 'wider/eval_tools/ground_truth');
if (!existsSync(imagesDir) || !existsSync(gt)) fail(`WIDER val images or ground truth not found under ${SHARED} (set EXTD_SHARED)`);

const fmt = (x: number) => x.toFixed(4);
console.log(`node ${process.version}, ${cpus()[0]?.model} x ${cpus().length}, ${threads} threads, load average ${load()} at start`);

// The image list: all val images, or --images N spread evenly over them.
const all = widerImageList(imagesDir);
const n = values.images ? Number(values.images) : all.length;
if (!(Number.isInteger(n) && n >= 1 && n <= all.length)) fail(`--images ${values.images}: expected an integer in 1..${all.length}`);
const list = spreadEvenly(all, n);
mkdirSync(out, { recursive: true });
const listFile = join(out, `val-${n}.txt`);
writeFileAtomic(listFile, list.join('\n') + '\n');

// 1. Time: a real WIDER val photo resized to 640x480, detect() with default options at each scale.
const photo = await loadImageRgb(join(imagesDir, BENCH_PHOTO));
const frame = resizeBilinear(photo, 640, 480);
const ms = new Map<string, number>();
const key = (m: string, p: string, s: number) => `${m}-${p}-x${s}`;
// What ran each model and precision (detector.engine): int8 on the native kernels quantises differently from
// onnxruntime's QDQ graph, so its predictions get their own folder.
const engines = new Map<string, string>();
const apFolder = (m: string, p: string, s: number) => (p === 'int8' && engines.get(`${m}-${p}`) === 'extd-kernels' ? `${m}-${p}-kernels-x${s}` : key(m, p, s));
console.log(`\ndetect() of a 640x480 frame at each scale: median ms of ${runs} runs (interleaved in blocks of 3) after 2 warm-up runs`);
for (const model of models) {
  const detectors: [Precision, NodeDetector][] = [];
  for (const p of precisions) {
    const d = await createDetector({ model, precision: p, threads });
    engines.set(`${model}-${p}`, d.engine);
    detectors.push([p, d]);
  }
  const t = new Map<string, number[]>();
  // One scale at a time (a session fed a new input size each call re-plans its memory: not what a video loop
  // sees), the precisions interleaved.
  for (const s of scales) {
    for (const [, d] of detectors) for (let i = 0; i < 2; i++) await d.detect(frame, { scale: s });
    const times = await timeInterleaved(
      detectors.map(
        ([, d]) =>
          () =>
            d.detect(frame, { scale: s }),
      ),
      runs,
    );
    detectors.forEach(([p], k) => t.set(key(model, p, s), times[k]!));
  }
  for (const [p, d] of detectors) {
    await d.dispose();
    const cells = scales.map((s) => `x${s}: ${median(t.get(key(model, p, s))!).toFixed(1)} ms`.padEnd(18));
    console.log(`${model.padEnd(9)}${p.padEnd(9)}${d.engine.padEnd(14)}${cells.join('')}`);
    for (const s of scales) ms.set(key(model, p, s), median(t.get(key(model, p, s))!));
  }
}
console.log(`load average ${load()} after timing`);

// 2. AP, one evaluation per configuration (resumable).
const points: TradeoffPoint[] = [];
console.log(`\nAP on ${n} WIDER val images (single protocol at each scale), easy / medium / hard`);
for (const model of models) {
  for (const precision of precisions) {
    for (const scale of scales) {
      const dir = join(out, apFolder(model, precision, scale));
      const r = await evaluateModel({
        gt,
        images: imagesDir,
        out: dir,
        model,
        list: listFile,
        protocol: 'single',
        scale,
        force: false,
        threads,
        precision,
        progress: true,
      });
      const apJson = JSON.parse(readFileSync(join(dir, 'ap.json'), 'utf8')) as TradeoffPoint['ap'];
      const ap = { easy: apJson.easy, medium: apJson.medium, hard: apJson.hard };
      const engine = engines.get(`${model}-${precision}`)!;
      points.push({ model, precision, engine, scale, ms: ms.get(key(model, precision, scale))!, ap });
      console.log(
        `${model.padEnd(9)}${precision.padEnd(9)}${engine.padEnd(14)}x${String(scale).padEnd(6)}${fmt(ap.easy)} / ${fmt(ap.medium)} / ${fmt(ap.hard)}   ${r.predicted} predicted now, ${r.skipped} reused`,
      );
    }
  }
}

// int8 - float32 at each scale, the condition for int8 as a default.
if (precisions.includes('float32') && precisions.includes('int8')) {
  console.log('\nint8 - float32 (easy / medium / hard)');
  for (const model of models) {
    for (const scale of scales) {
      const f = points.find((p) => p.model === model && p.precision === 'float32' && p.scale === scale)!;
      const q = points.find((p) => p.model === model && p.precision === 'int8' && p.scale === scale)!;
      const d = (k: 'easy' | 'medium' | 'hard') => (q.ap[k] - f.ap[k] >= 0 ? '+' : '') + (q.ap[k] - f.ap[k]).toFixed(4);
      console.log(
        `${model.padEnd(9)}x${String(scale).padEnd(6)}${d('easy')} / ${d('medium')} / ${d('hard')}   time ${(f.ms / q.ms).toFixed(2)}x faster in int8`,
      );
    }
  }
}

const meta = { date: new Date().toISOString(), machine: `${cpus()[0]?.model} x ${cpus().length}`, threads, images: n, loadAtEnd: load() };
writeFileAtomic(join(out, 'tradeoff.json'), JSON.stringify({ ...meta, points }, null, 2) + '\n');
const svg = tradeoffSvg(points, { title: `AP on ${n} WIDER val images (single protocol) vs detect() time of a 640x480 frame, ${threads} threads` });
mkdirSync(dirname(figure), { recursive: true });
writeFileAtomic(figure, await svgToPng(svg));
writeFileAtomic(figure.replace(/\.png$/i, '') + '.svg', svg);
console.log(`\nwrote ${join(out, 'tradeoff.json')} and ${figure}; load average ${load()} at the end`);
