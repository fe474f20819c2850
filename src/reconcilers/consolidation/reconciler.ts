/**
 * The consolidation reconciler: one key for the whole fleet, looked at every interval. It reads
 * the fleet (hosts, VMs, what waits for capacity), asks the pure planner (scheduler/
 * consolidation.ts) for one step, and hands that step to the Host it concerns (intents.ts): the
 * Host reconciler empties it, powers it off or on; the VM reconciler moves its VMs (reason
 * Consolidation, packed). Hosts take part only with spec.allowPowerOff and a power agent.
 */
import type { Host } from "../../api/types.js";
import type { ReconcileResult, Reconciler } from "../../controller/outcome.js";
import {
  activeHostsLowerBound,
  type ConsolidationHost,
  planConsolidation,
} from "../../scheduler/consolidation.js";
import type { FailoverVM } from "../../scheduler/failover.js";
import { lacksCapacity } from "../../scheduler/placement.js";
import type { ReconcilerContext } from "../context.js";
import { failoverVM, failoverVMs } from "../failover-capacity.js";
import { atRest } from "./intents.js";

export const CONSOLIDATION_KEY = "fleet";

export interface ConsolidationOptions {
  intervalMs: number;
  /** Never fewer active hosts than this (default 1). */
  minActiveHosts?: number;
  /** Keep the N-1 failover capacity when the fleet has it (default true). */
  keepFailoverCapacity?: boolean;
}

export class ConsolidationReconciler implements Reconciler {
  readonly name = "consolidation";

  constructor(
    private readonly ctx: ReconcilerContext,
    private readonly opts: ConsolidationOptions,
  ) {}

  async reconcile(key: string): Promise<ReconcileResult | undefined> {
    const ctx = this.ctx;
    if (key !== CONSOLIDATION_KEY || !ctx.consolidation) return undefined;
    const again = { requeueAfterMs: this.opts.intervalMs };
    const hostObjs = ctx.store
      .list("Host")
      .filter((h) => !h.metadata.deletionTimestamp && !h.spec.maintenance);
    const candidates = new Map(ctx.fleet.candidates().map((c) => [c.name, c]));
    const hosts: ConsolidationHost[] = [];
    for (const h of hostObjs) {
      const candidate = candidates.get(h.metadata.name);
      if (!candidate) continue;
      const agent = ctx.powerAgents?.(h);
      const state = h.status?.consolidation?.state;
      hosts.push({
        candidate,
        mayPowerOff: !!h.spec.allowPowerOff && !!agent?.canPowerOff,
        poweredOff: state === "PoweredOff",
        mayPowerOn: !!agent,
        draining: state === "Draining",
        busy: busyHost(h),
      });
    }
    this.publish(hosts);
    // Nothing to do for a fleet where no host may be switched off and none is.
    if (!hosts.some((h) => h.mayPowerOff || h.poweredOff)) return again;
    const vms = failoverVMs(ctx);
    const running = new Set<string>();
    const waiting: FailoverVM[] = [];
    let unsettled: string | undefined;
    for (const v of ctx.store.list("VirtualMachine")) {
      const key = `${v.metadata.namespace ?? "default"}/${v.metadata.name}`;
      const phase = v.status?.phase;
      const assigned = !!ctx.fleet.assignment(key);
      if (assigned && !atRest(phase)) running.add(key);
      // Placed but not running yet, moving, recovering: the fleet is changing under us.
      if (assigned && phase !== "Running" && !atRest(phase))
        unsettled ??= `VM ${key} is ${phase ?? "being placed"}`;
      const scheduled = v.status?.conditions?.find((c) => c.type === "Scheduled");
      if (!ctx.fleet.assignment(key) && scheduled?.status === "False" && lacksCapacity(scheduled.message))
        waiting.push(failoverVM(v, ""));
    }
    if ((ctx.migrations?.inFlight() ?? 0) > 0) unsettled ??= "migrations under way";
    const step = planConsolidation({
      hosts,
      vms,
      running,
      waiting,
      ...(unsettled ? { unsettled } : {}),
      ...(this.opts.minActiveHosts ? { minActiveHosts: this.opts.minActiveHosts } : {}),
      keepFailoverCapacity: this.opts.keepFailoverCapacity ?? true,
      ...(ctx.failover ? { failoverSufficient: ctx.failover.sufficient } : {}),
    });
    ctx.metrics.consolidationSteps.inc({ step: step.kind });
    if (step.kind === "wait" || step.kind === "none") {
      ctx.logger.debug({ step: step.kind, reason: step.reason }, "consolidation");
      return again;
    }
    const intent = step.kind === "drain" ? "drain" : step.kind === "powerOn" ? "powerOn" : "cancel";
    ctx.consolidation.ask(step.host, intent);
    ctx.enqueue("Host", step.host);
    ctx.logger.info({ step: step.kind, host: step.host, reason: step.reason }, "consolidation step");
    ctx.store.recordEvent({
      regarding: { kind: "Host", name: step.host },
      type: "Normal",
      reason:
        step.kind === "drain"
          ? "ConsolidationPlanned"
          : step.kind === "powerOn"
            ? "PowerOnPlanned"
            : "ConsolidationCancelled",
      action: "Consolidate",
      note: step.reason,
    });
    return again;
  }

  /** Active hosts, and the fewest the running VMs could fit on (gauges). */
  private publish(hosts: ConsolidationHost[]): void {
    const m = this.ctx.metrics;
    let cpuMilli = 0;
    let memoryBytes = 0;
    for (const v of this.ctx.store.list("VirtualMachine")) {
      if (v.status?.phase !== "Running") continue;
      const a = this.ctx.fleet.assignment(`${v.metadata.namespace ?? "default"}/${v.metadata.name}`);
      if (!a) continue;
      cpuMilli += a.request.cpuMilli;
      memoryBytes += a.request.memoryBytes;
    }
    m.activeHosts.set(hosts.filter((h) => !h.poweredOff).length);
    m.activeHostsLowerBound.set(
      activeHostsLowerBound(
        hosts.map((h) => h.candidate),
        { cpuMilli, memoryBytes },
      ),
    );
  }
}

function busyHost(h: Host): boolean {
  const state = h.status?.consolidation?.state;
  if (state === "PoweringOff" || state === "PoweringOn") return true;
  if (state === "PoweredOff") return false;
  const phase = h.status?.phase;
  return (
    phase === "Unreachable" ||
    phase === "Fencing" ||
    phase === "Fenced" ||
    phase === "Pending" ||
    phase === undefined
  );
}
