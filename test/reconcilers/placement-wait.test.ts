/**
 * Placement waits for the fleet to be seen. A controller starting with hosts that do not answer
 * yet (a daemon still starting, a slow first connection) must not place every VM on the first
 * host that answered: `spread` cannot spread over one host, and the VMs stay where they were put.
 * The wait is bounded: a declared host that never answers holds placement only so long.
 *
 * The real Runtime and reconcilers on the simulator; placement is read from the simulator's own
 * domain tables, not from virtwarden's status.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Runtime } from "../../src/cli/runtime.js";
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

const eventually = eventuallyWith({ timeoutMs: 20_000 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function world(hosts: number) {
  const sim = new Simulator({ seed: 3, latency: "none" });
  const store = new MemoryStore();
  for (let i = 0; i < hosts; i++) {
    sim.addHost(`h${i}`, { cpus: 16, memoryBytes: 32 * GiB });
    store.apply(hostResource(`h${i}`));
  }
  for (let i = 0; i < 6; i++)
    store.apply(
      vm(`v${i}`)
        .spec({
          resources: { cpu: 1, memory: "1Gi" },
          disks: [{ name: "root", size: "1Gi" }],
          placement: { strategy: "spread" },
        })
        .build(),
    );
  return { sim, store };
}

async function start(sim: Simulator, store: MemoryStore, placementWaitMs?: number): Promise<Runtime> {
  const rt = await simRuntime(sim, store, {
    inventoryIntervalMs: 500,
    // The start-up barrier gives up at once: what is tested is placement's own wait.
    hostWarmupTimeoutMs: 50,
    ...(placementWaitMs !== undefined ? { placementWaitMs } : {}),
    cleanups,
  });
  return rt;
}

/** VM name -> the simulated hosts running its domain (ground truth). */
function runningOn(sim: Simulator): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const h of sim.hosts())
    for (const [name, d] of h.domains)
      if (d.state.state === "running") out.set(name, [...(out.get(name) ?? []), h.name]);
  return out;
}

function perHost(sim: Simulator): Record<string, number> {
  const by: Record<string, number> = {};
  for (const hosts of runningOn(sim).values()) for (const h of hosts) by[h] = (by[h] ?? 0) + 1;
  return by;
}

describe("placement waits until the fleet has been seen", () => {
  it("a cold start with two hosts answering late spreads over all three", async () => {
    const { sim, store } = world(3);
    sim.partitionHost("h1");
    sim.partitionHost("h2");
    await start(sim, store);
    // While h1 and h2 have not answered, nothing is placed, and each VM says why.
    await eventually(
      () =>
        store
          .list("VirtualMachine")
          .every((v) =>
            v.status?.conditions?.some(
              (c) => c.type === "Scheduled" && c.status === "False" && c.reason === "WaitingForHosts",
            ),
          ),
      "every VM waiting for hosts",
    );
    const waiting = store.list("VirtualMachine")[0]?.status?.conditions?.find((c) => c.type === "Scheduled");
    expect(waiting?.message).toContain("h1, h2");
    await sleep(500);
    expect(runningOn(sim).size).toBe(0);
    sim.healPartition("h1");
    sim.healPartition("h2");
    await eventually(() => runningOn(sim).size === 6, "all six running");
    expect(perHost(sim)).toEqual({ h0: 2, h1: 2, h2: 2 });
  });

  it("a host that never answers holds placement only for the wait", async () => {
    const { sim, store } = world(3);
    sim.partitionHost("h2");
    const t0 = Date.now();
    await start(sim, store, 1_500);
    await eventually(() => runningOn(sim).size === 6, "all six running without h2");
    // A lower bound only: the wait is not skipped (a slow machine makes it later, never earlier).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_400);
    expect(perHost(sim)).toEqual({ h0: 3, h1: 3 });
    for (const v of store.list("VirtualMachine"))
      expect(v.status?.conditions?.find((c) => c.type === "Scheduled")?.status).toBe("True");
  });

  it("placementWaitMs 0 places on what answers at once (the old behaviour, on request)", async () => {
    const { sim, store } = world(3);
    sim.partitionHost("h1");
    sim.partitionHost("h2");
    await start(sim, store, 0);
    await eventually(() => runningOn(sim).size === 6, "all six running");
    expect(perHost(sim)).toEqual({ h0: 6 });
  });
});
