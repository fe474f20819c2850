/**
 * The SnapshotPolicy reconciler: on its cron schedule, creates a VirtualMachineSnapshot for each
 * selected VM (consistency perVM) or for each VM group among them (consistency group: one
 * coordinated snapshot per VirtualMachine.spec.group; selected VMs without a group are taken on
 * their own), and prunes by retention. The snapshots do the work (snapshot.ts).
 *
 * decidePolicy is pure (schedule, missed runs, retention): every rule is a row in
 * test/reconcilers/snapshot/policy.test.ts, under a fake clock.
 *
 * - Schedule: cron (cron-parser) in spec.timeZone (default UTC). The latest scheduled time not yet
 *   handled is run when it is at most startingDeadlineSeconds (default 600) old. Older (the
 *   controller was down): missedSchedule RunOnce takes one catch-up snapshot now, Skip records the
 *   time as handled and waits for the next. A target whose previous snapshot is still in progress
 *   is not snapshotted again.
 * - Retention, per VM or group, counting only Succeeded snapshots: keep the newest keepLast and
 *   those younger than maxAge; never the newest good one (a failed run never costs the last good
 *   snapshot), never one a Pending or InProgress restore names. Failed snapshots: the newest
 *   FAILED_KEPT stay for diagnosis.
 * - schedule auto: each target on its own interval from its checkpoint cost and its hosts' MTBF
 *   (cadence.ts, decideCadence); an overdue target is taken at once (missedSchedule and
 *   startingDeadlineSeconds apply to cron schedules only). Per-target inputs in status.cadence.
 * - Deleting a policy leaves its snapshots: they are the user's data.
 */
import { CronExpressionParser } from "cron-parser";
import { setCondition } from "../../api/conditions.js";
import type {
  Host,
  SnapshotCadence,
  SnapshotPolicy,
  SnapshotPolicyStatus,
  VirtualMachine,
  VirtualMachineRestore,
  VirtualMachineSnapshot,
  VMRecoveryRecord,
} from "../../api/types.js";
import { API_VERSION } from "../../api/types.js";
import type { ReconcileResult, Reconciler } from "../../controller/outcome.js";
import { matchesSelector } from "../../scheduler/placement.js";
import { jsonEqual } from "../../store/equal.js";
import type { ReconcilerContext } from "../context.js";
import { COST_SAMPLES, decideCadence, resolveAuto } from "./cadence.js";

export const POLICY_LABEL = "virtwarden.io/policy";
export const FAILED_KEPT = 3;
const DEFAULT_DEADLINE_S = 600;

export interface PolicyInputs {
  policy: SnapshotPolicy;
  /** VMs of the policy's namespace. */
  vms: VirtualMachine[];
  /** This policy's snapshots. */
  snapshots: VirtualMachineSnapshot[];
  /** Restores of the policy's namespace. */
  restores: VirtualMachineRestore[];
  /** Hosts, for schedule auto (their status.reliability); none: every MTBF is assumed. */
  hosts?: Host[];
  now: Date;
}

/** The schedule that takes each target's interval from cadence.ts. */
export const AUTO_SCHEDULE = "auto";

export interface PolicyEvent {
  type: "Normal" | "Warning";
  reason: string;
  note: string;
}

export interface PolicyDecision {
  create: VirtualMachineSnapshot[];
  /** Names of snapshots to delete. */
  prune: string[];
  status: SnapshotPolicyStatus;
  events: PolicyEvent[];
  requeueAfterMs: number | undefined;
}

/** The snapshot target a snapshot belongs to: `vm/<name>` or `group/<name>`. */
export const targetOf = (s: VirtualMachineSnapshot): string =>
  s.spec.vmName ? `vm/${s.spec.vmName}` : `group/${s.spec.group}`;

const takenAt = (s: VirtualMachineSnapshot): number =>
  new Date(s.status?.creationTime ?? s.metadata.creationTimestamp ?? 0).getTime();

/** cron time in a DNS-label-friendly stamp: 202611250930. */
const stamp = (d: Date): string => d.toISOString().slice(0, 16).replace(/[-T:]/g, "");

/** What a checkpoint cost, in seconds, by costFrom (see cadence.ts); undefined: not recorded. */
export function checkpointCost(s: VirtualMachineSnapshot, costFrom: "pause" | "total"): number | undefined {
  const st = s.status;
  if (st?.phase !== "Succeeded") return undefined;
  return costFrom === "pause"
    ? (st.pauseWindowSeconds ?? st.durationSeconds)
    : (st.durationSeconds ?? st.pauseWindowSeconds);
}

