import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RgbImage } from '@extd/core/image/types';
import { Rng } from '@extd/core/utils/rng';
import { INTERPOLATIONS, resampleRegion, type Interpolation } from '@extd/core/image/interp';
import { adjustBrightness, adjustContrast, adjustSaturation, hsv8ToRgb, luma, photometricDistort, rgbToHsv8, shiftHue } from '../src/train/photometric.js';
import {
  AUGMENT_DEFAULTS,
  augment,
  augmentImage,
  dropSmallBoxes,
  flipBoxesXyxy,
  planAnchorSampling,
  planSquareCrop,
  projectBoxes,
  toNetworkInput,
} from '../src/train/augment.js';

function solid(width: number, height: number, rgb: [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) data.set(rgb, 3 * i);
  return { data, width, height };
}

function px(img: RgbImage, x: number, y: number): [number, number, number] {
  const i = 3 * (y * img.width + x);
  return [img.data[i]!, img.data[i + 1]!, img.data[i + 2]!];
}

// ---------- RNG ----------

test('rng: xoshiro128** reference outputs, state round trip, key streams', () => {
  // First outputs of xoshiro128** from state (1, 2, 3, 4), worked out by hand from the algorithm.
  const r = Rng.fromState([1, 2, 3, 4]);
  assert.deepEqual([r.nextU32(), r.nextU32(), r.nextU32()], [11520, 0, 5927040]);

  const a = Rng.fromKey(42, 3, 1000);
  a.float();
  const saved = a.state();
  const x = [a.nextU32(), a.nextU32(), a.int(7)];
  const b = Rng.fromState(JSON.parse(JSON.stringify(saved)));
  assert.deepEqual([b.nextU32(), b.nextU32(), b.int(7)], x);

  assert.equal(Rng.fromKey(1, 2).nextU32(), Rng.fromKey(1, 2).nextU32());
  assert.notEqual(Rng.fromKey(1, 2).nextU32(), Rng.fromKey(2, 1).nextU32());
  assert.notEqual(Rng.fromKey(2 ** 40).nextU32(), Rng.fromKey(0).nextU32());
  assert.throws(() => Rng.fromKey(0.5), /not an integer/);
  assert.throws(() => Rng.fromState([0, 0, 0, 0]), /all zeros/);

  // int(n) covers 0..n-1 roughly uniformly; float in [0, 1).
  const c = Rng.fromSeed(9);
  const counts = new Array(6).fill(0);
  for (let i = 0; i < 60000; i++) counts[c.int(6)]++;
  for (const k of counts) assert.ok(Math.abs(k - 10000) < 500, `int(6) counts ${counts}`);
  const perm = Rng.fromSeed(3).permutation(50);
  assert.deepEqual(
    [...perm].sort((p, q) => p - q),
    [...Array(50).keys()],
  );
});

// ---------- interpolation ----------

function randomImage(w: number, h: number, seed: number): RgbImage {
  const rng = Rng.fromSeed(seed);
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
  return { data, width: w, height: h };
}

test('interp: same-size resample is the identity for every kernel', () => {
  const img = randomImage(13, 9, 1);
  for (const k of INTERPOLATIONS) {
    const out = resampleRegion(img, { x: 0, y: 0, width: 13, height: 9 }, 13, 9, k);
    assert.deepEqual(out.data, img.data, k);
  }
});

test('interp: constant images stay constant at any scale and offset', () => {
  const img = solid(37, 23, [200, 17, 90]);
  for (const k of INTERPOLATIONS) {
    for (const [w, h] of [
      [64, 64],
      [5, 7],
      [100, 11],
    ] as const) {
      const out = resampleRegion(img, { x: 1.3, y: 2.7, width: 30.1, height: 17.5 }, w, h, k);
      for (let i = 0; i < w * h; i++) assert.deepEqual([out.data[3 * i], out.data[3 * i + 1], out.data[3 * i + 2]], [200, 17, 90], `${k} ${w}x${h}`);
    }
  }
});

