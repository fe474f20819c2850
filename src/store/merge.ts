/**
 * Three-way merge of a status: what a reconcile changed (from the status it read, `base`, to the
 * one it computed, `ours`) applied onto the status now stored (`theirs`), which another write
 * changed in between. A conflict must neither throw away what the reconcile did (a recovery it
 * carried out, recorded only in its status) nor write its stale reading over newer fields.
 *
 * Granularity: top-level status fields, and conditions by type. A field the reconcile did not
 * change keeps the stored value; one it changed (or removed) takes its value. The merged status
 * may mix two reconciles' views for a moment: the write's own watch event brings the next
 * reconcile, which recomputes everything from the merged object (level-triggered).
 */

type Status = Record<string, unknown>;
interface Condition {
  type: string;
  [k: string]: unknown;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export function mergeStatus(base: Status | undefined, ours: Status, theirs: Status | undefined): Status {
  const b = base ?? {};
  const t = theirs ?? {};
  const out: Status = { ...t };
  for (const k of new Set([...Object.keys(b), ...Object.keys(ours)])) {
    if (k === "conditions") continue;
    if (same(b[k], ours[k])) continue;
    if (ours[k] === undefined) delete out[k];
    else out[k] = ours[k];
  }
  const conditions = mergeConditions(
    b.conditions as Condition[] | undefined,
    ours.conditions as Condition[] | undefined,
    t.conditions as Condition[] | undefined,
  );
  if (conditions) out.conditions = conditions;
  else delete out.conditions;
  return out;
}

function mergeConditions(
  base: Condition[] | undefined,
  ours: Condition[] | undefined,
  theirs: Condition[] | undefined,
): Condition[] | undefined {
  if (!base && !ours && !theirs) return undefined;
  const byType = (list: Condition[] | undefined) => new Map((list ?? []).map((c) => [c.type, c]));
  const b = byType(base);
  const o = byType(ours);
  const merged = byType(theirs);
  for (const type of new Set([...b.keys(), ...o.keys()])) {
    const mine = o.get(type);
    if (same(b.get(type), mine)) continue;
    if (mine) merged.set(type, mine);
    else merged.delete(type);
  }
  // Keep the computed order for the reconcile's own conditions, others after.
  const order = [...(ours ?? []).map((c) => c.type), ...(theirs ?? []).map((c) => c.type)];
  return [...merged.values()].sort((x, y) => order.indexOf(x.type) - order.indexOf(y.type));
}
