/**
 * Placement: filter the hosts a VM may run on, then rank them (OpenNebula-style requirements +
 * rank). Pure functions over plain values: no provider, no store.
 *
 * Contract: `planPlacement` never returns a host that fails a filter; when nothing fits it returns
 * every host's first failing filter so the VM's condition can say why (e.g. "3 hosts: insufficient
 * memory; 1 host: network lan not ready"). Ties are broken by host name so that the same input
 * always gives the same answer.
 */

export interface Capacity {
  /** Millicores. */
  cpuMilli: number;
  memoryBytes: number;
}

export interface HostCandidate {
  name: string;
  labels: Record<string, string>;
  failureDomain?: string;
  ready: boolean;
  /** Cordoned, in maintenance or powering off: keeps its VMs, takes no new ones. */
  schedulable: boolean;
  allocatable: Capacity;
  allocated: Capacity;
  /** Networks (namespace/name) ready on this host. */
  networks: ReadonlySet<string>;
  /** Base images (pool/volume) present on this host. */
  images: ReadonlySet<string>;
  /**
   * What the host's storage was last seen to hold: once known, a host lacking a VM's base image
   * or the free space for its disks is not chosen.
   */
  storage?: { checkedImages: ReadonlySet<string>; poolFreeBytes: ReadonlyMap<string, number> };
  /** Observed mean time between failures (Host status.reliability); undefined: no failure seen yet. */
  mtbfSeconds?: number;
  /** Why new VMs avoid the host for now (VMs missed bring-up deadlines here), if they do. */
  avoided?: string;
  /**
   * What the host was last measured to use (libvirt's node statistics, Host status.usage), not
   * what is allocated on it; undefined until two samples have been taken. Only loadAware ranks
   * by it; the capacity filters stay on allocation.
   */
  measured?: MeasuredUse;
}

/** A host's measured use: CPU utilisation between two samples, and memory in use, against its size. */
export interface MeasuredUse {
  /** Busy share of all the host's CPUs, 0..1. */
  cpuUtilisation: number;
  /** The host's physical CPUs (no overcommit, no reservation). */
  cpus: number;
  memoryUsedBytes: number;
  memoryTotalBytes: number;
  /**
   * What was allocated on the host when it was sampled. VMs placed since are not in the
   * measurement yet (most have not even started): their requests, what is allocated now beyond
   * this, count as their use until the next sample, so a burst of VMs does not all go to the
   * host that was idlest at the last sample. Unset: nothing counted beyond the measurement.
   */
  allocatedAtSample?: Capacity;
}

export interface LabelSelectorLike {
  matchLabels?: Record<string, string>;
  matchExpressions?: {
    key: string;
    operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
    values?: string[];
  }[];
}

export interface PlacementTerm {
  selector: LabelSelectorLike;
  topology: "host" | "failureDomain";
}

/** A preferred (soft) term: ranks hosts, never filters them; weight 1..100. */
export interface WeightedTerm extends PlacementTerm {
  weight: number;
}

/**
 * How the hosts that fit are ranked. spread: least loaded (memory after placement, CPU second).
 * pack: fullest by ratio. bestFit: the least memory left over in bytes (a small host nearly full
 * beats a big one with more left, unlike pack). roundRobin: the next host in name order after
 * the last one a roundRobin VM was placed on (Eucalyptus' ROUNDROBIN), load ignored.
 * loadAware: least loaded by what the host was measured to use (OpenNebula's load-aware
 * policy), not by what is allocated: see loadAwareFit.
 */
export type PlacementStrategy = "spread" | "pack" | "bestFit" | "roundRobin" | "loadAware";

export interface PlacementRequest {
  /** namespace/name of the VM. */
  key: string;
  namespace: string;
  request: Capacity;
  hostSelector?: Record<string, string>;
  affinity: PlacementTerm[];
  antiAffinity: PlacementTerm[];
  strategy: PlacementStrategy;
  /** Preferred terms (spec.placement.preferredAffinity / preferredAntiAffinity): see scoreHost. */
  preferredAffinity?: WeightedTerm[];
  preferredAntiAffinity?: WeightedTerm[];
  /** roundRobin: the host the previous roundRobin placement chose (the fleet keeps it). */
  roundRobinAfter?: string;
  /** Rank by host reliability too (spec.placement.preferReliableHosts): see scoreHost. */
  preferReliable?: boolean;
  networks: string[];
  images: string[];
  /** Free space the VM's new disks need, per pool (see reconcilers/virtualmachine/placement-request.ts, diskNeeds). */
  diskBytes?: Record<string, number>;
  /** Hosts to avoid (e.g. the failed host, or the source of a migration). */
  excludeHosts?: ReadonlySet<string>;
}

