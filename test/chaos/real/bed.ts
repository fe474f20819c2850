/**
 * The real test bed as the chaos suite drives and observes it, without virtwarden's code: three
 * network-namespace libvirt hosts (test/support/testbed), their power switch
 * (power-switch.mjs, the same one the controller's exec fence and power agents drive), libvirtd
 * killed and started again with its guests left running, links cut and healed, and what runs
 * read from /proc and `virsh` (a process per call, over each daemon's unix socket, which a cut
 * link does not reach).
 *
 * A host's state lives in HOST_DIR/power.json (written by the test bed and by the power switch):
 * whoever switched it last, the pids there are current. Nothing here trusts TestHost.pid, which
 * the power switch does not update.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { startTestbed, type Testbed, type TestHost } from "../../support/testbed/index.js";

const run = promisify(execFile);

export const OWNER_NS = "https://virtwarden.io/xmlns/domain/v1";

interface PowerFile {
  daemonPid: number;
  reaperPid: number;
  start: string[];
  pidFile: string;
  socket: string;
  unixUri: string;
}

export function pidAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

export async function virsh(uri: string, args: string[], timeoutMs = 8000): Promise<string> {
  const { stdout } = await run("virsh", ["-q", "-c", uri, ...args], {
    encoding: "utf8",
    timeout: timeoutMs,
    killSignal: "SIGKILL",
  });
  return stdout;
}

/** One host of the bed, driven from outside. */
export class BedHost {
  /** The network namespace's inode: a QEMU whose /proc/PID/ns/net points here runs on this host. */
  readonly netnsInode: number;
  linkIsDown = false;

  constructor(readonly t: TestHost) {
    this.netnsInode = statSync(`/run/netns/${t.netns}`).ino;
  }

  get name(): string {
    return this.t.name;
  }
  get unixUri(): string {
    return this.t.unixUri;
  }
  private power(): PowerFile {
    return JSON.parse(readFileSync(join(this.t.dir, "power.json"), "utf8")) as PowerFile;
  }
  daemonAlive(): boolean {
    return pidAlive(this.power().daemonPid);
  }
  /** The power switch, as the fence and power agents call it. */
  switchPower(action: "on" | "off" | "status"): string {
    const [cmd, ...rest] = this.t.fenceCommand.map((a) => (a === "{action}" ? action : a));
    return execFileSync(cmd as string, rest, { encoding: "utf8", timeout: 30_000 }).trim();
  }
  poweredOn(): boolean {
    return this.switchPower("status") === "on";
  }
  /** SIGKILL libvirtd only: the guests keep running (a hung or crashed management daemon). */
  killDaemon(): void {
    try {
      process.kill(this.power().daemonPid, "SIGKILL");
    } catch {}
  }
  /**
   * Start libvirtd again on the same state when it is not running, whatever runs besides (the
   * power switch's "on" does nothing while a guest lives). It reconnects to the guests left.
   */
  async startDaemon(): Promise<void> {
    const p = this.power();
    if (pidAlive(p.daemonPid)) return;
    rmSync(p.pidFile, { force: true });
    rmSync(p.socket, { force: true });
    const child = spawn(p.start[0] as string, p.start.slice(1), { stdio: "ignore", detached: true });
    child.unref();
    let daemonPid = 0;
    for (let i = 0; i < 600 && !(daemonPid > 0 && existsSync(p.socket)); i++) {
      await sleep(50);
      try {
        daemonPid = Number(readFileSync(p.pidFile, "utf8").trim());
      } catch {}
    }
    if (!(daemonPid > 0 && existsSync(p.socket))) throw new Error(`${this.name}: libvirtd did not come back`);
    writeFileSync(join(this.t.dir, "power.json"), JSON.stringify({ ...p, daemonPid, reaperPid: child.pid }));
    await virsh(this.unixUri, ["pool-start", "default"]).catch(() => undefined);
  }
  linkDown(): void {
    this.t.linkDown();
    this.linkIsDown = true;
  }
  linkUp(): void {
    this.t.linkUp();
    this.linkIsDown = false;
  }
  /** The QEMU pids libvirtd recorded (run/qemu/*.pid) that are alive: for killing a guest. */
  qemuPidOf(domain: string): number | undefined {
    const f = join(this.t.dir, "run", "qemu", `${domain}.pid`);
    if (!existsSync(f)) return undefined;
    const pid = Number(readFileSync(f, "utf8").trim());
    return pidAlive(pid) ? pid : undefined;
  }
  /** `virsh list --all`: domain name -> state words ("running", "shut off", "paused", ...). */
  async domains(): Promise<Map<string, string> | undefined> {
    if (!this.daemonAlive()) return undefined;
    try {
      const out = await virsh(this.unixUri, ["list", "--all"]);
      const m = new Map<string, string>();
      for (const line of out.split("\n")) {
        const f = /^\s*(\S+)\s+(\S+)\s+(.+?)\s*$/.exec(line);
        if (f?.[2] && f[3]) m.set(f[2], f[3]);
      }
      return m;
    } catch {
      return undefined;
    }
  }
  /** virtwarden's ownership mark of a domain (namespace/name), or undefined when it has none. */
  async owner(domain: string): Promise<{ namespace: string; name: string; uid: string } | undefined> {
    try {
      const xml = await virsh(this.unixUri, ["metadata", "--domain", domain, "--uri", OWNER_NS]);
      const get = (k: string) => new RegExp(`\\s${k}="([^"]*)"`).exec(xml)?.[1];
      const name = get("name");
      if (!name) return undefined;
      return { namespace: get("namespace") ?? "default", name, uid: get("uid") ?? "" };
    } catch {
      return undefined;
    }
  }
}

