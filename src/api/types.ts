/**
 * The virtwarden resource model (API group virtwarden.io, version v1alpha1).
 *
 * Contract: the CRDs in crds/ are the source of truth. These types are checked against the
 * generated types (src/api/generated/, from `npm run gen:types`) by test/api/types.test.ts in both
 * directions, so a field added to a CRD and forgotten here (or the reverse) fails the build.
 *
 * Quantities (`memory: 2Gi`, `size: 20Gi`) are kept as strings in spec; parseQuantity in
 * quantity.ts turns them into bytes / millicores. The controller never writes spec: everything it
 * learns (placement, failovers, migrations, drift) lives in status.
 */

export const GROUP = "virtwarden.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

export type Kind =
  | "VirtualMachine"
  | "Host"
  | "VirtualNetwork"
  | "SnapshotPolicy"
  | "VirtualMachineSnapshot"
  | "VirtualMachineRestore"
  | "VirtualMachineClass";

export const KINDS: readonly Kind[] = [
  "VirtualMachine",
  "Host",
  "VirtualNetwork",
  "SnapshotPolicy",
  "VirtualMachineSnapshot",
  "VirtualMachineRestore",
  "VirtualMachineClass",
];

/** Cluster-scoped kinds have no namespace; every other kind is namespaced. */
export const CLUSTER_SCOPED: ReadonlySet<Kind> = new Set<Kind>(["Host", "VirtualMachineClass"]);

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
}

export interface LabelSelectorRequirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface LocalObjectReference {
  name: string;
}

export interface SecretKeyReference {
  name: string;
  namespace?: string;
  key?: string;
}

/** Kubernetes-style condition; lists of them are keyed by `type` (x-kubernetes-list-type: map). */
export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

// ---------------------------------------------------------------------------------------------
// VirtualMachine
// ---------------------------------------------------------------------------------------------

export type RunStrategy = "Always" | "RerunOnFailure" | "Manual" | "Halted";

export interface VMResources {
  /** Virtual CPUs (whole number). */
  cpu: number;
  /** Memory quantity, e.g. "2Gi". */
  memory: string;
  /** Most vCPUs a running guest can be given live (hotplug); unset: cpu. */
  maxCpu?: number;
  /** Most memory a running guest can be given live (balloon), a quantity; unset: memory. */
  maxMemory?: string;
}

/** How spec changes libvirt cannot make live reach a running VM: wait for a restart, or restart. */
export type UpdateStrategy = "Manual" | "Automatic";

/** The built-in sizes, which stand in for a VirtualMachineClass of their name while none exists. */
export type BuiltinInstanceTypeName = "tiny" | "small" | "medium" | "large" | "xlarge" | "2xlarge";

export type DiskBus = "virtio" | "scsi" | "sata" | "ide";

export interface DiskSource {
  /** Base image to clone the disk from (a volume in `pool`). Exactly one of image / volume / none. */
  image?: {
    name: string;
    /** Storage pool holding the base image; default "default". */
    pool?: string;
    /** linked: qcow2 overlay backed by the base image (default). full: an independent copy. */
    clone?: "linked" | "full";
  };
  /** An existing volume used as is. */
  volume?: { name: string; pool?: string };
}

export interface VMDisk {
  name: string;
  /** Size quantity, e.g. "20Gi". Required for blank disks; at least the base image's size otherwise. */
  size?: string;
  bus?: DiskBus;
  source?: DiskSource;
  readOnly?: boolean;
  /** Boot order (1 = first). */
  bootOrder?: number;
  /**
   * The volume's fate when the VM is deleted (a PersistentVolume's reclaim policy). Unset: Delete
   * for a disk the VM created (image clone or copy, blank), Retain for a `source.volume`.
   */
  deletionPolicy?: DiskDeletionPolicy;
}

export type DiskDeletionPolicy = "Delete" | "Retain";

export interface VMNetworkAttachment {
  /** VirtualNetwork in the VM's namespace. */
  network: string;
  /** Fixed IPv4 address leased from the network's subnet. */
  ip?: string;
  /** Fixed MAC address (unicast, locally administered recommended). */
  mac?: string;
  model?: "virtio" | "e1000" | "rtl8139";
}

