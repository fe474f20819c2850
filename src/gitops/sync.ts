/**
 * GitSync: standalone mode's manifests from a Git branch (`virtwarden run --git URL`).
 *
 * The branch is fetched into a bare mirror in the state dir (git.ts) every interval and when the
 * webhook asks. Its tip is checked out into a directory of its own (`trees/<sha>`), every
 * manifest under `--path` is loaded and validated together (the loader, as `virtwarden
 * validate` does), and only a tree without a single error is handed to the store, whole, in
 * place of the last one (FileStore.applyTree).
 *
 * Contracts:
 * - Atomic per commit: a revision is applied whole or not at all. A tip with any error applies
 *   nothing; the revision in force stays, and the failure names the commit and the first
 *   error's file, line and field (all of them are in the sync status). A failed tip is not
 *   validated again; the next commit is.
 * - Only tips are applied: commits pushed between two fetches are skipped (a burst of pushes
 *   converges on the last). A force-push is followed like any new tip.
 * - What a new revision no longer defines is deleted by the store under its settle rule, as a
 *   manifest removed from a directory is: its VMs are stopped and cleaned up by their finalizers.
 * - The revision in force survives restarts (`applied.json`, written after the store took the
 *   tree): a restart starts from it before the first fetch, so nothing is pruned because the
 *   remote is unreachable at start.
 * - Syncs run one at a time; triggers during a sync merge into one more sync after it.
 * - Credentials are files, read by git's hooks (git.ts); nothing here logs them.
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import { Counter, Gauge, type Registry } from "prom-client";
import { loadText, manifestFiles, mergeResults } from "../api/loader.js";
import { formatManifestError, type LoadResult, type ManifestError } from "../api/manifest.js";
import type { Logger } from "../controller/log.js";
import type { ManifestTree, SyncStatus, TreeChange } from "../store/files/index.js";
import type { RecordedEvent } from "../store/types.js";
import { type Commit, type GitCredentials, GitMirror, redactUrl } from "./git.js";

/** What GitSync needs of the store (FileStore in tree mode). */
export interface TreeSink {
  applyTree(tree: ManifestTree): Promise<TreeChange>;
  setSyncStatus(sync: SyncStatus): void;
  recordEvent(event: Omit<RecordedEvent, "firstTime" | "lastTime" | "count">): void;
}

export interface GitSyncOptions {
  url: string;
  branch: string;
  /** The directory of manifests inside the repository ("" or "."; the whole tree). */
  path: string;
  /** How often the branch is fetched (0: only at start and on the webhook). */
  intervalMs: number;
  /** The git data lives in `<stateDir>/git`. */
  stateDir: string;
  credentials?: GitCredentials;
  logger: Logger;
  registry?: Registry;
  now?: () => Date;
}

interface Applied extends Commit {
  appliedAt: string;
}

export type SyncResult =
  | { result: "Synced"; revision: string; change?: TreeChange }
  | { result: "SyncFailed"; stage: "fetch" | "validate" | "apply"; revision?: string; message: string };

const short = (sha: string) => sha.slice(0, 12);

export class GitSync {
  readonly mirror: GitMirror;
  private readonly dir: string;
  private readonly path: string;
  private sink: TreeSink | undefined;
  private applied: Applied | undefined;
  /** The tip that failed to validate (not tried again until the branch moves). */
  private rejected: { sha: string; result: SyncResult } | undefined;
  private status: SyncStatus;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private wanted = false;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly listeners = new Set<(r: SyncResult) => void>();
  private readonly now: () => Date;
  private readonly metrics: ReturnType<typeof gitMetrics> | undefined;

