/**
 * The miss-counting and fencing-evidence rule (heartbeat.ts) as tables: a timeline of beats in
 * monotonic time, with the controller's own stalls and the network-level probe's answer, and
 * what the rule must conclude after each. Threshold 3, 1 s beats unless a row says otherwise.
 */
import { describe, expect, it } from "vitest";
import {
  type Beat,
  type BeatLedger,
  beatWindowMs,
  type HeartbeatConfig,
  type HeartbeatVerdict,
  judgeHeartbeat,
  MANAGEMENT_DOWN_FENCE_AFTER_MS,
  type NetworkEvidence,
  newLedger,
  recordBeat,
} from "../../../src/reconcilers/host/heartbeat.js";

const CFG: HeartbeatConfig = { threshold: 3, intervalMs: 1000, probeable: true };

/** One beat of a timeline: concluded `dt` ms after the previous one; took `took` ms itself. */
interface Step {
  dt: number;
  ok?: boolean;
  /** Controller stall (ms) within those dt ms. */
  stall?: number;
  net?: NetworkEvidence;
  took?: number;
}
const ok = (dt = 1000, stall = 0): Step => ({ dt, ok: true, stall });
const miss = (net: NetworkEvidence, dt = 1000, stall = 0): Step => ({ dt, net, stall });

function play(steps: Step[], cfg = CFG, start = 5_000) {
  let l: BeatLedger = newLedger();
  let t = start;
  const verdicts: HeartbeatVerdict[] = [];
  const counted: boolean[] = [];
  for (const s of steps) {
    t += s.dt;
    const beat: Beat = {
      startedAt: t - (s.took ?? Math.min(s.dt, cfg.intervalMs)),
      at: t,
      answered: !!s.ok,
      stalledMs: s.stall ?? 0,
      network: s.net ?? "none",
    };
    const r = recordBeat(l, beat, cfg);
    l = r.ledger;
    counted.push(r.counted);
    verdicts.push(judgeHeartbeat(l, cfg));
  }
  return { ledger: l, verdicts, counted, last: verdicts[verdicts.length - 1] as HeartbeatVerdict };
}

const fenceableAt = (v: HeartbeatVerdict[]) => v.findIndex((x) => x.fenceable);

describe("a dead host is still fenced after ~threshold beats", () => {
  it.each<[string, Step[], number]>([
    ["ping timeouts, then silent probes", [ok(), miss("none"), miss("silent"), miss("silent")], 3],
    [
      "the third beat half an interval early (the last answer was slow)",
      [ok(), miss("none"), miss("silent"), miss("silent", 600)],
      3,
    ],
    [
      "connection lost at once: every failed beat probed silent",
      [ok(), miss("silent"), miss("silent"), miss("silent")],
      3,
    ],
    [
      "libvirtd died first (refused), then the host went silent",
      [ok(), miss("alive"), miss("alive"), miss("silent"), miss("silent"), miss("silent")],
      5,
    ],
    [
      "real silence after a controller stall",
      [ok(), miss("none", 6500, 6000), miss("silent"), miss("silent"), miss("silent")],
      4,
    ],
  ])("%s", (_what, steps, at) => {
    expect(fenceableAt(play(steps).verdicts)).toBe(at);
  });

  it("fences on the first beat it may, not later: silence counted over listened time only", () => {
    const { verdicts } = play([
      ok(),
      miss("none", 6500, 6000),
      miss("silent"),
      miss("silent"),
      miss("silent"),
    ]);
    expect(verdicts[3]?.fenceable).toBe(false);
    // 6.5 s elapsed, 6 s of it stalled: the silence is the 3.5 s the controller listened.
    expect(verdicts[4]?.silentMs).toBe(3500);
  });

  it("without a network probe (sim://) the beats alone decide, as before", () => {
    const cfg = { ...CFG, probeable: false };
    const { verdicts } = play([ok(), miss("none"), miss("none"), miss("none")], cfg);
    expect(fenceableAt(verdicts)).toBe(3);
  });

  it("a probeable host is fenced only once a probe found it silent", () => {
    const cfg = { ...CFG, threshold: 1 };
    const { verdicts } = play([ok(), miss("none"), miss("silent")], cfg);
    expect(verdicts.map((v) => v.fenceable)).toEqual([false, false, true]);
  });
});

