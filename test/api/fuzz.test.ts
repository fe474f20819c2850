/**
 * Hostile input, fuzzed: the examples and the invalid corpus, mutated line- and byte-wise (lines
 * deleted, duplicated, swapped, re-indented, tabs, truncation, random unicode, huge numbers, deep
 * nesting, alias bombs), must never make the loader throw; every error names the file and a line
 * of it; nothing of a document with an error is loaded; and what comes back is bounded by what
 * went in (an alias bomb is refused, not expanded).
 *
 * The checks are written against the text (its line count, its documents), not against the
 * loader's own idea of them.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadText } from "../../src/api/loader.js";
import { aliasBomb, CORPUS, mutate, mutation } from "./mutations.js";

/** The lines of a text as an editor numbers them (a final newline opens no new line). */
function lineCount(text: string): number {
  const n = text.split(/\r\n|\r|\n/).length;
  return Math.max(1, /(\r\n|\r|\n)$/.test(text) ? n - 1 : n);
}

/** Every property of one load, checked against the text. */
function checkLoad(text: string, file = "fuzz.yaml"): void {
  let r: ReturnType<typeof loadText> | undefined;
  expect(() => {
    r = loadText(text, file);
  }).not.toThrow();
  if (!r) return;
  const lines = lineCount(text);
  // yaml and js-yaml count \r and some unicode line breaks differently; allow for the widest.
  const widest = Math.max(lines, text.split(/\r\n|\r|\n|\u2028|\u2029|\u0085/).length);
  for (const e of r.errors) {
    expect(e.file).toBe(file);
    expect(e.document).toBeGreaterThanOrEqual(1);
    expect(e.line, `${e.line} in a text of ${lines} lines: ${e.message}`).toBeGreaterThanOrEqual(1);
    expect(e.line, `${e.line} in a text of ${lines} lines: ${e.message}`).toBeLessThanOrEqual(widest);
    expect(e.column).toBeGreaterThanOrEqual(1);
    expect(typeof e.path).toBe("string");
    expect(e.message.length).toBeGreaterThan(0);
  }
  // Nothing of a document with an error is loaded.
  const broken = new Set(r.errors.map((e) => e.document));
  for (const lr of r.resources) {
    expect(broken.has(lr.source.document), `document ${lr.source.document} has errors but was loaded`).toBe(
      false,
    );
    expect(lr.source.line).toBeGreaterThanOrEqual(1);
    expect(lr.source.line).toBeLessThanOrEqual(widest);
  }
  // Bounded output: what is loaded is never much bigger than the text (no alias expansion).
  const size = JSON.stringify(r).length;
  expect(size).toBeLessThanOrEqual(64 * text.length + 64_000);
}

describe("the loader against mutated manifests", () => {
  it("has a corpus", () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(50);
  });

  it("never throws, locates every error in the file, loads nothing broken, stays bounded", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: CORPUS.length - 1 }),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        (which, ms) => {
          const text = ms.reduce((t, m) => mutate(t, m), CORPUS[which] ?? "");
          checkLoad(text);
        },
      ),
      { numRuns: 1500, seed: 13_7, endOnFailure: true },
    );
  }, 300_000);

  it("also with a fresh seed each run (printed on failure for a replay)", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: CORPUS.length - 1 }),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        (which, ms) => checkLoad(ms.reduce((t, m) => mutate(t, m), CORPUS[which] ?? "")),
      ),
      { numRuns: 300, endOnFailure: true },
    );
  }, 300_000);

  it("random bytes and random unicode", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 400 }), (text) => checkLoad(text)),
      { numRuns: 500, seed: 13_8 },
    );
  }, 300_000);
});

describe("alias bombs are refused, not expanded", () => {
  const vm = (extra: string) =>
    `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: a\nspec:\n  instanceType: small\n${extra}`;

  it("a billion laughs in a manifest: an error, nothing loaded", () => {
    const text = vm(aliasBomb(9).replace(/^/gm, "  "));
    const r = loadText(text, "bomb.yaml");
    expect(r.resources).toEqual([]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]?.message).toMatch(/too many aliases/);
    expect(r.errors[0]?.line).toBeGreaterThanOrEqual(1);
    expect(r.errors[0]?.line).toBeLessThanOrEqual(lineCount(text));
    checkLoad(text, "bomb.yaml");
  });

  it("a bomb in one document leaves the next one loaded", () => {
    const text = `${aliasBomb(9)}\n---\n${vm("")}`;
    const r = loadText(text, "bomb.yaml");
    expect(r.resources.map((x) => x.resource.metadata.name)).toEqual(["a"]);
    expect(r.errors.map((e) => e.document)).toEqual([1]);
  });

  it("a few ordinary anchors and aliases still load", () => {
    const text =
      "apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: a\n  labels: &l { app: web }\n  annotations: *l\nspec:\n  instanceType: small\n";
    const r = loadText(text, "ok.yaml");
    expect(r.errors).toEqual([]);
    expect(r.resources[0]?.resource.metadata.annotations).toEqual({ app: "web" });
  });
});

describe("hostile shapes: an answer, bounded by the input", () => {
  const vm =
    "apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: a\nspec:\n  instanceType: small\n";
  it.each([
    ["flow nesting 100,000 deep", `${vm}  deep: ${"[".repeat(100_000)}${"]".repeat(100_000)}\n`],
    [
      "block nesting 2,000 deep",
      vm + Array.from({ length: 2000 }, (_, d) => `${" ".repeat(d + 2)}k${d}:`).join("\n"),
    ],
    ["one 2 MB line", `${vm}  note: ${"x".repeat(2_000_000)}\n`],
    ["10,000 empty documents", "---\n".repeat(10_000)],
    ["50,000 keys", `${vm}${Array.from({ length: 50_000 }, (_, i) => `  k${i}: ${i}`).join("\n")}\n`],
    ["a number of 100,000 digits", `${vm}  cpu: ${"9".repeat(100_000)}\n`],
    ["an alias bomb of 12 levels", aliasBomb(12)],
  ])(
    "%s",
    (_n, text) => {
      checkLoad(text);
      const r = loadText(text, "fuzz.yaml");
      // Empty documents are nothing, not errors; every other shape here is refused.
      if (text.startsWith("---")) expect([r.errors, r.resources]).toEqual([[], []]);
      else expect(r.errors.length).toBeGreaterThan(0);
      expect(r.errors.length).toBeLessThanOrEqual(51);
    },
    120_000,
  );
});
