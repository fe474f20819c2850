/**
 * The invariants of a chaos run, judged from ground truth only: the simulator's hosts (which
 * domains exist on which host, in which state, which hosts have power) and the manifests the test
 * itself wrote (ChaosWorld.declared). The controller's status, its fleet ledger and its placement
 * are never the oracle; status is only compared against the world, as a user would.
 *
 * - Safety, sampled all along (every few ms and on every domain start the world emits): never two
 *   running copies of one VM. A copy counts when its host has power, partitioned or not; a copy
 *   on a host without power (crashed, fenced) does not.
 * - Convergence, once the faults stop: every declared VM with runStrategy Always runs exactly once
 *   with the declared cpu and memory, and its disk exists; every Halted one runs nowhere; no
 *   domain or disk of ours is left for a VM no manifest declares, and no second definition of a
 *   declared VM lingers on another host; a deleted VM's disk is gone, unless its deletionPolicy
 *   is Retain (then it must still be there); status says what the world shows (phase and host); the
 *   store lists exactly the declared VMs, none of them stuck in deletion; every Host is Ready.
 */
import type { Simulator } from "../../../src/providers/sim/index.js";
import type { ResourceStore } from "../../../src/store/types.js";
import type { VMDef } from "./scenario.js";
import { NAMESPACE } from "./world.js";

const MiB = 1024 ** 2;
/** Our naming, written out here rather than imported: `<namespace>_<name>`, disk `<domain>-<disk>.qcow2`. */
const domainOf = (vm: string) => `${NAMESPACE}_${vm}`;
const vmOfDomain = (d: string) => (d.startsWith(`${NAMESPACE}_`) ? d.slice(NAMESPACE.length + 1) : undefined);
const ROOT_DISK = /^default_(.+)-root\.qcow2$/;

const RUNNING = new Set(["running", "paused", "blocked", "shutdown", "pmsuspended"]);

/** Hosts with power on which the VM's domain runs (partitioned hosts included). */
export function runningCopies(sim: Simulator, vm: string): string[] {
  const d = domainOf(vm);
  const out: string[] = [];
  for (const h of sim.hosts()) {
    if (!h.powered) continue;
    const dom = h.domains.get(d);
    if (dom && RUNNING.has(dom.state.state)) out.push(h.name);
  }
  return out;
}

export class SafetyWatcher {
  samples = 0;
  readonly violations: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The double runs seen at the last sample. */
  private ongoing = new Set<string>();
  private readonly listeners: (() => void)[] = [];

  constructor(
    private readonly sim: Simulator,
    private readonly since: number,
  ) {}

  /** One look at the world: every domain name of ours, its running copies. */
  sample(): void {
    this.samples++;
    const now = new Set<string>();
    const names = new Set<string>();
    for (const h of this.sim.hosts()) for (const d of h.domains.keys()) names.add(d);
    for (const d of names) {
      const vm = vmOfDomain(d);
      if (!vm) continue;
      const copies = runningCopies(this.sim, vm);
      if (copies.length > 1) {
        const how = copies.map((h) => {
          const st = this.sim
            .hosts()
            .find((x) => x.name === h)
            ?.domains.get(d)?.state;
          return `${h} (${st?.state}/${st?.reason})`;
        });
        const msg = `+${Date.now() - this.since}ms ${vm} runs on ${how.join(" and ")}`;
        // One report per episode: while the same copies run, later samples add nothing.
        const episode = `${vm}|${copies.join(",")}`;
        now.add(episode);
        if (!this.ongoing.has(episode)) this.violations.push(msg);
      }
    }
    this.ongoing = now;
  }

  start(): void {
    this.timer = setInterval(() => this.sample(), 3);
    // A start is when a second copy can appear: look right after each one the world reports.
    for (const h of this.sim.hosts()) {
      const l = (e: { type: string }) => {
        if (e.type === "started" || e.type === "resumed") this.sample();
      };
      h.eventListeners.add(l);
      this.listeners.push(() => h.eventListeners.delete(l));
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const u of this.listeners.splice(0)) u();
  }
}

