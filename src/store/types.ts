/**
 * ResourceStore: where desired state comes from and where status goes. Two implementations:
 * store/kube (a real API server through @kubernetes/client-node informers) and store/files (a
 * watched directory of manifests plus a crash-safe state directory). The reconcilers see only this.
 *
 * Contracts:
 * - Reads (`get`, `list`) come from a local cache that the store keeps in sync; they never block
 *   on I/O. `waitForSync` resolves once the first full listing of every kind is in the cache.
 * - The store never lets a caller write `spec` of a user's object: `updateStatus` replaces only
 *   `status` (and is a no-op returning the cached object when the status is unchanged).
 * - Optimistic concurrency: a status computed from an object older than the stored one (a stale
 *   cache read, a write in between) is not written over the newer status: what the reconcile
 *   changed is merged onto it (merge.ts). ConflictError if that keeps failing; the controller
 *   then retries the reconcile from the latest object.
 * - Deletion follows finalizer semantics: an object with finalizers that is deleted stays visible
 *   with `metadata.deletionTimestamp` set until `removeFinalizer` empties the list.
 * - `create` / `delete` are for objects the controller owns (e.g. VirtualMachineSnapshots made by a
 *   SnapshotPolicy), never for the user's manifests.
 */
import type { Kind, Resource, ResourceOfKind } from "../api/types.js";

export type Unsubscribe = () => void;

export type WatchEventType = "added" | "modified" | "deleted";

export interface WatchEvent<K extends Kind = Kind> {
  type: WatchEventType;
  object: ResourceOfKind<K>;
}

export interface ObjectReference {
  /** A resource kind, or GitRepository: the source of `run --git` (its sync events). */
  kind: Kind | "GitRepository";
  namespace?: string;
  name: string;
  uid?: string;
}

export interface RecordedEvent {
  regarding: ObjectReference;
  type: "Normal" | "Warning";
  /** UpperCamelCase, e.g. Scheduled, Started, DriftCorrected, Recovered, Fenced, Migrated. */
  reason: string;
  /** What the controller did, e.g. Start, Recreate, Fence. */
  action: string;
  note: string;
  /** First/last time and count: repeated events are aggregated like Kubernetes does. */
  firstTime: string;
  lastTime: string;
  count: number;
}

/** The object changed since it was read: reconcile again from the latest version. */
export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConflictError";
  }
}

export interface ResourceStore {
  /** Start watching; resolves once the initial listing of every kind is cached. */
  start(signal?: AbortSignal): Promise<void>;
  stop(): Promise<void>;
  /** True once every kind has been listed at least once. */
  hasSynced(): boolean;

  get<K extends Kind>(kind: K, key: string): ResourceOfKind<K> | undefined;
  list<K extends Kind>(kind: K): ResourceOfKind<K>[];
  /** Called for every change after `start`; `added` is replayed for objects already cached. */
  watch<K extends Kind>(kind: K, handler: (event: WatchEvent<K>) => void): Unsubscribe;

  /**
   * Replace the object's status, computed from `obj`; if the object changed since, the changes
   * are merged onto the stored status. Returns the stored object.
   */
  updateStatus<K extends Kind>(
    obj: ResourceOfKind<K>,
    status: NonNullable<ResourceOfKind<K>["status"]>,
  ): Promise<ResourceOfKind<K>>;
  /** Add a finalizer if missing (idempotent). */
  addFinalizer<K extends Kind>(obj: ResourceOfKind<K>, finalizer: string): Promise<ResourceOfKind<K>>;
  /** Remove a finalizer if present (idempotent); the object disappears once none are left. */
  removeFinalizer<K extends Kind>(obj: ResourceOfKind<K>, finalizer: string): Promise<void>;

  create<R extends Resource>(obj: R): Promise<R>;
  delete(kind: Kind, key: string): Promise<void>;

  recordEvent(event: Omit<RecordedEvent, "firstTime" | "lastTime" | "count">): void;
  /** Recent events, newest last; filtered to one object when given. */
  listEvents(regarding?: ObjectReference): RecordedEvent[];

  /** Credentials for fence/power agents: a Secret in Kubernetes mode, a file in standalone mode. */
  readSecret(ref: { name: string; namespace?: string }): Promise<Record<string, string>>;
}