export interface VMAffinityTerm {
  /** VMs (same namespace) whose labels match this selector. */
  selector: LabelSelector;
  /** Topology: "host" (default) or "failureDomain". */
  topology?: "host" | "failureDomain";
}

export interface VMWeightedAffinityTerm extends VMAffinityTerm {
  /** 1..100: the share of the preference this term carries. */
  weight: number;
}

export interface VMPlacement {
  /** Host labels the VM's host must carry. */
  hostSelector?: Record<string, string>;
  /** Place on the same host / failure domain as VMs matching these terms. */
  affinity?: VMAffinityTerm[];
  /** Never on the same host / failure domain as VMs matching these terms. */
  antiAffinity?: VMAffinityTerm[];
  /** Soft terms: rank hosts, never filter them (Kubernetes' preferredDuringScheduling). */
  preferredAffinity?: VMWeightedAffinityTerm[];
  preferredAntiAffinity?: VMWeightedAffinityTerm[];
  /**
   * spread: least-loaded host first. pack: fullest host that fits (frees hosts for power-off).
   * bestFit: least memory left over in bytes. roundRobin: the next host in name order.
   */
  strategy?: "spread" | "pack" | "bestFit" | "roundRobin" | "loadAware";
  /** Rank by measured host MTBF too (scheduler/placement.ts reliabilityScore); unmeasured hosts are neutral. */
  preferReliableHosts?: boolean;
}

export interface VMAvailability {
  /** Higher priorities are recovered first after a host failure; 0..1000, default 100. */
  priority?: number;
  restartBackoff?: {
    /** Seconds before the first restart (default 1). */
    initialSeconds?: number;
    /** Upper bound of the exponential backoff in seconds (default 300). */
    maxSeconds?: number;
  };
  /** The crash-loop rung: after `crashLoopThreshold` crashes within `crashLoopWindowSeconds`. */
  crashLoopThreshold?: number;
  crashLoopWindowSeconds?: number;
  /** What to do once in a crash loop: restore the latest good snapshot, or stop. Default Stop. */
  onCrashLoop?: "RestoreLatestSnapshot" | "Stop";
  /** What to do when the VM's host fails: Recreate (default), RestoreCheckpoint, or Nothing. */
  onHostFailure?: "Recreate" | "RestoreCheckpoint" | "Nothing";
}

export interface VMMigration {
  /** Live migration allowed (default true); otherwise drains shut the VM down and start it elsewhere. */
  live?: boolean;
  /** Bandwidth limit in MiB/s; 0 = unlimited. */
  bandwidthMiBps?: number;
  /** Give up a migration after this many seconds (default 600). */
  timeoutSeconds?: number;
}

export interface VirtualMachineSpec {
  runStrategy?: RunStrategy;
  /** Default Manual: a change that needs a restart waits for one (RestartRequired). */
  updateStrategy?: UpdateStrategy;
  /** Exactly one of resources / instanceType. */
  resources?: VMResources;
  /** A VirtualMachineClass name (resolution in classes.ts; built-in sizes in defaults.ts). */
  instanceType?: string;
  /** Direct kernel boot (tests, appliances). */
  boot?: { kernel?: string; initrd?: string; cmdline?: string };
  disks?: VMDisk[];
  networks?: VMNetworkAttachment[];
  placement?: VMPlacement;
  availability?: VMAvailability;
  migration?: VMMigration;
  /** Group of communicating VMs snapshotted together (coordinated checkpoints). */
  group?: string;
  /** How long each phase of bringing the VM up may take (reconcilers/virtualmachine/deadlines.ts). */
  deadlines?: VMDeadlines;
}

/** Seconds; unset: the defaults in reconcilers/virtualmachine/deadlines.ts. */
export interface VMDeadlines {
  placingSeconds?: number;
  preparingDisksSeconds?: number;
  definingSeconds?: number;
  startingSeconds?: number;
}

export type VMBringUpPhase = "PreparingDisks" | "Defining" | "Starting";

export type VMPhase =
  | "Pending"
  | "Scheduling"
  | "Provisioning"
  | "Starting"
  | "Running"
  | "Stopping"
  | "Stopped"
  | "Migrating"
  | "Recovering"
  | "Failed"
  | "CrashLoop"
  | "Terminating";

