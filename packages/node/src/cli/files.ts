import { readdirSync, statSync, existsSync } from 'node:fs';
import { extname, join } from 'node:path';
import { ExtdError } from '@extd/core/utils/errors';

export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);

/** Expand files and folders (recursively, sorted) into image paths; a missing path is an error. */
export function expandImagePaths(inputs: string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (IMAGE_EXTENSIONS.has(extname(name).toLowerCase())) out.push(p);
    }
  };
  for (const input of inputs) {
    if (!existsSync(input)) throw new ExtdError(`image not found: ${input}`);
    if (statSync(input).isDirectory()) walk(input);
    else out.push(input);
  }
  return out;
}
