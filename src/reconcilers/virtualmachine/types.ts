/**
 * The VM decision's contract: what observe.ts gathers (ObservedVM) and what decide.ts returns for
 * act.ts and status.ts to carry out (VMDecision). Types only, so that decide.ts, its migration
 * part (migration.ts) and the shell around them share them without importing one another.
 */
import type { VirtualMachine, VirtualMachineStatus } from "../../api/types.js";
import type { DomainSpec, DomainStateInfo } from "../../providers/types.js";
import type { HostCandidate, PlacedVM, PlacementHold, PlacementRequest } from "../../scheduler/placement.js";
import type { HostHealth } from "../copies.js";
import type { MigrationJobState } from "../migrations.js";
import type { BringUpPhase } from "./deadlines.js";
import type { LiveChange } from "./update.js";

export interface ObservedDomain {
  state: DomainStateInfo;
  spec: DomainSpec | undefined;
}

export interface OtherCopy {
  host: string;
  reachable: boolean;
  running: boolean;
  /**
   * Its host is not fenced and could not be asked just now (unreachable, or the call failed):
   * the copy may be running, whatever the inventory last said.
   */
  uncertain?: boolean;
}

export type { HostHealth } from "../copies.js";

export interface ObservedVM {
  key: string;
  vm: VirtualMachine;
  desired: DomainSpec;
  /** The host the VM is assigned to (ledger or status), if any. */
  assignedHost: string | undefined;
  hostHealth: HostHealth | undefined;
  /**
   * The assigned host does not answer and cannot be fenced (its fence agent failed, or it has
   * none): the Host's Stalled message. Nothing will change until an operator acts.
   */
  hostStalled?: string;
  /** When the assigned host is fenced or gone: its last heartbeat (the failure) and the fence time. */
  hostFailure?: { lastHeartbeat: Date | undefined; fencedAt: Date | undefined; poweredOff?: boolean };
  /** The domain on the assigned host: undefined when missing, "unknown" when the host can't be asked. */
  domain: ObservedDomain | "unknown" | undefined;
  otherCopies: OtherCopy[];
  /** Hosts whose domains this controller has never listed, that may hold a copy (observe.ts). */
  unlistedHosts?: string[];
  placement: {
    request: PlacementRequest;
    candidates: readonly HostCandidate[];
    placed: Iterable<PlacedVM>;
    /** Declared hosts not judged yet by this controller: placement waits for them (bounded). */
    hold?: PlacementHold;
  };
  /** When the latest event about this domain arrived (a crash or drift happened then, not at detection). */
  lastEventAt: Date | undefined;
  hasFinalizer: boolean;
  /**
   * For onCrashLoop RestoreLatestSnapshot: the newest snapshot taken while the VM was healthy,
   * and the latest restore the controller started after a crash loop (with its phase).
   */
  crashLoop?: { snapshot?: string; restore?: { name: string; phase?: string; createdAt?: Date } };
  /** Why this VM's fixed IP/MAC is refused (another VM or the network's leases hold it). */
  addressConflict?: string;
  /**
   * For onHostFailure RestoreCheckpoint: the newest memory+disk snapshot holding this VM, and
   * the restore that recovers it after the current host failure (by its deterministic name).
   */
  checkpoint?: {
    snapshot?: string;
    /** When that checkpoint was taken (its status.creationTime): the lost work is measured from it. */
    snapshotTakenAt?: Date;
    restore?: { name: string; phase?: string };
  };
  /** The assigned host is being emptied (maintenance, or consolidation): its running VMs move away. */
  hostDrain?: "Maintenance" | "Consolidation";
  /** This VM's migration job, if the runner has one (queued, running or just finished). */
  migrationJob?: MigrationJobState;
  /**
   * Who holds the domain paused on purpose now: a VirtualMachineSnapshot or VirtualMachineRestore
   * in progress that covers this VM (a group snapshot's pause window, a restore between its revert
   * and its resume). Unset: a paused domain is held by nobody (paused and forgotten, or from
   * outside).
   */
  pauseHolder?: string;
}

