/**
 * Typed libvirt calls over a LibvirtClient: one method per remote procedure virtwarden uses,
 * arguments and results as in remote_protocol.x.
 */
import type { LibvirtClient } from "./client.js";
import {
  type DomainRef,
  EventId,
  Limits,
  type NetworkRef,
  type PoolRef,
  Proc,
  readDomain,
  readNetwork,
  readPool,
  readSnapshot,
  readVol,
  type SnapshotRef,
  type TypedParam,
  type VolRef,
  writeDomain,
  writeNetwork,
  writePool,
  writeSnapshot,
  writeTypedParam,
  writeVol,
} from "./protocol.js";
import {
  type DhcpLease,
  type DomainInfoRet,
  type DomainStatsRecord,
  type JobInfoRet,
  type NodeInfo,
  readAllDomainStats,
  readDhcpLeases,
  readDomainInfo,
  readDomainList,
  readDomainState,
  readIntRet,
  readIsRet,
  readJobInfo,
  readMigratePerform3Ret,
  readNetworkList,
  readNodeInfo,
  readNonZeroRet,
  readPoolInfo,
  readPoolList,
  readSnapshotList,
  readStringRet,
  readUhyperRet,
  readVoid,
  readVolInfo,
  readVolList,
} from "./replies.js";
import { XdrError } from "./xdr.js";

export type { DhcpLease, JobInfoRet, LifecycleMessage, NodeInfo } from "./replies.js";
export { readLifecycle, readNetworkLifecycle } from "./replies.js";

type S = AbortSignal | undefined;

