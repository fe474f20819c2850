/**
 * The migration part of the VM decision (pure, like decide.ts): a running VM on a Host in
 * maintenance moves to another host, live unless its spec forbids (then cold: shut down here,
 * started there). The move is a three-step affair so that a crash anywhere leaves a state the
 * next reconcile understands:
 *   1. intent: status.migration InProgress with source and target, capacity held on the target
 *      (nothing moves until this status is written);
 *   2. move: the MigrationRunner does it in the background; reconciles report its progress;
 *   3. record: Succeeded (the VM is assigned to the target) or Failed (it stays at the source;
 *      tried again at a later pass while the host is in maintenance).
 * While status.migration is InProgress, the copy on the target is the VM's, never a stale copy.
 * After a controller restart (no job in memory) the hosts tell: running at the source -> move
 * again; at the target only -> it arrived; cold and gone from the source -> start it there.
 */
import type { RunStrategy, VirtualMachineStatus } from "../../api/types.js";
import { planPlacement } from "../../scheduler/placement.js";
import type { ObservedVM, VMDecision } from "./types.js";

export type MigrationVerdict =
  | { kind: "decided"; decision: VMDecision }
  | { kind: "blocked"; message: string }
  | { kind: "none" };

/** After a failed move, the next attempt waits this long (the host stays in maintenance). */
export const MIGRATION_RETRY_MS = 60_000;
/** Progress is reported this often while a move runs. */
export const MIGRATION_POLL_MS = 1_000;

type Migration = NonNullable<VirtualMachineStatus["migration"]>;

function isRunning(o: ObservedVM): boolean {
  if (o.domain === undefined || o.domain === "unknown") return false;
  const s = o.domain.state.state;
  return s === "running" || s === "blocked" || s === "paused";
}

const iso = (d: Date) => d.toISOString();

/** Whether the VM moves live (default) or cold. */
export function migrationKind(o: ObservedVM): "live" | "cold" {
  return o.vm.spec.migration?.live === false ? "cold" : "live";
}

/**
 * Called for a placed VM whose host answers and whose domain was read. `decided` replaces the
 * rest of the decision; `blocked` says why a VM that should leave cannot (it stays, and runs).
 */
export function decideMigration(
  d: VMDecision,
  o: ObservedVM,
  now: Date,
  strategy: RunStrategy,
  host: string,
): MigrationVerdict {
  const prev = o.vm.status ?? {};
  const m = prev.migration;
  if (m?.result === "InProgress") return { kind: "decided", decision: continueMigration(d, o, now, m, host) };
  const why = o.hostDrain;
  if (!why || !isRunning(o)) return { kind: "none" };
  const because =
    why === "Maintenance"
      ? `host ${host} is in maintenance`
      : `host ${host} is being emptied to power it off`;
  if (strategy === "Halted") return { kind: "none" }; // it is being stopped anyway
  if (
    m?.result === "Failed" &&
    m.finishedAt &&
    now.getTime() - new Date(m.finishedAt).getTime() < MIGRATION_RETRY_MS
  )
    return { kind: "blocked", message: `${because}; the last move failed: ${m.message ?? ""}` };
  const plan = planPlacement(
    // Consolidating packs: the VMs fill the fullest hosts that take them, so that hosts empty.
    {
      ...o.placement.request,
      excludeHosts: new Set([host]),
      ...(why === "Consolidation" ? { strategy: "pack" as const } : {}),
    },
    o.placement.candidates,
    o.placement.placed,
  );
  if (plan.kind === "unschedulable")
    return { kind: "blocked", message: `${because}; no host can take the VM: ${plan.message}` };
  const kind = migrationKind(o);
  const status = d.status;
  status.phase = "Migrating";
  status.migration = {
    reason: why,
    sourceHost: host,
    targetHost: plan.host,
    startedAt: iso(now),
    progressPercent: 0,
    result: "InProgress",
    message: `${kind} migration: ${because}`,
  };
  d.actions.push({ type: "reserveIncoming", host: plan.host });
  d.events.push({
    type: "Normal",
    reason: "Migrating",
    action: "Migrate",
    note: `${kind} migration from ${host} to ${plan.host}: ${because}`,
  });
  d.summary = {
    scheduled: true,
    synced: false,
    reason: "Migrating",
    message: `moving to ${plan.host}: ${because}`,
  };
  // Written first; the move starts at the next pass, which finds this intent in status.
  d.requeueAfterMs = 0;
  return { kind: "decided", decision: d };
}

