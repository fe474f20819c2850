/**
 * Deadlines of bringing a VM up on a host, and the hosts that keep missing them. Pure: the clock
 * is passed in.
 *
 * A VM placed on a host goes through phases there: PreparingDisks (clone, copy or create its
 * volumes), Defining (the domain XML), Starting (QEMU up). Each phase has a deadline (defaults
 * below, after UnaCloud's: 20 min to transmit an image, 8 min to deploy; `spec.deadlines`
 * overrides them per VM). A phase is timed from when it began on that host, across retries and
 * controller restarts (`status.bringUp` keeps the phase and its start), so a start that fails
 * every time, or a copy that hangs, ends at its deadline instead of never: the VM is cleaned up
 * on that host and placed on another (decide.ts), the miss recorded in `status.deadlineMisses`.
 * The bring-up ends when the domain is seen running there (or defined, for a VM not meant to run).
 *
 * Booting is not a phase here: the guest reports nothing virtwarden reads (no guest agent), so a
 * guest that hangs after QEMU started is a running VM to us.
 *
 * Placing has a deadline too, but no host to leave: past it the VM is Stalled (status.ts), which
 * is what Flux's kstatus and Argo CD read as "will not get there by itself".
 *
 * Hosts: a VM avoids a host where it missed a deadline for VM_AVOID_MS; a host where
 * HOST_MISS_THRESHOLD VMs missed one within HOST_MISS_WINDOW_MS is avoided by every VM until
 * HOST_AVOID_MS after its latest miss (the Host reconciler reports it; placement skips it).
 */
import type { VirtualMachine, VirtualMachineStatus, VMBringUpPhase } from "../../api/types.js";

export type BringUpPhase = VMBringUpPhase;

/** The phase each bring-up action belongs to. */
export const PHASE_OF_ACTION = {
  provisionDisks: "PreparingDisks",
  define: "Defining",
  start: "Starting",
} as const satisfies Record<string, BringUpPhase>;

export const DEFAULT_DEADLINES_S = {
  placing: 300,
  preparingDisks: 1200,
  defining: 120,
  starting: 480,
} as const;

export const VM_AVOID_MS = 30 * 60_000;
export const HOST_MISS_THRESHOLD = 3;
export const HOST_MISS_WINDOW_MS = 60 * 60_000;
export const HOST_AVOID_MS = 30 * 60_000;
/** Misses kept in a VM's status (the newest). */
export const MAX_MISSES_KEPT = 5;

export type DeadlineMiss = NonNullable<VirtualMachineStatus["deadlineMisses"]>[number];

/** The deadline of each bring-up phase for this VM, in ms (spec.deadlines over the defaults). */
export function phaseDeadlinesMs(vm: VirtualMachine): Record<BringUpPhase, number> {
  const d = vm.spec.deadlines ?? {};
  return {
    PreparingDisks: (d.preparingDisksSeconds ?? DEFAULT_DEADLINES_S.preparingDisks) * 1000,
    Defining: (d.definingSeconds ?? DEFAULT_DEADLINES_S.defining) * 1000,
    Starting: (d.startingSeconds ?? DEFAULT_DEADLINES_S.starting) * 1000,
  };
}

/** How long the VM may wait for a host before it is Stalled, in ms. */
export function placingDeadlineMs(vm: VirtualMachine): number {
  return (vm.spec.deadlines?.placingSeconds ?? DEFAULT_DEADLINES_S.placing) * 1000;
}

/**
 * The bring-up on `host` that is past its phase's deadline at `now`, if any: the phase and how
 * long it has run.
 */
export function overdueBringUp(
  vm: VirtualMachine,
  host: string,
  now: Date,
): { phase: BringUpPhase; elapsedMs: number; deadlineMs: number } | undefined {
  const b = vm.status?.bringUp;
  if (!b || b.host !== host) return undefined;
  const since = Date.parse(b.since);
  if (!Number.isFinite(since)) return undefined;
  const deadlineMs = phaseDeadlinesMs(vm)[b.phase];
  const elapsedMs = now.getTime() - since;
  return elapsedMs > deadlineMs ? { phase: b.phase, elapsedMs, deadlineMs } : undefined;
}

