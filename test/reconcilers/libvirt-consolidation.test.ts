/**
 * Consolidation on the real test bed: three network-namespace hosts with libvirtd and QEMU, whose
 * power switch (test bed power-switch.mjs, driven by the exec power agent) kills or starts their
 * libvirtd. Each host offers about 1 GiB to VMs (the rest reserved). Three small VMs start one per
 * host; one host is emptied by live migration and switched off (two stay on, for N-1), and it is never
 * fenced for its silence; when VMs then wait for room, it is switched on again and they run there.
 * A watcher asking every host's libvirtd never sees a VM running twice.
 */
import { execFileSync } from "node:child_process";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../src/api/types.js";
import { Runtime } from "../../src/cli/runtime.js";
import { createLogger } from "../../src/controller/log.js";
import { createFenceAgentFactory } from "../../src/providers/fence/index.js";
import { createLibvirtProviderFactory, LibvirtProvider } from "../../src/providers/libvirt/index.js";
import { createPowerAgentFactory } from "../../src/providers/power/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { testbedHost, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { startTestbed, type Testbed } from "../support/testbed/index.js";
import { type RunningWatch, watchRunningCopies } from "../support/testbed/watch.js";

let tb: Testbed;
let rt: Runtime;
const store = new MemoryStore();
let watch: RunningWatch;

/** The hosts' consolidation state and every VM not running: what a timeout needs to show. */
function fleetState(): string {
  const hosts = store
    .list("Host")
    .map((h) => `${h.metadata.name}: ${h.status?.phase} ${JSON.stringify(h.status?.consolidation ?? {})}`);
  const vms = store
    .list("VirtualMachine")
    .filter((v) => v.status?.phase !== "Running")
    .map(
      (v) =>
        `${v.metadata.name}: ${v.status?.phase} on ${v.status?.host}: ${JSON.stringify(v.status?.conditions?.filter((c) => c.status === "False" || c.type === "Degraded"))}`,
    );
  return `${hosts.join("\n")}\n${vms.join("\n")}`;
}

const eventually = eventuallyWith({ timeoutMs: 90_000, everyMs: 50, detail: fleetState });

const MiB = 1024 ** 2;
const small = (name: string, memory: string) =>
  vm(name)
    .noFinalizer()
    .spec({
      resources: { cpu: 1, memory },
      disks: [{ name: "root", size: "64Mi", source: { image: { name: "base.qcow2" } } }],
    })
    .build();
const powerState = (i: number) =>
  execFileSync(
    tb.hosts[i]?.fenceCommand[0] as string,
    [...(tb.hosts[i]?.fenceCommand.slice(1, -1) ?? []), "status"],
    { encoding: "utf8" },
  ).trim();
const offHosts = () => store.list("Host").filter((h) => h.status?.phase === "PoweredOff");

beforeAll(async () => {
  tb = await startTestbed({ hosts: 3, name: "con" });
  const p0 = new LibvirtProvider(tb.hosts[0]?.uri as string);
  await p0.connect();
  const memoryBytes = (await p0.hostInfo()).memoryBytes;
  await p0.close();
  tb.hosts.forEach((h) => {
    const r: Host = testbedHost(h);
    r.spec.heartbeat = { intervalSeconds: 0.5, missedBeats: 3 };
    r.spec.overcommit = { cpu: 16 };
    // About 1 GiB for VMs on each host: room is scarce enough for consolidation to matter.
    r.spec.reserved = { memory: String(memoryBytes - 1024 * MiB) };
    r.spec.fencing = { agent: "exec", command: h.fenceCommand, timeoutSeconds: 10 };
    r.spec.power = { agent: "exec", command: h.fenceCommand, timeoutSeconds: 30 };
    store.apply(r); // allowPowerOff once the VMs are spread (below)
  });
  rt = new Runtime({
    store,
    providerFactory: createLibvirtProviderFactory(),
    fenceAgents: createFenceAgentFactory({ readSecret: (ref) => store.readSecret(ref) }),
    powerAgents: createPowerAgentFactory({ readSecret: (ref) => store.readSecret(ref) }),
    registry: new Registry(),
    logger: createLogger({ level: process.env.VW_TEST_LOG ?? "silent" }),
    heartbeatIntervalMs: 500,
    failoverCheckIntervalMs: 500,
    unsafeMigration: true,
    consolidation: { intervalMs: 500 },
  });
  await rt.start();
  await eventually(() => store.list("Host").every((h) => h.status?.phase === "Ready"), "three hosts Ready");
  // Spread over the three Ready hosts: one each. Two hosts hold the three; N-1 keeps them both.
  for (const n of ["a", "b", "c"]) store.apply(small(n, "256Mi"));
  await eventually(() => store.list("VirtualMachine").every((v) => v.status?.phase === "Running"), "running");
  // Now the hosts may be switched off when idle.
  for (const h of store.list("Host"))
    store.apply({
      ...h,
      metadata: { ...h.metadata, generation: (h.metadata.generation ?? 1) + 1 },
      spec: { ...h.spec, allowPowerOff: true },
    });
  watch = watchRunningCopies(tb, 3);
}, 240_000);

