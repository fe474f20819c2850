/**
 * A VirtualNetwork's status from what its reconcile found on each selected host. Pure.
 *
 * Conditions:
 * - Ready: realised on at least one selected host (VMs can be placed there).
 * - Reconciling / Stalled — what kstatus (Flux's health checks) and the Argo CD health check read.
 *   Reconciling while some selected host does not serve the network yet (or no Ready host matches
 *   the hostSelector), Stalled once that has lasted NETWORK_STALL_MS: libvirt refusing the
 *   definition (a bridge that does not exist, an address range another network holds) does not go
 *   away by retrying, and a health check must not wait on it forever. Never both. Hosts that are not
 *   Ready are not selected, so a host that is down does not stall its networks.
 * - InUse (only while being deleted): the VMs that still name it.
 */
import { getCondition, setCondition } from "../../api/conditions.js";
import type { VirtualNetwork, VirtualNetworkStatus } from "../../api/types.js";

/** How long a network may stay unrealised on a selected host before it is Stalled. */
export const NETWORK_STALL_MS = 5 * 60_000;

export type HostNetworkState = NonNullable<VirtualNetworkStatus["hosts"]>[number];

export function inUseMessage(users: readonly string[]): string {
  const shown = users.slice(0, 10).join(", ");
  const more = users.length > 10 ? ` and ${users.length - 10} more` : "";
  return `deletion waits: used by ${users.length === 1 ? "VM" : "VMs"} ${shown}${more}`;
}

export function networkStatus(
  vnet: VirtualNetwork,
  hosts: readonly HostNetworkState[],
  users: readonly string[],
  now: Date,
): VirtualNetworkStatus {
  const sorted = [...hosts].sort((a, b) => a.host.localeCompare(b.host));
  const ready = sorted.filter((h) => h.ready).length;
  const generation = vnet.metadata.generation;
  const prev = vnet.status?.conditions;
  const set = (
    conditions: ReturnType<typeof setCondition> | undefined,
    type: string,
    on: boolean,
    reason: string,
    message: string,
  ) =>
    setCondition(
      conditions,
      { type, status: on ? "True" : "False", reason, message, observedGeneration: generation },
      now,
    );

  const firstFailure = sorted.find((h) => !h.ready);
  let conditions = set(
    prev,
    "Ready",
    ready > 0,
    ready > 0 ? "Realised" : sorted.length === 0 ? "NoHostSelected" : "NotRealised",
    ready > 0
      ? `ready on ${ready}/${sorted.length} selected hosts`
      : sorted.length === 0
        ? "no Ready host matches the hostSelector"
        : (firstFailure?.message ?? ""),
  );

  const pending =
    sorted.length === 0
      ? { reason: "NoHostSelected", message: "no Ready host matches the hostSelector" }
      : ready < sorted.length
        ? {
            reason: "NotRealised",
            message: `ready on ${ready}/${sorted.length} selected hosts; ${firstFailure?.host}: ${firstFailure?.message ?? "not ready"}`,
          }
        : undefined;
  // Since when it has been pending: Reconciling's transition, or Stalled's once stalled.
  const wasStalled = getCondition(prev, "Stalled")?.status === "True";
  const reconcilingSince = getCondition(prev, "Reconciling");
  const since =
    reconcilingSince?.status === "True"
      ? new Date(reconcilingSince.lastTransitionTime).getTime()
      : now.getTime();
  const stalled =
    pending && !vnet.metadata.deletionTimestamp && (wasStalled || now.getTime() - since >= NETWORK_STALL_MS);
  conditions = set(
    conditions,
    "Stalled",
    !!stalled,
    stalled ? pending.reason : "NotStalled",
    stalled ? `${pending.message} (for over ${NETWORK_STALL_MS / 60_000} min)` : "nothing needs an operator",
  );
  conditions = set(
    conditions,
    "Reconciling",
    !!pending && !stalled,
    pending ? pending.reason : "Reconciled",
    pending ? (stalled ? "stalled: see Stalled" : pending.message) : "nothing in progress",
  );
  if (vnet.metadata.deletionTimestamp)
    conditions = set(
      conditions,
      "InUse",
      users.length > 0,
      users.length > 0 ? "InUse" : "Unused",
      users.length > 0 ? inUseMessage(users) : "no VM uses it",
    );
  return {
    conditions,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    hosts: sorted,
    readyHosts: ready,
  };
}
