/**
 * The VirtualMachine decision: observed state + desired state + now -> actions, status, next check.
 * Pure (no I/O, no clock, no randomness): every branch is a row in test/reconcilers/virtualmachine/
 * decide.test.ts.
 *
 * Rules, in order:
 * 1. Deletion: remove every copy of the domain and its overlay volumes, then the finalizer.
 * 2. Never two running copies (copies.ts resolveCopies, the one rule for every copy of a VM): a
 *    copy on a host other than the VM's is removed (destroyed if running) as soon as its host
 *    answers; nothing starts while a copy may run on a host nobody can ask.
 * 3. Not placed: adopt an existing owned domain (controller restart), else place by the scheduler.
 * 4. Placed on a host confirmed down (fenced, removed): follow a copy that runs elsewhere, else
 *    recover it elsewhere (decideHostFailure). Placed on a host that answers: a bring-up past its
 *    phase's deadline is abandoned there (deadlines.ts: cleaned up, placed elsewhere). A
 *    migration under way, or due (its host is in maintenance), comes first (migration.ts). Then
 *    recreate a domain undefined behind our back, apply spec changes (a restart when the VM
 *    runs), correct configuration drift, then enforce the run strategy: start what should run
 *    (crashes restart with exponential backoff until the crash-loop threshold), stop what should
 *    not.
 */
import type { RunStrategy, VirtualMachine, VirtualMachineStatus } from "../../api/types.js";
import type { DomainStateInfo } from "../../providers/types.js";
import { planPlacement } from "../../scheduler/placement.js";
import { type CopiesVerdict, resolveCopies } from "../copies.js";
import {
  type BringUpPhase,
  formatDuration,
  overdueBringUp,
  PHASE_OF_ACTION,
  phaseDeadlinesMs,
  recordMiss,
} from "./deadlines.js";
import { decideMigration } from "./migration.js";
import { diffDomain, disksOnDeletion, leaseKey } from "./render.js";
import type { ObservedDomain, ObservedVM, VMAction, VMDecision, VMEvent } from "./types.js";
import {
  describeLiveChange,
  hasLiveChange,
  honouredAt,
  pendingRestartRequest,
  planSpecChange,
  RESTART_ANNOTATION,
} from "./update.js";

export { RESTART_ANNOTATION };

/** Labels of the restores a VM asks for: after a crash loop, and after a host failure. */
export const CRASHLOOP_RESTORE_LABEL = "virtwarden.io/crashloop-of";
export const RECOVERY_LABEL = "virtwarden.io/recovery-of";

/**
 * The restore one crash-loop episode asks for, named from what it is for rather than the clock:
 * the VM (its uid, so a VM created again under the same name starts afresh) and the restart count
 * that tripped the threshold. A retry after a crash between the create and the status write
 * computes the same name and finds the first restore instead of creating a second.
 */
export function crashLoopRestoreName(vm: VirtualMachine, restartCount: number): string {
  const uid = (vm.metadata.uid ?? "")
    .toLowerCase()
    .replace(/[^a-z0-9]/g, "")
    .slice(0, 8);
  const suffix = `-crashloop-${uid ? `${uid}-` : ""}${restartCount}`;
  return `${vm.metadata.name.slice(0, 253 - suffix.length)}${suffix}`;
}

/** The restore all members of a checkpoint ask for after one host failure. */
export function checkpointRestoreName(snapshot: string, fromHost: string, failedAt: string): string {
  const stamp = failedAt.replace(/[-:.TZ]/g, "").slice(0, 14);
  return `${snapshot}-after-${fromHost}-${stamp}`
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, "-")
    .slice(0, 253);
}

const DEFAULT_BACKOFF_INITIAL_S = 1;
const DEFAULT_BACKOFF_MAX_S = 300;
const DEFAULT_CRASHLOOP_THRESHOLD = 5;
const DEFAULT_CRASHLOOP_WINDOW_S = 600;
/** Re-check a running VM this often even without events (events are hints; this is the safety net). */
export const STEADY_RESYNC_MS = 60_000;

function wantsRunning(strategy: RunStrategy): boolean {
  return strategy === "Always" || strategy === "RerunOnFailure";
}

function isRunning(state: DomainStateInfo): boolean {
  return state.state === "running" || state.state === "blocked" || state.state === "paused";
}

function isCrash(state: DomainStateInfo): boolean {
  return state.state === "crashed" || (state.state === "shutoff" && state.reason === "crashed");
}

export function restartBackoffSeconds(vm: VirtualMachine, crashes: number): number {
  const initial = vm.spec.availability?.restartBackoff?.initialSeconds ?? DEFAULT_BACKOFF_INITIAL_S;
  const max = vm.spec.availability?.restartBackoff?.maxSeconds ?? DEFAULT_BACKOFF_MAX_S;
  // The first crash restarts at once: a crashed VM is down, and the backoff exists for loops.
  if (crashes <= 1) return 0;
  return Math.min(max, initial * 2 ** (crashes - 2));
}

function iso(d: Date): string {
  return d.toISOString();
}

export function decideVM(o: ObservedVM, now: Date): VMDecision {
  const copies = copiesOfVM(o);
  return holdWhileUncertain(trackBringUp(decideUnguarded(o, now, copies), o, now), o, copies);
}

/** The VM's copies judged by the one rule (copies.ts): the target of a move under way is arriving. */
function copiesOfVM(o: ObservedVM): CopiesVerdict {
  const m = o.vm.status?.migration;
  return resolveCopies({
    assigned: o.assignedHost,
    assignedHealth: o.hostHealth,
    copies: o.otherCopies,
    incoming: [m?.result === "InProgress" ? m.targetHost : undefined],
    unlisted: o.unlistedHosts ?? [],
  });
}

/**
 * Whether the decision's actions bring the VM up on its host: a fresh placement, or a retry
 * while a bring-up is recorded there. Its status assumes they succeed (the record goes); should
 * one fail, status.ts records the phase it reached from what act reports.
 */
function trackBringUp(d: VMDecision, o: ObservedVM, now: Date): VMDecision {
  const prev = o.vm.status?.bringUp;
  const host = d.status.host;
  if (!host || (prev && prev.host !== host)) delete d.status.bringUp;
  if (!host || d.deadlineMissed) return d;
  const phases = d.actions.flatMap((a) =>
    (a.type === "provisionDisks" || a.type === "define" || a.type === "start") && a.host === host
      ? [PHASE_OF_ACTION[a.type]]
      : [],
  );
  const fresh = d.actions.some((a) => a.type === "reserve" && a.host === host);
  const first = phases[0];
  if (!first || !(fresh || d.status.bringUp)) return d;
  const prior = fresh ? undefined : d.status.bringUp;
  d.bringUp = {
    host,
    deadlinesMs: phaseDeadlinesMs(o.vm),
    prior,
    initial: prior ?? { host, phase: first, since: iso(now) },
  };
  delete d.status.bringUp;
  return d;
}

