/**
 * Host reliability accounting (reliability.ts) as a table: what counts as a failure, how up and
 * down time are split, what a controller restart credits (nothing), and when the running span is
 * folded into the status (only when it costs no extra write, or after FOLD_MAX_MS). Expected
 * figures are worked out by hand from the times in each row.
 */
import { describe, expect, it } from "vitest";
import type { HostReliability, HostStatus } from "../../../src/api/types.js";
import { decideHost, type ObservedHost } from "../../../src/reconcilers/host/decide.js";
import {
  accountReliability,
  downRecorded,
  FOLD_MAX_MS,
  hostCondition,
  type ReliabilityInput,
  type ReliabilityMark,
} from "../../../src/reconcilers/host/reliability.js";
import { hostResource } from "../../support/fixtures.js";

const T0 = Date.parse("2026-06-01T12:00:00Z");
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();
const mark = (s: number, condition: ReliabilityMark["condition"]): ReliabilityMark => ({
  at: at(s),
  condition,
});
const fig = (over: Partial<HostReliability> = {}): HostReliability => ({
  failures: 0,
  observedSeconds: 0,
  upSeconds: 0,
  downSeconds: 0,
  since: iso(0),
  ...over,
});

function input(over: Partial<ReliabilityInput>): ReliabilityInput {
  return {
    prev: fig(),
    downRecorded: false,
    mark: mark(0, "up"),
    observed: "up",
    lastAnswer: undefined,
    writing: true,
    now: at(10),
    ...over,
  };
}

