/**
 * The shape of src/: no import circle, and the layers import only downwards. Both regress
 * silently (everything still compiles), so they are checked here rather than left to review.
 * Type-only imports count: a circle of types still ties the files' changes together.
 */
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { findCycles, type ImportGraph, importGraph, importSpecifiers } from "./support/import-graph.js";

const SRC = fileURLToPath(new URL("../src", import.meta.url));
const graph = importGraph(SRC);

const edges = (g: ImportGraph) => [...g].flatMap(([from, tos]) => tos.map((to) => ({ from, to })));
const under = (dir: string) => (file: string) => file.startsWith(`${dir}/`);

/** Imports from files under `from` to files under none of `allowed` (nor `from` itself). */
function importsOutside(from: string, allowed: string[]): string[] {
  const ok = [from, ...allowed].map(under);
  return edges(graph)
    .filter((e) => under(from)(e.from) && !ok.some((inside) => inside(e.to)))
    .map((e) => `${e.from} -> ${e.to}`);
}

describe("the import graph reader", () => {
  it("finds every kind of import declaration, and none in comments", () => {
    const text = [
      'import { a } from "./a.js";',
      'import type { B } from "../b.js";',
      "import {",
      "  c,",
      "  type D,",
      '} from "./c/index.js";',
      'export * from "./e.js";',
      'export type { F } from "./f.js";',
      'import "./side-effect.js";',
      'import pLimit from "p-limit";',
      "/**",
      ' * import { nope } from "./in-a-comment.js";',
      " */",
      'const g = await import("./g.js");',
      'export const h = "from";',
    ].join("\n");
    expect(importSpecifiers(text).sort()).toEqual(
      [
        "./a.js",
        "../b.js",
        "./c/index.js",
        "./e.js",
        "./f.js",
        "./side-effect.js",
        "p-limit",
        "./g.js",
      ].sort(),
    );
  });

  it("finds circles, including one through types only and one of a file with itself", () => {
    const g: ImportGraph = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts", "d.ts"]],
      ["d.ts", []],
      ["e.ts", ["e.ts"]],
      ["f.ts", ["d.ts"]],
    ]);
    expect(findCycles(g).map((c) => [...c].sort())).toEqual([["a.ts", "b.ts", "c.ts"], ["e.ts"]]);
    expect(findCycles(new Map([["x.ts", ["y.ts"]]]))).toEqual([]);
  });

  it("reads the real tree (so the checks below are not vacuous)", () => {
    expect(graph.size).toBeGreaterThan(100);
    expect(graph.get("reconcilers/context.ts")).toContain("store/types.ts");
    expect(graph.get("cli/run.ts")).toContain("store/kube/index.ts"); // a dynamic import
  });
});

describe("src/", () => {
  it("has no import circle", () => {
    expect(findCycles(graph)).toEqual([]);
  });

  it("api (the resource types and the manifest rules) imports nothing outside api", () => {
    expect(importsOutside("api", [])).toEqual([]);
  });

  it("controller (the framework: queue, workers, leader election) knows no store, provider or reconciler", () => {
    // Error policy, logging and metrics come in through its options (controller/outcome.ts).
    expect(importsOutside("controller", [])).toEqual([]);
  });

  it("scheduler (pure placement planning) imports nothing outside scheduler", () => {
    expect(importsOutside("scheduler", [])).toEqual([]);
  });

  it("providers import only the API, and fence and power agents not each other", () => {
    expect(importsOutside("providers", ["api"])).toEqual([]);
    const across = edges(graph).filter(
      (e) =>
        (under("providers/fence")(e.from) && under("providers/power")(e.to)) ||
        (under("providers/power")(e.from) && under("providers/fence")(e.to)),
    );
    expect(across).toEqual([]);
  });
});
