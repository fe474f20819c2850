/**
 * What a standalone controller holds as declared, read from its state dir without touching it:
 * for `virtwarden diff`, which compares manifests with it while the controller may be running.
 *
 * Contracts:
 * - Read-only: no lock is taken, no file is created, cut or renamed (the journal is read as it
 *   is, a torn last record is ignored as the controller itself ignores it, never cut off).
 * - Consistent with a compaction running meanwhile (snapshot.json replaced, then journal.log
 *   emptied): the snapshot is read before and after the journal, and the read is done again
 *   when the snapshot changed in between, so no record is lost between the two files.
 * - The declared form is the journal's `desired` record of each manifest object: the resource
 *   exactly as the loader produced it (defaults applied) when the controller last took it.
 *   Controller-created objects (`owned`) are not the manifests' and are left out.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { Resource } from "../../api/types.js";
import { readState } from "./journal.js";
import { emptyState, fold, type PersistedState } from "./state.js";

export interface DeclaredObject {
  /** The last declared form (the manifest as loaded and defaulted). */
  resource: Resource;
  /** Its deletion is under way (finalizers running): a manifest for it now makes a new object. */
  deleting: boolean;
}

/** Objects the controller took from manifests, by id (`Kind|namespace/name`). */
export type DeclaredState = Map<string, DeclaredObject>;

/** Which snapshot file is in place: a compaction renames a new one over it (a new inode). */
async function snapshotStamp(dir: string): Promise<string> {
  try {
    const st = await stat(join(dir, "snapshot.json"));
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return "none";
    throw e;
  }
}

export async function readDeclaredState(stateDir: string): Promise<DeclaredState> {
  const exists = async (f: string) =>
    stat(join(stateDir, f)).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return false;
        throw e;
      },
    );
  if (!(await exists("journal.log")) && !(await exists("snapshot.json")))
    throw new Error(
      `no controller state in ${stateDir}: start one with \`virtwarden run --state-dir ${stateDir}\``,
    );
  let state: PersistedState | undefined;
  for (let attempt = 0; attempt < 10 && !state; attempt++) {
    const before = await snapshotStamp(stateDir);
    const read = await readState(stateDir, fold, emptyState, { repair: false });
    if ((await snapshotStamp(stateDir)) === before) state = read.state;
  }
  if (!state) throw new Error(`${stateDir}: the state kept changing under the read (compacting); try again`);
  const out: DeclaredState = new Map();
  for (const [id, resource] of Object.entries(state.desired ?? {})) {
    const meta = state.meta[id];
    if (!meta || state.owned[id]) continue;
    out.set(id, { resource, deleting: meta.deletionTimestamp !== undefined });
  }
  return out;
}
