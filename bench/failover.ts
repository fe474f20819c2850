/**
 * bench:failover — a host dies; how long until its VMs run elsewhere? Measured on the product,
 * side by side with Pacemaker in the same run.
 *
 * Real test bed (default 5 runs): three network-namespace hosts with libvirtd and QEMU, a shared
 * storage pool, 20 VMs on the victim. `virtwarden run` runs as its own process (standalone: a
 * manifests directory and its FileStore journal in a state dir), outside the hosts, with its
 * default heartbeat (0.25 s, 3 missed beats) and the exec fence agent driving the bed's power switch
 * (SIGKILL by pid: as instant as the peer's fence_pmk). The victim is powered off (libvirtd and
 * its QEMUs SIGKILLed, its link down). Per run:
 *   total   = power-off -> all 20 running on the survivors, as the peer's own poller sees it
 *             (python3-libvirt, persistent connections, every 100 ms: the same definition and
 *             the same poll cost on both sides)
 *   detect  = power-off -> the victim judged dead (its HostFencing / HostFenced event)
 *   fence   = judged dead -> fenced (the Host's status.fencedAt)
 *   restart = fenced -> the last VM's recovery finished (its status.lastRecovery.finishedAt)
 *   CPU-s   = from just before the power-off to 2 s after all ran, read from /proc: the
 *             controller, the survivors' QEMUs and libvirtds
 *   floor   = afterwards, the controller stopped, the same 20 domains destroyed and started again
 *             straight through libvirt, all at once: what libvirt and QEMU alone need here
 * The guests are the peer's: 1 vCPU, 64 MiB, an empty 32 MiB qcow2 disk (nothing to boot: the
 * clock stops when libvirt reports them running), of the domain type the test bed chose (TCG on
 * a machine where KVM guests misbehave), and the peer is told to use the same type.
 *
 * `--peer pacemaker` (fairness rules in ../shared/peer-pacemaker/README.md): after each of our
 * runs, one run of the Pacemaker + Corosync + VirtualDomain bed of ../shared/peer-pacemaker
 * (`--peer-dir`), driven by its own scripts from a scratch copy: a bed built from nothing,
 * `--peer-profile` (default tuned-nothrottle: token 1000 ms, Pacemaker's action throttle off),
 * measured, its survivors' CPU read the same way, torn down. Both sides and the ratio of the
 * medians (`ratio_vs_pacemaker` = Pacemaker / virtwarden) are recorded.
 *
 * Simulator (default 5 runs): 1,000 VMs on the victim, 10 survivors, simulated hypervisor
 * latencies ("realistic"), the sim fence agent; the Runtime in-process with an in-memory store
 * (what it measures is the controllers at that size, not the product's process).
 * Target (issue 16): p50 total <= 5 s for 20 VMs with default settings, >= 2x faster than the peer.
 * `--kube-runs N`: after each of the first N standalone runs, the same failover with `virtwarden
 * run --kubernetes` against a real kube-apiserver + etcd started for the run (resources applied
 * and read back with kubectl, every status write through etcd): `kube_*` and the ratio
 * `kube_vs_standalone`. `--out NAME` writes bench/results/NAME.json instead (the timeline is left).
 * Usage: npm run bench:failover [-- --runs N --vms N --sim-runs N --sim-vms N --settle S
 *        --peer pacemaker --peer-profile P --peer-dir DIR --kube-runs N --out NAME]
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Registry } from "prom-client";
import { stringify } from "yaml";
import type { Host } from "../src/api/types.js";
import { Runtime } from "../src/cli/runtime.js";
import { createLogger } from "../src/controller/log.js";
import { createFenceAgentFactory, type FenceAgentFactory } from "../src/providers/fence/index.js";
import { createLibvirtProviderFactory } from "../src/providers/libvirt/index.js";
import { Simulator, simulatorFactory } from "../src/providers/sim/index.js";
import type { ProviderFactory } from "../src/providers/types.js";
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_MISSED_BEATS } from "../src/reconcilers/host/heartbeat.js";
import { Controller } from "../test/chaos/real/controller.js";
import { hostResource, vm } from "../test/support/fixtures.js";
import { startKubeApiServer } from "../test/support/kube/apiserver.js";
import { MemoryStore } from "../test/support/memory-store.js";
import { startTestbed, type TestHost } from "../test/support/testbed/index.js";
import { arg, eventually, type Metrics, percentile, printResult, writeResult } from "./env.js";
import {
  cpuBetween,
  loadavg1,
  namedNetns,
  PacemakerPeer,
  type PeerRun,
  peerPoller,
  sampleCpu,
} from "./failover-bed.js";
import { type ProductTimeline, renderTimeline, type TimelineRow } from "./failover-timeline.js";

const RUNS = arg("runs", 5);
const VMS = arg("vms", 20);
const SIM_RUNS = arg("sim-runs", 5);
const SIM_VMS = arg("sim-vms", 1000);
/** Runs of `virtwarden run --kubernetes` (a real kube-apiserver + etcd), each after a standalone run. */
const KUBE_RUNS = arg("kube-runs", 0);
const STARTS = arg("concurrent-starts", 0);
/** Seconds between the bed being ready and the power-off (the peer's setup waits 20 s). */
const SETTLE_S = arg("settle", 20);
const opt = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const PEER = opt("peer");
const PEER_DIR = opt("peer-dir") ?? join(import.meta.dirname, "..", "..", "shared", "peer-pacemaker");
const PEER_PROFILE = opt("peer-profile") ?? "tuned-nothrottle";
/** The result's name (bench/results/NAME.json); another name than failover leaves its timeline alone. */
const OUT = opt("out") ?? "failover";
if (PEER !== undefined && PEER !== "pacemaker") throw new Error(`--peer ${PEER}: only "pacemaker" is known`);

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
    // heartbeat: virtwarden's defaults (DEFAULT_HEARTBEAT_INTERVAL_MS, 3 missed beats)
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

