/**
 * jsonEqual: equal JSON data whatever the key order, a key set to undefined the same as none, and
 * any change to a leaf, a key or an array's order seen. The oracle is written here: both values
 * serialised with their keys sorted and undefined members dropped.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { jsonEqual } from "../../src/store/equal.js";

function sortedJson(v: unknown): string {
  const norm = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(norm);
    if (x && typeof x === "object")
      return Object.fromEntries(
        Object.keys(x)
          .sort()
          .filter((k) => (x as Record<string, unknown>)[k] !== undefined)
          .map((k) => [k, norm((x as Record<string, unknown>)[k])]),
      );
    return x;
  };
  return JSON.stringify(norm(v));
}

/** The same data with every object's keys in reverse order and undefined-valued keys sprinkled in. */
function shuffled(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(shuffled);
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = { zzUnset: undefined };
    // defineProperty: a key named __proto__ (JSON allows it) stays a key.
    for (const k of Object.keys(v).reverse())
      Object.defineProperty(out, k, {
        value: shuffled((v as Record<string, unknown>)[k]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    return out;
  }
  return v;
}

const json = fc.jsonValue({ maxDepth: 4 });

describe("jsonEqual", () => {
  it("agrees with sorted-key serialisation on any two values", () => {
    fc.assert(
      fc.property(json, json, (a, b) => {
        expect(jsonEqual(a, b)).toBe(sortedJson(a) === sortedJson(b));
      }),
      { numRuns: 2_000 },
    );
  });

  it("holds for the same data in another key order with undefined members", () => {
    fc.assert(
      fc.property(json, (a) => {
        expect(jsonEqual(a, shuffled(a))).toBe(true);
        expect(jsonEqual(shuffled(a), a)).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it("sees a changed leaf, an extra key and a reordered list", () => {
    const s = { phase: "Running", host: "h1", conditions: [{ type: "Ready" }, { type: "Synced" }] };
    expect(jsonEqual(s, { ...s, host: "h2" })).toBe(false);
    expect(jsonEqual(s, { ...s, extra: null })).toBe(false);
    expect(jsonEqual(s, { ...s, conditions: [{ type: "Synced" }, { type: "Ready" }] })).toBe(false);
    expect(jsonEqual({ a: 1 }, { a: "1" })).toBe(false);
    expect(jsonEqual([], {})).toBe(false);
    expect(
      jsonEqual({ host: "h1", phase: "Running" }, { phase: "Running", host: "h1", lastFailure: undefined }),
    ).toBe(true);
  });
});
