/**
 * Consolidation planning: which idle host to empty and power off next, and which powered-off host
 * to power on again. Pure functions over plain values, like placement.ts.
 *
 * Policy (one step per round, so the fleet changes gradually and every step is re-judged):
 * - Nothing while the fleet is unsettled: a host unreachable, fencing or fenced, a migration or
 *   a power change under way.
 * - Power on first: when VMs wait for capacity (or the failover capacity is insufficient) and a
 *   host we powered off could take them, power it on. A host being emptied is given back first.
 * - Else empty one host: among the hosts that allow it (spec.allowPowerOff with a power agent),
 *   the least loaded one whose running VMs all fit on the other active hosts, packed
 *   (first-fit-decreasing by memory through the same filters a placement uses), such that the
 *   loss of any one remaining host could still be absorbed when it could before (N-1).
 * - Never below `minActiveHosts`.
 */
import { type FailoverVM, failoverCapacity } from "./failover.js";
import { type HostCandidate, type PlacedVM, planPlacement } from "./placement.js";

export interface ConsolidationHost {
  candidate: HostCandidate;
  /** spec.allowPowerOff and a power agent that can switch it off and on. */
  mayPowerOff: boolean;
  /** Powered off by consolidation (status), and whether it can be powered on (agent). */
  poweredOff: boolean;
  mayPowerOn: boolean;
  /** Being emptied by consolidation now. */
  draining: boolean;
  /** In maintenance, unreachable, fencing, fenced, or changing power: leave it alone. */
  busy: boolean;
}

export interface ConsolidationInput {
  hosts: readonly ConsolidationHost[];
  /** Placed VMs (running or not), with what a move would need. */
  vms: readonly FailoverVM[];
  /**
   * VMs that must leave a host before it is switched off: running, or placed and about to run.
   * The others (stopped) stay defined where they are and are placed anew when started.
   */
  running: ReadonlySet<string>;
  /** VMs that could not be placed for lack of capacity, with their needs. */
  waiting: readonly FailoverVM[];
  /** Anything under way that makes this round wait (migrations, recoveries). */
  unsettled?: string;
  minActiveHosts?: number;
  /** Keep N-1 failover capacity when the fleet has it (default true). */
  keepFailoverCapacity?: boolean;
  /** The fleet's N-1 verdict now, if already known (else computed here). */
  failoverSufficient?: boolean;
}

export type ConsolidationStep =
  | { kind: "wait"; reason: string }
  | { kind: "none"; reason: string }
  | { kind: "powerOn"; host: string; reason: string }
  | { kind: "cancelDrain"; host: string; reason: string }
  | { kind: "drain"; host: string; moves: { key: string; to: string }[]; reason: string };

const byMemoryDesc = (a: FailoverVM, b: FailoverVM) =>
  b.request.request.memoryBytes - a.request.request.memoryBytes ||
  b.request.request.cpuMilli - a.request.request.cpuMilli ||
  a.request.key.localeCompare(b.request.key);

/**
 * Try to place `vms` on `hosts` (whose allocations grow in the copies), packed, largest first.
 * Returns the moves, or undefined when one does not fit.
 */
function packInto(
  vms: readonly FailoverVM[],
  hosts: HostCandidate[],
  placed: PlacedVM[],
  exclude: ReadonlySet<string>,
): { key: string; to: string }[] | undefined {
  const byName = new Map(hosts.map((h) => [h.name, h]));
  const moves: { key: string; to: string }[] = [];
  for (const v of [...vms].sort(byMemoryDesc)) {
    const d = planPlacement({ ...v.request, strategy: "pack", excludeHosts: exclude }, hosts, placed);
    if (d.kind !== "placed") return undefined;
    const h = byName.get(d.host) as HostCandidate;
    h.allocated.cpuMilli += v.request.request.cpuMilli;
    h.allocated.memoryBytes += v.request.request.memoryBytes;
    placed.push({ key: v.request.key, namespace: v.request.namespace, labels: v.labels, host: d.host });
    moves.push({ key: v.request.key, to: d.host });
  }
  return moves;
}

const copyHosts = (hosts: readonly HostCandidate[]) =>
  hosts.map((h) => ({ ...h, allocated: { ...h.allocated } }));

