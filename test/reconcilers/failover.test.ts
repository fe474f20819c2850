/**
 * High availability on the simulator: the real Runtime, Host and VirtualMachine reconcilers and
 * fence agents. Host power-off -> fence -> recovery in priority order; a failed fence starts
 * nothing elsewhere; VMs that do not fit wait and are placed when capacity returns; a partitioned
 * host that heals gets its stale copies destroyed before it is Ready; many hosts lost at once hold
 * fencing. Throughout, an invariant watcher checks that no VM ever runs twice.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { FENCE_CONFIRMED_ANNOTATION } from "../../src/api/annotations.js";
import type { Host, VirtualMachine } from "../../src/api/types.js";
import type { Runtime } from "../../src/cli/runtime.js";
import { Simulator } from "../../src/providers/sim/index.js";
import { eventually } from "../support/eventually.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { simRuntime } from "../support/sim-runtime.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Fencing = NonNullable<Host["spec"]["fencing"]>;

function world(hosts: number, fencing: Fencing | undefined, hostMemGiB = 32) {
  const sim = new Simulator({
    seed: 7,
    latency: "none",
    baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * GiB }],
  });
  const store = new MemoryStore();
  for (let i = 0; i < hosts; i++) addHost(sim, store, `h${i}`, fencing, hostMemGiB);
  return { sim, store };
}

function addHost(
  sim: Simulator,
  store: MemoryStore,
  name: string,
  fencing: Fencing | undefined,
  memGiB = 32,
) {
  sim.addHost(name, { cpus: 16, memoryBytes: memGiB * GiB });
  const h = hostResource(name);
  if (fencing) h.spec.fencing = fencing;
  store.apply(h);
}

async function start(
  sim: Simulator,
  store: MemoryStore,
  registry = new Registry(),
  timing = { heartbeatIntervalMs: 100, inventoryIntervalMs: 500 },
): Promise<Runtime> {
  const rt = await simRuntime(sim, store, {
    fence: true,
    registry,
    ...timing,
    cleanups,
  });
  return rt;
}

/** Samples every domain's running copies every few ms; any second copy is a violation. */
function splitBrainWatcher(sim: Simulator) {
  const violations: string[] = [];
  const timer = setInterval(() => {
    const names = new Set(sim.hosts().flatMap((h) => [...h.domains.keys()]));
    for (const d of names) {
      const copies = sim.runningCopies(d);
      if (copies.length > 1) violations.push(`${d} on ${copies.join(",")}`);
    }
  }, 2);
  cleanups.push(() => clearInterval(timer));
  return violations;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function appVM(
  name: string,
  opts: { priority?: number; memory?: string; labels?: Record<string, string> } = {},
) {
  return vm(name)
    .labels(opts.labels ?? { app: "demo" })
    .spec({
      resources: { cpu: 1, memory: opts.memory ?? "1Gi" },
      disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
      ...(opts.priority !== undefined ? { availability: { priority: opts.priority } } : {}),
    })
    .build();
}

const vmsOn = (store: MemoryStore, host: string) =>
  store.list("VirtualMachine").filter((v) => v.status?.host === host);
const allRunning = (store: MemoryStore) =>
  store.list("VirtualMachine").every((v) => v.status?.phase === "Running");
const cond = (
  o:
    | { status?: { conditions?: { type: string; status: string; reason: string; message?: string }[] } }
    | undefined,
  t: string,
) => o?.status?.conditions?.find((c) => c.type === t);

/** Put every VM on h0 first (the only host), then add the others: a known victim. */
async function victimWith(
  vms: VirtualMachine[],
  hosts: number,
  fencing: Fencing | undefined,
  opts: { otherHostMemGiB?: number } = {},
) {
  const { sim, store } = world(1, fencing);
  for (const v of vms) store.apply(v);
  const rt = await start(sim, store);
  await eventually(() => allRunning(store), "all running on h0");
  for (let i = 1; i < hosts; i++) addHost(sim, store, `h${i}`, fencing, opts.otherHostMemGiB);
  await eventually(() => store.list("Host").every((h) => h.status?.phase === "Ready"), "every host Ready");
  return { sim, store, rt };
}

describe("host failure on the simulator", () => {
  it("fences a powered-off host and recovers its VMs elsewhere, highest priority first, never twice", async () => {
    const vms = [
      ...Array.from({ length: 8 }, (_, i) => appVM(`low-${i}`, { priority: 10 })),
      ...Array.from({ length: 4 }, (_, i) => appVM(`high-${i}`, { priority: 1000 })),
    ];
    const { sim, store } = await victimWith(vms, 3, { agent: "sim" });
    const violations = splitBrainWatcher(sim);
    expect(vmsOn(store, "h0")).toHaveLength(12);

    sim.crashHost("h0");
    await eventually(() => store.get("Host", "h0")?.status?.phase === "Fenced", "h0 Fenced");
    await eventually(() => allRunning(store) && vmsOn(store, "h0").length === 0, "recovered elsewhere");

    const h0 = store.get("Host", "h0");
    expect(cond(h0, "Fenced")).toMatchObject({ status: "True", reason: "Fenced" });
    expect(h0?.status?.fencedAt).toBeDefined();
    expect(sim.powerStatus("h0")).toBe("off");
    for (const v of store.list("VirtualMachine")) {
      const r = v.status?.lastRecovery;
      expect(r).toMatchObject({ reason: "HostFailure", fromHost: "h0", result: "Succeeded" });
      expect(r?.toHost).toBe(v.status?.host);
      // Timed from the failure (the last heartbeat), so it includes detection and fencing.
      expect(new Date(r?.failedAt as string).getTime()).toBeLessThanOrEqual(
        new Date(r?.detectedAt as string).getTime(),
      );
      expect(r?.seconds).toBeGreaterThan(0);
      expect(sim.runningCopies(`default_${v.metadata.name}`)).toEqual([v.status?.host]);
    }
    // Priority order: every high-priority VM finished before any low-priority one.
    const finished = (prefix: string) =>
      store
        .list("VirtualMachine")
        .filter((v) => v.metadata.name.startsWith(prefix))
        .map((v) => new Date(v.status?.lastRecovery?.finishedAt as string).getTime());
    expect(Math.max(...finished("high-"))).toBeLessThanOrEqual(Math.min(...finished("low-")));
    const reasons = store.listEvents().map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(["HostFenced", "HostFailed", "Recovered"]));
    expect(violations).toEqual([]);
  });

  it("places a failed host's VMs biggest first (FFD), so small ones do not strand a big one", async () => {
    // 12 GiB of VMs, the small ones first in every other order; three survivors of 4 GiB each.
    // Small-first would put the two 2 GiB VMs on two hosts and leave a 4 GiB VM nowhere to go.
    const vms = [
      appVM("a-small-0", { memory: "2Gi" }),
      appVM("a-small-1", { memory: "2Gi" }),
      appVM("b-big-0", { memory: "4Gi" }),
      appVM("b-big-1", { memory: "4Gi" }),
    ];
    const { sim, store } = await victimWith(vms, 4, { agent: "sim" }, { otherHostMemGiB: 4 });
    const violations = splitBrainWatcher(sim);
    sim.crashHost("h0");
    await eventually(() => store.get("Host", "h0")?.status?.phase === "Fenced", "h0 Fenced");
    await eventually(() => allRunning(store) && vmsOn(store, "h0").length === 0, "all four recovered");
    // Ground truth: each big VM alone on a host, both small ones on the third.
    const where = (n: string) => sim.runningCopies(`default_${n}`);
    const big = [...where("b-big-0"), ...where("b-big-1")];
    const smalls = [...where("a-small-0"), ...where("a-small-1")];
    expect(new Set(big).size).toBe(2);
    expect(new Set(smalls).size).toBe(1);
    expect(big).not.toContain(smalls[0]);
    expect(violations).toEqual([]);
  });

  it("starts nothing elsewhere when fencing fails, and says so", async () => {
    const vms = Array.from({ length: 3 }, (_, i) => appVM(`app-${i}`));
    const { sim, store } = await victimWith(vms, 3, {
      agent: "exec",
      command: ["/bin/sh", "-c", "echo BMC unreachable; exit 3"],
      timeoutSeconds: 5,
    });
    const violations = splitBrainWatcher(sim);
    // A partition: the host still runs its VMs, and the agent cannot reach its power switch.
    sim.partitionHost("h0");
    await eventually(() => store.get("Host", "h0")?.status?.phase === "Fencing", "h0 Fencing");
    await sleep(1_000);
    const h0 = store.get("Host", "h0");
    expect(cond(h0, "Fenced")).toMatchObject({ status: "False", reason: "FenceFailed" });
    expect(h0?.status?.conditions?.find((c) => c.type === "Fenced")?.message).toMatch(
      /exited with 3: BMC unreachable/,
    );
    for (const v of store.list("VirtualMachine")) {
      expect(v.status?.host).toBe("h0");
      expect(cond(v, "Ready")?.status).toBe("False");
    }
    // Nothing changes until someone acts: the VMs say so (Stalled, what Flux and Argo CD read).
    await eventually(
      () => store.list("VirtualMachine").every((v) => cond(v, "Stalled")?.status === "True"),
      "VMs Stalled",
    );
    for (const v of store.list("VirtualMachine")) {
      expect(cond(v, "Stalled")).toMatchObject({ reason: "HostFenceFailed" });
      expect(cond(v, "Stalled")?.message).toMatch(
        /host h0 does not answer and cannot be fenced \(FenceFailed: .*BMC unreachable/,
      );
      expect(cond(v, "Reconciling")?.status).toBe("False");
    }
    for (const h of ["h1", "h2"]) expect(sim.hosts().find((x) => x.name === h)?.domains.size).toBe(0);
    expect(violations).toEqual([]);

    // The operator checks the host is really off and confirms: then, and only then, recovery.
    sim.crashHost("h0");
    const host = store.get("Host", "h0") as Host;
    store.apply({
      ...host,
      metadata: { ...host.metadata, annotations: { [FENCE_CONFIRMED_ANNOTATION]: "true" } },
    });
    await eventually(
      () => allRunning(store) && vmsOn(store, "h0").length === 0,
      "recovered after confirmation",
    );
    expect(cond(store.get("Host", "h0"), "Fenced")).toMatchObject({
      status: "True",
      reason: "FenceConfirmed",
    });
    for (const v of store.list("VirtualMachine")) expect(cond(v, "Stalled")?.status).toBe("False");
    expect(violations).toEqual([]);
  });

  it("waits for capacity with a clear condition and places the VMs when a host returns", async () => {
    // 6 x 4 GiB on h0; h1 has room for 2 of them.
    const vms = Array.from({ length: 6 }, (_, i) => appVM(`big-${i}`, { memory: "4Gi", priority: i }));
    const { sim, store, rt } = await victimWith(vms, 2, { agent: "sim" }, { otherHostMemGiB: 10 });
    // Admission-control style warning before anything fails: losing h0 would strand 4 VMs.
    const assessment = rt.assessFailover();
    expect(assessment).toMatchObject({ sufficient: false, worstHost: "h0", stranded: 4 });
    await eventually(
      () => cond(store.get("Host", "h0"), "FailoverCapacity")?.reason === "Insufficient",
      "h0 FailoverCapacity Insufficient",
    );
    expect(cond(store.get("Host", "h1"), "FailoverCapacity")?.status).toBe("True");
    const violations = splitBrainWatcher(sim);
    sim.crashHost("h0");
    await eventually(
      () => store.list("VirtualMachine").filter((v) => v.status?.phase === "Running").length === 2,
      "two recovered",
    );
    await eventually(
      () =>
        store.list("VirtualMachine").filter((v) => cond(v, "Scheduled")?.reason === "WaitingForCapacity")
          .length === 4,
      "four waiting for capacity",
    );
    // The two that fit are the two of highest priority.
    const recovered = store
      .list("VirtualMachine")
      .filter((v) => v.status?.phase === "Running")
      .map((v) => v.metadata.name)
      .sort();
    expect(recovered).toEqual(["big-4", "big-5"]);
    const waiting = store.get("VirtualMachine", "default/big-0");
    expect(waiting?.status?.phase).toBe("Recovering");
    expect(waiting?.status?.lastRecovery?.result).toBe("InProgress");
    expect(cond(waiting, "Scheduled")?.status).toBe("False");

    // A new host joins: the waiting VMs are placed on it.
    addHost(sim, store, "h2", { agent: "sim" });
    await eventually(() => allRunning(store), "all placed once capacity returned");
    for (const v of store.list("VirtualMachine")) {
      expect(v.status?.lastRecovery).toMatchObject({ reason: "HostFailure", result: "Succeeded" });
      expect(v.status?.host).not.toBe("h0");
    }
    expect(violations).toEqual([]);
  });

  it("destroys the stale copies of a healed host before it is Ready again, never two running", async () => {
    // unsafeSkipFencing: recovery without a fence, so the partitioned host keeps running copies.
    // The watcher below therefore only checks the time after the heal is handled.
    const vms = Array.from({ length: 4 }, (_, i) => appVM(`app-${i}`));
    const { sim, store } = await victimWith(vms, 3, { agent: "sim", unsafeSkipFencing: true });
    sim.partitionHost("h0");
    await eventually(() => allRunning(store) && vmsOn(store, "h0").length === 0, "recovered");
    expect(cond(store.get("Host", "h0"), "Fenced")?.reason).toBe("FencingSkipped");
    // During the partition h0 still runs its copies: exactly what unsafeSkipFencing risks.
    expect(sim.hosts().find((h) => h.name === "h0")?.domains.size).toBe(4);

    sim.healPartition("h0");
    await eventually(() => store.get("Host", "h0")?.status?.phase === "Ready", "h0 Ready again");
    // Ready only after its stale copies are gone.
    expect(sim.hosts().find((h) => h.name === "h0")?.domains.size).toBe(0);
    for (const v of store.list("VirtualMachine"))
      expect(sim.runningCopies(`default_${v.metadata.name}`)).toEqual([v.status?.host]);
    // One event series on the Host, counted per stale copy.
    expect(store.listEvents().find((e) => e.reason === "StaleCopyDestroyed")?.count).toBe(4);
  });

  it("holds fencing when most hosts are lost at once", async () => {
    const vms = Array.from({ length: 3 }, (_, i) => appVM(`app-${i}`));
    const { sim, store } = await victimWith(vms, 3, { agent: "sim" });
    const violations = splitBrainWatcher(sim);
    sim.partitionHost("h0");
    sim.partitionHost("h1");
    await eventually(
      () => cond(store.get("Host", "h0"), "Fenced")?.reason === "FencingHeld",
      "fencing held on h0",
    );
    await sleep(1_000);
    expect(store.get("Host", "h0")?.status?.phase).toBe("Unreachable");
    expect(sim.powerStatus("h0")).toBe("on");
    expect(sim.powerStatus("h1")).toBe("on");
    for (const v of store.list("VirtualMachine")) expect(v.status?.host).toBe("h0");
    expect(violations).toEqual([]);
  });

  it("leaves a VM with onHostFailure: Nothing down, and reports it", async () => {
    const keep = vm("keep")
      .spec({ resources: { cpu: 1, memory: "1Gi" }, availability: { onHostFailure: "Nothing" } })
      .build();
    const { sim, store } = await victimWith([keep], 2, { agent: "sim" });
    sim.crashHost("h0");
    await eventually(() => store.get("VirtualMachine", "default/keep")?.status?.phase === "Failed", "Failed");
    const v = store.get("VirtualMachine", "default/keep");
    expect(v?.status?.host).toBe("h0");
    expect(v?.status?.lastFailure?.reason).toBe("HostFailure");
    expect(sim.runningCopies("default_keep")).toEqual([]);
  });

  it("a healed host holding the only running copy of a VM whose host was fenced keeps it: the VM follows it there", async () => {
    // copies.ts rule 3: the copy is the VM (its assigned host is confirmed off), not a stale one.
    const keep = appVM("keep");
    keep.spec.availability = { onHostFailure: "Nothing" };
    const { sim, store } = world(1, { agent: "sim" });
    store.apply(keep);
    await start(sim, store);
    await eventually(() => allRunning(store), "running on h0");
    addHost(sim, store, "h1", undefined); // no fence agent: partitioned, it stays Unreachable
    await eventually(() => store.get("Host", "h1")?.status?.phase === "Ready", "h1 Ready");
    sim.crashHost("h0");
    await eventually(() => store.get("VirtualMachine", "default/keep")?.status?.phase === "Failed", "Failed");
    sim.partitionHost("h1");
    await eventually(() => store.get("Host", "h1")?.status?.phase === "Unreachable", "h1 Unreachable");
    // While nobody can see h1, the VM runs there (started by hand from the same disks).
    const own = sim.lookupHost("h0")?.domains.get("default_keep");
    const away = sim.lookupHost("h1");
    if (!own || !away) throw new Error("no domain on h0, or no h1");
    away.domains.set("default_keep", {
      spec: structuredClone(own.spec),
      uuid: own.uuid,
      state: { state: "running", reason: "booted" },
      persistent: true,
      snapshots: [],
      runningSince: Date.now(),
    });
    const violations = splitBrainWatcher(sim);
    sim.healPartition("h1");
    await eventually(
      () => store.get("VirtualMachine", "default/keep")?.status?.host === "h1",
      "the VM follows its copy to h1",
    );
    await eventually(
      () => store.get("VirtualMachine", "default/keep")?.status?.phase === "Running",
      "Running",
    );
    expect(sim.runningCopies("default_keep")).toEqual(["h1"]);
    // Followed, it is still a recovery from h0's failure, recorded as finished.
    await eventually(
      () => store.get("VirtualMachine", "default/keep")?.status?.lastRecovery?.result === "Succeeded",
      "the recovery recorded",
    );
    expect(store.get("VirtualMachine", "default/keep")?.status?.lastRecovery).toMatchObject({
      reason: "HostFailure",
      fromHost: "h0",
      toHost: "h1",
    });
    expect(store.listEvents().map((e) => e.reason)).not.toContain("StaleCopyDestroyed");
    expect(violations).toEqual([]);
  });

  it("restarts the guests of a host whose power cycle fell between two heartbeats", async () => {
    // A reset shorter than a beat (chaos sim seed 143): no beat fails, but the host rebooted,
    // its guests are shut off and the events telling so were never sent. The connection to the
    // daemon that died is gone; the next beat reconnects, lists the host and wakes its VMs.
    const { sim, store } = world(1, { agent: "sim" });
    store.apply(appVM("a"));
    await start(sim, store, new Registry(), { heartbeatIntervalMs: 300, inventoryIntervalMs: 600_000 });
    await eventually(() => allRunning(store), "running on h0");
    expect(sim.runningCopies("default_a")).toEqual(["h0"]);

    sim.crashHost("h0");
    sim.restoreHost("h0");
    expect(sim.runningCopies("default_a")).toEqual([]);
    await eventually(() => sim.runningCopies("default_a").length === 1, "a running again");
    expect(sim.runningCopies("default_a")).toEqual(["h0"]);
    await eventually(
      () => store.get("VirtualMachine", "default/a")?.status?.phase === "Running",
      "status Running",
    );
  });
});
