/**
 * The state dir's single-instance lock, held for the life of the controller (as Prometheus and
 * etcd lock their data directories): a second controller on the same state dir is refused at
 * once instead of writing the journal beside the first.
 *
 * Node has no flock(2), and an advisory lock held by a helper process or a native addon would be
 * one more thing that can die on its own. So the lock is a file, `<stateDir>/lock`, naming its
 * holder: pid, the process's start time (field 22 of /proc/<pid>/stat), the boot id and the host.
 * - Taking it is atomic: the content is written and fsynced to a private temp file first, then
 *   link(2)ed to `lock`, which fails if `lock` exists (a lock file is never seen half-written).
 * - A lock left by a process that is provably gone is taken over: its pid is not alive, or is
 *   alive but started at another time (the pid was reused), or the machine rebooted since (boot
 *   id). A SIGKILLed controller's lock never blocks its restart.
 * - Takeover moves the stale file aside with rename(2) and checks that what it moved is exactly
 *   what it judged stale; if another process took over in between, its lock is put back.
 * - Refused, never taken over: a holder that is alive, one on another host (its liveness cannot
 *   be checked from here), or a lock file that is not ours to read.
 * Assumes a local filesystem and one pid namespace per host name (a container sharing the state
 * dir with another pid namespace must have its own host name, as containers do by default).
 */
import { randomUUID } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync } from "node:fs";
import { link, mkdir, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join, resolve } from "node:path";

export interface LockHolder {
  pid: number;
  /** Start time of the process in clock ticks since boot, from /proc/<pid>/stat ("" if unknown). */
  startTicks: string;
  bootId: string;
  hostname: string;
  /** When the holder took the lock (ISO-8601), for people. */
  startedAt: string;
  /** Tells this holder's lock from any other one of the same process. */
  token: string;
}

export class StateDirLockedError extends Error {
  constructor(
    readonly stateDir: string,
    readonly holder: LockHolder,
  ) {
    const where = holder.hostname !== hostname() ? ` on host ${holder.hostname}` : "";
    super(
      `state dir ${stateDir} is locked by pid ${holder.pid}${where} (started ${holder.startedAt}); ` +
        `another virtwarden is running on it`,
    );
    this.name = "StateDirLockedError";
  }
}

/** Lock files held by this process (a same-pid lock file not listed here is a leftover). */
const heldHere = new Set<string>();

/** Start time of a process in clock ticks since boot, or undefined if there is no such process. */
export function processStartTicks(pid: number | "self"): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "";
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Whether the holder of a lock is provably gone (so its lock may be taken over). */
export function holderIsGone(h: LockHolder): boolean {
  if (h.hostname !== hostname()) return false;
  const boot = bootId();
  if (h.bootId && boot && h.bootId !== boot) return true;
  if (h.pid === process.pid && h.startTicks === (processStartTicks("self") ?? "")) return false;
  if (!pidAlive(h.pid)) return true;
  const ticks = processStartTicks(h.pid);
  if (ticks === undefined) return !pidAlive(h.pid);
  return h.startTicks !== "" && ticks !== h.startTicks;
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    if (typeof h.pid !== "number" || typeof h.token !== "string") return undefined;
    return {
      pid: h.pid,
      startTicks: String(h.startTicks ?? ""),
      bootId: String(h.bootId ?? ""),
      hostname: String(h.hostname ?? ""),
      startedAt: String(h.startedAt ?? "an unknown time"),
      token: h.token,
    };
  } catch {
    return undefined;
  }
}

function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class StateDirLock {
  private released = false;

  private constructor(
    readonly path: string,
    readonly holder: LockHolder,
  ) {}

  /**
   * Take the lock of `stateDir` (created if missing), or throw StateDirLockedError naming the
   * holder. `onTakeover` hears about a stale lock taken over (for a log line).
   */
  static async acquire(stateDir: string, onTakeover?: (stale: LockHolder) => void): Promise<StateDirLock> {
    const dir = resolve(stateDir);
    await mkdir(dir, { recursive: true });
    const path = join(dir, "lock");
    const holder: LockHolder = {
      pid: process.pid,
      startTicks: processStartTicks("self") ?? "",
      bootId: bootId(),
      hostname: hostname(),
      startedAt: new Date().toISOString(),
      token: randomUUID(),
    };
    const text = `${JSON.stringify(holder)}\n`;
    const tmp = join(dir, `lock.${process.pid}.${holder.token}.tmp`);
    await writeFile(tmp, text);
    const fd = openSync(tmp, "r+");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      for (let attempt = 0; attempt < 10; attempt++) {
        try {
          await link(tmp, path);
          syncDir(dir);
          heldHere.add(path);
          return new StateDirLock(path, holder);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        }
        let current: string;
        try {
          current = await readFile(path, "utf8");
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
          throw e;
        }
        const other = parseHolder(current);
        if (!other)
          throw new Error(
            `state dir ${dir} has a lock file ${path} that is not virtwarden's; remove it if no virtwarden runs on this dir`,
          );
        // Our own pid: a lock of this process that a stopped store could not remove is a leftover,
        // one that a running store of this process holds is as taken as any other.
        const ours = other.pid === process.pid && other.startTicks === holder.startTicks;
        if (ours ? heldHere.has(path) : !holderIsGone(other)) throw new StateDirLockedError(dir, other);
        const aside = join(dir, `lock.stale.${process.pid}.${holder.token}`);
        try {
          await rename(path, aside);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
          throw e;
        }
        const moved = await readFile(aside, "utf8");
        if (moved !== current) {
          // Another process took over between our read and our rename: its lock goes back.
          await link(aside, path).catch(() => undefined);
        } else onTakeover?.(other);
        await unlink(aside).catch(() => undefined);
      }
      throw new Error(`state dir ${dir}: cannot take the lock ${path} (it keeps changing)`);
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }

  /** Whether the lock file still names this holder (someone may have removed or replaced it). */
  async stillHeld(): Promise<boolean> {
    try {
      return parseHolder(await readFile(this.path, "utf8"))?.token === this.holder.token;
    } catch {
      return false;
    }
  }

  /** Remove the lock if it is still ours. A lock that cannot be removed is stale once we exit. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    heldHere.delete(this.path);
    if (await this.stillHeld()) await unlink(this.path);
  }
}
