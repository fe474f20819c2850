/**
 * libvirt remote protocol facts: program numbers, procedure numbers, message header, and the
 * wire structs shared by many procedures (remote_protocol.x). Numbers are the protocol's stable
 * ABI; only the procedures virtwarden calls are listed.
 */
import { XdrError, type XdrReader, XdrWriter } from "./xdr.js";

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROGRAM = 0x6b656570;
export const KEEPALIVE_VERSION = 1;
export const KEEPALIVE_PING = 1;
export const KEEPALIVE_PONG = 2;

/** The serialised header (VIR_NET_MESSAGE_HEADER_MAX) and the length word before it. */
export const HEADER_SIZE = 24;
export const LENGTH_SIZE = 4;
/**
 * The largest frame on the wire, length word included: libvirt's VIR_NET_MESSAGE_MAX (32 MiB,
 * header + payload) plus the 4-byte length word that it does not count. libvirt refuses anything
 * larger, or shorter than a header, as a protocol error; so do we.
 */
export const MESSAGE_MAX = LENGTH_SIZE + 32 * 1024 * 1024;
export const MESSAGE_MIN = LENGTH_SIZE + HEADER_SIZE;

/**
 * The bounds remote_protocol.x declares for the variable arrays and strings we decode
 * (REMOTE_*_MAX). A longer array on the wire is a protocol error, exactly as libvirt's own XDR
 * decoder treats it; they also cap what one reply can make us allocate.
 */
export const Limits = {
  /** REMOTE_STRING_MAX: every remote_nonnull_string / remote_string. */
  string: 4194304,
  /** REMOTE_DOMAIN_LIST_MAX: ListAllDomains, GetAllDomainStats records. */
  domainList: 16384,
  /** REMOTE_NETWORK_LIST_MAX */
  networkList: 16384,
  /** REMOTE_STORAGE_POOL_LIST_MAX */
  poolList: 16384,
  /** REMOTE_STORAGE_VOL_LIST_MAX */
  volList: 16384,
  /** REMOTE_DOMAIN_SNAPSHOT_LIST_MAX */
  snapshotList: 16384,
  /** REMOTE_NETWORK_DHCP_LEASES_MAX */
  dhcpLeases: 65536,
  /** REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX: typed parameters in one domain's stats record. */
  domainStatsParams: 262144,
  /** REMOTE_NODE_CPU_STATS_MAX: fields of one NodeGetCPUStats reply. */
  nodeCpuStats: 16,
  /** REMOTE_NODE_MEMORY_STATS_MAX: fields of one NodeGetMemoryStats reply. */
  nodeMemoryStats: 16,
  /** REMOTE_DOMAIN_MIGRATE_PARAM_LIST_MAX */
  migrateParams: 64,
  /** REMOTE_MIGRATE_COOKIE_MAX */
  migrateCookie: 4194304,
} as const;

export enum MessageType {
  Call = 0,
  Reply = 1,
  Message = 2,
  Stream = 3,
  CallWithFds = 4,
  ReplyWithFds = 5,
}

export enum MessageStatus {
  Ok = 0,
  Error = 1,
  Continue = 2,
}

