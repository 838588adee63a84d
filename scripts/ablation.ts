/**
 * The recipe ablation of the EXTD-32 campaign (issue 16): branches of one
 * training state, each trained with one recipe for the same wall-clock budget
 * on the same machine, then scored on the campaign's 200-image validation
 * subset (single protocol).
 *
 *   node --conditions=extd-source --import tsx scripts/ablation.ts run   --from RUN --out DIR [--minutes M] [--parallel P] [--rows a,b,...] [--data DIR] [--val-list FILE] [-- TRAIN FLAGS]
 *   node --conditions=extd-source --import tsx scripts/ablation.ts table --out DIR
 *
 * `run` copies RUN's latest checkpoint (model, optimiser state, moving
 * average, config, log) into DIR/ROW for every row of ABLATION_ROWS (or the
 * --rows named), continues each with `extd train --resume` plus the flags
 * after `--` (the same for every row; e.g. `-- --iterations 32000` where
 * the branch point ends a cosine cycle, whose learning rate is 0 there: the
 * cosine then runs to 32,000, so from 26,000 the rate restarts at about
 * 2.5e-4, decaying to 0) and the row's own flags at 1 libtorch thread and 1 loader worker, stops it with Ctrl-C's
 * signal after M minutes (it finishes its iteration and saves), and scores
 * the checkpoint it ends on with `extd eval` on `campaign/val200.txt`: the
 * moving average of the weights, and for rows marked so the raw weights too.
 * P rows run at once (default 2: the development machine has 2 cores, so
 * every row shares the machine with one other row). DIR/ROW/row.json records
 * the iterations, wall and CPU seconds (the training process's user + system
 * time, all its threads) and the AP; DIR/table.md is the table. Every file is
 * written atomically; a rerun skips the rows (and evaluations) already
 * done and starts a row that had not finished again from the branch point.
 * After a row fails no new row starts. The budget lives in this process:
 * stop it with Ctrl-C (the signal reaches the whole process group, so each
 * row saves and stops), not with a kill that leaves its rows training.
 *
 * Why branches of the campaign and not runs from scratch: on 2 CPU cores a
 * from-scratch run of 15 or 45 minutes ends near AP 0 whatever the recipe, so
 * such a table says nothing; branching the campaign's state compares what
 * each recipe does next with the same budget, and the best branch can carry
 * the campaign on. It does not say how the recipes compare from scratch.
 *
 * Every row also keeps a moving average of the weights with decay
 * ABLATION_DEFAULTS.ema (a horizon of about 100 iterations, well inside one
 * row's budget, so the average reflects the row's own recipe and not the
 * shared past), and the AP columns score it, which takes the
 * checkpoint-to-checkpoint noise of the raw weights out of the comparison.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { checkpointNames, readLatest } from '@extd/train/train/checkpoint';
import { ExtdError } from '@extd/core/utils/errors';
import { writeFileAtomic } from 'extd/utils/atomic';
import { CAMPAIGN_DEFAULTS, readCampaign, readJson, round, runAsScript, seedRun, splitTrainFlags, VAL_SUBSET_FILE, valEvalArgs } from './campaign.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);

export const ABLATION_DEFAULTS = Object.freeze({
  /** Wall-clock minutes of training per row. */
  minutes: 15,
  /** Rows trained at once. */
  parallel: 2,
  /** libtorch threads and loader workers of each row. */
  threads: 1,
  workers: 1,
  /** Moving-average decay every row keeps (horizon about 1 / (1 - ema) iterations). */
  ema: 0.99,
  /** Threads of each evaluation. */
  evalThreads: 1,
});

/** `extd train` flags the ablation sets itself: neither a row nor the flags after `--` may. */
export const RESERVED_FLAGS: readonly string[] = Object.freeze([
  '--out',
  '--resume',
  '--annotations',
  '--images',
  '--threads',
  '--workers',
  '--ema',
  '--init',
  '--variant',
  '--head-std',
]);

/** One recipe of the ablation. */
export interface AblationRow {
  /** Folder name and table key. */
  name: string;
  /** What it changes, for the table. */
  what: string;
  /** `extd train` flags added to `--resume` (they override the stored config). */
  flags: readonly string[];
  /** Also score the raw weights (not only their moving average). */
  raw?: boolean;
}

