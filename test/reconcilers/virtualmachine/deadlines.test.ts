/**
 * Bring-up deadlines as pure tables: the deadline module's rules, and how the VM decision and
 * the status after a failed act use them. The simulator scenarios are in deadlines-sim.test.ts.
 */
import { describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../../src/api/types.js";
import type { DomainStateInfo } from "../../../src/providers/types.js";
import {
  DEFAULT_DEADLINES_S,
  HOST_AVOID_MS,
  HOST_MISS_WINDOW_MS,
  hostDeadlineRecord,
  hostsAvoidedByVM,
  MAX_MISSES_KEPT,
  missesByHost,
  overdueBringUp,
  phaseDeadlinesMs,
  phaseStart,
  placingDeadlineMs,
  recordMiss,
  VM_AVOID_MS,
} from "../../../src/reconcilers/virtualmachine/deadlines.js";
import { decideVM } from "../../../src/reconcilers/virtualmachine/decide.js";
import { placementRequest } from "../../../src/reconcilers/virtualmachine/placement-request.js";
import { renderDomain } from "../../../src/reconcilers/virtualmachine/render.js";
import { nextStatus } from "../../../src/reconcilers/virtualmachine/status.js";
import type { ObservedVM } from "../../../src/reconcilers/virtualmachine/types.js";
import type { HostCandidate } from "../../../src/scheduler/placement.js";
import { vm } from "../../support/fixtures.js";

const NOW = new Date("2026-06-01T12:00:00Z");
const ago = (ms: number) => new Date(NOW.getTime() - ms).toISOString();
const GiB = 1024 ** 3;

function candidate(name: string, extra: Partial<HostCandidate> = {}): HostCandidate {
  return {
    name,
    labels: {},
    ready: true,
    schedulable: true,
    allocatable: { cpuMilli: 8000, memoryBytes: 16 * GiB },
    allocated: { cpuMilli: 0, memoryBytes: 0 },
    networks: new Set(),
    images: new Set(),
    ...extra,
  };
}

function observe(
  v: VirtualMachine,
  o: { domain?: DomainStateInfo; candidates?: HostCandidate[]; exclude?: string[] } = {},
): ObservedVM {
  const desired = renderDomain(v);
  const key = `${v.metadata.namespace}/${v.metadata.name}`;
  const request = placementRequest(key, v);
  if (o.exclude) request.excludeHosts = new Set(o.exclude);
  return {
    key,
    vm: v,
    desired,
    assignedHost: v.status?.host,
    hostHealth: v.status?.host ? "ready" : undefined,
    domain: o.domain ? { state: o.domain, spec: desired } : undefined,
    otherCopies: [],
    placement: { request, candidates: o.candidates ?? [candidate("a"), candidate("b")], placed: [] },
    lastEventAt: undefined,
    hasFinalizer: true,
  };
}

const types = (d: ReturnType<typeof decideVM>) => d.actions.map((a) => a.type);
const shutoff: DomainStateInfo = { state: "shutoff", reason: "unknown" };
const running: DomainStateInfo = { state: "running", reason: "booted" };
const disk = { name: "root", size: "1Gi" };

describe("deadlines: the module's rules", () => {
  it("defaults, and spec.deadlines overrides per phase", () => {
    expect(phaseDeadlinesMs(vm("a").build())).toEqual({
      PreparingDisks: 1_200_000,
      Defining: 120_000,
      Starting: 480_000,
    });
    expect(placingDeadlineMs(vm("a").build())).toBe(DEFAULT_DEADLINES_S.placing * 1000);
    const v = vm("a")
      .spec({ deadlines: { startingSeconds: 30, placingSeconds: 60 } })
      .build();
    expect(phaseDeadlinesMs(v)).toMatchObject({ Starting: 30_000, PreparingDisks: 1_200_000 });
    expect(placingDeadlineMs(v)).toBe(60_000);
  });

  it.each([
    ["within the deadline", 479_000, undefined],
    ["at the deadline exactly", 480_000, undefined],
    ["past it", 480_001, "Starting"],
  ])("overdueBringUp: Starting %s", (_what, elapsed, expected) => {
    const v = vm("a")
      .onHost("h")
      .status({ bringUp: { host: "h", phase: "Starting", since: ago(elapsed) } })
      .build();
    expect(overdueBringUp(v, "h", NOW)?.phase).toBe(expected);
  });

  it("overdueBringUp: a record of another host, none, or an unreadable time is not overdue", () => {
    const on = (b: VirtualMachine["status"]) =>
      vm("a")
        .onHost("h")
        .status(b ?? {})
        .build();
    expect(overdueBringUp(on({ bringUp: { host: "g", phase: "Starting", since: ago(1e9) } }), "h", NOW)).toBe(
      undefined,
    );
    expect(overdueBringUp(on({}), "h", NOW)).toBe(undefined);
    expect(
      overdueBringUp(on({ bringUp: { host: "h", phase: "Starting", since: "garbage" } }), "h", NOW),
    ).toBe(undefined);
  });

  it("phaseStart: a retry of the same phase on the same host keeps its clock; anything else starts now", () => {
    const since = ago(60_000);
    const prev = { host: "h", phase: "Starting" as const, since };
    expect(phaseStart(prev, "h", "Starting", NOW).toISOString()).toBe(since);
    expect(phaseStart(prev, "h", "Defining", NOW)).toEqual(NOW);
    expect(phaseStart(prev, "g", "Starting", NOW)).toEqual(NOW);
    expect(phaseStart(undefined, "h", "Starting", NOW)).toEqual(NOW);
  });

  it("recordMiss keeps the newest MAX_MISSES_KEPT, newest last", () => {
    let misses: ReturnType<typeof recordMiss> = [];
    for (let i = 0; i < 8; i++)
      misses = recordMiss(misses, { host: `h${i}`, phase: "Starting", at: ago(0), seconds: i });
    expect(misses).toHaveLength(MAX_MISSES_KEPT);
    expect(misses.map((m) => m.host)).toEqual(["h3", "h4", "h5", "h6", "h7"]);
  });

  it("a VM avoids the hosts of its own misses for VM_AVOID_MS", () => {
    const v = vm("a")
      .status({
        deadlineMisses: [
          { host: "old", phase: "Starting", at: ago(VM_AVOID_MS + 1), seconds: 1 },
          { host: "new", phase: "PreparingDisks", at: ago(VM_AVOID_MS - 1_000), seconds: 1 },
        ],
      })
      .build();
    expect(hostsAvoidedByVM(v, NOW)).toEqual(["new"]);
  });

  it("a host is avoided from the third miss within the hour, until HOST_AVOID_MS after the latest", () => {
    const m = (vmName: string, msAgo: number) => ({
      vm: vmName,
      phase: "Starting" as const,
      at: new Date(NOW.getTime() - msAgo),
    });
    expect(hostDeadlineRecord([], NOW)).toBe(undefined);
    expect(hostDeadlineRecord([m("a", 1_000), m("b", 2_000)], NOW)).toEqual({
      misses: 2,
      lastMiss: { vm: "a", phase: "Starting", at: ago(1_000) },
    });
    expect(hostDeadlineRecord([m("a", 1_000), m("b", 2_000), m("c", 3_000)], NOW)?.avoidUntil).toBe(
      new Date(NOW.getTime() - 1_000 + HOST_AVOID_MS).toISOString(),
    );
    // Three misses, but one outside the window: two count, not avoided.
    expect(
      hostDeadlineRecord([m("a", 1_000), m("b", 2_000), m("c", HOST_MISS_WINDOW_MS + 1)], NOW),
    ).toMatchObject({
      misses: 2,
    });
    expect(
      hostDeadlineRecord([m("a", 1_000), m("b", 2_000), m("c", HOST_MISS_WINDOW_MS + 1)], NOW)?.avoidUntil,
    ).toBe(undefined);
    // Three misses, the latest longer ago than the avoidance: counted, no longer avoided.
    const stale = [m("a", HOST_AVOID_MS + 1), m("b", HOST_AVOID_MS + 2), m("c", HOST_AVOID_MS + 3)];
    expect(hostDeadlineRecord(stale, NOW)).toMatchObject({ misses: 3 });
    expect(hostDeadlineRecord(stale, NOW)?.avoidUntil).toBe(undefined);
    // A miss stamped in the future (a clock step) is not counted.
    expect(hostDeadlineRecord([m("a", -60_000)], NOW)).toBe(undefined);
  });

  it("missesByHost reads every VM's records, each with its host", () => {
    const vms = [
      vm("x")
        .status({ deadlineMisses: [{ host: "h", phase: "Starting", at: ago(5), seconds: 9 }] })
        .build(),
      vm("y")
        .status({
          deadlineMisses: [
            { host: "g", phase: "Defining", at: ago(7), seconds: 9 },
            { host: "g", phase: "Starting", at: "garbage", seconds: 9 },
          ],
        })
        .build(),
      vm("z").build(),
    ];
    expect([...missesByHost(vms)]).toEqual([
      { host: "h", miss: { vm: "default/x", phase: "Starting", at: new Date(ago(5)) } },
      { host: "g", miss: { vm: "default/y", phase: "Defining", at: new Date(ago(7)) } },
    ]);
  });
});

describe("deadlines: the VM decision", () => {
  it("a fresh placement is a bring-up: act times it; the status assumes success (no record)", () => {
    const d = decideVM(
      observe(
        vm("w")
          .spec({ disks: [disk] })
          .build(),
      ),
      NOW,
    );
    expect(types(d)).toEqual(["reserve", "provisionDisks", "define", "start"]);
    expect(d.bringUp).toMatchObject({
      host: "a",
      prior: undefined,
      initial: { host: "a", phase: "PreparingDisks" },
    });
    expect(d.status.bringUp).toBeUndefined();
  });

  it("a start that failed is retried under the same record, and not called drift", () => {
    const since = ago(60_000);
    const v = vm("w")
      .spec({ disks: [disk] })
      .onHost("a")
      .phase("Starting")
      .status({
        specHash: renderDomain(
          vm("w")
            .spec({ disks: [disk] })
            .build(),
        ).ownership?.specHash,
        bringUp: { host: "a", phase: "Starting", since },
      })
      .build();
    const d = decideVM(observe(v, { domain: shutoff }), NOW);
    expect(types(d)).toEqual(["start"]);
    expect(d.drift).toBeUndefined();
    expect(d.bringUp?.prior).toEqual({ host: "a", phase: "Starting", since });
  });

  it("disks that failed to be prepared are retried as the bring-up, not as a domain removed behind our back", () => {
    const v = vm("w")
      .spec({ disks: [disk] })
      .onHost("a")
      .status({ specHash: "x", bringUp: { host: "a", phase: "PreparingDisks", since: ago(1_000) } })
      .build();
    const d = decideVM(observe(v), NOW);
    expect(types(d)).toEqual(["provisionDisks", "define", "start"]);
    expect(d.drift).toBeUndefined();
    expect(d.actions.find((a) => a.type === "start")).toMatchObject({ reason: "Start" });
  });

  it("past the deadline: cleaned up on that host (domain and the disks it made), released, the miss recorded", () => {
    const v = vm("w")
      .spec({
        disks: [disk, { name: "keep", size: "1Gi", deletionPolicy: "Retain" }],
        deadlines: { startingSeconds: 60 },
      })
      .onHost("a")
      .phase("Starting")
      .status({ bringUp: { host: "a", phase: "Starting", since: ago(61_000) } })
      .build();
    const d = decideVM(observe(v, { domain: shutoff }), NOW);
    expect(d.actions).toEqual([
      { type: "destroy", host: "a" },
      { type: "undefine", host: "a" },
      { type: "deleteDisks", host: "a", volumes: [{ pool: "default", name: "default_w-root.qcow2" }] },
      { type: "release" },
    ]);
    expect(d.status.host).toBeUndefined();
    expect(d.status.bringUp).toBeUndefined();
    expect(d.status.phase).toBe("Pending");
    expect(d.status.deadlineMisses).toEqual([
      { host: "a", phase: "Starting", at: NOW.toISOString(), seconds: 61 },
    ]);
    expect(d.summary).toMatchObject({ scheduled: false, synced: false, reason: "DeadlineExceeded" });
    expect(d.events).toEqual([
      expect.objectContaining({
        type: "Warning",
        reason: "DeadlineExceeded",
        note: expect.stringMatching(
          /^Starting on a did not finish within its deadline of 1m0s \(1m1s\): cleaned up there \(kept default\/default_w-keep.qcow2: Retain\)/,
        ),
      }),
    ]);
    expect(d.requeueAfterMs).toBe(0);
  });

  it("found running past the deadline (the status after its start was lost): brought up, kept, record cleared", () => {
    const v = vm("w")
      .onHost("a")
      .phase("Running")
      .status({ bringUp: { host: "a", phase: "Starting", since: ago(3_600_000) } })
      .build();
    const d = decideVM(observe(v, { domain: running }), NOW);
    expect(types(d)).not.toContain("destroy");
    expect(d.status.host).toBe("a");
    expect(d.status.bringUp).toBeUndefined();
  });

  it("the next pass places it elsewhere: the host it missed on is excluded (observe.ts adds it)", () => {
    const v = vm("w")
      .status({
        phase: "Pending",
        deadlineMisses: [{ host: "a", phase: "Starting", at: ago(1_000), seconds: 61 }],
      })
      .build();
    const d = decideVM(observe(v, { exclude: hostsAvoidedByVM(v, NOW) }), NOW);
    expect(d.status.host).toBe("b");
    // Every host excluded or avoided: unschedulable, said why.
    const stuck = decideVM(
      observe(v, { exclude: ["a"], candidates: [candidate("a"), candidate("b", { avoided: "missed" })] }),
      NOW,
    );
    expect(stuck.summary.reason).toBe("Unschedulable");
    expect(stuck.summary.message).toMatch(
      /excluded.*missed bring-up deadlines lately|missed bring-up deadlines lately.*excluded/,
    );
  });
});

describe("deadlines: the status after a failed act", () => {
  const at = (
    d: ReturnType<typeof decideVM>,
    v: VirtualMachine,
    progress?: Parameters<typeof nextStatus>[0]["progress"],
  ) =>
    nextStatus({ vm: v, decision: d, error: new Error("boom"), ...(progress ? { progress } : {}), now: NOW });

  it("records the phase act reached and when it began", () => {
    const v = vm("w")
      .spec({ disks: [disk] })
      .build();
    const d = decideVM(observe(v), NOW);
    const s = at(d, v, { phase: "Starting", since: new Date(NOW.getTime() + 5_000) });
    expect(s.bringUp).toEqual({
      host: "a",
      phase: "Starting",
      since: new Date(NOW.getTime() + 5_000).toISOString(),
    });
    expect(s.phase).toBe("Starting");
    expect(s.host).toBe("a");
  });

  it("failed before any bring-up action: the bring-up is recorded from its first phase, now", () => {
    const v = vm("w")
      .spec({ disks: [disk] })
      .noFinalizer()
      .build();
    const d = decideVM({ ...observe(v), hasFinalizer: false }, NOW);
    expect(at(d, v).bringUp).toEqual({ host: "a", phase: "PreparingDisks", since: NOW.toISOString() });
  });

  it("a retry that fails again keeps the first record when it got no further", () => {
    const since = ago(30_000);
    const v = vm("w")
      .onHost("a")
      .phase("Starting")
      .status({ bringUp: { host: "a", phase: "Starting", since } })
      .build();
    const d = decideVM(observe(v, { domain: shutoff }), NOW);
    expect(at(d, v).bringUp).toEqual({ host: "a", phase: "Starting", since });
  });

  it("an abandonment that fails half-way leaves the status as it was: still on that host, tried again", () => {
    const v = vm("w")
      .spec({ deadlines: { startingSeconds: 1 } })
      .onHost("a")
      .phase("Starting")
      .status({ bringUp: { host: "a", phase: "Starting", since: ago(5_000) } })
      .build();
    const d = decideVM(observe(v, { domain: shutoff }), NOW);
    expect(d.summary.reason).toBe("DeadlineExceeded");
    const s = at(d, v);
    expect(s.host).toBe("a");
    expect(s.bringUp).toEqual(v.status?.bringUp);
    expect(s.deadlineMisses).toBeUndefined();
  });
});
