/**
 * Training throughput (`npm run bench:train`): images per second of a full
 * training step (forward in training mode, multibox loss with hard negative
 * mining, backward, SGD) for EXTD-32 and EXTD-64 at 320x320 and 640x640 on
 * 2 libtorch threads, for extd and, where Debian's python3-torch is
 * installed, for the same model in plain PyTorch (bench/torch_step.py; not a
 * dependency of the package). Synthetic inputs (noise with two boxes per
 * image, targets matched once before timing, the same batch and the same
 * initial weights for both engines), so the loader and JPEG decoding are not
 * measured: the loader runs in worker threads beside the engine (see
 * bench/loader.ts).
 *
 *   npm run bench:train -- [--variants 32,64] [--sizes 320,640] [--batch N] [--threads 2]
 *       [--steps 3] [--rounds 2] [--malloc tcmalloc|glibc-keep|glibc] [--no-pytorch] [--python PATH]
 *       [--baseline DIR]
 *
 * Every measurement runs in a process of its own (bench/train-step.ts,
 * bench/torch_step.py): one warm-up step, then --steps timed steps, and the
 * process's peak resident memory. The engines alternate, --rounds times per
 * variant and size (extd, PyTorch, then PyTorch, extd, ...), so that on a
 * shared machine both see the same load; the ratio is the median of each
 * round's back-to-back ratio. One line per variant and size: images/s, wall
 * and CPU seconds (all threads) per step and peak RSS of each engine, and
 * the ratio of PyTorch's step time to extd's (above 1: extd is faster). CPU
 * time is the steadier figure on a loaded machine. --baseline DIR also runs
 * the extd of another checkout (its bench/train-step.ts), for before/after
 * comparisons (DIR: that checkout's root or its packages/train, relative to
 * the folder npm was run from).
 *
 * Allocator, the same for both engines (stated in the first line):
 * - tcmalloc (default when libtcmalloc-minimal4 is installed, as `extd train`
 *   runs; src/train/allocator.ts): LD_PRELOAD of libtcmalloc_minimal.so.4;
 * - glibc-keep: glibc's malloc told to keep freed memory
 *   (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000), so activations
 *   do not page-fault again every step;
 * - glibc: glibc's defaults.
 * Without --batch, 640x640 runs with batch 1 and smaller sizes with batch 4.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { variantName, parseVariant } from '@extd/core/model/variant';
import { tcmallocToPreload } from '../src/train/allocator.js';
import { syntheticBatch } from './synthetic-step.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '2' },
    batch: { type: 'string' },
    sizes: { type: 'string', default: '320,640' },
    variants: { type: 'string', default: '32,64' },
    malloc: { type: 'string' },
    'no-pytorch': { type: 'boolean', default: false },
    python: { type: 'string' },
    baseline: { type: 'string' },
  },
});
const here = dirname(fileURLToPath(import.meta.url));
const fail = (msg: string): never => {
  console.error(`bench:train: ${msg}`);
  process.exit(2);
};
const posInt = (s: string, what: string) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) fail(`--${what} ${s}: expected a positive integer`);
  return n;
};
const steps = posInt(values.steps!, 'steps');
const rounds = posInt(values.rounds!, 'rounds');
const threads = posInt(values.threads!, 'threads');

// The allocator both engines run with.
const tcmalloc = tcmallocToPreload({ ...process.env, LD_PRELOAD: '', EXTD_TCMALLOC_CHILD: '' });
const malloc = values.malloc ?? (tcmalloc ? 'tcmalloc' : 'glibc-keep');
const allocEnv: Record<string, string> = {};
if (malloc === 'tcmalloc') {
  if (!tcmalloc) fail('--malloc tcmalloc: libtcmalloc_minimal.so.4 not found (apt-get install libtcmalloc-minimal4, or EXTD_TCMALLOC=/path)');
  allocEnv.LD_PRELOAD = tcmalloc!;
} else if (malloc === 'glibc-keep') {
  Object.assign(allocEnv, { MALLOC_MMAP_MAX_: '0', MALLOC_TRIM_THRESHOLD_: '100000000000' });
} else if (malloc !== 'glibc') {
  fail(`--malloc ${malloc}: expected tcmalloc, glibc-keep or glibc`);
}
const env: NodeJS.ProcessEnv = { ...process.env, ...allocEnv, EXTD_TCMALLOC: 'off' };
if (malloc !== 'tcmalloc') env.LD_PRELOAD = process.env.LD_PRELOAD ?? '';

// The first Python that imports torch and numpy (a pyenv python3 on PATH may lack Debian's python3-torch).
const canImport = (py: string) => spawnSync(py, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0;
const pythons = values.python ? [values.python] : ['python3', '/usr/bin/python3'];
const python = values['no-pytorch'] ? null : (pythons.find(canImport) ?? null);
const pytorch = python !== null;

interface Run {
  times: number[];
  cpu: number[];
  peak_rss_mb: number;
  torch: string;
}
const child = (cmd: string, args: string[]): Run => {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = r.stdout?.trim().split('\n').at(-1) ?? '';
  if (r.status !== 0 || !line.startsWith('{')) {
    fail(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout || '').trim().split('\n').slice(-3).join(' | ')}`);
  }
  return JSON.parse(line) as Run;
};
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const gb = (mb: number) => `${(mb / 1024).toFixed(2)} GB`;

interface Engine {
  name: string;
  run: (variant: string, S: number, B: number, dir: string | null) => Run;
}
const extdEngine = (name: string, root: string): Engine => ({
  name,
  run: (variant, S, B) =>
    child(process.execPath, [
      ...process.execArgv,
      join(root, 'bench', 'train-step.ts'),
      '--variant',
      variant,
      '--size',
      `${S}`,
      '--batch',
      `${B}`,
      '--steps',
      `${steps}`,
      '--threads',
      `${threads}`,
    ]),
});
/**
 * --baseline DIR: another checkout's @extd/train package folder, or the checkout's root (its
 * packages/train is used). Relative to where npm was run (INIT_CWD), not to this package.
 */