export interface VMRecoveryRecord {
  reason: "HostFailure" | "Crash" | "CrashLoopRestore" | "Drift";
  fromHost?: string;
  toHost?: string;
  /** When the failure happened (the last heartbeat / the crash event), not when it was detected. */
  failedAt: string;
  detectedAt?: string;
  finishedAt?: string;
  seconds?: number;
  /** The checkpoint a host-failure recovery resumed from, and the work lost: failedAt - its creationTime. */
  checkpoint?: string;
  lostWorkSeconds?: number;
  result?: "Succeeded" | "Failed" | "InProgress";
}

export interface VMDriftRecord {
  /** Field paths or facts that differed, e.g. "state", "domain.memory", "domain.vcpu". */
  fields: string[];
  detectedAt: string;
  correctedAt?: string;
  message?: string;
}

export interface VMMigrationStatus {
  reason: "Maintenance" | "Consolidation" | "Rebalance" | "Manual";
  sourceHost: string;
  targetHost: string;
  startedAt: string;
  finishedAt?: string;
  /** 0..100 */
  progressPercent?: number;
  result?: "Succeeded" | "Failed" | "InProgress" | "Aborted";
  message?: string;
}

export interface VirtualMachineStatus {
  phase?: VMPhase;
  host?: string;
  conditions?: Condition[];
  observedGeneration?: number;
  /** The last restart asked with the virtwarden.io/restartedAt annotation that was honoured. */
  restartedAt?: string;
  /** Hash of the rendered domain spec last applied to the host. */
  specHash?: string;
  restartCount?: number;
  /** Crash timestamps inside the current crash-loop window. */
  recentCrashes?: string[];
  lastFailure?: { reason: string; message?: string; at: string };
  lastRecovery?: VMRecoveryRecord;
  lastDrift?: VMDriftRecord;
  currentSnapshot?: string;
  currentCheckpoint?: string;
  migration?: VMMigrationStatus;
  /** Availability over the controller's window: MTBF / (MTBF + MTTR). */
  availability?: { ratio: number; windowSeconds: number; failures: number; downtimeSeconds: number };
  /** Network interfaces as realised (MAC and IP actually assigned). */
  interfaces?: { network: string; mac: string; ip?: string }[];
  /** A bring-up on `host` that has not finished: the phase it is in and since when. */
  bringUp?: { host: string; phase: VMBringUpPhase; since: string };
  /** The latest deadlines this VM missed (newest last): the host, the phase, when, after how long. */
  deadlineMisses?: { host: string; phase: VMBringUpPhase; at: string; seconds: number }[];
}

export interface VirtualMachine {
  apiVersion: typeof API_VERSION;
  kind: "VirtualMachine";
  metadata: ObjectMeta;
  spec: VirtualMachineSpec;
  status?: VirtualMachineStatus;
}

// ---------------------------------------------------------------------------------------------
// Host
// ---------------------------------------------------------------------------------------------

/**
 * fence-agents: a ClusterLabs fence_* program and its options, given as `key=value` lines on its
 * stdin (never in argv), as Pacemaker's stonith resources configure them.
 */
export interface FenceAgentsProgram {
  /** fence_ipmilan, fence_redfish, fence_apc, …: looked up on PATH. */
  program?: string;
  /** Option name → value (ip, username, lanplus, ipport, …); never action or a password. */
  options?: Record<string, string>;
}

export interface FencingSpec extends FenceAgentsProgram {
  agent: "ipmi" | "exec" | "sim" | "manual" | "fence-agents";
  /** ipmi: BMC address. */
  address?: string;
  /** ipmi: the BMC's UDP port (default 623). */
  port?: number;
  /** ipmi: RMCP+ cipher suite (ipmitool -C). */
  cipherSuite?: number;
  /** Secret (Kubernetes) or file path (standalone) with `username` / `password`. */
  credentialsSecretRef?: SecretKeyReference;
  credentialsFile?: string;
  /** exec: argv run without a shell; `{host}` and `{action}` are substituted. Exit 0 = done. */
  command?: string[];
  timeoutSeconds?: number;
  /** Allow recovery without a confirmed fence. Dangerous: reported loudly in status and events. */
  unsafeSkipFencing?: boolean;
}

