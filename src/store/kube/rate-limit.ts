/**
 * Client-side rate limit of the requests to the API server: a token bucket of `burst` tokens
 * refilled at `qps` per second, as client-go's QPS/Burst (flowcontrol's token bucket). Each
 * request reserves a token at once and waits until the token exists, so waiters are served in
 * arrival order and a burst of 10,000 status writes is spread at `qps` instead of landing at once
 * on the API server (whose priority-and-fairness would reject part of them with 429s).
 *
 * Hand-written, about twenty lines: the npm rate limiters (bottleneck, limiter) are unmaintained
 * for years, and the semantics wanted are exactly golang.org/x/time/rate's reservations.
 */
export interface RateLimit {
  /** Requests per second, sustained; 0 or less: no limit. */
  qps: number;
  /** Requests that may go at once after a quiet period. */
  burst: number;
}

/** client-go's defaults are 5/10, sized for kubectl; a controller of 10,000 VMs needs more. */
export const DEFAULT_KUBE_RATE_LIMIT: RateLimit = { qps: 200, burst: 400 };

export class TokenBucket {
  private tokens: number;
  private last: number;
  /** Requests that had to wait, and for how long in all (ms). */
  waited = 0;
  waitedMs = 0;

  constructor(
    readonly limit: RateLimit,
    private readonly now: () => number = () => performance.now(),
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    if (!(limit.burst >= 1) && limit.qps > 0) throw new Error(`burst ${limit.burst}: at least 1`);
    this.tokens = limit.burst;
    this.last = this.now();
  }

  /** Resolves when this request may go. */
  take(): Promise<void> {
    const { qps, burst } = this.limit;
    if (!(qps > 0)) return Promise.resolve();
    const t = this.now();
    this.tokens = Math.min(burst, this.tokens + ((t - this.last) / 1000) * qps);
    this.last = t;
    this.tokens -= 1;
    if (this.tokens >= 0) return Promise.resolve();
    const ms = (-this.tokens / qps) * 1000;
    this.waited++;
    this.waitedMs += ms;
    return this.sleep(ms);
  }
}
