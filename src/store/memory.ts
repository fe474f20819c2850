/**
 * An in-memory ResourceStore: the same contract as store/files and store/kube (finalizer
 * semantics, status-only writes, generation bumps on spec change), and a log of every write.
 * Used where nothing must persist: `virtwarden whatif` replays a failure on the simulator with
 * it, and the tests and benchmarks run the controllers on it.
 */
import { randomUUID } from "node:crypto";
import type { Kind, Resource, ResourceOfKind } from "../api/types.js";
import { objectKey } from "../api/types.js";
import { jsonEqual } from "./equal.js";
import type { ObjectReference, RecordedEvent, ResourceStore, Unsubscribe, WatchEvent } from "./types.js";

type AnyHandler = (e: WatchEvent) => void;

export interface WriteRecord {
  op: "status" | "addFinalizer" | "removeFinalizer" | "create" | "delete";
  kind: Kind;
  key: string;
}

export class MemoryStore implements ResourceStore {
  private readonly objects = new Map<Kind, Map<string, Resource>>();
  private readonly handlers = new Map<Kind, Set<AnyHandler>>();
  private readonly events: RecordedEvent[] = [];
  private rv = 0;
  readonly writes: WriteRecord[] = [];
  secrets: Record<string, Record<string, string>> = {};

  constructor(private readonly now: () => Date = () => new Date()) {}

  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  hasSynced(): boolean {
    return true;
  }

  private bucket(kind: Kind): Map<string, Resource> {
    let m = this.objects.get(kind);
    if (!m) {
      m = new Map();
      this.objects.set(kind, m);
    }
    return m;
  }

  private emit(kind: Kind, type: WatchEvent["type"], object: Resource): void {
    for (const h of this.handlers.get(kind) ?? []) h({ type, object: structuredClone(object) } as WatchEvent);
  }

  get<K extends Kind>(kind: K, key: string): ResourceOfKind<K> | undefined {
    const o = this.bucket(kind).get(key);
    return o ? (structuredClone(o) as ResourceOfKind<K>) : undefined;
  }

  list<K extends Kind>(kind: K): ResourceOfKind<K>[] {
    return [...this.bucket(kind).values()].map((o) => structuredClone(o) as ResourceOfKind<K>);
  }

  watch<K extends Kind>(kind: K, handler: (event: WatchEvent<K>) => void): Unsubscribe {
    let set = this.handlers.get(kind);
    if (!set) {
      set = new Set();
      this.handlers.set(kind, set);
    }
    const h = handler as unknown as AnyHandler;
    set.add(h);
    for (const o of this.bucket(kind).values())
      h({ type: "added", object: structuredClone(o) } as WatchEvent);
    return () => set?.delete(h);
  }

  /** What a user does: create or replace an object's spec/metadata (the test's `kubectl apply`). */
  apply<R extends Resource>(obj: R): R {
    const key = objectKey(obj.metadata);
    const existing = this.bucket(obj.kind).get(key);
    const next = structuredClone(obj) as Resource;
    next.metadata.uid = existing?.metadata.uid ?? obj.metadata.uid ?? randomUUID();
    const specChanged = !existing || JSON.stringify(existing.spec) !== JSON.stringify(obj.spec);
    next.metadata.generation = (existing?.metadata.generation ?? 0) + (specChanged ? 1 : 0);
    next.metadata.resourceVersion = String(++this.rv);
    next.metadata.finalizers = existing?.metadata.finalizers ?? obj.metadata.finalizers ?? [];
    next.metadata.creationTimestamp = existing?.metadata.creationTimestamp ?? this.now().toISOString();
    next.status = existing?.status ?? obj.status;
    this.bucket(obj.kind).set(key, next);
    this.emit(obj.kind, existing ? "modified" : "added", next);
    return structuredClone(next) as R;
  }

