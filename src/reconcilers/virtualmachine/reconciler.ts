/**
 * The VirtualMachine reconciler: observe -> decide -> act -> status, once per key.
 *
 * Contract: level-triggered and idempotent; status is written once, at the end, only when it
 * changed; observedGeneration advances only when every action succeeded. A spec that cannot be
 * rendered (unknown instance type) is a TerminalError: recorded in status, not retried until edited.
 * That is decided by the error's type (InvalidSpecError, thrown by the code reading the spec),
 * never by its message: a hypervisor's error is retried whatever it says.
 *
 * The latest domain event's time (when a crash happened, which MTTR counts from) is read by
 * observe and acknowledged only after a status that records it is written: a reconcile that
 * fails before that (the status write refused, the process killed) leaves it for the retry.
 */
import { type ClassLookup, resolveVM } from "../../api/classes.js";
import type { VirtualMachine, VirtualMachineStatus } from "../../api/types.js";
import { type ReconcileResult, type Reconciler, TerminalError } from "../../controller/outcome.js";
import { jsonEqual } from "../../store/equal.js";
import type { ReconcilerContext } from "../context.js";
import { restoreHolding } from "../snapshot/members.js";
import { storeClasses } from "../vm-class.js";
import { actVM } from "./act.js";
import type { BringUpProgress } from "./deadlines.js";
import { decideVM } from "./decide.js";
import { idleInterfaces, LEASE_POLL_MS, LEASE_WAIT_MS, realisedInterfaces } from "./interfaces.js";
import { observeVM } from "./observe.js";
import { InvalidSpecError } from "./render.js";
import { nextStatus } from "./status.js";
import type { VMDecision } from "./types.js";

function statusEqual(a: VirtualMachineStatus | undefined, b: VirtualMachineStatus): boolean {
  return jsonEqual(a ?? {}, b);
}

export class VirtualMachineReconciler implements Reconciler {
  readonly name = "virtualmachine";
  /** VMs running without all their DHCP leases yet, and since when (ms). */
  private readonly leaseWait = new Map<string, number>();

  constructor(private readonly ctx: ReconcilerContext) {}

  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | undefined> {
    const ctx = this.ctx;
    const declared = ctx.store.get("VirtualMachine", key);
    if (!declared) {
      // Gone from the store (finalizer already removed): nothing left but our bookkeeping.
      ctx.fleet.release(key);
      ctx.fleet.forgetEvents(key);
      this.leaseWait.delete(key);
      return undefined;
    }
    // The effective spec (its VirtualMachineClass merged in) is what is rendered and hashed, so a
    // class change is a spec change of this VM. A class that is missing: the VM waits (nothing
    // is started or changed), unless it is being deleted, which must not wait for anything.
    const classes = storeClasses(ctx.store);
    const resolved = resolveVM(declared, classes);
    if (resolved.missingClass !== undefined && !declared.metadata.deletionTimestamp) {
      await this.waitForClass(declared, resolved.missingClass);
      return undefined;
    }
    const vm = resolved.vm ?? withoutClass(declared);
    // A restore is stopping and reverting this VM's domain: correcting it now would fight it.
    // The restore wakes the VM when it is done; the requeue is the safety net.
    if (restoreHolding(ctx.store, vm)) return { requeueAfterMs: 2_000 };
    let observed: Awaited<ReturnType<typeof observeVM>>;
    try {
      observed = await observeVM(ctx, key, vm, signal);
    } catch (e) {
      if (e instanceof InvalidSpecError) {
        await this.writeStatus(vm, invalidSpecStatus(vm, e.message, ctx.now()));
        throw new TerminalError(e.message);
      }
      throw e;
    }
    const now = ctx.now();
    const decision = decideVM(observed, now);
    const decidedAt = now;
    if (observed.addressConflict && observed.assignedHost) {
      // Already placed (its spec changed, or an earlier VM appeared): reported, not stopped.
      decision.summary = {
        ...decision.summary,
        synced: false,
        reason: "AddressConflict",
        message: observed.addressConflict,
      };
    }
    let latest: VirtualMachine = vm;
    let failure: Error | undefined;
    const progress: { current?: BringUpProgress } = {};
    try {
      latest = asResolved(await actVM(ctx, observed, decision, signal, progress), vm, classes);
    } catch (e) {
      failure = e instanceof Error ? e : new Error(String(e));
    }
    if (!failure && decision.recovered) {
      stampRecovery(decision, ctx.now(), vm);
      this.reportPhases(decision, decidedAt);
    }
    this.report(vm, decision, failure);
    if (decision.actions.some((a) => a.type === "removeFinalizer") && !failure) {
      // The object goes now; the log keeps what stayed behind (the event names it too).
      if (decision.retained)
        ctx.logger.info(
          {
            key,
            host: decision.retained.host,
            volumes: decision.retained.volumes.map((v) => `${v.pool}/${v.name}`),
          },
          "VM deleted; its disks with deletionPolicy Retain are kept",
        );
      ctx.fleet.forgetEvents(key);
      return undefined;
    }
    const status = nextStatus({
      vm: latest,
      decision,
      error: failure,
      ...(progress.current ? { progress: progress.current } : {}),
      now: ctx.now(),
    });
    const leasePoll = await this.observeInterfaces(key, latest, status, signal);
    await this.writeStatus(latest, status);
    // Recorded (or nothing to record): the event is consumed. One that arrived meanwhile stays.
    ctx.fleet.ackEvent(key, observed.lastEventAt);
    if (failure) throw failure;
    const requeue = [decision.requeueAfterMs, leasePoll].filter((x): x is number => x !== undefined);
    return requeue.length ? { requeueAfterMs: Math.min(...requeue) } : undefined;
  }

