/**
 * Consolidation on the simulator, with the real Runtime and reconcilers: idle hosts that allow
 * it are emptied by live migration and powered off one at a time, keeping the N-1 failover
 * capacity; a powered-off host is never fenced; when VMs wait for capacity one is powered on
 * again and they are placed. No VM runs twice, and no running VM stops, at any instant.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../src/api/types.js";
import { Runtime } from "../../src/cli/runtime.js";
import { silentLogger } from "../../src/controller/log.js";
import { createFenceAgentFactory } from "../../src/providers/fence/index.js";
import { createPowerAgentFactory } from "../../src/providers/power/index.js";
import { NO_LATENCY, Simulator, simulatorFactory } from "../../src/providers/sim/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const eventually = eventuallyWith({ timeoutMs: 20_000 });

const app = (name: string, memory = "2Gi"): VirtualMachine =>
  vm(name)
    .spec({
      resources: { cpu: 1, memory },
      disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
    })
    .build();

async function world(hosts: number, vms: VirtualMachine[], registry = new Registry()) {
  const sim = new Simulator({
    seed: 5,
    latency: { ...NO_LATENCY, migrateMs: 50, startMs: 10 },
    baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * GiB }],
  });
  const store = new MemoryStore();
  for (let i = 0; i < hosts; i++) {
    sim.addHost(`h${i}`, { cpus: 16, memoryBytes: 32 * GiB });
    const h = hostResource(`h${i}`);
    h.spec.allowPowerOff = true;
    h.spec.power = { agent: "sim" };
    h.spec.fencing = { agent: "sim" };
    store.apply(h);
  }
  for (const v of vms) store.apply(v);
  const simHostName = (h: { spec: { uri: string } }) => h.spec.uri.replace("sim://", "");
  const rt = new Runtime({
    store,
    providerFactory: simulatorFactory(sim),
    fenceAgents: createFenceAgentFactory({
      readSecret: (ref) => store.readSecret(ref),
      simPower: sim,
      simHostName,
    }),
    powerAgents: createPowerAgentFactory({
      readSecret: (ref) => store.readSecret(ref),
      simPower: sim,
      simHostName,
    }),
    registry,
    logger: silentLogger,
    heartbeatIntervalMs: 100,
    inventoryIntervalMs: 500,
    failoverCheckIntervalMs: 100,
    consolidation: { intervalMs: 100 },
  });
  cleanups.push(() => rt.stop(100));
  // Never two running copies, never a running VM stopped by the consolidation.
  const violations: string[] = [];
  const everRunning = new Set<string>();
  const timer = setInterval(() => {
    for (const v of store.list("VirtualMachine")) {
      const d = `default_${v.metadata.name}`;
      const copies = sim.runningCopies(d);
      if (copies.length > 1) violations.push(`${d} on ${copies.join(",")}`);
      if (copies.length === 1) everRunning.add(d);
      else if (everRunning.has(d) && v.status?.phase !== "Migrating") violations.push(`${d} not running`);
    }
  }, 2);
  cleanups.push(() => clearInterval(timer));
  await rt.start();
  return { sim, store, rt, violations, registry };
}

const phaseOf = (store: MemoryStore, h: string) => store.get("Host", h)?.status?.phase;
const powered = (store: MemoryStore) => store.list("Host").filter((h) => h.status?.phase !== "PoweredOff");

describe("consolidation on the simulator", () => {
  it("empties and powers off idle hosts one at a time, keeps N-1, and never fences them", async () => {
    const vms = Array.from({ length: 6 }, (_, i) => app(`web-${i}`));
    const { sim, store, violations, registry } = await world(4, vms);
    await eventually(
      () => store.list("VirtualMachine").every((v) => v.status?.phase === "Running"),
      "all running",
    );
    // 12 GiB on 32 GiB hosts: one host would do; N-1 keeps two.
    await eventually(() => powered(store).length === 2, "two hosts left on", 30_000);
    await new Promise((r) => setTimeout(r, 1000)); // and it stays there
    expect(powered(store)).toHaveLength(2);
    const off = store.list("Host").filter((h) => h.status?.phase === "PoweredOff");
    for (const h of off) {
      expect(h.status?.consolidation?.state).toBe("PoweredOff");
      expect(sim.powerStatus(h.metadata.name)).toBe("off");
      expect(h.status?.conditions?.find((c) => c.type === "Consolidation")?.reason).toBe("PoweredOff");
    }
    for (const v of store.list("VirtualMachine")) {
      expect(v.status?.phase).toBe("Running");
      expect(off.map((h) => h.metadata.name)).not.toContain(v.status?.host);
    }
    const reasons = store.listEvents().map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(["Consolidating", "HostPoweredOff", "Migrated"]));
    expect(reasons).not.toContain("HostFenced");
    expect(await registry.metrics()).toMatch(/virtwarden_active_hosts 2\b/);
    expect(violations).toEqual([]);
  });

  it("powers a host on again when VMs wait for capacity, and places them", async () => {
    const { sim, store, violations } = await world(3, [app("a"), app("b")]);
    await eventually(() => powered(store).length === 2, "one host powered off", 30_000);
    const off = store.list("Host").find((h) => h.status?.phase === "PoweredOff")?.metadata.name as string;
    // Two 24 GiB VMs: the two hosts left take one each at most, with N-1 gone too.
    store.apply(app("big-0", "24Gi"));
    store.apply(app("big-1", "24Gi"));
    store.apply(app("big-2", "24Gi"));
    await eventually(() => phaseOf(store, off) === "Ready", `${off} powered on again`, 30_000);
    expect(sim.powerStatus(off)).toBe("on");
    await eventually(
      () => store.list("VirtualMachine").every((v) => v.status?.phase === "Running"),
      "the big VMs placed",
      30_000,
    );
    expect(store.listEvents().map((e) => e.reason)).toEqual(
      expect.arrayContaining(["PowerOnPlanned", "HostPoweredOn"]),
    );
    expect(violations).toEqual([]);
  });
});