/** What keeps the run from counting as converged; empty when every convergence invariant holds. */
export function convergenceProblems(
  sim: Simulator,
  declared: ReadonlyMap<string, VMDef>,
  store: ResourceStore | undefined,
  retained: { required: ReadonlySet<string>; allowed: ReadonlySet<string> } = {
    required: new Set(),
    allowed: new Set(),
  },
): string[] {
  const problems: string[] = [];
  for (const h of sim.hosts()) if (!h.powered || h.partitioned) problems.push(`host ${h.name} is not back`);

  for (const v of declared.values()) {
    const copies = runningCopies(sim, v.name);
    const defined = sim.hosts().filter((h) => h.powered && h.domains.has(domainOf(v.name)));
    if (v.runStrategy === "Always") {
      if (copies.length !== 1) {
        problems.push(`${v.name} should run once, runs on [${copies.join(",")}]`);
        continue;
      }
      const host = copies[0] as string;
      const dom = sim
        .hosts()
        .find((h) => h.name === host)
        ?.domains.get(domainOf(v.name));
      if (dom && (dom.spec.memoryBytes !== v.memoryMiB * MiB || dom.spec.vcpus !== v.cpu))
        problems.push(
          `${v.name} runs with ${dom.spec.vcpus} cpu / ${dom.spec.memoryBytes / MiB}Mi, declared ${v.cpu} / ${v.memoryMiB}Mi`,
        );
      for (const h of defined)
        if (h.name !== host) problems.push(`${v.name} still has a definition on ${h.name} besides ${host}`);
      const s = store?.get("VirtualMachine", `${NAMESPACE}/${v.name}`)?.status;
      if (s?.phase !== "Running" || s.host !== host)
        problems.push(`${v.name} status says ${s?.phase}@${s?.host}, the world says Running@${host}`);
    } else {
      if (copies.length > 0) problems.push(`${v.name} is Halted but runs on [${copies.join(",")}]`);
      const s = store?.get("VirtualMachine", `${NAMESPACE}/${v.name}`)?.status;
      // Failed: it crashed while stopping; not running either way (decideCrash reports the crash).
      if (s?.phase !== "Stopped" && s?.phase !== "Failed")
        problems.push(`${v.name} is Halted, status says ${s?.phase}`);
      if (defined.length > 1)
        problems.push(`${v.name} is defined on ${defined.map((h) => h.name).join(" and ")}`);
    }
  }

  for (const h of sim.hosts())
    for (const d of h.domains.keys()) {
      const vm = vmOfDomain(d);
      if (vm && !declared.has(vm)) problems.push(`orphan domain ${d} on ${h.name}`);
    }
  const pools = new Set(sim.hosts().map((h) => h.pools.get("default")));
  for (const pool of pools)
    for (const name of pool?.volumes.keys() ?? []) {
      const vm = ROOT_DISK.exec(name)?.[1];
      if (vm && !declared.has(vm) && !retained.allowed.has(vm))
        problems.push(`orphan volume ${name} (its VM is gone and its disk was not to be retained)`);
    }
  for (const vm of retained.required) {
    const disk = `${domainOf(vm)}-root.qcow2`;
    if (!declared.has(vm) && ![...pools].some((p) => p?.volumes.has(disk)))
      problems.push(`${vm} was deleted with deletionPolicy Retain, but its disk ${disk} is gone`);
  }
  for (const v of declared.values()) {
    if (v.runStrategy !== "Always") continue;
    const disk = `${domainOf(v.name)}-root.qcow2`;
    if (![...pools].some((p) => p?.volumes.has(disk))) problems.push(`${v.name} lost its disk ${disk}`);
  }

  if (store) {
    const listed = new Map(store.list("VirtualMachine").map((v) => [v.metadata.name, v]));
    for (const v of declared.values()) {
      const r = listed.get(v.name);
      if (!r) problems.push(`${v.name} is declared but the controller does not list it`);
      else if (r.metadata.deletionTimestamp) problems.push(`${v.name} is declared but stuck in deletion`);
    }
    for (const name of listed.keys())
      if (!declared.has(name)) problems.push(`${name} is listed but no manifest declares it`);
    for (const h of store.list("Host"))
      if (h.status?.phase !== "Ready") problems.push(`host ${h.metadata.name} is ${h.status?.phase}`);
  } else problems.push("no controller running");
  return problems;
}
