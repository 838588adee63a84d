/**
 * extd's own kernels in the browser: the fused inverted-residual network of
 * packages/node/native/network.h compiled to WebAssembly SIMD128 with
 * Emscripten (native/extd_wasm.cc, scripts/build-wasm.mjs), behind the
 * CreateNativeSession interface the Detector takes. float32 only.
 *
 * Two builds are served from one folder (`kernelsPath`, default: the
 * package's own `wasm/` folder, which bundlers such as Vite emit as assets):
 * - `extd-kernels.{js,wasm,worker.js}`: threads as Web Workers (3 made when
 *   the module loads, so up to 4 threads); it needs SharedArrayBuffer, so
 *   only cross-origin isolated pages (COOP/COEP headers) load it;
 * - `extd-kernels-st.{js,wasm}`: one thread, for any page.
 *
 * A run executes synchronously on the calling thread (the page's main
 * thread unless the detector lives in a worker), the helper threads
 * joining in, as onnxruntime-web's wasm build does without its proxy.
 * Nothing is fetched from another host.
 */
import type { CreateNativeSession, InferenceSession } from '@extd/core/runtime/backend';
import { encodeNetworkSpec, kernelSpecOf } from '@extd/core/runtime/kernel-spec';
import type { RgbImage } from '@extd/core/image/types';
import type { Float32Tensor } from '@extd/core/utils/tensor';
import { ReusePool } from '@extd/core/utils/pool';
import { ExtdError } from '@extd/core/utils/errors';
import { pageIsIsolated } from './isolation.js';

/** The Emscripten module's exports this file calls (see native/extd_wasm.cc). */
export interface KernelsModule {
  HEAPU8: Uint8Array;
  HEAPF32: Float32Array;
  UTF8ToString(ptr: number): string;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  _extd_error(): number;
  _extd_create(desc: number, n: number): number;
  _extd_priors(net: number, h: number, w: number): number;
  _extd_conf_channels(net: number): number;
  _extd_run_rgb(net: number, rgb: number, h: number, w: number, m0: number, m1: number, m2: number, loc: number, conf: number, threads: number): number;
  _extd_run(net: number, input: number, h: number, w: number, loc: number, conf: number, threads: number): number;
  _extd_last_threads(net: number): number;
  _extd_destroy(net: number): void;
}

/** A loaded build of the kernels. */
export interface WasmKernels {
  module: KernelsModule;
  /** 'threads' (Web Workers) or 'single'. */
  build: 'threads' | 'single';
  /** The most threads a run uses: 4 for the threaded build, 1 for the single-threaded one. */
  maxThreads: number;
}

/** The threaded build's pool (PTHREAD_POOL_SIZE in scripts/build-wasm.mjs) plus the calling thread. */
const THREADED_MAX = 4;

/** How long a build may take to load (fetch, compile, start its thread workers) before the detector falls back to onnxruntime-web. */
const LOAD_TIMEOUT_MS = 30_000;

/** File names of the two builds. */
export const WASM_KERNEL_FILES = {
  threads: { js: 'extd-kernels.js', wasm: 'extd-kernels.wasm', worker: 'extd-kernels.worker.js', factory: 'createExtdKernels' },
  single: { js: 'extd-kernels-st.js', wasm: 'extd-kernels-st.wasm', worker: undefined, factory: 'createExtdKernelsSingle' },
} as const;

/** URLs of the package's own builds (wasm/), written out so that bundlers emit each file. */
function packagedUrls(build: 'threads' | 'single'): { js: string; wasm: string; worker?: string } {
  if (build === 'threads') {
    return {
      js: new URL('../../wasm/extd-kernels.js', import.meta.url).href,
      wasm: new URL('../../wasm/extd-kernels.wasm', import.meta.url).href,
      worker: new URL('../../wasm/extd-kernels.worker.js', import.meta.url).href,
    };
  }
  return { js: new URL('../../wasm/extd-kernels-st.js', import.meta.url).href, wasm: new URL('../../wasm/extd-kernels-st.wasm', import.meta.url).href };
}

/** Run a classic script (the Emscripten glue defines a global factory): a script element in a page, importScripts in a worker. */
async function loadClassicScript(url: string): Promise<void> {
  if (typeof document !== 'undefined') {
    await new Promise<void>((resolve, reject) => {
      const s = document.createElement('script');
      s.src = url;
      s.onload = () => resolve();
      s.onerror = () => reject(new Error(`${url}: failed to load`));
      document.head.appendChild(s);
    });
    return;
  }
  const importScripts = (globalThis as { importScripts?: (url: string) => void }).importScripts;
  const notClassic = 'neither a document nor a classic worker (module workers cannot load the kernels)';
  if (typeof importScripts !== 'function') throw new Error(notClassic);
  try {
    importScripts(url);
  } catch (e) {
    // Module workers have importScripts too, but it always throws there.
    throw new Error(e instanceof TypeError ? notClassic : `${url}: failed to load (${(e as Error).message})`);
  }
}

type Factory = (options: Record<string, unknown>) => Promise<KernelsModule>;

