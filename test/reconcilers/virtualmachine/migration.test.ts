/**
 * The migration rows of the VM decision (migration.ts): a running VM on a host in maintenance
 * moves, in three steps (intent, move, record), and every step survives a controller restart.
 */
import { describe, expect, it } from "vitest";
import type { VirtualMachine, VirtualMachineStatus } from "../../../src/api/types.js";
import type { DomainStateInfo } from "../../../src/providers/types.js";
import type { MigrationJobState } from "../../../src/reconcilers/migrations.js";
import { decideVM } from "../../../src/reconcilers/virtualmachine/decide.js";
import { MIGRATION_RETRY_MS } from "../../../src/reconcilers/virtualmachine/migration.js";
import { placementRequest } from "../../../src/reconcilers/virtualmachine/placement-request.js";
import { renderDomain } from "../../../src/reconcilers/virtualmachine/render.js";
import type { ObservedVM, OtherCopy } from "../../../src/reconcilers/virtualmachine/types.js";
import type { HostCandidate } from "../../../src/scheduler/placement.js";
import { vm } from "../../support/fixtures.js";

const NOW = new Date("2026-06-01T12:00:00Z");
const GiB = 1024 ** 3;
const running: DomainStateInfo = { state: "running", reason: "booted" };
const shutoff: DomainStateInfo = { state: "shutoff", reason: "shutdown" };

function candidate(name: string, schedulable = true): HostCandidate {
  return {
    name,
    labels: {},
    ready: true,
    schedulable,
    allocatable: { cpuMilli: 8000, memoryBytes: 16 * GiB },
    allocated: { cpuMilli: 0, memoryBytes: 0 },
    networks: new Set(),
    images: new Set(),
  };
}

function observe(
  v: VirtualMachine,
  o: {
    state?: DomainStateInfo;
    maintenance?: boolean;
    job?: MigrationJobState;
    copies?: OtherCopy[];
    candidates?: HostCandidate[];
  } = {},
): ObservedVM {
  const desired = renderDomain(v);
  const key = `${v.metadata.namespace}/${v.metadata.name}`;
  return {
    key,
    vm: v,
    desired,
    assignedHost: v.status?.host,
    hostHealth: "ready",
    domain: o.state ? { state: o.state, spec: desired } : undefined,
    otherCopies: o.copies ?? [],
    placement: {
      request: placementRequest(key, v),
      candidates: o.candidates ?? [candidate("a", false), candidate("b")],
      placed: [],
    },
    lastEventAt: undefined,
    hasFinalizer: true,
    ...(o.maintenance ? { hostDrain: "Maintenance" as const } : {}),
    ...(o.job ? { migrationJob: o.job } : {}),
  };
}

const types = (d: ReturnType<typeof decideVM>) => d.actions.map((a) => a.type);
const inProgress = (patch: Partial<NonNullable<VirtualMachineStatus["migration"]>> = {}) => ({
  reason: "Maintenance" as const,
  sourceHost: "a",
  targetHost: "b",
  startedAt: new Date(NOW.getTime() - 5_000).toISOString(),
  result: "InProgress" as const,
  ...patch,
});
const onA = () => vm("web").onHost("a").phase("Running");