/**
 * Host status.reliability.mtbfSeconds (host/reliability.ts), read defensively: status may come
 * from an older controller or a hand edit in Kubernetes mode.
 */
export function measuredMtbf(host: Host | undefined): number | undefined {
  const m: unknown = host?.status?.reliability?.mtbfSeconds;
  return typeof m === "number" && Number.isFinite(m) && m > 0 ? m : undefined;
}

/**
 * When a target last resumed from one of its checkpoints (cadence.ts's resumedAt): every VM of it
 * recovered (Succeeded) from the same checkpoint of this policy's; the latest of their finishes.
 * Otherwise undefined: a member that kept running holds work no checkpoint has.
 */
export function resumedFromCheckpoint(
  recoveries: (VMRecoveryRecord | undefined)[],
  checkpoints: Set<string>,
): Date | undefined {
  const first = recoveries[0]?.checkpoint;
  if (first === undefined || !checkpoints.has(first)) return undefined;
  let latest: number | undefined;
  for (const r of recoveries) {
    const t = r?.finishedAt !== undefined ? Date.parse(r.finishedAt) : Number.NaN;
    if (r?.result !== "Succeeded" || r.checkpoint !== first || !Number.isFinite(t)) return undefined;
    latest = Math.max(latest ?? t, t);
  }
  return latest !== undefined ? new Date(latest) : undefined;
}

export function parseDuration(s: string): number {
  const m = /^([0-9]+)(m|h|d|w)$/.exec(s);
  if (!m) throw new Error(`invalid duration ${s}`);
  const unit = { m: 60, h: 3600, d: 86_400, w: 604_800 }[m[2] as "m" | "h" | "d" | "w"];
  return Number(m[1]) * unit * 1000;
}

/** The latest scheduled time at or before `now`, and the next one after it. */
export function cronTimes(
  schedule: string,
  timeZone: string | undefined,
  now: Date,
): { prev: Date; next: Date } {
  const tz = timeZone ?? "UTC";
  const next = CronExpressionParser.parse(schedule, { currentDate: now, tz }).next().toDate();
  const prev = CronExpressionParser.parse(schedule, { currentDate: new Date(now.getTime() + 1), tz })
    .prev()
    .toDate();
  return { prev, next };
}

