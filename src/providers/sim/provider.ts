/**
 * SimProvider: a HypervisorProvider connection to one host of a Simulator (world.ts).
 *
 * This is the interface's face only: the session (connection, health, events, and the `call()`
 * every operation runs through: faults, latency, timeout, signal) is session.ts, and the
 * operations live by concern in domains.ts, snapshots.ts, migration.ts, networks.ts and
 * storage.ts, each a function of the session.
 */
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
import * as domains from "./domains.js";
import * as migration from "./migration.js";
import * as networks from "./networks.js";
import { SimSession } from "./session.js";
import * as snapshots from "./snapshots.js";
import * as storage from "./storage.js";
import type { Simulator } from "./world.js";

export { simHostName } from "./session.js";

export class SimProvider implements HypervisorProvider {
  readonly uri: string;
  private readonly s: SimSession;

  constructor(
    sim: Simulator,
    uri: string,
    /** Maps a migration target's URI onto a simulated host's (simulatorFactory's mapUri). */
    mapUri: (uri: string) => string = (u) => u,
  ) {
    this.uri = uri;
    this.s = new SimSession(sim, uri, mapUri);
  }

  // --- connection ----------------------------------------------------------------------------

  connect(signal?: AbortSignal): Promise<void> {
    return this.s.connect(signal);
  }
  close(): Promise<void> {
    return this.s.close();
  }
  health(): ProviderHealth {
    return this.s.health();
  }
  onHealthChange(listener: (health: ProviderHealth) => void): Unsubscribe {
    return this.s.onHealthChange(listener);
  }
  onDomainEvent(listener: (event: DomainEvent) => void): Unsubscribe {
    return this.s.onDomainEvent(listener);
  }
  onNetworkEvent(listener: (event: NetworkEvent) => void): Unsubscribe {
    return this.s.onNetworkEvent(listener);
  }
  ping(signal?: AbortSignal): Promise<void> {
    return this.s.ping(signal);
  }
  hostInfo(signal?: AbortSignal): Promise<HostInfo> {
    return this.s.hostInfo(signal);
  }
  nodeStats(signal?: AbortSignal): Promise<NodeStats> {
    return this.s.nodeStats(signal);
  }

  // --- domains -----------------------------------------------------------------------------------

  listDomains(signal?: AbortSignal): Promise<DomainSummary[]> {
    return domains.listDomains(this.s, signal);
  }
  defineDomain(spec: DomainSpec, signal?: AbortSignal): Promise<void> {
    return domains.defineDomain(this.s, spec, signal);
  }
  startDomain(name: string, signal?: AbortSignal): Promise<void> {
    return domains.startDomain(this.s, name, signal);
  }
  attachInterface(name: string, nic: DomainInterfaceSpec, signal?: AbortSignal): Promise<void> {
    return domains.attachInterface(this.s, name, nic, signal);
  }
  detachInterface(name: string, nic: DomainInterfaceSpec, signal?: AbortSignal): Promise<void> {
    return domains.detachInterface(this.s, name, nic, signal);
  }
  attachDisk(name: string, disk: DomainDiskSpec, signal?: AbortSignal): Promise<void> {
    return domains.attachDisk(this.s, name, disk, signal);
  }
  detachDisk(name: string, disk: DomainDiskSpec, signal?: AbortSignal): Promise<void> {
    return domains.detachDisk(this.s, name, disk, signal);
  }
  resizeDomain(
    name: string,
    change: { vcpus?: number; memoryBytes?: number },
    signal?: AbortSignal,
  ): Promise<void> {
    return domains.resizeDomain(this.s, name, change, signal);
  }
  shutdownDomain(name: string, signal?: AbortSignal): Promise<void> {
    return domains.shutdownDomain(this.s, name, signal);
  }
  destroyDomain(name: string, signal?: AbortSignal): Promise<void> {
    return domains.destroyDomain(this.s, name, signal);
  }
  undefineDomain(name: string, signal?: AbortSignal): Promise<void> {
    return domains.undefineDomain(this.s, name, signal);
  }
  pauseDomain(name: string, signal?: AbortSignal): Promise<void> {
    return domains.pauseDomain(this.s, name, signal);
  }
  resumeDomain(name: string, signal?: AbortSignal): Promise<void> {
    return domains.resumeDomain(this.s, name, signal);
  }
  getDomainState(name: string, signal?: AbortSignal): Promise<DomainStateInfo | undefined> {
    return domains.getDomainState(this.s, name, signal);
  }
  getDomainSpec(name: string, signal?: AbortSignal): Promise<DomainSpec | undefined> {
    return domains.getDomainSpec(this.s, name, signal);
  }
  domainStats(signal?: AbortSignal): Promise<DomainStats[]> {
    return domains.domainStats(this.s, signal);
  }

