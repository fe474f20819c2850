/**
 * Fleet: the controller's live view of the hypervisor hosts, shared by the Host and
 * VirtualMachine reconcilers.
 *
 * - One connection per Host resource (a HypervisorProvider from the factory), its heartbeat and
 *   the last inventory of domains it reported. Domain events and health changes are forwarded to
 *   hooks that enqueue keys: nothing here decides anything.
 * - The allocation ledger: which VM is assigned to which host and what it reserves. Placement
 *   reserves synchronously (no await between decision and reservation), so concurrent workers
 *   never overcommit a host. The ledger is rebuilt after a restart from VM statuses and from the
 *   domains the hosts report (ownership metadata), so no local database is needed.
 *
 * Not persisted: everything here can be rebuilt from the store and the hosts.
 */

import pLimit, { type LimitFunction } from "p-limit";
import type { HostUsage } from "../api/types.js";
import type {
  DomainEvent,
  DomainSummary,
  HostInfo,
  HostProviderOptions,
  HypervisorProvider,
  NetworkEvent,
  ProviderFactory,
  ProviderHealth,
  Unsubscribe,
} from "../providers/types.js";
import { ProviderError } from "../providers/types.js";
import type { Capacity, HostCandidate, PlacedVM, PlacementHold } from "../scheduler/placement.js";
import type { NodeSample } from "./host/usage.js";

/** Concurrent domain starts per host unless configured (Runtime option concurrentStartsPerHost). */
export const DEFAULT_CONCURRENT_STARTS = 4;

/**
 * How long placement waits for a declared host this controller has not seen yet (answering, or
 * judged down; not Pending), from when it first saw it declared.
 */
export const DEFAULT_PLACEMENT_WAIT_MS = 15_000;

export class HostConnection {
  info?: HostInfo;
  lastHeartbeat?: Date;
  /** Heartbeats missed in a row (a failed ping, or a disconnected provider). */
  missedBeats = 0;
  lastError?: string;
  /** Domains last reported by the host, by domain name. */
  domains = new Map<string, DomainSummary>();
  inventoryAt?: Date;
  /** Names of networks ready on this host (namespace/name of VirtualNetwork). */
  readonly networks = new Set<string>();
  /** Base images present on this host (pool/volume), of those VMs ask for. */
  readonly images = new Set<string>();
  /** Its storage as last seen (refreshed with the inventory); live object read by placement. */
  readonly storage = { checkedImages: new Set<string>(), poolFreeBytes: new Map<string, number>() };
  /** The latest node-statistics sample (taken with the inventory), the base of the next usage. */
  nodeSample?: NodeSample;
  /** What the host was measured to use between its last two samples (host/usage.ts). */
  usage?: HostUsage;
  /** What was allocated on the host when `usage` was sampled (placement counts VMs placed since). */
  allocatedAtSample?: Capacity;
  private readonly unsubscribes: Unsubscribe[] = [];
  private connected = false;
  /**
   * Domain starts allowed at once on this host. A QEMU start is CPU-heavy for about a second;
   * a few at a time finish sooner overall than all at once, and in priority order.
   */
  readonly startSlots: LimitFunction;
  /**
   * Snapshots in progress at once on this host (SnapshotPolicy.maxParallelPerHost, default 2):
   * many snapshots written at once to one host's disks finish later than a few at a time.
   */
  readonly snapshotSlots: LimitFunction = pLimit(2);

  constructor(
    readonly hostName: string,
    readonly uri: string,
    readonly provider: HypervisorProvider,
    concurrentStarts = DEFAULT_CONCURRENT_STARTS,
    /** The provider options it was built with (JSON), to tell when the Host asks for others. */
    readonly optionsKey = "{}",
  ) {
    this.startSlots = pLimit(concurrentStarts);
  }

  get isConnected(): boolean {
    return this.connected && this.provider.health().connected;
  }

  private connecting: Promise<void> | undefined;

  /**
   * Connect, sharing one attempt between callers. The attempt is not tied to the caller's
   * signal: a heartbeat gives up waiting after its own short deadline (so missed beats are
   * counted at heartbeat pace), while a slow first connection (a daemon probing QEMU's
   * capabilities takes seconds) still completes and is picked up by the next heartbeat. The
   * attempt itself is bounded by the provider's connect and call timeouts.
   */
  async connect(signal?: AbortSignal): Promise<void> {
    this.connecting ??= this.provider
      .connect()
      .then(() => {
        this.connected = true;
      })
      .finally(() => {
        this.connecting = undefined;
      });
    const attempt = this.connecting;
    if (!signal) return attempt;
    signal.throwIfAborted();
    let onAbort: (() => void) | undefined;
    try {
      await Promise.race([
        attempt,
        new Promise<never>((_, reject) => {
          onAbort = () =>
            reject(
              new ProviderError("Timeout", this.hostName, "connect", "still connecting (attempt continues)"),
            );
          signal.addEventListener("abort", onAbort, { once: true });
        }),
      ]);
    } finally {
      if (onAbort) signal.removeEventListener("abort", onAbort);
    }
  }