/** A VM already placed (or reserved) somewhere, for affinity checks. */
export interface PlacedVM {
  key: string;
  namespace: string;
  labels: Record<string, string>;
  host: string;
}

export type FilterReason =
  | "HostNotReady"
  | "HostUnschedulable"
  | "Excluded"
  | "DeadlinesMissed"
  | "HostSelectorMismatch"
  | "InsufficientCPU"
  | "InsufficientMemory"
  | "NetworkNotReady"
  | "ImageMissing"
  | "InsufficientDisk"
  | "AntiAffinity"
  | "Affinity";

export type PlacementDecision =
  /** `unmet`: the preferred terms the chosen host does not satisfy, said for the Scheduled condition. */
  | { kind: "placed"; host: string; score: number; unmet?: string[] }
  | { kind: "unschedulable"; reasons: Partial<Record<FilterReason, number>>; message: string };

export function matchesSelector(labels: Record<string, string>, selector: LabelSelectorLike): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
  }
  for (const expr of selector.matchExpressions ?? []) {
    const value = labels[expr.key];
    switch (expr.operator) {
      case "In":
        if (value === undefined || !(expr.values ?? []).includes(value)) return false;
        break;
      case "NotIn":
        if (value !== undefined && (expr.values ?? []).includes(value)) return false;
        break;
      case "Exists":
        if (value === undefined) return false;
        break;
      case "DoesNotExist":
        if (value !== undefined) return false;
        break;
    }
  }
  return true;
}

function topologyOf(host: HostCandidate, topology: PlacementTerm["topology"]): string {
  return topology === "failureDomain" ? (host.failureDomain ?? `host:${host.name}`) : host.name;
}

/** Topology values (host names or failure domains) occupied by VMs matching each term. */
function occupiedTopologies(
  terms: PlacementTerm[],
  req: PlacementRequest,
  placed: Iterable<PlacedVM>,
  hostsByName: Map<string, HostCandidate>,
): Set<string>[] {
  const sets = terms.map(() => new Set<string>());
  if (terms.length === 0) return sets;
  for (const vm of placed) {
    if (vm.key === req.key || vm.namespace !== req.namespace) continue;
    const host = hostsByName.get(vm.host);
    terms.forEach((term, i) => {
      if (!matchesSelector(vm.labels, term.selector)) return;
      sets[i]?.add(host ? topologyOf(host, term.topology) : vm.host);
    });
  }
  return sets;
}

/** What a request's filters need, computed once per request rather than once per host. */
interface PreparedRequest {
  selector: [string, string][];
  disks: [string, number][];
}

function prepare(req: PlacementRequest): PreparedRequest {
  return {
    selector: Object.entries(req.hostSelector ?? {}),
    disks: Object.entries(req.diskBytes ?? {}),
  };
}

/** The first filter a host fails for this request, or undefined when it fits. */
export function firstFailingFilter(
  req: PlacementRequest,
  host: HostCandidate,
  anti: Set<string>[],
  aff: Set<string>[],
  prepared: PreparedRequest = prepare(req),
): FilterReason | undefined {
  if (req.excludeHosts?.has(host.name)) return "Excluded";
  if (!host.ready) return "HostNotReady";
  if (!host.schedulable) return "HostUnschedulable";
  if (host.avoided) return "DeadlinesMissed";
  for (const [k, v] of prepared.selector) if (host.labels[k] !== v) return "HostSelectorMismatch";
  if (host.allocated.cpuMilli + req.request.cpuMilli > host.allocatable.cpuMilli) return "InsufficientCPU";
  if (host.allocated.memoryBytes + req.request.memoryBytes > host.allocatable.memoryBytes)
    return "InsufficientMemory";
  for (const n of req.networks) if (!host.networks.has(n)) return "NetworkNotReady";
  if (host.storage) {
    // Only what was looked for: an image nobody asked for at the last inventory is not known
    // missing (provisioning then says so if it is).
    for (const i of req.images)
      if (host.storage.checkedImages.has(i) && !host.images.has(i)) return "ImageMissing";
    for (const [pool, bytes] of prepared.disks) {
      const free = host.storage.poolFreeBytes.get(pool);
      if (free !== undefined && free < bytes) return "InsufficientDisk";
    }
  }
  for (let i = 0; i < req.antiAffinity.length; i++) {
    const term = req.antiAffinity[i];
    if (term && anti[i]?.has(topologyOf(host, term.topology))) return "AntiAffinity";
  }
  for (let i = 0; i < req.affinity.length; i++) {
    const term = req.affinity[i];
    const occupied = aff[i];
    // An affinity term nobody matches yet is satisfied anywhere (the first member seeds the group).
    if (term && occupied && occupied.size > 0 && !occupied.has(topologyOf(host, term.topology)))
      return "Affinity";
  }
  return undefined;
}

