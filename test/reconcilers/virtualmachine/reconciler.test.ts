/**
 * The VirtualMachine reconciler against the simulator and a store that fails where a crash
 * would hurt: between the actions and the status write, and with a cache that has not yet seen
 * what this controller just created (an informer's lag). Clock: a fake one, advanced by hand.
 */
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type {
  Kind,
  Resource,
  ResourceOfKind,
  VirtualMachine,
  VirtualMachineSnapshot,
} from "../../../src/api/types.js";
import { Controller } from "../../../src/controller/controller.js";
import { silentLogger } from "../../../src/controller/log.js";
import { TerminalError } from "../../../src/controller/outcome.js";
import { ExponentialBackoffLimiter } from "../../../src/controller/rate-limiter.js";
import { Simulator, simulatorFactory } from "../../../src/providers/sim/index.js";
import { type HypervisorProvider, ProviderError } from "../../../src/providers/types.js";
import type { ReconcilerContext } from "../../../src/reconcilers/context.js";
import { Fleet } from "../../../src/reconcilers/fleet.js";
import { createReconcilerMetrics } from "../../../src/reconcilers/metrics.js";
import { VirtualMachineReconciler } from "../../../src/reconcilers/virtualmachine/reconciler.js";
import { MemoryStore } from "../../../src/store/memory.js";
import { hostResource, vm } from "../../support/fixtures.js";

const GiB = 1024 ** 3;
const KEY = "default/app";
const DOMAIN = "default_app";

/**
 * A MemoryStore that refuses the next N status writes (the API server down, the controller
 * killed before it wrote), and can hide VirtualMachineRestores from its cache the way an informer
 * that has not caught up does, while a create of a taken name fails with 409 as the API server's.
 */
class FaultyStore extends MemoryStore {
  failStatusWrites = 0;
  restoresLag = false;

  override async updateStatus<K extends Kind>(
    obj: ResourceOfKind<K>,
    status: NonNullable<ResourceOfKind<K>["status"]>,
  ): Promise<ResourceOfKind<K>> {
    if (this.failStatusWrites > 0) {
      this.failStatusWrites--;
      throw new Error("status write refused (injected)");
    }
    return super.updateStatus(obj, status);
  }

  override get<K extends Kind>(kind: K, key: string): ResourceOfKind<K> | undefined {
    if (kind === "VirtualMachineRestore" && this.restoresLag) return undefined;
    return super.get(kind, key);
  }

  override list<K extends Kind>(kind: K): ResourceOfKind<K>[] {
    if (kind === "VirtualMachineRestore" && this.restoresLag) return [];
    return super.list(kind);
  }

  /** What really is stored, whatever the cache shows. */
  stored<K extends Kind>(kind: K): ResourceOfKind<K>[] {
    return super.list(kind);
  }

  override async create<R extends Resource>(obj: R): Promise<R> {
    const key = `${obj.metadata.namespace ?? "default"}/${obj.metadata.name}`;
    if (super.get(obj.kind, key))
      throw Object.assign(new Error(`${obj.kind} ${key} already exists`), { code: 409 });
    return super.create(obj);
  }
}

interface World {
  sim: Simulator;
  store: FaultyStore;
  fleet: Fleet;
  clock: { now: Date; advance(ms: number): Date };
  reconciler: VirtualMachineReconciler;
  get(): VirtualMachine;
}

/** One simulated host h0, connected; `wrap` may stand between the fleet and its provider. */
async function world(wrap?: (p: HypervisorProvider) => HypervisorProvider): Promise<World> {
  const sim = new Simulator({
    seed: 7,
    latency: "none",
    baseImages: [{ pool: "default", name: "base.qcow2", capacityBytes: 2 * GiB }],
  });
  sim.addHost("h0", { cpus: 16, memoryBytes: 32 * GiB });
  const clock = {
    now: new Date("2026-06-01T12:00:00Z"),
    advance(ms: number) {
      this.now = new Date(this.now.getTime() + ms);
      return this.now;
    },
  };
  const store = new FaultyStore(() => clock.now);
  store.apply(hostResource("h0"));
  const factory = simulatorFactory(sim);
  // Events are noted by the test with the time it chooses (the simulator stamps the real clock).
  const fleet = new Fleet(wrap ? (uri, o) => wrap(factory(uri, o)) : factory, {
    onDomainEvent: () => undefined,
    onHealthChange: () => undefined,
  });
  const conn = await fleet.ensureConnection("h0", "sim://h0");
  await conn.connect();
  fleet.setCandidate({
    name: "h0",
    labels: {},
    ready: true,
    schedulable: true,
    allocatable: { cpuMilli: 16_000, memoryBytes: 32 * GiB },
  });
  // What the Host reconciler does after its first pass: h0 is seen, placement need not wait.
  fleet.markObserved("h0");
  const ctx: ReconcilerContext = {
    store,
    fleet,
    metrics: createReconcilerMetrics(new Registry()),
    logger: silentLogger,
    now: () => clock.now,
    enqueue: () => undefined,
    heartbeat: { intervalMs: 1000, missedBeats: 3 },
    inventoryIntervalMs: 30_000,
  };
  const reconciler = new VirtualMachineReconciler(ctx);
  const get = () => {
    const v = store.get("VirtualMachine", KEY);
    if (!v) throw new Error("VM gone");
    return v;
  };
  return { sim, store, fleet, clock, reconciler, get };
}