/**
 * Never two running copies: nothing starts while a copy may be running on a host that is neither
 * fenced nor answering, or whose domains this controller has not listed yet (a start a
 * controller sent just before it died, that its status never recorded, is such a copy): the
 * verdict's `uncertain` (copies.ts rule 6). The start waits for that host to answer (the copy is
 * then removed as stale) or to be fenced.
 */
function holdWhileUncertain(d: VMDecision, o: ObservedVM, copies: CopiesVerdict): VMDecision {
  if (o.vm.metadata.deletionTimestamp || !d.actions.some((a) => a.type === "start")) return d;
  const doubt = copies.uncertain.find((u) => u.why === "unreachable");
  const unlisted = copies.uncertain.filter((u) => u.why === "unlisted").map((u) => u.host);
  if (!doubt && unlisted.length === 0) return d;
  // Nothing of the decision is acted on or recorded (a restart it counted, a recovery it
  // closed): the status stays as it was, so the next pass decides the same thing afresh.
  return {
    actions: o.hasFinalizer ? [] : [{ type: "addFinalizer" }],
    status: { ...(o.vm.status ?? {}) },
    summary: {
      scheduled: d.summary.scheduled,
      synced: false,
      reason: "CopyUncertain",
      message: doubt
        ? `a copy may be running on ${doubt.host}, which does not answer: nothing starts until it answers or is fenced`
        : `${unlisted.join(", ")} not listed since the controller started (a copy may run there): nothing starts until it answers or is fenced`,
      degraded: "HostUnreachable",
    },
    drift: undefined,
    events: [],
    requeueAfterMs: 1_000,
  };
}

