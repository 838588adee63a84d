/**
 * Training runs with tcmalloc when the machine has it.
 *
 * Why: a training step allocates and frees gigabytes of activations. With
 * glibc's malloc every large block is a fresh mmap, so each step pays for
 * page faults and page zeroing again; tcmalloc keeps the memory. Measured on
 * the 2-core development machine (`npm run bench:train -- --sizes 320
 * --variants 32`, EXTD-32, batch 4, 320x320, 2 threads): 4.0-4.5 s per step
 * with glibc, 2.5 s with tcmalloc. PyTorch's CPU performance guide recommends
 * the same preload.
 *
 * malloc cannot be swapped inside a running process, so the entry point
 * (bin/extd.js for `extd train`, bench/train.ts) starts itself again with
 * LD_PRELOAD set. EXTD_TCMALLOC=off disables this; EXTD_TCMALLOC=/path/lib.so
 * names the library. Linux only; elsewhere nothing happens.
 *
 * Node only.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ExtdError } from '../utils/errors.js';

/** Where Debian/Ubuntu (libtcmalloc-minimal4), Fedora and Arch put the library. */
const CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4',
  '/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4',
  '/usr/lib64/libtcmalloc_minimal.so.4',
  '/usr/lib/libtcmalloc_minimal.so.4',
];

/** The tcmalloc library to preload, or null (not Linux, disabled, not installed, or already loaded). */
export function tcmallocToPreload(env: NodeJS.ProcessEnv = process.env): string | null {
  if (process.platform !== 'linux') return null;
  const setting = env.EXTD_TCMALLOC ?? '';
  if (setting === 'off' || setting === '0') return null;
  if ((env.LD_PRELOAD ?? '').includes('tcmalloc')) return null;
  if (setting) {
    if (!existsSync(setting)) throw new ExtdError(`EXTD_TCMALLOC=${setting}: no such file (expected the path of libtcmalloc_minimal.so.4, or 'off')`);
    return setting;
  }
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

/**
 * Runs `node [execArgv] script ...args` again with tcmalloc preloaded and
 * resolves with its exit code; resolves null without starting anything when
 * there is no tcmalloc to preload (the caller then runs in this process).
 *
 * The child shares the terminal: Ctrl-C reaches it directly (this process
 * ignores SIGINT meanwhile, so the child sees it once and can save a
 * checkpoint); SIGTERM and SIGHUP sent to this process are passed on.
 */
export function relaunchWithTcmalloc(script: string, args: readonly string[]): Promise<number> | null {
  const lib = tcmallocToPreload();
  if (!lib) return null;
  const preload = [lib, process.env.LD_PRELOAD].filter(Boolean).join(':');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, script, ...args], {
      stdio: 'inherit',
      env: { ...process.env, LD_PRELOAD: preload },
    });
    const ignore = () => {};
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.on('SIGINT', ignore);
    process.on('SIGTERM', forward);
    process.on('SIGHUP', forward);
    const cleanup = () => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', forward);
      process.off('SIGHUP', forward);
    };
    child.on('error', (err) => {
      cleanup();
      reject(err);
    });
    child.on('exit', (code, signal) => {
      cleanup();
      resolve(code ?? 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGKILL' ? 9 : 15));
    });
  });
}
