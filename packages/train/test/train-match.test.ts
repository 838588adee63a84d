import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { makePriors, levelSizes } from '@extd/core/anchors/priors';
import { matchPriors, matchBatch } from '../src/train/match.js';
import { backgroundLoss, hardNegativeMask, multiboxLossRef } from '../src/train/mining.js';
import { readSafetensors } from '@extd/core/weights/safetensors';
import { Rng } from '@extd/core/utils/rng';
import { noShared, sharedPath } from '../../../test-support/shared.js';

const GOLDEN = ['reference', 'golden', 'train'];

function loadCase(k: number) {
  // A plain Uint8Array copy: Buffer.slice() is a view, which the reader's copy-out does not expect.
  const st = readSafetensors(new Uint8Array(readFileSync(sharedPath(...GOLDEN, `match${k}.safetensors`))), `match${k}`);
  const get = (name: string) => st.tensors.get(name)!.data;
  return {
    size: Number(st.metadata.input_size),
    levelSizes: JSON.parse(st.metadata.level_sizes!) as number[],
    truths: get('truths') as Float32Array,
    priors: get('priors') as Float32Array,
    confT: get('conf_t') as BigInt64Array,
    locT: get('loc_t') as Float32Array,
    locData: get('loc_data') as Float32Array,
    confData: get('conf_data') as Float32Array,
    lossL: (get('loss_l') as Float32Array)[0]!,
    lossC: (get('loss_c') as Float32Array)[0]!,
  };
}

for (let k = 0; k < 6; k++) {
  test(`golden match${k}: priors, conf_t exact, loc_t on positives, losses`, { skip: noShared(...GOLDEN, `match${k}.safetensors`) }, () => {
    const g = loadCase(k);
    // Our priors must be the ones the reference used (bit-exact, since matching ties depend on them).
    assert.deepEqual(
      levelSizes(g.size, g.size).map(([h]) => h),
      g.levelSizes,
    );
    assert.deepEqual(makePriors(g.size, g.size), g.priors);

    const m = matchPriors(g.truths, g.priors);
    const P = g.priors.length / 4;
    let goldenPos = 0;
    const mismatches: number[] = [];
    for (let p = 0; p < P; p++) {
      if (g.confT[p] === 1n) goldenPos++;
      if (BigInt(m.confT[p]!) !== g.confT[p]) mismatches.push(p);
    }
    assert.deepEqual(mismatches, [], 'conf_t differs at these priors');
    assert.equal(m.numPositives, goldenPos);
    let maxErr = 0;
    for (let p = 0; p < P; p++) {
      if (m.confT[p] !== 1) continue;
      for (let c = 0; c < 4; c++) maxErr = Math.max(maxErr, Math.abs(m.locT[4 * p + c]! - g.locT[4 * p + c]!));
    }
    assert.ok(maxErr <= 1e-5, `loc_t max abs error ${maxErr}`);

    const loss = multiboxLossRef(g.locData, g.confData, g.locT, m.confT);
    assert.ok(Math.abs(loss.lossL - g.lossL) <= 1e-4 * Math.abs(g.lossL), `loss_l ${loss.lossL} vs ${g.lossL}`);
    assert.ok(Math.abs(loss.lossC - g.lossC) <= 1e-4 * Math.abs(g.lossC), `loss_c ${loss.lossC} vs ${g.lossC}`);
    assert.equal(loss.numSelected, 4 * goldenPos);
  });
}

// Hand-made geometry: a 64x64 input has level sizes 16,8,4,2,1,1 and anchors 16..512 px.
const S = 64;
const priors = makePriors(S, S);
const P = priors.length / 4;
const box = (x1: number, y1: number, x2: number, y2: number) => new Float32Array([x1 / S, y1 / S, x2 / S, y2 / S]);

test('match: no faces gives all background and zero targets', () => {
  const m = matchPriors(new Float32Array(0), priors);
  assert.equal(m.numPositives, 0);
  assert.equal(m.confT.length, P);
  assert.ok(m.confT.every((v) => v === 0));
  assert.ok(m.locT.every((v) => v === 0));
});

