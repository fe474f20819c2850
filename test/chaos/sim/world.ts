/**
 * The chaos world: simulated hosts that outlive any controller, a manifests directory the "user"
 * edits, a state directory the controllers share one after another, and a controller that can be
 * killed at any moment and started again.
 *
 * A kill is abrupt, like SIGKILL: nothing is cleaned up on the controller's behalf. Calls it had
 * already sent keep going in the world (an RPC that reached libvirtd still happens), but from the
 * kill on nothing it does can reach the world or the state dir again: every provider call, fence
 * and store write of the killed Runtime fails, its event and watch subscriptions go quiet, and its
 * aborts no longer reach calls in flight. Its timers and workers are then stopped in the
 * background only so that they stop burning CPU. The next controller opens the state dir only
 * once the killed one's journal is closed (a dead process holds no file open).
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import { Registry } from "prom-client";
import { Runtime } from "../../../src/cli/runtime.js";
import type { Logger } from "../../../src/controller/log.js";
import { type FenceAgent, type FenceAgentFactory, FenceError } from "../../../src/providers/fence/index.js";
import { Simulator, simulatorFactory } from "../../../src/providers/sim/index.js";
import type { HypervisorProvider, ProviderFactory } from "../../../src/providers/types.js";
import { ProviderError } from "../../../src/providers/types.js";
import { FileStore } from "../../../src/store/files/index.js";
import type { ResourceStore } from "../../../src/store/types.js";
import { HOST_CPUS, HOST_MEMORY_MIB, type Scenario, type VMDef } from "./scenario.js";

const MiB = 1024 ** 2;
/** Log lines a world keeps in memory for its failure report (a seed writes ~100 at info). */
const RECENT_LOG_LINES = 2_000;
export const NAMESPACE = "default";
export const BASE_IMAGE = "debian-12.qcow2";
/** The controller's heartbeat in the chaos world (missed beats: 3). */
export const HEARTBEAT_MS = 50;

/** Latencies scaled down from the real test bed's, so a scenario plays in a couple of seconds. */
const CHAOS_LATENCY = {
  callMs: 0.2,
  defineMs: 1,
  startMs: 15,
  destroyMs: 3,
  guestShutdownMs: 30,
  snapshotMs: 3,
  saveMs: 30,
  restoreMs: 15,
  migrateMs: 40,
  volumeCreateMs: 2,
  jitter: 0.5,
};

class KillSwitch {
  killed = false;
  refused = 0;
  readonly providers: HypervisorProvider[] = [];
}

/** AbortSignals forwarded to the world stop following the caller once it is killed. */
function detach(sig: AbortSignal, ks: KillSwitch): { signal: AbortSignal; release: () => void } {
  const c = new AbortController();
  if (sig.aborted) {
    c.abort(sig.reason);
    return { signal: c.signal, release: () => {} };
  }
  const on = () => {
    if (!ks.killed) c.abort(sig.reason);
  };
  sig.addEventListener("abort", on, { once: true });
  return { signal: c.signal, release: () => sig.removeEventListener("abort", on) };
}

function killableProviders(inner: ProviderFactory, ks: KillSwitch, logger: Logger): ProviderFactory {
  return (uri, options) => {
    const p = inner(uri, options);
    ks.providers.push(p);
    return new Proxy(p, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== "function") return v;
        const name = String(prop);
        const fn = v as (...a: unknown[]) => unknown;
        if (name === "health") return () => (ks.killed ? { connected: false } : fn.call(target));
        if (name.startsWith("on"))
          return (listener: (...a: unknown[]) => void) =>
            fn.call(target, (...a: unknown[]) => {
              if (!ks.killed) listener(...a);
            });
        if (name === "close") return async () => (ks.killed ? undefined : fn.call(target));
        return (...args: unknown[]) => {
          if (ks.killed) {
            ks.refused++;
            return Promise.reject(new ProviderError("Unreachable", uri, name, "controller killed"));
          }
          const releases: (() => void)[] = [];
          const fwd = args.map((a) => {
            if (!(a instanceof AbortSignal)) return a;
            const d = detach(a, ks);
            releases.push(d.release);
            return d.signal;
          });
          const release = () => {
            for (const r of releases) r();
          };
          const out = fn.apply(target, fwd);
          if (logger.isLevelEnabled("debug") && out instanceof Promise)
            out.then(
              (v) =>
                logger.debug(
                  {
                    uri,
                    op: name,
                    arg: typeof args[0] === "string" ? args[0] : undefined,
                    n: Array.isArray(v)
                      ? v
                          .map(
                            (d) =>
                              (d as { name?: string; state?: unknown }).name +
                              ":" +
                              JSON.stringify((d as { state?: unknown }).state),
                          )
                          .join(",")
                      : JSON.stringify(v)?.slice(0, 80),
                  },
                  "call",
                ),
              (e: unknown) => logger.debug({ uri, op: name, err: String(e) }, "call failed"),
            );
          if (out instanceof Promise) return out.finally(release);
          release();
          return out;
        };
      },
    });
  };
}

