/**
 * The controller process, assembled: a ResourceStore, a ProviderFactory, the Fleet, and one
 * Controller per kind. Used by `virtwarden run`, the scenario tests and the benchmarks, so all
 * three exercise the same wiring.
 *
 * Start order matters for safety: the store is synced, then every Host gets a first reconcile
 * (connect + full domain inventory) before any VirtualMachine is reconciled — so VMs whose domains
 * already run somewhere are adopted, never placed a second time.
 */
import { Gauge, type Registry } from "prom-client";
import type { Kind, Resource } from "../api/types.js";
import { Controller } from "../controller/controller.js";
import type { Logger } from "../controller/log.js";
import { createControllerMetrics } from "../controller/metrics.js";
import type { Reconciler } from "../controller/outcome.js";
import type { FenceAgentFactory } from "../providers/fence/index.js";
import type { PowerAgentFactory } from "../providers/power/index.js";
import type { ProviderFactory } from "../providers/types.js";
import { AddressBook } from "../reconcilers/addresses.js";
import { ConsolidationIntents } from "../reconcilers/consolidation/intents.js";
import {
  CONSOLIDATION_KEY,
  type ConsolidationOptions,
  ConsolidationReconciler,
} from "../reconcilers/consolidation/reconciler.js";
import type { ReconcilerContext } from "../reconcilers/context.js";
import { reconcileErrorPolicy } from "../reconcilers/error-policy.js";
import { assessFailoverCapacity, type FailoverAssessment } from "../reconcilers/failover-capacity.js";
import { Fleet, vmKeyOfDomain } from "../reconcilers/fleet.js";
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_MISSED_BEATS } from "../reconcilers/host/heartbeat.js";
import type { ProbeTarget } from "../reconcilers/host/reachability.js";
import { HostReconciler } from "../reconcilers/host/reconciler.js";
import { createReconcilerMetrics, registerStateGauges } from "../reconcilers/metrics.js";
import { MigrationRunner } from "../reconcilers/migrations.js";
import {
  AUTO_SCHEDULE,
  measuredMtbf,
  newestSnapshotAges,
  SnapshotPolicyReconciler,
} from "../reconcilers/snapshot/policy.js";
import { VirtualMachineRestoreReconciler } from "../reconcilers/snapshot/restore.js";
import { VirtualMachineSnapshotReconciler } from "../reconcilers/snapshot/snapshot.js";
import { availabilityNow, VirtualMachineReconciler } from "../reconcilers/virtualmachine/reconciler.js";
import { VirtualNetworkReconciler } from "../reconcilers/virtualnetwork/reconciler.js";
import type { ResourceStore, WatchEvent } from "../store/types.js";

export interface RuntimeOptions {
  store: ResourceStore;
  providerFactory: ProviderFactory;
  registry: Registry;
  logger: Logger;
  vmWorkers?: number;
  hostWorkers?: number;
  heartbeatIntervalMs?: number;
  missedBeats?: number;
  inventoryIntervalMs?: number;
  /** How long to wait for every host's first contact before reconciling VMs anyway. */
  hostWarmupTimeoutMs?: number;
  /** Fence agents for Hosts that stop answering (none: only an operator's confirmation fences). */
  fenceAgents?: FenceAgentFactory;
  /** Domain starts at once per host (default 4). */
  concurrentStartsPerHost?: number;
  /** How long placement waits for a declared host not seen yet (default 15 s; 0: never waits). */
  placementWaitMs?: number;
  /** Export each VM's availability as its own series (virtwarden_vm_availability_ratio). */
  perVMMetrics?: boolean;
  /** How often the failover capacity (N-1) is assessed (default 15 s; 0 = never). */
  failoverCheckIntervalMs?: number;
  /** Live migrations at once out of one host (default 2). */
  concurrentMigrationsPerHost?: number;
  /**
   * Let libvirt migrate disks it calls unsafe to: files on a local filesystem, which it cannot
   * know is shared (a test bed). Never for real shared storage (NFS, cluster filesystems).
   */
  unsafeMigration?: boolean;
  /** Power agents for Hosts with spec.power (consolidation switches idle hosts off and on). */
  powerAgents?: PowerAgentFactory;
  /**
   * Consolidation: every interval, empty and power off one idle host that allows it, or power
   * one on when capacity is wanted (default every 60 s; false: never).
   */
  consolidation?: Partial<ConsolidationOptions> | false;
  /**
   * Whether the state store takes writes (standalone mode's FileStore). While it does not, no
   * reconcile starts: every worker waits before acting (nothing is done that cannot be recorded),
   * and resumes by itself once the store takes writes again. Exported as virtwarden_state_writable.
   */
  /**
   * Where the network-level probe of a Host's URI goes (default: its libvirt port,
   * reachability.ts); `run --simulate` says nowhere, its hosts being simulated.
   */
  probeTarget?: (uri: string) => ProbeTarget | undefined;
  stateHealth?: { writable(): boolean; onWritableChange(listener: (writable: boolean) => void): () => void };
  now?: () => Date;
}

