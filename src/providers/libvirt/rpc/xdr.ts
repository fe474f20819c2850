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
    const padded = (length + 3) & ~3;
    this.ensure(padded);
    this.buf.set(data, this.pos);
    this.buf.fill(0, this.pos + length, this.pos + padded);
    this.pos += padded;
    return this;
  }

  opaque(data: Uint8Array): this {
    this.uint(data.length);
    const padded = (data.length + 3) & ~3;
    this.ensure(padded);
    this.buf.set(data, this.pos);
    this.buf.fill(0, this.pos + data.length, this.pos + padded);
    this.pos += padded;
    return this;
  }

  string(s: string): this {
    const len = Buffer.byteLength(s, "utf8");
    this.uint(len);
    const padded = (len + 3) & ~3;
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

export class XdrError extends Error {}

export class XdrReader {
  private readonly view: DataView;
  pos: number;

  constructor(
    private readonly buf: Buffer,
    start = 0,
    private readonly end = buf.length,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = start;
  }

  private need(n: number): void {
    if (this.pos + n > this.end)
      throw new XdrError(`XDR: need ${n} bytes at ${this.pos}, message ends at ${this.end}`);
  }

  int(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos);
    this.pos += 4;
    return v;
  }

  uint(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  /** 64-bit values as numbers: exact up to 2^53, which byte counts and times stay below. */
  hyper(): number {
    this.need(8);
    const v = Number(this.view.getBigInt64(this.pos));
    this.pos += 8;
    return v;
  }

  uhyper(): number {
    this.need(8);
    const hi = this.view.getUint32(this.pos);
    const lo = this.view.getUint32(this.pos + 4);
    this.pos += 8;
    return hi * 4294967296 + lo;
  }

  double(): number {
    this.need(8);
    const v = this.view.getFloat64(this.pos);
    this.pos += 8;
    return v;
  }

  bool(): boolean {
    return this.int() !== 0;
  }

  fixedOpaque(length: number): Buffer {
    const padded = (length + 3) & ~3;
    this.need(padded);
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + length));
    this.pos += padded;
    return out;
  }

  opaque(): Buffer {
    const len = this.uint();
    return this.fixedOpaque(len);
  }

  string(): string {
    const len = this.uint();
    const padded = (len + 3) & ~3;
    this.need(padded);
    const s = this.buf.toString("utf8", this.pos, this.pos + len);
    this.pos += padded;
    return s;
  }

  optString(): string | undefined {
    return this.int() ? this.string() : undefined;
  }

  optional<T>(read: (r: this) => T): T | undefined {
    return this.int() ? read(this) : undefined;
  }

  array<T>(read: (r: this) => T, max = 1 << 20): T[] {
    const n = this.uint();
    if (n > max) throw new XdrError(`XDR: array of ${n} exceeds ${max}`);
    const out = new Array<T>(n);
    for (let i = 0; i < n; i++) out[i] = read(this);
    return out;
  }

  get remaining(): number {
    return this.end - this.pos;
  }
}
