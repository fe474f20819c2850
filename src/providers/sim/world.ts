/**
 * The simulated world: hosts, their domains, networks and storage pools, one seeded PRNG and the
 * fault-injection API. SimProvider (provider.ts) is a connection to one host of this world.
 *
 * Faithfulness contract (the provider contract suite runs against this and real libvirt):
 * states and reasons follow libvirt (define -> shutoff; start -> running/booted; destroy ->
 * shutoff/destroyed; a crash -> shutoff/crashed; migrate -> running/migrated on the target), events
 * are delivered asynchronously after the call that caused them, capacity is enforced on start,
 * and an unreachable host fails every call with ProviderError "Unreachable".
 *
 * Determinism: every random choice (injected failures, latency jitter) comes from the seeded PRNG,
 * so a scenario replays exactly with the same seed and the same sequence of calls.
 */
import { randomUUID } from "node:crypto";
import type {
  DomainEvent,
  DomainEventType,
  DomainSpec,
  DomainStateInfo,
  NetworkEvent,
  NetworkInfo,
  ProviderErrorCode,
  ProviderHealth,
  SnapshotInfo,
  VolumeInfo,
} from "../types.js";

/** mulberry32: small, fast, good enough for fault injection and jitter. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SimLatency {
  /** Any call's round trip. */
  callMs: number;
  defineMs: number;
  startMs: number;
  destroyMs: number;
  /** Guest time from an ACPI shutdown request to power-off. */
  guestShutdownMs: number;
  snapshotMs: number;
  /** Checkpoint save / restore. */
  saveMs: number;
  restoreMs: number;
  migrateMs: number;
  volumeCreateMs: number;
  /** Each latency is multiplied by 1 + jitter * (random - 0.5) * 2. */
  jitter: number;
}

/** Latencies seen on small guests on a real libvirt/QEMU host (TESTBED.md measurements). */
export const REALISTIC_LATENCY: SimLatency = {
  callMs: 0.2,
  defineMs: 5,
  startMs: 300,
  destroyMs: 50,
  guestShutdownMs: 1500,
  snapshotMs: 50,
  saveMs: 1700,
  restoreMs: 600,
  migrateMs: 2000,
  volumeCreateMs: 20,
  jitter: 0.2,
};

export const NO_LATENCY: SimLatency = {
  callMs: 0,
  defineMs: 0,
  startMs: 0,
  destroyMs: 0,
  guestShutdownMs: 0,
  snapshotMs: 0,
  saveMs: 0,
  restoreMs: 0,
  migrateMs: 0,
  volumeCreateMs: 0,
  jitter: 0,
};

export interface SimHostOptions {
  cpus?: number;
  memoryBytes?: number;
}

export interface SimBaseImage {
  pool: string;
  name: string;
  capacityBytes: number;
}

export interface SimulatorOptions {
  seed?: number;
  latency?: Partial<SimLatency> | "none" | "realistic";
  /** Create unknown hosts on first use (the CLI's --simulate mode). */
  autoCreateHosts?: boolean;
  defaultHost?: SimHostOptions;
  /** Base images present in every host's pools (a preloaded image repository). */
  baseImages?: SimBaseImage[];
  /** One storage pool shared by all hosts, like NFS or Ceph (default true). */
  sharedStorage?: boolean;
  /** Default per-call timeout in ms (default 30 s). */
  callTimeoutMs?: number;
}

export interface SimSnapshot extends SnapshotInfo {
  spec: DomainSpec;
  wasRunning: boolean;
}

export interface SimDomain {
  spec: DomainSpec;
  uuid: string;
  state: DomainStateInfo;
  persistent: boolean;
  snapshots: SimSnapshot[];
  job?: { startedAt: number; totalMs: number; abort?: () => void };
  /** A managed save image exists: the next start resumes from it. */
  managedSave?: boolean;
  /** When it last started running (for its simulated CPU time). */
  runningSince?: number;
  /** How many times it was started (booted or restored): ground truth for "not restarted". */
  starts?: number;
  cpuTimeNs?: number;
  /** What the guest uses while it runs (Simulator.setGuestLoad); unset: GUEST_LOAD_DEFAULT. */
  load?: SimLoad;
  shutdownTimer?: NodeJS.Timeout;
}

