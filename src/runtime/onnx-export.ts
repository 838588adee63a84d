import type { ConvUnit, ModelGraph } from '../model/graph.js';
import { BN_EPS } from '../model/graph.js';
import type { Tensor } from '../utils/tensor.js';
import { encodeModel, floatTensor, int64Tensor, type OnnxNode, type OnnxTensor } from './onnx-proto.js';

export interface OnnxExportOptions {
  /** Also output the intermediate maps f1..f6 and g1..g6 (for parity tests). */
  features: boolean;
}

export const ONNX_EXPORT_DEFAULTS: OnnxExportOptions = { features: false };

/** ONNX opset used: 17 has Resize with `pytorch_half_pixel` and ReduceMax with an `axes` attribute. */
export const OPSET = 17;

/**
 * Lower the model graph to an ONNX model for inference.
 *
 * Inputs: `input` N x 3 x H x W (mean-subtracted RGB, any H and W).
 * Outputs: `loc` N x P x 4 (raw box regression) and `conf` N x P x 2
 * (background / face logits, level 1 already max-out reduced), priors in
 * the order of src/anchors/priors.ts.
 *
 * Two rewrites make the graph fast on onnxruntime's CPU provider without
 * changing its outputs: BatchNorm is folded into the preceding conv, and each
 * PReLU (a single slope per unit here) is emitted as LeakyRelu with that
 * slope, which onnxruntime fuses into the conv; as PRelu nodes they cost more
 * than the convolutions themselves and force layout reorders around each conv.
 */
