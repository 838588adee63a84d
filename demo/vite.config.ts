/**
 * Vite config of the demo page (demo/index.html).
 *
 *   npm run demo              build + serve (scripts/demo.ts), prints the URL
 *   npx vite --config demo/vite.config.ts    dev server with the same middleware
 *
 * Besides the page itself, the server provides:
 *   /ort/*       onnxruntime-web's wasm binaries and glue modules (copied into
 *                the build output too, so the built page is self-contained);
 *   /models/*    checkpoints read at request time from disk, never copied:
 *                the released ones from $EXTD_SHARED/reference/weights
 *                (default ../shared) and the repo's bundled model when present;
 *                /models/index.json lists what is available.
 * Every response carries COOP/COEP headers, which make the page cross-origin
 * isolated: the condition for SharedArrayBuffer and so for wasm threads.
 */
import { copyFileSync, createReadStream, existsSync, mkdirSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';

const DEMO_DIR = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(DEMO_DIR, '..');
const ORT_DIST = join(REPO, 'node_modules', 'onnxruntime-web', 'dist');
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

export interface DemoModel {
  id: string;
  label: string;
  url: string;
}

function sharedDir(): string {
  return resolve(process.env.EXTD_SHARED ?? join(REPO, '..', 'shared'));
}

/** Models the server can serve right now: id -> file on disk. */
function modelFiles(): Map<string, { label: string; file: string }> {
  const files = new Map<string, { label: string; file: string }>();
  const weights = join(sharedDir(), 'reference', 'weights');
  for (const width of [32, 48, 64]) {
    const file = join(weights, `extd-fpn-${width}-prelu.safetensors`);
    if (existsSync(file)) files.set(`extd-${width}`, { label: `EXTD-${width} (released)`, file });
  }
  const bundled = join(REPO, 'models', 'extd-default.safetensors');
  if (existsSync(bundled)) files.set('bundled', { label: 'Bundled model (models/extd-default.safetensors)', file: bundled });
  return files;
}

const CONTENT_TYPES: Record<string, string> = {
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.safetensors': 'application/octet-stream',
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
  if (path === '/models/index.json') {
    const list: DemoModel[] = [...modelFiles()].map(([id, m]) => ({ id, label: m.label, url: `/models/${id}.safetensors` }));
    const body = JSON.stringify(list);
    res.writeHead(200, { ...ISOLATION_HEADERS, 'Content-Type': 'application/json', 'Cache-Control': 'no-cache' });
    res.end(body);
    return;
  }
  const model = /^\/models\/([\w-]+)\.safetensors$/.exec(path);
  if (model) {
    const entry = modelFiles().get(model[1]!);
    if (!entry) {
      res.writeHead(404, { ...ISOLATION_HEADERS, 'Content-Type': 'text/plain' });
      res.end(`no model '${model[1]}' (available: ${[...modelFiles().keys()].join(', ') || 'none; set EXTD_SHARED'})`);
      return;
    }
    sendFile(res, entry.file);
    return;
  }
  const ort = /^\/ort\/([\w.-]+)$/.exec(path);
  if (ort && ORT_FILES.includes(ort[1]!)) {
    sendFile(res, join(ORT_DIST, ort[1]!));
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
      // onnxruntime's files are copied (they belong to the page); models are not (they are served from disk).
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
    conditions: ['onnxruntime-web-use-extern-wasm', ...defaultClientConditions],
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