const keyOf = (meta: { name: string; namespace?: string }) =>
  meta.namespace ? `${meta.namespace}/${meta.name}` : meta.name;

export class Runtime {
  readonly fleet: Fleet;
  readonly ctx: ReconcilerContext;
  readonly hosts: Controller;
  readonly vms: Controller;
  readonly networks: Controller;
  readonly policies: Controller;
  readonly snapshots: Controller;
  readonly restores: Controller;
  readonly consolidation: Controller | undefined;
  private readonly hostReconciler: HostReconciler;
  private readonly unwatch: (() => void)[] = [];
  private started = false;
  private failoverTimer: NodeJS.Timeout | undefined;
  /** Set while the state store refuses writes: reconciles wait on it (see `gated`). */
  private paused: { resumed: Promise<void>; resume: () => void } | undefined;
  private stopped = false;
  /** From the moment start() is called (leadership won) until stop(). */
  private acting = false;

  constructor(private readonly opts: RuntimeOptions) {
    const { store, registry, logger } = opts;
    this.watchStateHealth();
    const now = opts.now ?? (() => new Date());
    this.fleet = new Fleet(
      opts.providerFactory,
      {
        onDomainEvent: (_host, e) => {
          const key = vmKeyOfDomain(e.domain);
          if (!key) return;
          this.fleet.noteEvent(key, e.at);
          this.vms.enqueue(key);
        },
        onHealthChange: (host) => this.hosts.enqueue(host),
        // Ours are named <namespace>_<name>: one destroyed, undefined or edited behind our back
        // is looked at now, not at the next resync.
        onNetworkEvent: (_host, e) => {
          const key = vmKeyOfDomain(e.network);
          if (key && this.opts.store.get("VirtualNetwork", key)) this.networks.enqueue(key);
        },
      },
      opts.concurrentStartsPerHost,
    );
    const migrations = new MigrationRunner(() => this.ctx, {
      ...(opts.concurrentMigrationsPerHost ? { perSource: opts.concurrentMigrationsPerHost } : {}),
      ...(opts.unsafeMigration ? { unsafe: true } : {}),
    });
    this.ctx = {
      store,
      fleet: this.fleet,
      metrics: createReconcilerMetrics(registry, {
        vmPhases: () => countBy(store.list("VirtualMachine"), (v) => v.status?.phase ?? "Pending"),
        hostPhases: () => countBy(store.list("Host"), (h) => h.status?.phase ?? "Pending"),
        newestSnapshotAges: () => newestSnapshotAges(store.list("VirtualMachineSnapshot"), now()),
        migrationsInFlight: () => migrations.inFlight(),
        current: () => this.current(),
      }),
      migrations,
      ...(opts.powerAgents ? { powerAgents: opts.powerAgents } : {}),
      ...(opts.consolidation !== false ? { consolidation: new ConsolidationIntents() } : {}),
      logger,
      now,
      enqueue: (kind: Kind, key: string, afterMs?: number) => {
        const c = this.controllerOf(kind);
        if (afterMs) c.enqueueAfter(key, afterMs);
        else c.enqueue(key);
      },
      addresses: new AddressBook(store),
      heartbeat: {
        intervalMs: opts.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
        missedBeats: opts.missedBeats ?? DEFAULT_MISSED_BEATS,
        ...(opts.probeTarget ? { probeTarget: opts.probeTarget } : {}),
      },
      inventoryIntervalMs: opts.inventoryIntervalMs ?? 30_000,
      ...(opts.placementWaitMs !== undefined ? { placementWaitMs: opts.placementWaitMs } : {}),
      ...(opts.fenceAgents ? { fenceAgents: opts.fenceAgents } : {}),
    };
    registerStateGauges(
      registry,
      {
        hostPhaseByName: () =>
          Object.fromEntries(store.list("Host").map((h) => [h.metadata.name, h.status?.phase ?? "Pending"])),
        hostReliability: () =>
          Object.fromEntries(
            store
              .list("Host")
              .flatMap((h) => (h.status?.reliability ? [[h.metadata.name, h.status.reliability]] : [])),
          ),
        hostUsage: () =>
          Object.fromEntries(
            store.list("Host").flatMap((h) => (h.status?.usage ? [[h.metadata.name, h.status.usage]] : [])),
          ),
        outOfSync: () => outOfSyncByKind(store),
        availability: () => {
          const at = now();
          let up = 0;
          let down = 0;
          const perVM: { namespace: string; name: string; ratio: number }[] = [];
          for (const v of store.list("VirtualMachine")) {
            const a = availabilityNow(v, at);
            if (!a) continue;
            up += a.uptime;
            down += a.downtime;
            if (opts.perVMMetrics)
              perVM.push({
                namespace: v.metadata.namespace ?? "default",
                name: v.metadata.name,
                ratio: a.ratio,
              });
          }
          return { fleet: up + down > 0 ? up / (up + down) : undefined, perVM };
        },
        current: () => this.current(),
      },
      opts.perVMMetrics,
    );
    const acting = () => this.acting;
    new Gauge({
      name: "virtwarden_leader",
      help: "1 while this process leads and acts (a standalone controller always does); 0 on a standby waiting for the Lease.",
      registers: [registry],
      collect() {
        this.set(acting() ? 1 : 0);
      },
    });
    const metrics = createControllerMetrics(registry);
    this.hostReconciler = new HostReconciler(this.ctx);
    this.hosts = new Controller({
      reconciler: this.gated(this.hostReconciler),
      errorPolicy: reconcileErrorPolicy,
      workers: opts.hostWorkers ?? 8,
      metrics,
      logger: logger.child({ controller: "host" }),
      listKeys: () => store.list("Host").map((h) => h.metadata.name),
      resyncIntervalMs: 60_000,
    });
    this.networks = new Controller({
      reconciler: this.gated(new VirtualNetworkReconciler(this.ctx)),
      errorPolicy: reconcileErrorPolicy,
      workers: 4,
      metrics,
      logger: logger.child({ controller: "virtualnetwork" }),
      listKeys: () => store.list("VirtualNetwork").map((n) => keyOf(n.metadata)),
      resyncIntervalMs: 60_000,
    });
    this.vms = new Controller({
      reconciler: this.gated(new VirtualMachineReconciler(this.ctx)),
      errorPolicy: reconcileErrorPolicy,
      // Reconciles are mostly waiting on hypervisors; libvirtd bounds per-host concurrency itself
      // (max_client_requests), and after a host failure many VMs must start at once.
      workers: opts.vmWorkers ?? 64,
      metrics,
      logger: logger.child({ controller: "virtualmachine" }),
      listKeys: () => store.list("VirtualMachine").map((v) => keyOf(v.metadata)),
      resyncIntervalMs: 300_000,
    });
    const ns = (kind: "SnapshotPolicy" | "VirtualMachineSnapshot" | "VirtualMachineRestore") => () =>
      store.list(kind).map((o) => keyOf(o.metadata));
    this.policies = new Controller({
      reconciler: this.gated(new SnapshotPolicyReconciler(this.ctx)),
      errorPolicy: reconcileErrorPolicy,
      workers: 2,
      metrics,
      logger: logger.child({ controller: "snapshotpolicy" }),
      listKeys: ns("SnapshotPolicy"),
      resyncIntervalMs: 60_000,
    });
    this.snapshots = new Controller({
      reconciler: this.gated(new VirtualMachineSnapshotReconciler(this.ctx)),
      errorPolicy: reconcileErrorPolicy,
      // Per-host limits (maxParallelPerHost) bound the real concurrency.
      workers: 32,
      metrics,
      logger: logger.child({ controller: "virtualmachinesnapshot" }),
      listKeys: ns("VirtualMachineSnapshot"),
      resyncIntervalMs: 300_000,
    });
    this.restores = new Controller({
      reconciler: this.gated(new VirtualMachineRestoreReconciler(this.ctx)),
      errorPolicy: reconcileErrorPolicy,
      workers: 8,
      metrics,
      logger: logger.child({ controller: "virtualmachinerestore" }),
      listKeys: ns("VirtualMachineRestore"),
      resyncIntervalMs: 300_000,
    });
    this.consolidation = this.buildConsolidation(metrics);
  }

