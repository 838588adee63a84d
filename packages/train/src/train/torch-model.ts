/**
 * The model graph (src/model/graph.ts) lowered to libtorch, for training.
 *
 * Same graph, same tensor names and same output layout as the ONNX lowering
 * used for inference, so a trained state dict goes straight into
 * `extd detect` and into PyTorch's load_state_dict. Unlike the ONNX lowering,
 * BatchNorm stays a live layer: in training mode it normalises with batch
 * statistics and updates its running statistics in place (momentum 0.1, as
 * torch.nn.BatchNorm2d). The reused block F runs six times per forward pass,
 * so, as in PyTorch, its BN running statistics are updated six times.
 */
import type { ConvUnit, ModelGraph } from '@extd/core/model/graph';
import { BN_EPS } from '@extd/core/model/graph';
import { formatShape, type Float32Tensor, type Tensor } from '@extd/core/utils/tensor';
import { stateDictTensor } from '@extd/core/weights/checkpoint';
import type { Torch, TorchDType, TorchTensor } from './torch.js';

/** Options of createTorchModel; see TORCH_MODEL_DEFAULTS. */
export interface TorchModelOptions {
  /** float32 for training; float64 for gradient checks. */
  dtype: Extract<TorchDType, 'float32' | 'float64'>;
  /** BatchNorm running-statistics momentum (PyTorch's default 0.1). */
  bnMomentum: number;
}

export const TORCH_MODEL_DEFAULTS: Readonly<TorchModelOptions> = Object.freeze({ dtype: 'float32', bnMomentum: 0.1 });

/**
 * Batch renormalisation limits (Ioffe 2017): in training mode each BN output
 * x_hat(batch) is corrected to x_hat(batch) * r + d with
 * r = sigma_batch / sigma_running and d = (mu_batch - mu_running) / sigma_running,
 * both treated as constants for the gradient and clipped to [1/rMax, rMax]
 * and [-dMax, dMax]. Unclipped, the forward pass equals inference (running
 * statistics) while the gradient keeps batch normalisation's conditioning.
 * rMax 1 and dMax 0 is plain batch normalisation.
 */
export interface Renorm {
  rMax: number;
  dMax: number;
}

/** Options of TorchModel.forward; see FORWARD_DEFAULTS. */
export interface ForwardOptions {
  /** Training mode: BN uses batch statistics and updates its running statistics. */
  training: boolean;
  /** In training mode: batch renormalisation instead of plain BN (null: plain). */
  renorm: Renorm | null;
  /** Also return the intermediate maps f1..f6 and g1..g6. */
  features: boolean;
}

export const FORWARD_DEFAULTS: Readonly<ForwardOptions> = Object.freeze({ training: false, renorm: null, features: false });

export interface ForwardResult {
  /** N x P x 4 raw box regression, priors in the order of src/anchors/priors.ts. */
  loc: TorchTensor;
  /** N x P x 2 background / face logits (level 1 already max-out reduced). */
  conf: TorchTensor;
  /** When requested: f1..f6, g1..g6 (N x C x h x w). */
  features?: Record<string, TorchTensor>;
}

export class TorchModel {
  /**
   * @param tensors every tensor the graph names (parameters and BN running
   *   statistics), all of one dtype; learnable ones must require grad.
   */
  constructor(
    readonly torch: Torch,
    readonly graph: ModelGraph,
    readonly tensors: Map<string, TorchTensor>,
    readonly options: TorchModelOptions = TORCH_MODEL_DEFAULTS,
  ) {
    for (const p of graph.params) stateDictTensor(tensors, p, 'torch model');
  }

  /** Names of the learnable tensors, in graph order (the order of parameters()). */
  parameterNames(): string[] {
    return this.graph.params.filter((p) => p.learnable).map((p) => p.name);
  }

  /** The learnable tensors (requiring grad), in graph order: pass them to the optimiser. */
  parameters(): TorchTensor[] {
    return this.parameterNames().map((n) => this.tensors.get(n)!);
  }

  /**
   * Runs the network on `input` (N x 3 x H x W, mean-subtracted RGB, the model's dtype).
   * Only the returned tensors get handles that outlive the call: every
   * intermediate map is released at once, so what autograd saved for
   * backward is all that stays, and backward frees it as it goes.
   */
  forward(input: TorchTensor, options: Partial<ForwardOptions> = {}): ForwardResult {
    const o = { ...FORWARD_DEFAULTS, ...options };
    if (input.shape.length !== 4 || input.shape[1] !== 3) {
      throw new Error(`torch model: input has shape ${formatShape(input.shape)}, expected [N, 3, H, W]`);
    }
    return this.torch.tidy(() => this.run(input, o));
  }

  private run(input: TorchTensor, o: ForwardOptions): ForwardResult {
    const t = this.torch;
    const values = new Map<string, TorchTensor>([[this.graph.input, input]]);
    const get = (name: string) => values.get(name)!;
    for (const n of this.graph.nodes) {
      switch (n.op) {
        case 'conv':
          values.set(n.output, this.conv(n, get(n.input), o.training, o.renorm));
          break;
        case 'add':
          values.set(n.output, t.add(get(n.a), get(n.b)));
          break;
        case 'upsample': {
          const like = get(n.like).shape;
          values.set(n.output, t.upsampleBilinear2d(get(n.input), [like[2]!, like[3]!], false));
          break;
        }
        case 'maxout': {
          // background = max of channels 0..2, face = channel 3.
          const x = get(n.input);
          const [bg] = t.max(t.narrow(x, 1, 0, 3), 1, true);
          values.set(n.output, t.cat([bg, t.narrow(x, 1, 3, 1)], 1));
          break;
        }
      }
    }
    const flatten = (maps: string[], channels: number) =>
      t.cat(
        maps.map((m) => {
          const x = get(m);
          return t.reshape(t.permute(x, [0, 2, 3, 1]), [x.shape[0]!, -1, channels]);
        }),
        1,
      );
    const result: ForwardResult = { loc: flatten(this.graph.loc, 4), conf: flatten(this.graph.conf, 2) };
    if (o.features) {
      result.features = {};
      for (const [name, value] of Object.entries(this.graph.features)) result.features[name] = get(value);
    }
    return result;
  }

