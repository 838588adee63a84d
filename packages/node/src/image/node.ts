import { existsSync, statSync } from 'node:fs';
import sharp from 'sharp';
import { ExtdError } from '@extd/core/utils/errors';
import { RGB_MEAN, type RgbImage } from '@extd/core/image/types';

/**
 * Decode an image file or an encoded buffer (JPEG, PNG, WebP, GIF, TIFF, AVIF)
 * to 8-bit RGB. EXIF orientation is applied, so boxes refer to the image as
 * viewers show it; grayscale is expanded to RGB; transparency is flattened onto
 * the training mean colour, which the network sees as zero input.
 */
export async function loadImageRgb(input: string | Uint8Array, name = typeof input === 'string' ? input : 'image buffer'): Promise<RgbImage> {
  if (typeof input === 'string') {
    if (!existsSync(input)) throw new ExtdError(`image not found: ${input}`);
    if (statSync(input).isDirectory()) throw new ExtdError(`expected an image file, got a directory: ${input}`);
  }
  try {
    const { data, info } = await sharp(input, { failOn: 'error' })
      .rotate()
      .flatten({ background: { r: RGB_MEAN[0], g: RGB_MEAN[1], b: RGB_MEAN[2] } })
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0];
    throw new ExtdError(`cannot decode image ${name}: ${msg}`);
  }
}

/** Encode RGB pixels as PNG or JPEG (by the extension of `path`) and write it. */
export async function saveImageRgb(image: RgbImage, path: string): Promise<void> {
  await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).toFile(path);
}
