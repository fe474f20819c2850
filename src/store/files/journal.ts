/**
 * A crash-safe record store: an append-only journal of checksummed JSON lines plus a snapshot.
 *
 * Guarantees:
 * - `append` resolves only once its record is on disk (fdatasync). Appends arriving while a
 *   flush is under way are written together by the next one (group commit), so thousands of
 *   status updates a second cost a handful of syncs.
 * - A process killed at any instant loses no acknowledged record and corrupts nothing: a torn
 *   last line fails its CRC and is dropped (and cut off) at the next open.
 * - `compact` writes the folded state to snapshot.json.tmp, fsyncs it, renames it over
 *   snapshot.json, fsyncs the directory, and only then starts a new empty journal; a crash at any
 *   step leaves either the old snapshot + journal or the new snapshot (+ an old journal whose
 *   records are already folded in, which replay tolerates because records are idempotent).
 *
 * Records are opaque to this module except for `seq`, which makes replay idempotent.
 */
import { closeSync, fsyncSync, openSync } from "node:fs";
import { mkdir, open, readFile, rename, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE), the checksum of each journal line; node:zlib's crc32 needs Node 22. */
export function crc32(text: string): number {
  const buf = Buffer.from(text, "utf8");
  let c = 0xffffffff;
  for (const b of buf) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export interface JournalRecord {
  seq: number;
  [k: string]: unknown;
}

export interface Snapshot<S> {
  seq: number;
  state: S;
}

function encode(rec: JournalRecord): string {
  const body = JSON.stringify(rec);
  return `${crc32(body).toString(16).padStart(8, "0")} ${body}\n`;
}

/** Parse journal text; stops at the first torn or corrupt line. Returns records and valid length. */
export function decodeJournal(text: string): {
  records: JournalRecord[];
  validBytes: number;
  corrupt: boolean;
} {
  const records: JournalRecord[] = [];
  let offset = 0;
  while (offset < text.length) {
    const nl = text.indexOf("\n", offset);
    if (nl < 0) return { records, validBytes: Buffer.byteLength(text.slice(0, offset)), corrupt: true };
    const line = text.slice(offset, nl);
    const sp = line.indexOf(" ");
    const body = line.slice(sp + 1);
    if (sp !== 8 || Number.parseInt(line.slice(0, 8), 16) !== crc32(body)) {
      return { records, validBytes: Buffer.byteLength(text.slice(0, offset)), corrupt: true };
    }
    try {
      records.push(JSON.parse(body) as JournalRecord);
    } catch {
      return { records, validBytes: Buffer.byteLength(text.slice(0, offset)), corrupt: true };
    }
    offset = nl + 1;
  }
  return { records, validBytes: Buffer.byteLength(text), corrupt: false };
}

export class Journal<S> {
  private fd: Awaited<ReturnType<typeof open>> | undefined;
  private seq = 0;
  private pending: { line: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  private io: Promise<void> = Promise.resolve();
  private batchScheduled = false;
  private recordsSinceSnapshot = 0;
  private closed = false;

  constructor(
    readonly dir: string,
    private readonly fold: (state: S, rec: JournalRecord) => S,
    private readonly empty: () => S,
  ) {}

  get journalPath(): string {
    return join(this.dir, "journal.log");
  }

  get snapshotPath(): string {
    return join(this.dir, "snapshot.json");
  }

  /** Records appended since the last snapshot (a compaction hint). */
  get backlog(): number {
    return this.recordsSinceSnapshot;
  }

  /** Read snapshot + journal (cutting off a torn tail) and open the journal for appends. */
  async open(): Promise<S> {
    await mkdir(this.dir, { recursive: true });
    const { state, seq } = await readState(this.dir, this.fold, this.empty, { repair: true });
    this.seq = seq;
    this.fd = await open(this.journalPath, "a");
    return state;
  }

  /** Append a record; resolves once it is durable. */
  append(rec: Omit<JournalRecord, "seq">): Promise<void> {
    if (this.closed || !this.fd) return Promise.reject(new Error("journal is closed"));
    const line = encode({ ...rec, seq: ++this.seq } as JournalRecord);
    this.recordsSinceSnapshot++;
    return new Promise((resolve, reject) => {
      this.pending.push({ line, resolve, reject });
      if (!this.batchScheduled) {
        this.batchScheduled = true;
        this.serial(() => this.writeBatch());
      }
    });
  }

  /** Every use of the file descriptor goes through this chain: writes and compaction never overlap. */
  private serial(op: () => Promise<void>): Promise<void> {
    const next = this.io.then(op);
    this.io = next.catch(() => undefined);
    return next;
  }

  private async writeBatch(): Promise<void> {
    this.batchScheduled = false;
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    try {
      const fd = this.fd;
      if (!fd) throw new Error("journal is closed");
      await fd.write(batch.map((b) => b.line).join(""));
      await fd.datasync();
      for (const b of batch) b.resolve();
    } catch (e) {
      for (const b of batch) b.reject(e as Error);
    }
  }

  /** Wait until everything appended so far is durable. */
  async flush(): Promise<void> {
    await this.serial(async () => undefined);
  }

  /**
   * Write the state as the snapshot and start a new journal (see the module comment for safety).
   * `state` is read when the compaction runs, in the write chain: it then holds every record
   * appended so far, written or still pending (pending ones land in the new journal, and replay
   * skips them as older than the snapshot).
   */
  compact(state: () => S): Promise<void> {
    return this.serial(async () => {
      const seq = this.seq;
      const backlog = this.recordsSinceSnapshot;
      const tmp = `${this.snapshotPath}.tmp`;
      const snap: Snapshot<S> = { seq, state: state() };
      await writeFile(tmp, JSON.stringify(snap));
      const fd = openSync(tmp, "r+");
      fsyncSync(fd);
      closeSync(fd);
      await rename(tmp, this.snapshotPath);
      syncDir(this.dir);
      await this.fd?.close();
      await truncate(this.journalPath, 0);
      this.fd = await open(this.journalPath, "a");
      await this.fd.sync();
      this.recordsSinceSnapshot = Math.max(0, this.recordsSinceSnapshot - backlog);
    });
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    await this.serial(async () => {
      await this.fd?.close();
      this.fd = undefined;
    });
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

/**
 * Fold snapshot + journal into state. With `repair`, a torn journal tail is cut off so new
 * appends follow the last good record. Records with seq <= the snapshot's are skipped.
 */
export async function readState<S>(
  dir: string,
  fold: (state: S, rec: JournalRecord) => S,
  empty: () => S,
  opts: { repair?: boolean } = {},
): Promise<{ state: S; seq: number }> {
  let state = empty();
  let seq = 0;
  try {
    const snap = JSON.parse(await readFile(join(dir, "snapshot.json"), "utf8")) as Snapshot<S>;
    state = snap.state;
    seq = snap.seq;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT")
      throw new Error(`${dir}/snapshot.json is unreadable: ${String(e)}`);
  }
  let text = "";
  try {
    text = await readFile(join(dir, "journal.log"), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const { records, validBytes, corrupt } = decodeJournal(text);
  for (const r of records) {
    if (r.seq <= seq) continue;
    state = fold(state, r);
    seq = r.seq;
  }
  if (corrupt && opts.repair) await truncate(join(dir, "journal.log"), validBytes);
  return { state, seq };
}