const loads = new Map<string, Promise<WasmKernels>>();

/** `kernelsPath` as an absolute folder URL (thread workers start from blob: URLs, against which a relative URL means nothing). */
function absoluteFolder(kernelsPath: string): string {
  if (!kernelsPath.endsWith('/')) throw new ExtdError(`kernelsPath ${JSON.stringify(kernelsPath)}: expected a folder URL ending in '/'`);
  const base = (globalThis as { location?: { href: string } }).location?.href;
  try {
    return new URL(kernelsPath, base).href;
  } catch {
    throw new ExtdError(`kernelsPath ${JSON.stringify(kernelsPath)}: not a URL${base ? '' : ' (a relative one needs a page or worker location)'}`);
  }
}

/**
 * Load the kernels once per page and folder: the threaded build where the
 * page is cross-origin isolated and `threads` > 1 (the single-threaded one
 * where that build fails to load), else the single-threaded one.
 * `kernelsPath`: a folder URL ending in '/' (absolute or relative to the
 * page) serving the builds' files; undefined: the package's own `wasm/`
 * folder.
 * @throws ExtdError for a `kernelsPath` that is not a folder URL; Error
 * saying why the files did not load (a file not served, no WebAssembly
 * SIMD, a thread worker that did not start, ...).
 */
export async function loadWasmKernels(kernelsPath: string | undefined, threads: number): Promise<WasmKernels> {
  const folder = kernelsPath === undefined ? undefined : absoluteFolder(kernelsPath);
  if (threads > 1 && pageIsIsolated()) {
    try {
      return await loadBuild('threads', folder);
    } catch (e) {
      try {
        return await loadBuild('single', folder);
      } catch {
        throw e;
      }
    }
  }
  return loadBuild('single', folder);
}

