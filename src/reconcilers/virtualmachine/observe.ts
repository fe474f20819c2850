/**
 * Observe a VirtualMachine: the resource, the domain on its assigned host (state and
 * configuration read back), copies elsewhere, and the placement view. Absence and failure are
 * values (`domain: undefined` = missing, `"unknown"` = the host could not be asked), never throws
 * for a host problem.
 */

import type { Host, VirtualMachine } from "../../api/types.js";
import { isProviderError } from "../../providers/types.js";
import type { PlacementHold } from "../../scheduler/placement.js";
import type { ReconcilerContext } from "../context.js";
import { FINALIZER } from "../context.js";
import { mayRun } from "../copies.js";
import { DEFAULT_PLACEMENT_WAIT_MS } from "../fleet.js";
import { pauseHolder } from "../snapshot/members.js";
import { hostsAvoidedByVM } from "./deadlines.js";
import { CRASHLOOP_RESTORE_LABEL, checkpointRestoreName, RECOVERY_LABEL } from "./decide.js";
import { placementRequest } from "./placement-request.js";
import { renderDomain } from "./render.js";
import type { HostHealth, ObservedDomain, ObservedVM, OtherCopy } from "./types.js";

export function hostHealth(
  ctx: ReconcilerContext,
  hostName: string,
  host: Host | undefined = ctx.store.get("Host", hostName),
): HostHealth {
  if (!host) return "gone";
  if (host.status?.phase === "Fenced" || host.status?.phase === "PoweredOff") return "fenced";
  const conn = ctx.fleet.connection(hostName);
  if (!conn?.isConnected) return "unreachable";
  const phase = host.status?.phase;
  if (phase === "Unreachable" || phase === "Fencing") return "unreachable";
  return "ready";
}

/**
 * Hosts that may hold a copy no one here has seen: up once (a heartbeat on record), neither
 * fenced nor off, and not listed since this controller started (its first contact failed). A
 * start the previous controller sent just before it died may run there.
 */
export function unlistedHostsOf(
  ctx: Pick<ReconcilerContext, "store" | "fleet">,
  except: string | undefined,
): string[] {
  const out: string[] = [];
  for (const h of ctx.store.list("Host")) {
    const name = h.metadata.name;
    if (name === except || !h.status?.lastHeartbeat) continue;
    if (h.status.phase === "Fenced" || h.status.phase === "PoweredOff") continue;
    if (!ctx.fleet.connection(name)?.inventoryAt) out.push(name);
  }
  return out;
}

