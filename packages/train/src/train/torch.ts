/**
 * libtorch for training: the typed face of the optional N-API addon in
 * native/ (built by scripts/build-addon.mjs at install time when Debian's
 * libtorch-dev is present).
 *
 * Nothing else in the package imports this module eagerly: `loadTorch()` is
 * the single entry point and throws an ExtdError explaining how to install
 * libtorch when the addon is missing, so detection, evaluation and conversion
 * keep working without it.
 *
 * Semantics follow PyTorch 1.13 (the addon calls ATen directly): shapes are
 * NCHW, every operation records autograd history when an input requires
 * grad and grad mode is on, integers are int64 where PyTorch uses int64.
 *
 * Memory: each handle owns a reference to a libtorch tensor. The garbage
 * collector frees it eventually (the addon reports the bytes to V8), but a
 * training loop should free activations deterministically with `tidy()` or
 * `dispose()`: Node runs finalizers only at a later turn of the event loop,
 * so a synchronous loop relying on the collector keeps every step's tensors.
 * `tidy()` releases every handle created inside it, collected or not. The
 * addon's CPU allocator keeps freed blocks for reuse by the next step, up to
 * 9/8 of the largest live total so far (`allocatorStats`). Data crosses the boundary by copy (`fromFloat32Array`,
 * `toFloat32Array`): a JS buffer can be detached or transferred by its owner,
 * so libtorch never aliases it. `dataView()` is the zero-copy way out: a
 * Float32Array over a contiguous float32 tensor's own storage.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExtdError } from '@extd/core/utils/errors';
import type { DType, Tensor } from '@extd/core/utils/tensor';

/** Dtypes a libtorch tensor can have here (float16/bfloat16 only appear if created inside libtorch). */
export type TorchDType = DType;

/** A handle to a libtorch tensor (the addon's native class). */
export interface TorchTensor {
  readonly shape: number[];
  readonly dtype: TorchDType;
  readonly numel: number;
  /** Settable on leaf tensors only (parameters); libtorch refuses it on results of operations. */
  requiresGrad: boolean;
  /** The accumulated gradient (a new handle sharing its storage), or null before backward / after zeroGrad. */
  readonly grad: TorchTensor | null;
  readonly isLeaf: boolean;
  readonly disposed: boolean;
  /**
   * Drops this handle's reference. The memory is freed when nothing else
   * (views, the autograd graph, an optimiser) still uses the storage.
   * Idempotent; any later use of the handle throws.
   */
  dispose(): void;
  /** Backpropagates from this tensor; `gradient` is required unless it has one element. */
  backward(gradient?: TorchTensor | null, retainGraph?: boolean): void;
  /** Sets the accumulated gradient to none (backward adds into an existing one). */
  clearGrad(): void;
  /** The single element as a number (boolean for bool tensors). */
  item(): number;
  /** In-place copy of `src` (same shape, any dtype) without recording history; returns this. */
  copyFrom(src: TorchTensor): TorchTensor;
  /** Zero-copy view of a contiguous float32 tensor's storage; writes go to the tensor. */
  dataView(): Float32Array;
  /** Copies out, converting the dtype when needed. */
  toFloat32Array(): Float32Array;
  toFloat64Array(): Float64Array;
  toInt32Array(): Int32Array;
  toBigInt64Array(): BigInt64Array;
  toUint8Array(): Uint8Array;
}

export type Reduction = 'sum' | 'mean' | 'none';
/** An integer or [height, width]. */
export type Pair = number | [number, number];
type Operand = TorchTensor | number;

/** Options of the SGD optimiser; see SGD_DEFAULTS. */
export interface SGDOptions {
  lr: number;
  momentum: number;
  weightDecay: number;
  dampening: number;
  nesterov: boolean;
}

/**
 * The paper's recipe (lr 1e-3, momentum 0.9, weight decay 5e-4), with
 * PyTorch's defaults for the rest (dampening 0, no Nesterov).
 */