export const Proc = {
  ConnectOpen: 1,
  ConnectClose: 2,
  ConnectGetVersion: 4,
  NodeGetInfo: 6,
  ConnectGetCapabilities: 7,
  DomainCreate: 9,
  DomainDestroy: 12,
  DomainGetXMLDesc: 14,
  DomainGetInfo: 16,
  DomainLookupByName: 23,
  DomainLookupByUUID: 24,
  DomainResume: 28,
  DomainShutdown: 33,
  DomainSuspend: 34,
  NetworkCreate: 39,
  NetworkCreateXML: 40,
  NetworkDefineXML: 41,
  NetworkDestroy: 42,
  NetworkGetXMLDesc: 43,
  NetworkGetAutostart: 44,
  NetworkLookupByName: 46,
  NetworkSetAutostart: 48,
  NetworkUndefine: 49,
  DomainRestore: 54,
  DomainSave: 55,
  ConnectGetHostname: 59,
  ConnectSupportsFeature: 60,
  AuthList: 66,
  StoragePoolRefresh: 83,
  StoragePoolLookupByName: 84,
  StoragePoolGetInfo: 87,
  StoragePoolGetXMLDesc: 88,
  StorageVolCreateXML: 93,
  StorageVolDelete: 94,
  StorageVolLookupByName: 95,
  StorageVolGetInfo: 98,
  StorageVolGetXMLDesc: 99,
  StorageVolGetPath: 100,
  NodeGetFreeMemory: 102,
  NodeGetCPUStats: 227,
  NodeGetMemoryStats: 228,
  StorageVolCreateXMLFrom: 125,
  DomainIsPersistent: 151,
  NetworkIsActive: 152,
  ConnectGetLibVersion: 157,
  DomainAttachDeviceFlags: 160,
  DomainDetachDeviceFlags: 161,
  DomainGetJobInfo: 163,
  DomainAbortJob: 164,
  DomainManagedSave: 182,
  DomainUpdateDeviceFlags: 174,
  DomainHasManagedSaveImage: 183,
  DomainManagedSaveRemove: 184,
  DomainSnapshotCreateXML: 185,
  DomainSnapshotGetXMLDesc: 186,
  DomainSnapshotLookupByName: 189,
  DomainSnapshotCurrent: 191,
  DomainRevertToSnapshot: 192,
  DomainSnapshotDelete: 193,
  DomainCreateWithFlags: 196,
  DomainSetVcpusFlags: 199,
  DomainSetMemoryFlags: 204,
  DomainGetState: 212,
  DomainUndefineFlags: 231,
  DomainSaveFlags: 232,
  DomainRestoreFlags: 233,
  ConnectListAllDomains: 273,
  DomainListAllSnapshots: 274,
  ConnectListAllStoragePools: 281,
  StoragePoolListAllVolumes: 282,
  ConnectListAllNetworks: 283,
  NetworkUpdate: 291,
  DomainMigratePerform3Params: 305,
  ConnectNetworkEventRegisterAny: 313,
  ConnectNetworkEventDeregisterAny: 314,
  NetworkEventLifecycle: 315,
  ConnectDomainEventCallbackRegisterAny: 316,
  ConnectDomainEventCallbackDeregisterAny: 317,
  DomainEventCallbackLifecycle: 318,
  DomainEventCallbackReboot: 319,
  DomainEventCallbackWatchdog: 321,
  DomainEventCallbackIOError: 322,
  NetworkGetDhcpLeases: 341,
  ConnectGetAllDomainStats: 344,
  DomainDefineXMLFlags: 350,
} as const;

const PROC_NAMES = new Map<number, string>(Object.entries(Proc).map(([k, v]) => [v, k]));

/** A procedure's name for error messages ("ConnectOpen (1)"). */
export function procName(proc: number): string {
  const n = PROC_NAMES.get(proc);
  return n ? `${n} (${proc})` : `procedure ${proc}`;
}

/** virDrvFeature values asked with ConnectSupportsFeature. */
export const Feature = { ProgramKeepalive: 10, RemoteEventCallback: 13 } as const;

/** virDomainEventID values for callback registration. */
export const EventId = { Lifecycle: 0, Reboot: 1, Watchdog: 3, IOError: 4 } as const;

export interface Header {
  program: number;
  version: number;
  procedure: number;
  type: MessageType;
  serial: number;
  status: MessageStatus;
}

/** Start a packet: length placeholder + header. Call `finishPacket` after writing the body. */
export function startPacket(h: Header, w = new XdrWriter()): XdrWriter {
  w.reserve(4);
  w.uint(h.program).uint(h.version).int(h.procedure).int(h.type).uint(h.serial).int(h.status);
  return w;
}

export function finishPacket(w: XdrWriter): Buffer {
  w.patchUint(0, w.length);
  return w.bytes();
}

/** Decode a header; its fields are only read here, checked by the client against what it expects. */
export function readHeader(r: XdrReader): Header {
  return {
    program: r.uint(),
    version: r.uint(),
    procedure: r.int(),
    type: r.int() as MessageType,
    serial: r.uint(),
    status: r.int() as MessageStatus,
  };
}

// --- shared structs ------------------------------------------------------------------------------

