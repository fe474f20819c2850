/**
 * Draining a host in maintenance on the simulator, with the real Runtime and reconcilers: its
 * running VMs move live (or cold, when a VM forbids live migration) to the other hosts within
 * the placement rules, the Host says when it is drained, a VM with nowhere to go stays and says
 * why, and at no instant does any VM run twice.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { Host, VirtualMachine } from "../../src/api/types.js";
import { NO_LATENCY, Simulator } from "../../src/providers/sim/index.js";
import { eventually } from "../support/eventually.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { simRuntime } from "../support/sim-runtime.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function app(name: string, patch: Partial<VirtualMachine["spec"]> = {}, labels = { app: "demo" }) {
  return vm(name)
    .labels(labels)
    .spec({
      resources: { cpu: 1, memory: "1Gi" },
      disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
      ...patch,
    })
    .build();
}

/** Everything on h0 first (the only host), then the others join: a known host to drain. */
async function onH0(vms: VirtualMachine[], others: number, registry = new Registry()) {
  const sim = new Simulator({
    seed: 3,
    latency: { ...NO_LATENCY, migrateMs: 200, guestShutdownMs: 100 },
    baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * GiB }],
  });
  const store = new MemoryStore();
  const addHost = (name: string) => {
    sim.addHost(name, { cpus: 16, memoryBytes: 32 * GiB });
    store.apply(hostResource(name));
  };
  addHost("h0");
  for (const v of vms) store.apply(v);
  const rt = await simRuntime(sim, store, {
    registry,
    inventoryIntervalMs: 500,
    cleanups,
  });
  const running = () => store.list("VirtualMachine").filter((v) => v.status?.phase === "Running");
  await eventually(() => running().length === vms.length, "all running on h0");
  for (let i = 1; i <= others; i++) addHost(`h${i}`);
  await eventually(() => store.list("Host").every((h) => h.status?.phase === "Ready"), "every host Ready");
  // Never two running copies, sampled every few ms through the whole drain.
  const violations: string[] = [];
  const timer = setInterval(() => {
    for (const v of store.list("VirtualMachine")) {
      const copies = sim.runningCopies(`default_${v.metadata.name}`);
      if (copies.length > 1) violations.push(`${v.metadata.name} on ${copies.join(",")}`);
    }
  }, 2);
  cleanups.push(() => clearInterval(timer));
  const maintain = (name: string, on: boolean) => {
    const h = store.get("Host", name) as Host;
    store.apply({
      ...h,
      metadata: { ...h.metadata, generation: (h.metadata.generation ?? 1) + 1 },
      spec: { ...h.spec, maintenance: on },
    });
  };
  return { sim, store, rt, violations, maintain, registry };
}

const cond = (
  o:
    | { status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } }
    | undefined,
  t: string,
) => o?.status?.conditions?.find((c) => c.type === t);

