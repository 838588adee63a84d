/**
 * The demo page in a real (headless) Chromium: the released EXTD-64 on
 * onnxruntime-web must reproduce the golden detections with the same
 * tolerances as the Node parity test. The page is fed the golden PIXELS
 * (browser JPEG decoders may differ from libjpeg-turbo); how the browser's
 * own decode compares is measured and reported as a diagnostic.
 * A screenshot with the boxes drawn goes to test-artifacts/.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { noChromium, startHarness, type Harness } from '../scripts/browser-harness.js';
import { GOLDEN_TAGS, assertMatchesGolden, readGolden } from './golden.js';
import { noShared } from './shared.js';

const skip = noChromium() || noShared('reference', 'golden') || noShared('reference', 'weights', 'extd-fpn-64-prelu.safetensors');
const ARTIFACTS = resolve('test-artifacts');

// One demo build, server and Chromium for both tests (each start costs seconds).
const OUT_DIR = resolve('.tmp', `demo-e2e-${process.pid}`);
let harnessStarted: Promise<Harness> | undefined;
const harness = () => (harnessStarted ??= startHarness({ outDir: OUT_DIR }));
after(async () => {
  await (await harnessStarted?.catch(() => undefined))?.close();
  rmSync(OUT_DIR, { recursive: true, force: true });
});

function compareWithGolden(tag: string, ours: { boxesXyxy: number[]; scores: number[] }, label: string): void {
  assertMatchesGolden(tag, 64, { boxes: ours.boxesXyxy, scores: ours.scores }, label);
}

test('demo page in Chromium reproduces the golden EXTD-64 detections', { skip, timeout: 110_000 }, async (t) => {
  const h = await harness();
  // A browser build that pulled in Node modules makes Vite warn ("externalized for browser compatibility").
  const nodeWarnings = h.server.buildWarnings.filter((w) => /externali[sz]ed|node:|built-?in/i.test(w));
  assert.deepEqual(nodeWarnings, [], 'Vite warnings about Node modules in the browser build');

  const page = await h.openDemo({ threads: '2', model: 'extd-64' });
  const runtime = await page.evaluate(() => window.extdDemo.runtime());
  t.diagnostic(`runtime: ${JSON.stringify(runtime)}`);
  assert.equal(runtime?.crossOriginIsolated, true, 'page is cross-origin isolated (COOP/COEP)');
  assert.equal(runtime?.threads, 2, 'wasm threads');

  // Two golden images, one per input path: ImageData (converted directly) and a canvas
  // (drawImage + getImageData through the reader's own canvas). The third, the largest, adds
  // time but no new code path.
  const paths = [
    [GOLDEN_TAGS[0], 'imagedata'],
    [GOLDEN_TAGS[1], 'canvas'],
  ] as const;
  for (const [tag, via] of paths) {
    const pixelsUrl = `/__shared/reference/golden/${tag}.pixels.safetensors`;
    const ours = await page.evaluate(([url, v]) => window.extdDemo.detectPixels(url!, v as 'imagedata' | 'canvas'), [pixelsUrl, via]);
    compareWithGolden(tag, ours, `${via} input`);
    if (tag === GOLDEN_TAGS[0]) {
      mkdirSync(ARTIFACTS, { recursive: true });
      const shot = join(ARTIFACTS, `browser-e2e-${tag}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      t.diagnostic(`screenshot: ${shot}`);
    }
  }

  // The browser's own JPEG decode, for information: reported, not asserted.
  const tag = GOLDEN_TAGS[0];
  const meta = readGolden(`${tag}.pixels.safetensors`).metadata;
  const image = meta.image ?? '';
  const jpeg = image.startsWith('WIDER_val') ? image : `WIDER_val/images/${image}`;
  const decode = await page.evaluate(
    ([j, p]) => window.extdDemo.compareDecode(j!, p!),
    [`/__shared/wider/${jpeg}`, `/__shared/reference/golden/${tag}.pixels.safetensors`],
  );
  t.diagnostic(
    `browser JPEG decode of ${jpeg} vs golden pixels: ${decode.width}x${decode.height}, ` +
      `${decode.differing} of ${decode.width * decode.height * 3} values differ (max ${decode.maxAbs}, mean |diff| ${decode.meanAbs.toFixed(4)})`,
  );
  assert.ok(decode.sameSize, 'browser decode has the golden image size');
  assert.deepEqual(h.pageErrors, [], 'errors logged by the page');
  await page.close();
});

test('demo webcam mode runs on a (fake) camera and reuses its frame buffer', { skip: noChromium() || noShared('reference', 'weights', 'extd-fpn-32-prelu.safetensors'), timeout: 90_000 }, async () => {
  const h = await harness();
  const page = await h.openDemo({ threads: '2', model: 'extd-32' });
  await page.click('#webcam');
  // Two status updates with a frame rate = at least two frames through detect().
  for (let i = 0; i < 2; i++) {
    const before = await page.textContent('#status');
    await page.waitForFunction((prev) => {
      const s = document.getElementById('status')!.textContent ?? '';
      return /FPS/.test(s) && s !== prev;
    }, before, { timeout: 60_000 });
  }
  const status = (await page.textContent('#status')) ?? '';
  assert.match(status, /extd-fpn-32-prelu: \d+ faces?, detect [\d.]+ ms, [\d.]+ FPS \(\d+x\d+\)/);
  assert.equal(await page.textContent('#webcam'), 'Stop webcam');
  const read = await page.evaluate(() => window.extdDemo.readVideoTwice());
  assert.ok(read.width > 0 && read.height > 0 && read.nonZero, `video frame read: ${JSON.stringify(read)}`);
  assert.equal(read.sameBuffer, true, 'consecutive frames of one size share the RGB buffer');
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'browser-e2e-webcam.png') });
  await page.click('#webcam');
  assert.equal(await page.textContent('#webcam'), 'Start webcam');
  assert.deepEqual(h.pageErrors, [], 'errors logged by the page');
  await page.close();
});
