/**
 * bench:failover — a host dies; how long until its VMs run elsewhere?
 *
 * Real test bed (default 5 runs): three network-namespace hosts with libvirtd and QEMU, a shared
 * storage pool, 20 VMs on the victim. The victim is powered off (libvirtd and its QEMUs
 * SIGKILLed); virtwarden detects it with its default heartbeat (1 s, 3 missed beats), fences it
 * with the exec agent driving the host's power switch, and starts the 20 VMs on the two others.
 * Per run:
 *   detect  = power-off -> fence agent called (the host judged dead)
 *   fence   = fence agent called -> power-off confirmed
 *   restart = confirmed -> the last of the 20 VMs started (its start call returned)
 *   total   = power-off -> all 20 running elsewhere
 *   floor   = afterwards, the same 20 domains destroyed and started again straight through
 *             libvirt, all at once, no controller: what libvirt and QEMU alone need here
 *
 * Where the restart time goes on this machine (2 CPUs, no KVM, measured with strace/perf): each
 * domain start costs QEMU about 0.7 CPU-s before the guest runs. Most of it is libvirt checking
 * the guest CPU (libvirt 9 asks QEMU for each of ~500 CPU properties with one qom-get each), and
 * QEMU's monitor reading QMP one byte per syscall (~48 KB, ~240k syscalls, slow in this
 * sandbox). Twenty starts on two CPUs take ~13 s whatever starts them; the controller adds the
 * difference between restart and floor.
 * Simulator (default 5 runs): the same controllers, 1,000 VMs on the victim, 10 survivors,
 * simulated hypervisor latencies ("realistic"), the sim fence agent.
 *
 * The controllers, reconcilers, scheduler and providers are the ones `virtwarden run` uses; the
 * store is in memory (the store is not what is measured here).
 * Target (issue 9): p50 total <= 5 s for 20 VMs with default settings.
 * Usage: npm run bench:failover [-- --runs N --vms N --sim-runs N --sim-vms N]
 */
import { Registry } from "prom-client";
import type { Host } from "../src/api/types.js";
import { Runtime } from "../src/cli/runtime.js";
import { createLogger } from "../src/controller/log.js";
import { createFenceAgentFactory, type FenceAgentFactory } from "../src/providers/fence/index.js";
import { createLibvirtProviderFactory } from "../src/providers/libvirt/index.js";
import { Simulator, simulatorFactory } from "../src/providers/sim/index.js";
import type { ProviderFactory } from "../src/providers/types.js";
import { hostResource, testbedHost, vm } from "../test/support/fixtures.js";
import { MemoryStore } from "../test/support/memory-store.js";
import { startTestbed } from "../test/support/testbed/index.js";
import { arg, eventually, type Metrics, percentile, printResult, writeResult } from "./env.js";

const RUNS = arg("runs", 5);
const VMS = arg("vms", 20);
const SIM_RUNS = arg("sim-runs", 5);
const SIM_VMS = arg("sim-vms", 1000);
const STARTS = arg("concurrent-starts", 0);

interface Run {
  detect: number;
  fence: number;
  restart: number;
  total: number;
  /** Real runs: the same domains started again straight through libvirt, all at once, no controller. */
  floor?: number;
}

/** Fence agents that note when they were called and when they confirmed. */
function timedAgents(
  inner: FenceAgentFactory,
  marks: { called?: number; confirmed?: number },
): FenceAgentFactory {
  return (host) => {
    const a = inner(host);
    if (!a) return a;
    return {
      kind: a.kind,
      fence: async (name, signal) => {
        marks.called ??= performance.now();
        await a.fence(name, signal);
        marks.confirmed ??= performance.now();
      },
    };
  };
}

function vms(n: number, memory: string) {
  return Array.from({ length: n }, (_, i) =>
    vm(`app-${i}`)
      .noFinalizer()
      .spec({
        resources: { cpu: 1, memory },
        disks: [{ name: "root", size: "64Mi", source: { image: { name: "base.qcow2" } } }],
      })
      .build(),
  );
}

/**
 * One failover: every VM placed on the first host (the only one at first), the others added,
 * then `kill()` at t0. Times come from the fence marks and from the VMs' lastRecovery.
 */
