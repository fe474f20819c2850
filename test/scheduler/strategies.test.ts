/**
 * The placement strategies beside spread and pack (bestFit, roundRobin) and the preferred (soft)
 * affinity terms, as pure tables over planPlacement and scoreHost.
 */
import { describe, expect, it } from "vitest";
import {
  type HostCandidate,
  type PlacedVM,
  type PlacementRequest,
  placementOrder,
  planPlacement,
  scoreHost,
} from "../../src/scheduler/placement.js";

const GiB = 1024 ** 3;

function host(name: string, memGiB = 32, usedGiB = 0, over: Partial<HostCandidate> = {}): HostCandidate {
  return {
    name,
    labels: {},
    ready: true,
    schedulable: true,
    allocatable: { cpuMilli: 16_000, memoryBytes: memGiB * GiB },
    allocated: { cpuMilli: 0, memoryBytes: usedGiB * GiB },
    networks: new Set(),
    images: new Set(),
    ...over,
  };
}

function req(over: Partial<PlacementRequest> = {}): PlacementRequest {
  return {
    key: "default/vm",
    namespace: "default",
    request: { cpuMilli: 1000, memoryBytes: 1 * GiB },
    affinity: [],
    antiAffinity: [],
    strategy: "spread",
    networks: [],
    images: [],
    ...over,
  };
}

const placedOn = (d: ReturnType<typeof planPlacement>) => (d.kind === "placed" ? d.host : d.message);
const peer = (key: string, host: string, labels: Record<string, string>): PlacedVM => ({
  key: `default/${key}`,
  namespace: "default",
  labels,
  host,
});

describe("bestFit and pack on hosts of different sizes", () => {
  // small: 8 GiB with 4 used (after: 5/8 = 62 % full, 3 GiB left); big: 64 GiB with 50 used
  // (after: 51/64 = 80 % full, 13 GiB left).
  const hosts = [host("big", 64, 50), host("small", 8, 4)];
  it.each([
    ["spread", "small"],
    ["pack", "big"],
    ["bestFit", "small"],
  ] as const)("%s chooses %s", (strategy, want) => {
    expect(placedOn(planPlacement(req({ strategy }), hosts, []))).toBe(want);
  });
  it("bestFit: a VM that leaves a host exactly full wins over one that leaves room", () => {
    const d = planPlacement(
      req({ strategy: "bestFit", request: { cpuMilli: 1000, memoryBytes: 4 * GiB } }),
      [host("a", 32, 20), host("b", 32, 28)],
      [],
    );
    expect(placedOn(d)).toBe("b");
  });
  it("bestFit still filters: a host the VM does not fit is not the tightest fit", () => {
    const d = planPlacement(
      req({ strategy: "bestFit", request: { cpuMilli: 1000, memoryBytes: 5 * GiB } }),
      [host("a", 32, 20), host("b", 32, 28)],
      [],
    );
    expect(placedOn(d)).toBe("a");
  });
});

describe("roundRobin", () => {
  const hosts = [host("c"), host("a", 32, 30), host("b")];
  it.each([
    [undefined, "a"],
    ["a", "b"],
    ["b", "c"],
    ["c", "a"],
    // A cursor on a host that is gone: the next name after it.
    ["bb", "c"],
  ])("after %s: %s (load ignored, name order, wrapping)", (after, want) => {
    const r = req({ strategy: "roundRobin", ...(after ? { roundRobinAfter: after } : {}) });
    expect(placedOn(planPlacement(r, hosts, []))).toBe(want);
  });
  it("skips hosts that do not fit", () => {
    const r = req({
      strategy: "roundRobin",
      roundRobinAfter: "a",
      request: { cpuMilli: 1000, memoryBytes: 4 * GiB },
    });
    expect(placedOn(planPlacement(r, [host("a"), host("b", 32, 30), host("c")], []))).toBe("c");
  });
  it("unschedulable when nothing fits, with the reasons", () => {
    const r = req({ strategy: "roundRobin", request: { cpuMilli: 1000, memoryBytes: 64 * GiB } });
    expect(placedOn(planPlacement(r, hosts, []))).toMatch(/0\/3 hosts fit \(3 hosts: insufficient memory\)/);
  });
});

