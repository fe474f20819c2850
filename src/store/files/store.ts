/**
 * FileStore: the ResourceStore of standalone (GitOps directory) mode.
 *
 * Desired state is a directory of manifests, watched with chokidar; the user's files are only
 * ever read. What the API server would keep — uid, generation, finalizers, deletion, status,
 * objects the controller creates, and the last declared form of each object — lives in a
 * crash-safe journal (journal.ts) in the state dir, locked for the life of the store (lock.ts).
 *
 * Contracts beyond ResourceStore's:
 * - What the directory declares is recoverable from the directory and the journal after any
 *   crash. Nothing about an object lives only in memory: an object whose manifest comes back
 *   while its deletion is under way (finalizers running) is re-created, as a new object (new
 *   uid, generation 1), once its finalizers are gone — derived again at every start, since the
 *   manifest is there and the journal says the old object is being deleted.
 * - Deletion is deliberate (definitions.ts, settle.ts): an object whose manifest disappears is
 *   deleted only once the directory has settled (no change for `deleteSettleMs`), the directory
 *   itself has been read again, and no file defines it. Until then it stays as it was. A file that
 *   fails to load deletes nothing it defined. An object defined in two files: the first stands,
 *   the second is an error, and takes over when the first goes away.
 * - The checks across documents (api/addresses.ts: a MAC or fixed IP claimed twice, an IP outside
 *   its network) run over every standing definition after each load, in load order (the order
 *   definitions last changed). A document they flag is reported like any load error and not
 *   applied: an object applied earlier keeps its earlier form, a new one is not created.
 * - The whole directory is read again after the watcher is ready and every `rescanIntervalMs`,
 *   so an event the watcher missed (add, change or removal) is corrected.
 * - A write the journal did not take (full or read-only disk) is rejected with
 *   StateNotWritableError and changes nothing in memory; the store then reports itself
 *   unwritable (`writable()`, `onWritableChange`) and rejects every write at once until a probe
 *   write succeeds (health.ts). Manifest changes seen meanwhile are applied then.
 * - uid and generation survive restarts; generation increments when spec changes.
 * - Reads return the cached objects: callers must not mutate them (`get` returns a copy).
 * - Tree mode (`tree`, for `run --git`): no directory is watched; the definitions are whole
 *   trees handed in by `applyTree`, each replacing the last in one operation. Deletion follows
 *   the same settle rule, and nothing is deleted before the first tree is in.
 * - view.json in the state dir holds the merged view (objects with status, recent events) for
 *   `virtwarden get/describe/events` in another process; it is rewritten at most once a second
 *   and is a convenience copy: the journal is the record.
 */
import { randomUUID } from "node:crypto";
import { join, resolve } from "node:path";
import { validateResource } from "../../api/loader.js";
import type { ManifestError } from "../../api/manifest.js";
import { formatSkipped } from "../../api/manifest.js";
import { type Kind, objectKey, type Resource, type ResourceOfKind } from "../../api/types.js";
import type { Logger } from "../../controller/log.js";
import { silentLogger } from "../../controller/log.js";
import { jsonEqual } from "../equal.js";
import type { ObjectReference, RecordedEvent, ResourceStore, Unsubscribe, WatchEvent } from "../types.js";
import { ManifestDirectory, type ManifestTree, type TreeChange } from "./directory.js";
import { EventLog } from "./events.js";
import { probeHeadroom, StateNotWritableError, StateWriteHealth } from "./health.js";
import { Journal, type JournalRecord } from "./journal.js";
import { StateDirLock } from "./lock.js";
import { readSecretFile } from "./secrets.js";
import { emptyState, fold, hashSpec, idOf, type Meta, type PersistedState, splitId } from "./state.js";
import { type SyncStatus, ViewWriter } from "./view.js";

