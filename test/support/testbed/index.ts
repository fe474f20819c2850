/**
 * The real libvirt test bed (TESTBED.md): N hypervisor hosts on this machine, each a network
 * namespace on a private bridge with its own libvirtd (QEMU driver; KVM when KVM guests work here,
 * else TCG) in its own mount namespace, plus a shared storage directory with a "default" pool and
 * a tiny base image. Also a daemon serving libvirt's test driver, for fast protocol tests and the
 * RPC benchmark.
 *
 * Everything started is stopped by pid (daemons and the QEMU processes they spawned), namespaces,
 * veths and the bridge are removed, even when a test fails (process exit hook). Each test bed uses
 * a bridge name and /24 derived from its own id, so parallel test files do not collide.
 *
 * When libvirtd is missing it installs the Debian packages (scripts/install-test-deps.sh); under
 * CI=true anything that prevents a real host from starting is an error, never a skip.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type CpuView, startCpuView } from "./cpu-view.js";
import { type DelayLine, startDelayLine } from "./delayline.js";
import { makePki, type Pki } from "./pki.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");

export interface TestHost {
  name: string;
  netns: string;
  address: string;
  /** qemu+tcp://ADDRESS/system */
  uri: string;
  /** qemu+tls://ADDRESS/system?pkipath=... when started with tls. */
  tlsUri?: string;
  /** The daemon's unix socket, reachable from the root namespace. */
  socket: string;
  unixUri: string;
  /** libvirtd's pid. */
  pid: number;
  /** The subreaper (tini) libvirtd runs under. */
  reaperPid: number;
  dir: string;
  /** Kill libvirtd (SIGKILL) — the host's guests keep running, like a hung management daemon. */
  killDaemon(): void;
  /** Power the host off: libvirtd and every QEMU it started, SIGKILL, and its link down (silent on the network). */
  powerOff(): void;
  /** Power it on again: link up, a fresh libvirtd on the same state (no guest runs: they were killed). */
  powerOn(): Promise<void>;
  linkDown(): void;
  linkUp(): void;
  /**
   * Delay everything the host sends the controller by `delayMs ± jitterMs` (uniform per packet:
   * `tc netem delay D J` on the host's egress, by a userspace delay line — delayline.ts) until
   * the returned stop() is called. Its pid is ended with the bed.
   */
  delayEgress(delayMs: number, jitterMs: number): Promise<DelayLine>;
  qemuPids(): number[];
  /** argv of this host's power switch for the exec fence agent ({action} = off | status). */
  fenceCommand: string[];
  /** What its Host resource's spec.domainType should say on this machine (kvmGuestsWork). */
  domainType: "kvm" | "qemu";
}

export interface Testbed {
  id: string;
  hosts: TestHost[];
  sharedDir: string;
  poolPath: string;
  baseImage: string;
  /** Whether the hosts' guests run under KVM here; else their Hosts ask for TCG (domainType qemu). */
  kvm: boolean;
  teardown(): Promise<void>;
}

const QEMU_CONF = `user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
stdio_handler = "file"
`;

function sh(cmd: string, args: string[], opts: { allowFail?: boolean } = {}): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    if (opts.allowFail) return "";
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")}: ${err.stderr?.trim() || err.message}`);
  }
}

/** Install the Debian packages when libvirtd or QEMU is missing (root only). */
export function ensureLibvirtInstalled(): void {
  if (
    existsSync("/usr/sbin/libvirtd") &&
    existsSync("/usr/bin/qemu-system-x86_64") &&
    existsSync("/usr/bin/qemu-img") &&
    existsSync("/usr/bin/tini")
  ) {
    ensureUsers();
    return;
  }
  try {
    execFileSync("bash", [join(ROOT, "scripts/install-test-deps.sh")], { stdio: "inherit" });
  } catch (e) {
    throw new Error(`libvirt/QEMU are not installed and could not be installed: ${(e as Error).message}`);
  }
  ensureUsers();
}

