/**
 * Scenario tests: the real controllers and reconcilers (the same Runtime `virtwarden run` uses)
 * against the simulator and an in-memory store. They assert outcomes on the hypervisors and in
 * status, never timings.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../src/api/types.js";
import type { Runtime } from "../../src/cli/runtime.js";
import { Simulator, simulatorFactory } from "../../src/providers/sim/index.js";
import { eventually } from "../support/eventually.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { simRuntime } from "../support/sim-runtime.js";

const GiB = 1024 ** 3;
let runtimes: Runtime[] = [];

afterEach(async () => {
  await Promise.all(runtimes.map((r) => r.stop(100)));
  runtimes = [];
});

function world(hosts = 3, opts: { latency?: "none" | "realistic" } = {}) {
  const sim = new Simulator({
    seed: 42,
    latency: opts.latency ?? "none",
    baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * GiB }],
  });
  const store = new MemoryStore();
  for (let i = 0; i < hosts; i++) {
    sim.addHost(`h${i}`, { cpus: 16, memoryBytes: 32 * GiB });
    store.apply(hostResource(`h${i}`));
  }
  return { sim, store };
}

async function startRuntime(sim: Simulator, store: MemoryStore, registry = new Registry()): Promise<Runtime> {
  const rt = await simRuntime(sim, store, { registry, inventoryIntervalMs: 500 });
  runtimes.push(rt);
  return rt;
}

const running = (sim: Simulator, domain: string) => sim.runningCopies(domain);
const allRunning = (store: MemoryStore) =>
  store
    .list("VirtualMachine")
    .every(
      (v) =>
        v.status?.phase === "Running" &&
        v.status.conditions?.find((c) => c.type === "Ready")?.status === "True",
    );

function webVM(i: number): VirtualMachine {
  return vm(`web-${i}`)
    .labels({ tier: "web" })
    .spec({
      resources: { cpu: 1, memory: "1Gi" },
      disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
    })
    .noFinalizer()
    .build();
}

describe("scenario: convergence", () => {
  it("brings 20 VMs to Running, each exactly once, spread over the hosts", async () => {
    const { sim, store } = world(3);
    for (let i = 0; i < 20; i++) store.apply(webVM(i));
    await startRuntime(sim, store);
    await eventually(() => allRunning(store), "all 20 Running and Ready");
    for (let i = 0; i < 20; i++) expect(running(sim, `default_web-${i}`)).toHaveLength(1);
    const perHost = sim.hosts().map((h) => [...h.domains.values()].length);
    expect(Math.max(...perHost) - Math.min(...perHost)).toBeLessThanOrEqual(1);
    const v = store.get("VirtualMachine", "default/web-0");
    expect(v?.metadata.finalizers).toContain("virtwarden.io/cleanup");
    expect(v?.status?.observedGeneration).toBe(1);
    // Disks are linked clones of the base image.
    const vol = sim.hosts()[0]?.pools.get("default")?.volumes.get("default_web-0-root.qcow2");
    expect(vol?.backingPath).toContain("debian-12.qcow2");
    expect(vol?.allocationBytes).toBeLessThan(GiB);
  });

  it("honours anti-affinity and reports unschedulable VMs with the reason", async () => {
    const { sim, store } = world(2);
    for (let i = 0; i < 3; i++) {
      store.apply(
        vm(`db-${i}`)
          .labels({ app: "db" })
          .spec({ placement: { antiAffinity: [{ selector: { matchLabels: { app: "db" } } }] } })
          .build(),
      );
    }
    await startRuntime(sim, store);
    await eventually(
      () => store.list("VirtualMachine").filter((v) => v.status?.phase === "Running").length === 2,
      "two placed",
    );
    await eventually(
      () => store.list("VirtualMachine").some((v) => v.status?.phase === "Pending"),
      "one pending",
    );
    const hostsUsed = new Set(
      store
        .list("VirtualMachine")
        .map((v) => v.status?.host)
        .filter(Boolean),
    );
    expect(hostsUsed.size).toBe(2);
    const pending = store.list("VirtualMachine").find((v) => v.status?.phase === "Pending");
    const scheduled = pending?.status?.conditions?.find((c) => c.type === "Scheduled");
    expect(scheduled).toMatchObject({ status: "False", reason: "Unschedulable" });
    expect(scheduled?.message).toContain("anti-affinity");
  });
});

describe("scenario: storage-aware placement", () => {
  it("keeps a VM whose base image no host holds Pending with the reason, and places it once it exists", async () => {
    const { sim, store } = world(2);
    store.apply(
      vm("odd")
        .spec({
          resources: { cpu: 1, memory: "1Gi" },
          disks: [{ name: "root", size: "4Gi", source: { image: { name: "rocky-9.qcow2" } } }],
        })
        .noFinalizer()
        .build(),
    );
    await startRuntime(sim, store);
    await eventually(
      () =>
        store.get("VirtualMachine", "default/odd")?.status?.conditions?.find((c) => c.type === "Scheduled")
          ?.message === "0/2 hosts fit (2 hosts: base image not in its pools)",
      "pending for the image",
    );
    expect(store.get("VirtualMachine", "default/odd")?.status?.phase).toBe("Pending");
    // The image is uploaded: at the next inventory the hosts hold it and the VM is placed.
    sim.preloadImage({ pool: "default", name: "rocky-9.qcow2", capacityBytes: 2 * GiB });
    await eventually(() => store.get("VirtualMachine", "default/odd")?.status?.phase === "Running", "placed");
  });
});

describe("scenario: failures and drift", () => {
  it("restarts a crashed VM and records the recovery", async () => {
    const { sim, store } = world(2);
    store.apply(vm("app").build());
    const registry = new Registry();
    await startRuntime(sim, store, registry);
    await eventually(() => allRunning(store), "running");
    const host = store.get("VirtualMachine", "default/app")?.status?.host as string;
    sim.crashDomain(host, "default_app");
    await eventually(
      () => store.get("VirtualMachine", "default/app")?.status?.restartCount === 1,
      "restart counted",
    );
    await eventually(() => running(sim, "default_app").length === 1, "running again");
    const st = store.get("VirtualMachine", "default/app")?.status;
    expect(st?.lastRecovery).toMatchObject({ reason: "Crash", result: "Succeeded" });
    expect(st?.lastFailure?.reason).toBe("Crashed");
    expect(
      store.listEvents({ kind: "VirtualMachine", namespace: "default", name: "app" }).map((e) => e.reason),
    ).toContain("Restarted");
    const m = await registry.getSingleMetric("virtwarden_recoveries_total")?.get();
    expect(m?.values.find((v) => v.labels.cause === "Crash")?.value).toBe(1);
  });

  it("corrects a VM destroyed behind our back and reports the drift", async () => {
    const { sim, store } = world(2);
    store.apply(vm("app").build());
    await startRuntime(sim, store);
    await eventually(() => allRunning(store), "running");
    const host = store.get("VirtualMachine", "default/app")?.status?.host as string;
    const provider = simulatorFactory(sim)(`sim://${host}`);
    await provider.connect();
    await provider.destroyDomain("default_app");
    await eventually(
      () => store.get("VirtualMachine", "default/app")?.status?.lastDrift !== undefined,
      "drift recorded",
    );
    await eventually(() => running(sim, "default_app").length === 1, "running again");
    expect(store.get("VirtualMachine", "default/app")?.status?.lastDrift).toMatchObject({
      fields: ["state"],
    });
    expect(store.listEvents().map((e) => e.reason)).toContain("DriftCorrected");
  });

  it("corrects a domain reconfigured and one undefined behind our back", async () => {
    const { sim, store } = world(1);
    store.apply(vm("app").build());
    await startRuntime(sim, store);
    await eventually(() => allRunning(store), "running");
    const provider = simulatorFactory(sim)("sim://h0");
    await provider.connect();
    const spec = await provider.getDomainSpec("default_app");
    if (!spec) throw new Error("domain missing");
    await provider.defineDomain({ ...spec, vcpus: 8, memoryBytes: 3 * GiB });
    await eventually(
      async () => (await provider.getDomainSpec("default_app"))?.vcpus === 1,
      "configuration restored",
    );
    expect(store.get("VirtualMachine", "default/app")?.status?.lastDrift?.fields).toEqual([
      "domain.vcpus",
      "domain.memory",
    ]);
    await provider.destroyDomain("default_app");
    await provider.undefineDomain("default_app");
    await eventually(() => running(sim, "default_app").length === 1, "recreated and running");
    expect(store.get("VirtualMachine", "default/app")?.status?.lastDrift?.fields).toEqual(["domain"]);
  });

  it("makes a cpu/memory change within maxCpu/maxMemory live: the domain is resized, never restarted", async () => {
    const { sim, store } = world(1);
    const sized = { cpu: 1, memory: "512Mi", maxCpu: 4, maxMemory: "2Gi" };
    store.apply(vm("app").spec({ resources: sized }).build());
    await startRuntime(sim, store);
    await eventually(() => allRunning(store), "running");
    const domain = () => sim.hosts()[0]?.domains.get("default_app");
    expect(domain()?.starts).toBe(1);
    store.apply(
      vm("app")
        .spec({ resources: { ...sized, cpu: 2, memory: "1Gi" } })
        .build(),
    );
    await eventually(
      () => store.get("VirtualMachine", "default/app")?.status?.observedGeneration === 2,
      "generation 2 observed",
    );
    // The simulator's own record: resized in place, started once in all.
    expect(domain()?.spec).toMatchObject({
      vcpus: 2,
      memoryBytes: GiB,
      maxVcpus: 4,
      maxMemoryBytes: 2 * GiB,
    });
    expect(domain()?.starts).toBe(1);
    expect(running(sim, "default_app")).toHaveLength(1);
    const reasons = store
      .listEvents({ kind: "VirtualMachine", namespace: "default", name: "app" })
      .map((e) => e.reason);
    expect(reasons).toContain("UpdatedLive");
    expect(reasons).not.toContain("Restarted");
  });

  it("a change that needs a restart waits (RestartRequired); the restart annotation applies it, once", async () => {
    const { sim, store } = world(1);
    store.apply(vm("app").build());
    await startRuntime(sim, store);
    await eventually(() => allRunning(store), "running");
    const domain = () => sim.hosts()[0]?.domains.get("default_app");
    const condition = () =>
      store
        .get("VirtualMachine", "default/app")
        ?.status?.conditions?.find((c) => c.type === "RestartRequired");
    store.apply(
      vm("app")
        .spec({ resources: { cpu: 2, memory: "1Gi" } })
        .build(),
    );
    await eventually(() => condition()?.status === "True", "RestartRequired");
    expect(condition()?.message).toMatch(/spec\.resources\.cpu.*spec\.resources\.memory/);
    expect(domain()?.starts).toBe(1);
    expect(domain()?.spec.vcpus).toBe(1);
    // The user asks. Only an annotation changes: no new generation, so this also proves the watch
    // wakes the VM on it (the bound is well inside the 60 s resync that would otherwise do it).
    const asked = new Date().toISOString();
    const v = store.get("VirtualMachine", "default/app") as VirtualMachine;
    store.apply({ ...v, metadata: { ...v.metadata, annotations: { "virtwarden.io/restartedAt": asked } } });
    await eventually(() => domain()?.starts === 2, "restarted", 20_000);
    await eventually(() => condition() === undefined, "RestartRequired cleared");
    expect(domain()?.spec).toMatchObject({ vcpus: 2, memoryBytes: GiB });
    expect(store.get("VirtualMachine", "default/app")?.status?.restartedAt).toBeDefined();
    expect(running(sim, "default_app")).toHaveLength(1);
  });

  it("deletes the domain and its disks, then releases the finalizer", async () => {
    const { sim, store } = world(1);
    store.apply(webVM(0));
    await startRuntime(sim, store);
    await eventually(() => allRunning(store), "running");
    store.remove("VirtualMachine", "default/web-0");
    await eventually(() => store.get("VirtualMachine", "default/web-0") === undefined, "object gone");
    expect(sim.hosts()[0]?.domains.has("default_web-0")).toBe(false);
    expect(sim.hosts()[0]?.pools.get("default")?.volumes.has("default_web-0-root.qcow2")).toBe(false);
    expect(sim.hosts()[0]?.pools.get("default")?.volumes.has("debian-12.qcow2")).toBe(true);
  });
});

describe("scenario: disk deletion policy", () => {
  it("keeps the disks whose policy is Retain, says which, and a VM re-created under the name uses them", async () => {
    const { sim, store } = world(1);
    sim.preloadImage({ pool: "default", name: "db-data.qcow2", capacityBytes: GiB });
    const db = vm("db")
      .spec({
        disks: [
          { name: "root", source: { image: { name: "debian-12.qcow2" } }, deletionPolicy: "Retain" },
          { name: "scratch", size: "1Gi" }, // made by the VM: Delete unless told otherwise
          { name: "data", source: { volume: { name: "db-data.qcow2" } } }, // not made by it: Retain
        ],
      })
      .noFinalizer()
      .build();
    store.apply(db);
    await startRuntime(sim, store);
    await eventually(() => allRunning(store), "running");
    const volumes = () => sim.hosts()[0]?.pools.get("default")?.volumes;
    // The guest writes to its root disk: a mark the simulator keeps with the volume.
    const root = volumes()?.get("default_db-root.qcow2");
    if (!root) throw new Error("root disk not provisioned");
    root.allocationBytes = 777 * 1024 ** 2;

    store.remove("VirtualMachine", "default/db");
    await eventually(() => store.get("VirtualMachine", "default/db") === undefined, "object gone");
    expect(sim.hosts()[0]?.domains.has("default_db")).toBe(false);
    expect(volumes()?.has("default_db-scratch.qcow2")).toBe(false);
    expect(volumes()?.get("default_db-root.qcow2")?.allocationBytes).toBe(777 * 1024 ** 2);
    expect(volumes()?.has("db-data.qcow2")).toBe(true);
    expect(volumes()?.has("debian-12.qcow2")).toBe(true);
    const retained = store
      .listEvents({ kind: "VirtualMachine", namespace: "default", name: "db" })
      .find((e) => e.reason === "DisksRetained");
    expect(retained?.note).toBe(
      "kept default/default_db-root.qcow2, default/db-data.qcow2 on h0 (deletionPolicy: Retain)",
    );

    // Declared again (a manifest put back): it boots from the retained disk, not a fresh clone.
    store.apply(db);
    await eventually(() => allRunning(store), "running again");
    expect(running(sim, "default_db")).toEqual(["h0"]);
    expect(volumes()?.get("default_db-root.qcow2")?.allocationBytes).toBe(777 * 1024 ** 2);
    expect(
      sim
        .hosts()[0]
        ?.domains.get("default_db")
        ?.spec.disks.map((d) => d.volume),
    ).toEqual(["default_db-root.qcow2", "default_db-scratch.qcow2", "db-data.qcow2"]);
  });

  it("deletes an existing volume only when its policy says Delete", async () => {
    const { sim, store } = world(1);
    sim.preloadImage({ pool: "default", name: "tmp-data.qcow2", capacityBytes: GiB });
    store.apply(
      vm("job")
        .spec({
          disks: [{ name: "data", source: { volume: { name: "tmp-data.qcow2" } }, deletionPolicy: "Delete" }],
        })
        .noFinalizer()
        .build(),
    );
    await startRuntime(sim, store);
    await eventually(() => allRunning(store), "running");
    store.remove("VirtualMachine", "default/job");
    await eventually(() => store.get("VirtualMachine", "default/job") === undefined, "object gone");
    expect(sim.hosts()[0]?.pools.get("default")?.volumes.has("tmp-data.qcow2")).toBe(false);
    expect(
      store.listEvents({ kind: "VirtualMachine", namespace: "default", name: "job" }).map((e) => e.reason),
    ).not.toContain("DisksRetained");
  });
});

describe("scenario: controller restart", () => {
  it("adopts its domains after a restart: no duplicate, no orphan", async () => {
    const { sim, store } = world(3);
    for (let i = 0; i < 10; i++) store.apply(vm(`vm-${i}`).build());
    const first = await startRuntime(sim, store);
    await eventually(() => allRunning(store), "all running");
    await first.stop(100);
    runtimes = runtimes.filter((r) => r !== first);
    // The controller died before recording one placement: its status is lost.
    const lost = store.get("VirtualMachine", "default/vm-3") as VirtualMachine;
    await store.updateStatus(lost, {});
    // And one VM was deleted while no controller ran (finalizer removed by hand): an orphan.
    const gone = store.get("VirtualMachine", "default/vm-9") as VirtualMachine;
    await store.removeFinalizer(gone, "virtwarden.io/cleanup");
    store.remove("VirtualMachine", "default/vm-9");
    await startRuntime(sim, store);
    await eventually(
      () => allRunning(store) && running(sim, "default_vm-9").length === 0,
      "adopted and orphan removed",
    );
    for (let i = 0; i < 9; i++) expect(running(sim, `default_vm-${i}`)).toHaveLength(1);
    const total = sim.hosts().reduce((n, h) => n + h.domains.size, 0);
    expect(total).toBe(9);
    expect(store.listEvents().map((e) => e.reason)).toEqual(
      expect.arrayContaining(["Adopted", "OrphanRemoved"]),
    );
  });

  it("destroys a stale running copy found on a host when it comes back from a partition, and keeps the VM's own copy untouched", async () => {
    const { sim, store } = world(2);
    store.apply(vm("app").build());
    await startRuntime(sim, store);
    await eventually(() => allRunning(store), "running");
    const host = store.get("VirtualMachine", "default/app")?.status?.host as string;
    const other = host === "h0" ? "h1" : "h0";
    const own = sim.lookupHost(host)?.domains.get("default_app");
    if (!own) throw new Error("no domain on the VM's host");
    const ownSince = own.runningSince;

    // The other host goes away (no fence agent: it is never fenced, only unreachable)...
    sim.partitionHost(other);
    await eventually(() => store.get("Host", other)?.status?.phase === "Unreachable", `${other} Unreachable`);
    // ...and while nobody can see it, a copy of the VM runs there (started by hand, or a copy a
    // lost migration left running). No event reaches the controller.
    const away = sim.lookupHost(other);
    if (!away) throw new Error("no such host");
    away.domains.set("default_app", {
      spec: structuredClone(own.spec),
      uuid: own.uuid,
      state: { state: "running", reason: "booted" },
      persistent: true,
      snapshots: [],
      runningSince: Date.now(),
    });
    expect(running(sim, "default_app").sort()).toEqual([host, other].sort());

    // It comes back: the copy on it is stale (the VM is assigned elsewhere) and is destroyed.
    sim.healPartition(other);
    await eventually(() => running(sim, "default_app").length === 1, "stale copy destroyed", 20_000);
    expect(running(sim, "default_app")).toEqual([host]);
    expect(store.get("VirtualMachine", "default/app")?.status?.host).toBe(host);
    // Back in the controller's view too: the host that was away is Ready again.
    await eventually(() => store.get("Host", other)?.status?.phase === "Ready", `${other} Ready again`);
    // The VM's own copy was never stopped or restarted, and the removal is said.
    expect(sim.lookupHost(host)?.domains.get("default_app")?.runningSince).toBe(ownSince);
    // (The Host reconciler's inventory check finds it first, as the host comes back.)
    expect(
      store
        .listEvents()
        .filter((e) => e.reason === "StaleCopyDestroyed" || e.reason === "StaleCopyRemoved")
        .map((e) => `${e.regarding.kind} ${e.regarding.name}: ${e.note}`),
    ).toEqual([
      `Host ${other}: domain default_app runs on ${host} now (recovered while this host was gone): the stale copy here was destroyed`,
    ]);
  });
});