describe("preferred affinity and anti-affinity", () => {
  const db = { matchLabels: { app: "db" } };
  it("a preferred affinity draws the VM to its peer's host over a less loaded one", () => {
    const hosts = [host("a"), host("b", 32, 16)];
    const placed = [peer("db-0", "b", { app: "db" })];
    expect(placedOn(planPlacement(req(), hosts, placed))).toBe("a");
    const d = planPlacement(
      req({ preferredAffinity: [{ selector: db, topology: "host", weight: 100 }] }),
      hosts,
      placed,
    );
    expect(d).toMatchObject({ kind: "placed", host: "b" });
    expect(d.kind === "placed" && d.unmet).toBeFalsy();
  });
  it("never filters: when the peer's host is full the VM goes elsewhere, and says which preference is not met", () => {
    const hosts = [host("a"), host("b", 32, 32)];
    const d = planPlacement(
      req({ preferredAffinity: [{ selector: db, topology: "host", weight: 60 }] }),
      hosts,
      [peer("db-0", "b", { app: "db" })],
    );
    expect(d).toMatchObject({
      kind: "placed",
      host: "a",
      unmet: ["preferred affinity app=db by host (weight 60)"],
    });
  });
  it("a preferred anti-affinity spreads replicas where there is room, and packs them where there is not", () => {
    const web = { matchLabels: { app: "web" } };
    const r = req({
      strategy: "pack",
      preferredAntiAffinity: [{ selector: web, topology: "host", weight: 100 }],
    });
    // pack alone would put the replica beside its sibling on the fuller a.
    const hosts = [host("a", 32, 8), host("b")];
    expect(
      placedOn(planPlacement(req({ strategy: "pack" }), hosts, [peer("web-0", "a", { app: "web" })])),
    ).toBe("a");
    expect(placedOn(planPlacement(r, hosts, [peer("web-0", "a", { app: "web" })]))).toBe("b");
    // Both hosts hold a replica: no host satisfies it; the strategy decides, and it is said.
    const d = planPlacement(r, hosts, [
      peer("web-0", "a", { app: "web" }),
      peer("web-1", "b", { app: "web" }),
    ]);
    expect(d).toMatchObject({
      kind: "placed",
      host: "a",
      unmet: ["preferred anti-affinity app=web by host (weight 100)"],
    });
  });
  it("weights decide between preferences that pull apart", () => {
    const hosts = [host("a"), host("b")];
    const placed = [peer("x", "a", { tier: "x" }), peer("y", "b", { tier: "y" })];
    const d = planPlacement(
      req({
        preferredAffinity: [
          { selector: { matchLabels: { tier: "x" } }, topology: "host", weight: 20 },
          { selector: { matchLabels: { tier: "y" } }, topology: "host", weight: 80 },
        ],
      }),
      hosts,
      placed,
    );
    expect(d).toMatchObject({
      kind: "placed",
      host: "b",
      unmet: ["preferred affinity tier=x by host (weight 20)"],
    });
  });
  it("by failure domain: a host in the peer's domain satisfies it", () => {
    const hosts = [
      host("a", 32, 0, { failureDomain: "r1" }),
      host("b", 32, 8, { failureDomain: "r2" }),
      host("c", 32, 16, { failureDomain: "r2" }),
    ];
    const d = planPlacement(
      req({ preferredAffinity: [{ selector: db, topology: "failureDomain", weight: 50 }] }),
      hosts,
      [peer("db-0", "c", { app: "db" })],
    );
    expect(placedOn(d)).toBe("b");
  });
  it("an affinity term nobody matches yet is met anywhere (the first member seeds the group)", () => {
    const d = planPlacement(
      req({ preferredAffinity: [{ selector: db, topology: "host", weight: 10 }] }),
      [host("a"), host("b", 32, 4)],
      [],
    );
    expect(d).toMatchObject({ kind: "placed", host: "a" });
    expect(d.kind === "placed" && d.unmet).toBeFalsy();
  });
  it("other namespaces' VMs do not count", () => {
    const d = planPlacement(
      req({ preferredAffinity: [{ selector: db, topology: "host", weight: 100 }] }),
      [host("a"), host("b", 32, 16)],
      [{ key: "other/db-0", namespace: "other", labels: { app: "db" }, host: "b" }],
    );
    expect(placedOn(d)).toBe("a");
  });
});

describe("scoreHost: the components are averaged", () => {
  const h = host("a", 32, 8);
  it("without preferences or reliability: the strategy's score, as before (memory 80 %, CPU 20 %, images 10 points)", () => {
    // after placement: memory 9/32, cpu 1/16; spread fit = 1 - (0.8*9/32 + 0.2*1/16)
    const fit = 1 - (0.8 * (9 / 32) + 0.2 * (1 / 16));
    expect(scoreHost(req(), h)).toBeCloseTo(fit * 90, 2);
    expect(scoreHost(req({ strategy: "pack" }), h)).toBeCloseTo((1 - fit) * 90, 2);
  });
  it("reliability and preference each take an equal share", () => {
    const base = scoreHost(req(), h);
    const withRel = scoreHost(req({ preferReliable: true }), { ...h, mtbfSeconds: 86_400 });
    expect(withRel).toBeCloseTo((base + 50) / 2, 2);
    expect(scoreHost(req({ preferReliable: true }), { ...h, mtbfSeconds: 86_400 }, 1)).toBeCloseTo(
      (base + 50 + 100) / 3,
      2,
    );
    expect(scoreHost(req(), h, 0)).toBeCloseTo(base / 2, 2);
  });
});

describe("placementOrder: priority, then first-fit-decreasing", () => {
  const v = (key: string, priority: number, memGiB: number, cpus = 1) => ({
    key,
    priority,
    request: { cpuMilli: cpus * 1000, memoryBytes: memGiB * GiB },
  });
  it("orders by priority, then memory, then CPU, then key", () => {
    const vms = [
      v("s", 100, 1),
      v("m", 100, 2),
      v("vip", 900, 1),
      v("m-wide", 100, 2, 4),
      v("b", 100, 8),
      v("a", 100, 1),
    ];
    expect([...vms].sort(placementOrder).map((x) => x.key)).toEqual(["vip", "b", "m-wide", "m", "a", "s"]);
  });
  it("a bigger VM of lower priority still waits for the important small one", () => {
    expect([v("big-low", 10, 64), v("small-high", 1000, 1)].sort(placementOrder).map((x) => x.key)).toEqual([
      "small-high",
      "big-low",
    ]);
  });
});
