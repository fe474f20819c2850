/**
 * HypervisorProvider: what virtwarden needs from one hypervisor host, shaped after libvirt's model.
 *
 * Two implementations must stay interchangeable: providers/libvirt (libvirt's remote protocol) and
 * providers/sim (the in-process simulator). test/providers/contract.ts is one suite run against
 * both; a behaviour the reconcilers rely on belongs in that suite.
 *
 * Contracts:
 * - Every call takes an AbortSignal and fails with ProviderError (code "Aborted" / "Timeout") rather
 *   than hanging; implementations apply their own default timeout as well.
 * - Domains are addressed by name. virtwarden names domains `<namespace>_<name>` (see domainName in
 *   reconcilers) and marks them with DomainOwnership in the domain's <metadata>; listDomains
 *   returns foreign domains too, with `ownership: undefined`, and callers leave those alone.
 * - "Missing" is a value, not an error, where the caller needs to tell them apart
 *   (getDomainState / getDomainSpec return undefined for an unknown domain).
 * - Events are hints: a consumer re-reads state (queue keys, not events).
 */

export type Unsubscribe = () => void;

export type ProviderErrorCode =
  | "NotFound"
  | "AlreadyExists"
  | "InvalidState"
  | "InsufficientResources"
  | "Unreachable"
  | "Timeout"
  | "Aborted"
  | "Unsupported"
  | "OperationFailed";

/** A hypervisor failure a person can act on: the host, the operation and libvirt's own code. */
export class ProviderError extends Error {
  readonly code: ProviderErrorCode;
  readonly host: string;
  readonly operation: string;
  /** libvirt's virErrorNumber / domain when the error came from libvirt. */
  readonly libvirtCode: number | undefined;
  readonly libvirtDomain: number | undefined;

  constructor(
    code: ProviderErrorCode,
    host: string,
    operation: string,
    message: string,
    libvirt?: { code: number; domain: number },
  ) {
    super(`${host}: ${operation}: ${message}${libvirt ? ` (libvirt error ${libvirt.code})` : ""}`);
    this.name = "ProviderError";
    this.code = code;
    this.host = host;
    this.operation = operation;
    this.libvirtCode = libvirt?.code;
    this.libvirtDomain = libvirt?.domain;
  }
}

export function isProviderError(e: unknown, code?: ProviderErrorCode): e is ProviderError {
  return e instanceof ProviderError && (code === undefined || e.code === code);
}

export interface ProviderHealth {
  connected: boolean;
  /** Last successful round trip (keepalive or call). */
  lastContact?: Date;
  error?: string;
}

export interface HostInfo {
  hostname: string;
  cpus: number;
  memoryBytes: number;
  freeMemoryBytes: number;
  /** e.g. "QEMU", "sim". */
  hypervisorType: string;
  /** e.g. "7.2.0". */
  hypervisorVersion: string;
  libvirtVersion?: string;
  /** True when hardware virtualisation (KVM) is usable; otherwise guests run under TCG. */
  kvm: boolean;
}

/** virtwarden's mark on a domain (libvirt: a <metadata> element in virtwarden's XML namespace). */
export interface DomainOwnership {
  uid: string;
  kind: "VirtualMachine";
  namespace: string;
  name: string;
  generation: number;
  /** Hash of the rendered DomainSpec (without ownership): a mismatch means the spec changed. */
  specHash: string;
}

/** libvirt's virDomainState, in words. */
export type DomainState =
  | "nostate"
  | "running"
  | "blocked"
  | "paused"
  | "shutdown"
  | "shutoff"
  | "crashed"
  | "pmsuspended";

export interface DomainStateInfo {
  state: DomainState;
  /**
   * libvirt's state reason in words, e.g. running: "booted" | "migrated" | "restored" |
   * "from-snapshot" | "unpaused"; shutoff: "shutdown" | "destroyed" | "crashed" | "migrated" |
   * "saved" | "failed" | "from-snapshot" | "unknown"; paused: "user" | "migration" | ...
   */
  reason: string;
}

export interface DomainDiskSpec {
  /** Target device, e.g. "vda". */
  target: string;
  bus: "virtio" | "scsi" | "sata" | "ide";
  /** Storage pool + volume holding the disk. */
  pool: string;
  volume: string;
  /** Absolute path of the volume on the host, when known (libvirt fills it in). */
  path?: string;
  format: "qcow2" | "raw";
  readOnly?: boolean;
  bootOrder?: number;
}

export interface DomainInterfaceSpec {
  /** libvirt network name on the host. */
  network: string;
  mac: string;
  model: "virtio" | "e1000" | "rtl8139";
}

