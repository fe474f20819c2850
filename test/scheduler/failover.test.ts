import { describe, expect, it } from "vitest";
import { type FailoverVM, failoverCapacity, planFailover } from "../../src/scheduler/failover.js";
import type { HostCandidate } from "../../src/scheduler/placement.js";

const GiB = 1024 ** 3;

function host(name: string, memGiB: number, usedGiB: number): HostCandidate {
  return {
    name,
    labels: {},
    ready: true,
    schedulable: true,
    allocatable: { cpuMilli: 64_000, memoryBytes: memGiB * GiB },
    allocated: { cpuMilli: 0, memoryBytes: usedGiB * GiB },
    networks: new Set(),
    images: new Set(),
  };
}

function fvm(name: string, host: string, memGiB: number, over: Partial<FailoverVM> = {}): FailoverVM {
  return {
    request: {
      key: `default/${name}`,
      namespace: "default",
      request: { cpuMilli: 1000, memoryBytes: memGiB * GiB },
      affinity: [],
      antiAffinity: [],
      strategy: "spread",
      networks: [],
      images: [],
    },
    labels: { app: name.split("-")[0] as string },
    priority: 100,
    host,
    recover: true,
    ...over,
  };
}

describe("planFailover", () => {
  it("moves the failed host's VMs in priority order and strands what does not fit", () => {
    const hosts = [host("a", 16, 12), host("b", 16, 8)];
    const vms = [
      fvm("low-1", "a", 4, { priority: 1 }),
      fvm("high-1", "a", 4, { priority: 500 }),
      fvm("mid-1", "a", 4, { priority: 100 }),
      fvm("other-1", "b", 8),
    ];
    const plan = planFailover(["a"], hosts, vms);
    expect(plan.moved.map((m) => m.key)).toEqual(["default/high-1", "default/mid-1"]);
    expect(plan.moved.every((m) => m.to === "b")).toBe(true);
    expect(plan.stranded).toEqual([
      expect.objectContaining({
        key: "default/low-1",
        from: "a",
        reason: expect.stringMatching(/0\/2 hosts fit/),
      }),
    ]);
  });

  it("honours anti-affinity among the survivors and leaves policy-down VMs alone", () => {
    const hosts = [host("a", 32, 0), host("b", 32, 0), host("c", 32, 0)];
    const anti = [{ selector: { matchLabels: { app: "db" } }, topology: "host" as const }];
    const vms = [
      fvm("db-1", "a", 1, { request: { ...fvm("db-1", "a", 1).request, antiAffinity: anti } }),
      fvm("db-2", "b", 1),
      fvm("keep-1", "a", 1, { recover: false }),
    ];
    const plan = planFailover(["a"], hosts, vms);
    expect(plan.moved).toEqual([expect.objectContaining({ key: "default/db-1", to: "c" })]);
    expect(plan.leftDown).toEqual([{ key: "default/keep-1", from: "a" }]);
  });
});

describe("failoverCapacity (N-1)", () => {
  it("is sufficient when any single host's VMs fit on the others", () => {
    const hosts = [host("a", 16, 4), host("b", 16, 4), host("c", 16, 4)];
    const vms = ["a", "b", "c"].map((h) => fvm(`app-${h}`, h, 4));
    const c = failoverCapacity(hosts, vms);
    expect(c.sufficient).toBe(true);
    expect(c.stranded).toBe(0);
    expect([...c.strandedByHost.values()]).toEqual([0, 0, 0]);
  });

  it("names the host whose loss would strand VMs", () => {
    const hosts = [host("a", 64, 40), host("b", 16, 4)];
    const vms = [...Array.from({ length: 10 }, (_, i) => fvm(`big-${i}`, "a", 4)), fvm("small-1", "b", 4)];
    const c = failoverCapacity(hosts, vms);
    expect(c.sufficient).toBe(false);
    expect(c.worstHost).toBe("a");
    expect(c.stranded).toBe(7);
    expect(c.strandedByHost.get("b")).toBe(0);
    expect(c.message).toMatch(/losing a would leave 7 VM/);
  });
});