export const SGD_DEFAULTS: Readonly<SGDOptions> = Object.freeze({
  lr: 1e-3,
  momentum: 0.9,
  weightDecay: 5e-4,
  dampening: 0,
  nesterov: false,
});

/**
 * torch.optim.SGD of PyTorch 1.13, implemented in the addon. Per parameter p
 * with gradient g: g += weightDecay * p; buf = g on the first step, else
 * momentum * buf + (1 - dampening) * g; g = nesterov ? g + momentum * buf : buf;
 * p -= lr * g. Parameters without a gradient are skipped.
 */
export interface TorchSGD {
  /** Learning rate; set it between steps for schedules and warm-up. */
  lr: number;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly dampening: number;
  readonly nesterov: boolean;
  readonly paramCount: number;
  step(): void;
  /** Clears gradients: to none by default (as PyTorch's set_to_none=True), to zeros with `false`. */
  zeroGrad(setToNone?: boolean): void;
  /** Copies of the momentum buffers in parameter order (null before a parameter's first step), for checkpoints. */
  getMomentumBuffers(): (TorchTensor | null)[];
  /** Restores buffers from getMomentumBuffers() (copied in; shapes must match the parameters). */
  setMomentumBuffers(buffers: (TorchTensor | null)[]): void;
}

/** See TorchNative.allocatorStats. */
export interface AllocatorStats {
  live: number;
  peak: number;
  cached: number;
  cacheLimit: number;
  allocations: number;
  reused: number;
}

/**
 * The functions the addon exports, in the order native/extd_torch.cc
 * registers them (its kOps table), and its two classes. This is the one list
 * of the addon's face: TorchNative must declare exactly these names (checked
 * at compile time below), and test/torch-addon-surface.test.ts checks the list
 * against the C++ registrations and against the loaded addon's exports, so a
 * name added or dropped on either side fails the build or the tests. The
 * addon exposes only what training (src/train), its tests and the training
 * benchmarks use.
 */
export const NATIVE_FUNCTIONS = [
  'fromTypedArray',
  'zeros',
  'ones',
  'full',
  'randn',
  'rand',
  'manualSeed',
  'setNumThreads',
  'profileStart',
  'profileStop',
  'getNumThreads',
  'intraOpWorkers',
  'allocatorStats',
  'resetAllocatorPeak',
  'setGradEnabled',
  'isGradEnabled',
  'version',
  'startScope',
  'endScope',
  'conv2d',
  'batchNorm',
  'prelu',
  'batchNormPrelu',
  'leakyRelu',
  'relu',
  'upsampleBilinear2d',
  'add',
  'sub',
  'mul',
  'div',
  'sqrt',
  'clamp',
  'cat',
  'stack',
  'max',
  'narrow',
  'reshape',
  'permute',
  'indexSelect',
  'smoothL1Loss',
  'crossEntropy',
  'sum',
  'mean',
  'toDtype',
  'clone',
  'detach',
] as const;
export const NATIVE_CLASSES = ['Tensor', 'SGD'] as const;
/** A name the addon exports. */
export type NativeExportName = (typeof NATIVE_CLASSES)[number] | (typeof NATIVE_FUNCTIONS)[number];

/** The addon's exports, typed. Argument order follows PyTorch's functional API. */
export interface TorchNative {
  readonly Tensor: Function;
  readonly SGD: new (params: TorchTensor[], options: SGDOptions) => TorchSGD;

  // creation (dtype defaults to float32; arange to int64)
  fromTypedArray(
    data: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Int16Array,
    shape: number[],
    requiresGrad?: boolean,
  ): TorchTensor;
  zeros(shape: number[], dtype?: TorchDType): TorchTensor;
  ones(shape: number[], dtype?: TorchDType): TorchTensor;
  full(shape: number[], value: number, dtype?: TorchDType): TorchTensor;
  /** Standard normal samples from libtorch's global generator (see manualSeed). */
  randn(shape: number[], dtype?: TorchDType): TorchTensor;
  /** Uniform [0, 1) samples from libtorch's global generator. */
  rand(shape: number[], dtype?: TorchDType): TorchTensor;

