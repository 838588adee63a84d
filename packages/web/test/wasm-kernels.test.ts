/**
 * extd's kernels compiled to WebAssembly (wasm/, scripts/build-wasm.mjs),
 * run in Node's V8: both builds must give the loc and conf of onnxruntime
 * on the same graph, from a float input and from RGB pixels, and a bad
 * network description must be refused with a message. The browser loading
 * path (script element, thread workers, fallback) is covered by
 * browser-e2e.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportOnnx } from '@extd/core/runtime/onnx-export';
import { encodeNetworkSpec, kernelSpecOf } from '@extd/core/runtime/kernel-spec';
import { RGB_MEAN, toNetworkInput, type RgbImage } from '@extd/core/image/types';
import { loadModel } from 'extd/load-model';
import { createOrtNodeSession } from 'extd/runtime/ort-node';
import { wasmKernelsSessionFactory, WASM_KERNEL_FILES, type KernelsModule, type WasmKernels } from '../src/runtime/wasm-kernels.js';
import { requiredInCi } from '../../../test-support/shared.js';

const WASM_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'wasm');
const built = existsSync(join(WASM_DIR, WASM_KERNEL_FILES.single.js)) && existsSync(join(WASM_DIR, WASM_KERNEL_FILES.threads.js));
const skip = requiredInCi(built ? false : `wasm kernels not built (${WASM_DIR}; npm run build:wasm -w @extd/web needs Emscripten)`);

/** A network in module `m` from description `d`: its handle, or 0 (then `m._extd_error()` says why). */
function createNet(m: KernelsModule, d: Float32Array): number {
  const p = m._malloc(Math.max(4, d.byteLength));
  m.HEAPF32.set(d, p >> 2);
  const net = m._extd_create(p, d.length);
  m._free(p);
  return net;
}

async function loadBuild(build: 'threads' | 'single'): Promise<WasmKernels> {
  const files = WASM_KERNEL_FILES[build];
  const factory = createRequire(import.meta.url)(join(WASM_DIR, files.js)) as (o: object) => Promise<KernelsModule>;
  const module = await factory({ wasmBinary: readFileSync(join(WASM_DIR, files.wasm)) });
  return { module, build, maxThreads: build === 'threads' ? 4 : 1 };
}

/** A deterministic picture with edges and texture (a constant image would hide layout bugs). */
function picture(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  let s = 11;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    const p = Math.floor(i / 3);
    const block = (((p % width) >> 4) + (Math.floor(p / width) >> 4)) & 1;
    data[i] = (block ? 170 : 40) + ((s >>> 16) & 63);
  }
  return { data, width, height };
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let diff = 0,
    scale = 0;
  for (let i = 0; i < a.length; i++) (diff = Math.max(diff, Math.abs(a[i]! - b[i]!))), (scale = Math.max(scale, Math.abs(b[i]!)));
  assert.ok(scale > 0.01, 'a non-trivial output');
  return diff / Math.max(1, scale);
}