test('interp: 2x reduction by linear and area averages 2x2 blocks', () => {
  const img = randomImage(8, 6, 2);
  for (const k of ['linear', 'area'] as Interpolation[]) {
    const out = resampleRegion(img, { x: 0, y: 0, width: 8, height: 6 }, 4, 3, k);
    for (let y = 0; y < 3; y++) {
      for (let x = 0; x < 4; x++) {
        for (let c = 0; c < 3; c++) {
          const s =
            [px(img, 2 * x, 2 * y), px(img, 2 * x + 1, 2 * y), px(img, 2 * x, 2 * y + 1), px(img, 2 * x + 1, 2 * y + 1)].reduce((t, p) => t + p[c]!, 0) / 4;
          assert.ok(Math.abs(out.data[3 * (y * 4 + x) + c]! - s) <= 0.5 + 1e-9, `${k} (${x},${y}) got ${out.data[3 * (y * 4 + x) + c]} want ${s}`);
        }
      }
    }
  }
});

test('interp: output pixels mapping outside the image get the fill colour', () => {
  const img = solid(10, 10, [250, 250, 250]);
  // Region covers x -10..10: left half of the output is outside.
  const out = resampleRegion(img, { x: -10, y: 0, width: 20, height: 10 }, 20, 10, 'cubic', [1, 2, 3]);
  assert.deepEqual(px(out, 3, 5), [1, 2, 3]);
  assert.deepEqual(px(out, 15, 5), [250, 250, 250]);
});

// ---------- photometric ----------

test('photometric: PIL ImageEnhance semantics on hand-computed pixels', () => {
  const img = (): RgbImage => ({ data: new Uint8Array([100, 50, 200, 10, 20, 30]), width: 2, height: 1 });
  let a = img();
  adjustBrightness(a, 1.1);
  // 110, 55, 220, 11, 22, 33 (float blend with black, truncated)
  assert.deepEqual([...a.data], [110, 55, 220, 11, 22, 33]);

  assert.equal(luma(100, 50, 200), Math.floor((100 * 19595 + 50 * 38470 + 200 * 7471 + 32768) / 65536));
  // Contrast: mean luma of (100,50,200) -> 82 and (10,20,30) -> 18: mean 50.
  a = img();
  adjustContrast(a, 0.5);
  assert.deepEqual([...a.data], [75, 50, 125, 30, 35, 40]);
  // Saturation: blend each pixel with its own luma (82 and 18).
  a = img();
  adjustSaturation(a, 0);
  assert.deepEqual([...a.data], [82, 82, 82, 18, 18, 18]);
  a = img();
  adjustSaturation(a, 1.5);
  // 82 + 1.5 * (100 - 82) = 109; 82 + 1.5 * (50 - 82) = 34; 82 + 1.5 * 118 = 259 -> 255
  assert.deepEqual([...a.data.subarray(0, 3)], [109, 34, 255]);
});

test('photometric: 8-bit HSV matches PIL on primaries and hue shift rotates them', () => {
  const hsv = new Uint8Array(3);
  rgbToHsv8(255, 0, 0, hsv);
  assert.deepEqual([...hsv], [0, 255, 255]);
  rgbToHsv8(0, 255, 0, hsv);
  assert.deepEqual([...hsv], [85, 255, 255]);
  rgbToHsv8(0, 0, 255, hsv);
  assert.deepEqual([...hsv], [170, 255, 255]);
  const out = new Uint8Array(3);
  hsv8ToRgb(85, 255, 255, out, 0);
  assert.deepEqual([...out], [0, 255, 0]);
  // Round trip within 8-bit quantisation for random colours.
  const rng = Rng.fromSeed(5);
  for (let i = 0; i < 2000; i++) {
    const c = [rng.int(256), rng.int(256), rng.int(256)] as const;
    rgbToHsv8(c[0], c[1], c[2], hsv);
    hsv8ToRgb(hsv[0]!, hsv[1]!, hsv[2]!, out, 0);
    for (let k = 0; k < 3; k++) assert.ok(Math.abs(out[k]! - c[k]!) <= 6, `${c} -> ${[...hsv]} -> ${[...out]}`);
  }
  const red = { data: new Uint8Array([255, 0, 0, 128, 128, 128]), width: 2, height: 1 };
  shiftHue(red, 85);
  assert.deepEqual([...red.data], [0, 255, 0, 128, 128, 128]);
  shiftHue(red, -85 - 256);
  assert.deepEqual([...red.data], [255, 0, 0, 128, 128, 128]);
});

