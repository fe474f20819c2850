import { describe, expect, it } from "vitest";
import {
  activeHostsLowerBound,
  type ConsolidationHost,
  type ConsolidationInput,
  planConsolidation,
} from "../../src/scheduler/consolidation.js";
import type { FailoverVM } from "../../src/scheduler/failover.js";
import type { HostCandidate } from "../../src/scheduler/placement.js";

const GiB = 1024 ** 3;

function host(name: string, usedGiB: number, o: Partial<ConsolidationHost> = {}): ConsolidationHost {
  const candidate: HostCandidate = {
    name,
    labels: {},
    ready: !o.poweredOff,
    schedulable: !o.poweredOff,
    allocatable: { cpuMilli: 16_000, memoryBytes: 32 * GiB },
    allocated: { cpuMilli: usedGiB > 0 ? 1000 : 0, memoryBytes: usedGiB * GiB },
    networks: new Set(),
    images: new Set(),
  };
  return {
    candidate,
    mayPowerOff: true,
    poweredOff: false,
    mayPowerOn: true,
    draining: false,
    busy: false,
    ...o,
  };
}

function vmOn(
  name: string,
  on: string,
  memGiB: number,
  patch: Partial<FailoverVM["request"]> = {},
): FailoverVM {
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
      ...patch,
    },
    labels: {},
    priority: 100,
    host: on,
    recover: true,
  };
}

/** The input for hosts whose `allocated` matches the VMs placed on them. */
function fleet(hosts: ConsolidationHost[], vms: FailoverVM[], extra: Partial<ConsolidationInput> = {}) {
  return { hosts, vms, running: new Set(vms.map((v) => v.request.key)), waiting: [], ...extra };
}

describe("planConsolidation", () => {
  it("empties the least loaded host whose VMs fit elsewhere, keeping N-1", () => {
    const vms = [vmOn("a1", "a", 4), vmOn("b1", "b", 8), vmOn("c1", "c", 2)];
    const step = planConsolidation(fleet([host("a", 4), host("b", 8), host("c", 2)], vms));
    expect(step).toMatchObject({ kind: "drain", host: "c", moves: [{ key: "default/c1" }] });
  });

  it("keeps the failover capacity: empties no host the loss of another could not then be absorbed", () => {
    // 10 + 10 GiB on three 32 GiB hosts: with two left, either takes the other's VM.
    const light = [vmOn("a1", "a", 10), vmOn("b1", "b", 10)];
    expect(planConsolidation(fleet([host("a", 10), host("b", 10), host("c", 0)], light))).toMatchObject({
      kind: "drain",
      host: "c",
    });
    // 20 + 20 GiB: with two left, losing one strands 20 GiB.
    const heavy = [vmOn("a1", "a", 20), vmOn("b1", "b", 20)];
    const hosts = () => [host("a", 20), host("b", 20), host("c", 0)];
    expect(planConsolidation(fleet(hosts(), heavy)).kind).toBe("none");
    expect(planConsolidation(fleet(hosts(), heavy, { keepFailoverCapacity: false }))).toMatchObject({
      kind: "drain",
      host: "c",
    });
  });

  it("honours placement rules: a VM whose anti-affinity forbids every other host keeps its host in service", () => {
    const anti = { antiAffinity: [{ selector: { matchLabels: { app: "db" } }, topology: "host" as const }] };
    const vms = [
      { ...vmOn("db-a", "a", 2, anti), labels: { app: "db" } },
      { ...vmOn("db-b", "b", 2, anti), labels: { app: "db" } },
    ];
    const step = planConsolidation(fleet([host("a", 2), host("b", 2)], vms, { keepFailoverCapacity: false }));
    expect(step.kind).toBe("none");
  });

  it("only hosts that allow it are emptied, and never below the minimum", () => {
    const vms = [vmOn("a1", "a", 2)];
    expect(
      planConsolidation(
        fleet([host("a", 2), host("b", 0, { mayPowerOff: false })], vms, { keepFailoverCapacity: false }),
      ),
    ).toMatchObject({ kind: "drain", host: "a" });
    expect(
      planConsolidation(
        fleet([host("a", 2), host("b", 0)], vms, { keepFailoverCapacity: false, minActiveHosts: 2 }),
      ).kind,
    ).toBe("none");
  });

  it("waits while the fleet is unsettled", () => {
    const vms = [vmOn("a1", "a", 2)];
    expect(planConsolidation(fleet([host("a", 2), host("b", 0, { busy: true })], vms)).kind).toBe("wait");
    expect(
      planConsolidation(fleet([host("a", 2), host("b", 0)], vms, { unsettled: "migrations under way" })).kind,
    ).toBe("wait");
    expect(planConsolidation(fleet([host("a", 2), host("b", 0, { draining: true })], vms)).kind).toBe("wait");
  });

  it("powers a host on when VMs wait for capacity, and gives a host being emptied back first", () => {
    const vms = [vmOn("a1", "a", 30)];
    const waiting = [vmOn("big", "", 20)];
    const off = host("b", 0, { poweredOff: true });
    expect(planConsolidation(fleet([host("a", 30), off], vms, { waiting }))).toMatchObject({
      kind: "powerOn",
      host: "b",
    });
    expect(
      planConsolidation(fleet([host("a", 30), host("c", 0, { draining: true }), off], vms, { waiting })),
    ).toMatchObject({ kind: "cancelDrain", host: "c" });
  });

  it("powers a host on when the loss of one host could no longer be absorbed", () => {
    const vms = [vmOn("a1", "a", 20), vmOn("b1", "b", 20)];
    const step = planConsolidation(
      fleet([host("a", 20), host("b", 20), host("c", 0, { poweredOff: true })], vms, {
        failoverSufficient: false,
      }),
    );
    expect(step).toMatchObject({ kind: "powerOn", host: "c" });
  });
});

describe("activeHostsLowerBound", () => {
  it("is the fewest largest hosts whose capacity covers the demand, per resource", () => {
    const hosts = [host("a", 0), host("b", 0), host("c", 0)].map((h) => h.candidate);
    expect(activeHostsLowerBound(hosts, { cpuMilli: 1000, memoryBytes: 40 * GiB })).toBe(2);
    expect(activeHostsLowerBound(hosts, { cpuMilli: 33_000, memoryBytes: 1 * GiB })).toBe(3);
    expect(activeHostsLowerBound(hosts, { cpuMilli: 0, memoryBytes: 0 })).toBe(0);
  });
});
