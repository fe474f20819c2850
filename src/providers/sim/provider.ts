/**
 * SimProvider: a HypervisorProvider connection to one host of a Simulator (world.ts).
 *
 * Every call goes through `call()`: it fails with Unreachable when the host is powered off or
 * partitioned, applies injected hangs/failures and the latency table, and honours the AbortSignal
 * and the simulator's call timeout. With latency "none" no timer is involved at all, which keeps
 * 10,000-VM scale runs cheap.
 */
import type {
  CreateVolumeOptions,
  DomainDiskSpec,
  DomainEvent,
  DomainInterfaceSpec,
  DomainSpec,
  DomainStateInfo,
  DomainStats,
  DomainSummary,
  HostInfo,
  HypervisorProvider,
  JobInfo,
  MigrationOptions,
  NetworkEvent,
  NetworkInfo,
  NetworkLease,
  NetworkSpec,
  NodeStats,
  PoolInfo,
  ProviderErrorCode,
  ProviderHealth,
  SnapshotInfo,
  Unsubscribe,
  VolumeInfo,
} from "../types.js";
import { ProviderError } from "../types.js";
import {
  guestLoad,
  isActive,
  type SimDomain,
  type SimHost,
  type SimLatency,
  type Simulator,
} from "./world.js";

type DelayKind = keyof Omit<SimLatency, "jitter">;

const clone = <T>(v: T): T => structuredClone(v);

