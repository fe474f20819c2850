/** Per-request options for client-node's generated APIs, shared by the store and the elector. */
import {
  type ConfigurationOptions,
  KubeConfig,
  Observable,
  type ObservableMiddleware,
  type RequestContext,
} from "@kubernetes/client-node";
import { VERSION } from "../../cli/version.js";

export type RequestOptions = ConfigurationOptions<ObservableMiddleware>;

/** The field manager of every write (what `kubectl get -o yaml --show-managed-fields` shows). */
export const FIELD_MANAGER = "virtwarden";

/** Sent on every request, in kubectl's style (`kubectl/v1.32.4 (linux/amd64) kubernetes/...`). */
export const USER_AGENT = `virtwarden/${VERSION} (${process.platform}/${process.arch}) node/${process.versions.node}`;

/**
 * A KubeConfig whose requests say who makes them. Without it client-node's requests carry
 * node-fetch's User-Agent, and the API server, which names the field manager of a write without
 * one after the User-Agent, records the controller's writes as `node-fetch`.
 * - generated API calls pass through applySecurityAuthentication: the header, and
 *   `fieldManager=virtwarden` on every POST, PUT and PATCH (create, replace, status, patch);
 * - watches (Watch, via applyToFetchOptions) and websockets pass through applyToHTTPSOptions.
 */
class IdentifiedKubeConfig extends KubeConfig {
  override async applyToHTTPSOptions(opts: Parameters<KubeConfig["applyToHTTPSOptions"]>[0]): Promise<void> {
    await super.applyToHTTPSOptions(opts);
    opts.headers = { ...opts.headers, "User-Agent": USER_AGENT };
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    context.setHeaderParam("User-Agent", USER_AGENT);
    const method = String(context.getHttpMethod()).toUpperCase();
    if (method === "POST" || method === "PUT" || method === "PATCH")
      context.setQueryParam("fieldManager", FIELD_MANAGER);
  }
}

/** The same configuration (clusters, users, contexts), identifying itself on every request. */
export function identified(kc: KubeConfig): KubeConfig {
  if (kc instanceof IdentifiedKubeConfig) return kc;
  const out = new IdentifiedKubeConfig();
  out.loadFromOptions({
    clusters: kc.clusters,
    contexts: kc.contexts,
    users: kc.users,
    currentContext: kc.getCurrentContext(),
  });
  return out;
}

/** Request options that tie the request to `signal` (keeping what `opts` had, e.g. a header). */
export function withSignal(signal: AbortSignal, opts?: RequestOptions): RequestOptions {
  const bind: ObservableMiddleware = {
    pre: (request) => {
      request.setSignal(signal);
      return new Observable(Promise.resolve(request));
    },
    post: (response) => new Observable(Promise.resolve(response)),
  };
  return { ...opts, middleware: [...(opts?.middleware ?? []), bind], middlewareMergeStrategy: "append" };
}
