/**
 * What the journal holds for the FileStore, and how its records fold into it. Records are whole
 * values per object (the full meta, the full status), so replaying one twice is harmless.
 */
import { createHash } from "node:crypto";
import type { Kind, Resource } from "../../api/types.js";
import type { JournalRecord } from "./journal.js";

export interface Meta {
  uid: string;
  generation: number;
  specHash: string;
  created: string;
  finalizers: string[];
  deletionTimestamp?: string;
}

export interface PersistedState {
  meta: Record<string, Meta>;
  status: Record<string, unknown>;
  owned: Record<string, Resource>;
  /** The last declared form of each manifest object (what its deletion cleans up after). */
  desired: Record<string, Resource>;
}

export const emptyState = (): PersistedState => ({ meta: {}, status: {}, owned: {}, desired: {} });

/** Journal records fold into the state in place (idempotent: replaying one twice is harmless). */
export function fold(s: PersistedState, r: JournalRecord): PersistedState {
  const id = r.id as string;
  s.desired ??= {}; // snapshots written before it existed
  switch (r.t) {
    case "meta":
      s.meta[id] = r.meta as Meta;
      if (r.desired) s.desired[id] = r.desired as Resource;
      if (r.owned) s.owned[id] = r.owned as Resource;
      break;
    case "desired":
      s.desired[id] = r.obj as Resource;
      break;
    case "status":
      s.status[id] = r.status;
      break;
    case "owned":
      s.owned[id] = r.obj as Resource;
      break;
    case "forget":
      delete s.meta[id];
      delete s.status[id];
      delete s.owned[id];
      delete s.desired[id];
      break;
  }
  return s;
}

export const idOf = (kind: Kind, key: string) => `${kind}|${key}`;
export const splitId = (id: string) => id.split("|") as [Kind, string];
export const hashSpec = (spec: unknown) =>
  createHash("sha1")
    .update(JSON.stringify(spec ?? {}))
    .digest("hex");