export interface PowerSpec extends FenceAgentsProgram {
  agent: "ipmi" | "exec" | "sim" | "wol" | "fence-agents";
  address?: string;
  port?: number;
  cipherSuite?: number;
  credentialsSecretRef?: SecretKeyReference;
  credentialsFile?: string;
  /** exec: argv for on/off/status; `{host}` and `{action}` are substituted. */
  command?: string[];
  timeoutSeconds?: number;
}

export interface HostSpec {
  /** libvirt URI (qemu:///system, qemu+tcp://h/system, qemu+tls://..., qemu+ssh://...) or sim://NAME. */
  uri: string;
  /**
   * libvirt domain type of the VMs started here: kvm, or qemu (TCG) for hosts without working
   * KVM. Default: kvm when the host's capabilities offer it, else qemu.
   */
  domainType?: "kvm" | "qemu";
  /** Capacity kept back for the host itself. */
  reserved?: { cpu?: number; memory?: string };
  /** Overcommit ratios (default cpu 4.0, memory 1.0). */
  overcommit?: { cpu?: number; memory?: number };
  /** Drain: migrate every VM away, then report phase Maintenance. */
  maintenance?: boolean;
  /** Don't place new VMs here (running VMs stay). */
  unschedulable?: boolean;
  fencing?: FencingSpec;
  power?: PowerSpec;
  /** Failure domain (rack, PDU, room) for anti-affinity and spreading. */
  failureDomain?: string;
  /** Let consolidation power this host down when idle. */
  allowPowerOff?: boolean;
  heartbeat?: {
    intervalSeconds?: number;
    /** Missed beats before Unreachable (default 3 at 1 s = ~3 s detection). */
    missedBeats?: number;
  };
}

export type HostPhase =
  | "Pending"
  | "Ready"
  | "NotReady"
  | "Unreachable"
  | "Fencing"
  | "Fenced"
  | "Maintenance"
  | "PoweredOff";

export interface HostCapacity {
  cpu: number;
  /** Bytes as a quantity string, e.g. "64Gi". */
  memory: string;
}

export interface HostStatus {
  phase?: HostPhase;
  conditions?: Condition[];
  observedGeneration?: number;
  capacity?: HostCapacity;
  allocatable?: HostCapacity;
  allocated?: HostCapacity;
  vmCount?: number;
  lastHeartbeat?: string;
  hypervisor?: { type: string; version: string; libvirtVersion?: string; hostname?: string };
  /** When the host was judged dead (missed beats past the threshold); cleared when Ready. */
  unreachableAt?: string;
  fencedAt?: string;
  /**
   * Consolidation's hold: the host is being emptied (Draining), switched off on purpose (never
   * fenced for it), or switched on again; absent while it is an ordinary host.
   */
  consolidation?: {
    state: "Draining" | "PoweringOff" | "PoweredOff" | "PoweringOn";
    since: string;
    message?: string;
  };
  /** Networks / base images known ready on this host. */
  networks?: string[];
  images?: string[];
  /** Measured CPU and memory use from libvirt's node statistics (reconcilers/host/usage.ts). */
  usage?: HostUsage;
  /** Measured from the heartbeats and kept across restarts (reconcilers/host/reliability.ts). */
  reliability?: HostReliability;
  /** VMs that missed a bring-up deadline here within the last hour; avoidUntil while avoided. */
  deadlines?: {
    misses: number;
    lastMiss?: { vm: string; phase: VMBringUpPhase; at: string };
    avoidUntil?: string;
  };
}

/** A host's measured use; see crds/hosts.yaml status.usage. */
export interface HostUsage {
  /** Busy share of all CPUs between the last two samples, 0..100. */
  cpuPercent: number;
  /** total - free - buffers - cached at the last sample. */
  memoryUsedBytes: number;
  memoryTotalBytes: number;
  /** memoryUsedBytes / memoryTotalBytes, 0..100 (for `get -o wide`; absent in older statuses). */
  memoryPercent?: number;
  /** RFC 3339. */
  sampledAt: string;
}

/** A host's measured reliability; figures in seconds, see crds/hosts.yaml status.reliability. */
export interface HostReliability {
  /** Down episodes observed (judged dead by the heartbeat rule), each counted once. */
  failures: number;
  observedSeconds: number;
  upSeconds: number;
  downSeconds: number;
  /** upSeconds / failures; absent while failures is 0. */
  mtbfSeconds?: number;
  /** downSeconds / finished recoveries; absent until one. */
  mttrSeconds?: number;
  /** upSeconds / observedSeconds. */
  availability?: number;
  since: string;
  lastFailureTime?: string;
}

