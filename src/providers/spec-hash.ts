/**
 * A stable hash of a DomainSpec without its ownership mark: equal specs hash equal whatever the
 * key order, so "the spec changed" is a string comparison (stored in the domain's metadata and
 * in VM status).
 */
import { createHash } from "node:crypto";
import type { DomainSpec } from "./types.js";

/** The value with object keys sorted and undefined members dropped: equal data, equal JSON. */
export function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = canonical(v);
    }
    return out;
  }
  return value;
}

export function specHash(spec: DomainSpec): string {
  const { ownership: _ownership, uuid: _uuid, ...rest } = spec;
  return createHash("sha256")
    .update(JSON.stringify(canonical(rest)))
    .digest("hex")
    .slice(0, 16);
}
