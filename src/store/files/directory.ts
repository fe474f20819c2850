/**
 * The watched manifest directory of the FileStore: reads files into the DefinitionIndex, reports
 * their errors, and decides when a disappeared definition may become a deletion (settle.ts).
 * What the objects become is the store's business, through `DirectoryHooks`.
 *
 * Guarantees:
 * - Loads, removals and settle passes run one at a time, in the order the watcher saw them.
 * - Before deleting anything, a settle pass reads the directory itself: a file the watcher missed
 *   is loaded, one that vanished unseen is removed, and a root directory that was removed and
 *   made again (which chokidar stops watching) is watched anew. A missing root deletes nothing:
 *   deletions wait until it is back (an unmounted volume or a tool half-way is not a deletion).
 * - The same full read runs once the watcher is ready and then every `rescanMs`: whatever the
 *   watcher missed (an add, change or removal) is corrected; removals still only pend.
 * - After each load or removal the checks across documents run over all standing definitions;
 *   the ids they flag are `isBlocked` (the store does not apply them), their errors are the
 *   file's errors.
 */
import { readFile, stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { type FSWatcher, watch } from "chokidar";
import { checkAcrossDocuments } from "../../api/addresses.js";
import { isIgnoredPath, loadText, manifestFiles } from "../../api/loader.js";
import type { ManifestError, SkippedDocument } from "../../api/manifest.js";
import { objectKey } from "../../api/types.js";
import type { Logger } from "../../controller/log.js";
import type { Unsubscribe } from "../types.js";
import { type Definition, DefinitionIndex } from "./definitions.js";
import type { EventLog } from "./events.js";
import { DeletionSettler } from "./settle.js";
import { idOf } from "./state.js";

export interface DirectoryHooks {
  /** Bring these objects in line with the current definitions. */
  resolve(ids: Iterable<string>): Promise<void>;
  /** These pending objects have been undefined for a settled window: delete them. */
  settled(ids: string[]): Promise<void>;
  /** False while nothing may be deleted (the state dir is unwritable). */
  mayDelete(): boolean;
  /** Errors or definitions changed (view.json is due). */
  changed(): void;
  /** When the object was created, if it exists (the controller orders address claims by it). */
  createdAt?(id: string): string | undefined;
}

/**
 * A whole tree of manifests handed to the store at once (`run --git`: one commit, validated
 * whole before it is handed in). Paths are relative to the tree's root and name the files in
 * errors and in the index.
 */
export interface ManifestTree {
  /** What the tree is (a commit id): messages name it. */
  revision: string;
  files: { path: string; text: string }[];
}

/** What a tree changed: ids defined now that were not, ids whose definition changed, ids no longer defined. */
export interface TreeChange {
  added: string[];
  changed: string[];
  removed: string[];
}

/** Not created yet: after every existing object, in load order (a valid Date, far ahead). */
const notYetCreated = (seq: number) => new Date(8e15 + seq).toISOString();

const stampOf = (st: { ino: number; size: number; mtimeMs: number }) => `${st.ino}:${st.size}:${st.mtimeMs}`;

/**
 * Which directory a root path names. Not the inode alone: a directory removed and made again
 * often gets the freed inode back (ext4 does, at once), and chokidar's watch of the old one is
 * dead; the birth time tells the two apart.
 */
async function rootStamp(dir: string): Promise<string> {
  return stat(dir).then(
    (st) => `${st.ino}:${st.birthtimeMs}`,
    () => "missing",
  );
}

export class ManifestDirectory {
  readonly index = new DefinitionIndex();
  readonly settler: DeletionSettler;
  private readonly reportedErrors = new Map<string, ManifestError[]>();
  private readonly errorListeners = new Set<(errors: ManifestError[]) => void>();
  private ops: Promise<void> = Promise.resolve();
  private watcher: FSWatcher | undefined;
  private readonly rootStamps = new Map<string, string>();
  private watching = false;
  private closed = false;
  /** Errors of the checks across documents, by file; the ids they name are not applied. */
  private crossErrors = new Map<string, ManifestError[]>();
  private blockedIds = new Set<string>();
  private rescanTimer: NodeJS.Timeout | undefined;
  /** Documents of other API groups, by file (left alone; counted in the load summary). */
  private readonly skipped = new Map<string, SkippedDocument[]>();
  /** Tree mode: the revision of the tree in the index (none yet: nothing may be deleted). */
  private treeRevision: string | undefined;

  constructor(
    private readonly dirs: string[],
    settleMs: number,
    private readonly logger: Logger,
    private readonly events: EventLog,
    private readonly hooks: DirectoryHooks,
    /** How often the whole directory is read again, whatever the watcher saw (0: never). */
    private readonly rescanMs = 30_000,
    /**
     * Tree mode (no directories watched): the definitions come only from whole trees handed in
     * (`replaceTree`); `initialTree` gives the one to start from, if any.
     */
    private readonly initialTree?: () => Promise<ManifestTree | undefined>,
  ) {
    this.settler = new DeletionSettler(settleMs, () =>
      this.op(() =>
        this.settlePass().finally(() => {
          if (this.settler.hasPending()) this.settler.arm();
        }),
      ),
    );
  }

  /** Read every manifest into the index (nothing resolved yet). */
  async readAll(): Promise<void> {
    if (this.initialTree) {
      const tree = await this.initialTree();
      if (tree) this.readTree(tree);
      this.recheck();
      return;
    }
    for (const f of await manifestFiles(this.dirs)) await this.readIntoIndex(f);
    this.recheck();
  }

  /**
   * What the directory holds as last read: the files, the objects they define, the documents
   * with errors, and the documents of other API groups it left alone (a Deployment, an Argo CD
   * Application, a Flux Kustomization next to the VMs).
   */
  summary(): { files: number; resources: number; errors: number; skipped: SkippedDocument[] } {
    const files = new Set([...this.index.knownFiles(), ...this.skipped.keys()]);
    let errors = 0;
    for (const f of this.index.knownFiles()) errors += this.errorsOf(f).length;
    return {
      files: files.size,
      resources: this.index.definedIds().length,
      errors,
      skipped: [...this.skipped.values()].flat(),
    };
  }

  /** Whether the standing definition of this id is refused by the checks across documents. */
  isBlocked(id: string): boolean {
    return this.blockedIds.has(id);
  }

  /** Start watching; the settle window starts now. */
  async watch(): Promise<void> {
    this.refreshErrors(this.index.knownFiles());
    if (this.initialTree) {
      // Tree mode: nothing to watch or re-read; the settle window starts now.
      this.watching = true;
      this.settler.touched();
      return;
    }
    await this.startWatcher();
    this.watching = true;
    this.settler.touched();
    // A file added, changed or removed between readAll and the watcher being ready was seen by
    // neither (the watcher ignores what it finds initially, and may miss what changes while it
    // lists): the whole listing is reconciled with the index now, and again every `rescanMs`,
    // so that no missed watcher event of any kind stays missed. Removals found this way only
    // pend (settle.ts): nothing is deleted hastily.
    this.op(async () => void (await this.reconcile("after starting to watch it")));
    if (this.rescanMs > 0 && !this.closed) {
      this.rescanTimer = setInterval(() => {
        this.op(async () => void (await this.reconcile("for the periodic check")));
      }, this.rescanMs);
      this.rescanTimer.unref();
    }
  }

  /**
   * Read the directory itself and bring the index in line: load what is new or changed, remove
   * what is gone. A missing or unreadable root changes nothing (returns false).
   */
  private async reconcile(why: string): Promise<boolean> {
    if (this.initialTree) return true; // tree mode: the index is the whole last tree
    let listed: string[];
    try {
      for (const d of this.dirs) {
        const now = await rootStamp(d);
        if (now === "missing") throw new Error(`${d} is missing`);
        if (now !== this.rootStamps.get(d) && this.watching) {
          this.logger.info({ dir: d }, "manifest directory was replaced: watching the new one");
          await this.watcher?.close();
          await this.startWatcher();
        }
      }
      listed = await manifestFiles(this.dirs);
    } catch (e) {
      this.logger.warn({ err: String(e) }, `cannot read the manifest directory ${why}: deletions wait`);
      return false;
    }
    const present = new Set(listed);
    for (const f of listed) {
      if (this.closed) return false;
      const st = await stat(f).catch(() => undefined);
      if (!st || stampOf(st) !== this.index.stampOf(f)) await this.loadFile(f);
    }
    for (const f of this.index.knownFiles()) if (!present.has(f)) await this.removeFile(f);
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.rescanTimer) clearInterval(this.rescanTimer);
    this.rescanTimer = undefined;
    this.settler.stop();
    await this.watcher?.close();
    this.watcher = undefined;
    await this.ops;
  }

  /** The revision of the tree in force (tree mode). */
  revision(): string | undefined {
    return this.treeRevision;
  }

  /** Put a whole tree into the index, in place of every file it held; nothing resolved. */
  private readTree(tree: ManifestTree): { ids: Set<string>; change: TreeChange } {
    const before = new Map(this.index.definedIds().map((id) => [id, this.index.winner(id)?.resource]));
    const ids = new Set<string>();
    const present = new Set<string>();
    for (const f of tree.files) {
      present.add(f.path);
      const result = loadText(f.text, f.path);
      if (result.skipped?.length) this.skipped.set(f.path, result.skipped);
      else this.skipped.delete(f.path);
      const defs = new Map<string, Definition>();
      for (const lr of result.resources)
        defs.set(idOf(lr.resource.kind, objectKey(lr.resource.metadata)), lr);
      for (const id of this.index.setFile(f.path, defs, result.errors, `${tree.revision}:${f.path}`))
        ids.add(id);
    }
    for (const f of this.index.knownFiles())
      if (!present.has(f)) for (const id of this.index.removeFile(f)) ids.add(id);
    for (const f of [...this.skipped.keys()]) if (!present.has(f)) this.skipped.delete(f);
    this.treeRevision = tree.revision;
    const change: TreeChange = { added: [], changed: [], removed: [] };
    for (const id of ids) {
      const now = this.index.winner(id)?.resource;
      const was = before.get(id);
      if (now && !before.has(id)) change.added.push(id);
      else if (!now && before.has(id)) change.removed.push(id);
      else if (now && JSON.stringify(now) !== JSON.stringify(was)) change.changed.push(id);
    }
    return { ids, change };
  }

  /**
   * Tree mode: the index becomes this tree, in one operation (after every operation queued
   * before it, before any queued after it): every definition it adds or changes is applied
   * before the call resolves; what it no longer defines is pending deletion under the settle
   * rule, as a manifest removed from a directory is.
   */
  replaceTree(tree: ManifestTree): Promise<TreeChange> {
    return new Promise<TreeChange>((resolveTree, reject) => {
      this.op(async () => {
        try {
          this.settler.touched();
          const { ids, change } = this.readTree(tree);
          const cross = this.recheck();
          await this.hooks.resolve([...ids, ...cross.ids]);
          this.refreshErrors([...this.reportedErrors.keys(), ...this.index.knownFiles(), ...cross.files]);
          resolveTree(change);
        } catch (e) {
          reject(e);
        }
      });
    });
  }

  /** Run after every manifest operation queued so far. */
  op(fn: () => Promise<void>): void {
    this.ops = this.ops
      .then(() => (this.closed ? undefined : fn()))
      .catch((e: unknown) => this.logger.error({ err: String(e) }, "cannot apply a manifest change"));
  }

  errors(): ManifestError[] {
    return [...this.reportedErrors.values()].flat();
  }

  onErrors(listener: (errors: ManifestError[]) => void): Unsubscribe {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  private async startWatcher(): Promise<void> {
    for (const d of this.dirs) this.rootStamps.set(d, await rootStamp(d));
    const watcher = watch(this.dirs, {
      ignoreInitial: true,
      // Hidden entries (.git and the like) are never manifests: not even watched.
      ignored: (p: string, st?: { isFile(): boolean }) =>
        (!this.dirs.includes(p) && basename(p).startsWith(".")) ||
        (!!st?.isFile() && !/\.(ya?ml|json)$/i.test(p)),
      awaitWriteFinish: { stabilityThreshold: 50, pollInterval: 10 },
    });
    this.watcher = watcher;
    const changed = (f: string) => {
      this.settler.touched();
      this.op(() => this.loadFile(resolve(f)));
    };
    watcher.on("add", changed).on("change", changed);
    watcher.on("unlink", (f) => {
      this.settler.touched();
      this.op(() => this.removeFile(resolve(f)));
    });
    watcher.on("addDir", () => this.settler.touched());
    watcher.on("unlinkDir", (d) => {
      this.settler.touched();
      // The root itself went: whatever takes its place is a new directory to watch anew.
      const root = resolve(d);
      if (this.dirs.includes(root)) this.rootStamps.set(root, "lost");
    });
    watcher.on("error", (e) => this.logger.error({ err: String(e) }, "manifest watcher error"));
    await new Promise<void>((r) => watcher.once("ready", () => r()));
  }

  /** Read a file into the index; returns the ids whose definitions it changed (or may have). */
  private async readIntoIndex(file: string): Promise<Set<string>> {
    for (const root of this.dirs) if (await isIgnoredPath(root, file)) return new Set();
    let text: string;
    let stamp: string;
    try {
      stamp = stampOf(await stat(file));
      text = await readFile(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        this.skipped.delete(file);
        return this.index.removeFile(file);
      }
      throw e;
    }
    const result = loadText(text, file);
    if (result.skipped?.length) this.skipped.set(file, result.skipped);
    else this.skipped.delete(file);
    const defs = new Map<string, Definition>();
    for (const lr of result.resources) defs.set(idOf(lr.resource.kind, objectKey(lr.resource.metadata)), lr);
    return this.index.setFile(file, defs, result.errors, stamp);
  }

  private async loadFile(file: string): Promise<void> {
    const ids = await this.readIntoIndex(file);
    const cross = this.recheck();
    await this.hooks.resolve([...ids, ...cross.ids]);
    this.refreshErrors([file, ...this.index.filesOf(ids), ...cross.files]);
  }

  private async removeFile(file: string): Promise<void> {
    this.skipped.delete(file);
    const ids = this.index.removeFile(file);
    const cross = this.recheck();
    await this.hooks.resolve([...ids, ...cross.ids]);
    this.refreshErrors([file, ...this.index.filesOf(ids), ...cross.files]);
  }

  /**
   * Run the checks across documents (addresses.ts) over every standing definition, in load
   * order. Returns the ids whose refusal changed and the files whose errors did.
   */
  private recheck(): { ids: Set<string>; files: Set<string> } {
    // In the controller's order (findAddressConflicts: by creation): objects that exist first,
    // then new ones in load order, so the later claimant is the newer document.
    const standing = this.index.standing().map((s, i) => ({
      ...s,
      resource: {
        ...s.resource,
        metadata: {
          ...s.resource.metadata,
          creationTimestamp: this.hooks.createdAt?.(s.id) ?? notYetCreated(i),
        },
      } as typeof s.resource,
    }));
    const errors = checkAcrossDocuments(standing);
    const byFile = new Map<string, ManifestError[]>();
    const blocked = new Set<string>();
    for (const e of errors) {
      const list = byFile.get(e.file);
      if (list) list.push(e);
      else byFile.set(e.file, [e]);
      for (const s of standing)
        if (s.file === e.file && s.resource.kind === e.kind && s.resource.metadata.name === e.name)
          blocked.add(s.id);
    }
    const ids = new Set<string>();
    for (const id of blocked) if (!this.blockedIds.has(id)) ids.add(id);
    for (const id of this.blockedIds) if (!blocked.has(id)) ids.add(id);
    const files = new Set<string>([...byFile.keys(), ...this.crossErrors.keys()]);
    this.blockedIds = blocked;
    this.crossErrors = byFile;
    return { ids, files };
  }

  private errorsOf(file: string): ManifestError[] {
    return [...this.index.errorsOf(file), ...(this.crossErrors.get(file) ?? [])];
  }

  private refreshErrors(files: Iterable<string>): void {
    let changed = false;
    for (const file of new Set(files)) {
      const errors = this.errorsOf(file);
      const had = this.reportedErrors.get(file) ?? [];
      if (JSON.stringify(had) === JSON.stringify(errors)) continue;
      changed = true;
      if (errors.length === 0) {
        this.reportedErrors.delete(file);
        continue;
      }
      this.reportedErrors.set(file, errors);
      for (const e of errors) this.logger.warn({ file: e.file, line: e.line, path: e.path }, e.message);
      this.events.record({
        regarding: { kind: "VirtualMachine", name: file },
        type: "Warning",
        reason: "InvalidManifest",
        action: "Load",
        note: `${errors.length} error(s); first: ${errors[0]?.file}:${errors[0]?.line}: ${errors[0]?.path}: ${errors[0]?.message}`,
      });
    }
    if (!changed) return;
    for (const l of this.errorListeners) l(this.errors());
    this.hooks.changed();
  }

  /**
   * A settle pass: once the directory is quiet, read it again (the watcher may have missed or
   * misordered events, or lost a directory that was removed and made again), then hand the
   * pending objects that nothing defines to the store for deletion.
   */
  private async settlePass(): Promise<void> {
    // Not before the watcher runs; not while unwritable (the store resolves everything again).
    if (!this.settler.hasPending() || !this.watching || !this.hooks.mayDelete()) return;
    // Tree mode before any tree: an empty index says nothing about what should exist.
    if (this.initialTree && this.treeRevision === undefined) return;
    if (!this.settler.quiet()) return;
    if (!(await this.reconcile("before deleting"))) {
      this.settler.touched();
      return;
    }
    const due = this.settler.due().filter((id) => !this.index.winner(id));
    for (const id of due) this.settler.done(id);
    if (due.length > 0) await this.hooks.settled(due);
  }
}
