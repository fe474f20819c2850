/**
 * Rate limiters for retries, after client-go's DefaultControllerRateLimiter: the longer of a
 * per-key exponential backoff (with jitter) and a global token bucket, so one broken object backs
 * off on its own and a storm of failures cannot hammer the hypervisors. Clock-injected.
 */
export interface RateLimiter {
  /** Delay in ms before the key may be retried; counts a requeue. */
  when(key: string): number;
  /** Success: reset the key's backoff. */
  forget(key: string): void;
  numRequeues(key: string): number;
}

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  factor: number;
  /** Up to this fraction of the delay is added at random (0 = none). */
  jitter: number;
  random?: () => number;
}

export class ExponentialBackoffLimiter implements RateLimiter {
  private readonly failures = new Map<string, number>();
  private readonly random: () => number;

  constructor(private readonly opts: BackoffOptions) {
    this.random = opts.random ?? Math.random;
  }

  when(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const raw = Math.min(this.opts.maxMs, this.opts.baseMs * this.opts.factor ** n);
    return Math.min(this.opts.maxMs, raw * (1 + this.opts.jitter * this.random()));
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }
}

/** A token bucket: `qps` tokens a second, at most `burst` saved; a retry takes one token. */
export class TokenBucketLimiter implements RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly qps: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  when(_key: string): number {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.qps);
    this.last = t;
    this.tokens -= 1;
    // A negative balance is a reservation: wait until it is paid back.
    return this.tokens >= 0 ? 0 : (-this.tokens / this.qps) * 1000;
  }

  forget(_key: string): void {}

  numRequeues(_key: string): number {
    return 0;
  }
}

export class MaxOfLimiter implements RateLimiter {
  private readonly limiters: RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.limiters = limiters;
  }

  when(key: string): number {
    return Math.max(...this.limiters.map((l) => l.when(key)));
  }

  forget(key: string): void {
    for (const l of this.limiters) l.forget(key);
  }

  numRequeues(key: string): number {
    return Math.max(...this.limiters.map((l) => l.numRequeues(key)));
  }
}

/** 50 ms doubling to 5 min per key, with 20 % jitter; 20 retries/s overall with a burst of 200. */
export function defaultRateLimiter(now: () => number = Date.now): RateLimiter {
  return new MaxOfLimiter(
    new ExponentialBackoffLimiter({ baseMs: 50, maxMs: 300_000, factor: 2, jitter: 0.2 }),
    new TokenBucketLimiter(20, 200, now),
  );
}
