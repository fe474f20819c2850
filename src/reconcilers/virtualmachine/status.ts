/**
 * The VirtualMachine's status after a reconcile: one setter per condition, Ready summarising.
 * Written once per reconcile and only when it changed (reconciler.ts compares).
 */
import { getCondition, setCondition } from "../../api/conditions.js";
import type { Condition, VirtualMachine, VirtualMachineStatus } from "../../api/types.js";
import { type BringUpProgress, placingDeadlineMs } from "./deadlines.js";
import type { VMDecision } from "./types.js";

export interface StatusInputs {
  vm: VirtualMachine;
  decision: VMDecision;
  /** Set when an action failed: the status says so and observedGeneration is not advanced. */
  error?: Error;
  /** How far the bring-up got before the error (act.ts), if the decision was one. */
  progress?: BringUpProgress;
  now: Date;
}

export function nextStatus({ vm, decision, error, progress, now }: StatusInputs): VirtualMachineStatus {
  const generation = vm.metadata.generation;
  const s: VirtualMachineStatus = error ? statusAfterFailure(decision, progress) : { ...decision.status };
  // A restart request counts as honoured only once the restart happened.
  if (error) {
    if (vm.status?.restartedAt !== undefined) s.restartedAt = vm.status.restartedAt;
    else delete s.restartedAt;
  }
  const { summary } = decision;
  let conditions = s.conditions ?? [];
  const set = (type: string, ok: boolean, reason: string, message: string) => {
    conditions = setCondition(
      conditions,
      { type, status: ok ? "True" : "False", reason, message, observedGeneration: generation },
      now,
    );
  };

  // Placed: where, and which preferences that host does not meet, said when it was placed and
  // kept while it stays there.
  const before = getCondition(vm.status?.conditions ?? [], "Scheduled");
  const kept =
    before?.status === "True" && before.message.startsWith(`on ${s.host}; `) ? before.message : undefined;
  set(
    "Scheduled",
    summary.scheduled,
    summary.scheduled ? "Scheduled" : summary.reason,
    summary.scheduled ? (summary.scheduledMessage ?? kept ?? `on ${s.host}`) : summary.message,
  );
  if (error) {
    set("Synced", false, "ActionFailed", error.message);
  } else {
    set(
      "Synced",
      summary.synced,
      summary.reason,
      summary.message || (summary.synced ? "matches the spec" : ""),
    );
  }
  set(
    "Degraded",
    !!summary.degraded,
    summary.degraded ?? "AsExpected",
    summary.degraded ? summary.message : "no failure being handled",
  );
  const strategy = vm.spec.runStrategy ?? "Always";
  const wantsRunning = strategy === "Always" || strategy === "RerunOnFailure";
  const ready =
    !error &&
    summary.synced &&
    (wantsRunning ? s.phase === "Running" : s.phase === "Stopped" || s.phase === "Running");
  set(
    "Ready",
    ready,
    ready ? (s.phase === "Running" ? "Running" : "Stopped") : error ? "ActionFailed" : summary.reason,
    ready
      ? `${s.phase?.toLowerCase()}${s.host ? ` on ${s.host}` : ""}`
      : error
        ? error.message
        : summary.message,
  );
  // The conditions kstatus reads (Flux's health checks): Reconciling while the controller is
  // getting the VM where it should be, Stalled when it cannot get there by itself. Never both.
  const stalled = ready ? undefined : stalledBy(s, summary, conditions, now, error, placingDeadlineMs(vm));
  set(
    "Stalled",
    !!stalled,
    stalled?.reason ?? "Progressing",
    stalled?.message ?? (ready ? "" : "the controller is working on it"),
  );
  set(
    "Reconciling",
    !ready && !stalled,
    ready ? "Reconciled" : stalled ? stalled.reason : error ? "ActionFailed" : summary.reason,
    ready || stalled
      ? ""
      : error
        ? `retrying: ${error.message}`
        : summary.message || `phase ${s.phase ?? ""}`,
  );
  // Present only while a change waits for a restart (as KubeVirt's), gone once applied.
  if (decision.restartRequired)
    set("RestartRequired", true, "NotLiveUpdatable", decision.restartRequired.message);
  else conditions = conditions.filter((c) => c.type !== "RestartRequired");
  s.conditions = conditions;
  if (!error && generation !== undefined) s.observedGeneration = generation;
  return s;
}

/**
 * Why the VM cannot progress without someone acting, if it cannot: a crash loop, a crash or a
 * host failure its policy leaves down, an address another claimant holds, a pause nobody holds
 * (runStrategy Manual), a host that does not answer and cannot be fenced, or no host with room for
 * longer than the VM's placing deadline (deadlines.ts; measured from when Scheduled last turned
 * False). A failed action is retried: not stalled.
 */
function stalledBy(
  s: VirtualMachineStatus,
  summary: VMDecision["summary"],
  conditions: readonly Condition[],
  now: Date,
  error: Error | undefined,
  placingMs: number,
): { reason: string; message: string } | undefined {
  if (error || s.phase === "Terminating") return undefined;
  if (s.phase === "CrashLoop" || s.phase === "Failed")
    return { reason: s.phase === "CrashLoop" ? "CrashLoop" : summary.reason, message: summary.message };
  if (
    summary.reason === "AddressConflict" ||
    summary.reason === "Paused" ||
    summary.reason === "HostFenceFailed"
  )
    return { reason: summary.reason, message: summary.message };
  if (summary.reason === "Unschedulable" || summary.reason === "WaitingForCapacity") {
    const since = getCondition(conditions, "Scheduled");
    const from = since?.status === "False" ? new Date(since.lastTransitionTime).getTime() : now.getTime();
    if (now.getTime() - from >= placingMs)
      return {
        reason: summary.reason,
        message: `not scheduled for ${Math.round((now.getTime() - from) / 1000)}s: ${summary.message}`,
      };
  }
  return undefined;
}

/**
 * The decision's status assumed its actions succeed. When one failed, nothing the failed actions
 * would have made true may be claimed: a start that did not happen leaves the VM Starting (or
 * Recovering, with its recovery still InProgress), and drift is detected but not corrected. The
 * next reconcile sees these phases and retries the start (decide.ts), without calling it drift.
 */
export function statusAfterFailure(decision: VMDecision, progress?: BringUpProgress): VirtualMachineStatus {
  // Abandoning a bring-up that failed half-way: still on that host, tried again next pass.
  if (decision.deadlineMissed) return { ...decision.deadlineMissed.keep };
  const s: VirtualMachineStatus = { ...decision.status };
  const b = decision.bringUp;
  if (b && s.host === b.host)
    s.bringUp = progress
      ? { host: b.host, phase: progress.phase, since: progress.since.toISOString() }
      : b.initial;
  const startPlanned = decision.actions.some((a) => a.type === "start");
  if (startPlanned && s.phase === "Running") {
    const recovering = decision.recovered !== undefined || s.lastRecovery?.result === "InProgress";
    s.phase = recovering ? "Recovering" : "Starting";
  }
  if (decision.recovered && s.lastRecovery) {
    const { finishedAt: _f, seconds: _s, ...open } = s.lastRecovery;
    s.lastRecovery = { ...open, result: "InProgress" };
  }
  if (s.lastDrift?.correctedAt) {
    const { correctedAt: _c, ...detected } = s.lastDrift;
    s.lastDrift = detected;
  }
  return s;
}
