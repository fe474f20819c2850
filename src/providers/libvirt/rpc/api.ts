/**
 * Typed libvirt calls over a LibvirtClient: one method per remote procedure virtwarden uses,
 * arguments and results as in remote_protocol.x.
 */
import { NetworkStorageApi } from "./api-resources.js";
import {
  type DomainRef,
  EventId,
  Limits,
  Proc,
  readDomain,
  readSnapshot,
  type SnapshotRef,
  type TypedParam,
  writeDomain,
  writeSnapshot,
  writeTypedParam,
} from "./protocol.js";
import {
  type DomainInfoRet,
  type DomainStatsRecord,
  type JobInfoRet,
  type NodeInfo,
  type NodeStatsRet,
  readAllDomainStats,
  readDomainInfo,
  readDomainList,
  readDomainState,
  readIntRet,
  readIsRet,
  readJobInfo,
  readMigratePerform3Ret,
  readNodeCpuStats,
  readNodeInfo,
  readNodeMemoryStats,
  readNonZeroRet,
  readSnapshotList,
  readStringRet,
  readUhyperRet,
  readVoid,
} from "./replies.js";
import { XdrError } from "./xdr.js";

export { NetworkUpdate } from "./api-resources.js";
export type { DhcpLease, JobInfoRet, LifecycleMessage, NodeInfo, NodeStatsRet } from "./replies.js";
export { readLifecycle, readNetworkLifecycle } from "./replies.js";

type S = AbortSignal | undefined;

export const ListAllDomains = { Active: 1, Inactive: 2, Persistent: 4 } as const;
export const UndefineFlags = {
  ManagedSave: 1,
  SnapshotsMetadata: 2,
  Nvram: 4,
  CheckpointsMetadata: 16,
} as const;

/** virDomainStatsTypes. */
export const DomainStatsTypes = {
  State: 1,
  CpuTotal: 2,
  Balloon: 4,
  Vcpu: 8,
  Interface: 16,
  Block: 32,
} as const;

export const XMLFlags = { Secure: 1, Inactive: 2, UpdateCPU: 4, Migratable: 8 } as const;
/** virDomainModificationImpact: which definition a change applies to. */
export const AffectFlags = { Live: 1, Config: 2 } as const;
/** virDomainSnapshotCreateFlags (subset). */
export const SnapshotCreateFlags = { Redefine: 1, Current: 2, NoMetadata: 4, Halt: 8, DiskOnly: 16 } as const;
/** virDomainSnapshotRevertFlags. */
export const RevertFlags = { Running: 1, Paused: 2, Force: 4 } as const;
export const MigrateFlags = {
  Live: 1,
  PeerToPeer: 2,
  Tunnelled: 4,
  PersistDest: 8,
  UndefineSource: 16,
  Paused: 32,
  NonSharedDisk: 64,
  Unsafe: 512,
  Offline: 1024,
  AutoConverge: 8192,
} as const;

/**
 * Every call virtwarden makes; the network and storage calls are inherited from
 * NetworkStorageApi (api-resources.ts), so one object serves the provider.
 */
export class LibvirtApi extends NetworkStorageApi {
  hostname(s?: S): Promise<string> {
    return this.client.call(Proc.ConnectGetHostname, readVoid, readStringRet, s);
  }

  version(s?: S): Promise<number> {
    return this.client.call(Proc.ConnectGetVersion, readVoid, readUhyperRet, s);
  }

  libVersion(s?: S): Promise<number> {
    return this.client.call(Proc.ConnectGetLibVersion, readVoid, readUhyperRet, s);
  }

  capabilities(s?: S): Promise<string> {
    return this.client.call(Proc.ConnectGetCapabilities, readVoid, readStringRet, s);
  }

  nodeInfo(s?: S): Promise<NodeInfo> {
    return this.client.call(Proc.NodeGetInfo, readVoid, readNodeInfo, s);
  }

