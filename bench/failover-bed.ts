/**
 * What bench:failover needs around the systems it measures, the same for both sides:
 *
 * - CPU accounting read from /proc (utime + stime, and cutime + cstime: the children a process
 *   reaped, such as the shell scripts and `virsh` runs a Pacemaker resource agent forks), by role
 *   and by network namespace (which simulated host a process runs on);
 * - the peer: the Pacemaker + Corosync + VirtualDomain bed of ../shared/peer-pacemaker, copied to
 *   a scratch directory (its results stay out of the shared folder) and driven by its own scripts,
 *   one run at a time: teardown, setup PROFILE, measure, CPU read, teardown.
 */
import { execFileSync, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const CLK_TCK = 100;

/** Processes of interest are grouped so: QEMU guests, libvirtd, the HA stack, the controller, the rest. */
export type Role = "qemu" | "libvirtd" | "corosync" | "pacemaker" | "controller" | "other";

export interface CpuSample {
  /** pid -> [role, CPU-s so far, its own and its reaped children's] */
  procs: Map<number, [Role, number]>;
}

function roleOf(comm: string): Role {
  if (comm.startsWith("qemu-system")) return "qemu";
  if (comm === "libvirtd") return "libvirtd";
  if (comm === "corosync") return "corosync";
  if (comm.startsWith("pacemaker")) return "pacemaker";
  return "other";
}

function readStat(pid: number): { comm: string; cpuS: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = s.lastIndexOf(")");
    const comm = s.slice(s.indexOf("(") + 1, close);
    const f = s.slice(close + 2).split(" ");
    // Fields 14-17 of proc(5) (utime stime cutime cstime) are at 11-14 after "pid (comm) ".
    const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    return { comm, cpuS: ticks / CLK_TCK };
  } catch {
    return undefined;
  }
}

/** The network namespace a pid lives in, as readlink(/proc/PID/ns/net) says it ("net:[N]"). */
function netOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/** "net:[N]" for a named namespace (ip netns add NAME). */
export function namedNetns(name: string): string {
  return `net:[${statSync(`/run/netns/${name}`).ino}]`;
}

/** Every process in one of these namespaces, plus the given extra pids with their role. */
export function sampleCpu(netnses: string[], extra: Map<number, Role> = new Map()): CpuSample {
  const want = new Set(netnses);
  const procs = new Map<number, [Role, number]>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    const role = extra.get(pid);
    if (role === undefined) {
      const ns = netOf(pid);
      if (!ns || !want.has(ns)) continue;
    }
    const st = readStat(pid);
    if (st) procs.set(pid, [role ?? roleOf(st.comm), st.cpuS]);
  }
  return { procs };
}

/**
 * CPU-s used between two samples, by role. A process that appeared after `before` counts whole; one
 * gone by `after` is not seen (its CPU lands in its parent's cutime once reaped, if the parent is
 * sampled).
 */
export function cpuBetween(before: CpuSample, after: CpuSample): Record<Role, number> {
  const out: Record<Role, number> = {
    qemu: 0,
    libvirtd: 0,
    corosync: 0,
    pacemaker: 0,
    controller: 0,
    other: 0,
  };
  for (const [pid, [role, cpu]] of after.procs) {
    const was = before.procs.get(pid)?.[1] ?? 0;
    out[role] += Math.max(0, cpu - was);
  }
  for (const k of Object.keys(out) as Role[]) out[k] = Math.round(out[k] * 100) / 100;
  return out;
}

