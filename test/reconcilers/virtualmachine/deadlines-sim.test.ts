/**
 * Bring-up deadlines end to end: the real Runtime and reconcilers on the simulator. A host that
 * fails every start, or hangs a disk copy, costs a VM its phase's deadline, not forever: the VM is
 * cleaned up there and runs on another host. A host where several VMs missed is avoided by all.
 *
 * Where the VM runs and what is left on the failing host are read from the simulator's own
 * tables (ground truth), not from virtwarden's status.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../../src/api/types.js";
import { Runtime } from "../../../src/cli/runtime.js";
import { silentLogger } from "../../../src/controller/log.js";
import { Simulator, simulatorFactory } from "../../../src/providers/sim/index.js";
import { eventuallyWith } from "../../support/eventually.js";
import { hostResource, vm } from "../../support/fixtures.js";
import { MemoryStore } from "../../support/memory-store.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const eventually = eventuallyWith({ timeoutMs: 30_000, everyMs: 20 });

function world(hosts: { name: string; labels?: Record<string, string> }[]) {
  // Local disks (as on lab desktops): what a bring-up leaves on a host stays there unless removed.
  const sim = new Simulator({ seed: 5, latency: "none", sharedStorage: false });
  const store = new MemoryStore();
  for (const h of hosts) {
    sim.addHost(h.name, { cpus: 16, memoryBytes: 32 * GiB });
    store.apply(hostResource(h.name, `sim://${h.name}`, h.labels ?? {}));
  }
  return { sim, store };
}

async function start(sim: Simulator, store: MemoryStore): Promise<{ rt: Runtime; registry: Registry }> {
  const registry = new Registry();
  const rt = new Runtime({
    store,
    providerFactory: simulatorFactory(sim),
    registry,
    logger: silentLogger,
    heartbeatIntervalMs: 100,
    inventoryIntervalMs: 300,
    hostWarmupTimeoutMs: 50,
  });
  cleanups.push(() => rt.stop(100));
  await rt.start();
  return { rt, registry };
}

/** The simulated hosts holding the domain `name`, and those where it runs (ground truth). */
function where(sim: Simulator, name: string): { defined: string[]; running: string[] } {
  const defined: string[] = [];
  const running: string[] = [];
  for (const h of sim.hosts()) {
    const d = h.domains.get(name);
    if (!d) continue;
    defined.push(h.name);
    if (d.state.state === "running") running.push(h.name);
  }
  return { defined, running };
}

/** Volumes of the domain `name` on a simulated host (ground truth). */
function volumesOf(sim: Simulator, host: string, name: string): string[] {
  const h = sim.hosts().find((x) => x.name === host);
  const out: string[] = [];
  for (const p of h?.pools.values() ?? [])
    for (const v of p.volumes.keys()) if (v.startsWith(name)) out.push(v);
  return out;
}

/** The domain of a VM is named namespace_name (fleet.ts): spelled out here, not imported. */
function domainName(_store: MemoryStore, key: string): string {
  return key.replace("/", "_");
}

function small(name: string, deadlines: Record<string, number>, extra: Record<string, unknown> = {}) {
  return vm(name)
    .spec({
      resources: { cpu: 1, memory: "1Gi" },
      disks: [{ name: "root", size: "1Gi" }],
      deadlines,
      ...extra,
    })
    .build();
}

