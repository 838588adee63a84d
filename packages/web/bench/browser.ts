/**
 * `npm run bench:browser`: median detect() time per 640x480 frame in headless
 * Chromium for EXTD-32 and EXTD-64 on 1 and 2 threads, on each engine (extd's
 * wasm kernels: engine 'auto'; onnxruntime-web's wasm SIMD build: engine
 * 'onnxruntime'), in float32 and (with `--precisions float32,int8`) int8 (onnxruntime-web
 * only), through the demo page and the same harness as the end-to-end test.
 * The frame is a real WIDER photo drawn at 640x480 onto the demo's canvas;
 * each timing covers the full detect(): canvas read-back, preprocessing,
 * inference, decoding and NMS. Not a test: it prints numbers.
 *
 *   npm run bench:browser -- --runs 20 --warmup 3 [--engines auto,onnxruntime] [--precisions float32,int8] [--models 32,64] [--threads 1,2] [--no-node]
 */
import { rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { noChromium, sharedRoot, startHarness } from '../scripts/browser-harness.js';
import { createDetectorWith } from '@extd/core/detector';
import { loadImageRgb } from 'extd/image/node';
import { resizeBilinear } from '@extd/core/image/resize';
import { loadModel } from 'extd/load-model';
import { createOrtNodeSession } from 'extd/runtime/ort-node';

const args = process.argv.slice(2);
/** Exit 2 with one line naming the flag and the problem. */
const bad = (message: string): never => {
  console.error(`bench:browser: ${message}`);
  process.exit(2);
};
const value = (name: string): string | undefined => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) bad(`${name} needs a value`);
  return v;
};
const count = (name: string, fallback: number, min: number) => {
  const raw = value(name);
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < min) bad(`${name} ${raw}: expected an integer >= ${min}`);
  return n;
};
const list = (name: string, fallback: string, allowed: readonly string[]) => {
  const items = (value(name) ?? fallback).split(',');
  for (const x of items) if (!allowed.includes(x)) bad(`${name}: '${x}' is not one of ${allowed.join(', ')}`);
  return items;
};
const RUNS = count('--runs', 15, 1);
const WARMUP = count('--warmup', 3, 0);
const PRECISIONS = list('--precisions', 'float32', ['float32', 'int8']);
const MODELS = list('--models', '32,64', ['32', '48', '64']).map((w) => `extd-${w}`);
const THREADS = list('--threads', '1,2', ['1', '2', '3', '4', '8']).map(Number);
const ENGINES = list('--engines', 'auto,onnxruntime', ['auto', 'onnxruntime']);
const NODE = !args.includes('--no-node');
const IMAGE = '/__shared/wider/WIDER_val/images/35--Basketball/35_Basketball_playingbasketball_35_582.jpg';

const missing = noChromium();
if (missing) {
  console.error(missing);
  process.exit(1);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const outDir = resolve('.tmp', `demo-bench-${process.pid}`);
const harness = await startHarness({ outDir });
try {
  console.log(`headless Chromium, 640x480 frame, ${WARMUP} warm-up + ${RUNS} timed runs each; shared data: ${sharedRoot()}`);
  console.log(
    `load average at the start: ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')} on ${cpus().length} cores`,
  );
  console.log('model     threads  precision  engine                 median ms   min ms   max ms   frames/s');
  for (const model of MODELS) {
    for (const threads of THREADS) {
      for (const precision of PRECISIONS) {
        for (const engine of ENGINES) {
          // The kernels have no int8: 'auto' would run onnxruntime-web, as the 'onnxruntime' row does.
          if (engine === 'auto' && precision === 'int8') continue;
          // onnxruntime-web fixes its thread count when its wasm starts: one fresh page per setting.
          const page = await harness.openDemo({ threads: String(threads), model, precision, engine });
          const ran = await page.evaluate(() => ({
            precision: window.extdDemo.precision(),
            engine: window.extdDemo.engine(),
            runtime: window.extdDemo.runtime(),
            why: window.extdDemo.kernelsError(),
          }));
          if (ran.precision !== precision) throw new Error(`page runs ${ran.precision}, wanted ${precision}`);
          let label: string;
          if (engine === 'auto') {
            const want = threads > 1 ? 'extd-kernels-wasm' : 'extd-kernels-wasm-st';
            if (ran.engine !== want) throw new Error(`page runs ${ran.engine}, wanted ${want}${ran.why ? ` (${ran.why})` : ''}`);
            label = 'extd kernels (wasm)';
          } else {
            if (ran.runtime?.threads !== threads)
              throw new Error(`page runs ${ran.runtime?.threads} threads, wanted ${threads} (cross-origin isolated: ${ran.runtime?.crossOriginIsolated})`);
            label = 'onnxruntime-web wasm';
          }
          const times = await page.evaluate(([url, w, r]) => window.extdDemo.bench(url as string, 640, 480, w as number, r as number), [IMAGE, WARMUP, RUNS]);
          await page.close();
          const m = median(times);
          console.log(
            `${model.padEnd(9)} ${String(threads).padStart(7)}  ${precision.padEnd(9)}  ${label.padEnd(21)}  ${m.toFixed(1).padStart(9)}  ${Math.min(...times)
              .toFixed(1)
              .padStart(7)}  ${Math.max(...times)
              .toFixed(1)
              .padStart(7)}  ${(1000 / m).toFixed(1).padStart(9)}`,
          );
        }
      }
    }
  }
  // The same frame on onnxruntime-node in this process, for scale: on a shared machine the load
  // changes from minute to minute, and the ratio says more than either number alone.
  const frame = resizeBilinear(await loadImageRgb(resolve(sharedRoot(), IMAGE.replace('/__shared/', ''))), 640, 480);
  for (const model of NODE ? MODELS : []) {
    for (const threads of THREADS) {
      const width = model.slice(5);
      const m = await loadModel(resolve(sharedRoot(), 'reference', 'weights', `extd-fpn-${width}-prelu.safetensors`));
      const detector = await createDetectorWith(m, createOrtNodeSession, async (x: typeof frame) => x, threads);
      const times: number[] = [];
      for (let i = 0; i < WARMUP + RUNS; i++) {
        const t0 = performance.now();
        await detector.detect(frame, { scale: 1 });
        if (i >= WARMUP) times.push(performance.now() - t0);
      }
      await detector.dispose();
      const med = median(times);
      console.log(
        `${model.padEnd(9)} ${String(threads).padStart(7)}  ${'float32'.padEnd(9)}  ${'onnxruntime-node'.padEnd(21)}  ${med.toFixed(1).padStart(9)}  ${Math.min(
          ...times,
        )
          .toFixed(1)
          .padStart(7)}  ${Math.max(...times)
          .toFixed(1)
          .padStart(7)}  ${(1000 / med).toFixed(1).padStart(9)}   (Node, for comparison)`,
      );
    }
  }
  console.log(
    `load average at the end: ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')} on ${cpus().length} cores`,
  );
  if (harness.pageErrors.length) console.log(`page errors:\n  ${harness.pageErrors.join('\n  ')}`);
} finally {
  await harness.close();
  rmSync(outDir, { recursive: true, force: true });
}
