import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SVG_FONT, SvgContext, svgToPng } from 'extd/image/svg';
import { writeFileAtomic } from 'extd/utils/atomic';
import { ExtdError } from '@extd/core/utils/errors';
import { UsageError, numberFlag, parseCli } from 'extd/cli/args';
import type { Command } from 'extd/cli/command';

const usage = `usage: extd plot-log LOG [-o OUT.png] [--smooth N]

Draw the loss curves of a training log (the log.jsonl that extd train writes,
or its run folder) to a PNG: loss_l, loss_c and their sum per iteration, a
moving average over --smooth iterations on top of the raw values, the
learning rate on a second panel, and when the run had --val, the validation
score (AP at IoU 0.5, or the WIDER APs) on a third, with the best marked.

options:
  -o, --out FILE     PNG to write (default: loss.png next to the log)
  --smooth N         moving-average window in iterations (default: 1/50 of the run, at least 1)
  --width N          image width in pixels (default 1000)`;

/** The fields plot-log reads from each log.jsonl line. */
interface Point {
  iter: number;
  loss_l: number;
  loss_c: number;
  lr: number;
}

/** A validation line of log.jsonl (extd train --val). */
export interface ValPoint {
  /** Completed iterations when the weights were scored. */
  iter: number;
  /** AP@0.5, or the mean of the WIDER APs. */
  val_metric: number;
  /** 'ap50' or 'wider'. */
  val_protocol: string;
  /** wider: the easy setting's AP. */
  val_easy?: number;
  /** wider: the medium setting's AP. */
  val_medium?: number;
  /** wider: the hard setting's AP. */
  val_hard?: number;
}

/** The validation lines of log.jsonl (none when the run had no --val). */
export function readValidationLog(path: string): ValPoint[] {
  return readLogLines(path).val;
}

/** Parse log.jsonl's iteration lines; a malformed line is an error naming file:line (a last line cut by a crash is skipped). */
export function readTrainingLog(path: string): Point[] {
  return readLogLines(path).points;
}

function readLogLines(path: string): { points: Point[]; val: ValPoint[] } {
  const lines = readFileSync(path, 'utf8').split('\n');
  const out: Point[] = [];
  const val: ValPoint[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let r: Point;
    try {
      r = JSON.parse(line) as Point;
    } catch {
      if (i === lines.length - 1 || (i === lines.length - 2 && lines[i + 1] === '')) return;
      throw new ExtdError(`${path}:${i + 1}: not a JSON object (${line.slice(0, 40)}...)`);
    }
    if ('val_metric' in r) {
      const v = r as unknown as ValPoint;
      if (typeof v.iter !== 'number' || typeof v.val_metric !== 'number') throw new ExtdError(`${path}:${i + 1}: expected numbers iter, val_metric`);
      val.push(v);
      return;
    }
    if (![r.iter, r.loss_l, r.loss_c, r.lr].every((v) => typeof v === 'number')) {
      throw new ExtdError(`${path}:${i + 1}: expected numbers iter, loss_l, loss_c, lr`);
    }
    out.push(r);
  });
  if (out.length === 0) throw new ExtdError(`${path}: no log records`);
  return { points: out, val };
}

function movingAverage(values: number[], window: number): number[] {
  const out: number[] = new Array(values.length);
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i]!;
    if (i >= window) sum -= values[i - window]!;
    out[i] = sum / Math.min(i + 1, window);
  }
  return out;
}