  // --- snapshots ---------------------------------------------------------------------------------

  createSnapshot(
    domain: string,
    options: { name: string; memory: boolean; description?: string },
    signal?: AbortSignal,
  ): Promise<SnapshotInfo> {
    return snapshots.createSnapshot(this.s, domain, options, signal);
  }
  listSnapshots(domain: string, signal?: AbortSignal): Promise<SnapshotInfo[]> {
    return snapshots.listSnapshots(this.s, domain, signal);
  }
  revertSnapshot(
    domain: string,
    name: string,
    options: { paused?: boolean } = {},
    signal?: AbortSignal,
  ): Promise<void> {
    return snapshots.revertSnapshot(this.s, domain, name, options, signal);
  }
  importSnapshot(
    domain: string,
    snapshot: Pick<SnapshotInfo, "name" | "createdAt" | "state" | "memory">,
    signal?: AbortSignal,
  ): Promise<void> {
    return snapshots.importSnapshot(this.s, domain, snapshot, signal);
  }
  deleteSnapshot(domain: string, name: string, signal?: AbortSignal): Promise<void> {
    return snapshots.deleteSnapshot(this.s, domain, name, signal);
  }
  managedSave(domain: string, signal?: AbortSignal): Promise<void> {
    return snapshots.managedSave(this.s, domain, signal);
  }
  hasManagedSave(domain: string, signal?: AbortSignal): Promise<boolean> {
    return snapshots.hasManagedSave(this.s, domain, signal);
  }
  removeManagedSave(domain: string, signal?: AbortSignal): Promise<void> {
    return snapshots.removeManagedSave(this.s, domain, signal);
  }
  saveCheckpoint(domain: string, path: string, signal?: AbortSignal): Promise<void> {
    return snapshots.saveCheckpoint(this.s, domain, path, signal);
  }
  restoreCheckpoint(path: string, signal?: AbortSignal): Promise<void> {
    return snapshots.restoreCheckpoint(this.s, path, signal);
  }

  // --- migration ---------------------------------------------------------------------------------

  migrateDomain(
    name: string,
    targetUri: string,
    options: MigrationOptions,
    signal?: AbortSignal,
  ): Promise<void> {
    return migration.migrateDomain(this.s, name, targetUri, options, signal);
  }
  getJobInfo(domain: string, signal?: AbortSignal): Promise<JobInfo> {
    return migration.getJobInfo(this.s, domain, signal);
  }
  abortJob(domain: string, signal?: AbortSignal): Promise<void> {
    return migration.abortJob(this.s, domain, signal);
  }

  // --- networks ----------------------------------------------------------------------------------

  listNetworks(signal?: AbortSignal): Promise<NetworkInfo[]> {
    return networks.listNetworks(this.s, signal);
  }
  ensureNetwork(spec: NetworkSpec, signal?: AbortSignal): Promise<void> {
    return networks.ensureNetwork(this.s, spec, signal);
  }
  getNetwork(name: string, signal?: AbortSignal): Promise<NetworkInfo | undefined> {
    return networks.getNetwork(this.s, name, signal);
  }
  removeNetwork(name: string, signal?: AbortSignal): Promise<void> {
    return networks.removeNetwork(this.s, name, signal);
  }
  networkLeases(name: string, signal?: AbortSignal): Promise<NetworkLease[]> {
    return networks.networkLeases(this.s, name, signal);
  }

  // --- storage -----------------------------------------------------------------------------------

  listPools(signal?: AbortSignal): Promise<PoolInfo[]> {
    return storage.listPools(this.s, signal);
  }
  listVolumes(pool: string, signal?: AbortSignal): Promise<VolumeInfo[]> {
    return storage.listVolumes(this.s, pool, signal);
  }
  createVolume(pool: string, options: CreateVolumeOptions, signal?: AbortSignal): Promise<VolumeInfo> {
    return storage.createVolume(this.s, pool, options, signal);
  }
  getVolume(pool: string, name: string, signal?: AbortSignal): Promise<VolumeInfo | undefined> {
    return storage.getVolume(this.s, pool, name, signal);
  }
  deleteVolume(pool: string, name: string, signal?: AbortSignal): Promise<void> {
    return storage.deleteVolume(this.s, pool, name, signal);
  }
}