function continueMigration(d: VMDecision, o: ObservedVM, now: Date, m: Migration, host: string): VMDecision {
  const status = d.status;
  const job = o.migrationJob;
  const kind = job?.kind ?? migrationKind(o);
  const target = m.targetHost;
  const migrating = (message: string, progress: number) => {
    status.phase = "Migrating";
    status.migration = { ...m, progressPercent: progress };
    d.summary = { scheduled: true, synced: false, reason: "Migrating", message };
    d.requeueAfterMs = MIGRATION_POLL_MS;
    return d;
  };
  if (job && (job.state === "queued" || job.state === "running")) {
    return migrating(
      job.state === "queued"
        ? `${kind} migration to ${target} waits for a slot on ${m.sourceHost}`
        : `${kind} migration to ${target}: ${job.progress}%`,
      job.progress,
    );
  }
  if (job?.state === "failed") {
    d.actions.push({ type: "releaseIncoming" }, { type: "forgetMigration" });
    status.migration = { ...m, result: "Failed", finishedAt: iso(now), message: job.error };
    // Live: it runs on at the source. Cold: it may be shut down there; the next pass starts it.
    status.phase = isRunning(o) ? "Running" : "Stopped";
    d.events.push({
      type: "Warning",
      reason: "MigrationFailed",
      action: "Migrate",
      note: `${kind} migration from ${m.sourceHost} to ${target} failed: ${job.error}`,
    });
    d.migrated = { reason: m.reason, result: "Failed" };
    d.summary = { scheduled: true, synced: true, reason: "MigrationFailed", message: job.error };
    d.requeueAfterMs = MIGRATION_RETRY_MS;
    return d;
  }
  if (job?.state === "succeeded" && host !== target) {
    // It arrived while this pass was looking at the source: look again, at the target.
    migrating(`arrived on ${target}`, 100);
    d.requeueAfterMs = 0;
    return d;
  }
  if (host === target) {
    // Arrived: the runner moved the VM's ledger entry (or, after a restart, we adopted it here).
    d.actions.push({ type: "releaseIncoming" }, { type: "forgetMigration" });
    const seconds =
      job?.state === "succeeded" ? job.seconds : (now.getTime() - new Date(m.startedAt).getTime()) / 1000;
    status.host = target;
    status.migration = {
      ...m,
      result: "Succeeded",
      finishedAt: iso(now),
      progressPercent: 100,
      message: `${kind} migration from ${m.sourceHost} took ${seconds.toFixed(1)} s`,
    };
    d.migrated = { reason: m.reason, result: "Succeeded", seconds };
    d.events.push({
      type: "Normal",
      reason: "Migrated",
      action: "Migrate",
      note: `${kind} migration from ${m.sourceHost} to ${target} done in ${seconds.toFixed(1)} s`,
    });
    d.summary = { scheduled: true, synced: true, reason: "Migrated", message: `on ${target}` };
    d.requeueAfterMs = 0;
    status.phase = "Running";
    if (!isRunning(o)) {
      // Cold: shut down at the source; it starts here (from the same volumes).
      if (o.domain === undefined) d.actions.push({ type: "provisionDisks", host }, { type: "define", host });
      d.actions.push({ type: "start", host, reason: "Migration" });
      status.specHash = o.desired.ownership?.specHash;
    }
    return d;
  }
  // No job in memory: the intent was just written, or the controller restarted meanwhile.
  const atTarget = o.otherCopies.find((c) => c.host === target);
  if (atTarget?.running && !isRunning(o)) {
    d.actions.push({ type: "reserve", host: target });
    return migrating(`found on ${target}: the move finished while nobody watched`, 100);
  }
  if (isRunning(o)) {
    d.actions.push(
      { type: "reserveIncoming", host: target },
      { type: "migrate", from: host, to: target, kind },
    );
    return migrating(`${kind} migration to ${target} starting`, 0);
  }
  if (kind === "cold" && o.domain === undefined) {
    // The cold move had left the source; it is started on the target.
    d.actions.push({ type: "reserve", host: target });
    return migrating(`${kind} migration: gone from ${host}, to be started on ${target}`, 50);
  }
  // Stopped under us at the source (and not at the target): no move left to make.
  d.actions.push({ type: "releaseIncoming" }, { type: "forgetMigration" });
  status.migration = {
    ...m,
    result: "Aborted",
    finishedAt: iso(now),
    message: "the VM stopped running at the source during its migration",
  };
  d.migrated = { reason: m.reason, result: "Aborted" };
  d.requeueAfterMs = 0;
  status.phase = "Stopped";
  d.summary = {
    scheduled: true,
    synced: false,
    reason: "MigrationAborted",
    message: status.migration.message ?? "",
  };
  return d;
}