export interface ChaosBed {
  tb: Testbed;
  hosts: BedHost[];
  teardown(): Promise<void>;
  /** Every host on, its libvirtd up, its link up; every domain and VM volume removed. */
  reset(): Promise<void>;
  /** Files in the shared pool other than the base image. */
  poolFiles(): string[];
  /** `virsh vol-list default` on a host that answers (after a refresh). */
  volumes(): Promise<string[] | undefined>;
  /** Internal snapshot tags of a qcow2 volume in the pool (qemu-img, read-only, shared lock). */
  snapshotTags(volume: string): Promise<string[] | undefined>;
}

export async function startChaosBed(): Promise<ChaosBed> {
  const tb = await startTestbed({ hosts: 3, name: "ch" });
  const hosts = tb.hosts.map((h) => new BedHost(h));
  const bed: ChaosBed = {
    tb,
    hosts,
    teardown: () => tb.teardown(),
    poolFiles: () => readdirSync(tb.poolPath).filter((f) => f !== "base.qcow2"),
    volumes: async () => {
      for (const h of hosts) {
        if (!h.daemonAlive()) continue;
        try {
          await virsh(h.unixUri, ["pool-refresh", "default"]);
          const out = await virsh(h.unixUri, ["vol-list", "default"]);
          return out
            .split("\n")
            .map((l) => l.trim().split(/\s+/)[0] ?? "")
            .filter((n) => n && n !== "base.qcow2");
        } catch {}
      }
      return undefined;
    },
    snapshotTags: async (volume) => {
      const path = join(tb.poolPath, volume);
      if (!existsSync(path)) return undefined;
      try {
        const { stdout } = await run("qemu-img", ["snapshot", "-l", "-U", path], {
          encoding: "utf8",
          timeout: 10_000,
        });
        // "ID  TAG  VM SIZE  DATE  VM CLOCK  ICOUNT": the tag is the second column.
        return stdout
          .split("\n")
          .slice(2)
          .map((l) => l.trim().split(/\s+/)[1] ?? "")
          .filter(Boolean);
      } catch {
        return undefined;
      }
    },
    reset: async () => {
      for (const h of hosts) {
        if (h.linkIsDown) h.linkUp();
        if (!h.poweredOn()) h.switchPower("on");
        await h.startDaemon();
      }
      for (const h of hosts) {
        const doms = await h.domains();
        for (const d of doms?.keys() ?? []) {
          await virsh(h.unixUri, ["destroy", d]).catch(() => undefined);
          await virsh(h.unixUri, ["undefine", d, "--snapshots-metadata", "--managed-save"]).catch(
            () => undefined,
          );
        }
      }
      for (const f of bed.poolFiles()) rmSync(join(tb.poolPath, f), { recursive: true, force: true });
      // Files removed behind libvirt's back: every host's view of the shared pool is refreshed.
      for (const h of hosts) await virsh(h.unixUri, ["pool-refresh", "default"]).catch(() => undefined);
    },
  };
  return bed;
}
