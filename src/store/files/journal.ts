/**
 * A crash-safe record store: an append-only journal of checksummed JSON lines plus a snapshot.
 *
 * Guarantees:
 * - `append` resolves only once its record is on disk (fdatasync). Appends arriving while a
 *   flush is under way are written together by the next one (group commit), so thousands of
 *   status updates a second cost a handful of syncs.
 * - A process killed at any instant loses no acknowledged record and corrupts nothing: a torn
 *   last record fails its CRC and is dropped (and cut off) at the next open. A bad record with
 *   good ones after it is not what a crash leaves: `open` refuses it (JournalCorruptError, with
 *   the file, byte offset and line) rather than drop what follows.
 * - A failed append (a full or read-only disk, EIO) is rejected and leaves neither the file nor
 *   `state` changed: whatever part of it reached the file is cut off again before the next write.
 *   `state` is the fold of the durable records only.
 * - `compact` writes the folded state to snapshot.json.tmp, fsyncs it, renames it over
 *   snapshot.json, fsyncs the directory, and only then empties the journal; a crash at any
 *   step leaves either the old snapshot + journal or the new snapshot (+ an old journal whose
 *   records are already folded in, which replay skips by seq).
 *
 * Records are opaque to this module except for `seq`, which makes replay idempotent.
 */
import { closeSync, fsyncSync, openSync } from "node:fs";
import { mkdir, open, readFile, rename, truncate, unlink, writeFile } from "node:fs/promises";
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
  return crc32Bytes(Buffer.from(text, "utf8"));
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
  return `${crc32Bytes(Buffer.from(body, "utf8")).toString(16).padStart(8, "0")} ${body}\n`;
}

