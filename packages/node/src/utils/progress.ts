/**
 * One updating progress line on stderr: `label 120/646 (18.6%) 3.2 img/s ETA 2m44s`.
 * On a terminal it rewrites itself in place; otherwise (CI logs, pipes) it
 * prints a line at most every `logEverySeconds`, so logs stay readable.
 */
export interface ProgressOptions {
  label: string;
  total: number;
  /** Unit shown in the rate, e.g. 'img' or 'it'. */
  unit: string;
  /** Minimum seconds between lines when stderr is not a terminal. */
  logEverySeconds: number;
  stream: NodeJS.WriteStream;
}

export const PROGRESS_DEFAULTS: Omit<ProgressOptions, 'label' | 'total'> = { unit: 'img', logEverySeconds: 10, stream: process.stderr };

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600),
    m = Math.floor((s % 3600) / 60),
    r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export class Progress {
  private readonly opts: ProgressOptions;
  private readonly start = performance.now();
  private lastLog = 0;
  private done = 0;
  /** Items counted from where a resumed job started, so the rate reflects this run's work only. */
  private base = 0;

  constructor(options: Pick<ProgressOptions, 'label' | 'total'> & Partial<ProgressOptions>) {
    this.opts = { ...PROGRESS_DEFAULTS, ...options };
  }

  /** Items already finished before this run (resume), not counted in the rate. */
  skip(n: number): void {
    this.done += n;
    this.base += n;
  }

  tick(n = 1, extra = ''): void {
    this.done += n;
    const now = performance.now();
    const tty = this.opts.stream.isTTY;
    const finished = this.done >= this.opts.total;
    if (!tty && !finished && now - this.lastLog < this.opts.logEverySeconds * 1000) return;
    this.lastLog = now;
    const elapsed = (now - this.start) / 1000;
    const rate = (this.done - this.base) / elapsed;
    const eta = (this.opts.total - this.done) / rate;
    const pct = this.opts.total > 0 ? ((100 * this.done) / this.opts.total).toFixed(1) : '100.0';
    const line = `${this.opts.label} ${this.done}/${this.opts.total} (${pct}%) ${rate.toFixed(2)} ${this.opts.unit}/s ETA ${formatDuration(eta)}${extra ? ' ' + extra : ''}`;
    if (tty) this.opts.stream.write(`\r\x1b[K${line}${finished ? '\n' : ''}`);
    else this.opts.stream.write(line + '\n');
  }
}
