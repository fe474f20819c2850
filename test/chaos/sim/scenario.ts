/**
 * A chaos scenario is a pure function of its seed: the hosts, the VMs declared at the start, and a
 * timeline of faults and user actions (each at a millisecond offset into the chaos phase). The
 * runner (runner.ts) plays it against the simulator with the real controllers; the same seed
 * always yields the same timeline (what the controllers then do depends on real-time
 * interleavings, which the seed does not pin down).
 *
 * The generator keeps the declared VMs within what the hosts can hold with one host missing, so
 * "every VM that should run, runs" is a fair demand once the faults stop and every host is back.
 */

/** mulberry32: every random choice of a scenario comes from it. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const HOST_CPUS = 16;
export const HOST_MEMORY_MIB = 16 * 1024;

export interface VMDef {
  name: string;
  cpu: number;
  memoryMiB: number;
  runStrategy: "Always" | "Halted";
  /** The root disk's deletionPolicy (unset: Delete, for a disk cloned from an image). */
  diskPolicy?: "Delete" | "Retain";
}

export type ChaosAction =
  /** The host loses power; it is switched on again at `until`. */
  | { type: "hostCrash"; host: string; until: number }
  /** The controller cannot reach the host; its guests keep running; healed at `until`. */
  | { type: "partition"; host: string; until: number }
  /** libvirtd restarts: calls fail and connections drop for a moment; guests keep running. */
  | { type: "libvirtdRestart"; host: string; until: number }
  /** Calls to the host (one operation, or all) hang until the call timeout, with a probability. */
  | { type: "slowCalls"; host: string; op?: string; probability: number; until: number }
  /** Calls to the host fail with OperationFailed, with a probability. */
  | { type: "failingCalls"; host: string; op?: string; probability: number; until: number }
  /** Calls carried out whose reply is lost: the caller times out on something that happened. */
  | { type: "lostReplies"; host: string; op?: string; probability: number; until: number }
  /** The host's fence agent fails (BMC unreachable) until `until`. */
  | { type: "fenceFailure"; host: string; until: number }
  /** The guest's QEMU dies wherever it runs (no-op when it runs nowhere). */
  | { type: "guestCrash"; vm: string }
  /** The user puts the host in maintenance (its VMs migrate away) and takes it out at `until`. */
  | { type: "maintenance"; host: string; until: number }
  /** The controller is killed; a new one starts at `until` on the same manifests and state dir. */
  | { type: "controllerRestart"; until: number }
  | { type: "createVM"; vm: VMDef }
  | { type: "editVM"; vm: VMDef }
  | { type: "deleteVM"; vm: string }
  /** The manifest is removed and written again `gapMs` later (a tool regenerating the directory). */
  | { type: "recreateVM"; vm: VMDef; gapMs: number };

export interface TimedAction {
  at: number;
  action: ChaosAction;
}

export interface Scenario {
  seed: number;
  hosts: string[];
  initialVMs: VMDef[];
  timeline: TimedAction[];
  /** When the last fault ends (ms into the chaos phase): after it, faults stop. */
  chaosMs: number;
}

export interface ScenarioOptions {
  /** Length of the chaos phase in ms (default 2,500). */
  chaosMs?: number;
  /** Number of timeline entries (default: 8 to 18, from the seed). */
  actions?: number;
  /**
   * Most slow- and failing-call faults lose their replies instead (the call is carried out, the
   * caller times out). Off by default: it draws from the seed, so turning it on changes every scenario,
   * and the seeds on record (and the ones that once failed) stay what they were without it.
   */
  lostReplies?: boolean;
}

const OPS = ["ping", "listDomains", "startDomain", "defineDomain", "destroyDomain", "createVolume"];