export interface FileStoreOptions {
  /** The directories (or files) of manifests to watch; ignored in tree mode. */
  manifestDir?: string | string[];
  /**
   * Tree mode: no directory; the manifests are whole trees handed to `applyTree`, starting from
   * `initial()` (the last tree applied before a restart, if any).
   */
  tree?: { initial(): Promise<ManifestTree | undefined> };
  stateDir: string;
  secretsDir?: string;
  logger?: Logger;
  now?: () => Date;
  /** Compact the journal into a snapshot after this many records (default 20,000). */
  compactEvery?: number;
  /** Minimum interval between view.json writes (default 1000 ms). */
  viewIntervalMs?: number;
  /**
   * An object whose manifest disappeared is deleted once the directory saw no change for this
   * long (default 2000 ms): longer than the bursts of a git checkout, an editor's save or a tool
   * regenerating the directory.
   */
  deleteSettleMs?: number;
  /** While the state dir refuses writes, how often a probe write is tried (default 2000 ms). */
  probeIntervalMs?: number;
  /**
   * How often the whole manifest directory is read again and reconciled with what the store
   * holds, whatever the watcher reported (default 30,000 ms; 0: never): a missed watcher event of
   * any kind is corrected within this long. Removals found so still wait for the settle rule.
   */
  rescanIntervalMs?: number;
}

export type { ManifestTree, TreeChange } from "./directory.js";
export type { PersistedState } from "./state.js";
export type { SyncStatus } from "./view.js";

const keyOf = (r: Pick<Resource, "metadata">) => objectKey(r.metadata);

export class FileStore implements ResourceStore {
  private readonly journal: Journal<PersistedState>;
  private readonly cache = new Map<Kind, Map<string, Resource>>();
  private readonly handlers = new Map<Kind, Set<(e: WatchEvent) => void>>();
  private readonly directory: ManifestDirectory;
  private readonly events: EventLog;
  private readonly view: ViewWriter;
  private readonly health: StateWriteHealth;
  /** Per object: its mutations run one at a time (read-modify-write of its meta never races). */
  private readonly idLocks = new Map<string, Promise<unknown>>();
  private lock: StateDirLock | undefined;
  private synced = false;
  private stopping = false;
  private rv = 0;
  private compacting: Promise<void> | undefined;
  private nextCompactAt: number;
  private readonly logger: Logger;
  private readonly now: () => Date;
  private sync: SyncStatus | undefined;

  constructor(private readonly opts: FileStoreOptions) {
    this.journal = new Journal(opts.stateDir, fold, emptyState);
    this.logger = opts.logger ?? silentLogger;
    this.now = opts.now ?? (() => new Date());
    this.nextCompactAt = opts.compactEvery ?? 20_000;
    this.events = new EventLog(this.now);
    this.view = new ViewWriter(join(opts.stateDir, "view.json"), opts.viewIntervalMs ?? 1000, () => ({
      resources: [...this.cache.values()].flatMap((m) => [...m.values()]),
      events: this.events.all(),
      errors: this.errors(),
      ...(this.sync ? { sync: this.sync } : {}),
    }));
    const given = opts.tree ? [] : (opts.manifestDir ?? []);
    const dirs = (Array.isArray(given) ? given : [given]).map((d) => resolve(d));
    this.directory = new ManifestDirectory(
      dirs,
      opts.deleteSettleMs ?? 2000,
      this.logger,
      this.events,
      {
        resolve: (ids) => this.resolveAll(ids),
        settled: (ids) => this.deleteSettled(ids),
        mayDelete: () => this.health.writable(),
        changed: () => this.view.markDirty(),
        createdAt: (id) => this.state.meta[id]?.created,
      },
      opts.rescanIntervalMs ?? 30_000,
      opts.tree ? () => opts.tree?.initial() ?? Promise.resolve(undefined) : undefined,
    );
    this.health = new StateWriteHealth(
      resolve(opts.stateDir),
      this.logger,
      async () => {
        await probeHeadroom(opts.stateDir);
        await this.journal.append({ t: "probe" });
      },
      opts.probeIntervalMs ?? 2000,
    );
    // Writable again: what was seen meanwhile (and refused) is applied now.
    this.health.onChange((ok) => {
      if (ok)
        this.directory.op(() =>
          this.resolveAll([...this.directory.index.definedIds(), ...Object.keys(this.state.meta)]),
        );
    });
  }

  private get state(): PersistedState {
    return this.journal.state;
  }

  // --- lifecycle -----------------------------------------------------------------------------