  private buildConsolidation(metrics: ReturnType<typeof createControllerMetrics>): Controller | undefined {
    const o = this.opts.consolidation;
    if (o === false) return undefined;
    return new Controller({
      reconciler: this.gated(new ConsolidationReconciler(this.ctx, { intervalMs: 60_000, ...(o ?? {}) })),
      errorPolicy: reconcileErrorPolicy,
      workers: 1,
      metrics,
      logger: this.opts.logger.child({ controller: "consolidation" }),
      listKeys: () => [CONSOLIDATION_KEY],
      resyncIntervalMs: 300_000,
    });
  }

  private watchStateHealth(): void {
    const health = this.opts.stateHealth;
    if (!health) return;
    new Gauge({
      name: "virtwarden_state_writable",
      help: "1 while the state store takes writes; 0 while it does not and no reconcile starts",
      registers: [this.opts.registry],
      collect() {
        this.set(health.writable() ? 1 : 0);
      },
    });
    const change = (writable: boolean) => {
      if (!writable && !this.paused) {
        let resume: () => void = () => undefined;
        const resumed = new Promise<void>((r) => {
          resume = r;
        });
        this.paused = { resumed, resume };
        this.opts.logger.warn("state store refuses writes: no reconcile starts until it takes them again");
      } else if (writable && this.paused) {
        this.paused.resume();
        this.paused = undefined;
        this.opts.logger.info("state store takes writes again: reconciles resume");
      }
    };
    this.unwatch.push(health.onWritableChange(change));
    change(health.writable());
  }

