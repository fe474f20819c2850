/**
 * The chaos suite's invariant watcher. It does not use virtwarden's code: what runs is read from
 * /proc (every QEMU process, its guest name, memory and vCPUs from its command line, and the host
 * it runs on from its network namespace), and from `virsh` (a process per call) only to tell a
 * running copy from a paused one when a guest has two QEMUs (a live migration's target exists,
 * paused, until the switchover).
 *
 * Never two running copies: sampled every `intervalMs` while a scenario runs. A guest with two
 * QEMUs is asked about twice, 300 ms apart; it is a violation when both copies said "running"
 * both times and both processes still live (a switchover between two virsh calls is not). A copy
 * whose libvirtd does not answer (killed, restarting) counts as running, unless it is an incoming
 * migration's target (its command line has -incoming), which is paused until libvirt resumes it.
 * A powered-off host's QEMUs are dead: /proc shows no process for them.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { type BedHost, pidAlive, virsh } from "./bed.js";

export interface Qemu {
  pid: number;
  guest: string;
  host: string;
  incoming: boolean;
  memoryMiB?: number;
  vcpus?: number;
}

/** Every live QEMU on the bed's hosts, from /proc. */
export function scanQemus(hosts: BedHost[]): Qemu[] {
  const byInode = new Map(hosts.map((h) => [h.netnsInode, h.name]));
  const out: Qemu[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    try {
      if (!readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("qemu-system")) continue;
      const ns = /net:\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/net`))?.[1];
      const host = byInode.get(Number(ns));
      if (!host || !pidAlive(pid)) continue;
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      // No -name: not a guest but libvirtd probing a QEMU binary's capabilities (`-machine none
      // -qmp ...`, at every daemon start). Read as a guest, two hosts probing at once looked like
      // one guest running twice (CI, create seed 1: "/usr/libexec/qemu-system-i386 runs twice").
      const at = argv.indexOf("-name");
      if (at < 0) continue;
      const name = argv[at + 1] ?? "";
      const guest = /guest=([^,]+)/.exec(name)?.[1] ?? name;
      const mem = argv[argv.indexOf("-m") + 1] ?? "";
      const m = /^(?:size=)?(\d+)([kKmMgG]?)/.exec(mem);
      const unit = (m?.[2] ?? "M").toLowerCase();
      const memoryMiB = m ? Number(m[1]) / (unit === "k" ? 1024 : unit === "g" ? 1 / 1024 : 1) : undefined;
      const smp = /^(\d+)/.exec(argv[argv.indexOf("-smp") + 1] ?? "")?.[1];
      out.push({
        pid,
        guest,
        host,
        incoming: argv.includes("-incoming"),
        ...(memoryMiB !== undefined ? { memoryMiB } : {}),
        ...(smp ? { vcpus: Number(smp) } : {}),
      });
    } catch {
      // exited while being read
    }
  }
  return out;
}

export function copiesByGuest(qemus: Qemu[]): Map<string, Qemu[]> {
  const m = new Map<string, Qemu[]>();
  for (const q of qemus) m.set(q.guest, [...(m.get(q.guest) ?? []), q]);
  return m;
}

export interface Watcher {
  violations: string[];
  samples(): number;
  /** Guests seen with two QEMUs that turned out to be a migration or a switchover. */
  doubleQemuSamples(): number;
  stop(): Promise<void>;
}

export function startWatcher(
  hosts: BedHost[],
  opts: { intervalMs?: number; log?: (s: string) => void } = {},
): Watcher {
  const violations: string[] = [];
  let samples = 0;
  let doubles = 0;
  let stopped = false;
  const byName = new Map(hosts.map((h) => [h.name, h]));

  async function runningCopies(copies: Qemu[]): Promise<Qemu[]> {
    const states = await Promise.all(
      copies.map(async (q) => {
        const h = byName.get(q.host) as BedHost;
        try {
          return (await virsh(h.unixUri, ["domstate", q.guest], 4000)).trim();
        } catch {
          return q.incoming ? "paused (incoming, daemon silent)" : "unknown";
        }
      }),
    );
    return copies.filter((q, i) => pidAlive(q.pid) && (states[i] === "running" || states[i] === "unknown"));
  }

  const loop = (async () => {
    while (!stopped) {
      const t0 = Date.now();
      const qemus = scanQemus(hosts);
      samples++;
      for (const [guest, copies] of copiesByGuest(qemus)) {
        if (copies.length < 2) continue;
        doubles++;
        const first = await runningCopies(copies);
        if (first.length < 2) continue;
        await sleep(300);
        const again = await runningCopies(first);
        if (again.length >= 2) {
          const v = `${new Date().toISOString()} ${guest} runs twice: ${again.map((q) => `${q.host} pid ${q.pid}`).join(", ")}`;
          violations.push(v);
          opts.log?.(`VIOLATION ${v}`);
        }
      }
      await sleep(Math.max(0, (opts.intervalMs ?? 150) - (Date.now() - t0)));
    }
  })();

  return {
    violations,
    samples: () => samples,
    doubleQemuSamples: () => doubles,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}