/**
 * The rows. The campaign's recipe at the branch point (320x320 crops, batch
 * 4, lr 0.003 with cosine decay to iteration 40,000, BN frozen, gradient
 * clipping at 20) is the reference; every other row changes one thing.
 */
export const ABLATION_ROWS: readonly AblationRow[] = Object.freeze([
  { name: 'campaign', what: "the campaign's recipe, unchanged", flags: [], raw: true },
  {
    name: 'paper',
    what: "the paper's recipe: lr 0.001 (step policy), BatchNorm in training mode (momentum 0.1), no clipping",
    flags: ['--lr', '0.001', '--lr-policy', 'step', '--bn-freeze', '0', '--bn-momentum', '0.1', '--clip-grad', '0'],
    raw: true,
  },
  { name: 'lr-0.01', what: 'higher learning rate: base lr 0.01 (cosine)', flags: ['--lr', '0.01'] },
  {
    name: 'bn-renorm',
    what: 'BatchNorm as batch renormalisation (r <= 3, d <= 5, running-statistics momentum 0.01) instead of frozen',
    flags: ['--bn-freeze', '0', '--bn-renorm', '1', '--bn-renorm-ramp', '0', '--bn-momentum', '0.01'],
  },
  { name: 'size-640-b1', what: '640x640 crops, batch 1 (the same pixels per iteration)', flags: ['--size', '640', '--batch', '1'] },
  { name: 'batch-8', what: 'batch 8 (320x320)', flags: ['--batch', '8'] },
  { name: 'teacher-64', what: 'distillation from the released EXTD-64 (--teacher extd-64)', flags: ['--teacher', 'extd-64'] },
  {
    name: 'teacher-box-2',
    what: "the distillation's box term weighted 2 (--teacher-box-weight 2; the branch's recipe must have a teacher)",
    flags: ['--teacher-box-weight', '2'],
  },
]);

/** Easy / medium / hard AP of one scored model. */
export interface Ap {
  easy: number;
  medium: number;
  hard: number;
}

/** DIR/ROW/row.json. */
export interface RowResult {
  name: string;
  what: string;
  flags: string[];
  /** The flags after `--`, given to every row (part of `flags` too). */
  common?: string[];
  fromIteration: number;
  /** The wall-clock budget and the validation list the row ran with. */
  minutes?: number;
  valList?: string;
  toIteration?: number;
  /** Images the row trained on (iterations times batch). */
  images?: number;
  wallSeconds?: number;
  cpuSeconds?: number;
  ema?: Ap;
  raw?: Ap;
}

function writeJson(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 1) + '\n');
}

/**
 * User + system CPU seconds of process `pid` (all its threads, the loader
 * worker's included) from /proc, counted in Linux's USER_HZ of 100 ticks per
 * second; null where /proc is missing. The ablation reads it every 5 s and at
 * the stop signal, so it covers start-up (tsx, libtorch, a teacher's load)
 * but not the last iteration and save after the signal.
 */
function cpuSecondsOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/** Run this script's hidden `__cli` subcommand (extd's CLI) in a child process, output to `log`. */
function runChild(
  args: string[],
  log: string,
  budgetSeconds?: number,
): Promise<{ code: number; signal: NodeJS.Signals | null; cpuSeconds: number | null; wallSeconds: number }> {
  return new Promise((done, fail) => {
    const fd = openSync(log, 'a');
    const t0 = performance.now();
    const child = spawn(process.execPath, [...process.execArgv, SELF, '__cli', ...args], {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, EXTD_TCMALLOC: 'off' },
    });
    // CPU time as last read before the stop signal (or before the exit, for a child that ends on its own).
    let cpu: number | null = null;
    let stopped = false;
    const read = () => {
      const c = cpuSecondsOf(child.pid!);
      if (c !== null && !stopped) cpu = c;
    };
    const poll = setInterval(read, 5000);
    const timer =
      budgetSeconds === undefined
        ? undefined
        : setTimeout(() => {
            read();
            stopped = true;
            child.kill('SIGINT');
          }, budgetSeconds * 1000);
    child.on('error', fail);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearInterval(poll);
      closeSync(fd);
      done({ code: code ?? 1, signal, cpuSeconds: cpu, wallSeconds: (performance.now() - t0) / 1000 });
    });
  });
}