const signal = new AbortController().signal;

/** Reconcile until the VM runs on h0 (place, provision, define, start). */
async function runningVM(w: World, v: VirtualMachine): Promise<void> {
  w.store.apply(v);
  for (let i = 0; i < 5 && w.get().status?.phase !== "Running"; i++)
    await w.reconciler.reconcile(KEY, signal);
  expect(w.get().status?.phase).toBe("Running");
  expect(w.sim.runningCopies(DOMAIN)).toEqual(["h0"]);
}

describe("VirtualMachine reconciler: the crash time survives a failed status write", () => {
  it("dates the crash from its event after a retry, and counts it once", async () => {
    const w = await world();
    const earlier = new Date(w.clock.now.getTime() - 20_000).toISOString();
    // A crash 20 s ago already: this one backs off 30 s, so it is recorded before any restart.
    await runningVM(
      w,
      vm("app")
        .spec({ availability: { restartBackoff: { initialSeconds: 30, maxSeconds: 300 } } })
        .status({ recentCrashes: [earlier], restartCount: 1 })
        .build(),
    );
    w.sim.crashDomain("h0", DOMAIN);
    const crashedAt = new Date(w.clock.now.getTime() + 1_000);
    w.fleet.noteEvent(KEY, crashedAt);
    w.clock.advance(4_000); // seen 3 s after it happened

    w.store.failStatusWrites = 1;
    await expect(w.reconciler.reconcile(KEY, signal)).rejects.toThrow(/status write refused/);
    expect(w.get().status?.restartCount).toBe(1); // nothing recorded yet

    w.clock.advance(2_000);
    await w.reconciler.reconcile(KEY, signal);
    let st = w.get().status;
    expect(st?.phase).toBe("Recovering");
    expect(st?.lastFailure?.at).toBe(crashedAt.toISOString());
    expect(st?.lastRecovery).toMatchObject({ reason: "Crash", failedAt: crashedAt.toISOString() });
    expect(st?.restartCount).toBe(2);
    expect(st?.recentCrashes).toEqual([earlier, crashedAt.toISOString()]);
    // Written: the event is consumed.
    expect(w.fleet.lastEvent(KEY)).toBeUndefined();

    // Later passes while it backs off do not count it again.
    w.clock.advance(5_000);
    await w.reconciler.reconcile(KEY, signal);
    st = w.get().status;
    expect(st?.restartCount).toBe(2);
    expect(st?.recentCrashes).toHaveLength(2);

    // Backoff over: restarted, and the recovery is measured from the crash, not its detection.
    w.clock.now = new Date(crashedAt.getTime() + 31_000);
    await w.reconciler.reconcile(KEY, signal);
    st = w.get().status;
    expect(st?.phase).toBe("Running");
    expect(st?.restartCount).toBe(2);
    expect(st?.lastRecovery).toMatchObject({ result: "Succeeded", failedAt: crashedAt.toISOString() });
    expect(st?.lastRecovery?.seconds).toBe(31);
    expect(w.sim.runningCopies(DOMAIN)).toEqual(["h0"]);

    // A second crash is its own: dated from its own event, counted once more.
    w.sim.crashDomain("h0", DOMAIN);
    const second = new Date(w.clock.now.getTime() + 500);
    w.fleet.noteEvent(KEY, second);
    w.clock.advance(1_000);
    await w.reconciler.reconcile(KEY, signal);
    st = w.get().status;
    expect(st?.restartCount).toBe(3);
    expect(st?.lastFailure?.at).toBe(second.toISOString());
  });

  it("keeps an event that arrived while the reconcile ran for the next one", async () => {
    const w = await world();
    const t1 = new Date("2026-06-01T11:59:00Z");
    const t2 = new Date("2026-06-01T11:59:30Z");
    w.fleet.noteEvent(KEY, t1);
    expect(w.fleet.lastEvent(KEY)).toEqual(t1); // reading does not consume
    w.fleet.noteEvent(KEY, t2); // arrives before the status recording t1 is written
    w.fleet.ackEvent(KEY, t1);
    expect(w.fleet.lastEvent(KEY)).toEqual(t2);
    w.fleet.ackEvent(KEY, t2);
    expect(w.fleet.lastEvent(KEY)).toBeUndefined();
  });
});

