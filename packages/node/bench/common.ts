/**
 * Helpers shared by the inference benchmarks (detect.ts, tradeoff.ts): the
 * photo their speed figures use, the WIDER val image lists, medians, the
 * machine's load and interleaved timing. Not a test.
 */
import { readdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';

/** The WIDER val photo (EVENT/NAME.jpg) timed at 640x480: a real crowd, so post-processing sees a realistic number of candidates. */
export const BENCH_PHOTO = '2--Demonstration/2_Demonstration_Demonstrators_2_307.jpg';

/** Median (the upper one of an even count) of a non-empty list. */
export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The 1, 5 and 15 minute load averages, e.g. "1.52 1.40 1.95". */
export const loadAverage = (): string =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

/** The JPEG images of a WIDER images folder as EVENT/NAME.jpg, sorted by event, then name. */
export function widerImageList(imagesDir: string): string[] {
  const all: string[] = [];
  for (const ev of readdirSync(imagesDir).sort()) for (const f of readdirSync(join(imagesDir, ev)).sort()) if (/\.jpe?g$/i.test(f)) all.push(`${ev}/${f}`);
  return all;
}

/** `n` of `all` spread evenly: index floor((i + 0.5) * all.length / n) for i = 0..n-1 (all of them when n >= all.length). */
export function spreadEvenly<T>(all: readonly T[], n: number): T[] {
  if (n >= all.length) return [...all];
  return Array.from({ length: n }, (_, i) => all[Math.floor(((i + 0.5) * all.length) / n)]!);
}

/**
 * Time `runs` calls of each of `calls` (ms per call, one list per entry),
 * interleaved in blocks of `block` calls, each block after one untimed call:
 * onnxruntime's pool threads spin for a while after a run (its default), so a
 * call right after another detector's would share the cores with them, a
 * cost no single-detector user pays. Interleaving lets all of them see the
 * machine's load alike.
 */
export async function timeInterleaved(calls: ReadonlyArray<() => Promise<unknown>>, runs: number, block = 3): Promise<number[][]> {
  const t: number[][] = calls.map(() => []);
  for (let i = 0; i < runs; i += block) {
    for (let k = 0; k < calls.length; k++) {
      await calls[k]!();
      for (let j = i; j < Math.min(runs, i + block); j++) {
        const t0 = performance.now();
        await calls[k]!();
        t[k]!.push(performance.now() - t0);
      }
    }
  }
  return t;
}