async function scoreOnVal200(model: string, out: string, log: string, valList: string): Promise<Ap> {
  const apPath = join(out, 'ap.json');
  if (!existsSync(apPath)) {
    const { code } = await runChild(valEvalArgs(model, out, valList, String(ABLATION_DEFAULTS.evalThreads)), log);
    if (code !== 0) throw new ExtdError(`extd eval of ${model} failed (exit ${code}); see ${log}`);
  }
  const ap = readJson<Ap>(apPath);
  return { easy: round(ap.easy), medium: round(ap.medium), hard: round(ap.hard) };
}

/** Train (unless done) and score one row; returns its record. */
async function runRow(
  row: AblationRow,
  from: string,
  out: string,
  dataArgs: string[],
  minutes: number,
  valList: string,
  common: readonly string[],
): Promise<RowResult> {
  const dir = join(out, row.name);
  const resultPath = join(dir, 'row.json');
  const log = join(dir, 'run.log');
  const recorded = existsSync(resultPath) ? readJson<RowResult>(resultPath) : null;
  let r: RowResult;
  if (recorded?.toIteration !== undefined) {
    r = recorded;
  } else {
    // A row interrupted before it finished (no toIteration) starts again from the branch point.
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    const fromIteration = seedRun(from, dir);
    const flags = [...common, ...row.flags, '--ema', String(ABLATION_DEFAULTS.ema)];
    r = { name: row.name, what: row.what, flags, common: [...common], fromIteration, minutes, valList };
    writeJson(resultPath, r);
    const args = [
      'train',
      '--resume',
      '--out',
      dir,
      ...dataArgs,
      '--threads',
      String(ABLATION_DEFAULTS.threads),
      '--workers',
      String(ABLATION_DEFAULTS.workers),
    ];
    const { code, signal, cpuSeconds, wallSeconds } = await runChild([...args, ...flags], log, minutes * 60);
    const latest = readLatest(dir);
    // 130: extd train's exit after the stop signal (it finished its iteration and saved); 0: it reached --iterations first.
    if ((code !== 0 && code !== 130) || !latest || latest.iteration <= fromIteration) {
      const how = signal ? `killed by ${signal}` : `exit ${code}`;
      const why = latest && latest.iteration <= fromIteration ? ', no iteration past the branch point within the budget' : '';
      throw new ExtdError(`row ${row.name}: training failed (${how}${why}); see ${log}`);
    }
    const config = readJson<{ batch: number }>(join(dir, 'config.json'));
    r = {
      ...r,
      toIteration: latest.iteration,
      images: (latest.iteration - fromIteration) * config.batch,
      wallSeconds: Math.round(wallSeconds),
      cpuSeconds: cpuSeconds === null ? undefined : Math.round(cpuSeconds),
    };
    writeJson(resultPath, r);
  }
  const names = checkpointNames(r.toIteration!);
  if (!r.ema) {
    r.ema = await scoreOnVal200(join(dir, names.ema), join(dir, 'eval-ema'), log, valList);
    writeJson(resultPath, r);
  }
  if (row.raw && !r.raw) {
    r.raw = await scoreOnVal200(join(dir, names.model), join(dir, 'eval-raw'), log, valList);
    writeJson(resultPath, r);
  }
  return r;
}

/**
 * Minutes until the last row of an ablation run finishes, for the progress line.
 * `rowSeconds`: the mean wall time of the rows this run trained (budget plus scoring;
 * the budget alone before one has finished);
 * `runningSeconds`: how long each row now in flight has run; `queued`: rows not started;
 * `parallel`: rows at a time. Each worker finishes its row in flight, then takes queued
 * rows in turn, each taking `rowSeconds`; the answer is when the last worker is done.
 */
export function ablationEtaMinutes(rowSeconds: number, runningSeconds: readonly number[], queued: number, parallel: number): number {
  const free = runningSeconds.map((s) => Math.max(0, rowSeconds - s));
  while (free.length < parallel) free.push(0);
  for (let i = 0; i < queued; i++) {
    free.sort((a, b) => a - b);
    free[0]! += rowSeconds;
  }
  return Math.round(Math.max(0, ...free) / 60);
}

