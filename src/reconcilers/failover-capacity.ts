/**
 * The failover capacity signal: for every ready host, would its VMs find room elsewhere if it
 * failed now (N-1, like vSphere HA admission control)? Computed from the live placement view
 * (Fleet) and the VMs in the store with the same planner a real recovery uses; published as
 * metrics and as each Host's FailoverCapacity condition.
 *
 * The reconciler context holds the latest assessment (context.ts), so this module takes only
 * what it reads (the store and the Fleet), never the context itself.
 */
import { resolveVM } from "../api/classes.js";
import type { VirtualMachine } from "../api/types.js";
import { type FailoverCapacity, type FailoverVM, failoverCapacity } from "../scheduler/failover.js";
import type { ResourceStore } from "../store/types.js";
import type { Fleet } from "./fleet.js";
import { placementRequest } from "./virtualmachine/placement-request.js";
import { listedClasses } from "./vm-class.js";

export interface FailoverAssessment extends FailoverCapacity {
  at: Date;
}

/** What the assessment reads: the VMs in the store, and where the live ledger places them. */
export interface FailoverInputs {
  store: Pick<ResourceStore, "list">;
  fleet: Pick<Fleet, "assignment" | "candidates">;
}

const keyOf = (v: VirtualMachine) => `${v.metadata.namespace ?? "default"}/${v.metadata.name}`;

/** One VM as the failover planner sees it: where it runs, what it needs, whether it is recovered. */
export function failoverVM(vm: VirtualMachine, host: string): FailoverVM {
  const strategy = vm.spec.runStrategy ?? "Always";
  return {
    request: placementRequest(keyOf(vm), vm),
    labels: vm.metadata.labels ?? {},
    priority: vm.spec.availability?.priority ?? 100,
    host,
    recover:
      (vm.spec.availability?.onHostFailure ?? "Recreate") !== "Nothing" &&
      (strategy === "Always" || strategy === "RerunOnFailure" || vm.status?.phase === "Running"),
  };
}

/** The placed VMs, on the host the live ledger (or, before it is rebuilt, their status) says. */
export function failoverVMs(ctx: FailoverInputs): FailoverVM[] {
  const out: FailoverVM[] = [];
  const classes = listedClasses(ctx.store);
  for (const vm of ctx.store.list("VirtualMachine")) {
    const host = ctx.fleet.assignment(keyOf(vm))?.host ?? vm.status?.host;
    if (!host || vm.metadata.deletionTimestamp) continue;
    // Its class gone: its size is unknown, and it is not recovered until the class is back.
    const r = resolveVM(vm, classes);
    if (r.vm) out.push(failoverVM(r.vm, host));
  }
  return out;
}

export function assessFailoverCapacity(ctx: FailoverInputs, now: Date): FailoverAssessment {
  return { ...failoverCapacity(ctx.fleet.candidates(), failoverVMs(ctx)), at: now };
}