describe("accountReliability", () => {
  it.each<[string, Partial<ReliabilityInput>, HostReliability | undefined, ReliabilityMark | undefined]>([
    [
      "first observation ever: observation begins now, nothing credited",
      { prev: undefined, mark: undefined, now: at(100) },
      fig({ since: iso(100) }),
      mark(100, "up"),
    ],
    [
      "up, status written anyway: the span is folded as up",
      { now: at(30) },
      fig({ upSeconds: 30, observedSeconds: 30, availability: 1 }),
      mark(30, "up"),
    ],
    ["up, nothing else written: no fold, no write", { writing: false, now: at(30) }, fig(), mark(0, "up")],
    [
      "up, nothing else written for FOLD_MAX_MS: folded",
      { writing: false, now: at(FOLD_MAX_MS / 1000) },
      fig({ upSeconds: 300, observedSeconds: 300, availability: 1 }),
      mark(FOLD_MAX_MS / 1000, "up"),
    ],
    [
      "a missed beat (uncertain): nothing folded even when written, the mark stays",
      { observed: "uncertain", now: at(40) },
      fig(),
      mark(0, "up"),
    ],
    [
      "judged dead: up until its last answer, down since; one failure at that answer",
      { observed: "down", lastAnswer: at(50), now: at(80) },
      fig({
        failures: 1,
        upSeconds: 50,
        downSeconds: 30,
        observedSeconds: 80,
        mtbfSeconds: 50,
        availability: 0.625,
        lastFailureTime: iso(50),
      }),
      mark(80, "down"),
    ],
    [
      "judged dead, last answer before the mark (already counted up): the failure starts at the mark",
      { mark: mark(60, "up"), observed: "down", lastAnswer: at(50), now: at(80) },
      fig({
        failures: 1,
        downSeconds: 20,
        observedSeconds: 20,
        mtbfSeconds: 0,
        availability: 0,
        lastFailureTime: iso(60),
      }),
      mark(80, "down"),
    ],
    [
      "still down: folded as down, MTTR not yet (the episode is not over)",
      {
        prev: fig({ failures: 1, upSeconds: 50, downSeconds: 30, observedSeconds: 80, mtbfSeconds: 50 }),
        mark: mark(80, "down"),
        observed: "down",
        now: at(100),
      },
      fig({
        failures: 1,
        upSeconds: 50,
        downSeconds: 50,
        observedSeconds: 100,
        mtbfSeconds: 50,
        availability: 0.5,
      }),
      mark(100, "down"),
    ],
    [
      "back up: the down span ends now; MTTR = down time / failures (all finished)",
      {
        prev: fig({ failures: 1, upSeconds: 50, downSeconds: 30, observedSeconds: 80, mtbfSeconds: 50 }),
        mark: mark(80, "down"),
        observed: "up",
        now: at(110),
      },
      fig({
        failures: 1,
        upSeconds: 50,
        downSeconds: 60,
        observedSeconds: 110,
        mtbfSeconds: 50,
        mttrSeconds: 60,
        availability: 0.454545,
      }),
      mark(110, "up"),
    ],
    [
      "controller restarted, host up: the figures resume, the gap is not credited",
      {
        prev: fig({ upSeconds: 500, observedSeconds: 500, availability: 1 }),
        mark: undefined,
        now: at(9000),
      },
      fig({ upSeconds: 500, observedSeconds: 500, availability: 1 }),
      mark(9000, "up"),
    ],
    [
      "controller restarted during a recorded down episode: not counted again",
      {
        prev: fig({ failures: 1, upSeconds: 50, downSeconds: 30, observedSeconds: 80, mtbfSeconds: 50 }),
        downRecorded: true,
        mark: undefined,
        observed: "down",
        now: at(9000),
      },
      fig({ failures: 1, upSeconds: 50, downSeconds: 30, observedSeconds: 80, mtbfSeconds: 50 }),
      mark(9000, "down"),
    ],
    [
      "controller started and found the host down, not recorded: one failure, timed from now",
      { prev: fig({ upSeconds: 40, observedSeconds: 40 }), mark: undefined, observed: "down", now: at(9000) },
      fig({
        failures: 1,
        upSeconds: 40,
        observedSeconds: 40,
        mtbfSeconds: 40,
        availability: 1,
        lastFailureTime: iso(9000),
      }),
      mark(9000, "down"),
    ],
    [
      "controller restarted with beats missed during a recorded episode: the mark continues it as down",
      { prev: fig({ failures: 1 }), downRecorded: true, mark: undefined, observed: "uncertain", now: at(50) },
      fig({ failures: 1 }),
      mark(50, "down"),
    ],
    [
      "switched off on purpose (consolidation): up until now, then not observed",
      { observed: "unobserved", writing: false, now: at(20) },
      fig({ upSeconds: 20, observedSeconds: 20, availability: 1 }),
      mark(20, "unobserved"),
    ],
    [
      "switched on again after 1000 s off: the time off counts for nothing",
      { prev: fig({ upSeconds: 20, observedSeconds: 20 }), mark: mark(20, "unobserved"), now: at(1020) },
      fig({ upSeconds: 20, observedSeconds: 20, availability: 1 }),
      mark(1020, "up"),
    ],
  ])("%s", (_title, over, reliability, expectedMark) => {
    const r = accountReliability(input(over));
    expect(r.reliability).toEqual(reliability);
    expect(r.mark).toEqual(expectedMark);
  });

  it("a libvirtd restart (uncertain beats, then answering) is up time and no failure", () => {
    let prev: HostReliability | undefined;
    let m: ReliabilityMark | undefined;
    const step = (observed: ReliabilityInput["observed"], s: number, lastAnswer: number) => {
      const r = accountReliability({
        prev,
        downRecorded: false,
        mark: m,
        observed,
        lastAnswer: at(lastAnswer),
        writing: true,
        now: at(s),
      });
      prev = r.reliability;
      m = r.mark;
    };
    step("up", 0, 0);
    step("up", 30, 30);
    for (let s = 31; s < 90; s++) step("uncertain", s, 30); // management down for a minute
    step("up", 90, 90);
    expect(prev).toEqual(fig({ upSeconds: 90, observedSeconds: 90, availability: 1 }));
  });

  it("MTBF and MTTR over several episodes", () => {
    // up 100, down 20, up 200, down 40, up 10: 2 failures, MTBF 310/2 = 155, MTTR 60/2 = 30.
    let prev: HostReliability | undefined;
    let m: ReliabilityMark | undefined;
    const step = (observed: "up" | "down", s: number, lastAnswer = s) => {
      const r = accountReliability({
        prev,
        downRecorded: false,
        mark: m,
        observed,
        lastAnswer: at(lastAnswer),
        writing: false,
        now: at(s),
      });
      prev = r.reliability;
      m = r.mark;
    };
    step("up", 0);
    step("down", 110, 100); // judged dead 10 s after its last answer
    step("up", 120);
    step("down", 330, 320);
    step("up", 360);
    step("up", 370 + FOLD_MAX_MS / 1000); // folded by FOLD_MAX_MS
    expect(prev).toMatchObject({
      failures: 2,
      upSeconds: 310 + FOLD_MAX_MS / 1000,
      downSeconds: 60,
      mttrSeconds: 30,
      mtbfSeconds: (310 + FOLD_MAX_MS / 1000) / 2,
      lastFailureTime: iso(320),
    });
  });
});