  /**
   * status.interfaces: the addresses the VM's networks leased to it on its host. Returns when to
   * look again while a lease is still missing (the guest is still booting), for a while.
   */
  private async observeInterfaces(
    key: string,
    vm: VirtualMachine,
    status: VirtualMachineStatus,
    signal: AbortSignal,
  ): Promise<number | undefined> {
    if (!vm.spec.networks?.length) {
      delete status.interfaces;
      return undefined;
    }
    const conn = status.host ? this.ctx.fleet.connection(status.host) : undefined;
    if (status.phase !== "Running" || !conn?.isConnected) {
      this.leaseWait.delete(key);
      status.interfaces = idleInterfaces(vm);
      return undefined;
    }
    const ns = vm.metadata.namespace ?? "default";
    const { interfaces, missing } = await realisedInterfaces(vm, conn.provider, {
      nowSeconds: this.ctx.now().getTime() / 1000,
      hasDhcp: (n) => !!this.ctx.store.get("VirtualNetwork", `${ns}/${n}`)?.spec.dhcp,
      signal,
    });
    status.interfaces = interfaces;
    if (missing === 0) {
      this.leaseWait.delete(key);
      return undefined;
    }
    const now = this.ctx.now().getTime();
    const since = this.leaseWait.get(key) ?? now;
    this.leaseWait.set(key, since);
    return now - since < LEASE_WAIT_MS ? LEASE_POLL_MS : undefined;
  }

  /**
   * The VM names a class that neither exists nor is built in: said in status (Ready and
   * Scheduled False, reason ClassNotFound, the class named) and in a Warning event; nothing else
   * is done. The class's creation wakes the VM (cli/runtime.ts watches classes).
   */
  private async waitForClass(vm: VirtualMachine, className: string): Promise<void> {
    const message = `VirtualMachineClass "${className}" (spec.instanceType) not found: waiting for it; nothing is started or changed`;
    const now = this.ctx.now();
    const status = nextStatus({
      vm,
      decision: {
        actions: [],
        status: { ...(vm.status ?? {}), phase: vm.status?.phase ?? "Pending" },
        summary: { scheduled: false, synced: false, reason: "ClassNotFound", message },
        drift: undefined,
        events: [],
        requeueAfterMs: undefined,
      },
      error: undefined,
      now,
    });
    if (!statusEqual(vm.status, status))
      this.ctx.store.recordEvent({
        regarding: {
          kind: "VirtualMachine",
          namespace: vm.metadata.namespace,
          name: vm.metadata.name,
          uid: vm.metadata.uid,
        },
        type: "Warning",
        reason: "ClassNotFound",
        action: "Resolve",
        note: message,
      });
    await this.writeStatus(vm, status);
  }

