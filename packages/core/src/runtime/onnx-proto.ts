/**
 * A minimal protobuf writer for the subset of ONNX's schema the exporter
 * emits (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
 * ValueInfoProto). Hand-written because the graph is built in memory at load
 * time, in Node and the browser, and the schema subset is small and stable;
 * field numbers are onnx.proto3's.
 */

class Writer {
  private chunks: Uint8Array[] = [];
  private size = 0;

  bytes(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
  }

  varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    while (x >= 0x80n) {
      out.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    out.push(Number(x));
    this.bytes(Uint8Array.from(out));
  }

  tag(field: number, wire: 0 | 1 | 2 | 5): void {
    this.varint((field << 3) | wire);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let o = 0;
    for (const c of this.chunks) out.set(c, o), (o += c.length);
    return out;
  }
}

const utf8 = new TextEncoder();

type Field = (w: Writer) => void;

const int =
  (field: number, v: number | bigint): Field =>
  (w) => (w.tag(field, 0), w.varint(v));
const str = (field: number, s: string): Field => bytesField(field, utf8.encode(s));
function bytesField(field: number, b: Uint8Array): Field {
  return (w) => (w.tag(field, 2), w.varint(b.length), w.bytes(b));
}
const msg = (field: number, fields: Field[]): Field => bytesField(field, encode(fields));
const float =
  (field: number, v: number): Field =>
  (w) => {
    w.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    w.bytes(b);
  };

function encode(fields: Field[]): Uint8Array {
  const w = new Writer();
  for (const f of fields) f(w);
  return w.finish();
}

export const DataType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7 } as const;

export interface OnnxTensor {
  name: string;
  dims: number[];
  dataType: (typeof DataType)[keyof typeof DataType];
  /** Little-endian raw bytes of the data type. */
  raw: Uint8Array;
}

export type AttrValue = number | string | number[] | { float: number } | { floats: number[] };

export interface OnnxNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  attrs?: Record<string, AttrValue>;
}

export interface OnnxValueInfo {
  name: string;
  /** Dimension sizes, or names for symbolic (dynamic) dimensions. */
  dims: Array<number | string>;
}

export interface OnnxModel {
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  opset: number;
  producer: string;
}

function attribute(name: string, v: AttrValue): Field[] {
  // AttributeProto: name=1, f=2, i=3, s=4, floats=7, ints=8, type=20 (FLOAT 1, INT 2, STRING 3, FLOATS 6, INTS 7)
  if (typeof v === 'number') return [str(1, name), int(3, v), int(20, 2)];
  if (typeof v === 'string') return [str(1, name), str(4, v), int(20, 3)];
  if (Array.isArray(v)) return [str(1, name), ...v.map((x) => int(8, x)), int(20, 7)];
  if ('float' in v) return [str(1, name), float(2, v.float), int(20, 1)];
  return [str(1, name), ...v.floats.map((x) => float(7, x)), int(20, 6)];
}

function valueInfo(field: number, v: OnnxValueInfo): Field {
  // ValueInfoProto{name=1, type=2}; TypeProto{tensor_type=1}; Tensor{elem_type=1, shape=2}; Shape{dim=1}; Dim{dim_value=1, dim_param=2}
  const dims = v.dims.map((d) => msg(1, [typeof d === 'number' ? int(1, d) : str(2, d)]));
  return msg(field, [str(1, v.name), msg(2, [msg(1, [int(1, DataType.FLOAT), msg(2, dims)])])]);
}

/** Serialise to the bytes of an .onnx file. */
export function encodeModel(m: OnnxModel): Uint8Array {
  const nodes = m.nodes.map((n) =>
    msg(1, [
      ...n.inputs.map((s) => str(1, s)),
      ...n.outputs.map((s) => str(2, s)),
      ...(n.name ? [str(3, n.name)] : []),
      str(4, n.opType),
      ...Object.entries(n.attrs ?? {}).map(([k, v]) => msg(5, attribute(k, v))),
    ]),
  );
  // TensorProto: dims=1, data_type=2, name=8, raw_data=9
  const inits = m.initializers.map((t) => msg(5, [...t.dims.map((d) => int(1, d)), int(2, t.dataType), str(8, t.name), bytesField(9, t.raw)]));
  const graph = msg(7, [...nodes, str(2, 'extd'), ...inits, ...m.inputs.map((v) => valueInfo(11, v)), ...m.outputs.map((v) => valueInfo(12, v))]);
  // ModelProto: ir_version=1, producer_name=2, graph=7, opset_import=8 {domain=1, version=2}
  return encode([int(1, 8), str(2, m.producer), graph, msg(8, [str(1, ''), int(2, m.opset)])]);
}

export function floatTensor(name: string, dims: number[], data: Float32Array): OnnxTensor {
  return { name, dims, dataType: DataType.FLOAT, raw: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function int64Tensor(name: string, values: number[]): OnnxTensor {
  const a = BigInt64Array.from(values.map((v) => BigInt(v)));
  return { name, dims: [values.length], dataType: DataType.INT64, raw: new Uint8Array(a.buffer) };
}

export function uint8Tensor(name: string, dims: number[], data: Uint8Array): OnnxTensor {
  return { name, dims, dataType: DataType.UINT8, raw: data };
}

export function int8Tensor(name: string, dims: number[], data: Int8Array): OnnxTensor {
  return { name, dims, dataType: DataType.INT8, raw: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function int32Tensor(name: string, dims: number[], data: Int32Array): OnnxTensor {
  return { name, dims, dataType: DataType.INT32, raw: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
