import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../../src/api/types.js";
import { Runtime } from "../../src/cli/runtime.js";
import { createLogger } from "../../src/controller/log.js";
import { createLibvirtProviderFactory } from "../../src/providers/libvirt/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { testbedHost, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { startTestbed, type Testbed } from "../support/testbed/index.js";
import { guestsOf, type RunningWatch, watchRunningCopies } from "../support/testbed/watch.js";

let tb: Testbed;
let rt: Runtime;
const store = new MemoryStore();
const registry = new Registry();
let watch: RunningWatch;

const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 25 });

const hostRes = (i: number) => {
  const r = testbedHost(tb.hosts[i] as Testbed["hosts"][number]);
  r.spec.heartbeat = { intervalSeconds: 0.5, missedBeats: 3 };
  r.spec.overcommit = { cpu: 16 };
  return r;
};
const cond = (h: Host | undefined, t: string) => h?.status?.conditions?.find((c) => c.type === t);

beforeAll(async () => {
  tb = await startTestbed({ hosts: 3, name: "mig" });
  store.apply(hostRes(0));
  for (let i = 0; i < 4; i++)
    store.apply(
      vm(`app-${i}`)
        .noFinalizer()
        .spec({
          resources: { cpu: 1, memory: "64Mi" },
          disks: [{ name: "root", size: "64Mi", source: { image: { name: "base.qcow2" } } }],
          // (A guest with no OS ignores the shutdown request: destroyed after the 10 s timeout.)
          ...(i === 3 ? { migration: { live: false, timeoutSeconds: 10 } } : {}),
        })
        .build(),
    );
  rt = new Runtime({
    store,
    providerFactory: createLibvirtProviderFactory(),
    registry,
    logger: createLogger({ level: process.env.VW_TEST_LOG ?? "silent" }),
    heartbeatIntervalMs: 500,
    unsafeMigration: true,
  });
  await rt.start();
  await eventually(
    () => store.list("VirtualMachine").every((v) => v.status?.phase === "Running"),
    "all running on the first host",
    120_000,
  );
  store.apply(hostRes(1));
  store.apply(hostRes(2));
  await eventually(() => store.list("Host").every((h) => h.status?.phase === "Ready"), "three hosts Ready");
  // During a live migration the target's QEMU exists, paused, until the switchover: the
  // invariant is about running guests, so the watcher asks libvirt for the domains' states.
  watch = watchRunningCopies(tb, 4);
}, 240_000);

afterAll(async () => {
  await watch?.stop();
  await rt?.stop(2000);
  await tb?.teardown();
}, 60_000);

describe("maintenance on real libvirt hosts", () => {
  it("moves the running VMs off a host in maintenance, live, and reports it drained", async () => {
    const source = tb.hosts[0]?.name as string;
    expect(store.list("VirtualMachine").every((v) => v.status?.host === source)).toBe(true);
    const before = guestsOf(tb);
    const t0 = Date.now();
    const h = store.get("Host", source) as Host;
    store.apply({ ...h, metadata: { ...h.metadata, generation: 2 }, spec: { ...h.spec, maintenance: true } });
    await eventually(() => cond(store.get("Host", source), "Drained")?.status === "True", "drained", 180_000);
    console.log(`host drained ${Date.now() - t0} ms after maintenance was set`);
    // Drained means nothing runs there any more; a cold-moved VM may still be starting elsewhere.
    await eventually(
      () =>
        store
          .list("VirtualMachine")
          .every((v) => v.status?.phase === "Running" && v.status.migration?.result === "Succeeded"),
      "every VM running at its target",
      60_000,
    );
    expect(store.get("Host", source)?.status?.phase).toBe("Maintenance");

    const after = guestsOf(tb);
    for (const v of store.list("VirtualMachine")) {
      const name = `default_${v.metadata.name}`;
      const m = v.status?.migration;
      console.log(`${v.metadata.name}: ${m?.result} to ${m?.targetHost}: ${m?.message}`);
      expect(v.status?.phase).toBe("Running");
      expect(v.status?.host).not.toBe(source);
      expect(m).toMatchObject({ reason: "Maintenance", sourceHost: source, targetHost: v.status?.host });
      expect(m?.result).toBe("Succeeded");
      expect(before.get(name)).toEqual([source]);
      expect(after.get(name)).toEqual([v.status?.host]);
      const p = rt.fleet.connection(v.status?.host as string)?.provider;
      const state = await p?.getDomainState(name);
      const live = v.spec.migration?.live !== false;
      // libvirt's word for it: the guest was migrated (memory and all), not booted afresh.
      expect(state).toEqual({ state: "running", reason: live ? "migrated" : "booted" });
      // The source forgot the domain (libvirt UNDEFINE_SOURCE, or the cold move).
      expect(await rt.fleet.connection(source)?.provider.getDomainState(name)).toBeUndefined();
      expect(v.status?.restartCount ?? 0).toBe(0);
    }
    const metrics = await registry.metrics();
    expect(metrics).toContain('virtwarden_migrations_total{reason="Maintenance",result="Succeeded"} 4');
    expect(watch.samples()).toBeGreaterThan(20);
    expect(watch.violations).toEqual([]);
  }, 240_000);

  it("takes VMs again once out of maintenance", async () => {
    const source = tb.hosts[0]?.name as string;
    const h = store.get("Host", source) as Host;
    store.apply({
      ...h,
      metadata: { ...h.metadata, generation: 3 },
      spec: { ...h.spec, maintenance: false },
    });
    await eventually(() => store.get("Host", source)?.status?.phase === "Ready", "Ready again");
    expect(cond(store.get("Host", source), "Drained")).toBeUndefined();
    expect(watch.violations).toEqual([]);
  }, 60_000);
});