function decideUnguarded(o: ObservedVM, now: Date, copies: CopiesVerdict): VMDecision {
  const vm = o.vm;
  const prev = vm.status ?? {};
  const strategy = vm.spec.runStrategy ?? "Always";
  const status: VirtualMachineStatus = { ...prev };
  const actions: VMAction[] = [];
  const events: VMEvent[] = [];
  const d: VMDecision = {
    actions,
    status,
    summary: { scheduled: !!o.assignedHost, synced: true, reason: "Synced", message: "" },
    drift: undefined,
    events,
    requeueAfterMs: undefined,
  };

  // 1. Deletion.
  if (vm.metadata.deletionTimestamp) {
    status.phase = "Terminating";
    const hosts = new Set<string>();
    if (o.assignedHost && o.domain !== undefined) hosts.add(o.assignedHost);
    for (const c of o.otherCopies) hosts.add(c.host);
    const blocked = [...hosts].filter((h) =>
      h === o.assignedHost ? o.domain === "unknown" : !o.otherCopies.find((c) => c.host === h)?.reachable,
    );
    if (blocked.length > 0) {
      d.summary = {
        scheduled: d.summary.scheduled,
        synced: false,
        reason: "CleanupPending",
        message: `waiting for ${blocked.join(", ")} to answer before removing the domain`,
      };
      d.requeueAfterMs = 5_000;
      return d;
    }
    for (const h of hosts) actions.push({ type: "destroy", host: h }, { type: "undefine", host: h });
    if (o.assignedHost && o.hostHealth !== "gone" && o.hostHealth !== "unreachable") {
      const { remove, retain } = disksOnDeletion(vm);
      if (remove.length > 0) actions.push({ type: "deleteDisks", host: o.assignedHost, volumes: remove });
      if (retain.length > 0) d.retained = { host: o.assignedHost, volumes: retain };
      if (retain.length > 0)
        events.push({
          type: "Normal",
          reason: "DisksRetained",
          action: "Retain",
          note: `kept ${retain.map((v) => `${v.pool}/${v.name}`).join(", ")} on ${o.assignedHost} (deletionPolicy: Retain)`,
        });
    }
    actions.push({ type: "release" });
    if (o.hasFinalizer) actions.push({ type: "removeFinalizer" });
    d.summary = { scheduled: false, synced: true, reason: "Deleted", message: "domain removed" };
    return d;
  }
  if (!o.hasFinalizer) actions.push({ type: "addFinalizer" });

  // 2. Stale copies on other hosts (copies.ts: never the arriving copy of a move under way, never
  // the only running copy of a VM whose host is down, none before an adoption decides).
  for (const c of copies.stale) {
    if (c.running) actions.push({ type: "destroy", host: c.host });
    actions.push({ type: "undefine", host: c.host });
    events.push({
      type: "Warning",
      reason: c.running ? "SplitBrainResolved" : "StaleCopyRemoved",
      action: "Destroy",
      note: `removed a ${c.running ? "running " : ""}copy on ${c.host}; the VM belongs on ${copies.keep ?? o.assignedHost}`,
    });
  }

  // 3. Not placed yet: adopt or schedule.
  const host = o.assignedHost;
  if (!host && o.addressConflict && o.otherCopies.length === 0) {
    // Never placed with an address another claimant holds: two guests would fight on the wire.
    status.phase = "Pending";
    d.summary = { scheduled: false, synced: false, reason: "AddressConflict", message: o.addressConflict };
    d.requeueAfterMs = 30_000;
    return d;
  }
  if (!host) {
    const adopted = copies.adopt;
    if (adopted) {
      actions.push({ type: "reserve", host: adopted.host });
      events.push({
        type: "Normal",
        reason: "Adopted",
        action: "Adopt",
        note: `adopted the domain on ${adopted.host}`,
      });
      status.host = adopted.host;
      // Re-evaluated with the domain observed on that host at the next pass.
      d.requeueAfterMs = 0;
      d.summary = {
        scheduled: true,
        synced: false,
        reason: "Adopting",
        message: `domain found on ${adopted.host}`,
      };
      return d;
    }
    if (strategy === "Halted") {
      status.phase = "Stopped";
      d.summary = {
        scheduled: false,
        synced: true,
        reason: "Halted",
        message: "runStrategy Halted: not placed",
      };
      return d;
    }
    return placeAndStart(d, o, now, strategy);
  }

  // 4. Placed.
  status.host = host;
  if (o.hostHealth === "fenced" || o.hostHealth === "gone") {
    // Stopped in a crash loop, it was not running there: its host's failure is no reason to
    // start it elsewhere. It stays stopped until the user acts; then it is recreated elsewhere
    // with a fresh crash count.
    const held = crashLoopHold(o);
    if (held === "held" && wantsRunning(strategy)) return holdInCrashLoop(d, o, now);
    if (typeof held === "object") status.recentCrashes = [];
    return decideHostFailure(d, o, now, strategy, host, copies);
  }
  if (o.hostHealth !== "ready" || o.domain === "unknown") {
    d.summary = o.hostStalled
      ? {
          scheduled: true,
          synced: false,
          reason: "HostFenceFailed",
          message: `host ${host} does not answer and cannot be fenced (${o.hostStalled}); the VM is not started elsewhere until the host is confirmed off`,
          degraded: "HostUnreachable",
        }
      : {
          scheduled: true,
          synced: false,
          reason: "HostUnreachable",
          message: `host ${host} is ${o.hostHealth ?? "unknown"}; the VM's state cannot be checked`,
          degraded: "HostUnreachable",
        };
    d.requeueAfterMs = 5_000;
    return d;
  }
  if (prev.bringUp?.host === host) {
    if (o.domain && isRunning(o.domain.state))
      delete status.bringUp; // brought up (the record was lost)
    else {
      const late = overdueBringUp(vm, host, now);
      if (late) return abandonBringUp(d, o, now, host, late);
    }
  }
  const migration = decideMigration(d, o, now, strategy, host);
  if (migration.kind === "decided") return migration.decision;
  if (migration.kind === "blocked") d.drainBlocked = migration.message;

  const desiredHash = o.desired.ownership?.specHash;
  const hold = crashLoopHold(o);
  if (o.domain === undefined) {
    // Provisioned before, and not a bring-up being retried: the domain was there.
    const wasProvisioned = prev.specHash !== undefined && prev.bringUp?.host !== host;
    actions.push({ type: "provisionDisks", host }, { type: "define", host });
    if (hold === "held") return holdInCrashLoop(d, o, now);
    const start = wantsRunning(strategy) || (strategy === "Manual" && prev.phase === "Running");
    if (wasProvisioned) {
      d.drift = {
        fields: ["domain"],
        message: `domain ${o.desired.name} was removed from ${host} behind our back`,
      };
    }
    if (start) actions.push({ type: "start", host, reason: wasProvisioned ? "Drift" : "Start" });
    status.phase = start ? "Running" : "Stopped";
    status.specHash = desiredHash;
    d.requeueAfterMs = STEADY_RESYNC_MS;
    return finish(d, o, now);
  }

  const domain = o.domain;
  const running = isRunning(domain.state);
  const specChanged = domain.spec?.ownership?.specHash !== desiredHash;
  const driftFields = domain.spec ? diffDomain(o.desired, domain.spec) : ["domain"];
  const restartAsked = pendingRestartRequest(vm);
  if (specChanged && running && driftFields.length > 0 && strategy !== "Halted") {
    applyToRunning(d, o, host, restartAsked, now);
  } else if (specChanged) {
    // Not running (or nothing the guest would see changed): the definition is all there is.
    actions.push({ type: "define", host });
    status.specHash = desiredHash;
  } else if (driftFields.length > 0) {
    actions.push({ type: "define", host });
    d.drift = {
      fields: driftFields,
      message: `configuration changed behind our back: ${driftFields.join(", ")}`,
    };
  }

  // Run strategy.
  if (running && restartAsked && strategy !== "Halted" && !actions.some((a) => a.type === "start")) {
    // `virtwarden restart vm` / the annotation on a VM whose spec asks no restart: restart it once.
    actions.push({ type: "destroy", host }, { type: "start", host, reason: "Requested" });
    events.push({
      type: "Normal",
      reason: "Restarted",
      action: "Restart",
      note: `restarted as asked (${RESTART_ANNOTATION}=${vm.metadata.annotations?.[RESTART_ANNOTATION]})`,
    });
    status.restartedAt = honouredAt(restartAsked, now);
  }
  const willRestart = actions.some((a) => a.type === "start");
  if (running) {
    if (strategy === "Halted") {
      actions.push({ type: "shutdown", host });
      status.phase = "Stopping";
      d.drift ??= { fields: ["state"], message: "running although runStrategy is Halted" };
      d.requeueAfterMs = 10_000;
      if (prev.phase === "Stopping") actions.push({ type: "destroy", host });
      return finish(d, o, now);
    }
    status.phase = "Running";
    if (domain.state.state === "paused" && !willRestart && !pausedOnPurpose(o)) {
      // Paused with nobody holding it (a restore or group snapshot interrupted between its pause
      // and its resume, or a pause from outside): not running for the guest.
      if (wantsRunning(strategy)) {
        actions.push({ type: "resume", host });
        d.drift ??= {
          fields: ["state"],
          message: `found paused (${domain.state.reason}) with no snapshot, restore or migration holding it; runStrategy ${strategy}`,
        };
        d.requeueAfterMs = STEADY_RESYNC_MS;
        return finish(d, o, now);
      }
      d.summary = {
        scheduled: true,
        synced: false,
        reason: "Paused",
        message: `the domain is paused (${domain.state.reason}) with no snapshot, restore or migration holding it; runStrategy Manual: resume it or stop the VM`,
      };
      d.requeueAfterMs = STEADY_RESYNC_MS;
      return finish(d, o, now);
    }
    if (prev.phase === "Recovering" && prev.lastRecovery?.result === "InProgress") {
      status.lastRecovery = closeRecovery(prev, now, o);
      d.recovered = recoveredBy(prev, now, status);
    }
    d.requeueAfterMs = STEADY_RESYNC_MS;
    return finish(d, o, now);
  }
  if (willRestart) {
    status.phase = "Running";
    return finish(d, o, now);
  }

  // Not running.
  if (hold === "held" && wantsRunning(strategy)) return holdInCrashLoop(d, o, now);
  // A restart asked of a VM that does not run: its next start is that restart (it is not started
  // for it), and the request is spent, so it cannot restart the VM later, once running.
  if (restartAsked && hold !== "held") status.restartedAt = honouredAt(restartAsked, now);
  if (typeof hold === "object" && wantsRunning(strategy)) {
    // The user acted on a VM stopped in a crash loop: a fresh start, with a fresh crash count.
    actions.push({ type: "start", host, reason: "Start" });
    status.recentCrashes = [];
    status.phase = "Running";
    events.push({
      type: "Normal",
      reason: "Started",
      action: "Start",
      note: `started on ${host}: the crash-loop hold was released (${hold.released})`,
    });
    d.requeueAfterMs = STEADY_RESYNC_MS;
    return finish(d, o, now);
  }
  if (isCrash(domain.state)) return decideCrash(d, o, now, strategy, host);
  if (!wantsRunning(strategy)) {
    status.phase = "Stopped";
    d.requeueAfterMs = STEADY_RESYNC_MS;
    return finish(d, o, now);
  }
  if (strategy === "RerunOnFailure" && domain.state.reason === "shutdown") {
    status.phase = "Stopped";
    d.summary.message = "the guest shut itself down (RerunOnFailure: not restarted)";
    d.requeueAfterMs = STEADY_RESYNC_MS;
    return finish(d, o, now);
  }
  if (domain.state.state === "shutoff" && domain.state.reason === "saved") {
    status.phase = "Stopped";
    d.summary.message = "a checkpoint was saved; waiting for its restore";
    d.requeueAfterMs = 5_000;
    return finish(d, o, now);
  }
  const restore = o.checkpoint?.restore;
  if (prev.phase === "Recovering" && pendingHostRecovery(prev) && checkpointWanted(o) && restore) {
    if (restore.phase !== "Failed" && restore.phase !== "Succeeded") {
      status.phase = "Recovering";
      d.summary = {
        scheduled: true,
        synced: false,
        reason: "RestoringCheckpoint",
        message: `waiting for restore ${restore.name}`,
        degraded: "HostFailure",
      };
      d.requeueAfterMs = 2_000;
      return d;
    }
    if (restore.phase === "Failed")
      events.push({
        type: "Warning",
        reason: "CheckpointRestoreFailed",
        action: "Recover",
        note: `restore ${restore.name} failed: booting from the disks instead`,
      });
  }
  if (prev.phase === "Starting" || prev.phase === "Recovering") {
    // Our own start failed last time (status.ts keeps the phase short of Running): try again.
    // Not drift: nobody changed anything behind our back.
    const recovering = prev.phase === "Recovering" && prev.lastRecovery?.result === "InProgress";
    actions.push({ type: "start", host, reason: recovering ? "Restart" : "Start" });
    status.phase = "Running";
    if (recovering) {
      status.lastRecovery = closeRecovery(prev, now, o);
      d.recovered = recoveredBy(prev, now, status);
    }
    d.requeueAfterMs = STEADY_RESYNC_MS;
    return finish(d, o, now);
  }
  // Stopped behind our back (destroyed, shut down from outside, failed to run): drift in state.
  actions.push({ type: "start", host, reason: "Drift" });
  d.drift ??= {
    fields: ["state"],
    message: `found ${domain.state.state} (${domain.state.reason}); runStrategy ${strategy}`,
  };
  status.phase = "Running";
  d.requeueAfterMs = STEADY_RESYNC_MS;
  return finish(d, o, now);
}

