/**
 * Inference benchmark: prints every speed figure of the README's Speed
 * section. Not a test: it prints numbers (medians over interleaved runs, so
 * float32 and int8 see the same machine load).
 *
 *   npm run bench [-- --runs 15 --models 32,48,64 --precisions float32,int8 --engines auto,onnxruntime --threads 2]
 *   npm run bench -- --ap [--ap-images 100] [--ap-models 32,64]   also AP on WIDER val (slow: minutes per model and precision)
 *   npm run bench -- --sections 3               only some of sections 1-3 (1 and 2 run together)
 *
 * 1. detect() at 640x480 with default options (score threshold 0.5), per
 *    model and configuration: float32 on the default engine ('auto': the
 *    native backbone kernels where built, onnxruntime for the rest), float32
 *    on onnxruntime alone ('float32 ort'), int8 (onnxruntime); and each one's
 *    speed-up over 'float32 ort'.
 * 2. Post-processing at score threshold 0.05 per 640x480 frame (the
 *    evaluation setting): postprocess() alone, and detect() at 0.05 minus 0.5.
 * 3. First call: a one-shot `extd detect` of a 1280x720 photo with EXTD-64
 *    (new process: start-up, model load, session, first run) against a warm
 *    detect() of the same file, and that process's peak resident memory.
 * 4. With --ap: easy / medium / hard AP per model and configuration on the WIDER
 *    val images (all 646, or --ap-images N spread evenly), single protocol,
 *    and the int8 - float32 deltas. Predictions go to bench-results/ap/
 *    (resumable; delete it to recompute).
 *
 * The photo is a real WIDER val image resized to each size, so
 * post-processing sees a realistic number of candidates. Uses ../shared
 * (EXTD_SHARED). The one-shot runs use the compiled CLI (bin/extd.js) when
 * dist/ is up to date, else the TypeScript sources through tsx (which adds
 * its own start-up time; the line says which).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { createDetector, loadImageRgb, type Engine, type NodeDetector } from '../src/index.js';
import { resizeBilinear } from '@extd/core/image/resize';
import { makePriors } from '@extd/core/anchors/priors';
import { postprocess, POSTPROCESS_DEFAULTS } from '@extd/core/postprocess/detections';
import type { Precision } from '@extd/core/detector';
import { SHARED } from '../../../test-support/shared.js';
import { BENCH_PHOTO, loadAverage as load, median, spreadEvenly, timeInterleaved, widerImageList } from './common.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '15' },
    models: { type: 'string', default: '32,48,64' },
    precisions: { type: 'string', default: 'float32,int8' },
    engines: { type: 'string', default: 'auto,onnxruntime' },
    threads: { type: 'string', default: '2' },
    'first-call-runs': { type: 'string', default: '3' },
    ap: { type: 'boolean', default: false },
    'ap-images': { type: 'string' },
    'ap-models': { type: 'string' },
    sections: { type: 'string', default: '1,2,3' },
  },
});
const runs = Number(values.runs);
const sections = new Set(values.sections!.split(','));
const threads = Number(values.threads);
const models = values.models!.split(',').map((w) => `extd-${w}`);
const precisions = values.precisions!.split(',') as Precision[];
const engines = values.engines!.split(',') as Engine[];
for (const e of engines) if (e !== 'auto' && e !== 'onnxruntime') throw new Error(`--engines: unknown engine '${e}' (auto, onnxruntime)`);
/** What section 1, 3 and 4 compare: each precision per engine ('auto': the kernels where they run it). */
interface Config {
  precision: Precision;
  engine: Engine;
  label: string;
}
const configs: Config[] = precisions.flatMap((precision): Config[] =>
  engines.map((engine) => ({ precision, engine, label: engine === 'auto' ? precision : `${precision} ort` })),
);
const BASELINE = 'float32 ort';
const shared = SHARED;
const photoPath = resolve(shared, 'wider/WIDER_val/images', BENCH_PHOTO);
const photo = await loadImageRgb(photoPath);
const frame = resizeBilinear(photo, 640, 480);
const root = resolve(import.meta.dirname, '..');