/**
 * When a bring-up phase that is about to run on `host` began: its recorded start when the same
 * phase was under way there already (a retry keeps its clock), else now.
 */
export function phaseStart(
  prev: VirtualMachineStatus["bringUp"],
  host: string,
  phase: BringUpPhase,
  now: Date,
): Date {
  if (prev && prev.host === host && prev.phase === phase) {
    const t = Date.parse(prev.since);
    if (Number.isFinite(t)) return new Date(t);
  }
  return now;
}

/** The misses to keep after a new one: newest last, at most MAX_MISSES_KEPT. */
export function recordMiss(prev: readonly DeadlineMiss[] | undefined, miss: DeadlineMiss): DeadlineMiss[] {
  return [...(prev ?? []), miss].slice(-MAX_MISSES_KEPT);
}

/** The hosts this VM avoids at `now` for its own recent misses. */
export function hostsAvoidedByVM(vm: VirtualMachine, now: Date): string[] {
  const out = new Set<string>();
  for (const m of vm.status?.deadlineMisses ?? []) {
    const at = Date.parse(m.at);
    if (Number.isFinite(at) && now.getTime() - at < VM_AVOID_MS) out.add(m.host);
  }
  return [...out];
}

/** How far a bring-up got in one act (act.ts fills it in as each phase begins). */
export interface BringUpProgress {
  phase: BringUpPhase;
  since: Date;
}

/** A bring-up phase ran past its deadline within one call (a copy, a start that hangs). */
export class DeadlineExceededError extends Error {
  constructor(
    readonly phase: BringUpPhase,
    readonly host: string,
    readonly deadlineMs: number,
  ) {
    super(`${phase} on ${host} ran past its deadline of ${formatDuration(deadlineMs)}: abandoned`);
    this.name = "DeadlineExceededError";
  }
}

export interface HostMiss {
  vm: string;
  phase: BringUpPhase;
  at: Date;
}

/** The misses VMs recorded (their status.deadlineMisses), each with its host. */
export function* missesByHost(vms: Iterable<VirtualMachine>): Generator<{ host: string; miss: HostMiss }> {
  for (const vm of vms)
    for (const m of vm.status?.deadlineMisses ?? []) {
      const at = Date.parse(m.at);
      if (Number.isFinite(at))
        yield {
          host: m.host,
          miss: {
            vm: `${vm.metadata.namespace ?? "default"}/${vm.metadata.name}`,
            phase: m.phase,
            at: new Date(at),
          },
        };
    }
}

/**
 * A host's deadline record from the misses VMs recorded on it: how many within the window and,
 * when they reach the threshold, until when every VM avoids it.
 */
export function hostDeadlineRecord(
  misses: readonly HostMiss[],
  now: Date,
):
  | { misses: number; lastMiss?: { vm: string; phase: BringUpPhase; at: string }; avoidUntil?: string }
  | undefined {
  const recent = misses
    .filter((m) => now.getTime() - m.at.getTime() < HOST_MISS_WINDOW_MS && m.at.getTime() <= now.getTime())
    .sort((a, b) => a.at.getTime() - b.at.getTime());
  const last = recent.at(-1);
  if (!last) return undefined;
  const until = last.at.getTime() + HOST_AVOID_MS;
  return {
    misses: recent.length,
    lastMiss: { vm: last.vm, phase: last.phase, at: last.at.toISOString() },
    ...(recent.length >= HOST_MISS_THRESHOLD && until > now.getTime()
      ? { avoidUntil: new Date(until).toISOString() }
      : {}),
  };
}

/** "20m0s"-style text of a duration, for messages. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60}s`;
  return `${Math.floor(m / 60)}h${m % 60}m`;
}