test('photometric: probabilities and factor ranges over many draws', () => {
  const rng = Rng.fromSeed(11);
  const fired = { brightness: 0, contrast: 0, saturation: 0, hue: 0 };
  const N = 4000;
  for (let i = 0; i < N; i++) {
    const steps = photometricDistort(solid(2, 2, [90, 120, 150]), rng);
    for (const s of steps) {
      fired[s.op]++;
      if (s.op === 'brightness') assert.ok(s.factor >= 0.875 && s.factor < 1.125);
      if (s.op === 'contrast' || s.op === 'saturation') assert.ok(s.factor >= 0.5 && s.factor < 1.5);
      if (s.op === 'hue') assert.ok(s.delta >= -18 && s.delta < 18);
    }
  }
  for (const [op, k] of Object.entries(fired)) assert.ok(Math.abs(k / N - 0.5) < 0.04, `${op} fired ${k}/${N}`);
});

// ---------- geometry ----------

test('geometry: flip, projection, small-face filter by hand', () => {
  assert.deepEqual([...flipBoxesXyxy(new Float32Array([10, 20, 30, 40]), 100)], [70, 20, 90, 40]);
  const region = { x: 100, y: 50, width: 200, height: 200 };
  const boxes = new Float32Array([
    150,
    100,
    250,
    200, // inside: -> (100,100)-(300,300) at 2x
    90,
    60,
    130,
    80, // centre x 110 inside, clipped on the left -> (0, 20)-(60, 60)
    10,
    10,
    60,
    60, // centre outside: dropped
    290,
    240,
    330,
    280, // centre (310, 260) outside: dropped
  ]);
  assert.deepEqual([...projectBoxes(boxes, region, 400, 400)], [100, 100, 300, 300, 0, 20, 60, 60]);
  assert.deepEqual([...projectBoxes(new Float32Array(0), region, 400, 400)], []);
  assert.deepEqual([...dropSmallBoxes(new Float32Array([0, 0, 6, 6, 0, 0, 5.9, 50, 0, 0, 50, 5]), 6)], [0, 0, 6, 6]);
});

test('geometry: square crops are inside the image, sized 0.3..1 of the short side, and hold a face', () => {
  const W = 500,
    H = 300;
  const boxes = new Float32Array([40, 40, 80, 90, 400, 200, 430, 240]);
  for (let s = 0; s < 300; s++) {
    const p = planSquareCrop(W, H, boxes, Rng.fromKey(1, s));
    assert.equal(p.mode, 'crop');
    const { x, y, width, height } = p.region;
    assert.equal(width, height);
    assert.ok(width >= 0.3 * H - 1e-9 && width <= H + 1e-9);
    assert.ok(x >= 0 && y >= 0 && x + width <= W + 1e-9 && y + height <= H + 1e-9);
    let holds = false;
    for (let i = 0; i < 2; i++) {
      if (boxes[4 * i]! >= x && boxes[4 * i + 1]! >= y && boxes[4 * i + 2]! <= x + width && boxes[4 * i + 3]! <= y + height) holds = true;
    }
    assert.ok(holds);
  }
  // A face wider than the short side can never be held: falls back to the whole image.
  const p = planSquareCrop(W, H, new Float32Array([10, 10, 490, 200]), Rng.fromSeed(1));
  assert.deepEqual(p, { mode: 'full', region: { x: 0, y: 0, width: W, height: H } });
});

test('geometry: data-anchor-sampling sizes the face to an allowed anchor x 2^U(-1,1) and contains it', () => {
  const W = 1024,
    H = 768,
    S = 640;
  // One 20 x 20 face: nearest anchor 16 (index 0), targets 16 or 32, final side in [8, 64].
  // One 100 x 100 face: nearest 128 (index 3), targets 16..256, final side in [8, 512].
  const boxes = new Float32Array([300, 200, 320, 220, 600, 300, 700, 400]);
  const seen = new Set<number>();
  for (let s = 0; s < 400; s++) {
    const p = planAnchorSampling(W, H, boxes, Rng.fromKey(2, s), S);
    assert.equal(p.mode, 'anchor');
    const scale = S / p.region.width;
    const out = projectBoxes(boxes, p.region, S, S);
    // Which face was chosen is not exposed; at least one face must be held entirely with a legal size.
    let ok = false;
    for (let i = 0; i < 2; i++) {
      const side = (boxes[4 * i + 2]! - boxes[4 * i]!) * scale;
      const maxSide = i === 0 ? 64 : 512;
      const inside =
        boxes[4 * i]! >= p.region.x &&
        boxes[4 * i + 2]! <= p.region.x + p.region.width &&
        boxes[4 * i + 1]! >= p.region.y &&
        boxes[4 * i + 3]! <= p.region.y + p.region.height;
      if (side >= 8 - 1e-6 && side <= maxSide + 1e-6 && inside) ok = true;
    }
    assert.ok(ok, `seed ${s}: region ${JSON.stringify(p.region)}`);
    assert.ok(out.length >= 4);
    seen.add(Math.round(Math.log2(scale) * 2));
  }
  assert.ok(seen.size > 5, 'scales vary');
});