  listen(
    onEvent: (e: DomainEvent) => void,
    onHealth: (h: ProviderHealth) => void,
    onNetwork: (e: NetworkEvent) => void,
  ): void {
    this.unsubscribes.push(
      this.provider.onDomainEvent(onEvent),
      this.provider.onHealthChange(onHealth),
      this.provider.onNetworkEvent(onNetwork),
    );
  }

  async close(): Promise<void> {
    for (const u of this.unsubscribes.splice(0)) u();
    this.connected = false;
    await this.provider.close().catch(() => undefined);
  }
}

interface Assignment {
  host: string;
  namespace: string;
  labels: Record<string, string>;
  request: Capacity;
}

export interface FleetHooks {
  onDomainEvent(hostName: string, event: DomainEvent): void;
  onHealthChange(hostName: string, health: ProviderHealth): void;
  /** A libvirt network was defined, undefined, started or stopped on the host (by anyone). */
  onNetworkEvent?(hostName: string, event: NetworkEvent): void;
}

/** Domain names are `<namespace>_<name>`: Kubernetes names never contain "_", so this is reversible. */
export function domainName(namespace: string, name: string): string {
  return `${namespace}_${name}`;
}

export function vmKeyOfDomain(domain: string): string | undefined {
  const i = domain.indexOf("_");
  if (i <= 0 || i === domain.length - 1) return undefined;
  return `${domain.slice(0, i)}/${domain.slice(i + 1)}`;
}

const zero = (): Capacity => ({ cpuMilli: 0, memoryBytes: 0 });

export class Fleet {
  private readonly connections = new Map<string, HostConnection>();
  private readonly assignments = new Map<string, Assignment>();
  private readonly countByHost = new Map<string, number>();
  /** Where migrating VMs are going: capacity held on the target while they move. */
  private readonly incoming = new Map<string, Assignment>();
  private readonly allocatedByHost = new Map<string, Capacity>();
  /** vmKey -> host -> domain, from the hosts' inventories. */
  private readonly copies = new Map<string, Map<string, DomainSummary>>();

  constructor(
    private readonly factory: ProviderFactory,
    private readonly hooks: FleetHooks,
    private readonly concurrentStartsPerHost = DEFAULT_CONCURRENT_STARTS,
  ) {}

  connection(hostName: string): HostConnection | undefined {
    return this.connections.get(hostName);
  }

  hostNames(): string[] {
    return [...this.connections.keys()];
  }

  /**
   * The connection for a host, created (not yet connected) if missing or if its URI or provider
   * options changed.
   */
  async ensureConnection(
    hostName: string,
    uri: string,
    options: HostProviderOptions = {},
  ): Promise<HostConnection> {
    const existing = this.connections.get(hostName);
    const optionsKey = JSON.stringify(options);
    if (existing && existing.uri === uri && existing.optionsKey === optionsKey) return existing;
    if (existing) await this.removeConnection(hostName);
    const conn = new HostConnection(
      hostName,
      uri,
      this.factory(uri, options),
      this.concurrentStartsPerHost,
      optionsKey,
    );
    conn.listen(
      (e) => this.hooks.onDomainEvent(hostName, e),
      (h) => this.hooks.onHealthChange(hostName, h),
      (e) => this.hooks.onNetworkEvent?.(hostName, e),
    );
    this.connections.set(hostName, conn);
    return conn;
  }

