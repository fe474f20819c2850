/**
 * Manifest loading: files, directories (recursive), stdin; multi-document YAML or JSON; schema
 * defaults applied; every error located (file, document, line, column, field path).
 *
 * Contracts: loading applies nothing; one bad document never hides or changes the good ones; the
 * same object (kind, namespace, name) defined twice is an error on the second definition; the
 * loader never throws for bad input (only for I/O failures it reports as errors too).
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import {
  type Document,
  isAlias,
  isCollection,
  isMap,
  isNode,
  isScalar,
  isSeq,
  LineCounter,
  parseAllDocuments,
  visit,
} from "yaml";
import { checkAcrossDocuments, checkNetworkAddresses, type LocatedResource } from "./addresses.js";
import type { FieldError } from "./field-error.js";
import type {
  LoadedResource,
  LoadResult,
  ManifestError,
  SkippedDocument,
  SourceLocation,
} from "./manifest.js";
import { validateObject } from "./schema.js";
import {
  API_VERSION,
  CLUSTER_SCOPED,
  GROUP,
  KINDS,
  type Kind,
  type Resource,
  type VirtualNetworkSpec,
} from "./types.js";
import { firstSyntaxFault } from "./yaml-syntax.js";

const MANIFEST_EXT = /\.(ya?ml|json)$/i;

/** "spec.disks[1].size" -> ["spec", "disks", 1, "size"]. */
export function pathSegments(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (m[2] !== undefined) out.push(Number(m[2]));
    else if (m[1] !== undefined) out.push(m[1]);
  }
  return out;
}

/** Offset of the deepest YAML node along `path` (the parent when the field itself is missing). */
function offsetOf(doc: Document, path: string): number | undefined {
  const segs = pathSegments(path);
  let node: unknown = doc.contents;
  let offset = isNode(node) ? node.range?.[0] : undefined;
  for (const seg of segs) {
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => (isNode(p.key) ? (p.key as { value?: unknown }).value : p.key) === seg,
      );
      if (!pair) break;
      // Point at the key: "line of the field" is where the user wrote its name.
      offset = isNode(pair.key) ? (pair.key.range?.[0] ?? offset) : offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === "number") {
      const item = node.items[seg];
      if (!item) break;
      node = item;
      offset = isNode(item) ? (item.range?.[0] ?? offset) : offset;
    } else break;
  }
  return offset;
}

interface DocContext {
  file: string;
  document: number;
  doc: Document;
  lines: LineCounter;
  /** Length of the whole text: a position is never past its last character. */
  length: number;
}

/** Line and column of an offset, kept on a line of the text (an error at the end of a file that ends with a newline is on its last line, not the empty one after). */
function positionOf(lines: LineCounter, length: number, offset: number): { line: number; col: number } {
  return lines.linePos(Math.max(0, Math.min(offset, length - 1)));
}

function locate(ctx: DocContext, path: string): SourceLocation {
  const offset = offsetOf(ctx.doc, path) ?? ctx.doc.range?.[0] ?? 0;
  const pos = positionOf(ctx.lines, ctx.length, offset);
  return { file: ctx.file, document: ctx.document, line: pos.line, column: pos.col };
}

interface ParsedText {
  docs: Document.Parsed[];
  lines: LineCounter;
}

/** The text's documents as the loader reads them (the same text always parses the same). */
function parseText(text: string): ParsedText {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: false, // firstKeyProblem, in linear time
    // Nothing on stderr from the parser: collection keys are reported below, as errors.
    logLevel: "error",
  }) as Document.Parsed[];
  return { docs: Array.isArray(docs) ? docs : [docs as unknown as Document.Parsed], lines };
}

/**
 * Where the fields of a loaded document are, for the checks across documents, which ask only
 * when one fails. It holds the text, not the syntax trees: a store keeps its loaded resources for
 * as long as their files define them, and every document's tree kept alive with them held about
 * 70 MB of heap at 10,000 VMs (bench:scale, heap after a full GC: 179 MB with them, 112 without).
 * The trees are held weakly and parsed again once collected; a WeakRef's target lives at least
 * until the end of the job that made or read it, so one run of the checks parses a file at most
 * once. The closures are made here, away from the loader's per-document scope, whose variables
 * (the document's tree among them) they would otherwise keep.
 */
function locator(
  text: string,
  file: string,
  first: ParsedText,
): (document: number) => (path: string) => SourceLocation {
  let trees = new WeakRef(first);
  return (document) => (path) => {
    let parsed = trees.deref();
    if (!parsed) {
      parsed = parseText(text);
      trees = new WeakRef(parsed);
    }
    const doc = parsed.docs[document - 1];
    if (!doc) return { file, document, line: 1, column: 1 };
    return locate({ file, document, doc, lines: parsed.lines, length: text.length }, path);
  };
}