function ensureUsers(): void {
  sh("sh", [
    "-c",
    "getent group kvm >/dev/null || groupadd -r kvm; getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu; getent passwd libvirt-qemu >/dev/null || useradd -r -g kvm libvirt-qemu",
  ]);
  mkdirSync("/etc/libvirt/qemu", { recursive: true });
  if (!existsSync("/etc/libvirt/qemu.conf")) writeFileSync("/etc/libvirt/qemu.conf", QEMU_CONF);
}

export function kvmUsable(): boolean {
  try {
    execFileSync("sh", ["-c", "test -r /dev/kvm && test -w /dev/kvm"]);
    return true;
  } catch {
    return false;
  }
}

let kvmVerdict: boolean | undefined;

/**
 * Whether KVM guests behave on this machine, not just whether /dev/kvm opens. On nested
 * machines of this workplace a KVM guest with nothing to boot spins a whole CPU in SeaBIOS (and a
 * real kernel hangs after it), where a TCG guest idles: twenty such guests starve the machine.
 * The probe: a 32 MiB KVM guest with no boot device runs for 1.5 s; more than half a CPU-second
 * burnt means no. Measured once per boot of this machine (cached in the temp directory).
 * Tests and benchmarks give the test bed's Hosts `spec.domainType: tb.domainType`.
 */
export function kvmGuestsWork(): boolean {
  kvmVerdict ??= probeKvmGuests();
  return kvmVerdict;
}

function probeKvmGuests(): boolean {
  if (!kvmUsable()) return false;
  let bootId = "unknown";
  try {
    bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {}
  const cache = join(tmpdir(), `vw-kvm-probe-${bootId}.json`);
  try {
    return (JSON.parse(readFileSync(cache, "utf8")) as { works: boolean }).works;
  } catch {}
  const dir = mkdtempSync(join(tmpdir(), "vw-kvm-probe-"));
  const pidFile = join(dir, "qemu.pid");
  let cpuSeconds = Number.POSITIVE_INFINITY;
  try {
    sh("qemu-system-x86_64", [
      ...["-accel", "kvm", "-m", "32", "-nodefaults", "-display", "none"],
      ...["-daemonize", "-pidfile", pidFile],
    ]);
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    execFileSync("sleep", ["1.5"]);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    cpuSeconds = (Number(f[11]) + Number(f[12])) / 100;
    killPid(pid);
  } catch {
    // QEMU refused KVM: no.
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const works = cpuSeconds < 0.5;
  writeFileSync(cache, JSON.stringify({ works, idleGuestCpuSeconds: cpuSeconds }));
  return works;
}

const live = new Set<Testbed>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const cleanupSync = () => {
    for (const tb of live) void tb.teardown();
  };
  process.once("exit", cleanupSync);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      cleanupSync();
      process.exit(130);
    });
  }
}