/** The MTBF that scores half marks in reliabilityScore: one day. */
export const RELIABILITY_REFERENCE_SECONDS = 86_400;

/**
 * A host's reliability in [0, 1): MTBF / (MTBF + 1 day), so an MTBF of an hour scores 0.04, a day
 * 0.5, a week 0.875. A host with no measured MTBF (no failure observed yet, or never observed)
 * is neutral: scored as one with an MTBF of exactly one day, neither preferred nor avoided.
 */
export function reliabilityScore(mtbfSeconds: number | undefined): number {
  if (mtbfSeconds === undefined || !Number.isFinite(mtbfSeconds) || mtbfSeconds < 0) return 0.5;
  return mtbfSeconds / (mtbfSeconds + RELIABILITY_REFERENCE_SECONDS);
}

/** Fleet-wide figures some strategies rank against (bestFit: the largest host's memory). */
export interface ScoreContext {
  maxMemoryBytes: number;
  maxCpuMilli: number;
}

/**
 * Score in [0, 100]: memory is the scarce resource on hypervisors, so the memory ratio after
 * placement dominates; CPU breaks near-ties; a host already holding the base images wins a bonus
 * (a linked clone instead of a copy over the network). bestFit ranks by what is left over in
 * absolute terms (against the fleet's largest host), so the tightest fit wins whatever the
 * host's size. The components asked for are averaged: the strategy's score, 100 x the host's
 * reliabilityScore with `preferReliable`, and 100 x `preference` (the share of preferred-term
 * weight the host satisfies) when there are preferred terms. With reliability, MTBFs far apart
 * (an hour against a week: 2 against 44 points) outweigh any load difference (45 points at
 * most), close ones (a day against two: 25 against 33) leave the strategy room to decide.
 */
export function scoreHost(
  req: PlacementRequest,
  host: HostCandidate,
  preference?: number,
  ctx?: ScoreContext,
): number {
  const memAfter = host.allocated.memoryBytes + req.request.memoryBytes;
  const cpuAfter = host.allocated.cpuMilli + req.request.cpuMilli;
  const memRatio = host.allocatable.memoryBytes > 0 ? memAfter / host.allocatable.memoryBytes : 1;
  const cpuRatio = host.allocatable.cpuMilli > 0 ? cpuAfter / host.allocatable.cpuMilli : 1;
  let fit: number;
  if (req.strategy === "loadAware" && host.measured) {
    fit = loadAwareFit(req.request, host.measured, host.allocated);
  } else if (req.strategy === "bestFit") {
    const maxMem = Math.max(1, ctx?.maxMemoryBytes ?? host.allocatable.memoryBytes);
    const maxCpu = Math.max(1, ctx?.maxCpuMilli ?? host.allocatable.cpuMilli);
    const memLeft = Math.max(0, host.allocatable.memoryBytes - memAfter) / maxMem;
    const cpuLeft = Math.max(0, host.allocatable.cpuMilli - cpuAfter) / maxCpu;
    fit = 1 - (0.8 * memLeft + 0.2 * cpuLeft);
  } else {
    // loadAware on a host not measured yet (just connected: a utilisation takes two samples)
    // ranks as spread does, by allocation: the best guess there is, and the same order spread
    // would give, rather than treating the unknown as idle (everything would go there) or full.
    const load = 0.8 * memRatio + 0.2 * cpuRatio;
    fit = req.strategy === "pack" ? load : 1 - load;
  }
  const imageBonus = req.images.length > 0 && hasAll(host.images, req.images) ? 1 : 0;
  // The mean of the components asked for, without an array: this runs for every host of every
  // placement (500 hosts x 10,000 VMs in bench:scale).
  let sum = fit * 90 + imageBonus * 10;
  let parts = 1;
  if (req.preferReliable) {
    sum += 100 * reliabilityScore(host.mtbfSeconds);
    parts++;
  }
  if (preference !== undefined) {
    sum += 100 * preference;
    parts++;
  }
  return Math.round((sum / parts) * 1000) / 1000;
}

