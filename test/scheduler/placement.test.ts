import { describe, expect, it } from "vitest";
import {
  type HostCandidate,
  matchesSelector,
  type PlacedVM,
  type PlacementRequest,
  planPlacement,
  reliabilityScore,
} from "../../src/scheduler/placement.js";

const GiB = 1024 ** 3;

function host(name: string, over: Partial<HostCandidate> = {}): HostCandidate {
  return {
    name,
    labels: {},
    ready: true,
    schedulable: true,
    allocatable: { cpuMilli: 16_000, memoryBytes: 32 * GiB },
    allocated: { cpuMilli: 0, memoryBytes: 0 },
    networks: new Set(),
    images: new Set(),
    ...over,
  };
}

function req(over: Partial<PlacementRequest> = {}): PlacementRequest {
  return {
    key: "default/vm",
    namespace: "default",
    request: { cpuMilli: 2000, memoryBytes: 4 * GiB },
    affinity: [],
    antiAffinity: [],
    strategy: "spread",
    networks: [],
    images: [],
    ...over,
  };
}

describe("planPlacement filters", () => {
  const cases: {
    name: string;
    hosts: HostCandidate[];
    req?: Partial<PlacementRequest>;
    placed?: PlacedVM[];
    want: string;
  }[] = [
    { name: "only ready hosts", hosts: [host("a", { ready: false }), host("b")], want: "b" },
    { name: "not unschedulable", hosts: [host("a", { schedulable: false }), host("b")], want: "b" },
    {
      name: "host selector",
      hosts: [host("a"), host("b", { labels: { gpu: "yes" } })],
      req: { hostSelector: { gpu: "yes" } },
      want: "b",
    },
    {
      name: "memory capacity",
      hosts: [host("a", { allocated: { cpuMilli: 0, memoryBytes: 30 * GiB } }), host("b")],
      want: "b",
    },
    {
      name: "cpu capacity",
      hosts: [host("a", { allocated: { cpuMilli: 15_000, memoryBytes: 0 } }), host("b")],
      want: "b",
    },
    {
      name: "networks ready",
      hosts: [host("a"), host("b", { networks: new Set(["default/lan"]) })],
      req: { networks: ["default/lan"] },
      want: "b",
    },
    {
      name: "anti-affinity by host",
      hosts: [host("a"), host("b")],
      req: { antiAffinity: [{ selector: { matchLabels: { tier: "web" } }, topology: "host" }] },
      placed: [{ key: "default/web-1", namespace: "default", labels: { tier: "web" }, host: "a" }],
      want: "b",
    },
    {
      name: "anti-affinity ignores other namespaces",
      hosts: [host("a"), host("b", { allocated: { cpuMilli: 0, memoryBytes: 8 * GiB } })],
      req: { antiAffinity: [{ selector: { matchLabels: { tier: "web" } }, topology: "host" }] },
      placed: [{ key: "other/web-1", namespace: "other", labels: { tier: "web" }, host: "a" }],
      want: "a",
    },
    {
      name: "anti-affinity by failure domain",
      hosts: [
        host("a", { failureDomain: "rack1" }),
        host("b", { failureDomain: "rack1" }),
        host("c", { failureDomain: "rack2" }),
      ],
      req: { antiAffinity: [{ selector: { matchLabels: { tier: "db" } }, topology: "failureDomain" }] },
      placed: [{ key: "default/db-1", namespace: "default", labels: { tier: "db" }, host: "a" }],
      want: "c",
    },
    {
      name: "affinity follows the group",
      hosts: [host("a"), host("b", { allocated: { cpuMilli: 0, memoryBytes: 16 * GiB } })],
      req: { affinity: [{ selector: { matchLabels: { app: "mpi" } }, topology: "host" }] },
      placed: [{ key: "default/mpi-0", namespace: "default", labels: { app: "mpi" }, host: "b" }],
      want: "b",
    },
    {
      name: "excluded host",
      hosts: [host("a"), host("b")],
      req: { excludeHosts: new Set(["a"]) },
      want: "b",
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = planPlacement(req(c.req), c.hosts, c.placed ?? []);
      expect(d).toMatchObject({ kind: "placed", host: c.want });
    });
  }
});

