/** Per-request options for client-node's generated APIs, shared by the store and the elector. */
import { type ConfigurationOptions, Observable, type ObservableMiddleware } from "@kubernetes/client-node";

export type RequestOptions = ConfigurationOptions<ObservableMiddleware>;

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
