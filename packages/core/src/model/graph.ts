import { LEAKY_SLOPE, type Variant } from './variant.js';

/**
 * EXTD defined once, as a small dataflow graph that every backend lowers:
 * the ONNX exporter (inference), the libtorch lowering (training), and the
 * parameter/MAC counters. Tensor names are the released checkpoints'
 * (`base.N.conv.M.*`, `upfeat.N.*`, `loc.N.*`, `conf.N.*`), so those files
 * load by name with no mapping table.
 *
 * Layout conventions: every value is an NCHW float32 feature map. Convolution
 * weights are [out, in / groups, k, k] (PyTorch's layout).
 */

/** Activation after a conv unit. PReLU has one learnable slope per unit (shape [1]). */
export type Act = { kind: 'prelu'; param: string } | { kind: 'leaky'; slope: number } | { kind: 'relu' };

/**
 * conv -> optional BatchNorm -> optional activation: the only layer type the
 * network has. Kept fused in the IR because the two lowerings treat it
 * differently (ONNX folds BN into the conv; training keeps BN live).
 */
export interface ConvUnit {
  op: 'conv';
  input: string;
  output: string;
  /** Prefix of `<conv>.weight` / `<conv>.bias`. */
  conv: string;
  inChannels: number;
  outChannels: number;
  kernel: 1 | 3;
  stride: 1 | 2;
  groups: number;
  bias: boolean;
  /** Prefix of `<bn>.weight`, `.bias`, `.running_mean`, `.running_var` (eps 1e-5). */
  bn?: string;
  act?: Act;
}

export interface AddNode {
  op: 'add';
  a: string;
  b: string;
  output: string;
}

/** Bilinear resize (align_corners = false) of `input` to the spatial size of `like`. */
export interface UpsampleNode {
  op: 'upsample';
  input: string;
  like: string;
  output: string;
}

/**
 * The level-1 classifier's "max-out background": 4 channels in, 2 out:
 * background = max(c0, c1, c2), face = c3. It suppresses false positives
 * from the many small anchors (S3FD).
 */
export interface MaxoutNode {
  op: 'maxout';
  input: string;
  output: string;
}

export type GraphNode = ConvUnit | AddNode | UpsampleNode | MaxoutNode;

export interface ParamSpec {
  name: string;
  shape: number[];
  /** Learnable parameters are trained; buffers (BN running stats) are not counted as parameters. */
  kind: 'weight' | 'bias' | 'bn_weight' | 'bn_bias' | 'running_mean' | 'running_var' | 'prelu';
  learnable: boolean;
}

/** The network of one variant as a dataflow graph over named NCHW float32 values (see the module comment). */
export interface ModelGraph {
  /** The variant this graph was built for. */
  variant: Variant;
  /** Name of the input value: 1 x 3 x H x W, mean-subtracted RGB. */
  input: string;
  /** The operations in execution order (every input is produced before it is used). */
  nodes: GraphNode[];
  /** Every tensor the graph reads, once each, with its checkpoint name and shape (conv weights [out, in / groups, k, k]). */
  params: ParamSpec[];
  /** Per detection level, finest (stride 4) first: the box-regression map (4 channels) and the classifier map (2 channels). */
  loc: string[];
  /** Per detection level, finest first: the classifier map, 2 channels (background, face) logits; level 1 after the max-out. */
  conf: string[];
  /** Named intermediate maps for parity tests: f1..f6 (backbone) and g1..g6 (maps fed to the heads). */
  features: Record<string, string>;
}

export const BN_EPS = 1e-5;
/** Stem output channels, the same for every width in the released models. */
const STEM_CHANNELS = 64;

/**
 * The reused block F, as (expansion ratio) per inverted-residual block. Its
 * last block has stride 2, so every block before it runs at the incoming
 * resolution; this is what makes the released models' MACs 5.40 / 7.89 / 13.41 G
 * at 640x640 (with the stride first they would be about 40% lower).
 */
function reusedBlockExpansions(width: number): number[] {
  return width === 32 ? [2, 2, 4, 4, 2, 2] : [2, 2, 4, 4];
}

/**
 * Width 32 of the released checkpoints has an activation after the projection
 * BN of each block (its `conv.5`/`conv.8` PReLU); widths 48 and 64 keep the
 * projection linear, as MobileNetV2 does.
 */
function projectionActivated(width: number): boolean {
  return width === 32;
}