  async start(): Promise<void> {
    const notWritable = (e: unknown) => {
      const code = (e as NodeJS.ErrnoException).code;
      return code && ["ENOSPC", "EROFS", "EACCES", "EPERM", "EIO", "EDQUOT"].includes(code)
        ? new StateNotWritableError(resolve(this.opts.stateDir), code, String((e as Error).message))
        : e;
    };
    const lock = await StateDirLock.acquire(this.opts.stateDir, (stale) =>
      this.logger.warn(
        { pid: stale.pid, startedAt: stale.startedAt },
        "took over the lock of a controller that is gone",
      ),
    ).catch((e: unknown) => {
      throw notWritable(e);
    });
    try {
      await this.journal.open();
    } catch (e) {
      await lock.release().catch(() => undefined);
      throw notWritable(e);
    }
    this.lock = lock;
    if (this.journal.tornBytesAtOpen > 0)
      this.logger.warn(
        { file: this.journal.journalPath, bytes: this.journal.tornBytesAtOpen },
        "ignored a torn last journal record (a crash mid-write): it was never acknowledged",
      );
    for (const [id, obj] of Object.entries(this.state.owned)) this.put(obj, this.decorate(obj, id), false);
    await this.directory.readAll();
    const loaded = this.directory.summary();
    this.logger.info(
      {
        files: loaded.files,
        resources: loaded.resources,
        errors: loaded.errors,
        skipped: loaded.skipped.length,
      },
      `manifests loaded: ${loaded.resources} resource(s) in ${loaded.files} file(s), ${loaded.errors} error(s)${
        loaded.skipped.length > 0 ? `; ${formatSkipped(loaded.skipped)}` : ""
      }`,
    );
    // Every object declared now or known from the last run is resolved: created, updated, kept
    // while being deleted, or pending deletion (its manifest went away while we were down).
    await this.resolveAll([...this.directory.index.definedIds(), ...Object.keys(this.state.meta)]);
    await this.directory.watch();
    this.synced = true;
    // Only now: a view written while the journal and the manifests were still being loaded held
    // part of the fleet (a `virtwarden get vm` right after a controller restart listed no VM at
    // all, as the real-bed chaos suite caught); until this point the last controller's view stands.
    this.view.enabled = true;
    this.view.markDirty();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.health.stop();
    await this.directory.close();
    if (!this.lock) return; // never started (or refused the lock): nothing of ours to flush
    await this.compacting;
    await this.journal.flush();
    await this.view
      .flush()
      .catch((e: unknown) => this.logger.warn({ err: String(e) }, "cannot write view.json"));
    await this.journal.close();
    await this.lock
      ?.release()
      .catch((e: unknown) => this.logger.warn({ err: String(e) }, "cannot remove the lock"));
    this.lock = undefined;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Whether the state dir takes writes (false: nothing should act; see health.ts). */
  writable(): boolean {
    return this.health.writable();
  }

  onWritableChange(listener: (writable: boolean) => void): Unsubscribe {
    return this.health.onChange(listener);
  }

  /** Current manifest errors, by file. */
  /** What the manifest directory holds as last read (files, resources, errors, skipped documents). */
  directorySummary(): ReturnType<ManifestDirectory["summary"]> {
    return this.directory.summary();
  }

  errors(): ManifestError[] {
    return this.directory.errors();
  }

  onErrors(listener: (errors: ManifestError[]) => void): Unsubscribe {
    return this.directory.onErrors(listener);
  }

  /**
   * Tree mode: this tree replaces the last one, in one operation after every manifest operation
   * under way. Resolves once every object it adds or changes is applied; the objects it no
   * longer defines are then pending deletion (the settle rule). The tree is expected whole and
   * valid (`run --git` validates a commit before handing it in): a document that does not load
   * is reported like a bad file in a directory.
   */
  applyTree(tree: ManifestTree): Promise<TreeChange> {
    if (!this.opts.tree) throw new Error("applyTree: the store watches a directory (no tree option)");
    return this.directory.replaceTree(tree);
  }

  /** Tree mode: the revision of the tree in force. */
  revision(): string | undefined {
    return this.directory.revision();
  }

  /** Tree mode: how syncing goes, shown by `virtwarden get/describe` (view.json). */
  setSyncStatus(sync: SyncStatus): void {
    this.sync = structuredClone(sync);
    this.view.markDirty();
  }

  // --- declarations -> objects ---------------------------------------------------------------

  // --- manifests -----------------------------------------------------------------------------

  /** Bring each object in line with the directory's declarations (concurrently, one lock each). */
  private async resolveAll(ids: Iterable<string>): Promise<void> {
    await Promise.all(
      [...new Set(ids)].map((id) =>
        this.withId(id, () => this.resolve(id)).catch((e: unknown) => {
          if (this.health.writable()) throw e; // not-writable: applied again when it is
        }),
      ),
    );
  }

  private async resolve(id: string): Promise<void> {
    if (this.state.owned[id]) return; // controller-created: a manifest does not redefine it
    const meta = this.state.meta[id];
    const def = this.directory.index.winner(id);
    const settler = this.directory.settler;
    if (meta?.deletionTimestamp) {
      // Being deleted: it stays as it was until its finalizers are gone; a definition now is
      // re-created then (forget), so nothing is to be done about it here.
      settler.cancel(id);
      this.showFromJournal(id);
      return;
    }
    if (def && this.directory.isBlocked(id)) {
      // Refused by the checks across documents (its error is reported): nothing changes. An
      // object applied from an earlier good definition keeps that; a new one is not created.
      settler.cancel(id);
      this.showFromJournal(id);
      return;
    }
    if (def) {
      settler.cancel(id);
      await this.applyDesired(id, def.resource);
      return;
    }
    if (meta) {
      this.showFromJournal(id);
      settler.pend(id);
    }
  }

  /** Objects undefined for a settled window: deleted now, unless something defines them again. */
  private async deleteSettled(ids: string[]): Promise<void> {
    for (const id of ids) {
      await this.withId(id, async () => {
        if (this.directory.index.winner(id) || this.state.owned[id] || !this.state.meta[id]) return;
        await this.deleteDesired(id);
      }).catch((e: unknown) => {
        this.directory.settler.pend(id);
        if (this.health.writable()) throw e;
      });
    }
  }

  /** Put an object known only from the journal (its manifest gone) in the cache. */
  private showFromJournal(id: string): void {
    const [kind, key] = splitId(id);
    const desired = this.state.desired[id];
    if (desired && !this.cache.get(kind)?.has(key)) this.put(desired, this.decorate(desired, id), true);
  }

  /** The object as the API server would return it: metadata and status from the state. */
  private decorate(desired: Resource, id: string): Resource {
    const meta = this.state.meta[id];
    const out = structuredClone(desired);
    if (meta) {
      out.metadata.uid = meta.uid;
      out.metadata.generation = meta.generation;
      out.metadata.creationTimestamp = meta.created;
      out.metadata.finalizers = [...meta.finalizers];
      if (meta.deletionTimestamp) out.metadata.deletionTimestamp = meta.deletionTimestamp;
      else delete out.metadata.deletionTimestamp;
    }
    out.metadata.resourceVersion = String(++this.rv);
    const status = this.state.status[id];
    if (status !== undefined) (out as { status?: unknown }).status = status;
    else delete (out as { status?: unknown }).status;
    return out;
  }

  /** Caller holds the id's lock. */
  private async applyDesired(id: string, r: Resource): Promise<void> {
    let meta = this.state.meta[id];
    const what = `${id.replace("|", " ")} from its manifest`;
    const specHash = hashSpec(r.spec);
    if (!meta) {
      meta = {
        uid: randomUUID(),
        generation: 1,
        specHash,
        created: this.now().toISOString(),
        finalizers: [],
      };
      await this.persist({ t: "meta", id, meta, desired: r }, what);
    } else if (meta.specHash !== specHash) {
      await this.persist(
        { t: "meta", id, meta: { ...meta, generation: meta.generation + 1, specHash }, desired: r },
        what,
      );
    } else if (JSON.stringify(this.state.desired[id]) !== JSON.stringify(r)) {
      await this.persist({ t: "desired", id, obj: r }, what);
    } else this.state.desired[id] = r; // the same content: keep one copy in memory, not two
    const existing = this.cache.get(r.kind)?.get(keyOf(r));
    const next = this.decorate(r, id);
    if (
      existing &&
      JSON.stringify({ ...existing, metadata: { ...existing.metadata, resourceVersion: "" } }) ===
        JSON.stringify({ ...next, metadata: { ...next.metadata, resourceVersion: "" } })
    )
      return;
    this.put(r, next, true);
  }

  /** Caller holds the id's lock. */
  private async deleteDesired(id: string): Promise<void> {
    const meta = this.state.meta[id];
    const [kind, key] = splitId(id);
    const obj = this.cache.get(kind)?.get(key) ?? this.state.desired[id] ?? this.state.owned[id];
    if (meta && meta.finalizers.length > 0 && obj) {
      if (meta.deletionTimestamp) return;
      const updated = { ...meta, deletionTimestamp: this.now().toISOString() };
      await this.persist({ t: "meta", id, meta: updated }, `deletion of ${id.replace("|", " ")}`);
      this.put(obj, this.decorate(obj, id), true);
      return;
    }
    if (meta && meta.finalizers.length > 0)
      this.logger.warn(
        { id },
        "no record of the object's last form (state from an older version): forgotten without cleanup",
      );
    await this.forget(id);
  }

  /** Caller holds the id's lock. The object is gone; a manifest defining it now makes a new one. */
  private async forget(id: string): Promise<void> {
    const [kind, key] = splitId(id);
    await this.persist({ t: "forget", id }, `removal of ${id.replace("|", " ")}`);
    const obj = this.cache.get(kind)?.get(key);
    this.cache.get(kind)?.delete(key);
    if (obj) this.emit(kind, "deleted", obj);
    this.view.markDirty();
    const again = this.directory.index.winner(id);
    if (again && !this.directory.isBlocked(id)) await this.applyDesired(id, again.resource);
  }

  private put(template: Resource, obj: Resource, notify: boolean): void {
    let m = this.cache.get(template.kind);
    if (!m) {
      m = new Map();
      this.cache.set(template.kind, m);
    }
    const existed = m.has(keyOf(template));
    m.set(keyOf(template), obj);
    this.view.markDirty();
    if (notify) this.emit(template.kind, existed ? "modified" : "added", obj);
  }

  private emit(kind: Kind, type: WatchEvent["type"], object: Resource): void {
    for (const h of this.handlers.get(kind) ?? []) h({ type, object } as WatchEvent);
  }

  private withId<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.idLocks.get(id) ?? Promise.resolve()).then(fn);
    const tail = run.catch(() => undefined);
    this.idLocks.set(id, tail);
    void tail.then(() => {
      if (this.idLocks.get(id) === tail) this.idLocks.delete(id);
    });
    return run;
  }

  /** Append a record; the state (journal.state) changes only once it is durable. */
  private async persist(rec: Omit<JournalRecord, "seq">, what: string): Promise<void> {
    this.health.check(what);
    try {
      await this.journal.append(rec);
    } catch (e) {
      if (this.stopping) throw e;
      throw this.health.failed(e, what);
    }
    if (this.journal.backlog >= this.nextCompactAt && !this.compacting) {
      const every = this.opts.compactEvery ?? 20_000;
      this.compacting = this.journal
        .compact()
        .then(() => {
          this.nextCompactAt = every;
        })
        .catch((e: unknown) => {
          this.nextCompactAt = this.journal.backlog + Math.ceil(every / 4);
          this.logger.error({ err: String(e) }, "state compaction failed; the journal keeps growing");
        })
        .finally(() => {
          this.compacting = undefined;
        });
    }
  }

  // --- ResourceStore -------------------------------------------------------------------------

  get<K extends Kind>(kind: K, key: string): ResourceOfKind<K> | undefined {
    const o = this.cache.get(kind)?.get(key);
    return o ? (structuredClone(o) as ResourceOfKind<K>) : undefined;
  }

  list<K extends Kind>(kind: K): ResourceOfKind<K>[] {
    return [...(this.cache.get(kind)?.values() ?? [])] as ResourceOfKind<K>[];
  }

  watch<K extends Kind>(kind: K, handler: (event: WatchEvent<K>) => void): Unsubscribe {
    let set = this.handlers.get(kind);
    if (!set) {
      set = new Set();
      this.handlers.set(kind, set);
    }
    const h = handler as unknown as (e: WatchEvent) => void;
    set.add(h);
    for (const o of this.cache.get(kind)?.values() ?? []) h({ type: "added", object: o } as WatchEvent);
    return () => set?.delete(h);
  }

  private mustGet(kind: Kind, key: string): Resource {
    const o = this.cache.get(kind)?.get(key);
    if (!o) throw new Error(`${kind} ${key} not found`);
    return o;
  }

  async updateStatus<K extends Kind>(
    obj: ResourceOfKind<K>,
    status: NonNullable<ResourceOfKind<K>["status"]>,
  ): Promise<ResourceOfKind<K>> {
    const key = keyOf(obj);
    const id = idOf(obj.kind, key);
    return this.withId(id, async () => {
      const current = this.mustGet(obj.kind, key);
      if (jsonEqual(current.status ?? {}, status)) return current as ResourceOfKind<K>;
      const copy = structuredClone(status);
      await this.persist({ t: "status", id, status: copy }, `status of ${obj.kind} ${key}`);
      const next = {
        ...current,
        metadata: { ...current.metadata, resourceVersion: String(++this.rv) },
        status: copy,
      } as Resource;
      this.put(current, next, true);
      return next as ResourceOfKind<K>;
    });
  }

  async addFinalizer<K extends Kind>(obj: ResourceOfKind<K>, finalizer: string): Promise<ResourceOfKind<K>> {
    const key = keyOf(obj);
    const id = idOf(obj.kind, key);
    return this.withId(id, async () => {
      const current = this.mustGet(obj.kind, key);
      const meta = this.state.meta[id];
      if (!meta || meta.finalizers.includes(finalizer) || meta.deletionTimestamp)
        return current as ResourceOfKind<K>;
      const updated = { ...meta, finalizers: [...meta.finalizers, finalizer] };
      await this.persist({ t: "meta", id, meta: updated }, `finalizer of ${obj.kind} ${key}`);
      const next = this.decorate(current, id);
      this.put(current, next, true);
      return next as ResourceOfKind<K>;
    });
  }

  async removeFinalizer<K extends Kind>(obj: ResourceOfKind<K>, finalizer: string): Promise<void> {
    const key = keyOf(obj);
    const id = idOf(obj.kind, key);
    await this.withId(id, async () => {
      const meta = this.state.meta[id];
      const current = this.cache.get(obj.kind)?.get(key);
      if (!meta || !current || !meta.finalizers.includes(finalizer)) return;
      const updated = { ...meta, finalizers: meta.finalizers.filter((f) => f !== finalizer) };
      if (updated.deletionTimestamp && updated.finalizers.length === 0) return this.forget(id);
      await this.persist({ t: "meta", id, meta: updated }, `finalizer of ${obj.kind} ${key}`);
      this.put(current, this.decorate(current, id), true);
    });
  }

  async create<R extends Resource>(obj: R): Promise<R> {
    // Validated and defaulted like the API server does for a create.
    const { resource, errors } = validateResource(obj);
    if (!resource)
      throw new Error(
        `invalid ${obj.kind} ${obj.metadata.name}: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`,
      );
    const copy = resource as R;
    const id = idOf(copy.kind, keyOf(copy));
    return this.withId(id, async () => {
      if (this.cache.get(copy.kind)?.has(keyOf(copy)))
        throw new Error(`${id.replace("|", " ")} already exists`);
      const meta: Meta = {
        uid: randomUUID(),
        generation: 1,
        specHash: hashSpec(copy.spec),
        created: this.now().toISOString(),
        finalizers: [],
      };
      await this.persist({ t: "meta", id, meta, owned: copy }, `creation of ${id.replace("|", " ")}`);
      const next = this.decorate(copy, id);
      this.put(copy, next, true);
      return next as R;
    });
  }

  async delete(kind: Kind, key: string): Promise<void> {
    const id = idOf(kind, key);
    await this.withId(id, async () => {
      if (!this.state.owned[id])
        throw new Error(`${kind} ${key} is not controller-owned: delete its manifest instead`);
      await this.deleteDesired(id);
    });
  }

  recordEvent(event: Omit<RecordedEvent, "firstTime" | "lastTime" | "count">): void {
    this.events.record(event);
    this.view.markDirty();
  }

  listEvents(regarding?: ObjectReference): RecordedEvent[] {
    return this.events.list(regarding);
  }

  async readSecret(ref: { name: string; namespace?: string }): Promise<Record<string, string>> {
    if (!this.opts.secretsDir)
      throw new Error(`secret ${ref.name}: no --secrets-dir configured for standalone mode`);
    return readSecretFile(this.opts.secretsDir, ref.name);
  }
}