export interface DomainRef {
  name: string;
  uuid: Buffer;
  id: number;
}

export interface NetworkRef {
  name: string;
  uuid: Buffer;
}

export type PoolRef = NetworkRef;

export interface VolRef {
  pool: string;
  name: string;
  key: string;
}

export interface SnapshotRef {
  name: string;
  dom: DomainRef;
}

export const writeDomain = (w: XdrWriter, d: DomainRef) => w.string(d.name).fixedOpaque(d.uuid, 16).int(d.id);
export const readDomain = (r: XdrReader): DomainRef => ({
  name: r.string(),
  uuid: r.fixedOpaque(16),
  id: r.int(),
});
export const writeNetwork = (w: XdrWriter, n: NetworkRef) => w.string(n.name).fixedOpaque(n.uuid, 16);
export const readNetwork = (r: XdrReader): NetworkRef => ({ name: r.string(), uuid: r.fixedOpaque(16) });
export const writePool = writeNetwork;
export const readPool = readNetwork;
export const writeVol = (w: XdrWriter, v: VolRef) => w.string(v.pool).string(v.name).string(v.key);
export const readVol = (r: XdrReader): VolRef => ({ pool: r.string(), name: r.string(), key: r.string() });
export const writeSnapshot = (w: XdrWriter, s: SnapshotRef) => writeDomain(w.string(s.name), s.dom);
export const readSnapshot = (r: XdrReader): SnapshotRef => ({ name: r.string(), dom: readDomain(r) });

export function uuidString(b: Buffer): string {
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** remote_error, as carried by a reply with status Error. */
export interface RemoteErrorBody {
  code: number;
  domain: number;
  message: string | undefined;
  level: number;
  str1?: string;
  str2?: string;
  str3?: string;
  int1: number;
  int2: number;
}

export function readRemoteError(r: XdrReader): RemoteErrorBody {
  const code = r.int();
  const domain = r.int();
  const message = r.optString();
  const level = r.int();
  r.optional(readDomain);
  const str1 = r.optString();
  const str2 = r.optString();
  const str3 = r.optString();
  const int1 = r.int();
  const int2 = r.int();
  r.optional(readNetwork);
  return { code, domain, message, level, str1, str2, str3, int1, int2 };
}

/** virTypedParameter, for migration parameters and domain stats. */
export type TypedValue =
  | { type: "int"; value: number }
  | { type: "uint"; value: number }
  | { type: "llong"; value: number }
  | { type: "ullong"; value: number }
  | { type: "double"; value: number }
  | { type: "boolean"; value: boolean }
  | { type: "string"; value: string };

export interface TypedParam {
  field: string;
  value: TypedValue;
}

const TYPED = { int: 1, uint: 2, llong: 3, ullong: 4, double: 5, boolean: 6, string: 7 } as const;

export function writeTypedParam(w: XdrWriter, p: TypedParam): void {
  w.string(p.field).int(TYPED[p.value.type]);
  const v = p.value;
  switch (v.type) {
    case "int":
      w.int(v.value);
      break;
    case "uint":
      w.uint(v.value);
      break;
    case "llong":
      w.hyper(v.value);
      break;
    case "ullong":
      w.uhyper(v.value);
      break;
    case "double":
      w.double(v.value);
      break;
    case "boolean":
      w.bool(v.value);
      break;
    case "string":
      w.string(v.value);
      break;
  }
}

export function readTypedParam(r: XdrReader): TypedParam {
  const field = r.string();
  const t = r.int();
  switch (t) {
    case 1:
      return { field, value: { type: "int", value: r.int() } };
    case 2:
      return { field, value: { type: "uint", value: r.uint() } };
    case 3:
      return { field, value: { type: "llong", value: r.hyper() } };
    case 4:
      return { field, value: { type: "ullong", value: r.uhyper() } };
    case 5:
      return { field, value: { type: "double", value: r.double() } };
    case 6:
      return { field, value: { type: "boolean", value: r.int() !== 0 } };
    case 7:
      return { field, value: { type: "string", value: r.string() } };
    default:
      throw new XdrError(`typed parameter ${field}: unknown type ${t}`);
  }
}
