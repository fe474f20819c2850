/**
 * SimSession: one client session to one host of a Simulator (world.ts), the core every
 * SimProvider operation runs through (provider.ts is the HypervisorProvider face; the operations
 * live by concern in domains.ts, snapshots.ts, migration.ts, networks.ts and storage.ts).
 *
 * Every call goes through `call()`: it fails with Unreachable when the host is powered off or
 * partitioned, applies injected hangs/failures and the latency table, and honours the AbortSignal
 * and the simulator's call timeout. With latency "none" no timer is involved at all, which keeps
 * 10,000-VM scale runs cheap.
 */
import type {
  DomainEvent,
  HostInfo,
  NetworkEvent,
  NodeStats,
  ProviderErrorCode,
  ProviderHealth,
  Unsubscribe,
} from "../types.js";
import { ProviderError } from "../types.js";
import type { SimDomain, SimHost, SimLatency, Simulator } from "./world.js";

type DelayKind = keyof Omit<SimLatency, "jitter">;

export const clone = <T>(v: T): T => structuredClone(v);
export function simHostName(uri: string): string {
  const m = /^sim:\/\/([^/?#]+)/.exec(uri);
  if (!m?.[1]) throw new Error(`"${uri}" is not a simulator URI (expected sim://NAME)`);
  return m[1];
}

export class SimSession {
  readonly uri: string;
  readonly hostName: string;
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
    readonly sim: Simulator,
    uri: string,
    /** Maps a migration target's URI onto a simulated host's (simulatorFactory's mapUri). */
    readonly mapUri: (uri: string) => string = (u) => u,
  ) {
    this.uri = uri;
    this.hostName = simHostName(uri);
  }

  // The helpers below are public for the operation modules only: SimProvider keeps its session
  // private, so they are not part of any caller's surface.

  err(code: ProviderErrorCode, op: string, message: string): ProviderError {
    return new ProviderError(code, this.hostName, op, message);
  }

  host(op: string): SimHost {
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
  async call<T>(
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

  wait(op: string, ms: number, signal: AbortSignal | undefined): Promise<void> {
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

  domain(h: SimHost, name: string, op: string): SimDomain {
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

  onDomainEvent(listener: (event: DomainEvent) => void): Unsubscribe {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }
  onNetworkEvent(listener: (event: NetworkEvent) => void): Unsubscribe {
    this.networkListeners.add(listener);
    return () => this.networkListeners.delete(listener);
  }
}
