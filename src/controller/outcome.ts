/**
 * What a reconcile returns (kube-rs / controller-runtime style): `{ requeueAfterMs }` to be called
 * again later, nothing to wait for the next event, or a thrown error. A thrown error is retried
 * with per-key exponential backoff; success resets the backoff. A TerminalError (a bad spec, a
 * request that can never succeed as written) is recorded and not retried until the key is
 * enqueued again by a change.
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

export interface Reconciler {
  /** Controller name used in metrics and logs, e.g. "virtualmachine". */
  readonly name: string;
  reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | undefined>;
}