function describeValue(v: unknown): string {
  return v === undefined ? "missing" : JSON.stringify(v);
}

/**
 * The API group of an apiVersion ("apps/v1" -> "apps", "v1" -> "" for the core group), or
 * undefined when there is no apiVersion string to read.
 */
export function apiGroupOf(apiVersion: unknown): string | undefined {
  if (typeof apiVersion !== "string" || apiVersion === "") return undefined;
  const slash = apiVersion.indexOf("/");
  return slash < 0 ? "" : apiVersion.slice(0, slash);
}

/**
 * Whether a parsed document belongs to another API group than virtwarden.io, with a kind: the
 * loader skips it (a repository holds Deployments, Argo CD and Flux objects too). A document of
 * the virtwarden.io group with a kind virtwarden does not know is not foreign: that is a typo,
 * and validateResource says so.
 */
export function isForeignDocument(value: unknown): value is { apiVersion: string; kind: string } {
  if (!value || typeof value !== "object" || Array.isArray(value)) return false;
  const { apiVersion, kind } = value as { apiVersion?: unknown; kind?: unknown };
  const group = apiGroupOf(apiVersion);
  return group !== undefined && group !== GROUP && typeof kind === "string" && kind !== "";
}

/** Validate one parsed object: defaults applied on a copy; errors as field paths. */
export function validateResource(input: unknown): { resource?: Resource; errors: FieldError[] } {
  if (!input || typeof input !== "object" || Array.isArray(input)) {
    return {
      errors: [
        { path: "", message: "a manifest must be a mapping with apiVersion, kind, metadata and spec" },
      ],
    };
  }
  const obj = structuredClone(input) as Record<string, unknown>;
  const kind = obj.kind;
  const apiVersion = obj.apiVersion;
  if (typeof kind !== "string" || kind === "")
    return { errors: [{ path: "kind", message: "Required value: kind", missing: kind === undefined }] };
  if (typeof apiVersion !== "string" || apiVersion === "") {
    return {
      errors: [
        { path: "apiVersion", message: "Required value: apiVersion", missing: apiVersion === undefined },
      ],
    };
  }
  if (!(KINDS as readonly string[]).includes(kind) || !apiVersion.startsWith(`${GROUP}/`)) {
    return {
      errors: [
        {
          path: "kind",
          message: `unknown kind ${kind} in ${apiVersion} (virtwarden knows ${KINDS.join(", ")} in ${API_VERSION})`,
        },
      ],
    };
  }
  if (apiVersion !== API_VERSION) {
    return {
      errors: [
        {
          path: "apiVersion",
          message: `unknown version ${describeValue(apiVersion)}: virtwarden serves ${API_VERSION}`,
        },
      ],
    };
  }
  const meta = obj.metadata as Record<string, unknown> | undefined;
  if (meta && typeof meta === "object" && !Array.isArray(meta)) {
    if (CLUSTER_SCOPED.has(kind as Kind)) delete meta.namespace;
    else meta.namespace ??= "default";
  }
  const errors = validateObject(kind as Kind, obj);
  // What the schema cannot express runs on what it accepts (as the CEL rules do).
  if (errors.length === 0 && kind === "VirtualNetwork")
    errors.push(...checkNetworkAddresses((obj as unknown as { spec: VirtualNetworkSpec }).spec));
  return errors.length > 0 ? { errors } : { resource: obj as unknown as Resource, errors };
}

export function identity(r: Pick<Resource, "kind" | "metadata">): string {
  return `${r.kind}/${r.metadata.namespace ? `${r.metadata.namespace}/` : ""}${r.metadata.name}`;
}

/**
 * The first mapping key JSON cannot hold: a mapping or a list (`? [a, b]: c`, `{x: 1}: y`), or
 * a key a mapping already has (as JSON sees keys: `1` and `"1"` are the same). Checked here in
 * one pass rather than by the parser's uniqueKeys, which compares every key with every other
 * (a mapping of 50,000 keys took minutes).
 */
function firstKeyProblem(doc: Document.Parsed): { offset: number; message: string } | undefined {
  let found: { offset: number; message: string } | undefined;
  const offsetOf = (n: unknown) => (n as { range?: [number, number, number] }).range?.[0] ?? doc.range[0];
  visit(doc, {
    Map(_key, map) {
      const seen = new Set<string>();
      for (const pair of map.items) {
        const key = isAlias(pair.key) ? pair.key.resolve(doc) : pair.key;
        if (isCollection(key)) {
          found = {
            offset: offsetOf(pair.key),
            message: "a mapping key must be a string, not a mapping or a list (JSON has no such keys)",
          };
          return visit.BREAK;
        }
        const name = String(isScalar(key) ? key.value : key);
        if (seen.has(name)) {
          found = { offset: offsetOf(pair.key), message: `duplicated mapping key "${name}"` };
          return visit.BREAK;
        }
        seen.add(name);
      }
    },
  });
  return found;
}

