/**
 * LibvirtProvider: HypervisorProvider over libvirt's remote protocol (rpc/).
 *
 * - Errors: every failure becomes a ProviderError naming the host, the operation and libvirt's
 *   error code; a lost connection is "Unreachable".
 * - Health follows the client's keepalive; `connect` after a loss opens a new connection (the
 *   Host reconciler calls it every heartbeat, which is the reconnect-with-backoff loop).
 * - Domain configuration is read back with VIR_DOMAIN_XML_INACTIVE (the persistent definition).
 * - Events: lifecycle callbacks registered for all domains at connect, mapped to DomainEvent.
 *   Bodies are read by rpc/replies.ts's decoders and must be consumed exactly and name a domain:
 *   anything else is a protocol error (the client closes the connection, and we log why), never
 *   an event. An event for a callback we did not register is dropped and logged, as libvirt's
 *   own client drops it.
 * - listDomains survives domains it cannot read: a foreign one (no ownership mark) is left out
 *   (logged once per name, counted in `unreadableForeignDomains`), one of ours is listed with
 *   `parseError`, so it is never taken for missing.
 */

import { canonical } from "../spec-hash.js";
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
  ProviderHealth,
  SnapshotInfo,
  Unsubscribe,
  VolumeInfo,
} from "../types.js";
import { isProviderError, ProviderError } from "../types.js";
import {
  LibvirtXmlError,
  parseDomainXML,
  readOwnershipMark,
  renderDiskXML,
  renderDomainXML,
  renderInterfaceXML,
} from "./domain-xml.js";
import { relinkPending, stepAside, stepBack } from "./relink.js";
import {
  AffectFlags,
  DomainStatsTypes,
  LibvirtApi,
  MigrateFlags,
  NetworkUpdate,
  RevertFlags,
  readLifecycle,
  readNetworkLifecycle,
  SnapshotCreateFlags,
  UndefineFlags,
  XMLFlags,
} from "./rpc/api.js";
import { type ClientOptions, ConnectionError, LibvirtClient, LibvirtError } from "./rpc/client.js";
import { type DomainRef, EventId, Limits, Proc, type TypedParam, uuidString } from "./rpc/protocol.js";
import { readIOErrorEvent, readRebootEvent, readWatchdogEvent } from "./rpc/replies.js";
import { XdrError, type XdrReader } from "./rpc/xdr.js";
import { errorCode, eventWords, stateWords } from "./states.js";
import {
  parseNetworkXML,
  parsePoolPath,
  parseSnapshotXML,
  parseVolumeXML,
  renderNetworkXML,
  renderRedefineSnapshotXML,
  renderSnapshotXML,
  renderVolumeXML,
} from "./xml.js";

/** The domain event procedures we register for, and the virDomainEventID each answers. */
const EVENT_OF_PROC: ReadonlyMap<number, number> = new Map([
  [Proc.DomainEventCallbackLifecycle, EventId.Lifecycle],
  [Proc.DomainEventCallbackReboot, EventId.Reboot],
  [Proc.DomainEventCallbackWatchdog, EventId.Watchdog],
  [Proc.DomainEventCallbackIOError, EventId.IOError],
]);

const WATCHDOG_ACTIONS = ["none", "pause", "reset", "poweroff", "shutdown", "debug", "inject-nmi"];
const IO_ERROR_ACTIONS = ["none", "pause", "report"];

/** The whole body is the message, and it names a domain: anything else is not libvirt's. */
function checkEventBody(proc: number, body: XdrReader, dom: DomainRef): void {
  if (body.remaining !== 0)
    throw new XdrError(`${body.remaining} bytes left over after the event (procedure ${proc})`);
  if (dom.name === "") throw new XdrError(`an event (procedure ${proc}) for a domain without a name`);
}

/**
 * A domain event message (lifecycle, reboot, watchdog, I/O error) as a DomainEvent.
 * `callbackIds` (virDomainEventID -> the callback id libvirt gave us) drops the events of
 * callbacks we never registered; without it any callback id is taken. Throws XdrError for a
 * body that does not decode exactly (the client then closes the connection as a protocol error);
 * returns undefined for a procedure or an event type we do not map, or an unknown callback.
 */
export function decodeEvent(
  proc: number,
  body: XdrReader,
  host: string,
  callbackIds?: ReadonlyMap<number, number>,
): DomainEvent | undefined {
  const at = new Date();
  let m: { callbackId: number; dom: DomainRef };
  let words: { type: DomainEvent["type"]; detail: string } | undefined;
  switch (proc) {
    case Proc.DomainEventCallbackLifecycle: {
      const l = readLifecycle(body);
      m = l;
      words = eventWords(l.event, l.detail);
      break;
    }
    case Proc.DomainEventCallbackReboot:
      m = readRebootEvent(body);
      words = { type: "reboot", detail: "" };
      break;
    case Proc.DomainEventCallbackWatchdog: {
      const w = readWatchdogEvent(body);
      m = w;
      words = { type: "watchdog", detail: WATCHDOG_ACTIONS[w.action] ?? "unknown" };
      break;
    }
    case Proc.DomainEventCallbackIOError: {
      const e = readIOErrorEvent(body);
      m = e;
      words = {
        type: "io-error",
        detail: `${e.devAlias} (${e.srcPath}): ${IO_ERROR_ACTIONS[e.action] ?? "unknown"}`,
      };
      break;
    }
    default:
      return undefined;
  }
  checkEventBody(proc, body, m.dom);
  if (callbackIds && callbackIds.get(EVENT_OF_PROC.get(proc) as number) !== m.callbackId) return undefined;
  if (!words) return undefined;
  return {
    host,
    domain: m.dom.name,
    uuid: uuidString(m.dom.uuid),
    type: words.type,
    detail: words.detail,
    at,
  };
}

