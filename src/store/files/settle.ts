/**
 * Deleting is the one irreversible act (on real hosts a deleted VM's disks go too), so an object
 * whose manifest disappeared is not deleted at once: it is pending until the directory has
 * settled, i.e. no change was seen for `settleMs`, and it has been pending that long itself. A
 * rename, an editor's save (rename-over, truncate-then-write), a `git checkout` or a tool that
 * regenerates a directory is a burst of removals and additions; what is still defined once the
 * burst is over is kept. The FileStore re-checks the directory itself before it deletes.
 *
 * This module only keeps time: which ids are pending since when, and when the directory last
 * changed. Times come from a monotonic clock (performance.now by default).
 */
export class DeletionSettler {
  private readonly pending = new Map<string, number>();
  private lastChange: number;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    readonly settleMs: number,
    /** Called when the window may have passed; the owner checks `due()`. */
    private readonly onSettled: () => void,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.lastChange = clock();
  }

  /** The directory changed (any add, change or removal): the window starts again. */
  touched(): void {
    this.lastChange = this.clock();
    if (this.pending.size > 0) this.arm();
  }

  pend(id: string): void {
    if (!this.pending.has(id)) this.pending.set(id, this.clock());
    this.arm();
  }

  cancel(id: string): void {
    this.pending.delete(id);
  }

  /** The id was deleted (or needs no deletion any more). */
  done(id: string): void {
    this.pending.delete(id);
  }

  hasPending(): boolean {
    return this.pending.size > 0;
  }

  /** Whether the directory saw no change for the whole window. */
  quiet(): boolean {
    return this.clock() - this.lastChange >= this.settleMs;
  }

  /** Pending ids that may be deleted now (each pending a full window, the directory quiet). */
  due(): string[] {
    if (!this.quiet()) return [];
    const now = this.clock();
    return [...this.pending].filter(([, since]) => now - since >= this.settleMs).map(([id]) => id);
  }

  /** Call `onSettled` once the window has passed (again). */
  arm(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const now = this.clock();
    const oldest = Math.min(...this.pending.values(), now);
    const wait = Math.max(0, this.lastChange + this.settleMs - now, oldest + this.settleMs - now);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.onSettled();
    }, wait + 1);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