export const ListAllDomains = { Active: 1, Inactive: 2, Persistent: 4 } as const;
export const UndefineFlags = {
  ManagedSave: 1,
  SnapshotsMetadata: 2,
  Nvram: 4,
  CheckpointsMetadata: 16,
} as const;
/** virNetworkUpdateCommand, virNetworkUpdateSection (subset), virNetworkUpdateFlags. */
export const NetworkUpdate = {
  Modify: 1,
  Delete: 2,
  AddLast: 3,
  SectionDhcpHost: 4,
  AffectLive: 1,
  AffectConfig: 2,
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

export class LibvirtApi {
  constructor(readonly client: LibvirtClient) {}

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

  // --- networks -------------------------------------------------------------------------------

  listAllNetworks(s?: S): Promise<NetworkRef[]> {
    return this.client.call(Proc.ConnectListAllNetworks, (w) => w.int(1).uint(0), readNetworkList, s);
  }

  networkLookup(name: string, s?: S): Promise<NetworkRef> {
    return this.client.call(Proc.NetworkLookupByName, (w) => w.string(name), readNetwork, s);
  }

  /** A transient network: gone once destroyed. */
  networkCreateTransient(xml: string, s?: S): Promise<NetworkRef> {
    return this.client.call(Proc.NetworkCreateXML, (w) => w.string(xml), readNetwork, s);
  }

  networkDefine(xml: string, s?: S): Promise<NetworkRef> {
    return this.client.call(Proc.NetworkDefineXML, (w) => w.string(xml), readNetwork, s);
  }

  private netCall(proc: number, net: NetworkRef, s?: S): Promise<void> {
    return this.client.call(proc, (w) => writeNetwork(w, net), readVoid, s);
  }

  networkCreate(net: NetworkRef, s?: S): Promise<void> {
    return this.netCall(Proc.NetworkCreate, net, s);
  }

  networkDestroy(net: NetworkRef, s?: S): Promise<void> {
    return this.netCall(Proc.NetworkDestroy, net, s);
  }

  networkUndefine(net: NetworkRef, s?: S): Promise<void> {
    return this.netCall(Proc.NetworkUndefine, net, s);
  }

  networkXML(net: NetworkRef, s?: S): Promise<string> {
    return this.client.call(Proc.NetworkGetXMLDesc, (w) => writeNetwork(w, net).uint(0), readStringRet, s);
  }

  networkIsActive(net: NetworkRef, s?: S): Promise<boolean> {
    return this.client.call(Proc.NetworkIsActive, (w) => writeNetwork(w, net), readIsRet, s);
  }

  networkAutostart(net: NetworkRef, s?: S): Promise<boolean> {
    return this.client.call(Proc.NetworkGetAutostart, (w) => writeNetwork(w, net), readIsRet, s);
  }

  /** virNetworkUpdate: change one section of a network, live and/or in its configuration. */
  networkUpdate(
    net: NetworkRef,
    command: number,
    section: number,
    xml: string,
    flags: number,
    s?: S,
  ): Promise<void> {
    return this.client.call(
      Proc.NetworkUpdate,
      (w) => writeNetwork(w, net).uint(command).uint(section).int(-1).string(xml).uint(flags),
      readVoid,
      s,
    );
  }

  /** virNetworkGetDHCPLeases: what the network's DHCP server handed out (all MACs). */
  networkDhcpLeases(net: NetworkRef, s?: S): Promise<DhcpLease[]> {
    return this.client.call(
      Proc.NetworkGetDhcpLeases,
      (w) => writeNetwork(w, net).optString(undefined).int(1).uint(0),
      readDhcpLeases,
      s,
    );
  }

  networkSetAutostart(net: NetworkRef, on: boolean, s?: S): Promise<void> {
    return this.client.call(
      Proc.NetworkSetAutostart,
      (w) => writeNetwork(w, net).int(on ? 1 : 0),
      readVoid,
      s,
    );
  }

  // --- storage --------------------------------------------------------------------------------

  listAllPools(s?: S): Promise<PoolRef[]> {
    return this.client.call(Proc.ConnectListAllStoragePools, (w) => w.int(1).uint(0), readPoolList, s);
  }

  poolLookup(name: string, s?: S): Promise<PoolRef> {
    return this.client.call(Proc.StoragePoolLookupByName, (w) => w.string(name), readPool, s);
  }

  poolInfo(
    pool: PoolRef,
    s?: S,
  ): Promise<{ state: number; capacity: number; allocation: number; available: number }> {
    return this.client.call(Proc.StoragePoolGetInfo, (w) => writePool(w, pool), readPoolInfo, s);
  }

  poolXML(pool: PoolRef, s?: S): Promise<string> {
    return this.client.call(Proc.StoragePoolGetXMLDesc, (w) => writePool(w, pool).uint(0), readStringRet, s);
  }

  poolRefresh(pool: PoolRef, s?: S): Promise<void> {
    return this.client.call(Proc.StoragePoolRefresh, (w) => writePool(w, pool).uint(0), readVoid, s);
  }

  listVolumes(pool: PoolRef, s?: S): Promise<VolRef[]> {
    return this.client.call(
      Proc.StoragePoolListAllVolumes,
      (w) => writePool(w, pool).int(1).uint(0),
      readVolList,
      s,
    );
  }

  volLookup(pool: PoolRef, name: string, s?: S): Promise<VolRef> {
    return this.client.call(Proc.StorageVolLookupByName, (w) => writePool(w, pool).string(name), readVol, s);
  }

  volCreate(pool: PoolRef, xml: string, flags = 0, s?: S): Promise<VolRef> {
    return this.client.call(
      Proc.StorageVolCreateXML,
      (w) => writePool(w, pool).string(xml).uint(flags),
      readVol,
      s,
    );
  }

  volCreateFrom(pool: PoolRef, xml: string, from: VolRef, flags = 0, s?: S): Promise<VolRef> {
    return this.client.call(
      Proc.StorageVolCreateXMLFrom,
      (w) => writeVol(writePool(w, pool).string(xml), from).uint(flags),
      readVol,
      s,
    );
  }

  volDelete(vol: VolRef, s?: S): Promise<void> {
    return this.client.call(Proc.StorageVolDelete, (w) => writeVol(w, vol).uint(0), readVoid, s);
  }

  volInfo(vol: VolRef, s?: S): Promise<{ type: number; capacity: number; allocation: number }> {
    return this.client.call(Proc.StorageVolGetInfo, (w) => writeVol(w, vol), readVolInfo, s);
  }

  volPath(vol: VolRef, s?: S): Promise<string> {
    return this.client.call(Proc.StorageVolGetPath, (w) => writeVol(w, vol), readStringRet, s);
  }

  volXML(vol: VolRef, s?: S): Promise<string> {
    return this.client.call(Proc.StorageVolGetXMLDesc, (w) => writeVol(w, vol).uint(0), readStringRet, s);
  }
}