/** Where the provider reports what it drops or loses (pino's Logger fits). */
export interface ProviderLog {
  warn(fields: Record<string, unknown>, message: string): void;
}

const silentLog: ProviderLog = { warn: () => undefined };

/** libvirt's virErrorNumber for "storage volume not found". */
const VIR_ERR_NO_STORAGE_VOL = 50;
/** libvirt's virErrorNumber for "storage volume exists already". */
const VIR_ERR_STORAGE_VOL_EXIST = 90;

export interface LibvirtProviderOptions extends ClientOptions {
  /** Force the domain type; by default kvm when the host's capabilities offer it, else qemu (TCG). */
  domainType?: "kvm" | "qemu";
  /** Dropped events, unreadable foreign domains, lost connections. Default: silent. */
  log?: ProviderLog;
}

/**
 * Deadline of a quick call (the client closes the connection as wedged when one passes it).
 * libvirt's QEMU driver makes a call that needs a domain's job lock (shutdown, suspend, resume,
 * undefine, a device update) wait up to 30 s (VIR_JOB_WAIT_TIME) while another client's job
 * holds it, then answers "cannot acquire state change lock": our deadline must be later than
 * that answer, or a healthy connection is closed in a race with it (the client's default is
 * exactly 30 s).
 */
export const DEFAULT_CALL_TIMEOUT_MS = 45_000;
/** virConnectGetAllDomainStatsFlags: active domains only; do not wait for a domain's job. */
const STATS_ACTIVE = 1;
/** VIR_NODE_CPU_STATS_ALL_CPUS / VIR_NODE_MEMORY_STATS_ALL_CELLS: the whole host. */
const NODE_ALL_CPUS = -1;
const NODE_ALL_CELLS = -1;
const STATS_NOWAIT = 1 << 29;

/** Foreign domains whose XML we could not read, remembered by name to warn once each. */
const UNREADABLE_NAMES_MAX = 10_000;

export class LibvirtProvider implements HypervisorProvider {
  private client: LibvirtClient | undefined;
  private api: LibvirtApi | undefined;
  private kvm: boolean | undefined;
  private readonly eventListeners = new Set<(e: DomainEvent) => void>();
  private readonly networkListeners = new Set<(e: NetworkEvent) => void>();
  private readonly healthListeners = new Set<(h: ProviderHealth) => void>();
  private readonly host: string;
  private readonly log: ProviderLog;
  /** Foreign domains left out of listings because their XML could not be read, by name. */
  private readonly unreadable = new Set<string>();
  /** How many times a listing left out a foreign domain whose XML it could not read. */
  unreadableForeignDomains = 0;

  constructor(
    readonly uri: string,
    private readonly opts: LibvirtProviderOptions = {},
  ) {
    this.host = /^[^:]+:\/\/(?:[^@/]*@)?([^/:?]*)/.exec(uri)?.[1] || "localhost";
    this.log = opts.log ?? silentLog;
  }

  private wrap(op: string, e: unknown): ProviderError {
    if (e instanceof ProviderError) return e;
    if (e instanceof LibvirtError)
      return new ProviderError(errorCode(e.code), this.host, op, e.message, {
        code: e.code,
        domain: e.domain,
      });
    if (e instanceof ConnectionError) {
      const code = e.reason === "aborted" ? "Aborted" : e.reason === "timeout" ? "Timeout" : "Unreachable";
      return new ProviderError(code, this.host, op, e.message);
    }
    return new ProviderError("OperationFailed", this.host, op, e instanceof Error ? e.message : String(e));
  }

  private async run<T>(op: string, fn: (api: LibvirtApi) => Promise<T>): Promise<T> {
    const api = this.api;
    if (!api || !this.client?.connected)
      throw new ProviderError("Unreachable", this.host, op, "not connected");
    try {
      return await fn(api);
    } catch (e) {
      throw this.wrap(op, e);
    }
  }

  private async dom(api: LibvirtApi, name: string, signal?: AbortSignal): Promise<DomainRef> {
    return api.lookupByName(name, signal);
  }

  // --- connection ----------------------------------------------------------------------------

