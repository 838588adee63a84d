import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelGraph } from '@extd/core/model/graph';
import { kernelSpecOf, type NetworkSpec } from '@extd/core/runtime/kernel-spec';
import { ReusePool } from '@extd/core/utils/pool';
import type { CreateNativeSession, InferenceSession, SessionOptions } from '@extd/core/runtime/backend';
import type { Precision } from '@extd/core/detector';
import type { Float32Tensor, Tensor } from '@extd/core/utils/tensor';
import type { RgbImage } from '@extd/core/image/types';

/**
 * extd's native kernels (native/extd_kernels.cc, native/network.h) for the
 * whole float32 network, behind the CreateNativeSession interface: the
 * backbone (model/backbone.ts) as fused inverted-residual blocks, then the
 * FPN and the heads as a short list of ops. The addon is optional: it is
 * built at install time (scripts/build-kernels.mjs) where a C++ compiler
 * exists; without it createNativeSession returns null and the detector runs
 * on onnxruntime.
 */

interface NativeNetwork {
  readonly confChannels: number;
  priors(height: number, width: number): number;
  /** Free the buffers kept between runs (a later run allocates them again). */
  release(): void;
  /** [C, h, w] of tap `tap`'s output for an input of height x width. */
  outputShape(tap: number, height: number, width: number): [number, number, number];
  /** input: Float32Array 3 x height x width, or Uint8Array height x width x 3 (RGB) with `mean` (3 values). */
  run(
    input: Float32Array | Uint8Array,
    height: number,
    width: number,
    loc: Float32Array,
    conf: Float32Array,
    tapOutputs: Float32Array[],
    threads: number,
    done: (err: Error | null) => void,
    mean?: Float32Array,
  ): void;
}

interface Addon {
  Network: new (spec: NetworkSpec) => NativeNetwork;
  /** Floats per vector of this build: 16 (AVX-512), 8 (AVX2), 4 (SSE2, NEON). */
  vectorWidth: number;
  /** Whether this build has the int8 kernels (AVX512-VNNI): NetworkSpec.int8. */
  int8: boolean;
}

const ADDON_PATH = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'native', 'build', 'Release', 'extd_kernels.node');

let addon: Addon | null | undefined;
let loadError = '';

/**
 * Instruction-set flags (as /proc/cpuinfo names them) that code compiled
 * with -march=native may use. The build records the build machine's
 * (scripts/build-kernels.mjs); an addon copied to a CPU without one of them
 * would die of SIGILL, so it is not loaded there.
 */
const ISA_FLAGS = new Set(
  'sse sse2 ssse3 sse4_1 sse4_2 sse4a fma4 xop tbm clzero popcnt avx avx2 fma f16c bmi1 bmi2 abm movbe adx aes pclmulqdq sha_ni avx512f avx512dq avx512cd avx512bw avx512vl avx512ifma avx512vbmi avx512_vbmi2 avx512_vnni avx512_bitalg avx512_vpopcntdq avx512_bf16 avx512_fp16 gfni vaes vpclmulqdq avx_vnni amx_tile amx_bf16 amx_int8 clflushopt clwb movdiri movdir64b serialize'.split(
    ' ',
  ),
);

/** The instruction-set flags of `built` (the build machine's CPU flags) that `here` lacks. */
export function missingIsaFlags(built: readonly string[], here: ReadonlySet<string>): string[] {
  return built.filter((f) => ISA_FLAGS.has(f) && !here.has(f));
}

/** The running CPU's instruction-set flags (Linux), or null where /proc/cpuinfo is not readable. */
export function cpuFlags(): Set<string> | null {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => /^(flags|Features)\s*:/.test(l));
    return line ? new Set(line.split(':')[1]!.trim().split(/\s+/)) : null;
  } catch {
    return null;
  }
}

/**
 * How the int8 graphs given to onnxruntime store their weights (Int8ExportOptions.weightType):
 * 'uint8' on x86-64 CPUs without VNNI (AVX512-VNNI or AVX-VNNI) or whose flags cannot be read, where
 * onnxruntime's uint8 x int8 products are summed in pairs to 16 bits with saturation and can overflow;
 * 'int8' elsewhere (VNNI, ARM).
 */
