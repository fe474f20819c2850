import { describe, expect, it } from "vitest";
import { type QueueClock, WorkQueue } from "../../src/controller/queue.js";
import {
  defaultRateLimiter,
  ExponentialBackoffLimiter,
  MaxOfLimiter,
  TokenBucketLimiter,
} from "../../src/controller/rate-limiter.js";

/** A manual clock: timers fire only when the test advances time. */
class FakeClock implements QueueClock {
  t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private next = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): number {
    const id = this.next++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== h);
  }
  advance(ms: number): void {
    this.t += ms;
    for (;;) {
      const due = this.timers.filter((x) => x.at <= this.t).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      due.fn();
    }
  }
}

const noWait = new ExponentialBackoffLimiter({ baseMs: 10, maxMs: 1000, factor: 2, jitter: 0 });

describe("WorkQueue", () => {
  it("hands keys out in order, each once", async () => {
    const q = new WorkQueue(noWait, new FakeClock());
    q.add("a");
    q.add("b");
    q.add("a");
    expect(q.len()).toBe(2);
    expect(await q.get()).toBe("a");
    expect(await q.get()).toBe("b");
    expect(q.len()).toBe(0);
  });

  it("never hands a key being processed to a second worker; adds during processing merge into one rerun", async () => {
    const q = new WorkQueue(noWait, new FakeClock());
    q.add("a");
    const k = await q.get();
    expect(k).toBe("a");
    q.add("a");
    q.add("a");
    q.add("a");
    expect(q.len()).toBe(0); // not handed out while processing
    q.done("a");
    expect(q.len()).toBe(1); // exactly one rerun
    expect(await q.get()).toBe("a");
    q.done("a");
    expect(q.len()).toBe(0);
  });

  it("wakes a waiting worker when a key arrives", async () => {
    const q = new WorkQueue(noWait, new FakeClock());
    const p = q.get();
    q.add("x");
    expect(await p).toBe("x");
  });

  it("addAfter keeps the earliest deadline per key", () => {
    const clock = new FakeClock();
    const q = new WorkQueue(noWait, clock);
    q.addAfter("a", 100);
    q.addAfter("a", 50);
    q.addAfter("a", 500);
    expect(q.delayed()).toBe(1);
    clock.advance(49);
    expect(q.len()).toBe(0);
    clock.advance(1);
    expect(q.len()).toBe(1);
    clock.advance(1000);
    expect(q.len()).toBe(1); // the superseded deadlines do not add it again
  });

  it("serves many delayed keys in deadline order from one timer", async () => {
    const clock = new FakeClock();
    const q = new WorkQueue(noWait, clock);
    const delays = [30, 10, 20, 50, 40];
    for (const [i, d] of delays.entries()) q.addAfter(`k${i}`, d);
    clock.advance(100);
    const got: string[] = [];
    while (q.len() > 0) got.push((await q.get()) as string);
    expect(got).toEqual(["k1", "k2", "k0", "k4", "k3"]);
  });

  it("addRateLimited backs off exponentially until forgotten", () => {
    const clock = new FakeClock();
    const q = new WorkQueue(noWait, clock);
    q.addRateLimited("a");
    q.addRateLimited("a");
    expect(q.numRequeues("a")).toBe(2);
    q.forget("a");
    expect(q.numRequeues("a")).toBe(0);
  });

  it("shutDown releases waiting workers; shutDownWithDrain waits for in-process keys", async () => {
    const q = new WorkQueue(noWait, new FakeClock());
    q.add("a");
    await q.get();
    const waiting = q.get();
    let drained = false;
    const drain = q.shutDownWithDrain().then(() => {
      drained = true;
    });
    expect(await waiting).toBeUndefined();
    await Promise.resolve();
    expect(drained).toBe(false);
    q.done("a");
    await drain;
    expect(drained).toBe(true);
    q.add("b");
    expect(q.len()).toBe(0);
  });
});

describe("rate limiters", () => {
  it("exponential backoff grows by the factor, capped", () => {
    const l = new ExponentialBackoffLimiter({ baseMs: 5, maxMs: 100, factor: 2, jitter: 0 });
    expect([1, 2, 3, 4, 5, 6, 7].map(() => l.when("k"))).toEqual([5, 10, 20, 40, 80, 100, 100]);
    expect(l.when("other")).toBe(5);
  });

  it("jitter stays within its fraction", () => {
    let r = 0;
    const l = new ExponentialBackoffLimiter({
      baseMs: 100,
      maxMs: 10_000,
      factor: 2,
      jitter: 0.5,
      random: () => r,
    });
    r = 0.999;
    const hi = l.when("a");
    expect(hi).toBeGreaterThanOrEqual(100);
    expect(hi).toBeLessThanOrEqual(150);
  });

  it("the token bucket allows a burst, then spaces retries at qps", () => {
    let t = 0;
    const b = new TokenBucketLimiter(10, 3, () => t);
    expect([b.when("a"), b.when("b"), b.when("c")]).toEqual([0, 0, 0]);
    expect(b.when("d")).toBeCloseTo(100);
    t = 1000;
    expect(b.when("e")).toBe(0);
  });

  it("max-of takes the longer delay", () => {
    let t = 0;
    const l = new MaxOfLimiter(
      new ExponentialBackoffLimiter({ baseMs: 1, maxMs: 1000, factor: 2, jitter: 0 }),
      new TokenBucketLimiter(1, 1, () => t),
    );
    expect(l.when("a")).toBe(1);
    expect(l.when("a")).toBe(1000);
    t = 0;
    expect(defaultRateLimiter(() => t).when("z")).toBeGreaterThan(0);
  });
});