/** A domain's desired configuration, hypervisor-neutral. The libvirt provider renders it to XML. */
export interface DomainSpec {
  name: string;
  uuid?: string;
  /** vCPUs online. */
  vcpus: number;
  /**
   * The most vCPUs the domain is defined with (hotplug up to it while running); set only when
   * above `vcpus` (libvirt itself writes no `current` when the two are equal). Unset: vcpus.
   */
  maxVcpus?: number;
  /** Memory the guest has: libvirt's currentMemory (the balloon's target when there is one). */
  memoryBytes: number;
  /**
   * The domain's memory size with a virtio balloon holding it at `memoryBytes`: memory can be
   * changed live up to this. Unset: memoryBytes, and no balloon device.
   */
  maxMemoryBytes?: number;
  disks: DomainDiskSpec[];
  interfaces: DomainInterfaceSpec[];
  boot?: { kernel?: string; initrd?: string; cmdline?: string };
  /** Serial console to a file (tests read guest output from it). */
  serialLogPath?: string;
  ownership?: DomainOwnership;
}

export interface DomainSummary {
  name: string;
  uuid: string;
  state: DomainStateInfo;
  ownership?: DomainOwnership;
  vcpus: number;
  memoryBytes: number;
  persistent: boolean;
  /**
   * Set when the domain carries virtwarden's ownership mark but the rest of its XML cannot be
   * read: what was wrong, naming the host and the domain. vcpus and memoryBytes are then 0
   * (unknown) and `ownership` is there only if the mark itself was readable. Such a domain is
   * present (never "missing": another copy must not start) and its configuration is not acted
   * on. A foreign domain (no mark) whose XML cannot be read is left out of the listing instead.
   */
  parseError?: string;
}

export type DomainEventType =
  | "defined"
  | "undefined"
  | "started"
  | "suspended"
  | "resumed"
  | "stopped"
  | "shutdown"
  | "crashed"
  | "pmsuspended"
  | "reboot"
  | "watchdog"
  | "io-error";

export interface DomainEvent {
  host: string;
  domain: string;
  uuid?: string;
  type: DomainEventType;
  /** libvirt's detail in words: stopped -> "destroyed" | "crashed" | "failed" | "migrated" | "saved" | "shutdown". */
  detail: string;
  at: Date;
}

/** A libvirt network on a host was defined, undefined, started or stopped (by anyone). */
export interface NetworkEvent {
  host: string;
  network: string;
  type: "defined" | "undefined" | "started" | "stopped";
  at: Date;
}

export interface SnapshotInfo {
  name: string;
  domain: string;
  createdAt: Date;
  /** Memory state included (a checkpoint that resumes a running guest). */
  memory: boolean;
  state: DomainState;
  current: boolean;
  parent?: string;
  description?: string;
  sizeBytes?: number;
}

/** Counters of one domain (virConnectGetAllDomainStats); sums over its disks and NICs. */
export interface DomainStats {
  name: string;
  /** Guest CPU time used, nanoseconds (a counter). */
  cpuTimeNs: number;
  /** Memory the guest has (balloon), and what the QEMU process holds resident, bytes. */
  memoryBytes?: number;
  rssBytes?: number;
  block: { readBytes: number; writeBytes: number };
  net: { rxBytes: number; txBytes: number };
}

/**
 * What the host as a whole uses, measured (libvirt's virNodeGetCPUStats for all CPUs and
 * virNodeGetMemoryStats for all cells): not what is allocated to guests. CPU figures are
 * counters since the host booted: a utilisation needs two samples (busy delta over busy + idle
 * delta). Memory figures are the current state.
 */
export interface NodeStats {
  /** Nanoseconds of CPU time summed over every CPU, by kind (Linux: user, kernel, idle, iowait). */
  cpu: { userNs: number; kernelNs: number; idleNs: number; iowaitNs: number };
  memory: { totalBytes: number; freeBytes: number; buffersBytes: number; cachedBytes: number };
}

export interface MigrationOptions {
  live: boolean;
  bandwidthMiBps?: number;
  /** Allow migration libvirt calls unsafe (disk cache mode on tmpfs in tests). */
  unsafe?: boolean;
  /** Called with progress 0..100 while the job runs. */
  onProgress?: (percent: number) => void;
}

export interface JobInfo {
  active: boolean;
  type: "none" | "bounded" | "unbounded" | "completed" | "failed" | "cancelled";
  elapsedMs?: number;
  dataTotal?: number;
  dataProcessed?: number;
  dataRemaining?: number;
}

export interface NetworkSpec {
  name: string;
  mode: "nat" | "bridge" | "isolated" | "route";
  bridge?: string;
  /** Gateway address on the bridge and prefix, e.g. 192.168.100.1/24. */
  address?: string;
  dhcpRange?: { start: string; end: string };
  leases?: { mac: string; ip: string; hostname?: string }[];
  mtu?: number;
  vlan?: number;
  /** virtwarden's mark (resource uid and a hash of this spec), so drift and orphans are detectable. */
  ownership?: { uid: string; namespace: string; name: string; specHash: string };
}