// ---------- whole pipeline: boxes stay on the pixels ----------

const BG: [number, number, number] = [128, 128, 128];
const FACE_COLOURS: Array<[number, number, number]> = [
  [220, 30, 30],
  [30, 200, 30],
  [30, 30, 220],
  [230, 220, 20],
  [200, 20, 200],
  [20, 210, 210],
];

/** A 600 x 450 grey image with coloured rectangles ("faces") of assorted sizes, well apart. */
function syntheticScene(): { image: RgbImage; boxes: Float32Array } {
  const image = solid(600, 450, BG);
  const rects = [
    [40, 40, 120, 140],
    [200, 60, 230, 95],
    [330, 40, 520, 230],
    [60, 250, 75, 268],
    [170, 300, 290, 410],
    [420, 320, 470, 380],
  ];
  rects.forEach(([x1, y1, x2, y2], i) => {
    for (let y = y1!; y < y2!; y++) for (let x = x1!; x < x2!; x++) image.data.set(FACE_COLOURS[i]!, 3 * (y * 600 + x));
  });
  return { image, boxes: new Float32Array(rects.flat()) };
}

/** Index of the nearest reference colour: -1 background (grey or padding mean), else a face colour. */
function classify(p: readonly number[]): number {
  const d = (c: readonly number[]) => (p[0]! - c[0]!) ** 2 + (p[1]! - c[1]!) ** 2 + (p[2]! - c[2]!) ** 2;
  let best = -1;
  let bestD = Math.min(d(BG), d(AUGMENT_DEFAULTS.mean));
  FACE_COLOURS.forEach((c, i) => {
    if (d(c) < bestD) {
      bestD = d(c);
      best = i;
    }
  });
  return best;
}

/**
 * Every output box must sit on one rectangle: its interior (shrunk by `m`)
 * is that colour and the ring just outside it (m..m+2 px) is not.
 */
function checkBoxesOnPixels(img: RgbImage, boxes: Float32Array, m: number, label: string): void {
  for (let b = 0; b < boxes.length / 4; b++) {
    const [x1, y1, x2, y2] = boxes.subarray(4 * b, 4 * b + 4);
    const counts = new Map<number, number>();
    let n = 0;
    for (let y = Math.ceil(y1! + m); y < Math.floor(y2! - m); y++) {
      for (let x = Math.ceil(x1! + m); x < Math.floor(x2! - m); x++) {
        const k = classify(px(img, x, y));
        counts.set(k, (counts.get(k) ?? 0) + 1);
        n++;
      }
    }
    if (n === 0) continue; // box thinner than 2m: nothing to check inside
    const [colour, c] = [...counts.entries()].sort((p, q) => q[1] - p[1])[0]!;
    assert.ok(colour >= 0 && c === n, `${label} box ${b} [${[x1, y1, x2, y2].map((v) => v!.toFixed(1))}]: interior ${JSON.stringify([...counts])}`);
    let ringSame = 0;
    let ring = 0;
    for (let y = Math.floor(y1! - m - 2); y <= Math.ceil(y2! + m + 2); y++) {
      for (let x = Math.floor(x1! - m - 2); x <= Math.ceil(x2! + m + 2); x++) {
        if (x < 0 || y < 0 || x >= img.width || y >= img.height) continue;
        const outside = x < x1! - m - 1 || x > x2! + m || y < y1! - m - 1 || y > y2! + m;
        if (!outside) continue;
        ring++;
        if (classify(px(img, x, y)) === colour) ringSame++;
      }
    }
    assert.equal(ringSame, 0, `${label} box ${b} [${[x1, y1, x2, y2].map((v) => v!.toFixed(1))}]: ${ringSame}/${ring} ring pixels have the face colour`);
  }
}