export function decidePolicy(input: PolicyInputs): PolicyDecision {
  const { policy, now } = input;
  const spec = policy.spec;
  const prevStatus = policy.status ?? {};
  const status: SnapshotPolicyStatus = { ...prevStatus };
  const events: PolicyEvent[] = [];
  const create: VirtualMachineSnapshot[] = [];
  const gen = policy.metadata.generation;
  let conditions = status.conditions ?? [];
  const cond = (type: string, ok: boolean, reason: string, message: string) => {
    conditions = setCondition(
      conditions,
      { type, status: ok ? "True" : "False", reason, message, observedGeneration: gen },
      now,
    );
  };

  const auto = spec.schedule === AUTO_SCHEDULE;
  let times: { prev: Date; next: Date } | undefined;
  try {
    if (auto) resolveAuto(spec.auto);
    else times = cronTimes(spec.schedule, spec.timeZone, now);
  } catch (e) {
    cond(
      "Ready",
      false,
      "InvalidSchedule",
      `schedule ${spec.schedule}: ${e instanceof Error ? e.message : e}`,
    );
    status.conditions = conditions;
    delete status.nextRunTime;
    delete status.cadence;
    return { create, prune: [], status, events, requeueAfterMs: undefined };
  }
  if (times) status.nextRunTime = times.next.toISOString();
  status.observedGeneration = gen;

  // --- targets --------------------------------------------------------------------------------
  const selected = input.vms
    .filter((v) => !v.metadata.deletionTimestamp && matchesSelector(v.metadata.labels ?? {}, spec.selector))
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const targets = new Map<string, { vmName?: string; group?: string }>();
  /** The hosts each target's VMs run on (schedule auto's MTBF). */
  const targetHosts = new Map<string, string[]>();
  /** Each target's VMs' last recoveries (schedule auto's resumedAt). */
  const targetRecoveries = new Map<string, (VMRecoveryRecord | undefined)[]>();
  for (const v of selected) {
    const key =
      spec.consistency === "group" && v.spec.group ? `group/${v.spec.group}` : `vm/${v.metadata.name}`;
    targets.set(key, key.startsWith("group/") ? { group: v.spec.group } : { vmName: v.metadata.name });
    const hosts = targetHosts.get(key) ?? [];
    if (v.status?.host) hosts.push(v.status.host);
    targetHosts.set(key, hosts);
    targetRecoveries.set(key, [...(targetRecoveries.get(key) ?? []), v.status?.lastRecovery]);
  }
  const live = input.snapshots.filter((s) => !s.metadata.deletionTimestamp);
  const byTarget = new Map<string, VirtualMachineSnapshot[]>();
  for (const s of live) {
    const list = byTarget.get(targetOf(s)) ?? [];
    list.push(s);
    byTarget.set(targetOf(s), list);
  }
  for (const list of byTarget.values()) list.sort((a, b) => takenAt(b) - takenAt(a));

  // --- schedule -------------------------------------------------------------------------------
  const name = policy.metadata.name;
  const busyTarget = (target: string): boolean => {
    const busy = (byTarget.get(target) ?? []).some(
      (s) => s.status?.phase !== "Succeeded" && s.status?.phase !== "Failed",
    );
    if (busy)
      events.push({
        type: "Warning",
        reason: "Overlap",
        note: `${target}: previous snapshot still in progress; skipped`,
      });
    return busy;
  };
  const snapshotFor = (t: { vmName?: string; group?: string }, due: Date): VirtualMachineSnapshot => {
    const suffix = t.vmName ? t.vmName : `group-${t.group}`;
    return {
      apiVersion: API_VERSION,
      kind: "VirtualMachineSnapshot",
      metadata: {
        name: `${name}-${suffix}-${stamp(due)}`.slice(0, 253),
        namespace: policy.metadata.namespace ?? "default",
        labels: { [POLICY_LABEL]: name },
      },
      spec: { ...t, type: spec.type ?? "disk", policy: name },
    };
  };
  let untilNextMs: number | undefined;
  if (auto) {
    // Each target on its own cadence (cadence.ts); a late one is taken at once.
    const hostsByName = new Map((input.hosts ?? []).map((h) => [h.metadata.name, h]));
    const costFrom = spec.auto?.costFrom ?? "pause";
    const cadence: SnapshotCadence[] = [];
    let latestDue: Date | undefined;
    for (const [target, t] of [...targets].sort(([a], [b]) => a.localeCompare(b))) {
      const list = byTarget.get(target) ?? [];
      const d = decideCadence({
        auto: spec.auto,
        target,
        hosts: (targetHosts.get(target) ?? []).map((h) => {
          const m = measuredMtbf(hostsByName.get(h));
          return m !== undefined ? { name: h, mtbfSeconds: m } : { name: h };
        }),
        costSamples: list
          .map((s) => checkpointCost(s, costFrom))
          .filter((c): c is number => c !== undefined)
          .slice(0, COST_SAMPLES),
        lastCheckpoint: list[0] ? new Date(takenAt(list[0])) : undefined,
        resumedAt: resumedFromCheckpoint(
          targetRecoveries.get(target) ?? [],
          new Set(list.map((s) => s.metadata.name)),
        ),
        firstDue: new Date(policy.metadata.creationTimestamp ?? now.toISOString()),
        now,
      });
      cadence.push(d.status);
      if (!spec.suspend && d.due && !busyTarget(target)) {
        create.push(snapshotFor(t, d.due));
        if (!latestDue || d.due > latestDue) latestDue = d.due;
      }
      const next = d.status.nextRunTime ? new Date(d.status.nextRunTime).getTime() : undefined;
      // A due one just created is next looked at when it finishes (its watch wakes the policy).
      if (next !== undefined && !d.due)
        untilNextMs = Math.min(untilNextMs ?? Number.POSITIVE_INFINITY, next - now.getTime());
    }
    status.cadence = cadence;
    const nexts = cadence.flatMap((c) => (c.nextRunTime ? [c.nextRunTime] : [])).sort();
    if (nexts[0]) status.nextRunTime = nexts[0];
    else delete status.nextRunTime;
    if (latestDue) {
      status.lastScheduleTime = latestDue.toISOString();
      status.lastRunTime = now.toISOString();
    }
    if (spec.suspend) cond("Ready", true, "Suspended", "suspended: no snapshots are taken");
    else
      cond(
        "Ready",
        true,
        "Scheduled",
        `schedule auto: ${cadence.length} target(s), next run ${status.nextRunTime ?? "when one is placed"}`,
      );
  } else if (times) {
    delete status.cadence;
    const anchor = new Date(
      prevStatus.lastScheduleTime ?? policy.metadata.creationTimestamp ?? now.toISOString(),
    );
    const due = times.prev.getTime() > anchor.getTime() ? times.prev : undefined;
    untilNextMs = times.next.getTime() - now.getTime();
    if (spec.suspend) {
      cond("Ready", true, "Suspended", "suspended: no snapshots are taken");
    } else {
      cond("Ready", true, "Scheduled", `next run ${status.nextRunTime}`);
      if (due) {
        const deadlineMs = (spec.startingDeadlineSeconds ?? DEFAULT_DEADLINE_S) * 1000;
        const late = now.getTime() - due.getTime() > deadlineMs;
        status.lastScheduleTime = due.toISOString();
        if (late && (spec.missedSchedule ?? "RunOnce") === "Skip") {
          events.push({
            type: "Warning",
            reason: "MissedSchedule",
            note: `run of ${due.toISOString()} missed by more than ${deadlineMs / 1000}s: skipped (missedSchedule Skip)`,
          });
        } else {
          if (late)
            events.push({
              type: "Warning",
              reason: "MissedSchedule",
              note: `run of ${due.toISOString()} missed: one catch-up snapshot now (missedSchedule RunOnce)`,
            });
          status.lastRunTime = now.toISOString();
          for (const [target, t] of targets) if (!busyTarget(target)) create.push(snapshotFor(t, due));
        }
      }
    }
  }

  // --- retention ------------------------------------------------------------------------------
  const protectedNames = new Set(
    input.restores
      .filter((r) => r.status?.phase !== "Succeeded" && r.status?.phase !== "Failed")
      .map((r) => r.spec.snapshotName),
  );
  const prune: string[] = [];
  const keepLast = spec.retention?.keepLast;
  const maxAgeMs = spec.retention?.maxAge ? parseDuration(spec.retention.maxAge) : undefined;
  for (const list of byTarget.values()) {
    const good = list.filter((s) => s.status?.phase === "Succeeded");
    good.forEach((s, i) => {
      if (i === 0 || protectedNames.has(s.metadata.name)) return; // the newest good one stays
      const tooMany = keepLast !== undefined && i >= keepLast;
      const tooOld = maxAgeMs !== undefined && now.getTime() - takenAt(s) > maxAgeMs;
      if (tooMany || tooOld) prune.push(s.metadata.name);
    });
    list
      .filter((s) => s.status?.phase === "Failed")
      .slice(FAILED_KEPT)
      .forEach((s) => {
        if (!protectedNames.has(s.metadata.name)) prune.push(s.metadata.name);
      });
  }

  // --- status ---------------------------------------------------------------------------------
  const kept = live.filter((s) => !prune.includes(s.metadata.name));
  status.snapshotsTaken = kept.filter((s) => s.status?.phase === "Succeeded").length;
  status.snapshotsFailed = kept.filter((s) => s.status?.phase === "Failed").length;
  const newestGood = kept
    .filter((s) => s.status?.phase === "Succeeded")
    .sort((a, b) => takenAt(b) - takenAt(a));
  if (newestGood[0]) status.lastSuccessfulTime = new Date(takenAt(newestGood[0])).toISOString();
  const newestGroup = newestGood.find((s) => s.status?.pauseWindowSeconds !== undefined);
  if (newestGroup) status.lastPauseWindowSeconds = newestGroup.status?.pauseWindowSeconds;
  const failing: string[] = [];
  for (const [target, list] of byTarget) {
    const newestDone = list.find((s) => s.status?.phase === "Succeeded" || s.status?.phase === "Failed");
    if (newestDone?.status?.phase === "Failed")
      failing.push(`${target}: ${newestDone.status.error ?? "failed"}`);
  }
  if (failing.length > 0) cond("SnapshotsSucceeding", false, "SnapshotFailed", failing.join("; "));
  else cond("SnapshotsSucceeding", true, "Succeeded", "the latest snapshot of every target succeeded");
  status.conditions = conditions;

  return {
    create,
    prune,
    status,
    events,
    requeueAfterMs: spec.suspend ? 60_000 : Math.min(Math.max(untilNextMs ?? 3_600_000, 1_000), 3_600_000),
  };
}