/**
 * The spec changed under a running domain (update.ts plans it). What libvirt can change live is
 * changed live. What needs a restart gets one only when updateStrategy is Automatic or the user
 * asked (RESTART_ANNOTATION); otherwise it waits, reported as RestartRequired, and the domain's
 * definition is left as it is (its old specHash keeps the change pending, level-triggered: a lost
 * status changes nothing). Any later start (a crash, a host failure) boots the new definition.
 */
function applyToRunning(
  d: VMDecision,
  o: ObservedVM,
  host: string,
  restartAsked: string | undefined,
  now: Date,
): void {
  const { actions, events, status } = d;
  const vm = o.vm;
  const current = (o.domain as ObservedDomain).spec;
  const plan = current
    ? planSpecChange(vm, o.desired, current, (i) => nicReadyOn(o, host, i))
    : { live: {}, restart: ["the domain's definition (unreadable)"] };
  const automatic = vm.spec.updateStrategy === "Automatic";
  const fields = plan.restart.join(", ") || "the new definition";
  // An asked restart applies everything at once (nothing is resized first that could fail it).
  if ((plan.restart.length > 0 && automatic) || restartAsked) {
    actions.push(
      { type: "define", host },
      { type: "destroy", host },
      { type: "start", host, reason: "SpecChange" },
    );
    events.push({
      type: "Normal",
      reason: "Restarted",
      action: "Restart",
      note: restartAsked
        ? `restarted as asked (${RESTART_ANNOTATION}=${vm.metadata.annotations?.[RESTART_ANNOTATION]}), applying ${fields}`
        : `restarted to apply changes that need a restart (updateStrategy Automatic): ${fields}`,
    });
    if (restartAsked) status.restartedAt = honouredAt(restartAsked, now);
    status.specHash = o.desired.ownership?.specHash;
    return;
  }
  if (hasLiveChange(plan.live) && current) {
    if (plan.live.attachDisks?.length) actions.push({ type: "provisionDisks", host });
    actions.push({ type: "updateLive", host, change: plan.live });
    events.push({
      type: "Normal",
      reason: "UpdatedLive",
      action: "Update",
      note: `changed on the running domain, no restart: ${describeLiveChange(plan.live, current)}`,
    });
  }
  if (plan.restart.length === 0) {
    actions.push({ type: "define", host });
    status.specHash = o.desired.ownership?.specHash;
    return;
  }
  const message = `${fields}: changed in spec, applied at the next restart (set annotation ${RESTART_ANNOTATION} to the current time, or run \`virtwarden restart vm ${vm.metadata.namespace ?? "default"}/${vm.metadata.name}\`; updateStrategy Automatic restarts by itself)`;
  d.restartRequired = { fields: plan.restart, message };
  d.summary = { ...d.summary, reason: "RestartRequired", message };
  const before = vm.status?.conditions?.find((c) => c.type === "RestartRequired");
  if (before?.status !== "True" || before.message !== message)
    events.push({ type: "Normal", reason: "RestartRequired", action: "Update", note: message });
}

/**
 * Whether spec.networks[i] can be plugged in on the host now: its network is ready there, with
 * the VM's fixed lease if it has one (what placement asks of a host for the same NIC).
 */
function nicReadyOn(o: ObservedVM, host: string, i: number): boolean {
  const n = o.vm.spec.networks?.[i];
  const nic = o.desired.interfaces[i];
  const ready = o.placement.candidates.find((c) => c.name === host)?.networks;
  if (!n || !nic || !ready) return false;
  const key = `${o.vm.metadata.namespace ?? "default"}/${n.network}`;
  return ready.has(key) && (!n.ip || ready.has(leaseKey(key, nic.mac, n.ip)));
}

/**
 * A VM that stopped in CrashLoop stays stopped until the user acts, whatever else triggers a
 * reconcile (a network deleted, a resync, a controller restart): released (saying by what) once its spec changes
 * or the restartedAt annotation is newer than the crash that stopped it, "held" until then.
 * runStrategy Halted ends the hold on its own (the phase leaves CrashLoop).
 */
