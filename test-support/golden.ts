import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { iouXyxy } from '@extd/core/postprocess/boxes';
import { readSafetensors } from '@extd/core/weights/safetensors';
import { readPth } from '@extd/core/weights/pth';
import { modelFromTensors, type LoadedModel } from '@extd/core/weights/checkpoint';
import { sharedPath } from './shared.js';
import type { RgbImage } from '@extd/core/image/types';

/** The three golden images (TAG = file name without .jpg) and their WIDER paths. */
export const GOLDEN_TAGS = [
  '35_Basketball_playingbasketball_35_582',
  '2_Demonstration_Demonstrators_2_307',
  '13_Interview_Interview_On_Location_13_537',
] as const;

export function readGolden(file: string) {
  const path = sharedPath('reference', 'golden', file);
  return readSafetensors(new Uint8Array(readFileSync(path)), path);
}

export function goldenPixels(tag: string): RgbImage {
  const { tensors } = readGolden(`${tag}.pixels.safetensors`);
  const rgb = tensors.get('rgb')!;
  return { data: rgb.data as Uint8Array, height: rgb.shape[0]!, width: rgb.shape[1]! };
}

/** A released checkpoint, read from the authors' .pth through our own unpickler. */
export function releasedModel(width: 32 | 48 | 64): LoadedModel {
  const path = sharedPath('reference', 'weights', `EXTD_${width}.pth`);
  return modelFromTensors(readPth(new Uint8Array(readFileSync(path)), path), {}, path);
}

/**
 * The golden README's end-to-end criteria: the same number of detections
 * above 0.5, and every golden detection above 0.05 matched by one of ours with
 * IoU >= 0.99 and |score difference| <= 1e-3. `boxes` is N x 4 xyxy pixels.
 * With `clipTo` (results of detect(), which clips to the image), the golden
 * boxes are clipped to that image size first.
 */
export function assertMatchesGolden(
  tag: string,
  width: 32 | 48 | 64,
  ours: { boxes: ArrayLike<number>; scores: ArrayLike<number> },
  label = '',
  clipTo?: { width: number; height: number },
): void {
  const g = readGolden(`${tag}.extd${width}.safetensors`).tensors.get('detections')!;
  const gd = g.data as Float32Array;
  const n = g.shape[0]!;
  const goldBoxes = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) {
    goldBoxes.set(gd.subarray(i * 5 + 1, i * 5 + 5), i * 4);
    if (clipTo) {
      for (let c = 0; c < 4; c++) goldBoxes[i * 4 + c] = Math.min(Math.max(goldBoxes[i * 4 + c]!, 0), c % 2 === 0 ? clipTo.width : clipTo.height);
    }
  }
  const where = `${label ? label + ' ' : ''}${tag} (EXTD-${width})`;
  const goldScores = Array.from({ length: n }, (_, i) => gd[i * 5]!);
  assertMatchesDetections({ boxes: goldBoxes, scores: goldScores }, ours, where);
}

/**
 * The same criteria between any two detection sets (`boxes` N x 4 xyxy
 * pixels, `scores` N): as many above 0.5 in `ours` as in `ref`, and every
 * detection of `ref` matched by one of `ours` with IoU >= 0.99 and
 * |score difference| <= 1e-3. `where` names the case in failures.
 */
export function assertMatchesDetections(
  ref: { boxes: ArrayLike<number>; scores: ArrayLike<number> },
  ours: { boxes: ArrayLike<number>; scores: ArrayLike<number> },
  where: string,
): void {
  const refScores = Array.from(ref.scores);
  const scores = Array.from(ours.scores);
  assert.equal(scores.filter((s) => s > 0.5).length, refScores.filter((s) => s > 0.5).length, `${where}: detections above 0.5`);
  for (let i = 0; i < refScores.length; i++) {
    let matched = false;
    for (let j = 0; j < scores.length && !matched; j++) {
      matched = iouXyxy(ref.boxes, i, ours.boxes, j) >= 0.99 && Math.abs(scores[j]! - refScores[i]!) <= 1e-3;
    }
    assert.ok(matched, `${where}: reference detection ${i} (score ${refScores[i]}) has no match among ${scores.length}`);
  }
}

/** Number of golden detections (all kept, score > 0.05). */
export function goldenCount(tag: string, width: 32 | 48 | 64): number {
  return readGolden(`${tag}.extd${width}.safetensors`).tensors.get('detections')!.shape[0]!;
}
