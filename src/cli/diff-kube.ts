/**
 * `virtwarden diff --kubernetes`: each manifest resource is applied server-side with
 * `dryRun: All` (field manager virtwarden, conflicts forced), and compared with the live object,
 * as `kubectl diff --server-side --force-conflicts` does. Nothing is written: the API server
 * runs admission, defaulting and validation and returns what the object would become.
 * The kubeconfig is found as `run --kubernetes` finds it (--kubeconfig, else in-cluster, then
 * $KUBECONFIG or ~/.kube/config).
 */
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import pLimit from "p-limit";
import type { LoadedResource } from "../api/manifest.js";
import { CLUSTER_SCOPED, GROUP, type Kind, VERSION } from "../api/types.js";
import { FIELD_MANAGER, identified } from "../store/kube/request.js";
import { PLURALS } from "../store/kube/store.js";
import { serverOwnedRemoved } from "./manifest-diff.js";

export interface DryRunPair {
  kind: Kind;
  namespace?: string;
  name: string;
  /** The live object without status and server metadata (absent: it does not exist). */
  live?: unknown;
  /** What the dry-run apply returned, reduced the same way. */
  applied: unknown;
}

/** Requests in flight at once (a GET and a dry-run PATCH per resource). */
const REQUESTS_AT_ONCE = 8;

const httpCode = (e: unknown) => {
  const c = (e as { code?: unknown }).code;
  return typeof c === "number" ? c : undefined;
};

/** The API server's own message of a failed request (its Status body), else the error's. */
function serverMessage(e: unknown): string {
  const body = (e as { body?: unknown }).body;
  if (typeof body === "string") {
    try {
      const s = JSON.parse(body) as { message?: string };
      if (s.message) return s.message;
    } catch {}
    return body;
  }
  return e instanceof Error ? e.message : String(e);
}

export async function dryRunApply(resources: LoadedResource[], kubeconfig?: string): Promise<DryRunPair[]> {
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  const api = identified(kc).makeApiClient(CustomObjectsApi);
  const apply = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);
  const limit = pLimit(REQUESTS_AT_ONCE);
  return Promise.all(
    resources.map(({ resource: r, source }) =>
      limit(async (): Promise<DryRunPair> => {
        const clusterScoped = CLUSTER_SCOPED.has(r.kind);
        const t = { group: GROUP, version: VERSION, plural: PLURALS[r.kind], name: r.metadata.name };
        const namespace = r.metadata.namespace ?? "default";
        const where = () =>
          `${source.file}:${source.line}:${source.column}: document ${source.document} ${r.kind}/${r.metadata.name}`;
        let live: Record<string, unknown> | undefined;
        try {
          live = (
            clusterScoped
              ? await api.getClusterCustomObject(t)
              : await api.getNamespacedCustomObject({ ...t, namespace })
          ) as Record<string, unknown>;
        } catch (e) {
          if (httpCode(e) !== 404)
            throw new Error(`${where()}: cannot read it from the API server: ${serverMessage(e)}`);
        }
        const body = { apiVersion: r.apiVersion, kind: r.kind, metadata: r.metadata, spec: r.spec };
        const req = { ...t, body, dryRun: "All", fieldManager: FIELD_MANAGER, force: true };
        let applied: Record<string, unknown>;
        try {
          applied = (
            clusterScoped
              ? await api.patchClusterCustomObject(req, apply)
              : await api.patchNamespacedCustomObject({ ...req, namespace }, apply)
          ) as Record<string, unknown>;
        } catch (e) {
          throw new Error(`${where()}: the API server refuses it (dry run): ${serverMessage(e)}`);
        }
        return {
          kind: r.kind,
          name: r.metadata.name,
          ...(clusterScoped ? {} : { namespace }),
          ...(live ? { live: serverOwnedRemoved(live) } : {}),
          applied: serverOwnedRemoved(applied),
        };
      }),
    ),
  );
}
