/** The client-side token bucket, on a clock of the test's own: burst, sustained rate, order, off. */
import { describe, expect, it } from "vitest";
import { TokenBucket } from "../../../src/store/kube/rate-limit.js";

function clocked(qps: number, burst: number) {
  let t = 0;
  const sleeps: number[] = [];
  const b = new TokenBucket(
    { qps, burst },
    () => t,
    async (ms) => {
      sleeps.push(ms);
    },
  );
  return { b, sleeps, advance: (ms: number) => (t += ms) };
}

describe("TokenBucket", () => {
  it("lets a burst through at once, then spaces the rest at qps, in arrival order", async () => {
    const { b, sleeps } = clocked(10, 3);
    for (let i = 0; i < 8; i++) await b.take();
    // Three free, then the 4th waits 100 ms, the 5th 200 ms, ... (each reserved its own slot).
    expect(sleeps.map((s) => Math.round(s))).toEqual([100, 200, 300, 400, 500]);
    expect(b.waited).toBe(5);
  });

  it("refills with time, never above the burst", async () => {
    const { b, sleeps, advance } = clocked(10, 3);
    for (let i = 0; i < 3; i++) await b.take();
    advance(10_000);
    for (let i = 0; i < 3; i++) await b.take();
    expect(sleeps).toEqual([]);
    await b.take();
    expect(sleeps.map((s) => Math.round(s))).toEqual([100]);
  });

  it("qps 0 is no limit", async () => {
    const { b, sleeps } = clocked(0, 0);
    for (let i = 0; i < 1_000; i++) await b.take();
    expect(sleeps).toEqual([]);
  });

  it("refuses a burst below 1 with a limit set", () => {
    expect(() => new TokenBucket({ qps: 5, burst: 0 })).toThrow(/burst 0/);
  });
});