  freeMemory(s?: S): Promise<number> {
    return this.client.call(Proc.NodeGetFreeMemory, readVoid, readUhyperRet, s);
  }

  /**
   * virNodeGetCPUStats (remote_node_get_cpu_stats_args: int cpuNum, int nparams, unsigned int
   * flags): the host's CPU time counters in nanoseconds (Linux: user, kernel, idle, iowait).
   * cpuNum -1 (VIR_NODE_CPU_STATS_ALL_CPUS) sums every CPU. nparams 0 asks only for the count.
   */
  nodeCpuStats(cpuNum: number, nparams: number, s?: S): Promise<NodeStatsRet> {
    return this.client.call(
      Proc.NodeGetCPUStats,
      (w) => w.int(cpuNum).int(nparams).uint(0),
      readNodeCpuStats,
      s,
    );
  }

  /**
   * virNodeGetMemoryStats (remote_node_get_memory_stats_args: int nparams, int cellNum, unsigned
   * int flags; note the order differs from the CPU call): total, free, buffers, cached in KiB.
   * cellNum -1 (VIR_NODE_MEMORY_STATS_ALL_CELLS) is the whole host. nparams 0 asks for the count.
   */
  nodeMemoryStats(cellNum: number, nparams: number, s?: S): Promise<NodeStatsRet> {
    return this.client.call(
      Proc.NodeGetMemoryStats,
      (w) => w.int(nparams).int(cellNum).uint(0),
      readNodeMemoryStats,
      s,
    );
  }

  listAllDomains(flags = 0, s?: S): Promise<DomainRef[]> {
    return this.client.call(Proc.ConnectListAllDomains, (w) => w.int(1).uint(flags), readDomainList, s);
  }

  lookupByName(name: string, s?: S): Promise<DomainRef> {
    return this.client.call(Proc.DomainLookupByName, (w) => w.string(name), readDomain, s);
  }

  lookupByUUID(uuid: Buffer, s?: S): Promise<DomainRef> {
    return this.client.call(Proc.DomainLookupByUUID, (w) => w.fixedOpaque(uuid, 16), readDomain, s);
  }

  defineXML(xml: string, flags = 0, s?: S): Promise<DomainRef> {
    return this.client.call(Proc.DomainDefineXMLFlags, (w) => w.string(xml).uint(flags), readDomain, s);
  }

  create(dom: DomainRef, flags = 0, s?: S): Promise<DomainRef> {
    return this.client.call(
      Proc.DomainCreateWithFlags,
      (w) => writeDomain(w, dom).uint(flags),
      readDomain,
      s,
    );
  }

  private domCall(proc: number, dom: DomainRef, s?: S): Promise<void> {
    return this.client.call(proc, (w) => writeDomain(w, dom), readVoid, s);
  }

  shutdown(dom: DomainRef, s?: S): Promise<void> {
    return this.domCall(Proc.DomainShutdown, dom, s);
  }

  destroy(dom: DomainRef, s?: S): Promise<void> {
    return this.domCall(Proc.DomainDestroy, dom, s);
  }

  suspend(dom: DomainRef, s?: S): Promise<void> {
    return this.domCall(Proc.DomainSuspend, dom, s);
  }

  resume(dom: DomainRef, s?: S): Promise<void> {
    return this.domCall(Proc.DomainResume, dom, s);
  }

  abortJob(dom: DomainRef, s?: S): Promise<void> {
    return this.domCall(Proc.DomainAbortJob, dom, s);
  }

  undefine(dom: DomainRef, flags = 0, s?: S): Promise<void> {
    return this.client.call(Proc.DomainUndefineFlags, (w) => writeDomain(w, dom).uint(flags), readVoid, s);
  }