describe("planPlacement storage", () => {
  const storage = (images: string[], free: Record<string, number>) => ({
    checkedImages: new Set(["default/debian.qcow2", "default/other.qcow2"]),
    poolFreeBytes: new Map(Object.entries(free)),
    images,
  });
  const withStorage = (name: string, st: ReturnType<typeof storage>) =>
    host(name, {
      images: new Set(st.images),
      storage: { checkedImages: st.checkedImages, poolFreeBytes: st.poolFreeBytes },
    });

  it("avoids a host whose pools lack the base image, and says so when none has it", () => {
    const hosts = [
      withStorage("a", storage([], { default: 100 * GiB })),
      withStorage("b", storage(["default/debian.qcow2"], { default: 100 * GiB })),
    ];
    expect(planPlacement(req({ images: ["default/debian.qcow2"] }), hosts, [])).toMatchObject({
      kind: "placed",
      host: "b",
    });
    const none = planPlacement(req({ images: ["default/other.qcow2"] }), hosts, []);
    expect(none).toMatchObject({ kind: "unschedulable" });
    expect(none.kind === "unschedulable" && none.message).toBe(
      "0/2 hosts fit (2 hosts: base image not in its pools)",
    );
  });

  it("does not judge an image it has not looked for yet", () => {
    const hosts = [withStorage("a", storage([], { default: 100 * GiB }))];
    expect(planPlacement(req({ images: ["default/new.qcow2"] }), hosts, [])).toMatchObject({
      kind: "placed",
    });
  });

  it("avoids a pool without the free space the VM's new disks need", () => {
    const hosts = [
      withStorage("a", storage(["default/debian.qcow2"], { default: 1 * GiB })),
      withStorage("b", storage(["default/debian.qcow2"], { default: 50 * GiB })),
    ];
    const r = req({ images: ["default/debian.qcow2"], diskBytes: { default: 20 * GiB } });
    expect(planPlacement(r, hosts, [])).toMatchObject({ kind: "placed", host: "b" });
    const big = planPlacement({ ...r, diskBytes: { default: 80 * GiB } }, hosts, []);
    expect(big.kind === "unschedulable" && big.message).toMatch(
      /insufficient free space in the storage pool/,
    );
  });
});

describe("planPlacement ranking", () => {
  const busy = host("a", { allocated: { cpuMilli: 4000, memoryBytes: 16 * GiB } });
  const idle = host("b");
  it("spread prefers the least loaded host", () => {
    expect(planPlacement(req(), [busy, idle], [])).toMatchObject({ host: "b" });
  });
  it("pack prefers the fullest host that fits", () => {
    expect(planPlacement(req({ strategy: "pack" }), [busy, idle], [])).toMatchObject({ host: "a" });
  });
  it("prefers hosts holding the base image", () => {
    const withImage = host("c", {
      images: new Set(["default/debian"]),
      allocated: { cpuMilli: 0, memoryBytes: 2 * GiB },
    });
    expect(planPlacement(req({ images: ["default/debian"] }), [idle, withImage], [])).toMatchObject({
      host: "c",
    });
  });
  it("breaks ties by name, deterministically", () => {
    expect(planPlacement(req(), [host("z"), host("m"), host("k")], [])).toMatchObject({ host: "k" });
  });
});

describe("planPlacement when nothing fits", () => {
  it("names why, per filter", () => {
    const d = planPlacement(
      req({ networks: ["default/lan"] }),
      [
        host("a", { ready: false }),
        host("b"),
        host("c", { allocated: { cpuMilli: 0, memoryBytes: 31 * GiB } }),
      ],
      [],
    );
    expect(d.kind).toBe("unschedulable");
    if (d.kind !== "unschedulable") return;
    expect(d.reasons).toEqual({ HostNotReady: 1, NetworkNotReady: 1, InsufficientMemory: 1 });
    expect(d.message).toContain("0/3 hosts fit");
    expect(d.message).toContain("network not ready");
  });
  it("says when there are no hosts", () => {
    const d = planPlacement(req(), [], []);
    expect(d).toMatchObject({ kind: "unschedulable", message: "no hosts are defined" });
  });
});