export type VMAction =
  | { type: "addFinalizer" }
  | { type: "removeFinalizer" }
  | { type: "reserve"; host: string }
  | { type: "release" }
  | { type: "provisionDisks"; host: string }
  | { type: "define"; host: string }
  | {
      type: "start";
      host: string;
      reason: "Start" | "Restart" | "Drift" | "SpecChange" | "Requested" | "Migration";
    }
  /**
   * Change the running domain in place (live and persistent), no restart: vCPUs and/or memory,
   * then NICs and disks unplugged, then plugged in.
   */
  | { type: "updateLive"; host: string; change: LiveChange }
  /** Hold capacity on a migration's target while the VM moves. */
  | { type: "reserveIncoming"; host: string }
  | { type: "releaseIncoming" }
  /** Hand the move to the MigrationRunner (returns at once; the job runs in the background). */
  | { type: "migrate"; from: string; to: string; kind: "live" | "cold" }
  /** Drop the runner's record of a finished job (its result is in status now). */
  | { type: "forgetMigration" }
  | { type: "shutdown"; host: string }
  /** Resume a paused domain that nobody holds paused (runStrategy Always/RerunOnFailure). */
  | { type: "resume"; host: string }
  | { type: "destroy"; host: string }
  | { type: "undefine"; host: string }
  /** Delete these volumes (the disks whose deletionPolicy is Delete); the others are retained. */
  | { type: "deleteDisks"; host: string; volumes: { pool: string; name: string }[] }
  /** Create a VirtualMachineRestore of this snapshot (crash loop with RestoreLatestSnapshot). */
  | {
      type: "restoreSnapshot";
      snapshot: string;
      /**
       * Derived from what the restore is for (a crash-loop episode, a host failure), never from the
       * clock: a retry finds the restore it already created.
       */
      name: string;
      labels?: Record<string, string>;
    };

export interface DriftFinding {
  fields: string[];
  message: string;
}

export interface VMEvent {
  type: "Normal" | "Warning";
  reason: string;
  action: string;
  note: string;
}

export interface VMDecision {
  actions: VMAction[];
  /** Status after the actions succeed (conditions are set by status.ts from `summary`). */
  status: VirtualMachineStatus;
  summary: {
    scheduled: boolean;
    synced: boolean;
    reason: string;
    message: string;
    degraded?: string;
    /** The Scheduled condition's message when placed now (preferences the host does not meet). */
    scheduledMessage?: string;
  };
  drift: DriftFinding | undefined;
  events: VMEvent[];
  requeueAfterMs: number | undefined;
  /** Cause of a recovery finished by these actions, for the recovery metric. */
  recovered?: { cause: "Crash" | "HostFailure"; seconds: number; lostWorkSeconds?: number };
  /** A migration that ended with this decision, for the migration metrics. */
  migrated?: { reason: string; result: "Succeeded" | "Failed" | "Aborted"; seconds?: number };
  /** Why a VM that should leave its host (maintenance) cannot: reported as Degraded. */
  drainBlocked?: string;
  /** Deletion: the volumes left in place by their deletionPolicy (Retain), for the log. */
  retained?: { host: string; volumes: { pool: string; name: string }[] };
  /**
   * The running domain lags its spec in fields only a restart applies, and no restart is allowed
   * yet (updateStrategy Manual, no request): the RestartRequired condition (status.ts).
   */
  restartRequired?: { fields: string[]; message: string };
  /**
   * The actions bring the VM up on `host` (deadlines.ts): act times each phase against its
   * deadline, and a failure records the phase it reached (status.ts); `initial` is the record
   * kept when it failed before any bring-up action ran.
   */
  bringUp?: {
    host: string;
    deadlinesMs: Record<BringUpPhase, number>;
    prior: VirtualMachineStatus["bringUp"];
    initial: NonNullable<VirtualMachineStatus["bringUp"]>;
  };
  /**
   * The bring-up on a host missed its deadline and is being abandoned there. Should an action
   * fail, the status stays `keep` (the VM is still on that host), so the next pass tries again.
   */
  deadlineMissed?: { host: string; phase: BringUpPhase; keep: VirtualMachineStatus };
}