/** A DHCP lease the network's server handed out (the guest asked for it and got it). */
export interface NetworkLease {
  mac: string;
  ip: string;
  prefix: number;
  hostname?: string;
  /** When the lease runs out, in seconds since the epoch (0: never). */
  expiresAt: number;
}

export interface NetworkInfo {
  spec: NetworkSpec;
  active: boolean;
  autostart: boolean;
  /** Running guests were left off the network by an interrupted ensure: ensure it again. */
  relinkPending?: boolean;
}

export interface VolumeInfo {
  pool: string;
  name: string;
  path: string;
  format: "qcow2" | "raw";
  capacityBytes: number;
  /** Bytes actually used on disk (what a linked clone saves). */
  allocationBytes: number;
  backingPath?: string;
}

export interface PoolInfo {
  name: string;
  path?: string;
  capacityBytes: number;
  availableBytes: number;
  active: boolean;
}

export interface CreateVolumeOptions {
  name: string;
  capacityBytes: number;
  format: "qcow2" | "raw";
  /** Linked clone: a qcow2 overlay backed by this volume. */
  backing?: { pool: string; volume: string };
  /** Full copy of this volume. */
  copyFrom?: { pool: string; volume: string };
}

export interface HypervisorProvider {
  /** The host's URI as configured (also its identity in errors). */
  readonly uri: string;