/** CPUs kept busy (fractions allowed) and memory held resident, by a guest or a host itself. */
export interface SimLoad {
  cpus: number;
  memoryBytes: number;
}

/** A running guest that was given no load: a tenth of a CPU per vCPU, a quarter of its memory. */
export function guestLoad(d: SimDomain): SimLoad {
  return d.load ?? { cpus: 0.1 * d.spec.vcpus, memoryBytes: Math.round(d.spec.memoryBytes / 4) };
}

export interface SimPool {
  name: string;
  path: string;
  capacityBytes: number;
  volumes: Map<string, VolumeInfo>;
}

export class SimHost {
  powered = true;
  partitioned = false;
  /** Its BMC (or PDU) does not answer: fencing and power control fail; the host itself is untouched. */
  bmcBroken = false;
  /** Power losses so far: a call in flight across one is lost with the daemon that received it. */
  powerLosses = 0;
  readonly uuid = randomUUID();
  readonly domains = new Map<string, SimDomain>();
  readonly networks = new Map<string, NetworkInfo>();
  /** Addresses handed out from each network's DHCP range, by MAC (dnsmasq's lease file). */
  readonly dhcp = new Map<string, Map<string, string>>();
  pools = new Map<string, SimPool>();
  readonly eventListeners = new Set<(e: DomainEvent) => void>();
  readonly networkListeners = new Set<(e: NetworkEvent) => void>();
  readonly healthListeners = new Set<(h: ProviderHealth) => void>();
  /** What the host itself uses besides its guests (Simulator.setHostLoad): its daemons' few percent of a CPU. */
  baseLoad: SimLoad = { cpus: 0.05, memoryBytes: 0 };
  /**
   * The node's CPU time counters (libvirt's virNodeGetCPUStats), accounted up to `at` (epoch
   * ms). Each reading integrates the load as it is then over the time since the last reading
   * (or a load change): piecewise constant, exact when loads change only through setGuestLoad,
   * setHostLoad or between readings. A new host has been up an hour at its base load.
   */
  private readonly cpuClock: { at: number; busyNs: number; idleNs: number };

  constructor(
    readonly name: string,
    readonly cpus: number,
    readonly memoryBytes: number,
  ) {
    const upNs = 3600e9;
    this.cpuClock = {
      at: Date.now(),
      busyNs: upNs * this.baseLoad.cpus,
      idleNs: upNs * (cpus - this.baseLoad.cpus),
    };
  }

  get reachable(): boolean {
    return this.powered && !this.partitioned;
  }

  /** CPUs busy now: the base load plus every running guest's, at most every CPU. */
  busyCpus(): number {
    let busy = this.baseLoad.cpus;
    for (const d of this.domains.values()) if (d.state.state === "running") busy += guestLoad(d).cpus;
    return Math.min(this.cpus, Math.max(0, busy));
  }

  /** Memory in use now: the base plus what every active guest holds resident, at most all of it. */
  residentMemory(): number {
    let used = this.baseLoad.memoryBytes;
    for (const d of this.domains.values()) if (isActive(d.state)) used += guestLoad(d).memoryBytes;
    return Math.min(this.memoryBytes, Math.max(0, used));
  }

  /** The CPU counters up to `now`, the current load applied since the last account. */
  accountCpu(now = Date.now()): { busyNs: number; idleNs: number } {
    const c = this.cpuClock;
    const ns = Math.max(0, now - c.at) * 1e6;
    const busy = this.busyCpus();
    c.busyNs += Math.round(ns * busy);
    c.idleNs += Math.round(ns * (this.cpus - busy));
    c.at = Math.max(c.at, now);
    return { busyNs: c.busyNs, idleNs: c.idleNs };
  }

