/**
 * The host-failure bed of the real-libvirt tests: three test-bed hosts with fast heartbeats
 * (0.5 s, 3 missed beats) and a fence agent each, a MemoryStore, and a Runtime on the libvirt
 * provider. The VMs are declared while only the first host exists, so all of them run there; the
 * other two are declared once they do, and the bed is returned when all three are Ready.
 *
 * Used by libvirt-failover.test.ts and libvirt-checkpoint-auto.test.ts. Everything started is
 * registered in the caller's cleanups, which run in reverse order.
 */
import { Registry } from "prom-client";
import type { Host, VirtualMachine } from "../../../src/api/types.js";
import { Runtime } from "../../../src/cli/runtime.js";
import { createLogger } from "../../../src/controller/log.js";
import { createFenceAgentFactory } from "../../../src/providers/fence/index.js";
import { createLibvirtProviderFactory } from "../../../src/providers/libvirt/index.js";
import { eventuallyWith } from "../eventually.js";
import { testbedHost, vm } from "../fixtures.js";
import { MemoryStore } from "../memory-store.js";
import { startTestbed, type Testbed } from "./index.js";
import { guestsOf } from "./watch.js";

export type Cleanups = (() => Promise<void> | void)[];
export type Fencing = NonNullable<Host["spec"]["fencing"]>;

/** The polls of the HA bed: a minute, every 25 ms (test/support/eventually.ts). */
export const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 25 });

/** Every 20 ms, the guests whose QEMU runs on more than one host (QEMU's pid files and /proc). */
export function splitBrainWatcher(tb: Testbed, cleanups: Cleanups): string[] {
  const violations: string[] = [];
  const timer = setInterval(() => {
    for (const [g, hosts] of guestsOf(tb)) if (hosts.length > 1) violations.push(`${g}: ${hosts.join(",")}`);
  }, 20);
  cleanups.push(() => clearInterval(timer));
  return violations;
}

export interface HaBedOptions {
  /** How many VMs (app-0 .. app-N-1), 64 MiB and one 64 MiB disk from the bed's base image each. */
  vms: number;
  fencing: (h: Testbed["hosts"][number]) => Fencing;
  extra?: Partial<VirtualMachine["spec"]>;
  labels?: Record<string, string>;
  hostTweak?: (i: number, r: Host) => void;
}

export async function startHaBed(cleanups: Cleanups, opts: HaBedOptions) {
  const tb = await startTestbed({ hosts: 3, name: "ha" });
  cleanups.push(() => tb.teardown());
  const store = new MemoryStore();
  const hostRes = (i: number) => {
    const h = tb.hosts[i] as Testbed["hosts"][number];
    const r = testbedHost(h);
    r.spec.fencing = opts.fencing(h);
    r.spec.heartbeat = { intervalSeconds: 0.5, missedBeats: 3 };
    // The namespace hosts share this machine's few CPUs; the idle test guests need little.
    r.spec.overcommit = { cpu: 16 };
    opts.hostTweak?.(i, r);
    return r;
  };
  store.apply(hostRes(0));
  for (let i = 0; i < opts.vms; i++) {
    store.apply(
      vm(`app-${i}`)
        .noFinalizer()
        .labels(opts.labels ?? {})
        .spec({
          resources: { cpu: 1, memory: "64Mi" },
          disks: [{ name: "root", size: "64Mi", source: { image: { name: "base.qcow2" } } }],
          ...opts.extra,
        })
        .build(),
    );
  }
  const registry = new Registry();
  const rt = new Runtime({
    store,
    providerFactory: createLibvirtProviderFactory(),
    fenceAgents: createFenceAgentFactory({ readSecret: (ref) => store.readSecret(ref) }),
    registry,
    logger: createLogger({ level: process.env.VW_TEST_LOG ?? "silent" }),
    heartbeatIntervalMs: 500,
  });
  cleanups.push(() => rt.stop(2000));
  await rt.start();
  const running = () => store.list("VirtualMachine").filter((v) => v.status?.phase === "Running");
  const t0 = Date.now();
  await eventually(() => running().length === opts.vms, "all running on the first host", 120_000).catch(
    (e) => {
      for (const v of store.list("VirtualMachine").slice(0, 1))
        console.log(v.metadata.name, v.status?.phase, JSON.stringify(v.status?.conditions));
      for (const h of store.list("Host")) console.log(h.metadata.name, JSON.stringify(h.status));
      throw e;
    },
  );
  console.log(`${opts.vms} VMs running on the first host after ${Date.now() - t0} ms`);
  store.apply(hostRes(1));
  store.apply(hostRes(2));
  await eventually(() => store.list("Host").every((h) => h.status?.phase === "Ready"), "three hosts Ready");
  console.log(`three hosts Ready after ${Date.now() - t0} ms`);
  return { tb, store, running, rt, registry };
}

export const onHost = (store: MemoryStore, host: string) =>
  store.list("VirtualMachine").filter((v) => v.status?.host === host);