function killPid(pid: number, signal: NodeJS.Signals = "SIGKILL"): void {
  try {
    process.kill(pid, signal);
  } catch {}
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A libvirtd in its own mount namespace (and network namespace, when given). */
function startDaemon(opts: {
  dir: string;
  netns?: string;
  listenAddr?: string;
  hostUuid: string;
  tls?: { cert: string; key: string; ca: string };
  /** A file bind-mounted over /proc/stat (cpu-view.ts): the host's own CPU statistics. */
  procStat?: string;
}): {
  child: ChildProcess;
  /** How it was started: the power switch starts it again the same way (power-switch.mjs on). */
  argv: string[];
  socket: string;
  logFile: string;
} {
  const { dir } = opts;
  const dirs = {
    run: join(dir, "run"),
    lib: join(dir, "lib"),
    cache: join(dir, "cache"),
    log: join(dir, "log"),
    etcQemu: join(dir, "etc-qemu"),
    etcStorage: join(dir, "etc-storage"),
    etcSecrets: join(dir, "etc-secrets"),
  };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  writeFileSync(join(dir, "qemu.conf"), QEMU_CONF);
  const conf = join(dir, "libvirtd.conf");
  writeFileSync(
    conf,
    [
      'unix_sock_dir = "/run/libvirt"',
      'auth_unix_rw = "none"',
      'auth_unix_ro = "none"',
      `host_uuid = "${opts.hostUuid}"`,
      opts.listenAddr
        ? `listen_tcp = 1\nlisten_tls = ${opts.tls ? 1 : 0}\nlisten_addr = "${opts.listenAddr}"\nauth_tcp = "none"\nauth_tls = "none"`
        : "listen_tcp = 0\nlisten_tls = 0",
      opts.tls
        ? `cert_file = "${opts.tls.cert}"\nkey_file = "${opts.tls.key}"\nca_file = "${opts.tls.ca}"\ntls_no_verify_certificate = 0`
        : "",
      "keepalive_interval = 5",
      "keepalive_count = 5",
      'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
      "max_clients = 5000",
      "max_workers = 20",
      "max_client_requests = 64",
      "",
    ].join("\n"),
  );
  const mounts = [
    "mount --make-rprivate /",
    `mount --bind ${dirs.run} /run/libvirt`,
    `mount --bind ${dirs.lib} /var/lib/libvirt`,
    `mount --bind ${dirs.cache} /var/cache/libvirt`,
    `mount --bind ${dirs.log} /var/log/libvirt`,
    `mount --bind ${dirs.etcQemu} /etc/libvirt/qemu`,
    `mount --bind ${dirs.etcStorage} /etc/libvirt/storage`,
    `mount --bind ${dirs.etcSecrets} /etc/libvirt/secrets`,
    `mount --bind ${join(dir, "qemu.conf")} /etc/libvirt/qemu.conf`,
    ...(opts.procStat ? [`mount --bind ${opts.procStat} /proc/stat`] : []),
    // tini -s: a child subreaper that reaps at once. Without it a killed QEMU (daemonized, so an
    // orphan) stays a zombie until this machine's PID 1 reaps it, ~1.6 s here, and libvirtd
    // reports the crash only once the process is gone. On a real host systemd reaps at once.
    `exec tini -s -- libvirtd --config ${conf} --pid-file /run/libvirt/libvirtd.pid${opts.listenAddr ? " --listen" : ""}`,
  ].join(" && ");
  // Every bind-mount target must exist; a fresh libvirt install creates /etc/libvirt/storage and
  // /etc/libvirt/secrets only when the system daemon first runs, which it never does here.
  for (const p of [
    "/run/libvirt",
    "/var/lib/libvirt",
    "/var/cache/libvirt",
    "/var/log/libvirt",
    "/etc/libvirt/qemu",
    "/etc/libvirt/storage",
    "/etc/libvirt/secrets",
  ])
    mkdirSync(p, { recursive: true });
  const argv = opts.netns
    ? ["ip", "netns", "exec", opts.netns, "unshare", "-m", "sh", "-c", mounts]
    : ["unshare", "-m", "sh", "-c", mounts];
  const child = spawn(argv[0] as string, argv.slice(1), {
    stdio: ["ignore", "ignore", "pipe"],
    detached: false,
  });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  child.once("exit", (code) => {
    if (code && code !== 0 && stderr) (child as ChildProcess & { failure?: string }).failure = stderr;
  });
  return { child, argv, socket: join(dirs.run, "libvirt-sock"), logFile: join(dirs.log, "libvirtd.log") };
}

/**
 * HOST_DIR/power.json, the power switch's view of a host (power-switch.mjs): the pids to kill
 * for "off", how to start its libvirtd again for "on", and its link: the host-side veth, whether
 * the host is off and whether its cable is cut. The link is up only when the host is on and its
 * cable is whole: a host switched off answers nothing on the network, and healing the cable of a
 * host that is off does not make it answer.
 */
interface PowerFile {
  daemonPid: number;
  reaperPid: number;
  start: string[];
  pidFile: string;
  socket: string;
  unixUri: string;
  veth: string;
  off: boolean;
  cut: boolean;
}

function powerFile(dir: string): PowerFile | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, "power.json"), "utf8")) as PowerFile;
  } catch {
    return undefined;
  }
}