  // global state
  manualSeed(seed: number | bigint): void;
  setNumThreads(n: number): void;
  /** Development: record every libtorch operator until profileStop(), then write a Chrome trace to `path`. */
  profileStart(path: string): void;
  profileStop(): void;
  getNumThreads(): number;
  /**
   * How many threads the addon's own kernels (BN + PReLU, depthwise 3x3)
   * split their work over: getNumThreads() when the addon was built with
   * OpenMP, 1 when it was not (libtorch's at::parallel_for is then serial).
   */
  intraOpWorkers(): number;
  /**
   * libtorch's CPU memory as the addon's allocator sees it, in bytes: `live`
   * (held by tensors now), `peak` (most live since the last
   * resetAllocatorPeak), `cached` (freed blocks kept for reuse), `cacheLimit`,
   * and counts of `allocations` and of those `reused` from the cache.
   */
  allocatorStats(): AllocatorStats;
  resetAllocatorPeak(): void;
  setGradEnabled(enabled: boolean): void;
  isGradEnabled(): boolean;
  version(): { torch: string; parallel: string };
  startScope(): void;
  endScope(keep?: TorchTensor[]): void;

  // layers
  conv2d(input: TorchTensor, weight: TorchTensor, bias: TorchTensor | null, stride?: Pair, padding?: Pair, groups?: number, dilation?: Pair): TorchTensor;
  /** In training mode the batch statistics normalise and the running stats are updated in place (torch semantics). */
  batchNorm(
    input: TorchTensor,
    weight: TorchTensor | null,
    bias: TorchTensor | null,
    runningMean: TorchTensor | null,
    runningVar: TorchTensor | null,
    training: boolean,
    momentum?: number,
    eps?: number,
  ): TorchTensor;
  prelu(input: TorchTensor, weight: TorchTensor): TorchTensor;
  /**
   * prelu(batchNorm(input, weight, bias, runningMean, runningVar, training,
   * momentum, eps), slope), the same values and gradients. With one positive
   * slope (EXTD's PReLUs) it is one autograd node that keeps only `input` and
   * its own output for backward, where the two calls keep three maps: the
   * BN output is overwritten by the PReLU's, whose signs and values give back
   * what the PReLU backward needs (a third less activation memory).
   */
  batchNormPrelu(
    input: TorchTensor,
    weight: TorchTensor,
    bias: TorchTensor,
    runningMean: TorchTensor,
    runningVar: TorchTensor,
    slope: TorchTensor,
    training: boolean,
    momentum?: number,
    eps?: number,
  ): TorchTensor;
  leakyRelu(input: TorchTensor, slope?: number): TorchTensor;
  relu(input: TorchTensor): TorchTensor;
  /** Bilinear resize to [height, width]; alignCorners defaults to false (F.interpolate's default). */
  upsampleBilinear2d(input: TorchTensor, size: [number, number], alignCorners?: boolean): TorchTensor;

  // elementwise (broadcasting; a number operand keeps an integer tensor integral when it is an integer)
  add(a: TorchTensor, b: Operand, alpha?: number): TorchTensor;
  sub(a: TorchTensor, b: Operand, alpha?: number): TorchTensor;
  mul(a: TorchTensor, b: Operand): TorchTensor;
  div(a: TorchTensor, b: Operand): TorchTensor;
  sqrt(x: TorchTensor): TorchTensor;
  clamp(x: TorchTensor, min: number | null, max?: number | null): TorchTensor;

