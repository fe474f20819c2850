/**
 * SnapshotPolicy decisions under a fake clock: schedule, missed runs after downtime, overlap,
 * group consistency, and retention (keepLast, maxAge, the last good snapshot, restores in use).
 */
import { describe, expect, it } from "vitest";
import type {
  SnapshotPolicy,
  SnapshotPolicySpec,
  VirtualMachineRestore,
  VirtualMachineSnapshot,
} from "../../../src/api/types.js";
import { cronTimes, decidePolicy, newestSnapshotAges } from "../../../src/reconcilers/snapshot/policy.js";
import { vm } from "../../support/fixtures.js";

const T = (s: string) => new Date(`2026-06-01T${s}Z`);

function policy(
  spec: Partial<SnapshotPolicySpec> = {},
  status: SnapshotPolicy["status"] = {},
): SnapshotPolicy {
  return {
    apiVersion: "virtwarden.io/v1alpha1",
    kind: "SnapshotPolicy",
    metadata: {
      name: "nightly",
      namespace: "default",
      generation: 1,
      creationTimestamp: "2026-06-01T00:00:00Z",
    },
    spec: { selector: { matchLabels: { tier: "db" } }, schedule: "0 * * * *", ...spec },
    status,
  };
}

function snap(
  name: string,
  at: string,
  phase: "Succeeded" | "Failed" | "InProgress",
  target: { vmName?: string; group?: string } = { vmName: "db-0" },
): VirtualMachineSnapshot {
  return {
    apiVersion: "virtwarden.io/v1alpha1",
    kind: "VirtualMachineSnapshot",
    metadata: { name, namespace: "default", creationTimestamp: `2026-06-01T${at}Z` },
    spec: { ...target, policy: "nightly" },
    status: { phase, ...(phase === "Succeeded" ? { creationTime: `2026-06-01T${at}Z` } : {}) },
  };
}

const restore = (snapshotName: string, phase?: "InProgress" | "Succeeded"): VirtualMachineRestore => ({
  apiVersion: "virtwarden.io/v1alpha1",
  kind: "VirtualMachineRestore",
  metadata: { name: `r-${snapshotName}`, namespace: "default" },
  spec: { snapshotName },
  ...(phase ? { status: { phase } } : {}),
});

const dbs = [
  vm("db-0").labels({ tier: "db" }).build(),
  vm("db-1").labels({ tier: "db" }).build(),
  vm("web").build(),
];

describe("SnapshotPolicy schedule", () => {
  it("computes the latest and next cron times, in the policy's time zone", () => {
    expect(cronTimes("0 * * * *", undefined, T("10:30:00"))).toEqual({
      prev: T("10:00:00"),
      next: T("11:00:00"),
    });
    expect(cronTimes("0 2 * * *", "Europe/Berlin", T("10:30:00")).prev).toEqual(T("00:00:00"));
  });

  it("snapshots every selected VM once per scheduled time", () => {
    const d = decidePolicy({ policy: policy(), vms: dbs, snapshots: [], restores: [], now: T("01:00:20") });
    expect(d.create.map((s) => s.metadata.name)).toEqual([
      "nightly-db-0-202606010100",
      "nightly-db-1-202606010100",
    ]);
    expect(d.create[0]?.spec).toEqual({ vmName: "db-0", type: "disk", policy: "nightly" });
    expect(d.create[0]?.metadata.labels).toEqual({ "virtwarden.io/policy": "nightly" });
    expect(d.status.lastScheduleTime).toBe(T("01:00:00").toISOString());
    expect(d.status.nextRunTime).toBe(T("02:00:00").toISOString());
    expect(d.requeueAfterMs).toBe(3_600_000 - 20_000);
    // Handled: the same time is not run twice.
    const again = decidePolicy({
      policy: policy({}, d.status),
      vms: dbs,
      snapshots: [],
      restores: [],
      now: T("01:05:00"),
    });
    expect(again.create).toEqual([]);
  });

  it("takes one catch-up snapshot after downtime (RunOnce), none with Skip", () => {
    const status = { lastScheduleTime: T("01:00:00").toISOString() };
    const now = T("05:30:00"); // down from 01:00 to 05:30: four runs missed
    const once = decidePolicy({ policy: policy({}, status), vms: dbs, snapshots: [], restores: [], now });
    expect(once.create).toHaveLength(2);
    expect(once.events.map((e) => e.reason)).toEqual(["MissedSchedule"]);
    expect(once.status.lastScheduleTime).toBe(T("05:00:00").toISOString());
    const skip = decidePolicy({
      policy: policy({ missedSchedule: "Skip" }, status),
      vms: dbs,
      snapshots: [],
      restores: [],
      now,
    });
    expect(skip.create).toEqual([]);
    expect(skip.status.lastScheduleTime).toBe(T("05:00:00").toISOString());
    // Within the starting deadline it is simply on time.
    const onTime = decidePolicy({
      policy: policy({ missedSchedule: "Skip", startingDeadlineSeconds: 3600 }, status),
      vms: dbs,
      snapshots: [],
      restores: [],
      now,
    });
    expect(onTime.create).toHaveLength(2);
  });

  it("does not pile up behind a snapshot still in progress", () => {
    const d = decidePolicy({
      policy: policy(),
      vms: dbs,
      snapshots: [snap("old", "00:30:00", "InProgress")],
      restores: [],
      now: T("01:00:05"),
    });
    expect(d.create.map((s) => s.spec.vmName)).toEqual(["db-1"]);
    expect(d.events.map((e) => e.reason)).toEqual(["Overlap"]);
  });

  it("takes one coordinated snapshot per VM group with consistency group", () => {
    const vms = [
      vm("a").labels({ tier: "db" }).spec({ group: "shop" }).build(),
      vm("b").labels({ tier: "db" }).spec({ group: "shop" }).build(),
      vm("c").labels({ tier: "db" }).build(),
    ];
    const d = decidePolicy({
      policy: policy({ consistency: "group" }),
      vms,
      snapshots: [],
      restores: [],
      now: T("01:00:00"),
    });
    expect(d.create.map((s) => s.spec)).toEqual([
      { group: "shop", type: "disk", policy: "nightly" },
      { vmName: "c", type: "disk", policy: "nightly" },
    ]);
  });

  it("does nothing while suspended, and reports an invalid schedule", () => {
    const s = decidePolicy({
      policy: policy({ suspend: true }),
      vms: dbs,
      snapshots: [],
      restores: [],
      now: T("01:00:00"),
    });
    expect(s.create).toEqual([]);
    expect(s.status.conditions?.find((c) => c.type === "Ready")?.reason).toBe("Suspended");
    const bad = decidePolicy({
      policy: policy({ schedule: "99 * * * *" }),
      vms: dbs,
      snapshots: [],
      restores: [],
      now: T("01:00:00"),
    });
    expect(bad.create).toEqual([]);
    expect(bad.status.conditions?.find((c) => c.type === "Ready")).toMatchObject({
      status: "False",
      reason: "InvalidSchedule",
    });
  });
});

