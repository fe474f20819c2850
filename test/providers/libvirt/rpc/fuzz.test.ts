/**
 * Property tests of the XDR decoder and the frame assembler. Arbitrary bytes — random, or words
 * chosen to break length arithmetic (0xFFFFFFE5, 0x7FFFFFFD..0xFFFFFFFF, counts at the caps) —
 * decoded as every reply and event body we read: the only thing thrown is XdrError, the read
 * position never moves backwards or past the end, and what comes out is never larger than what
 * went in. Valid values round-trip. The invariants are checked by a reader subclass that watches
 * positions from outside, not by the decoder's own bounds checks.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FrameAssembler, FramingError } from "../../../../src/providers/libvirt/rpc/framing.js";
import {
  type DomainRef,
  Limits,
  MESSAGE_MAX,
  readHeader,
  readRemoteError,
  writeDomain,
  writeNetwork,
  writeSnapshot,
  writeTypedParam,
  writeVol,
} from "../../../../src/providers/libvirt/rpc/protocol.js";
import {
  EVENT_DECODERS,
  REPLY_DECODERS,
  readAllDomainStats,
  readDhcpLeases,
  readDomainList,
  readLifecycle,
  readNetworkList,
  readSnapshotList,
  readVolList,
} from "../../../../src/providers/libvirt/rpc/replies.js";
import { STRING_MAX, XdrError, XdrReader, XdrWriter } from "../../../../src/providers/libvirt/rpc/xdr.js";

/** Watches every primitive read: position monotonic and inside the body; output <= input. */
class WatchedReader extends XdrReader {
  stringBytes = 0;
  readonly limit: number;
  constructor(
    readonly bytes: Buffer,
    start = 0,
  ) {
    super(bytes, start);
    this.limit = bytes.length;
  }
  private watch<T>(f: () => T, produced?: (v: T) => number): T {
    const before = this.pos;
    const v = f();
    if (this.pos < before) throw new Error(`position moved backwards: ${before} -> ${this.pos}`);
    if (this.pos > this.limit) throw new Error(`position ${this.pos} beyond the end ${this.limit}`);
    if (produced && produced(v) > this.pos - before)
      throw new Error(`produced ${produced(v)} bytes from ${this.pos - before} consumed`);
    return v;
  }
  override int() {
    return this.watch(() => super.int());
  }
  override uint() {
    return this.watch(() => super.uint());
  }
  override hyper() {
    return this.watch(() => super.hyper());
  }
  override uhyper() {
    return this.watch(() => super.uhyper());
  }
  override double() {
    return this.watch(() => super.double());
  }
  override fixedOpaque(n: number) {
    return this.watch(
      () => super.fixedOpaque(n),
      (b) => b.length,
    );
  }
  override opaque(max?: number) {
    return this.watch(
      () => super.opaque(max),
      (b) => b.length,
    );
  }
  override string(max?: number) {
    const s = this.watch(
      () => super.string(max),
      // UTF-8 decoding may turn one invalid byte into U+FFFD (3 bytes), so count UTF-16 units.
      (v) => v.length,
    );
    this.stringBytes += s.length;
    if (this.stringBytes > this.limit)
      throw new Error(`strings total ${this.stringBytes} > input ${this.limit}`);
    return s;
  }
  override array<T>(read: (r: this) => T, max: number): T[] {
    return this.watch(
      () => super.array(read, max),
      (a) => a.length * 4,
    );
  }
}

const hostileWord = fc.oneof(
  fc.constantFrom(
    0xffffffe5,
    0x7ffffffd,
    0x7ffffffe,
    0x7fffffff,
    0x80000000,
    0xfffffffc,
    0xfffffffd,
    0xfffffffe,
    0xffffffff,
    16384,
    16385,
    65536,
    65537,
    262145,
    STRING_MAX,
    STRING_MAX + 1,
  ),
  fc.integer({ min: 0, max: 64 }),
  fc.integer({ min: 0, max: 0xffffffff }),
);

