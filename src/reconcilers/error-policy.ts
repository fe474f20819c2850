/**
 * What the reconcilers' errors mean to the controller (its ErrorPolicy, controller/outcome.ts):
 * the controller knows no store, so the side that uses the store says which of its errors are
 * conflicts. A ConflictError (the object changed since it was read, store/types.ts) is a conflict;
 * every other error is a failure to retry with backoff.
 */
import type { ErrorClass } from "../controller/outcome.js";
import { ConflictError } from "../store/types.js";

export function reconcileErrorPolicy(err: unknown): ErrorClass {
  return err instanceof ConflictError ? "conflict" : "retry";
}