interface ProductRun extends Run {
  /** Power-off -> the last VM's recovery recorded finished in its status (its start call returned). */
  recorded: number;
  loadavg1AtT0: number;
  /** CPU-s from just before the power-off to 2 s after all ran, by role (controller, qemu, libvirtd). */
  cpu: Record<string, number>;
  domainType: string;
  timeline: ProductTimeline;
}

const API = "virtwarden.io/v1alpha1";

interface ViewObject {
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string };
  status?: {
    phase?: string;
    host?: string;
    fencedAt?: string;
    unreachableAt?: string;
    lastRecovery?: { result?: string; failedAt?: string; detectedAt?: string; finishedAt?: string };
  };
}
interface View {
  resources: ViewObject[];
  events: {
    regarding: { kind: string; name: string };
    reason: string;
    firstTime: string;
    lastTime: string;
  }[];
}

/**
 * Where the product runs for a failover: standalone (`virtwarden run DIR --state-dir`, its
 * FileStore journal; the resources written as manifests, read back from view.json) or Kubernetes
 * (`virtwarden run --kubernetes` against a real kube-apiserver + etcd started for the run; the
 * resources applied and read back with kubectl, so every status write went through etcd).
 */
interface Side {
  readonly mode: "standalone" | "kubernetes";
  pid(): number | undefined;
  start(): Promise<void>;
  writeHosts(docs: object[]): Promise<void>;
  writeVMs(docs: object[]): Promise<void>;
  /** The resources (and, standalone, the events) as the store holds them now. */
  view(): Promise<View>;
  kill(): Promise<void>;
  close(): Promise<void>;
}

function standaloneSide(root: string): Side {
  const manifests = join(root, "manifests");
  const stateDir = join(root, "state");
  mkdirSync(join(manifests, "vms"), { recursive: true });
  mkdirSync(stateDir);
  const ctl = new Controller({ manifestDir: manifests, stateDir, logFile: join(root, "controller.log") });
  return {
    mode: "standalone",
    pid: () => ctl.pid,
    start: async () => ctl.start(),
    writeHosts: async (docs) =>
      writeFileSync(join(manifests, "hosts.yaml"), docs.map((d) => stringify(d)).join("---\n")),
    writeVMs: async (docs) => {
      for (const d of docs)
        writeFileSync(
          join(manifests, "vms", `${(d as { metadata: { name: string } }).metadata.name}.yaml`),
          stringify(d),
        );
    },
    view: async () => readView(stateDir),
    kill: () => ctl.kill(),
    close: () => ctl.stop(),
  };
}