describe("a stalled controller never counts beats it could not listen for", () => {
  it.each<[string, Step[]]>([
    ["SIGSTOP 6 s during a beat, then answers", [ok(), miss("none", 6500, 6000), ok(), ok()]],
    [
      "one 8 s stall, and the connection it broke (keepalive) fails the beats it spans",
      [ok(), miss("none", 8200, 8000), miss("alive", 300, 250), ok(300)],
    ],
    [
      "starved: 950 ms of every second stalled, beats fail for 30 s",
      Array.from({ length: 30 }, () => miss("none", 1000, 950)),
    ],
    [
      "a burst of failures woken by a dropped connection (no stall, 40 ms)",
      [ok(), miss("none", 10), miss("silent", 15), miss("silent", 15)],
    ],
    ["many stalls, each voiding its beat", Array.from({ length: 100 }, () => miss("none", 1000, 700))],
  ])("%s: never fenceable", (_what, steps) => {
    const { verdicts } = play(steps);
    expect(verdicts.some((v) => v.fenceable)).toBe(false);
  });

  it("a host probed silent is not excused by the controller's stalls, but only listened time counts", () => {
    // Starved to 5 %: every beat's span is 95 % stall, yet the probes (the kernel listening for
    // a SYN-ACK, read after a yield) found the host silent. Fenced once 2.5 s were listened to.
    const steps = [ok(), ...Array.from({ length: 60 }, () => miss("silent", 1000, 950))];
    const at = fenceableAt(play(steps).verdicts);
    expect(at).toBe(50);
  });

  it("a stall of N seconds is not N missed beats: the failed beat it spans is void", () => {
    const r = play([ok(), miss("none", 8000, 7900)]);
    expect(r.counted).toEqual([true, false]);
    expect(r.last.missed).toBe(0);
    expect(r.ledger.voided).toBe(1);
  });

  it("stall below the tolerance counts, above it does not", () => {
    // A busy controller (a few hundred ms of lag) still counts; one that could not run for
    // most of the beat does not.
    expect(play([ok(), miss("none", 1000, 90)]).last.missed).toBe(1);
    expect(play([ok(), miss("none", 1000, 400)]).last.missed).toBe(1);
    expect(play([ok(), miss("none", 1000, 600)]).last.missed).toBe(0);
    // 0.2 s beats: the tolerance floor is 150 ms.
    const fast = { ...CFG, intervalMs: 200 };
    expect(play([ok(200), miss("none", 200, 120)], fast).last.missed).toBe(1);
    expect(play([ok(200), miss("none", 200, 160)], fast).last.missed).toBe(0);
  });

  it("replies read late (after the stall) are answers: nothing counts", () => {
    const r = play([ok(), ok(6000, 5900), ok(), miss("none"), ok()]);
    expect(r.last.missed).toBe(0);
    expect(r.verdicts.some((v) => v.fenceable || v.missed >= 3)).toBe(false);
  });

  it("voided beats neither count nor reset the misses already counted", () => {
    const r = play([ok(), miss("none"), miss("silent"), miss("none", 7000, 6500), miss("silent")]);
    expect(r.verdicts.map((v) => v.missed)).toEqual([0, 1, 2, 2, 3]);
    expect(r.last.fenceable).toBe(true);
  });
});