  // shape
  cat(tensors: TorchTensor[], dim?: number): TorchTensor;
  stack(tensors: TorchTensor[], dim?: number): TorchTensor;
  narrow(x: TorchTensor, dim: number, start: number, length: number): TorchTensor;
  reshape(x: TorchTensor, shape: number[]): TorchTensor;
  permute(x: TorchTensor, dims: number[]): TorchTensor;

  // reductions and selection
  /** Without dim: the maximum element. With dim: [values, int64 indices]. */
  max(x: TorchTensor): TorchTensor;
  max(x: TorchTensor, dim: number, keepdim?: boolean): [TorchTensor, TorchTensor];
  sum(x: TorchTensor, dims?: number | number[], keepdim?: boolean): TorchTensor;
  mean(x: TorchTensor, dims?: number | number[], keepdim?: boolean): TorchTensor;
  /** index: 1-D int64 (or int32). */
  indexSelect(x: TorchTensor, dim: number, index: TorchTensor): TorchTensor;

  // losses (reduction defaults to 'sum', the SSD/S3FD convention)
  smoothL1Loss(input: TorchTensor, target: TorchTensor, reduction?: Reduction, beta?: number): TorchTensor;
  /** input [N, C] logits; target [N] int64 class indices, or [N, C] float class probabilities (soft targets, same dtype as input). */
  crossEntropy(input: TorchTensor, target: TorchTensor, reduction?: Reduction): TorchTensor;

  // conversion
  toDtype(x: TorchTensor, dtype: TorchDType): TorchTensor;
  clone(x: TorchTensor): TorchTensor;
  detach(x: TorchTensor): TorchTensor;
}

// TorchNative declares exactly NATIVE_CLASSES and NATIVE_FUNCTIONS: a name on
// one side only makes SameNames `never`, and this assignment stops compiling.
type SameNames<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
const declaredNamesMatch: SameNames<keyof TorchNative, NativeExportName> = true;
void declaredNamesMatch;

/** The loaded engine: the native functions plus conveniences written in TS. */
export interface Torch extends TorchNative {
  /** Path of the loaded addon. */
  readonly addonPath: string;
  fromFloat32Array(data: Float32Array, shape: number[], requiresGrad?: boolean): TorchTensor;
  fromFloat64Array(data: Float64Array, shape: number[], requiresGrad?: boolean): TorchTensor;
  fromInt32Array(data: Int32Array, shape: number[]): TorchTensor;
  fromInt64Array(data: BigInt64Array | ArrayLike<number>, shape: number[]): TorchTensor;
  /** Copies one of the package's Tensors (src/utils/tensor.ts) into libtorch. */
  fromTensor(t: Tensor, requiresGrad?: boolean): TorchTensor;
  /** Copies a libtorch tensor out as a package Tensor of the same dtype. */
  toTensor(t: TorchTensor): Tensor;
  /** Runs fn with autograd off (like `with torch.no_grad()`), restoring the previous mode even on throw. */
  noGrad<T>(fn: () => T): T;
  /**
   * Runs fn and then disposes every tensor handle created during it, except
   * the ones found in its return value (a tensor, or arrays / plain objects
   * holding tensors, searched recursively). Nestable. fn must be synchronous.
   */
  tidy<T>(fn: () => T): T;
  /** SGD over params; options default to SGD_DEFAULTS. */
  sgd(params: TorchTensor[], options?: Partial<SGDOptions>): TorchSGD;
}

const HOWTO = 'training needs libtorch: apt-get install libtorch-dev, then npm rebuild @extd/train';

let cached: Torch | undefined;
let cachedError: ExtdError | undefined;

/** Where the addon may be: EXTD_TORCH_ADDON, else native/build under the package root (from src/ or dist/src/). */
function addonCandidates(): string[] {
  if (process.env.EXTD_TORCH_ADDON) return [process.env.EXTD_TORCH_ADDON];
  const out: string[] = [];
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    out.push(join(dir, 'native', 'build', 'Release', 'extd_torch.node'));
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return out;
}