const WRITES = new Set(["updateStatus", "addFinalizer", "removeFinalizer", "create", "delete"]);

function killableStore(
  inner: FileStore,
  ks: KillSwitch,
  logger: Logger,
): { store: ResourceStore; close: () => Promise<void> } {
  let started: Promise<void> | undefined;
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      await started?.catch(() => undefined);
      await inner.stop();
    })();
    return closed;
  };
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== "function") return v;
      const name = String(prop);
      const fn = v as (...a: unknown[]) => unknown;
      if (name === "start")
        return (...a: unknown[]) => {
          started = fn.apply(target, a) as Promise<void>;
          return started;
        };
      if (name === "stop") return close;
      if (name === "watch")
        return (kind: unknown, handler: (e: unknown) => void) =>
          fn.call(target, kind, (e: unknown) => {
            if (!ks.killed) handler(e);
          });
      if (name === "recordEvent")
        return (...a: unknown[]) => {
          if (ks.killed) return undefined;
          logger.info({ event: a[0] }, "event");
          return fn.apply(target, a);
        };
      if (WRITES.has(name))
        return (...a: unknown[]) => {
          if (!ks.killed) return fn.apply(target, a) as Promise<unknown>;
          ks.refused++;
          return Promise.reject(new Error("controller killed"));
        };
      return fn.bind(target);
    },
  }) as unknown as ResourceStore;
  return { store, close };
}

export interface Controller {
  readonly id: number;
  readonly runtime: Runtime;
  readonly store: ResourceStore;
  readonly started: Promise<void>;
}

export function vmManifest(v: VMDef): string {
  return [
    "apiVersion: virtwarden.io/v1alpha1",
    "kind: VirtualMachine",
    `metadata: {name: ${v.name}, namespace: ${NAMESPACE}}`,
    "spec:",
    `  runStrategy: ${v.runStrategy}`,
    // Edits must reach running guests (an invariant): they opt in to restarts that apply them.
    "  updateStrategy: Automatic",
    `  resources: {cpu: ${v.cpu}, memory: ${v.memoryMiB}Mi}`,
    `  disks: [{name: root, size: 4Gi, source: {image: {name: ${BASE_IMAGE}}}${v.diskPolicy ? `, deletionPolicy: ${v.diskPolicy}` : ""}}]`,
    // A guest crash restarts at once: the backoff exists for loops, and two crashes are no loop.
    "  availability: {restartBackoff: {initialSeconds: 0, maxSeconds: 1}}",
    "",
  ].join("\n");
}

function hostManifest(name: string, maintenance: boolean): string {
  return [
    "apiVersion: virtwarden.io/v1alpha1",
    "kind: Host",
    `metadata: {name: ${name}}`,
    `spec: {uri: "sim://${name}", fencing: {agent: sim}${maintenance ? ", maintenance: true" : ""}}`,
    "",
  ].join("\n");
}

let worlds = 0;