/** Build the graph of `variant`: its nodes, its parameters (the released checkpoints' names) and its outputs. */
export function buildGraph(variant: Variant): ModelGraph {
  const { width } = variant;
  const nodes: GraphNode[] = [];
  const params: ParamSpec[] = [];
  let counter = 0;
  // F's blocks run six times with the same weights: register each name once.
  const registered = new Set<string>();
  const param = (spec: ParamSpec) => {
    if (!registered.has(spec.name)) registered.add(spec.name), params.push(spec);
  };
  const fresh = (hint: string) => `${hint}#${counter++}`;

  const act = (prefix: string): Act => {
    if (variant.activation === 'prelu') {
      param({ name: `${prefix}.weight`, shape: [1], kind: 'prelu', learnable: true });
      return { kind: 'prelu', param: `${prefix}.weight` };
    }
    return variant.activation === 'leaky' ? { kind: 'leaky', slope: LEAKY_SLOPE } : { kind: 'relu' };
  };

  const conv = (
    input: string,
    o: { conv: string; inC: number; outC: number; k: 1 | 3; stride?: 1 | 2; groups?: number; bias?: boolean; bn?: string; act?: string | 'relu' },
  ): string => {
    const groups = o.groups ?? 1;
    const bias = o.bias ?? false;
    param({ name: `${o.conv}.weight`, shape: [o.outC, o.inC / groups, o.k, o.k], kind: 'weight', learnable: true });
    if (bias) param({ name: `${o.conv}.bias`, shape: [o.outC], kind: 'bias', learnable: true });
    if (o.bn) {
      param({ name: `${o.bn}.weight`, shape: [o.outC], kind: 'bn_weight', learnable: true });
      param({ name: `${o.bn}.bias`, shape: [o.outC], kind: 'bn_bias', learnable: true });
      param({ name: `${o.bn}.running_mean`, shape: [o.outC], kind: 'running_mean', learnable: false });
      param({ name: `${o.bn}.running_var`, shape: [o.outC], kind: 'running_var', learnable: false });
    }
    // The FPN's upsampling branch always ends in a plain ReLU, whatever the variant.
    const a: Act | undefined = o.act === 'relu' ? { kind: 'relu' } : o.act ? act(o.act) : undefined;
    const output = fresh(o.conv);
    nodes.push({
      op: 'conv',
      input,
      output,
      conv: o.conv,
      inChannels: o.inC,
      outChannels: o.outC,
      kernel: o.k,
      stride: o.stride ?? 1,
      groups,
      bias,
      bn: o.bn,
      act: a,
    });
    return output;
  };

  /**
   * Inverted residual block `base.<i>.conv.*`: 1x1 expand, 3x3 depthwise
   * (biased), 1x1 project. With expansion 1 (block 1) the expand conv is
   * absent, which shifts the Sequential indices by three.
   */
  const block = (input: string, i: number, inC: number, outC: number, expansion: number, stride: 1 | 2): string => {
    const p = `base.${i}.conv`;
    const hidden = inC * expansion;
    let x = input;
    let k = 0;
    if (expansion !== 1) {
      x = conv(x, { conv: `${p}.${k}`, inC, outC: hidden, k: 1, bn: `${p}.${k + 1}`, act: `${p}.${k + 2}` });
      k += 3;
    }
    x = conv(x, { conv: `${p}.${k}`, inC: hidden, outC: hidden, k: 3, stride, groups: hidden, bias: true, bn: `${p}.${k + 1}`, act: `${p}.${k + 2}` });
    k += 3;
    x = conv(x, {
      conv: `${p}.${k}`,
      inC: hidden,
      outC,
      k: 1,
      bn: `${p}.${k + 1}`,
      act: projectionActivated(width) ? `${p}.${k + 2}` : undefined,
    });
    if (stride === 1 && inC === outC) {
      const output = fresh(`base.${i}.add`);
      nodes.push({ op: 'add', a: input, b: x, output });
      return output;
    }
    return x;
  };

  // E: the stem conv (stride 2) and an expansion-1 block; f0 is at 1/2 resolution.
  const input = 'input';
  let x = conv(input, { conv: 'base.0.0', inC: 3, outC: STEM_CHANNELS, k: 3, stride: 2, bn: 'base.0.1', act: 'base.0.2' });
  x = block(x, 1, STEM_CHANNELS, width, 1, 1);

  // F, applied six times with the SAME weights: f_i = F(f_{i-1}), each halving the size.
  const expansions = reusedBlockExpansions(width);
  const f: string[] = [];
  for (let rep = 0; rep < 6; rep++) {
    for (let b = 0; b < expansions.length; b++) {
      const last = b === expansions.length - 1;
      x = block(x, 2 + b, width, width, expansions[b]!, last ? 2 : 1);
    }
    f.push(x);
  }

  // Feature maps fed to the heads, finest first.
  const g: string[] = new Array(6);
  if (variant.arch === 'fpn') {
    // Top-down: g6 = f6; g_l = U(g_{l+1}) + f_l, U = resize to f_l, depthwise 3x3, pointwise 1x1, BN, ReLU.
    g[5] = f[5]!;
    for (let u = 0; u < 5; u++) {
      const level = 4 - u;
      const up = fresh(`upfeat.${u}.resize`);
      nodes.push({ op: 'upsample', input: g[level + 1]!, like: f[level]!, output: up });
      let y = conv(up, { conv: `upfeat.${u}.0`, inC: width, outC: width, k: 3, groups: width });
      y = conv(y, { conv: `upfeat.${u}.1`, inC: width, outC: width, k: 1, bn: `upfeat.${u}.2`, act: 'relu' });
      const sum = fresh(`g${level + 1}`);
      nodes.push({ op: 'add', a: y, b: f[level]!, output: sum });
      g[level] = sum;
    }
  } else {
    for (let l = 0; l < 6; l++) g[l] = f[l]!;
  }

  const loc: string[] = [];
  const confOut: string[] = [];
  for (let l = 0; l < 6; l++) {
    loc.push(conv(g[l]!, { conv: `loc.${l}`, inC: width, outC: 4, k: 3, bias: true }));
    let c = conv(g[l]!, { conv: `conf.${l}`, inC: width, outC: l === 0 ? 4 : 2, k: 3, bias: true });
    if (l === 0) {
      const m = fresh('conf.0.maxout');
      nodes.push({ op: 'maxout', input: c, output: m });
      c = m;
    }
    confOut.push(c);
  }

  const features: Record<string, string> = {};
  for (let l = 0; l < 6; l++) {
    features[`f${l + 1}`] = f[l]!;
    features[`g${l + 1}`] = g[l]!;
  }
  return { variant, input, nodes, params, loc, conf: confOut, features };
}

/** Learnable parameter count (BN running statistics excluded), as the paper counts. */
export function countParams(graph: ModelGraph): number {
  let n = 0;
  for (const p of graph.params) if (p.learnable) n += p.shape.reduce((a, b) => a * b, 1);
  return n;
}
