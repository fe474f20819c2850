/**
 * Typed libvirt calls over a LibvirtClient: one method per remote procedure virtwarden uses,
 * arguments and results as in remote_protocol.x.
 */
import type { LibvirtClient } from "./client.js";
import {
  type DomainRef,
  EventId,
  type NetworkRef,
  type PoolRef,
  Proc,
  readDomain,
  readNetwork,
  readPool,
  readSnapshot,
  readTypedParam,
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
import type { XdrReader } from "./xdr.js";

type S = AbortSignal | undefined;

export interface NodeInfo {
  model: string;
  memoryKiB: number;
  cpus: number;
  mhz: number;
  nodes: number;
  sockets: number;
  cores: number;
  threads: number;
}

export interface JobInfoRet {
  type: number;
  timeElapsed: number;
  timeRemaining: number;
  dataTotal: number;
  dataProcessed: number;
  dataRemaining: number;
}

/** Domain lifecycle event as delivered (virDomainEventType / detail numbers). */
export interface LifecycleMessage {
  callbackId: number;
  dom: DomainRef;
  event: number;
  detail: number;
}

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
    return this.client.call(
      Proc.ConnectGetHostname,
      () => undefined,
      (r) => r.string(),
      s,
    );
  }

  version(s?: S): Promise<number> {
    return this.client.call(
      Proc.ConnectGetVersion,
      () => undefined,
      (r) => r.uhyper(),
      s,
    );
  }

  libVersion(s?: S): Promise<number> {
    return this.client.call(
      Proc.ConnectGetLibVersion,
      () => undefined,
      (r) => r.uhyper(),
      s,
    );
  }

  capabilities(s?: S): Promise<string> {
    return this.client.call(
      Proc.ConnectGetCapabilities,
      () => undefined,
      (r) => r.string(),
      s,
    );
  }

  nodeInfo(s?: S): Promise<NodeInfo> {
    return this.client.call(
      Proc.NodeGetInfo,
      () => undefined,
      (r) => {
        let model = "";
        for (let i = 0; i < 32; i++) {
          const c = r.int();
          if (c > 0) model += String.fromCharCode(c);
        }
        return {
          model,
          memoryKiB: r.uhyper(),
          cpus: r.int(),
          mhz: r.int(),
          nodes: r.int(),
          sockets: r.int(),
          cores: r.int(),
          threads: r.int(),
        };
      },
      s,
    );
  }

  freeMemory(s?: S): Promise<number> {
    return this.client.call(
      Proc.NodeGetFreeMemory,
      () => undefined,
      (r) => r.uhyper(),
      s,
    );
  }

  listAllDomains(flags = 0, s?: S): Promise<DomainRef[]> {
    return this.client.call(
      Proc.ConnectListAllDomains,
      (w) => w.int(1).uint(flags),
      (r) => {
        const doms = r.array(readDomain);
        r.uint();
        return doms;
      },
      s,
    );
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
    return this.client.call(
      proc,
      (w) => writeDomain(w, dom),
      () => undefined,
      s,
    );
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
    return this.client.call(
      Proc.DomainUndefineFlags,
      (w) => writeDomain(w, dom).uint(flags),
      () => undefined,
      s,
    );
  }

  /** virDomainUpdateDeviceFlags: change a device in place (flags: 1 live, 2 config). */
  updateDevice(dom: DomainRef, xml: string, flags: number, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainUpdateDeviceFlags,
      (w) => writeDomain(w, dom).string(xml).uint(flags),
      () => undefined,
      s,
    );
  }

  xmlDesc(dom: DomainRef, flags = 0, s?: S): Promise<string> {
    return this.client.call(
      Proc.DomainGetXMLDesc,
      (w) => writeDomain(w, dom).uint(flags),
      (r) => r.string(),
      s,
    );
  }

  state(dom: DomainRef, s?: S): Promise<{ state: number; reason: number }> {
    return this.client.call(
      Proc.DomainGetState,
      (w) => writeDomain(w, dom).uint(0),
      (r) => ({ state: r.int(), reason: r.int() }),
      s,
    );
  }

  info(
    dom: DomainRef,
    s?: S,
  ): Promise<{ state: number; maxMemKiB: number; memoryKiB: number; vcpus: number; cpuTimeNs: number }> {
    return this.client.call(
      Proc.DomainGetInfo,
      (w) => writeDomain(w, dom),
      (r) => ({
        state: r.uint(),
        maxMemKiB: r.uhyper(),
        memoryKiB: r.uhyper(),
        vcpus: r.uint(),
        cpuTimeNs: r.uhyper(),
      }),
      s,
    );
  }

  isPersistent(dom: DomainRef, s?: S): Promise<boolean> {
    return this.client.call(
      Proc.DomainIsPersistent,
      (w) => writeDomain(w, dom),
      (r) => r.int() === 1,
      s,
    );
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
      (r) => {
        const snaps = r.array(readSnapshot);
        r.int();
        return snaps;
      },
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
      (r) => r.string(),
      s,
    );
  }

  revertToSnapshot(snap: SnapshotRef, flags = 0, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainRevertToSnapshot,
      (w) => writeSnapshot(w, snap).uint(flags),
      () => undefined,
      s,
    );
  }

  snapshotDelete(snap: SnapshotRef, flags = 0, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainSnapshotDelete,
      (w) => writeSnapshot(w, snap).uint(flags),
      () => undefined,
      s,
    );
  }

  /** Save to the host's managed save file; the next start resumes from it. */
  managedSave(dom: DomainRef, flags = 0, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainManagedSave,
      (w) => writeDomain(w, dom).uint(flags),
      () => undefined,
      s,
    );
  }

  hasManagedSaveImage(dom: DomainRef, s?: S): Promise<boolean> {
    return this.client.call(
      Proc.DomainHasManagedSaveImage,
      (w) => writeDomain(w, dom).uint(0),
      (r) => r.int() !== 0,
      s,
    );
  }

  managedSaveRemove(dom: DomainRef, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainManagedSaveRemove,
      (w) => writeDomain(w, dom).uint(0),
      () => undefined,
      s,
    );
  }

  /**
   * virConnectGetAllDomainStats for every domain (`stats`: a DomainStatsTypes mask; `flags`:
   * e.g. active only): one record of typed parameters per domain.
   */
  allDomainStats(stats: number, flags = 0, s?: S): Promise<{ dom: DomainRef; params: TypedParam[] }[]> {
    return this.client.call(
      Proc.ConnectGetAllDomainStats,
      (w) => w.uint(0).uint(stats).uint(flags),
      (r) => r.array((rr) => ({ dom: readDomain(rr), params: rr.array(readTypedParam) })),
      s,
    );
  }

  save(dom: DomainRef, to: string, flags = 0, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainSaveFlags,
      (w) => writeDomain(w, dom).string(to).optString(undefined).uint(flags),
      () => undefined,
      s,
    );
  }

  restore(from: string, flags = 0, s?: S): Promise<void> {
    return this.client.call(
      Proc.DomainRestoreFlags,
      (w) => w.string(from).optString(undefined).uint(flags),
      () => undefined,
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
        writeDomain(w, dom)
          .optString(destUri)
          .array(params, writeTypedParam)
          .opaque(Buffer.alloc(0))
          .uint(flags);
      },
      (r) => {
        r.opaque();
      },
      s,
    );
  }

  jobInfo(dom: DomainRef, s?: S): Promise<JobInfoRet> {
    return this.client.call(
      Proc.DomainGetJobInfo,
      (w) => writeDomain(w, dom),
      (r) => ({
        type: r.int(),
        timeElapsed: r.uhyper(),
        timeRemaining: r.uhyper(),
        dataTotal: r.uhyper(),
        dataProcessed: r.uhyper(),
        dataRemaining: r.uhyper(),
      }),
      s,
    );
  }

  // --- events ---------------------------------------------------------------------------------

  /** Register for an event type on all domains; returns the callback id. */
  registerEvent(eventId: number = EventId.Lifecycle, s?: S): Promise<number> {
    return this.client.call(
      Proc.ConnectDomainEventCallbackRegisterAny,
      (w) => w.int(eventId).int(0),
      (r) => r.int(),
      s,
    );
  }

  /** Register for network lifecycle events (VIR_NETWORK_EVENT_ID_LIFECYCLE) on all networks. */
  registerNetworkEvents(s?: S): Promise<number> {
    return this.client.call(
      Proc.ConnectNetworkEventRegisterAny,
      (w) => w.int(0).int(0),
      (r) => r.int(),
      s,
    );
  }

  deregisterEvent(callbackId: number, s?: S): Promise<void> {
    return this.client.call(
      Proc.ConnectDomainEventCallbackDeregisterAny,
      (w) => w.int(callbackId),
      () => undefined,
      s,
    );
  }

  // --- networks -------------------------------------------------------------------------------

  listAllNetworks(s?: S): Promise<NetworkRef[]> {
    return this.client.call(
      Proc.ConnectListAllNetworks,
      (w) => w.int(1).uint(0),
      (r) => {
        const nets = r.array(readNetwork);
        r.uint();
        return nets;
      },
      s,
    );
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
    return this.client.call(
      proc,
      (w) => writeNetwork(w, net),
      () => undefined,
      s,
    );
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
    return this.client.call(
      Proc.NetworkGetXMLDesc,
      (w) => writeNetwork(w, net).uint(0),
      (r) => r.string(),
      s,
    );
  }

  networkIsActive(net: NetworkRef, s?: S): Promise<boolean> {
    return this.client.call(
      Proc.NetworkIsActive,
      (w) => writeNetwork(w, net),
      (r) => r.int() === 1,
      s,
    );
  }

  networkAutostart(net: NetworkRef, s?: S): Promise<boolean> {
    return this.client.call(
      Proc.NetworkGetAutostart,
      (w) => writeNetwork(w, net),
      (r) => r.int() === 1,
      s,
    );
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
      () => undefined,
      s,
    );
  }

  /** virNetworkGetDHCPLeases: what the network's DHCP server handed out (all MACs). */
  networkDhcpLeases(net: NetworkRef, s?: S): Promise<DhcpLease[]> {
    return this.client.call(
      Proc.NetworkGetDhcpLeases,
      (w) => writeNetwork(w, net).optString(undefined).int(1).uint(0),
      (r) => {
        const leases = r.array((x) => ({
          iface: x.string(),
          expiryTime: x.hyper(),
          type: x.int(),
          mac: x.optString(),
          iaid: x.optString(),
          ipaddr: x.string(),
          prefix: x.uint(),
          hostname: x.optString(),
          clientid: x.optString(),
        }));
        r.uint();
        return leases;
      },
      s,
    );
  }

  networkSetAutostart(net: NetworkRef, on: boolean, s?: S): Promise<void> {
    return this.client.call(
      Proc.NetworkSetAutostart,
      (w) => writeNetwork(w, net).int(on ? 1 : 0),
      () => undefined,
      s,
    );
  }

  // --- storage --------------------------------------------------------------------------------

  listAllPools(s?: S): Promise<PoolRef[]> {
    return this.client.call(
      Proc.ConnectListAllStoragePools,
      (w) => w.int(1).uint(0),
      (r) => {
        const pools = r.array(readPool);
        r.uint();
        return pools;
      },
      s,
    );
  }

  poolLookup(name: string, s?: S): Promise<PoolRef> {
    return this.client.call(Proc.StoragePoolLookupByName, (w) => w.string(name), readPool, s);
  }

  poolInfo(
    pool: PoolRef,
    s?: S,
  ): Promise<{ state: number; capacity: number; allocation: number; available: number }> {
    return this.client.call(
      Proc.StoragePoolGetInfo,
      (w) => writePool(w, pool),
      (r) => ({ state: r.uint(), capacity: r.uhyper(), allocation: r.uhyper(), available: r.uhyper() }),
      s,
    );
  }

  poolXML(pool: PoolRef, s?: S): Promise<string> {
    return this.client.call(
      Proc.StoragePoolGetXMLDesc,
      (w) => writePool(w, pool).uint(0),
      (r) => r.string(),
      s,
    );
  }

  poolRefresh(pool: PoolRef, s?: S): Promise<void> {
    return this.client.call(
      Proc.StoragePoolRefresh,
      (w) => writePool(w, pool).uint(0),
      () => undefined,
      s,
    );
  }

  listVolumes(pool: PoolRef, s?: S): Promise<VolRef[]> {
    return this.client.call(
      Proc.StoragePoolListAllVolumes,
      (w) => writePool(w, pool).int(1).uint(0),
      (r) => {
        const vols = r.array(readVol);
        r.uint();
        return vols;
      },
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
    return this.client.call(
      Proc.StorageVolDelete,
      (w) => writeVol(w, vol).uint(0),
      () => undefined,
      s,
    );
  }

  volInfo(vol: VolRef, s?: S): Promise<{ type: number; capacity: number; allocation: number }> {
    return this.client.call(
      Proc.StorageVolGetInfo,
      (w) => writeVol(w, vol),
      (r) => ({ type: r.int(), capacity: r.uhyper(), allocation: r.uhyper() }),
      s,
    );
  }

  volPath(vol: VolRef, s?: S): Promise<string> {
    return this.client.call(
      Proc.StorageVolGetPath,
      (w) => writeVol(w, vol),
      (r) => r.string(),
      s,
    );
  }

  volXML(vol: VolRef, s?: S): Promise<string> {
    return this.client.call(
      Proc.StorageVolGetXMLDesc,
      (w) => writeVol(w, vol).uint(0),
      (r) => r.string(),
      s,
    );
  }
}

/** Decode a lifecycle event message body (procedure DomainEventCallbackLifecycle). */
export function readLifecycle(r: XdrReader): LifecycleMessage {
  return { callbackId: r.int(), dom: readDomain(r), event: r.int(), detail: r.int() };
}

/** remote_network_dhcp_lease. `type` 0 = IPv4, 1 = IPv6; expiryTime in seconds since the epoch. */
export interface DhcpLease {
  iface: string;
  expiryTime: number;
  type: number;
  mac: string | undefined;
  iaid: string | undefined;
  ipaddr: string;
  prefix: number;
  hostname: string | undefined;
  clientid: string | undefined;
}

/** remote_network_event_lifecycle_msg: event 0 defined, 1 undefined, 2 started, 3 stopped. */
export function readNetworkLifecycle(r: XdrReader): { network: string; event: number; detail: number } {
  r.int(); // callbackID
  const net = readNetwork(r);
  return { network: net.name, event: r.int(), detail: r.int() };
}