export class ChaosWorld {
  readonly sim: Simulator;
  readonly manifestDir: string;
  readonly stateDir: string;
  /** What the user's manifests declare right now (the test's own record, never the store's). */
  readonly declared = new Map<string, VMDef>();
  private readonly fenceBroken = new Map<string, number>();
  private readonly slow: { id: number; host: string; op?: string; probability: number }[] = [];
  private readonly failing: { id: number; host: string; op?: string; probability: number }[] = [];
  private readonly lost: { id: number; host: string; op?: string; probability: number }[] = [];
  private ruleId = 0;
  private controllers = 0;
  private current: { ctl: Controller; ks: KillSwitch; closeStore: () => Promise<void> } | undefined;
  /** Every controller killed so far is fully closed once this settles. */
  private lastClose: Promise<void> = Promise.resolve();
  restarts = 0;
  /**
   * CHAOS_LOG=PREFIX: each world's controllers log to PREFIX.<seed>.<n>, one JSON line each
   * (level CHAOS_LOG_LEVEL, default info; debug adds every provider call).
   */
  readonly logPath: string | undefined;
  private readonly logger: Logger;
  readonly startFailures: string[] = [];
  /** The newest controller log lines (JSON), when no CHAOS_LOG file is written. */
  readonly recentLog: string[] = [];
  /** Hosts switched on again after the faults stopped (they had been fenced). */
  operatorPowerOns = 0;

  constructor(
    readonly scenario: Scenario,
    readonly root: string,
  ) {
    this.logPath = process.env.CHAOS_LOG
      ? `${process.env.CHAOS_LOG}.${scenario.seed}.${++worlds}`
      : undefined;
    // Without CHAOS_LOG the info lines (~100 per seed: events, starts, fences) are kept in memory,
    // so a seed that fails under load — and passes every repeat alone — still says what the
    // controllers did to the VMs it names (runner.ts, diagnosis()).
    this.logger = this.logPath
      ? pino(
          { level: process.env.CHAOS_LOG_LEVEL ?? "info" },
          pino.destination({ dest: this.logPath, sync: false, minLength: 8192 }),
        )
      : pino(
          { level: "info", base: undefined, timestamp: pino.stdTimeFunctions.epochTime },
          { write: (line: string) => this.keepLine(line) },
        );
    this.sim = new Simulator({
      seed: scenario.seed,
      latency: CHAOS_LATENCY,
      // Hung calls give up after this; the reconcilers' own timeouts are longer.
      callTimeoutMs: 300,
      baseImages: [{ pool: "default", name: BASE_IMAGE, capacityBytes: 2 * 1024 ** 3 }],
    });
    for (const h of scenario.hosts)
      this.sim.addHost(h, { cpus: HOST_CPUS, memoryBytes: HOST_MEMORY_MIB * MiB });
    this.manifestDir = join(root, "manifests");
    this.stateDir = join(root, "state");
    mkdirSync(join(this.manifestDir, "vms"), { recursive: true });
    this.writeHosts();
    for (const v of scenario.initialVMs) this.writeVM(v);
  }

  // --- the user --------------------------------------------------------------------------------

  /** Hosts the user has put in maintenance (a counter: overlapping requests nest). */
  private readonly maintenance = new Map<string, number>();
  /**
   * Disks of deleted VMs that their deletionPolicy keeps: `required` existed when the manifest
   * went (they must survive), `allowed` may exist (a provision may have been under way).
   */
  readonly retainedDisks = { required: new Set<string>(), allowed: new Set<string>() };

  private writeHosts(): void {
    const text = this.scenario.hosts
      .map((h) => hostManifest(h, (this.maintenance.get(h) ?? 0) > 0))
      .join("---\n");
    const tmp = join(this.manifestDir, ".hosts.tmp");
    writeFileSync(tmp, text);
    renameSync(tmp, join(this.manifestDir, "hosts.yaml"));
  }

  setMaintenance(host: string, on: boolean): void {
    this.maintenance.set(host, Math.max(0, (this.maintenance.get(host) ?? 0) + (on ? 1 : -1)));
    this.writeHosts();
  }

  private vmPath(name: string): string {
    return join(this.manifestDir, "vms", `${name}.yaml`);
  }

  writeVM(v: VMDef): void {
    // Written whole and renamed into place, as editors and git do.
    const tmp = join(this.manifestDir, `.${v.name}.tmp`);
    writeFileSync(tmp, vmManifest(v));
    renameSync(tmp, this.vmPath(v.name));
    this.declared.set(v.name, { ...v });
    this.retainedDisks.required.delete(v.name);
    this.retainedDisks.allowed.delete(v.name);
  }