/** Errors shown per document: locating each is linear in the document, so a document of 50,000 unknown keys must not cost 50,000 of them. */
export const MAX_ERRORS_PER_DOCUMENT = 50;

/** At most this many aliases are resolved per document: a "billion laughs" is refused, not expanded. */
export const MAX_ALIASES = 100;

function aliasProblem(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  if (/alias count|resource exhaustion/i.test(m))
    return `too many aliases (more than ${MAX_ALIASES} expansions): refused, as an alias bomb would expand without bound`;
  return m;
}

/**
 * Load one text (a file's content). Documents are numbered from 1.
 *
 * Never throws: a document that cannot be parsed or checked becomes an error at a line of the
 * text, and nothing of it is loaded.
 */
export function loadText(text: string, file: string): LoadResult {
  try {
    return loadTextUnguarded(text, file);
  } catch (e) {
    // Only a bug can land here (every parse and check step reports its own errors): say so at
    // the file's first line rather than take the caller down.
    return {
      resources: [],
      errors: [
        { file, document: 1, line: 1, column: 1, path: "", message: `cannot be loaded: ${String(e)}` },
      ],
    };
  }
}

function loadTextUnguarded(text: string, file: string): LoadResult {
  const resources: LoadedResource[] = [];
  const errors: ManifestError[] = [];
  const skipped: SkippedDocument[] = [];
  let parsed: ParsedText;
  try {
    parsed = parseText(text);
  } catch (e) {
    return {
      resources,
      errors: [{ file, document: 1, line: 1, column: 1, path: "", message: `unreadable YAML: ${String(e)}` }],
    };
  }
  const { docs, lines } = parsed;
  const fieldsOf = locator(text, file, parsed);
  const seen = new Map<string, SourceLocation>();
  docs.forEach((doc, i) => {
    const ctx: DocContext = { file, document: i + 1, doc, lines, length: text.length };
    const syntaxError = (problem?: string) => {
      const fault = firstSyntaxFault(text, doc, lines, problem);
      errors.push({
        file,
        document: i + 1,
        line: fault.line,
        column: fault.column,
        path: "",
        message: `YAML syntax: ${fault.message}`,
      });
    };
    if (doc.errors.length > 0) {
      syntaxError();
      return;
    }
    const keyProblem = firstKeyProblem(doc);
    if (keyProblem) {
      const pos = positionOf(lines, text.length, keyProblem.offset);
      errors.push({
        file,
        document: i + 1,
        line: pos.line,
        column: pos.col,
        path: "",
        message: `YAML syntax: ${keyProblem.message}`,
      });
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIASES });
    } catch (e) {
      syntaxError(aliasProblem(e));
      return;
    }
    if (value === null || value === undefined) return; // an empty document
    const named = value as { kind?: unknown; metadata?: { name?: unknown } };
    const kind = typeof named.kind === "string" ? named.kind : undefined;
    const name = typeof named.metadata?.name === "string" ? named.metadata.name : undefined;
    if (isForeignDocument(value)) {
      skipped.push({
        ...locate(ctx, ""),
        apiVersion: value.apiVersion,
        kind: value.kind,
        ...(name ? { name } : {}),
      });
      return;
    }
    let checked: ReturnType<typeof validateResource>;
    try {
      checked = validateResource(value);
    } catch (e) {
      checked = { errors: [{ path: "", message: `cannot be checked: ${String(e)}` }] };
    }
    const { resource, errors: fieldErrors } = checked;
    for (const fe of fieldErrors.slice(0, MAX_ERRORS_PER_DOCUMENT)) {
      errors.push({
        ...locate(ctx, fe.path),
        path: fe.path,
        message: fe.message,
        ...(kind ? { kind } : {}),
        ...(name ? { name } : {}),
      });
    }
    if (fieldErrors.length > MAX_ERRORS_PER_DOCUMENT)
      errors.push({
        ...locate(ctx, ""),
        path: "",
        message: `and ${fieldErrors.length - MAX_ERRORS_PER_DOCUMENT} more errors in this document (the first ${MAX_ERRORS_PER_DOCUMENT} are shown)`,
        ...(kind ? { kind } : {}),
        ...(name ? { name } : {}),
      });
    if (!resource) return;
    const source = locate(ctx, "");
    const id = identity(resource);
    const first = seen.get(id);
    if (first) {
      errors.push({
        ...locate(ctx, "metadata.name"),
        path: "metadata.name",
        message: `${id} is defined twice (first at ${first.file}:${first.line})`,
        kind: resource.kind,
        name: resource.metadata.name,
      });
      return;
    }
    seen.set(id, source);
    const loaded: LocatedResource = { resource, source };
    // Where each field is, for the checks across documents; not enumerable, so a loaded resource
    // still compares and serialises as {resource, source}.
    Object.defineProperty(loaded, "locate", {
      value: fieldsOf(i + 1),
      enumerable: false,
    });
    resources.push(loaded);
  });
  return { resources, errors, ...(skipped.length > 0 ? { skipped } : {}) };
}