function writePowerFile(h: TestHost, start: string[], veth: string, change: Partial<PowerFile> = {}): void {
  const was = powerFile(h.dir);
  const p: PowerFile = {
    daemonPid: h.pid,
    reaperPid: h.reaperPid,
    start,
    pidFile: join(h.dir, "run", "libvirtd.pid"),
    socket: h.socket,
    unixUri: h.unixUri,
    veth,
    off: was?.off ?? false,
    cut: was?.cut ?? false,
    ...change,
  };
  writeFileSync(join(h.dir, "power.json"), JSON.stringify(p));
}

/** Sets the host's veth as power.json says: up only when it is on and its cable is whole. */
function applyLink(dir: string): void {
  const p = powerFile(dir);
  if (!p) return;
  sh("ip", ["link", "set", p.veth, p.off || p.cut ? "down" : "up"], { allowFail: true });
}

/** Changes the link fields of power.json (the rest as it is) and applies them. */
function setLinkState(dir: string, change: Pick<Partial<PowerFile>, "off" | "cut">): void {
  const p = powerFile(dir);
  if (!p) return;
  writeFileSync(join(dir, "power.json"), JSON.stringify({ ...p, ...change }));
  applyLink(dir);
}

async function daemonPid(pidFile: string, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, "utf8").trim());
      if (pid > 0) return pid;
    }
    await sleep(20);
  }
  throw new Error(`libvirtd wrote no pid file ${pidFile} within ${timeoutMs} ms`);
}

async function waitForSocket(
  path: string,
  child: ChildProcess,
  logFile: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (existsSync(path)) return;
    if (child.exitCode !== null) {
      const log = existsSync(logFile) ? readFileSync(logFile, "utf8").split("\n").slice(-15).join("\n") : "";
      throw new Error(
        `libvirtd exited with ${child.exitCode}: ${(child as ChildProcess & { failure?: string }).failure ?? ""}\n${log}`,
      );
    }
    await sleep(50);
  }
  throw new Error(`libvirtd did not create ${path} within ${timeoutMs} ms`);
}

/**
 * A tiny qcow2 base image (no OS: guests only need to exist for lifecycle tests) holding 8 MiB
 * of data, so a linked clone's saving over a full copy shows in the allocation figures.
 */
function makeBaseImage(path: string, size = "64M"): void {
  if (existsSync(path)) return;
  sh("qemu-img", ["create", "-q", "-f", "qcow2", path, size]);
  sh("qemu-io", ["-f", "qcow2", "-c", "write -P 0x5a 0 8M", path]);
}

let counter = 0;

/** Create the first free bridge vwbrN (N from `start`, wrapping below 250); returns N. */
function claimBridge(start: number): string {
  for (let i = 0; i < 250; i++) {
    const n = (start + i) % 250;
    try {
      execFileSync("ip", ["link", "add", `vwbr${n}`, "type", "bridge"], { stdio: "ignore" });
      return String(n);
    } catch {}
  }
  throw new Error("no free test-bed bridge (vwbr0..vwbr249): remove leftovers with `ip link del vwbrN`");
}