describe("draining a host in maintenance on the simulator", () => {
  it("moves every running VM away live, keeps their anti-affinity, and reports the host drained", async () => {
    const vms = [
      ...Array.from({ length: 6 }, (_, i) => app(`web-${i}`)),
      app(
        "db-0",
        { placement: { antiAffinity: [{ selector: { matchLabels: { app: "db" } } }] } },
        { app: "db" },
      ),
      app(
        "db-1",
        { placement: { antiAffinity: [{ selector: { matchLabels: { app: "db" } } }] } },
        { app: "db" },
      ),
    ];
    // Two db VMs with anti-affinity cannot share h0: db-1 waits for another host. Start with
    // the web VMs and db-0 only, then add db-1 once h1 and h2 are there.
    const { sim, store, violations, maintain, registry } = await onH0(vms.slice(0, 7), 2);
    store.apply(vms[7] as VirtualMachine);
    await eventually(
      () => store.get("VirtualMachine", "default/db-1")?.status?.phase === "Running",
      "db-1 running",
    );
    const dbHostBefore = store.get("VirtualMachine", "default/db-1")?.status?.host;
    expect(dbHostBefore).not.toBe("h0");

    maintain("h0", true);
    await eventually(() => store.get("Host", "h0")?.status?.phase === "Maintenance", "h0 in Maintenance");
    await eventually(() => cond(store.get("Host", "h0"), "Drained")?.status === "True", "h0 drained", 20_000);

    for (const v of store.list("VirtualMachine")) {
      expect(v.status?.phase).toBe("Running");
      expect(v.status?.host).not.toBe("h0");
      expect(sim.runningCopies(`default_${v.metadata.name}`)).toEqual([v.status?.host]);
    }
    const moved = store.list("VirtualMachine").filter((v) => v.metadata.name !== "db-1");
    for (const v of moved) {
      expect(v.status?.migration).toMatchObject({
        reason: "Maintenance",
        sourceHost: "h0",
        targetHost: v.status?.host,
        result: "Succeeded",
        progressPercent: 100,
      });
      // Live: the same guest, never restarted.
      expect(v.status?.restartCount ?? 0).toBe(0);
    }
    // db-0 and db-1 still apart.
    expect(store.get("VirtualMachine", "default/db-0")?.status?.host).not.toBe(dbHostBefore);
    expect(store.listEvents().map((e) => e.reason)).toEqual(
      expect.arrayContaining(["Migrating", "Migrated"]),
    );
    const metrics = await registry.metrics();
    expect(metrics).toContain('virtwarden_migrations_total{reason="Maintenance",result="Succeeded"} 7');
    expect(violations).toEqual([]);

    // Out of maintenance: Ready again, takes VMs again, no Drained condition left.
    maintain("h0", false);
    await eventually(() => store.get("Host", "h0")?.status?.phase === "Ready", "h0 Ready");
    expect(cond(store.get("Host", "h0"), "Drained")).toBeUndefined();
  });

  it("moves a VM that forbids live migration cold: shut down here, started there", async () => {
    const { sim, store, violations, maintain } = await onH0(
      [app("legacy", { migration: { live: false } })],
      1,
    );
    const volume = () => sim.hosts()[0]?.pools.get("default")?.volumes.get("default_legacy-root.qcow2");
    const disk = volume();
    expect(disk).toBeDefined();
    maintain("h0", true);
    await eventually(
      () => store.get("VirtualMachine", "default/legacy")?.status?.migration?.result === "Succeeded",
      "moved cold",
    );
    const v = store.get("VirtualMachine", "default/legacy");
    expect(v?.status).toMatchObject({ phase: "Running", host: "h1" });
    expect(sim.runningCopies("default_legacy")).toEqual(["h1"]);
    expect(
      sim
        .hosts()
        .find((h) => h.name === "h0")
        ?.domains.has("default_legacy"),
    ).toBe(false);
    // Its disk went with it: the same overlay (shared storage), not a fresh clone.
    expect(volume()).toBe(disk);
    expect(violations).toEqual([]);
  });

  it("keeps a VM that no other host can take, and says why on the VM and the Host", async () => {
    const big = app("big", { resources: { cpu: 1, memory: "24Gi" } });
    const { sim, store, maintain } = await onH0([big, app("small")], 1);
    // h1 takes one 24 GiB VM, not two: fill it first.
    store.apply(app("filler", { resources: { cpu: 1, memory: "20Gi" }, placement: { hostSelector: {} } }));
    await eventually(
      () => store.get("VirtualMachine", "default/filler")?.status?.host === "h1",
      "filler on h1",
    );
    maintain("h0", true);
    await eventually(
      () => store.get("VirtualMachine", "default/small")?.status?.host === "h1",
      "small moved",
    );
    await eventually(
      () => cond(store.get("VirtualMachine", "default/big"), "Degraded")?.reason === "DrainBlocked",
      "big blocked",
    );
    expect(store.get("VirtualMachine", "default/big")?.status).toMatchObject({
      phase: "Running",
      host: "h0",
    });
    expect(sim.runningCopies("default_big")).toEqual(["h0"]);
    await eventually(
      () => cond(store.get("Host", "h0"), "Drained")?.reason === "DrainBlocked",
      "host says so",
    );
    expect(cond(store.get("Host", "h0"), "Drained")?.message).toContain("default/big");
  });
});