  /** The reconciler, made to wait before each reconcile while the state store refuses writes. */
  private gated(r: Reconciler): Reconciler {
    if (!this.opts.stateHealth) return r;
    return {
      name: r.name,
      reconcile: async (key, signal) => {
        while (this.paused) {
          const aborted = new Promise<never>((_, reject) =>
            signal.addEventListener("abort", () => reject(new Error("stopping: not acting")), { once: true }),
          );
          await Promise.race([this.paused.resumed, aborted]);
          if (this.stopped) throw new Error("stopping: not acting");
        }
        return r.reconcile(key, signal);
      },
    };
  }

  private controllerOf(kind: Kind): Controller {
    switch (kind) {
      case "Host":
        return this.hosts;
      case "VirtualMachine":
        return this.vms;
      case "VirtualNetwork":
        return this.networks;
      case "SnapshotPolicy":
        return this.policies;
      case "VirtualMachineSnapshot":
        return this.snapshots;
      case "VirtualMachineRestore":
        return this.restores;
      case "VirtualMachineClass":
        // No reconciler of its own: a class is part of its VMs' effective spec.
        return this.vms;
    }
  }

  /** Start everything; resolves once VM reconciliation has begun. */
  async start(signal?: AbortSignal): Promise<void> {
    const { store, logger } = this.opts;
    this.acting = true;
    await store.start(signal);
    const hostPhases = new Map<string, string | undefined>();
    const hostMtbfs = new Map<string, number | undefined>();
    this.unwatch.push(
      store.watch("Host", (e) => {
        const name = e.object.metadata.name;
        // schedule auto reads each host's measured MTBF: a change re-times the policies.
        const mtbf = e.type === "deleted" ? undefined : measuredMtbf(e.object);
        if (hostMtbfs.get(name) !== mtbf) {
          hostMtbfs.set(name, mtbf);
          this.wakeAutoPolicies();
        }
        if (this.changed(e)) {
          this.hosts.enqueue(name);
          // Network host selectors match labels: a host's labels changing may add or remove it.
          if (this.started)
            for (const n of store.list("VirtualNetwork")) this.networks.enqueue(keyOf(n.metadata));
        }
        // A Host's phase reaching the cache (Fenced, Ready...) is what its VMs act on: with a
        // remote store the VMs woken right after the status write could still read the old one.
        const phase = e.type === "deleted" ? undefined : e.object.status?.phase;
        if (hostPhases.get(name) !== phase) {
          if (hostPhases.has(name) || phase !== undefined) this.hostReconciler.wakeVMsOf(name);
          hostPhases.set(name, phase);
        }
      }),
    );
    this.hosts.start();
    await this.warmUpHosts(signal);
    // Networks next: VMs are placed only where their networks are ready.
    this.unwatch.push(
      store.watch("VirtualNetwork", (e) => {
        if (!this.changed(e)) return;
        this.ctx.addresses?.invalidate();
        this.networks.enqueue(keyOf(e.object.metadata));
        if (this.started) this.wakeAddressClaimants(e.object.metadata.namespace ?? "default");
      }),
    );
    this.networks.start();
    await Promise.race([this.networks.idle(), new Promise((r) => setTimeout(r, 5_000))]);
    const vmHosts = new Map<string, string | undefined>();
    this.unwatch.push(
      store.watch("VirtualMachine", (e) => {
        // schedule auto takes the MTBF of the host a VM runs on: a placement or migration re-times.
        const vmKey = keyOf(e.object.metadata);
        const host = e.type === "deleted" ? undefined : e.object.status?.host;
        if (vmHosts.get(vmKey) !== host) {
          if (host === undefined) vmHosts.delete(vmKey);
          else vmHosts.set(vmKey, host);
          this.wakeAutoPolicies(e.object.metadata.namespace ?? "default");
        }
        if (!this.changed(e)) return;
        // Fixed addresses: a claimant came, went or changed; the VMs of its namespace with fixed
        // addresses are re-judged (a refused VM may now be free to go).
        if ((e.object.spec.networks ?? []).some((n) => n.ip || n.mac)) {
          const ns = e.object.metadata.namespace ?? "default";
          this.ctx.addresses?.invalidate();
          if (e.type === "deleted") this.wakeAddressClaimants(ns);
          // A fixed IP is a DHCP host entry of its network: that network is re-rendered.
          for (const n of e.object.spec.networks ?? []) if (n.ip) this.networks.enqueue(`${ns}/${n.network}`);
        }
        this.vms.enqueue(keyOf(e.object.metadata));
      }),
    );
    // A class is part of the effective spec of every VM naming it (api/classes.ts): a change,
    // creation or deletion re-judges them all, exactly as a spec change of each would.
    this.unwatch.push(
      store.watch("VirtualMachineClass", (e) => {
        if (!this.changed(e)) return;
        for (const v of store.list("VirtualMachine"))
          if (v.spec.instanceType === e.object.metadata.name) this.vms.enqueue(keyOf(v.metadata));
      }),
    );
    this.vms.start();
    // Snapshots act on placed VMs: after the VMs. A finished snapshot wakes its policy (status,
    // retention); a VM's labels or group changing wakes the policies (selection).
    this.unwatch.push(
      store.watch(
        "SnapshotPolicy",
        (e) => this.changed(e) && this.policies.enqueue(keyOf(e.object.metadata)),
      ),
      store.watch("VirtualMachineSnapshot", (e) => {
        if (this.changed(e)) this.snapshots.enqueue(keyOf(e.object.metadata));
        const p = e.object.spec.policy;
        if (p) this.policies.enqueue(`${e.object.metadata.namespace ?? "default"}/${p}`);
      }),
      store.watch("VirtualMachineRestore", (e) => {
        if (this.changed(e)) this.restores.enqueue(keyOf(e.object.metadata));
        // A finished restore releases its snapshot for deletion or pruning.
        const snap = `${e.object.metadata.namespace ?? "default"}/${e.object.spec.snapshotName}`;
        const s = store.get("VirtualMachineSnapshot", snap);
        if (s?.metadata.deletionTimestamp) this.snapshots.enqueue(snap);
      }),
    );
    this.snapshots.start();
    this.restores.start();
    this.policies.start();
    if (this.consolidation) {
      // The first round after one interval: nothing moves while the fleet is starting up.
      this.consolidation.start();
      const o = this.opts.consolidation;
      this.consolidation.enqueueAfter(CONSOLIDATION_KEY, (o ? o.intervalMs : undefined) ?? 60_000);
    }
    this.started = true;
    const every = this.opts.failoverCheckIntervalMs ?? 15_000;
    if (every > 0) {
      this.failoverTimer = setInterval(() => this.assessFailover(), every);
      this.failoverTimer.unref();
    }
    logger.info(
      { hosts: store.list("Host").length, vms: store.list("VirtualMachine").length },
      "controllers started",
    );
  }