  usedMemory(): number {
    let used = 0;
    for (const d of this.domains.values()) if (isActive(d.state)) used += d.spec.memoryBytes;
    return used;
  }
}

export function isActive(s: DomainStateInfo): boolean {
  return s.state === "running" || s.state === "paused" || s.state === "blocked" || s.state === "shutdown";
}

interface FaultRule {
  host?: string;
  op?: string;
  probability: number;
  code?: ProviderErrorCode;
}

export class Simulator {
  readonly latency: SimLatency;
  readonly random: () => number;
  readonly callTimeoutMs: number;
  private readonly hostsByName = new Map<string, SimHost>();
  private readonly opts: SimulatorOptions;
  private readonly sharedPools: Map<string, SimPool> | undefined;
  /** Checkpoint files on shared storage: path -> saved domain. */
  readonly checkpoints = new Map<string, { spec: DomainSpec; uuid: string; fromHost: string }>();
  /**
   * Internal snapshots live inside the disk images: with shared storage any host can import them.
   * Key: `${domain}/${snapshot}`.
   */
  readonly snapshotData = new Map<string, SimSnapshot>();

  get sharedStorage(): boolean {
    return this.sharedPools !== undefined;
  }
  private hangs: FaultRule[] = [];
  private failures: FaultRule[] = [];
  private lostReplies: FaultRule[] = [];

  constructor(opts: SimulatorOptions = {}) {
    this.opts = opts;
    this.random = prng(opts.seed ?? 1);
    this.callTimeoutMs = opts.callTimeoutMs ?? 30_000;
    const l = opts.latency ?? "realistic";
    this.latency =
      l === "none" ? NO_LATENCY : l === "realistic" ? REALISTIC_LATENCY : { ...REALISTIC_LATENCY, ...l };
    this.sharedPools = opts.sharedStorage === false ? undefined : this.makePools();
  }

  private makePools(): Map<string, SimPool> {
    const pools = new Map<string, SimPool>();
    const pool = (name: string): SimPool => {
      let p = pools.get(name);
      if (!p) {
        p = { name, path: `/var/lib/virtwarden/${name}`, capacityBytes: 2 * 1024 ** 4, volumes: new Map() };
        pools.set(name, p);
      }
      return p;
    };
    pool("default");
    for (const img of this.opts.baseImages ?? []) {
      const p = pool(img.pool);
      p.volumes.set(img.name, {
        pool: img.pool,
        name: img.name,
        path: `${p.path}/${img.name}`,
        format: "qcow2",
        capacityBytes: img.capacityBytes,
        allocationBytes: img.capacityBytes,
      });
    }
    return pools;
  }

  /** Put a base image into every host's pool (and into hosts created later). */
  preloadImage(img: SimBaseImage): void {
    this.opts.baseImages ??= [];
    const list = this.opts.baseImages;
    if (!list.some((i) => i.pool === img.pool && i.name === img.name)) list.push(img);
    const pools = this.sharedPools ? [this.sharedPools] : this.hosts().map((h) => h.pools);
    for (const p of pools) {
      let pool = p.get(img.pool);
      if (!pool) {
        pool = {
          name: img.pool,
          path: `/var/lib/virtwarden/${img.pool}`,
          capacityBytes: 2 * 1024 ** 4,
          volumes: new Map(),
        };
        p.set(img.pool, pool);
      }
      if (!pool.volumes.has(img.name)) {
        pool.volumes.set(img.name, {
          pool: img.pool,
          name: img.name,
          path: `${pool.path}/${img.name}`,
          format: "qcow2",
          capacityBytes: img.capacityBytes,
          allocationBytes: img.capacityBytes,
        });
      }
    }
  }

  addHost(name: string, opts: SimHostOptions = {}): SimHost {
    const existing = this.hostsByName.get(name);
    if (existing) return existing;
    const d = this.opts.defaultHost ?? {};
    const host = new SimHost(
      name,
      opts.cpus ?? d.cpus ?? 32,
      opts.memoryBytes ?? d.memoryBytes ?? 128 * 1024 ** 3,
    );
    host.pools = this.sharedPools ?? this.makePools();
    this.hostsByName.set(name, host);
    return host;
  }

