/**
 * Never two running copies of one VM: which of a VM's domains is the VM, which are stale, and
 * which may run where nobody can look. One pure rule for the three places that act on it: the VM
 * decision (virtualmachine/decide.ts), the Host reconciler's listing of a host that answers
 * again (host/reconciler.ts), and a restore (snapshot/restore.ts). Each gathers the copies its
 * own way and acts on the verdict its own way; none decides anything about copies by itself.
 *
 * A copy is judged by the freshest word about it: its host's answer now, else its last listing.
 * It runs (`running`) when that word is anything but shut off: paused, blocked, crashed with its
 * process kept, suspended and shutting down all hold a guest that can run on (see `mayRun`).
 *
 * Rules, in order:
 * 1. The copy on a host a migration in progress brings the VM to (`incoming`) is the VM arriving,
 *    never stale. (A restore passes none: it replaces every copy but its target's.)
 * 2. The assigned host's copy is the VM while that host is not confirmed down: answering, or
 *    unreachable (the VM may run there, so it keeps the place).
 * 3. No assignment, or the assigned host confirmed down (fenced, switched off or removed: nothing
 *    runs there): the VM is a copy that runs elsewhere, if one does. It adopts (follows) a running
 *    copy whose host answers, the incoming host's first; when the incoming host's copy runs but
 *    that host does not answer (and is not fenced), it waits for it (`awaiting`) and adopts
 *    nothing. Without a running copy, a VM with no assignment adopts a defined one whose host
 *    answers, but only while no copy may run anywhere uncertain (rule 6): that copy may be the
 *    VM, and would be destroyed as stale once its host answered. A VM whose assigned host is
 *    down and that runs nowhere adopts nothing: it is recovered (placed anew).
 *    The only running copy of a VM whose host is down is thus never destroyed; it is followed.
 * 4. Stale: every other copy on a host that answers, once the VM has (or had) an assignment, is
 *    removed now (destroyed if running, then undefined). A VM with no assignment has no stale copy
 *    yet: the copy it adopts decides, and the others are stale at its next pass.
 * 5. A stale copy whose host does not answer, and copies on hosts fenced, switched off or removed,
 *    are left where they are (`left`): they are judged again when their host is listed again.
 * 6. Uncertain: a copy that runs (as last seen) on a host neither fenced nor answering, or whose
 *    state could not be read, and every host that was up and has not been listed since this
 *    controller started (a start sent just before a controller died may run there), the incoming
 *    host included. Nothing may start while one is uncertain; a restore waits for unlisted hosts
 *    and fails on an unreachable copy.
 */
import type { DomainState } from "../providers/types.js";

/** The health of a VM's host, as the VM reconciler sees it (virtualmachine/observe.ts). */
export type HostHealth = "ready" | "unreachable" | "fenced" | "gone";

/** Whether a domain in this state holds a guest that runs, or can run on: anything but shut off. */
export function mayRun(state: DomainState): boolean {
  return state !== "shutoff";
}

/** One copy of the VM's domain, on a host other than the assigned one. */
export interface Copy {
  host: string;
  /** Not shut off, per its host's answer or, when it could not be asked, its last listing. */
  running: boolean;
  /** Its host answers and the copy's state was read: it can be removed now. */
  reachable: boolean;
  /**
   * Its host is neither fenced nor answering, or the state query failed: it may run whatever it
   * was last seen doing (observe.ts counts a failed query on an answering host as running).
   */
  uncertain?: boolean;
}

export interface CopiesInput {
  /** The host the VM is assigned to (the ledger, else its status); for a restore, its target. */
  assigned: string | undefined;
  assignedHealth: HostHealth | undefined;
  /** The copies on hosts other than `assigned`. */
  copies: readonly Copy[];
  /** Hosts a migration in progress brings the VM to (status.migration InProgress, capacity held). */
  incoming?: readonly (string | undefined)[];
  /** Hosts that were up and have not been listed since this controller started. */
  unlisted?: readonly string[];
}

export interface StaleCopy {
  host: string;
  /** Destroy before the undefine. */
  running: boolean;
  why: string;
}

export interface CopiesVerdict {
  /** The host whose copy is the VM: its assigned host, or the copy it adopts; none: place it. */
  keep: string | undefined;
  /** `keep` is not the assignment: the VM's ledger entry moves there (why: rule 3). */
  adopt?: { host: string; why: "unassigned" | "moved" | "survived"; running: boolean };
  /** The incoming host's copy runs, but its host does not answer: adopt nothing, start nothing. */
  awaiting?: string;
  /** Remove now. */
  stale: StaleCopy[];
  /** Left in place, judged again once their host is listed again. */
  left: { host: string; why: "unreachable" | "fenced" }[];
  /** May run where nobody can look: nothing starts while one is listed. */
  uncertain: { host: string; why: "unreachable" | "unlisted" }[];
}

const confirmedDown = (h: HostHealth | undefined) => h === "fenced" || h === "gone";

export function resolveCopies(input: CopiesInput): CopiesVerdict {
  const incoming = new Set(input.incoming?.filter((h): h is string => h !== undefined));
  const copies = input.copies.filter((c) => c.host !== input.assigned);
  const uncertain: CopiesVerdict["uncertain"] = [
    ...copies
      .filter((c) => c.uncertain && c.running)
      .map((c) => ({ host: c.host, why: "unreachable" as const })),
    ...(input.unlisted ?? [])
      .filter((h) => h !== input.assigned)
      .map((h) => ({ host: h, why: "unlisted" as const })),
  ];
  let keep: string | undefined;
  let adopt: CopiesVerdict["adopt"];
  let awaiting: string | undefined;
  if (input.assigned && !confirmedDown(input.assignedHealth)) {
    keep = input.assigned;
  } else {
    // On a fenced host the arriving copy runs no more, whatever its last listing said.
    const arriving = copies.find((c) => incoming.has(c.host) && c.running && (c.reachable || c.uncertain));
    const survivor = copies.find((c) => c.reachable && c.running);
    const defined = copies.find((c) => c.reachable);
    if (arriving?.uncertain) awaiting = arriving.host;
    else if (arriving)
      adopt = { host: arriving.host, why: input.assigned ? "moved" : "unassigned", running: true };
    else if (survivor)
      adopt = { host: survivor.host, why: input.assigned ? "survived" : "unassigned", running: true };
    else if (!input.assigned && defined && uncertain.length === 0)
      adopt = { host: defined.host, why: "unassigned", running: false };
    keep = adopt?.host;
  }
  const stale: StaleCopy[] = [];
  const left: CopiesVerdict["left"] = [];
  for (const c of copies) {
    if (c.host === keep || incoming.has(c.host)) continue;
    if (!c.reachable) {
      left.push({ host: c.host, why: c.uncertain ? "unreachable" : "fenced" });
      continue;
    }
    if (!input.assigned) continue; // rule 4: the adopted copy decides, at the next pass
    stale.push({
      host: c.host,
      running: c.running,
      why: keep
        ? `the VM is on ${keep}`
        : awaiting
          ? `the VM may have arrived on ${awaiting}`
          : `the VM's host ${input.assigned} is down and the VM is placed anew`,
    });
  }
  return {
    keep,
    ...(adopt ? { adopt } : {}),
    ...(awaiting ? { awaiting } : {}),
    stale,
    left,
    uncertain,
  };
}