/**
 * Names listed in a directory's `.virtwardenignore` (one per line, `#` comments) are skipped:
 * CI files, or manifests meant for another controller. Documents of other API groups (Argo CD or
 * Flux objects, Deployments) need no entry: the loader skips and counts them anyway.
 */
async function ignoredNames(dir: string): Promise<Set<string>> {
  try {
    const text = await readFile(join(dir, ".virtwardenignore"), "utf8");
    return new Set(
      text
        .split("\n")
        .map((l) => l.replace(/#.*/, "").trim().replace(/\/$/, ""))
        .filter(Boolean),
    );
  } catch {
    return new Set();
  }
}

/** Whether `file` below `root` is skipped by a `.virtwardenignore` on the way (or is hidden). */
export async function isIgnoredPath(root: string, file: string): Promise<boolean> {
  const rel = relative(root, file);
  if (rel.startsWith("..") || rel === "") return false;
  const parts = rel.split(sep);
  let dir = root;
  for (const part of parts) {
    if (part.startsWith(".") || (await ignoredNames(dir)).has(part)) return true;
    dir = join(dir, part);
  }
  return false;
}

async function expand(path: string, out: string[]): Promise<void> {
  const st = await stat(path);
  if (st.isDirectory()) {
    const entries = (await readdir(path)).sort();
    const ignored = await ignoredNames(path);
    for (const e of entries) {
      if (e.startsWith(".") || ignored.has(e)) continue;
      const p = join(path, e);
      // Removed since the listing (a directory being regenerated): no longer a manifest.
      const s = await stat(p).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return undefined;
        throw err;
      });
      if (!s) continue;
      if (s.isDirectory()) await expand(p, out);
      else if (MANIFEST_EXT.test(e)) out.push(p);
    }
  } else out.push(path);
}

/** The manifest files under these paths (directories recursively, hidden entries skipped). */
export async function manifestFiles(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) if (p !== "-") await expand(p, out);
  return out;
}

/**
 * Merge per-file results: a second definition of the same object anywhere is an error, and so is
 * what only the documents together show (addresses.ts: checkAcrossDocuments); a document with
 * such an error is not loaded.
 */
export function mergeResults(results: LoadResult[]): LoadResult {
  const resources: LoadedResource[] = [];
  const errors: ManifestError[] = [];
  const skipped: SkippedDocument[] = [];
  const seen = new Map<string, SourceLocation>();
  for (const r of results) {
    errors.push(...r.errors);
    skipped.push(...(r.skipped ?? []));
    for (const lr of r.resources) {
      const id = identity(lr.resource);
      const first = seen.get(id);
      if (first) {
        errors.push({
          ...lr.source,
          path: "metadata.name",
          message: `${id} is defined twice (first at ${first.file}:${first.line})`,
          kind: lr.resource.kind,
          name: lr.resource.metadata.name,
        });
        continue;
      }
      seen.set(id, lr.source);
      resources.push(lr);
    }
  }
  const across = checkAcrossDocuments(resources);
  const skippedPart = skipped.length > 0 ? { skipped } : {};
  if (across.length === 0) return { resources, errors, ...skippedPart };
  const broken = new Set(across.map((e) => `${e.file}\n${e.document}`));
  return {
    resources: resources.filter((r) => !broken.has(`${r.source.file}\n${r.source.document}`)),
    errors: [...errors, ...across],
    ...skippedPart,
  };
}

/** Load files, directories and "-" (stdin text given in opts.stdin). */
export async function loadPaths(paths: string[], opts: { stdin?: string } = {}): Promise<LoadResult> {
  const results: LoadResult[] = [];
  for (const p of paths) {
    if (p === "-") {
      results.push(loadText(opts.stdin ?? "", "<stdin>"));
      continue;
    }
    let files: string[];
    try {
      files = await manifestFiles([p]);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      results.push({
        resources: [],
        errors: [
          {
            file: p,
            document: 0,
            line: 0,
            column: 0,
            path: "",
            message: code === "ENOENT" ? "no such file or directory" : String(e),
          },
        ],
      });
      continue;
    }
    for (const f of files) {
      try {
        results.push(loadText(await readFile(f, "utf8"), f));
      } catch (e) {
        results.push({
          resources: [],
          errors: [
            { file: f, document: 0, line: 0, column: 0, path: "", message: `cannot read: ${String(e)}` },
          ],
        });
      }
    }
  }
  return mergeResults(results);
}
