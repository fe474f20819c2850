/**
 * Volatile hosts: simulated hosts that switch off and on at random, as lab desktops do (their
 * users power them off, spot-like capacity is taken back, ageing hardware trips).
 *
 * The model, per host: an alternating renewal process. Up spans are drawn from a Weibull
 * distribution with mean `mtbfSeconds` and shape `shape` (1, the default, is the exponential:
 * memoryless, a constant failure rate; below 1 failures cluster after a restart, above 1 they come
 * with age). Down spans (the time until someone switches it on again) are exponential with mean
 * `mttrSeconds`. MTBF here is mean up time per failure, which is what the host reliability
 * accounting measures (src/reconcilers/host/reliability.ts: upSeconds / failures).
 *
 * Pure and seeded: `outageSchedule` gives the same outages for the same spec, seed and horizon,
 * and each host draws from its own stream (seed and host name), so adding a host does not change
 * the others. `VolatileHosts` plays a schedule onto a Simulator with timers of the given clock
 * (setTimeout by default: vitest's fake timers time-warp it), powering hosts off (crashHost: every
 * domain stops, the host stops answering) and on again (restoreHost: back like a rebooted
 * hypervisor).
 */
import { prng, type Simulator } from "./world.js";

export interface VolatileHostSpec {
  /** Mean up time between failures, seconds. */
  mtbfSeconds: number;
  /** Mean time switched off before it comes back, seconds. */
  mttrSeconds: number;
  /** Weibull shape k of the up spans (default 1: exponential). */
  shape?: number;
}

/** One outage, in seconds from the schedule's start: off at downAt, on again at upAt. */
export interface Outage {
  downAt: number;
  upAt: number;
}

/** Lanczos approximation of Γ(x) for x > 0 (g = 7, 9 terms; ~1e-15 relative). */
export function gamma(x: number): number {
  if (x < 0.5) return Math.PI / (Math.sin(Math.PI * x) * gamma(1 - x));
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  const y = x - 1;
  let a = c[0] as number;
  const t = y + 7.5;
  for (let i = 1; i < 9; i++) a += (c[i] as number) / (y + i);
  return Math.sqrt(2 * Math.PI) * t ** (y + 0.5) * Math.exp(-t) * a;
}

/** A Weibull draw with the given mean and shape, from a uniform draw in [0, 1). */
export function weibull(u: number, mean: number, shape = 1): number {
  const scale = mean / gamma(1 + 1 / shape);
  return scale * (-Math.log(1 - u)) ** (1 / shape);
}

/** A stream seed from the schedule seed and the host name (FNV-1a over both). */
export function hostSeed(seed: number, host: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < host.length; i++) h = Math.imul(h ^ host.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function checkSpec(host: string, s: VolatileHostSpec): void {
  const bad = (field: string, v: unknown) => {
    throw new Error(`volatile host ${host}: ${field} ${String(v)} is not a positive number`);
  };
  if (!(s.mtbfSeconds > 0) || !Number.isFinite(s.mtbfSeconds)) bad("mtbfSeconds", s.mtbfSeconds);
  if (!(s.mttrSeconds > 0) || !Number.isFinite(s.mttrSeconds)) bad("mttrSeconds", s.mttrSeconds);
  if (s.shape !== undefined && (!(s.shape > 0) || !Number.isFinite(s.shape))) bad("shape", s.shape);
}

/**
 * A host's outages from time 0 (it starts up) until `horizonSeconds`: every outage that begins
 * before the horizon (the last may end after it).
 */
export function outageSchedule(
  host: string,
  spec: VolatileHostSpec,
  seed: number,
  horizonSeconds: number,
): Outage[] {
  checkSpec(host, spec);
  const random = prng(hostSeed(seed, host));
  const out: Outage[] = [];
  let t = 0;
  for (;;) {
    const downAt = t + weibull(random(), spec.mtbfSeconds, spec.shape ?? 1);
    if (downAt >= horizonSeconds) return out;
    const upAt = downAt + weibull(random(), spec.mttrSeconds, 1);
    out.push({ downAt, upAt });
    t = upAt;
  }
}

export interface VolatileClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: VolatileClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * Plays each host's outage schedule onto the simulator from `start()` on: off at each downAt, on
 * at each upAt (times relative to start, on the clock's timers). `log` records what it did.
 */
export class VolatileHosts {
  readonly schedules: Map<string, Outage[]>;
  readonly log: { host: string; at: number; power: "off" | "on" }[] = [];
  private readonly timers = new Set<unknown>();
  private readonly clock: VolatileClock;

  constructor(
    private readonly sim: Simulator,
    hosts: Record<string, VolatileHostSpec>,
    opts: { seed: number; horizonSeconds: number; clock?: VolatileClock },
  ) {
    this.clock = opts.clock ?? realClock;
    this.schedules = new Map(
      Object.entries(hosts).map(([h, s]) => [h, outageSchedule(h, s, opts.seed, opts.horizonSeconds)]),
    );
  }

  start(): void {
    const t0 = this.clock.now();
    for (const [host, outages] of this.schedules) {
      for (const o of outages) {
        this.at(t0 + o.downAt * 1000, () => {
          this.log.push({ host, at: this.clock.now(), power: "off" });
          this.sim.crashHost(host);
        });
        this.at(t0 + o.upAt * 1000, () => {
          this.log.push({ host, at: this.clock.now(), power: "on" });
          this.sim.restoreHost(host);
        });
      }
    }
  }

  stop(): void {
    for (const t of this.timers) this.clock.clearTimeout(t);
    this.timers.clear();
  }

  private at(whenMs: number, fn: () => void): void {
    const handle = this.clock.setTimeout(
      () => {
        this.timers.delete(handle);
        fn();
      },
      Math.max(0, Math.round(whenMs - this.clock.now())),
    );
    this.timers.add(handle);
  }
}