async function failover(opts: {
  store: MemoryStore;
  providers: ProviderFactory;
  agents: FenceAgentFactory;
  hosts: Host[];
  n: number;
  kill: () => void;
  vmWorkers?: number;
  timeoutMs: number;
}): Promise<Run> {
  const { store, n } = opts;
  const marks: { called?: number; confirmed?: number } = {};
  const [victim, ...others] = opts.hosts as [Host, ...Host[]];
  store.apply(victim);
  const rt = new Runtime({
    store,
    providerFactory: opts.providers,
    fenceAgents: timedAgents(opts.agents, marks),
    registry: new Registry(),
    // VW_BENCH_LOG=info|debug shows what the controllers did.
    logger: createLogger({ level: process.env.VW_BENCH_LOG ?? "silent" }),
    ...(opts.vmWorkers ? { vmWorkers: opts.vmWorkers } : {}),
    ...(STARTS > 0 ? { concurrentStartsPerHost: STARTS } : {}),
    // heartbeat: virtwarden's defaults (1 s interval, 3 missed beats)
  });
  try {
    await rt.start();
    const running = () => store.list("VirtualMachine").filter((v) => v.status?.phase === "Running").length;
    await eventually(() => running() === n, "all running on the victim", opts.timeoutMs);
    for (const h of others) store.apply(h);
    await eventually(
      () => store.list("Host").every((h) => h.status?.phase === "Ready"),
      "all hosts Ready",
      opts.timeoutMs,
    );
    // The survivors are not fresh: in a fleet they already run VMs (and their libvirtd has
    // probed QEMU's capabilities, which a fresh daemon does at its first start, for seconds).
    for (const h of others) {
      store.apply(
        vm(`warm-${h.metadata.name}`)
          .noFinalizer()
          .spec({
            resources: { cpu: 1, memory: "64Mi" },
            placement: { hostSelector: { "bench/host": h.metadata.name } },
          })
          .build(),
      );
    }
    await eventually(() => running() === n + others.length, "warm-up VMs running", opts.timeoutMs);
    const victimName = victim.metadata.name;
    const wall0 = Date.now();
    const t0 = performance.now();
    opts.kill();
    await eventually(
      () =>
        store
          .list("VirtualMachine")
          .filter((v) => !v.metadata.name.startsWith("warm-"))
          .every((v) => v.status?.host !== victimName && v.status?.lastRecovery?.result === "Succeeded"),
      "all recovered",
      opts.timeoutMs,
    );
    const lastStarted = Math.max(
      ...store
        .list("VirtualMachine")
        .filter((v) => !v.metadata.name.startsWith("warm-"))
        .map((v) => new Date(v.status?.lastRecovery?.finishedAt as string).getTime() - wall0),
    );
    if (process.env.VW_BENCH_LOG) {
      const starts = store
        .list("VirtualMachine")
        .filter((v) => !v.metadata.name.startsWith("warm-"))
        .map((v) => new Date(v.status?.lastRecovery?.finishedAt as string).getTime() - wall0)
        .sort((a, b) => a - b);
      console.log(`VMs started at (ms after the failure): ${starts.join(" ")}`);
    }
    const called = (marks.called ?? Number.NaN) - t0;
    const confirmed = (marks.confirmed ?? Number.NaN) - t0;
    return {
      detect: called / 1000,
      fence: (confirmed - called) / 1000,
      restart: (lastStarted - confirmed) / 1000,
      total: lastStarted / 1000,
    };
  } finally {
    await rt.stop(2000);
  }
}

async function realRun(): Promise<Run> {
  const tb = await startTestbed({ hosts: 3, name: "fo" });
  try {
    const store = new MemoryStore();
    for (const v of vms(VMS, "64Mi")) store.apply(v);
    const hosts = tb.hosts.map((h) => {
      const r = testbedHost(h, { "bench/host": h.name });
      r.spec.fencing = { agent: "exec", command: h.fenceCommand, timeoutSeconds: 10 };
      // The namespace hosts share this machine's two CPUs; the idle test guests need little.
      r.spec.overcommit = { cpu: 16 };
      return r;
    });
    const run = await failover({
      store,
      providers: createLibvirtProviderFactory(),
      agents: createFenceAgentFactory({ readSecret: (ref) => store.readSecret(ref) }),
      hosts,
      n: VMS,
      kill: () => tb.hosts[0]?.powerOff(),
      timeoutMs: 180_000,
    });
    return { ...run, floor: await restartFloor(tb.hosts.slice(1).map((h) => h.uri)) };
  } finally {
    await tb.teardown();
  }
}

/**
 * The floor under `restart`: the recovered domains destroyed, then started again on the same
 * hosts straight through libvirt, all at once, with no controller in between. What remains is
 * libvirt's and QEMU's own cost per start on this machine.
 */
