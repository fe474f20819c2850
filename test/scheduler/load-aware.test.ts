/**
 * loadAware placement as pure tables over planPlacement, scoreHost and loadAwareFit: hosts
 * ranked by what they were measured to use, not by what is allocated on them; a host not
 * measured yet ranked by allocation (as spread), and the capacity filters on allocation still.
 */
import { describe, expect, it } from "vitest";
import {
  type HostCandidate,
  loadAwareFit,
  type MeasuredUse,
  type PlacementRequest,
  planPlacement,
  scoreHost,
} from "../../src/scheduler/placement.js";

const GiB = 1024 ** 3;

/** A host of 8 CPUs (32,000 allocatable millicores at 4x overcommit) and 32 GiB. */
function host(
  name: string,
  allocated: { cpus: number; memGiB: number },
  measured?: { cpu: number; memGiB: number },
  over: Partial<HostCandidate> = {},
): HostCandidate {
  return {
    name,
    labels: {},
    ready: true,
    schedulable: true,
    allocatable: { cpuMilli: 32_000, memoryBytes: 32 * GiB },
    allocated: { cpuMilli: allocated.cpus * 1000, memoryBytes: allocated.memGiB * GiB },
    networks: new Set(),
    images: new Set(),
    ...(measured
      ? {
          measured: {
            cpuUtilisation: measured.cpu,
            cpus: 8,
            memoryUsedBytes: measured.memGiB * GiB,
            memoryTotalBytes: 32 * GiB,
          },
        }
      : {}),
    ...over,
  };
}

function req(strategy: PlacementRequest["strategy"] = "loadAware", over: Partial<PlacementRequest> = {}) {
  return {
    key: "default/vm",
    namespace: "default",
    request: { cpuMilli: 1000, memoryBytes: 1 * GiB },
    affinity: [],
    antiAffinity: [],
    strategy,
    networks: [],
    images: [],
    ...over,
  } satisfies PlacementRequest;
}

const placedOn = (d: ReturnType<typeof planPlacement>) => (d.kind === "placed" ? d.host : d.message);

