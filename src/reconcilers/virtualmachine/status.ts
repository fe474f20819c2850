/**
 * The VirtualMachine's status after a reconcile: one setter per condition, Ready summarising.
 * Written once per reconcile and only when it changed (reconciler.ts compares).
 */
import { setCondition } from "../../api/conditions.js";
import type { VirtualMachine, VirtualMachineStatus } from "../../api/types.js";
import type { VMDecision } from "./decide.js";

export interface StatusInputs {
  vm: VirtualMachine;
  decision: VMDecision;
  /** Set when an action failed: the status says so and observedGeneration is not advanced. */
  error?: Error;
  now: Date;
}

export function nextStatus({ vm, decision, error, now }: StatusInputs): VirtualMachineStatus {
  const generation = vm.metadata.generation;
  const s: VirtualMachineStatus = error ? statusAfterFailure(decision) : { ...decision.status };
  const { summary } = decision;
  let conditions = s.conditions ?? [];
  const set = (type: string, ok: boolean, reason: string, message: string) => {
    conditions = setCondition(
      conditions,
      { type, status: ok ? "True" : "False", reason, message, observedGeneration: generation },
      now,
    );
  };

  set(
    "Scheduled",
    summary.scheduled,
    summary.scheduled ? "Scheduled" : summary.reason,
    summary.scheduled ? `on ${s.host}` : summary.message,
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
  s.conditions = conditions;
  if (!error && generation !== undefined) s.observedGeneration = generation;
  return s;
}

/**
 * The decision's status assumed its actions succeed. When one failed, nothing the failed actions
 * would have made true may be claimed: a start that did not happen leaves the VM Starting (or
 * Recovering, with its recovery still InProgress), and drift is detected but not corrected. The
 * next reconcile sees these phases and retries the start (decide.ts), without calling it drift.
 */
export function statusAfterFailure(decision: VMDecision): VirtualMachineStatus {
  const s: VirtualMachineStatus = { ...decision.status };
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
