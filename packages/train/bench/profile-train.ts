/**
 * Where a training step's time goes: runs a few EXTD training steps
 * (synthetic input, as bench/train.ts) under libtorch's operator profiler and
 * prints the operators by total self time, forward and backward.
 *
 *   node --conditions=extd-source --import tsx bench/profile-train.ts [--variant extd-fpn-32-prelu] [--size 320] [--batch 4] [--steps 2] [--threads 2]
 *
 * A development tool; the trace is written to a temporary file and summed here.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadTorch } from '../src/train/torch.js';
import { syntheticStep } from './synthetic-step.js';

const { values } = parseArgs({
  options: {
    variant: { type: 'string', default: 'extd-fpn-32-prelu' },
    size: { type: 'string', default: '320' },
    batch: { type: 'string', default: '4' },
    steps: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
  },
});
const torch = loadTorch();
torch.setNumThreads(Number(values.threads));
const S = Number(values.size);
const B = Number(values.batch);
const { step } = syntheticStep(torch, values.variant!, B, S);
step(); // warm-up

const dir = mkdtempSync(join(tmpdir(), 'extd-profile-'));
const trace = join(dir, 'trace.json');
const steps = Number(values.steps);
const t0 = performance.now();
torch.profileStart(trace);
for (let i = 0; i < steps; i++) step();
torch.profileStop();
const wall = (performance.now() - t0) / steps;

interface Event {
  name: string;
  ph: string;
  ts: number;
  dur?: number;
  tid: number;
}
const events: Event[] = JSON.parse(readFileSync(trace, 'utf8'));
rmSync(dir, { recursive: true, force: true });
// Self time: an event's duration minus that of the events nested directly in it (same thread).
const complete = events.filter((e) => e.ph === 'X' && e.dur !== undefined).sort((a, b) => a.tid - b.tid || a.ts - b.ts || b.dur! - a.dur!);
const self = new Map<string, { total: number; self: number; calls: number }>();
const stack: { e: Event; child: number }[] = [];
const close = (upTo: number, tid: number) => {
  while (stack.length && (stack.at(-1)!.e.tid !== tid || stack.at(-1)!.e.ts + stack.at(-1)!.e.dur! <= upTo)) {
    const { e, child } = stack.pop()!;
    const s = self.get(e.name) ?? { total: 0, self: 0, calls: 0 };
    s.total += e.dur!;
    s.self += e.dur! - child;
    s.calls++;
    self.set(e.name, s);
    if (stack.length && stack.at(-1)!.e.tid === e.tid) stack.at(-1)!.child += e.dur!;
  }
};
for (const e of complete) {
  close(e.ts, e.tid);
  stack.push({ e, child: 0 });
}
close(Infinity, -1);
const rows = [...self.entries()].sort((a, b) => b[1].self - a[1].self);
const sumSelf = rows.reduce((s, [, v]) => s + v.self, 0);
console.log(
  `${values.variant} ${S}x${S} batch ${B}, ${torch.getNumThreads()} threads: ${(wall / 1000).toFixed(2)} s per profiled step; operator self time ${(sumSelf / steps / 1e6).toFixed(2)} s per step`,
);
console.log('self ms/step  total ms/step  calls/step  operator');
for (const [name, v] of rows.slice(0, 30)) {
  console.log(
    `${(v.self / steps / 1000).toFixed(1).padStart(12)}  ${(v.total / steps / 1000).toFixed(1).padStart(13)}  ${(v.calls / steps).toFixed(0).padStart(10)}  ${name}`,
  );
}
