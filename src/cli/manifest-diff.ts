/**
 * The comparison and the output of `virtwarden diff`, pure (no I/O): what applying the manifests
 * would change against the live objects, as `kubectl diff` shows it.
 *
 * - Only what the user owns is compared: apiVersion, kind, name, namespace, labels, annotations
 *   and spec (standalone), or the live object against the server's dry-run result with the
 *   fields the server writes removed (Kubernetes: `serverOwnedRemoved`). Status never.
 * - Mapping keys are sorted before the YAML is written, so a manifest whose keys were merely
 *   reordered shows no difference; list order is kept (it means something).
 * - The unified diff is jsdiff's (`diff` on npm), with a `diff -u -N live/... manifests/...`
 *   header per resource, as kubectl diff prints it.
 */
import { createTwoFilesPatch, FILE_HEADERS_ONLY } from "diff";
import { stringify } from "yaml";
import { KINDS, type Kind, type Resource } from "../api/types.js";
import { canonical } from "../providers/spec-hash.js";
import { jsonEqual } from "../store/equal.js";

export type ChangeType = "created" | "changed" | "deleted";

export interface ResourceChange {
  kind: Kind;
  namespace?: string;
  name: string;
  change: ChangeType;
  /** The compared form of the live object (absent: created). */
  live?: unknown;
  /** The compared form of what the manifests make of it (absent: deleted). */
  manifest?: unknown;
}

/** A resource as the comparison sees it: a plain object with its identity. */
export interface Comparable {
  kind: Kind;
  namespace?: string;
  name: string;
  /** What is compared (already reduced to the compared parts). */
  body: unknown;
}

/** The parts of a declared resource the user owns (what standalone mode compares). */
export function userOwned(r: Resource): unknown {
  const m = r.metadata;
  return {
    apiVersion: r.apiVersion,
    kind: r.kind,
    metadata: {
      name: m.name,
      ...(m.namespace ? { namespace: m.namespace } : {}),
      ...(m.labels && Object.keys(m.labels).length > 0 ? { labels: m.labels } : {}),
      ...(m.annotations && Object.keys(m.annotations).length > 0 ? { annotations: m.annotations } : {}),
    },
    spec: r.spec,
  };
}

/** Metadata the API server writes on every object: not the user's, so never a difference. */
const SERVER_METADATA = ["managedFields", "resourceVersion", "generation", "uid", "creationTimestamp"];

/** A live or dry-run object without status and the server's bookkeeping (what kubectl diff drops). */
export function serverOwnedRemoved(obj: Record<string, unknown>): unknown {
  const { status: _status, ...rest } = obj;
  const metadata = { ...((rest.metadata as Record<string, unknown> | undefined) ?? {}) };
  for (const k of SERVER_METADATA) delete metadata[k];
  return { ...rest, metadata };
}

const idOf = (c: { kind: string; namespace?: string; name: string }) =>
  `${c.kind}|${c.namespace ?? ""}|${c.name}`;

/**
 * Live vs manifests: one change per resource that differs, in kind order (KINDS), then
 * namespace and name. `deletions: false` (Kubernetes mode, where apply never deletes) leaves
 * out what only the live side has.
 */
export function compareResources(
  live: readonly Comparable[],
  manifests: readonly Comparable[],
  opts: { deletions: boolean } = { deletions: true },
): ResourceChange[] {
  const liveById = new Map(live.map((c) => [idOf(c), c]));
  const wanted = new Map(manifests.map((c) => [idOf(c), c]));
  const out: ResourceChange[] = [];
  const ident = (c: Comparable) => ({
    kind: c.kind,
    ...(c.namespace ? { namespace: c.namespace } : {}),
    name: c.name,
  });
  for (const [id, m] of wanted) {
    const l = liveById.get(id);
    const manifest = canonical(m.body);
    if (!l) out.push({ ...ident(m), change: "created", manifest });
    else {
      const was = canonical(l.body);
      if (!jsonEqual(was, manifest)) out.push({ ...ident(m), change: "changed", live: was, manifest });
    }
  }
  if (opts.deletions)
    for (const [id, l] of liveById)
      if (!wanted.has(id)) out.push({ ...ident(l), change: "deleted", live: canonical(l.body) });
  const rank = (k: Kind) => KINDS.indexOf(k);
  return out.sort(
    (a, b) =>
      rank(a.kind) - rank(b.kind) ||
      (a.namespace ?? "").localeCompare(b.namespace ?? "") ||
      a.name.localeCompare(b.name),
  );
}

/** `VirtualMachine/default/web`, `Host/kvm-01`. */
export function resourcePath(c: { kind: string; namespace?: string; name: string }): string {
  return `${c.kind}/${c.namespace ? `${c.namespace}/` : ""}${c.name}`;
}

const toYaml = (v: unknown) => (v === undefined ? "" : stringify(v, { lineWidth: 0 }));

/** kubectl diff's output: a `diff -u -N` header, then the unified diff of the YAML, per resource. */
export function formatUnified(changes: readonly ResourceChange[]): string {
  return changes
    .map((c) => {
      const a = `live/${resourcePath(c)}`;
      const b = `manifests/${resourcePath(c)}`;
      const patch = createTwoFilesPatch(a, b, toYaml(c.live), toYaml(c.manifest), undefined, undefined, {
        context: 3,
        headerOptions: FILE_HEADERS_ONLY,
      });
      return `diff -u -N ${a} ${b}\n${patch.replace(/^={3,}\n/m, "")}`;
    })
    .join("");
}

/** `-o name`: `KIND NAMESPACE/NAME created|changed|deleted` per line (cluster-scoped: `KIND NAME`). */
export function formatNames(changes: readonly ResourceChange[]): string {
  return changes
    .map((c) => `${c.kind} ${c.namespace ? `${c.namespace}/` : ""}${c.name} ${c.change}\n`)
    .join("");
}