export function planConsolidation(input: ConsolidationInput): ConsolidationStep {
  const busy = input.hosts.find((h) => h.busy);
  if (busy) return { kind: "wait", reason: `host ${busy.candidate.name} is not settled` };
  if (input.unsettled) return { kind: "wait", reason: input.unsettled };
  const active = input.hosts.filter((h) => !h.poweredOff);
  const activeCandidates = active.map((h) => h.candidate);
  const keepN1 = input.keepFailoverCapacity ?? true;
  const n1Now = keepN1
    ? (input.failoverSufficient ?? failoverCapacity(activeCandidates, input.vms).sufficient)
    : false;

  // Capacity wanted: VMs waiting, or N-1 lost (e.g. a host failed since the last round).
  const needCapacity =
    input.waiting.length > 0
      ? `${input.waiting.length} VM(s) wait for capacity`
      : keepN1 && !n1Now && input.hosts.some((h) => h.poweredOff)
        ? "the loss of one host could no longer be absorbed"
        : undefined;
  if (needCapacity) {
    const draining = active.find((h) => h.draining);
    if (draining) return { kind: "cancelDrain", host: draining.candidate.name, reason: needCapacity };
    // The powered-off host that would take the most of what waits (else the largest).
    const off = input.hosts.filter((h) => h.poweredOff && h.mayPowerOn);
    let best: { host: string; fits: number; mem: number } | undefined;
    for (const h of off) {
      // Judged on capacity alone: an off host's networks and images are not known ready yet.
      const hosts = copyHosts([{ ...h.candidate, ready: true, schedulable: true, storage: undefined }]);
      let fits = 0;
      for (const v of [...input.waiting].sort(byMemoryDesc)) {
        const bare = { ...v, request: { ...v.request, networks: [], images: [] } };
        if (packInto([bare], hosts, [], new Set())) fits++;
      }
      const mem = h.candidate.allocatable.memoryBytes;
      if (!best || fits > best.fits || (fits === best.fits && mem > best.mem))
        best = { host: h.candidate.name, fits, mem };
    }
    if (best && (input.waiting.length === 0 || best.fits > 0))
      return { kind: "powerOn", host: best.host, reason: needCapacity };
    return { kind: "none", reason: `${needCapacity}; no powered-off host could take it` };
  }
  if (active.some((h) => h.draining)) return { kind: "wait", reason: "a host is being emptied" };

  const min = Math.max(1, input.minActiveHosts ?? 1);
  const usable = active.filter((h) => h.candidate.ready && h.candidate.schedulable);
  if (usable.length <= min) return { kind: "none", reason: `${usable.length} active host(s): the minimum` };
  const onHost = new Map<string, FailoverVM[]>();
  for (const v of input.vms) {
    if (!input.running.has(v.request.key)) continue;
    const list = onHost.get(v.host);
    if (list) list.push(v);
    else onHost.set(v.host, [v]);
  }
  const placedAll: PlacedVM[] = input.vms.map((v) => ({
    key: v.request.key,
    namespace: v.request.namespace,
    labels: v.labels,
    host: v.host,
  }));
  const load = (h: ConsolidationHost) =>
    h.candidate.allocated.memoryBytes / Math.max(1, h.candidate.allocatable.memoryBytes);
  const eligible = usable
    .filter((h) => h.mayPowerOff)
    .sort((a, b) => load(a) - load(b) || a.candidate.name.localeCompare(b.candidate.name));
  for (const h of eligible) {
    const name = h.candidate.name;
    const leaving = onHost.get(name) ?? [];
    const others = copyHosts(activeCandidates.filter((c) => c.name !== name));
    // Its VMs' reservations leave with it.
    const peers = placedAll.filter((p) => p.host !== name);
    const moves = packInto(leaving, others, peers, new Set([name]));
    if (!moves) continue;
    if (keepN1 && n1Now) {
      // The fleet after the move: the remaining hosts, the moved VMs on their new hosts.
      const moved = new Map(moves.map((m) => [m.key, m.to]));
      const after = input.vms
        .filter((v) => v.host !== name || moved.has(v.request.key))
        .map((v) => (moved.has(v.request.key) ? { ...v, host: moved.get(v.request.key) as string } : v));
      if (!failoverCapacity(others, after).sufficient) continue;
    }
    return {
      kind: "drain",
      host: name,
      moves,
      reason: `${leaving.length} VM(s) fit on the other ${others.length} host(s)`,
    };
  }
  return { kind: "none", reason: "no host can be emptied without losing room or failover capacity" };
}

/**
 * The fewest hosts the placed VMs could fit on if they were fluid (the bin-packing lower bound,
 * per resource): the largest hosts first until their capacity covers the demand, the larger of
 * the CPU and memory counts.
 */
export function activeHostsLowerBound(
  hosts: readonly { allocatable: { cpuMilli: number; memoryBytes: number } }[],
  demand: { cpuMilli: number; memoryBytes: number },
): number {
  const need = (pick: (c: { cpuMilli: number; memoryBytes: number }) => number, total: number) => {
    const caps = hosts.map((h) => pick(h.allocatable)).sort((a, b) => b - a);
    let sum = 0;
    for (let i = 0; i < caps.length; i++) {
      if (sum >= total) return i;
      sum += caps[i] as number;
    }
    return sum >= total ? caps.length : Number.POSITIVE_INFINITY;
  };
  return Math.max(
    demand.cpuMilli > 0 ? need((c) => c.cpuMilli, demand.cpuMilli) : 0,
    demand.memoryBytes > 0 ? need((c) => c.memoryBytes, demand.memoryBytes) : 0,
  );
}