/** Bodies: plain random bytes, or big-endian words mixing small counts and hostile lengths. */
const body = fc.oneof(
  fc.uint8Array({ maxLength: 1024 }).map((a) => Buffer.from(a)),
  fc
    .tuple(fc.array(hostileWord, { maxLength: 64 }), fc.uint8Array({ maxLength: 64 }))
    .map(([words, tail]) => {
      const b = Buffer.alloc(words.length * 4 + tail.length);
      words.forEach((w, i) => {
        b.writeUInt32BE(w >>> 0, i * 4);
      });
      b.set(tail, words.length * 4);
      return b;
    }),
);

const decoders = [
  ...[...REPLY_DECODERS].map(([p, d]) => [`reply ${p}`, d] as const),
  ...[...EVENT_DECODERS].map(([p, d]) => [`event ${p}`, d] as const),
  ["header", readHeader] as const,
];

describe("XDR decoders on arbitrary bytes (property)", () => {
  it.each(decoders)(
    "%s: a value or XdrError, positions forward and inside, output <= input",
    (_n, decode) => {
      fc.assert(
        fc.property(body, fc.nat(16), (b, startRaw) => {
          const start = Math.min(startRaw & ~3, b.length);
          const r = new WatchedReader(b, start);
          try {
            decode(r);
          } catch (e) {
            if (!(e instanceof XdrError)) throw e;
          }
        }),
        { numRuns: 400 },
      );
    },
  );

  it("every procedure we call has a decoder in the table the fuzzer uses", () => {
    expect(REPLY_DECODERS.size).toBeGreaterThanOrEqual(45);
    expect(EVENT_DECODERS.size).toBe(6);
  });
});

describe("caps from remote_protocol.x", () => {
  const list = (n: number, elem: (w: XdrWriter) => void) => {
    const w = new XdrWriter().uint(n);
    for (let i = 0; i < n; i++) elem(w);
    return new XdrReader(Buffer.from(w.uint(n).bytes()));
  };
  const dom = (w: XdrWriter) => writeDomain(w, { name: "", uuid: Buffer.alloc(16), id: 0 });

  it("REMOTE_DOMAIN_LIST_MAX: 16384 domains decode, 16385 are refused", () => {
    expect(readDomainList(list(Limits.domainList, dom))).toHaveLength(16384);
    expect(() => readDomainList(list(Limits.domainList + 1, dom))).toThrow(
      /16385 elements exceeds its limit 16384/,
    );
  });

  it("the network, volume, snapshot, lease and stats lists each have their own cap", () => {
    const over: [string, (r: XdrReader) => unknown, number][] = [
      ["networks", readNetworkList, Limits.networkList],
      ["volumes", readVolList, Limits.volList],
      ["snapshots", readSnapshotList, Limits.snapshotList],
      ["leases", readDhcpLeases, Limits.dhcpLeases],
      ["stats", readAllDomainStats, Limits.domainList],
    ];
    for (const [, read, cap] of over) {
      const b = Buffer.alloc(8);
      b.writeUInt32BE(cap + 1, 0);
      expect(() => read(new XdrReader(b))).toThrow(
        new RegExp(`${cap + 1} elements exceeds its limit ${cap}`),
      );
    }
  });

  it("REMOTE_STRING_MAX: a 4 MiB string decodes, one byte more is refused (and refused to encode)", () => {
    const ok = Buffer.alloc(4 + STRING_MAX);
    ok.writeUInt32BE(STRING_MAX, 0);
    expect(new XdrReader(ok).string()).toHaveLength(STRING_MAX);
    const over = Buffer.alloc(8 + STRING_MAX);
    over.writeUInt32BE(STRING_MAX + 1, 0);
    expect(() => new XdrReader(over).string()).toThrow(XdrError);
    expect(() => new XdrWriter().string("x".repeat(STRING_MAX + 1))).toThrow(XdrError);
  });

  it("an optional's flag other than 0 or 1 is not XDR", () => {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(2, 0);
    expect(() => new XdrReader(b).optString()).toThrow(/optional flag 2/);
  });
});

