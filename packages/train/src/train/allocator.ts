/**
 * Training runs with tcmalloc when the machine has it.
 *
 * Why: a training step allocates and frees gigabytes of activations. With
 * glibc's malloc every large block is a fresh mmap, so each step pays for
 * page faults and page zeroing again; tcmalloc keeps the memory. Measured on
 * the 2-core development machine (`npm run bench:train -- --sizes 320
 * --variants 32`, EXTD-32, batch 4, 320x320, 2 threads, single runs):
 * 4.50 s per step with glibc, 2.53 s with tcmalloc (3.98 and 2.90 s before
 * the PReLU kernel change). PyTorch's CPU performance guide recommends the
 * same preload.
 *
 * malloc cannot be swapped inside a running process, so the entry point
 * (bin/extd.js for `extd train`, bench/train.ts) starts itself again with
 * LD_PRELOAD set. EXTD_TCMALLOC=off disables this; EXTD_TCMALLOC=/path/lib.so
 * names the library. Linux only; elsewhere nothing happens.
 *
 * Node only.
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { constants } from 'node:os';
import { ExtdError } from '@extd/core/utils/errors';

/** Where Debian/Ubuntu (libtcmalloc-minimal4), Fedora and Arch put the library. */
const CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4',
  '/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4',
  '/usr/lib64/libtcmalloc_minimal.so.4',
  '/usr/lib/libtcmalloc_minimal.so.4',
];

/** Set in the relaunched process, so it never relaunches again. */
const CHILD_MARK = 'EXTD_TCMALLOC_CHILD';

const isFile = (p: string) => {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
};

/**
 * The tcmalloc library to preload, or null (not Linux, disabled, not
 * installed, already preloaded, or this is the relaunched process).
 */
export function tcmallocToPreload(env: NodeJS.ProcessEnv = process.env): string | null {
  if (process.platform !== 'linux' || env[CHILD_MARK] === '1') return null;
  const setting = env.EXTD_TCMALLOC ?? '';
  if (setting === 'off' || setting === '0') return null;
  if ((env.LD_PRELOAD ?? '').includes('tcmalloc')) return null;
  if (setting) {
    if (!isFile(setting)) throw new ExtdError(`EXTD_TCMALLOC=${setting}: no such file (expected the path of libtcmalloc_minimal.so.4, or 'off')`);
    return setting;
  }
  return CANDIDATES.find(isFile) ?? null;
}

/**
 * Runs `node [execArgv] script ...args` again with tcmalloc preloaded and
 * resolves with its exit code; resolves null without starting anything when
 * there is no tcmalloc to preload (the caller then runs in this process).
 *
 * The child writes to the same terminal but runs in its own process group,
 * so a Ctrl-C reaches it exactly once, passed on by this process (as are
 * SIGINT, SIGTERM and SIGHUP sent to this process's pid): the trainer then
 * finishes its iteration and saves a checkpoint. The exit code is the
 * child's, or 128 + the signal number when a signal ended it.
 */
export function relaunchWithTcmalloc(script: string, args: readonly string[]): Promise<number> | null {
  const lib = tcmallocToPreload();
  if (!lib) return null;
  const preload = [lib, process.env.LD_PRELOAD].filter(Boolean).join(':');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, script, ...args], {
      stdio: 'inherit',
      detached: true,
      env: { ...process.env, LD_PRELOAD: preload, [CHILD_MARK]: '1' },
    });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const s of signals) process.on(s, forward);
    const cleanup = () => {
      for (const s of signals) process.off(s, forward);
    };
    child.on('error', (err) => {
      cleanup();
      reject(err);
    });
    child.on('exit', (code, signal) => {
      cleanup();
      if (code !== null) return resolve(code);
      process.stderr.write(`extd: the training process was ended by ${signal}\n`);
      resolve(128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
