/**
 * Node file access for weights: read either format from a path, write
 * safetensors atomically. The parsers themselves are browser-safe modules
 * working on bytes; only this file touches the filesystem.
 */
import { readFile, stat } from 'node:fs/promises';
import { writeFileAtomic } from '../utils/atomic.js';
import { ExtdError } from '@extd/core/utils/errors';
import type { Tensor } from '@extd/core/utils/tensor';
import { readWeightsBytes, type WeightsContent } from '@extd/core/weights/format';
import { writeSafetensors } from '@extd/core/weights/safetensors';

/** Read a .safetensors or PyTorch .pth/.pt file, recognised by content (not extension). */
export async function readWeightsFile(path: string): Promise<WeightsContent> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ExtdError(`model file not found: ${path}`);
    throw new ExtdError(`${path}: cannot read model file (${(e as Error).message})`);
  }
  if (info.isDirectory()) throw new ExtdError(`${path}: is a directory, expected a .safetensors or .pth file`);
  if (info.size === 0) throw new ExtdError(`${path}: file is empty (0 bytes), expected a .safetensors or .pth file`);
  const buf = await readFile(path);
  return readWeightsBytes(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), path);
}

/** Write tensors (and string metadata) as a .safetensors file, atomically. */
export function writeSafetensorsFile(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): void {
  writeFileAtomic(path, writeSafetensors(tensors, metadata));
}