export async function observeVM(
  ctx: ReconcilerContext,
  key: string,
  vm: VirtualMachine,
  signal: AbortSignal,
): Promise<ObservedVM> {
  const desired = renderDomain(vm);
  const request = placementRequest(key, vm);
  // Hosts where this VM missed a bring-up deadline lately (deadlines.ts): not chosen for a while.
  const avoided = hostsAvoidedByVM(vm, ctx.now());
  if (avoided.length > 0) request.excludeHosts = new Set(avoided);
  if (request.strategy === "roundRobin") {
    const after = ctx.fleet.roundRobinCursor();
    if (after !== undefined) request.roundRobinAfter = after;
  }
  let assignedHost = ctx.fleet.assignment(key)?.host;
  if (!assignedHost && vm.status?.host) {
    // Rebuilding the ledger from status after a restart.
    assignedHost = vm.status.host;
    ctx.fleet.assign(key, {
      host: assignedHost,
      namespace: request.namespace,
      labels: vm.metadata.labels ?? {},
      request: request.request,
    });
  }
  const assignedHostObj = assignedHost ? ctx.store.get("Host", assignedHost) : undefined;
  // Any VM, even one with no status yet: its first start may have been the last thing a
  // previous controller did.
  const unlistedHosts = unlistedHostsOf(ctx, assignedHost);
  const migrationJob = ctx.migrations?.job(key);
  const pausedBy = pauseHolder(ctx.store, vm);
  const health = assignedHost ? hostHealth(ctx, assignedHost, assignedHostObj) : undefined;
  let domain: ObservedDomain | "unknown" | undefined;
  if (assignedHost) {
    domain = health === "ready" ? await readDomain(ctx, assignedHost, desired.name, signal) : "unknown";
  }
  const otherCopies: OtherCopy[] = [];
  for (const copy of ctx.fleet.copiesOf(key)) {
    if (copy.host === assignedHost) continue;
    const h = hostHealth(ctx, copy.host);
    // Anything but shut off can run on (copies.ts mayRun): a crashed-but-kept, suspended or
    // shutting-down copy is destroyed before its undefine, and counts while it cannot be asked.
    let running = mayRun(copy.domain.state.state);
    let present = true;
    // Neither fenced nor answering: the copy may run, whatever the inventory said.
    let uncertain = h === "unreachable";
    if (h === "ready") {
      // Confirm with the host: the inventory may be older than the last event. A failed call is
      // no answer: the copy is kept, as possibly running (only "no such domain" removes it).
      const answer = await ctx.fleet
        .connection(copy.host)
        ?.provider.getDomainState(copy.domain.name, signal)
        .then(
          (state) => ({ state }),
          () => undefined,
        );
      if (!answer) uncertain = true;
      else if (!answer.state) present = false;
      else running = mayRun(answer.state.state);
    }
    if (!present) {
      ctx.fleet.noteDomain(copy.host, key, undefined);
      continue;
    }
    if (uncertain && h === "ready") running = true;
    otherCopies.push({
      host: copy.host,
      reachable: h === "ready" && !uncertain,
      running,
      ...(uncertain ? { uncertain: true } : {}),
    });
  }
  // The host's own verdict that it cannot be fenced (host/decide.ts: Stalled FenceFailed or
  // NoFenceAgent): while it holds, this VM cannot get well by itself either.
  const hostStalledCond =
    health === "unreachable"
      ? assignedHostObj?.status?.conditions?.find(
          (c) =>
            c.type === "Stalled" &&
            c.status === "True" &&
            (c.reason === "FenceFailed" || c.reason === "NoFenceAgent"),
        )
      : undefined;
  let hostFailure: ObservedVM["hostFailure"];
  if (assignedHost && (health === "fenced" || health === "gone")) {
    const st = assignedHostObj?.status;
    hostFailure = {
      lastHeartbeat: st?.lastHeartbeat ? new Date(st.lastHeartbeat) : undefined,
      fencedAt: st?.fencedAt ? new Date(st.fencedAt) : undefined,
      ...(st?.consolidation ? { poweredOff: true } : {}),
    };
  }
  return {
    key,
    vm,
    desired,
    assignedHost,
    hostHealth: health,
    ...(hostStalledCond ? { hostStalled: `${hostStalledCond.reason}: ${hostStalledCond.message}` } : {}),
    hostFailure,
    domain,
    otherCopies,
    ...(unlistedHosts.length > 0 ? { unlistedHosts } : {}),
    placement: {
      request,
      candidates: ctx.fleet.candidates(),
      placed: ctx.fleet.placedVMs(),
      ...placementHoldOf(ctx, assignedHost),
    },
    // Read, not consumed: the reconciler acknowledges it once a status recording it is written.
    lastEventAt: ctx.fleet.lastEvent(key),
    ...(assignedHostObj?.spec.maintenance
      ? { hostDrain: "Maintenance" as const }
      : assignedHostObj?.status?.consolidation?.state === "Draining"
        ? { hostDrain: "Consolidation" as const }
        : {}),
    ...(migrationJob ? { migrationJob } : {}),
    ...(pausedBy ? { pauseHolder: pausedBy } : {}),
    hasFinalizer: (vm.metadata.finalizers ?? []).includes(FINALIZER),
    ...((vm.spec.networks ?? []).some((n) => n.ip || n.mac) && ctx.addresses?.conflictOf(key)
      ? { addressConflict: ctx.addresses.conflictOf(key) as string }
      : {}),
    ...(vm.spec.availability?.onHostFailure === "RestoreCheckpoint"
      ? { checkpoint: checkpointInputs(ctx, vm) }
      : {}),
    ...(vm.spec.availability?.onCrashLoop === "RestoreLatestSnapshot"
      ? { crashLoop: crashLoopInputs(ctx, vm) }
      : {}),
  };
}

/** Whether placement waits for hosts not seen yet (asked only of a VM that is not placed). */
function placementHoldOf(ctx: ReconcilerContext, assignedHost: string | undefined): { hold?: PlacementHold } {
  const waitMs = ctx.placementWaitMs ?? DEFAULT_PLACEMENT_WAIT_MS;
  if (assignedHost || waitMs <= 0) return {};
  const hold = ctx.fleet.placementHold(
    () => ctx.store.list("Host").map((h) => h.metadata.name),
    ctx.now().getTime(),
    waitMs,
  );
  return hold ? { hold } : {};
}

