/**
 * A stingy keyed work queue, after client-go's workqueue:
 * - a key is handed to at most one worker at a time (`processing`);
 * - adding a key that is queued is a no-op; adding a key that is being processed marks it dirty,
 *   and it is queued once more when the worker calls `done` — any number of adds merge into one
 *   rerun;
 * - `addAfter` keeps one pending deadline per key (the earliest wins) in a min-heap served by a
 *   single unref'd timer, so 10,000 delayed keys cost one timer, not 10,000;
 * - `addRateLimited` delays by the rate limiter; `forget` resets a key's backoff.
 */
import { defaultRateLimiter, type RateLimiter } from "./rate-limiter.js";

interface Delayed {
  at: number;
  key: string;
}

class MinHeap {
  private readonly items: Delayed[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): Delayed | undefined {
    return this.items[0];
  }

  push(item: Delayed): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((a[p] as Delayed).at <= item.at) break;
      a[i] = a[p] as Delayed;
      i = p;
    }
    a[i] = item;
  }

  pop(): Delayed | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || !last) return top;
    a[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && (a[l] as Delayed).at < (a[m] as Delayed).at) m = l;
      if (r < a.length && (a[r] as Delayed).at < (a[m] as Delayed).at) m = r;
      if (m === i) break;
      const t = a[i] as Delayed;
      a[i] = a[m] as Delayed;
      a[m] = t;
      i = m;
    }
    return top;
  }
}

export interface QueueClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: QueueClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface QueueHooks {
  /** Called with the time a key waited between being queued and being handed out. */
  onGet?(key: string, waitedMs: number): void;
  onDepth?(depth: number): void;
  onRetry?(key: string): void;
}

export class WorkQueue {
  private fifo: string[] = [];
  private head = 0;
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly queuedAt = new Map<string, number>();
  private readonly pendingAt = new Map<string, number>();
  private readonly heap = new MinHeap();
  private timer: unknown;
  private timerAt = Number.POSITIVE_INFINITY;
  private waiters: ((key: string | undefined) => void)[] = [];
  private drainWaiters: (() => void)[] = [];
  private shuttingDown = false;

  constructor(
    private readonly limiter: RateLimiter = defaultRateLimiter(),
    private readonly clock: QueueClock = realClock,
    private readonly hooks: QueueHooks = {},
  ) {}

  /** Keys waiting to be handed out (not counting delayed or in-process keys). */
  len(): number {
    return this.fifo.length - this.head;
  }

  /** Keys being processed right now. */
  inProcess(): number {
    return this.processing.size;
  }

  /** Keys waiting for a delay to expire. */
  delayed(): number {
    return this.pendingAt.size;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.enqueue(key);
  }

  private enqueue(key: string): void {
    this.queuedAt.set(key, this.clock.now());
    const waiter = this.waiters.shift();
    if (waiter) {
      this.hand(key, waiter);
      return;
    }
    this.fifo.push(key);
    this.hooks.onDepth?.(this.len());
  }

  private hand(key: string, to: (key: string) => void): void {
    this.dirty.delete(key);
    this.processing.add(key);
    const at = this.queuedAt.get(key);
    this.queuedAt.delete(key);
    if (at !== undefined) this.hooks.onGet?.(key, this.clock.now() - at);
    to(key);
  }

  /** The next key, or undefined once the queue shuts down (or the signal aborts). */
  get(signal?: AbortSignal): Promise<string | undefined> {
    if (this.head < this.fifo.length) {
      const key = this.fifo[this.head++] as string;
      if (this.head > 1024 && this.head * 2 > this.fifo.length) {
        this.fifo = this.fifo.slice(this.head);
        this.head = 0;
      }
      this.hooks.onDepth?.(this.len());
      return new Promise((resolve) => this.hand(key, resolve));
    }
    if (this.shuttingDown || signal?.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiter = (key: string | undefined) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(key);
      };
      const onAbort = () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(undefined);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** The worker finished with `key`: requeue it if it was added meanwhile. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) this.enqueue(key);
    else this.dirty.delete(key);
    if (this.processing.size === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + delayMs;
    const existing = this.pendingAt.get(key);
    if (existing !== undefined && existing <= at) return;
    this.pendingAt.set(key, at);
    this.heap.push({ at, key });
    this.arm();
  }

  addRateLimited(key: string): void {
    this.hooks.onRetry?.(key);
    this.addAfter(key, this.limiter.when(key));
  }

  forget(key: string): void {
    this.limiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.limiter.numRequeues(key);
  }

  private arm(): void {
    const top = this.heap.peek();
    if (!top || top.at >= this.timerAt) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timerAt = top.at;
    const handle = this.clock.setTimeout(() => this.fire(), Math.max(0, top.at - this.clock.now()));
    (handle as { unref?: () => void }).unref?.();
    this.timer = handle;
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = this.clock.now();
    for (let top = this.heap.peek(); top && top.at <= now; top = this.heap.peek()) {
      this.heap.pop();
      // Stale heap entries (superseded by an earlier deadline) are skipped.
      if (this.pendingAt.get(top.key) !== top.at) continue;
      this.pendingAt.delete(top.key);
      this.add(top.key);
    }
    this.arm();
  }

  /** Stop handing out keys; waiting `get` calls resolve undefined. */
  shutDown(): void {
    this.shuttingDown = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  /** Shut down and wait for keys being processed to be done. */
  async shutDownWithDrain(): Promise<void> {
    this.shutDown();
    if (this.processing.size === 0) return;
    await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }
}