/**
 * Loads the libtorch addon (once; later calls return the same object).
 * Throws ExtdError with install instructions when it is not built or libtorch
 * cannot be loaded. Sets libtorch to `threads` threads (default 2) on first load.
 */
export function loadTorch(): Torch {
  if (cached) return cached;
  if (cachedError) throw cachedError;
  const candidates = addonCandidates();
  const path = candidates.find((p) => existsSync(p));
  if (!path) {
    cachedError = new ExtdError(`${HOWTO} (addon not built: no file at ${candidates[0]})`);
    throw cachedError;
  }
  let native: TorchNative;
  try {
    native = createRequire(import.meta.url)(path) as TorchNative;
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0];
    cachedError = new ExtdError(`${HOWTO} (addon not built: ${path} failed to load: ${reason})`);
    throw cachedError;
  }
  cached = extend(native, path);
  return cached;
}

/** True when loadTorch() would succeed; never throws. */
export function torchAvailable(): boolean {
  try {
    loadTorch();
    return true;
  } catch {
    return false;
  }
}

/** The reason loadTorch() fails, or null when it works (for test skips and CLI messages). */
export function torchUnavailableReason(): string | null {
  try {
    loadTorch();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

function collectTensors(value: unknown, tensorClass: Function, out: TorchTensor[], seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (value instanceof tensorClass) {
    out.push(value as TorchTensor);
  } else if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, tensorClass, out, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype || value instanceof Map) {
    const values = value instanceof Map ? [...value.values()] : Object.values(value);
    for (const v of values) collectTensors(v, tensorClass, out, seen);
  }
}

function extend(native: TorchNative, addonPath: string): Torch {
  const fromTensor = (t: Tensor, requiresGrad = false): TorchTensor => {
    const data = t.dtype === 'bool' ? new Uint8Array(t.data as Uint8Array) : t.data;
    const out = native.fromTypedArray(data as Float32Array, t.shape, requiresGrad && t.dtype !== 'bool');
    return t.dtype === 'bool' ? native.toDtype(out, 'bool') : out;
  };
  const toTensor = (t: TorchTensor): Tensor => {
    switch (t.dtype) {
      case 'float32':
        return { dtype: 'float32', shape: t.shape, data: t.toFloat32Array() };
      case 'float64':
        return { dtype: 'float64', shape: t.shape, data: t.toFloat64Array() };
      case 'int64':
        return { dtype: 'int64', shape: t.shape, data: t.toBigInt64Array() };
      case 'int32':
        return { dtype: 'int32', shape: t.shape, data: t.toInt32Array() };
      case 'uint8':
      case 'bool':
        return { dtype: t.dtype, shape: t.shape, data: t.toUint8Array() };
      default:
        throw new Error(`toTensor: dtype ${t.dtype} has no package Tensor equivalent (float32, float64, int64, int32, uint8, bool)`);
    }
  };
  const extra = {
    addonPath,
    fromFloat32Array: (data: Float32Array, shape: number[], requiresGrad = false) => native.fromTypedArray(data, shape, requiresGrad),
    fromFloat64Array: (data: Float64Array, shape: number[], requiresGrad = false) => native.fromTypedArray(data, shape, requiresGrad),
    fromInt32Array: (data: Int32Array, shape: number[]) => native.fromTypedArray(data, shape),
    fromInt64Array: (data: BigInt64Array | ArrayLike<number>, shape: number[]) => {
      const big = data instanceof BigInt64Array ? data : BigInt64Array.from(Array.from(data, (v) => BigInt(v)));
      return native.fromTypedArray(big, shape);
    },
    fromTensor,
    toTensor,
    noGrad<T>(fn: () => T): T {
      const prev = native.isGradEnabled();
      native.setGradEnabled(false);
      try {
        return fn();
      } finally {
        native.setGradEnabled(prev);
      }
    },
    tidy<T>(fn: () => T): T {
      native.startScope();
      let result: T;
      try {
        result = fn();
      } catch (err) {
        native.endScope([]);
        throw err;
      }
      if (result instanceof Promise) {
        native.endScope([]);
        throw new Error('tidy: fn returned a Promise; tidy needs a synchronous function');
      }
      const keep: TorchTensor[] = [];
      collectTensors(result, native.Tensor, keep, new Set());
      native.endScope(keep);
      return result;
    },
    sgd(params: TorchTensor[], options: Partial<SGDOptions> = {}): TorchSGD {
      return new native.SGD(params, { ...SGD_DEFAULTS, ...options });
    },
  };
  // The native module object is frozen-ish (a plain exports object); build a
  // new object so the TS helpers sit beside the native functions.
  return Object.assign(Object.create(null), native, extra) as Torch;
}

/** Result of gradCheck: the worst disagreement found and where. */
export interface GradCheckResult {
  ok: boolean;
  /** max |analytic - numeric| / max(1, |numeric|) over all checked elements. */
  maxError: number;
  /** Which input and flat element had maxError. */
  worst: { input: number; index: number; analytic: number; numeric: number };
  checked: number;
}

/** Options of gradCheck; see GRADCHECK_DEFAULTS. */
export interface GradCheckOptions {
  /** Central-difference step. */
  eps: number;
  /** Pass when maxError <= tolerance. */
  tolerance: number;
  /** Check at most this many elements per input (spread evenly), to bound the cost. */
  maxElementsPerInput: number;
}

/** Defaults for float64 inputs, where central differences are accurate to ~1e-9. */
export const GRADCHECK_DEFAULTS: Readonly<GradCheckOptions> = Object.freeze({
  eps: 1e-6,
  tolerance: 1e-5,
  maxElementsPerInput: 64,
});

/**
 * Compares the gradients autograd computes for `f` (a function of `inputs`
 * returning a one-element tensor) with central finite differences
 * (f(x + eps) - f(x - eps)) / 2 eps, element by element. Inputs should be
 * float64 leaves with requiresGrad set. `analytic` replaces the autograd
 * gradients (used to prove the check catches a wrong gradient).
 */
export function gradCheck(
  torch: Torch,
  f: (...inputs: TorchTensor[]) => TorchTensor,
  inputs: TorchTensor[],
  options: Partial<GradCheckOptions> = {},
  analytic?: Float64Array[],
): GradCheckResult {
  const o = { ...GRADCHECK_DEFAULTS, ...options };
  let grads = analytic;
  if (!grads) {
    grads = torch.tidy(() => {
      for (const x of inputs) x.clearGrad();
      f(...inputs).backward();
      const out = inputs.map((x) => x.grad?.toFloat64Array() ?? new Float64Array(x.numel));
      for (const x of inputs) x.clearGrad();
      return out;
    });
  }
  const result: GradCheckResult = { ok: true, maxError: 0, worst: { input: -1, index: -1, analytic: 0, numeric: 0 }, checked: 0 };
  torch.noGrad(() => {
    inputs.forEach((x, k) => {
      const view = torch.tidy(() => torch.toDtype(x, 'float64').toFloat64Array());
      const n = view.length;
      const step = Math.max(1, Math.ceil(n / o.maxElementsPerInput));
      const evalAt = (values: Float64Array): number =>
        torch.tidy(() => {
          x.copyFrom(torch.fromFloat64Array(values, x.shape));
          return f(...inputs).item();
        });
      // grads[k] is input k's gradient, which has the input's n elements.
      const grad = grads![k]!;
      for (let i = 0; i < n; i += step) {
        const orig = view[i]!;
        view[i] = orig + o.eps;
        const plus = evalAt(view);
        view[i] = orig - o.eps;
        const minus = evalAt(view);
        view[i] = orig;
        const numeric = (plus - minus) / (2 * o.eps);
        const a = grad[i]!;
        const raw = Math.abs(a - numeric) / Math.max(1, Math.abs(numeric));
        const err = Number.isFinite(raw) ? raw : Infinity;
        result.checked++;
        if (err > result.maxError || result.worst.input < 0) {
          result.maxError = err;
          result.worst = { input: k, index: i, analytic: a, numeric };
        }
      }
      torch.tidy(() => x.copyFrom(torch.fromFloat64Array(view, x.shape)));
    });
  });
  result.ok = result.maxError <= o.tolerance;
  return result;
}

/** Result of gradCheckDirectional, one entry per direction. */
export interface DirectionalCheck {
  /** <gradient, v> from autograd. */
  analytic: number;
  /** (f(x + eps v) - f(x - eps v)) / 2 eps. */
  numeric: number;
  /** |analytic - numeric| / max(1, |analytic|, |numeric|). */
  error: number;
}

/**
 * A gradient check that scales to whole networks: instead of perturbing one
 * element at a time (two forward passes per element), it perturbs every
 * input at once along a random direction v and compares the directional
 * derivative with <autograd gradient, v>, so each direction costs two
 * forward passes. A wrong gradient in any element shows up in almost every
 * random direction. `inputs` should be float64 leaves requiring grad; libtorch's
 * generator supplies the directions (seed it for reproducibility).
 *
 * Networks of ReLU-like units are piecewise smooth: a step can cross a kink
 * of some unit and spoil one difference quotient. With several steps
 * (`eps: [1e-6, 1e-7, 1e-8]`) the closest agreement is reported (the later
 * steps are skipped once one agrees to `stopBelow`); a wrong gradient
 * disagrees at every step.
 */
export function gradCheckDirectional(
  torch: Torch,
  f: (...inputs: TorchTensor[]) => TorchTensor,
  inputs: TorchTensor[],
  options: { directions?: number; eps?: number | number[]; stopBelow?: number } = {},
): DirectionalCheck[] {
  const directions = options.directions ?? 3;
  const steps = typeof options.eps === 'number' ? [options.eps] : (options.eps ?? [1e-6]);
  const grads = torch.tidy(() => {
    for (const x of inputs) x.clearGrad();
    f(...inputs).backward();
    const out = inputs.map((x) => (x.grad ? torch.detach(x.grad) : torch.zeros(x.shape, x.dtype)));
    for (const x of inputs) x.clearGrad();
    return out;
  });
  const originals = torch.noGrad(() => inputs.map((x) => torch.clone(x)));
  const results: DirectionalCheck[] = [];
  try {
    for (let d = 0; d < directions; d++) {
      torch.tidy(() =>
        torch.noGrad(() => {
          const vs = inputs.map((x) => torch.randn(x.shape, x.dtype));
          let analytic = 0;
          vs.forEach((v, k) => (analytic += torch.sum(torch.mul(grads[k]!, v)).item()));
          const at = (step: number) => {
            inputs.forEach((x, k) => x.copyFrom(torch.add(originals[k]!, vs[k]!, step)));
            return f(...inputs).item();
          };
          let best: DirectionalCheck | undefined;
          for (const eps of steps) {
            const numeric = (at(eps) - at(-eps)) / (2 * eps);
            const raw = Math.abs(analytic - numeric) / Math.max(1, Math.abs(analytic), Math.abs(numeric));
            const error = Number.isFinite(raw) ? raw : Infinity;
            if (!best || error < best.error) best = { analytic, numeric, error };
            if (error <= (options.stopBelow ?? 0)) break;
          }
          inputs.forEach((x, k) => x.copyFrom(originals[k]!));
          results.push(best!);
        }),
      );
    }
  } finally {
    torch.noGrad(() => inputs.forEach((x, k) => x.copyFrom(originals[k]!)));
    for (const t of [...grads, ...originals]) t.dispose();
  }
  return results;
}