export function loadavg1(): number {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

// ---------------------------------------------------------------------------------------------
// The peer

export interface PeerRun {
  profile: string;
  guestType: string;
  /** Where the Pacemaker DC ran before the failure: on the failed host (pmk1) or a survivor. */
  dcBefore: string;
  loadavg1AtT0: number;
  tokenMs: number;
  consensusMs: number;
  fenceConfirmed: number;
  firstVmRunning: number;
  allVmsRunning: number;
  cpu: Record<Role, number>;
  rundir: string;
  /** [seconds after the power loss, VMs running] as its poller saw them change. */
  running: [number, number][];
}

export class PacemakerPeer {
  readonly dir: string;
  readonly state: string;

  constructor(
    source: string,
    readonly profile: string,
    readonly guestType: "kvm" | "qemu",
    readonly vms: number,
  ) {
    if (!existsSync(join(source, "setup.sh")))
      throw new Error(
        `--peer pacemaker: no peer bed at ${source} (set --peer-dir to ../shared/peer-pacemaker)`,
      );
    for (const bin of ["corosync", "pacemakerd", "crm", "/usr/lib/ocf/resource.d/heartbeat/VirtualDomain"])
      if (spawnSync("sh", ["-c", `command -v ${bin} || test -e ${bin}`]).status !== 0)
        throw new Error(
          `--peer pacemaker needs ${bin}: apt-get install pacemaker corosync crmsh resource-agents fence-agents python3-libvirt`,
        );
    this.dir = mkdtempSync(join(tmpdir(), "vw-peer-"));
    cpSync(source, this.dir, { recursive: true });
    rmSync(join(this.dir, "results"), { recursive: true, force: true });
    // Its fence agent, run by Pacemaker's fencer (which passes no environment of ours), reads the
    // hosts from /tmp/pmk (PMK_STATE): the bed's state must be there.
    this.state = "/tmp/pmk";
  }

  private env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      STATE: this.state,
      GUEST_TYPE: this.guestType,
      VMS: String(this.vms),
      HERE: this.dir,
    };
  }

  private sh(script: string, args: string[], log?: string): string {
    const r = spawnSync("bash", [join(this.dir, script), ...args], {
      env: this.env(),
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.status !== 0)
      throw new Error(
        `peer ${script} ${args.join(" ")} failed (exit ${r.status})${log ? `, see ${log}` : ""}: ${(r.stderr || r.stdout).slice(-2000)}`,
      );
    return r.stdout;
  }

  /** One failover of the peer on a bed built from nothing; the bed is torn down afterwards. */
  run(): PeerRun {
    this.sh("teardown.sh", ["--purge"]);
    try {
      const setupLog = join(this.dir, "setup.log");
      const r = spawnSync(
        "bash",
        ["-c", `bash "${join(this.dir, "setup.sh")}" "$1" > "$2" 2>&1`, "_", this.profile, setupLog],
        {
          env: this.env(),
        },
      );
      if (r.status !== 0) throw new Error(`peer setup.sh ${this.profile} failed, see ${setupLog}`);
      const survivors = ["pmk2", "pmk3"].map((h) =>
        readFileSync(join(this.state, h, "netns"), "utf8").trim(),
      );
      const before = sampleCpu(survivors);
      this.sh("measure.sh", [this.profile]);
      const after = sampleCpu(survivors);
      const lines = readFileSync(join(this.dir, "results", `${this.profile}.jsonl`), "utf8")
        .trim()
        .split("\n");
      const j = JSON.parse(lines[lines.length - 1] as string) as Record<string, unknown>;
      const num = (k: string) => {
        const v = j[k];
        if (typeof v !== "number") throw new Error(`peer result has no ${k}: ${JSON.stringify(j)}`);
        return v;
      };
      return {
        profile: this.profile,
        guestType: this.guestType,
        dcBefore: String(j.dc_before),
        loadavg1AtT0: num("loadavg1_at_t0"),
        tokenMs: num("token_ms"),
        consensusMs: num("consensus_ms"),
        fenceConfirmed: num("fence_confirmed"),
        firstVmRunning: num("first_vm_running"),
        allVmsRunning: num("all_vms_running"),
        cpu: cpuBetween(before, after),
        rundir: String(j.rundir),
        running: this.steps(String(j.rundir)),
      };
    } finally {
      this.sh("teardown.sh", ["--purge"]);
    }
  }

  private steps(rundir: string): [number, number][] {
    try {
      const run = JSON.parse(readFileSync(join(rundir, "run.json"), "utf8")) as {
        t0: number;
        steps: [number, number][];
      };
      return run.steps.map(([t, n]) => [Math.round((t - run.t0) * 1000) / 1000, n]);
    } catch {
      return [];
    }
  }

  close(): void {
    try {
      this.sh("teardown.sh", ["--purge"]);
    } catch {}
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The peer's poller (python3-libvirt, persistent connections, 100 ms): both sides use it. */
export function peerPoller(source: string): string[] {
  const py = "/usr/bin/python3";
  const script = join(source, "pmk.py");
  if (!existsSync(script)) throw new Error(`no poller at ${script} (set --peer-dir)`);
  execFileSync(py, ["-c", "import libvirt"], { stdio: "ignore" });
  return [py, script];
}