export function crashLoopHold(o: ObservedVM): "held" | { released: string } | undefined {
  const prev = o.vm.status ?? {};
  if (prev.phase !== "CrashLoop") return undefined;
  const released = crashLoopRelease(o);
  return released ? { released } : "held";
}

/** What released the hold, or undefined. */
function crashLoopRelease(o: ObservedVM): string | undefined {
  const prev = o.vm.status ?? {};
  const desired = o.desired.ownership?.specHash;
  if (prev.specHash !== undefined && desired !== undefined && desired !== prev.specHash)
    return "spec changed";
  const raw = o.vm.metadata.annotations?.[RESTART_ANNOTATION];
  const asked = Date.parse(raw ?? "");
  const since = Date.parse(prev.lastFailure?.at ?? "");
  if (Number.isFinite(asked) && (!Number.isFinite(since) || asked > since))
    return `${RESTART_ANNOTATION}=${raw}`;
  return undefined;
}

const HOLD_SUFFIX = "; it stays stopped until its spec changes or annotation ";

/** Stopped in a crash loop, and staying so: the summary says how to start it again. */
function holdInCrashLoop(d: VMDecision, o: ObservedVM, now: Date): VMDecision {
  const prev = o.vm.status ?? {};
  d.status.phase = "CrashLoop";
  const last = prev.lastFailure?.at;
  // Why it stopped, as said when it did (kept through every later pass, said once).
  const was = prev.conditions?.find(
    (c) => (c.type === "Synced" || c.type === "Ready") && c.reason === "CrashLoop",
  );
  const why = was?.message
    ? was.message.split(HOLD_SUFFIX)[0]
    : `stopped in a crash loop${last ? ` (last crash ${last})` : ""}`;
  d.summary = {
    scheduled: true,
    synced: false,
    reason: "CrashLoop",
    message: `${why}${HOLD_SUFFIX}${RESTART_ANNOTATION} is set to a later time than ${last ?? "the last crash"}`,
    degraded: "CrashLoop",
  };
  d.requeueAfterMs = STEADY_RESYNC_MS;
  return finish(d, o, now);
}

/** A paused domain someone holds on purpose: a snapshot or restore in progress, a migration. */
function pausedOnPurpose(o: ObservedVM): boolean {
  if (o.pauseHolder) return true;
  const m = o.vm.status?.migration;
  return (
    m?.result === "InProgress" || o.migrationJob?.state === "queued" || o.migrationJob?.state === "running"
  );
}

/** A host-failure recovery still waiting to finish (placed elsewhere, or waiting for capacity). */
function pendingHostRecovery(prev: VirtualMachineStatus): VirtualMachineStatus["lastRecovery"] {
  const r = prev.lastRecovery;
  return r?.reason === "HostFailure" && r.result === "InProgress" ? r : undefined;
}

/**
 * The bring-up on `host` ran past its phase's deadline: remove what it made there (the domain,
 * the disks it created unless their deletionPolicy is Retain), leave the host and place the VM
 * like a new one at the next pass, avoiding that host (observe.ts reads status.deadlineMisses).
 */
function abandonBringUp(
  d: VMDecision,
  o: ObservedVM,
  now: Date,
  host: string,
  late: { phase: BringUpPhase; elapsedMs: number; deadlineMs: number },
): VMDecision {
  const { status, actions } = d;
  const prev = o.vm.status ?? {};
  const { remove, retain } = disksOnDeletion(o.vm);
  actions.push({ type: "destroy", host }, { type: "undefine", host });
  if (remove.length > 0) actions.push({ type: "deleteDisks", host, volumes: remove });
  actions.push({ type: "release" });
  delete status.host;
  delete status.bringUp;
  status.phase = pendingHostRecovery(prev) ? "Recovering" : "Pending";
  status.deadlineMisses = recordMiss(prev.deadlineMisses, {
    host,
    phase: late.phase,
    at: iso(now),
    seconds: Math.round(late.elapsedMs / 100) / 10,
  });
  const kept =
    retain.length > 0 ? ` (kept ${retain.map((v) => `${v.pool}/${v.name}`).join(", ")}: Retain)` : "";
  const message = `${late.phase} on ${host} did not finish within its deadline of ${formatDuration(late.deadlineMs)} (${formatDuration(late.elapsedMs)}): cleaned up there${kept}; placing it on another host`;
  d.events.push({ type: "Warning", reason: "DeadlineExceeded", action: "Reschedule", note: message });
  d.summary = { scheduled: false, synced: false, reason: "DeadlineExceeded", message };
  d.deadlineMissed = { host, phase: late.phase, keep: { ...prev } };
  d.requeueAfterMs = 0;
  return d;
}