export function generateScenario(seed: number, opts: ScenarioOptions = {}): Scenario {
  const r = mulberry32(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const chance = (p: number) => r() < p;

  const hosts = Array.from({ length: int(3, 4) }, (_, i) => `h${i}`);
  // Fits with one host missing, with room to spare for fragmentation.
  const budgetMiB = (hosts.length - 1) * HOST_MEMORY_MIB * 0.6;
  const budgetCpu = (hosts.length - 1) * HOST_CPUS * 0.6;
  let serial = 0;
  const newVM = (): VMDef => {
    const policy = r();
    return {
      name: `vm-${serial++}`,
      cpu: int(1, 2),
      memoryMiB: pick([512, 1024, 1536]),
      runStrategy: chance(0.1) ? "Halted" : "Always",
      // Fixed for the name's whole life: what the controller deletes by is then never in doubt.
      ...(policy < 0.2
        ? { diskPolicy: "Retain" as const }
        : policy < 0.4
          ? { diskPolicy: "Delete" as const }
          : {}),
    };
  };
  const declared = new Map<string, VMDef>();
  const fits = (v: VMDef, replacing?: string) => {
    let mem = v.memoryMiB;
    let cpu = v.cpu;
    for (const d of declared.values())
      if (d.name !== replacing) {
        mem += d.memoryMiB;
        cpu += d.cpu;
      }
    return mem <= budgetMiB && cpu <= budgetCpu;
  };
  const initialVMs: VMDef[] = [];
  for (let i = int(3, 8); i > 0; i--) {
    const v = newVM();
    if (!fits(v)) break;
    declared.set(v.name, v);
    initialVMs.push(v);
  }

  const chaosMs = opts.chaosMs ?? 2_500;
  const count = opts.actions ?? int(8, 18);
  const times = Array.from({ length: count }, () => Math.floor(r() * chaosMs * 0.8)).sort((a, b) => a - b);
  /** Until when each host is under a host-level fault (one at a time per host). */
  const hostBusy = new Map<string, number>();
  const timeline: TimedAction[] = [];
  let controllerDownUntil = -1;
  let end = 0;
  const crashes = new Map<string, number>();
  /** A VM whose manifest is being rewritten is left alone until the rewrite. */
  const rewriting = new Map<string, number>();
  const idle = (at: number) => [...declared.values()].filter((v) => (rewriting.get(v.name) ?? -1) < at);

  for (const at of times) {
    const roll = r();
    const freeHosts = hosts.filter((h) => (hostBusy.get(h) ?? -1) < at);
    // At most half the hosts under a host-level fault at once.
    const busy = hosts.length - freeHosts.length;
    const canHostFault = freeHosts.length > 0 && busy < Math.floor(hosts.length / 2);
    let action: ChaosAction | undefined;
    if (roll < 0.14 && canHostFault) {
      const host = pick(freeHosts);
      const until = at + int(150, 900);
      hostBusy.set(host, until);
      action = { type: "hostCrash", host, until };
    } else if (roll < 0.26 && canHostFault) {
      const host = pick(freeHosts);
      const until = at + int(100, 900);
      hostBusy.set(host, until);
      action = { type: "partition", host, until };
    } else if (roll < 0.34 && canHostFault) {
      const host = pick(freeHosts);
      const until = at + int(20, 250);
      hostBusy.set(host, until);
      action = { type: "libvirtdRestart", host, until };
    } else if (roll < 0.37 && canHostFault) {
      const host = pick(freeHosts);
      const until = at + int(200, 1_000);
      hostBusy.set(host, until);
      action = { type: "maintenance", host, until };
    } else if (roll < 0.47 && opts.lostReplies && chance(0.6)) {
      action = {
        type: "lostReplies",
        host: pick(hosts),
        ...(chance(0.6) ? { op: pick(OPS) } : {}),
        probability: pick([0.1, 0.3, 0.7]),
        until: at + int(100, 800),
      };
    } else if (roll < 0.42) {
      action = {
        type: "slowCalls",
        host: pick(hosts),
        ...(chance(0.6) ? { op: pick(OPS) } : {}),
        probability: pick([0.05, 0.2, 0.5]),
        until: at + int(100, 800),
      };
    } else if (roll < 0.47) {
      action = {
        type: "failingCalls",
        host: pick(hosts),
        ...(chance(0.6) ? { op: pick(OPS) } : {}),
        probability: pick([0.1, 0.3, 0.7]),
        until: at + int(100, 800),
      };
    } else if (roll < 0.53) {
      action = { type: "fenceFailure", host: pick(hosts), until: at + int(200, 1_200) };
    } else if (roll < 0.6 && declared.size > 0) {
      const vm = pick([...declared.keys()]);
      // At most two crashes per VM: below the crash-loop threshold, so it must come back.
      if ((crashes.get(vm) ?? 0) < 2) {
        crashes.set(vm, (crashes.get(vm) ?? 0) + 1);
        action = { type: "guestCrash", vm };
      }
    } else if (roll < 0.7 && at > controllerDownUntil) {
      const until = at + int(0, 400);
      controllerDownUntil = until;
      action = { type: "controllerRestart", until };
    } else if (roll < 0.78) {
      const v = newVM();
      if (fits(v)) {
        declared.set(v.name, v);
        action = { type: "createVM", vm: v };
      }
    } else if (roll < 0.88 && idle(at).length > 0) {
      const old = pick(idle(at));
      const edit: VMDef = { ...old };
      const what = r();
      if (what < 0.4) edit.memoryMiB = pick([512, 1024, 1536].filter((m) => m !== old.memoryMiB));
      else if (what < 0.7) edit.cpu = old.cpu === 1 ? 2 : 1;
      else edit.runStrategy = old.runStrategy === "Always" ? "Halted" : "Always";
      if (fits(edit, old.name)) {
        declared.set(edit.name, edit);
        action = { type: "editVM", vm: edit };
      }
    } else if (roll < 0.94 && idle(at).length > 0) {
      const vm = pick(idle(at)).name;
      declared.delete(vm);
      action = { type: "deleteVM", vm };
    } else if (idle(at).length > 0) {
      const old = pick(idle(at));
      const gapMs = pick([0, 0, 20, 80, 300]);
      rewriting.set(old.name, at + gapMs + 1);
      action = { type: "recreateVM", vm: { ...old }, gapMs };
    }
    if (!action) continue;
    timeline.push({ at, action });
    end = Math.max(end, at, "until" in action ? action.until : 0, "gapMs" in action ? at + action.gapMs : 0);
  }
  return { seed, hosts, initialVMs, timeline, chaosMs: Math.max(end, 1) };
}

/** One line per timeline entry, for the trace a failing seed prints. */
export function describeAction(t: TimedAction): string {
  const a = t.action;
  const at = `+${t.at}ms`;
  switch (a.type) {
    case "hostCrash":
      return `${at} host ${a.host} loses power (on again at +${a.until}ms)`;
    case "partition":
      return `${at} host ${a.host} partitioned (healed at +${a.until}ms)`;
    case "libvirtdRestart":
      return `${at} libvirtd on ${a.host} restarts (back at +${a.until}ms)`;
    case "slowCalls":
      return `${at} ${a.op ?? "every call"} on ${a.host} hangs with p=${a.probability} until +${a.until}ms`;
    case "failingCalls":
      return `${at} ${a.op ?? "every call"} on ${a.host} fails with p=${a.probability} until +${a.until}ms`;
    case "lostReplies":
      return `${at} ${a.op ?? "every call"} on ${a.host} is carried out but its reply lost with p=${a.probability} until +${a.until}ms`;
    case "fenceFailure":
      return `${at} fence agent of ${a.host} fails until +${a.until}ms`;
    case "guestCrash":
      return `${at} guest ${a.vm} crashes`;
    case "maintenance":
      return `${at} user puts ${a.host} in maintenance (taken out at +${a.until}ms)`;
    case "controllerRestart":
      return `${at} controller killed (restarted at +${a.until}ms, state dir kept)`;
    case "createVM":
      return `${at} user creates ${fmtVM(a.vm)}`;
    case "editVM":
      return `${at} user edits ${fmtVM(a.vm)}`;
    case "deleteVM":
      return `${at} user deletes ${a.vm}`;
    case "recreateVM":
      return `${at} user removes and rewrites ${a.vm.name} (${a.gapMs}ms apart)`;
  }
}

export function fmtVM(v: VMDef): string {
  return `${v.name} {cpu ${v.cpu}, ${v.memoryMiB}Mi, ${v.runStrategy}${v.diskPolicy ? `, disk ${v.diskPolicy}` : ""}}`;
}