export function simHostName(uri: string): string {
  const m = /^sim:\/\/([^/?#]+)/.exec(uri);
  if (!m?.[1]) throw new Error(`"${uri}" is not a simulator URI (expected sim://NAME)`);
  return m[1];
}

export class SimProvider implements HypervisorProvider {
  readonly uri: string;
  private readonly hostName: string;
  private connected = false;
  /**
   * The boot of the host this session was opened on (its power-loss count then). A power loss
   * kills the daemon and with it the session, however short the outage: the next call hears a
   * reset from the rebooted host and the client must connect again, as a real libvirt client
   * must. (Until 2026-12 the session survived a power cycle, so a reset shorter than a heartbeat
   * went unseen: no failed beat, no fresh listing, guests left shut off. Chaos sim seed 143.)
   */
  private sessionBoot = -1;
  /** The session died with its daemon: calls fail until connect() opens a new one. */
  private dropped = false;
  private lastContact: Date | undefined;
  private readonly eventListeners = new Set<(e: DomainEvent) => void>();
  private readonly healthListeners = new Set<(h: ProviderHealth) => void>();
  private readonly forwardEvent = (e: DomainEvent) => {
    if (!this.sessionLive()) return;
    for (const l of this.eventListeners) l(e);
  };
  private readonly networkListeners = new Set<(e: NetworkEvent) => void>();
  private readonly forwardNetworkEvent = (e: NetworkEvent) => {
    if (!this.sessionLive()) return;
    for (const l of this.networkListeners) l(e);
  };
  private readonly forwardHealth = (_: ProviderHealth) => {
    if (!this.connected) return;
    // What this session can do, not what the host does: a rebooted host answers, but not on
    // the session its old daemon held.
    const h = this.health();
    if (!this.sessionLive()) this.dropSession();
    for (const l of this.healthListeners) l(h);
  };

  constructor(
    private readonly sim: Simulator,
    uri: string,
    /** Maps a migration target's URI onto a simulated host's (simulatorFactory's mapUri). */
    private readonly mapUri: (uri: string) => string = (u) => u,
  ) {
    this.uri = uri;
    this.hostName = simHostName(uri);
  }

  private err(code: ProviderErrorCode, op: string, message: string): ProviderError {
    return new ProviderError(code, this.hostName, op, message);
  }

  private host(op: string): SimHost {
    const h = this.sim.lookupHost(this.hostName);
    if (!h) throw this.err("Unreachable", op, "no such simulated host");
    if (!h.reachable) throw this.err("Unreachable", op, h.powered ? "host partitioned" : "host powered off");
    if (op !== "connect" && (this.dropped || (this.connected && h.powerLosses !== this.sessionBoot))) {
      this.dropSession();
      throw this.err("Unreachable", op, "connection reset: the host rebooted since this session was opened");
    }
    return h;
  }

  /** The session was opened on the host's current boot (a call on it can reach the daemon). */
  private sessionLive(): boolean {
    return this.connected && this.sim.lookupHost(this.hostName)?.powerLosses === this.sessionBoot;
  }

  /** The daemon holding this session died: nothing more arrives on it; connect() opens another. */
  private dropSession(): void {
    const h = this.sim.lookupHost(this.hostName);
    h?.eventListeners.delete(this.forwardEvent);
    h?.networkListeners.delete(this.forwardNetworkEvent);
    h?.healthListeners.delete(this.forwardHealth);
    this.connected = false;
    this.dropped = true;
  }

  /** Run `fn` against the host after the latency of `kind`, honouring faults, timeout and signal. */
  private async call<T>(
    op: string,
    kind: DelayKind,
    signal: AbortSignal | undefined,
    fn: (h: SimHost) => T,
  ): Promise<T> {
    if (signal?.aborted) throw this.err("Aborted", op, "aborted");
    const losses = this.host(op).powerLosses;
    const fault = this.sim.fault(this.hostName, op);
    const ms = this.sim.delay("callMs") + (kind === "callMs" ? 0 : this.sim.delay(kind));
    if (fault.hang || ms > 0) await this.wait(op, fault.hang ? Number.POSITIVE_INFINITY : ms, signal);
    const h = this.host(op);
    // The host lost power (and perhaps came back) while the call was on its way: the daemon
    // that received it died with it; a rebooted one never heard of it.
    if (h.powerLosses !== losses)
      throw this.err("Unreachable", op, "connection reset: the host lost power during the call");
    if (fault.fail) throw this.err(fault.fail, op, "injected failure");
    const out = fn(h);
    this.lastContact = new Date();
    // Done on the host; the reply is lost: the caller hears nothing until its timeout.
    if (fault.loseReply) await this.wait(op, Number.POSITIVE_INFINITY, signal);
    return out;
  }

  private wait(op: string, ms: number, signal: AbortSignal | undefined): Promise<void> {
    const timeout = this.sim.callTimeoutMs;
    return new Promise((resolve, reject) => {
      const done = (e?: Error) => {
        clearTimeout(t);
        clearTimeout(deadline);
        signal?.removeEventListener("abort", onAbort);
        if (e) reject(e);
        else resolve();
      };
      const onAbort = () => done(this.err("Aborted", op, "aborted"));
      const t = Number.isFinite(ms) ? setTimeout(() => done(), ms) : undefined;
      const deadline = setTimeout(
        () => done(this.err("Timeout", op, `no answer within ${timeout} ms`)),
        timeout,
      );
      deadline.unref();
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private domain(h: SimHost, name: string, op: string): SimDomain {
    const d = h.domains.get(name);
    if (!d) throw this.err("NotFound", op, `domain '${name}' not found`);
    return d;
  }

  // --- connection ----------------------------------------------------------------------------

  async connect(signal?: AbortSignal): Promise<void> {
    await this.call("connect", "callMs", signal, (h) => {
      if (!this.connected) {
        h.eventListeners.add(this.forwardEvent);
        h.networkListeners.add(this.forwardNetworkEvent);
        h.healthListeners.add(this.forwardHealth);
      }
      this.connected = true;
      this.dropped = false;
      this.sessionBoot = h.powerLosses;
    });
  }

  async close(): Promise<void> {
    const h = this.sim.lookupHost(this.hostName);
    h?.eventListeners.delete(this.forwardEvent);
    h?.networkListeners.delete(this.forwardNetworkEvent);
    h?.healthListeners.delete(this.forwardHealth);
    this.connected = false;
  }

  health(): ProviderHealth {
    const h = this.sim.lookupHost(this.hostName);
    const ok = this.sessionLive() && !!h?.reachable;
    return ok
      ? { connected: true, ...(this.lastContact ? { lastContact: this.lastContact } : {}) }
      : {
          connected: false,
          error: !this.connected
            ? "not connected"
            : !h?.powered
              ? "host powered off"
              : !h.reachable
                ? "host partitioned"
                : "connection reset: the host rebooted",
        };
  }

  onHealthChange(listener: (health: ProviderHealth) => void): Unsubscribe {
    this.healthListeners.add(listener);
    return () => this.healthListeners.delete(listener);
  }

  async ping(signal?: AbortSignal): Promise<void> {
    await this.call("ping", "callMs", signal, () => undefined);
  }

  async hostInfo(signal?: AbortSignal): Promise<HostInfo> {
    return this.call("hostInfo", "callMs", signal, (h) => ({
      hostname: h.name,
      cpus: h.cpus,
      memoryBytes: h.memoryBytes,
      freeMemoryBytes: h.memoryBytes - h.usedMemory(),
      hypervisorType: "sim",
      hypervisorVersion: "1.0.0",
      kvm: false,
    }));
  }

  /**
   * Like libvirt on Linux: CPU counters since the host was made (user = its busy time, kernel
   * and iowait 0), memory as its total, free = total - what the host and its guests hold
   * resident (Simulator.setGuestLoad / setHostLoad), no buffers or cache.
   */
  async nodeStats(signal?: AbortSignal): Promise<NodeStats> {
    return this.call("nodeStats", "callMs", signal, (h) => {
      const cpu = h.accountCpu();
      return {
        cpu: { userNs: cpu.busyNs, kernelNs: 0, idleNs: cpu.idleNs, iowaitNs: 0 },
        memory: {
          totalBytes: h.memoryBytes,
          freeBytes: h.memoryBytes - h.residentMemory(),
          buffersBytes: 0,
          cachedBytes: 0,
        },
      };
    });
  }

  // --- domains -------------------------------------------------------------------------------

  async listDomains(signal?: AbortSignal): Promise<DomainSummary[]> {
    return this.call("listDomains", "callMs", signal, (h) =>
      [...h.domains.values()].map((d) => ({
        name: d.spec.name,
        uuid: d.uuid,
        state: { ...d.state },
        ...(d.spec.ownership ? { ownership: { ...d.spec.ownership } } : {}),
        vcpus: d.spec.vcpus,
        memoryBytes: d.spec.memoryBytes,
        persistent: d.persistent,
      })),
    );
  }

  async defineDomain(spec: DomainSpec, signal?: AbortSignal): Promise<void> {
    await this.call("defineDomain", "defineMs", signal, (h) => {
      const existing = h.domains.get(spec.name);
      const uuid = existing?.uuid ?? spec.uuid ?? crypto.randomUUID();
      const stored = clone({ ...spec, uuid });
      if (existing) {
        existing.spec = stored;
        existing.persistent = true;
      } else {
        const d: SimDomain = {
          spec: stored,
          uuid,
          state: { state: "shutoff", reason: "unknown" },
          persistent: true,
          snapshots: [],
        };
        h.domains.set(spec.name, d);
      }
      this.sim.emit(h, h.domains.get(spec.name) as SimDomain, "defined", existing ? "updated" : "added");
    });
  }

  async startDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.call("startDomain", "startMs", signal, (h) => {
      const d = this.domain(h, name, "startDomain");
      if (isActive(d.state)) throw this.err("InvalidState", "startDomain", "domain is already running");
      if (h.usedMemory() + d.spec.memoryBytes > h.memoryBytes) {
        throw this.err(
          "InsufficientResources",
          "startDomain",
          `not enough free memory for ${d.spec.memoryBytes} bytes`,
        );
      }
      for (const disk of d.spec.disks) {
        if (!h.pools.get(disk.pool)?.volumes.has(disk.volume)) {
          throw this.err(
            "NotFound",
            "startDomain",
            `disk ${disk.target}: volume ${disk.pool}/${disk.volume} not found`,
          );
        }
      }
      const resumed = d.managedSave === true;
      d.managedSave = false;
      d.runningSince = Date.now();
      d.starts = (d.starts ?? 0) + 1;
      d.state = { state: "running", reason: resumed ? "restored" : "booted" };
      this.sim.emit(h, d, "started", resumed ? "restored" : "booted");
    });
  }

  async attachInterface(name: string, nic: DomainInterfaceSpec, signal?: AbortSignal): Promise<void> {
    await this.call("attachInterface", "callMs", signal, (h) => {
      const d = this.domain(h, name, "attachInterface");
      if (!isActive(d.state)) throw this.err("InvalidState", "attachInterface", "domain is not running");
      if (!h.networks.has(nic.network))
        throw this.err(
          "NotFound",
          "attachInterface",
          `Network not found: no network with matching name '${nic.network}'`,
        );
      if (d.spec.interfaces.some((n) => n.mac === nic.mac))
        throw this.err("OperationFailed", "attachInterface", `interface ${nic.mac} already exists`);
      d.spec.interfaces = [...d.spec.interfaces, { ...nic }];
    });
  }

  async detachInterface(name: string, nic: DomainInterfaceSpec, signal?: AbortSignal): Promise<void> {
    await this.call("detachInterface", "callMs", signal, (h) => {
      const d = this.domain(h, name, "detachInterface");
      if (!isActive(d.state)) throw this.err("InvalidState", "detachInterface", "domain is not running");
      if (!d.spec.interfaces.some((n) => n.mac === nic.mac))
        throw this.err("NotFound", "detachInterface", `no interface with MAC ${nic.mac}`);
      d.spec.interfaces = d.spec.interfaces.filter((n) => n.mac !== nic.mac);
    });
  }

  async attachDisk(name: string, disk: DomainDiskSpec, signal?: AbortSignal): Promise<void> {
    await this.call("attachDisk", "callMs", signal, (h) => {
      const d = this.domain(h, name, "attachDisk");
      if (!isActive(d.state)) throw this.err("InvalidState", "attachDisk", "domain is not running");
      if (disk.bus === "ide" || disk.bus === "sata")
        throw this.err("OperationFailed", "attachDisk", `disk bus '${disk.bus}' cannot be hotplugged`);
      if (!h.pools.get(disk.pool)?.volumes.has(disk.volume))
        throw this.err("NotFound", "attachDisk", `volume ${disk.pool}/${disk.volume} not found`);
      if (d.spec.disks.some((x) => x.target === disk.target))
        throw this.err("OperationFailed", "attachDisk", `target ${disk.target} already exists`);
      d.spec.disks = [...d.spec.disks, { ...disk }];
    });
  }

  async detachDisk(name: string, disk: DomainDiskSpec, signal?: AbortSignal): Promise<void> {
    await this.call("detachDisk", "callMs", signal, (h) => {
      const d = this.domain(h, name, "detachDisk");
      if (!isActive(d.state)) throw this.err("InvalidState", "detachDisk", "domain is not running");
      if (!d.spec.disks.some((x) => x.target === disk.target))
        throw this.err("NotFound", "detachDisk", `disk ${disk.target} not found`);
      d.spec.disks = d.spec.disks.filter((x) => x.target !== disk.target);
    });
  }

  /** As libvirt: live and persistent at once, within the defined maxima, memory only with a balloon. */
  async resizeDomain(
    name: string,
    change: { vcpus?: number; memoryBytes?: number },
    signal?: AbortSignal,
  ): Promise<void> {
    await this.call("resizeDomain", "callMs", signal, (h) => {
      const d = this.domain(h, name, "resizeDomain");
      if (!isActive(d.state)) throw this.err("InvalidState", "resizeDomain", "domain is not running");
      const { vcpus, memoryBytes } = change;
      const maxVcpus = d.spec.maxVcpus ?? d.spec.vcpus;
      if (vcpus !== undefined && (vcpus < 1 || vcpus > maxVcpus))
        throw this.err(
          "OperationFailed",
          "resizeDomain",
          `requested vcpus ${vcpus} is greater than max allowable vcpus ${maxVcpus}`,
        );
      if (memoryBytes !== undefined) {
        if (d.spec.maxMemoryBytes === undefined)
          throw this.err(
            "InvalidState",
            "resizeDomain",
            "Unable to change memory of active domain without the balloon device and guest OS balloon driver",
          );
        if (memoryBytes > d.spec.maxMemoryBytes)
          throw this.err("OperationFailed", "resizeDomain", "cannot set memory higher than max memory");
        if (h.usedMemory() - d.spec.memoryBytes + memoryBytes > h.memoryBytes)
          throw this.err(
            "InsufficientResources",
            "resizeDomain",
            `not enough free memory for ${memoryBytes} bytes`,
          );
      }
      if (vcpus !== undefined) {
        d.spec.vcpus = vcpus;
        if (vcpus === maxVcpus) delete d.spec.maxVcpus;
        else d.spec.maxVcpus = maxVcpus;
      }
      if (memoryBytes !== undefined) d.spec.memoryBytes = memoryBytes;
    });
  }

  async shutdownDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.call("shutdownDomain", "callMs", signal, (h) => {
      const d = this.domain(h, name, "shutdownDomain");
      if (!isActive(d.state)) throw this.err("InvalidState", "shutdownDomain", "domain is not running");
      d.state = { state: "shutdown", reason: "user" };
      const finish = () => {
        if (d.state.state !== "shutdown") return;
        d.state = { state: "shutoff", reason: "shutdown" };
        this.sim.emit(h, d, "stopped", "shutdown");
      };
      const ms = this.sim.delay("guestShutdownMs");
      if (ms <= 0) finish();
      else {
        d.shutdownTimer = setTimeout(finish, ms);
        d.shutdownTimer.unref();
      }
    });
  }

  async destroyDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.call("destroyDomain", "destroyMs", signal, (h) => {
      const d = this.domain(h, name, "destroyDomain");
      if (!isActive(d.state)) throw this.err("InvalidState", "destroyDomain", "domain is not running");
      if (d.shutdownTimer) clearTimeout(d.shutdownTimer);
      d.state = { state: "shutoff", reason: "destroyed" };
      if (!d.persistent) h.domains.delete(name);
      this.sim.emit(h, d, "stopped", "destroyed");
    });
  }

  async undefineDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.call("undefineDomain", "callMs", signal, (h) => {
      const d = this.domain(h, name, "undefineDomain");
      if (isActive(d.state)) d.persistent = false;
      else h.domains.delete(name);
      d.snapshots = [];
      this.sim.emit(h, d, "undefined", "removed");
    });
  }

  async pauseDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.call("pauseDomain", "callMs", signal, (h) => {
      const d = this.domain(h, name, "pauseDomain");
      if (d.state.state !== "running") throw this.err("InvalidState", "pauseDomain", "domain is not running");
      d.state = { state: "paused", reason: "user" };
      this.sim.emit(h, d, "suspended", "paused");
    });
  }

  async resumeDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.call("resumeDomain", "callMs", signal, (h) => {
      const d = this.domain(h, name, "resumeDomain");
      if (d.state.state !== "paused") throw this.err("InvalidState", "resumeDomain", "domain is not paused");
      d.state = { state: "running", reason: "unpaused" };
      this.sim.emit(h, d, "resumed", "unpaused");
    });
  }

  async getDomainState(name: string, signal?: AbortSignal): Promise<DomainStateInfo | undefined> {
    return this.call("getDomainState", "callMs", signal, (h) => {
      const d = h.domains.get(name);
      return d ? { ...d.state } : undefined;
    });
  }

  async getDomainSpec(name: string, signal?: AbortSignal): Promise<DomainSpec | undefined> {
    return this.call("getDomainSpec", "callMs", signal, (h) => {
      const d = h.domains.get(name);
      return d ? clone(d.spec) : undefined;
    });
  }

  onDomainEvent(listener: (event: DomainEvent) => void): Unsubscribe {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }
  onNetworkEvent(listener: (event: NetworkEvent) => void): Unsubscribe {
    this.networkListeners.add(listener);
    return () => this.networkListeners.delete(listener);
  }

  // --- snapshots and checkpoints -------------------------------------------------------------

  async createSnapshot(
    domain: string,
    options: { name: string; memory: boolean; description?: string },
    signal?: AbortSignal,
  ): Promise<SnapshotInfo> {
    return this.call("createSnapshot", "snapshotMs", signal, (h) => {
      const d = this.domain(h, domain, "createSnapshot");
      if (d.snapshots.some((s) => s.name === options.name)) {
        throw this.err("AlreadyExists", "createSnapshot", `snapshot ${options.name} exists`);
      }
      if (options.memory && !isActive(d.state)) {
        throw this.err("InvalidState", "createSnapshot", "a memory snapshot needs a running domain");
      }
      const parent = d.snapshots.find((s) => s.current);
      for (const s of d.snapshots) s.current = false;
      const snap = {
        name: options.name,
        domain,
        createdAt: new Date(),
        // Like libvirt's internal snapshots: a running domain's snapshot always holds its memory.
        memory: isActive(d.state),
        state: d.state.state,
        current: true,
        ...(parent ? { parent: parent.name } : {}),
        ...(options.description ? { description: options.description } : {}),
        sizeBytes: d.spec.disks.length * 64 * 1024 ** 2 + (options.memory ? d.spec.memoryBytes : 0),
        spec: clone(d.spec),
        wasRunning: isActive(d.state),
      };
      d.snapshots.push(snap);
      if (this.sim.sharedStorage) this.sim.snapshotData.set(`${domain}/${options.name}`, clone(snap));
      const { spec: _s, wasRunning: _w, ...info } = snap;
      return info;
    });
  }

  async listSnapshots(domain: string, signal?: AbortSignal): Promise<SnapshotInfo[]> {
    return this.call("listSnapshots", "callMs", signal, (h) =>
      this.domain(h, domain, "listSnapshots").snapshots.map(({ spec: _s, wasRunning: _w, ...info }) => ({
        ...info,
      })),
    );
  }

  async revertSnapshot(
    domain: string,
    name: string,
    options: { paused?: boolean } = {},
    signal?: AbortSignal,
  ): Promise<void> {
    await this.call("revertSnapshot", "snapshotMs", signal, (h) => {
      const d = this.domain(h, domain, "revertSnapshot");
      const snap = d.snapshots.find((s) => s.name === name);
      if (!snap) throw this.err("NotFound", "revertSnapshot", `snapshot ${name} not found`);
      d.spec = clone(snap.spec);
      for (const s of d.snapshots) s.current = s === snap;
      const running = snap.memory && snap.wasRunning;
      d.state = !running
        ? { state: "shutoff", reason: "from-snapshot" }
        : options.paused
          ? { state: "paused", reason: "from-snapshot" }
          : { state: "running", reason: "from-snapshot" };
      this.sim.emit(h, d, running ? "started" : "stopped", "from-snapshot");
    });
  }

  async importSnapshot(
    domain: string,
    snapshot: Pick<SnapshotInfo, "name" | "createdAt" | "state" | "memory">,
    signal?: AbortSignal,
  ): Promise<void> {
    await this.call("importSnapshot", "callMs", signal, (h) => {
      const d = this.domain(h, domain, "importSnapshot");
      if (d.snapshots.some((s) => s.name === snapshot.name)) {
        throw this.err("AlreadyExists", "importSnapshot", `snapshot ${snapshot.name} exists`);
      }
      const data = this.sim.snapshotData.get(`${domain}/${snapshot.name}`);
      if (!data) {
        throw this.err(
          "NotFound",
          "importSnapshot",
          `no data of snapshot ${snapshot.name} in ${domain}'s disks`,
        );
      }
      d.snapshots.push({ ...clone(data), current: false });
    });
  }

  async deleteSnapshot(domain: string, name: string, signal?: AbortSignal): Promise<void> {
    await this.call("deleteSnapshot", "callMs", signal, (h) => {
      const d = this.domain(h, domain, "deleteSnapshot");
      const i = d.snapshots.findIndex((s) => s.name === name);
      if (i < 0) throw this.err("NotFound", "deleteSnapshot", `snapshot ${name} not found`);
      d.snapshots.splice(i, 1);
      this.sim.snapshotData.delete(`${domain}/${name}`);
    });
  }

  async domainStats(signal?: AbortSignal): Promise<DomainStats[]> {
    return this.call("domainStats", "callMs", signal, (h) =>
      [...h.domains.values()]
        .filter((d) => isActive(d.state))
        .map((d) => {
          const upMs = Date.now() - (d.runningSince ?? Date.now());
          return {
            name: d.spec.name,
            // Simulated: a running guest uses its load (world.ts guestLoad: by default a tenth of
            // a vCPU each, a quarter of its memory resident), reads its disks at 4 MB/s and
            // writes at 1 MB/s (counters since this start, as libvirt's are per QEMU process).
            cpuTimeNs: (d.cpuTimeNs ?? 0) + Math.round(upMs * 1e6 * guestLoad(d).cpus),
            memoryBytes: d.spec.memoryBytes,
            rssBytes: guestLoad(d).memoryBytes,
            block:
              d.spec.disks.length > 0
                ? { readBytes: Math.round(upMs * 4_000), writeBytes: Math.round(upMs * 1_000) }
                : { readBytes: 0, writeBytes: 0 },
            net: { rxBytes: 0, txBytes: 0 },
          };
        }),
    );
  }

  async managedSave(domain: string, signal?: AbortSignal): Promise<void> {
    await this.call("managedSave", "saveMs", signal, (h) => {
      const d = this.domain(h, domain, "managedSave");
      if (!isActive(d.state)) throw this.err("InvalidState", "managedSave", "domain is not running");
      d.managedSave = true;
      d.state = { state: "shutoff", reason: "saved" };
      this.sim.emit(h, d, "stopped", "saved");
    });
  }

  async hasManagedSave(domain: string, signal?: AbortSignal): Promise<boolean> {
    return this.call(
      "hasManagedSave",
      "callMs",
      signal,
      (h) => this.domain(h, domain, "hasManagedSave").managedSave === true,
    );
  }

  async removeManagedSave(domain: string, signal?: AbortSignal): Promise<void> {
    await this.call("removeManagedSave", "callMs", signal, (h) => {
      this.domain(h, domain, "removeManagedSave").managedSave = false;
    });
  }

  async saveCheckpoint(domain: string, path: string, signal?: AbortSignal): Promise<void> {
    await this.call("saveCheckpoint", "saveMs", signal, (h) => {
      const d = this.domain(h, domain, "saveCheckpoint");
      if (!isActive(d.state)) throw this.err("InvalidState", "saveCheckpoint", "domain is not running");
      this.sim.checkpoints.set(path, { spec: clone(d.spec), uuid: d.uuid, fromHost: h.name });
      d.state = { state: "shutoff", reason: "saved" };
      this.sim.emit(h, d, "stopped", "saved");
    });
  }

  async restoreCheckpoint(path: string, signal?: AbortSignal): Promise<void> {
    await this.call("restoreCheckpoint", "restoreMs", signal, (h) => {
      const cp = this.sim.checkpoints.get(path);
      if (!cp) throw this.err("NotFound", "restoreCheckpoint", `no checkpoint at ${path}`);
      let d = h.domains.get(cp.spec.name);
      if (d && isActive(d.state))
        throw this.err("InvalidState", "restoreCheckpoint", "domain is already running");
      if (h.usedMemory() + cp.spec.memoryBytes > h.memoryBytes) {
        throw this.err("InsufficientResources", "restoreCheckpoint", "not enough free memory");
      }
      if (!d) {
        d = {
          spec: clone(cp.spec),
          uuid: cp.uuid,
          state: { state: "shutoff", reason: "saved" },
          persistent: false,
          snapshots: [],
        };
        h.domains.set(cp.spec.name, d);
      }
      d.state = { state: "running", reason: "restored" };
      this.sim.emit(h, d, "started", "restored");
    });
  }

  // --- migration -----------------------------------------------------------------------------

  async migrateDomain(
    name: string,
    targetUri: string,
    options: MigrationOptions,
    signal?: AbortSignal,
  ): Promise<void> {
    const source = this.host("migrateDomain");
    const d = this.domain(source, name, "migrateDomain");
    if (!isActive(d.state))
      throw this.err("InvalidState", "migrateDomain", "only a running domain migrates live");
    const targetName = simHostName(this.mapUri(targetUri));
    const target = this.sim.lookupHost(targetName);
    if (!target?.reachable)
      throw this.err("OperationFailed", "migrateDomain", `target ${targetName} unreachable`);
    if (target === source)
      throw this.err("InvalidState", "migrateDomain", "source and target are the same host");
    if (target.usedMemory() + d.spec.memoryBytes > target.memoryBytes) {
      throw this.err("InsufficientResources", "migrateDomain", `not enough free memory on ${targetName}`);
    }
    const total = this.sim.delay("migrateMs");
    d.job = { startedAt: Date.now(), totalMs: total };
    options.onProgress?.(0);
    const aborted = new AbortController();
    d.job.abort = () => aborted.abort();
    const combined = signal ? AbortSignal.any([signal, aborted.signal]) : aborted.signal;
    try {
      if (total > 0) {
        await this.wait("migrateDomain", total / 2, combined);
        options.onProgress?.(50);
        await this.wait("migrateDomain", total / 2, combined);
      }
    } finally {
      d.job = undefined;
    }
    if (!source.reachable) throw this.err("Unreachable", "migrateDomain", "source lost during migration");
    if (!target.reachable) throw this.err("OperationFailed", "migrateDomain", "target lost during migration");
    const moved: SimDomain = {
      spec: clone(d.spec),
      uuid: d.uuid,
      state: { state: "running", reason: "migrated" },
      persistent: true,
      snapshots: [],
    };
    target.domains.set(name, moved);
    source.domains.delete(name);
    d.state = { state: "shutoff", reason: "migrated" };
    options.onProgress?.(100);
    this.sim.emit(source, d, "stopped", "migrated");
    this.sim.emit(target, moved, "started", "migrated");
  }

  async getJobInfo(domain: string, signal?: AbortSignal): Promise<JobInfo> {
    return this.call("getJobInfo", "callMs", signal, (h) => {
      const d = this.domain(h, domain, "getJobInfo");
      if (!d.job) return { active: false, type: "none" };
      const elapsedMs = Date.now() - d.job.startedAt;
      const total = d.spec.memoryBytes;
      const processed = Math.min(total, Math.round((elapsedMs / Math.max(1, d.job.totalMs)) * total));
      return {
        active: true,
        type: "unbounded",
        elapsedMs,
        dataTotal: total,
        dataProcessed: processed,
        dataRemaining: total - processed,
      };
    });
  }

  async abortJob(domain: string, signal?: AbortSignal): Promise<void> {
    await this.call("abortJob", "callMs", signal, (h) => {
      const d = this.domain(h, domain, "abortJob");
      if (!d.job?.abort) throw this.err("InvalidState", "abortJob", "no job is running");
      d.job.abort();
    });
  }

  // --- networks ------------------------------------------------------------------------------

  async listNetworks(signal?: AbortSignal): Promise<NetworkInfo[]> {
    return this.call("listNetworks", "callMs", signal, (h) => [...h.networks.values()].map(clone));
  }

  async ensureNetwork(spec: NetworkSpec, signal?: AbortSignal): Promise<void> {
    await this.call("ensureNetwork", "defineMs", signal, (h) => {
      h.networks.set(spec.name, { spec: clone(spec), active: true, autostart: true });
      this.sim.emitNetwork(h, spec.name, "defined");
      this.sim.emitNetwork(h, spec.name, "started");
    });
  }

  async getNetwork(name: string, signal?: AbortSignal): Promise<NetworkInfo | undefined> {
    return this.call("getNetwork", "callMs", signal, (h) => {
      const n = h.networks.get(name);
      return n ? clone(n) : undefined;
    });
  }

  async removeNetwork(name: string, signal?: AbortSignal): Promise<void> {
    await this.call("removeNetwork", "callMs", signal, (h) => {
      if (!h.networks.delete(name)) throw this.err("NotFound", "removeNetwork", `network ${name} not found`);
      this.sim.emitNetwork(h, name, "stopped");
      this.sim.emitNetwork(h, name, "undefined");
    });
  }

  /**
   * Like dnsmasq: a running guest on the network holds a lease, its fixed one when the network
   * names its MAC, otherwise the first free address of the range (kept while the host lives).
   */
  async networkLeases(name: string, signal?: AbortSignal): Promise<NetworkLease[]> {
    return this.call("networkLeases", "callMs", signal, (h) => {
      const n = h.networks.get(name);
      if (!n) throw this.err("NotFound", "networkLeases", `network ${name} not found`);
      if (!n.active) return [];
      const prefix = Number(n.spec.address?.split("/")[1] ?? 24);
      const table = h.dhcp.get(name) ?? new Map<string, string>();
      h.dhcp.set(name, table);
      const leases: NetworkLease[] = [];
      for (const d of h.domains.values()) {
        if (d.state.state !== "running") continue;
        for (const nic of d.spec.interfaces) {
          if (nic.network !== name) continue;
          const mac = nic.mac.toLowerCase();
          const fixed = n.spec.leases?.find((l) => l.mac.toLowerCase() === mac);
          let ip = fixed?.ip ?? table.get(mac);
          if (!ip && n.spec.dhcpRange)
            ip = freeAddress(n.spec.dhcpRange, new Set(table.values()), n.spec.leases);
          if (!ip) continue;
          if (!fixed) table.set(mac, ip);
          leases.push({
            mac,
            ip,
            prefix,
            ...(fixed?.hostname ? { hostname: fixed.hostname } : {}),
            expiresAt: 0,
          });
        }
      }
      return leases;
    });
  }

  // --- storage -------------------------------------------------------------------------------

  async listPools(signal?: AbortSignal): Promise<PoolInfo[]> {
    return this.call("listPools", "callMs", signal, (h) =>
      [...h.pools.values()].map((p) => {
        let used = 0;
        for (const v of p.volumes.values()) used += v.allocationBytes;
        return {
          name: p.name,
          path: p.path,
          capacityBytes: p.capacityBytes,
          availableBytes: p.capacityBytes - used,
          active: true,
        };
      }),
    );
  }

  async listVolumes(pool: string, signal?: AbortSignal): Promise<VolumeInfo[]> {
    return this.call("listVolumes", "callMs", signal, (h) => {
      const p = h.pools.get(pool);
      if (!p) throw this.err("NotFound", "listVolumes", `pool ${pool} not found`);
      return [...p.volumes.values()].map((v) => ({ ...v }));
    });
  }

  async createVolume(pool: string, options: CreateVolumeOptions, signal?: AbortSignal): Promise<VolumeInfo> {
    return this.call("createVolume", "volumeCreateMs", signal, (h) => {
      const p = h.pools.get(pool);
      if (!p) throw this.err("NotFound", "createVolume", `pool ${pool} not found`);
      if (p.volumes.has(options.name))
        throw this.err("AlreadyExists", "createVolume", `volume ${options.name} exists`);
      const from = options.backing ?? options.copyFrom;
      const base = from ? h.pools.get(from.pool)?.volumes.get(from.volume) : undefined;
      if (from && !base)
        throw this.err("NotFound", "createVolume", `base volume ${from.pool}/${from.volume} not found`);
      const v: VolumeInfo = {
        pool,
        name: options.name,
        path: `${p.path}/${options.name}`,
        format: options.format,
        capacityBytes: Math.max(options.capacityBytes, base?.capacityBytes ?? 0),
        // A linked clone starts as a small qcow2 header; a full copy is as large as its base.
        allocationBytes: options.copyFrom ? (base?.allocationBytes ?? 0) : 196_624,
        ...(options.backing && base ? { backingPath: base.path } : {}),
      };
      p.volumes.set(options.name, v);
      return { ...v };
    });
  }

  async getVolume(pool: string, name: string, signal?: AbortSignal): Promise<VolumeInfo | undefined> {
    return this.call("getVolume", "callMs", signal, (h) => {
      const v = h.pools.get(pool)?.volumes.get(name);
      return v ? { ...v } : undefined;
    });
  }

  async deleteVolume(pool: string, name: string, signal?: AbortSignal): Promise<void> {
    await this.call("deleteVolume", "callMs", signal, (h) => {
      const p = h.pools.get(pool);
      const v = p?.volumes.get(name);
      if (!p || !v) throw this.err("NotFound", "deleteVolume", `volume ${pool}/${name} not found`);
      for (const other of p.volumes.values()) {
        if (other.backingPath === v.path) {
          throw this.err(
            "InvalidState",
            "deleteVolume",
            `volume ${name} backs ${other.name}: delete the overlay first`,
          );
        }
      }
      p.volumes.delete(name);
    });
  }
}

const ipNum = (ip: string) => ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
const ipStr = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

/** The range's first address neither handed out nor reserved by a fixed lease. */
function freeAddress(
  range: { start: string; end: string },
  taken: Set<string>,
  fixed: NetworkSpec["leases"],
): string | undefined {
  const reserved = new Set((fixed ?? []).map((l) => l.ip));
  for (let a = ipNum(range.start); a <= ipNum(range.end); a++) {
    const ip = ipStr(a);
    if (!taken.has(ip) && !reserved.has(ip)) return ip;
  }
  return undefined;
}