test('wasm kernels (threaded and single-threaded builds) match onnxruntime: EXTD-32, float and RGB inputs, 3-4 sizes (one past the initial memory); bad inputs refused', {
  skip,
  timeout: 300_000,
}, async () => {
  const model = await loadModel('extd-32');
  const ort = await createOrtNodeSession(exportOnnx(model.graph, model.weights), { threads: 2 });
  for (const build of ['threads', 'single'] as const) {
    const kernels = await loadBuild(build);
    try {
      const session = wasmKernelsSessionFactory(kernels)(model.graph, model.weights, { threads: 2 });
      assert.ok(session, `${build}: the kernels take EXTD-32`);
      assert.equal(session.name, build === 'threads' ? 'extd-kernels-wasm' : 'extd-kernels-wasm-st');
      const heap = kernels.module.HEAPU8.length;
      // The largest size makes the module grow its memory past the initial 64 MB (the heap views must follow).
      const sizes =
        build === 'threads'
          ? ([
              [160, 120],
              [333, 251],
              [96, 200],
              [1024, 768],
            ] as const)
          : ([
              [160, 120],
              [333, 251],
              [96, 200],
            ] as const);
      for (const [w, h] of sizes) {
        const image = picture(w, h);
        const input = { dtype: 'float32' as const, shape: [1, 3, h, w], data: toNetworkInput(image) };
        const ref = await ort.run(input);
        const fromFloat = await session.run(input);
        const fromRgb = await session.runRgb!(image, RGB_MEAN);
        for (const out of ['loc', 'conf'] as const) {
          assert.deepEqual(fromFloat[out]!.shape, ref[out]!.shape, `${build} ${w}x${h} ${out}: shape`);
          const d1 = maxRelDiff(fromFloat[out]!.data, ref[out]!.data),
            d2 = maxRelDiff(fromRgb[out]!.data, ref[out]!.data);
          assert.ok(d1 <= 1e-4 && d2 <= 1e-4, `${build} ${w}x${h} ${out}: max |wasm - onnxruntime| ${d1} (float input), ${d2} (RGB input)`);
        }
        session.recycle!(fromFloat);
      }
      // The helper threads really ran (a build that fell back to one thread would pass the comparisons too).
      const m = kernels.module;
      const net = createNet(m, encodeNetworkSpec(kernelSpecOf(model.graph, model.weights)!.spec));
      const rgb = m._malloc(64 * 48 * 3),
        loc = m._malloc(m._extd_priors(net, 48, 64) * 16),
        conf = m._malloc(m._extd_priors(net, 48, 64) * 8);
      assert.equal(m._extd_run_rgb(net, rgb, 48, 64, 0, 0, 0, loc, conf, 2), 0);
      assert.equal(m._extd_last_threads(net), build === 'threads' ? 2 : 1, `${build}: threads the run used`);
      for (const q of [rgb, loc, conf]) m._free(q);
      m._extd_destroy(net);
      if (build === 'threads') assert.ok(kernels.module.HEAPU8.length > heap, `the memory grew (${heap} -> ${kernels.module.HEAPU8.length} bytes)`);
      // Bad inputs: one line naming the problem, nothing run.
      await assert.rejects(
        session.run({ dtype: 'float32', shape: [1, 3, 8, 8], data: new Float32Array(100) }),
        /input has 100 values, expected 3 x 8 x 8 = 192/,
      );
      await assert.rejects(
        session.run({ dtype: 'float32', shape: [1, 3, 0, 8], data: new Float32Array(0) }),
        /input must be 1 x 3 x H x W with H, W >= 1, got 1 x 3 x 0 x 8/,
      );
      await assert.rejects(session.runRgb!({ data: new Uint8Array(10), width: 4, height: 4 }, RGB_MEAN), /image has 10 bytes, expected 4 x 4 x 3 = 48/);
      await assert.rejects(session.runRgb!({ data: new Uint8Array(48), width: 4, height: 4 }, [1, 2]), /mean has 2 values, expected 3/);
      await session.release();
      await assert.rejects(session.run({ dtype: 'float32', shape: [1, 3, 8, 8], data: new Float32Array(192) }), /session was released/);
    } finally {
      // The threaded build's workers would keep Node's event loop alive.
      (kernels.module as unknown as { PThread?: { terminateAllThreads(): void } }).PThread?.terminateAllThreads();
    }
  }
  await ort.release();
});

test('wasm kernels: int8 is not offered; a bad network description is refused with its reason', { skip }, async () => {
  const model = await loadModel('extd-32');
  const kernels = await loadBuild('single');
  const factory = wasmKernelsSessionFactory(kernels);
  assert.equal(factory(model.graph, model.weights, { threads: 1, precision: 'int8' }), null);
  assert.equal(factory.refusal, 'no int8 kernels in the WebAssembly build');
  // A conv whose bias does not fit its shape is refused before it reaches the module.
  const spec = kernelSpecOf(model.graph, model.weights)!.spec;
  assert.throws(
    () => encodeNetworkSpec({ ...spec, stem: { ...spec.stem, bias: spec.stem.bias.subarray(1) } }),
    /stem: 1728 weights and 63 biases, expected 1728 and 64/,
  );
  const m = kernels.module;
  const desc = encodeNetworkSpec(kernelSpecOf(model.graph, model.weights)!.spec);
  const tryCreate = (d: Float32Array) => {
    const net = createNet(m, d);
    if (net) m._extd_destroy(net);
    return net ? '' : m.UTF8ToString(m._extd_error());
  };
  assert.equal(tryCreate(desc), '', 'the full description is accepted');
  assert.match(tryCreate(desc.subarray(0, desc.length - 10)), /ends early/);
  const longer = new Float32Array(desc.length + 1);
  longer.set(desc);
  assert.match(tryCreate(longer), /values after the end/);
  // Channel counts the 4-float vectors cannot take: the module says which.
  const c = spec.stem.outChannels - 2;
  const narrowStem = { ...spec.stem, outChannels: c, weight: spec.stem.weight.subarray(0, c * 27), bias: spec.stem.bias.subarray(0, c) };
  assert.match(tryCreate(encodeNetworkSpec({ ...spec, stem: narrowStem })), new RegExp(`stem channels must be a multiple of 4 \\(one vector\\)`));
  const wrongFormat = desc.slice();
  wrongFormat[0] = 2;
  assert.match(tryCreate(wrongFormat), /unknown format/);
});
