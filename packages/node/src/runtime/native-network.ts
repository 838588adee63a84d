import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConvUnit, ModelGraph } from '@extd/core/model/graph';
import { backboneStage } from '@extd/core/model/backbone';
import type { CreateNativeSession, InferenceSession, SessionOptions } from '@extd/core/runtime/backend';
import { foldConvBn } from '@extd/core/runtime/onnx-export';
import type { Float32Tensor, Tensor } from '@extd/core/utils/tensor';

/**
 * extd's native kernels (native/extd_kernels.cc, native/network.h) for the
 * whole float32 network, behind the CreateNativeSession interface: the
 * backbone (model/backbone.ts) as fused inverted-residual blocks, then the
 * FPN and the heads as a short list of ops. The addon is optional: it is
 * built at install time (scripts/build-kernels.mjs) where a C++ compiler
 * exists; without it createNativeSession returns null and the detector runs
 * on onnxruntime.
 */

interface ConvSpec {
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

type OpSpec = { kind: 'conv'; a: number; conv: ConvSpec } | { kind: 'add' | 'upsample'; a: number; b: number } | { kind: 'maxout'; a: number };

/** What the addon takes: see native/extd_kernels.cc. */
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
}

interface NativeNetwork {
  readonly confChannels: number;
  priors(height: number, width: number): number;
  /** [C, h, w] of tap `tap`'s output for an input of height x width. */
  outputShape(tap: number, height: number, width: number): [number, number, number];
  run(
    input: Float32Array,
    height: number,
    width: number,
    loc: Float32Array,
    conf: Float32Array,
    tapOutputs: Float32Array[],
    threads: number,
    done: (err: Error | null) => void,
  ): void;
}

interface Addon {
  Network: new (spec: NetworkSpec) => NativeNetwork;
}

const ADDON_PATH = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'native', 'build', 'Release', 'extd_kernels.node');

let addon: Addon | null | undefined;
let loadError = '';

/** The kernels addon, or null when it was not built or does not load (the reason: nativeKernelsError()). */
export function nativeKernels(): Addon | null {
  if (addon === undefined) {
    addon = null;
    if (existsSync(ADDON_PATH)) {
      try {
        addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
      } catch (e) {
        loadError = (e as Error).message.split('\n')[0]!;
      }
    } else {
      loadError = `not built (${ADDON_PATH} is missing; npm rebuild extd builds it where a C++ compiler exists)`;
    }
  }
  return addon;
}

/** Why nativeKernels() returned null ('' when it did not). */
export function nativeKernelsError(): string {
  nativeKernels();
  return loadError;
}

/** A conv with BatchNorm folded in, as the addon takes it. */
function convSpec(n: ConvUnit, weights: Map<string, Tensor>): ConvSpec {
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
 * The addon's description of a model graph: the backbone's blocks, then
 * every later node as an op over numbered values. null when the graph has
 * no backbone of the kernels' shape or a later node reads a value inside it.
 */
export function networkSpec(graph: ModelGraph, weights: Map<string, Tensor>): NetworkSpec | null {
  const stage = backboneStage(graph);
  if (!stage) return null;
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

/** A native network and what it needs to run, for tests and createNativeSession. */
export interface NativeModel {
  network: NativeNetwork;
  spec: NetworkSpec;
  /** The graph values of the taps, in order (f1..f6 for EXTD). */
  tapValues: string[];
}

/** Build the native network of a graph, or null (no addon, or a graph or channel counts the kernels do not take). */
export function nativeModel(graph: ModelGraph, weights: Map<string, Tensor>): NativeModel | null {
  const kernels = nativeKernels();
  if (!kernels) return null;
  const spec = networkSpec(graph, weights);
  if (!spec) return null;
  try {
    return { network: new kernels.Network(spec), spec, tapValues: backboneStage(graph)!.outputs.map((o) => o.value) };
  } catch {
    return null;
  }
}

/**
 * Run a native network: loc (1 x P x 4) and conf (1 x P x 2), and with
 * `taps` the backbone outputs by graph value (1 x C x h x w).
 */
export function runNative(model: NativeModel, input: Float32Tensor, threads: number, taps = false): Promise<Record<string, Float32Tensor>> {
  const [n, c, h, w] = input.shape as [number, number, number, number];
  if (n !== 1 || c !== 3) return Promise.reject(new Error(`native network: input must be 1 x 3 x H x W, got ${input.shape.join(' x ')}`));
  const { network } = model;
  const priors = network.priors(h, w);
  const cc = network.confChannels;
  const out: Record<string, Float32Tensor> = {
    loc: { dtype: 'float32', shape: [1, priors, 4], data: new Float32Array(priors * 4) },
    conf: { dtype: 'float32', shape: [1, priors, cc], data: new Float32Array(priors * cc) },
  };
  const tapOutputs: Float32Array[] = [];
  if (taps) {
    model.tapValues.forEach((v, k) => {
      const shape = [1, ...network.outputShape(k, h, w)];
      const data = new Float32Array(shape[1]! * shape[2]! * shape[3]!);
      out[v] = { dtype: 'float32', shape, data };
      tapOutputs.push(data);
    });
  }
  return new Promise((resolveRun, reject) => {
    network.run(input.data, h, w, out.loc!.data, out.conf!.data, tapOutputs, threads, (err) => (err ? reject(err) : resolveRun(out)));
  });
}

/** CreateNativeSession on the kernels: null when the addon is not built or does not take this graph. */
export const createNativeSession: CreateNativeSession = (graph, weights, options: SessionOptions) => {
  const model = nativeModel(graph, weights);
  if (!model) return null;
  const session: InferenceSession & { name: string } = {
    name: 'extd-kernels',
    run: (input: Float32Tensor) => runNative(model, input, options.threads),
    async release() {},
  };
  return session;
};