test('match: a face exactly on a 16 px anchor is positive there with zero offsets', () => {
  // Level-1 cell (row 1, col 2): centre (10, 6) px, anchor 16 px -> corners (2,-2)..(18,14); use cell (1,1) fully inside.
  // Cell (i=2, j=2) of level 1: centre (10, 10), box (2,2)-(18,18).
  const m = matchPriors(box(2, 2, 18, 18), priors);
  const p = 2 * 16 + 2;
  assert.equal(m.confT[p], 1);
  for (let c = 0; c < 4; c++) assert.ok(Math.abs(m.locT[4 * p + c]!) < 1e-6);
  // IoU with the neighbouring level-1 anchors (shifted by 4 px) is 12*16/(2*256-192) = 0.6 >= 0.35: positive too.
  assert.equal(m.confT[2 * 16 + 3], 1);
  assert.equal(m.confT[3 * 16 + 2], 1);
  // Shifted by 8 px: IoU 8*16/(512-128) = 1/3 < 0.35, not positive in step 3. Best IoU 1 >= 0.5 and >= 0.35
  // gives N = floor(2/2) = 1 extra prior, taken from the (0.1, 0.35) band.
  const withoutExtra = matchPriors(box(2, 2, 18, 18), priors, { high: 2, positive: 0.35 });
  // With high = 2 the count is floor(1/2) = 0: exactly one positive fewer.
  assert.equal(m.numPositives, withoutExtra.numPositives + 1);
});

test('match: each face keeps its best prior even below every threshold', () => {
  // A 3x3 px face: best IoU with a 16 px anchor is 9/256 < 0.1.
  const m = matchPriors(box(9, 9, 12, 12), priors);
  assert.equal(m.numPositives, 1);
  const p = m.confT.indexOf(1);
  // Every 16 px anchor that contains the face has the same IoU 9/256; argmax keeps the first of them,
  // level-1 cell (row 1, col 1) with centre (6, 6) px, whose box (-2..14) contains 9..12.
  assert.equal(p, 1 * 16 + 1);
  // Encoded centre offset: (10.5 - 6) / 64 / (0.1 * 16 / 64) = 2.8125; size log(3/16)/0.2.
  assert.ok(Math.abs(m.locT[4 * p]! - 2.8125) < 1e-5);
  assert.ok(Math.abs(m.locT[4 * p + 1]! - 2.8125) < 1e-5);
  assert.ok(Math.abs(m.locT[4 * p + 2]! - Math.log(3 / 16) / 0.2) < 1e-5);
});

test('match: a later face takes a shared best prior; batch layout', () => {
  const a = box(2, 2, 18, 18);
  const b = box(3, 3, 17, 17);
  const two = new Float32Array([...a, ...b]);
  const m = matchPriors(two, priors);
  const p = 2 * 16 + 2;
  assert.equal(m.confT[p], 1);
  // The prior is assigned to face b: offsets encode b (centre 10, size 14).
  assert.ok(Math.abs(m.locT[4 * p + 2]! - Math.log(14 / 16) / 0.2) < 1e-5);

  const batch = matchBatch([two, new Float32Array(0), a], priors);
  assert.equal(batch.confT.length, 3 * P);
  assert.deepEqual(batch.confT.subarray(0, P), m.confT);
  assert.ok(batch.confT.subarray(P, 2 * P).every((v) => v === 0));
  assert.deepEqual(batch.confT.subarray(2 * P), matchPriors(a, priors).confT);
  assert.equal(batch.numPositives, m.numPositives + matchPriors(a, priors).numPositives);
});

test('match: rejects empty boxes', () => {
  assert.throws(() => matchPriors(box(5, 5, 5, 9), priors), /face 0 has an empty box/);
});

