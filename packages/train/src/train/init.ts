/**
 * Initial weights of a model trained from scratch, as a state dict under the
 * released tensor names (feed it to createTorchModel).
 *
 * The choice, following the issue's "He initialisation" and what PyTorch does
 * for these layers:
 *  - conv weights: He normal, torch.nn.init.kaiming_normal_ with its defaults
 *    (mode fan_in, ReLU gain): N(0, 2 / fan_in), fan_in = in/groups * k * k.
 *    fan_in (not MobileNetV2's fan_out) because the detection heads have no
 *    BatchNorm after them: with fan_out (4 or 2 outputs x 9) their initial
 *    outputs would be ~4x the input scale, giving huge first losses; fan_in
 *    keeps every conv's output at the input's scale. Inside the backbone a BN
 *    follows every conv, so the mode does not matter there.
 *  - conv biases 0; BatchNorm weight 1, bias 0, running mean 0, var 1
 *    (torch.nn.BatchNorm2d's reset); PReLU slopes 0.25 (torch.nn.PReLU).
 *
 * Samples come from our seeded Rng (Box-Muller on xoshiro128**), not from
 * libtorch's generator, so a seed gives the same initial model on every
 * machine and without libtorch (and tests can check the statistics).
 * No node: imports.
 */
import type { ModelGraph, ParamSpec } from '@extd/core/model/graph';
import { Rng } from '@extd/core/utils/rng';
import type { Float32Tensor } from '@extd/core/utils/tensor';

export interface InitOptions {
  /** Kaiming fan mode for conv weights. */
  mode: 'fan_in' | 'fan_out';
  /** Initial PReLU slope. */
  preluSlope: number;
  /**
   * Std of the detection heads' weights (`loc.N`, `conf.N`); 0 keeps He
   * initialisation there too. A small value (SSD-style 0.01) starts every
   * prior near zero offsets and equal class scores.
   */
  headStd: number;
}

export const INIT_DEFAULTS: Readonly<InitOptions> = Object.freeze({ mode: 'fan_in', preluSlope: 0.25, headStd: 0 });

/** fan_in and fan_out of a conv weight [out, in/groups, k, k], as torch.nn.init computes them. */
export function convFans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length !== 4) throw new Error(`conv weight shape [${shape.join(', ')}]: expected [out, in/groups, k, k]`);
  const receptive = shape[2]! * shape[3]!;
  return { fanIn: shape[1]! * receptive, fanOut: shape[0]! * receptive };
}

/** Every tensor of `graph` (parameters and BN buffers) at its initial value, float32. */
export function initialWeights(graph: ModelGraph, seed: number, options: Partial<InitOptions> = {}): Map<string, Float32Tensor> {
  const o = { ...INIT_DEFAULTS, ...options };
  // A stream of its own so the init never shares numbers with the data pipeline.
  const rng = Rng.fromKey(seed, -2);
  const out = new Map<string, Float32Tensor>();
  for (const p of graph.params) out.set(p.name, { dtype: 'float32', shape: [...p.shape], data: initialValues(p, rng, o) });
  return out;
}

function initialValues(p: ParamSpec, rng: Rng, o: InitOptions): Float32Array {
  const n = p.shape.reduce((a, b) => a * b, 1);
  switch (p.kind) {
    case 'weight': {
      const { fanIn, fanOut } = convFans(p.shape);
      const head = /^(loc|conf)\.\d+\.weight$/.test(p.name);
      const std = head && o.headStd > 0 ? o.headStd : Math.sqrt(2 / (o.mode === 'fan_in' ? fanIn : fanOut));
      const w = new Float32Array(n);
      for (let i = 0; i < n; i += 2) {
        // Box-Muller: two independent normals from two uniforms; 1 - u keeps log away from 0.
        const r = Math.sqrt(-2 * Math.log(1 - rng.float()));
        const t = 2 * Math.PI * rng.float();
        w[i] = std * r * Math.cos(t);
        if (i + 1 < n) w[i + 1] = std * r * Math.sin(t);
      }
      return w;
    }
    case 'bn_weight':
    case 'running_var':
      return new Float32Array(n).fill(1);
    case 'prelu':
      return new Float32Array(n).fill(o.preluSlope);
    case 'bias':
    case 'bn_bias':
    case 'running_mean':
      return new Float32Array(n);
  }
}
