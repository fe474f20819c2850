/**
 * Decoders for the reply and event bodies virtwarden reads (the `*_ret` and `*_msg` structs of
 * remote_protocol.x), one function each, every variable array bounded by its REMOTE_*_MAX.
 *
 * Contract: for any bytes, a decoder returns a value or throws XdrError; it never reads past the
 * body, never moves backwards, and allocates no more than the body's own length (plus the fixed
 * overhead of the objects it builds). `REPLY_DECODERS` and `EVENT_DECODERS` list them all so the
 * property tests can feed each one arbitrary bytes.
 */
import {
  type DomainRef,
  Limits,
  type NetworkRef,
  type PoolRef,
  Proc,
  readDomain,
  readNetwork,
  readPool,
  readRemoteError,
  readSnapshot,
  readTypedParam,
  readVol,
  type SnapshotRef,
  type TypedParam,
  type VolRef,
} from "./protocol.js";
import type { XdrReader } from "./xdr.js";

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

export interface DomainInfoRet {
  state: number;
  maxMemKiB: number;
  memoryKiB: number;
  vcpus: number;
  cpuTimeNs: number;
}

export interface DomainStatsRecord {
  dom: DomainRef;
  params: TypedParam[];
}

export const readVoid = (): undefined => undefined;
export const readStringRet = (r: XdrReader): string => r.string();
export const readUhyperRet = (r: XdrReader): number => r.uhyper();
export const readIntRet = (r: XdrReader): number => r.int();
/** The `int` booleans of IsActive / IsPersistent / GetAutostart: 1 is yes. */
export const readIsRet = (r: XdrReader): boolean => r.int() === 1;
export const readNonZeroRet = (r: XdrReader): boolean => r.int() !== 0;

