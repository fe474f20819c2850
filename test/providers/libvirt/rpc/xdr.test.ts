import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  readTypedParam,
  type TypedParam,
  writeTypedParam,
} from "../../../../src/providers/libvirt/rpc/protocol.js";
import { XdrError, XdrReader, XdrWriter } from "../../../../src/providers/libvirt/rpc/xdr.js";

describe("XDR", () => {
  it("round-trips every primitive, with 4-byte alignment", () => {
    const w = new XdrWriter(8);
    w.int(-5)
      .uint(0xfffffffe)
      .hyper(-(2 ** 40))
      .uhyper(2 ** 52 + 3)
      .double(1.5)
      .bool(true)
      .string("héllo")
      .optString(undefined)
      .optString("x");
    w.fixedOpaque(Buffer.alloc(16, 7), 16)
      .opaque(Buffer.from([1, 2, 3]))
      .array([1, 2, 3], (x, v) => x.int(v));
    expect(w.length % 4).toBe(0);
    const r = new XdrReader(Buffer.from(w.bytes()));
    expect([
      r.int(),
      r.uint(),
      r.hyper(),
      r.uhyper(),
      r.double(),
      r.bool(),
      r.string(),
      r.optString(),
      r.optString(),
    ]).toEqual([-5, 0xfffffffe, -(2 ** 40), 2 ** 52 + 3, 1.5, true, "héllo", undefined, "x"]);
    expect(r.fixedOpaque(16)).toEqual(Buffer.alloc(16, 7));
    expect([...r.opaque()]).toEqual([1, 2, 3]);
    expect(r.array((x) => x.int(), 3)).toEqual([1, 2, 3]);
    expect(r.remaining).toBe(0);
  });

  it("pads strings with zeros and encodes their byte length", () => {
    const b = new XdrWriter().string("abcde").bytes();
    expect([...b]).toEqual([0, 0, 0, 5, 97, 98, 99, 100, 101, 0, 0, 0]);
  });

  it("fails cleanly on truncated input", () => {
    const b = Buffer.from(new XdrWriter().string("abcdefgh").bytes()).subarray(0, 6);
    expect(() => new XdrReader(b).string()).toThrow(XdrError);
  });

  it("round-trips random strings and typed parameters (property)", () => {
    const typed = fc.oneof(
      fc.record({
        type: fc.constant("int" as const),
        value: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      }),
      fc.record({ type: fc.constant("uint" as const), value: fc.integer({ min: 0, max: 2 ** 32 - 1 }) }),
      fc.record({
        type: fc.constant("ullong" as const),
        value: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      }),
      fc.record({
        type: fc.constant("llong" as const),
        value: fc.integer({ min: -(2 ** 52), max: 2 ** 52 }),
      }),
      fc.record({ type: fc.constant("boolean" as const), value: fc.boolean() }),
      fc.record({ type: fc.constant("string" as const), value: fc.string() }),
      fc.record({ type: fc.constant("double" as const), value: fc.double({ noNaN: true }) }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.record({ field: fc.string({ maxLength: 40 }), value: typed }), { maxLength: 10 }),
        (params) => {
          const w = new XdrWriter(4).array(params as TypedParam[], writeTypedParam);
          const back = new XdrReader(Buffer.from(w.bytes())).array(readTypedParam, 10);
          expect(back).toEqual(params);
        },
      ),
    );
  });
});