/**
 * Whether the set holds every one of the items. A function of its own, not an arrow in
 * scoreHost: one capturing the host would allocate a context on every call of scoreHost, that is
 * for every host of every placement, whether or not the VM names any images.
 */
function hasAll(set: ReadonlySet<string>, items: readonly string[]): boolean {
  for (const i of items) if (!set.has(i)) return false;
  return true;
}

/**
 * loadAware's fit in [0, 1]: 1 - the host's measured load once the VM is added, its request
 * taken as the estimate of what it will use (a VM's real use is not known before it runs), and
 * so are the requests of VMs placed there since the sample (MeasuredUse.allocatedAtSample). CPU:
 * (busy cores measured + newly placed vCPUs + the VM's) / the host's CPUs; memory: (measured in
 * use + newly placed + the VM's) / the host's total; both capped at 1 and weighted alike, as measured CPU is what this
 * strategy is for (spread weights memory 0.8, for allocation is what it sees).
 */
export function loadAwareFit(request: Capacity, m: MeasuredUse, allocatedNow?: Capacity): number {
  const since = m.allocatedAtSample;
  const newCpu = since && allocatedNow ? Math.max(0, allocatedNow.cpuMilli - since.cpuMilli) : 0;
  const newMem = since && allocatedNow ? Math.max(0, allocatedNow.memoryBytes - since.memoryBytes) : 0;
  const cpuCapacityMilli = m.cpus * 1000;
  const cpu =
    cpuCapacityMilli > 0
      ? (m.cpuUtilisation * cpuCapacityMilli + newCpu + request.cpuMilli) / cpuCapacityMilli
      : 1;
  const mem =
    m.memoryTotalBytes > 0 ? (m.memoryUsedBytes + newMem + request.memoryBytes) / m.memoryTotalBytes : 1;
  return 1 - (0.5 * Math.min(1, cpu) + 0.5 * Math.min(1, mem));
}

