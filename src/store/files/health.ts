/**
 * Whether the state dir takes writes. The controller must not act without recording: once a
 * journal write fails (ENOSPC, EROFS, EACCES, EIO...), the store is unwritable and every write is
 * rejected at once with StateNotWritableError, until a probe write succeeds again (tried every
 * `probeIntervalMs`). Listeners hear each change (the runtime pauses its workers on it); the
 * change is logged with the dir and the errno.
 *
 * The probe must not succeed on a disk that is still as good as full: a tiny record fits in the
 * slack of the journal's last block when a status write does not, and the store would flap. So
 * it first writes and syncs `PROBE_HEADROOM_BYTES` to a scratch file (`probeHeadroom`).
 */
import { open, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../controller/log.js";
import type { Unsubscribe } from "../types.js";

/** Free space a probe demands before the store counts as writable again. */
export const PROBE_HEADROOM_BYTES = 16 * 1024;

/** Write and sync `bytes` to a scratch file in `dir`, then remove it; throws if the dir refuses. */
export async function probeHeadroom(dir: string, bytes = PROBE_HEADROOM_BYTES): Promise<void> {
  const path = join(dir, "probe.tmp");
  try {
    const fh = await open(path, "w");
    try {
      const buf = Buffer.alloc(bytes, 0x20);
      for (let off = 0; off < buf.length; ) {
        const { bytesWritten } = await fh.write(buf, off, buf.length - off);
        if (bytesWritten <= 0) throw Object.assign(new Error(`short write to ${path}`), { code: "ENOSPC" });
        off += bytesWritten;
      }
      await fh.datasync();
    } finally {
      await fh.close();
    }
  } finally {
    await unlink(path).catch(() => undefined);
  }
}

export class StateNotWritableError extends Error {
  constructor(
    readonly stateDir: string,
    /** errno code of the failed write (ENOSPC, EROFS...), or "EUNKNOWN". */
    readonly code: string,
    cause: string,
    what?: string,
  ) {
    super(
      `state dir ${stateDir} is not writable (${code}: ${cause})${what ? `: ${what} not recorded` : ""}; ` +
        `nothing is done until it takes writes again`,
    );
    this.name = "StateNotWritableError";
  }
}

export class StateWriteHealth {
  private failure: { code: string; cause: string } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private probing = false;
  private stopped = false;
  private readonly listeners = new Set<(writable: boolean) => void>();

  constructor(
    private readonly stateDir: string,
    private readonly logger: Logger,
    /** One real write through the journal; throws when the state dir still refuses it. */
    private readonly probe: () => Promise<void>,
    private readonly probeIntervalMs: number,
  ) {}

  writable(): boolean {
    return !this.failure;
  }

  onChange(listener: (writable: boolean) => void): Unsubscribe {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Throw StateNotWritableError if the state dir is known not to take writes. */
  check(what: string): void {
    const f = this.failure;
    if (f) throw new StateNotWritableError(this.stateDir, f.code, f.cause, what);
  }

  /** A write failed: become unwritable (once), start probing; returns the error for the caller. */
  failed(err: unknown, what: string): StateNotWritableError {
    const e = err as NodeJS.ErrnoException;
    const code = e?.code ?? "EUNKNOWN";
    const cause = e instanceof Error ? e.message : String(err);
    const error = new StateNotWritableError(this.stateDir, code, cause, what);
    if (!this.failure) {
      this.failure = { code, cause };
      this.logger.error(
        { stateDir: this.stateDir, errno: code, err: cause },
        `state dir ${this.stateDir} is not writable (${code}): no action is taken until a probe write succeeds`,
      );
      this.schedule();
      for (const l of this.listeners) l(false);
    }
    return error;
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runProbe();
    }, this.probeIntervalMs);
    this.timer.unref();
  }

  private async runProbe(): Promise<void> {
    if (this.probing || !this.failure || this.stopped) return;
    this.probing = true;
    try {
      await this.probe();
      this.failure = undefined;
      this.logger.info(
        { stateDir: this.stateDir },
        `state dir ${this.stateDir} takes writes again: resuming`,
      );
      for (const l of this.listeners) l(true);
    } catch (e) {
      this.logger.debug({ stateDir: this.stateDir, err: String(e) }, "state dir probe write failed");
      this.schedule();
    } finally {
      this.probing = false;
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
