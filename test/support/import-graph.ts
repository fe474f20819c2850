/**
 * The import graph of a source tree, for the architecture test: which file imports which, by the
 * relative specifiers of its import and export-from declarations (type-only ones included: a
 * circle of types is still a circle) and its dynamic `import("…")` calls. Package imports
 * ("node:fs", "p-limit") are not edges.
 *
 * Assumes biome-formatted sources: a top-level declaration starts at column 0 and ends with `;`,
 * and comment lines start with a space or `//`, so a line-anchored match finds every declaration
 * and nothing inside a comment. (TypeScript 7 has no preProcessFile to do this for us.)
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

/** File (relative to the root, with "/") -> the files it imports. */
export type ImportGraph = Map<string, string[]>;

const DECLARATION = /^(?:import|export)\b[^;]*?\bfrom\s+["']([^"']+)["']/gm;
const SIDE_EFFECT = /^import\s+["']([^"']+)["']/gm;
const DYNAMIC = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

export function importSpecifiers(text: string): string[] {
  return [DECLARATION, SIDE_EFFECT, DYNAMIC].flatMap((re) => [...text.matchAll(re)].map((m) => m[1] ?? ""));
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return p.endsWith(".ts") && !p.endsWith(".d.ts") ? [p] : [];
  });
}

/** NodeNext resolution of our own specifiers: "./x.js" is x.ts; a directory is its index.ts. */
function resolveSpecifier(from: string, specifier: string): string | undefined {
  const base = resolve(dirname(from), specifier);
  for (const candidate of [base.replace(/\.js$/, ".ts"), `${base}.ts`, join(base, "index.ts")])
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  return undefined;
}

export function importGraph(root: string): ImportGraph {
  const graph: ImportGraph = new Map();
  const name = (p: string) => relative(root, p).split(sep).join("/");
  for (const file of sourceFiles(root)) {
    const deps = new Set<string>();
    for (const s of importSpecifiers(readFileSync(file, "utf8"))) {
      if (!s.startsWith(".")) continue;
      const target = resolveSpecifier(file, s);
      if (!target) throw new Error(`${name(file)}: cannot resolve "${s}"`);
      deps.add(name(target));
    }
    graph.set(name(file), [...deps].sort());
  }
  return graph;
}

/**
 * Every import circle: the strongly connected components of more than one file (Tarjan), plus
 * any file that imports itself, each as its files in order of discovery.
 */
export function findCycles(graph: ImportGraph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    for (;;) {
      const w = stack.pop() as string;
      onStack.delete(w);
      component.push(w);
      if (w === v) break;
    }
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(component.reverse());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}
