/**
 * Types of the manifest loader's results (loader.ts implements them). Shared by the CLI
 * (`virtwarden validate`), store/files (the watched directory) and tests.
 */
import type { Resource } from "./types.js";

/** Where a document came from: file (or "<stdin>"), document number (first is 1; 0 = the file itself), 1-based line and column. */
export interface SourceLocation {
  file: string;
  document: number;
  line: number;
  column: number;
}

export interface LoadedResource {
  /** Defaults applied, validated against the CRD schema and the cross-field rules. */
  resource: Resource;
  source: SourceLocation;
}

export interface ManifestError extends SourceLocation {
  /** JSON-pointer-like field path, e.g. "spec.resources.memory"; "" for the document itself. */
  path: string;
  message: string;
  /** The kind/name of the object when they could be read, for messages. */
  kind?: string;
  name?: string;
}

/**
 * A document of another API group (a Deployment, an Argo CD Application, a Flux or kustomize
 * Kustomization, a ConfigMap...): a GitOps repository holds those too. Not virtwarden's, so not
 * loaded, and not an error either; counted so that the summary says what was left alone.
 */
export interface SkippedDocument extends SourceLocation {
  apiVersion: string;
  kind: string;
  name?: string;
}

export interface LoadResult {
  resources: LoadedResource[];
  errors: ManifestError[];
  /** Documents of other API groups, left alone (absent: none). */
  skipped?: SkippedDocument[];
}

/** "3 documents of other API groups skipped (2 apps/v1 Deployment, 1 v1 ConfigMap)", or "" for none. */
export function formatSkipped(skipped: readonly SkippedDocument[]): string {
  if (skipped.length === 0) return "";
  const counts = new Map<string, number>();
  for (const s of skipped) {
    const k = `${s.apiVersion} ${s.kind}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const kinds = [...counts].map(([k, n]) => `${n} ${k}`).join(", ");
  return `${skipped.length} document${skipped.length === 1 ? "" : "s"} of other API groups skipped (${kinds})`;
}

/** "file:line:column: document N: path: message" — the one format every error is shown in. */
export function formatManifestError(e: ManifestError): string {
  const where = `${e.file}:${e.line}:${e.column}`;
  const what = e.kind && e.name ? ` ${e.kind}/${e.name}` : "";
  return `${where}: document ${e.document}${what}: ${e.path ? `${e.path}: ` : ""}${e.message}`;
}
