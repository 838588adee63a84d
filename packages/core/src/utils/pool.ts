/**
 * A few buffers kept between calls for reuse, found by size. Fresh memory
 * costs page faults on first touch (about 6 us per 4 KB page on the
 * development VM): a 640x480 input is 3.7 MB. An item is in the pool or
 * with one caller, never both, so calls in flight never share one.
 */
export class ReusePool<T> {
  private readonly items: T[] = [];

  /**
   * @param sizeOf what `take` matches on (e.g. a buffer's length).
   * @param max items kept; the oldest goes first. Default 4.
   */
  constructor(
    private readonly sizeOf: (item: T) => number,
    private readonly max = 4,
  ) {}

  /** An item of this size, removed from the pool; undefined when there is none. */
  take(size: number): T | undefined {
    const i = this.items.findIndex((x) => this.sizeOf(x) === size);
    return i >= 0 ? this.items.splice(i, 1)[0] : undefined;
  }

  /** Keep `item` for a later `take` (the caller no longer reads or writes it). */
  put(item: T): void {
    this.items.push(item);
    if (this.items.length > this.max) this.items.shift();
  }
}
