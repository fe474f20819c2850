/**
 * The Host decision: heartbeat facts + spec -> phase, capacity and conditions. Pure.
 *
 * Phases: Pending (never reached) -> Ready; after `missedBeats` consecutive missed heartbeats ->
 * Unreachable (a single missed beat only shows in the Reachable condition). Which beats count as
 * missed, and when a host is judged dead rather than its management daemon down, is heartbeat.ts's
 * rule; the fencing outcome it leads to comes in `fence`. Maintenance while
 * spec.maintenance is set and the host answers; its Drained condition says whether its running
 * VMs have all moved away yet (the VM reconciler moves them).
 */
import { setCondition } from "../../api/conditions.js";
import { formatBytes, parseQuantity } from "../../api/quantity.js";
import type { Host, HostPhase, HostStatus, HostUsage } from "../../api/types.js";
import type { HostInfo } from "../../providers/types.js";
import type { Capacity } from "../../scheduler/placement.js";
import { jsonEqual } from "../../store/equal.js";
import { type HostMiss, hostDeadlineRecord } from "../virtualmachine/deadlines.js";
import type { FenceOutcome } from "./fencing.js";
import { accountReliability, downRecorded, hostCondition, type ReliabilityMark } from "./reliability.js";

export interface ObservedHost {
  host: Host;
  connected: boolean;
  info: HostInfo | undefined;
  lastHeartbeat: Date | undefined;
  missedBeats: number;
  lastError: string | undefined;
  allocated: Capacity;
  vmCount: number;
  networks: string[];
  images: string[];
  /** What the fencing step found or did (fencing.ts); notNeeded while the host answers. */
  fence: FenceOutcome;
  /** From the latest N-1 check: VMs that would stay down if this host failed (undefined: not assessed). */
  failoverStranded?: number;
  /** In maintenance: running VMs still here, how many of them are moving, and why others cannot. */
  drain?: { remaining: number; migrating: number; blocked: string[] };
  /**
   * The latest inventory listing failed (the host answered its heartbeat): the error, since when,
   * and when the listing kept was taken (undefined: never listed since connecting).
   */
  inventoryStale?: { error: string; since: Date; listedAt: Date | undefined };
  /** Consolidation's hold on the host after this reconcile's power step (power.ts). */
  consolidation?: HostStatus["consolidation"];
  /** Being deleted: what still uses it (reconciler.ts usersOf), empty when nothing does. */
  deleting?: { users: string[] };
  /** How far this controller has accounted the host's reliability (reliability.ts); undefined: not yet. */
  reliabilityMark?: ReliabilityMark;
  /** Bring-up deadlines VMs missed here (their status.deadlineMisses; virtualmachine/deadlines.ts). */
  deadlineMisses?: readonly HostMiss[];
  /** The latest measured use (usage.ts); undefined: none yet, and the status keeps what it had. */
  usage?: HostUsage;
}

/** The InUse condition's message and event note: who holds a Host being deleted, and what to do. */
export function hostInUseMessage(users: string[]): string {
  const shown = users.slice(0, 10).join(", ");
  const more = users.length > 10 ? ` and ${users.length - 10} more` : "";
  return `deletion waits: still in use by ${users.length === 1 ? "" : `${users.length} `}${shown}${more}; move its VMs away (spec.maintenance: true drains it by live migration) or delete them`;
}

export interface HostDecision {
  status: HostStatus;
  phase: HostPhase;
  allocatable: Capacity | undefined;
  ready: boolean;
  schedulable: boolean;
  /** The reliability mark to keep once the status is written (reliability.ts). */
  reliabilityMark: ReliabilityMark | undefined;
  /** VMs missed too many bring-up deadlines here lately: placement avoids the host until then. */
  avoidedUntil?: Date;
}

const DEFAULT_MISSED_BEATS = 3;
/** lastHeartbeat is persisted at most this often (the live value is in memory and in metrics). */
export const HEARTBEAT_PERSIST_MS = 30_000;

