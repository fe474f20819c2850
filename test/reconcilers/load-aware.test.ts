/**
 * loadAware placement end to end on the simulator: the real Runtime and reconcilers, the Host
 * reconciler sampling node statistics, a guest made busy through the simulator. Where each VM
 * runs is read from the simulator's own domain tables, not from virtwarden's status.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../src/api/types.js";
import { Simulator } from "../../src/providers/sim/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { simRuntime } from "../support/sim-runtime.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const eventually = eventuallyWith({ timeoutMs: 30_000, everyMs: 20 });

/** The simulated host running the VM's domain, if one does. */
function hostOf(sim: Simulator, vmName: string): string | undefined {
  for (const h of sim.hosts())
    if (h.domains.get(`default_${vmName}`)?.state.state === "running") return h.name;
  return undefined;
}

async function applyAndRun(sim: Simulator, store: MemoryStore, v: VirtualMachine): Promise<string> {
  store.apply(v);
  return eventually(() => hostOf(sim, v.metadata.name), `${v.metadata.name} running`);
}

const guest = (name: string, cpu: number, memGiB: number, placement: Record<string, unknown>) =>
  vm(name)
    .spec({ resources: { cpu, memory: `${memGiB}Gi` }, placement })
    .build();

describe("loadAware on the simulator", () => {
  it("a host with a busy guest loses to one with more allocated but idle guests; spread picks the other way", async () => {
    const sim = new Simulator({ seed: 5, latency: "none" });
    const store = new MemoryStore();
    for (const name of ["busy", "quiet"]) {
      sim.addHost(name, { cpus: 8, memoryBytes: 32 * GiB });
      store.apply(hostResource(name, `sim://${name}`, { role: name }));
    }
    await simRuntime(sim, store, { cleanups, hostWarmupTimeoutMs: 50, inventoryIntervalMs: 150 });
    // busy: one 2-vCPU, 2 GiB guest that burns 7 CPUs' worth (its QEMU's I/O threads and all).
    // quiet: three 4-vCPU, 6 GiB guests (12 vCPUs, 18 GiB allocated) that idle.
    const hog = await applyAndRun(sim, store, guest("hog", 2, 2, { hostSelector: { role: "busy" } }));
    sim.setGuestLoad(hog, "default_hog", { cpus: 7 });
    for (let i = 0; i < 3; i++)
      await applyAndRun(sim, store, guest(`idle-${i}`, 4, 6, { hostSelector: { role: "quiet" } }));
    for (const i of [0, 1, 2]) sim.setGuestLoad("quiet", `default_idle-${i}`, { cpus: 0.05 });
    // Both hosts measured since the loads were set: two samples after it (usage is a delta).
    const since = Date.now() + 400;
    await eventually(
      () =>
        ["busy", "quiet"].every((h) => {
          const u = store.get("Host", h)?.status?.usage;
          return u && Date.parse(u.sampledAt) > since;
        }),
      "both hosts' usage sampled after the loads were set",
    );
    const busyUsage = store.get("Host", "busy")?.status?.usage;
    const quietUsage = store.get("Host", "quiet")?.status?.usage;
    expect(busyUsage?.cpuPercent).toBeGreaterThan(80); // 7.05 of 8 CPUs
    expect(quietUsage?.cpuPercent).toBeLessThan(10); // 0.2 of 8
    expect(store.get("Host", "quiet")?.status?.allocated?.cpu).toBe(12);
    expect(store.get("Host", "busy")?.status?.allocated?.cpu).toBe(2);

    expect(await applyAndRun(sim, store, guest("placed-by-load", 2, 2, { strategy: "loadAware" }))).toBe(
      "quiet",
    );
    // The same request by allocation goes to the host with the busy guest.
    expect(await applyAndRun(sim, store, guest("placed-by-allocation", 2, 2, { strategy: "spread" }))).toBe(
      "busy",
    );
  }, 60_000);

  it("samples node statistics on the inventory interval, not every heartbeat", async () => {
    const sim = new Simulator({ seed: 6, latency: "none" });
    const store = new MemoryStore();
    sim.addHost("h", { cpus: 4, memoryBytes: 8 * GiB });
    store.apply(hostResource("h", "sim://h"));
    // Beats every 100 ms, inventory (and samples) every 500 ms.
    await simRuntime(sim, store, { cleanups, hostWarmupTimeoutMs: 50, inventoryIntervalMs: 500 });
    const seen = new Set<string>();
    const t0 = Date.now();
    while (Date.now() - t0 < 2_600) {
      const at = store.get("Host", "h")?.status?.usage?.sampledAt;
      if (at) seen.add(at);
      await new Promise((r) => setTimeout(r, 20));
    }
    const times = [...seen].map((t) => Date.parse(t)).sort((a, b) => a - b);
    // About one sample per 500 ms (the first usage needs two): never one per 100 ms beat.
    expect(times.length).toBeGreaterThanOrEqual(2);
    expect(times.length).toBeLessThanOrEqual(6);
    for (let i = 1; i < times.length; i++)
      expect((times[i] as number) - (times[i - 1] as number)).toBeGreaterThanOrEqual(450);
  }, 30_000);

  it("a host whose node statistics fail stays Ready, keeps no usage, and is ranked by allocation", async () => {
    const sim = new Simulator({ seed: 7, latency: "none" });
    const store = new MemoryStore();
    for (const name of ["mute", "other"]) {
      sim.addHost(name, { cpus: 8, memoryBytes: 32 * GiB });
      store.apply(hostResource(name, `sim://${name}`, { role: name }));
    }
    sim.failOperations({ host: "mute", op: "nodeStats", probability: 1, code: "Unsupported" });
    await simRuntime(sim, store, { cleanups, hostWarmupTimeoutMs: 50, inventoryIntervalMs: 150 });
    // other: a guest allocated there, measured busy; mute: nothing allocated, never measured.
    const hog = await applyAndRun(sim, store, guest("hog", 2, 4, { hostSelector: { role: "other" } }));
    sim.setGuestLoad(hog, "default_hog", { cpus: 0.1 });
    await eventually(() => store.get("Host", "other")?.status?.usage, "other measured");
    await new Promise((r) => setTimeout(r, 500));
    expect(store.get("Host", "mute")?.status?.phase).toBe("Ready");
    expect(store.get("Host", "mute")?.status?.usage).toBeUndefined();
    // Still a candidate: mute ranks by allocation (empty: fit 1 - 2/32 = 0.94 with the request),
    // other by its measurement (0.15 of 8 CPUs busy, 1 GiB resident, plus the request: 0.82).
    expect(await applyAndRun(sim, store, guest("next", 2, 2, { strategy: "loadAware" }))).toBe("mute");
  }, 60_000);

  it("a burst of loadAware VMs between two samples spreads over hosts measured alike", async () => {
    const sim = new Simulator({ seed: 8, latency: "none" });
    const store = new MemoryStore();
    for (const name of ["a", "b"]) {
      sim.addHost(name, { cpus: 8, memoryBytes: 32 * GiB });
      store.apply(hostResource(name, `sim://${name}`));
    }
    // Samples every 2 s: the burst below is placed between two of them.
    await simRuntime(sim, store, { cleanups, hostWarmupTimeoutMs: 50, inventoryIntervalMs: 2_000 });
    await eventually(
      () => ["a", "b"].every((h) => store.get("Host", h)?.status?.usage),
      "both hosts measured",
      { timeoutMs: 15_000 },
    );
    for (let i = 0; i < 4; i++) store.apply(guest(`burst-${i}`, 2, 4, { strategy: "loadAware" }));
    const hosts = await eventually(() => {
      const on = [0, 1, 2, 3].map((i) => hostOf(sim, `burst-${i}`));
      return on.every(Boolean) && on;
    }, "the burst running");
    // The measurement has not changed yet: without the requests placed since the sample counting,
    // all four would go to a (the tie between hosts measured alike goes by name).
    expect(hosts.filter((h) => h === "a")).toHaveLength(2);
    expect(hosts.filter((h) => h === "b")).toHaveLength(2);
  }, 60_000);
});
