/**
 * FileStore: the ResourceStore of standalone (GitOps directory) mode.
 *
 * Desired state is a directory of manifests, watched with chokidar; the user's files are only
 * ever read. What the API server would keep — uid, generation, finalizers, deletion, status,
 * objects the controller creates — lives in a crash-safe journal (journal.ts) in the state dir.
 *
 * Contracts beyond ResourceStore's:
 * - A file that fails to load changes nothing that it defined: its valid documents are applied,
 *   but no object of it is deleted until the file loads cleanly again (a half-saved edit never
 *   deletes a running VM). Its errors are reported through `errors()` / `onErrors` and an event.
 * - An object defined in two files: the first definition stands, the second is an error.
 * - uid and generation survive restarts; generation increments when spec changes.
 * - Reads return the cached objects: callers must not mutate them (`get` returns a copy).
 * - view.json in the state dir holds the merged view (objects with status, recent events) for
 *   `virtwarden get/describe/events` in another process; it is rewritten at most once a second
 *   and is a convenience copy: the journal is the record.
 */
import { createHash, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { type FSWatcher, watch } from "chokidar";
import { isIgnoredPath, loadText, manifestFiles, validateResource } from "../../api/loader.js";
import type { ManifestError } from "../../api/manifest.js";
import { type Kind, objectKey, type Resource, type ResourceOfKind } from "../../api/types.js";
import type { Logger } from "../../controller/log.js";
import { silentLogger } from "../../controller/log.js";
import type { ObjectReference, RecordedEvent, ResourceStore, Unsubscribe, WatchEvent } from "../types.js";
import { EventLog } from "./events.js";
import { Journal, type JournalRecord } from "./journal.js";
import { readSecretFile } from "./secrets.js";
import { ViewWriter } from "./view.js";

export interface FileStoreOptions {
  manifestDir: string | string[];
  stateDir: string;
  secretsDir?: string;
  logger?: Logger;
  now?: () => Date;
  /** Compact the journal into a snapshot after this many records (default 20,000). */
  compactEvery?: number;
  /** Minimum interval between view.json writes (default 1000 ms). */
  viewIntervalMs?: number;
}

interface Meta {
  uid: string;
  generation: number;
  specHash: string;
  created: string;
  finalizers: string[];
  deletionTimestamp?: string;
}

export interface PersistedState {
  meta: Record<string, Meta>;
  status: Record<string, unknown>;
  owned: Record<string, Resource>;
}

const emptyState = (): PersistedState => ({ meta: {}, status: {}, owned: {} });

/** Journal records fold into the state in place (idempotent: replaying one twice is harmless). */
function fold(s: PersistedState, r: JournalRecord): PersistedState {
  const id = r.id as string;
  switch (r.t) {
    case "meta":
      s.meta[id] = r.meta as Meta;
      break;
    case "status":
      s.status[id] = r.status;
      break;
    case "owned":
      s.owned[id] = r.obj as Resource;
      break;
    case "forget":
      delete s.meta[id];
      delete s.status[id];
      delete s.owned[id];
      break;
  }
  return s;
}

const idOf = (kind: Kind, key: string) => `${kind}|${key}`;
const hashSpec = (spec: unknown) =>
  createHash("sha1")
    .update(JSON.stringify(spec ?? {}))
    .digest("hex");
const keyOf = (r: Pick<Resource, "metadata">) => objectKey(r.metadata);

export class FileStore implements ResourceStore {
  private readonly dirs: string[];
  private readonly journal: Journal<PersistedState>;
  private state: PersistedState = emptyState();
  private readonly cache = new Map<Kind, Map<string, Resource>>();
  private readonly handlers = new Map<Kind, Set<(e: WatchEvent) => void>>();
  private readonly fileObjects = new Map<string, Set<string>>();
  private readonly definedBy = new Map<string, string>();
  /** Objects whose manifest came back while the old object was still being deleted. */
  private readonly reappeared = new Map<string, Resource>();
  private readonly fileErrors = new Map<string, ManifestError[]>();
  private readonly errorListeners = new Set<(errors: ManifestError[]) => void>();
  private readonly events: EventLog;
  private readonly view: ViewWriter;
  private watcher: FSWatcher | undefined;
  private synced = false;
  private rv = 0;
  private compacting: Promise<void> | undefined;
  private readonly logger: Logger;
  private readonly now: () => Date;

  constructor(private readonly opts: FileStoreOptions) {
    this.dirs = (Array.isArray(opts.manifestDir) ? opts.manifestDir : [opts.manifestDir]).map((d) =>
      resolve(d),
    );
    this.journal = new Journal(opts.stateDir, fold, emptyState);
    this.logger = opts.logger ?? silentLogger;
    this.now = opts.now ?? (() => new Date());
    this.events = new EventLog(this.now);
    this.view = new ViewWriter(join(opts.stateDir, "view.json"), opts.viewIntervalMs ?? 1000, () => ({
      resources: [...this.cache.values()].flatMap((m) => [...m.values()]),
      events: this.events.all(),
      errors: this.errors(),
    }));
  }

  // --- lifecycle -----------------------------------------------------------------------------

  async start(): Promise<void> {
    this.state = await this.journal.open();
    for (const [id, obj] of Object.entries(this.state.owned)) this.put(obj, this.decorate(obj, id), false);
    for (const f of await manifestFiles(this.dirs)) await this.loadFile(f);
    // Objects known from the last run whose manifests are gone were deleted while we were down.
    for (const id of Object.keys(this.state.meta)) {
      if (!this.definedBy.has(id) && !this.state.owned[id]) await this.deleteDesired(id);
    }
    this.watcher = watch(this.dirs, {
      ignoreInitial: true,
      ignored: (p: string, st?: { isFile(): boolean }) => !!st?.isFile() && !/\.(ya?ml|json)$/i.test(p),
      awaitWriteFinish: { stabilityThreshold: 50, pollInterval: 10 },
    });
    const reload = (f: string) => {
      this.loadFile(resolve(f)).catch((e: unknown) =>
        this.logger.error({ file: f, err: String(e) }, "cannot load manifest"),
      );
    };
    this.watcher.on("add", reload).on("change", reload);
    this.watcher.on("unlink", (f) => {
      this.removeFile(resolve(f)).catch((e: unknown) =>
        this.logger.error({ file: f, err: String(e) }, "cannot apply deletion"),
      );
    });
    await new Promise<void>((r) => this.watcher?.once("ready", () => r()));
    this.synced = true;
    this.view.markDirty();
  }

  async stop(): Promise<void> {
    await this.watcher?.close();
    this.watcher = undefined;
    await this.compacting;
    await this.journal.flush();
    await this.view.flush();
    await this.journal.close();
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Current manifest errors, by file. */
  errors(): ManifestError[] {
    return [...this.fileErrors.values()].flat();
  }

  onErrors(listener: (errors: ManifestError[]) => void): Unsubscribe {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  // --- manifests -----------------------------------------------------------------------------

  private async loadFile(file: string): Promise<void> {
    for (const root of this.dirs) if (await isIgnoredPath(root, file)) return;
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return this.removeFile(file);
      throw e;
    }
    const result = loadText(text, file);
    const errors = [...result.errors];
    const ids = new Set<string>();
    for (const lr of result.resources) {
      const id = idOf(lr.resource.kind, keyOf(lr.resource));
      const owner = this.definedBy.get(id);
      if (owner && owner !== file) {
        errors.push({
          ...lr.source,
          path: "metadata.name",
          message: `${id.replace("|", " ")} is already defined in ${owner}`,
        });
        continue;
      }
      ids.add(id);
      this.definedBy.set(id, file);
      await this.applyDesired(id, lr.resource);
    }
    const before = this.fileObjects.get(file) ?? new Set<string>();
    if (errors.length === 0) {
      for (const id of before) if (!ids.has(id)) await this.forgetDefinition(id, file);
      this.fileObjects.set(file, ids);
    } else {
      // Keep every object the file defined before: nothing is deleted by a broken edit.
      this.fileObjects.set(file, new Set([...before, ...ids]));
    }
    this.setErrors(file, errors);
  }

  private async removeFile(file: string): Promise<void> {
    for (const id of this.fileObjects.get(file) ?? []) await this.forgetDefinition(id, file);
    this.fileObjects.delete(file);
    this.setErrors(file, []);
  }

  private async forgetDefinition(id: string, file: string): Promise<void> {
    if (this.definedBy.get(id) !== file) return;
    this.definedBy.delete(id);
    this.reappeared.delete(id);
    await this.deleteDesired(id);
  }

  private setErrors(file: string, errors: ManifestError[]): void {
    const had = this.fileErrors.get(file)?.length ?? 0;
    if (errors.length === 0) this.fileErrors.delete(file);
    else this.fileErrors.set(file, errors);
    if (errors.length > 0) {
      for (const e of errors) this.logger.warn({ file: e.file, line: e.line, path: e.path }, e.message);
      this.events.record({
        regarding: { kind: "VirtualMachine", name: file },
        type: "Warning",
        reason: "InvalidManifest",
        action: "Load",
        note: `${errors.length} error(s); first: ${errors[0]?.file}:${errors[0]?.line}: ${errors[0]?.path}: ${errors[0]?.message}`,
      });
    }
    if (errors.length > 0 || had > 0) for (const l of this.errorListeners) l(this.errors());
    this.view.markDirty();
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

  private async applyDesired(id: string, r: Resource): Promise<void> {
    let meta = this.state.meta[id];
    if (meta?.deletionTimestamp) {
      this.reappeared.set(id, r);
      return;
    }
    const specHash = hashSpec(r.spec);
    if (!meta) {
      meta = {
        uid: randomUUID(),
        generation: 1,
        specHash,
        created: this.now().toISOString(),
        finalizers: [],
      };
      await this.persist({ t: "meta", id, meta });
    } else if (meta.specHash !== specHash) {
      meta = { ...meta, generation: meta.generation + 1, specHash };
      await this.persist({ t: "meta", id, meta });
    }
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

  private async deleteDesired(id: string): Promise<void> {
    const meta = this.state.meta[id];
    const [kind, key] = id.split("|") as [Kind, string];
    if (meta && meta.finalizers.length > 0) {
      if (meta.deletionTimestamp) return;
      const updated = { ...meta, deletionTimestamp: this.now().toISOString() };
      await this.persist({ t: "meta", id, meta: updated });
      const obj = this.cache.get(kind)?.get(key);
      if (obj) this.put(obj, this.decorate(obj, id), true);
      return;
    }
    await this.forget(id);
  }

  private async forget(id: string): Promise<void> {
    const [kind, key] = id.split("|") as [Kind, string];
    await this.persist({ t: "forget", id });
    const obj = this.cache.get(kind)?.get(key);
    this.cache.get(kind)?.delete(key);
    if (obj) this.emit(kind, "deleted", obj);
    this.view.markDirty();
    const again = this.reappeared.get(id);
    if (again) {
      this.reappeared.delete(id);
      await this.applyDesired(id, again);
    }
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

  private async persist(rec: Omit<JournalRecord, "seq">): Promise<void> {
    fold(this.state, rec as JournalRecord);
    await this.journal.append(rec);
    if (this.journal.backlog >= (this.opts.compactEvery ?? 20_000) && !this.compacting) {
      this.compacting = this.journal
        .compact(() => this.state)
        .catch((e: unknown) =>
          this.logger.error({ err: String(e) }, "state compaction failed; the journal keeps growing"),
        )
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
    const current = this.mustGet(obj.kind, key);
    if (JSON.stringify(current.status ?? {}) === JSON.stringify(status)) return current as ResourceOfKind<K>;
    const id = idOf(obj.kind, key);
    const copy = structuredClone(status);
    if (this.state.owned[id]) {
      await this.persist({ t: "owned", id, obj: { ...this.state.owned[id], status: copy } });
    }
    await this.persist({ t: "status", id, status: copy });
    const next = {
      ...current,
      metadata: { ...current.metadata, resourceVersion: String(++this.rv) },
      status: copy,
    } as Resource;
    this.put(current, next, true);
    return next as ResourceOfKind<K>;
  }

  async addFinalizer<K extends Kind>(obj: ResourceOfKind<K>, finalizer: string): Promise<ResourceOfKind<K>> {
    const key = keyOf(obj);
    const id = idOf(obj.kind, key);
    const current = this.mustGet(obj.kind, key);
    const meta = this.state.meta[id];
    if (!meta || meta.finalizers.includes(finalizer) || meta.deletionTimestamp)
      return current as ResourceOfKind<K>;
    await this.persist({ t: "meta", id, meta: { ...meta, finalizers: [...meta.finalizers, finalizer] } });
    const next = this.decorate(current, id);
    this.put(current, next, true);
    return next as ResourceOfKind<K>;
  }

  async removeFinalizer<K extends Kind>(obj: ResourceOfKind<K>, finalizer: string): Promise<void> {
    const key = keyOf(obj);
    const id = idOf(obj.kind, key);
    const meta = this.state.meta[id];
    const current = this.cache.get(obj.kind)?.get(key);
    if (!meta || !current || !meta.finalizers.includes(finalizer)) return;
    const updated = { ...meta, finalizers: meta.finalizers.filter((f) => f !== finalizer) };
    if (updated.deletionTimestamp && updated.finalizers.length === 0) {
      await this.forget(id);
      return;
    }
    await this.persist({ t: "meta", id, meta: updated });
    this.put(current, this.decorate(current, id), true);
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
    if (this.cache.get(copy.kind)?.has(keyOf(copy)))
      throw new Error(`${id.replace("|", " ")} already exists`);
    const meta: Meta = {
      uid: randomUUID(),
      generation: 1,
      specHash: hashSpec(copy.spec),
      created: this.now().toISOString(),
      finalizers: [],
    };
    await this.persist({ t: "meta", id, meta });
    await this.persist({ t: "owned", id, obj: copy });
    const next = this.decorate(copy, id);
    this.put(copy, next, true);
    return next as R;
  }

  async delete(kind: Kind, key: string): Promise<void> {
    const id = idOf(kind, key);
    if (!this.state.owned[id])
      throw new Error(`${kind} ${key} is not controller-owned: delete its manifest instead`);
    await this.deleteDesired(id);
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