/** Not placed: schedule, provision, define and (per run strategy) start. */
function placeAndStart(d: VMDecision, o: ObservedVM, now: Date, strategy: RunStrategy): VMDecision {
  const { status, actions, events } = d;
  const recovery = pendingHostRecovery(o.vm.status ?? {});
  const hold = o.placement.hold;
  if (hold && hold.untilMs > now.getTime()) {
    // The fleet is not seen yet (a controller starting, a host just declared): placing now would
    // choose among the hosts that happened to answer first.
    delete status.host;
    status.phase = recovery ? "Recovering" : "Pending";
    const left = Math.ceil((hold.untilMs - now.getTime()) / 1000);
    d.summary = {
      scheduled: false,
      synced: false,
      reason: "WaitingForHosts",
      message: `waiting to place until every declared host has been seen: ${hold.waitingFor.join(", ")} not yet (at most ${left} s more)`,
      ...(recovery ? { degraded: "HostFailure" as const } : {}),
    };
    d.requeueAfterMs = Math.max(50, Math.min(1_000, hold.untilMs - now.getTime()));
    return d;
  }
  const placement = planPlacement(o.placement.request, o.placement.candidates, o.placement.placed);
  if (placement.kind === "unschedulable") {
    delete status.host;
    if (recovery) {
      // Its host failed and nothing has room: wait, said clearly; placed when capacity returns.
      status.phase = "Recovering";
      d.summary = {
        scheduled: false,
        synced: false,
        reason: "WaitingForCapacity",
        message: `host ${recovery.fromHost} failed; no host can take the VM: ${placement.message}`,
        degraded: "HostFailure",
      };
    } else {
      status.phase = "Pending";
      d.summary = { scheduled: false, synced: false, reason: "Unschedulable", message: placement.message };
    }
    d.requeueAfterMs = 30_000;
    return d;
  }
  const host = placement.host;
  actions.push({ type: "reserve", host }, { type: "provisionDisks", host }, { type: "define", host });
  const unmet = placement.unmet?.length ? `; not met: ${placement.unmet.join("; ")}` : "";
  if (unmet) d.summary.scheduledMessage = `on ${host}${unmet}`;
  events.push({ type: "Normal", reason: "Scheduled", action: "Place", note: `placed on ${host}${unmet}` });
  status.host = host;
  status.specHash = o.desired.ownership?.specHash;
  d.summary.scheduled = true;
  const checkpoint = recovery && checkpointWanted(o) ? o.checkpoint?.snapshot : undefined;
  if (recovery && checkpoint && (wantsRunning(strategy) || strategy === "Manual")) {
    // Resume from the latest memory+disk checkpoint on the new host instead of a reboot: the
    // restore (one for all members of a group checkpoint) reverts and resumes them together.
    const name = checkpointRestoreName(checkpoint, recovery.fromHost ?? "host", recovery.failedAt);
    actions.push({
      type: "restoreSnapshot",
      snapshot: checkpoint,
      name,
      labels: { [RECOVERY_LABEL]: checkpoint },
    });
    events.push({
      type: "Normal",
      reason: "RestoringCheckpoint",
      action: "Recover",
      note: `placed on ${host} after host ${recovery.fromHost} failed; resuming from checkpoint ${checkpoint}`,
    });
    status.phase = "Recovering";
    status.lastRecovery = { ...recovery, toHost: host, checkpoint };
    const takenAt = o.checkpoint?.snapshotTakenAt;
    if (takenAt) status.lastRecovery.lostWorkSeconds = lostWorkSeconds(recovery.failedAt, takenAt);
    d.summary = {
      scheduled: true,
      synced: false,
      reason: "RestoringCheckpoint",
      message: `resuming from checkpoint ${checkpoint} (restore ${name})`,
      degraded: "HostFailure",
    };
    d.requeueAfterMs = 2_000;
    return d;
  }
  if (recovery && checkpointWanted(o) && !checkpoint) {
    events.push({
      type: "Warning",
      reason: "NoCheckpoint",
      action: "Recover",
      note: "onHostFailure RestoreCheckpoint, but no memory+disk snapshot holds this VM: booting from its disks",
    });
  }
  if (wantsRunning(strategy) || (recovery && strategy === "Manual")) {
    actions.push({ type: "start", host, reason: recovery ? "Restart" : "Start" });
    events.push(
      recovery
        ? {
            type: "Normal",
            reason: "Recovered",
            action: "Recover",
            note: `started on ${host} after host ${recovery.fromHost} failed`,
          }
        : { type: "Normal", reason: "Started", action: "Start", note: `started on ${host}` },
    );
    status.phase = "Running";
    if (recovery) {
      status.lastRecovery = { ...recovery, ...closeRecovery({ lastRecovery: recovery }, now), toHost: host };
      d.recovered = {
        cause: "HostFailure",
        seconds: (now.getTime() - new Date(recovery.failedAt).getTime()) / 1000,
      };
    }
  } else {
    status.phase = "Stopped";
    if (recovery)
      status.lastRecovery = { ...recovery, toHost: host, finishedAt: iso(now), result: "Succeeded" };
  }
  d.requeueAfterMs = STEADY_RESYNC_MS;
  return d;
}

/**
 * The assigned host is fenced (confirmed off) or its Host resource is gone: the VM cannot be
 * running there. A copy that runs elsewhere is the VM (copies.ts rule 3): followed there, never
 * destroyed nor started again. Otherwise it is released and placed elsewhere (onHostFailure
 * Recreate), or left down (Nothing). The recovery is timed from the host's last heartbeat, not
 * from detection.
 */
