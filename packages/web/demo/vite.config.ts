/**
 * Vite config of the demo page (demo/index.html).
 *
 *   npm run demo              build + serve (scripts/demo.ts), prints the URL
 *   npx vite --config demo/vite.config.ts    dev server with the same middleware
 *
 * Besides the page itself, the server provides:
 *   /ort/*       onnxruntime-web's wasm binaries and glue modules (copied into
 *                the build output too, so the built page is self-contained);
 *   /extd-wasm/* the package's wasm kernels (wasm/), for pages that pass
 *                `kernelsPath` (the page itself uses the copies Vite emits);
 * The models are the package's own files (models/), which the browser entry
 * references with `new URL(..., import.meta.url)`: Vite serves them in dev and
 * copies them into the build as assets.
 * Every response carries COOP/COEP headers, which make the page cross-origin
 * isolated: the condition for SharedArrayBuffer and so for wasm threads.
 */
import { copyFileSync, createReadStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';

const DEMO_DIR = dirname(fileURLToPath(import.meta.url));
// onnxruntime-web's dist/ folder, wherever npm put the package (hoisted to the repository's node_modules in a workspace).
const ORT_DIST = dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
/** The glue modules and wasm binaries of the two builds ort-web.ts may load (wasm, webgpu). */
export const ORT_FILES = [
  'ort-wasm-simd-threaded.mjs',
  'ort-wasm-simd-threaded.wasm',
  'ort-wasm-simd-threaded.asyncify.mjs',
  'ort-wasm-simd-threaded.asyncify.wasm',
];

export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** The package's wasm kernels (scripts/build-wasm.mjs), served under /extd-wasm/. */
const WASM_DIR = join(DEMO_DIR, '..', 'wasm');
const WASM_FILES = ['extd-kernels.js', 'extd-kernels.wasm', 'extd-kernels.worker.js', 'extd-kernels-st.js', 'extd-kernels-st.wasm'];

const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

function sendFile(res: ServerResponse, file: string): void {
  const ext = file.slice(file.lastIndexOf('.'));
  res.writeHead(200, {
    ...ISOLATION_HEADERS,
    'Content-Type': CONTENT_TYPES[ext] ?? 'application/octet-stream',
    'Content-Length': String(statSync(file).size),
    'Cache-Control': 'no-cache',
  });
  createReadStream(file).pipe(res);
}

function middleware(req: IncomingMessage, res: ServerResponse, next: () => void): void {
  const path = decodeURIComponent((req.url ?? '/').split('?')[0]!);
  const ort = /^\/ort\/([\w.-]+)$/.exec(path);
  if (ort && ORT_FILES.includes(ort[1]!)) {
    sendFile(res, join(ORT_DIST, ort[1]!));
    return;
  }
  const kernels = /^\/extd-wasm\/([\w.-]+)$/.exec(path);
  if (kernels && WASM_FILES.includes(kernels[1]!) && existsSync(join(WASM_DIR, kernels[1]!))) {
    sendFile(res, join(WASM_DIR, kernels[1]!));
    return;
  }
  next();
}

function extdDemoServer(): Plugin {
  let outDir = '';
  return {
    name: 'extd-demo-server',
    configResolved(config) {
      outDir = resolve(config.root, config.build.outDir);
    },
    configureServer(server) {
      server.middlewares.use(middleware);
    },
    configurePreviewServer(server) {
      server.middlewares.use(middleware);
    },
    closeBundle() {
      // onnxruntime's files are copied (they belong to the page); Vite copies the models as assets.
      mkdirSync(join(outDir, 'ort'), { recursive: true });
      for (const f of ORT_FILES) copyFileSync(join(ORT_DIST, f), join(outDir, 'ort', f));
    },
  };
}

export default defineConfig({
  root: DEMO_DIR,
  base: '/',
  // The demo's own helper files (test hook types etc.) are not public assets.
  publicDir: false,
  plugins: [extdDemoServer()],
  resolve: {
    // onnxruntime-web's "extern wasm" builds load their glue module from
    // env.wasm.wasmPaths (/ort/) instead of embedding it, so the bundle does
    // not carry a second copy and thread workers find the glue on our origin.
    // extd-source: our packages from their TypeScript sources (the workspace's packages are not built for the demo).
    conditions: ['onnxruntime-web-use-extern-wasm', 'extd-source', ...defaultClientConditions],
  },
  optimizeDeps: { exclude: ['onnxruntime-web'] },
  build: {
    outDir: join(DEMO_DIR, 'dist'),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 2048,
  },
  server: { headers: ISOLATION_HEADERS, host: '127.0.0.1' },
  preview: { headers: ISOLATION_HEADERS, host: '127.0.0.1' },
});