  connect(signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
  health(): ProviderHealth;
  onHealthChange(listener: (health: ProviderHealth) => void): Unsubscribe;
  /** A cheap round trip proving the host answers; updates health. */
  ping(signal?: AbortSignal): Promise<void>;

  hostInfo(signal?: AbortSignal): Promise<HostInfo>;
  /** The host's measured CPU time counters and memory (NodeStats); Unsupported where the host has none. */
  nodeStats(signal?: AbortSignal): Promise<NodeStats>;

  listDomains(signal?: AbortSignal): Promise<DomainSummary[]>;
  /** Define or redefine the persistent configuration; takes effect at the next start. */
  defineDomain(spec: DomainSpec, signal?: AbortSignal): Promise<void>;
  startDomain(name: string, signal?: AbortSignal): Promise<void>;
  /** Graceful (ACPI) shutdown request; returns before the guest is off. */
  shutdownDomain(name: string, signal?: AbortSignal): Promise<void>;
  /** Hard power-off. */
  destroyDomain(name: string, signal?: AbortSignal): Promise<void>;
  /**
   * Change a running domain's online vCPUs and/or memory in place (no restart), in its live state
   * and its persistent definition alike (libvirt's AFFECT_LIVE | AFFECT_CONFIG). vCPUs up to the
   * defined maximum; memory up to the defined memory size, through the balloon device (a domain
   * without one: InvalidState, as libvirt says). InvalidState when the domain does not run; a value above the
   * maximum is refused by the hypervisor (OperationFailed) and changes nothing.
   */
  resizeDomain(
    name: string,
    change: { vcpus?: number; memoryBytes?: number },
    signal?: AbortSignal,
  ): Promise<void>;
  /**
   * Plug a NIC into a running domain, live and persistent (virDomainAttachDeviceFlags): the guest
   * sees a new PCI device. InvalidState when the domain does not run; a network the host does
   * not have is refused by the hypervisor.
   */
  attachInterface(name: string, nic: DomainInterfaceSpec, signal?: AbortSignal): Promise<void>;
  /**
   * Unplug the NIC with this MAC, live and persistent (virDomainDetachDeviceFlags). The persistent
   * definition loses it at once; the running guest once it releases the device (ACPI hot-unplug).
   * NotFound when the domain has no such NIC.
   */
  detachInterface(name: string, nic: DomainInterfaceSpec, signal?: AbortSignal): Promise<void>;
  /**
   * Plug a disk into a running domain, live and persistent; its volume must exist (NotFound
   * otherwise). Buses that cannot hotplug (ide, sata) are refused by the hypervisor.
   */
  attachDisk(name: string, disk: DomainDiskSpec, signal?: AbortSignal): Promise<void>;
  /** Unplug the disk at this target, live and persistent; the volume stays. NotFound when absent. */
  detachDisk(name: string, disk: DomainDiskSpec, signal?: AbortSignal): Promise<void>;
  /** Remove the persistent definition, its snapshot metadata and managed save. */
  undefineDomain(name: string, signal?: AbortSignal): Promise<void>;
  pauseDomain(name: string, signal?: AbortSignal): Promise<void>;
  resumeDomain(name: string, signal?: AbortSignal): Promise<void>;
  getDomainState(name: string, signal?: AbortSignal): Promise<DomainStateInfo | undefined>;
  /** The persistent configuration read back from the host, for drift comparison. */
  getDomainSpec(name: string, signal?: AbortSignal): Promise<DomainSpec | undefined>;
  onDomainEvent(listener: (event: DomainEvent) => void): Unsubscribe;
  onNetworkEvent(listener: (event: NetworkEvent) => void): Unsubscribe;

  createSnapshot(
    domain: string,
    options: { name: string; memory: boolean; description?: string },
    signal?: AbortSignal,
  ): Promise<SnapshotInfo>;
  listSnapshots(domain: string, signal?: AbortSignal): Promise<SnapshotInfo[]>;
  /**
   * Revert to a snapshot. A snapshot of a running domain comes back running (its memory
   * restored), or paused with `paused` (a caller that wants the disk state only then destroys it).
   */
  revertSnapshot(
    domain: string,
    name: string,
    options?: { paused?: boolean },
    signal?: AbortSignal,
  ): Promise<void>;
  /**
   * Make a snapshot known to this host's hypervisor (it was taken on another host, its data lives
   * in the domain's disk images on shared storage). The domain must be defined here.
   */
  importSnapshot(
    domain: string,
    snapshot: Pick<SnapshotInfo, "name" | "createdAt" | "state" | "memory">,
    signal?: AbortSignal,
  ): Promise<void>;
  deleteSnapshot(domain: string, name: string, signal?: AbortSignal): Promise<void>;

  /** CPU, memory, block and network counters of every running domain, in one call. */
  domainStats(signal?: AbortSignal): Promise<DomainStats[]>;

  /**
   * Managed save: memory and device state to the host's own save file; the domain stops
   * (shut off, reason saved) and its next start resumes from it (reason restored).
   */
  managedSave(domain: string, signal?: AbortSignal): Promise<void>;
  hasManagedSave(domain: string, signal?: AbortSignal): Promise<boolean>;
  /** Drop the managed save file: the next start boots afresh. */
  removeManagedSave(domain: string, signal?: AbortSignal): Promise<void>;

  /** Save memory + device state to `path` (a file on shared storage); the domain stops. */
  saveCheckpoint(domain: string, path: string, signal?: AbortSignal): Promise<void>;
  /** Resume a domain from a checkpoint file; it runs again from where it was saved. */
  restoreCheckpoint(path: string, signal?: AbortSignal): Promise<void>;

  /** Peer-to-peer migration to the host at `targetUri` (as the source host reaches it). */
  migrateDomain(
    name: string,
    targetUri: string,
    options: MigrationOptions,
    signal?: AbortSignal,
  ): Promise<void>;
  getJobInfo(domain: string, signal?: AbortSignal): Promise<JobInfo>;
  abortJob(domain: string, signal?: AbortSignal): Promise<void>;

  listNetworks(signal?: AbortSignal): Promise<NetworkInfo[]>;
  /**
   * Define (or redefine) and start the network, with autostart. Running guests attached to it
   * stay attached: fixed-lease changes go in live, and where the network must be restarted (a
   * change libvirt cannot make live, or it was stopped behind our back) their NICs follow it
   * to its new bridge.
   */
  ensureNetwork(spec: NetworkSpec, signal?: AbortSignal): Promise<void>;
  getNetwork(name: string, signal?: AbortSignal): Promise<NetworkInfo | undefined>;
  /** Stop and undefine. */
  removeNetwork(name: string, signal?: AbortSignal): Promise<void>;
  /** The network's current DHCP leases on this host (IPv4 and IPv6); NotFound if no such network. */
  networkLeases(name: string, signal?: AbortSignal): Promise<NetworkLease[]>;

  listPools(signal?: AbortSignal): Promise<PoolInfo[]>;
  /** Every volume of the pool as it is now (shared pools are refreshed first). */
  listVolumes(pool: string, signal?: AbortSignal): Promise<VolumeInfo[]>;
  createVolume(pool: string, options: CreateVolumeOptions, signal?: AbortSignal): Promise<VolumeInfo>;
  /**
   * One volume; undefined when it is not there even after a refresh. Cheap: for a volume another
   * host created in a shared pool, its details (allocation, backing) may be as old as this
   * host's last refresh of the pool; listVolumes is current.
   */
  getVolume(pool: string, name: string, signal?: AbortSignal): Promise<VolumeInfo | undefined>;
  /** InvalidState while another volume is an overlay on it; NotFound when it is not there. */
  deleteVolume(pool: string, name: string, signal?: AbortSignal): Promise<void>;
}

/** What a Host's spec asks of its provider beyond the URI. */
export interface HostProviderOptions {
  /** libvirt domain type of new domains (default: kvm when the host offers it, else qemu). */
  domainType?: "kvm" | "qemu";
}

/** Builds the provider for a Host's URI; the CLI wires sim:// and libvirt schemes to it. */
export type ProviderFactory = (uri: string, options?: HostProviderOptions) => HypervisorProvider;
