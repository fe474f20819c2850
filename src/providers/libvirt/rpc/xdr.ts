/**
 * XDR (RFC 4506) for libvirt's remote protocol: the handful of primitives its messages use —
 * int, unsigned int, hyper, unsigned hyper, bool, string, opaque (fixed and variable), optional
 * ("pointer") and variable arrays — over one growable buffer.
 *
 * Hand-written rather than @stellar/js-xdr: that library builds typed value objects from a schema
 * DSL per struct (made for Stellar's types), and every libvirt call would pay for object creation
 * and BigInt conversion on every field; the throughput target (at least python3-libvirt's C
 * client, per call) needs encode/decode to be plain DataView reads. bench/rpc.ts measures it.
 */

/** Bytes of zero padding after `len` bytes of data (XDR aligns everything to 4). Exact for any length. */
export function xdrPad(len: number): number {
  return (4 - (len % 4)) % 4;
}

/**
 * libvirt's VIR_NET_MESSAGE_STRING_MAX / REMOTE_STRING_MAX: the longest string either side may
 * send (a domain XML, capabilities). Longer is a protocol error, as in libvirt's own decoder.
 */
export const STRING_MAX = 4194304;

export class XdrWriter {
  private buf: Buffer;
  private view: DataView;
  private pos = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  int(v: number): this {
    this.ensure(4);
    this.view.setInt32(this.pos, v);
    this.pos += 4;
    return this;
  }

  uint(v: number): this {
    this.ensure(4);
    this.view.setUint32(this.pos, v >>> 0);
    this.pos += 4;
    return this;
  }

  hyper(v: number | bigint): this {
    this.ensure(8);
    this.view.setBigInt64(this.pos, BigInt(v));
    this.pos += 8;
    return this;
  }

  uhyper(v: number | bigint): this {
    this.ensure(8);
    this.view.setBigUint64(this.pos, BigInt(v));
    this.pos += 8;
    return this;
  }

  double(v: number): this {
    this.ensure(8);
    this.view.setFloat64(this.pos, v);
    this.pos += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.int(v ? 1 : 0);
  }

  /** Fixed-length opaque (e.g. a 16-byte UUID): no length prefix, padded to 4. */
  fixedOpaque(data: Uint8Array, length: number): this {
    if (data.length !== length) throw new RangeError(`fixed opaque of ${length} bytes, got ${data.length}`);
    const padded = length + xdrPad(length);
    this.ensure(padded);
    this.buf.set(data, this.pos);
    this.buf.fill(0, this.pos + length, this.pos + padded);
    this.pos += padded;
    return this;
  }

  opaque(data: Uint8Array, max = STRING_MAX): this {
    if (data.length > max) throw new XdrError(`XDR: opaque of ${data.length} bytes exceeds ${max}`);
    this.uint(data.length);
    const padded = data.length + xdrPad(data.length);
    this.ensure(padded);
    this.buf.set(data, this.pos);
    this.buf.fill(0, this.pos + data.length, this.pos + padded);
    this.pos += padded;
    return this;
  }

  /** A string of at most `max` UTF-8 bytes (libvirt refuses longer ones; better to fail here). */
  string(s: string, max = STRING_MAX): this {
    const len = Buffer.byteLength(s, "utf8");
    if (len > max) throw new XdrError(`XDR: string of ${len} bytes exceeds ${max}`);
    this.uint(len);
    const padded = len + xdrPad(len);
    this.ensure(padded);
    this.buf.write(s, this.pos, "utf8");
    this.buf.fill(0, this.pos + len, this.pos + padded);
    this.pos += padded;
    return this;
  }

  /** remote_string: an optional string (a pointer: present flag, then the string). */
  optString(s: string | undefined | null): this {
    if (s === undefined || s === null) return this.int(0);
    return this.int(1).string(s);
  }

  optional<T>(v: T | undefined, write: (w: this, v: T) => void): this {
    if (v === undefined) return this.int(0);
    this.int(1);
    write(this, v);
    return this;
  }

  array<T>(items: readonly T[], write: (w: this, v: T) => void): this {
    this.uint(items.length);
    for (const i of items) write(this, i);
    return this;
  }