  async connect(signal?: AbortSignal): Promise<void> {
    if (this.client?.connected) return;
    const client = new LibvirtClient(this.uri, {
      ...this.opts,
      callTimeoutMs: this.opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
    });
    try {
      await client.connect(signal);
      const api = new LibvirtApi(client);
      // This connection's callbacks (virDomainEventID -> callback id), filled as libvirt answers.
      const callbackIds = new Map<number, number>();
      client.onMessage((proc, body) => {
        if (proc === Proc.NetworkEventLifecycle) {
          const m = readNetworkLifecycle(body);
          if (body.remaining !== 0)
            throw new XdrError(`${body.remaining} bytes left over after the network event`);
          if (m.network === "") throw new XdrError("a network event for a network without a name");
          const type = (["defined", "undefined", "started", "stopped"] as const)[m.event];
          if (type)
            for (const l of this.networkListeners)
              l({ host: this.host, network: m.network, type, at: new Date() });
          return;
        }
        // An XdrError from here is the client's protocol error: it closes the connection.
        const e = decodeEvent(proc, body, this.host, callbackIds);
        if (e) for (const l of this.eventListeners) l(e);
        else if (EVENT_OF_PROC.has(proc) && callbackIds.size === EVENT_OF_PROC.size)
          this.log.warn({ host: this.host, procedure: proc }, "libvirt event dropped: not one we can map");
      });
      client.onClose((err) => {
        if (this.client === client)
          this.log.warn({ host: this.host, err: err.message }, "libvirt connection lost");
        for (const l of this.healthListeners) l({ connected: false, error: err.message });
      });
      for (const id of [EventId.Lifecycle, EventId.Reboot, EventId.Watchdog, EventId.IOError])
        callbackIds.set(id, await api.registerEvent(id, signal));
      await api.registerNetworkEvents(signal);
      const caps = await api.capabilities(signal);
      this.kvm = this.opts.domainType
        ? this.opts.domainType === "kvm"
        : /<domain type=['"]kvm['"]/.test(caps);
      this.client = client;
      this.api = api;
      for (const l of this.healthListeners) l({ connected: true, lastContact: new Date() });
    } catch (e) {
      await client.close().catch(() => undefined);
      throw this.wrap("connect", e);
    }
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    this.api = undefined;
    await c?.close();
  }

  health(): ProviderHealth {
    const c = this.client;
    if (!c?.connected) return { connected: false, error: "not connected" };
    return { connected: true, ...(c.lastContact ? { lastContact: c.lastContact } : {}) };
  }

  onHealthChange(listener: (health: ProviderHealth) => void): Unsubscribe {
    this.healthListeners.add(listener);
    return () => this.healthListeners.delete(listener);
  }

  async ping(signal?: AbortSignal): Promise<void> {
    // A keepalive round trip (rpc/client.ts ping): answered by the daemon's event loop, so a
    // daemon busy starting a failed host's guests still answers its heartbeat at once.
    await this.run("ping", () => (this.client as LibvirtClient).ping(signal));
  }

  async hostInfo(signal?: AbortSignal): Promise<HostInfo> {
    return this.run("hostInfo", async (api) => {
      const [hostname, node, free, version, lib] = await Promise.all([
        api.hostname(signal),
        api.nodeInfo(signal),
        api.freeMemory(signal),
        api.version(signal),
        api.libVersion(signal),
      ]);
      const v = (n: number) => `${Math.floor(n / 1_000_000)}.${Math.floor(n / 1000) % 1000}.${n % 1000}`;
      return {
        hostname,
        cpus: node.cpus,
        memoryBytes: node.memoryKiB * 1024,
        freeMemoryBytes: free,
        hypervisorType: "QEMU",
        hypervisorVersion: v(version),
        libvirtVersion: v(lib),
        kvm: this.kvm ?? false,
      };
    });
  }

  /**
   * libvirt's two-step convention for each call: nparams 0 gets the count of fields the host
   * has, then the fields are asked for with it. A host that lacks a counter (a field not
   * reported) gives 0 for it; one without total or idle time cannot be measured at all.
   */
  async nodeStats(signal?: AbortSignal): Promise<NodeStats> {
    return this.run("nodeStats", async (api) => {
      // At most the protocol's bound (REMOTE_NODE_*_STATS_MAX, 16 both): the server refuses more.
      const fields = async (
        ask: (n: number) => Promise<{ params: { field: string; value: number }[]; nparams: number }>,
      ) => {
        const nparams = Math.min((await ask(0)).nparams, Limits.nodeCpuStats, Limits.nodeMemoryStats);
        const got = new Map<string, number>();
        if (nparams > 0) for (const p of (await ask(nparams)).params) if (p.field) got.set(p.field, p.value);
        return got;
      };
      const [cpu, mem] = await Promise.all([
        fields((n) => api.nodeCpuStats(NODE_ALL_CPUS, n, signal)),
        fields((n) => api.nodeMemoryStats(NODE_ALL_CELLS, n, signal)),
      ]);
      if (!cpu.has("idle") || !mem.has("total"))
        throw new ProviderError(
          "Unsupported",
          this.host,
          "nodeStats",
          `the host reports no ${!cpu.has("idle") ? "idle CPU time" : "memory total"} (CPU fields: ${[...cpu.keys()].join(", ") || "none"}; memory fields: ${[...mem.keys()].join(", ") || "none"})`,
        );
      const kib = (f: string) => (mem.get(f) ?? 0) * 1024;
      return {
        cpu: {
          userNs: cpu.get("user") ?? 0,
          kernelNs: cpu.get("kernel") ?? 0,
          idleNs: cpu.get("idle") ?? 0,
          iowaitNs: cpu.get("iowait") ?? 0,
        },
        memory: {
          totalBytes: kib("total"),
          freeBytes: kib("free"),
          buffersBytes: kib("buffers"),
          cachedBytes: kib("cached"),
        },
      };
    });
  }

  // --- domains -------------------------------------------------------------------------------

  async listDomains(signal?: AbortSignal): Promise<DomainSummary[]> {
    return this.run("listDomains", async (api) => {
      const doms = await api.listAllDomains(0, signal);
      const out = await Promise.all(
        doms.map(async (d) => {
          try {
            const [st, xml, persistent] = await Promise.all([
              api.state(d, signal),
              api.xmlDesc(d, XMLFlags.Inactive, signal),
              api.isPersistent(d, signal),
            ]);
            let spec: DomainSpec;
            try {
              spec = parseDomainXML(xml);
            } catch (e) {
              if (!(e instanceof LibvirtXmlError)) throw e;
              return this.unreadableDomain(d, xml, stateWords(st.state, st.reason), persistent, e);
            }
            const summary: DomainSummary = {
              name: d.name,
              uuid: spec.uuid ?? d.uuid.toString("hex"),
              state: stateWords(st.state, st.reason),
              vcpus: spec.vcpus,
              memoryBytes: spec.memoryBytes,
              persistent,
            };
            if (spec.ownership) summary.ownership = spec.ownership;
            return summary;
          } catch (e) {
            // Gone between the listing and the lookup.
            if (e instanceof LibvirtError && e.code === 42) return undefined;
            throw e;
          }
        }),
      );
      return out.filter((d): d is DomainSummary => d !== undefined);
    });
  }

  /**
   * A domain whose XML parseDomainXML refused: listed with `parseError` when it carries our mark
   * (it is there, and may be running: it must never read as missing), else left out, since a
   * foreign domain we cannot read is none of our business and must not fail the whole listing.
   */
  private unreadableDomain(
    d: DomainRef,
    xml: string,
    state: DomainStateInfo,
    persistent: boolean,
    e: LibvirtXmlError,
  ): DomainSummary | undefined {
    const mark = readOwnershipMark(xml);
    if (!mark.marked) {
      this.unreadableForeignDomains++;
      if (!this.unreadable.has(d.name)) {
        if (this.unreadable.size >= UNREADABLE_NAMES_MAX) this.unreadable.clear();
        this.unreadable.add(d.name);
        this.log.warn(
          { host: this.host, domain: d.name, err: e.message },
          "foreign domain left out of the listing: its XML cannot be read",
        );
      }
      return undefined;
    }
    const summary: DomainSummary = {
      name: d.name,
      uuid: uuidString(d.uuid),
      state,
      vcpus: 0,
      memoryBytes: 0,
      persistent,
      parseError: `${this.host}: domain ${d.name} carries virtwarden's mark but its XML cannot be read: ${e.message}`,
    };
    if (mark.ownership) summary.ownership = mark.ownership;
    return summary;
  }

  async defineDomain(spec: DomainSpec, signal?: AbortSignal): Promise<void> {
    await this.run("defineDomain", async (api) => {
      // libvirt refuses to redefine a domain under its name with another (or a new) UUID.
      let uuid = spec.uuid;
      if (!uuid) {
        const existing = await api.lookupByName(spec.name, signal).catch((e: unknown) => {
          if (e instanceof LibvirtError && e.code === 42) return undefined;
          throw e;
        });
        if (existing) uuid = uuidString(existing.uuid);
      }
      await api.defineXML(
        renderDomainXML(uuid ? { ...spec, uuid } : spec, { kvm: this.kvm ?? false }),
        0,
        signal,
      );
    });
  }

  async startDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.run("startDomain", async (api) => api.create(await this.dom(api, name, signal), 0, signal));
  }