describe("matchesSelector", () => {
  it.each([
    [{ a: "1" }, { matchLabels: { a: "1" } }, true],
    [{ a: "1" }, { matchLabels: { a: "2" } }, false],
    [{ a: "1" }, { matchExpressions: [{ key: "a", operator: "In" as const, values: ["1", "2"] }] }, true],
    [{ a: "3" }, { matchExpressions: [{ key: "a", operator: "NotIn" as const, values: ["1", "2"] }] }, true],
    [{}, { matchExpressions: [{ key: "a", operator: "Exists" as const }] }, false],
    [{}, { matchExpressions: [{ key: "a", operator: "DoesNotExist" as const }] }, true],
  ])("%j against %j -> %s", (labels, selector, want) => {
    expect(matchesSelector(labels, selector)).toBe(want);
  });
});

describe("preferReliableHosts: hosts ranked by measured MTBF too", () => {
  const HOUR = 3_600;
  const DAY = 86_400;
  const WEEK = 7 * DAY;
  it.each<[number | undefined, number]>([
    [undefined, 0.5], // no failure seen yet: neutral, as an MTBF of one day
    [Number.NaN, 0.5],
    [0, 0],
    [DAY, 0.5],
    [WEEK, 0.875],
    [HOUR, 1 / 25],
  ])("reliabilityScore(%s) = %s", (mtbf, want) => {
    expect(reliabilityScore(mtbf)).toBeCloseTo(want, 9);
  });

  const loaded = (name: string, mtbfSeconds: number | undefined, memGiB = 0) =>
    host(name, {
      ...(mtbfSeconds !== undefined ? { mtbfSeconds } : {}),
      allocated: { cpuMilli: memGiB * 500, memoryBytes: memGiB * GiB },
    });
  const cases: {
    name: string;
    hosts: HostCandidate[];
    req?: Partial<PlacementRequest>;
    want: string;
  }[] = [
    {
      name: "not asked: MTBF plays no part (equal load, name order)",
      hosts: [loaded("a", HOUR), loaded("b", WEEK)],
      want: "a",
    },
    {
      name: "asked: the longer MTBF wins at equal load",
      hosts: [loaded("a", HOUR), loaded("b", WEEK)],
      req: { preferReliable: true },
      want: "b",
    },
    {
      name: "an unmeasured host is neutral: preferred to an hourly one",
      hosts: [loaded("a", HOUR), loaded("b", undefined)],
      req: { preferReliable: true },
      want: "b",
    },
    {
      name: "an unmeasured host is neutral: a weekly one is preferred to it",
      hosts: [loaded("a", undefined), loaded("b", WEEK)],
      req: { preferReliable: true },
      want: "b",
    },
    {
      name: "MTBFs far apart outweigh load: the weekly host though it is 3/4 full",
      hosts: [loaded("a", HOUR), loaded("b", WEEK, 24)],
      req: { preferReliable: true },
      want: "b",
    },
    {
      name: "MTBFs close (a day, two days): spread still picks the emptier host",
      hosts: [loaded("a", DAY), loaded("b", 2 * DAY, 24)],
      req: { preferReliable: true },
      want: "a",
    },
    {
      name: "with pack, at equal reliability, the fuller host",
      hosts: [loaded("a", WEEK), loaded("b", WEEK, 16)],
      req: { preferReliable: true, strategy: "pack" },
      want: "b",
    },
    {
      name: "filters first: the reliable host that is full is not chosen",
      hosts: [loaded("a", HOUR), loaded("b", WEEK, 30)],
      req: { preferReliable: true },
      want: "a",
    },
  ];
  it.each(cases)("$name", ({ hosts, req: r, want }) => {
    const d = planPlacement(req(r), hosts, []);
    expect(d.kind === "placed" ? d.host : d.message).toBe(want);
  });
});