export function onnxInt8WeightType(arch: string = process.arch, flags: ReadonlySet<string> | null = cpuFlags()): 'int8' | 'uint8' {
  if (arch !== 'x64') return 'int8';
  return flags && (flags.has('avx512_vnni') || flags.has('avx_vnni')) ? 'int8' : 'uint8';
}

/** The kernels addon, or null when it was not built, was built for another CPU, or does not load (the reason: nativeKernelsError()). */
export function nativeKernels(): Addon | null {
  if (addon === undefined) {
    addon = null;
    if (!existsSync(ADDON_PATH)) {
      loadError = `not built (${ADDON_PATH} is missing; npm rebuild extd builds it where a C++ compiler exists)`;
      return addon;
    }
    const recordPath = ADDON_PATH.replace(/\.node$/, '.cpu.json');
    const here = cpuFlags();
    if (here && existsSync(recordPath)) {
      try {
        const missing = missingIsaFlags((JSON.parse(readFileSync(recordPath, 'utf8')) as { flags: string[] }).flags, here);
        if (missing.length > 0) {
          loadError = `built on a CPU with ${missing.join(', ')}, which this one lacks (npm rebuild extd builds it for this one)`;
          return addon;
        }
      } catch (e) {
        loadError = `${recordPath}: unreadable (${(e as Error).message})`;
        return addon;
      }
    }
    try {
      addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
    } catch (e) {
      loadError = (e as Error).message.split('\n')[0]!;
    }
  }
  return addon;
}

/**
 * What runs a float32 network with engine 'auto', in words: 'extd-kernels
 * (16-float vectors)', or 'onnxruntime (<why the kernels are not used>)'.
 */
export function float32EngineStatus(): string {
  const kernels = nativeKernels();
  if (!kernels) return `onnxruntime (native kernels ${nativeKernelsError()})`;
  if (kernels.vectorWidth < 8) return `onnxruntime (the native kernels were built with ${kernels.vectorWidth}-float vectors, slower than onnxruntime)`;
  return `extd-kernels (${kernels.vectorWidth}-float vectors)`;
}

/**
 * What runs an int8 network with engine 'auto', in words: 'extd-kernels
 * (AVX512-VNNI)', or 'onnxruntime (<why the kernels do not>)'.
 */
export function int8EngineStatus(): string {
  const kernels = nativeKernels();
  if (!kernels) return `onnxruntime (native kernels ${nativeKernelsError()})`;
  if (!kernels.int8 || kernels.vectorWidth < 8) return 'onnxruntime (the native kernels were built for a CPU without AVX512-VNNI)';
  return 'extd-kernels (AVX512-VNNI)';
}

/** Why nativeKernels() returned null ('' when it did not). */
export function nativeKernelsError(): string {
  nativeKernels();
  return loadError;
}

/** A native network and what it needs to run, for tests and createNativeSession. */
export interface NativeModel {
  network: NativeNetwork;
  /** The graph values of the taps, in order (f1..f6 for EXTD). */
  tapValues: string[];
}

/**
 * Build the native network of a graph, or null (no addon, a graph or channel
 * counts the kernels do not take, or `precision` 'int8' on a build without
 * the int8 kernels).
 */
export function nativeModel(graph: ModelGraph, weights: Map<string, Tensor>, precision: Precision = 'float32'): NativeModel | null {
  const kernels = nativeKernels();
  if (precision === 'int8' && !kernels?.int8) return null;
  const described = kernels ? kernelSpecOf(graph, weights) : null;
  if (!kernels || !described) return null;
  const { spec, tapValues } = described;
  if (precision === 'int8') spec.int8 = true;
  try {
    return { network: new kernels.Network(spec), tapValues };
  } catch {
    return null;
  }
}

/** An RGB image (H x W x 3 uint8) and the mean (RGB) the network input subtracts: runNative converts it in the stem. */
export interface RgbInput {
  rgb: RgbImage;
  mean: readonly number[];
}