describe("SnapshotPolicy retention", () => {
  const now = T("12:00:30");
  const hourly = ["06", "07", "08", "09", "10", "11"].map((h) => snap(`s${h}`, `${h}:00:00`, "Succeeded"));

  it("keeps the newest keepLast good snapshots", () => {
    const d = decidePolicy({
      policy: policy({ retention: { keepLast: 3 }, suspend: true }),
      vms: dbs,
      snapshots: hourly,
      restores: [],
      now,
    });
    expect(d.prune.sort()).toEqual(["s06", "s07", "s08"]);
    expect(d.status.snapshotsTaken).toBe(3);
    expect(d.status.lastSuccessfulTime).toBe(T("11:00:00").toISOString());
  });

  it("prunes by maxAge but never the newest good snapshot", () => {
    const d = decidePolicy({
      policy: policy({ retention: { maxAge: "150m" }, suspend: true }),
      vms: dbs,
      snapshots: hourly,
      restores: [],
      now,
    });
    expect(d.prune.sort()).toEqual(["s06", "s07", "s08", "s09"]);
    const old = [snap("ancient", "01:00:00", "Succeeded")];
    const only = decidePolicy({
      policy: policy({ retention: { maxAge: "1h" }, suspend: true }),
      vms: dbs,
      snapshots: old,
      restores: [],
      now,
    });
    expect(only.prune).toEqual([]);
  });

  it("never lets failed snapshots cost a good one; keeps a few failures for diagnosis", () => {
    const failures = ["07", "08", "09", "10", "11"].map((h) => snap(`f${h}`, `${h}:30:00`, "Failed"));
    const d = decidePolicy({
      policy: policy({ retention: { keepLast: 1 }, suspend: true }),
      vms: dbs,
      snapshots: [snap("good", "06:00:00", "Succeeded"), ...failures],
      restores: [],
      now,
    });
    expect(d.prune.sort()).toEqual(["f07", "f08"]);
    expect(d.status.conditions?.find((c) => c.type === "SnapshotsSucceeding")).toMatchObject({
      status: "False",
      reason: "SnapshotFailed",
    });
  });

  it("keeps a snapshot a pending restore needs", () => {
    const d = decidePolicy({
      policy: policy({ retention: { keepLast: 2 }, suspend: true }),
      vms: dbs,
      snapshots: hourly,
      restores: [restore("s06", "InProgress"), restore("s07", "Succeeded"), restore("s08")],
      now,
    });
    expect(d.prune.sort()).toEqual(["s07", "s09"]);
  });

  it("counts retention per VM", () => {
    const other = ["08", "09"].map((h) => snap(`o${h}`, `${h}:00:00`, "Succeeded", { vmName: "db-1" }));
    const d = decidePolicy({
      policy: policy({ retention: { keepLast: 1 }, suspend: true }),
      vms: dbs,
      snapshots: [...hourly, ...other],
      restores: [],
      now,
    });
    expect(d.prune.sort()).toEqual(["o08", "s06", "s07", "s08", "s09", "s10"]);
  });

  it("reports each policy's newest good snapshot age", () => {
    expect(newestSnapshotAges(hourly, now)).toEqual({ "default/nightly": 3630 });
  });
});
