import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { predictFolder, readImageList } from '../src/eval/run-node.js';
import { evaluateModel } from '../src/eval/evaluate.js';
import { nativeKernels } from '../src/runtime/native-network.js';
import type { PassDetector } from '@extd/core/eval/protocols';
import { parsePredictionFile } from '@extd/core/eval/predictions';
import { command as evalPreds } from '../src/cli/eval-preds.js';
import type { RgbImage } from '@extd/core/image/types';
import { noShared, sharedPath } from '../../../test-support/shared.js';
import { runCli } from '../../../test-support/cli-run.js';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'extd-eval-'));
}

/** Every file under dir (relative paths), to check nothing half-written or temporary is left. */
function allFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${rel}${e.name}/`);
      else out.push(rel + e.name);
    }
  };
  if (existsSync(dir)) walk(dir, '');
  return out.sort();
}

const IMAGES = ['ev/a.jpg', 'ev/b.jpg', 'ev/c.jpg', 'ev2/d.jpg'];
const fakeDecode = async (p: string): Promise<RgbImage> => ({ data: new Uint8Array(30 * 20 * 3), width: 30, height: 20, ...{ path: p } });

class CountingDetector implements PassDetector {
  calls = 0;
  constructor(private readonly failOnCall = Infinity) {}
  async detectPass(): Promise<{ boxes: Float32Array; scores: Float32Array }> {
    this.calls++;
    if (this.calls === this.failOnCall) throw new Error('simulated crash');
    return { boxes: Float32Array.from([1, 2, 11, 12]), scores: Float32Array.from([0.5]) };
  }
}

test('image lists: comments, blank lines, line-numbered errors', () => {
  const dir = tmp();
  try {
    const p = join(dir, 'list.txt');
    writeFileSync(p, '# subset\nev/a.jpg\n\nev/b\n');
    assert.deepEqual(readImageList(p), ['ev/a.jpg', 'ev/b']);
    writeFileSync(p, 'ev/a.jpg\nnot an image path\n');
    assert.throws(() => readImageList(p), new RegExp(`${p}:2: 'not an image path'`));
    writeFileSync(p, 'ev/a.jpg\nev/a\n');
    assert.throws(() => readImageList(p), /:2: 'ev\/a' is listed twice/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('resume: finished images are not redone; an interrupted run leaves only complete files', async () => {
  const dir = tmp();
  const predDir = join(dir, 'pred');
  try {
    const base = { decode: fakeDecode, imagesDir: dir, images: IMAGES, predDir, protocol: 'single' as const, force: false };
    // A run that crashes while processing the third image.
    const crashing = new CountingDetector(3);
    await assert.rejects(predictFolder({ ...base, detector: crashing }), /simulated crash/);
    assert.deepEqual(allFiles(predDir), ['ev/a.txt', 'ev/b.txt']);
    const before = readFileSync(join(predDir, 'ev/a.txt'), 'utf8');
    const mtime = statSync(join(predDir, 'ev/a.txt')).mtimeMs;
    // The rerun only does the two remaining images.
    const resumed = new CountingDetector();
    let skippedSeen = -1;
    const r = await predictFolder({ ...base, detector: resumed, onSkip: (n) => (skippedSeen = n) });
    assert.deepEqual(r, { predicted: 2, skipped: 2 });
    assert.equal(skippedSeen, 2);
    assert.equal(resumed.calls, 2);
    assert.equal(readFileSync(join(predDir, 'ev/a.txt'), 'utf8'), before);
    assert.equal(statSync(join(predDir, 'ev/a.txt')).mtimeMs, mtime);
    assert.deepEqual(allFiles(predDir), ['ev/a.txt', 'ev/b.txt', 'ev/c.txt', 'ev2/d.txt']);
    for (const f of allFiles(predDir)) parsePredictionFile(readFileSync(join(predDir, f), 'utf8'), f);
    // --force redoes everything.
    const forced = new CountingDetector();
    assert.deepEqual(await predictFolder({ ...base, detector: forced, force: true }), { predicted: 4, skipped: 0 });
    assert.equal(forced.calls, 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('settings.json: a prediction folder is reused only by a run with the same settings', async () => {
  const dir = tmp();
  const predDir = join(dir, 'pred');
  try {
    const settings = { model: 'aaaa', variant: 'extd-fpn-32-prelu', protocol: 'single', scale: 1 };
    const base = { decode: fakeDecode, imagesDir: dir, images: IMAGES, predDir, protocol: 'single' as const, force: false, settings };
    assert.deepEqual(await predictFolder({ ...base, detector: new CountingDetector() }), { predicted: 4, skipped: 0 });
    assert.deepEqual(JSON.parse(readFileSync(join(predDir, 'settings.json'), 'utf8')), settings);
    // The same settings: everything reused.
    const same = new CountingDetector();
    assert.deepEqual(await predictFolder({ ...base, detector: same }), { predicted: 0, skipped: 4 });
    assert.equal(same.calls, 0);
    // Another scale or model: refused, naming what differs, with nothing changed.
    const other = new CountingDetector();
    await assert.rejects(
      predictFolder({ ...base, detector: other, settings: { ...settings, scale: 0.5 } }),
      (e: Error) => e.message === `${predDir} holds predictions made with other settings: scale 1 there, 0.5 now (use a new --out, or --force to discard them)`,
    );
    await assert.rejects(predictFolder({ ...base, detector: other, settings: { ...settings, model: 'bbbb' } }), /model "aaaa" there, "bbbb" now/);
    assert.equal(other.calls, 0);
    assert.deepEqual(JSON.parse(readFileSync(join(predDir, 'settings.json'), 'utf8')), settings);
    // --force discards every old file (also of images not in this run) and records the new settings.
    const forced = new CountingDetector();
    const r = await predictFolder({ ...base, images: IMAGES.slice(0, 2), detector: forced, force: true, settings: { ...settings, scale: 0.5 } });
    assert.deepEqual(r, { predicted: 2, skipped: 0 });
    assert.deepEqual(allFiles(predDir), ['ev/a.txt', 'ev/b.txt', 'settings.json']);
    assert.equal(JSON.parse(readFileSync(join(predDir, 'settings.json'), 'utf8')).scale, 0.5);
    // A damaged record, or none at all: the predictions are not trusted either.
    writeFileSync(join(predDir, 'settings.json'), 'null');
    await assert.rejects(predictFolder({ ...base, detector: other }), /settings\.json: unreadable \(not a JSON object\)/);
    rmSync(join(predDir, 'settings.json'));
    await assert.rejects(predictFolder({ ...base, detector: other }), new RegExp(`${predDir} holds 2 prediction files without a settings\\.json`));
    // An empty folder is simply claimed.
    rmSync(predDir, { recursive: true });
    assert.deepEqual(await predictFolder({ ...base, detector: new CountingDetector() }), { predicted: 4, skipped: 0 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const DEV = 'reference/wider_pred/dev108-extd64-single';
test('eval-preds CLI reproduces expected.json and writes ap.json and the figures', { skip: noShared(DEV) || noShared('wider/eval_tools') }, async () => {
  const out = tmp();
  try {
    const log = console.log;
    const lines: string[] = [];
    console.log = (s: string) => lines.push(s);
    const errLog = console.error;
    console.error = () => {};
    let code: number;
    try {
      code = await evalPreds.run([
        '--preds',
        sharedPath(DEV),
        '--gt',
        sharedPath('wider/eval_tools/ground_truth'),
        '--list',
        sharedPath(DEV, 'images.txt'),
        '--out',
        out,
      ]);
    } finally {
      console.log = log;
      console.error = errLog;
    }
    assert.equal(code, 0);
    assert.match(lines.join('\n'), /hard\s+0\.8601\s+942/);
    const ap = JSON.parse(readFileSync(join(out, 'ap.json'), 'utf8'));
    const expected = JSON.parse(readFileSync(sharedPath(DEV, 'expected.json'), 'utf8'));
    for (const s of ['easy', 'medium', 'hard']) assert.ok(Math.abs(ap[s] - expected[s]) < 1e-4, s);
    assert.equal(ap.images, 108);
    const png = readFileSync(join(out, 'pr-hard.png'));
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]); // "PNG"
    assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [900, 720]);
    const svg = readFileSync(join(out, 'pr-hard.svg'), 'utf8');
    // Legend sorted by AP: our 0.860 sits between two published detectors that bracket it.
    const legend = [...svg.matchAll(/>(\d\.\d{3}) ([^<]+)<\/text>/g)].map((m) => Number(m[1]));
    assert.ok(legend.length > 10, `legend rows: ${legend.length}`);
    assert.deepEqual(
      legend,
      [...legend].sort((a, b) => b - a),
    );
    assert.match(svg, />0\.860 /);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("the issue's recipe: one prediction equal to the image's only face, score 0.990, scores AP 1 in all settings (eval-preds CLI)", {
  skip: noShared('wider/eval_tools/ground_truth'),
}, () => {
  const dir = tmp();
  try {
    const write = (rows: string[]) => {
      mkdirSync(join(dir, 'pred', '1--Handshaking'), { recursive: true });
      writeFileSync(
        join(dir, 'pred', '1--Handshaking', '1_Handshaking_Handshaking_1_107.txt'),
        ['1_Handshaking_Handshaking_1_107.jpg', String(rows.length), ...rows, ''].join('\n'),
      );
      return runCli(['eval-preds', '--preds', join(dir, 'pred'), '--gt', sharedPath('wider/eval_tools/ground_truth')]);
    };
    // Every score equal: the official normalisation divides by zero (AP 0.0000 before); defined as all 1.
    const alone = write(['391 177 174 258 0.990']);
    assert.equal(alone.code, 0, alone.stderr);
    for (const s of ['easy', 'medium', 'hard']) assert.match(alone.stdout, new RegExp(`^${s}\\s+1\\.0000\\s+1$`, 'm'), alone.stdout);
    // With a wrong box at 0.500 beside it the range is 0.49: the same AP.
    const withWrong = write(['391 177 174 258 0.990', '10 10 50 50 0.500']);
    for (const s of ['easy', 'medium', 'hard']) assert.match(withWrong.stdout, new RegExp(`^${s}\\s+1\\.0000\\s+1$`, 'm'), withWrong.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Smallest validation images, so the real model runs quickly.
const SMALL = [
  '54--Rescue/54_Rescue_firemanrescue_54_969.jpg',
  '13--Interview/13_Interview_Interview_Sequences_13_134.jpg',
  '13--Interview/13_Interview_Interview_Sequences_13_189.jpg',
  '61--Street_Battle/61_Street_Battle_streetfight_61_767.jpg',
  '24--Soldier_Firing/24_Soldier_Firing_Soldier_Firing_24_763.jpg',
  '29--Students_Schoolkids/29_Students_Schoolkids_Students_Schoolkids_29_761.jpg',
];
test('extd eval killed mid-run: no half-written prediction file, the rerun skips finished images', {
  skip: noShared('reference/weights/EXTD_32.pth') || noShared('wider/WIDER_val/images', SMALL[0]!),
}, async () => {
  const dir = tmp();
  try {
    const list = join(dir, 'list.txt');
    writeFileSync(list, SMALL.join('\n') + '\n');
    const out = join(dir, 'out');
    const args = [
      'eval',
      '--model',
      sharedPath('reference/weights/EXTD_32.pth'),
      '--images',
      sharedPath('wider/WIDER_val/images'),
      '--gt',
      sharedPath('wider/eval_tools/ground_truth'),
      '--list',
      list,
      '--out',
      out,
      '--protocol',
      'single',
      '--threads',
      '1',
    ];
    const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
    const script = `const { main } = await import(${JSON.stringify(main)}); process.exitCode = await main(${JSON.stringify(args)});`;
    const predDir = join(out, 'pred');
    // Prediction files only: not temporaries of interrupted writes, not the settings record.
    const predictionFiles = () => allFiles(predDir).filter((f) => f.includes('/') && !f.split('/').pop()!.startsWith('.tmp-'));
    // First run: kill it as soon as the first prediction file appears (waiting for a prediction file,
    // not any .txt: on a loaded machine the settings record could come well before the first one).
    const child = spawn(process.execPath, ['--conditions=extd-source', '--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'ignore' });
    const exited = new Promise<void>((res) => child.on('exit', () => res()));
    while (predictionFiles().filter((f) => f.endsWith('.txt')).length === 0) {
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGKILL');
    await exited;
    const afterKill = predictionFiles();
    assert.ok(afterKill.length >= 1 && afterKill.length < SMALL.length, `files after kill: ${afterKill.join(', ')}`);
    for (const f of afterKill) parsePredictionFile(readFileSync(join(predDir, f), 'utf8'), f);
    const kept = new Map(afterKill.map((f) => [f, statSync(join(predDir, f)).mtimeMs]));
    // Second run to completion.
    const second = spawn(process.execPath, ['--conditions=extd-source', '--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    second.stderr.on('data', (d) => (stderr += d));
    let stdout = '';
    second.stdout.on('data', (d) => (stdout += d));
    const code = await new Promise<number>((res) => second.on('exit', (c) => res(c ?? -1)));
    assert.equal(code, 0, stderr);
    assert.match(stderr, new RegExp(`resuming: ${afterKill.length} of ${SMALL.length} images`));
    for (const [f, m] of kept) assert.equal(statSync(join(predDir, f)).mtimeMs, m, `${f} was redone`);
    const final = predictionFiles();
    assert.equal(final.length, SMALL.length);
    assert.match(stdout, /hard\s+\d\.\d{4}/);
    assert.ok(existsSync(join(out, 'ap.json')));
    const settings = JSON.parse(readFileSync(join(predDir, 'settings.json'), 'utf8'));
    assert.deepEqual(Object.keys(settings).sort(), ['model', 'protocol', 'scale', 'variant']);
    assert.match(settings.model, /^[0-9a-f]{64}$/);
    // The same folder at another scale: refused in one line, predictions untouched.
    const rescaled = `const { main } = await import(${JSON.stringify(main)}); process.exitCode = await main(${JSON.stringify([...args, '--scale', '0.5'])});`;
    const third = spawn(process.execPath, ['--conditions=extd-source', '--import', 'tsx', '--input-type=module', '-e', rescaled], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr3 = '';
    third.stderr.on('data', (d) => (stderr3 += d));
    assert.equal(await new Promise<number>((res) => third.on('exit', (c) => res(c ?? -1))), 1);
    assert.match(stderr3, /holds predictions made with other settings: scale 1 there, 0\.5 now/);
    assert.equal(stderr3.trim().split('\n').length, 1, stderr3);
    assert.deepEqual(predictionFiles(), final);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an int8 prediction folder records what quantised it: the engine on the native kernels, the ranges file on onnxruntime', {
  skip:
    noShared('wider', 'WIDER_val', 'images') ||
    noShared('wider', 'eval_tools', 'ground_truth') ||
    (!nativeKernels()?.int8 && 'native kernels without int8 (AVX512-VNNI)'),
  timeout: 120_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'extd-int8-settings-'));
  try {
    const images = sharedPath('wider', 'WIDER_val', 'images');
    const list = join(dir, 'list.txt');
    writeFileSync(list, `${readdirSync(join(images, '0--Parade'))[0]!.replace(/\.jpg$/, '')}\n`.replace(/^/, '0--Parade/'));
    const run = (engine: 'auto' | 'onnxruntime', out: string) =>
      evaluateModel({
        gt: sharedPath('wider', 'eval_tools', 'ground_truth'),
        images,
        out: join(dir, out),
        model: 'extd-32',
        list,
        protocol: 'single',
        scale: 1,
        force: false,
        threads: 2,
        precision: 'int8',
        engine,
      });
    await run('auto', 'kernels');
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'kernels', 'pred', 'settings.json'), 'utf8')).engine, 'extd-kernels');
    assert.equal(JSON.parse(readFileSync(join(dir, 'kernels', 'pred', 'settings.json'), 'utf8')).calibration, undefined);
    await run('onnxruntime', 'ort');
    assert.match(JSON.parse(readFileSync(join(dir, 'ort', 'pred', 'settings.json'), 'utf8')).calibration, /^[0-9a-f]{64}$/);
    // The kernels' predictions are not reused by an onnxruntime int8 run (nor the other way round).
    await assert.rejects(
      run('onnxruntime', 'kernels'),
      /holds predictions made with other settings: calibration .*; engine "extd-kernels" there, \(none\) now/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