describe("VirtualMachine reconciler: one crash-loop restore per episode", () => {
  const looping = () =>
    vm("app")
      .spec({
        availability: {
          onCrashLoop: "RestoreLatestSnapshot",
          crashLoopThreshold: 2,
          crashLoopWindowSeconds: 600,
        },
      })
      .status({ recentCrashes: [new Date("2026-06-01T11:59:40Z").toISOString()], restartCount: 1 })
      .build();
  const snapshot = (): VirtualMachineSnapshot => ({
    apiVersion: "virtwarden.io/v1alpha1",
    kind: "VirtualMachineSnapshot",
    metadata: { name: "app-good", namespace: "default" },
    spec: { vmName: "app" },
    status: {
      phase: "Succeeded",
      healthy: true,
      creationTime: "2026-06-01T11:00:00Z",
      members: [{ vmName: "app", host: "h0", snapshotName: "app-good" }],
    },
  });

  for (const lag of [false, true])
    it(`creates exactly one restore when the status write after its create fails${lag ? ", with a cache that has not seen it" : ""}`, async () => {
      const w = await world();
      w.store.apply(snapshot());
      await runningVM(w, looping());
      w.sim.crashDomain("h0", DOMAIN);
      w.fleet.noteEvent(KEY, w.clock.now);
      w.clock.advance(1_000);

      w.store.restoresLag = lag;
      w.store.failStatusWrites = 1;
      await expect(w.reconciler.reconcile(KEY, signal)).rejects.toThrow(/status write refused/);
      expect(w.store.stored("VirtualMachineRestore")).toHaveLength(1);

      // The retry, a moment later (a restart, a requeue): it finds the first restore.
      w.clock.advance(3_000);
      await w.reconciler.reconcile(KEY, signal);
      const restores = w.store.stored("VirtualMachineRestore");
      expect(restores.map((r) => r.metadata.name)).toEqual([restores[0]?.metadata.name]);
      expect(restores[0]?.spec.snapshotName).toBe("app-good");
      expect(restores[0]?.metadata.labels?.["virtwarden.io/crashloop-of"]).toBe("app");
      const st = w.get().status;
      expect(st?.phase).toBe("Recovering");
      expect(st?.lastRecovery).toMatchObject({ reason: "CrashLoopRestore", result: "InProgress" });

      // And again: still one.
      w.store.restoresLag = false;
      w.clock.advance(3_000);
      await w.reconciler.reconcile(KEY, signal);
      expect(w.store.stored("VirtualMachineRestore")).toHaveLength(1);
    });
});

describe("VirtualMachine reconciler: stopped in a crash loop, it stays stopped", () => {
  it("a failed crash-loop restore stops the VM; later reconciles start nothing until the user annotates it", async () => {
    const w = await world();
    w.store.apply({
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "VirtualMachineSnapshot",
      metadata: { name: "app-good", namespace: "default" },
      spec: { vmName: "app" },
      status: {
        phase: "Succeeded",
        healthy: true,
        creationTime: "2026-06-01T11:00:00Z",
        members: [{ vmName: "app", host: "h0", snapshotName: "app-good" }],
      },
    });
    await runningVM(
      w,
      vm("app")
        .spec({
          availability: {
            onCrashLoop: "RestoreLatestSnapshot",
            crashLoopThreshold: 2,
            crashLoopWindowSeconds: 600,
          },
        })
        .status({ recentCrashes: [new Date("2026-06-01T11:59:40Z").toISOString()], restartCount: 1 })
        .build(),
    );
    w.sim.crashDomain("h0", DOMAIN);
    w.fleet.noteEvent(KEY, w.clock.now);
    w.clock.advance(1_000);
    await w.reconciler.reconcile(KEY, signal);
    const [restore] = w.store.stored("VirtualMachineRestore");
    if (!restore) throw new Error("no crash-loop restore");
    // The restore fails (as its reconciler records it); the VM is then stopped in CrashLoop.
    await w.store.updateStatus(restore, { phase: "Failed", error: "injected" });
    w.clock.advance(2_000);
    await w.reconciler.reconcile(KEY, signal);
    expect(w.get().status?.phase).toBe("CrashLoop");
    // Unrelated reconciles (a network deleted, resyncs, the backoff long past), and the domain
    // found destroyed rather than crashed: the host is the oracle, nothing runs there.
    for (let i = 0; i < 4; i++) {
      const d = w.sim.lookupHost("h0")?.domains.get(DOMAIN);
      if (!d) throw new Error("domain gone");
      if (i === 2) d.state = { state: "shutoff", reason: "destroyed" };
      w.clock.advance(120_000);
      await w.reconciler.reconcile(KEY, signal);
      expect(w.sim.runningCopies(DOMAIN)).toEqual([]);
      expect(w.get().status?.phase).toBe("CrashLoop");
    }
    const held = w.get().status?.conditions?.find((c) => c.type === "Ready");
    expect(held).toMatchObject({ status: "False", reason: "CrashLoop" });
    expect(held?.message).toMatch(/virtwarden\.io\/restartedAt/);
    // The user acts: the annotation, set to now.
    const v = w.get();
    w.store.apply({
      ...v,
      metadata: { ...v.metadata, annotations: { "virtwarden.io/restartedAt": w.clock.now.toISOString() } },
    });
    await w.reconciler.reconcile(KEY, signal);
    expect(w.sim.runningCopies(DOMAIN)).toEqual(["h0"]);
    expect(w.get().status?.phase).toBe("Running");
    expect(w.get().status?.recentCrashes ?? []).toEqual([]);
  });
});