export async function startTestbed(opts: {
  hosts: number;
  name?: string;
  tls?: boolean;
  /**
   * Each host's libvirt reports the CPU time of that host's own processes as its node CPU
   * statistics, not the whole machine's (cpu-view.ts): for tests of measured load.
   */
  ownCpuStats?: boolean;
}): Promise<Testbed> {
  ensureLibvirtInstalled();
  installExitHook();
  // The bridge doubles as a lock: `ip link add` is atomic, so concurrent test files (and
  // leftovers of a killed run) never share a bridge name or a /24.
  const id = claimBridge((process.pid + counter++) % 250);
  const base = mkdtempSync(join(tmpdir(), `vw-testbed-${id}-`));
  // A private /24 from 10.200.0.0/16 keyed by the id; only ever inside this sandbox.
  const subnet = `10.200.${Number(id) + 1}`;
  const bridge = `vwbr${id}`;
  const sharedDir = join(base, "shared");
  const poolPath = join(sharedDir, "pool");
  mkdirSync(poolPath, { recursive: true });
  const baseImage = join(poolPath, "base.qcow2");
  makeBaseImage(baseImage);
  const hosts: TestHost[] = [];
  const netnses: string[] = [];
  const cpuViews: CpuView[] = [];
  let pki: Pki | undefined;
  const tb: Testbed = {
    id,
    hosts,
    sharedDir,
    poolPath,
    baseImage,
    kvm: kvmGuestsWork(),
    teardown: async () => {
      live.delete(tb);
      for (const h of hosts) h.powerOff();
      for (const v of cpuViews) v.stop();
      // What libvirtd started and detached (dnsmasq for NAT/DHCP networks) still lives in the
      // host's namespace and would keep it, and its veth, alive: end those processes, by pid.
      for (const ns of netnses) {
        for (const pid of sh("ip", ["netns", "pids", ns], { allowFail: true }).split(/\s+/).filter(Boolean)) {
          try {
            process.kill(Number(pid), "SIGKILL");
          } catch {}
        }
        sh("ip", ["netns", "del", ns], { allowFail: true });
      }
      sh("ip", ["link", "del", bridge], { allowFail: true });
      // VW_KEEP_TESTBED=1 keeps the daemons' logs and disks for a post-mortem.
      if (process.env.VW_KEEP_TESTBED) console.log(`test bed kept in ${base}`);
      else rmSync(base, { recursive: true, force: true });
    },
  };
  live.add(tb);
  try {
    sh("ip", ["addr", "add", `${subnet}.1/24`, "dev", bridge]);
    sh("ip", ["link", "set", bridge, "up"]);
    const children: { child: ChildProcess; socket: string; log: string }[] = [];
    const starts = new Map<string, { argv: string[]; veth: string }>();
    for (let i = 0; i < opts.hosts; i++) {
      const name = `${opts.name ?? "host"}${i}`;
      const ns = `vw${id}h${i}`;
      const vethHost = `vwv${id}h${i}`;
      const vethNs = `vwn${id}h${i}`;
      const address = `${subnet}.${10 + i}`;
      // The id is ours (its bridge was claimed atomically): an interface of that name is a
      // leftover of a dead test bed that held the same id.
      sh("ip", ["link", "del", vethHost], { allowFail: true });
      sh("ip", ["netns", "add", ns]);
      netnses.push(ns);
      sh("ip", ["link", "add", vethHost, "type", "veth", "peer", "name", vethNs]);
      sh("ip", ["link", "set", vethNs, "netns", ns]);
      sh("ip", ["link", "set", vethHost, "master", bridge]);
      sh("ip", ["link", "set", vethHost, "up"]);
      sh("ip", ["-n", ns, "addr", "add", `${address}/24`, "dev", vethNs]);
      sh("ip", ["-n", ns, "link", "set", vethNs, "up"]);
      sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
      const dir = join(base, name);
      let tls: { cert: string; key: string; ca: string } | undefined;
      if (opts.tls) {
        pki ??= makePki(join(base, "pki"));
        tls = { ...pki.serverCert(address), ca: pki.caCert };
      }
      let view: CpuView | undefined;
      if (opts.ownCpuStats) {
        mkdirSync(dir, { recursive: true });
        // The host's processes as they are at each tick (its daemon's pid changes on power-on).
        view = startCpuView(join(dir, "proc-stat"), () => {
          const h = hosts.find((x) => x.name === name);
          return h ? [h.pid, ...h.qemuPids()] : [];
        });
        cpuViews.push(view);
      }
      const daemonOpts = {
        dir,
        netns: ns,
        listenAddr: address,
        hostUuid: randomUUID(),
        ...(tls ? { tls } : {}),
        ...(view ? { procStat: view.path } : {}),
      };
      const d = startDaemon(daemonOpts);
      starts.set(name, { argv: d.argv, veth: vethHost });
      children.push({ child: d.child, socket: d.socket, log: d.logFile });
      const host: TestHost = {
        name,
        netns: ns,
        address,
        uri: `qemu+tcp://${address}/system`,
        ...(pki ? { tlsUri: `qemu+tls://${address}/system?pkipath=${pki.clientDir}` } : {}),
        socket: d.socket,
        unixUri: `qemu+unix:///system?socket=${d.socket}`,
        pid: d.child.pid ?? 0,
        dir,
        qemuPids: () => {
          const qdir = join(dir, "run", "qemu");
          if (!existsSync(qdir)) return [];
          return readdirSync(qdir)
            .filter((f) => f.endsWith(".pid") && f !== "driver.pid")
            .map((f) => Number(readFileSync(join(qdir, f), "utf8").trim()))
            .filter((p) => p > 0 && pidAlive(p));
        },
        reaperPid: d.child.pid ?? 0,
        killDaemon: () => killPid(host.pid),
        powerOff: () => {
          const q = host.qemuPids();
          killPid(host.pid);
          for (const p of q) killPid(p);
          killPid(host.reaperPid);
          // A host switched off answers nothing on the network (no RST, no ARP): its namespace's
          // link goes too, or it would look like a libvirtd restart (refused connections).
          setLinkState(dir, { off: true });
        },
        powerOn: async () => {
          // Power comes first, then the daemon: a booting host refuses connections for a while.
          setLinkState(dir, { off: false });
          if (!pidAlive(host.pid)) {
            // What the killed daemon left: a pid file and a socket the new one must not be taken for.
            rmSync(join(dir, "run", "libvirtd.pid"), { force: true });
            rmSync(d.socket, { force: true });
            const again = startDaemon(daemonOpts);
            children.push({ child: again.child, socket: again.socket, log: again.logFile });
            await waitForSocket(again.socket, again.child, again.logFile);
            host.reaperPid = again.child.pid ?? 0;
            host.pid = await daemonPid(join(dir, "run", "libvirtd.pid"));
            writePowerFile(host, d.argv, vethHost);
            sh("virsh", ["-q", "-c", host.unixUri, "pool-start", "default"], { allowFail: true });
          }
        },
        fenceCommand: [process.execPath, join(import.meta.dirname, "power-switch.mjs"), dir, "{action}"],
        domainType: tb.kvm ? "kvm" : "qemu",
        linkDown: () => setLinkState(dir, { cut: true }),
        linkUp: () => setLinkState(dir, { cut: false }),
        delayEgress: (delayMs, jitterMs) =>
          startDelayLine({
            netns: ns,
            outIf: vethNs,
            bridge,
            towards: `${subnet}.1`,
            tun: `vwdl${i}`,
            delayMs,
            jitterMs,
          }),
      };
      hosts.push(host);
    }
    for (const c of children) await waitForSocket(c.socket, c.child, c.log);
    for (const h of hosts) {
      // The daemon itself (the spawned process is its reaper, tini).
      h.pid = await daemonPid(join(h.dir, "run", "libvirtd.pid"));
      // For the power switch (power-switch.mjs): the exec fence agent finds the pids here.
      const s = starts.get(h.name) as { argv: string[]; veth: string };
      writePowerFile(h, s.argv, s.veth, { off: false, cut: false });
    }
    // The shared storage pool, same path on every host (what migration and failover need).
    for (const h of hosts) {
      sh("virsh", ["-q", "-c", h.unixUri, "pool-define-as", "default", "dir", "--target", poolPath]);
      sh("virsh", ["-q", "-c", h.unixUri, "pool-start", "default"]);
    }
    return tb;
  } catch (e) {
    await tb.teardown();
    throw e;
  }
}

export interface TestDriverDaemon {
  socket: string;
  uri: string;
  pid: number;
  stop(): Promise<void>;
}

/** libvirtd serving the test driver (test+unix:///default), in its own mount namespace. */
export async function startTestDriverDaemon(): Promise<TestDriverDaemon> {
  ensureLibvirtInstalled();
  const dir = mkdtempSync(join(tmpdir(), "vw-testdrv-"));
  const d = startDaemon({ dir, hostUuid: randomUUID() });
  await waitForSocket(d.socket, d.child, d.logFile);
  return {
    socket: d.socket,
    uri: `test+unix:///default?socket=${d.socket}`,
    pid: d.child.pid ?? 0,
    stop: async () => {
      killPid(d.child.pid ?? 0, "SIGTERM");
      for (let i = 0; i < 40 && d.child.exitCode === null; i++) await sleep(50);
      killPid(d.child.pid ?? 0);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