function baselineRoot(dir: string): string {
  const abs = resolve(process.env.INIT_CWD ?? process.cwd(), dir);
  for (const root of [abs, join(abs, 'packages', 'train')]) {
    if (existsSync(join(root, 'bench', 'train-step.ts'))) return root;
  }
  return fail(`--baseline ${dir}: no bench/train-step.ts in ${abs} or ${join(abs, 'packages', 'train')} (give another checkout's root or its packages/train)`);
}
const engines: Engine[] = [extdEngine('extd', join(here, '..'))];
if (values.baseline) engines.push(extdEngine('baseline', baselineRoot(values.baseline)));
if (pytorch) {
  engines.push({
    name: 'PyTorch',
    run: (_v, _S, _B, dir) => child(python!, [join(here, 'torch_step.py'), dir!, '--steps', `${steps}`, '--threads', `${threads}`]),
  });
}

const allocText =
  malloc === 'tcmalloc'
    ? `tcmalloc (LD_PRELOAD=${tcmalloc})`
    : malloc === 'glibc-keep'
      ? 'glibc malloc, MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000'
      : 'glibc malloc, defaults';
console.log(
  `${threads} threads, ${allocText} for every engine; median of ${steps} steps after 1 warm-up, ${rounds} rounds; ` +
    `PyTorch: ${pytorch ? python : values['no-pytorch'] ? 'not measured (--no-pytorch)' : `not measured (${pythons.join(', ')}: cannot import torch and numpy)`}; ` +
    `load average ${loadavg()[0]!.toFixed(1)}`,
);
for (const width of values.variants!.split(',')) {
  const variant = variantName(parseVariant(`extd-fpn-${width}-prelu`));
  for (const S of values.sizes!.split(',').map((s) => posInt(s, 'sizes'))) {
    const B = values.batch ? posInt(values.batch, 'batch') : S > 320 ? 1 : 4;
    let dir: string | null = null;
    if (pytorch) {
      // The same batch, targets and initial weights for PyTorch.
      const d = syntheticBatch(variant, B, S);
      dir = mkdtempSync(join(tmpdir(), 'extd-bench-train-'));
      writeFileSync(join(dir, 'graph.json'), JSON.stringify({ ...d.graph, batch: B, size: S, priors: d.targets.confT.length / B }));
      const flat = new Float32Array(d.graph.params.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0));
      let off = 0;
      for (const p of d.graph.params) {
        const w = d.weights.get(p.name)!.data;
        flat.set(w, off);
        off += w.length;
      }
      writeFileSync(join(dir, 'weights.f32'), flat);
      writeFileSync(join(dir, 'input.f32'), d.input);
      writeFileSync(join(dir, 'conf_t.u8'), d.targets.confT);
      writeFileSync(join(dir, 'loc_t.f32'), d.targets.locT);
    }
    const runs = new Map<string, Run[]>(engines.map((e) => [e.name, []]));
    try {
      for (let r = 0; r < rounds; r++) {
        // Rotate the order every round, so that no engine always runs first (or right after a given one).
        for (let k = 0; k < engines.length; k++) {
          const e = engines[(k + r) % engines.length]!;
          runs.get(e.name)!.push(e.run(variant, S, B, dir));
        }
      }
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
    const wall = (name: string) => median(runs.get(name)!.flatMap((x) => x.times));
    const cpu = (name: string) => median(runs.get(name)!.flatMap((x) => x.cpu));
    const parts = engines.map((e) => {
      const rs = runs.get(e.name)!;
      const label = e.name === 'PyTorch' ? `PyTorch ${rs[0]!.torch}` : e.name;
      return (
        `${label} ${(B / wall(e.name)).toFixed(2)} img/s (${wall(e.name).toFixed(2)} s/step, CPU ${cpu(e.name).toFixed(2)} s/step, ` +
        `peak RSS ${gb(Math.max(...rs.map((x) => x.peak_rss_mb)))})`
      );
    });
    // Per round, back to back: how many times PyTorch's step time (wall and CPU) each extd build's is.
    const ratios = engines
      .filter((e) => e.name !== 'PyTorch' && pytorch)
      .map((e) => {
        const per = runs.get(e.name)!.map((x, r) => median(runs.get('PyTorch')![r]!.times) / median(x.times));
        const cpuRatio = cpu('PyTorch') / cpu(e.name);
        return `${e.name}/PyTorch ${median(per).toFixed(2)}x (rounds ${per.map((x) => x.toFixed(2)).join(', ')}; CPU time ${cpuRatio.toFixed(2)}x)`;
      });
    console.log(`${variant.padEnd(18)} ${S}x${S} batch ${B}  ${[...parts, ...ratios].join('  ')}  load ${loadavg()[0]!.toFixed(1)}`);
  }
}
