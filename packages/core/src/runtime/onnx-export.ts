import type { ConvUnit, ModelGraph } from '../model/graph.js';
import { BN_EPS } from '../model/graph.js';
import type { Tensor } from '../utils/tensor.js';
import { encodeModel, floatTensor, int32Tensor, int64Tensor, int8Tensor, uint8Tensor, type OnnxNode, type OnnxTensor } from './onnx-proto.js';

/** A graph value's calibrated range [min, max] (float32 units of the value). */
export type ActivationRange = readonly [number, number];

/** The int8 part of OnnxExportOptions: calibrated activation ranges (a checked Calibration's `ranges`). */
export interface Int8ExportOptions {
  /**
   * Per-tensor range of every value `quantizedValues(graph)` lists. Ranges
   * are widened to include 0, as uint8 with a zero point needs.
   */
  ranges: Readonly<Record<string, ActivationRange>>;
  /**
   * How the conv weights are stored: 'int8' (-127..127, zero point 0; the
   * default) or 'uint8' (the same values + 128, zero point 128: the same
   * products). x86 CPUs without VNNI multiply uint8 activations by int8
   * weights in pairs summed to 16 bits with saturation, which 255 x 127 x 2
   * overflows; with uint8 weights onnxruntime takes its exact uint8 x uint8
   * path instead (slower). extd's Node package picks 'uint8' there.
   */
  weightType?: 'int8' | 'uint8';
}

/** Options of exportOnnx; defaults in ONNX_EXPORT_DEFAULTS. */
export interface OnnxExportOptions {
  /** Also output the intermediate maps f1..f6 and g1..g6 (for parity tests). */
  features: boolean;
  /** Also output these graph values, by name (float32; used for calibration). */
  extraOutputs: readonly string[];
  /** Emit a static QDQ int8 graph with these activation ranges; null: float32. */
  int8: Int8ExportOptions | null;
}

/** Defaults of OnnxExportOptions: float32, outputs `loc` and `conf` only. */
export const ONNX_EXPORT_DEFAULTS: OnnxExportOptions = { features: false, extraOutputs: [], int8: null };

/**
 * The graph values that get their own uint8 quantisation in the int8 graph,
 * i.e. that need a calibrated range: the input, every conv's output, the
 * conv's pre-activation output where the activation is PReLU/LeakyReLU
 * (`<output>:pre`; after a ReLU only the output, which onnxruntime fuses),
 * and every Add. An upsampled map reuses its input's quantisation
 * (bilinear interpolation stays inside the input's range).
 */
export function quantizedValues(graph: ModelGraph): string[] {
  const out = [graph.input];
  for (const n of graph.nodes) {
    if (n.op === 'conv') {
      if (n.act && n.act.kind !== 'relu') out.push(`${n.output}:pre`);
      out.push(n.output);
    } else if (n.op === 'add') out.push(n.output);
  }
  return out;
}