/** The markdown table of the rows' results (rows not yet done are left out). */
export function renderTable(results: readonly RowResult[], minutes: number, parallel: number): string {
  // The budget and validation list the rows recorded (rows written before they were recorded: the arguments).
  const budgets = [...new Set(results.map((r) => r.minutes ?? minutes))];
  const lists = [...new Set(results.map((r) => (r.valList ? relative(REPO, r.valList) : VAL_SUBSET_FILE)))];
  const commons = [...new Set(results.filter((r) => r.toIteration !== undefined).map((r) => (r.common ?? []).join(' ')))];
  const withCommon =
    commons.length === 1 && commons[0] !== ''
      ? `, with \`${commons[0]}\` added to every row's flags`
      : commons.length > 1
        ? `, with ${commons.map((c) => (c ? `\`${c}\`` : 'nothing')).join(' or ')} added to the rows' flags (see each row.json)`
        : '';
  const f = (ap: Ap | undefined) => (ap ? `${ap.easy.toFixed(3)} / ${ap.medium.toFixed(3)} / ${ap.hard.toFixed(3)}` : '');
  const header = ['row', 'change', 'iterations', 'images', 'CPU s', 'AP EMA (easy / medium / hard)', 'AP raw weights'];
  const body = results
    .filter((r) => r.toIteration !== undefined)
    .map((r) => [r.name, r.what, `${r.fromIteration}-${r.toIteration}`, String(r.images), String(r.cpuSeconds ?? ''), f(r.ema), f(r.raw)]);
  // Columns padded to one width (as Markdown formatters align them), so the file is committed as written.
  const widths = header.map((h, i) => Math.max(h.length, 3, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const lines = [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)];
  return `${lines.join('\n')}\n\nEach row: ${budgets.join(' or ')} minutes of wall time, 1 libtorch thread, 1 loader worker, ${parallel} row${parallel === 1 ? '' : 's'} at a time${withCommon}; AP on ${lists.join(' or ')} (WIDER val images, single protocol).\n`;
}

function readResults(out: string): RowResult[] {
  return ABLATION_ROWS.map((row) => join(out, row.name, 'row.json'))
    .filter((p) => existsSync(p))
    .map((p) => readJson<RowResult>(p));
}

const USAGE = `usage: node --conditions=extd-source --import tsx scripts/ablation.ts <command> [options]

  run   --from RUN --out DIR [--minutes M] [--parallel P] [--rows a,b,...] [--data DIR] [--val-list FILE] [-- TRAIN FLAGS]
        branch RUN's latest checkpoint into DIR/ROW, train each row for M minutes (default ${ABLATION_DEFAULTS.minutes}),
        P at once (default ${ABLATION_DEFAULTS.parallel}), score each on ${VAL_SUBSET_FILE} (or --val-list); resumes where it stopped;
        extd train flags after -- go to every row (e.g. -- --iterations 32000: the cosine runs on to 32,000)
  table --out DIR [--minutes M] [--parallel P]   print (and write DIR/table.md) the table of the rows done

rows: ${ABLATION_ROWS.map((r) => r.name).join(', ')}`;