test('augment: boxes stay on their rectangles for 120 seeds, all kernels, both geometries, flips', () => {
  const { image, boxes } = syntheticScene();
  const modes = new Set<string>();
  const interps = new Set<string>();
  let flips = 0;
  let total = 0;
  for (let s = 0; s < 120; s++) {
    const r = augmentImage(image, boxes, Rng.fromKey(77, s), { size: 256, photometric: false });
    assert.equal(r.image.width, 256);
    assert.equal(r.image.height, 256);
    modes.add(r.info.mode);
    interps.add(r.info.interp);
    if (r.info.flipped) flips++;
    total += r.boxes.length / 4;
    for (let i = 0; i < r.boxes.length; i += 4) {
      assert.ok(r.boxes[i + 2]! - r.boxes[i]! >= 6 && r.boxes[i + 3]! - r.boxes[i + 1]! >= 6, 'small faces dropped');
      assert.ok(r.boxes[i]! >= 0 && r.boxes[i + 1]! >= 0 && r.boxes[i + 2]! <= 256 && r.boxes[i + 3]! <= 256, 'inside the output');
    }
    checkBoxesOnPixels(r.image, r.boxes, 2, `seed ${s} ${r.info.mode} ${r.info.interp}${r.info.flipped ? ' flipped' : ''}`);
  }
  assert.deepEqual([...modes].sort(), ['anchor', 'crop']);
  assert.equal(interps.size, 5);
  assert.ok(flips > 30 && flips < 90);
  assert.ok(total > 120, `faces kept ${total}`);
});

test('augment: with photometric distortion the boxes still hold saturated pixels and the ring none', () => {
  const { image, boxes } = syntheticScene();
  const chroma = (p: readonly number[]) => Math.max(...p) - Math.min(...p);
  for (let s = 0; s < 40; s++) {
    const r = augmentImage(image, boxes, Rng.fromKey(78, s), { size: 200 });
    for (let b = 0; b < r.boxes.length / 4; b++) {
      const [x1, y1, x2, y2] = r.boxes.subarray(4 * b, 4 * b + 4);
      const cx = Math.floor((x1! + x2!) / 2),
        cy = Math.floor((y1! + y2!) / 2);
      // Photometric steps keep greys grey and scale chroma by at most 0.5 x 0.5 x 0.875: a face stays colourful.
      assert.ok(chroma(px(r.image, cx, cy)) >= 35, `seed ${s} box ${b} centre ${px(r.image, cx, cy)}`);
    }
  }
});

test('augment: deterministic under a seed; network input layout and normalisation', () => {
  const { image, boxes } = syntheticScene();
  const a = augment(image, boxes, Rng.fromKey(5, 1, 2), { size: 128 });
  const b = augment(image, boxes, Rng.fromKey(5, 1, 2), { size: 128 });
  const c = augment(image, boxes, Rng.fromKey(5, 1, 3), { size: 128 });
  assert.deepEqual(a.input, b.input);
  assert.deepEqual(a.boxes, b.boxes);
  assert.notDeepEqual(a.input, c.input);
  assert.equal(a.input.length, 3 * 128 * 128);
  for (const v of a.boxes) assert.ok(v >= 0 && v <= 1);
  // The input must not have been modified.
  assert.deepEqual(px(image, 0, 0), BG);

  const tiny: RgbImage = { data: new Uint8Array([10, 20, 30, 200, 210, 220]), width: 2, height: 1 };
  assert.deepEqual([...toNetworkInput(tiny, [123, 117, 104])], [-113, 77, -97, 93, -74, 116]);
});

test('augment: an image without faces still yields an input and no boxes', () => {
  const img = solid(50, 40, [1, 2, 3]);
  const r = augment(img, new Float32Array(0), Rng.fromSeed(1), { size: 32 });
  assert.equal(r.boxes.length, 0);
  assert.equal(r.input.length, 3 * 32 * 32);
  assert.throws(() => augment(img, new Float32Array(3), Rng.fromSeed(1)), /n x 4/);
});
