/**
 * Whether two JSON-shaped values say the same thing: the comparison behind "is this status write a
 * no-op". Objects are compared by their keys, in any order, and a key whose value is undefined is
 * the same as no key (JSON drops it); arrays keep their order (conditions and lists are ordered).
 *
 * Why not JSON.stringify on both sides: it depends on key order, and the Kubernetes API server
 * returns custom resources with their keys sorted (Go's encoding of unstructured maps), while a
 * status built here has them in the order the code set them. Every status read back from the API
 * server then differed from the same status computed again, and every reconcile rewrote it.
 * Node's util.isDeepStrictEqual ignores key order too, but counts a key set to undefined as a key.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) {
    // Numbers: JSON has no NaN; anything else of a different type or value differs.
    return false;
  }
  const aa = Array.isArray(a);
  if (aa !== Array.isArray(b)) return false;
  if (aa) {
    const x = a as unknown[];
    const y = b as unknown[];
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!jsonEqual(x[i], y[i])) return false;
    return true;
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    if (!Object.hasOwn(x, k) || x[k] === undefined) continue;
    n++;
    if (!Object.hasOwn(y, k) || !jsonEqual(x[k], y[k])) return false;
  }
  for (const k in y) if (Object.hasOwn(y, k) && y[k] !== undefined) n--;
  return n === 0;
}
