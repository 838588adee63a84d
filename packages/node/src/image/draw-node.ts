import { extname } from 'node:path';
import sharp from 'sharp';
import type { Face } from '@extd/core/detector';
import { writeFileAtomic } from '../utils/atomic.js';
import { ExtdError } from '@extd/core/utils/errors';
import type { RgbImage } from '@extd/core/image/types';

const FORMATS: Record<string, 'png' | 'jpeg' | 'webp'> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' };

/** SVG overlay with one rectangle and score label per face (boxes in image pixels). */
export function facesSvg(width: number, height: number, faces: Face[]): string {
  const stroke = Math.max(2, Math.round(Math.min(width, height) / 300));
  const font = Math.max(10, Math.round(Math.min(width, height) / 60));
  const items = faces.map(({ box, score }) => {
    const x = box.x.toFixed(1),
      y = box.y.toFixed(1);
    const ty = Math.max(font, box.y - stroke).toFixed(1);
    return (
      `<rect x="${x}" y="${y}" width="${box.width.toFixed(1)}" height="${box.height.toFixed(1)}" fill="none" stroke="#00e676" stroke-width="${stroke}"/>` +
      `<text x="${x}" y="${ty}" font-family="sans-serif" font-size="${font}" fill="#00e676" stroke="#000" stroke-width="0.6">${score.toFixed(2)}</text>`
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${items.join('')}</svg>`;
}

/** The output format of a drawing path, by extension; ExtdError naming the path for any other extension. */
export function drawFormat(path: string): 'png' | 'jpeg' | 'webp' {
  const format = FORMATS[extname(path).toLowerCase()];
  if (!format) throw new ExtdError(`--draw ${path}: unsupported extension '${extname(path)}' (allowed: ${Object.keys(FORMATS).join(', ')})`);
  return format;
}

/** Write `image` with the faces drawn on it; format from the extension (.png, .jpg, .webp). Atomic. */
export async function drawFacesToFile(image: RgbImage, faces: Face[], path: string): Promise<void> {
  const format = drawFormat(path);
  const svg = Buffer.from(facesSvg(image.width, image.height, faces));
  const out = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .composite([{ input: svg, top: 0, left: 0 }])
    .toFormat(format)
    .toBuffer();
  writeFileAtomic(path, out);
}