async function cli(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '__cli') {
    const { main } = await import('extd/cli/main');
    return main(rest);
  }
  if (sub === undefined || sub === '--help' || sub === '-h' || rest.includes('--help')) {
    console.log(USAGE);
    return sub === undefined ? 2 : 0;
  }
  const options = {
    from: { type: 'string' },
    out: { type: 'string' },
    minutes: { type: 'string' },
    parallel: { type: 'string' },
    rows: { type: 'string' },
    data: { type: 'string' },
    campaign: { type: 'string' },
    'val-list': { type: 'string' },
  } as const;
  const { own, train: common } = splitTrainFlags(rest, {
    sub,
    acceptedBy: 'run',
    reserved: RESERVED_FLAGS,
    why: `is the ablation's own or fixed by the branch point (${RESERVED_FLAGS.join(', ')})`,
  });
  const v = parseArgs({ args: own, options }).values;
  if (!v.out) throw new ExtdError(`${sub} needs --out DIR (the ablation folder)`);
  const out = resolve(v.out);
  const minutes = Number(v.minutes ?? ABLATION_DEFAULTS.minutes);
  if (!(minutes > 0)) throw new ExtdError(`--minutes ${v.minutes}: expected a positive number`);
  const parallel = Number(v.parallel ?? ABLATION_DEFAULTS.parallel);
  if (!Number.isInteger(parallel) || parallel < 1) throw new ExtdError(`--parallel ${v.parallel}: expected a positive integer`);
  if (sub === 'table') {
    const table = renderTable(readResults(out), minutes, parallel);
    writeFileAtomic(join(out, 'table.md'), table);
    console.log(table);
    return 0;
  }
  if (sub !== 'run') throw new ExtdError(`unknown subcommand '${sub}': expected run or table`);
  if (!v.from) throw new ExtdError('run needs --from RUN (the training run folder whose latest checkpoint the rows branch from)');
  const from = resolve(v.from);
  if (!readLatest(from)) throw new ExtdError(`--from ${from}: no latest.json (not a training run folder with a checkpoint)`);
  const wanted = v.rows?.split(',') ?? ABLATION_ROWS.map((r) => r.name);
  for (const w of wanted) {
    if (!ABLATION_ROWS.some((r) => r.name === w)) throw new ExtdError(`--rows: no row '${w}'; rows: ${ABLATION_ROWS.map((r) => r.name).join(', ')}`);
  }
  const rows = ABLATION_ROWS.filter((r) => wanted.includes(r.name));
  const campaign = readCampaign(resolve(REPO, v.campaign ?? CAMPAIGN_DEFAULTS.campaign));
  const data = resolve(v.data ?? campaign.data.dir);
  const dataArgs = ['--annotations', join(data, CAMPAIGN_DEFAULTS.annotationFile), '--images', join(data, CAMPAIGN_DEFAULTS.imagesDir)];
  if (!existsSync(dataArgs[1]!)) throw new ExtdError(`${dataArgs[1]}: not found; name the campaign's data folder with --data`);
  const valList = resolve(v['val-list'] ?? join(REPO, VAL_SUBSET_FILE));
  if (!existsSync(valList)) throw new ExtdError(`--val-list ${valList}: not found`);
  // Finished rows are reused as they are and share one table, so every finished row's flags after -- must be this run's.
  for (const recorded of readResults(out)) {
    const was = (recorded.common ?? []).join(' ');
    if (recorded.toIteration !== undefined && was !== common.join(' ')) {
      throw new ExtdError(
        `row ${recorded.name} in ${out} ran with '-- ${was}', this run has '-- ${common.join(' ')}': name another --out for other flags after --`,
      );
    }
  }
  mkdirSync(out, { recursive: true });
  let next = 0;
  let finished = 0;
  let failed = false;
  let rowSecondsSum = 0; // rows trained in this run
  let rowsTimed = 0;
  const started = new Map<string, number>(); // rows in flight: name -> start time (ms)
  const worker = async () => {
    while (next < rows.length && !failed) {
      const row = rows[next++]!;
      console.error(`ablation: row ${row.name} (${row.what}) started`);
      started.set(row.name, Date.now());
      // Only rows trained here are timed: a row finished earlier is reused, or only scored.
      const trains = readResults(out).find((x) => x.name === row.name)?.toIteration === undefined;
      const r = await runRow(row, from, out, dataArgs, minutes, valList, common).catch((err: unknown) => {
        failed = true; // no new rows after a failure; the rows already running finish their budget
        throw err;
      });
      finished++;
      const now = Date.now();
      const took = (now - started.get(row.name)!) / 1000;
      if (trains) {
        rowSecondsSum += took;
        rowsTimed++;
      }
      started.delete(row.name);
      const running = [...started.values()].map((t) => (now - t) / 1000);
      const rowSeconds = rowsTimed > 0 ? rowSecondsSum / rowsTimed : minutes * 60;
      const eta = ablationEtaMinutes(rowSeconds, running, failed ? 0 : rows.length - next, parallel); // no new rows after a failure
      console.error(
        `ablation: row ${r.name} done (${finished}/${rows.length}): iterations ${r.fromIteration}-${r.toIteration}, EMA AP ${r.ema!.easy} / ${r.ema!.medium} / ${r.ema!.hard}${r.raw ? `, raw ${r.raw.easy} / ${r.raw.medium} / ${r.raw.hard}` : ''}; ETA ${eta} min`,
      );
      writeFileAtomic(join(out, 'table.md'), renderTable(readResults(out), minutes, parallel));
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, rows.length) }, worker));
  console.log(renderTable(readResults(out), minutes, parallel));
  return 0;
}

runAsScript(import.meta.url, 'ablation', cli);