describe("round trips of valid values (property)", () => {
  const name = fc.string({ maxLength: 40 });
  const uuid = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a));
  const domain: fc.Arbitrary<DomainRef> = fc.record({
    name,
    uuid,
    id: fc.integer({ min: -1, max: 2 ** 31 - 1 }),
  });
  const encodeList = <T>(items: T[], write: (w: XdrWriter, v: T) => void) =>
    new WatchedReader(Buffer.from(new XdrWriter(4).array(items, write).uint(items.length).bytes()));

  it("domain, network, volume and snapshot lists", () => {
    fc.assert(
      fc.property(fc.array(domain, { maxLength: 20 }), (doms) => {
        expect(readDomainList(encodeList(doms, writeDomain))).toEqual(doms);
        const nets = doms.map((d) => ({ name: d.name, uuid: d.uuid }));
        expect(readNetworkList(encodeList(nets, writeNetwork))).toEqual(nets);
        const vols = doms.map((d) => ({ pool: d.name, name: `${d.name}.qcow2`, key: `/p/${d.name}` }));
        expect(readVolList(encodeList(vols, writeVol))).toEqual(vols);
        const snaps = doms.map((d) => ({ name: `s-${d.name}`, dom: d }));
        expect(readSnapshotList(encodeList(snaps, writeSnapshot))).toEqual(snaps);
      }),
    );
  });

  it("lifecycle events, error replies and domain stats", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1000 }),
        domain,
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 0, max: 8 }),
        fc.option(fc.string({ maxLength: 100 }), { nil: undefined }),
        (cb, dom, event, detail, message) => {
          const ev = new XdrWriter().int(cb);
          writeDomain(ev, dom).int(event).int(detail);
          expect(readLifecycle(new WatchedReader(Buffer.from(ev.bytes())))).toEqual({
            callbackId: cb,
            dom,
            event,
            detail,
          });
          const err = new XdrWriter().int(42).int(10).optString(message).int(2).int(0);
          err.optString("s1").optString(undefined).optString(undefined).int(7).int(8).int(0);
          expect(readRemoteError(new WatchedReader(Buffer.from(err.bytes())))).toMatchObject({
            code: 42,
            domain: 10,
            message,
            str1: "s1",
            int1: 7,
            int2: 8,
          });
          const stats = new XdrWriter().uint(1);
          writeDomain(stats, dom).array(
            [{ field: "state.state", value: { type: "int" as const, value: event } }],
            writeTypedParam,
          );
          expect(readAllDomainStats(new WatchedReader(Buffer.from(stats.bytes())))).toEqual([
            { dom, params: [{ field: "state.state", value: { type: "int", value: event } }] },
          ]);
        },
      ),
    );
  });
});

describe("frame assembler (property)", () => {
  const frame = fc.uint8Array({ maxLength: 300 }).map((payload) => {
    const b = Buffer.alloc(28 + payload.length);
    b.writeUInt32BE(b.length, 0);
    b.set(payload, 28);
    return b;
  });

  it("any chunking yields the same frames, and holds no more than one frame", () => {
    fc.assert(
      fc.property(fc.array(frame, { minLength: 1, maxLength: 10 }), fc.array(fc.nat(400)), (frames, cuts) => {
        const stream = Buffer.concat(frames);
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const a = new FrameAssembler();
        const out: Buffer[] = [];
        let prev = 0;
        for (const p of [...points, stream.length]) {
          out.push(...a.push(stream.subarray(prev, p)));
          expect(a.buffered).toBeLessThanOrEqual(MESSAGE_MAX);
          prev = p;
        }
        expect(out.map((b) => b.toString("hex"))).toEqual(frames.map((b) => b.toString("hex")));
        expect(a.buffered).toBe(0);
      }),
    );
  });

  it("a length word outside [28, MESSAGE_MAX] is refused as soon as its 4 bytes are in", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 0, max: 27 }), fc.integer({ min: MESSAGE_MAX + 1, max: 0xffffffff })),
        (len) => {
          const a = new FrameAssembler();
          const w = Buffer.alloc(4);
          w.writeUInt32BE(len, 0);
          expect(a.push(w.subarray(0, 2))).toEqual([]);
          expect(() => a.push(w.subarray(2))).toThrow(FramingError);
        },
      ),
    );
  });
});