/** Render the loss and lr panels (and the validation panel when `val` has points); returns PNG bytes. */
export async function plotTrainingLog(points: Point[], options: { smooth: number; width: number; title: string; val?: ValPoint[] }): Promise<Uint8Array> {
  const val = options.val ?? [];
  const W = options.width;
  const H = Math.round(W * (val.length > 0 ? 0.95 : 0.7));
  const g = new SvgContext(W, H);
  g.fillStyle = '#fff';
  g.fillRect(0, 0, W, H);
  const margin = { left: 70, right: 20, top: 36, bottom: 40 };
  const panels = H - margin.top - margin.bottom;
  const lossH = Math.round(panels * (val.length > 0 ? 0.5 : 0.72));
  const lrTop = margin.top + lossH + 30;
  const lrH = Math.round(val.length > 0 ? panels * 0.16 : H - margin.bottom - lrTop);
  const x0 = margin.left,
    x1 = W - margin.right;
  const iters = [...points.map((p) => p.iter), ...val.map((v) => v.iter)];
  const minIt = Math.min(...iters),
    maxIt = Math.max(maxOf(iters), minIt + 1);
  const xOf = (it: number) => x0 + ((it - minIt) / (maxIt - minIt)) * (x1 - x0);

  const series = [
    { name: 'loss_l + loss_c', color: '#222', values: points.map((p) => p.loss_l + p.loss_c) },
    { name: 'loss_c', color: '#d62728', values: points.map((p) => p.loss_c) },
    { name: 'loss_l', color: '#1f77b4', values: points.map((p) => p.loss_l) },
  ];
  const smoothed = series.map((s) => movingAverage(s.values, options.smooth));
  // Scale to the smoothed curves (raw spikes at the start would flatten everything else), clipped at the top.
  const yMax = maxOf(smoothed.flat()) * 1.1 || 1;
  const yOf = (v: number) => margin.top + lossH - (Math.min(v, yMax) / yMax) * lossH;

  g.font = `14px ${SVG_FONT}`;
  g.fillStyle = '#000';
  g.fillText(options.title, x0, 22);
  axes(g, x0, x1, margin.top, margin.top + lossH, minIt, maxIt, 0, yMax, (v) => v.toFixed(yMax < 10 ? 1 : 0));
  series.forEach((s, k) => {
    g.globalAlpha = 0.2;
    line(
      g,
      points.map((p, i) => [xOf(p.iter), yOf(s.values[i]!)]),
      s.color,
      1,
    );
    g.globalAlpha = 1;
    line(
      g,
      points.map((p, i) => [xOf(p.iter), yOf(smoothed[k]![i]!)]),
      s.color,
      2,
    );
    g.fillStyle = s.color;
    const last = smoothed[k]!.at(-1)!;
    g.fillText(`${s.name} ${last.toFixed(3)}`, x1 - 210, margin.top + 18 + 18 * k);
  });
  g.fillStyle = '#555';
  g.fillText(`moving average over ${options.smooth} iterations`, x0 + 10, margin.top + 16);

  const lrs = points.map((p) => p.lr);
  const lrMax = maxOf(lrs) * 1.1 || 1;
  axes(g, x0, x1, lrTop, lrTop + lrH, minIt, maxIt, 0, lrMax, (v) => v.toExponential(1));
  line(
    g,
    points.map((p) => [xOf(p.iter), lrTop + lrH - (p.lr / lrMax) * lrH]),
    '#2ca02c',
    2,
  );
  g.fillStyle = '#2ca02c';
  g.fillText('learning rate', x1 - 210, lrTop + 16);
  if (val.length > 0) {
    const vTop = lrTop + lrH + 30;
    const vH = H - margin.bottom - vTop;
    const wider = val.some((v) => v.val_protocol === 'wider');
    const curves = wider
      ? [
          { name: 'easy', color: '#1f77b4', values: val.map((v) => v.val_easy ?? NaN) },
          { name: 'medium', color: '#ff7f0e', values: val.map((v) => v.val_medium ?? NaN) },
          { name: 'hard', color: '#d62728', values: val.map((v) => v.val_hard ?? NaN) },
        ]
      : [{ name: 'val AP@0.5', color: '#9467bd', values: val.map((v) => v.val_metric) }];
    const vMax = Math.min(1, maxOf(curves.flatMap((c) => c.values)) * 1.1) || 1;
    const yv = (v: number) => vTop + vH - (v / vMax) * vH;
    axes(g, x0, x1, vTop, vTop + vH, minIt, maxIt, 0, vMax, (v) => v.toFixed(2));
    curves.forEach((c, k) => {
      line(
        g,
        val.map((v, i) => [xOf(v.iter), yv(c.values[i]!)]),
        c.color,
        2,
      );
      g.fillStyle = c.color;
      for (let i = 0; i < val.length; i++) g.fillRect(xOf(val[i]!.iter) - 2, yv(c.values[i]!) - 2, 5, 5);
      // Bottom right: AP curves rise towards the top right, where a legend would sit on them.
      g.fillText(`${c.name} ${c.values.at(-1)!.toFixed(3)}`, x1 - 210, vTop + vH - 10 - 18 * (curves.length - 1 - k));
    });
    let best = 0;
    val.forEach((v, i) => {
      if (v.val_metric > val[best]!.val_metric) best = i;
    });
    g.fillStyle = '#000';
    g.fillText(`best ${val[best]!.val_metric.toFixed(3)} at ${val[best]!.iter}${wider ? ' (mean of the three)' : ''}`, x0 + 10, vTop + 16);
  }
  g.fillStyle = '#000';
  g.fillText('iteration', (x0 + x1) / 2 - 30, H - 8);
  return svgToPng(g.toSvg());
}

