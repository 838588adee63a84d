import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { Rng } from '@extd/core/utils/rng';
import type { TrainSample } from '../src/train/loader.js';

/** Four small noisy images with bright "faces" at known boxes, written as PNG under `root`, plus a WIDER annotation file. */
export async function syntheticDataset(root: string): Promise<{ samples: TrainSample[]; annotations: string; images: string }> {
  const images = join(root, 'images');
  mkdirSync(join(images, '0--Test'), { recursive: true });
  const rng = Rng.fromSeed(1);
  const samples: TrainSample[] = [];
  const lines: string[] = [];
  for (let k = 0; k < 4; k++) {
    const W = 96,
      H = 80;
    const px = new Uint8Array(W * H * 3).map(() => 60 + rng.int(60));
    const faces = [
      [8 + 4 * k, 10, 30, 34],
      [52, 30 + 3 * k, 24, 26],
    ];
    for (const [x, y, w, h] of faces) {
      for (let j = y!; j < y! + h!; j++) for (let i = x!; i < x! + w!; i++) px.set([230, 190, 160], 3 * (j * W + i));
    }
    const rel = `0--Test/img_${k}.png`;
    await sharp(px, { raw: { width: W, height: H, channels: 3 } })
      .png()
      .toFile(join(images, rel));
    samples.push({ path: join(images, rel), boxes: Float32Array.from(faces.flatMap(([x, y, w, h]) => [x!, y!, x! + w!, y! + h!])) });
    lines.push(rel, String(faces.length), ...faces.map((f) => `${f.join(' ')} 0 0 0 0 0 0`));
  }
  const annotations = join(root, 'gt.txt');
  writeFileSync(annotations, lines.join('\n') + '\n');
  return { samples, annotations, images };
}