  /** The host, created on first use when autoCreateHosts is set. */
  lookupHost(name: string): SimHost | undefined {
    return this.hostsByName.get(name) ?? (this.opts.autoCreateHosts ? this.addHost(name) : undefined);
  }

  hosts(): SimHost[] {
    return [...this.hostsByName.values()];
  }

  domains(host: string): SimDomain[] {
    return [...(this.hostsByName.get(host)?.domains.values() ?? [])];
  }

  /** Hosts on which a domain of this name is running (never more than one, if we do our job). */
  runningCopies(domain: string): string[] {
    return this.hosts()
      .filter((h) => h.powered && isActive(h.domains.get(domain)?.state ?? { state: "shutoff", reason: "" }))
      .map((h) => h.name);
  }

  // --- events ------------------------------------------------------------------------------

  /** A network lifecycle event, delivered like domain events (after the call, if reachable). */
  emitNetwork(host: SimHost, network: string, type: NetworkEvent["type"]): void {
    if (host.networkListeners.size === 0) return;
    const e: NetworkEvent = { host: host.name, network, type, at: new Date() };
    setImmediate(() => {
      if (!host.reachable) return;
      for (const l of host.networkListeners) l(e);
    });
  }

  emit(
    host: SimHost,
    domain: SimDomain | { spec: { name: string }; uuid: string },
    type: DomainEventType,
    detail: string,
  ): void {
    if (host.eventListeners.size === 0) return;
    const e: DomainEvent = {
      host: host.name,
      domain: domain.spec.name,
      uuid: domain.uuid,
      type,
      detail,
      at: new Date(),
    };
    // Like libvirt: events arrive after the call that caused them returned, and not while the
    // controller cannot reach the host.
    setImmediate(() => {
      if (!host.reachable) return;
      for (const l of host.eventListeners) l(e);
    });
  }

  private healthChanged(host: SimHost): void {
    const h: ProviderHealth = {
      connected: host.reachable,
      ...(host.reachable ? { lastContact: new Date() } : { error: "host unreachable" }),
    };
    setImmediate(() => {
      for (const l of host.healthListeners) l(h);
    });
  }

  // --- fault injection -----------------------------------------------------------------------

  private mustHost(name: string): SimHost {
    const h = this.hostsByName.get(name);
    if (!h) throw new Error(`simulator: no host ${name}`);
    return h;
  }

  /** The host loses power: every domain stops, the host stops answering. */
  crashHost(name: string): void {
    const h = this.mustHost(name);
    h.powered = false;
    h.powerLosses++;
    for (const d of h.domains.values()) {
      if (d.shutdownTimer) clearTimeout(d.shutdownTimer);
      if (!d.persistent) h.domains.delete(d.spec.name);
    }
    this.healthChanged(h);
  }

  /**
   * The host answers again. After a power loss it comes back like a rebooted hypervisor:
   * persistent domains defined and shut off. With keepRunning (a healed partition or a hung
   * hypervisor that recovered), domains keep the state they had — stale copies included.
   */
  restoreHost(name: string, opts: { keepRunning?: boolean } = {}): void {
    const h = this.mustHost(name);
    const wasPowered = h.powered;
    h.powered = true;
    h.partitioned = false;
    if (!wasPowered && !opts.keepRunning) {
      for (const d of h.domains.values()) d.state = { state: "shutoff", reason: "unknown" };
    }
    this.healthChanged(h);
  }

  /** The controller can no longer reach the host; its domains keep running. */
  partitionHost(name: string): void {
    const h = this.mustHost(name);
    h.partitioned = true;
    this.healthChanged(h);
  }

  healPartition(name: string): void {
    const h = this.mustHost(name);
    h.partitioned = false;
    this.healthChanged(h);
  }

