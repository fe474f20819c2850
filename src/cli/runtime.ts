/**
 * The controller process, assembled: a ResourceStore, a ProviderFactory, the Fleet, and one
 * Controller per kind. Used by `virtwarden run`, the scenario tests and the benchmarks, so all
 * three exercise the same wiring.
 *
 * Start order matters for safety: the store is synced, then every Host gets a first reconcile
 * (connect + full domain inventory) before any VirtualMachine is reconciled — so VMs whose domains
 * already run somewhere are adopted, never placed a second time.
 */
import type { Registry } from "prom-client";
import type { Kind } from "../api/types.js";
import { Controller } from "../controller/controller.js";
import type { Logger } from "../controller/log.js";
import { createControllerMetrics } from "../controller/metrics.js";
import type { ProviderFactory } from "../providers/types.js";
import type { ReconcilerContext } from "../reconcilers/context.js";
import { Fleet, vmKeyOfDomain } from "../reconcilers/fleet.js";
import { HostReconciler } from "../reconcilers/host/reconciler.js";
import { createReconcilerMetrics } from "../reconcilers/metrics.js";
import { VirtualMachineReconciler } from "../reconcilers/virtualmachine/reconciler.js";
import type { ResourceStore } from "../store/types.js";

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
  now?: () => Date;
}

const keyOf = (meta: { name: string; namespace?: string }) =>
  meta.namespace ? `${meta.namespace}/${meta.name}` : meta.name;

export class Runtime {
  readonly fleet: Fleet;
  readonly ctx: ReconcilerContext;
  readonly hosts: Controller;
  readonly vms: Controller;
  private readonly unwatch: (() => void)[] = [];
  private started = false;

  constructor(private readonly opts: RuntimeOptions) {
    const { store, registry, logger } = opts;
    const now = opts.now ?? (() => new Date());
    this.fleet = new Fleet(opts.providerFactory, {
      onDomainEvent: (_host, e) => {
        const key = vmKeyOfDomain(e.domain);
        if (!key) return;
        this.fleet.noteEvent(key, e.at);
        this.vms.enqueue(key);
      },
      onHealthChange: (host) => this.hosts.enqueue(host),
    });
    this.ctx = {
      store,
      fleet: this.fleet,
      metrics: createReconcilerMetrics(registry, {
        vmPhases: () => countBy(store.list("VirtualMachine"), (v) => v.status?.phase ?? "Pending"),
        hostPhases: () => countBy(store.list("Host"), (h) => h.status?.phase ?? "Pending"),
      }),
      logger,
      now,
      enqueue: (kind: Kind, key: string, afterMs?: number) => {
        const c = kind === "Host" ? this.hosts : kind === "VirtualMachine" ? this.vms : undefined;
        if (!c) return;
        if (afterMs) c.enqueueAfter(key, afterMs);
        else c.enqueue(key);
      },
      heartbeat: { intervalMs: opts.heartbeatIntervalMs ?? 1000, missedBeats: opts.missedBeats ?? 3 },
      inventoryIntervalMs: opts.inventoryIntervalMs ?? 30_000,
    };
    const metrics = createControllerMetrics(registry);
    this.hosts = new Controller({
      reconciler: new HostReconciler(this.ctx),
      workers: opts.hostWorkers ?? 8,
      metrics,
      logger: logger.child({ controller: "host" }),
      listKeys: () => store.list("Host").map((h) => h.metadata.name),
      resyncIntervalMs: 60_000,
    });
    this.vms = new Controller({
      reconciler: new VirtualMachineReconciler(this.ctx),
      workers: opts.vmWorkers ?? 16,
      metrics,
      logger: logger.child({ controller: "virtualmachine" }),
      listKeys: () => store.list("VirtualMachine").map((v) => keyOf(v.metadata)),
      resyncIntervalMs: 300_000,
    });
  }

  /** Start everything; resolves once VM reconciliation has begun. */
  async start(signal?: AbortSignal): Promise<void> {
    const { store, logger } = this.opts;
    await store.start(signal);
    this.unwatch.push(store.watch("Host", (e) => this.hosts.enqueue(e.object.metadata.name)));
    this.hosts.start();
    await this.warmUpHosts(signal);
    this.unwatch.push(store.watch("VirtualMachine", (e) => this.vms.enqueue(keyOf(e.object.metadata))));
    this.vms.start();
    this.started = true;
    logger.info(
      { hosts: store.list("Host").length, vms: store.list("VirtualMachine").length },
      "controllers started",
    );
  }

  isReady(): boolean {
    return this.started && this.opts.store.hasSynced();
  }

  /** Wait until every Host has had its first contact attempt (connected with inventory, or failed). */
  private async warmUpHosts(signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + (this.opts.hostWarmupTimeoutMs ?? 10_000);
    const hosts = () => this.opts.store.list("Host").map((h) => h.metadata.name);
    while (Date.now() < deadline && !signal?.aborted) {
      const pending = hosts().filter((h) => {
        const c = this.fleet.connection(h);
        return !c || (!c.inventoryAt && c.missedBeats === 0);
      });
      if (pending.length === 0) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(graceMs = 5_000): Promise<void> {
    for (const u of this.unwatch.splice(0)) u();
    await Promise.all([this.vms.stop({ graceMs }), this.hosts.stop({ graceMs })]);
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