function decideHostFailure(
  d: VMDecision,
  o: ObservedVM,
  now: Date,
  strategy: RunStrategy,
  host: string,
  copies: CopiesVerdict,
): VMDecision {
  const vm = o.vm;
  const prev = vm.status ?? {};
  const status = d.status;
  const policy = vm.spec.availability?.onHostFailure ?? "Recreate";
  const failedAt = o.hostFailure?.lastHeartbeat ?? now;
  const ongoing = pendingHostRecovery(prev);
  // The source died while the VM moved. If the move finished (perhaps while no controller
  // watched), the copy on the target is the VM: it is followed there, never started again.
  if (copies.awaiting) {
    status.phase = "Migrating";
    d.summary = {
      scheduled: true,
      synced: false,
      reason: "HostUnreachable",
      message: `host ${host} failed during a migration to ${copies.awaiting}, which holds a running copy and does not answer`,
      degraded: "HostUnreachable",
    };
    d.requeueAfterMs = 5_000;
    return d;
  }
  if (copies.adopt?.why === "moved") {
    const target = copies.adopt.host;
    status.phase = "Migrating";
    d.actions.push({ type: "reserve", host: target });
    status.host = target;
    d.summary = {
      scheduled: true,
      synced: false,
      reason: "Migrating",
      message: `host ${host} failed; the VM had already arrived on ${target}`,
    };
    d.requeueAfterMs = 0;
    return d;
  }
  if (prev.migration?.result === "InProgress") {
    // The source (or the VM's host as far as the ledger knows) died while the VM moved.
    status.migration = {
      ...prev.migration,
      result: "Aborted",
      finishedAt: iso(now),
      message: `host ${host} failed during the migration`,
    };
    d.migrated = { reason: prev.migration.reason, result: "Aborted" };
    d.actions.push({ type: "releaseIncoming" }, { type: "forgetMigration" });
  }
  if (copies.adopt?.why === "survived") {
    // A copy runs on a host that answers (a recovery start a dying controller sent, whose status
    // it never wrote; a copy its host kept while unreachable): the VM's only running copy. It is
    // followed there rather than destroyed and booted again elsewhere.
    const survivor = copies.adopt.host;
    d.actions.push({ type: "reserve", host: survivor });
    status.host = survivor;
    // Still a recovery from a host failure (the copy runs because one was started elsewhere, or
    // survived there), and one that has finished: the VM runs. Recorded and closed in this one
    // status write (the reconciler stamps its end and the availability), so neither a lagging
    // cache nor a controller killed before the next pass can leave it open or unrecorded.
    if (!ongoing || ongoing.fromHost !== host) {
      const message = `host ${host} ${o.hostHealth === "gone" ? "was removed" : "failed and was fenced"}`;
      status.lastFailure = { reason: "HostFailure", message, at: iso(failedAt) };
      d.events.push({ type: "Warning", reason: "HostFailed", action: "Observe", note: message });
    }
    const since = ongoing?.fromHost === host ? ongoing.failedAt : iso(failedAt);
    status.lastRecovery = {
      reason: "HostFailure",
      fromHost: host,
      failedAt: since,
      detectedAt:
        ongoing?.fromHost === host && ongoing.detectedAt
          ? ongoing.detectedAt
          : iso(o.hostFailure?.fencedAt ?? now),
      toHost: survivor,
      finishedAt: iso(now),
      result: "Succeeded",
    };
    d.recovered = { cause: "HostFailure", seconds: (now.getTime() - new Date(since).getTime()) / 1000 };
    status.phase = "Running";
    d.events.push({
      type: "Normal",
      reason: "Adopted",
      action: "Adopt",
      note: `host ${host} ${o.hostHealth === "gone" ? "was removed" : "was fenced"}; the VM runs on ${survivor}: followed there`,
    });
    d.summary = {
      scheduled: true,
      synced: false,
      reason: "Adopting",
      message: `host ${host} is down; the VM runs on ${survivor}`,
    };
    d.requeueAfterMs = 0;
    return d;
  }
  const wasRunning =
    wantsRunning(strategy) ||
    (strategy === "Manual" && (prev.phase === "Running" || prev.phase === "Recovering"));
  if (!ongoing || ongoing.fromHost !== host) {
    const message = `host ${host} ${
      o.hostHealth === "gone"
        ? "was removed"
        : o.hostFailure?.poweredOff
          ? "was powered off while idle (consolidation)"
          : "failed and was fenced"
    }`;
    status.lastFailure = { reason: "HostFailure", message, at: iso(failedAt) };
    if (wasRunning) {
      status.lastRecovery = {
        reason: "HostFailure",
        fromHost: host,
        failedAt: iso(failedAt),
        detectedAt: iso(o.hostFailure?.fencedAt ?? now),
        result: "InProgress",
      };
    }
    d.events.push({ type: "Warning", reason: "HostFailed", action: "Observe", note: message });
  }
  if (policy === "Nothing") {
    status.phase = "Failed";
    if (status.lastRecovery?.result === "InProgress")
      status.lastRecovery = { ...status.lastRecovery, result: "Failed" };
    d.summary = {
      scheduled: true,
      synced: false,
      reason: "HostFailed",
      message: `host ${host} failed; onHostFailure is Nothing: left down`,
      degraded: "HostFailure",
    };
    d.requeueAfterMs = 30_000;
    return d;
  }
  // Leave the dead host: the ledger entry goes, and the VM is placed like a new one, except that
  // the recovery record travels with it.
  const vmStatus: VirtualMachineStatus = { ...prev, ...status };
  const replanned: ObservedVM = {
    ...o,
    vm: { ...vm, status: vmStatus },
    assignedHost: undefined,
  };
  if (!wasRunning) {
    d.actions.push({ type: "release" });
    delete status.host;
    status.phase = "Stopped";
    d.summary = {
      scheduled: false,
      synced: true,
      reason: "HostFailed",
      message: `host ${host} failed; the VM was not running and will be placed when started`,
    };
    d.requeueAfterMs = STEADY_RESYNC_MS;
    return d;
  }
  const placed = placeAndStart(d, replanned, now, strategy);
  if (!placed.actions.some((a) => a.type === "reserve")) placed.actions.push({ type: "release" });
  return placed;
}

function checkpointWanted(o: ObservedVM): boolean {
  return o.vm.spec.availability?.onHostFailure === "RestoreCheckpoint";
}

/** Work lost by resuming from a checkpoint taken at `takenAt` after a failure at `failedAt`. */
export function lostWorkSeconds(failedAt: string, takenAt: Date): number {
  return Math.max(0, (Date.parse(failedAt) - takenAt.getTime()) / 1000);
}

/** The metric record of a recovery that ends now (`status`: the record as this decision leaves it). */
function recoveredBy(
  prev: VirtualMachineStatus,
  now: Date,
  status?: VirtualMachineStatus,
): VMDecision["recovered"] {
  const r = prev.lastRecovery;
  if (!r) return undefined;
  const lost = (status ?? prev).lastRecovery?.lostWorkSeconds;
  return {
    cause: r.reason === "HostFailure" ? "HostFailure" : "Crash",
    seconds: (now.getTime() - new Date(r.failedAt).getTime()) / 1000,
    ...(lost !== undefined ? { lostWorkSeconds: lost } : {}),
  };
}

/**
 * The recovery record once the VM runs again. A crash-loop restore that itself failed (e.g.
 * interrupted by a controller restart, its paused domain resumed afterwards) stays Failed: the VM
 * runs, but not from the snapshot the recovery promised, and the record must not say otherwise.
 */
function closeRecovery(
  prev: VirtualMachineStatus,
  now: Date,
  o?: Pick<ObservedVM, "crashLoop" | "checkpoint">,
): VirtualMachineStatus["lastRecovery"] {
  let r = prev.lastRecovery;
  if (!r) return r;
  if (r.checkpoint && o?.checkpoint?.restore?.phase === "Failed") {
    // Booted from the disks instead: the checkpoint's lost-work figure does not describe it.
    const { checkpoint: _c, lostWorkSeconds: _l, ...rest } = r;
    r = rest;
  }
  const restoreFailed = r.reason === "CrashLoopRestore" && o?.crashLoop?.restore?.phase === "Failed";
  return {
    ...r,
    finishedAt: iso(now),
    seconds: (now.getTime() - new Date(r.failedAt).getTime()) / 1000,
    result: restoreFailed ? "Failed" : "Succeeded",
  };
}

