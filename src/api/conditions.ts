/**
 * Conditions, Kubernetes style: a list keyed by `type`; lastTransitionTime changes only when the
 * status flips, so a reconcile that re-asserts the same condition does not rewrite status.
 */
import type { Condition } from "./types.js";

export type ConditionInput = Omit<Condition, "lastTransitionTime">;

/** A new list with `input` set (added, or replaced in place keeping the list order). */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  input: ConditionInput,
  now: Date,
): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === input.type);
  const prev = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message,
    lastTransitionTime: prev && prev.status === input.status ? prev.lastTransitionTime : now.toISOString(),
  };
  if (input.observedGeneration !== undefined) next.observedGeneration = input.observedGeneration;
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

export function getCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return getCondition(conditions, type)?.status === "True";
}