async function kubernetesSide(root: string): Promise<Side> {
  const kube = await startKubeApiServer();
  const kubectl = (args: string[], input?: string) => {
    const r = kube.kubectl(args, input !== undefined ? { input } : {});
    if (r.status !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  kubectl(["apply", "-k", join(import.meta.dirname, "..", "crds")]);
  kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  // Where the leader Lease lives (manifests/ creates it in a cluster; --namespace's default).
  kubectl(["create", "namespace", "virtwarden-system"]);
  const ctl = new Controller({
    manifestDir: "",
    stateDir: "",
    logFile: join(root, "controller.log"),
    argv: ["run", "--kubernetes", "--kubeconfig", kube.kubeconfig, "--metrics-addr", "127.0.0.1:0"],
  });
  const apply = async (docs: object[]) => {
    kubectl(
      ["apply", "--server-side", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items: docs }),
    );
  };
  return {
    mode: "kubernetes",
    pid: () => ctl.pid,
    start: async () => ctl.start(),
    writeHosts: apply,
    writeVMs: apply,
    view: async () => {
      const list = (plural: string) =>
        (JSON.parse(kubectl(["get", plural, "-A", "-o", "json"])) as { items: ViewObject[] }).items;
      return {
        resources: [
          ...list("hosts.virtwarden.io").map((o) => ({ ...o, kind: "Host" })),
          ...list("virtualmachines.virtwarden.io").map((o) => ({ ...o, kind: "VirtualMachine" })),
        ],
        // Events are read in standalone mode only (the timeline's placement marks).
        events: [],
      };
    },
    kill: () => ctl.kill(),
    close: async () => {
      await ctl.stop();
      await kube.stop();
    },
  };
}

function readView(stateDir: string): View {
  try {
    return JSON.parse(readFileSync(join(stateDir, "view.json"), "utf8")) as View;
  } catch {
    return { resources: [], events: [] };
  }
}

/**
 * One failover of the product: `virtwarden run` as its own process (standalone, its FileStore
 * journal in a state dir), outside the hosts, on a fresh bed. The victim is the only host at
 * first, so all VMs start there; then the survivors are declared, their libvirt capabilities
 * probed (as the peer's setup does: a long-running daemon has them cached), and after the
 * settle time the victim loses power. "Running" is what the peer's own poller sees; the phases
 * come from the product's status and events (view.json), not from hooks inside it.
 */
async function productRun(
  poller: string[],
  mode: "standalone" | "kubernetes" = "standalone",
): Promise<ProductRun> {
  const tb = await startTestbed({ hosts: 3, name: "fo" });
  const root = mkdtempSync(join(tmpdir(), "vw-fo-"));
  let side: Side | undefined;
  const [victim, ...survivors] = tb.hosts as [TestHost, ...TestHost[]];
  const hostDoc = (h: TestHost) => ({
    apiVersion: API,
    kind: "Host",
    metadata: { name: h.name },
    // heartbeat: virtwarden's defaults (DEFAULT_HEARTBEAT_INTERVAL_MS, 3 missed beats)
    spec: {
      uri: h.uri,
      domainType: h.domainType,
      // The namespace hosts share this machine's two CPUs; the idle test guests need little.
      overcommit: { cpu: 16 },
      fencing: { agent: "exec", command: h.fenceCommand, timeoutSeconds: 10 },
    },
  });
  try {
    side = mode === "kubernetes" ? await kubernetesSide(root) : standaloneSide(root);
    const s = side;
    await s.writeHosts([hostDoc(victim)]);
    await s.writeVMs(
      Array.from({ length: VMS }, (_, i) => ({
        apiVersion: API,
        kind: "VirtualMachine",
        metadata: { name: `app-${i}`, namespace: "default" },
        // The peer's guests: 1 vCPU, 64 MiB, an empty 32 MiB qcow2 disk (nothing to boot).
        spec: { resources: { cpu: 1, memory: "64Mi" }, disks: [{ name: "root", size: "32Mi" }] },
      })),
    );
    await s.start();
    // Each poll reads view.json (standalone) or lists through kubectl (Kubernetes): not too often.
    const every = mode === "kubernetes" ? 500 : 100;
    let vmsNow: ViewObject[] = [];
    await eventually(
      async () => {
        vmsNow = (await s.view()).resources.filter((r) => r.kind === "VirtualMachine");
        return (
          vmsNow.filter((v) => v.status?.phase === "Running" && v.status.host === victim.name).length === VMS
        );
      },
      `all ${VMS} running on ${victim.name}`,
      240_000,
      every,
    );
    await s.writeHosts(tb.hosts.map(hostDoc));
    await eventually(
      async () => {
        const hosts = (await s.view()).resources.filter((r) => r.kind === "Host");
        return hosts.length === tb.hosts.length && hosts.every((h) => h.status?.phase === "Ready");
      },
      "all hosts Ready",
      60_000,
      every,
    );
    for (const h of survivors)
      for (const c of ["domcapabilities", "capabilities"])
        execFileSync("virsh", ["-c", h.uri, c], { stdio: "ignore" });
    await sleep(SETTLE_S * 1000);
    const nets = survivors.map((h) => namedNetns(h.netns));
    const roles = new Map<number, "controller">([[s.pid() as number, "controller"]]);
    const load = loadavg1();
    const before = sampleCpu(nets, roles);
    // ---- T0: the victim loses power ----
    const t0 = Date.now() / 1000;
    victim.powerOff();
    const poll = await new Promise<{ all_vms: number | null; steps: [number, number][] }>(
      (resolve, reject) => {
        const [cmd, ...args] = poller as [string, ...string[]];
        execFile(
          cmd,
          [...args, "poll", String(VMS), "180", ...survivors.map((h) => h.address)],
          (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout))),
        );
      },
    );
    if (poll.all_vms === null) throw new Error("bench:failover: the VMs did not all run within 180 s");
    await sleep(2000);
    const cpu = cpuBetween(before, sampleCpu(nets, roles));
    await eventually(
      async () =>
        (await s.view()).resources
          .filter((r) => r.kind === "VirtualMachine")
          .every((v) => v.status?.host !== victim.name && v.status?.lastRecovery?.result === "Succeeded"),
      "every VM's recovery recorded",
      60_000,
      every,
    );
    const view = await s.view();
    const at = (iso: string | undefined) => (iso ? new Date(iso).getTime() / 1000 - t0 : Number.NaN);
    const victimStatus = view.resources.find(
      (r) => r.kind === "Host" && r.metadata.name === victim.name,
    )?.status;
    // Judged dead (the pass that found it silent, before its fencing) and fenced (confirmed off).
    const judged = at(victimStatus?.unreachableAt);
    const fencedAt = at(victimStatus?.fencedAt);
    const rows: TimelineRow[] = view.resources
      .filter((r) => r.kind === "VirtualMachine")
      .map((v) => {
        // Events aggregate by reason: the latest Scheduled is the placement on the survivor.
        const placed = view.events.find(
          (e) =>
            e.regarding.kind === "VirtualMachine" &&
            e.regarding.name === v.metadata.name &&
            e.reason === "Scheduled",
        );
        return {
          name: v.metadata.name,
          placed: at(placed?.lastTime),
          started: at(v.status?.lastRecovery?.finishedAt),
        };
      })
      .sort((x, y) => x.started - y.started);
    const lastStarted = Math.max(...rows.map((r) => r.started));
    await s.kill(); // before the floor: it would correct the destroyed domains
    return {
      detect: judged,
      fence: fencedAt - judged,
      restart: lastStarted - fencedAt,
      // The peer's definition: power-off -> its poller sees all of them running on the survivors.
      total: poll.all_vms - t0,
      recorded: lastStarted,
      timeline: {
        detect: judged,
        fenced: fencedAt,
        rows,
        running: poll.steps.map(([t, n]) => [t - t0, n] as [number, number]),
      },
      loadavg1AtT0: load,
      cpu,
      domainType: victim.domainType,
      floor: await restartFloor(survivors.map((h) => h.uri)),
    };
  } catch (e) {
    // The controller's log outlives a failed run (the scratch directory does not).
    const keep = join(tmpdir(), `vw-failover-${mode}-controller.log`);
    try {
      writeFileSync(keep, readFileSync(join(root, "controller.log")));
      console.error(`bench:failover: the ${mode} run failed; its controller's log is in ${keep}`);
    } catch {}
    throw e;
  } finally {
    await side?.close();
    await tb.teardown();
    rmSync(root, { recursive: true, force: true });
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

const poller = peerPoller(PEER_DIR);
const real: ProductRun[] = [];
const peerRuns: PeerRun[] = [];
let peer: PacemakerPeer | undefined;
const kubeRuns: ProductRun[] = [];
try {
  for (let i = 0; i < Math.max(RUNS, KUBE_RUNS); i++) {
    const r = i < RUNS ? await productRun(poller) : undefined;
    if (r) {
      real.push(r);
      console.log(
        `virtwarden run ${i + 1}/${RUNS} (${r.domainType} guests, load ${r.loadavg1AtT0} at T0): all ${VMS} running ${r.total.toFixed(2)} s after the power-off (status: detect ${r.detect.toFixed(2)} s, fence ${r.fence.toFixed(2)} s, restart ${r.restart.toFixed(2)} s, recorded ${r.recorded.toFixed(2)} s); CPU-s ${JSON.stringify(r.cpu)}; libvirt alone restarts them in ${r.floor?.toFixed(2)} s`,
      );
    }
    if (i < KUBE_RUNS) {
      const k = await productRun(poller, "kubernetes");
      kubeRuns.push(k);
      console.log(
        `virtwarden run --kubernetes ${i + 1}/${KUBE_RUNS} (load ${k.loadavg1AtT0} at T0): all ${VMS} running ${k.total.toFixed(2)} s after the power-off (status: detect ${k.detect.toFixed(2)} s, fence ${k.fence.toFixed(2)} s, restart ${k.restart.toFixed(2)} s, recorded ${k.recorded.toFixed(2)} s); CPU-s ${JSON.stringify(k.cpu)}`,
      );
    }
    if (PEER && r) {
      peer ??= new PacemakerPeer(PEER_DIR, PEER_PROFILE, r.domainType as "kvm" | "qemu", VMS);
      const p = peer.run();
      peerRuns.push(p);
      console.log(
        `pacemaker run ${i + 1}/${RUNS} (${p.profile}, ${p.guestType} guests, DC before: ${p.dcBefore}, load ${p.loadavg1AtT0} at T0): all ${VMS} running ${p.allVmsRunning.toFixed(2)} s (fence confirmed ${p.fenceConfirmed.toFixed(2)} s); CPU-s ${JSON.stringify(p.cpu)}`,
      );
    }
  }
} finally {
  peer?.close();
}
const simRuns: Run[] = [];
for (let i = 0; i < SIM_RUNS; i++) {
  const r = await simRun(i + 1);
  simRuns.push(r);
  console.log(
    `sim run ${i + 1}/${SIM_RUNS} (${SIM_VMS} VMs): detect ${r.detect.toFixed(2)} s, fence ${r.fence.toFixed(2)} s, restart ${r.restart.toFixed(2)} s, total ${r.total.toFixed(2)} s`,
  );
}

const p50 = (xs: number[]) => round(percentile(xs, 50));
const metrics: Metrics = {
  vms: { value: VMS, unit: "count" },
  runs: { value: RUNS, unit: "count" },
  detect_p50_s: { value: summary(real, "detect"), unit: "s" },
  fence_p50_s: { value: summary(real, "fence"), unit: "s" },
  restart_p50_s: { value: summary(real, "restart"), unit: "s" },
  restart_floor_p50_s: { value: p50(real.map((r) => r.floor ?? Number.NaN)), unit: "s" },
  total_p50_s: { value: summary(real, "total"), unit: "s" },
  total_p95_s: { value: summary(real, "total", 95), unit: "s" },
  total_min_s: { value: round(Math.min(...real.map((r) => r.total))), unit: "s" },
  total_max_s: { value: round(Math.max(...real.map((r) => r.total))), unit: "s" },
  controller_cpu_p50_s: { value: p50(real.map((r) => r.cpu.controller ?? 0)), unit: "CPU-s" },
  qemu_cpu_p50_s: { value: p50(real.map((r) => r.cpu.qemu ?? 0)), unit: "CPU-s" },
  libvirtd_cpu_p50_s: { value: p50(real.map((r) => r.cpu.libvirtd ?? 0)), unit: "CPU-s" },
  ...(kubeRuns.length > 0
    ? {
        kube_runs: { value: kubeRuns.length, unit: "count" },
        kube_detect_p50_s: { value: summary(kubeRuns, "detect"), unit: "s" },
        kube_fence_p50_s: { value: summary(kubeRuns, "fence"), unit: "s" },
        kube_restart_p50_s: { value: summary(kubeRuns, "restart"), unit: "s" },
        kube_total_p50_s: { value: summary(kubeRuns, "total"), unit: "s" },
        kube_total_min_s: { value: round(Math.min(...kubeRuns.map((r) => r.total))), unit: "s" },
        kube_total_max_s: { value: round(Math.max(...kubeRuns.map((r) => r.total))), unit: "s" },
        kube_controller_cpu_p50_s: { value: p50(kubeRuns.map((r) => r.cpu.controller ?? 0)), unit: "CPU-s" },
        kube_vs_standalone: {
          value: round(
            percentile(
              kubeRuns.map((r) => r.total),
              50,
            ) /
              percentile(
                real.map((r) => r.total),
                50,
              ),
          ),
          unit: "x",
        },
      }
    : {}),
  ...(peerRuns.length > 0
    ? {
        pacemaker_total_p50_s: { value: p50(peerRuns.map((p) => p.allVmsRunning)), unit: "s" },
        pacemaker_total_min_s: { value: round(Math.min(...peerRuns.map((p) => p.allVmsRunning))), unit: "s" },
        pacemaker_total_max_s: { value: round(Math.max(...peerRuns.map((p) => p.allVmsRunning))), unit: "s" },
        pacemaker_fence_confirmed_p50_s: { value: p50(peerRuns.map((p) => p.fenceConfirmed)), unit: "s" },
        pacemaker_qemu_cpu_p50_s: { value: p50(peerRuns.map((p) => p.cpu.qemu)), unit: "CPU-s" },
        pacemaker_stack_cpu_p50_s: {
          value: p50(peerRuns.map((p) => p.cpu.pacemaker + p.cpu.corosync + p.cpu.other)),
          unit: "CPU-s",
        },
        ratio_vs_pacemaker: {
          value: round(
            percentile(
              peerRuns.map((p) => p.allVmsRunning),
              50,
            ) /
              percentile(
                real.map((r) => r.total),
                50,
              ),
          ),
          unit: "x",
        },
      }
    : {}),
  sim_vms: { value: SIM_VMS, unit: "count" },
  sim_runs: { value: SIM_RUNS, unit: "count" },
  sim_detect_p50_s: { value: summary(simRuns, "detect"), unit: "s" },
  sim_restart_p50_s: { value: summary(simRuns, "restart"), unit: "s" },
  sim_total_p50_s: { value: summary(simRuns, "total"), unit: "s" },
  sim_total_p95_s: { value: summary(simRuns, "total", 95), unit: "s" },
};
printResult(OUT, metrics);
// The picture: the run nearest the median, with the peer's run of the same round.
if (real.length > 0 && OUT === "failover") {
  const med = percentile(
    real.map((r) => r.total),
    50,
  );
  const i = real.findIndex((r) => r.total === med);
  const r = real[i] as ProductRun;
  const p = peerRuns[i];
  const svg = renderTimeline(
    `bench:failover, ${VMS} VMs, ${r.domainType} guests: virtwarden ${r.total.toFixed(2)} s${p ? `, Pacemaker (${p.profile}) ${p.allVmsRunning.toFixed(2)} s` : ""} (run ${i + 1} of ${real.length}, ${new Date().toISOString().slice(0, 10)})`,
    r.timeline,
    p ? { label: "Pacemaker", fenceConfirmed: p.fenceConfirmed, running: p.running } : undefined,
  );
  writeFileSync(join(import.meta.dirname, "results", "failover-timeline.svg"), svg);
}
const path = writeResult(OUT, metrics, {
  settings: {
    product: "virtwarden run (standalone, FileStore journal) as its own process, outside the hosts",
    heartbeatIntervalS: DEFAULT_HEARTBEAT_INTERVAL_MS / 1000,
    missedBeats: DEFAULT_MISSED_BEATS,
    fence: "exec (test bed power switch: SIGKILL by pid, instant as the peer's fence_pmk)",
    hosts: 3,
    guests: "1 vCPU, 64 MiB, empty 32 MiB qcow2 disk (nothing to boot), the peer's",
    guestType: real[0]?.domainType,
    running:
      "libvirt reports the domain running, polled every 100 ms over persistent connections by the peer's poller (pmk.py)",
    controllerOnFailedHost: false,
    settleS: SETTLE_S,
    ...(PEER
      ? { peer: { system: "Pacemaker + Corosync + VirtualDomain", profile: PEER_PROFILE, from: PEER_DIR } }
      : {}),
    sim: "in-process Runtime, in-memory store, simulated hypervisor latencies",
    ...(KUBE_RUNS > 0
      ? {
          kubernetes:
            "virtwarden run --kubernetes as its own process against a real kube-apiserver + etcd (one per run), resources applied and read back with kubectl; status writes through etcd",
        }
      : {}),
  },
  target: { total_p50_s: 5, ratio_vs_pacemaker: 2 },
  runs: {
    real,
    ...(kubeRuns.length > 0 ? { kubernetes: kubeRuns } : {}),
    ...(PEER ? { pacemaker: peerRuns } : {}),
    sim: simRuns,
  },
});
console.log(`\nwritten to ${path}`);
process.exit(0);
