/**
 * Frame reassembly for libvirt's wire format (a 4-byte big-endian length that counts itself,
 * then header + body), and the bounded outbound queue.
 *
 * Contracts:
 * - Linear: each received byte is copied at most twice whatever the chunking (chunks are kept in
 *   a list until the announced length is there, then joined once), so a 32 MiB reply in 64 KiB
 *   chunks costs one 32 MiB copy, not 512 growing ones.
 * - The length word is checked as soon as its 4 bytes are in: shorter than a header or longer
 *   than MESSAGE_MAX is a FramingError before anything is buffered for it, so inbound memory per
 *   connection never exceeds MESSAGE_MAX + one chunk.
 * - OutboundQueue writes while the socket accepts, holds frames while it wants 'drain', and
 *   refuses (returns false) once the bytes waiting — ours plus the socket's own — would pass
 *   its cap; the client then treats the peer as not reading.
 */
import type { Duplex } from "node:stream";
import { MESSAGE_MAX, MESSAGE_MIN } from "./protocol.js";

export class FramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FramingError";
  }
}

export class FrameAssembler {
  private chunks: Buffer[] = [];
  private bytes = 0;
  /** The announced length of the frame being gathered, once its length word is in. */
  private want = 0;

  /** Bytes held for frames not yet complete. */
  get buffered(): number {
    return this.bytes;
  }

  /** The frame being gathered, for error messages: how much of how much has arrived. */
  get partial(): { have: number; want: number } | undefined {
    return this.bytes > 0 ? { have: this.bytes, want: this.want } : undefined;
  }

  /**
   * Add a chunk; returns the complete frames it finished (length word included), in order.
   * Throws FramingError on a bad length word; the assembler is then unusable.
   */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (chunk.length === 0) return out;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    for (;;) {
      if (this.want === 0) {
        if (this.bytes < 4) return out;
        const len = this.peekLength();
        if (len < MESSAGE_MIN || len > MESSAGE_MAX)
          throw new FramingError(
            `frame length ${len} is outside [${MESSAGE_MIN}, ${MESSAGE_MAX}] (VIR_NET_MESSAGE_MAX)`,
          );
        this.want = len;
      }
      if (this.bytes < this.want) return out;
      out.push(this.take(this.want));
      this.want = 0;
    }
  }

  private peekLength(): number {
    const first = this.chunks[0] as Buffer;
    if (first.length >= 4) return first.readUInt32BE(0);
    const head = Buffer.alloc(4);
    let at = 0;
    for (const c of this.chunks) {
      at += c.copy(head, at, 0, Math.min(c.length, 4 - at));
      if (at === 4) break;
    }
    return head.readUInt32BE(0);
  }

  /** Remove and return the first `n` bytes (n <= buffered), joining chunks only when it must. */
  private take(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    let frame: Buffer;
    if (first.length >= n) {
      frame = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      frame = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0] as Buffer;
        const k = Math.min(c.length, n - at);
        c.copy(frame, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.bytes -= n;
    return frame;
  }

  clear(): void {
    this.chunks = [];
    this.bytes = 0;
    this.want = 0;
  }
}

export class OutboundQueue {
  private readonly held: Buffer[] = [];
  private heldBytes = 0;
  private readonly onDrain = () => this.flush();

  constructor(
    private readonly sock: Duplex,
    readonly maxBytes: number,
  ) {
    sock.on("drain", this.onDrain);
  }

  /** Bytes written but not yet taken by the kernel: ours held back plus the socket's buffer. */
  get buffered(): number {
    return this.heldBytes + (this.sock.writableLength ?? 0);
  }

  /** Queue a frame; false (and nothing queued) when that would pass the cap. */
  send(frame: Buffer): boolean {
    if (this.buffered + frame.length > this.maxBytes) return false;
    if (this.held.length === 0 && !this.sock.writableNeedDrain) {
      this.sock.write(frame);
      return true;
    }
    // The socket asked us to wait for 'drain': keep the frame ourselves (a copy, since the
    // caller's buffer may be reused) and count it against the same cap.
    this.held.push(Buffer.from(frame));
    this.heldBytes += frame.length;
    return true;
  }

  private flush(): void {
    while (this.held.length && !this.sock.writableNeedDrain && !this.sock.destroyed) {
      const f = this.held.shift() as Buffer;
      this.heldBytes -= f.length;
      this.sock.write(f);
    }
  }

  clear(): void {
    this.sock.removeListener("drain", this.onDrain);
    this.held.length = 0;
    this.heldBytes = 0;
  }
}