/** The newest memory+disk snapshot holding the VM, and the restore of the recovery under way. */
function checkpointInputs(ctx: ReconcilerContext, vm: VirtualMachine): NonNullable<ObservedVM["checkpoint"]> {
  const ns = vm.metadata.namespace ?? "default";
  const at = (t?: string) => new Date(t ?? 0).getTime();
  const snap = ctx.store
    .list("VirtualMachineSnapshot")
    .filter(
      (s) =>
        (s.metadata.namespace ?? "default") === ns &&
        !s.metadata.deletionTimestamp &&
        s.status?.phase === "Succeeded" &&
        (s.spec.type ?? "disk") === "disk+memory" &&
        (s.status.members ?? []).some((m) => m.vmName === vm.metadata.name && m.state !== "shutoff"),
    )
    .sort((a, b) => at(b.status?.creationTime) - at(a.status?.creationTime))[0];
  const r = vm.status?.lastRecovery;
  let restore: NonNullable<ObservedVM["checkpoint"]>["restore"];
  if (r?.reason === "HostFailure" && r.result === "InProgress" && r.fromHost) {
    const found = ctx.store
      .list("VirtualMachineRestore")
      .find(
        (x) =>
          (x.metadata.namespace ?? "default") === ns &&
          x.metadata.labels?.[RECOVERY_LABEL] !== undefined &&
          x.metadata.name ===
            checkpointRestoreName(
              x.metadata.labels[RECOVERY_LABEL] as string,
              r.fromHost as string,
              r.failedAt,
            ),
      );
    if (found)
      restore = { name: found.metadata.name, ...(found.status?.phase ? { phase: found.status.phase } : {}) };
  }
  const takenAt = snap?.status?.creationTime ? new Date(snap.status.creationTime) : undefined;
  return {
    ...(snap ? { snapshot: snap.metadata.name } : {}),
    ...(takenAt ? { snapshotTakenAt: takenAt } : {}),
    ...(restore ? { restore } : {}),
  };
}

/** The newest snapshot taken while the VM was healthy, and its latest crash-loop restore. */
function crashLoopInputs(ctx: ReconcilerContext, vm: VirtualMachine): NonNullable<ObservedVM["crashLoop"]> {
  const ns = vm.metadata.namespace ?? "default";
  const name = vm.metadata.name;
  const at = (t?: string) => new Date(t ?? 0).getTime();
  const snapshot = ctx.store
    .list("VirtualMachineSnapshot")
    .filter(
      (s) =>
        (s.metadata.namespace ?? "default") === ns &&
        !s.metadata.deletionTimestamp &&
        s.status?.phase === "Succeeded" &&
        s.status.healthy !== false &&
        (s.status.members ?? []).some((m) => m.vmName === name),
    )
    .sort((a, b) => at(b.status?.creationTime) - at(a.status?.creationTime))[0];
  const restore = ctx.store
    .list("VirtualMachineRestore")
    .filter(
      (r) =>
        (r.metadata.namespace ?? "default") === ns && r.metadata.labels?.[CRASHLOOP_RESTORE_LABEL] === name,
    )
    .sort((a, b) => at(b.metadata.creationTimestamp) - at(a.metadata.creationTimestamp))[0];
  return {
    ...(snapshot ? { snapshot: snapshot.metadata.name } : {}),
    ...(restore
      ? {
          restore: {
            name: restore.metadata.name,
            ...(restore.status?.phase ? { phase: restore.status.phase } : {}),
            ...(restore.metadata.creationTimestamp
              ? { createdAt: new Date(restore.metadata.creationTimestamp) }
              : {}),
          },
        }
      : {}),
  };
}

async function readDomain(
  ctx: ReconcilerContext,
  host: string,
  name: string,
  signal: AbortSignal,
): Promise<ObservedDomain | "unknown" | undefined> {
  const provider = ctx.fleet.connection(host)?.provider;
  if (!provider) return "unknown";
  try {
    const state = await provider.getDomainState(name, signal);
    if (!state) return undefined;
    const spec = await provider.getDomainSpec(name, signal);
    return { state, spec };
  } catch (e) {
    if (isProviderError(e, "Unreachable") || isProviderError(e, "Timeout")) return "unknown";
    throw e;
  }
}
