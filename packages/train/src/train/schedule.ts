/**
 * Learning-rate schedules: a pure function of the iteration, so a resumed run
 * gets the same lr by recomputing it (nothing to store).
 *
 * The paper's schedule is step decay: lr 1e-3, multiplied by 0.1 at 120k and
 * 180k of 240k iterations. Two optional extras for short runs: a linear
 * warm-up over the first iterations (from `warmupFactor` x lr to lr), which
 * lets a from-scratch BN network take a larger base lr without diverging in
 * the first steps, and a cosine decay to `minLr` at `iterations` instead of
 * the steps.
 */
import { ExtdError } from '@extd/core/utils/errors';

export interface ScheduleOptions {
  /** Base learning rate (after warm-up, before decay). */
  lr: number;
  /** 'step': multiply by gamma at each step; 'cosine': half-cosine from lr to minLr over the iterations after warm-up. */
  policy: 'step' | 'cosine';
  /** Iterations at which the step policy multiplies the lr by gamma. */
  steps: readonly number[];
  gamma: number;
  /** Total iterations (the end of the cosine). */
  iterations: number;
  /** Linear warm-up iterations; 0 disables it. */
  warmup: number;
  /** Warm-up starts at warmupFactor x lr. */
  warmupFactor: number;
  /** Final lr of the cosine policy. */
  minLr: number;
}

/** The paper's recipe (lr 1e-3, x0.1 at 120k and 180k of 240k), no warm-up. */
export const SCHEDULE_DEFAULTS: Readonly<ScheduleOptions> = Object.freeze({
  lr: 1e-3,
  policy: 'step',
  steps: Object.freeze([120_000, 180_000]),
  gamma: 0.1,
  iterations: 240_000,
  warmup: 0,
  warmupFactor: 0.01,
  minLr: 0,
});

/**
 * Checks a schedule's options; throws ExtdError naming the bad option by its
 * `extd train` flag (lr: --lr, policy: --lr-policy, minLr: --min-lr, ...), as
 * the trainer's config check does: that check is the one place training
 * options are validated, for the CLI and for library callers alike.
 */
export function validateSchedule(o: ScheduleOptions): void {
  if (!(o.lr > 0) || !Number.isFinite(o.lr)) throw new ExtdError(`--lr ${o.lr}: expected a positive number`);
  if (o.policy !== 'step' && o.policy !== 'cosine') throw new ExtdError(`--lr-policy ${o.policy}: expected step or cosine`);
  if (!o.steps.every((s) => Number.isInteger(s) && s > 0)) throw new ExtdError(`--steps ${o.steps.join(',')}: expected comma-separated positive integers`);
  if (!(o.gamma > 0)) throw new ExtdError(`--gamma ${o.gamma}: expected a positive number`);
  if (!Number.isInteger(o.iterations) || o.iterations < 1) throw new ExtdError(`--iterations ${o.iterations}: expected a positive integer`);
  if (!Number.isInteger(o.warmup) || o.warmup < 0) throw new ExtdError(`--warmup ${o.warmup}: expected a non-negative integer`);
  if (!(o.warmupFactor > 0 && o.warmupFactor <= 1)) throw new ExtdError(`--warmup-factor ${o.warmupFactor}: expected a number in (0, 1]`);
  if (!(o.minLr >= 0)) throw new ExtdError(`--min-lr ${o.minLr}: expected a non-negative number`);
}

/**
 * Learning rate for iteration `iter` (0-based: the lr used by the iter-th
 * optimiser step). Step policy: lr x gamma^(number of steps <= iter), as
 * PyTorch's MultiStepLR / the released code's adjust_learning_rate.
 */
export function learningRate(iter: number, options: Partial<ScheduleOptions> = {}): number {
  const o = { ...SCHEDULE_DEFAULTS, ...options };
  let lr: number;
  if (o.policy === 'cosine') {
    const span = Math.max(1, o.iterations - o.warmup);
    const t = Math.min(1, Math.max(0, (iter - o.warmup) / span));
    lr = o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * t));
  } else {
    let passed = 0;
    for (const s of o.steps) if (iter >= s) passed++;
    lr = o.lr * Math.pow(o.gamma, passed);
  }
  if (iter < o.warmup) {
    const alpha = iter / o.warmup;
    lr *= o.warmupFactor + (1 - o.warmupFactor) * alpha;
  }
  return lr;
}
