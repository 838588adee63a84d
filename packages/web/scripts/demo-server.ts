/**
 * Build the demo page with Vite and serve it on localhost (Vite's preview
 * server plus the demo's middleware from demo/vite.config.ts). Used by
 * `npm run demo`, the browser end-to-end test and the browser benchmark.
 */
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, createLogger, preview, type Logger } from 'vite';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEMO_CONFIG = join(REPO, 'demo', 'vite.config.ts');

export interface DemoServerOptions {
  /** Port on 127.0.0.1; 0 picks a free one. */
  port: number;
  /** Where the built page goes. */
  outDir: string;
  /** Skip the build and serve what outDir holds. */
  skipBuild: boolean;
  /** Print Vite's build output. */
  verbose: boolean;
}

export const DEMO_SERVER_DEFAULTS: DemoServerOptions = { port: 5180, outDir: join(REPO, 'demo', 'dist'), skipBuild: false, verbose: true };

export interface DemoServer {
  url: string;
  /** Warnings Vite printed while building (e.g. Node built-ins externalized for the browser). */
  buildWarnings: string[];
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

/** A logger that records warnings (and errors) besides printing them when verbose. */
function recordingLogger(verbose: boolean, sink: string[]): Logger {
  const base = createLogger(verbose ? 'info' : 'silent');
  return {
    ...base,
    warn(msg, options) {
      sink.push(msg);
      base.warn(msg, options);
    },
    warnOnce(msg, options) {
      sink.push(msg);
      base.warnOnce(msg, options);
    },
    error(msg, options) {
      sink.push(msg);
      base.error(msg, options);
    },
  };
}

export async function startDemoServer(options: Partial<DemoServerOptions> = {}): Promise<DemoServer> {
  const opts = { ...DEMO_SERVER_DEFAULTS, ...options };
  const buildWarnings: string[] = [];
  const customLogger = recordingLogger(opts.verbose, buildWarnings);
  if (!opts.skipBuild) {
    await build({ configFile: DEMO_CONFIG, customLogger, logLevel: opts.verbose ? 'info' : 'warn', build: { outDir: resolve(opts.outDir) } });
  }
  const port = opts.port === 0 ? await freePort() : opts.port;
  const server = await preview({
    configFile: DEMO_CONFIG,
    customLogger,
    logLevel: opts.verbose ? 'info' : 'warn',
    build: { outDir: resolve(opts.outDir) },
    preview: { port, strictPort: true, host: '127.0.0.1', open: false },
  });
  const url = server.resolvedUrls?.local[0] ?? `http://127.0.0.1:${port}/`;
  return {
    url,
    buildWarnings,
    close: () => server.close(),
  };
}