export function exportOnnx(graph: ModelGraph, weights: Map<string, Tensor>, options: Partial<OnnxExportOptions> = {}): Uint8Array {
  const opts = { ...ONNX_EXPORT_DEFAULTS, ...options };
  const nodes: OnnxNode[] = [];
  const inits: OnnxTensor[] = [];
  const w = (name: string): Float32Array => {
    const t = weights.get(name);
    if (!t || t.dtype !== 'float32') throw new Error(`onnx export: missing float32 tensor '${name}'`);
    return t.data as Float32Array;
  };
  const constant = (name: string, values: number[]) => {
    inits.push(int64Tensor(name, values));
    return name;
  };

  // F's convs are used six times: one folded initializer each, shared by all six Conv nodes.
  const folded = new Set<string>();
  const emitConv = (n: ConvUnit) => {
    const k = n.kernel;
    if (!folded.has(n.conv)) {
      folded.add(n.conv);
      const [weight, bias] = foldConvBn(n, w);
      inits.push(floatTensor(`${n.conv}.weight`, [n.outChannels, n.inChannels / n.groups, k, k], weight));
      inits.push(floatTensor(`${n.conv}.bias`, [n.outChannels], bias));
    }
    const pad = (k - 1) / 2;
    const convOut = n.act ? `${n.output}:pre` : n.output;
    nodes.push({
      opType: 'Conv',
      inputs: [n.input, `${n.conv}.weight`, `${n.conv}.bias`],
      outputs: [convOut],
      attrs: { kernel_shape: [k, k], pads: [pad, pad, pad, pad], strides: [n.stride, n.stride], group: n.groups, dilations: [1, 1] },
    });
    if (!n.act) return;
    if (n.act.kind === 'relu') nodes.push({ opType: 'Relu', inputs: [convOut], outputs: [n.output] });
    else {
      const slope = n.act.kind === 'leaky' ? n.act.slope : w(n.act.param)[0]!;
      nodes.push({ opType: 'LeakyRelu', inputs: [convOut], outputs: [n.output], attrs: { alpha: { float: slope } } });
    }
  };

  const starts2 = constant('const.2', [2]);
  const ends4 = constant('const.4', [4]);
  const zero = constant('const.0', [0]);
  const one = constant('const.1', [1]);
  const three = constant('const.3', [3]);
  for (const n of graph.nodes) {
    switch (n.op) {
      case 'conv':
        emitConv(n);
        break;
      case 'add':
        nodes.push({ opType: 'Add', inputs: [n.a, n.b], outputs: [n.output] });
        break;
      case 'upsample': {
        // Target size = (N, C of the input, H, W of `like`); sizes differ from 2x when the skip map has an odd size.
        const p = n.output;
        nodes.push({ opType: 'Shape', inputs: [n.input], outputs: [`${p}:inShape`] });
        nodes.push({ opType: 'Slice', inputs: [`${p}:inShape`, zero, starts2], outputs: [`${p}:nc`] });
        nodes.push({ opType: 'Shape', inputs: [n.like], outputs: [`${p}:likeShape`] });
        nodes.push({ opType: 'Slice', inputs: [`${p}:likeShape`, starts2, ends4], outputs: [`${p}:hw`] });
        nodes.push({ opType: 'Concat', inputs: [`${p}:nc`, `${p}:hw`], outputs: [`${p}:sizes`], attrs: { axis: 0 } });
        nodes.push({
          opType: 'Resize',
          inputs: [n.input, '', '', `${p}:sizes`],
          outputs: [p],
          // pytorch_half_pixel is align_corners=False, matching F.interpolate(mode='bilinear').
          attrs: { mode: 'linear', coordinate_transformation_mode: 'pytorch_half_pixel' },
        });
        break;
      }
      case 'maxout': {
        const p = n.output;
        nodes.push({ opType: 'Slice', inputs: [n.input, zero, three, one], outputs: [`${p}:bg3`] });
        nodes.push({ opType: 'ReduceMax', inputs: [`${p}:bg3`], outputs: [`${p}:bg`], attrs: { axes: [1], keepdims: 1 } });
        nodes.push({ opType: 'Slice', inputs: [n.input, three, constant(`${p}:end`, [4]), one], outputs: [`${p}:face`] });
        nodes.push({ opType: 'Concat', inputs: [`${p}:bg`, `${p}:face`], outputs: [p], attrs: { axis: 1 } });
        break;
      }
    }
  }

  // Heads: N x C x h x w -> N x (h*w) x C per level, concatenated over levels (finest first).
  const flatten = (maps: string[], channels: number, out: string) => {
    const shape = constant(`${out}:shape`, [0, -1, channels]);
    const parts = maps.map((m, l) => {
      nodes.push({ opType: 'Transpose', inputs: [m], outputs: [`${out}.${l}:nhwc`], attrs: { perm: [0, 2, 3, 1] } });
      nodes.push({ opType: 'Reshape', inputs: [`${out}.${l}:nhwc`, shape], outputs: [`${out}.${l}:flat`] });
      return `${out}.${l}:flat`;
    });
    nodes.push({ opType: 'Concat', inputs: parts, outputs: [out], attrs: { axis: 1 } });
  };
  flatten(graph.loc, 4, 'loc');
  flatten(graph.conf, 2, 'conf');

  const outputs = [
    { name: 'loc', dims: ['N', 'P', 4] },
    { name: 'conf', dims: ['N', 'P', 2] },
  ];
  if (opts.features) {
    for (const [name, value] of Object.entries(graph.features)) {
      nodes.push({ opType: 'Identity', inputs: [value], outputs: [name] });
      outputs.push({ name, dims: ['N', 'C', `${name}_h`, `${name}_w`] });
    }
  }
  return encodeModel({
    nodes,
    initializers: inits,
    inputs: [{ name: graph.input, dims: ['N', 3, 'H', 'W'] }],
    outputs,
    opset: OPSET,
    producer: 'extd',
  });
}

/**
 * conv(x) followed by BN(y) = gamma * (y - mean) / sqrt(var + eps) + beta
 * equals a conv with weights scaled per output channel and a new bias.
 * Computed in float64 so folding adds no error beyond the final rounding.
 */
function foldConvBn(n: ConvUnit, w: (name: string) => Float32Array): [Float32Array, Float32Array] {
  const weight = w(`${n.conv}.weight`);
  const bias = n.bias ? w(`${n.conv}.bias`) : new Float32Array(n.outChannels);
  if (!n.bn) return [weight, bias];
  const gamma = w(`${n.bn}.weight`);
  const beta = w(`${n.bn}.bias`);
  const mean = w(`${n.bn}.running_mean`);
  const variance = w(`${n.bn}.running_var`);
  const per = weight.length / n.outChannels;
  const fw = new Float32Array(weight.length);
  const fb = new Float32Array(n.outChannels);
  for (let o = 0; o < n.outChannels; o++) {
    const s = gamma[o]! / Math.sqrt(variance[o]! + BN_EPS);
    for (let i = 0; i < per; i++) fw[o * per + i] = weight[o * per + i]! * s;
    fb[o] = (bias[o]! - mean[o]!) * s + beta[o]!;
  }
  return [fw, fb];
}