  removeVM(name: string): void {
    rmSync(this.vmPath(name), { force: true });
    const v = this.declared.get(name);
    this.declared.delete(name);
    if (v?.diskPolicy === "Retain") {
      this.retainedDisks.allowed.add(name);
      const disk = `${NAMESPACE}_${name}-root.qcow2`;
      if (this.sim.hosts().some((h) => h.pools.get("default")?.volumes.has(disk)))
        this.retainedDisks.required.add(name);
    }
  }

  /** The end of the faults: no host stays in maintenance. */
  endMaintenance(): void {
    if ([...this.maintenance.values()].some((n) => n > 0)) {
      this.maintenance.clear();
      this.writeHosts();
    }
  }

  // --- faults ----------------------------------------------------------------------------------

  private applyRules(): void {
    this.sim.clearFaults();
    for (const r of this.slow)
      this.sim.hangOperations({ host: r.host, probability: r.probability, ...(r.op ? { op: r.op } : {}) });
    for (const r of this.failing)
      this.sim.failOperations({ host: r.host, probability: r.probability, ...(r.op ? { op: r.op } : {}) });
    for (const r of this.lost)
      this.sim.loseReplies({ host: r.host, probability: r.probability, ...(r.op ? { op: r.op } : {}) });
  }

  addCallFault(
    kind: "slow" | "failing" | "lost",
    host: string,
    op: string | undefined,
    probability: number,
  ): number {
    const id = ++this.ruleId;
    (kind === "slow" ? this.slow : kind === "failing" ? this.failing : this.lost).push({
      id,
      host,
      probability,
      ...(op ? { op } : {}),
    });
    this.applyRules();
    return id;
  }

  removeCallFault(id: number): void {
    for (const list of [this.slow, this.failing, this.lost]) {
      const i = list.findIndex((r) => r.id === id);
      if (i >= 0) list.splice(i, 1);
    }
    this.applyRules();
  }

  breakFencing(host: string, broken: boolean): void {
    this.fenceBroken.set(host, Math.max(0, (this.fenceBroken.get(host) ?? 0) + (broken ? 1 : -1)));
  }

  /** The host is up and reachable again; after a power loss it boots with its guests shut off. */
  recoverHost(host: string): void {
    const h = this.sim.hosts().find((x) => x.name === host);
    if (!h) return;
    if (!h.powered) this.sim.restoreHost(host);
    else if (h.partitioned) this.sim.healPartition(host);
  }

  /** Faults stop: calls answer, fencing works, every host is on and reachable. */
  stopFaults(): void {
    this.slow.length = 0;
    this.failing.length = 0;
    this.lost.length = 0;
    this.sim.clearFaults();
    this.fenceBroken.clear();
    for (const h of this.sim.hosts()) this.recoverHost(h.name);
  }

  private fenceAgents(ks: KillSwitch): FenceAgentFactory {
    return (host) => {
      if (!host.spec.fencing) return undefined;
      const sim = host.spec.uri.replace("sim://", "");
      const agent: FenceAgent = {
        kind: "sim",
        fence: async (name) => {
          if (ks.killed) throw new FenceError(name, "sim", "controller killed");
          if ((this.fenceBroken.get(sim) ?? 0) > 0) throw new FenceError(name, "sim", "BMC does not answer");
          this.sim.powerOff(sim);
          if (this.sim.powerStatus(sim) !== "off") throw new FenceError(name, "sim", "still powered on");
        },
      };
      return agent;
    };
  }

  // --- the controller --------------------------------------------------------------------------

  private keepLine(line: string): void {
    this.recentLog.push(line);
    if (this.recentLog.length > RECENT_LOG_LINES)
      this.recentLog.splice(0, this.recentLog.length - RECENT_LOG_LINES);
  }