/** uint8 quantisation of a range: scale and zero point (the range widened to include 0). */
export function uint8Params(range: ActivationRange): { scale: number; zeroPoint: number } {
  const lo = Math.min(range[0], 0),
    hi = Math.max(range[1], 0);
  const scale = Math.fround(hi > lo ? (hi - lo) / 255 : 1);
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  return { scale, zeroPoint };
}

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
 *
 * With `int8`, the graph is static QDQ ("quantize-dequantize") int8: every
 * value of quantizedValues() is followed by QuantizeLinear to uint8 (per
 * tensor, from its calibrated range) and read through DequantizeLinear;
 * conv weights are int8, symmetric, one scale per output channel; biases are
 * int32 at scale input scale x weight scale. onnxruntime rewrites
 * DQ -> Conv -> Q into QLinearConv (uint8 x int8), Conv -> Relu -> Q likewise
 * (the ReLU becomes the uint8 range), DQ -> LeakyRelu -> Q into
 * QLinearLeakyRelu (a table lookup) and DQ -> Add -> Q into QLinearAdd. The
 * heads' outputs are dequantized and flattened in float32.
 * @throws Error when a weight is missing or (int8) a range is missing or not finite.
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

  // int8: per quantized value, its uint8 parameters; Q emitted once after the producer, one DQ per consumer.
  const int8 = opts.int8;
  const qparams = new Map<string, { scale: number; zeroPoint: number; scaleName: string; zpName: string }>();
  let dqCount = 0;
  const quantize = (v: string, rangeOf: string = v, nonNegative = false) => {
    if (!int8) return;
    let q = qparams.get(rangeOf);
    if (!q) {
      const range = int8.ranges[rangeOf];
      if (!range || !Number.isFinite(range[0]) || !Number.isFinite(range[1])) throw new Error(`onnx export: no finite int8 range for '${rangeOf}'`);
      // A ReLU's output starts at 0 exactly: zero point 0, which lets onnxruntime drop the Relu into the conv.
      const { scale, zeroPoint } = uint8Params(nonNegative ? [0, range[1]] : range);
      q = { scale, zeroPoint, scaleName: `${rangeOf}:scale`, zpName: `${rangeOf}:zp` };
      inits.push(floatTensor(q.scaleName, [], Float32Array.of(scale)));
      inits.push(uint8Tensor(q.zpName, [], Uint8Array.of(zeroPoint)));
    }
    qparams.set(v, q);
    nodes.push({ opType: 'QuantizeLinear', inputs: [v, q.scaleName, q.zpName], outputs: [`${v}:q`] });
  };
  /** The float32 value a consumer reads: v itself, or (int8) a fresh DQ of v's uint8 copy. */
  const read = (v: string): string => {
    const q = qparams.get(v);
    if (!q) return v;
    const out = `${v}:dq${dqCount++}`;
    nodes.push({ opType: 'DequantizeLinear', inputs: [`${v}:q`, q.scaleName, q.zpName], outputs: [out] });
    return out;
  };
  /** A tensor whose shape is v's (Shape reads the uint8 copy so the producer keeps Q as its only consumer). */
  const shapeSource = (v: string): string => (qparams.has(v) ? `${v}:q` : v);

  // F's convs are used six times: one folded initializer each, shared by all six Conv nodes.
  const folded = new Map<string, { weight: Float32Array; bias: Float32Array; wq?: { scales: Float32Array } }>();
  // The heads' maps are read only by float ops (flatten, max-out): with int8 they stay float32, as
  // uint8 rounding of the box offsets moved boxes visibly (IoU 0.76 with float32 for a clear face).
  const headMaps = new Set([...graph.loc, ...graph.conf]);
  for (const n of graph.nodes) if (n.op === 'maxout') headMaps.add(n.input);
  const emitConv = (n: ConvUnit) => {
    const k = n.kernel;
    let f = folded.get(n.conv);
    if (!f) {
      const [weight, bias] = foldConvBn(n, w);
      f = { weight, bias };
      folded.set(n.conv, f);
      const dims = [n.outChannels, n.inChannels / n.groups, k, k];
      if (!int8) {
        inits.push(floatTensor(`${n.conv}.weight`, dims, weight));
        inits.push(floatTensor(`${n.conv}.bias`, [n.outChannels], bias));
      } else {
        const { q, scales } = quantizeWeightsPerChannel(weight, n.outChannels);
        f.wq = { scales };
        if (int8.weightType === 'uint8') {
          inits.push(
            uint8Tensor(
              `${n.conv}.weight:q`,
              dims,
              Uint8Array.from(q, (v) => v + 128),
            ),
          );
          inits.push(uint8Tensor(`${n.conv}.weight:zp`, [n.outChannels], new Uint8Array(n.outChannels).fill(128)));
        } else {
          inits.push(int8Tensor(`${n.conv}.weight:q`, dims, q));
          inits.push(int8Tensor(`${n.conv}.weight:zp`, [n.outChannels], new Int8Array(n.outChannels)));
        }
        inits.push(floatTensor(`${n.conv}.weight:scale`, [n.outChannels], scales));
      }
    }
    let x = read(n.input);
    let wName = `${n.conv}.weight`,
      bName = `${n.conv}.bias`;
    if (int8) {
      // The bias is int32 at scale (input scale x weight scale), so it is per use: F's six uses see six input scales.
      const sx = qparams.get(n.input)!.scale;
      const scales = f.wq!.scales;
      const bScale = new Float32Array(n.outChannels);
      const bq = new Int32Array(n.outChannels);
      for (let o = 0; o < n.outChannels; o++) {
        bScale[o] = sx * scales[o]!;
        bq[o] = Math.max(-2147483647, Math.min(2147483647, Math.round(f.bias[o]! / bScale[o]!)));
      }
      const p = `${n.output}:bias`;
      inits.push(int32Tensor(`${p}:q`, [n.outChannels], bq));
      inits.push(floatTensor(`${p}:scale`, [n.outChannels], bScale));
      inits.push(int32Tensor(`${p}:zp`, [n.outChannels], new Int32Array(n.outChannels)));
      wName = `${n.output}:weight`;
      bName = p;
      nodes.push({
        opType: 'DequantizeLinear',
        inputs: [`${n.conv}.weight:q`, `${n.conv}.weight:scale`, `${n.conv}.weight:zp`],
        outputs: [wName],
        attrs: { axis: 0 },
      });
      nodes.push({ opType: 'DequantizeLinear', inputs: [`${p}:q`, `${p}:scale`, `${p}:zp`], outputs: [bName], attrs: { axis: 0 } });
    }
    const pad = (k - 1) / 2;
    const convOut = n.act ? `${n.output}:pre` : n.output;
    nodes.push({
      opType: 'Conv',
      inputs: [x, wName, bName],
      outputs: [convOut],
      attrs: { kernel_shape: [k, k], pads: [pad, pad, pad, pad], strides: [n.stride, n.stride], group: n.groups, dilations: [1, 1] },
    });
    if (!n.act) return headMaps.has(n.output) ? undefined : quantize(n.output);
    if (n.act.kind === 'relu') {
      nodes.push({ opType: 'Relu', inputs: [convOut], outputs: [n.output] });
      return quantize(n.output, n.output, true);
    }
    quantize(convOut);
    x = read(convOut);
    const slope = n.act.kind === 'leaky' ? n.act.slope : w(n.act.param)[0]!;
    nodes.push({ opType: 'LeakyRelu', inputs: [x], outputs: [n.output], attrs: { alpha: { float: slope } } });
    quantize(n.output);
  };

  quantize(graph.input);
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
        nodes.push({ opType: 'Add', inputs: [read(n.a), read(n.b)], outputs: [n.output] });
        quantize(n.output);
        break;
      case 'upsample': {
        // Target size = (N, C of the input, H, W of `like`); sizes differ from 2x when the skip map has an odd size.
        const p = n.output;
        nodes.push({ opType: 'Shape', inputs: [shapeSource(n.input)], outputs: [`${p}:inShape`] });
        nodes.push({ opType: 'Slice', inputs: [`${p}:inShape`, zero, starts2], outputs: [`${p}:nc`] });
        nodes.push({ opType: 'Shape', inputs: [shapeSource(n.like)], outputs: [`${p}:likeShape`] });
        nodes.push({ opType: 'Slice', inputs: [`${p}:likeShape`, starts2, ends4], outputs: [`${p}:hw`] });
        nodes.push({ opType: 'Concat', inputs: [`${p}:nc`, `${p}:hw`], outputs: [`${p}:sizes`], attrs: { axis: 0 } });
        nodes.push({
          opType: 'Resize',
          inputs: [read(n.input), '', '', `${p}:sizes`],
          outputs: [p],
          // pytorch_half_pixel is align_corners=False, matching F.interpolate(mode='bilinear').
          attrs: { mode: 'linear', coordinate_transformation_mode: 'pytorch_half_pixel' },
        });
        quantize(p, rangeName(n.input, qparams));
        break;
      }
      case 'maxout': {
        const p = n.output;
        const x = read(n.input);
        nodes.push({ opType: 'Slice', inputs: [x, zero, three, one], outputs: [`${p}:bg3`] });
        nodes.push({ opType: 'ReduceMax', inputs: [`${p}:bg3`], outputs: [`${p}:bg`], attrs: { axes: [1], keepdims: 1 } });
        nodes.push({ opType: 'Slice', inputs: [x, three, constant(`${p}:end`, [4]), one], outputs: [`${p}:face`] });
        nodes.push({ opType: 'Concat', inputs: [`${p}:bg`, `${p}:face`], outputs: [p], attrs: { axis: 1 } });
        break;
      }
    }
  }

  // Heads: N x C x h x w -> N x (h*w) x C per level, concatenated over levels (finest first).
  const flatten = (maps: string[], channels: number, out: string) => {
    const shape = constant(`${out}:shape`, [0, -1, channels]);
    const parts = maps.map((m, l) => {
      nodes.push({ opType: 'Transpose', inputs: [read(m)], outputs: [`${out}.${l}:nhwc`], attrs: { perm: [0, 2, 3, 1] } });
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
  const extra: Array<[string, string]> = opts.features ? Object.entries(graph.features) : [];
  for (const v of opts.extraOutputs) extra.push([v, v]);
  if (int8 && opts.extraOutputs.length > 0) throw new Error('onnx export: extraOutputs is for the float32 graph (calibration)');
  for (const [name, value] of extra) {
    const src = read(value);
    // Features are renamed (f1..g6); extra outputs are the values themselves.
    if (src !== name) nodes.push({ opType: 'Identity', inputs: [src], outputs: [name] });
    outputs.push({ name, dims: ['N', 'C', `${name}_h`, `${name}_w`] });
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

/** The value whose range a quantized value uses (an upsampled map uses its input's). */
function rangeName(v: string, qparams: Map<string, { scaleName: string }>): string {
  const q = qparams.get(v);
  return q ? q.scaleName.slice(0, -':scale'.length) : v;
}

/**
 * Symmetric int8 quantisation per output channel (axis 0 of an O x ... weight):
 * scale_o = max |w| / 127 (1 for an all-zero channel), q = round(w / scale_o) in -127..127.
 */
export function quantizeWeightsPerChannel(weight: Float32Array, outChannels: number): { q: Int8Array; scales: Float32Array } {
  const per = weight.length / outChannels;
  const q = new Int8Array(weight.length);
  const scales = new Float32Array(outChannels);
  for (let o = 0; o < outChannels; o++) {
    let m = 0;
    for (let i = 0; i < per; i++) m = Math.max(m, Math.abs(weight[o * per + i]!));
    const s = Math.fround(m > 0 ? m / 127 : 1);
    scales[o] = s;
    for (let i = 0; i < per; i++) q[o * per + i] = Math.max(-127, Math.min(127, Math.round(weight[o * per + i]! / s)));
  }
  return { q, scales };
}

/**
 * conv(x) followed by BN(y) = gamma * (y - mean) / sqrt(var + eps) + beta
 * equals a conv with weights scaled per output channel and a new bias.
 * Computed in float64 so folding adds no error beyond the final rounding.
 * `w` returns a checkpoint tensor by name. Returns [weight (same layout as
 * the conv's), bias [out]].
 */
export function foldConvBn(n: ConvUnit, w: (name: string) => Float32Array): [Float32Array, Float32Array] {
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