/** remote_node_get_info_ret: `char model[32]` is 32 XDR ints. */
export function readNodeInfo(r: XdrReader): NodeInfo {
  let model = "";
  for (let i = 0; i < 32; i++) {
    const c = r.int();
    if (c > 0 && c < 128) model += String.fromCharCode(c);
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
}

export function readDomainList(r: XdrReader): DomainRef[] {
  const doms = r.array(readDomain, Limits.domainList);
  r.uint();
  return doms;
}

export function readDomainState(r: XdrReader): { state: number; reason: number } {
  return { state: r.int(), reason: r.int() };
}

export function readDomainInfo(r: XdrReader): DomainInfoRet {
  return {
    state: r.uint(),
    maxMemKiB: r.uhyper(),
    memoryKiB: r.uhyper(),
    vcpus: r.uint(),
    cpuTimeNs: r.uhyper(),
  };
}

export function readSnapshotList(r: XdrReader): SnapshotRef[] {
  const snaps = r.array(readSnapshot, Limits.snapshotList);
  r.int();
  return snaps;
}

export function readAllDomainStats(r: XdrReader): DomainStatsRecord[] {
  return r.array(
    (rr) => ({ dom: readDomain(rr), params: rr.array(readTypedParam, Limits.domainStatsParams) }),
    Limits.domainList,
  );
}

/**
 * remote_node_get_cpu_stats_ret / remote_node_get_memory_stats_ret: an array of
 * { remote_nonnull_string field; unsigned hyper value } (at most REMOTE_NODE_*_STATS_MAX), then
 * int nparams. Asked with nparams 0, the array is empty and nparams says how many fields the host
 * has; asked with that count, the array holds them (libvirt leaves nparams 0 then, and pads the
 * array to the count asked with empty fields when the host has fewer).
 */
export interface NodeStatsRet {
  params: { field: string; value: number }[];
  nparams: number;
}

function nodeStatsReader(max: number): (r: XdrReader) => NodeStatsRet {
  return (r) => ({
    params: r.array((rr) => ({ field: rr.string(), value: rr.uhyper() }), max),
    nparams: r.int(),
  });
}

export const readNodeCpuStats = nodeStatsReader(Limits.nodeCpuStats);
export const readNodeMemoryStats = nodeStatsReader(Limits.nodeMemoryStats);

/** remote_domain_migrate_perform3_params_ret: the cookie, which we do not use. */
export function readMigratePerform3Ret(r: XdrReader): undefined {
  r.opaque(Limits.migrateCookie);
  return undefined;
}

export function readJobInfo(r: XdrReader): JobInfoRet {
  return {
    type: r.int(),
    timeElapsed: r.uhyper(),
    timeRemaining: r.uhyper(),
    dataTotal: r.uhyper(),
    dataProcessed: r.uhyper(),
    dataRemaining: r.uhyper(),
  };
}

export function readNetworkList(r: XdrReader): NetworkRef[] {
  const nets = r.array(readNetwork, Limits.networkList);
  r.uint();
  return nets;
}

export function readDhcpLeases(r: XdrReader): DhcpLease[] {
  const leases = r.array(
    (x) => ({
      iface: x.string(),
      expiryTime: x.hyper(),
      type: x.int(),
      mac: x.optString(),
      iaid: x.optString(),
      ipaddr: x.string(),
      prefix: x.uint(),
      hostname: x.optString(),
      clientid: x.optString(),
    }),
    Limits.dhcpLeases,
  );
  r.uint();
  return leases;
}

export function readPoolList(r: XdrReader): PoolRef[] {
  const pools = r.array(readPool, Limits.poolList);
  r.uint();
  return pools;
}

export function readPoolInfo(r: XdrReader): {
  state: number;
  capacity: number;
  allocation: number;
  available: number;
} {
  return { state: r.uint(), capacity: r.uhyper(), allocation: r.uhyper(), available: r.uhyper() };
}

export function readVolList(r: XdrReader): VolRef[] {
  const vols = r.array(readVol, Limits.volList);
  r.uint();
  return vols;
}

export function readVolInfo(r: XdrReader): { type: number; capacity: number; allocation: number } {
  return { type: r.int(), capacity: r.uhyper(), allocation: r.uhyper() };
}

/** Decode a lifecycle event message body (procedure DomainEventCallbackLifecycle). */
export function readLifecycle(r: XdrReader): LifecycleMessage {
  return { callbackId: r.int(), dom: readDomain(r), event: r.int(), detail: r.int() };
}

/** remote_network_event_lifecycle_msg: event 0 defined, 1 undefined, 2 started, 3 stopped. */
export function readNetworkLifecycle(r: XdrReader): { network: string; event: number; detail: number } {
  r.int(); // callbackID
  const net = readNetwork(r);
  return { network: net.name, event: r.int(), detail: r.int() };
}

/** remote_domain_event_callback_{reboot,watchdog,io_error}_msg. */
export function readRebootEvent(r: XdrReader): { callbackId: number; dom: DomainRef } {
  return { callbackId: r.int(), dom: readDomain(r) };
}

export function readWatchdogEvent(r: XdrReader): { callbackId: number; dom: DomainRef; action: number } {
  return { callbackId: r.int(), dom: readDomain(r), action: r.int() };
}

export function readIOErrorEvent(r: XdrReader): {
  callbackId: number;
  dom: DomainRef;
  srcPath: string;
  devAlias: string;
  action: number;
} {
  return {
    callbackId: r.int(),
    dom: readDomain(r),
    srcPath: r.string(),
    devAlias: r.string(),
    action: r.int(),
  };
}

type Decoder = (r: XdrReader) => unknown;

/** Every reply body we decode, by procedure: what the property tests feed arbitrary bytes. */
export const REPLY_DECODERS: ReadonlyMap<number, Decoder> = new Map<number, Decoder>([
  [Proc.ConnectOpen, readVoid],
  [Proc.ConnectSupportsFeature, readIntRet],
  [Proc.ConnectGetHostname, readStringRet],
  [Proc.ConnectGetVersion, readUhyperRet],
  [Proc.ConnectGetLibVersion, readUhyperRet],
  [Proc.ConnectGetCapabilities, readStringRet],
  [Proc.NodeGetInfo, readNodeInfo],
  [Proc.NodeGetFreeMemory, readUhyperRet],
  [Proc.NodeGetCPUStats, readNodeCpuStats],
  [Proc.NodeGetMemoryStats, readNodeMemoryStats],
  [Proc.ConnectListAllDomains, readDomainList],
  [Proc.DomainLookupByName, readDomain],
  [Proc.DomainLookupByUUID, readDomain],
  [Proc.DomainDefineXMLFlags, readDomain],
  [Proc.DomainCreateWithFlags, readDomain],
  [Proc.DomainGetXMLDesc, readStringRet],
  [Proc.DomainGetState, readDomainState],
  [Proc.DomainGetInfo, readDomainInfo],
  [Proc.DomainIsPersistent, readIsRet],
  [Proc.DomainSnapshotCreateXML, readSnapshot],
  [Proc.DomainListAllSnapshots, readSnapshotList],
  [Proc.DomainSnapshotCurrent, readSnapshot],
  [Proc.DomainSnapshotLookupByName, readSnapshot],
  [Proc.DomainSnapshotGetXMLDesc, readStringRet],
  [Proc.DomainHasManagedSaveImage, readNonZeroRet],
  [Proc.ConnectGetAllDomainStats, readAllDomainStats],
  [Proc.DomainMigratePerform3Params, readMigratePerform3Ret],
  [Proc.DomainGetJobInfo, readJobInfo],
  [Proc.ConnectDomainEventCallbackRegisterAny, readIntRet],
  [Proc.ConnectNetworkEventRegisterAny, readIntRet],
  [Proc.ConnectListAllNetworks, readNetworkList],
  [Proc.NetworkLookupByName, readNetwork],
  [Proc.NetworkCreateXML, readNetwork],
  [Proc.NetworkDefineXML, readNetwork],
  [Proc.NetworkGetXMLDesc, readStringRet],
  [Proc.NetworkIsActive, readIsRet],
  [Proc.NetworkGetAutostart, readIsRet],
  [Proc.NetworkGetDhcpLeases, readDhcpLeases],
  [Proc.ConnectListAllStoragePools, readPoolList],
  [Proc.StoragePoolLookupByName, readPool],
  [Proc.StoragePoolGetInfo, readPoolInfo],
  [Proc.StoragePoolGetXMLDesc, readStringRet],
  [Proc.StoragePoolListAllVolumes, readVolList],
  [Proc.StorageVolLookupByName, readVol],
  [Proc.StorageVolCreateXML, readVol],
  [Proc.StorageVolCreateXMLFrom, readVol],
  [Proc.StorageVolGetInfo, readVolInfo],
  [Proc.StorageVolGetPath, readStringRet],
  [Proc.StorageVolGetXMLDesc, readStringRet],
]);

/** Every asynchronous message body we decode, by procedure, plus the error reply body (key 0). */
export const EVENT_DECODERS: ReadonlyMap<number, Decoder> = new Map<number, Decoder>([
  [Proc.DomainEventCallbackLifecycle, readLifecycle],
  [Proc.DomainEventCallbackReboot, readRebootEvent],
  [Proc.DomainEventCallbackWatchdog, readWatchdogEvent],
  [Proc.DomainEventCallbackIOError, readIOErrorEvent],
  [Proc.NetworkEventLifecycle, readNetworkLifecycle],
  [0, readRemoteError],
]);