  /**
   * What a failure report shows for the named VMs: each host's domain state as the simulator
   * holds it (the world's truth), the status the last controller's store holds, and the log
   * lines that mention the VM, with their offset from `t0`.
   */
  diagnosis(vms: readonly string[], t0: number): string[] {
    const out: string[] = [];
    for (const name of vms) {
      const domains = this.sim
        .hosts()
        .flatMap((h) => {
          const d = h.domains.get(`${NAMESPACE}_${name}`);
          if (!d) return [];
          const st = `${d.state.state}${d.state.reason ? `/${d.state.reason}` : ""}`;
          return [`${h.name}:${st}${h.powered ? "" : "(off)"}${h.partitioned ? "(partitioned)" : ""}`];
        })
        .join(" ");
      out.push(`${name}: domains [${domains}]`);
      const obj = this.current?.ctl.store.get("VirtualMachine", `default/${name}`);
      if (obj) {
        const { conditions, ...rest } = (obj.status ?? {}) as Record<string, unknown> & {
          conditions?: { type: string; status: string; reason?: string; message?: string }[];
        };
        out.push(`  status ${JSON.stringify(rest)}`);
        for (const c of conditions ?? [])
          out.push(`  ${c.type}=${c.status} ${c.reason ?? ""}: ${c.message ?? ""}`);
      } else out.push("  not in the store");
      const mentions = new RegExp(`\\b${name}\\b`);
      for (const line of this.recentLog) {
        if (!mentions.test(line)) continue;
        try {
          const {
            time,
            level: _l,
            msg,
            controller,
            event,
            ...fields
          } = JSON.parse(line) as Record<string, unknown> & {
            event?: { type?: string; reason?: string; note?: string };
          };
          const what = event
            ? `${event.type} ${event.reason}: ${event.note}`
            : `${String(msg)} ${JSON.stringify(fields)}`;
          out.push(`  [${Number(time) - t0}ms] c${String(controller)} ${what}`);
        } catch {
          out.push(`  ${line.trim()}`);
        }
      }
    }
    return out;
  }

  get controller(): Controller | undefined {
    return this.current?.ctl;
  }

  /** Start a controller on the same manifests and state dir (after the last one is fully dead). */
  startController(): Controller {
    if (this.current) throw new Error("a controller is already running");
    const ks = new KillSwitch();
    const id = ++this.controllers;
    const files = new FileStore({
      manifestDir: this.manifestDir,
      stateDir: this.stateDir,
      viewIntervalMs: 1_000,
      // The product rescans every 30 s, the bound on converging after the faults is also 30 s: a
      // watcher event missed while a controller starts (seed 486: a file created 20 ms after the
      // start and removed 320 ms later) is corrected by that rescan right at the bound. Rescanning
      // every 5 s here keeps the bound measuring everything else; the missed event itself is an
      // open finding (see sim.test.ts).
      rescanIntervalMs: 5_000,
    });
    const { store, close } = killableStore(files, ks, this.logger.child({ controller: id }));
    const runtime = new Runtime({
      store,
      providerFactory: killableProviders(
        simulatorFactory(this.sim),
        ks,
        this.logger.child({ controller: id }),
      ),
      fenceAgents: this.fenceAgents(ks),
      registry: new Registry(),
      logger: this.logger.child({ controller: id }),
      heartbeatIntervalMs: HEARTBEAT_MS,
      missedBeats: 3,
      inventoryIntervalMs: 300,
      hostWarmupTimeoutMs: 2_000,
      failoverCheckIntervalMs: 0,
      consolidation: false,
    });
    const previous = this.lastClose;
    const started = previous.then(() => runtime.start());
    // A controller that cannot start (it would exit) is a finding, and must not take the run down.
    started.catch((e: unknown) => {
      if (!ks.killed) this.startFailures.push(`controller ${id} failed to start: ${String(e)}`);
    });
    const ctl: Controller = { id, runtime, store, started };
    this.current = { ctl, ks, closeStore: close };
    return ctl;
  }

  /** SIGKILL: from now on the controller cannot act; it is reaped in the background. */
  killController(): void {
    const c = this.current;
    if (!c) return;
    this.current = undefined;
    this.restarts++;
    c.ks.killed = true;
    // The dead process's connections drop (client side only: nothing is sent to the hosts).
    const closing = c.ks.providers.map((p) => p.close().catch(() => undefined));
    this.lastClose = (async () => {
      await c.ctl.started.catch(() => undefined);
      await Promise.all(closing);
      await c.closeStore().catch(() => undefined);
      // Its timers and workers: every effect is already refused; this only stops the CPU use.
      await c.ctl.runtime.stop(0).catch(() => undefined);
    })();
  }

  /** The end of the run: the controller is stopped, everything it held is closed. */
  async shutdown(): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (c) {
      await c.ctl.started.catch(() => undefined);
      await c.ctl.runtime.stop(100).catch(() => undefined);
    }
    await this.lastClose;
  }
}
