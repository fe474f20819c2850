/**
 * bench:consolidation — how close consolidation gets to the fewest hosts, and at what cost in
 * migrations. On the simulator (the same controllers as `virtwarden run`): 40 hosts (64 CPUs,
 * 256 GiB, CPU overcommit 4), 600 VMs of mixed sizes (1-8 vCPUs, 2-16 GiB) first spread over
 * all of them; then every host allows power-off and consolidation runs until it stops finding
 * a host to empty. Twice: keeping the N-1 failover capacity (the default), and without.
 *
 * Figures per variant:
 *   active_hosts           hosts left on
 *   lower_bound_hosts      the bin-packing lower bound for the VMs' CPU and memory
 *   ratio                  active / lower bound (DESIGN target: within 10%, i.e. <= 1.1)
 *   migrations             VMs moved
 *   min_migrations         the fewest moves that could empty as many hosts (the VMs on the
 *                          least-populated hosts that were switched off)
 *   converge_s             from the first round to the last host powered off
 * Usage: npm run bench:consolidation [-- --hosts N --vms N]
 */
import { Registry } from "prom-client";
import type { Host, VirtualMachine } from "../src/api/types.js";
import { Runtime } from "../src/cli/runtime.js";
import { silentLogger } from "../src/controller/log.js";
import { createPowerAgentFactory } from "../src/providers/power/index.js";
import { NO_LATENCY, prng, Simulator, simulatorFactory } from "../src/providers/sim/index.js";
import { activeHostsLowerBound } from "../src/scheduler/consolidation.js";
import { MemoryStore } from "../test/support/memory-store.js";
import { arg, eventually, type Metrics, printResult, writeResult } from "./env.js";

const HOSTS = arg("hosts", 40);
const VMS = arg("vms", 600);
const GiB = 1024 ** 3;

interface Outcome {
  active: number;
  lowerBound: number;
  migrations: number;
  minMigrations: number;
  convergeS: number;
}