  async shutdownDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.run("shutdownDomain", async (api) => api.shutdown(await this.dom(api, name, signal), signal));
  }

  async destroyDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.run("destroyDomain", async (api) => api.destroy(await this.dom(api, name, signal), signal));
  }

  async resizeDomain(
    name: string,
    change: { vcpus?: number; memoryBytes?: number },
    signal?: AbortSignal,
  ): Promise<void> {
    await this.run("resizeDomain", async (api) => {
      const dom = await this.dom(api, name, signal);
      // Both definitions at once: the running guest now, and the persistent one for its next boot.
      const flags = AffectFlags.Live | AffectFlags.Config;
      if (change.vcpus !== undefined) await api.setVcpusFlags(dom, change.vcpus, flags, signal);
      if (change.memoryBytes !== undefined)
        await api.setMemoryFlags(dom, Math.floor(change.memoryBytes / 1024), flags, signal);
    });
  }

  async attachInterface(name: string, nic: DomainInterfaceSpec, signal?: AbortSignal): Promise<void> {
    await this.run("attachInterface", async (api) =>
      api.attachDevice(
        await this.dom(api, name, signal),
        renderInterfaceXML(nic),
        AffectFlags.Live | AffectFlags.Config,
        signal,
      ),
    );
  }

  async detachInterface(name: string, nic: DomainInterfaceSpec, signal?: AbortSignal): Promise<void> {
    await this.run("detachInterface", async (api) =>
      api.detachDevice(
        await this.dom(api, name, signal),
        renderInterfaceXML(nic),
        AffectFlags.Live | AffectFlags.Config,
        signal,
      ),
    );
  }

  async attachDisk(name: string, disk: DomainDiskSpec, signal?: AbortSignal): Promise<void> {
    await this.run("attachDisk", async (api) =>
      api.attachDevice(
        await this.dom(api, name, signal),
        renderDiskXML(disk),
        AffectFlags.Live | AffectFlags.Config,
        signal,
      ),
    );
  }

  async detachDisk(name: string, disk: DomainDiskSpec, signal?: AbortSignal): Promise<void> {
    await this.run("detachDisk", async (api) =>
      api.detachDevice(
        await this.dom(api, name, signal),
        renderDiskXML(disk),
        AffectFlags.Live | AffectFlags.Config,
        signal,
      ),
    );
  }

  async undefineDomain(name: string, signal?: AbortSignal): Promise<void> {
    const flags =
      UndefineFlags.ManagedSave | UndefineFlags.SnapshotsMetadata | UndefineFlags.CheckpointsMetadata;
    await this.run("undefineDomain", async (api) =>
      api.undefine(await this.dom(api, name, signal), flags, signal),
    );
  }

  async pauseDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.run("pauseDomain", async (api) => api.suspend(await this.dom(api, name, signal), signal));
  }

  async resumeDomain(name: string, signal?: AbortSignal): Promise<void> {
    await this.run("resumeDomain", async (api) => api.resume(await this.dom(api, name, signal), signal));
  }

  async getDomainState(name: string, signal?: AbortSignal): Promise<DomainStateInfo | undefined> {
    try {
      return await this.run("getDomainState", async (api) => {
        const s = await api.state(await this.dom(api, name, signal), signal);
        return stateWords(s.state, s.reason);
      });
    } catch (e) {
      if (isProviderError(e, "NotFound")) return undefined;
      throw e;
    }
  }

  async getDomainSpec(name: string, signal?: AbortSignal): Promise<DomainSpec | undefined> {
    try {
      return await this.run("getDomainSpec", async (api) => {
        const xml = await api.xmlDesc(await this.dom(api, name, signal), XMLFlags.Inactive, signal);
        try {
          return parseDomainXML(xml);
        } catch (e) {
          // Not "missing": the domain is there, and we cannot tell what it is.
          if (e instanceof LibvirtXmlError)
            throw new ProviderError(
              "OperationFailed",
              this.host,
              "getDomainSpec",
              `domain ${name}: its XML cannot be read: ${e.message}`,
            );
          throw e;
        }
      });
    } catch (e) {
      if (isProviderError(e, "NotFound")) return undefined;
      throw e;
    }
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
    return this.run("createSnapshot", async (api) => {
      const dom = await this.dom(api, domain, signal);
      const snap = await api.snapshotCreate(
        dom,
        renderSnapshotXML(options.name, options.description),
        0,
        signal,
      );
      return { ...parseSnapshotXML(await api.snapshotXML(snap, signal), domain), current: true };
    });
  }

  async listSnapshots(domain: string, signal?: AbortSignal): Promise<SnapshotInfo[]> {
    return this.run("listSnapshots", async (api) => {
      const dom = await this.dom(api, domain, signal);
      const snaps = await api.listSnapshots(dom, 0, signal);
      const current = await api
        .snapshotCurrent(dom, signal)
        .then((s) => s.name)
        .catch(() => undefined);
      return Promise.all(
        snaps.map(async (s) => ({
          ...parseSnapshotXML(await api.snapshotXML(s, signal), domain),
          current: s.name === current,
        })),
      );
    });
  }

  async revertSnapshot(
    domain: string,
    name: string,
    options: { paused?: boolean } = {},
    signal?: AbortSignal,
  ): Promise<void> {
    await this.run("revertSnapshot", async (api) => {
      const snap = await api.snapshotLookup(await this.dom(api, domain, signal), name, signal);
      const flags = options.paused ? RevertFlags.Paused : 0;
      await api.revertToSnapshot(snap, flags, signal).catch(async (e: unknown) => {
        // A disk created through another host on shared storage is unknown to this host's pool
        // until it is refreshed (error 50: no storage volume): refresh, then try once more.
        if (!(e instanceof LibvirtError) || e.code !== VIR_ERR_NO_STORAGE_VOL) throw e;
        for (const p of await api.listAllPools(signal)) await this.refreshPool(api, p.name, p, signal);
        await api.revertToSnapshot(snap, flags, signal);
      });
    });
  }

  async importSnapshot(
    domain: string,
    snapshot: Pick<SnapshotInfo, "name" | "createdAt" | "state" | "memory">,
    signal?: AbortSignal,
  ): Promise<void> {
    await this.run("importSnapshot", async (api) => {
      const dom = await this.dom(api, domain, signal);
      // The snapshot's configuration is the domain's as defined here (same spec, same disks).
      const domainXML = await api.xmlDesc(dom, XMLFlags.Secure | XMLFlags.Inactive, signal);
      await api.snapshotCreate(
        dom,
        renderRedefineSnapshotXML(snapshot, domainXML),
        SnapshotCreateFlags.Redefine,
        signal,
      );
    });
  }

  async deleteSnapshot(domain: string, name: string, signal?: AbortSignal): Promise<void> {
    await this.run("deleteSnapshot", async (api) =>
      api.snapshotDelete(
        await api.snapshotLookup(await this.dom(api, domain, signal), name, signal),
        0,
        signal,
      ),
    );
  }

  async domainStats(signal?: AbortSignal): Promise<DomainStats[]> {
    return this.run("domainStats", async (api) => {
      const T = DomainStatsTypes;
      // NOWAIT: a domain busy with a job (a snapshot, a save) reports what it can at once instead
      // of holding the whole call for up to 30 s per domain (libvirt's job wait).
      const records = await api.allDomainStats(
        T.CpuTotal | T.Balloon | T.Interface | T.Block,
        STATS_ACTIVE | STATS_NOWAIT,
        signal,
      );
      return records.map(({ dom, params }) => {
        const num = new Map<string, number>();
        for (const p of params) if (typeof p.value.value === "number") num.set(p.field, p.value.value);
        const sum = (prefix: string, suffix: string) => {
          let n = 0;
          for (let i = 0; i < (num.get(`${prefix}.count`) ?? 0); i++)
            n += num.get(`${prefix}.${i}.${suffix}`) ?? 0;
          return n;
        };
        const kib = (f: string) => (num.has(f) ? (num.get(f) as number) * 1024 : undefined);
        const memoryBytes = kib("balloon.current");
        const rssBytes = kib("balloon.rss");
        return {
          name: dom.name,
          cpuTimeNs: num.get("cpu.time") ?? 0,
          ...(memoryBytes !== undefined ? { memoryBytes } : {}),
          ...(rssBytes !== undefined ? { rssBytes } : {}),
          block: { readBytes: sum("block", "rd.bytes"), writeBytes: sum("block", "wr.bytes") },
          net: { rxBytes: sum("net", "rx.bytes"), txBytes: sum("net", "tx.bytes") },
        };
      });
    });
  }

  async managedSave(domain: string, signal?: AbortSignal): Promise<void> {
    await this.run("managedSave", async (api) =>
      api.managedSave(await this.dom(api, domain, signal), 0, signal),
    );
  }

  async hasManagedSave(domain: string, signal?: AbortSignal): Promise<boolean> {
    return this.run("hasManagedSave", async (api) =>
      api.hasManagedSaveImage(await this.dom(api, domain, signal), signal),
    );
  }

  async removeManagedSave(domain: string, signal?: AbortSignal): Promise<void> {
    await this.run("removeManagedSave", async (api) =>
      api.managedSaveRemove(await this.dom(api, domain, signal), signal),
    );
  }

  async saveCheckpoint(domain: string, path: string, signal?: AbortSignal): Promise<void> {
    await this.run("saveCheckpoint", async (api) =>
      api.save(await this.dom(api, domain, signal), path, 0, signal),
    );
  }

  async restoreCheckpoint(path: string, signal?: AbortSignal): Promise<void> {
    await this.run("restoreCheckpoint", (api) => api.restore(path, 0, signal));
  }

  // --- migration -----------------------------------------------------------------------------

  async migrateDomain(
    name: string,
    targetUri: string,
    options: MigrationOptions,
    signal?: AbortSignal,
  ): Promise<void> {
    await this.run("migrateDomain", async (api) => {
      const dom = await this.dom(api, name, signal);
      let flags = MigrateFlags.PeerToPeer | MigrateFlags.PersistDest | MigrateFlags.UndefineSource;
      if (options.live) flags |= MigrateFlags.Live;
      if (options.unsafe) flags |= MigrateFlags.Unsafe;
      const params: TypedParam[] = [];
      if (options.bandwidthMiBps)
        params.push({ field: "bandwidth", value: { type: "ullong", value: options.bandwidthMiBps } });
      // Send the migration stream to the address we know the target by, not to whatever its
      // hostname resolves to on the source (often a loopback alias).
      const targetHost = /^[^:]+:\/\/(?:[^@/]*@)?([^/:?]+)/.exec(targetUri)?.[1];
      if (targetHost)
        params.push({ field: "migrate_uri", value: { type: "string", value: `tcp://${targetHost}` } });
      options.onProgress?.(0);
      let done = false;
      const poll = (async () => {
        while (!done && !signal?.aborted) {
          await new Promise((r) => setTimeout(r, 250));
          if (done) break;
          const j = await api.jobInfo(dom, signal).catch(() => undefined);
          if (j && j.dataTotal > 0)
            options.onProgress?.(Math.min(99, Math.round((j.dataProcessed / j.dataTotal) * 100)));
        }
      })();
      try {
        await api.migratePerform3Params(dom, targetUri, params, flags, signal);
      } finally {
        done = true;
        await poll;
      }
      options.onProgress?.(100);
    });
  }

  async getJobInfo(domain: string, signal?: AbortSignal): Promise<JobInfo> {
    return this.run("getJobInfo", async (api) => {
      const j = await api.jobInfo(await this.dom(api, domain, signal), signal);
      const types: JobInfo["type"][] = ["none", "bounded", "unbounded", "completed", "failed", "cancelled"];
      return {
        active: j.type === 1 || j.type === 2,
        type: types[j.type] ?? "none",
        elapsedMs: j.timeElapsed,
        dataTotal: j.dataTotal,
        dataProcessed: j.dataProcessed,
        dataRemaining: j.dataRemaining,
      };
    });
  }

  async abortJob(domain: string, signal?: AbortSignal): Promise<void> {
    await this.run("abortJob", async (api) => api.abortJob(await this.dom(api, domain, signal), signal));
  }

  // --- networks ------------------------------------------------------------------------------

  async listNetworks(signal?: AbortSignal): Promise<NetworkInfo[]> {
    return this.run("listNetworks", async (api) => {
      const nets = await api.listAllNetworks(signal);
      return Promise.all(
        nets.map(async (n) => ({
          spec: parseNetworkXML(await api.networkXML(n, signal)),
          active: await api.networkIsActive(n, signal),
          autostart: await api.networkAutostart(n, signal),
        })),
      );
    });
  }

  async getNetwork(name: string, signal?: AbortSignal): Promise<NetworkInfo | undefined> {
    try {
      return await this.run("getNetwork", async (api) => {
        const n = await api.networkLookup(name, signal);
        const info: NetworkInfo = {
          spec: parseNetworkXML(await api.networkXML(n, signal)),
          active: await api.networkIsActive(n, signal),
          autostart: await api.networkAutostart(n, signal),
        };
        if (await relinkPending(api, name, signal)) info.relinkPending = true;
        return info;
      });
    } catch (e) {
      if (isProviderError(e, "NotFound")) return undefined;
      throw e;
    }
  }

  async ensureNetwork(spec: NetworkSpec, signal?: AbortSignal): Promise<void> {
    const existing = await this.getNetwork(spec.name, signal);
    // A host bridge (mode bridge) outlives its libvirt network; a bridge libvirt made does not,
    // and the guests on it must follow to the new one (relink.ts).
    const keepGuests = spec.mode !== "bridge";
    await this.run("ensureNetwork", async (api) => {
      if (existing?.active && sameNetwork(existing.spec, spec)) {
        // Nothing to change here (an interrupted relink to finish, below).
      } else if (existing?.active && onlyLeasesDiffer(existing.spec, spec)) {
        // Fixed leases changed: update dnsmasq's host table in place, no restart.
        await this.updateLeases(api, spec, existing.spec, signal);
      } else if (existing && !existing.active && sameNetwork(existing.spec, spec)) {
        // Stopped (net-destroy), configuration intact: start it again.
        const n = await api.networkLookup(spec.name, signal);
        await api.networkCreate(n, signal);
        await api.networkSetAutostart(n, true, signal);
      } else {
        // A change libvirt cannot make live: the running guests step aside while it is recreated.
        if (existing?.active && keepGuests) await stepAside(api, spec.name, signal);
        if (existing) {
          // Our XML carries no UUID: libvirt refuses to define over a persistent network of that
          // name ("already exists with uuid"), so the old definition goes first.
          const n = await api.networkLookup(spec.name, signal);
          if (existing.active) await api.networkDestroy(n, signal);
          await api.networkUndefine(n, signal).catch((e) => {
            if (!isProviderError(this.wrap("ensureNetwork", e), "NotFound")) throw e;
          });
        }
        const n = await api.networkDefine(renderNetworkXML(spec), signal);
        await api.networkCreate(n, signal);
        await api.networkSetAutostart(n, true, signal);
      }
      if (!keepGuests) return;
      // The network was down under running guests (destroyed or undefined behind our back):
      // their taps are on no bridge now. Off to the hop and back puts them on the new one.
      if (!existing?.active) await stepAside(api, spec.name, signal);
      await stepBack(api, spec.name, signal);
    });
  }

  /** Apply the difference in fixed leases (DHCP host entries) to a running network, live and config. */
  private async updateLeases(
    api: LibvirtApi,
    spec: NetworkSpec,
    have: NetworkSpec,
    signal?: AbortSignal,
  ): Promise<void> {
    const n = await api.networkLookup(spec.name, signal);
    const key = (l: Lease) => `${l.mac.toLowerCase()}|${l.ip}|${l.hostname ?? ""}`;
    const want = new Map((spec.leases ?? []).map((l) => [key(l), l]));
    const had = new Map((have.leases ?? []).map((l) => [key(l), l]));
    const flags = NetworkUpdate.AffectLive | NetworkUpdate.AffectConfig;
    for (const [k, l] of had)
      if (!want.has(k))
        await api.networkUpdate(
          n,
          NetworkUpdate.Delete,
          NetworkUpdate.SectionDhcpHost,
          hostXML(l),
          flags,
          signal,
        );
    for (const [k, l] of want)
      if (!had.has(k))
        await api.networkUpdate(
          n,
          NetworkUpdate.AddLast,
          NetworkUpdate.SectionDhcpHost,
          hostXML(l),
          flags,
          signal,
        );
  }

  async removeNetwork(name: string, signal?: AbortSignal): Promise<void> {
    await this.run("removeNetwork", async (api) => {
      const n = await api.networkLookup(name, signal);
      if (await api.networkIsActive(n, signal)) await api.networkDestroy(n, signal);
      await api.networkUndefine(n, signal);
    });
  }

  async networkLeases(name: string, signal?: AbortSignal): Promise<NetworkLease[]> {
    return this.run("networkLeases", async (api) => {
      const n = await api.networkLookup(name, signal);
      return (await api.networkDhcpLeases(n, signal))
        .filter((l) => l.mac !== undefined)
        .map((l) => ({
          mac: (l.mac as string).toLowerCase(),
          ip: l.ipaddr,
          prefix: l.prefix,
          ...(l.hostname ? { hostname: l.hostname } : {}),
          expiresAt: l.expiryTime,
        }));
    });
  }

  // --- storage -------------------------------------------------------------------------------

  async listPools(signal?: AbortSignal): Promise<PoolInfo[]> {
    return this.run("listPools", async (api) => {
      const pools = await api.listAllPools(signal);
      return Promise.all(
        pools.map(async (p) => {
          const [info, xml] = await Promise.all([api.poolInfo(p, signal), api.poolXML(p, signal)]);
          const path = parsePoolPath(xml);
          return {
            name: p.name,
            ...(path ? { path } : {}),
            capacityBytes: info.capacity,
            availableBytes: info.available,
            active: info.state === 2,
          };
        }),
      );
    });
  }

  private async volumeInfo(
    api: LibvirtApi,
    pool: string,
    vol: Parameters<LibvirtApi["volInfo"]>[0],
    signal?: AbortSignal,
  ): Promise<VolumeInfo> {
    const [info, path, xml] = await Promise.all([
      api.volInfo(vol, signal),
      api.volPath(vol, signal),
      api.volXML(vol, signal),
    ]);
    const parsed = parseVolumeXML(xml);
    return {
      pool,
      name: vol.name,
      path,
      format: parsed.format,
      capacityBytes: info.capacity,
      allocationBytes: info.allocation,
      ...(parsed.backingPath ? { backingPath: parsed.backingPath } : {}),
    };
  }

  async listVolumes(pool: string, signal?: AbortSignal): Promise<VolumeInfo[]> {
    return this.run("listVolumes", async (api) => {
      const p = await api.poolLookup(pool, signal);
      await this.refreshPool(api, pool, p, signal);
      const vols = await api.listVolumes(p, signal);
      // A volume deleted between the listing and its info (another caller, another host on
      // shared storage) is gone, not an error of this listing.
      const infos = await Promise.all(
        vols.map((v) =>
          this.volumeInfo(api, pool, v, signal).catch((e: unknown) => {
            if (e instanceof LibvirtError && e.code === VIR_ERR_NO_STORAGE_VOL) return undefined;
            throw e;
          }),
        ),
      );
      return infos.filter((v): v is VolumeInfo => v !== undefined);
    });
  }

  async createVolume(pool: string, options: CreateVolumeOptions, signal?: AbortSignal): Promise<VolumeInfo> {
    return this.run("createVolume", async (api) => {
      const p = await api.poolLookup(pool, signal);
      // On shared storage this host's pool may still list a volume another host deleted: "exists
      // already" for a file that is gone. Refresh the pool once and create again.
      return this.createIn(api, p, pool, options, signal).catch(async (e: unknown) => {
        if (!(e instanceof LibvirtError) || e.code !== VIR_ERR_STORAGE_VOL_EXIST) throw e;
        await this.refreshPool(api, pool, p, signal);
        return this.createIn(api, p, pool, options, signal);
      });
    });
  }

  private async createIn(
    api: LibvirtApi,
    p: Parameters<LibvirtApi["poolRefresh"]>[0],
    pool: string,
    options: CreateVolumeOptions,
    signal?: AbortSignal,
  ): Promise<VolumeInfo> {
    let vol: Parameters<LibvirtApi["volInfo"]>[0];
    if (options.copyFrom) {
      const src = await api.volLookup(
        await api.poolLookup(options.copyFrom.pool, signal),
        options.copyFrom.volume,
        signal,
      );
      vol = await api.volCreateFrom(p, renderVolumeXML(options), src, 0, signal);
    } else if (options.backing) {
      const base = await api.volLookup(
        await api.poolLookup(options.backing.pool, signal),
        options.backing.volume,
        signal,
      );
      const baseInfo = await api.volInfo(base, signal);
      const basePath = await api.volPath(base, signal);
      vol = await api.volCreate(
        p,
        renderVolumeXML(
          { ...options, capacityBytes: Math.max(options.capacityBytes, baseInfo.capacity) },
          basePath,
        ),
        0,
        signal,
      );
    } else {
      vol = await api.volCreate(p, renderVolumeXML(options), 0, signal);
    }
    return this.volumeInfo(api, pool, vol, signal);
  }

  async getVolume(pool: string, name: string, signal?: AbortSignal): Promise<VolumeInfo | undefined> {
    try {
      return await this.run("getVolume", async (api) => {
        const p = await api.poolLookup(pool, signal);
        // On shared storage another host may have created it, or deleted it (the pool still lists
        // it; its info says "not found"): refresh the pool once and look again.
        const look = async () => this.volumeInfo(api, pool, await api.volLookup(p, name, signal), signal);
        return await look().catch(async (e: unknown) => {
          if (!(e instanceof LibvirtError) || e.code !== VIR_ERR_NO_STORAGE_VOL) throw e;
          await this.refreshPool(api, pool, p, signal);
          return look();
        });
      });
    } catch (e) {
      if (isProviderError(e, "NotFound")) return undefined;
      throw e;
    }
  }

  private readonly poolRefreshes = new Map<string, Promise<void>>();

  /**
   * Refresh a pool once for all concurrent callers. libvirt refuses a refresh while a volume of
   * the pool is being built ("has asynchronous jobs running"): that is a wait, not a failure.
   */
  private refreshPool(
    api: LibvirtApi,
    pool: string,
    ref: Parameters<LibvirtApi["poolRefresh"]>[0],
    signal?: AbortSignal,
  ): Promise<void> {
    let inflight = this.poolRefreshes.get(pool);
    if (!inflight) {
      inflight = (async () => {
        for (let attempt = 0; ; attempt++) {
          try {
            await api.poolRefresh(ref, signal);
            return;
          } catch (e) {
            const busy = e instanceof LibvirtError && /asynchronous jobs running/.test(e.message);
            if (!busy || attempt >= 40) throw e;
            await new Promise((r) => setTimeout(r, 25));
          }
        }
      })().finally(() => this.poolRefreshes.delete(pool));
      this.poolRefreshes.set(pool, inflight);
    }
    return inflight;
  }

  /**
   * Deletes a volume unless another one is an overlay on it. NotFound means this volume is not
   * there (after a pool refresh), never that some other volume vanished meanwhile: concurrent
   * deletions in one pool used to make each other's listing fail with NotFound, which callers
   * rightly tolerate, and the volume stayed behind.
   */
  async deleteVolume(pool: string, name: string, signal?: AbortSignal): Promise<void> {
    const all = await this.listVolumes(pool, signal);
    const target = all.find((v) => v.name === name);
    if (!target)
      throw new ProviderError("NotFound", this.host, "deleteVolume", `volume ${pool}/${name} not found`);
    const dependent = all.find((v) => v.backingPath === target.path);
    if (dependent) {
      throw new ProviderError(
        "InvalidState",
        this.host,
        "deleteVolume",
        `volume ${name} backs ${dependent.name}: delete the overlay first`,
      );
    }
    await this.run("deleteVolume", async (api) =>
      api.volDelete(await api.volLookup(await api.poolLookup(pool, signal), name, signal), signal),
    );
  }
}

type Lease = NonNullable<NetworkSpec["leases"]>[number];

function hostXML(l: Lease): string {
  const attr = (v: string) => v.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
  return `<host mac="${attr(l.mac)}" ip="${attr(l.ip)}"${l.hostname ? ` name="${attr(l.hostname)}"` : ""}/>`;
}

/**
 * Whether two network specs differ in their fixed leases only (ownership aside), and both have a
 * DHCP section to update (libvirt cannot add a host to a network without one).
 */
function sameNetwork(have: NetworkSpec, want: NetworkSpec): boolean {
  const strip = ({ ownership: _o, ...rest }: NetworkSpec) => JSON.stringify(canonical(rest));
  return strip(have) === strip(want) && have.ownership?.specHash === want.ownership?.specHash;
}

function onlyLeasesDiffer(have: NetworkSpec, want: NetworkSpec): boolean {
  const strip = ({ ownership: _o, leases: _l, ...rest }: NetworkSpec) => JSON.stringify(canonical(rest));
  const dhcp = (n: NetworkSpec) => n.dhcpRange !== undefined || (n.leases?.length ?? 0) > 0;
  return strip(have) === strip(want) && dhcp(have) && dhcp(want);
}