/** loc and conf buffers of earlier runs, found by loc's length. */
export type OutputPool = ReusePool<{ loc: Float32Array; conf: Float32Array }>;

/**
 * Run a native network: loc (1 x P x 4) and conf (1 x P x 2), and with
 * `taps` the backbone outputs by graph value (1 x C x h x w). loc and conf
 * come from `pool` when it has buffers of their size.
 */
export function runNative(
  model: NativeModel,
  input: Float32Tensor | RgbInput,
  threads: number,
  taps = false,
  pool?: OutputPool,
): Promise<Record<string, Float32Tensor>> {
  let h: number, w: number;
  if ('rgb' in input) {
    (h = input.rgb.height), (w = input.rgb.width);
  } else {
    const [n, c] = input.shape as [number, number, number, number];
    if (n !== 1 || c !== 3) return Promise.reject(new Error(`native network: input must be 1 x 3 x H x W, got ${input.shape.join(' x ')}`));
    (h = input.shape[2]!), (w = input.shape[3]!);
  }
  const { network } = model;
  const priors = network.priors(h, w);
  const cc = network.confChannels;
  const reuse = pool?.take(priors * 4);
  const out: Record<string, Float32Tensor> = {
    loc: { dtype: 'float32', shape: [1, priors, 4], data: reuse?.loc ?? new Float32Array(priors * 4) },
    conf: { dtype: 'float32', shape: [1, priors, cc], data: reuse?.conf ?? new Float32Array(priors * cc) },
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
    const done = (err: Error | null) => (err ? reject(err) : resolveRun(out));
    if ('rgb' in input) network.run(input.rgb.data, h, w, out.loc!.data, out.conf!.data, tapOutputs, threads, done, Float32Array.from(input.mean));
    else network.run(input.data, h, w, out.loc!.data, out.conf!.data, tapOutputs, threads, done);
  });
}

/**
 * CreateNativeSession on the kernels: null when the addon is not built, was
 * built without 8-float vectors (AVX2 or AVX-512: narrower builds were
 * slower than onnxruntime's own kernels), or does not take this graph.
 * Calls are queued here, one at a time: a call waiting inside the addon
 * would hold one of libuv's four pool threads, which file reads and other
 * addons (sharp) share.
 */
export const createNativeSession: CreateNativeSession = (graph, weights, options: SessionOptions) => {
  const kernels = nativeKernels();
  if (!kernels || kernels.vectorWidth < 8) return null;
  const model = nativeModel(graph, weights, options.precision);
  if (!model) return null;
  let queue: Promise<unknown> = Promise.resolve();
  /** Run `fn` after every call queued before it has settled. */
  const queued = <T>(fn: () => Promise<T>): Promise<T> => {
    const result = queue.then(fn);
    queue = result.catch(() => {});
    return result;
  };
  // Output buffers handed back by the detector (recycle), for runs of the same size.
  const spare: OutputPool = new ReusePool((b) => b.loc.length);
  // runRgb's copies of the caller's pixels (a queued run reads them later), for runs of the same size.
  const pixels = new ReusePool<Uint8Array>((b) => b.length);
  const session: InferenceSession & { name: string } = {
    name: 'extd-kernels',
    run(input: Float32Tensor) {
      return queued(() => runNative(model, input, options.threads, false, spare));
    },
    runRgb(image: RgbImage, mean: readonly number[]) {
      const copy = pixels.take(image.data.length) ?? new Uint8Array(image.data.length);
      copy.set(image.data);
      const rgb: RgbImage = { data: copy, width: image.width, height: image.height };
      const result = queued(() => runNative(model, { rgb, mean }, options.threads, false, spare));
      const giveBack = () => pixels.put(copy);
      result.then(giveBack, giveBack);
      return result;
    },
    recycle(outputs: Record<string, Float32Tensor>) {
      if (outputs.loc && outputs.conf) spare.put({ loc: outputs.loc.data, conf: outputs.conf.data });
    },
    async release() {
      await queue;
      model.network.release();
    },
  };
  return session;
};