  /**
   * The guest's QEMU dies (kill -9, OOM killer): like libvirt 9, state shut off with reason
   * "crashed" and a "stopped" event with detail "failed".
   */
  crashDomain(host: string, domain: string): void {
    const h = this.mustHost(host);
    const d = h.domains.get(domain);
    if (!d) throw new Error(`simulator: no domain ${domain} on ${host}`);
    d.state = { state: "shutoff", reason: "crashed" };
    this.emit(h, d, "stopped", "failed");
    if (!d.persistent) h.domains.delete(domain);
  }

  /**
   * What a guest uses while it runs: `cpus` busy (e.g. 1.5), `memoryBytes` resident (default: a
   * quarter of its memory). Shows in the host's node statistics (and the guest's CPU time) from
   * now on. For a domain not defined on the host: an error.
   */
  setGuestLoad(host: string, domain: string, load: { cpus: number; memoryBytes?: number }): void {
    const h = this.mustHost(host);
    const d = h.domains.get(domain);
    if (!d) throw new Error(`simulator: no domain ${domain} on ${host}`);
    h.accountCpu();
    d.load = { cpus: load.cpus, memoryBytes: load.memoryBytes ?? guestLoad(d).memoryBytes };
  }

  /** What the host uses besides its guests (its own daemons, a noisy neighbour): busy CPUs and memory. */
  setHostLoad(host: string, load: Partial<SimLoad>): void {
    const h = this.mustHost(host);
    h.accountCpu();
    h.baseLoad = { ...h.baseLoad, ...load };
  }

  hangOperations(rule: FaultRule): void {
    this.hangs.push(rule);
  }

  failOperations(rule: FaultRule): void {
    this.failures.push(rule);
  }

  /**
   * Matching calls are carried out by the host, and their reply never comes back: the caller
   * waits until its call timeout (a start that did start, a destroy that did destroy, reported
   * as "no answer"). What a connection dropped between request and reply looks like.
   */
  loseReplies(rule: FaultRule): void {
    this.lostReplies.push(rule);
  }

  clearFaults(): void {
    this.hangs = [];
    this.failures = [];
    this.lostReplies = [];
  }

  /** What an injected fault does to this call, decided by the seeded PRNG. */
  fault(host: string, op: string): { hang: boolean; fail?: ProviderErrorCode; loseReply?: true } {
    const match = (r: FaultRule) => (!r.host || r.host === host) && (!r.op || r.op === op);
    for (const r of this.hangs) if (match(r) && this.random() < r.probability) return { hang: true };
    for (const r of this.failures)
      if (match(r) && this.random() < r.probability)
        return { hang: false, fail: r.code ?? "OperationFailed" };
    for (const r of this.lostReplies)
      if (match(r) && this.random() < r.probability) return { hang: false, loseReply: true };
    return { hang: false };
  }

  /**
   * The host's BMC stops answering (broken) or answers again: while broken, the sim power and fence
   * agents' calls below fail, as ipmitool does against a dead BMC.
   */
  breakBmc(name: string, broken = true): void {
    this.mustHost(name).bmcBroken = broken;
  }

  private bmc(host: string): SimHost {
    const h = this.mustHost(host);
    if (h.bmcBroken) throw new Error(`BMC of ${host} does not answer`);
    return h;
  }

  /** Used by the sim power and fence agents. */
  powerOff(host: string): void {
    if (this.bmc(host).powered) this.crashHost(host);
  }

  powerOn(host: string): void {
    const h = this.bmc(host);
    if (!h.powered) this.restoreHost(host);
  }

  powerStatus(host: string): "on" | "off" {
    return this.bmc(host).powered ? "on" : "off";
  }

  /** A latency from the table, with seeded jitter. */
  delay(kind: keyof Omit<SimLatency, "jitter">): number {
    const base = this.latency[kind];
    if (base <= 0) return 0;
    return base * (1 + this.latency.jitter * (this.random() - 0.5) * 2);
  }
}