  /** What a user does: delete (finalizers hold the object with a deletionTimestamp). */
  remove(kind: Kind, key: string): void {
    const existing = this.bucket(kind).get(key);
    if (!existing) return;
    if ((existing.metadata.finalizers ?? []).length === 0) {
      this.bucket(kind).delete(key);
      this.emit(kind, "deleted", existing);
      return;
    }
    existing.metadata.deletionTimestamp ??= this.now().toISOString();
    existing.metadata.resourceVersion = String(++this.rv);
    this.emit(kind, "modified", existing);
  }

  async updateStatus<K extends Kind>(
    obj: ResourceOfKind<K>,
    status: NonNullable<ResourceOfKind<K>["status"]>,
  ): Promise<ResourceOfKind<K>> {
    const key = objectKey(obj.metadata);
    const existing = this.bucket(obj.kind).get(key);
    if (!existing) throw new Error(`${obj.kind} ${key} not found`);
    if (jsonEqual(existing.status ?? {}, status)) return structuredClone(existing) as ResourceOfKind<K>;
    existing.status = structuredClone(status) as never;
    existing.metadata.resourceVersion = String(++this.rv);
    this.writes.push({ op: "status", kind: obj.kind, key });
    this.emit(obj.kind, "modified", existing);
    return structuredClone(existing) as ResourceOfKind<K>;
  }

  async addFinalizer<K extends Kind>(obj: ResourceOfKind<K>, finalizer: string): Promise<ResourceOfKind<K>> {
    const key = objectKey(obj.metadata);
    const existing = this.bucket(obj.kind).get(key);
    if (!existing) throw new Error(`${obj.kind} ${key} not found`);
    if (!(existing.metadata.finalizers ?? []).includes(finalizer)) {
      existing.metadata.finalizers = [...(existing.metadata.finalizers ?? []), finalizer];
      existing.metadata.resourceVersion = String(++this.rv);
      this.writes.push({ op: "addFinalizer", kind: obj.kind, key });
      this.emit(obj.kind, "modified", existing);
    }
    return structuredClone(existing) as ResourceOfKind<K>;
  }

  async removeFinalizer<K extends Kind>(obj: ResourceOfKind<K>, finalizer: string): Promise<void> {
    const key = objectKey(obj.metadata);
    const existing = this.bucket(obj.kind).get(key);
    if (!existing) return;
    existing.metadata.finalizers = (existing.metadata.finalizers ?? []).filter((f) => f !== finalizer);
    this.writes.push({ op: "removeFinalizer", kind: obj.kind, key });
    if (existing.metadata.deletionTimestamp && existing.metadata.finalizers.length === 0) {
      this.bucket(obj.kind).delete(key);
      this.emit(obj.kind, "deleted", existing);
    } else {
      this.emit(obj.kind, "modified", existing);
    }
  }

  async create<R extends Resource>(obj: R): Promise<R> {
    this.writes.push({ op: "create", kind: obj.kind, key: objectKey(obj.metadata) });
    return this.apply(obj);
  }

  async delete(kind: Kind, key: string): Promise<void> {
    this.writes.push({ op: "delete", kind, key });
    this.remove(kind, key);
  }

  recordEvent(e: Omit<RecordedEvent, "firstTime" | "lastTime" | "count">): void {
    const t = this.now().toISOString();
    const same = this.events.find(
      (x) =>
        x.regarding.kind === e.regarding.kind &&
        x.regarding.name === e.regarding.name &&
        x.regarding.namespace === e.regarding.namespace &&
        x.reason === e.reason &&
        x.type === e.type,
    );
    if (same) {
      same.count++;
      same.lastTime = t;
      same.note = e.note;
      return;
    }
    this.events.push({ ...e, firstTime: t, lastTime: t, count: 1 });
  }

  listEvents(regarding?: ObjectReference): RecordedEvent[] {
    return this.events.filter(
      (e) =>
        !regarding ||
        (e.regarding.kind === regarding.kind &&
          e.regarding.name === regarding.name &&
          (e.regarding.namespace ?? "") === (regarding.namespace ?? "")),
    );
  }

  async readSecret(ref: { name: string }): Promise<Record<string, string>> {
    const s = this.secrets[ref.name];
    if (!s) throw new Error(`secret ${ref.name} not found`);
    return s;
  }
}