  private async writeStatus(vm: VirtualMachine, status: VirtualMachineStatus): Promise<void> {
    if (statusEqual(vm.status, status)) return;
    await this.ctx.store.updateStatus(vm, status);
  }

  /** Events and domain metrics for what the decision did (or failed to do). */
  private report(vm: VirtualMachine, decision: VMDecision, failure: Error | undefined): void {
    const { store, metrics } = this.ctx;
    const regarding = {
      kind: "VirtualMachine" as const,
      namespace: vm.metadata.namespace,
      name: vm.metadata.name,
      uid: vm.metadata.uid,
    };
    if (failure) {
      store.recordEvent({
        regarding,
        type: "Warning",
        reason: "ActionFailed",
        action: "Reconcile",
        note: failure.message,
      });
      if (decision.drift)
        for (const f of decision.drift.fields)
          metrics.driftDetected.inc({ kind: "VirtualMachine", field: f });
      return;
    }
    for (const e of decision.events) store.recordEvent({ regarding, ...e });
    if (decision.actions.some((a) => a.type === "reserve")) metrics.placements.inc({ result: "placed" });
    if (decision.deadlineMissed) metrics.deadlineMisses.inc({ phase: decision.deadlineMissed.phase });
    if (decision.summary.reason === "Unschedulable") metrics.placements.inc({ result: "unschedulable" });
    if (decision.drift) {
      for (const f of decision.drift.fields) {
        metrics.driftDetected.inc({ kind: "VirtualMachine", field: f });
        metrics.driftCorrected.inc({ kind: "VirtualMachine", field: f });
      }
      const d = decision.status.lastDrift;
      if (d?.correctedAt) {
        const seconds = (new Date(d.correctedAt).getTime() - new Date(d.detectedAt).getTime()) / 1000;
        metrics.driftCorrectionSeconds.observe({ kind: "VirtualMachine" }, Math.max(0, seconds));
        metrics.outOfSyncSeconds.inc({ kind: "VirtualMachine" }, Math.max(0, seconds));
      }
    }
    if (decision.migrated) {
      const { reason, result, seconds } = decision.migrated;
      metrics.migrations.inc({ reason, result });
      if (result === "Succeeded" && seconds !== undefined)
        metrics.migrationSeconds.observe({ reason }, seconds);
    }
    if (decision.recovered) {
      metrics.recoveries.inc({ cause: decision.recovered.cause, result: "Succeeded" });
      metrics.recoverySeconds.observe({ cause: decision.recovered.cause }, decision.recovered.seconds);
      if (decision.recovered.lostWorkSeconds !== undefined)
        metrics.recoveryLostWorkSeconds.observe(decision.recovered.lostWorkSeconds);
    }
    const r = decision.status.lastRecovery;
    if (r?.result === "Failed" && vm.status?.lastRecovery?.result !== "Failed") {
      metrics.recoveries.inc({
        cause: r.reason === "HostFailure" ? "HostFailure" : "Crash",
        result: "Failed",
      });
    }
  }

  /**
   * Where a finished recovery's time went. Host failure: detect (last heartbeat -> judged dead),
   * fence (-> fenced), place (-> placed elsewhere), start (-> its start returned). Crash: detect
   * (the crash -> seen), start (-> restarted, backoff included).
   */
  private reportPhases(decision: VMDecision, decidedAt: Date): void {
    const r = decision.status.lastRecovery;
    if (!r?.finishedAt || !decision.recovered) return;
    const cause = decision.recovered.cause;
    const t = (s: string | undefined) => (s ? new Date(s).getTime() : undefined);
    const failed = t(r.failedAt) as number;
    const finished = t(r.finishedAt) as number;
    const observe = (phase: string, from: number | undefined, to: number | undefined) => {
      if (from === undefined || to === undefined) return;
      this.ctx.metrics.recoveryPhaseSeconds.observe({ cause, phase }, Math.max(0, (to - from) / 1000));
    };
    if (cause === "HostFailure") {
      const host = r.fromHost ? this.ctx.store.get("Host", r.fromHost)?.status : undefined;
      const judged = t(host?.unreachableAt);
      const fenced = t(host?.fencedAt) ?? t(r.detectedAt);
      const placed = Math.min(decidedAt.getTime(), finished);
      observe("detect", failed, judged ?? fenced);
      if (judged !== undefined) observe("fence", judged, fenced);
      observe("place", fenced, placed);
      observe("start", placed, finished);
    } else {
      const seen = t(r.detectedAt);
      observe("detect", failed, seen);
      observe("start", seen, finished);
    }
  }
}