  /** virDomainUpdateDeviceFlags: change a device in place (flags: 1 live, 2 config). */
  updateDevice(dom: DomainRef, xml: string, flags: number, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainUpdateDeviceFlags,
      (w) => writeDomain(w, dom).string(xml).uint(flags),
      readVoid,
      s,
    );
  }

  /**
   * virDomainSetMemoryFlags (remote_domain_set_memory_flags_args: domain, unsigned hyper memory
   * in KiB, unsigned int flags; 1 live, 2 config, 4 maximum).
   */
  setMemoryFlags(dom: DomainRef, kib: number, flags: number, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainSetMemoryFlags,
      (w) => writeDomain(w, dom).uhyper(kib).uint(flags),
      readVoid,
      s,
    );
  }

  /**
   * virDomainSetVcpusFlags (remote_domain_set_vcpus_flags_args: domain, unsigned int nvcpus,
   * unsigned int flags; 1 live, 2 config, 4 maximum, 8 guest).
   */
  setVcpusFlags(dom: DomainRef, nvcpus: number, flags: number, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainSetVcpusFlags,
      (w) => writeDomain(w, dom).uint(nvcpus).uint(flags),
      readVoid,
      s,
    );
  }

  /**
   * virDomainAttachDeviceFlags / virDomainDetachDeviceFlags (remote_domain_attach_device_flags_args
   * and ..._detach_...: domain, remote_nonnull_string xml, unsigned int flags; 1 live, 2 config).
   */
  attachDevice(dom: DomainRef, xml: string, flags: number, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainAttachDeviceFlags,
      (w) => writeDomain(w, dom).string(xml).uint(flags),
      readVoid,
      s,
    );
  }

  detachDevice(dom: DomainRef, xml: string, flags: number, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainDetachDeviceFlags,
      (w) => writeDomain(w, dom).string(xml).uint(flags),
      readVoid,
      s,
    );
  }

  xmlDesc(dom: DomainRef, flags = 0, s?: S): Promise<string> {
    return this.client.call(Proc.DomainGetXMLDesc, (w) => writeDomain(w, dom).uint(flags), readStringRet, s);
  }

  state(dom: DomainRef, s?: S): Promise<{ state: number; reason: number }> {
    return this.client.call(Proc.DomainGetState, (w) => writeDomain(w, dom).uint(0), readDomainState, s);
  }

  info(dom: DomainRef, s?: S): Promise<DomainInfoRet> {
    return this.client.call(Proc.DomainGetInfo, (w) => writeDomain(w, dom), readDomainInfo, s);
  }

  isPersistent(dom: DomainRef, s?: S): Promise<boolean> {
    return this.client.call(Proc.DomainIsPersistent, (w) => writeDomain(w, dom), readIsRet, s);
  }

  // --- snapshots, checkpoints, migration -----------------------------------------------------

  snapshotCreate(dom: DomainRef, xml: string, flags = 0, s?: S): Promise<SnapshotRef> {
    return this.client.call(
      Proc.DomainSnapshotCreateXML,
      (w) => writeDomain(w, dom).string(xml).uint(flags),
      readSnapshot,
      s,
    );
  }

  listSnapshots(dom: DomainRef, flags = 0, s?: S): Promise<SnapshotRef[]> {
    return this.client.call(
      Proc.DomainListAllSnapshots,
      (w) => writeDomain(w, dom).int(1).uint(flags),
      readSnapshotList,
      s,
    );
  }

  snapshotCurrent(dom: DomainRef, s?: S): Promise<SnapshotRef> {
    return this.client.call(Proc.DomainSnapshotCurrent, (w) => writeDomain(w, dom).uint(0), readSnapshot, s);
  }

  snapshotLookup(dom: DomainRef, name: string, s?: S): Promise<SnapshotRef> {
    return this.client.call(
      Proc.DomainSnapshotLookupByName,
      (w) => writeDomain(w, dom).string(name).uint(0),
      readSnapshot,
      s,
    );
  }

  snapshotXML(snap: SnapshotRef, s?: S): Promise<string> {
    return this.client.call(
      Proc.DomainSnapshotGetXMLDesc,
      (w) => writeSnapshot(w, snap).uint(0),
      readStringRet,
      s,
    );
  }

  revertToSnapshot(snap: SnapshotRef, flags = 0, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainRevertToSnapshot,
      (w) => writeSnapshot(w, snap).uint(flags),
      readVoid,
      s,
    );
  }

  snapshotDelete(snap: SnapshotRef, flags = 0, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainSnapshotDelete,
      (w) => writeSnapshot(w, snap).uint(flags),
      readVoid,
      s,
    );
  }

  /** Save to the host's managed save file; the next start resumes from it. */
  managedSave(dom: DomainRef, flags = 0, s?: S): Promise<void> {
    return this.client.call(Proc.DomainManagedSave, (w) => writeDomain(w, dom).uint(flags), readVoid, s);
  }

  hasManagedSaveImage(dom: DomainRef, s?: S): Promise<boolean> {
    return this.client.call(
      Proc.DomainHasManagedSaveImage,
      (w) => writeDomain(w, dom).uint(0),
      readNonZeroRet,
      s,
    );
  }

  managedSaveRemove(dom: DomainRef, s?: S): Promise<void> {
    return this.client.call(Proc.DomainManagedSaveRemove, (w) => writeDomain(w, dom).uint(0), readVoid, s);
  }

  /**
   * virConnectGetAllDomainStats for every domain (`stats`: a DomainStatsTypes mask; `flags`:
   * e.g. active only): one record of typed parameters per domain.
   */
  allDomainStats(stats: number, flags = 0, s?: S): Promise<DomainStatsRecord[]> {
    return this.client.call(
      Proc.ConnectGetAllDomainStats,
      (w) => w.uint(0).uint(stats).uint(flags),
      readAllDomainStats,
      s,
    );
  }

  save(dom: DomainRef, to: string, flags = 0, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainSaveFlags,
      (w) => writeDomain(w, dom).string(to).optString(undefined).uint(flags),
      readVoid,
      s,
    );
  }

  restore(from: string, flags = 0, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainRestoreFlags,
      (w) => w.string(from).optString(undefined).uint(flags),
      readVoid,
      s,
    );
  }

  migratePerform3Params(
    dom: DomainRef,
    destUri: string,
    params: TypedParam[],
    flags: number,
    s?: S,
  ): Promise<void> {
    return this.client.call(
      Proc.DomainMigratePerform3Params,
      (w) => {
        if (params.length > Limits.migrateParams)
          throw new XdrError(`migration: ${params.length} parameters exceed ${Limits.migrateParams}`);
        writeDomain(w, dom)
          .optString(destUri)
          .array(params, writeTypedParam)
          .opaque(Buffer.alloc(0))
          .uint(flags);
      },
      readMigratePerform3Ret,
      s,
    );
  }

  jobInfo(dom: DomainRef, s?: S): Promise<JobInfoRet> {
    return this.client.call(Proc.DomainGetJobInfo, (w) => writeDomain(w, dom), readJobInfo, s);
  }

  // --- events ---------------------------------------------------------------------------------

  /** Register for an event type on all domains; returns the callback id. */
  registerEvent(eventId: number = EventId.Lifecycle, s?: S): Promise<number> {
    return this.client.call(
      Proc.ConnectDomainEventCallbackRegisterAny,
      (w) => w.int(eventId).int(0),
      readIntRet,
      s,
    );
  }

  /** Register for network lifecycle events (VIR_NETWORK_EVENT_ID_LIFECYCLE) on all networks. */
  registerNetworkEvents(s?: S): Promise<number> {
    return this.client.call(Proc.ConnectNetworkEventRegisterAny, (w) => w.int(0).int(0), readIntRet, s);
  }

  deregisterEvent(callbackId: number, s?: S): Promise<void> {
    return this.client.call(
      Proc.ConnectDomainEventCallbackDeregisterAny,
      (w) => w.int(callbackId),
      readVoid,
      s,
    );
  }
}
