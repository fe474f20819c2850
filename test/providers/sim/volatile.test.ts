/**
 * The volatile-host model: seeded outage schedules whose up spans have the MTBF asked for (and
 * down spans the MTTR), reproducible by seed, and played onto the simulator on a fake clock.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { Simulator } from "../../../src/providers/sim/index.js";
import { gamma, outageSchedule, VolatileHosts, weibull } from "../../../src/providers/sim/volatile.js";

afterEach(() => {
  vi.useRealTimers();
});

/** Up spans and down spans of a schedule (the first up span starts at 0). */
function spans(outages: { downAt: number; upAt: number }[]): { up: number[]; down: number[] } {
  const up: number[] = [];
  const down: number[] = [];
  let t = 0;
  for (const o of outages) {
    up.push(o.downAt - t);
    down.push(o.upAt - o.downAt);
    t = o.upAt;
  }
  return { up, down };
}
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

describe("gamma and weibull", () => {
  it("gamma matches known values", () => {
    expect(gamma(1)).toBeCloseTo(1, 12);
    expect(gamma(5)).toBeCloseTo(24, 10);
    expect(gamma(0.5)).toBeCloseTo(Math.sqrt(Math.PI), 12);
    expect(gamma(1.5)).toBeCloseTo(Math.sqrt(Math.PI) / 2, 12);
  });
  it("shape 1 is the exponential: the inverse CDF -mean·ln(1-u)", () => {
    for (const u of [0, 0.1, 0.5, 0.9, 0.999])
      expect(weibull(u, 3600)).toBeCloseTo(-3600 * Math.log(1 - u), 9);
  });
  it("the Weibull median is scale·ln2^(1/k) with scale = mean/Γ(1+1/k)", () => {
    const k = 2;
    const scale = 100 / (Math.sqrt(Math.PI) / 2); // Γ(1.5) = √π/2
    expect(weibull(0.5, 100, k)).toBeCloseTo(scale * Math.sqrt(Math.LN2), 9);
  });
});

describe("outageSchedule", () => {
  const horizon = 10_000 * 7200; // ~10,000 failures at MTBF 2 h

  it("exponential up spans have mean MTBF and coefficient of variation 1; down spans mean MTTR", () => {
    const s = spans(outageSchedule("desk-1", { mtbfSeconds: 7200, mttrSeconds: 1800 }, 42, horizon));
    expect(s.up.length).toBeGreaterThan(7000);
    // Standard error of the mean of n exponentials is mean/√n: ~1% here; 4% is > 3 sigma.
    expect(Math.abs(mean(s.up) / 7200 - 1)).toBeLessThan(0.04);
    expect(Math.abs(mean(s.down) / 1800 - 1)).toBeLessThan(0.04);
    const m = mean(s.up);
    const sd = Math.sqrt(mean(s.up.map((x) => (x - m) ** 2)));
    expect(Math.abs(sd / m - 1)).toBeLessThan(0.06);
    // Memoryless: about e^-1 of the spans outlast the mean.
    expect(Math.abs(s.up.filter((x) => x > 7200).length / s.up.length - Math.exp(-1))).toBeLessThan(0.02);
  });

  it("a Weibull shape keeps the mean and changes the spread (k=2: CV ≈ 0.523)", () => {
    const s = spans(outageSchedule("desk-2", { mtbfSeconds: 7200, mttrSeconds: 600, shape: 2 }, 7, horizon));
    const m = mean(s.up);
    expect(Math.abs(m / 7200 - 1)).toBeLessThan(0.03);
    const cv = Math.sqrt(mean(s.up.map((x) => (x - m) ** 2))) / m;
    expect(cv).toBeGreaterThan(0.48);
    expect(cv).toBeLessThan(0.57);
  });

  it("is reproducible by seed and host; another seed or host gives another schedule", () => {
    const spec = { mtbfSeconds: 3600, mttrSeconds: 600 };
    const a = outageSchedule("h1", spec, 5, 30 * 86_400);
    expect(outageSchedule("h1", spec, 5, 30 * 86_400)).toEqual(a);
    expect(outageSchedule("h1", spec, 6, 30 * 86_400)).not.toEqual(a);
    expect(outageSchedule("h2", spec, 5, 30 * 86_400)).not.toEqual(a);
    // A shorter horizon is a prefix: the draws do not depend on it.
    const short = outageSchedule("h1", spec, 5, 10 * 86_400);
    expect(a.slice(0, short.length)).toEqual(short);
    expect(short.every((o) => o.downAt < 10 * 86_400)).toBe(true);
  });

  it("outages are ordered and do not overlap", () => {
    const o = outageSchedule("h", { mtbfSeconds: 600, mttrSeconds: 600 }, 1, 86_400);
    let t = 0;
    for (const x of o) {
      expect(x.downAt).toBeGreaterThan(t);
      expect(x.upAt).toBeGreaterThan(x.downAt);
      t = x.upAt;
    }
  });

  it("rejects a bad spec naming the host and field", () => {
    expect(() => outageSchedule("lab-3", { mtbfSeconds: 0, mttrSeconds: 60 }, 1, 100)).toThrow(
      /lab-3: mtbfSeconds 0/,
    );
    expect(() => outageSchedule("lab-3", { mtbfSeconds: 60, mttrSeconds: Number.NaN }, 1, 100)).toThrow(
      /lab-3: mttrSeconds NaN/,
    );
    expect(() => outageSchedule("lab-3", { mtbfSeconds: 60, mttrSeconds: 60, shape: -1 }, 1, 100)).toThrow(
      /lab-3: shape -1/,
    );
  });
});

describe("VolatileHosts on the simulator", () => {
  it("powers hosts off and on at the scheduled times of a fake clock", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-12-01T00:00:00Z") });
    const sim = new Simulator({ seed: 1, latency: "none" });
    sim.addHost("a", { cpus: 4, memoryBytes: 8 * 1024 ** 3 });
    sim.addHost("b", { cpus: 4, memoryBytes: 8 * 1024 ** 3 });
    const v = new VolatileHosts(
      sim,
      { a: { mtbfSeconds: 3600, mttrSeconds: 300 }, b: { mtbfSeconds: 7200, mttrSeconds: 600 } },
      { seed: 3, horizonSeconds: 86_400 },
    );
    const t0 = Date.now();
    v.start();
    const a = v.schedules.get("a") ?? [];
    expect(a.length).toBeGreaterThan(5);
    const first = a[0] as { downAt: number; upAt: number };
    await vi.advanceTimersByTimeAsync(first.downAt * 1000 - 1);
    expect(sim.powerStatus("a")).toBe("on");
    await vi.advanceTimersByTimeAsync(2);
    expect(sim.powerStatus("a")).toBe("off");
    await vi.advanceTimersByTimeAsync((first.upAt - first.downAt) * 1000);
    expect(sim.powerStatus("a")).toBe("on");
    await vi.advanceTimersByTimeAsync(2 * 86_400_000);
    v.stop();
    // Every scheduled transition happened, at its time (to the ms), in order per host.
    for (const [host, outages] of v.schedules) {
      const got = v.log.filter((e) => e.host === host);
      const want = outages.flatMap((o) => [
        { host, at: t0 + Math.round(o.downAt * 1000), power: "off" },
        { host, at: t0 + Math.round(o.upAt * 1000), power: "on" },
      ]);
      expect(got.map((e) => e.power)).toEqual(want.map((e) => e.power));
      for (let i = 0; i < got.length; i++)
        expect(Math.abs((got[i]?.at ?? 0) - (want[i]?.at ?? 0))).toBeLessThanOrEqual(1);
    }
  });
});
