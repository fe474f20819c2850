/**
 * bench:snapshot — how long do snapshots take, alone and as coordinated groups?
 *
 * Real test bed: up to 16 network-namespace hosts with libvirtd and QEMU guests (64 MiB, 64 MiB
 * linked-clone disks) on a shared storage pool; the Runtime and reconcilers `virtwarden run` uses,
 * with an in-memory store. Every figure is wall time from creating the VirtualMachineSnapshot to
 * its status saying Succeeded (so it includes the controller's queueing, not only libvirt).
 *   single_*          one running VM, snapshotted `--runs` times one after another
 *   groupN_Kperhost_s a coordinated snapshot of N running VMs placed K per host (p50 of --runs);
 *                     its pause window (first pause to last resume) is groupN_Kperhost_pause_s
 * Snapshots of running VMs are internal qcow2 snapshots and include memory (libvirt cannot take
 * an internal disk-only snapshot of a running domain); per host at most 2 run at once
 * (maxParallelPerHost default).
 * Reference (issue 6): 3.0-3.8 s for a 4-16 VM global snapshot at 1 VM per host, over 31 s for
 * 4 VMs on one host.
 * Usage: npm run bench:snapshot [-- --runs N --hosts N]
 */
import { Registry } from "prom-client";
import type { VirtualMachineSnapshot } from "../src/api/types.js";
import { Runtime } from "../src/cli/runtime.js";
import { createLogger } from "../src/controller/log.js";
import { createLibvirtProviderFactory } from "../src/providers/libvirt/index.js";
import { testbedHost, vm } from "../test/support/fixtures.js";
import { MemoryStore } from "../test/support/memory-store.js";
import { startTestbed } from "../test/support/testbed/index.js";
import { arg, eventually, type Metrics, percentile, printResult, writeResult } from "./env.js";

const RUNS = arg("runs", 5);
const HOSTS = arg("hosts", 16);
const GROUPS = [4, 8, 16].filter((n) => n <= HOSTS * 4);
const PER_HOST = [1, 4];

const t0 = Date.now();
const tb = await startTestbed({ hosts: HOSTS, name: "snb" });
const store = new MemoryStore();
const rt = new Runtime({
  store,
  providerFactory: createLibvirtProviderFactory(),
  registry: new Registry(),
  logger: createLogger({ level: process.env.VW_BENCH_LOG ?? "silent" }),
  hostWarmupTimeoutMs: 120_000,
});
const metrics: Metrics = {};
let seq = 0;

try {
  for (const h of tb.hosts) {
    const r = testbedHost(h, { "bench/host": h.name });
    r.spec.overcommit = { cpu: 16 };
    store.apply(r);
  }
  await rt.start();
  await eventually(
    () => store.list("Host").every((h) => h.status?.phase === "Ready"),
    "hosts Ready",
    300_000,
  );
  console.log(`${HOSTS} hosts Ready after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const place = (names: string[], perHost: number, group?: string) => {
    names.forEach((n, i) => {
      const host = tb.hosts[Math.floor(i / perHost) % tb.hosts.length]?.name as string;
      store.apply(
        vm(n)
          .noFinalizer()
          .spec({
            resources: { cpu: 1, memory: "64Mi" },
            disks: [{ name: "root", size: "64Mi", source: { image: { name: "base.qcow2" } } }],
            placement: { hostSelector: { "bench/host": host } },
            ...(group ? { group } : {}),
          })
          .build(),
      );
    });
  };
  const running = (names: string[]) =>
    names.every((n) => store.get("VirtualMachine", `default/${n}`)?.status?.phase === "Running");

  /** Create a snapshot, wait for Succeeded; seconds and pause window. */
  const take = async (target: { vmName?: string; group?: string }) => {
    const name = `b${seq++}`;
    const snap: VirtualMachineSnapshot = {
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "VirtualMachineSnapshot",
      metadata: { name, namespace: "default" },
      spec: { ...target, type: "disk" },
    };
    const start = performance.now();
    store.apply(snap);
    await eventually(
      () =>
        ["Succeeded", "Failed"].includes(
          store.get("VirtualMachineSnapshot", `default/${name}`)?.status?.phase ?? "",
        ),
      `snapshot ${name}`,
      600_000,
    );
    const seconds = (performance.now() - start) / 1000;
    const st = store.get("VirtualMachineSnapshot", `default/${name}`)?.status;
    if (st?.phase !== "Succeeded") throw new Error(`snapshot ${name} failed: ${st?.error}`);
    return { seconds, pause: st.pauseWindowSeconds ?? 0, name };
  };

  const cleanup = async (vms: string[], snaps: string[]) => {
    for (const s of snaps) store.remove("VirtualMachineSnapshot", `default/${s}`);
    await eventually(
      () => snaps.every((s) => !store.get("VirtualMachineSnapshot", `default/${s}`)),
      "snapshots deleted",
      300_000,
    );
    for (const v of vms) store.remove("VirtualMachine", `default/${v}`);
    await eventually(
      () => vms.every((v) => rt.fleet.copiesOf(`default/${v}`).length === 0),
      "VMs removed",
      300_000,
    );
  };

  // --- one VM -------------------------------------------------------------------------------
  place(["single"], 1);
  await eventually(() => running(["single"]), "single running", 300_000);
  const singles: number[] = [];
  const singleNames: string[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await take({ vmName: "single" });
    singles.push(r.seconds);
    singleNames.push(r.name);
    console.log(`single run ${i + 1}: ${r.seconds.toFixed(2)} s`);
  }
  metrics.single_p50_s = { value: round(percentile(singles, 50)), unit: "s" };
  metrics.single_p95_s = { value: round(percentile(singles, 95)), unit: "s" };
  await cleanup(["single"], singleNames);

  // --- groups -------------------------------------------------------------------------------
  for (const perHost of PER_HOST) {
    for (const n of GROUPS) {
      if (Math.ceil(n / perHost) > HOSTS) continue;
      const group = `g${n}x${perHost}`;
      const names = Array.from({ length: n }, (_, i) => `${group}-${i}`);
      place(names, perHost, group);
      await eventually(() => running(names), `${group} running`, 600_000);
      const times: number[] = [];
      const pauses: number[] = [];
      const snaps: string[] = [];
      for (let i = 0; i < RUNS; i++) {
        const r = await take({ group });
        times.push(r.seconds);
        pauses.push(r.pause);
        snaps.push(r.name);
        console.log(
          `group ${n} at ${perHost}/host run ${i + 1}: ${r.seconds.toFixed(2)} s, paused ${r.pause.toFixed(2)} s`,
        );
      }
      metrics[`group${n}_${perHost}perhost_s`] = { value: round(percentile(times, 50)), unit: "s" };
      metrics[`group${n}_${perHost}perhost_pause_s`] = { value: round(percentile(pauses, 50)), unit: "s" };
      await cleanup(names, snaps);
    }
  }
} finally {
  await rt.stop(2000);
  await tb.teardown();
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}

printResult("snapshot", metrics);
const path = writeResult("snapshot", metrics, {
  runs: RUNS,
  hosts: HOSTS,
  guest: {
    memory: "64Mi",
    disk: "64Mi linked clone of base.qcow2",
    type: "disk (memory included: running VMs)",
  },
  maxParallelPerHost: 2,
  reference: "issue 6: 3.0-3.8 s for a 4-16 VM global snapshot at 1 VM/host; over 31 s for 4 VMs on one host",
});
console.log(`wrote ${path}`);