const min = (xs: number[]) => Math.min(...xs);
const ms = (x: number) => x.toFixed(1).padStart(7);
async function time(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

console.log(`node ${process.version}, ${cpus()[0]?.model} x ${cpus().length}, load average ${load()} (1/5/15 min) at start`);

// 1 and 2: detect() at 640x480, post-processing at 0.05.
if (sections.has('1') || sections.has('2')) {
  console.log(
    `\n1. detect() at 640x480, default options (score threshold 0.5), ${threads} threads: ${runs} runs interleaved in blocks of 3 (each after one untimed run), after 3 warm-up runs, median (min) ms`,
  );
  const base = configs.findIndex((c) => c.label === BASELINE);
  console.log(
    'model     ' +
      configs.map((c) => c.label.padStart(18)).join('') +
      (base >= 0 ? `   speed-up over ${BASELINE} (median of per-run ratios): ${configs.map((c) => c.label).join(' / ')}` : ''),
  );
  const postRows: string[] = [];
  for (const name of models) {
    const detectors: NodeDetector[] = [];
    for (const c of configs) detectors.push(await createDetector({ model: name, threads, precision: c.precision, engine: c.engine }));
    for (const d of detectors) for (let i = 0; i < 3; i++) await d.detect(frame);
    const t = await timeInterleaved(
      detectors.map((d) => () => d.detect(frame)),
      runs,
    );
    const b = base >= 0 ? t[base]! : null;
    console.log(
      name.padEnd(10) +
        t.map((x) => `${ms(median(x))} (${ms(min(x)).trim()})`.padStart(18)).join('') +
        (b ? `   ${t.map((x) => `${median(x.map((v, i) => b[i]! / v)).toFixed(2)}x`).join(' / ')}` : '') +
        `   engines: ${detectors.map((d) => d.engine).join(' / ')}`,
    );

    // Post-processing at the evaluation threshold, on this model's real outputs.
    for (let k = 0; k < detectors.length; k++) {
      const d = detectors[k]!;
      const { loc, conf } = await d.forward(frame);
      const priors = makePriors(480, 640);
      const pp: number[] = [];
      for (let i = 0; i < runs; i++) pp.push(await time(async () => postprocess(loc, conf, priors, 640, 480, POSTPROCESS_DEFAULTS)));
      const at05: number[] = [],
        at5: number[] = [];
      for (let i = 0; i < runs; i++) {
        at05.push(await time(() => d.detect(frame, { scoreThreshold: 0.05 })));
        at5.push(await time(() => d.detect(frame, { scoreThreshold: 0.5 })));
      }
      const candidates = (() => {
        let n = 0;
        for (let i = 0; i < conf.length; i += 2) if (1 / (1 + Math.exp(conf[i]! - conf[i + 1]!)) > 0.05) n++;
        return n;
      })();
      postRows.push(
        `${name.padEnd(10)}${configs[k]!.label.padEnd(12)}${String(candidates).padStart(11)}${ms(median(pp))}${ms(median(at05))}${ms(median(at5))}${ms(median(at05) - median(at5))}`,
      );
    }
    for (const d of detectors) await d.dispose();
  }
  console.log(`\n2. Post-processing per 640x480 frame at score threshold 0.05 (median ms over ${runs} runs)`);
  console.log('model     config       priors>0.05  postprocess()  detect()@0.05  detect()@0.5  difference');
  for (const r of postRows) console.log(r);
}

// 3: first call.
const dir = mkdtempSync(join(tmpdir(), 'extd-bench-'));
const hd = join(dir, 'photo-1280x720.jpg');
await sharp(photoPath).resize(1280, 720, { fit: 'fill' }).jpeg({ quality: 92 }).toFile(hd);
const distFresh = (() => {
  const main = join(root, 'dist/cli/main.js');
  if (!existsSync(main)) return false;
  const built = statSync(main).mtimeMs;
  const newest = (d: string): number =>
    readdirSync(d, { withFileTypes: true }).reduce((m, e) => Math.max(m, e.isDirectory() ? newest(join(d, e.name)) : statSync(join(d, e.name)).mtimeMs), 0);
  return newest(join(root, 'src')) <= built;
})();
const cli = distFresh ? [join(root, 'bin/extd.js')] : ['--conditions=extd-source', '--import', 'tsx', join(root, '../../test-support/cli-entry.ts')];
if (sections.has('3')) {
  const gnuTime = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;
  const firstRuns = Number(values['first-call-runs']);
  console.log(
    `\n3. First call: one-shot \`extd detect photo-1280x720.jpg --model extd-64\` (${distFresh ? 'compiled dist/' : 'dist/ missing or older than src/: TypeScript through tsx, which adds its start-up'}), ${firstRuns} runs, median; warm detect() of the same file in this process`,
  );
  console.log('config       one-shot ms  warm detect() ms  overhead ms  peak RSS MB');
  for (const { precision, engine, label } of configs) {
    const wall: number[] = [],
      rss: number[] = [];
    for (let i = 0; i < firstRuns; i++) {
      const args = [...cli, 'detect', hd, '--model', 'extd-64', '--precision', precision, '--engine', engine];
      const t0 = performance.now();
      const r = gnuTime
        ? spawnSync(gnuTime, ['-f', '%M', process.execPath, ...args], { encoding: 'utf8' })
        : spawnSync(process.execPath, args, { encoding: 'utf8' });
      wall.push(performance.now() - t0);
      if (r.status !== 0) throw new Error(`one-shot extd detect failed: ${r.stderr}`);
      if (gnuTime) rss.push(Number(r.stderr.trim().split('\n').pop()) / 1024);
    }
    const d = await createDetector({ model: 'extd-64', threads, precision, engine });
    for (let i = 0; i < 3; i++) await d.detect(hd);
    const warm: number[] = [];
    for (let i = 0; i < Math.max(5, firstRuns); i++) warm.push(await time(() => d.detect(hd)));
    await d.dispose();
    console.log(
      `${label.padEnd(12)}${ms(median(wall)).padStart(11)}${ms(median(warm)).padStart(18)}${ms(median(wall) - median(warm)).padStart(13)}${(rss.length ? median(rss).toFixed(0) : 'n/a').padStart(13)}`,
    );
  }

  console.log(
    '\nIn this process, a new detector (EXTD-64) on the same 1280x720 file: ms to create it, to warm it up (none, or warmUp() at 64x64), then the first three detect() calls',
  );
  console.log('config      warm-up    create   warm-up   1st detect  2nd detect  3rd detect');
  for (const { precision, engine, label } of configs) {
    for (const warm of [false, true]) {
      const t0 = performance.now();
      const d = await createDetector({ model: 'extd-64', threads, precision, engine });
      const t1 = performance.now();
      if (warm) await d.warmUp();
      const t2 = performance.now();
      const calls: number[] = [];
      for (let i = 0; i < 3; i++) calls.push(await time(() => d.detect(hd)));
      await d.dispose();
      console.log(
        `${label.padEnd(12)}${(warm ? '64x64' : 'none').padEnd(7)}${ms(t1 - t0).padStart(9)}${ms(t2 - t1).padStart(10)}${calls.map((c) => ms(c).padStart(12)).join('')}`,
      );
    }
  }
}

// 4: AP.
if (values.ap) {
  const imagesDir = resolve(shared, 'wider/WIDER_val/images');
  const all = widerImageList(imagesDir);
  const n = values['ap-images'] ? Math.min(all.length, Number(values['ap-images'])) : all.length;
  const list = spreadEvenly(all, n);
  const outRoot = join(root, 'bench-results', 'ap');
  mkdirSync(outRoot, { recursive: true });
  const listFile = join(outRoot, `val-${n}.txt`);
  writeFileSync(listFile, list.join('\n') + '\n');
  console.log(`\n4. AP on ${n} WIDER val images (single protocol, ${threads} threads), easy / medium / hard`);
  const apModels = values['ap-models'] ? values['ap-models'].split(',').map((w) => `extd-${w}`) : models;
  for (const name of apModels) {
    const ap: Record<string, { easy: number; medium: number; hard: number }> = {};
    for (const { precision, engine, label } of configs) {
      const out = join(outRoot, `${name}-${label.replace(' ', '-')}-${n}`);
      const r = spawnSync(
        process.execPath,
        [
          ...cli,
          'eval',
          '--model',
          name,
          '--precision',
          precision,
          '--engine',
          engine,
          '--images',
          imagesDir,
          '--gt',
          resolve(shared, 'wider/eval_tools/ground_truth'),
          '--list',
          listFile,
          '--out',
          out,
          '--threads',
          String(threads),
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
      );
      if (r.status !== 0) throw new Error(`extd eval failed for ${name} ${label}`);
      ap[label] = JSON.parse(readFileSync(join(out, 'ap.json'), 'utf8'));
      const a = ap[label]!;
      console.log(`${name.padEnd(10)}${label.padEnd(12)} ${a.easy.toFixed(4)} / ${a.medium.toFixed(4)} / ${a.hard.toFixed(4)}`);
    }
    for (const [x, y] of [
      ['int8', 'float32'],
      ['int8 ort', 'float32'],
      ['float32', BASELINE],
    ] as const) {
      if (!ap[x] || !ap[y]) continue;
      const d = (k: 'easy' | 'medium' | 'hard') => (ap[x]![k] - ap[y]![k]).toFixed(4);
      console.log(`${name.padEnd(10)}${`${x} - ${y}`.padEnd(12)} ${d('easy')} / ${d('medium')} / ${d('hard')}`);
    }
  }
}
console.log(`\nload average ${load()} at the end`);
