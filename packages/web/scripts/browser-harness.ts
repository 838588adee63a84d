/**
 * Drive the demo page in Debian's Chromium with playwright-core: the shared
 * harness of the browser end-to-end test and the browser benchmark.
 *
 * Chromium runs headless with a fresh, throw-away user-data dir and the
 * flags that keep it from reaching out to the network (this machine has
 * none, and a test must not depend on it). Files from the shared reference
 * data are handed to the page through request interception under
 * /__shared/..., so the demo server itself serves nothing test-specific.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startDemoServer, type DemoServer } from './demo-server.js';

export const CHROMIUM_PATH = process.env.EXTD_CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  // A synthetic camera, granted without a prompt, so the demo's webcam mode can run headless.
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // WebGPU for pages that ask for it (the demo's ?ep=webgpu): without a GPU, Chromium's SwiftShader adapter.
  '--enable-unsafe-webgpu',
];

/** The shared reference data: EXTD_SHARED, else `shared/` next to the repository. */
export function sharedRoot(): string {
  return process.env.EXTD_SHARED ? resolve(process.env.EXTD_SHARED) : fileURLToPath(new URL('../../../../shared', import.meta.url));
}

/** A reason to skip when Chromium is missing, else false. */
export function noChromium(): string | false {
  return existsSync(CHROMIUM_PATH) ? false : `Chromium not found at ${CHROMIUM_PATH} (apt-get install chromium, or set EXTD_CHROMIUM)`;
}

export interface Harness {
  server: DemoServer;
  context: BrowserContext;
  /** Messages the pages logged as errors, and uncaught exceptions. */
  pageErrors: string[];
  /**
   * Open the demo with URL parameters (e.g. { threads: '2', model: 'extd-64' }) and wait until its model is loaded.
   * `isolated: false` serves the page without its COOP / COEP headers (not cross-origin isolated: no SharedArrayBuffer,
   * so no threads), as a page on a server without them would be.
   */
  openDemo(params: Record<string, string>, options?: { isolated?: boolean }): Promise<Page>;
  close(): Promise<void>;
}

export async function startHarness(options: { outDir: string; verbose?: boolean }): Promise<Harness> {
  const server = await startDemoServer({ port: 0, outDir: options.outDir, verbose: options.verbose ?? false });
  const profile = mkdtempSync(join(tmpdir(), 'extd-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
    });
  } catch (e) {
    await server.close();
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  const shared = sharedRoot();
  await context.route('**/__shared/**', (route) => {
    const rel = decodeURIComponent(new URL(route.request().url()).pathname.replace(/^\/__shared\//, ''));
    const file = resolve(shared, rel);
    if (!file.startsWith(shared + '/') || !existsSync(file)) return route.fulfill({ status: 404, body: `not found: ${rel}` });
    return route.fulfill({ status: 200, path: file, headers: { 'Cross-Origin-Resource-Policy': 'same-origin' } });
  });
  const pageErrors: string[] = [];
  return {
    server,
    context,
    pageErrors,
    async openDemo(params, options = {}) {
      const page = await context.newPage();
      if (options.isolated === false) {
        const pageUrl = new URL(server.url);
        await page.route(
          (url) => url.origin === pageUrl.origin && url.pathname === pageUrl.pathname,
          async (route) => {
            const response = await route.fetch();
            const headers = { ...response.headers() };
            delete headers['cross-origin-opener-policy'];
            delete headers['cross-origin-embedder-policy'];
            await route.fulfill({ response, headers });
          },
        );
      }
      page.on('console', (m) => {
        if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`);
      });
      page.on('pageerror', (e) => pageErrors.push(`pageerror: ${e.message}`));
      await page.goto(`${server.url}?${new URLSearchParams(params)}`);
      await page.waitForFunction(() => window.extdDemo !== undefined);
      await page.evaluate(() => window.extdDemo.ready);
      return page;
    },
    async close() {
      await context.close();
      await server.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
