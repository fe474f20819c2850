/**
 * Standalone mode's store. `openStateReadOnly` serves `virtwarden get/describe/events` from the
 * view a running (or stopped) controller left in its state directory.
 */
import { join } from "node:path";
import type { Kind, Resource } from "../../api/types.js";
import type { ObjectReference, RecordedEvent } from "../types.js";
import { EventLog } from "./events.js";
import { readView, type SyncStatus } from "./view.js";

export { StateNotWritableError } from "./health.js";
export { JournalCorruptError } from "./journal.js";
export { StateDirLockedError } from "./lock.js";
export { readSecretFile } from "./secrets.js";
export {
  FileStore,
  type FileStoreOptions,
  type ManifestTree,
  type SyncStatus,
  type TreeChange,
} from "./store.js";

export interface StateView {
  list(kind: Kind): Resource[];
  listEvents(regarding?: ObjectReference): RecordedEvent[];
  writtenAt?: string;
  /** `run --git`: where the manifests come from and how the last sync went. */
  sync?: SyncStatus;
}

export async function openStateReadOnly(stateDir: string): Promise<StateView> {
  const path = join(stateDir, "view.json");
  let view: Awaited<ReturnType<typeof readView>>;
  try {
    view = await readView(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw new Error(
        `no controller state in ${stateDir}: start one with \`virtwarden run --state-dir ${stateDir}\``,
      );
    }
    throw new Error(`${path} is unreadable: ${String(e)}`);
  }
  const events = new EventLog(() => new Date());
  events.load(view.events);
  return {
    list: (kind) => view.resources.filter((r) => r.kind === kind),
    listEvents: (ref) => events.list(ref),
    writtenAt: view.writtenAt,
    ...(view.sync ? { sync: view.sync } : {}),
  };
}
export { type DeclaredObject, type DeclaredState, readDeclaredState } from "./declared.js";