export class SnapshotPolicyReconciler implements Reconciler {
  readonly name = "snapshotpolicy";

  constructor(private readonly ctx: ReconcilerContext) {}

  private reportInterval(policy: SnapshotPolicy, ns: string, status: SnapshotPolicyStatus): void {
    const name = `${ns}/${policy.metadata.name}`;
    // Each policy's series start at 0, so the first failure is an increase() an alert sees.
    for (const result of ["succeeded", "failed"]) this.ctx.metrics.snapshots.inc({ policy: name, result }, 0);
    const s = intervalSeconds(policy, status, this.ctx.now());
    if (s !== undefined)
      this.ctx.metrics.snapshotPolicyInterval.set({ policy: `${ns}/${policy.metadata.name}` }, s);
  }

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const { store } = this.ctx;
    const policy = store.get("SnapshotPolicy", key);
    if (!policy || policy.metadata.deletionTimestamp) {
      this.ctx.metrics.snapshotPolicyInterval.remove({ policy: key });
      return undefined;
    }
    const ns = policy.metadata.namespace ?? "default";
    const inNs = <T extends { metadata: { namespace?: string } }>(o: T) =>
      (o.metadata.namespace ?? "default") === ns;
    const d = decidePolicy({
      policy,
      vms: store.list("VirtualMachine").filter(inNs),
      snapshots: store
        .list("VirtualMachineSnapshot")
        .filter((s) => inNs(s) && s.spec.policy === policy.metadata.name),
      restores: store.list("VirtualMachineRestore").filter(inNs),
      ...(policy.spec.schedule === AUTO_SCHEDULE ? { hosts: store.list("Host") } : {}),
      now: this.ctx.now(),
    });
    const regarding = {
      kind: "SnapshotPolicy" as const,
      namespace: ns,
      name: policy.metadata.name,
      uid: policy.metadata.uid,
    };
    this.reportInterval(policy, ns, d.status);
    for (const s of d.create) {
      if (store.get("VirtualMachineSnapshot", `${ns}/${s.metadata.name}`)) continue;
      await store.create(s);
      store.recordEvent({
        regarding,
        type: "Normal",
        reason: "SnapshotCreated",
        action: "Snapshot",
        note: s.metadata.name,
      });
    }
    for (const name of d.prune) {
      await store.delete("VirtualMachineSnapshot", `${ns}/${name}`);
      store.recordEvent({ regarding, type: "Normal", reason: "SnapshotPruned", action: "Prune", note: name });
    }
    for (const e of d.events) store.recordEvent({ regarding, action: "Schedule", ...e });
    if (!jsonEqual(d.status, policy.status ?? {})) await store.updateStatus(policy, d.status);
    return d.requeueAfterMs !== undefined ? { requeueAfterMs: d.requeueAfterMs } : undefined;
  }
}