  constructor(private readonly opts: GitSyncOptions) {
    this.dir = join(resolve(opts.stateDir), "git");
    this.mirror = new GitMirror(this.dir, opts.url, opts.branch, opts.credentials);
    this.path = opts.path.replace(/^\.?\/*/, "").replace(/\/+$/, "");
    if (this.path.split("/").includes(".."))
      throw new Error(`--path ${opts.path}: must stay inside the repository`);
    this.now = opts.now ?? (() => new Date());
    this.status = { source: redactUrl(opts.url), branch: opts.branch, path: this.path || "." };
    this.metrics = opts.registry
      ? gitMetrics(opts.registry, () => this.applied?.sha, opts.branch)
      : undefined;
  }

  /** The sync status as `virtwarden get` shows it. */
  syncStatus(): SyncStatus {
    return structuredClone(this.status);
  }

  /** Called with every sync's result (tests, logs). */
  onSync(listener: (r: SyncResult) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The tree in force before the first fetch (FileStore's `tree.initial`): the revision applied
   * last, checked out again from the mirror if its directory is gone. None: nothing applied yet.
   */
  async initial(): Promise<ManifestTree | undefined> {
    const text = await readFile(join(this.dir, "applied.json"), "utf8").catch(() => undefined);
    if (!text) return undefined;
    const applied = JSON.parse(text) as Applied;
    try {
      await this.mirror.init();
      const loaded = await this.load(applied);
      if (loaded.errors.length > 0)
        throw new Error(
          `${loaded.errors.length} error(s); first: ${formatManifestError(loaded.errors[0] as ManifestError)}`,
        );
      this.applied = applied;
      this.status = { ...this.status, revision: applied.sha, lastSyncedTime: applied.appliedAt };
      return loaded.tree;
    } catch (e) {
      // The store then starts with no tree and deletes nothing until the first good fetch.
      this.opts.logger.error(
        { revision: applied.sha, err: String(e) },
        "cannot read the revision applied last: waiting for the first fetch",
      );
      return undefined;
    }
  }

  /** Start syncing into the store: now, every interval, and on `trigger`. */
  start(sink: TreeSink): void {
    this.sink = sink;
    sink.setSyncStatus(this.status);
    this.trigger("start");
    if (this.opts.intervalMs > 0) {
      this.timer = setInterval(() => this.trigger("interval"), this.opts.intervalMs);
      this.timer.unref();
    }
  }

  /** Ask for a sync: at once, or right after the one under way. */
  trigger(why: string): void {
    if (this.stopped || !this.sink) return;
    this.wanted = true;
    this.opts.logger.debug({ why }, "git sync wanted");
    this.running ??= this.loop();
  }

  private async loop(): Promise<void> {
    while (this.wanted && !this.stopped) {
      this.wanted = false;
      const r = await this.syncOnce().catch(
        (e: unknown): SyncResult => ({ result: "SyncFailed", stage: "apply", message: String(e) }),
      );
      for (const l of this.listeners) l(r);
    }
    this.running = undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.abort.abort();
    await this.running;
  }

  private async syncOnce(): Promise<SyncResult> {
    const sink = this.sink;
    if (!sink) throw new Error("not started");
    let tip: Commit;
    try {
      await this.mirror.init();
      tip = await this.mirror.fetch(this.abort.signal);
    } catch (e) {
      // Stopping aborts the fetch: that is no failure of the remote.
      if (this.stopped) return { result: "SyncFailed", stage: "fetch", message: "stopped" };
      return this.failed(sink, {
        result: "SyncFailed",
        stage: "fetch",
        message: `cannot fetch ${this.opts.branch} from ${redactUrl(this.opts.url)}: ${(e as Error).message}`,
      });
    }
    if (tip.sha === this.applied?.sha) return this.synced(sink, tip.sha);
    if (tip.sha === this.rejected?.sha) return this.failed(sink, this.rejected.result, false);
    const loaded = await this.load(tip);
    const errs = loaded.errors;
    if (errs.length > 0) {
      await rm(this.treeDir(tip.sha), { recursive: true, force: true });
      const result: SyncResult = {
        result: "SyncFailed",
        stage: "validate",
        revision: tip.sha,
        message: `commit ${short(tip.sha)} "${tip.subject}" is not applied, ${errs.length} error(s): ${formatManifestError(errs[0] as ManifestError)}${this.stays()}`,
      };
      this.rejected = { sha: tip.sha, result };
      return this.failed(sink, result, true, errs);
    }
    const change = await sink.applyTree(loaded.tree);
    const applied: Applied = { ...tip, appliedAt: this.now().toISOString() };
    await this.writeApplied(applied);
    const before = this.applied;
    this.applied = applied;
    this.rejected = undefined;
    await this.pruneTrees(tip.sha);
    const counts = `${change.added.length} added, ${change.changed.length} changed, ${change.removed.length} removed`;
    const note = `commit ${short(tip.sha)} "${tip.subject}" applied (${counts}${change.removed.length > 0 ? ": deleted once the settle window has passed" : ""})${before ? `; was ${short(before.sha)}` : ""}`;
    this.opts.logger.info(
      {
        revision: tip.sha,
        previous: before?.sha,
        added: change.added,
        changed: change.changed,
        removed: change.removed,
      },
      "synced from git",
    );
    sink.recordEvent({ regarding: this.regarding(), type: "Normal", reason: "Synced", action: "Sync", note });
    return this.synced(sink, tip.sha, change, note);
  }

  private stays(): string {
    return this.applied ? `; ${short(this.applied.sha)} stays in force` : "; nothing applied yet";
  }

  private regarding() {
    return { kind: "GitRepository" as const, name: `${redactUrl(this.opts.url)}#${this.opts.branch}` };
  }

  private synced(sink: TreeSink, sha: string, change?: TreeChange, note?: string): SyncResult {
    const time = this.now().toISOString();
    const last = this.status.lastAttempt;
    const message =
      note ??
      (last?.result === "Synced" && last.revision === sha
        ? last.message
        : `${short(sha)} is the tip of ${this.opts.branch}`);
    this.status = {
      source: this.status.source,
      branch: this.status.branch,
      path: this.status.path,
      revision: sha,
      lastSyncedTime: time,
      lastAttempt: { time, result: "Synced", revision: sha, message },
    };
    sink.setSyncStatus(this.status);
    this.metrics?.synced(this.now());
    return { result: "Synced", revision: sha, ...(change ? { change } : {}) };
  }

  /**
   * Record a failure. `fresh`: a new one (counted, logged, an event); a tip that failed before
   * and is seen again only refreshes the attempt's time.
   */
  private failed(sink: TreeSink, r: SyncResult, fresh = true, errors?: ManifestError[]): SyncResult {
    if (r.result !== "SyncFailed") return r;
    const time = this.now().toISOString();
    const message = r.stage === "fetch" ? `${r.message}${this.stays()}` : r.message;
    const { errors: _previous, ...rest } = this.status;
    this.status = {
      ...rest,
      lastAttempt: { time, result: "SyncFailed", ...(r.revision ? { revision: r.revision } : {}), message },
      ...(errors ? { errors } : !fresh && _previous ? { errors: _previous } : {}),
    };
    sink.setSyncStatus(this.status);
    this.metrics?.failing();
    if (fresh) {
      this.metrics?.failed(r.stage);
      this.opts.logger.warn({ revision: r.revision, stage: r.stage }, message);
      sink.recordEvent({
        regarding: this.regarding(),
        type: "Warning",
        reason: "SyncFailed",
        action: "Sync",
        note: message,
      });
    }
    return { ...r, message };
  }

  private treeDir(sha: string): string {
    return join(this.dir, "trees", sha);
  }

  /** Check a commit out (unless it is already) and load every manifest under the path. */
  private async load(commit: Commit): Promise<{ tree: ManifestTree; errors: ManifestError[] }> {
    const dir = this.treeDir(commit.sha);
    const exists = await stat(dir).then(
      () => true,
      () => false,
    );
    if (!exists) {
      await mkdir(join(this.dir, "trees"), { recursive: true });
      await this.mirror.checkout(commit.sha, dir);
    }
    const root = this.path ? join(dir, ...this.path.split("/")) : dir;
    const where = `commit ${short(commit.sha)}`;
    const rootStat = await stat(root).catch(() => undefined);
    if (!rootStat?.isDirectory())
      return {
        tree: { revision: commit.sha, files: [] },
        errors: [
          {
            file: this.path || ".",
            document: 0,
            line: 0,
            column: 0,
            path: "",
            message: `--path ${this.path}: no such directory in ${where}`,
          },
        ],
      };
    const files: ManifestTree["files"] = [];
    const results: LoadResult[] = [];
    for (const f of await manifestFiles([root])) {
      const path = relative(dir, f).split(sep).join("/");
      const text = await readFile(f, "utf8");
      files.push({ path, text });
      results.push(loadText(text, path));
    }
    const merged = mergeResults(results);
    return { tree: { revision: commit.sha, files }, errors: merged.errors };
  }

  private async writeApplied(a: Applied): Promise<void> {
    const file = join(this.dir, "applied.json");
    await writeFile(`${file}.tmp`, JSON.stringify(a));
    await rename(`${file}.tmp`, file);
  }

  /** Only the revision in force is kept checked out. */
  private async pruneTrees(keep: string): Promise<void> {
    const names = await readdir(join(this.dir, "trees")).catch(() => [] as string[]);
    for (const n of names)
      if (n !== keep) await rm(join(this.dir, "trees", n), { recursive: true, force: true });
  }
}

function gitMetrics(registry: Registry, revision: () => string | undefined, branch: string) {
  new Gauge({
    name: "virtwarden_gitops_revision_info",
    help: "1 for the Git revision in force (run --git): the last commit applied whole",
    labelNames: ["revision", "branch"],
    registers: [registry],
    collect() {
      this.reset();
      const r = revision();
      if (r) this.set({ revision: r, branch }, 1);
    },
  });
  const lastSuccess = new Gauge({
    name: "virtwarden_gitops_last_sync_success_timestamp_seconds",
    help: "when a sync last succeeded: the branch fetched and its tip in force (Unix time)",
    registers: [registry],
  });
  const failing = new Gauge({
    name: "virtwarden_gitops_sync_failing",
    help: "1 while the last sync failed (fetch, or a tip that does not validate), else 0",
    registers: [registry],
  });
  const failures = new Counter({
    name: "virtwarden_gitops_sync_failures_total",
    help: "failed syncs by stage: fetch (the remote), validate (a tip with errors, counted once), apply",
    labelNames: ["stage"],
    registers: [registry],
  });
  for (const stage of ["fetch", "validate", "apply"]) failures.inc({ stage }, 0);
  return {
    synced(now: Date) {
      lastSuccess.set(now.getTime() / 1000);
      failing.set(0);
    },
    failing() {
      failing.set(1);
    },
    failed(stage: string) {
      failures.inc({ stage });
    },
  };
}