/** A preferred term as the Scheduled condition names it. */
function describeTerm(kind: "affinity" | "anti-affinity", t: WeightedTerm): string {
  const labels = Object.entries(t.selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  const exprs = (t.selector.matchExpressions ?? []).map(
    (e) => `${e.key} ${e.operator}${e.values?.length ? ` (${e.values.join(",")})` : ""}`,
  );
  const sel = [...labels, ...exprs].join(", ") || "every VM";
  return `preferred ${kind} ${sel} by ${t.topology} (weight ${t.weight})`;
}

/**
 * The share of preferred weight a host satisfies (0..1), and the terms it does not. An affinity
 * term nobody matches yet is satisfied anywhere (as for required terms); an anti-affinity term is
 * satisfied where no VM it selects runs.
 */
function preferenceOf(
  req: PlacementRequest,
  host: HostCandidate,
  prefAff: Set<string>[],
  prefAnti: Set<string>[],
): { share: number; unmet: string[] } {
  let total = 0;
  let met = 0;
  const unmet: string[] = [];
  (req.preferredAffinity ?? []).forEach((t, i) => {
    total += t.weight;
    const occ = prefAff[i];
    if (!occ || occ.size === 0 || occ.has(topologyOf(host, t.topology))) met += t.weight;
    else unmet.push(describeTerm("affinity", t));
  });
  (req.preferredAntiAffinity ?? []).forEach((t, i) => {
    total += t.weight;
    if (!prefAnti[i]?.has(topologyOf(host, t.topology))) met += t.weight;
    else unmet.push(describeTerm("anti-affinity", t));
  });
  return { share: total > 0 ? met / total : 1, unmet };
}

const REASON_TEXT: Record<FilterReason, string> = {
  HostNotReady: "not ready",
  HostUnschedulable: "unschedulable",
  Excluded: "excluded",
  DeadlinesMissed: "missed bring-up deadlines lately",
  HostSelectorMismatch: "host selector mismatch",
  InsufficientCPU: "insufficient cpu",
  InsufficientMemory: "insufficient memory",
  NetworkNotReady: "network not ready",
  ImageMissing: "base image not in its pools",
  InsufficientDisk: "insufficient free space in the storage pool",
  AntiAffinity: "anti-affinity",
  Affinity: "affinity",
};

/** Whether a placement message says the VM found no host for lack of CPU or memory. */
export function lacksCapacity(message: string): boolean {
  return message.includes(REASON_TEXT.InsufficientCPU) || message.includes(REASON_TEXT.InsufficientMemory);
}

export function describeReasons(total: number, reasons: Partial<Record<FilterReason, number>>): string {
  if (total === 0) return "no hosts are defined";
  const parts = Object.entries(reasons)
    .sort((a, b) => (b[1] ?? 0) - (a[1] ?? 0))
    .map(([r, n]) => `${n} ${n === 1 ? "host" : "hosts"}: ${REASON_TEXT[r as FilterReason]}`);
  return `0/${total} hosts fit (${parts.join("; ")})`;
}

export function planPlacement(
  req: PlacementRequest,
  hosts: readonly HostCandidate[],
  placed: Iterable<PlacedVM>,
): PlacementDecision {
  const prefAffTerms = req.preferredAffinity ?? [];
  const prefAntiTerms = req.preferredAntiAffinity ?? [];
  const preferring = prefAffTerms.length + prefAntiTerms.length > 0;
  const needsPeers = req.antiAffinity.length > 0 || req.affinity.length > 0 || preferring;
  // Only affinity needs the peers and the host index (10,000 VMs x 500 hosts add up).
  const hostsByName = needsPeers ? new Map(hosts.map((h) => [h.name, h])) : new Map<string, HostCandidate>();
  const peerList = needsPeers ? [...placed] : [];
  const anti = occupiedTopologies(req.antiAffinity, req, peerList, hostsByName);
  const aff = occupiedTopologies(req.affinity, req, peerList, hostsByName);
  const prefAff = occupiedTopologies(prefAffTerms, req, peerList, hostsByName);
  const prefAnti = occupiedTopologies(prefAntiTerms, req, peerList, hostsByName);
  const prepared = prepare(req);
  const ctx: ScoreContext | undefined =
    req.strategy === "bestFit"
      ? {
          maxMemoryBytes: Math.max(0, ...hosts.map((h) => h.allocatable.memoryBytes)),
          maxCpuMilli: Math.max(0, ...hosts.map((h) => h.allocatable.cpuMilli)),
        }
      : undefined;
  const reasons: Partial<Record<FilterReason, number>> = {};
  let best: { host: string; score: number; unmet: string[] } | undefined;
  // roundRobin: the first fitting host after the cursor in name order, else the first fitting one.
  let rrAfter: { host: string; score: number; unmet: string[] } | undefined;
  let rrFirst: { host: string; score: number; unmet: string[] } | undefined;
  for (const host of hosts) {
    const failed = firstFailingFilter(req, host, anti, aff, prepared);
    if (failed) {
      reasons[failed] = (reasons[failed] ?? 0) + 1;
      continue;
    }
    const pref = preferring ? preferenceOf(req, host, prefAff, prefAnti) : undefined;
    const score = scoreHost(req, host, pref?.share, ctx);
    // An entry only for a host that leads so far (not one per host per placement).
    if (req.strategy === "roundRobin") {
      const first = !rrFirst || host.name < rrFirst.host;
      const after = req.roundRobinAfter === undefined || host.name > req.roundRobinAfter;
      const next = after && (!rrAfter || host.name < rrAfter.host);
      if (!first && !next) continue;
      const entry = { host: host.name, score, unmet: pref?.unmet ?? [] };
      if (first) rrFirst = entry;
      if (next) rrAfter = entry;
      continue;
    }
    if (!best || score > best.score || (score === best.score && host.name < best.host))
      best = { host: host.name, score, unmet: pref?.unmet ?? [] };
  }
  const chosen = req.strategy === "roundRobin" ? (rrAfter ?? rrFirst) : best;
  if (chosen)
    return {
      kind: "placed",
      host: chosen.host,
      score: chosen.score,
      ...(chosen.unmet.length > 0 ? { unmet: chosen.unmet } : {}),
    };
  return { kind: "unschedulable", reasons, message: describeReasons(hosts.length, reasons) };
}

/**
 * The order VMs that become placeable together are placed in: availability priority first (the
 * important VMs take the capacity), then first-fit-decreasing by size, memory then CPU (UnaCloud's
 * FFD: big VMs are not stranded behind small ones that fragmented the hosts), then by key.
 */
export function placementOrder(
  a: { key: string; priority: number; request: Capacity },
  b: { key: string; priority: number; request: Capacity },
): number {
  return (
    b.priority - a.priority ||
    b.request.memoryBytes - a.request.memoryBytes ||
    b.request.cpuMilli - a.request.cpuMilli ||
    (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
  );
}

/** Placement waits: these declared hosts have not been observed yet, at most until `untilMs` (epoch ms). */
export interface PlacementHold {
  waitingFor: string[];
  untilMs: number;
}