async function run(keepFailoverCapacity: boolean): Promise<Outcome> {
  const sim = new Simulator({
    seed: 11,
    latency: { ...NO_LATENCY, migrateMs: 20 },
    autoCreateHosts: false,
  });
  const store = new MemoryStore();
  const hosts: Host[] = [];
  for (let i = 0; i < HOSTS; i++) {
    sim.addHost(`h${i}`, { cpus: 64, memoryBytes: 256 * GiB });
    hosts.push({
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "Host",
      metadata: { name: `h${i}`, uid: `uid-h${i}`, generation: 1, labels: {} },
      spec: { uri: `sim://h${i}`, power: { agent: "sim" } },
    });
  }
  for (const h of hosts) store.apply(h);
  const rand = prng(7);
  const vms: VirtualMachine[] = [];
  for (let i = 0; i < VMS; i++) {
    const cpu = 1 + Math.floor(rand() * 8);
    const mem = 2 + Math.floor(rand() * 15);
    vms.push({
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "VirtualMachine",
      metadata: { name: `vm-${i}`, namespace: "default", uid: `uid-vm-${i}`, generation: 1, labels: {} },
      spec: { resources: { cpu, memory: `${mem}Gi` }, placement: { strategy: "spread" } },
    });
  }
  for (const v of vms) store.apply(v);
  const simHostName = (h: Host) => h.spec.uri.replace("sim://", "");
  const rt = new Runtime({
    store,
    providerFactory: simulatorFactory(sim),
    powerAgents: createPowerAgentFactory({ readSecret: async () => ({}), simPower: sim, simHostName }),
    registry: new Registry(),
    logger: silentLogger,
    heartbeatIntervalMs: 200,
    failoverCheckIntervalMs: 500,
    consolidation: { intervalMs: 100, keepFailoverCapacity },
    concurrentMigrationsPerHost: 4,
  });
  try {
    await rt.start();
    const running = () => store.list("VirtualMachine").filter((v) => v.status?.phase === "Running").length;
    await eventually(() => running() === VMS, "all VMs running, spread", 120_000);
    const before = new Map(
      store.list("VirtualMachine").map((v) => [v.metadata.name, v.status?.host as string]),
    );
    const perHostBefore = new Map<string, number>();
    for (const h of before.values()) perHostBefore.set(h, (perHostBefore.get(h) ?? 0) + 1);
    // Now every host may be switched off when idle.
    for (const h of hosts)
      store.apply({
        ...h,
        metadata: { ...h.metadata, generation: 2 },
        spec: { ...h.spec, allowPowerOff: true },
      });
    const t0 = performance.now();
    let lastChange = performance.now();
    let lastOff = 0;
    let lastOffAt = t0;
    for (;;) {
      await new Promise((r) => setTimeout(r, 200));
      const off = store.list("Host").filter((h) => h.status?.phase === "PoweredOff").length;
      const busy =
        store
          .list("Host")
          .some((h) => h.status?.consolidation && h.status.consolidation.state !== "PoweredOff") ||
        store.list("VirtualMachine").some((v) => v.status?.phase !== "Running");
      if (off !== lastOff || busy) lastChange = performance.now();
      if (off !== lastOff) lastOffAt = performance.now();
      lastOff = off;
      // Settled: nothing moved for 3 s.
      if (performance.now() - lastChange > 3_000) break;
      if (performance.now() - t0 > 600_000) throw new Error("consolidation did not settle within 10 min");
    }
    const vmsNow = store.list("VirtualMachine");
    if (vmsNow.some((v) => v.status?.phase !== "Running"))
      throw new Error("a VM is not running after consolidation");
    let duplicates = 0;
    const seen = new Set<string>();
    for (const h of sim.hosts())
      for (const [d, s] of h.domains)
        if (s.state.state === "running") seen.has(d) ? duplicates++ : seen.add(d);
    if (duplicates > 0) throw new Error(`${duplicates} VMs run twice`);
    const migrations = vmsNow.filter((v) => v.status?.host !== before.get(v.metadata.name)).length;
    const offHosts = new Set(
      store
        .list("Host")
        .filter((h) => h.status?.phase === "PoweredOff")
        .map((h) => h.metadata.name),
    );
    // The fewest moves that empty as many hosts: the least-populated hosts' VMs.
    const counts = [...perHostBefore.values()].sort((a, b) => a - b);
    const minMigrations = counts.slice(0, offHosts.size).reduce((a, b) => a + b, 0);
    const demand = { cpuMilli: 0, memoryBytes: 0 };
    for (const c of rt.fleet.candidates()) {
      demand.cpuMilli += c.allocated.cpuMilli;
      demand.memoryBytes += c.allocated.memoryBytes;
    }
    return {
      active: HOSTS - offHosts.size,
      lowerBound: activeHostsLowerBound(rt.fleet.candidates(), demand),
      migrations,
      minMigrations,
      convergeS: (lastOffAt - t0) / 1000,
    };
  } finally {
    await rt.stop(1000);
  }
}

const n1 = await run(true);
console.log(
  `keeping N-1: ${n1.active} hosts on (lower bound ${n1.lowerBound}), ${n1.migrations} migrations (fewest possible ${n1.minMigrations}), ${n1.convergeS.toFixed(1)} s`,
);
const plain = await run(false);
console.log(
  `without N-1: ${plain.active} hosts on (lower bound ${plain.lowerBound}), ${plain.migrations} migrations (fewest possible ${plain.minMigrations}), ${plain.convergeS.toFixed(1)} s`,
);
const r2 = (x: number) => Math.round(x * 100) / 100;
const metrics: Metrics = {
  hosts: { value: HOSTS, unit: "count" },
  vms: { value: VMS, unit: "count" },
  active_hosts: { value: plain.active, unit: "count" },
  lower_bound_hosts: { value: plain.lowerBound, unit: "count" },
  ratio: { value: r2(plain.active / plain.lowerBound), unit: "x" },
  migrations: { value: plain.migrations, unit: "count" },
  min_migrations: { value: plain.minMigrations, unit: "count" },
  converge_s: { value: r2(plain.convergeS), unit: "s" },
  n1_active_hosts: { value: n1.active, unit: "count" },
  n1_ratio: { value: r2(n1.active / n1.lowerBound), unit: "x" },
  n1_migrations: { value: n1.migrations, unit: "count" },
  n1_min_migrations: { value: n1.minMigrations, unit: "count" },
  n1_converge_s: { value: r2(n1.convergeS), unit: "s" },
};
printResult("consolidation", metrics);
console.log(`\nwritten to ${writeResult("consolidation", metrics, { target: { ratio: 1.1 } })}`);
process.exit(0);