function loadBuild(build: 'threads' | 'single', folder: string | undefined): Promise<WasmKernels> {
  const key = `${build} ${folder ?? ''}`;
  let load = loads.get(key);
  if (!load) {
    load = (async () => {
      const names = WASM_KERNEL_FILES[build];
      const urls =
        folder === undefined ? packagedUrls(build) : { js: folder + names.js, wasm: folder + names.wasm, worker: names.worker && folder + names.worker };
      await loadClassicScript(urls.js);
      const factory = (globalThis as unknown as Record<string, Factory | undefined>)[names.factory];
      if (typeof factory !== 'function') throw new Error(`${urls.js} did not define ${names.factory}`);
      // The thread workers start from a blob: URL of the worker script. A bundler may inline a small file as
      // a data: URL, whose worker has an opaque origin and may not load our same-origin glue; a blob: URL
      // keeps the page's origin.
      let workerUrl: string | undefined;
      if (urls.worker) {
        const res = await fetch(urls.worker);
        if (!res.ok) throw new Error(`${urls.worker}: HTTP ${res.status}`);
        workerUrl = URL.createObjectURL(new Blob([await res.text()], { type: 'text/javascript' }));
      }
      let failed: (e: Error) => void = () => {};
      const failure = new Promise<never>((_, reject) => (failed = reject));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const module = await Promise.race([
        factory({
          locateFile: (file: string) => (file.endsWith('.worker.js') ? workerUrl : file.endsWith('.wasm') ? urls.wasm : file),
          // Each thread's worker loads the glue again from here.
          mainScriptUrlOrBlob: urls.js,
          onAbort: (what: unknown) => failed(new Error(`aborted: ${String(what)}`)),
          // A run blocks the calling thread while the helper threads work, by design; Emscripten warns about it once.
          printErr: (text: string) => {
            if (!/Blocking on the main thread/.test(text)) console.warn(text);
          },
        }),
        failure,
        // Emscripten's promise never settles when a thread worker fails to start.
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new Error(
                  `${urls.js}: not ready after ${LOAD_TIMEOUT_MS / 1000} s${urls.worker ? ` (did a thread worker from ${urls.worker} fail to start?)` : ''}`,
                ),
              ),
            LOAD_TIMEOUT_MS,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      return { module, build, maxThreads: build === 'threads' ? THREADED_MAX : 1 };
    })();
    loads.set(key, load);
    load.catch(() => loads.delete(key));
  }
  return load;
}

/** A buffer inside the module's memory, grown on demand. */
class WasmBuffer {
  ptr = 0;
  bytes = 0;
  constructor(private readonly m: KernelsModule) {}
  get(bytes: number): number {
    if (bytes > this.bytes) {
      if (this.ptr) this.m._free(this.ptr);
      this.ptr = this.m._malloc(bytes);
      if (!this.ptr) throw new ExtdError(`extd kernels (wasm): out of memory allocating ${bytes} bytes`);
      this.bytes = bytes;
    }
    return this.ptr;
  }
  free(): void {
    if (this.ptr) this.m._free(this.ptr);
    this.ptr = 0;
    this.bytes = 0;
  }
}

/**
 * CreateNativeSession on a loaded build: null where the kernels do not take
 * the graph (no backbone stage they run, an op they lack, or channel counts
 * that are not a multiple of 4), with `refusal` saying why. Runs are
 * synchronous, one at a time.
 */
export function wasmKernelsSessionFactory(kernels: WasmKernels): CreateNativeSession & { refusal: string | undefined } {
  const refuse = (why: string) => {
    factory.refusal = why;
    return null;
  };
  const factory: CreateNativeSession & { refusal: string | undefined } = (graph, weights, options) => {
    factory.refusal = undefined;
    if (options.precision === 'int8') return refuse('no int8 kernels in the WebAssembly build');
    const described = kernelSpecOf(graph, weights);
    if (!described) return refuse('no backbone stage or op they run');
    const m = kernels.module;
    const desc = encodeNetworkSpec(described.spec);
    const descPtr = m._malloc(desc.byteLength);
    if (!descPtr) return refuse(`out of memory for the network description (${desc.byteLength} bytes)`);
    m.HEAPF32.set(desc, descPtr >> 2);
    const net = m._extd_create(descPtr, desc.length);
    m._free(descPtr);
    if (!net) return refuse(m.UTF8ToString(m._extd_error()));
    const threads = Math.max(1, Math.min(options.threads, kernels.maxThreads));
    const input = new WasmBuffer(m),
      loc = new WasmBuffer(m),
      conf = new WasmBuffer(m);
    const spare = new ReusePool<{ loc: Float32Array; conf: Float32Array }>((b) => b.loc.length);
    let released = false;
    const cc = m._extd_conf_channels(net);

    const live = () => {
      if (released) throw new ExtdError('extd kernels (wasm): the session was released');
    };
    /** Run `call` (which fills loc and conf for an h x w input) and copy the outputs out of the module's memory. */
    const outputs = (h: number, w: number, call: (locPtr: number, confPtr: number) => number): Record<string, Float32Tensor> => {
      const priors = m._extd_priors(net, h, w);
      const lp = loc.get(priors * 16),
        cp = conf.get(priors * cc * 4);
      if (call(lp, cp) !== 0) throw new ExtdError(`extd kernels (wasm): ${m.UTF8ToString(m._extd_error())}`);
      const reuse = spare.take(priors * 4);
      const l = reuse?.loc ?? new Float32Array(priors * 4),
        c = reuse?.conf ?? new Float32Array(priors * cc);
      // The heap views are read after the call: a run may have grown the memory.
      l.set(m.HEAPF32.subarray(lp >> 2, (lp >> 2) + priors * 4));
      c.set(m.HEAPF32.subarray(cp >> 2, (cp >> 2) + priors * cc));
      return { loc: { dtype: 'float32', shape: [1, priors, 4], data: l }, conf: { dtype: 'float32', shape: [1, priors, cc], data: c } };
    };

    const session: InferenceSession & { name: string } = {
      name: kernels.build === 'threads' ? 'extd-kernels-wasm' : 'extd-kernels-wasm-st',
      async run(x: Float32Tensor) {
        live();
        const [n, ch, h, w] = x.shape as [number, number, number, number];
        if (x.shape.length !== 4 || n !== 1 || ch !== 3 || !(h >= 1 && w >= 1))
          throw new ExtdError(`extd kernels (wasm): input must be 1 x 3 x H x W with H, W >= 1, got ${x.shape.join(' x ')}`);
        if (x.data.length !== 3 * h * w) throw new ExtdError(`extd kernels (wasm): input has ${x.data.length} values, expected 3 x ${h} x ${w} = ${3 * h * w}`);
        const ip = input.get(x.data.byteLength);
        m.HEAPF32.set(x.data, ip >> 2);
        return outputs(h, w, (lp, cp) => m._extd_run(net, ip, h, w, lp, cp, threads));
      },
      async runRgb(image: RgbImage, mean: readonly number[]) {
        live();
        const { width: w, height: h } = image;
        if (!(Number.isInteger(h) && Number.isInteger(w) && h >= 1 && w >= 1))
          throw new ExtdError(`extd kernels (wasm): image size ${w} x ${h}: expected positive integers`);
        if (image.data.length !== 3 * h * w)
          throw new ExtdError(`extd kernels (wasm): image has ${image.data.length} bytes, expected ${h} x ${w} x 3 = ${3 * h * w}`);
        if (mean.length !== 3) throw new ExtdError(`extd kernels (wasm): mean has ${mean.length} values, expected 3 (RGB)`);
        const ip = input.get(image.data.length);
        m.HEAPU8.set(image.data, ip);
        return outputs(h, w, (lp, cp) => m._extd_run_rgb(net, ip, h, w, mean[0]!, mean[1]!, mean[2]!, lp, cp, threads));
      },
      recycle(out: Record<string, Float32Tensor>) {
        if (out.loc && out.conf) spare.put({ loc: out.loc.data, conf: out.conf.data });
      },
      async release() {
        if (released) return;
        released = true;
        input.free(), loc.free(), conf.free();
        m._extd_destroy(net);
      },
    };
    return session;
  };
  factory.refusal = undefined;
  return factory;
}