  /** Reserve `n` bytes (e.g. a length prefix to fill in later); returns their offset. */
  reserve(n: number): number {
    this.ensure(n);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  patchUint(at: number, v: number): void {
    this.view.setUint32(at, v >>> 0);
  }

  get length(): number {
    return this.pos;
  }

  /** The encoded bytes (a view, valid until the next write). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/**
 * The one error decoding raises: the bytes do not form the value they claim to (too short, a
 * length beyond its cap, an unknown discriminant). Anything else thrown while decoding is a bug.
 */
export class XdrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "XdrError";
  }
}

/**
 * Reads XDR from `buf[start, end)`. Guarantees, for any bytes: `pos` only moves forward and never
 * past `end`; every length read from the wire is checked against the bytes left and against its
 * cap before anything is allocated or sliced; failures are XdrError and nothing else.
 */
export class XdrReader {
  private readonly view: DataView;
  private readonly end: number;
  pos: number;

  constructor(
    private readonly buf: Buffer,
    start = 0,
    end = buf.length,
  ) {
    if (
      !(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= buf.length)
    )
      throw new XdrError(`XDR: bad window [${start}, ${end}) over ${buf.length} bytes`);
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = start;
    this.end = end;
  }

  /** `n` is a non-negative integer (up to 2^32 + 3 from a wire length): no wrap, no sign. */
  private need(n: number, what: string): void {
    if (n > this.end - this.pos)
      throw new XdrError(
        `XDR: ${what} needs ${n} bytes at offset ${this.pos}, only ${this.end - this.pos} left`,
      );
  }

  int(): number {
    this.need(4, "int");
    const v = this.view.getInt32(this.pos);
    this.pos += 4;
    return v;
  }

  uint(): number {
    this.need(4, "unsigned int");
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  /** 64-bit values as numbers: exact up to 2^53, which byte counts and times stay below. */
  hyper(): number {
    this.need(8, "hyper");
    const hi = this.view.getInt32(this.pos);
    const lo = this.view.getUint32(this.pos + 4);
    this.pos += 8;
    return hi * 4294967296 + lo;
  }

  uhyper(): number {
    this.need(8, "unsigned hyper");
    const hi = this.view.getUint32(this.pos);
    const lo = this.view.getUint32(this.pos + 4);
    this.pos += 8;
    return hi * 4294967296 + lo;
  }

  double(): number {
    this.need(8, "double");
    const v = this.view.getFloat64(this.pos);
    this.pos += 8;
    return v;
  }

  bool(): boolean {
    return this.int() !== 0;
  }

  /** Fixed-length opaque (a UUID): `length` comes from the protocol, never from the wire. */
  fixedOpaque(length: number): Buffer {
    const padded = length + xdrPad(length);
    this.need(padded, `opaque[${length}]`);
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + length));
    this.pos += padded;
    return out;
  }

  /** Variable-length opaque of at most `max` bytes (its declared bound in remote_protocol.x). */
  opaque(max = STRING_MAX): Buffer {
    const len = this.uint();
    if (len > max) throw new XdrError(`XDR: opaque of ${len} bytes exceeds its limit ${max}`);
    return this.fixedOpaque(len);
  }

  /** A string of at most `max` bytes (REMOTE_STRING_MAX unless the protocol says less). */
  string(max = STRING_MAX): string {
    const len = this.uint();
    if (len > max) throw new XdrError(`XDR: string of ${len} bytes exceeds its limit ${max}`);
    const padded = len + xdrPad(len);
    this.need(padded, `string of ${len} bytes`);
    const s = this.buf.toString("utf8", this.pos, this.pos + len);
    this.pos += padded;
    return s;
  }

  optString(max = STRING_MAX): string | undefined {
    return this.presence() ? this.string(max) : undefined;
  }

  optional<T>(read: (r: this) => T): T | undefined {
    return this.presence() ? read(this) : undefined;
  }

  /**
   * A variable array of at most `max` elements — the `<N>` of its declaration, which every caller
   * must name. Each element takes at least 4 bytes, so a count the remaining bytes cannot hold is
   * refused before the loop starts.
   */
  array<T>(read: (r: this) => T, max: number): T[] {
    const n = this.uint();
    if (n > max) throw new XdrError(`XDR: array of ${n} elements exceeds its limit ${max}`);
    this.need(n * 4, `array of ${n} elements`);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(read(this));
    return out;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  /** An XDR optional's flag: 0 or 1, anything else is not XDR. */
  private presence(): boolean {
    const flag = this.uint();
    if (flag > 1)
      throw new XdrError(`XDR: optional flag ${flag} at offset ${this.pos - 4} is neither 0 nor 1`);
    return flag === 1;
  }
}