/**
 * The policy's schedule interval, for staleness alerts (two periods averaged: cron can vary).
 * schedule auto: the longest of its targets' intervals, so no target's staleness alert fires early.
 */
function intervalSeconds(
  policy: SnapshotPolicy,
  status: SnapshotPolicyStatus,
  now: Date,
): number | undefined {
  if (policy.spec.schedule === AUTO_SCHEDULE) {
    const all = (status.cadence ?? []).flatMap((c) =>
      c.intervalSeconds !== undefined ? [c.intervalSeconds] : [],
    );
    return all.length > 0 ? Math.max(...all) : undefined;
  }
  try {
    const { prev, next } = cronTimes(policy.spec.schedule, policy.spec.timeZone, now);
    const following = cronTimes(policy.spec.schedule, policy.spec.timeZone, next).next;
    return (following.getTime() - prev.getTime()) / 2000;
  } catch {
    return undefined; // an invalid schedule is reported in the policy's status
  }
}

/** Age of each policy's newest succeeded snapshot, for virtwarden_snapshot_newest_age_seconds. */
export function newestSnapshotAges(snapshots: VirtualMachineSnapshot[], now: Date): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of snapshots) {
    if (!s.spec.policy || s.status?.phase !== "Succeeded") continue;
    const key = `${s.metadata.namespace ?? "default"}/${s.spec.policy}`;
    const age = (now.getTime() - takenAt(s)) / 1000;
    if (out[key] === undefined || age < (out[key] as number)) out[key] = age;
  }
  return out;
}
