/**
 * view.json: the merged view (objects with status, events, manifest errors) for CLI commands run
 * in another process. Written atomically (temp file + rename), at most once per interval, and
 * throttled further when a write is slow (10x its own duration), so it never dominates a large
 * controller's time.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import type { ManifestError } from "../../api/manifest.js";
import type { Resource } from "../../api/types.js";
import type { RecordedEvent } from "../types.js";

/** Where the manifests come from in `run --git` mode, and how the last sync went. */
export interface SyncStatus {
  /** The remote (credentials in the URL redacted), branch and path in it. */
  source: string;
  branch: string;
  path: string;
  /** The revision in force: the last one applied whole (absent: none yet). */
  revision?: string;
  /** When the last sync succeeded (the tip fetched and in force). */
  lastSyncedTime?: string;
  /** The last attempt: its time, result, the revision it was about, and what happened. */
  lastAttempt?: { time: string; result: "Synced" | "SyncFailed"; revision?: string; message: string };
  /** The errors of the revision that failed to validate (the last attempt's), if that is why it failed. */
  errors?: ManifestError[];
}

export interface View {
  writtenAt?: string;
  resources: Resource[];
  events: RecordedEvent[];
  errors: ManifestError[];
  sync?: SyncStatus;
}

export class ViewWriter {
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  /** Every write goes through this chain: two writes never race on the temp file. */
  private chain: Promise<void> = Promise.resolve();
  private nextAllowed = 0;
  /** Off until the store holds the state dir's lock: a refused store never writes the view. */
  enabled = false;

  constructor(
    private readonly path: string,
    private readonly intervalMs: number,
    private readonly snapshot: () => View,
  ) {}

  markDirty(): void {
    this.dirty = true;
    if (!this.enabled) return;
    if (this.timer) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        void this.enqueueWrite();
      },
      Math.max(0, this.nextAllowed - Date.now()),
    );
    this.timer.unref();
  }

  private enqueueWrite(): Promise<void> {
    this.chain = this.chain.then(() => this.write()).catch(() => undefined);
    return this.chain;
  }

  private async write(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const started = Date.now();
    const view = { ...this.snapshot(), writtenAt: new Date().toISOString() };
    const tmp = `${this.path}.tmp`;
    await writeFile(tmp, JSON.stringify(view));
    await rename(tmp, this.path);
    const took = Date.now() - started;
    this.nextAllowed = Date.now() + Math.max(this.intervalMs, took * 10);
  }

  /** Write now (at shutdown), after any write under way. */
  async flush(): Promise<void> {
    if (!this.enabled) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.dirty = true;
    this.chain = this.chain.then(() => this.write());
    await this.chain;
  }
}

export async function readView(path: string): Promise<View> {
  return JSON.parse(await readFile(path, "utf8")) as View;
}
