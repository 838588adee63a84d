/**
 * Seeded pseudo-random numbers for training: augmentation, shuffling, init.
 *
 * Generator: xoshiro128** (Blackman & Vigna), 128 bits of state in four
 * uint32 words. It is fast in plain JS (32-bit integer ops only), passes the
 * usual statistical batteries, and its whole state is four numbers, so a
 * checkpoint can store it and `--resume` continues the exact same stream.
 *
 * Streams are derived from keys rather than advanced: `Rng.fromKey(runSeed,
 * epoch, index)` gives the augmentation stream of one sample, so what a sample
 * looks like never depends on which worker processed it or in what order.
 *
 * Not cryptographic. No node: imports (usable in the browser).
 */
import { ExtdError } from './errors.js';

/** The four uint32 state words; a checkpoint stores exactly this. */
export type RngState = [number, number, number, number];

const TWO_POW_32 = 4294967296;

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  private constructor(s0: number, s1: number, s2: number, s3: number) {
    this.s0 = s0 >>> 0;
    this.s1 = s1 >>> 0;
    this.s2 = s2 >>> 0;
    this.s3 = s3 >>> 0;
    // The all-zero state is the one fixed point of xoshiro; never enter it.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 0x9e3779b9;
  }

  /** Generator for one integer seed (`--seed`). Same as `fromKey(seed)`. */
  static fromSeed(seed: number): Rng {
    return Rng.fromKey(seed);
  }

  /**
   * Generator for a tuple of integer keys, e.g. (runSeed, epoch, sampleIndex).
   * Different tuples give statistically independent streams; order matters.
   * Keys must be safe integers (negative allowed).
   */
  static fromKey(...keys: number[]): Rng {
    // Four independent hash lanes so the derived state has 128 bits of entropy,
    // not 32: two distinct keys collide only if all four lanes collide.
    let a = 0x243f6a88 ^ keys.length;
    let b = 0x85a308d3;
    let c = 0x13198a2e;
    let d = 0x03707344;
    for (const k of keys) {
      if (!Number.isSafeInteger(k)) {
        throw new ExtdError(`random seed key ${k} is not an integer in the safe range (|k| <= 2^53 - 1)`);
      }
      const lo = k >>> 0;
      const hi = Math.floor(k / TWO_POW_32) >>> 0;
      a = fmix32(a ^ lo) + hi;
      b = fmix32(b ^ Math.imul(lo, 0xcc9e2d51)) ^ hi;
      c = fmix32(c + lo) ^ Math.imul(hi, 0x1b873593);
      d = fmix32(d ^ lo ^ 0x5bd1e995) + Math.imul(hi, 0xe6546b64);
      // Cross the lanes so a key word affects all of them.
      const t = a;
      a = fmix32(a ^ d);
      d = fmix32(d + b);
      b = fmix32(b ^ c);
      c = fmix32(c + t);
    }
    const rng = new Rng(a, b, c, d);
    // Discard a few outputs: the first values of xoshiro are weak when the state has low entropy.
    for (let i = 0; i < 4; i++) rng.nextU32();
    return rng;
  }

  /** Restore a generator saved with `state()`. */
  static fromState(state: readonly number[]): Rng {
    if (!Array.isArray(state) || state.length !== 4 || !state.every((w) => Number.isInteger(w) && w >= 0 && w < TWO_POW_32)) {
      throw new ExtdError(`RNG state must be 4 integers in 0..2^32-1, got ${JSON.stringify(state)}`);
    }
    if (state.every((w) => w === 0)) throw new ExtdError('RNG state must not be all zeros');
    return new Rng(state[0]!, state[1]!, state[2]!, state[3]!);
  }

  /** Snapshot of the state (plain numbers, JSON-serialisable). */
  state(): RngState {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  clone(): Rng {
    return new Rng(this.s0, this.s1, this.s2, this.s3);
  }

  /**
   * A child stream derived from this one and optional keys; advances this
   * generator by two draws, so successive forks differ.
   */
  fork(...keys: number[]): Rng {
    return Rng.fromKey(this.nextU32(), this.nextU32(), ...keys);
  }

  /** Uniform integer in 0..2^32-1. */
  nextU32(): number {
    const s0 = this.s0;
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    this.s0 >>>= 0;
    this.s1 >>>= 0;
    this.s2 >>>= 0;
    this.s3 >>>= 0;
    return result;
  }

  /** Uniform in [0, 1), 32-bit resolution. */
  float(): number {
    return this.nextU32() / TWO_POW_32;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Uniform integer in 0..n-1 (unbiased), n a positive integer <= 2^32. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > TWO_POW_32) {
      throw new Error(`Rng.int: n must be an integer in 1..2^32, got ${n}`);
    }
    // Rejection sampling: discard the top partial block of 2^32 so every residue is equally likely.
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** True with probability p. */
  bool(p = 0.5): boolean {
    return this.float() < p;
  }

  /** A uniformly chosen element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick: empty array');
    return items[this.int(items.length)]!;
  }

  /** Shuffle in place (Fisher-Yates) and return the same array. */
  shuffle<T, A extends { length: number; [i: number]: T }>(items: A): A {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = items[i]!;
      items[i] = items[j]!;
      items[j] = t;
    }
    return items;
  }

  /** A uniformly random permutation of 0..n-1. */
  permutation(n: number): Uint32Array {
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    return this.shuffle<number, Uint32Array>(p);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** MurmurHash3's 32-bit finaliser: a bijection with full avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
