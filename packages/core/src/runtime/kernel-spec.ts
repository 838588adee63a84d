import type { ConvUnit, ModelGraph } from '../model/graph.js';
import { backboneStage, type BackboneStage } from '../model/backbone.js';
import { foldConvBn } from './onnx-export.js';
import type { Tensor } from '../utils/tensor.js';

/**
 * The description of a network that extd's own kernels take (the Node
 * addon, packages/node/native/extd_kernels.cc, and its WebAssembly build,
 * packages/web/native/extd_wasm.cc): the backbone's fused inverted-residual
 * blocks with BatchNorm folded into the convs, then every later node (the
 * FPN and the heads) as an op over numbered values.
 */

/** A conv with BatchNorm folded in: weight [out][in/groups][k][k], bias [out]. */
export interface ConvSpec {
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride: number;
  groups: number;
  weight: Float32Array;
  bias: Float32Array;
  /** The activation's slope (PReLU's one parameter, LeakyReLU's slope, 0 for ReLU); absent: no activation. */
  slope?: number;
}

/** One node after the backbone; `a` and `b` are value numbers (0..taps-1: the tapped blocks' outputs). */
export type OpSpec = { kind: 'conv'; a: number; conv: ConvSpec } | { kind: 'add' | 'upsample'; a: number; b: number } | { kind: 'maxout'; a: number };

/** What the kernels take. */
export interface NetworkSpec {
  stem: ConvSpec;
  blocks: Array<{ expand?: ConvSpec; dw: ConvSpec; project: ConvSpec; residual: boolean }>;
  /** Indices of the blocks whose outputs the ops read (values 0..taps-1). */
  taps: number[];
  /** The graph after the backbone; each op's output is the next value number. */
  ops: OpSpec[];
  /** Per level, finest first: the values concatenated into loc and conf. */
  loc: number[];
  conf: number[];
  /** Run the blocks' 1x1 convs (expand, project) in int8; only where the build has the int8 kernels. */
  int8?: boolean;
}

/** A conv with BatchNorm folded in, as the addon takes it. */
export function convSpec(n: ConvUnit, weights: Map<string, Tensor>): ConvSpec {
  const w = (name: string): Float32Array => {
    const t = weights.get(name);
    if (!t || t.dtype !== 'float32') throw new Error(`native network: missing float32 tensor '${name}'`);
    return t.data as Float32Array;
  };
  const [weight, bias] = foldConvBn(n, w);
  const spec: ConvSpec = { inChannels: n.inChannels, outChannels: n.outChannels, kernel: n.kernel, stride: n.stride, groups: n.groups, weight, bias };
  if (n.act) spec.slope = n.act.kind === 'relu' ? 0 : n.act.kind === 'leaky' ? n.act.slope : w(n.act.param)[0]!;
  return spec;
}

/**
 * The addon's description of a model graph: its backbone's blocks, then
 * every later node as an op over numbered values. null when a later node
 * reads a value inside the backbone or a head is missing.
 */
export function networkSpec(graph: ModelGraph, stage: BackboneStage, weights: Map<string, Tensor>): NetworkSpec | null {
  const ids = new Map<string, number>();
  stage.outputs.forEach((o, k) => ids.set(o.value, k));
  const ops: OpSpec[] = [];
  for (const n of graph.nodes.slice(stage.nodeCount)) {
    const id = (v: string) => ids.get(v) ?? -1;
    let op: OpSpec;
    if (n.op === 'conv') op = { kind: 'conv', a: id(n.input), conv: convSpec(n, weights) };
    else if (n.op === 'add') op = { kind: 'add', a: id(n.a), b: id(n.b) };
    else if (n.op === 'upsample') op = { kind: 'upsample', a: id(n.input), b: id(n.like) };
    else op = { kind: 'maxout', a: id(n.input) };
    if (op.a < 0 || ('b' in op && op.b < 0)) return null;
    ids.set(n.output, stage.outputs.length + ops.length);
    ops.push(op);
  }
  const loc = graph.loc.map((v) => ids.get(v) ?? -1);
  const conf = graph.conf.map((v) => ids.get(v) ?? -1);
  if (loc.includes(-1) || conf.includes(-1)) return null;
  return {
    stem: convSpec(stage.stem, weights),
    blocks: stage.blocks.map((b) => ({
      ...(b.expand ? { expand: convSpec(b.expand, weights) } : {}),
      dw: convSpec(b.dw, weights),
      project: convSpec(b.project, weights),
      residual: b.residual,
    })),
    taps: stage.outputs.map((o) => o.block),
    ops,
    loc,
    conf,
  };
}

/**
 * The kernels' spec of a model graph and the graph values of its taps, or
 * null where the graph has no backbone stage the kernels run or a later
 * node they do not take.
 */
export function kernelSpecOf(graph: ModelGraph, weights: Map<string, Tensor>): { spec: NetworkSpec; tapValues: string[] } | null {
  const stage = backboneStage(graph);
  const spec = stage ? networkSpec(graph, stage, weights) : null;
  return stage && spec ? { spec, tapValues: stage.outputs.map((o) => o.value) } : null;
}

const OP_KINDS = { conv: 0, add: 1, upsample: 2, maxout: 3 } as const;

/**
 * A NetworkSpec as one Float32Array, the form the WebAssembly kernels read
 * (format 1, documented in packages/web/native/extd_wasm.cc): integers as
 * floats, each conv as [in, out, kernel, stride, groups, has activation,
 * slope, weight..., bias...]. `int8` is not encoded (the wasm build has no
 * int8 kernels).
 * @throws Error naming the conv whose weight or bias length does not match its shape.
 */
export function encodeNetworkSpec(spec: NetworkSpec): Float32Array {
  const parts: Array<number[] | Float32Array> = [];
  const conv = (c: ConvSpec, where: string) => {
    const weights = c.outChannels * (c.inChannels / c.groups) * c.kernel * c.kernel;
    if (c.weight.length !== weights || c.bias.length !== c.outChannels) {
      throw new Error(`${where}: ${c.weight.length} weights and ${c.bias.length} biases, expected ${weights} and ${c.outChannels}`);
    }
    parts.push([c.inChannels, c.outChannels, c.kernel, c.stride, c.groups, c.slope === undefined ? 0 : 1, c.slope ?? 0], c.weight, c.bias);
  };
  const ints = (v: number[]) => parts.push([v.length, ...v]);
  parts.push([1]);
  conv(spec.stem, 'stem');
  parts.push([spec.blocks.length]);
  spec.blocks.forEach((b, i) => {
    parts.push([b.expand ? 1 : 0, b.residual ? 1 : 0]);
    if (b.expand) conv(b.expand, `blocks[${i}].expand`);
    conv(b.dw, `blocks[${i}].dw`);
    conv(b.project, `blocks[${i}].project`);
  });
  ints(spec.taps);
  parts.push([spec.ops.length]);
  spec.ops.forEach((op, i) => {
    parts.push([OP_KINDS[op.kind], op.a, 'b' in op ? op.b : -1]);
    if (op.kind === 'conv') conv(op.conv, `ops[${i}].conv`);
  });
  ints(spec.loc);
  ints(spec.conf);
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), (at += p.length);
  return out;
}