async function restartFloor(uris: string[]): Promise<number> {
  const providers = uris.map((u) => createLibvirtProviderFactory()(u));
  try {
    await Promise.all(providers.map((p) => p.connect()));
    const domains = (
      await Promise.all(
        providers.map(async (p) =>
          (
            await p.listDomains()
          )
            .filter((d) => d.name.startsWith("default_app-") && d.state.state === "running")
            .map((d) => ({ p, name: d.name })),
        ),
      )
    ).flat();
    await Promise.all(domains.map((d) => d.p.destroyDomain(d.name)));
    const t0 = performance.now();
    await Promise.all(domains.map((d) => d.p.startDomain(d.name)));
    return (performance.now() - t0) / 1000;
  } finally {
    await Promise.all(providers.map((p) => p.close()));
  }
}

async function simRun(seed: number): Promise<Run> {
  const sim = new Simulator({
    seed,
    latency: "realistic",
    baseImages: [{ pool: "default", name: "base.qcow2", capacityBytes: 1024 ** 3 }],
  });
  const store = new MemoryStore();
  for (const v of vms(SIM_VMS, "1Gi")) store.apply(v);
  const hosts: Host[] = [];
  for (let i = 0; i <= 10; i++) {
    sim.addHost(`s${i}`, { cpus: i === 0 ? 1100 : 128, memoryBytes: (i === 0 ? 1200 : 256) * 1024 ** 3 });
    const r = hostResource(`s${i}`, `sim://s${i}`, { "bench/host": `s${i}` });
    r.spec.fencing = { agent: "sim" };
    hosts.push(r);
  }
  return failover({
    store,
    providers: simulatorFactory(sim),
    agents: createFenceAgentFactory({
      readSecret: (ref) => store.readSecret(ref),
      simPower: sim,
      simHostName: (h) => h.spec.uri.replace("sim://", ""),
    }),
    hosts,
    n: SIM_VMS,
    kill: () => sim.crashHost("s0"),
    timeoutMs: 120_000,
  });
}

const round = (x: number) => Math.round(x * 100) / 100;
const summary = (runs: Run[], k: Exclude<keyof Run, "floor">, p = 50) =>
  round(
    percentile(
      runs.map((r) => r[k]),
      p,
    ),
  );

const real: Run[] = [];
for (let i = 0; i < RUNS; i++) {
  const r = await realRun();
  real.push(r);
  console.log(
    `real run ${i + 1}/${RUNS}: detect ${r.detect.toFixed(2)} s, fence ${r.fence.toFixed(2)} s, restart ${r.restart.toFixed(2)} s, total ${r.total.toFixed(2)} s; libvirt alone restarts them in ${r.floor?.toFixed(2)} s`,
  );
}
const simRuns: Run[] = [];
for (let i = 0; i < SIM_RUNS; i++) {
  const r = await simRun(i + 1);
  simRuns.push(r);
  console.log(
    `sim run ${i + 1}/${SIM_RUNS} (${SIM_VMS} VMs): detect ${r.detect.toFixed(2)} s, fence ${r.fence.toFixed(2)} s, restart ${r.restart.toFixed(2)} s, total ${r.total.toFixed(2)} s`,
  );
}

const metrics: Metrics = {
  vms: { value: VMS, unit: "count" },
  runs: { value: RUNS, unit: "count" },
  detect_p50_s: { value: summary(real, "detect"), unit: "s" },
  fence_p50_s: { value: summary(real, "fence"), unit: "s" },
  restart_p50_s: { value: summary(real, "restart"), unit: "s" },
  restart_floor_p50_s: {
    value: round(
      percentile(
        real.map((r) => r.floor ?? Number.NaN),
        50,
      ),
    ),
    unit: "s",
  },
  total_p50_s: { value: summary(real, "total"), unit: "s" },
  total_p95_s: { value: summary(real, "total", 95), unit: "s" },
  sim_vms: { value: SIM_VMS, unit: "count" },
  sim_runs: { value: SIM_RUNS, unit: "count" },
  sim_detect_p50_s: { value: summary(simRuns, "detect"), unit: "s" },
  sim_restart_p50_s: { value: summary(simRuns, "restart"), unit: "s" },
  sim_total_p50_s: { value: summary(simRuns, "total"), unit: "s" },
  sim_total_p95_s: { value: summary(simRuns, "total", 95), unit: "s" },
};
printResult("failover", metrics);
const path = writeResult("failover", metrics, {
  settings: { heartbeatIntervalS: 1, missedBeats: 3, fence: "exec (test bed power switch)", hosts: 3 },
  target: { total_p50_s: 5 },
  runs: { real, sim: simRuns },
});
console.log(`\nwritten to ${path}`);
process.exit(0);