  private readonly seen = new Map<string, string>();

  /**
   * Whether a watch event asks for work: a new object, a spec change (generation), deletion, new
   * labels, or a change of a virtwarden.io/ annotation (the user's requests: restartedAt,
   * fence-confirmed). Our own status and finalizer writes come back as events too; reconciling on
   * them would double the work for nothing (controller-runtime's GenerationChangedPredicate, with
   * its AnnotationChangedPredicate narrowed to our keys: other tools' annotations ask nothing).
   */
  private changed(e: { type: WatchEvent["type"]; object: Resource }): boolean {
    const m = e.object.metadata;
    const id = `${e.object.kind}|${keyOf(m)}`;
    if (e.type === "deleted") {
      this.seen.delete(id);
      return true;
    }
    const ours = Object.entries(m.annotations ?? {})
      .filter(([k]) => k.startsWith("virtwarden.io/"))
      .sort(([a], [b]) => (a < b ? -1 : 1));
    const sig = `${m.generation ?? ""}|${m.deletionTimestamp ?? ""}|${JSON.stringify(m.labels ?? {})}|${m.uid ?? ""}|${JSON.stringify(ours)}`;
    if (this.seen.get(id) === sig) return false;
    this.seen.set(id, sig);
    return true;
  }

  /** Enqueue the SnapshotPolicies with schedule auto (of one namespace, if given). */
  private wakeAutoPolicies(namespace?: string): void {
    for (const p of this.opts.store.list("SnapshotPolicy"))
      if (
        p.spec.schedule === AUTO_SCHEDULE &&
        (namespace === undefined || (p.metadata.namespace ?? "default") === namespace)
      )
        this.policies.enqueue(keyOf(p.metadata));
  }

