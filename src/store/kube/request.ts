/** Per-request options for client-node's generated APIs, shared by the store and the elector. */
import { createHash } from "node:crypto";
import https from "node:https";
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
    const agent = (opts as { agent?: unknown }).agent;
    if (agent !== undefined) (opts as { agent?: unknown }).agent = sharedAgent(agent);
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const agent = context.getAgent();
    if (agent !== undefined) context.setAgent(sharedAgent(agent) as https.Agent);
    context.setHeaderParam("User-Agent", USER_AGENT);
    const method = String(context.getHttpMethod()).toUpperCase();
    if (method === "POST" || method === "PUT" || method === "PATCH")
      context.setQueryParam("fieldManager", FIELD_MANAGER);
  }
}

/**
 * client-node builds a new `https.Agent` for every request (`createAgent` in
 * applySecurityAuthentication and applyToHTTPSOptions), without keep-alive: every call paid a TCP
 * connect and a TLS handshake, and under load the Lease renewals queued behind handshakes and the
 * lease was lost. One keep-alive agent per set of agent options (CA, client certificate and key,
 * server name, verification, timeout…) is shared by every request of the process instead; a
 * rotated client certificate is new options and gets its own agent. Proxy agents (another class)
 * are left as client-node made them.
 */
const agents = new Map<string, https.Agent>();
const MAX_AGENTS = 8;

function sharedAgent(agent: unknown): unknown {
  if (!(agent instanceof https.Agent) || agent.constructor !== https.Agent) return agent;
  const options = (agent as https.Agent & { options: https.AgentOptions }).options;
  const key = createHash("sha256").update(JSON.stringify(options)).digest("hex");
  let shared = agents.get(key);
  if (!shared) {
    // Forget the oldest options (a client certificate rotated away); not destroyed, so a request
    // or watch still on it finishes, and the server closes its idle connections.
    if (agents.size >= MAX_AGENTS) agents.delete(agents.keys().next().value as string);
    shared = new https.Agent({ ...options, keepAlive: true });
    agents.set(key, shared);
  }
  return shared;
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
