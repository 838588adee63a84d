/**
 * Raw bytes <-> typed arrays, shared by the safetensors and .pth readers.
 *
 * Both formats store little-endian data at arbitrary byte offsets, while a
 * typed array view must start at a multiple of its element size. So readers
 * always COPY a tensor's bytes into a fresh buffer (offset 0, hence aligned)
 * instead of viewing the file in place. That also lets the caller drop the
 * file buffer once it is parsed.
 *
 * No node: imports: the browser build uses this.
 */
import type { DType, TypedArrayOf } from '../utils/tensor.js';

/** Bytes per element of each of our dtypes. */
export const ITEM_SIZE: Record<DType, number> = {
  float32: 4,
  float64: 8,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

// Typed arrays use the host byte order; every format we read is little-endian.
// All platforms Node and browsers run on are little-endian, so rather than
// byte-swap on every read we refuse to run on the (hypothetical) others.
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function assertLittleEndianHost(): void {
  if (!HOST_LITTLE_ENDIAN) throw new Error('weights readers need a little-endian host');
}

/** A fresh typed array of `dtype` holding a copy of `bytes` (length must be a multiple of the item size). */
export function typedArrayFromBytes<D extends DType>(dtype: D, bytes: Uint8Array): TypedArrayOf[D] {
  assertLittleEndianHost();
  const size = ITEM_SIZE[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new Error(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  }
  // Uint8Array's slice copies; called explicitly because a Node Buffer's own slice() returns a view.
  const buf = Uint8Array.prototype.slice.call(bytes).buffer;
  const n = bytes.byteLength / size;
  let out: TypedArrayOf[DType];
  switch (dtype) {
    case 'float32':
      out = new Float32Array(buf, 0, n);
      break;
    case 'float64':
      out = new Float64Array(buf, 0, n);
      break;
    case 'int64':
      out = new BigInt64Array(buf, 0, n);
      break;
    case 'int32':
      out = new Int32Array(buf, 0, n);
      break;
    case 'int16':
      out = new Int16Array(buf, 0, n);
      break;
    case 'int8':
      out = new Int8Array(buf, 0, n);
      break;
    case 'uint8':
    case 'bool':
      out = new Uint8Array(buf, 0, n);
      break;
    default:
      throw new Error(`unknown dtype ${String(dtype)}`);
  }
  return out as TypedArrayOf[D];
}

/** The little-endian bytes of a typed array (a view, not a copy). */
export function bytesOfTypedArray(data: TypedArrayOf[DType]): Uint8Array {
  assertLittleEndianHost();
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** IEEE 754 half-precision little-endian bytes -> float32 (exact: every half is a float32). */
export function float16BytesToFloat32(bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength >>> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const h = bytes[2 * i]! | (bytes[2 * i + 1]! << 8); // 2i + 1 < byteLength
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0)
      out[i] = sign * frac * 2 ** -24; // zero and subnormals
    else if (exp === 0x1f) out[i] = frac ? NaN : sign * Infinity;
    else out[i] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}

/** bfloat16 little-endian bytes -> float32 (exact: bfloat16 is the top half of a float32). */
export function bfloat16BytesToFloat32(bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength >>> 1;
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) bits[i] = ((bytes[2 * i]! | (bytes[2 * i + 1]! << 8)) << 16) >>> 0; // 2i + 1 < byteLength
  return new Float32Array(bits.buffer);
}