test('mining: picks the 3 x positives negatives of highest background loss, per image', () => {
  const P2 = 10;
  // Two images of 10 priors: image 0 has 1 positive, image 1 has none.
  const confT = new Uint8Array(2 * P2);
  confT[4] = 1;
  const conf = new Float32Array(2 * P2 * 2);
  // Background loss of prior r is softplus(face - bg); make it increase with a per-prior score.
  const score = [0.5, 3, -1, 2, 9, 1, 2.5, -2, 0, 1.5];
  for (let b = 0; b < 2; b++) for (let r = 0; r < P2; r++) conf[2 * (b * P2 + r) + 1] = score[r]!;
  const bg = backgroundLoss(conf, confT);
  assert.equal(bg[4], 0);
  assert.ok(Math.abs(bg[1]! - Math.log1p(Math.exp(3))) < 1e-6);
  const mask = hardNegativeMask(bg, confT, P2);
  // Image 0: the positive (4) and the three highest-scoring negatives: 1 (3), 6 (2.5), 3 (2).
  assert.deepEqual([...mask.subarray(0, P2)], [0, 1, 0, 1, 1, 0, 1, 0, 0, 0]);
  assert.deepEqual([...mask.subarray(P2)], new Array(P2).fill(0));
  // The cap P - 1: 4 positives would want 12 negatives, only 6 exist.
  const many = new Uint8Array(P2);
  many.set([1, 1, 1, 1], 0);
  const m2 = hardNegativeMask(backgroundLoss(conf.subarray(0, 2 * P2), many), many, P2);
  assert.equal(
    m2.reduce((s, v) => s + v, 0),
    P2,
  );
});

test('mining: kth selection agrees with a full sort on random data, ties included', () => {
  const rng = Rng.fromKey(7);
  for (let trial = 0; trial < 20; trial++) {
    const P3 = 200 + rng.int(300);
    const confT = new Uint8Array(P3);
    for (let i = 0; i < 1 + rng.int(20); i++) confT[rng.int(P3)] = 1;
    const bg = new Float32Array(P3);
    // Quantised values create many ties.
    for (let i = 0; i < P3; i++) bg[i] = confT[i] ? 0 : Math.round(rng.float() * 20) / 4 + 0.01;
    const pos = confT.reduce((s, v) => s + v, 0);
    const mask = hardNegativeMask(bg, confT, P3);
    const negs = [...bg]
      .map((v, i) => [v, i] as const)
      .filter(([, i]) => !confT[i])
      .sort((a, b) => b[0] - a[0]);
    const k = Math.min(3 * pos, P3 - 1, negs.length);
    const picked = [...mask]
      .map((v, i) => (v && !confT[i] ? bg[i]! : NaN))
      .filter((v) => !Number.isNaN(v))
      .sort((a, b) => b - a);
    assert.deepEqual(
      picked,
      negs.slice(0, k).map(([v]) => v),
    );
  }
});

test('loss ref: hand-computed smooth-L1 and cross-entropy', () => {
  // One image, 4 priors, prior 0 positive; 3 negatives allowed = all of them.
  const confT = new Uint8Array([1, 0, 0, 0]);
  const locT = new Float32Array([0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
  const locData = new Float32Array([0.5, -2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const conf = new Float32Array([0, 0, 0, 0, 1, 0, 0, 2]);
  const r = multiboxLossRef(locData, conf, locT, confT);
  // smooth-L1: 0.125 + 1.5 + 0 + 0.5
  assert.ok(Math.abs(r.lossL - 2.125) < 1e-9);
  // CE: ln2 (positive, logits equal) + ln2 + (ln(1+e^-1)) + ln(1+e^2)
  const ce = Math.LN2 + Math.LN2 + Math.log1p(Math.exp(-1)) + Math.log1p(Math.exp(2));
  assert.ok(Math.abs(r.lossC - ce) < 1e-6);
  assert.equal(r.numSelected, 4);
  const none = multiboxLossRef(locData, conf, locT, new Uint8Array(4));
  assert.equal(none.lossL, 0);
  assert.equal(none.lossC, 0);
});