/**
 * A VM being deleted whose class is gone: torn down with its own spec and a nominal size (the
 * size does not matter to a teardown; disks the class alone declared are not known and stay).
 */
function withoutClass(vm: VirtualMachine): VirtualMachine {
  return { ...vm, spec: { ...vm.spec, resources: { cpu: 1, memory: "1Mi" } } };
}

/** The object act returned (the store's latest), with the effective spec of this reconcile. */
function asResolved(latest: VirtualMachine, effective: VirtualMachine, classes: ClassLookup): VirtualMachine {
  if (latest === effective) return latest;
  return resolveVM(latest, classes).vm ?? { ...latest, spec: effective.spec };
}

function invalidSpecStatus(vm: VirtualMachine, message: string, now: Date): VirtualMachineStatus {
  return nextStatus({
    vm,
    decision: {
      actions: [],
      status: { ...(vm.status ?? {}), phase: "Failed" },
      summary: { scheduled: false, synced: false, reason: "InvalidSpec", message },
      drift: undefined,
      events: [],
      requeueAfterMs: undefined,
    },
    error: new Error(message),
    now,
  });
}

/**
 * A recovery ends when its start returned (the guest runs), not when it was decided. Its downtime
 * goes into the VM's availability since creation: uptime / (uptime + downtime).
 */
function stampRecovery(decision: VMDecision, at: Date, vm: VirtualMachine): void {
  const r = decision.status.lastRecovery;
  if (r?.result !== "Succeeded" || !decision.recovered) return;
  const seconds = Math.max(0, (at.getTime() - new Date(r.failedAt).getTime()) / 1000);
  decision.status.lastRecovery = { ...r, finishedAt: at.toISOString(), seconds };
  decision.recovered.seconds = seconds;
  const prev = decision.status.availability ?? { failures: 0, downtimeSeconds: 0 };
  const since = new Date(vm.metadata.creationTimestamp ?? at.toISOString()).getTime();
  const windowSeconds = Math.max(1, (at.getTime() - since) / 1000);
  const downtimeSeconds = Math.min(windowSeconds, prev.downtimeSeconds + seconds);
  decision.status.availability = {
    ratio: Math.round((1 - downtimeSeconds / windowSeconds) * 1e6) / 1e6,
    windowSeconds: Math.round(windowSeconds),
    failures: prev.failures + 1,
    downtimeSeconds: Math.round(downtimeSeconds * 1000) / 1000,
  };
}

/**
 * A VM's availability now: its recorded downtime plus the outage under way, if any, over the
 * time since its creation. Used by the availability metrics at scrape time.
 */
export function availabilityNow(
  vm: VirtualMachine,
  now: Date,
): { ratio: number; uptime: number; downtime: number } | undefined {
  if (!vm.metadata.creationTimestamp) return undefined;
  const elapsed = (now.getTime() - new Date(vm.metadata.creationTimestamp).getTime()) / 1000;
  if (elapsed <= 0) return undefined;
  let down = vm.status?.availability?.downtimeSeconds ?? 0;
  const r = vm.status?.lastRecovery;
  if (r && (r.result === "InProgress" || r.result === "Failed"))
    down += Math.max(0, (now.getTime() - new Date(r.failedAt).getTime()) / 1000);
  down = Math.min(down, elapsed);
  return { ratio: 1 - down / elapsed, uptime: elapsed - down, downtime: down };
}
