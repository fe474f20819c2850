/**
 * Shared by the snapshot and restore reconcilers: which VMs a VirtualMachineSnapshot covers, where
 * each runs now, and whether a restore currently holds a VM (the VM reconciler stands back then).
 */

import { setCondition } from "../../api/conditions.js";
import type {
  Condition,
  VirtualMachine,
  VirtualMachineRestore,
  VirtualMachineSnapshot,
} from "../../api/types.js";
import { jsonEqual } from "../../store/equal.js";
import type { ResourceStore } from "../../store/types.js";
import { domainName, type Fleet, type HostConnection } from "../fleet.js";

export const vmKey = (vm: VirtualMachine): string => `${vm.metadata.namespace}/${vm.metadata.name}`;

export const domainOf = (vm: VirtualMachine): string =>
  domainName(vm.metadata.namespace ?? "default", vm.metadata.name);

/**
 * The VMs a snapshot covers: its VM, or every VM of its group (VirtualMachine.spec.group) in the
 * snapshot's namespace, by name. A missing VM is an error message, not an exception.
 */
export function snapshotTargets(
  store: ResourceStore,
  snap: VirtualMachineSnapshot,
): { vms: VirtualMachine[]; error?: string } {
  const ns = snap.metadata.namespace ?? "default";
  if (snap.spec.vmName) {
    const vm = store.get("VirtualMachine", `${ns}/${snap.spec.vmName}`);
    return vm ? { vms: [vm] } : { vms: [], error: `VirtualMachine ${ns}/${snap.spec.vmName} not found` };
  }
  const group = snap.spec.group;
  const vms = store
    .list("VirtualMachine")
    .filter((v) => (v.metadata.namespace ?? "default") === ns && v.spec.group === group)
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  return vms.length > 0 ? { vms } : { vms, error: `no VirtualMachine in ${ns} has group ${group}` };
}

/** The host a VM is assigned to now (the fleet's ledger first, then its status). */
export function hostOf(fleet: Fleet, vm: VirtualMachine): string | undefined {
  return fleet.assignment(vmKey(vm))?.host ?? vm.status?.host;
}

/** The connection to a VM's host when it answers, else why not. */
export function liveConnection(
  fleet: Fleet,
  host: string | undefined,
): { conn: HostConnection } | { reason: string } {
  if (!host) return { reason: "not placed on any host" };
  const conn = fleet.connection(host);
  if (!conn?.isConnected) return { reason: `host ${host} is not reachable` };
  return { conn };
}

/**
 * Whether a VirtualMachineRestore is working on this VM now: the VM reconciler must not restart
 * (or otherwise correct) a domain the restore has just stopped or reverted.
 */
export function restoreHolding(store: ResourceStore, vm: VirtualMachine): string | undefined {
  const ns = vm.metadata.namespace ?? "default";
  for (const r of store.list("VirtualMachineRestore")) {
    if ((r.metadata.namespace ?? "default") !== ns || r.status?.phase !== "InProgress") continue;
    const snap = store.get("VirtualMachineSnapshot", `${ns}/${r.spec.snapshotName}`);
    const members = snap?.status?.members?.map((m) => m.vmName) ?? [];
    if (members.includes(vm.metadata.name) || snap?.spec.vmName === vm.metadata.name) return r.metadata.name;
  }
  return undefined;
}

/**
 * Who holds this VM's domain paused on purpose now: a restore in progress over it, or a snapshot
 * in progress covering it (a group snapshot's pause window; a memory snapshot pauses too).
 */
export function pauseHolder(store: ResourceStore, vm: VirtualMachine): string | undefined {
  const restore = restoreHolding(store, vm);
  if (restore) return `VirtualMachineRestore ${restore}`;
  const snapshot = snapshotHolding(store, vm);
  return snapshot ? `VirtualMachineSnapshot ${snapshot}` : undefined;
}

/** The name of a snapshot in progress that covers this VM (its own, or its group's), if any. */
export function snapshotHolding(store: ResourceStore, vm: VirtualMachine): string | undefined {
  const ns = vm.metadata.namespace ?? "default";
  for (const s of store.list("VirtualMachineSnapshot")) {
    if ((s.metadata.namespace ?? "default") !== ns || s.status?.phase !== "InProgress") continue;
    const covers =
      s.spec.vmName === vm.metadata.name || (s.spec.group !== undefined && s.spec.group === vm.spec.group);
    if (covers) return s.metadata.name;
  }
  return undefined;
}

type WithReady = VirtualMachineSnapshot | VirtualMachineRestore;

/**
 * Write a snapshot's or restore's status with its Ready condition and observedGeneration, only
 * when it changed; returns the object as stored.
 */
export async function writeReadyStatus<R extends WithReady>(
  store: ResourceStore,
  obj: R,
  status: NonNullable<R["status"]>,
  ready: { ok: boolean; reason: string; message: string },
  now: Date,
): Promise<R> {
  const generation = obj.metadata.generation;
  const set = (list: Condition[], type: string, ok: boolean, reason: string, message: string) =>
    setCondition(
      list,
      { type, status: ok ? "True" : "False", reason, message, observedGeneration: generation },
      now,
    );
  // What kstatus (Flux) reads: Reconciling until the snapshot or restore has finished, Stalled
  // when it failed (it is not retried: a new object is needed).
  const phase = (status as { phase?: string }).phase;
  const finished = phase === "Succeeded" || phase === "Failed";
  let conditions = set(status.conditions ?? [], "Ready", ready.ok, ready.reason, ready.message);
  conditions = set(
    conditions,
    "Reconciling",
    !finished,
    finished ? phase : ready.reason,
    finished ? "" : ready.message,
  );
  conditions = set(
    conditions,
    "Stalled",
    phase === "Failed",
    phase === "Failed" ? ready.reason : "NotFailed",
    phase === "Failed" ? ready.message : "",
  );
  const next = { ...status, observedGeneration: generation, conditions };
  if (jsonEqual(next, obj.status ?? {})) return obj;
  return (await store.updateStatus(obj as never, next as never)) as R;
}