function maxOf(values: number[]): number {
  let m = -Infinity;
  for (const v of values) if (Number.isFinite(v) && v > m) m = v;
  return m;
}

type Ctx = SvgContext;

function line(g: Ctx, pts: number[][], color: string, width: number): void {
  g.strokeStyle = color;
  g.lineWidth = width;
  g.beginPath();
  pts.forEach(([x, y], i) => (i === 0 ? g.moveTo(x!, y!) : g.lineTo(x!, y!)));
  g.stroke();
}

function axes(
  g: Ctx,
  x0: number,
  x1: number,
  top: number,
  bottom: number,
  xMin: number,
  xMax: number,
  yMin: number,
  yMax: number,
  fmt: (v: number) => string,
): void {
  g.strokeStyle = '#ccc';
  g.lineWidth = 1;
  g.fillStyle = '#333';
  g.font = `12px ${SVG_FONT}`;
  for (let k = 0; k <= 4; k++) {
    const y = bottom - (k / 4) * (bottom - top);
    g.beginPath();
    g.moveTo(x0, y);
    g.lineTo(x1, y);
    g.stroke();
    g.fillText(fmt(yMin + (k / 4) * (yMax - yMin)), 4, y + 4);
  }
  // Fewer ticks than iterations on short logs, so no label repeats.
  const ticks = Math.max(1, Math.min(5, Math.round(xMax - xMin)));
  // Centred under their ticks; the last one ends at the frame's right edge so it is not cut off.
  for (let k = 0; k <= ticks; k++) {
    const x = x0 + (k / ticks) * (x1 - x0);
    g.textAlign = k === 0 ? 'left' : k === ticks ? 'right' : 'center';
    g.fillText(String(Math.round(xMin + (k / ticks) * (xMax - xMin))), x, bottom + 14);
  }
  g.textAlign = 'left';
  g.strokeStyle = '#000';
  g.strokeRect(x0, top, x1 - x0, bottom - top);
  g.font = `14px ${SVG_FONT}`;
}

export const command: Command = {
  name: 'plot-log',
  usage,
  async run(argv) {
    const { values, positionals } = parseCli(argv, {
      out: { type: 'string', short: 'o' },
      smooth: { type: 'string' },
      width: { type: 'string' },
    });
    if (positionals.length !== 1) throw new UsageError('expected one LOG argument (a log.jsonl or a training run folder)');
    let path = positionals[0]!;
    let isDir = false;
    try {
      isDir = statSync(path).isDirectory();
    } catch {
      throw new ExtdError(`training log not found: ${path}`);
    }
    if (isDir) path = join(path, 'log.jsonl');
    const { points, val } = readLogLines(path);
    const smooth = numberFlag(
      values.smooth,
      '--smooth',
      Math.max(1, Math.round(points.length / 50)),
      (v) => Number.isInteger(v) && v >= 1,
      'a positive integer',
    );
    const width = numberFlag(values.width, '--width', 1000, (v) => Number.isInteger(v) && v >= 300 && v <= 8000, 'an integer from 300 to 8000');
    const out = values.out ?? join(path, '..', 'loss.png');
    const vals = val.length > 0 ? `, ${val.length} validations` : '';
    writeFileAtomic(out, await plotTrainingLog(points, { smooth, width, val, title: `${path} (${points.length} iterations${vals})` }));
    console.log(out);
    return 0;
  },
};
