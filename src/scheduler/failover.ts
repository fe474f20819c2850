/**
 * Failover planning: if these hosts failed now, where would their VMs go? Pure and synchronous,
 * the same placement the VirtualMachine reconciler runs during a real recovery (priority order,
 * filters for capacity, readiness, selectors, affinity and anti-affinity, networks, images).
 *
 * Used for the failover capacity signal (can the loss of the largest host be absorbed, like
 * vSphere HA admission control) and for `virtwarden whatif host-down`.
 */
import { type HostCandidate, type PlacedVM, type PlacementRequest, planPlacement } from "./placement.js";

export interface FailoverVM {
  request: PlacementRequest;
  labels: Record<string, string>;
  /** availability.priority; higher is recovered first. */
  priority: number;
  host: string;
  /** Whether it would be started elsewhere (onHostFailure Recreate and a running strategy). */
  recover: boolean;
}

export interface FailoverPlan {
  failed: string[];
  moved: { key: string; from: string; to: string; priority: number }[];
  stranded: { key: string; from: string; priority: number; reason: string }[];
  /** VMs of the failed hosts that are not recovered by policy (onHostFailure Nothing, Halted...). */
  leftDown: { key: string; from: string }[];
}

export function planFailover(
  failedHosts: readonly string[],
  candidates: readonly HostCandidate[],
  vms: readonly FailoverVM[],
): FailoverPlan {
  const failed = new Set(failedHosts);
  // Working copies: allocations grow as VMs are placed in this plan.
  const hosts: HostCandidate[] = candidates.map((h) => ({
    ...h,
    ready: h.ready && !failed.has(h.name),
    allocated: { ...h.allocated },
  }));
  const byName = new Map(hosts.map((h) => [h.name, h]));
  const placed: PlacedVM[] = vms
    .filter((v) => !failed.has(v.host))
    .map((v) => ({ key: v.request.key, namespace: v.request.namespace, labels: v.labels, host: v.host }));
  const victims = vms
    .filter((v) => failed.has(v.host))
    .sort((a, b) => b.priority - a.priority || a.request.key.localeCompare(b.request.key));
  const plan: FailoverPlan = { failed: [...failed], moved: [], stranded: [], leftDown: [] };
  for (const v of victims) {
    if (!v.recover) {
      plan.leftDown.push({ key: v.request.key, from: v.host });
      continue;
    }
    const d = planPlacement({ ...v.request, excludeHosts: failed }, hosts, placed);
    if (d.kind === "unschedulable") {
      plan.stranded.push({ key: v.request.key, from: v.host, priority: v.priority, reason: d.message });
      continue;
    }
    const h = byName.get(d.host) as HostCandidate;
    h.allocated.cpuMilli += v.request.request.cpuMilli;
    h.allocated.memoryBytes += v.request.request.memoryBytes;
    placed.push({ key: v.request.key, namespace: v.request.namespace, labels: v.labels, host: d.host });
    plan.moved.push({ key: v.request.key, from: v.host, to: d.host, priority: v.priority });
  }
  return plan;
}

export interface FailoverCapacity {
  /** Whether the loss of any single host could be absorbed (every recoverable VM placed). */
  sufficient: boolean;
  /** The host whose loss strands the most VMs (or the largest host when none strands any). */
  worstHost: string | undefined;
  /** VMs that would stay down if worstHost failed. */
  stranded: number;
  message: string;
  /** Per ready host: how many recoverable VMs would stay down if it failed. */
  strandedByHost: Map<string, number>;
}

/** N-1 check: fail each ready host in turn. */
export function failoverCapacity(
  candidates: readonly HostCandidate[],
  vms: readonly FailoverVM[],
): FailoverCapacity {
  const ready = candidates.filter((h) => h.ready);
  const strandedByHost = new Map<string, number>();
  if (ready.length === 0)
    return {
      sufficient: false,
      worstHost: undefined,
      stranded: 0,
      message: "no host is ready",
      strandedByHost,
    };
  let worst: { host: string; stranded: number; load: number } | undefined;
  for (const h of ready) {
    const plan = planFailover([h.name], candidates, vms);
    strandedByHost.set(h.name, plan.stranded.length);
    const load = h.allocated.memoryBytes;
    if (
      !worst ||
      plan.stranded.length > worst.stranded ||
      (plan.stranded.length === worst.stranded && load > worst.load)
    )
      worst = { host: h.name, stranded: plan.stranded.length, load };
  }
  const w = worst as { host: string; stranded: number };
  return {
    sufficient: w.stranded === 0,
    worstHost: w.host,
    stranded: w.stranded,
    message:
      w.stranded === 0
        ? `the loss of any one host can be absorbed (largest: ${w.host})`
        : `losing ${w.host} would leave ${w.stranded} VM(s) without a host`,
    strandedByHost,
  };
}