describe("VirtualMachine reconciler: what is terminal is decided by the error's type", () => {
  it("retries a provider error with backoff even when its message says 'resources'", async () => {
    let lying = false;
    const w = await world((p) => {
      const real = p.getDomainState.bind(p);
      p.getDomainState = async (name, s) => {
        if (lying)
          throw new ProviderError(
            "OperationFailed",
            "h0",
            "getDomainState",
            "cannot allocate resources: instanceType of the host CPU unavailable",
          );
        return real(name, s);
      };
      return p;
    });
    await runningVM(w, vm("app").build());
    lying = true;
    const err = await w.reconciler.reconcile(KEY, signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).not.toBeInstanceOf(TerminalError);
    expect(w.get().status?.phase).toBe("Running"); // not marked Failed/InvalidSpec

    // Through the controller: the key is retried with backoff, again and again.
    let calls = 0;
    const controller = new Controller({
      reconciler: {
        name: "virtualmachine",
        reconcile: (k, s) => {
          calls++;
          return w.reconciler.reconcile(k, s);
        },
      },
      workers: 1,
      rateLimiter: new ExponentialBackoffLimiter({ baseMs: 1, maxMs: 5, factor: 2, jitter: 0 }),
      logger: silentLogger,
    });
    controller.start();
    controller.enqueue(KEY);
    const deadline = Date.now() + 20_000;
    while (calls < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    await controller.stop({ graceMs: 1_000 });
    expect(calls).toBeGreaterThanOrEqual(4);

    // The host answers again: the VM is still there, still running, never given up on.
    lying = false;
    await w.reconciler.reconcile(KEY, signal);
    expect(w.get().status?.phase).toBe("Running");
  });

  const badSpecs: { title: string; spec: Partial<VirtualMachine["spec"]>; field: RegExp }[] = [
    {
      title: "a memory that is not a quantity",
      spec: { resources: { cpu: 1, memory: "4GB" } },
      field: /spec\.resources\.memory: "4GB" is not a quantity/,
    },
    {
      title: "a disk size that is not a quantity",
      spec: { disks: [{ name: "root", size: "lots" }] },
      field: /spec\.disks\[0\]\.size/,
    },
  ];
  for (const row of badSpecs)
    it(`stops retrying ${row.title}: TerminalError, recorded in status`, async () => {
      const w = await world();
      const v = vm("app").spec(row.spec).build();
      if (row.spec.instanceType) delete v.spec.resources;
      w.store.apply(v);
      const err = await w.reconciler.reconcile(KEY, signal).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TerminalError);
      expect((err as Error).message).toMatch(row.field);
      const st = w.get().status;
      expect(st?.phase).toBe("Failed");
      expect(st?.conditions?.find((c) => c.type === "Ready")?.message).toMatch(row.field);
      expect(w.sim.runningCopies(DOMAIN)).toEqual([]);
    });

  // A class may be applied after its VMs (kubectl apply -f dir/ in any order): waiting, not failed.
  it("an instanceType naming no class is no error: the VM waits, Pending, naming the class", async () => {
    const w = await world();
    const v = vm("app").spec({ instanceType: "huge" }).build();
    delete v.spec.resources;
    w.store.apply(v);
    await expect(w.reconciler.reconcile(KEY, signal)).resolves.toBeUndefined();
    const st = w.get().status;
    expect(st?.phase).toBe("Pending");
    const ready = st?.conditions?.find((c) => c.type === "Ready");
    expect(ready).toMatchObject({ status: "False", reason: "ClassNotFound" });
    expect(ready?.message).toContain('VirtualMachineClass "huge"');
    expect(w.sim.runningCopies(DOMAIN)).toEqual([]);
    expect(w.sim.hosts().flatMap((h) => [...h.domains.keys()])).toEqual([]);
  });
});
