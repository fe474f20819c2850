/**
 * What a reconcile returns (kube-rs / controller-runtime style): `{ requeueAfterMs }` to be called
 * again later, nothing to wait for the next event, or a thrown error. A thrown error is retried
 * with per-key exponential backoff; success resets the backoff. A TerminalError (a bad spec, a
 * request that can never succeed as written) is recorded and not retried until the key is
 * enqueued again by a change. What else a thrown error means is the reconciler side's to say
 * (its ErrorPolicy): the controller knows no store, provider or API error.
 */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

export class TerminalError extends Error {
  constructor(
    message: string,
    readonly reason = "InvalidSpec",
  ) {
    super(message);
    this.name = "TerminalError";
  }
}

/**
 * How the controller treats an error a reconcile threw (other than a TerminalError), like kube-rs's
 * `error_policy`: whoever knows the errors (the reconcilers, over the store they use) classifies
 * them; the controller only acts on the class. Both classes are re-queued with the key's backoff.
 * - "retry": a failure: counted as an error, logged at info.
 * - "conflict": the reconcile worked from state older than the object (optimistic concurrency):
 *   not a failure, only too early: counted as a requeue, logged at debug.
 */
export type ErrorClass = "retry" | "conflict";
export type ErrorPolicy = (err: unknown) => ErrorClass;

/** Without a policy every error is a failure to retry. */
export const retryEveryError: ErrorPolicy = () => "retry";

export interface Reconciler {
  /** Controller name used in metrics and logs, e.g. "virtualmachine". */
  readonly name: string;
  reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | undefined>;
}