  private wakeAddressClaimants(namespace: string): void {
    for (const v of this.opts.store.list("VirtualMachine"))
      if (
        (v.metadata.namespace ?? "default") === namespace &&
        (v.spec.networks ?? []).some((n) => n.ip || n.mac)
      )
        this.vms.enqueue(keyOf(v.metadata));
  }

  /**
   * Whether the fleet gauges describe the fleet: only once this process leads and its controllers
   * run, never on a standby (whose store is not even synced) nor after it stopped.
   */
  private current(): boolean {
    return this.started && !this.stopped;
  }

  isReady(): boolean {
    return this.started && this.opts.store.hasSynced();
  }

  /** Wait until every Host has had its first contact attempt (connected with inventory, or failed). */
  private async warmUpHosts(signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + (this.opts.hostWarmupTimeoutMs ?? 10_000);
    const hosts = () => this.opts.store.list("Host").map((h) => h.metadata.name);
    while (Date.now() < deadline && !signal?.aborted) {
      const pending = hosts().filter((h) => !this.hostReconciler.contacted(h));
      if (pending.length === 0) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Refresh the N-1 failover assessment: metrics, and the Hosts whose verdict changed. */
  assessFailover(): FailoverAssessment {
    const before = this.ctx.failover;
    const a = assessFailoverCapacity(this.ctx, this.ctx.now());
    this.ctx.failover = a;
    this.ctx.metrics.failoverSufficient.set(a.sufficient ? 1 : 0);
    this.ctx.metrics.failoverStranded.set(a.stranded);
    for (const [host, n] of a.strandedByHost)
      if (before?.strandedByHost.get(host) !== n) this.hosts.enqueue(host);
    if (before && before.sufficient !== a.sufficient)
      this.opts.logger[a.sufficient ? "info" : "warn"](
        { worstHost: a.worstHost, stranded: a.stranded },
        a.message,
      );
    return a;
  }

  async stop(graceMs = 5_000): Promise<void> {
    this.stopped = true;
    this.acting = false;
    this.paused?.resume(); // waiting reconciles end (without acting) instead of holding up the stop
    if (this.failoverTimer) clearInterval(this.failoverTimer);
    this.ctx.migrations?.abortAll();
    for (const u of this.unwatch.splice(0)) u();
    await Promise.all([
      this.consolidation?.stop({ graceMs }),
      this.policies.stop({ graceMs }),
      this.snapshots.stop({ graceMs }),
      this.restores.stop({ graceMs }),
      this.vms.stop({ graceMs }),
      this.networks.stop({ graceMs }),
      this.hosts.stop({ graceMs }),
    ]);
    await this.fleet.closeAll();
    await this.opts.store.stop();
  }
}

function countBy<T>(items: T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) {
    const k = key(i);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Resources whose Synced condition (Ready for kinds without one) is False now, by kind. */
function outOfSyncByKind(store: ResourceStore): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kind of ["VirtualMachine", "VirtualNetwork", "Host"] as const) {
    let n = 0;
    for (const o of store.list(kind)) {
      const conds = o.status?.conditions ?? [];
      const c = conds.find((x) => x.type === "Synced") ?? conds.find((x) => x.type === "Ready");
      if (c?.status === "False") n++;
    }
    out[kind] = n;
  }
  return out;
}