afterAll(async () => {
  await watch?.stop();
  await rt?.stop(2000);
  await tb?.teardown();
}, 60_000);

describe("consolidation on real libvirt hosts", () => {
  it("empties one idle host by live migration and switches it off, keeping two for N-1", async () => {
    // One per host to begin with (spread), so the host switched off had a VM to move.
    expect(new Set(store.list("VirtualMachine").map((v) => v.status?.host)).size).toBe(3);
    const t0 = Date.now();
    await eventually(() => offHosts().length === 1, "one host switched off", 120_000);
    console.log(`one host emptied and switched off ${Date.now() - t0} ms after the VMs ran`);
    await new Promise((r) => setTimeout(r, 3000)); // and no second one, no fencing
    expect(offHosts()).toHaveLength(1);
    const off = offHosts()[0] as Host;
    const i = tb.hosts.findIndex((h) => h.name === off.metadata.name);
    expect(powerState(i)).toBe("off");
    expect(off.status?.consolidation?.state).toBe("PoweredOff");
    for (const v of store.list("VirtualMachine")) {
      expect(v.status?.phase).toBe("Running");
      expect(v.status?.host).not.toBe(off.metadata.name);
      expect(v.status?.restartCount ?? 0).toBe(0);
    }
    // The one that lived there moved, live.
    const moved = store
      .list("VirtualMachine")
      .filter((v) => v.status?.migration?.sourceHost === off.metadata.name);
    expect(moved).toHaveLength(1);
    expect(moved[0]?.status?.migration).toMatchObject({ reason: "Consolidation", result: "Succeeded" });
    const state = await rt.fleet
      .connection(moved[0]?.status?.host as string)
      ?.provider.getDomainState(`default_${moved[0]?.metadata.name}`);
    expect(state).toEqual({ state: "running", reason: "migrated" });
    const reasons = store.listEvents().map((e) => e.reason);
    expect(reasons).toContain("HostPoweredOff");
    expect(reasons).not.toContain("HostFenced");
    // The watcher saw the three guests running, many times: its empty list means something.
    expect(watch.samples()).toBeGreaterThan(10);
    expect(watch.violations).toEqual([]);
  }, 180_000);

  it("switches it on again when VMs wait for room, and runs them there", async () => {
    const off = offHosts()[0]?.metadata.name as string;
    const i = tb.hosts.findIndex((h) => h.name === off);
    // 4 x 512 MiB more: the two hosts on (768 MiB used of 2 GiB) take two; two wait.
    for (let k = 0; k < 4; k++) store.apply(small(`big${k}`, "512Mi"));
    const t0 = Date.now();
    await eventually(
      () => store.get("Host", off)?.status?.phase === "Ready",
      `${off} back in service`,
      120_000,
    );
    console.log(`${off} switched on and Ready ${Date.now() - t0} ms after the VMs were applied`);
    expect(powerState(i)).toBe("on");
    await eventually(
      () => store.list("VirtualMachine").every((v) => v.status?.phase === "Running"),
      "all running",
      120_000,
    );
    expect(store.list("VirtualMachine").some((v) => v.status?.host === off)).toBe(true);
    expect(store.listEvents().map((e) => e.reason)).toEqual(
      expect.arrayContaining(["PowerOnPlanned", "HostPoweredOn"]),
    );
    expect(store.listEvents().map((e) => e.reason)).not.toContain("HostFenced");
    expect(watch.violations).toEqual([]);
  }, 240_000);
});