describe("decideVM: migration off a host in maintenance", () => {
  it("leaves a running VM alone while its host is not in maintenance", () => {
    const d = decideVM(observe(onA().build(), { state: running }), NOW);
    expect(d.status.migration).toBeUndefined();
    expect(types(d)).not.toContain("migrate");
  });

  it("first records the intent (source, target, capacity held there) and moves nothing yet", () => {
    const d = decideVM(observe(onA().build(), { state: running, maintenance: true }), NOW);
    expect(d.actions).toEqual([{ type: "reserveIncoming", host: "b" }]);
    expect(d.status).toMatchObject({
      phase: "Migrating",
      host: "a",
      migration: { reason: "Maintenance", sourceHost: "a", targetHost: "b", result: "InProgress" },
    });
    expect(d.requeueAfterMs).toBe(0);
    expect(d.events.map((e) => e.reason)).toEqual(["Migrating"]);
  });

  it("starts the move once the intent is in status", () => {
    const v = onA().phase("Migrating").status({ migration: inProgress() }).build();
    const d = decideVM(observe(v, { state: running, maintenance: true }), NOW);
    expect(d.actions).toEqual([
      { type: "reserveIncoming", host: "b" },
      { type: "migrate", from: "a", to: "b", kind: "live" },
    ]);
  });

  it("moves cold when the VM does not allow live migration", () => {
    const v = onA()
      .spec({ migration: { live: false } })
      .phase("Migrating")
      .status({ migration: inProgress() })
      .build();
    const d = decideVM(observe(v, { state: running, maintenance: true }), NOW);
    expect(d.actions).toContainEqual({ type: "migrate", from: "a", to: "b", kind: "cold" });
  });

  it("reports progress while the move runs, and touches nothing", () => {
    const v = onA().phase("Migrating").status({ migration: inProgress() }).build();
    const d = decideVM(
      observe(v, {
        state: running,
        maintenance: true,
        job: { state: "running", kind: "live", to: "b", progress: 42 },
      }),
      NOW,
    );
    expect(d.actions).toEqual([]);
    expect(d.status.phase).toBe("Migrating");
    expect(d.status.migration?.progressPercent).toBe(42);
    expect(d.summary.message).toContain("42%");
  });

  it("never takes the arriving copy on the target for a stale one", () => {
    const v = onA().phase("Migrating").status({ migration: inProgress() }).build();
    const d = decideVM(
      observe(v, {
        state: running,
        maintenance: true,
        job: { state: "running", kind: "live", to: "b", progress: 10 },
        copies: [{ host: "b", reachable: true, running: true }],
      }),
      NOW,
    );
    expect(types(d)).not.toContain("destroy");
    expect(types(d)).not.toContain("undefine");
  });

  it("records success once the VM runs on the target (the runner moved its ledger entry)", () => {
    const v = onA().phase("Migrating").status({ migration: inProgress() }).build();
    const o = observe(v, {
      state: { state: "running", reason: "migrated" },
      job: { state: "succeeded", kind: "live", to: "b", finishedAt: NOW, seconds: 3.2 },
    });
    o.assignedHost = "b";
    const d = decideVM(o, NOW);
    expect(types(d)).toEqual(["releaseIncoming", "forgetMigration"]);
    expect(d.status).toMatchObject({
      phase: "Running",
      host: "b",
      migration: { result: "Succeeded", progressPercent: 100, finishedAt: NOW.toISOString() },
    });
    expect(d.migrated).toEqual({ reason: "Maintenance", result: "Succeeded", seconds: 3.2 });
    expect(d.events.map((e) => e.reason)).toEqual(["Migrated"]);
  });

  it("looks again, at the target, when the move finished while this pass looked at the source", () => {
    const v = onA().phase("Migrating").status({ migration: inProgress() }).build();
    // Read before the runner moved the ledger entry: still "on a", the domain gone from there.
    const d = decideVM(
      observe(v, {
        maintenance: true,
        job: { state: "succeeded", kind: "live", to: "b", finishedAt: NOW, seconds: 1 },
      }),
      NOW,
    );
    expect(d.actions).toEqual([]);
    expect(d.status.migration?.result).toBe("InProgress");
    expect(d.requeueAfterMs).toBe(0);
  });

  it("starts a cold-moved VM on its target from the same volumes", () => {
    const v = onA()
      .spec({ migration: { live: false } })
      .phase("Migrating")
      .status({ migration: inProgress() })
      .build();
    const o = observe(v, { job: { state: "succeeded", kind: "cold", to: "b", finishedAt: NOW, seconds: 9 } });
    o.assignedHost = "b";
    const d = decideVM(o, NOW);
    expect(d.actions).toEqual([
      { type: "releaseIncoming" },
      { type: "forgetMigration" },
      { type: "provisionDisks", host: "b" },
      { type: "define", host: "b" },
      { type: "start", host: "b", reason: "Migration" },
    ]);
    expect(d.drift).toBeUndefined();
  });

  it("records a failure, keeps the VM at the source, and tries again later", () => {
    const v = onA().phase("Migrating").status({ migration: inProgress() }).build();
    const d = decideVM(
      observe(v, {
        state: running,
        maintenance: true,
        job: { state: "failed", kind: "live", to: "b", finishedAt: NOW, error: "target refused" },
      }),
      NOW,
    );
    expect(types(d)).toEqual(["releaseIncoming", "forgetMigration"]);
    expect(d.status).toMatchObject({ phase: "Running", host: "a", migration: { result: "Failed" } });
    expect(d.events.map((e) => e.reason)).toEqual(["MigrationFailed"]);
    expect(d.requeueAfterMs).toBe(MIGRATION_RETRY_MS);
    // Within the retry delay the VM stays, said so as Degraded.
    const after = onA()
      .status({
        migration: { ...inProgress(), result: "Failed", finishedAt: NOW.toISOString(), message: "x" },
      })
      .build();
    const again = decideVM(
      observe(after, { state: running, maintenance: true }),
      new Date(NOW.getTime() + 1000),
    );
    expect(types(again)).not.toContain("reserveIncoming");
    expect(again.summary.degraded).toBe("DrainBlocked");
    const later = decideVM(
      observe(after, { state: running, maintenance: true }),
      new Date(NOW.getTime() + MIGRATION_RETRY_MS + 1),
    );
    expect(types(later)).toEqual(["reserveIncoming"]);
  });

  it("says why a VM cannot leave when no other host can take it, and keeps it running", () => {
    const d = decideVM(
      observe(onA().build(), { state: running, maintenance: true, candidates: [candidate("a", false)] }),
      NOW,
    );
    expect(types(d)).not.toContain("reserveIncoming");
    expect(d.status.phase).toBe("Running");
    expect(d.summary.degraded).toBe("DrainBlocked");
    expect(d.summary.message).toContain("no host can take the VM");
  });

  describe("after a controller restart (no job in memory)", () => {
    const v = () => onA().phase("Migrating").status({ migration: inProgress() }).build();
    it("adopts the copy on the target when the move finished meanwhile", () => {
      const d = decideVM(
        observe(v(), { maintenance: true, copies: [{ host: "b", reachable: true, running: true }] }),
        NOW,
      );
      expect(d.actions).toEqual([{ type: "reserve", host: "b" }]);
      expect(d.status.phase).toBe("Migrating");
    });
    it("moves again when the VM still runs at the source", () => {
      const d = decideVM(observe(v(), { state: running, maintenance: true }), NOW);
      expect(types(d)).toEqual(["reserveIncoming", "migrate"]);
    });
    it("gives the move up when the VM stopped at the source and is nowhere else", () => {
      const d = decideVM(observe(v(), { state: shutoff, maintenance: true }), NOW);
      expect(d.status.migration?.result).toBe("Aborted");
      expect(d.migrated?.result).toBe("Aborted");
    });
  });

  it("aborts the record when the source host fails during the move", () => {
    const v = onA().phase("Migrating").status({ migration: inProgress() }).build();
    const o = observe(v, {});
    o.hostHealth = "fenced";
    o.hostFailure = { lastHeartbeat: new Date(NOW.getTime() - 3000), fencedAt: NOW };
    const d = decideVM(o, NOW);
    expect(d.status.migration?.result).toBe("Aborted");
    expect(d.status.lastRecovery?.reason).toBe("HostFailure");
    expect(types(d)).toContain("releaseIncoming");
  });
});