  async removeConnection(hostName: string): Promise<void> {
    const conn = this.connections.get(hostName);
    if (!conn) return;
    this.connections.delete(hostName);
    this.setInventory(hostName, []);
    await conn.close();
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.connections.keys()].map((h) => this.removeConnection(h)));
  }

  /** Replace a host's inventory and the ownership index built from it. */
  setInventory(hostName: string, domains: DomainSummary[], at = new Date()): void {
    const conn = this.connections.get(hostName);
    if (conn) {
      for (const name of conn.domains.keys()) {
        const key = vmKeyOfDomain(name);
        if (key) this.copies.get(key)?.delete(hostName);
      }
      conn.domains = new Map(domains.map((d) => [d.name, d]));
      conn.inventoryAt = at;
    }
    for (const d of domains) {
      if (!d.ownership) continue;
      const key = `${d.ownership.namespace}/${d.ownership.name}`;
      let byHost = this.copies.get(key);
      if (!byHost) {
        byHost = new Map();
        this.copies.set(key, byHost);
      }
      byHost.set(hostName, d);
    }
  }

  /** Record one domain's latest summary (after we defined/started/destroyed it). */
  noteDomain(hostName: string, vmKey: string, summary: DomainSummary | undefined): void {
    const conn = this.connections.get(hostName);
    let byHost = this.copies.get(vmKey);
    if (!summary) {
      byHost?.delete(hostName);
      if (conn)
        for (const [n, d] of conn.domains)
          if (d.ownership && vmKeyOfDomain(n) === vmKey) conn.domains.delete(n);
      return;
    }
    conn?.domains.set(summary.name, summary);
    if (!byHost) {
      byHost = new Map();
      this.copies.set(vmKey, byHost);
    }
    byHost.set(hostName, summary);
  }

  /** Hosts whose last inventory holds a domain owned by this VM. */
  copiesOf(vmKey: string): { host: string; domain: DomainSummary }[] {
    const byHost = this.copies.get(vmKey);
    return byHost ? [...byHost].map(([host, domain]) => ({ host, domain })) : [];
  }

  /** VM keys that some host reports an owned domain for (orphan detection compares with the store). */
  *ownedKeys(): Iterable<string> {
    yield* this.copies.keys();
  }

  private readonly lastEvents = new Map<string, Date>();

  /** Remember when the latest event about a VM's domain happened (a crash happened then, not at detection). */
  noteEvent(vmKey: string, at: Date): void {
    const prev = this.lastEvents.get(vmKey);
    if (!prev || prev < at) this.lastEvents.set(vmKey, at);
  }

  /**
   * The time of the latest event not yet acknowledged. Reading leaves it in place: a reconcile
   * that fails before its status is written sees it again on its retry, so a crash is still
   * dated from when it happened (MTTR counts from the failure), not from the retry.
   */
  lastEvent(vmKey: string): Date | undefined {
    return this.lastEvents.get(vmKey);
  }

  /**
   * The status recording events up to `seen` is written: forget them. An event newer than
   * `seen` (it arrived during the reconcile) stays for the next one.
   */
  ackEvent(vmKey: string, seen: Date | undefined): void {
    if (!seen) return;
    const at = this.lastEvents.get(vmKey);
    if (at && at.getTime() <= seen.getTime()) this.lastEvents.delete(vmKey);
  }

  /** The VM is gone: nothing will record its events any more. */
  forgetEvents(vmKey: string): void {
    this.lastEvents.delete(vmKey);
  }

  // --- allocation ledger ------------------------------------------------------------------

  assignment(vmKey: string): Assignment | undefined {
    return this.assignments.get(vmKey);
  }

  /** Where the latest roundRobin placement went (scheduler/placement.ts): the next starts after it. */
  private roundRobinLast: string | undefined;

  noteRoundRobin(host: string): void {
    this.roundRobinLast = host;
  }

  roundRobinCursor(): string | undefined {
    return this.roundRobinLast;
  }

  assign(vmKey: string, a: Assignment): void {
    this.release(vmKey);
    this.assignments.set(vmKey, a);
    this.countByHost.set(a.host, (this.countByHost.get(a.host) ?? 0) + 1);
    const alloc = this.allocated(a.host);
    alloc.cpuMilli += a.request.cpuMilli;
    alloc.memoryBytes += a.request.memoryBytes;
  }

  release(vmKey: string): void {
    const prev = this.assignments.get(vmKey);
    if (!prev) return;
    this.assignments.delete(vmKey);
    this.countByHost.set(prev.host, (this.countByHost.get(prev.host) ?? 1) - 1);
    const alloc = this.allocated(prev.host);
    alloc.cpuMilli -= prev.request.cpuMilli;
    alloc.memoryBytes -= prev.request.memoryBytes;
  }

  /**
   * Hold capacity on a migration's target (the VM stays assigned to its source until it is
   * there): placement sees the target as taken, anti-affinity sees the VM on both.
   */
  reserveIncoming(vmKey: string, a: Assignment): void {
    this.releaseIncoming(vmKey);
    this.incoming.set(vmKey, a);
    const alloc = this.allocated(a.host);
    alloc.cpuMilli += a.request.cpuMilli;
    alloc.memoryBytes += a.request.memoryBytes;
  }

  releaseIncoming(vmKey: string): void {
    const prev = this.incoming.get(vmKey);
    if (!prev) return;
    this.incoming.delete(vmKey);
    const alloc = this.allocated(prev.host);
    alloc.cpuMilli -= prev.request.cpuMilli;
    alloc.memoryBytes -= prev.request.memoryBytes;
  }

  /** The target a VM is migrating to, if capacity is held there. */
  incomingHost(vmKey: string): string | undefined {
    return this.incoming.get(vmKey)?.host;
  }

  /** Live object: mutated in place by assign/release, so cached candidates stay current. */
  allocated(hostName: string): Capacity {
    let alloc = this.allocatedByHost.get(hostName);
    if (!alloc) {
      alloc = zero();
      this.allocatedByHost.set(hostName, alloc);
    }
    return alloc;
  }

  /** VMs assigned to the host (kept as a count: every heartbeat of every host asks). */
  vmCount(hostName: string): number {
    return this.countByHost.get(hostName) ?? 0;
  }

  *placedVMs(): Iterable<PlacedVM> {
    for (const [key, a] of this.assignments)
      yield { key, namespace: a.namespace, labels: a.labels, host: a.host };
    for (const [key, a] of this.incoming)
      yield { key, namespace: a.namespace, labels: a.labels, host: a.host };
  }

  private wanted: { at: number; images: Set<string> } | undefined;

  /** The base images VMs ask for (pool/volume), re-read at most every 5 s. */
  wantedImages(list: () => Iterable<string>, now = Date.now()): Set<string> {
    if (!this.wanted || now - this.wanted.at > 5_000) this.wanted = { at: now, images: new Set(list()) };
    return this.wanted.images;
  }

  // --- candidates ----------------------------------------------------------------------------

  private candidateCache = new Map<string, HostCandidate>();

  /** Publish a host's placement view (called by the Host reconciler whenever it changes). */
  setCandidate(c: Omit<HostCandidate, "allocated" | "networks" | "images" | "storage">): void {
    const conn = this.connections.get(c.name);
    // One literal, every field always present: the scheduler reads these objects for every VM
    // it places (500 hosts x 10,000 VMs), and objects built by spreads were 3x slower to read.
    const candidate: HostCandidate = {
      name: c.name,
      labels: c.labels,
      failureDomain: c.failureDomain,
      ready: c.ready,
      schedulable: c.schedulable,
      allocatable: c.allocatable,
      allocated: this.allocated(c.name),
      networks: conn?.networks ?? new Set(),
      images: conn?.images ?? new Set(),
      storage: conn?.storage,
      mtbfSeconds: c.mtbfSeconds,
      avoided: c.avoided,
      measured: c.measured,
    };
    this.candidateCache.set(c.name, candidate);
    this.candidateList = undefined;
  }

  removeCandidate(hostName: string): void {
    this.candidateCache.delete(hostName);
    this.candidateList = undefined;
    this.observedHosts.delete(hostName);
    this.hostFirstSeen.delete(hostName);
    this.holdCache = undefined;
  }

  // --- the fleet seen before placing ---------------------------------------------------------
  // Like kube-scheduler waiting for its caches to sync: a controller that placed VMs as soon as
  // the first host answered would pile every VM onto it (spread cannot spread over one host).

  private readonly observedHosts = new Set<string>();
  private readonly hostFirstSeen = new Map<string, number>();
  private holdCache: { at: number; hold: PlacementHold | undefined } | undefined;

  /** The Host reconciler saw this host (answering, or judged down) for the first time; true if new. */
  markObserved(hostName: string): boolean {
    if (this.observedHosts.has(hostName)) return false;
    this.observedHosts.add(hostName);
    this.holdCache = undefined;
    return true;
  }

  /**
   * Whether placement must wait: declared hosts not observed yet whose wait (from when this
   * controller first saw them declared) has not run out. Re-evaluated at most every 250 ms (it is
   * asked for every VM placed), at once after a host is observed.
   */
  placementHold(declared: () => readonly string[], nowMs: number, waitMs: number): PlacementHold | undefined {
    if (this.holdCache && nowMs - this.holdCache.at < 250) return this.holdCache.hold;
    const waitingFor: string[] = [];
    let untilMs = 0;
    for (const name of declared()) {
      if (this.observedHosts.has(name)) continue;
      let first = this.hostFirstSeen.get(name);
      if (first === undefined) {
        first = nowMs;
        this.hostFirstSeen.set(name, first);
      }
      if (nowMs < first + waitMs) {
        waitingFor.push(name);
        untilMs = Math.max(untilMs, first + waitMs);
      }
    }
    const hold = waitingFor.length > 0 ? { waitingFor: waitingFor.sort(), untilMs } : undefined;
    this.holdCache = { at: nowMs, hold };
    return hold;
  }

  private candidateList: HostCandidate[] | undefined;

  candidates(): readonly HostCandidate[] {
    this.candidateList ??= [...this.candidateCache.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    return this.candidateList;
  }
}