describe("bring-up deadlines on the simulator", () => {
  it("a host whose every start fails costs the VM its Starting deadline; it then runs on another host, once, with nothing left behind", async () => {
    const { sim, store } = world([{ name: "h0" }, { name: "h1" }]);
    sim.failOperations({ host: "h0", op: "startDomain", probability: 1 });
    const { registry } = await start(sim, store);
    store.apply(small("v0", { startingSeconds: 2 }));
    const name = domainName(store, "default/v0");

    // While it fails on h0 the bring-up is recorded there, with the phase and its start.
    await eventually(
      () => store.get("VirtualMachine", "default/v0")?.status?.bringUp?.host === "h0",
      "bringUp on h0",
    );
    const bringUp = store.get("VirtualMachine", "default/v0")?.status?.bringUp;
    expect(bringUp?.phase).toBe("Starting");
    expect(where(sim, name).running).toEqual([]);

    await eventually(() => where(sim, name).running.length === 1, "running somewhere");
    const v = store.get("VirtualMachine", "default/v0") as VirtualMachine;
    expect(where(sim, name)).toEqual({ defined: ["h1"], running: ["h1"] });
    expect(volumesOf(sim, "h0", name)).toEqual([]);
    expect(v.status?.host).toBe("h1");
    expect(v.status?.bringUp).toBeUndefined();
    expect(v.status?.deadlineMisses).toEqual([expect.objectContaining({ host: "h0", phase: "Starting" })]);
    expect(v.status?.deadlineMisses?.[0]?.seconds).toBeGreaterThan(2);
    const ev = store.listEvents().find((e) => e.reason === "DeadlineExceeded");
    expect(ev?.note).toMatch(/^Starting on h0 did not finish within its deadline of 2s/);
    expect(await registry.metrics()).toMatch(/virtwarden_vm_deadline_misses_total\{phase="Starting"\} 1\b/);
    // Running on h1 with the deadline lifted, it stays there (the fault on h0 is still in place).
    await new Promise((r) => setTimeout(r, 1_000));
    expect(where(sim, name)).toEqual({ defined: ["h1"], running: ["h1"] });
  }, 60_000);

  it("a disk copy that hangs is abandoned at the PreparingDisks deadline, within the call, and the VM placed elsewhere", async () => {
    const { sim, store } = world([{ name: "h0" }, { name: "h1" }]);
    sim.hangOperations({ host: "h0", op: "createVolume", probability: 1 });
    await start(sim, store);
    store.apply(small("v0", { preparingDisksSeconds: 1 }));
    const name = domainName(store, "default/v0");
    await eventually(() => where(sim, name).running.length === 1, "running somewhere");
    expect(where(sim, name)).toEqual({ defined: ["h1"], running: ["h1"] });
    const v = store.get("VirtualMachine", "default/v0") as VirtualMachine;
    expect(v.status?.deadlineMisses).toEqual([
      expect.objectContaining({ host: "h0", phase: "PreparingDisks" }),
    ]);
    expect(store.listEvents().find((e) => e.reason === "DeadlineExceeded")?.note).toMatch(
      /^PreparingDisks on h0/,
    );
  }, 60_000);

  it("a host where three VMs missed a deadline is avoided by every VM for a while, even where placement would prefer it", async () => {
    const { sim, store } = world([
      { name: "h0", labels: { zone: "a" } },
      { name: "h1", labels: { zone: "b" } },
    ]);
    sim.failOperations({ host: "h0", op: "startDomain", probability: 1 });
    await start(sim, store);
    // Load on h1, so that spread would choose the empty h0 for a new VM.
    for (const f of ["f0", "f1"]) store.apply(small(f, {}, { placement: { hostSelector: { zone: "b" } } }));
    // Three VMs that can only go to h0: each misses its Starting deadline there.
    for (const m of ["m0", "m1", "m2"])
      store.apply(small(m, { startingSeconds: 1 }, { placement: { hostSelector: { zone: "a" } } }));
    await eventually(
      () => store.get("Host", "h0")?.status?.deadlines?.avoidUntil !== undefined,
      "h0 avoided",
    );
    const h0 = store.get("Host", "h0")?.status?.deadlines;
    expect(h0?.misses).toBe(3);
    expect(h0?.lastMiss?.phase).toBe("Starting");
    // The VMs that missed are not placed on h0 again (their own avoidance): unschedulable, said why.
    for (const m of ["m0", "m1", "m2"])
      expect(where(sim, domainName(store, `default/${m}`)).defined).toEqual([]);
    const scheduled = store
      .get("VirtualMachine", "default/m0")
      ?.status?.conditions?.find((c) => c.type === "Scheduled");
    expect(scheduled?.status).toBe("False");
    expect(scheduled?.message).toMatch(/1 host: excluded; 1 host: host selector mismatch/);

    // h0 works again, but is avoided: a new VM goes to the busier h1.
    sim.clearFaults();
    store.apply(small("w", {}));
    const w = domainName(store, "default/w");
    await eventually(() => where(sim, w).running.length === 1, "w running");
    expect(where(sim, w)).toEqual({ defined: ["h1"], running: ["h1"] });
  }, 60_000);
});