describe("loadAware ranks by measured use", () => {
  // idle: 24 of 32 GiB and 20 vCPUs allocated, but its guests idle (5 % CPU, 6 GiB in use).
  // busy: 4 GiB and 2 vCPUs allocated, but those guests burn 7 of its 8 CPUs and hold 4 GiB.
  const idle = host("idle", { cpus: 20, memGiB: 24 }, { cpu: 0.05, memGiB: 6 });
  const busy = host("busy", { cpus: 2, memGiB: 4 }, { cpu: 0.875, memGiB: 4 });
  it.each([
    ["loadAware", "idle"],
    ["spread", "busy"],
  ] as const)(
    "an idle host with high allocation against a busy one with low: %s picks %s",
    (strategy, want) => {
      expect(placedOn(planPlacement(req(strategy), [busy, idle], []))).toBe(want);
    },
  );

  it.each<[string, HostCandidate[], string]>([
    // Memory measured counts as much as CPU: equal CPU, the one with less memory in use wins.
    [
      "memory decides at equal CPU",
      [
        host("a", { cpus: 0, memGiB: 0 }, { cpu: 0.5, memGiB: 20 }),
        host("b", { cpus: 8, memGiB: 20 }, { cpu: 0.5, memGiB: 2 }),
      ],
      "b",
    ],
    // Two idle hosts measured alike: the name breaks the tie, allocation does not.
    [
      "measured alike: name order",
      [
        host("b", { cpus: 0, memGiB: 0 }, { cpu: 0.1, memGiB: 4 }),
        host("a", { cpus: 16, memGiB: 28 }, { cpu: 0.1, memGiB: 4 }),
      ],
      "a",
    ],
    // Not measured yet (a utilisation takes two samples): ranked as spread ranks, by allocation.
    [
      "both unmeasured: the less allocated (spread's answer)",
      [host("a", { cpus: 16, memGiB: 20 }), host("b", { cpus: 2, memGiB: 4 })],
      "b",
    ],
    // A measured busy host against an unmeasured one with little allocated: the unmeasured one's
    // allocation (1 - 0.8 x 5/32 - 0.2 x 3/32 = 0.86) beats the busy one's measured (0.11).
    [
      "unmeasured with little allocated beats measured busy",
      [host("busy", { cpus: 2, memGiB: 4 }, { cpu: 0.9, memGiB: 24 }), host("new", { cpus: 2, memGiB: 4 })],
      "new",
    ],
    // ... and loses to a measured idle host (fit 0.87 against allocation's 0.27).
    [
      "measured idle beats unmeasured with much allocated",
      [
        host("idle", { cpus: 16, memGiB: 24 }, { cpu: 0.05, memGiB: 2 }),
        host("new", { cpus: 16, memGiB: 24 }),
      ],
      "idle",
    ],
  ])("%s", (_what, hosts, want) => {
    expect(placedOn(planPlacement(req(), hosts, []))).toBe(want);
  });

  it("counts the requests of VMs placed since the sample: a burst does not all go to one host", () => {
    // Measured alike at the sample, when each had 2 vCPUs and 4 GiB allocated; since, a got
    // 4 vCPUs and 8 GiB more (not started yet, so not in any measurement).
    const atSample = { cpuMilli: 2000, memoryBytes: 4 * GiB };
    const withSnapshot = (h: HostCandidate): HostCandidate => ({
      ...h,
      measured: { ...(h.measured as MeasuredUse), allocatedAtSample: atSample },
    });
    const a = withSnapshot(host("a", { cpus: 6, memGiB: 12 }, { cpu: 0.1, memGiB: 4 }));
    const b = withSnapshot(host("b", { cpus: 2, memGiB: 4 }, { cpu: 0.1, memGiB: 4 }));
    expect(placedOn(planPlacement(req(), [a, b], []))).toBe("b");
    // Without the snapshot (a usage an earlier controller wrote) only the measurement counts:
    // the tie goes by name.
    const { allocatedAtSample: _a, ...mA } = a.measured as MeasuredUse;
    const { allocatedAtSample: _b, ...mB } = b.measured as MeasuredUse;
    expect(
      placedOn(
        planPlacement(
          req(),
          [
            { ...a, measured: mA },
            { ...b, measured: mB },
          ],
          [],
        ),
      ),
    ).toBe("a");
    // VMs gone since the sample do not lower it: their use leaves the measurement at the next one.
    const shrunk = withSnapshot(host("a", { cpus: 0, memGiB: 0 }, { cpu: 0.1, memGiB: 4 }));
    expect(scoreHost(req(), shrunk)).toBe(scoreHost(req(), { ...shrunk, measured: mA }));
  });

  it("keeps the capacity filters on allocation: an idle host with no allocatable memory left is not chosen", () => {
    const full = host("full", { cpus: 4, memGiB: 32 }, { cpu: 0, memGiB: 1 });
    const busy2 = host("busy", { cpus: 2, memGiB: 4 }, { cpu: 1, memGiB: 30 });
    expect(placedOn(planPlacement(req(), [full, busy2], []))).toBe("busy");
    const d = planPlacement(req(), [full], []);
    expect(d.kind === "unschedulable" && d.reasons).toEqual({ InsufficientMemory: 1 });
  });

  it("scores an unmeasured host exactly as spread does", () => {
    const h = host("a", { cpus: 6, memGiB: 10 });
    expect(scoreHost(req("loadAware"), h)).toBe(scoreHost(req("spread"), h));
  });

  it("other strategies ignore the measurement", () => {
    const a = host("a", { cpus: 6, memGiB: 10 });
    const measuredA = host("a", { cpus: 6, memGiB: 10 }, { cpu: 1, memGiB: 31 });
    for (const s of ["spread", "pack", "bestFit"] as const)
      expect(scoreHost(req(s), measuredA)).toBe(scoreHost(req(s), a));
  });
});

describe("loadAwareFit", () => {
  const m = (cpu: number, memGiB: number): MeasuredUse => ({
    cpuUtilisation: cpu,
    cpus: 8,
    memoryUsedBytes: memGiB * GiB,
    memoryTotalBytes: 32 * GiB,
  });
  it.each<[string, { cpuMilli: number; memoryBytes: number }, MeasuredUse, number]>([
    ["idle host, nothing asked", { cpuMilli: 0, memoryBytes: 0 }, m(0, 0), 1],
    // (4 busy + 2 asked) / 8 = 0.75; (8 + 8) / 32 = 0.5: 1 - (0.375 + 0.25)
    ["the request is added to what is measured", { cpuMilli: 2000, memoryBytes: 8 * GiB }, m(0.5, 8), 0.375],
    // Over capacity counts as full, never below 0.
    ["capped at full", { cpuMilli: 16_000, memoryBytes: 64 * GiB }, m(1, 32), 0],
    [
      "a host reporting no size is full",
      { cpuMilli: 0, memoryBytes: 0 },
      { ...m(0, 0), cpus: 0, memoryTotalBytes: 0 },
      0,
    ],
  ])("%s", (_what, request, measured, want) => {
    expect(loadAwareFit(request, measured)).toBeCloseTo(want, 9);
  });
});
