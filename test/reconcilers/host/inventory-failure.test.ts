/**
 * A host that answers its heartbeat but whose domains cannot be listed (one domain's state call
 * failing with a libvirt error, a decode error) is not a silent host: it must never be judged by
 * it (no missed beat, no Unreachable, no fencing, its guests never started elsewhere), and a
 * failed listing must never read as "no domain" to the VM reconcilers. The real Runtime on the
 * simulator, listDomains failing on every call while ping answers; the invariants are read from
 * the simulator's own world (powered state, running copies), not from the controller.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Simulator } from "../../../src/providers/sim/index.js";
import { eventually } from "../../support/eventually.js";
import { hostResource, vm } from "../../support/fixtures.js";
import { MemoryStore } from "../../support/memory-store.js";
import { simRuntime } from "../../support/sim-runtime.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const cond = (
  o:
    | { status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } }
    | undefined,
  t: string,
) => o?.status?.conditions?.find((c) => c.type === t);

describe("a host that answers but whose inventory listing fails", () => {
  it("is never fenced, never Unreachable, keeps its guests; the listing is reported stale and retried", async () => {
    const sim = new Simulator({
      seed: 11,
      latency: "none",
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
    const names = Array.from({ length: 4 }, (_, i) => `app-${i}`);
    for (const n of names)
      store.apply(
        vm(n)
          .spec({
            resources: { cpu: 1, memory: "1Gi" },
            disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
          })
          .build(),
      );
    await simRuntime(sim, store, {
      fence: true,
      inventoryIntervalMs: 200,
      cleanups,
    });
    const vms = () => store.list("VirtualMachine");
    await eventually(() => vms().every((v) => v.status?.phase === "Running"), "all running on h0");
    addHost("h1");
    await eventually(() => store.get("Host", "h1")?.status?.phase === "Ready", "h1 Ready");
    const domainNames = sim.hosts().flatMap((h) => [...h.domains.keys()]);
    expect(domainNames.length).toBe(names.length);

    // Every listing of h0 fails from now on; its ping still answers.
    sim.failOperations({ host: "h0", op: "listDomains", probability: 1, code: "OperationFailed" });
    const violations: string[] = [];
    const watch = setInterval(() => {
      const h0 = store.get("Host", "h0");
      const phase = h0?.status?.phase;
      if (phase !== "Ready") violations.push(`h0 phase ${phase}`);
      const reach = cond(h0, "Reachable");
      if (reach && reach.status !== "True") violations.push(`h0 Reachable ${reach.status}: ${reach.reason}`);
      if (sim.powerStatus("h0") !== "on") violations.push("h0 powered off");
      for (const d of domainNames) {
        const copies = sim.runningCopies(d);
        if (copies.length !== 1 || copies[0] !== "h0")
          violations.push(`${d} running on [${copies.join(",")}]`);
      }
      for (const v of vms())
        if (v.status?.host !== "h0" || v.status?.phase !== "Running")
          violations.push(`${v.metadata.name}: ${v.status?.phase} on ${v.status?.host}`);
    }, 5);
    cleanups.push(() => clearInterval(watch));

    // Many beats (threshold 3): about 30 intervals of failing listings.
    await new Promise((r) => setTimeout(r, 3_000));
    clearInterval(watch);
    expect([...new Set(violations)].slice(0, 20)).toEqual([]);
    expect(store.listEvents().some((e) => e.reason === "HostUnreachable" || e.reason === "HostFenced")).toBe(
      false,
    );

    // Reported, on its own condition, naming the error.
    await eventually(
      () => cond(store.get("Host", "h0"), "InventoryStale")?.status === "True",
      "InventoryStale",
    );
    expect(cond(store.get("Host", "h0"), "InventoryStale")?.message).toMatch(/injected failure/);
    expect(cond(store.get("Host", "h0"), "Schedulable")?.reason).toBe("InventoryStale");
    expect(store.listEvents().some((e) => e.reason === "InventoryStale")).toBe(true);
    // Listings succeed again: the condition clears and the host takes VMs again.
    sim.clearFaults();
    await eventually(
      () => cond(store.get("Host", "h0"), "InventoryStale")?.status === "False",
      "InventoryStale cleared",
    );
    await eventually(() => cond(store.get("Host", "h0"), "Schedulable")?.status === "True", "h0 schedulable");
    expect(store.listEvents().some((e) => e.reason === "InventoryListed")).toBe(true);
  }, 60_000);
});
