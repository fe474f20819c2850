/**
 * In-use protection for Hosts (issue 17 point 6). A Host deleted while VMs run on it used to drop
 * its connection at once; its VMs then read "host removed" and were recreated elsewhere while the
 * originals kept running on the host nobody watched any more: two copies. Now it stays (finalizer),
 * still managed and taking no new VMs, with an InUse condition naming its users, until none is
 * left. The simulator's own domain tables are the oracle for what runs where, sampled every few ms.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Host, VirtualMachine } from "../../../src/api/types.js";
import { NO_LATENCY, Simulator } from "../../../src/providers/sim/index.js";
import { FINALIZER } from "../../../src/reconcilers/context.js";
import { eventually } from "../../support/eventually.js";
import { hostResource, vm } from "../../support/fixtures.js";
import { MemoryStore } from "../../support/memory-store.js";
import { simRuntime } from "../../support/sim-runtime.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const cond = (h: Host | undefined, t: string) => h?.status?.conditions?.find((c) => c.type === t);

function app(name: string): VirtualMachine {
  return vm(name)
    .spec({
      resources: { cpu: 1, memory: "1Gi" },
      disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
    })
    .build();
}

/** db and web running on h0 (the only host then), h1 joined and Ready, copies sampled. */
async function bed() {
  const sim = new Simulator({
    seed: 5,
    latency: { ...NO_LATENCY, migrateMs: 100, guestShutdownMs: 50 },
    baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * GiB }],
  });
  const store = new MemoryStore();
  const addHost = (name: string) => {
    sim.addHost(name, { cpus: 16, memoryBytes: 32 * GiB });
    const h = hostResource(name);
    h.spec.fencing = { agent: "sim" };
    store.apply(h);
  };
  addHost("h0");
  for (const name of ["db", "web"]) store.apply(app(name));
  await simRuntime(sim, store, {
    fence: true,
    inventoryIntervalMs: 300,
    cleanups,
  });
  const runningOn = (name: string) => sim.runningCopies(`default_${name}`);
  await eventually(
    () => runningOn("db").join() === "h0" && runningOn("web").join() === "h0",
    "db and web running on h0",
  );
  addHost("h1");
  await eventually(() => store.get("Host", "h1")?.status?.phase === "Ready", "h1 Ready");
  const violations: string[] = [];
  const timer = setInterval(() => {
    for (const name of ["db", "web"]) {
      const copies = runningOn(name);
      if (copies.length > 1) violations.push(`${name} on ${copies.join(",")}`);
    }
  }, 2);
  cleanups.push(() => clearInterval(timer));
  return { sim, store, runningOn, violations };
}

describe("a Host in use", () => {
  it("carries the finalizer, and deleted with VMs on it waits, still watched, naming them", async () => {
    const { sim, store, runningOn, violations } = await bed();
    expect(store.get("Host", "h0")?.metadata.finalizers).toContain(FINALIZER);

    store.remove("Host", "h0");
    await eventually(() => cond(store.get("Host", "h0"), "InUse")?.status === "True", "InUse condition");
    const held = store.get("Host", "h0");
    expect(cond(held, "InUse")?.message).toMatch(
      /^deletion waits: still in use by 2 default\/db, default\/web; /,
    );
    expect(cond(held, "Schedulable")).toMatchObject({ status: "False", reason: "Deleting" });
    expect(store.listEvents().some((e) => e.reason === "InUse" && e.regarding.name === "h0")).toBe(true);

    // Many heartbeats later: nothing recreated on h1, the guests untouched on h0.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(store.get("Host", "h0")).toBeDefined();
    expect(runningOn("db")).toEqual(["h0"]);
    expect(runningOn("web")).toEqual(["h0"]);
    // Still watched: a guest crashed behind its back is restarted there, not elsewhere.
    sim.crashDomain("h0", "default_web");
    await eventually(
      () =>
        runningOn("web").join() === "h0" &&
        (store.get("VirtualMachine", "default/web")?.status?.restartCount ?? 0) > 0,
      "web restarted on h0",
    );
    // A new VM is not placed on it.
    store.apply(app("new"));
    await eventually(() => runningOn("new").length === 1, "new running");
    expect(runningOn("new")).toEqual(["h1"]);

    // Drained by maintenance: once no VM is left, it goes.
    const h = store.get("Host", "h0") as Host;
    store.apply({ ...h, spec: { ...h.spec, maintenance: true } });
    await eventually(() => store.get("Host", "h0") === undefined, "h0 deleted once drained", 20_000);
    expect(runningOn("db")).toEqual(["h1"]);
    expect(runningOn("web")).toEqual(["h1"]);
    expect(violations).toEqual([]);
  }, 60_000);

  it("deleted together with its VMs, stays until their domains are gone from it", async () => {
    const { sim, store, violations } = await bed();
    store.remove("Host", "h0");
    store.remove("VirtualMachine", "default/db");
    store.remove("VirtualMachine", "default/web");
    await eventually(
      () => store.get("Host", "h0") === undefined && store.list("VirtualMachine").length === 0,
      "host and VMs deleted",
    );
    // Their clean-up reached the host before it was let go: no domain left behind on it.
    expect([...(sim.lookupHost("h0")?.domains.keys() ?? [])]).toEqual([]);
    expect(violations).toEqual([]);
  }, 60_000);

  it("fenced after it died: its VMs are recreated elsewhere and then it goes", async () => {
    const { sim, store, runningOn, violations } = await bed();
    sim.powerOff("h0");
    store.remove("Host", "h0");
    await eventually(
      () =>
        store.get("Host", "h0") === undefined &&
        runningOn("db").join() === "h1" &&
        runningOn("web").join() === "h1",
      "VMs recovered on h1 and h0 deleted",
      30_000,
    );
    expect(violations).toEqual([]);
  }, 60_000);
});
