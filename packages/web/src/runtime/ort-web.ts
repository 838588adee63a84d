/**
 * onnxruntime-web session over our tensor type. The only browser module that
 * imports onnxruntime-web.
 *
 * Two builds of onnxruntime-web exist for our purposes: `onnxruntime-web/wasm`
 * (CPU only, ~14 MB wasm) and `onnxruntime-web/webgpu` (WebGPU plus the CPU
 * kernels, ~27 MB wasm). Both are imported lazily, so a page that never asks
 * for WebGPU never downloads the larger one.
 *
 * Where the wasm comes from: with `wasmPaths` set (a same-origin folder such
 * as '/ort/', holding the `ort-wasm-simd-threaded*.{mjs,wasm}` files of
 * node_modules/onnxruntime-web/dist), onnxruntime loads its glue module and
 * wasm binary from there, and its thread workers load the same glue module.
 * Without it, onnxruntime resolves them next to its own script, which a
 * bundler may or may not have emitted; serving them yourself is the reliable
 * way. Nothing is ever fetched from another host by this module.
 *
 * onnxruntime-web initialises its wasm instance once per page, with the
 * thread count in effect at that moment; later sessions share that instance.
 * So the first session decides the thread count for the page.
 *
 * Runs are queued, one at a time per page: onnxruntime-web's wasm run() is
 * not re-entrant (it places a run's arguments on the wasm stack, awaits, and
 * restores the stack pointer when it ends, so a second run started meanwhile
 * can have its arguments overwritten), and all sessions of a page share one
 * wasm instance. detect() calls in flight therefore wait for each other here
 * (as do session creation and release); each still gets the result of its
 * own input.
 */
import type * as OrtTypes from 'onnxruntime-web';
import type { Float32Tensor } from '@extd/core/utils/tensor';
import { ExtdError } from '@extd/core/utils/errors';
import type { CreateSession, InferenceSession, SessionOptions } from '@extd/core/runtime/backend';
import { pageIsIsolated } from './isolation.js';

/** An onnxruntime-web execution provider: 'wasm' (CPU, SIMD) or 'webgpu'. */
export type WebExecutionProvider = 'wasm' | 'webgpu';

export interface OrtWebOptions {
  /**
   * Same-origin URL prefix (ending in '/') where the onnxruntime-web
   * `ort-wasm-simd-threaded*.mjs` / `.wasm` files are served, or an object
   * naming the two files. undefined: onnxruntime's own lookup, next to its script.
   */
  wasmPaths: string | { mjs: string; wasm: string } | undefined;
  /**
   * Preferred execution providers, in order. 'webgpu' is used only when the
   * browser exposes navigator.gpu; 'wasm' (CPU, SIMD) always works and is
   * appended as the fallback when missing.
   */
  executionProviders: WebExecutionProvider[];
  /** Run onnxruntime in its own worker (keeps the page responsive; adds a copy per frame). */
  proxy: boolean;
}

/** Defaults of the session options: onnxruntime's own wasm lookup, the 'wasm' provider only, no proxy worker. */
export const ORT_WEB_DEFAULTS: OrtWebOptions = { wasmPaths: undefined, executionProviders: ['wasm'], proxy: false };

/** What the page ended up with, for display and benchmarks. */
export interface OrtWebInfo {
  /** 'wasm' or 'webgpu': the build of onnxruntime-web that was loaded. */
  build: 'wasm' | 'webgpu';
  /** The requested providers this build can use, in order ('webgpu' dropped on the wasm build). */
  executionProviders: WebExecutionProvider[];
  /** wasm threads the instance was initialised with (1 unless the page is cross-origin isolated). */
  threads: number;
  /** Whether the page is cross-origin isolated (COOP/COEP), which wasm threads need. */
  crossOriginIsolated: boolean;
}

type Ort = typeof OrtTypes;

let loaded: { ort: Ort; build: 'wasm' | 'webgpu'; threads: number } | undefined;

/** The tail of this page's queue of onnxruntime calls (never rejects). */
let queueTail: Promise<unknown> = Promise.resolve();

/** Run `fn` after every call queued before it has settled. */
function queued<T>(fn: () => Promise<T>): Promise<T> {
  const result = queueTail.then(fn);
  queueTail = result.catch(() => undefined);
  return result;
}

function webgpuAvailable(): boolean {
  return typeof navigator !== 'undefined' && 'gpu' in navigator && !!(navigator as { gpu?: unknown }).gpu;
}

