import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConvUnit } from '@extd/core/model/graph';
import type { BackboneStage } from '@extd/core/model/backbone';
import type { BackboneRunner, CreateBackbone, SessionOptions } from '@extd/core/runtime/backend';
import { foldConvBn } from '@extd/core/runtime/onnx-export';
import type { Float32Tensor, Tensor } from '@extd/core/utils/tensor';

/**
 * extd's native kernels (native/extd_kernels.cc, front.h) for the model's
 * backbone, behind the CreateBackbone interface. The addon is optional: it
 * is built at install time (scripts/build-kernels.mjs) where a C++ compiler
 * exists; without it createNativeFront returns null and the detector runs
 * the whole graph on onnxruntime.
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

interface NativeBackbone {
  /** [C, h, w] of tap `tap`'s output for an input of height x width. */
  outputShape(tap: number, height: number, width: number): [number, number, number];
  run(input: Float32Array, height: number, width: number, outputs: Float32Array[], threads: number, done: (err: Error | null) => void): void;
}

interface Addon {
  Backbone: new (spec: {
    stem: ConvSpec;
    blocks: Array<{ expand?: ConvSpec; dw: ConvSpec; project: ConvSpec; residual: boolean }>;
    /** Indices of the blocks whose outputs run() writes. */
    taps: number[];
  }) => NativeBackbone;
}

const ADDON_PATH = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'native', 'build', 'Release', 'extd_kernels.node');

let addon: Addon | null | undefined;

/** The kernels addon, or null when it was not built (or does not load: the reason is in `nativeKernelsError`). */
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

let loadError = '';
/** Why nativeKernels() returned null ('' when it did not). */
export function nativeKernelsError(): string {
  nativeKernels();
  return loadError;
}

/** A conv of the stage with BatchNorm folded in, as the addon takes it. */
function convSpec(n: ConvUnit, weights: Map<string, Tensor>): ConvSpec {
  const w = (name: string): Float32Array => {
    const t = weights.get(name);
    if (!t || t.dtype !== 'float32') throw new Error(`native front: missing float32 tensor '${name}'`);
    return t.data as Float32Array;
  };
  const [weight, bias] = foldConvBn(n, w);
  const spec: ConvSpec = { inChannels: n.inChannels, outChannels: n.outChannels, kernel: n.kernel, stride: n.stride, groups: n.groups, weight, bias };
  if (n.act) spec.slope = n.act.kind === 'relu' ? 0 : n.act.kind === 'leaky' ? n.act.slope : w(n.act.param)[0]!;
  return spec;
}

/**
 * CreateBackbone on the native kernels: null when the addon is not built or
 * does not take this stage (channel counts that are not multiples of 16).
 * Output buffers are pooled: a fresh buffer per call would pay the first
 * touch of every page (about 6 us per 4 KB page on the development VM).
 */
export const createNativeBackbone: CreateBackbone = (stage: BackboneStage, weights: Map<string, Tensor>, options: SessionOptions): BackboneRunner | null => {
  const kernels = nativeKernels();
  if (!kernels) return null;
  let native: NativeBackbone;
  try {
    native = new kernels.Backbone({
      stem: convSpec(stage.stem, weights),
      blocks: stage.blocks.map((b) => ({
        ...(b.expand ? { expand: convSpec(b.expand, weights) } : {}),
        dw: convSpec(b.dw, weights),
        project: convSpec(b.project, weights),
        residual: b.residual,
      })),
      taps: stage.outputs.map((o) => o.block),
    });
  } catch {
    return null;
  }
  // Sets of output buffers, by input size; a few kept (calls in flight each need a set).
  const pool: Array<{ key: string; outputs: Record<string, Float32Tensor> }> = [];
  const keyOf = new WeakMap<object, string>();
  const threads = options.threads;
  return {
    name: 'extd-kernels',
    run(input: Float32Tensor): Promise<Record<string, Float32Tensor>> {
      const [n, c, h, w] = input.shape as [number, number, number, number];
      if (n !== 1 || c !== 3) return Promise.reject(new Error(`native backbone: input must be 1 x 3 x H x W, got ${input.shape.join(' x ')}`));
      const key = `${h}x${w}`;
      const i = pool.findIndex((p) => p.key === key);
      let outputs: Record<string, Float32Tensor>;
      if (i >= 0) outputs = pool.splice(i, 1)[0]!.outputs;
      else {
        outputs = {};
        stage.outputs.forEach((o, k) => {
          const shape = [1, ...native.outputShape(k, h, w)];
          outputs[o.value] = { dtype: 'float32', shape, data: new Float32Array(shape[1]! * shape[2]! * shape[3]!) };
        });
      }
      keyOf.set(outputs, key);
      const arrays = stage.outputs.map((o) => outputs[o.value]!.data);
      return new Promise((resolveRun, reject) => {
        native.run(input.data, h, w, arrays, threads, (err) => (err ? reject(err) : resolveRun(outputs)));
      });
    },
    recycle(outputs: Record<string, Float32Tensor>) {
      const key = keyOf.get(outputs);
      if (key) pool.push({ key, outputs });
      if (pool.length > 4) pool.shift();
    },
    async release() {
      pool.length = 0;
    },
  };
};