export function allocatableOf(host: Host, info: Pick<HostInfo, "cpus" | "memoryBytes">): Capacity {
  const reservedCpu = host.spec.reserved?.cpu ?? 0;
  const reservedMem = host.spec.reserved?.memory ? parseQuantity(host.spec.reserved.memory) : 0;
  const cpuRatio = host.spec.overcommit?.cpu ?? 4;
  const memRatio = host.spec.overcommit?.memory ?? 1;
  return {
    cpuMilli: Math.max(0, Math.floor((info.cpus - reservedCpu) * cpuRatio * 1000)),
    memoryBytes: Math.max(0, Math.floor((info.memoryBytes - reservedMem) * memRatio)),
  };
}

const capacityStatus = (c: Capacity) => ({
  cpu: Math.floor(c.cpuMilli / 1000),
  memory: formatBytes(c.memoryBytes),
});

export function decideHost(o: ObservedHost, now: Date): HostDecision {
  const prev = o.host.status ?? {};
  const threshold = o.host.spec.heartbeat?.missedBeats ?? DEFAULT_MISSED_BEATS;
  let phase: HostPhase;
  const offState = o.consolidation?.state;
  if (offState === "PoweringOff" || offState === "PoweredOff" || offState === "PoweringOn") {
    phase = "PoweredOff"; // on purpose: until it answers again after a power-on
  } else if (o.connected && o.missedBeats === 0) {
    phase = o.host.spec.maintenance ? "Maintenance" : "Ready";
  } else if (o.fence.state === "fenced" || prev.phase === "Fenced") {
    phase = "Fenced"; // stays fenced until the host answers again
  } else if (o.fence.state === "failed") {
    phase = "Fencing";
  } else if (o.missedBeats >= threshold) {
    phase = o.lastHeartbeat || (prev.phase && prev.phase !== "Pending") ? "Unreachable" : "Pending";
  } else {
    phase = prev.phase ?? "Pending"; // within the grace of `missedBeats`
  }
  // A host switched off on purpose does not answer; a controller started since has never asked it.
  // Its capacity as last recorded keeps it a candidate, so consolidation can switch it on again.
  const known =
    o.info ??
    (offState === "PoweredOff" && prev.capacity
      ? { cpus: prev.capacity.cpu, memoryBytes: parseQuantity(prev.capacity.memory) }
      : undefined);
  const allocatable = known ? allocatableOf(o.host, known) : undefined;
  const status: HostStatus = { ...prev, phase };
  if (o.consolidation) status.consolidation = o.consolidation;
  else delete status.consolidation;
  if (phase === "Fenced" && o.fence.state === "fenced") status.fencedAt ??= o.fence.at;
  if (phase === "Unreachable" || phase === "Fencing" || phase === "Fenced")
    status.unreachableAt ??= now.toISOString();
  if (phase === "Ready" || phase === "Maintenance") {
    delete status.fencedAt;
    delete status.unreachableAt;
  }
  if (o.info) {
    status.capacity = { cpu: o.info.cpus, memory: formatBytes(o.info.memoryBytes) };
    status.hypervisor = {
      type: o.info.hypervisorType,
      version: o.info.hypervisorVersion,
      hostname: o.info.hostname,
      ...(o.info.libvirtVersion ? { libvirtVersion: o.info.libvirtVersion } : {}),
    };
  }
  if (allocatable) status.allocatable = capacityStatus(allocatable);
  status.allocated = capacityStatus(o.allocated);
  status.vmCount = o.vmCount;
  status.networks = [...o.networks].sort();
  status.images = [...o.images].sort();
  if (o.usage) status.usage = o.usage;
  const persisted = prev.lastHeartbeat ? new Date(prev.lastHeartbeat).getTime() : 0;
  if (
    o.lastHeartbeat &&
    (phase !== prev.phase || o.lastHeartbeat.getTime() - persisted >= HEARTBEAT_PERSIST_MS)
  ) {
    status.lastHeartbeat = o.lastHeartbeat.toISOString();
  }
  const generation = o.host.metadata.generation;
  let conditions = prev.conditions ?? [];
  const set = (type: string, ok: boolean, reason: string, message: string) => {
    conditions = setCondition(
      conditions,
      { type, status: ok ? "True" : "False", reason, message, observedGeneration: generation },
      now,
    );
  };
  set(
    "Reachable",
    o.connected && o.missedBeats === 0,
    o.connected && o.missedBeats === 0 ? "HeartbeatOK" : "HeartbeatMissed",
    o.connected && o.missedBeats === 0
      ? `answering at ${o.host.spec.uri}`
      : `${o.missedBeats} heartbeat(s) missed${o.lastError ? `: ${o.lastError}` : ""}`,
  );
  // A host whose domains cannot be listed takes no new VMs (its copies, stale ones included, are
  // not known), but it is not judged by it: its phase follows the heartbeat alone.
  const schedulable =
    !o.host.spec.unschedulable &&
    !o.host.spec.maintenance &&
    !o.consolidation &&
    !o.inventoryStale &&
    !o.deleting;
  set(
    "Schedulable",
    schedulable,
    schedulable
      ? "Schedulable"
      : o.deleting
        ? "Deleting"
        : o.host.spec.maintenance
          ? "Maintenance"
          : o.consolidation
            ? "Consolidation"
            : o.inventoryStale
              ? "InventoryStale"
              : "Cordoned",
    schedulable ? "accepts new VMs" : "takes no new VMs",
  );
  if (o.consolidation) {
    const c = o.consolidation;
    set(
      "Consolidation",
      true,
      c.state,
      c.message ??
        (c.state === "Draining"
          ? "emptying the host to power it off"
          : c.state === "PoweredOff"
            ? "powered off while idle: powered on when capacity is wanted"
            : c.state === "PoweringOn"
              ? "powering on: capacity is wanted"
              : "powering off"),
    );
  } else if (conditions.some((c) => c.type === "Consolidation")) {
    conditions = conditions.filter((c) => c.type !== "Consolidation");
  }
  if (o.inventoryStale) {
    const s = o.inventoryStale;
    set(
      "InventoryStale",
      true,
      "ListingFailed",
      `listing the domains failed since ${s.since.toISOString()}: ${s.error}; ${s.listedAt ? `the listing from ${s.listedAt.toISOString()} is kept` : "not listed yet"}, retried every heartbeat`,
    );
  } else if (conditions.some((c) => c.type === "InventoryStale" && c.status === "True")) {
    set("InventoryStale", false, "Listed", "the domains are listed");
  }
  if (o.deleting) {
    const { users } = o.deleting;
    set(
      "InUse",
      users.length > 0,
      users.length > 0 ? "InUse" : "Unused",
      users.length > 0 ? hostInUseMessage(users) : "nothing uses it: deleted now",
    );
  }
  const f = o.fence;
  if (f.state !== "notNeeded" || prev.conditions?.some((c) => c.type === "Fenced")) {
    const reason =
      f.state === "fenced"
        ? f.how === "skipped"
          ? "FencingSkipped"
          : f.how === "confirmed"
            ? "FenceConfirmed"
            : "Fenced"
        : f.state === "failed"
          ? "FenceFailed"
          : f.state === "held"
            ? "FencingHeld"
            : f.state === "deferred"
              ? "HostAnswers"
              : f.state === "unconfigured"
                ? "NoFenceAgent"
                : "NotNeeded";
    set(
      "Fenced",
      f.state === "fenced" && phase === "Fenced",
      reason,
      f.state === "notNeeded" ? "the host answers" : f.message,
    );
  }
  if (o.failoverStranded !== undefined && (phase === "Ready" || phase === "Maintenance")) {
    set(
      "FailoverCapacity",
      o.failoverStranded === 0,
      o.failoverStranded === 0 ? "Sufficient" : "Insufficient",
      o.failoverStranded === 0
        ? "if this host failed, the others could take all of its VMs"
        : `if this host failed, ${o.failoverStranded} of its VMs would find no host`,
    );
  }
  if (o.drain) {
    const { remaining, migrating, blocked } = o.drain;
    set(
      "Drained",
      remaining === 0,
      remaining === 0 ? "Drained" : blocked.length > 0 ? "DrainBlocked" : "Draining",
      remaining === 0
        ? "no running VM left: the host can be worked on"
        : `${remaining} running VM(s) left, ${migrating} moving` +
            (blocked.length > 0 ? `; ${blocked.length} cannot move: ${blocked[0]}` : ""),
    );
  } else if (conditions.some((c) => c.type === "Drained")) {
    conditions = conditions.filter((c) => c.type !== "Drained"); // out of maintenance
  }
  const ready = phase === "Ready" || phase === "Maintenance";
  // The conditions kstatus reads (Flux's health checks), as for VMs: Stalled when the host cannot
  // get well without someone acting (fencing failed or has no agent, a drain that cannot move a
  // VM), Reconciling while the controller is getting it there (connecting, fencing, draining,
  // consolidating). Never both.
  const stalled =
    !ready && (f.state === "failed" || f.state === "unconfigured")
      ? { reason: f.state === "failed" ? "FenceFailed" : "NoFenceAgent", message: f.message }
      : o.drain && o.drain.remaining > 0 && o.drain.blocked.length > 0 && o.drain.migrating === 0
        ? {
            reason: "DrainBlocked",
            message: `${o.drain.blocked.length} VM(s) cannot move: ${o.drain.blocked[0]}`,
          }
        : undefined;
  const reconciling = stalled
    ? undefined
    : phase === "Pending" || phase === "NotReady" || phase === "Unreachable" || phase === "Fencing"
      ? { reason: phase, message: o.lastError ?? `phase ${phase}` }
      : o.drain && o.drain.remaining > 0
        ? {
            reason: "Draining",
            message: `${o.drain.remaining} running VM(s) left, ${o.drain.migrating} moving`,
          }
        : o.consolidation && o.consolidation.state !== "PoweredOff"
          ? { reason: o.consolidation.state, message: o.consolidation.message ?? o.consolidation.state }
          : undefined;
  set("Stalled", !!stalled, stalled?.reason ?? "NotStalled", stalled?.message ?? "nothing needs an operator");
  set(
    "Reconciling",
    !!reconciling,
    reconciling?.reason ?? "Reconciled",
    reconciling?.message ?? "nothing in progress",
  );
  set("Ready", ready, phase, ready ? `${o.vmCount} VMs` : (o.lastError ?? `phase ${phase}`));
  status.conditions = conditions;
  if (generation !== undefined) status.observedGeneration = generation;
  // Reliability last: its running span is folded in when the status is written anyway.
  const judgedDead = f.state !== "notNeeded" && f.state !== "deferred";
  const { reliability: _prevFigures, ...prevRest } = prev;
  const { reliability: _figures, ...rest } = status;
  const accounted = accountReliability({
    prev: prev.reliability,
    downRecorded: downRecorded(prev),
    mark: o.reliabilityMark,
    observed: hostCondition(phase, judgedDead, o.connected && o.missedBeats === 0),
    lastAnswer: o.lastHeartbeat,
    writing: !jsonEqual(prevRest, rest),
    now,
  });
  if (accounted.reliability) status.reliability = accounted.reliability;
  const deadlines = hostDeadlineRecord(o.deadlineMisses ?? [], now);
  if (deadlines) status.deadlines = deadlines;
  else delete status.deadlines;
  return {
    status,
    phase,
    allocatable,
    ready: phase === "Ready",
    schedulable,
    reliabilityMark: accounted.mark,
    ...(deadlines?.avoidUntil ? { avoidedUntil: new Date(deadlines.avoidUntil) } : {}),
  };
}