export interface Host {
  apiVersion: typeof API_VERSION;
  kind: "Host";
  metadata: ObjectMeta;
  spec: HostSpec;
  status?: HostStatus;
}

// ---------------------------------------------------------------------------------------------
// VirtualNetwork
// ---------------------------------------------------------------------------------------------

export interface VirtualNetworkSpec {
  mode: "nat" | "bridge" | "isolated" | "route";
  /** Linux bridge name (bridge mode: an existing bridge; otherwise the one libvirt creates). */
  bridge?: string;
  /** IPv4 subnet in CIDR form, e.g. 192.168.100.0/24. Required except in bridge mode. */
  subnet?: string;
  gateway?: string;
  dhcp?: {
    range?: { start: string; end: string };
    leases?: { mac: string; ip: string; hostname?: string }[];
  };
  vlan?: number;
  mtu?: number;
  hostSelector?: Record<string, string>;
}

export interface VirtualNetworkStatus {
  conditions?: Condition[];
  observedGeneration?: number;
  hosts?: { host: string; ready: boolean; message?: string }[];
  readyHosts?: number;
}

export interface VirtualNetwork {
  apiVersion: typeof API_VERSION;
  kind: "VirtualNetwork";
  metadata: ObjectMeta;
  spec: VirtualNetworkSpec;
  status?: VirtualNetworkStatus;
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

export type SnapshotType = "disk" | "disk+memory";

export interface SnapshotPolicySpec {
  selector: LabelSelector;
  /** Cron expression (5 fields) or @hourly / @daily ..., or `auto` (see SnapshotPolicyAuto). */
  schedule: string;
  timeZone?: string;
  auto?: SnapshotPolicyAuto;
  type?: SnapshotType;
  /** perVM: each VM on its own. group: pause all selected VMs, snapshot each, resume all. */
  consistency?: "perVM" | "group";
  retention?: { keepLast?: number; maxAge?: string };
  /** Storage pool for external snapshots / checkpoints; default: alongside the disk. */
  targetPool?: string;
  /** At most this many snapshots in progress per host (default 2). */
  maxParallelPerHost?: number;
  /** After downtime: Skip missed runs, or RunOnce to take one catch-up snapshot. Default RunOnce. */
  missedSchedule?: "Skip" | "RunOnce";
  /** Seconds after the scheduled time a run may still start (default 600). */
  startingDeadlineSeconds?: number;
  suspend?: boolean;
}

/** schedule auto: each target's interval from its checkpoint cost and its hosts' MTBF. */
export interface SnapshotPolicyAuto {
  /** Durations as in retention.maxAge (5m, 24h, 7d, 2w). Defaults 5m, 24h, 7d. */
  minInterval?: string;
  maxInterval?: string;
  /** The MTBF of a host without a measured one. */
  assumedMtbf?: string;
  /** pause (default): the seconds the guest was paused; total: how long taking it lasted. */
  costFrom?: "pause" | "total";
  formula?: "Daly" | "Young";
}

/** One target's cadence under schedule auto, and what it was computed from. */
export interface SnapshotCadence {
  /** `vm/<name>` or `group/<name>`. */
  target: string;
  hosts?: string[];
  costSeconds?: number;
  costSamples?: number;
  mtbfSeconds: number;
  mtbfSource: "measured" | "assumed";
  formula: "Daly" | "Young" | "FirstCheckpoint" | "MinInterval" | "NotPlaced";
  formulaSeconds?: number;
  intervalSeconds?: number;
  clamped?: "min" | "max";
  lastCheckpointTime?: string;
  nextRunTime?: string;
  message: string;
}

export interface SnapshotPolicyStatus {
  conditions?: Condition[];
  observedGeneration?: number;
  /** The latest scheduled time handled: run, or skipped after downtime (missedSchedule Skip). */
  lastScheduleTime?: string;
  lastRunTime?: string;
  lastSuccessfulTime?: string;
  nextRunTime?: string;
  snapshotsTaken?: number;
  snapshotsFailed?: number;
  lastPauseWindowSeconds?: number;
  /** schedule auto: one entry per target, sorted by target. */
  cadence?: SnapshotCadence[];
}

export interface SnapshotPolicy {
  apiVersion: typeof API_VERSION;
  kind: "SnapshotPolicy";
  metadata: ObjectMeta;
  spec: SnapshotPolicySpec;
  status?: SnapshotPolicyStatus;
}

export interface VirtualMachineSnapshotSpec {
  /** The VM to snapshot; or `group` for a coordinated snapshot of every VM of that group. */
  vmName?: string;
  group?: string;
  type?: SnapshotType;
  /** Set when created by a policy. */
  policy?: string;
}

/** One VM's part of a VirtualMachineSnapshot (a single-VM snapshot has one member). */
export interface SnapshotMember {
  vmName: string;
  host: string;
  snapshotName: string;
  sizeBytes?: number;
  /** The domain's state when taken: running means its memory is included. */
  state?: "running" | "paused" | "shutoff";
  /** The disk images (pool/volume) holding the internal snapshot. */
  disks?: string[];
}

export interface VirtualMachineSnapshotStatus {
  phase?: "Pending" | "InProgress" | "Succeeded" | "Failed";
  conditions?: Condition[];
  observedGeneration?: number;
  readyToUse?: boolean;
  creationTime?: string;
  host?: string;
  sizeBytes?: number;
  location?: string;
  /** For group snapshots: each member's snapshot and the pause window. */
  members?: SnapshotMember[];
  pauseWindowSeconds?: number;
  /** Seconds taking it lasted (Succeeded snapshots): schedule auto's checkpoint cost. */
  durationSeconds?: number;
  /** Taken while the VM was healthy (not crash-looping): eligible for crash-loop restores. */
  healthy?: boolean;
  error?: string;
}

export interface VirtualMachineSnapshot {
  apiVersion: typeof API_VERSION;
  kind: "VirtualMachineSnapshot";
  metadata: ObjectMeta;
  spec: VirtualMachineSnapshotSpec;
  status?: VirtualMachineSnapshotStatus;
}

export interface VirtualMachineRestoreSpec {
  snapshotName: string;
  /** Restore onto this host instead of the snapshot's (needs shared storage). */
  targetHost?: string;
}

export interface VirtualMachineRestoreStatus {
  phase?: "Pending" | "InProgress" | "Succeeded" | "Failed";
  conditions?: Condition[];
  observedGeneration?: number;
  startedAt?: string;
  finishedAt?: string;
  seconds?: number;
  host?: string;
  error?: string;
  /** Runs started; a controller restart interrupting one makes the next (see restore.ts). */
  attempts?: number;
}

export interface VirtualMachineRestore {
  apiVersion: typeof API_VERSION;
  kind: "VirtualMachineRestore";
  metadata: ObjectMeta;
  spec: VirtualMachineRestoreSpec;
  status?: VirtualMachineRestoreStatus;
}

// ---------------------------------------------------------------------------------------------
// VirtualMachineClass
// ---------------------------------------------------------------------------------------------

/** A named size with defaults; VM fields override them (merge rules in classes.ts). */
export interface VirtualMachineClassSpec {
  cpu: number;
  memory: string;
  maxCpu?: number;
  maxMemory?: string;
  disks?: VMDisk[];
  placement?: VMPlacement;
  availability?: VMAvailability;
  migration?: VMMigration;
}

export interface VirtualMachineClass {
  apiVersion: typeof API_VERSION;
  kind: "VirtualMachineClass";
  metadata: ObjectMeta;
  spec: VirtualMachineClassSpec;
  status?: Record<string, never>;
}

export type Resource =
  | VirtualMachineClass
  | VirtualMachine
  | Host
  | VirtualNetwork
  | SnapshotPolicy
  | VirtualMachineSnapshot
  | VirtualMachineRestore;

export type ResourceOfKind<K extends Kind> = Extract<Resource, { kind: K }>;

/** namespace/name for namespaced kinds, name for cluster-scoped ones. */
export function objectKey(meta: Pick<ObjectMeta, "name" | "namespace">): string {
  return meta.namespace ? `${meta.namespace}/${meta.name}` : meta.name;
}