function decideCrash(
  d: VMDecision,
  o: ObservedVM,
  now: Date,
  strategy: RunStrategy,
  host: string,
): VMDecision {
  const vm = o.vm;
  const prev = vm.status ?? {};
  const status = d.status;
  const crashedAt = o.lastEventAt ?? now;
  if (!wantsRunning(strategy)) {
    status.phase = "Failed";
    status.lastFailure ??= { reason: "Crashed", message: `the guest crashed on ${host}`, at: iso(crashedAt) };
    d.summary = {
      scheduled: true,
      synced: true,
      reason: "Crashed",
      message: "crashed; runStrategy does not restart",
    };
    return finish(d, o, now);
  }
  const threshold = vm.spec.availability?.crashLoopThreshold ?? DEFAULT_CRASHLOOP_THRESHOLD;
  const windowS = vm.spec.availability?.crashLoopWindowSeconds ?? DEFAULT_CRASHLOOP_WINDOW_S;
  let crashes = prev.recentCrashes ?? [];
  const alreadyCounted = prev.phase === "Recovering" || prev.phase === "CrashLoop";
  if (!alreadyCounted) {
    crashes = [...crashes, iso(crashedAt)].filter(
      (t) => now.getTime() - new Date(t).getTime() <= windowS * 1000,
    );
    status.recentCrashes = crashes;
    status.restartCount = (prev.restartCount ?? 0) + 1;
    status.lastFailure = { reason: "Crashed", message: `the guest crashed on ${host}`, at: iso(crashedAt) };
    status.lastRecovery = {
      reason: "Crash",
      toHost: host,
      failedAt: iso(crashedAt),
      detectedAt: iso(now),
      result: "InProgress",
    };
    d.events.push({
      type: "Warning",
      reason: "Crashed",
      action: "Observe",
      note: `the guest crashed on ${host}`,
    });
  }
  const restoring =
    prev.lastRecovery?.reason === "CrashLoopRestore" && prev.lastRecovery.result === "InProgress";
  if (restoring) {
    const r = o.crashLoop?.restore;
    if (r?.phase !== "Failed") {
      // The restore runs (the VM reconciler is held while it is InProgress): wait for it.
      status.phase = "Recovering";
      d.summary = {
        scheduled: true,
        synced: false,
        reason: "RestoringSnapshot",
        message: `crash loop: restoring ${r?.name ?? "the latest healthy snapshot"}`,
        degraded: "CrashLoop",
      };
      d.requeueAfterMs = 2_000;
      return d;
    }
    status.phase = "CrashLoop";
    status.lastRecovery = {
      ...(prev.lastRecovery as NonNullable<typeof prev.lastRecovery>),
      result: "Failed",
    };
    d.summary = {
      scheduled: true,
      synced: false,
      reason: "CrashLoop",
      message: `crash loop; restore ${r.name} failed: stopped`,
      degraded: "CrashLoop",
    };
    d.events.push({ type: "Warning", reason: "RestoreFailed", action: "Stop", note: d.summary.message });
    return d;
  }
  if (crashes.length >= threshold) {
    status.phase = "CrashLoop";
    const restoreWanted = vm.spec.availability?.onCrashLoop === "RestoreLatestSnapshot";
    const snapshot = o.crashLoop?.snapshot;
    // One restore per crash-loop window: a VM that loops again after its restore is stopped.
    const name = crashLoopRestoreName(vm, status.restartCount ?? 0);
    const latest = o.crashLoop?.restore;
    // This episode's restore exists and has not run yet: an earlier try created it and its status
    // write was lost. It is this episode's, not one from before: ask for it again (idempotent).
    const ours = latest?.name === name && latest.phase !== "Succeeded" && latest.phase !== "Failed";
    const lastRestore = latest?.createdAt;
    const restoredRecently =
      !ours && lastRestore !== undefined && now.getTime() - lastRestore.getTime() <= windowS * 1000;
    if (restoreWanted && snapshot && !restoredRecently) {
      d.actions.push({ type: "restoreSnapshot", snapshot, name });
      status.phase = "Recovering";
      status.recentCrashes = [];
      status.lastRecovery = {
        reason: "CrashLoopRestore",
        toHost: host,
        failedAt: iso(crashedAt),
        detectedAt: iso(now),
        result: "InProgress",
      };
      d.summary = {
        scheduled: true,
        synced: false,
        reason: "RestoringSnapshot",
        message: `${crashes.length} crashes within ${windowS}s: restoring snapshot ${snapshot}`,
        degraded: "CrashLoop",
      };
      d.events.push({ type: "Warning", reason: "CrashLoop", action: "Restore", note: d.summary.message });
      d.requeueAfterMs = 2_000;
      return d;
    }
    const why = !restoreWanted
      ? "stopped (onCrashLoop: Stop)"
      : restoredRecently
        ? "it crash-looped again after a snapshot restore: stopped"
        : "no snapshot taken while it was healthy: stopped";
    d.summary = {
      scheduled: true,
      synced: false,
      reason: "CrashLoop",
      message: `${crashes.length} crashes within ${windowS}s; ${why}`,
      degraded: "CrashLoop",
    };
    if (!alreadyCounted) {
      d.events.push({ type: "Warning", reason: "CrashLoop", action: "Stop", note: d.summary.message });
      if (status.lastRecovery) status.lastRecovery = { ...status.lastRecovery, result: "Failed" };
    }
    return d;
  }
  const backoffS = restartBackoffSeconds(vm, crashes.length);
  const lastCrash = crashes.length > 0 ? new Date(crashes[crashes.length - 1] as string) : crashedAt;
  const restartAt = lastCrash.getTime() + backoffS * 1000;
  if (now.getTime() < restartAt) {
    status.phase = "Recovering";
    d.summary = {
      scheduled: true,
      synced: false,
      reason: "RestartBackoff",
      message: `crashed ${crashes.length} time(s); restarting in ${Math.ceil((restartAt - now.getTime()) / 1000)}s`,
      degraded: "Crashed",
    };
    d.requeueAfterMs = restartAt - now.getTime();
    return d;
  }
  d.actions.push({ type: "start", host, reason: "Restart" });
  d.events.push({
    type: "Normal",
    reason: "Restarted",
    action: "Restart",
    note: `restarted after a crash on ${host}`,
  });
  status.phase = "Running";
  const rec = status.lastRecovery;
  if (rec && rec.result === "InProgress") {
    status.lastRecovery = closeRecovery(status, now);
    d.recovered = { cause: "Crash", seconds: (now.getTime() - new Date(rec.failedAt).getTime()) / 1000 };
  }
  d.requeueAfterMs = STEADY_RESYNC_MS;
  return finish(d, o, now);
}

/** Drift bookkeeping and the summary once the actions are chosen. */
function finish(d: VMDecision, o: ObservedVM, now: Date): VMDecision {
  if (d.drift) {
    const at = o.lastEventAt ?? now;
    d.status.lastDrift = {
      fields: d.drift.fields,
      detectedAt: iso(at),
      correctedAt: iso(now),
      message: d.drift.message,
    };
    d.events.push({ type: "Warning", reason: "DriftCorrected", action: "Correct", note: d.drift.message });
  }
  if (d.summary.reason === "Synced" && d.actions.some((a) => a.type !== "addFinalizer")) {
    d.summary.reason = d.drift ? "DriftCorrected" : "Applied";
  }
  if (d.drainBlocked && !d.summary.degraded) {
    d.summary = { ...d.summary, degraded: "DrainBlocked", message: d.drainBlocked };
  }
  return d;
}