describe("management down is not host dead", () => {
  it("libvirtd restarting (refused for a few beats) is Unreachable, never fenceable", () => {
    const { verdicts } = play([ok(), miss("none"), miss("alive"), miss("alive"), miss("alive"), ok()]);
    expect(verdicts.map((v) => v.missed)).toEqual([0, 1, 2, 3, 4, 0]);
    expect(verdicts.map((v) => v.managementDown)).toEqual([false, false, false, true, true, false]);
    expect(verdicts.some((v) => v.fenceable)).toBe(false);
  });

  it("a hung libvirtd (TCP accepted, no answer) for four minutes: not fenced", () => {
    const steps = [ok(), ...Array.from({ length: 240 }, () => miss("alive"))];
    const { verdicts } = play(steps);
    expect(verdicts.some((v) => v.fenceable)).toBe(false);
    expect(verdicts[240]?.managementDown).toBe(true);
  });

  it("management that never comes back is fenced after MANAGEMENT_DOWN_FENCE_AFTER_MS of listening", () => {
    const n = MANAGEMENT_DOWN_FENCE_AFTER_MS / 1000;
    const { verdicts } = play([ok(), ...Array.from({ length: n + 1 }, () => miss("alive"))]);
    expect(fenceableAt(verdicts)).toBe(n);
  });

  it("stalled time does not count toward that bound either", () => {
    const n = MANAGEMENT_DOWN_FENCE_AFTER_MS / 1000;
    // Every beat concluded 1.2 s after the last, 0.2 s of it stalled (below the tolerance, so
    // the beats count): the bound is reached after n listened seconds, not n / 1.2 beats.
    const steps = [ok(), ...Array.from({ length: n + 1 }, () => miss("alive", 1200, 200))];
    expect(fenceableAt(play(steps).verdicts)).toBe(n);
  });

  it("silent and alive probes alternating (a flapping link) never make a silent run", () => {
    const steps = [ok(), ...Array.from({ length: 20 }, (_, i) => miss(i % 2 ? "alive" : "silent"))];
    expect(play(steps).verdicts.some((v) => v.fenceable)).toBe(false);
  });

  it("a silent run counts from the last sign of life, not the last answer", () => {
    // alive at beat 1: the host was there 1 s after the last answer; three silent beats after it.
    const { verdicts } = play([
      ok(),
      miss("alive"),
      miss("silent"),
      miss("silent"),
      miss("silent", 400),
      miss("silent"),
    ]);
    // At the fourth step: 3.4 s since the answer, but only 2.4 s since the host's kernel answered.
    expect(verdicts.map((v) => v.fenceable)).toEqual([false, false, false, false, false, true]);
  });
});

describe("wall-clock steps play no part", () => {
  it("the rule sees only monotonic times: a ledger is the same whatever Date says", () => {
    const steps = [ok(), miss("none"), miss("silent"), miss("silent")];
    const a = play(steps, CFG, 5_000);
    // The same beats in a process whose monotonic origin differs (a restart) conclude the same.
    const b = play(steps, CFG, 123_456_789);
    expect(b.verdicts).toEqual(a.verdicts);
  });

  it("a beat concluded 'before' the previous one (two reconciles racing) adds no silence", () => {
    let l = recordBeat(
      newLedger(),
      { startedAt: 0, at: 1000, answered: true, stalledMs: 0, network: "none" },
      CFG,
    ).ledger;
    l = recordBeat(
      l,
      { startedAt: 100, at: 500, answered: false, stalledMs: 0, network: "silent" },
      CFG,
    ).ledger;
    expect(judgeHeartbeat(l, CFG).silentMs).toBe(0);
  });
});

describe("beatWindowMs", () => {
  const windowAfter = (steps: Step[], cfg = CFG) => beatWindowMs(play(steps, cfg).ledger, cfg, 5_000);
  it.each<[string, Step[], number]>([
    ["a healthy host: one interval", [ok()], 1000],
    ["one miss, not probed: one interval", [ok(), miss("none")], 1000],
    ["probed silent, two short of the threshold: one interval", [ok(), miss("silent")], 1000],
    ["probed silent, one short: the deciding beat waits half", [ok(), miss("none"), miss("silent")], 500],
    ["its kernel answers (management down): never shortened", [ok(), miss("alive"), miss("alive")], 1000],
    ["silent after alive, one short again", [ok(), miss("alive"), miss("silent"), miss("silent")], 500],
  ])("%s", (_what, steps, want) => {
    expect(windowAfter(steps)).toBe(want);
  });
  it("never below 150 ms nor above the call timeout, and not for hosts without a probe", () => {
    const fast = { ...CFG, intervalMs: 200 };
    expect(windowAfter([ok(200), miss("silent", 200), miss("silent", 200)], fast)).toBe(150);
    expect(beatWindowMs(newLedger(), { ...CFG, intervalMs: 60_000 }, 5_000)).toBe(5_000);
    const sim = { ...CFG, probeable: false };
    expect(windowAfter([ok(), miss("none"), miss("none")], sim)).toBe(1000);
  });
});