describe("hostCondition and downRecorded", () => {
  it.each<[string, Parameters<typeof hostCondition>, ReturnType<typeof hostCondition>]>([
    ["Ready and answering", ["Ready", false, true], "up"],
    ["Maintenance and answering", ["Maintenance", false, true], "up"],
    ["Ready within the grace of missed beats", ["Ready", false, false], "uncertain"],
    [
      "Unreachable, libvirt down but the host answers (not judged dead)",
      ["Unreachable", false, false],
      "uncertain",
    ],
    ["Unreachable and judged dead", ["Unreachable", true, false], "down"],
    ["Fencing", ["Fencing", true, false], "down"],
    ["Fenced", ["Fenced", false, false], "down"],
    ["Pending", ["Pending", false, false], "unobserved"],
    ["PoweredOff on purpose", ["PoweredOff", false, false], "unobserved"],
  ])("%s", (_t, args, want) => {
    expect(hostCondition(...args)).toBe(want);
  });

  it.each<[string, HostStatus | undefined, boolean]>([
    ["no status", undefined, false],
    ["Fenced without figures (written by an older version)", { phase: "Fenced" }, false],
    ["Fenced", { phase: "Fenced", reliability: fig({ failures: 1 }) }, true],
    [
      "Unreachable whose failure was counted (at its last heartbeat)",
      {
        phase: "Unreachable",
        lastHeartbeat: iso(50),
        reliability: fig({ failures: 1, lastFailureTime: iso(50) }),
      },
      true,
    ],
    [
      "Unreachable from libvirt down: the last failure is an older one",
      {
        phase: "Unreachable",
        lastHeartbeat: iso(500),
        reliability: fig({ failures: 1, lastFailureTime: iso(50) }),
      },
      false,
    ],
    ["Ready", { phase: "Ready", reliability: fig({ failures: 3, lastFailureTime: iso(50) }) }, false],
  ])("%s", (_t, status, want) => {
    expect(downRecorded(status)).toBe(want);
  });
});

describe("decideHost keeps the figures", () => {
  const h = hostResource("a");
  const base = (over: Partial<ObservedHost>): ObservedHost => ({
    host: h,
    connected: true,
    info: undefined,
    lastHeartbeat: at(0),
    missedBeats: 0,
    lastError: undefined,
    allocated: { cpuMilli: 0, memoryBytes: 0 },
    vmCount: 0,
    networks: [],
    images: [],
    fence: { state: "notNeeded" },
    ...over,
  });

  it("management down (fencing deferred) is no failure; a verdict is one, timed from the last heartbeat", () => {
    const up = { ...h, status: { phase: "Ready" as const, lastHeartbeat: iso(0), reliability: fig() } };
    const deferred = decideHost(
      base({
        host: up,
        connected: false,
        missedBeats: 5,
        fence: { state: "deferred", message: "libvirt down" },
        reliabilityMark: mark(0, "up"),
      }),
      at(60),
    );
    expect(deferred.phase).toBe("Unreachable");
    expect(deferred.status.reliability).toEqual(fig());
    expect(deferred.reliabilityMark).toEqual(mark(0, "up"));
    const dead = decideHost(
      base({
        host: up,
        connected: false,
        missedBeats: 5,
        fence: { state: "unconfigured", message: "no fence agent" },
        reliabilityMark: mark(0, "up"),
      }),
      at(60),
    );
    expect(dead.phase).toBe("Unreachable");
    expect(dead.status.reliability).toMatchObject({ failures: 1, downSeconds: 60, lastFailureTime: iso(0) });
  });

  it("a host never reached (Pending) is not observed: no figures, and no time before it answers", () => {
    const a = decideHost(base({ connected: false, missedBeats: 1, lastHeartbeat: undefined }), at(0));
    expect(a.phase).toBe("Pending");
    expect(a.status.reliability).toBeUndefined();
    const b = decideHost(
      base({ host: { ...h, status: a.status }, lastHeartbeat: at(40), reliabilityMark: a.reliabilityMark }),
      at(40),
    );
    expect(b.status.reliability).toEqual(fig({ since: iso(40) }));
  });

  it("a beat with nothing else to write does not write the figures", () => {
    const first = decideHost(base({}), at(0));
    expect(first.status.reliability).toEqual(fig());
    const up = { ...h, status: first.status };
    const m = first.reliabilityMark;
    const next = decideHost(base({ host: up, lastHeartbeat: at(5), reliabilityMark: m }), at(5));
    expect(next.status).toEqual(up.status);
    expect(next.reliabilityMark).toEqual(mark(0, "up"));
    // The heartbeat persisted 30 s later writes the status: the figures go with it.
    const later = decideHost(base({ host: up, lastHeartbeat: at(31), reliabilityMark: m }), at(31));
    expect(later.status.lastHeartbeat).toBe(iso(31));
    expect(later.status.reliability).toEqual(fig({ upSeconds: 31, observedSeconds: 31, availability: 1 }));
  });

  it("a first uncertain observation records nothing, and observation then begins at that mark", () => {
    // A controller started (no mark) finds a host once Ready missing a beat: not yet judged.
    const known = { ...h, status: { phase: "Ready" as const, lastHeartbeat: iso(-100) } };
    const a = decideHost(
      base({ host: known, connected: false, missedBeats: 1, lastHeartbeat: undefined }),
      at(0),
    );
    expect(a.phase).toBe("Ready");
    expect(a.status.reliability).toBeUndefined();
    const b = decideHost(
      base({ host: { ...h, status: a.status }, lastHeartbeat: at(40), reliabilityMark: a.reliabilityMark }),
      at(40),
    );
    expect(b.status.reliability).toEqual(fig({ upSeconds: 40, observedSeconds: 40, availability: 1 }));
  });
});