  private conv(n: ConvUnit, x: TorchTensor, training: boolean, renorm: Renorm | null): TorchTensor {
    const t = this.torch;
    const w = (name: string) => this.tensors.get(name)!;
    const pad = (n.kernel - 1) / 2;
    let y = t.conv2d(x, w(`${n.conv}.weight`), n.bias ? w(`${n.conv}.bias`) : null, n.stride, pad, n.groups);
    if (n.bn) {
      let weight = w(`${n.bn}.weight`);
      let bias = w(`${n.bn}.bias`);
      const mean = w(`${n.bn}.running_mean`);
      const variance = w(`${n.bn}.running_var`);
      if (training && renorm) {
        // gamma * (x_hat * r + d) + beta = x_hat * (gamma * r) + (gamma * d + beta): the fused
        // batch-norm kernel with a corrected affine. r and d come from the running statistics
        // BEFORE this call updates them, so an unclipped forward equals inference.
        const { r, d } = this.renormFactors(y, mean, variance, renorm);
        bias = t.add(t.mul(weight, d), bias);
        weight = t.mul(weight, r);
      }
      if (n.act?.kind === 'prelu') {
        // One node that keeps two maps for backward instead of three (TorchNative.batchNormPrelu).
        return t.batchNormPrelu(y, weight, bias, mean, variance, w(n.act.param), training, this.options.bnMomentum, BN_EPS);
      }
      y = t.batchNorm(y, weight, bias, mean, variance, training, this.options.bnMomentum, BN_EPS);
    }
    if (n.act) {
      if (n.act.kind === 'prelu') y = t.prelu(y, w(n.act.param));
      else if (n.act.kind === 'leaky') y = t.leakyRelu(y, n.act.slope);
      else y = t.relu(y);
    }
    return y;
  }

  /** Batch renormalisation's r and d per channel ([C], no gradient) for the BN input `y` (N x C x H x W). */
  private renormFactors(y: TorchTensor, mean: TorchTensor, variance: TorchTensor, renorm: Renorm): { r: TorchTensor; d: TorchTensor } {
    const t = this.torch;
    const x = t.detach(y);
    const c = x.shape[1]!;
    const mu = t.mean(x, [0, 2, 3]);
    const centred = t.sub(x, t.reshape(mu, [1, c, 1, 1]));
    // Biased batch variance: the one batch normalisation divides by.
    const sigma = t.sqrt(t.add(t.mean(t.mul(centred, centred), [0, 2, 3]), BN_EPS));
    const sigmaRun = t.sqrt(t.add(variance, BN_EPS));
    const r = t.clamp(t.div(sigma, sigmaRun), 1 / renorm.rMax, renorm.rMax);
    const d = t.clamp(t.div(t.sub(mu, mean), sigmaRun), -renorm.dMax, renorm.dMax);
    return { r: t.detach(r), d: t.detach(d) };
  }

  /** A float32 copy of every tensor, under the released names (for safetensors checkpoints). */
  stateDict(): Map<string, Float32Tensor> {
    const out = new Map<string, Float32Tensor>();
    for (const p of this.graph.params) {
      const t = this.tensors.get(p.name)!;
      out.set(p.name, { dtype: 'float32', shape: [...p.shape], data: t.toFloat32Array() });
    }
    return out;
  }

  /** Overwrites every tensor from a state dict (e.g. a checkpoint being resumed); names and shapes must match. */
  loadStateDict(weights: Map<string, Tensor>, source = 'state dict'): void {
    const t = this.torch;
    for (const p of this.graph.params) {
      const src = stateDictTensor(weights, p, source);
      t.tidy(() => {
        this.tensors.get(p.name)!.copyFrom(t.fromTensor(src));
      });
    }
  }

  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
  }
}

/**
 * A libtorch model for `graph`, its tensors copied from `weights` (a loaded
 * checkpoint, or init.ts's initialWeights for a model trained from scratch:
 * the one He initialisation, seeded by our Rng so a seed gives the same
 * start on every machine). Names and shapes are checked (stateDictTensor).
 */
export function createTorchModel(torch: Torch, graph: ModelGraph, weights: Map<string, Tensor>, options: Partial<TorchModelOptions> = {}): TorchModel {
  const o = { ...TORCH_MODEL_DEFAULTS, ...options };
  const tensors = new Map<string, TorchTensor>();
  try {
    for (const p of graph.params) {
      const src = stateDictTensor(weights, p, 'torch model');
      const t = torch.tidy(() => torch.toDtype(torch.fromTensor(src), o.dtype));
      if (p.learnable) t.requiresGrad = true;
      tensors.set(p.name, t);
    }
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  }
  return new TorchModel(torch, graph, tensors, o);
}
