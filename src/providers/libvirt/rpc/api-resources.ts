/**
 * The network and storage calls of LibvirtApi (remote_protocol.x), split out to keep each file
 * to one concern: arguments encoded here, replies decoded by replies.ts.
 */
import type { LibvirtClient } from "./client.js";
import {
  type NetworkRef,
  type PoolRef,
  Proc,
  readNetwork,
  readPool,
  readVol,
  type VolRef,
  writeNetwork,
  writePool,
  writeVol,
} from "./protocol.js";
import {
  type DhcpLease,
  readDhcpLeases,
  readIsRet,
  readNetworkList,
  readPoolInfo,
  readPoolList,
  readStringRet,
  readVoid,
  readVolInfo,
  readVolList,
} from "./replies.js";

type S = AbortSignal | undefined;

/** virNetworkUpdateCommand, virNetworkUpdateSection (subset), virNetworkUpdateFlags. */
export const NetworkUpdate = {
  Modify: 1,
  Delete: 2,
  AddLast: 3,
  SectionDhcpHost: 4,
  AffectLive: 1,
  AffectConfig: 2,
} as const;

export class NetworkStorageApi {
  constructor(readonly client: LibvirtClient) {}

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