function crc32Bytes(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A bad record with good records after it: not what a crash leaves, so never dropped silently. */
export interface JournalCorruption {
  /** Byte offset of the bad record's first byte. */
  offset: number;
  /** 1-based line number of the bad record. */
  line: number;
  reason: string;
  /** Good records found after it. */
  followedBy: number;
}

export interface DecodedJournal {
  /** The records before the first bad one. */
  records: JournalRecord[];
  /** Length in bytes of those records: where the file is cut when its tail is torn. */
  validBytes: number;
  /** Bytes after `validBytes` that are only a torn last write (no good record among them). */
  tornBytes: number;
  corruption?: JournalCorruption;
}

function decodeLine(buf: Buffer, start: number, end: number): JournalRecord | string {
  const sp = buf.indexOf(0x20, start);
  if (sp !== start + 8 || sp >= end) return "no checksum";
  const sum = Number.parseInt(buf.toString("latin1", start, sp), 16);
  if (!Number.isFinite(sum) || sum !== crc32Bytes(buf.subarray(sp + 1, end))) return "checksum mismatch";
  try {
    return JSON.parse(buf.toString("utf8", sp + 1, end)) as JournalRecord;
  } catch {
    return "not JSON";
  }
}

/**
 * Parse journal bytes. A bad record (torn, checksum mismatch, not JSON) ends the good part; if
 * nothing good follows it, it is a torn last write (`tornBytes`), the mark of a crash mid-append;
 * if good records follow, it is `corruption`, reported with its offset, never dropped silently.
 */
export function decodeJournal(input: string | Buffer): DecodedJournal {
  const buf = typeof input === "string" ? Buffer.from(input, "utf8") : input;
  const records: JournalRecord[] = [];
  let offset = 0;
  let line = 0;
  while (offset < buf.length) {
    line++;
    const nl = buf.indexOf(0x0a, offset);
    const end = nl < 0 ? buf.length : nl;
    const rec = nl < 0 ? "torn (no end of line)" : decodeLine(buf, offset, end);
    if (typeof rec === "string") {
      let followedBy = 0;
      for (let p = end + 1; p < buf.length; ) {
        const n = buf.indexOf(0x0a, p);
        if (n < 0) break;
        if (typeof decodeLine(buf, p, n) !== "string") followedBy++;
        p = n + 1;
      }
      if (followedBy === 0) return { records, validBytes: offset, tornBytes: buf.length - offset };
      return {
        records,
        validBytes: offset,
        tornBytes: 0,
        corruption: { offset, line, reason: rec, followedBy },
      };
    }
    records.push(rec);
    offset = end + 1;
  }
  return { records, validBytes: buf.length, tornBytes: 0 };
}

/** The journal holds a bad record before good ones; the message says where and what to do. */
export class JournalCorruptError extends Error {
  constructor(
    readonly path: string,
    readonly corruption: JournalCorruption,
  ) {
    const c = corruption;
    super(
      `${path}: corrupt record at byte offset ${c.offset} (line ${c.line}): ${c.reason}; ${c.followedBy} good ` +
        `record(s) follow it, so this is damage, not a write torn by a crash. Refusing to start rather than ` +
        `drop them: restore the state dir from a backup, or discard that record and everything after it ` +
        `with \`truncate -s ${c.offset} ${path}\``,
    );
    this.name = "JournalCorruptError";
  }
}

interface Pending {
  rec: JournalRecord;
  line: string;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class Journal<S> {
  private opened = false;
  private seq = 0;
  /** seq of the last record on disk: the state holds exactly the records up to it. */
  private durableSeq = 0;
  /** Bytes of whole, acknowledged records in journal.log; anything past it is cut before a write. */
  private size = 0;
  private dirtyTail = false;
  private current: S;
  private pending: Pending[] = [];
  private io: Promise<void> = Promise.resolve();
  private batchScheduled = false;
  private recordsSinceSnapshot = 0;
  private closed = false;
  /** Bytes of a torn last record cut off by `open` (a crash mid-append), for a log line. */
  tornBytesAtOpen = 0;

  constructor(
    readonly dir: string,
    private readonly fold: (state: S, rec: JournalRecord) => S,
    private readonly empty: () => S,
  ) {
    this.current = empty();
  }

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

  /**
   * The state folded from every durable record, and only those: a record is folded in when its
   * write and sync succeeded, just before its `append` resolves; a failed append changes nothing.
   */
  get state(): S {
    return this.current;
  }

  /** Read snapshot + journal (cutting off a torn tail) and open the journal for appends. */
  async open(): Promise<S> {
    await mkdir(this.dir, { recursive: true });
    const read = await readState(this.dir, this.fold, this.empty, { repair: true });
    this.seq = read.seq;
    this.durableSeq = read.seq;
    this.size = read.journalBytes;
    this.tornBytesAtOpen = read.tornBytes;
    this.current = read.state;
    // Fail now if the journal cannot be written. No descriptor is kept between writes: a state
    // dir that an operator remounts read-only (or that goes read-only) is seen at the next write.
    await (await open(this.journalPath, "a")).close();
    this.opened = true;
    return this.current;
  }

  /** Append a record; resolves once it is durable and folded into `state`. */
  append(rec: Omit<JournalRecord, "seq">): Promise<void> {
    if (this.closed || !this.opened) return Promise.reject(new Error("journal is closed"));
    const full = { ...rec, seq: ++this.seq } as JournalRecord;
    const line = encode(full);
    this.recordsSinceSnapshot++;
    return new Promise((resolve, reject) => {
      this.pending.push({ rec: full, line, resolve, reject });
      if (!this.batchScheduled) {
        this.batchScheduled = true;
        void this.serial(() => this.writeBatch());
      }
    });
  }

  /** Every use of the file descriptor goes through this chain: writes and compaction never overlap. */
  private serial(op: () => Promise<void>): Promise<void> {
    const next = this.io.then(op);
    this.io = next.catch(() => undefined);
    return next;
  }

  /**
   * Write a batch whole or not at all: a short write (a full disk) or a failed sync is cut off
   * again, so no later record ever follows a rejected one in the file. If even the cut fails, the
   * next write tries it first and fails until it succeeds.
   */
  private async writeBatch(): Promise<void> {
    this.batchScheduled = false;
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    let fd: Awaited<ReturnType<typeof open>> | undefined;
    try {
      fd = await open(this.journalPath, "a");
      if (this.dirtyTail) {
        await fd.truncate(this.size);
        this.dirtyTail = false;
      }
      const buf = Buffer.from(batch.map((b) => b.line).join(""), "utf8");
      this.dirtyTail = true;
      for (let off = 0; off < buf.length; ) {
        const { bytesWritten } = await fd.write(buf, off, buf.length - off);
        if (bytesWritten <= 0) throw new Error(`short write to ${this.journalPath}`);
        off += bytesWritten;
      }
      await fd.datasync();
      this.dirtyTail = false;
      this.size += buf.length;
    } catch (e) {
      if (fd && this.dirtyTail) {
        try {
          await fd.truncate(this.size);
          this.dirtyTail = false;
        } catch {
          // Left dirty: the next write cuts it first.
        }
      }
      await fd?.close().catch(() => undefined);
      for (const b of batch) b.reject(e as Error);
      return;
    }
    await fd.close().catch(() => undefined);
    for (const b of batch) {
      this.current = this.fold(this.current, b.rec);
      this.durableSeq = b.rec.seq;
    }
    for (const b of batch) b.resolve();
  }

  /** Wait until everything appended so far is durable. */
  async flush(): Promise<void> {
    await this.serial(async () => undefined);
  }

  /**
   * Write the state as the snapshot and empty the journal (see the module comment for safety).
   * Runs in the write chain: the state then holds exactly the records up to `durableSeq`; records
   * still pending carry higher seqs and land in the emptied journal.
   */
  compact(): Promise<void> {
    return this.serial(async () => {
      const seq = this.durableSeq;
      const backlog = this.recordsSinceSnapshot;
      const tmp = `${this.snapshotPath}.tmp`;
      const snap: Snapshot<S> = { seq, state: this.current };
      try {
        await writeFile(tmp, JSON.stringify(snap));
        const fd = openSync(tmp, "r+");
        try {
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
      } catch (e) {
        await unlink(tmp).catch(() => undefined);
        throw e;
      }
      await rename(tmp, this.snapshotPath);
      syncDir(this.dir);
      this.recordsSinceSnapshot = Math.max(0, this.recordsSinceSnapshot - backlog);
      // Every record in the journal is now in the snapshot too; emptying it is only tidiness
      // (replay skips records up to the snapshot's seq), so a failure here is harmless.
      try {
        const fd = await open(this.journalPath, "r+");
        try {
          await fd.truncate(0);
          await fd.datasync();
        } finally {
          await fd.close();
        }
        this.size = 0;
        this.dirtyTail = false;
      } catch {
        this.dirtyTail = true;
      }
    });
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    this.opened = false;
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
 * appends follow the last good record. Records with seq <= the snapshot's are skipped. A corrupt
 * record with good records after it throws JournalCorruptError (with or without `repair`).
 */
export async function readState<S>(
  dir: string,
  fold: (state: S, rec: JournalRecord) => S,
  empty: () => S,
  opts: { repair?: boolean } = {},
): Promise<{ state: S; seq: number; journalBytes: number; tornBytes: number }> {
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
  const path = join(dir, "journal.log");
  let bytes: Buffer = Buffer.alloc(0);
  try {
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const decoded = decodeJournal(bytes);
  if (decoded.corruption) throw new JournalCorruptError(path, decoded.corruption);
  for (const r of decoded.records) {
    if (r.seq <= seq) continue;
    state = fold(state, r);
    seq = r.seq;
  }
  if (decoded.tornBytes > 0 && opts.repair) await truncate(path, decoded.validBytes);
  return { state, seq, journalBytes: decoded.validBytes, tornBytes: decoded.tornBytes };
}
