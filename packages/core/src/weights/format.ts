/**
 * Recognise a weights file by its content rather than its extension (users
 * rename files; `.pt`, `.pth`, `.bin` and `.ckpt` all occur for the same
 * format), and read it with the matching parser.
 *
 * Works on Uint8Array only (no node: imports) so the browser build can use it.
 */
import { ExtdError } from '../utils/errors.js';
import type { Tensor } from '../utils/tensor.js';
import { readPth } from './pth.js';
import { readSafetensors } from './safetensors.js';
import { looksLikeZip } from './zip.js';

/** A weights file's format: safetensors, or PyTorch's .pth (zip archive or legacy pickle). */
export type WeightsFormat = 'safetensors' | 'pth';

/** What readWeightsBytes returns: the file's tensors by name, its metadata and its format. */
export interface WeightsContent {
  /** The tensors by name, as stored (no prefix stripping or shape checks: see modelFromTensors). */
  tensors: Map<string, Tensor>;
  /** safetensors `__metadata__`; {} for .pth files, which have none. */
  metadata: Record<string, string>;
  /** The format detected from the content. */
  format: WeightsFormat;
}

/**
 * 'pth' for a zip archive ('PK\x03\x04') or a pickle (first byte 0x80, the
 * PROTO opcode); 'safetensors' when the first 8 bytes are a little-endian
 * length that fits in the file and the header after it starts with '{';
 * otherwise undefined.
 */
export function detectWeightsFormat(bytes: Uint8Array): WeightsFormat | undefined {
  if (looksLikeZip(bytes)) return 'pth';
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1]! >= 2 && bytes[1]! <= 5) return 'pth';
  if (bytes.length >= 10 && bytes[8] === 0x7b) {
    const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(0, true);
    if (n >= 2n && n <= BigInt(bytes.length - 8)) return 'safetensors';
  }
  return undefined;
}

/**
 * Parse weights of either format; `source` names the input in errors (usually the file path).
 * @throws ExtdError for an empty file, an unrecognised format or a malformed file.
 */
export function readWeightsBytes(bytes: Uint8Array, source: string): WeightsContent {
  const format = detectWeightsFormat(bytes);
  if (format === 'safetensors') return { ...readSafetensors(bytes, source), format };
  if (format === 'pth') return { tensors: readPth(bytes, source), metadata: {}, format };
  if (bytes.length === 0) throw new ExtdError(`${source}: file is empty (0 bytes), expected a .safetensors or PyTorch .pth file`);
  const head = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new ExtdError(
    `${source}: not a weights file: starts with bytes ${head}, expected safetensors (8-byte header length, then '{'), a PyTorch zip ('PK') or a legacy PyTorch pickle (0x80)`,
  );
}
