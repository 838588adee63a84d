/**
 * The package's own tensor type: a flat typed array plus a row-major shape.
 *
 * Every module except the runtime backends and the libtorch addon sees only
 * this type, so swapping onnxruntime-node for onnxruntime-web (or libtorch)
 * never touches model, weights, anchors or post-processing code.
 */
export type DType = 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'int8' | 'int16' | 'bool';

export interface TypedArrayOf {
  float32: Float32Array;
  float64: Float64Array;
  int64: BigInt64Array;
  int32: Int32Array;
  int16: Int16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}

/** A tensor: element type, row-major shape and a flat typed array of numel(shape) elements (int64: BigInt64Array, bool: Uint8Array). */
export interface Tensor<D extends DType = DType> {
  /** Element type. */
  dtype: D;
  /** Row-major (C order) dimensions; [] for a scalar. */
  shape: number[];
  /** The elements in row-major order; the array type follows `dtype`. */
  data: TypedArrayOf[D];
}

export type Float32Tensor = Tensor<'float32'>;

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function float32Tensor(shape: number[], data?: Float32Array): Float32Tensor {
  const n = numel(shape);
  if (data && data.length !== n) {
    throw new Error(`tensor data has ${data.length} elements, shape [${shape.join(', ')}] needs ${n}`);
  }
  return { dtype: 'float32', shape, data: data ?? new Float32Array(n) };
}

export function shapeEquals(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