async function hasWebgpuAdapter(): Promise<boolean> {
  try {
    const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
    return !!gpu && (await gpu.requestAdapter()) !== null;
  } catch {
    return false;
  }
}

/** The providers that will actually be tried, in order, with 'wasm' always last. */
export function resolveExecutionProviders(requested: readonly string[], hasWebgpu = webgpuAvailable()): WebExecutionProvider[] {
  const out: WebExecutionProvider[] = [];
  for (const ep of requested) {
    if (ep !== 'wasm' && ep !== 'webgpu') throw new ExtdError(`executionProviders: unknown provider '${ep}', allowed: 'webgpu', 'wasm'`);
    if (ep === 'webgpu' && !hasWebgpu) continue;
    if (!out.includes(ep)) out.push(ep);
  }
  if (!out.includes('wasm')) out.push('wasm');
  return out;
}

async function loadOrt(wantWebgpu: boolean, threads: number, options: OrtWebOptions): Promise<{ ort: Ort; build: 'wasm' | 'webgpu'; threads: number }> {
  if (loaded) {
    // The first build loaded stays: a second copy of onnxruntime would double the memory and fight over the wasm env.
    return loaded;
  }
  // navigator.gpu can exist without a usable adapter (headless, blocklisted GPUs): ask before
  // downloading the larger WebGPU build for nothing.
  const build = wantWebgpu && (await hasWebgpuAdapter()) ? 'webgpu' : 'wasm';
  const ort: Ort = build === 'webgpu' ? await import('onnxruntime-web/webgpu') : await import('onnxruntime-web/wasm');
  // SharedArrayBuffer (needed by wasm threads) exists only on cross-origin isolated pages.
  const effectiveThreads = pageIsIsolated() ? threads : 1;
  ort.env.wasm.numThreads = effectiveThreads;
  ort.env.wasm.proxy = options.proxy;
  if (options.wasmPaths !== undefined) ort.env.wasm.wasmPaths = options.wasmPaths;
  // Quiet: onnxruntime's warnings (e.g. about unused initializers) are not actionable for users.
  ort.env.logLevel = 'error';
  loaded = { ort, build, threads: effectiveThreads };
  return loaded;
}

/** Details of the onnxruntime-web instance in this page, or undefined before the first session. */
export function ortWebInfo(executionProviders: WebExecutionProvider[] = ['wasm']): OrtWebInfo | undefined {
  if (!loaded) return undefined;
  const usable = loaded.build === 'webgpu' ? executionProviders : executionProviders.filter((ep) => ep === 'wasm');
  return { build: loaded.build, executionProviders: usable, threads: loaded.threads, crossOriginIsolated: pageIsIsolated() };
}

/** A CreateSession for the Detector, bound to these web options. */
export function ortWebSessionFactory(options: Partial<OrtWebOptions> = {}): CreateSession & { info(): OrtWebInfo | undefined } {
  const opts: OrtWebOptions = { ...ORT_WEB_DEFAULTS, ...options };
  const eps = resolveExecutionProviders(opts.executionProviders);
  const create = async (onnxModel: Uint8Array, sessionOptions: SessionOptions): Promise<InferenceSession> => {
    const { ort, build } = await loadOrt(eps.includes('webgpu'), sessionOptions.threads, opts);
    const usable = build === 'webgpu' ? eps : eps.filter((ep) => ep === 'wasm');
    const session = await queued(() =>
      ort.InferenceSession.create(onnxModel, {
        executionProviders: usable,
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
      }),
    );
    const inputName = session.inputNames[0]!;
    return {
      run: (input: Float32Tensor) =>
        queued(async () => {
          const feeds = { [inputName]: new ort.Tensor('float32', input.data, input.shape) };
          const out = await session.run(feeds);
          const result: Record<string, Float32Tensor> = {};
          for (const [name, t] of Object.entries(out)) {
            // WebGPU outputs may live on the GPU; getData() downloads them (and is a no-op copy for CPU tensors).
            const data = t.location === 'cpu' ? (t.data as Float32Array) : ((await t.getData(true)) as Float32Array);
            result[name] = { dtype: 'float32', shape: [...t.dims], data };
          }
          return result;
        }),
      release: () => queued(() => session.release()),
    };
  };
  return Object.assign(create, { info: () => ortWebInfo(eps) });
}
