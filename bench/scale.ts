/**
 * bench:scale — 10,000 VMs on 500 simulated hosts, from apply (manifests written to the watched
 * directory, controller started) to every VM Running, through the real standalone path: FileStore
 * with its crash-safe journal, the host/network/VM controllers, the scheduler, and the simulator
 * with latency "none" (so the figure is virtwarden's own cost, not simulated hypervisor time).
 *
 * Target (DESIGN.md): converge <= 15 s, peak RSS <= 400 MB. Then the steady state: the
 * controller's CPU over IDLE_S seconds with everything Running (every host beaten at the product's
 * default heartbeat, or --heartbeat-ms). Only a run at the defaults is recorded.
 * Usage: npm run bench:scale [-- --vms N --hosts N --heartbeat-ms MS]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { Runtime } from "../src/cli/runtime.js";
import { silentLogger } from "../src/controller/log.js";
import { Simulator, simulatorFactory } from "../src/providers/sim/index.js";
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from "../src/reconcilers/host/heartbeat.js";
import { FileStore } from "../src/store/files/index.js";
import { arg, type Metrics, printResult, writeResult } from "./env.js";

const VMS = arg("vms", 10_000);
const HOSTS = arg("hosts", 500);
const HEARTBEAT_MS = arg("heartbeat-ms", DEFAULT_HEARTBEAT_INTERVAL_MS);
const IDLE_S = 10;

const root = mkdtempSync(join(tmpdir(), "vw-bench-scale-"));
const dir = join(root, "manifests");
mkdirSync(dir);
const hosts: string[] = [];
for (let i = 0; i < HOSTS; i++) {
  hosts.push(
    `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata:\n  name: h${i}\n  labels: {rack: r${i % 20}}\nspec:\n  uri: sim://h${i}\n  failureDomain: rack-${i % 20}\n`,
  );
}
writeFileSync(join(dir, "hosts.yaml"), hosts.join("---\n"));
const perFile = 1000;
for (let f = 0; f < VMS / perFile; f++) {
  const docs: string[] = [];
  for (let i = f * perFile; i < Math.min(VMS, (f + 1) * perFile); i++) {
    docs.push(
      `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: vm-${i}\n  labels: {app: app-${i % 100}}\nspec:\n  resources: {cpu: 1, memory: ${i % 3 === 0 ? "2Gi" : "1Gi"}}\n  placement: {strategy: ${i % 2 ? "spread" : "pack"}}\n`,
    );
  }
  writeFileSync(join(dir, `vms-${f}.yaml`), docs.join("---\n"));
}

const sim = new Simulator({
  latency: "none",
  autoCreateHosts: true,
  defaultHost: { cpus: 64, memoryBytes: 256 * 1024 ** 3 },
});
const store = new FileStore({ manifestDir: dir, stateDir: join(root, "state"), logger: silentLogger });
const registry = new Registry();
const runtime = new Runtime({
  store,
  providerFactory: simulatorFactory(sim),
  registry,
  logger: silentLogger,
  vmWorkers: 32,
  hostWorkers: 16,
  heartbeatIntervalMs: HEARTBEAT_MS,
});

let peakRss = process.memoryUsage().rss;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 25);

const cpu0 = process.cpuUsage();
const t0 = performance.now();
await runtime.start();
let running = 0;
for (;;) {
  running = 0;
  for (const v of store.list("VirtualMachine")) if (v.status?.phase === "Running") running++;
  if (running === VMS) break;
  if (performance.now() - t0 > 300_000) break;
  await new Promise((r) => setTimeout(r, 20));
}
const convergeS = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
clearInterval(sampler);
peakRss = Math.max(peakRss, process.memoryUsage().rss);

// The steady state: what beating every host costs when nothing else happens.
const hostReconciles = async (): Promise<number> => {
  const m = (await registry.getSingleMetric("virtwarden_reconcile_total")?.get())?.values ?? [];
  return m.filter((v) => v.labels.controller === "host").reduce((a, v) => a + v.value, 0);
};
const beats0 = await hostReconciles();
const idle0 = process.cpuUsage();
const idleT0 = performance.now();
await new Promise((r) => setTimeout(r, IDLE_S * 1000));
const idle = process.cpuUsage(idle0);
const idleWallS = (performance.now() - idleT0) / 1000;
const idleCpuPerS = (idle.user + idle.system) / 1e6 / idleWallS;
const beatsPerHostS = ((await hostReconciles()) - beats0) / HOSTS / idleWallS;

// Correctness of what was measured: each VM runs exactly once.
let duplicates = 0;
const seen = new Set<string>();
for (const h of sim.hosts()) for (const d of h.domains.keys()) seen.has(d) ? duplicates++ : seen.add(d);
await runtime.stop(1000);
rmSync(root, { recursive: true, force: true });

const metrics: Metrics = {
  vms: { value: VMS, unit: "count" },
  hosts: { value: HOSTS, unit: "count" },
  running: { value: running, unit: "count" },
  duplicate_domains: { value: duplicates, unit: "count" },
  converge_s: { value: Math.round(convergeS * 100) / 100, unit: "s" },
  cpu_s: { value: Math.round(((cpu.user + cpu.system) / 1e6) * 100) / 100, unit: "s" },
  peak_rss_mb: { value: Math.round(peakRss / 1024 ** 2), unit: "MB" },
  heartbeat_ms: { value: HEARTBEAT_MS, unit: "ms" },
  idle_cpu_per_s: { value: Math.round(idleCpuPerS * 1000) / 1000, unit: "CPU-s/s" },
  idle_beats_per_host_s: { value: Math.round(beatsPerHostS * 100) / 100, unit: "1/s" },
};
printResult("scale", metrics);
if (VMS === 10_000 && HOSTS === 500 && HEARTBEAT_MS === DEFAULT_HEARTBEAT_INTERVAL_MS)
  console.log(
    `  written to ${writeResult("scale", metrics, { target: { converge_s: 15, peak_rss_mb: 400 } })}`,
  );
if (running !== VMS || duplicates > 0) {
  console.error(`FAILED: ${running}/${VMS} running, ${duplicates} duplicate domains`);
  process.exit(1);
}
