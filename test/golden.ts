import { readFileSync } from 'node:fs';
import { readSafetensors } from '../src/weights/safetensors.js';
import { readPth } from '../src/weights/pth.js';
import { modelFromTensors, type LoadedModel } from '../src/weights/checkpoint.js';
import { sharedPath } from './shared.js';
import type { RgbImage } from '../src/image/types.js';

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
